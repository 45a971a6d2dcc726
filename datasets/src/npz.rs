//! MedMNIST `.npz` files (Yang et al. 2023): a zip archive (`np.savez`, stored, or
//! `np.savez_compressed`, deflated) of `.npy` arrays `train_images`, `train_labels`,
//! `val_images`, `val_labels`, `test_images`, `test_labels`. Images are `uint8` of shape
//! `(N, H, W)` (grey) or `(N, H, W, 3)` (RGB); labels `(N,)` or `(N, 1)` of any integer type.
//!
//! Train is `train_*`, Val is `val_*`; `test_*` is the Test split, left for a final
//! evaluation. MedMNIST ships no class names in the archive: they are `"0"`, `"1"`, ...
//!
//! A member is trusted for nothing: the data an array's header promises must fit in what
//! the member can hold (its declared size, and no more than its compressed bytes can
//! inflate to) before anything is allocated for it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive};

use crate::decode::{check_raw_image, raw_image_set};
use crate::npy::{self, Header};
use crate::read::Summary;
use crate::roots::{Roots, open_file};
use crate::{DatasetError, ImageSet, Split, limits};

type Archive = ZipArchive<BufReader<File>>;

fn open(path: &Path, roots: &Roots) -> Result<Archive, DatasetError> {
    let file = open_file(path, roots)?;
    ZipArchive::new(BufReader::new(file)).map_err(|e| DatasetError::Archive { path: path.to_owned(), reason: e.to_string() })
}

/// Whether the archive holds `name` (as `name.npy`, as NumPy writes it, or bare).
fn member_name(archive: &Archive, name: &str) -> Option<String> {
    [format!("{name}.npy"), name.to_owned()].into_iter().find(|candidate| archive.index_for_name(candidate).is_some())
}

/// Runs `read` on the member `name` after its header, with the most data bytes the member
/// can hold; errors name the file and the array.
fn with_array<T>(
    archive: &mut Archive,
    path: &Path,
    name: &str,
    read: impl FnOnce(&mut dyn Read, &Header, u64) -> Result<T, String>,
) -> Result<T, DatasetError> {
    let npy_error = |reason: String| DatasetError::Npy { path: path.to_owned(), array: name.to_owned(), reason };
    let Some(member) = member_name(archive, name) else {
        return Err(npy_error("missing from the archive (a MedMNIST .npz holds train_, val_ and test_ images and labels)".into()));
    };
    let mut file = archive.by_name(&member).map_err(|e| match e {
        ZipError::Io(source) => DatasetError::Io { path: path.to_owned(), source },
        other => DatasetError::Archive { path: path.to_owned(), reason: other.to_string() },
    })?;
    let inflatable = match file.compression() {
        CompressionMethod::Stored => file.compressed_size(),
        _ => limits::max_inflated(file.compressed_size()),
    };
    let available = file.size().min(inflatable);
    // Never more than the member holds, whatever its decompressor does.
    let mut member = (&mut file).take(available);
    let header = npy::read_header(&mut member).map_err(npy_error)?;
    read(&mut member, &header, available).map_err(npy_error)
}

/// `(count, height, width, channels)` of an image array's shape, checked: each image of a
/// usable size, and the promised data no more than the `available` bytes.
fn image_shape(header: &Header, available: u64) -> Result<(usize, usize, usize, usize), String> {
    let (count, height, width, channels) = match header.shape[..] {
        [count, height, width] | [count, height, width, 1] => (count, height, width, 1),
        [count, height, width, 3] => (count, height, width, 3),
        _ => return Err(format!("images have shape {:?}; expected (N, H, W) or (N, H, W, 3)", header.shape)),
    };
    check_raw_image(height, width)?;
    npy::check_fits(header.data_bytes()?, available)?;
    Ok((count, height, width, channels))
}

fn check_split(archive: &Archive, path: &Path, split: Split) -> Result<(), DatasetError> {
    if split == Split::Test && member_name(archive, "test_images").is_none() {
        let hint = "this .npz holds no test_images and test_labels arrays".to_owned();
        return Err(DatasetError::NoSplit { path: path.to_owned(), split, hint });
    }
    Ok(())
}

