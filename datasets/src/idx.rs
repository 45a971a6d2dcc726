//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header with a magic
//! number (0x0000_08_NN: unsigned bytes, NN dimensions), the dimension sizes, then the data.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::decode::raw_image_set;
use crate::limits::{self, max_inflated};
use crate::roots::{Roots, open_file};
use crate::{DatasetError, ImageSet, Split};

fn stems(dir: &Path, split: Split) -> Result<(&'static str, &'static str), DatasetError> {
    match split {
        Split::Train => Ok(("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        Split::Val => Ok(("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
        Split::Test => Err(DatasetError::NoSplit { path: dir.to_owned(), split, hint: "IDX datasets ship train and t10k files; t10k is the Val split".into() }),
    }
}

/// The IDX files of both splits that exist in `dir`.
pub(crate) fn files(dir: &Path) -> Vec<PathBuf> {
    [Split::Train, Split::Val]
        .into_iter()
        .filter_map(|split| stems(dir, split).ok())
        .flat_map(|(images, labels)| [images, labels])
        .filter_map(|stem| find(dir, stem).ok())
        .collect()
}

/// Finds `stem`, `stem.gz` or the `stem` with its customary `.` before `idx` (some mirrors).
fn find(dir: &Path, stem: &str) -> Result<PathBuf, DatasetError> {
    let dotted = stem.replacen("-idx", ".idx", 1);
    let candidates = [stem.to_owned(), format!("{stem}.gz"), dotted.clone(), format!("{dotted}.gz")];
    candidates.iter().map(|name| dir.join(name)).find(|path| path.is_file()).ok_or_else(|| DatasetError::Missing {
        dir: dir.to_owned(),
        what: stem.to_owned(),
        expected: candidates.join(", "),
    })
}

/// Reads the IDX file at `path` (gzipped or not): its dimension sizes and its data, which
/// must be exactly what the header promises. Nothing is allocated for the data before the
/// promise is checked against the bytes present (the file's length, or for gzip the most
/// its compressed bytes can inflate to), and a gzip stream is read no further than that.
fn read_idx(path: &Path, roots: &Roots, dims_expected: usize) -> Result<(Vec<usize>, Vec<u8>), DatasetError> {
    let io = |source| DatasetError::Io { path: path.to_owned(), source };
    let bad = |reason: String| DatasetError::Format { path: path.to_owned(), reason };
    let mut file = BufReader::new(open_file(path, roots)?);
    let file_len = file.get_ref().metadata().map_err(io)?.len();
    let gzipped = file.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    let (mut reader, available): (Box<dyn Read>, u64) =
        if gzipped { (Box::new(GzDecoder::new(file)), max_inflated(file_len)) } else { (Box::new(file), file_len) };

    let mut magic = [0u8; 4];
    reader.read_exact(&mut magic).map_err(|_| bad("missing the 0x0000 magic prefix".into()))?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad("missing the 0x0000 magic prefix".into()));
    }
    if magic[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned bytes (0x08)", magic[2])));
    }
    let dims = usize::from(magic[3]);
    if dims != dims_expected {
        return Err(bad(format!("{dims} dimensions, expected {dims_expected}")));
    }
    let mut sizes = Vec::with_capacity(dims);
    for _ in 0..dims {
        let mut size = [0u8; 4];
        reader.read_exact(&mut size).map_err(|_| bad("truncated header".into()))?;
        sizes.push(u32::from_be_bytes(size) as usize);
    }
    let header_len = 4 + 4 * dims as u64;
    let expected = limits::product(sizes.iter().copied());
    let Some(expected) = expected.filter(|&expected| expected as u64 <= available.saturating_sub(header_len)) else {
        let promised = match expected {
            Some(expected) => expected.to_string(),
            None => format!("{} (more than memory can hold)", sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(" x ")),
        };
        let holds = if gzipped { format!("at most {}", available.saturating_sub(header_len)) } else { file_len.saturating_sub(header_len).to_string() };
        return Err(bad(format!("header promises {promised} data bytes, file holds {holds}")));
    };
    let data = limits::read_up_to(&mut reader, expected).map_err(bad)?;
    if data.len() != expected {
        return Err(bad(format!("header promises {expected} data bytes, file holds {}", data.len())));
    }
    // One byte more than promised is an error; reading to the end checks gzip's CRC.
    let mut extra = [0u8; 1];
    if reader.read(&mut extra).map_err(io)? != 0 {
        return Err(bad(format!("header promises {expected} data bytes, file holds more")));
    }
    Ok((sizes, data))
}

/// Loads one split of an IDX dataset folder at its native size, keyed over its pixels.
/// There is no Test split: `t10k` is Val.
pub fn load_idx_split(dir: &Path, split: Split) -> Result<ImageSet, DatasetError> {
    load_split(dir, &Roots::unconfined(), split)
}

/// [`load_idx_split`], reading only under `roots`.
pub(crate) fn load_split(dir: &Path, roots: &Roots, split: Split) -> Result<ImageSet, DatasetError> {
    let (image_stem, label_stem) = stems(dir, split)?;
    let image_path = find(dir, image_stem)?;
    let label_path = find(dir, label_stem)?;
    let (image_dims, image_bytes) = read_idx(&image_path, roots, 3)?;
    let (label_dims, label_bytes) = read_idx(&label_path, roots, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DatasetError::CountMismatch { images: image_path, image_count: image_dims[0], labels: label_path, label_count: label_dims[0] });
    }
    let labels = label_bytes.iter().map(|&l| u32::from(l)).collect();
    raw_image_set(&image_bytes, labels, image_dims[1], image_dims[2], 1, None).map_err(|reason| DatasetError::Format { path: image_path, reason })
}

