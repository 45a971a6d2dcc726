//! ImageFolder: a folder per class, class names the sorted folder names, labels their
//! positions (as OCT2017 and OCTDL ship, and as torchvision's `ImageFolder` reads).
//!
//! Layouts, the first that applies:
//! - a split file `ROOT/split.csv` with lines `relative/path,train|val|test` (an optional
//!   `path,split` header, blank lines and `#` comments allowed) decides every image's split;
//!   images it does not list are left out. Paths are relative to `ROOT`, with `/`.
//! - `ROOT/train/CLASS/...` and `ROOT/val/CLASS/...`: those are the splits; a `ROOT/test/`
//!   next to `val/` is the Test split, or the Val split when there is no `val/`.
//! - `ROOT/CLASS/...`: a stratified split. Per class, the files sorted by relative path are
//!   shuffled by SplitMix64 seeded from the seed and the class name, and the first
//!   `round(val_fraction * n)` of them are Val, the rest Train.
//!
//! Images are `.jpg`, `.jpeg` and `.png` files (any case), found at any depth under a class
//! folder; other files and folders whose name starts with `.` are ignored. Links are
//! followed, as torchvision does, but every folder listed and every file read must lie
//! under the source's [`Roots`]: a link (to a file or a folder) that leads out fails the
//! load with an error naming it, under either bad-image policy.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::files::{FileDataset, FileSample};
use crate::limits::MAX_LIST_BYTES;
use crate::rng::{stream_seed, SplitMix64};
use crate::roots::{list_dir, read_text, Roots};
use crate::{DatasetError, Split};

/// Name of the optional split file at the dataset root.
pub(crate) const SPLIT_FILE: &str = "split.csv";
const MAX_DEPTH: usize = 32;

/// An image found on disk, before a split is chosen for it.
struct Found {
    /// Relative to the root, `/` between components.
    relative: String,
    label: u32,
    /// The split its folder says, in the train/val layout.
    folder_split: Option<Split>,
}

struct Listing {
    class_names: Vec<String>,
    found: Vec<Found>,
}

/// Reads the layout of the ImageFolder at `root` and assigns every image a split.
pub(crate) fn read(root: &Path, roots: &Roots, val_fraction: f64, seed: u64) -> Result<FileDataset, DatasetError> {
    let listing = list(root, roots)?;
    let split_file = root.join(SPLIT_FILE);
    let splits: Vec<Option<Split>> = if split_file.is_file() {
        let assigned = read_split_file(&split_file, roots, &listing)?;
        listing.found.iter().map(|found| assigned.get(found.relative.as_str()).copied()).collect()
    } else if listing.found.iter().all(|found| found.folder_split.is_some()) {
        listing.found.iter().map(|found| found.folder_split).collect()
    } else {
        stratified(&listing, val_fraction, seed).into_iter().map(Some).collect()
    };
    let mut samples: Vec<(&Found, Split)> =
        listing.found.iter().zip(splits).filter_map(|(found, split)| Some((found, split?))).collect();
    samples.sort_by(|(a, _), (b, _)| a.label.cmp(&b.label).then_with(|| a.relative.cmp(&b.relative)));
    Ok(FileDataset {
        root: root.to_owned(),
        samples: samples
            .into_iter()
            .map(|(found, split)| FileSample { path: root.join(&found.relative), label: found.label, split })
            .collect(),
        class_names: listing.class_names,
        no_test_hint: "add a test/ folder next to train/ and val/, or test lines to split.csv".into(),
        roots: roots.clone(),
    })
}

/// Every file whose size and time decide what [`read`] and the decoding return: the images
/// and the split file.
pub(crate) fn source_files(root: &Path, roots: &Roots) -> Result<Vec<PathBuf>, DatasetError> {
    let mut files: Vec<PathBuf> = list(root, roots)?.found.iter().map(|found| root.join(&found.relative)).collect();
    let split_file = root.join(SPLIT_FILE);
    if split_file.is_file() {
        files.push(split_file);
    }
    Ok(files)
}