/// Decodes `split` of the `.npz` at `path`, fitted to `size×size` when `size` is set.
pub(crate) fn load(path: &Path, roots: &Roots, split: Split, size: Option<u32>) -> Result<ImageSet, DatasetError> {
    let mut archive = open(path, roots)?;
    check_split(&archive, path, split)?;
    let images_name = format!("{split}_images");
    let labels_name = format!("{split}_labels");
    let (pixels, (count, height, width, channels)) = with_array(&mut archive, path, &images_name, |reader, header, available| {
        let shape = image_shape(header, available)?;
        Ok((npy::read_u8(reader, header, available)?, shape))
    })?;
    let labels = with_array(&mut archive, path, &labels_name, npy::read_labels)?;
    if labels.len() != count {
        let reason = format!("{count} images in {images_name} but {} labels", labels.len());
        return Err(DatasetError::Npy { path: path.to_owned(), array: labels_name, reason });
    }
    raw_image_set(&pixels, labels, height, width, channels, size).map_err(|reason| DatasetError::Npy { path: path.to_owned(), array: images_name, reason })
}

/// Counts and shapes from the image headers; the labels are read for the class count.
pub(crate) fn inspect(path: &Path, roots: &Roots) -> Result<Summary, DatasetError> {
    let mut archive = open(path, roots)?;
    let mut sizes = [0usize; 3];
    let mut shape = None;
    let mut max_label = None;
    for (position, split) in [Split::Train, Split::Val, Split::Test].into_iter().enumerate() {
        if check_split(&archive, path, split).is_err() {
            continue;
        }
        let (count, height, width, channels) =
            with_array(&mut archive, path, &format!("{split}_images"), |_, header, available| image_shape(header, available))?;
        let split_shape = (height, width, channels);
        let labels = with_array(&mut archive, path, &format!("{split}_labels"), npy::read_labels)?;
        sizes[position] = count;
        shape.get_or_insert(split_shape);
        max_label = max_label.max(labels.into_iter().max());
    }
    let num_classes = max_label.map_or(0, |max| max as usize + 1);
    let (height, width, channels) = shape.unwrap_or((0, 0, 1));
    Ok(Summary {
        num_classes,
        class_names: (0..num_classes).map(|label| label.to_string()).collect(),
        train_size: sizes[0],
        val_size: sizes[1],
        test_size: sizes[2],
        height: Some(height),
        width: Some(width),
        channels,
        groups: None,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;
    use zip::{CompressionMethod, ZipWriter};

    use crate::npy::encode;
    use crate::{DatasetError, Format, Source, Split, inspect, load, sample_key};

    /// Writes an .npz as NumPy would: `name.npy` members, `stored` ones as `np.savez` writes
    /// them (with zip64 headers, as NumPy forces), the others deflated as `np.savez_compressed`.
    fn write_npz(path: &std::path::Path, members: &[(&str, Vec<u8>, bool)]) {
        let mut zip = ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes, stored) in members {
            let options = if *stored {
                SimpleFileOptions::default().compression_method(CompressionMethod::Stored).large_file(true)
            } else {
                SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
            };
            zip.start_file(format!("{name}.npy"), options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    fn pixels(count: usize, bytes_each: usize, offset: u8) -> Vec<u8> {
        (0..count * bytes_each).map(|i| (i as u8).wrapping_mul(7).wrapping_add(offset)).collect()
    }

    fn int64(values: &[i64]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn reads_grey_medmnist_arrays_stored_and_deflated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("octmnist.npz");
        let train = pixels(3, 16, 0);
        write_npz(
            &path,
            &[
                ("train_images", encode("|u1", &[3, 4, 4], &train), true),
                ("train_labels", encode("<i8", &[3, 1], &int64(&[2, 0, 3])), false),
                ("val_images", encode("|u1", &[2, 4, 4], &pixels(2, 16, 5)), false),
                ("val_labels", encode("|u1", &[2], &[1, 1]), true),
                ("test_images", encode("|u1", &[1, 4, 4], &pixels(1, 16, 9)), false),
                ("test_labels", encode("<i8", &[1, 1], &int64(&[0])), false),
            ],
        );
        let source = Source::new(Format::Npz, &path);
        let summary = inspect(&source).unwrap();
        assert_eq!((summary.train_size, summary.val_size, summary.test_size), (3, 2, 1));
        assert_eq!((summary.num_classes, summary.height, summary.width, summary.channels), (4, Some(4), Some(4), 1));
        assert_eq!(summary.class_names, vec!["0", "1", "2", "3"]);

        let loaded = load(&source, Split::Train, None).unwrap().images;
        assert_eq!(loaded.pixels, train);
        assert_eq!(loaded.labels, vec![2, 0, 3]);
        assert_eq!(loaded.keys[1], sample_key(&train[16..32], 0));
        let resized = load(&source, Split::Train, Some(8)).unwrap().images;
        assert_eq!((resized.height, resized.width, resized.pixels.len()), (8, 8, 3 * 64));
        assert_eq!(resized.keys, loaded.keys);
        assert_eq!(load(&source, Split::Val, None).unwrap().images.labels, vec![1, 1]);
        assert_eq!(load(&source, Split::Test, None).unwrap().images.len(), 1);
    }

    #[test]
    fn colour_arrays_give_three_channels_and_a_missing_test_split_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pathmnist.npz");
        write_npz(
            &path,
            &[
                ("train_images", encode("|u1", &[2, 3, 3, 3], &pixels(2, 27, 1)), false),
                ("train_labels", encode("<u4", &[2, 1], &[1, 0, 0, 0, 0, 0, 0, 0]), false),
                ("val_images", encode("|u1", &[1, 3, 3, 3], &pixels(1, 27, 2)), true),
                ("val_labels", encode("<i8", &[1, 1], &int64(&[1])), true),
            ],
        );
        let source = Source::new(Format::Npz, &path);
        let train = load(&source, Split::Train, None).unwrap().images;
        assert_eq!((train.channels, train.labels.clone()), (3, vec![1, 0]));
        assert_eq!(inspect(&source).unwrap().test_size, 0);
        let err = load(&source, Split::Test, None).unwrap_err();
        assert!(matches!(err, DatasetError::NoSplit { .. }), "{err}");
    }

    #[test]
    fn bad_arrays_and_archives_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npz");
        write_npz(&path, &[("train_images", encode("<i8", &[1, 2, 2], &[0; 32]), false), ("train_labels", encode("|u1", &[1], &[0]), false)]);
        let source = Source::new(Format::Npz, &path);
        let err = load(&source, Split::Train, None).unwrap_err().to_string();
        assert!(err.contains("array train_images: expected uint8 pixels"), "{err}");
        let err = load(&source, Split::Val, None).unwrap_err().to_string();
        assert!(err.contains("array val_images: missing from the archive"), "{err}");

        std::fs::write(&path, b"not a zip").unwrap();
        let err = load(&source, Split::Train, None).unwrap_err().to_string();
        assert!(err.contains("is not a readable .npz (zip) archive"), "{err}");
    }

    /// Issue 19, item 4: an .npz whose image header claims (2**40, 28, 28) aborted the
    /// process (the allocation of 862017116176384 bytes failed) on the old code.
    #[test]
    fn a_huge_shape_is_refused_before_anything_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.npz");
        for stored in [false, true] {
            write_npz(
                &path,
                &[
                    ("train_images", encode("|u1", &[1 << 40, 28, 28], &[0; 784]), stored),
                    ("train_labels", encode("|u1", &[1], &[0]), stored),
                    ("val_images", encode("|u1", &[1, 28, 28], &[0; 784]), stored),
                    ("val_labels", encode("|u1", &[1], &[0]), stored),
                ],
            );
            let source = Source::new(Format::Npz, &path);
            for err in [load(&source, Split::Train, None).unwrap_err(), inspect(&source).unwrap_err()] {
                let text = err.to_string();
                assert!(matches!(err, DatasetError::Npy { .. }), "{text}");
                assert!(text.contains("array train_images: truncated: the header promises 862017116176384 data bytes"), "{text}");
            }
        }
    }

    /// Shapes that panicked on the old code: `()` (indexed at 0), labels whose byte count
    /// overflows, images without pixels (a division by zero when resized).
    #[test]
    fn shapes_that_cannot_be_images_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.npz");
        let source = Source::new(Format::Npz, &path);
        let labels = || ("val_labels", encode("|u1", &[1], &[0]), false);
        let val = || ("val_images", encode("|u1", &[1, 2, 2], &[0; 4]), false);

        write_npz(&path, &[("train_images", encode("|u1", &[], &[0]), false), ("train_labels", encode("|u1", &[1], &[0]), false), val(), labels()]);
        let err = inspect(&source).unwrap_err().to_string();
        assert!(err.contains("train_images: images have shape []"), "{err}");

        write_npz(
            &path,
            &[("train_images", encode("|u1", &[1, 2, 2], &[0; 4]), false), ("train_labels", encode("<i8", &[1 << 61], &[0; 8]), false), val(), labels()],
        );
        let err = load(&source, Split::Train, None).unwrap_err().to_string();
        assert!(err.contains("train_labels: shape [2305843009213693952] has more elements than memory can hold"), "{err}");

        write_npz(&path, &[("train_images", encode("|u1", &[2, 0, 5], &[]), false), ("train_labels", encode("|u1", &[2], &[0, 1]), false), val(), labels()]);
        let err = load(&source, Split::Train, Some(8)).unwrap_err().to_string();
        assert!(err.contains("the image is 5x0 pixels: it has no pixels"), "{err}");
    }
}
