//! CUB-200-2011 in its own layout (Wah et al. 2011), at `ROOT`:
//! - `images.txt`: `image_id relative/path.jpg`, paths relative to `ROOT/images/`;
//! - `image_class_labels.txt`: `image_id class_id`, class ids from 1;
//! - `train_test_split.txt`: `image_id is_train` with `1` (Train) or `0` (Val: CUB's test half);
//! - `classes.txt`: `class_id name`, e.g. `1 001.Black_footed_Albatross`.
//!
//! Labels are `class_id - 1`; samples are in image id order.
//!
//! Paths in `images.txt` must stay below `images/`: an absolute path or one with a `..` is
//! refused with the line that holds it, and every file read is confined to the source's
//! [`Roots`] besides.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::files::{FileDataset, FileSample};
use crate::limits::MAX_LIST_BYTES;
use crate::roots::{Roots, read_text};
use crate::{DatasetError, Split};

const IMAGES: &str = "images.txt";
const LABELS: &str = "image_class_labels.txt";
const SPLITS: &str = "train_test_split.txt";
const CLASSES: &str = "classes.txt";

/// One `id value` line.
struct Entry {
    id: u64,
    value: String,
    line: usize,
}

/// Reads the lists at `root` into a dataset; no image is opened.
pub(crate) fn read(root: &Path, roots: &Roots) -> Result<FileDataset, DatasetError> {
    let classes = read_entries(root, roots, CLASSES)?;
    let mut class_names = Vec::with_capacity(classes.len());
    for (position, entry) in classes.iter().enumerate() {
        if entry.id != position as u64 + 1 {
            let reason = format!("class ids must run 1, 2, 3, ... in order; expected {}, got {}", position + 1, entry.id);
            return Err(DatasetError::Malformed { path: root.join(CLASSES), line: entry.line, reason });
        }
        class_names.push(entry.value.clone());
    }
    let labels = by_id(read_entries(root, roots, LABELS)?);
    let splits = by_id(read_entries(root, roots, SPLITS)?);

    let mut images = read_entries(root, roots, IMAGES)?;
    images.sort_by_key(|entry| entry.id);
    let mut samples = Vec::with_capacity(images.len());
    for image in &images {
        let at_image = |reason: String| DatasetError::Malformed { path: root.join(IMAGES), line: image.line, reason };
        let relative = Path::new(&image.value);
        if !relative.components().all(|component| matches!(component, Component::Normal(_) | Component::CurDir)) {
            return Err(at_image(format!("image path {:?} must be relative to images/ and must not contain `..`", image.value)));
        }
        let label = labels.get(&image.id).ok_or_else(|| at_image(format!("image {} has no line in {LABELS}", image.id)))?;
        let split = splits.get(&image.id).ok_or_else(|| at_image(format!("image {} has no line in {SPLITS}", image.id)))?;
        let class_id = match label.value.parse::<u32>() {
            Ok(id) if id >= 1 && id as usize <= class_names.len() => id,
            _ => {
                let reason = format!("class id must be a number from 1 to {} (the lines of {CLASSES}), got {:?}", class_names.len(), label.value);
                return Err(DatasetError::Malformed { path: root.join(LABELS), line: label.line, reason });
            }
        };
        let split = match split.value.as_str() {
            "1" => Split::Train,
            "0" => Split::Val,
            other => {
                let reason = format!("is_train must be 1 or 0, got {other:?}");
                return Err(DatasetError::Malformed { path: root.join(SPLITS), line: split.line, reason });
            }
        };
        samples.push(FileSample { path: root.join("images").join(relative), label: class_id - 1, split });
    }
    Ok(FileDataset {
        root: root.to_owned(),
        class_names,
        samples,
        no_test_hint: "CUB-200-2011 ships a train and a test half; its test half (is_train 0) is the Val split".into(),
        roots: roots.clone(),
        groups: None,
    })
}

/// The lists and every image they name: the files whose size and time decide what loads.
pub(crate) fn source_files(root: &Path, roots: &Roots) -> Result<Vec<PathBuf>, DatasetError> {
    let mut files: Vec<PathBuf> = [IMAGES, LABELS, SPLITS, CLASSES].iter().map(|name| root.join(name)).collect();
    files.extend(read(root, roots)?.samples.into_iter().map(|sample| sample.path));
    Ok(files)
}

fn by_id(entries: Vec<Entry>) -> HashMap<u64, Entry> {
    entries.into_iter().map(|entry| (entry.id, entry)).collect()
}