fn list(root: &Path, roots: &Roots) -> Result<Listing, DatasetError> {
    let top = subfolders(root, roots)?;
    let has = |name: &str| top.iter().any(|folder| folder == name);
    let split_folders: Vec<(&str, Split)> = if has("train") && (has("val") || has("test")) {
        let test_role = if has("val") { Split::Test } else { Split::Val };
        [("train", Split::Train), ("val", Split::Val), ("test", test_role)].into_iter().filter(|(name, _)| has(name)).collect()
    } else {
        Vec::new()
    };

    // (relative class folder, class name, split of the folder)
    let mut class_folders: Vec<(String, String, Option<Split>)> = Vec::new();
    if split_folders.is_empty() {
        class_folders.extend(top.iter().map(|class| (class.clone(), class.clone(), None)));
    } else {
        for (split_name, split) in split_folders {
            for class in subfolders(&root.join(split_name), roots)? {
                class_folders.push((format!("{split_name}/{class}"), class, Some(split)));
            }
        }
    }
    let class_names: Vec<String> =
        class_folders.iter().map(|(_, class, _)| class.clone()).collect::<BTreeSet<_>>().into_iter().collect();

    let mut found = Vec::new();
    for (folder, class, folder_split) in &class_folders {
        let label = class_names.iter().position(|name| name == class).unwrap_or_default() as u32;
        let mut relatives = Vec::new();
        walk(root, roots, folder, 0, &mut relatives)?;
        found.extend(relatives.into_iter().map(|relative| Found { relative, label, folder_split: *folder_split }));
    }
    if found.is_empty() {
        return Err(DatasetError::NoImages { dir: root.to_owned() });
    }
    Ok(Listing { class_names, found })
}

fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"].iter().any(|extension| lower.ends_with(extension))
}

/// Entries of `dir` as (name, is a folder), sorted by name, hidden ones left out.
fn entries(dir: &Path, roots: &Roots) -> Result<Vec<(String, bool)>, DatasetError> {
    let entries = list_dir(dir, roots)?;
    Ok(entries.into_iter().filter(|entry| !is_hidden(&entry.name)).map(|entry| (entry.name, entry.is_dir)).collect())
}

fn subfolders(dir: &Path, roots: &Roots) -> Result<Vec<String>, DatasetError> {
    Ok(entries(dir, roots)?.into_iter().filter(|(_, is_dir)| *is_dir).map(|(name, _)| name).collect())
}

/// Adds the image files under `root/relative` to `out`, as paths relative to `root`.
fn walk(root: &Path, roots: &Roots, relative: &str, depth: usize, out: &mut Vec<String>) -> Result<(), DatasetError> {
    if depth > MAX_DEPTH {
        let reason = format!("nested more than {MAX_DEPTH} folders deep below its class folder: is there a link loop?");
        return Err(DatasetError::Io { path: root.join(relative), source: std::io::Error::other(reason) });
    }
    for (name, is_dir) in entries(&root.join(relative), roots)? {
        let child = format!("{relative}/{name}");
        if is_dir {
            walk(root, roots, &child, depth + 1, out)?;
        } else if is_image(&name) {
            out.push(child);
        }
    }
    Ok(())
}