/// Encodes unsigned bytes as an IDX file (the inverse of the reader): for tests and for
/// writing small datasets in the format.
pub fn encode_idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// What registration needs to know of an IDX folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxSummary {
    pub train_size: usize,
    pub val_size: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
}

/// Reads both splits' headers and labels (not kept) to summarise an IDX folder.
pub fn inspect_idx_dir(dir: &Path) -> Result<IdxSummary, DatasetError> {
    inspect_dir(dir, &Roots::unconfined())
}

/// [`inspect_idx_dir`], reading only under `roots`.
pub(crate) fn inspect_dir(dir: &Path, roots: &Roots) -> Result<IdxSummary, DatasetError> {
    let train = load_split(dir, roots, Split::Train)?;
    let val = load_split(dir, roots, Split::Val)?;
    let num_classes = train.labels.iter().chain(&val.labels).max().map_or(0, |&m| m as usize + 1);
    Ok(IdxSummary { train_size: train.len(), val_size: val.len(), height: train.height, width: train.width, num_classes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    fn write(dir: &Path, name: &str, bytes: &[u8], gzip: bool) {
        let mut file = File::create(dir.join(name)).unwrap();
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            enc.write_all(bytes).unwrap();
            enc.finish().unwrap();
        } else {
            file.write_all(bytes).unwrap();
        }
    }

    fn tiny_dataset(dir: &Path, gzip: bool) {
        let suffix = if gzip { ".gz" } else { "" };
        write(dir, &format!("train-images-idx3-ubyte{suffix}"), &encode_idx(&[3, 2, 2], &(0..12).collect::<Vec<u8>>()), gzip);
        write(dir, &format!("train-labels-idx1-ubyte{suffix}"), &encode_idx(&[3], &[2, 0, 1]), gzip);
        write(dir, &format!("t10k-images-idx3-ubyte{suffix}"), &encode_idx(&[1, 2, 2], &[9, 9, 9, 9]), gzip);
        write(dir, &format!("t10k-labels-idx1-ubyte{suffix}"), &encode_idx(&[1], &[4]), gzip);
    }

    #[test]
    fn reads_plain_and_gzipped_files_alike() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            tiny_dataset(dir.path(), gzip);
            let train = load_idx_split(dir.path(), Split::Train).unwrap();
            assert_eq!(train.len(), 3);
            assert_eq!((train.height, train.width), (2, 2));
            assert_eq!(train.image(1), Some(&[4u8, 5, 6, 7][..]));
            // Past the end, however far (schemathesis's thumbnail index 580607356270228603
            // overflowed `index * size` and panicked).
            assert_eq!(train.image(3), None);
            assert_eq!(train.image(580_607_356_270_228_603), None);
            assert_eq!(train.image(usize::MAX), None);
            assert_eq!(train.labels, vec![2, 0, 1]);
            let summary = inspect_idx_dir(dir.path()).unwrap();
            assert_eq!(summary, IdxSummary { train_size: 3, val_size: 1, height: 2, width: 2, num_classes: 5 });
        }
    }

    #[test]
    fn truncated_file_names_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path(), false);
        write(dir.path(), "train-images-idx3-ubyte", &encode_idx(&[3, 2, 2], &[0; 11]), false);
        let err = load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte is not a valid IDX file"), "{err}");
        assert!(err.contains("promises 12 data bytes, file holds 11"), "{err}");
    }

    #[test]
    fn missing_split_says_what_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_idx_split(dir.path(), Split::Val).unwrap_err().to_string();
        assert!(err.contains("no t10k-images-idx3-ubyte file"), "{err}");
    }

    /// Issue 19, item 4: dimensions whose product overflows panicked on the old code; a
    /// gzipped file is read no further than its header promises.
    #[test]
    fn huge_or_empty_dimensions_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        tiny_dataset(dir.path(), false);
        let huge = encode_idx(&[u32::MAX, u32::MAX, u32::MAX], &[0; 16]);
        write(dir.path(), "train-images-idx3-ubyte", &huge, false);
        let err = load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("header promises 4294967295 x 4294967295 x 4294967295 (more than memory can hold) data bytes"), "{err}");

        // Gzipped, a claim beyond what the compressed bytes can inflate to is refused unread.
        std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
        write(dir.path(), "train-images-idx3-ubyte.gz", &encode_idx(&[60000, 4096, 4096], &[0; 16]), true);
        let err = load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("header promises 1006632960000 data bytes, file holds at most"), "{err}");
        // And a stream longer than its header promises stops one byte past the promise.
        write(dir.path(), "train-images-idx3-ubyte.gz", &encode_idx(&[3, 2, 2], &[0; 1 << 20]), true);
        let err = load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("header promises 12 data bytes, file holds more"), "{err}");

        // Images without pixels divided by zero when resized on the old code.
        write(dir.path(), "train-images-idx3-ubyte.gz", &encode_idx(&[3, 28, 0], &[]), true);
        let err = load_idx_split(dir.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("the image is 0x28 pixels: it has no pixels"), "{err}");
    }

    #[test]
    fn a_folder_swapped_for_a_link_after_registration_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let data = root.path().join("fashion");
        std::fs::create_dir(&data).unwrap();
        tiny_dataset(&data, true);
        tiny_dataset(outside.path(), true);
        let roots = Roots::new([root.path()]);
        assert_eq!(inspect_dir(&data, &roots).unwrap().train_size, 3);

        std::fs::remove_dir_all(&data).unwrap();
        std::os::unix::fs::symlink(outside.path(), &data).unwrap();
        let err = load_split(&data, &roots, Split::Train).unwrap_err();
        assert!(matches!(&err, DatasetError::OutsideRoots { path } if path.starts_with(&data)), "{err}");
        assert!(load_split(&data, &Roots::unconfined(), Split::Train).is_ok(), "unconfined, the link is followed");
    }
}