/// The `id value` lines of `root/name`; blank lines are skipped.
fn read_entries(root: &Path, roots: &Roots, name: &str) -> Result<Vec<Entry>, DatasetError> {
    let path = root.join(name);
    if !path.is_file() {
        return Err(DatasetError::Missing {
            dir: root.to_owned(),
            what: name.to_owned(),
            expected: format!("{name} (CUB-200-2011 layout: images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/)"),
        });
    }
    let text = read_text(&path, roots, MAX_LIST_BYTES, "a CUB list")?;
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let parsed = line.split_once(char::is_whitespace).and_then(|(id, value)| Some((id.parse::<u64>().ok()?, value.trim())));
        let Some((id, value)) = parsed.filter(|(_, value)| !value.is_empty()) else {
            let reason = format!("expected `<number> <value>`, got {line:?}");
            return Err(DatasetError::Malformed { path, line: index + 1, reason });
        };
        entries.push(Entry { id, value: value.to_owned(), line: index + 1 });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use crate::testing::write_image;
    use crate::{BadImages, DatasetError, Format, Options, Roots, Source, Split, inspect, load, sample_key};

    /// Two classes; ids deliberately out of order in images.txt.
    fn write_cub(root: &std::path::Path) {
        let images = [
            (3, "002.Laysan_Albatross/Laysan_Albatross_0001.jpg", 2, 1),
            (1, "001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg", 1, 1),
            (2, "001.Black_footed_Albatross/Black_Footed_Albatross_0002.jpg", 1, 0),
            (4, "002.Laysan_Albatross/Laysan_Albatross_0002.png", 2, 0),
            (5, "002.Laysan_Albatross/Laysan_Albatross_0003.jpg", 2, 1),
        ];
        let mut listing = String::new();
        let mut labels = String::new();
        let mut splits = String::new();
        for (id, path, class, is_train) in images {
            write_image(&root.join("images").join(path), 10 + id, 8 + 2 * id, true, id as u8);
            listing.push_str(&format!("{id} {path}\n"));
            labels.push_str(&format!("{id} {class}\n"));
            splits.push_str(&format!("{id} {is_train}\n"));
        }
        std::fs::write(root.join("images.txt"), listing).unwrap();
        std::fs::write(root.join("image_class_labels.txt"), labels).unwrap();
        std::fs::write(root.join("train_test_split.txt"), splits).unwrap();
        std::fs::write(root.join("classes.txt"), "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n").unwrap();
    }

    #[test]
    fn reads_the_cub_lists_with_zero_based_labels() {
        let dir = tempfile::tempdir().unwrap();
        write_cub(dir.path());
        let source = Source::new(Format::Cub, dir.path());
        let summary = inspect(&source).unwrap();
        assert_eq!(summary.class_names, vec!["001.Black_footed_Albatross", "002.Laysan_Albatross"]);
        assert_eq!((summary.num_classes, summary.train_size, summary.val_size, summary.channels), (2, 3, 2, 3));

        let train = load(&source, Split::Train, Some(6)).unwrap().images;
        assert_eq!(train.labels, vec![0, 1, 1], "ids 1, 3, 5");
        let first = std::fs::read(dir.path().join("images/001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg")).unwrap();
        assert_eq!(train.keys[0], sample_key(&first, 0));
        assert_eq!((train.height, train.width, train.channels), (6, 6, 3));
        let val = load(&source, Split::Val, Some(6)).unwrap().images;
        assert_eq!(val.labels, vec![0, 1], "ids 2, 4");
        let err = load(&source, Split::Test, Some(6)).unwrap_err().to_string();
        assert!(err.contains("its test half (is_train 0) is the Val split"), "{err}");
    }

    #[test]
    fn malformed_lists_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write_cub(dir.path());
        let source = Source::new(Format::Cub, dir.path());
        std::fs::write(dir.path().join("image_class_labels.txt"), "1 1\n2 1\n3 7\n4 2\n5 2\n").unwrap();
        let err = inspect(&source).unwrap_err().to_string();
        assert!(err.contains("image_class_labels.txt, line 3: class id must be a number from 1 to 2"), "{err}");
        std::fs::remove_file(dir.path().join("train_test_split.txt")).unwrap();
        let err = inspect(&source).unwrap_err().to_string();
        assert!(err.contains("no train_test_split.txt file"), "{err}");
    }

    /// Issue 19, item 5: the old code read `images/../../x` and `/x` wherever they led.
    #[test]
    fn image_paths_that_leave_the_images_folder_are_refused_with_their_line() {
        let dir = tempfile::tempdir().unwrap();
        write_cub(dir.path());
        let source = Source::new(Format::Cub, dir.path());
        let listing = std::fs::read_to_string(dir.path().join("images.txt")).unwrap();
        for (line, escape) in [(2, "../../etc/x.jpg"), (2, "/etc/x.jpg"), (2, "002.Laysan_Albatross/../../../x.jpg")] {
            let mut lines: Vec<String> = listing.lines().map(str::to_owned).collect();
            lines[line - 1] = format!("1 {escape}");
            std::fs::write(dir.path().join("images.txt"), lines.join("\n")).unwrap();
            let err = inspect(&source).unwrap_err().to_string();
            assert!(err.contains(&format!("images.txt, line {line}: image path {escape:?} must be relative to images/")), "{err}");
        }
    }

    #[test]
    fn a_linked_image_outside_the_roots_is_refused_even_when_skipping() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write_cub(root.path());
        write_image(&outside.path().join("secret.jpg"), 12, 12, true, 1);
        let linked = root.path().join("images/001.Black_footed_Albatross/Black_Footed_Albatross_0001.jpg");
        std::fs::remove_file(&linked).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.jpg"), &linked).unwrap();
        for bad_images in [BadImages::Fail, BadImages::Skip] {
            let options = Options { bad_images, ..Options::default() };
            let source = Source::new(Format::Cub, root.path()).with_options(options).confined_to(Roots::new([root.path()]));
            let err = load(&source, Split::Train, Some(6)).unwrap_err();
            assert!(matches!(&err, DatasetError::OutsideRoots { path } if *path == linked), "{err}");
        }
        assert!(load(&Source::new(Format::Cub, root.path()), Split::Train, Some(6)).is_ok(), "unconfined, it reads");
    }
}