/// The split file as a map from relative path to split; every listed path must be an image
/// of the listing.
fn read_split_file<'a>(path: &Path, roots: &Roots, listing: &'a Listing) -> Result<HashMap<&'a str, Split>, DatasetError> {
    let text = read_text(path, roots, MAX_LIST_BYTES, "a split file")?;
    let known: HashSet<&str> = listing.found.iter().map(|found| found.relative.as_str()).collect();
    let mut assigned: HashMap<&'a str, Split> = HashMap::new();
    let mut first_line: HashMap<&'a str, usize> = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let malformed = |reason: String| DatasetError::Malformed { path: path.to_owned(), line: line_number, reason };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.eq_ignore_ascii_case("path,split") {
            continue;
        }
        let Some((relative, split)) = line.rsplit_once(',') else {
            return Err(malformed(format!("expected `relative/path,train|val|test`, got {line:?}")));
        };
        let split = match split.trim() {
            "train" => Split::Train,
            "val" => Split::Val,
            "test" => Split::Test,
            other => return Err(malformed(format!("split must be train, val or test, got {other:?}"))),
        };
        let relative = relative.trim().replace('\\', "/");
        let relative = relative.trim_start_matches("./");
        let Some(&relative) = known.get(relative) else {
            return Err(malformed(format!(
                "no image {relative} under the dataset root (paths are relative to the root, with / between folders, and name .jpg, .jpeg or .png files in class folders)"
            )));
        };
        if let Some(first) = first_line.insert(relative, line_number) {
            return Err(malformed(format!("{relative} is already listed on line {first}")));
        }
        assigned.insert(relative, split);
    }
    Ok(assigned)
}

