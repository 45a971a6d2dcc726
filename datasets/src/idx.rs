//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.): a big-endian header with a magic
//! number (0x0000_08_NN: unsigned bytes, NN dimensions), the dimension sizes, then the data.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::decode::raw_image_set;
use crate::{DatasetError, ImageSet, Split};

fn stems(dir: &Path, split: Split) -> Result<(&'static str, &'static str), DatasetError> {
    match split {
        Split::Train => Ok(("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
        Split::Val => Ok(("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
        Split::Test => Err(DatasetError::NoSplit {
            path: dir.to_owned(),
            split,
            hint: "IDX datasets ship train and t10k files; t10k is the Val split".into(),
        }),
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
    candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| DatasetError::Missing {
            dir: dir.to_owned(),
            what: stem.to_owned(),
            expected: candidates.join(", "),
        })
}

fn read_all(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let io = |source| DatasetError::Io { path: path.to_owned(), source };
    let mut raw = Vec::new();
    File::open(path).and_then(|mut f| f.read_to_end(&mut raw)).map_err(io)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header; returns the dimension sizes and the offset of the data.
fn header(path: &Path, bytes: &[u8], dims_expected: usize) -> Result<(Vec<usize>, usize), DatasetError> {
    let bad = |reason: String| DatasetError::Format { path: path.to_owned(), reason };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("missing the 0x0000 magic prefix".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned bytes (0x08)", bytes[2])));
    }
    let dims = bytes[3] as usize;
    if dims != dims_expected {
        return Err(bad(format!("{dims} dimensions, expected {dims_expected}")));
    }
    let data_start = 4 + 4 * dims;
    if bytes.len() < data_start {
        return Err(bad("truncated header".into()));
    }
    let sizes: Vec<usize> = (0..dims)
        .map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().expect("4 bytes")) as usize)
        .collect();
    let expected: usize = sizes.iter().product();
    if bytes.len() - data_start != expected {
        return Err(bad(format!("header promises {expected} data bytes, file holds {}", bytes.len() - data_start)));
    }
    Ok((sizes, data_start))
}

/// Loads one split of an IDX dataset folder at its native size, keyed over its pixels.
/// There is no Test split: `t10k` is Val.
pub fn load_idx_split(dir: &Path, split: Split) -> Result<ImageSet, DatasetError> {
    let (image_stem, label_stem) = stems(dir, split)?;
    let image_path = find(dir, image_stem)?;
    let label_path = find(dir, label_stem)?;
    let image_bytes = read_all(&image_path)?;
    let label_bytes = read_all(&label_path)?;
    let (image_dims, image_start) = header(&image_path, &image_bytes, 3)?;
    let (label_dims, label_start) = header(&label_path, &label_bytes, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DatasetError::CountMismatch {
            images: image_path,
            image_count: image_dims[0],
            labels: label_path,
            label_count: label_dims[0],
        });
    }
    let labels = label_bytes[label_start..].iter().map(|&l| u32::from(l)).collect();
    Ok(raw_image_set(&image_bytes[image_start..], labels, image_dims[1], image_dims[2], 1, None))
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
    let train = load_idx_split(dir, Split::Train)?;
    let val = load_idx_split(dir, Split::Val)?;
    let num_classes = train.labels.iter().chain(&val.labels).max().map_or(0, |&m| m as usize + 1);
    Ok(IdxSummary {
        train_size: train.len(),
        val_size: val.len(),
        height: train.height,
        width: train.width,
        num_classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