/// The stratified split of the class-folder layout (see the module documentation).
fn stratified(listing: &Listing, val_fraction: f64, seed: u64) -> Vec<Split> {
    let mut splits = vec![Split::Train; listing.found.len()];
    for (label, class) in listing.class_names.iter().enumerate() {
        let mut members: Vec<usize> = (0..listing.found.len()).filter(|&i| listing.found[i].label == label as u32).collect();
        members.sort_by(|&a, &b| listing.found[a].relative.cmp(&listing.found[b].relative));
        SplitMix64::new(stream_seed(seed, class)).shuffle(&mut members);
        let val_count = (val_fraction * members.len() as f64).round() as usize;
        for &member in members.iter().take(val_count) {
            splits[member] = Split::Val;
        }
    }
    splits
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::testing::{png_claiming, write_garbage, write_image};
    use crate::{inspect, load, sample_key, BadImages, DatasetError, Format, Options, Roots, Source, Split};

    fn source(root: &std::path::Path, options: Options) -> Source {
        Source::new(Format::ImageFolder, root).with_options(options)
    }

    /// train/ and val/ of class folders `cat` and `dog`, PNG and JPEG of several sizes.
    fn split_folders(root: &std::path::Path) {
        write_image(&root.join("train/cat/a.png"), 12, 10, true, 1);
        write_image(&root.join("train/cat/b.JPG"), 20, 16, true, 2);
        write_image(&root.join("train/dog/c.jpeg"), 9, 9, true, 3);
        write_image(&root.join("train/dog/nested/d.png"), 10, 30, false, 4);
        std::fs::write(root.join("train/dog/notes.txt"), "not an image").unwrap();
        write_image(&root.join("val/cat/e.png"), 16, 16, true, 5);
        write_image(&root.join("val/dog/f.jpg"), 11, 13, true, 6);
    }

    #[test]
    fn train_and_val_folders_are_the_splits() {
        let dir = tempfile::tempdir().unwrap();
        split_folders(dir.path());
        let source = source(dir.path(), Options::default());
        let summary = inspect(&source).unwrap();
        assert_eq!(summary.class_names, vec!["cat", "dog"]);
        assert_eq!((summary.train_size, summary.val_size, summary.test_size), (4, 2, 0));
        assert_eq!((summary.height, summary.width, summary.channels), (None, None, 3));

        let train = load(&source, Split::Train, Some(8)).unwrap();
        assert_eq!(train.images.labels, vec![0, 0, 1, 1]);
        assert_eq!((train.images.height, train.images.width, train.images.channels), (8, 8, 3));
        assert_eq!(train.images.pixels.len(), 4 * 8 * 8 * 3);
        let file_bytes = std::fs::read(dir.path().join("train/cat/a.png")).unwrap();
        assert_eq!(train.images.keys[0], sample_key(&file_bytes, 0));
        let val = load(&source, Split::Val, Some(8)).unwrap();
        assert_eq!(val.images.labels, vec![0, 1]);

        let err = load(&source, Split::Train, None).unwrap_err();
        assert!(matches!(err, DatasetError::MixedSizes { .. }), "{err}");
        assert!(err.to_string().contains("pass an image size"), "{err}");
        let err = load(&source, Split::Test, Some(8)).unwrap_err().to_string();
        assert!(err.contains("no test split") && err.contains("add a test/ folder"), "{err}");
    }

    #[test]
    fn a_test_folder_is_val_without_val_and_test_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("train/a/1.png"), 4, 4, false, 1);
        write_image(&dir.path().join("test/a/2.png"), 4, 4, false, 2);
        let only_test = source(dir.path(), Options::default());
        assert_eq!(load(&only_test, Split::Val, None).unwrap().images.len(), 1);

        write_image(&dir.path().join("val/a/3.png"), 4, 4, false, 3);
        write_image(&dir.path().join("val/a/4.png"), 4, 4, false, 4);
        let summary = inspect(&only_test).unwrap();
        assert_eq!((summary.train_size, summary.val_size, summary.test_size), (1, 2, 1));
        assert_eq!(load(&only_test, Split::Test, None).unwrap().images.len(), 1);
    }

    /// Class folders directly under the root: 10, 5 and 3 grey images.
    fn class_folders(root: &std::path::Path) {
        for (class, count) in [("alpha", 10), ("beta", 5), ("gamma", 3)] {
            for i in 0..count {
                let extension = if i % 2 == 0 { "png" } else { "jpg" };
                write_image(&root.join(format!("{class}/{i:02}.{extension}")), 6, 6, false, (i * 3 + class.len()) as u8);
            }
        }
    }

    #[test]
    fn class_folders_get_a_seeded_stratified_split() {
        let dir = tempfile::tempdir().unwrap();
        class_folders(dir.path());
        let options = Options { val_fraction: 0.4, seed: 11, bad_images: BadImages::Fail };
        let source = source(dir.path(), options);
        let train = load(&source, Split::Train, None).unwrap().images;
        let val = load(&source, Split::Val, None).unwrap().images;
        let per_class = |labels: &[u32], class: u32| labels.iter().filter(|&&l| l == class).count();
        // round(0.4 * 10) = 4, round(0.4 * 5) = 2, round(0.4 * 3) = round(1.2) = 1.
        assert_eq!([0, 1, 2].map(|c| per_class(&val.labels, c)), [4, 2, 1]);
        assert_eq!([0, 1, 2].map(|c| per_class(&train.labels, c)), [6, 3, 2]);
        assert_eq!(train.channels, 1);

        let train_keys: BTreeSet<&String> = train.keys.iter().collect();
        assert!(val.keys.iter().all(|key| !train_keys.contains(key)));
        assert_eq!(load(&source, Split::Val, None).unwrap().images.keys, val.keys, "same seed, same split");
        let other_seeds: Vec<Vec<String>> = (0..5)
            .map(|seed| load(&self::source(dir.path(), Options { seed, ..options }), Split::Val, None).unwrap().images.keys)
            .collect();
        assert!(other_seeds.iter().any(|keys| *keys != val.keys), "the seed changes the split");
    }

    #[test]
    fn a_split_file_decides_and_leaves_out_what_it_does_not_list() {
        let dir = tempfile::tempdir().unwrap();
        class_folders(dir.path());
        std::fs::write(
            dir.path().join("split.csv"),
            "path,split\n# chosen by hand\nalpha/00.png,val\n./beta/01.jpg,train\nalpha/01.jpg,train\n\ngamma/02.png,test\n",
        )
        .unwrap();
        let source = source(dir.path(), Options::default());
        let summary = inspect(&source).unwrap();
        assert_eq!((summary.train_size, summary.val_size, summary.test_size), (2, 1, 1));
        assert_eq!(summary.num_classes, 3);
        assert_eq!(load(&source, Split::Train, None).unwrap().images.labels, vec![0, 1]);
        assert_eq!(load(&source, Split::Test, None).unwrap().images.labels, vec![2]);

        std::fs::write(dir.path().join("split.csv"), "alpha/00.png,val\nalpha/99.png,train\n").unwrap();
        let err = inspect(&source).unwrap_err().to_string();
        assert!(err.contains("split.csv, line 2: no image alpha/99.png"), "{err}");
        std::fs::write(dir.path().join("split.csv"), "alpha/00.png,holdout\n").unwrap();
        let err = inspect(&source).unwrap_err().to_string();
        assert!(err.contains("line 1: split must be train, val or test, got \"holdout\""), "{err}");
    }

    #[test]
    fn corrupt_images_fail_by_name_or_are_skipped_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        split_folders(dir.path());
        let garbage = dir.path().join("train/cat/broken.png");
        write_garbage(&garbage);
        // A PNG whose header reads but whose pixel data is cut off.
        let truncated = dir.path().join("train/dog/truncated.png");
        write_image(&truncated, 32, 32, true, 9);
        let bytes = std::fs::read(&truncated).unwrap();
        std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

        let failing = source(dir.path(), Options::default());
        let err = load(&failing, Split::Train, Some(8)).unwrap_err();
        assert!(matches!(&err, DatasetError::BadImage { path, .. } if *path == garbage), "{err}");
        assert!(err.to_string().contains("broken.png"), "{err}");
        assert!(inspect(&failing).is_err());

        let skipping = source(dir.path(), Options { bad_images: BadImages::Skip, ..Options::default() });
        let loaded = load(&skipping, Split::Train, Some(8)).unwrap();
        let skipped: Vec<&std::path::Path> = loaded.skipped.iter().map(|(path, _)| path.as_path()).collect();
        assert_eq!(skipped, vec![garbage.as_path(), truncated.as_path()]);
        assert!(loaded.skipped.iter().all(|(_, reason)| !reason.is_empty()));
        assert_eq!(loaded.images.labels, vec![0, 0, 1, 1]);
        assert_eq!(loaded.images.pixels.len(), 4 * 8 * 8 * 3);
        assert_eq!(load(&skipping, Split::Val, Some(8)).unwrap().skipped, vec![]);
    }

    #[test]
    fn grey_datasets_stay_grey_and_keys_ignore_the_image_size() {
        let dir = tempfile::tempdir().unwrap();
        class_folders(dir.path());
        let source = source(dir.path(), Options::default());
        assert_eq!(inspect(&source).unwrap().channels, 1);
        let native = load(&source, Split::Train, None).unwrap().images;
        let small = load(&source, Split::Train, Some(4)).unwrap().images;
        let large = load(&source, Split::Train, Some(10)).unwrap().images;
        assert_eq!((native.channels, native.height, small.height, large.height), (1, 6, 4, 10));
        assert_eq!(native.keys, small.keys);
        assert_eq!(native.keys, large.keys);

        write_image(&dir.path().join("beta/colour.png"), 6, 6, true, 1);
        assert_eq!(inspect(&source).unwrap().channels, 3);
        assert_eq!(load(&source, Split::Train, None).unwrap().images.channels, 3);
    }

    #[test]
    fn a_folder_without_images_says_what_layout_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cat")).unwrap();
        let err = inspect(&source(dir.path(), Options::default())).unwrap_err().to_string();
        assert!(err.contains("no .jpg, .jpeg or .png images") && err.contains("class folders"), "{err}");
        let options = Options { val_fraction: 1.0, ..Options::default() };
        let err = inspect(&source(dir.path(), options)).unwrap_err().to_string();
        assert!(err.contains("val fraction must be at least 0 and below 1, got 1"), "{err}");
    }

    /// Issue 19, item 4: a header of 100000x100000 RGB pixels was summarised as it claimed,
    /// and loading at the native size aborted (an allocation of 30000000000 bytes failed).
    #[test]
    fn an_image_header_claiming_a_huge_size_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        class_folders(dir.path());
        let big = dir.path().join("alpha/big.png");
        std::fs::write(&big, png_claiming(100_000, 100_000)).unwrap();
        let source = source(dir.path(), Options::default());
        for err in [inspect(&source).unwrap_err(), load(&source, Split::Train, None).unwrap_err()] {
            assert!(matches!(&err, DatasetError::BadImage { path, .. } if *path == big), "{err}");
            assert!(err.to_string().contains("the image is 100000x100000 pixels; at most 16384x16384 are read"), "{err}");
        }
        let skipping = source.clone().with_options(Options { bad_images: BadImages::Skip, ..Options::default() });
        assert_eq!(inspect(&skipping).unwrap().height, Some(6));

        // Within the limits but so elongated that scaling it would take gigabytes.
        std::fs::remove_file(&big).unwrap();
        write_image(&dir.path().join("alpha/thin.png"), 16_000, 1, false, 1);
        let err = load(&source, Split::Train, Some(64)).unwrap_err().to_string();
        assert!(err.contains("a 16000x1 image brought to 64x64 is first scaled to 1024000x64 pixels"), "{err}");
        let err = load(&source, Split::Train, Some(5000)).unwrap_err().to_string();
        assert!(err.contains("image size must be from 1 to 4096 pixels, got 5000"), "{err}");
    }

    /// Issue 19, item 5: links inside the dataset that lead out of the roots, and the
    /// dataset's folder replaced by a link after registration, were read on the old code.
    #[test]
    fn links_and_swapped_folders_that_lead_out_of_the_roots_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        class_folders(&data);
        write_image(&outside.path().join("elsewhere/secret.png"), 6, 6, false, 1);
        let roots = Roots::new([root.path()]);
        let confined = |options: Options| source(&data, options).confined_to(roots.clone());
        // A link that stays inside the roots is followed.
        std::os::unix::fs::symlink(data.join("alpha/00.png"), data.join("beta/inside.png")).unwrap();
        let unconfined = inspect(&source(&data, Options::default())).unwrap();
        assert_eq!(inspect(&confined(Options::default())).unwrap(), unconfined);
        assert_eq!(unconfined.train_size + unconfined.val_size, 19);

        let linked = data.join("beta/linked.png");
        std::os::unix::fs::symlink(outside.path().join("elsewhere/secret.png"), &linked).unwrap();
        for bad_images in [BadImages::Fail, BadImages::Skip] {
            let err = inspect(&confined(Options { bad_images, ..Options::default() })).unwrap_err();
            assert!(matches!(&err, DatasetError::OutsideRoots { path } if *path == linked), "{err}");
            assert!(err.to_string().contains("linked.png leads outside the data roots"), "{err}");
        }
        std::fs::remove_file(&linked).unwrap();

        let linked_folder = data.join("gamma/more");
        std::os::unix::fs::symlink(outside.path().join("elsewhere"), &linked_folder).unwrap();
        let err = inspect(&confined(Options::default())).unwrap_err();
        assert!(matches!(&err, DatasetError::OutsideRoots { path } if path.ends_with("gamma/more")), "{err}");
        std::fs::remove_file(&linked_folder).unwrap();

        // Registered (inspected) while inside; then the folder is swapped for a link out.
        let source = confined(Options { val_fraction: 0.0, ..Options::default() });
        assert!(inspect(&source).is_ok());
        std::fs::rename(&data, root.path().join("moved")).unwrap();
        std::fs::create_dir_all(outside.path().join("elsewhere/cls")).unwrap();
        std::fs::rename(outside.path().join("elsewhere/secret.png"), outside.path().join("elsewhere/cls/secret.png")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("elsewhere"), &data).unwrap();
        let err = load(&source, Split::Train, None).unwrap_err();
        assert!(matches!(&err, DatasetError::OutsideRoots { path } if *path == data), "{err}");
    }
}
