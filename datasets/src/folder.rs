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
//! A split file's line may say `auto` instead of a split: such images get the seeded split
//! above, among themselves. A third field, `path,split,group`, names the image's group.
//!
//! Groups (issue 22, item 6: OCTDL has several scans per patient, and a patient on both sides
//! leaks into validation). With a grouping rule (the options' group pattern, a regular
//! expression over the relative path whose first capture group or whole match is the
//! group, or split.csv's group field, which wins where both give one) every image needs a
//! group, and:
//! - the seeded split moves whole groups: the groups, sorted by name, are shuffled by
//!   SplitMix64 seeded from the seed and `"groups"`; in that order a group goes to Val when
//!   that brings the per-class Val counts closer to their targets `round(val_fraction * n_c)`
//!   (in the sum over classes of `|val_c - target_c|`), else to Train. This is a greedy
//!   stratified group split in the manner of scikit-learn's `StratifiedGroupKFold`;
//!   per-class Val shares then deviate from the target by at most about one group's size;
//! - any layout that puts one group on two sides (train/val folders, split.csv) is refused
//!   with an error naming the group and two of its images;
//! - the summary counts the groups per side.
//! Images are `.jpg`, `.jpeg` and `.png` files (any case), found at any depth under a class
//! folder; other files and folders whose name starts with `.` are ignored. Links are
//! followed, as torchvision does, but every folder listed and every file read must lie
//! under the source's [`Roots`]: a link (to a file or a folder) that leads out fails the
//! load with an error naming it, under either bad-image policy.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use protocol::DatasetGroups;

use crate::files::{FileDataset, FileSample};
use crate::limits::MAX_LIST_BYTES;
use crate::roots::{Roots, list_dir, read_text};
use crate::{DatasetError, Options, Split};
use dynamics::rng::{SplitMix64, stream_seed};

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

/// How an image's split is decided.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Assign {
    Fixed(Split),
    /// The seeded (stratified, grouped where there are groups) split.
    Seeded,
}

/// Groups of the listing: each image's group as an index into `names` (sorted).
struct Groups {
    of: Vec<Option<u32>>,
    names: Vec<String>,
}

/// Reads the layout of the ImageFolder at `root` and assigns every image a split.
pub(crate) fn read(root: &Path, roots: &Roots, options: &Options) -> Result<FileDataset, DatasetError> {
    let listing = list(root, roots)?;
    let pattern = options.group_regex()?;
    let split_file = root.join(SPLIT_FILE);
    let (assigned, listed_groups): (Vec<Option<Assign>>, HashMap<usize, String>) = if split_file.is_file() {
        let lines = read_split_file(&split_file, roots, &listing)?;
        let assigned = (0..listing.found.len()).map(|i| lines.get(&i).map(|(assign, _)| *assign)).collect();
        let groups = lines.into_iter().filter_map(|(i, (_, group))| Some((i, group?))).collect();
        (assigned, groups)
    } else if listing.found.iter().all(|found| found.folder_split.is_some()) {
        (listing.found.iter().map(|found| found.folder_split.map(Assign::Fixed)).collect(), HashMap::new())
    } else {
        (vec![Some(Assign::Seeded); listing.found.len()], HashMap::new())
    };
    let groups = groups_of(&listing, &assigned, listed_groups, pattern.as_ref())?;

    let seeded: Vec<usize> = (0..assigned.len()).filter(|&i| assigned[i] == Some(Assign::Seeded)).collect();
    let seeded_splits = match &groups {
        Some(groups) => grouped_stratified(&listing, &seeded, groups, options.val_fraction, options.seed),
        None => stratified(&listing, &seeded, options.val_fraction, options.seed),
    };
    let mut splits: Vec<Option<Split>> = assigned
        .iter()
        .map(|assign| match assign {
            Some(Assign::Fixed(split)) => Some(*split),
            _ => None,
        })
        .collect();
    for (&i, split) in seeded.iter().zip(seeded_splits) {
        splits[i] = Some(split);
    }
    let group_counts = groups.as_ref().map(|groups| count_groups(&listing, &splits, groups)).transpose()?;

    let mut samples: Vec<(&Found, Split)> = listing.found.iter().zip(splits).filter_map(|(found, split)| Some((found, split?))).collect();
    samples.sort_by(|(a, _), (b, _)| a.label.cmp(&b.label).then_with(|| a.relative.cmp(&b.relative)));
    Ok(FileDataset {
        root: root.to_owned(),
        samples: samples.into_iter().map(|(found, split)| FileSample { path: root.join(&found.relative), label: found.label, split }).collect(),
        class_names: listing.class_names,
        no_test_hint: "add a test/ folder next to train/ and val/, or test lines to split.csv".into(),
        roots: roots.clone(),
        groups: group_counts,
    })
}

/// Each included image's group, from split.csv's group field or else the pattern; `None`
/// when there is no grouping rule. An included image without a group is an error.
fn groups_of(
    listing: &Listing,
    assigned: &[Option<Assign>],
    listed: HashMap<usize, String>,
    pattern: Option<&regex::Regex>,
) -> Result<Option<Groups>, DatasetError> {
    if pattern.is_none() && listed.is_empty() {
        return Ok(None);
    }
    let mut named: Vec<Option<String>> = vec![None; listing.found.len()];
    for (i, found) in listing.found.iter().enumerate() {
        if assigned[i].is_none() {
            continue;
        }
        let group = match (listed.get(&i), pattern) {
            (Some(group), _) => group.clone(),
            (None, Some(pattern)) => {
                let captures = pattern.captures(&found.relative).ok_or_else(|| {
                    DatasetError::InvalidOption(format!(
                        "{} does not match the group pattern {:?}: every image needs a group (fix the pattern, which is matched against the path relative to the dataset root, or give the image's group as a third field of split.csv)",
                        found.relative,
                        pattern.as_str()
                    ))
                })?;
                let matched = captures.get(1).or_else(|| captures.get(0)).map_or("", |m| m.as_str());
                if matched.is_empty() {
                    return Err(DatasetError::InvalidOption(format!(
                        "the group pattern {:?} matches {} with an empty group: make its capture group match at least one character",
                        pattern.as_str(),
                        found.relative
                    )));
                }
                matched.to_owned()
            }
            (None, None) => {
                return Err(DatasetError::InvalidOption(format!(
                    "split.csv names the groups of some images but not of {}: give every line a group (path,split,group), or set a group pattern for the rest",
                    found.relative
                )));
            }
        };
        named[i] = Some(group);
    }
    let names: Vec<String> = named.iter().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let of = named.iter().map(|group| group.as_ref().map(|group| names.binary_search(group).unwrap_or_default() as u32)).collect();
    Ok(Some(Groups { of, names }))
}

/// Groups per side; a group with images on two sides is an error naming two of them.
fn count_groups(listing: &Listing, splits: &[Option<Split>], groups: &Groups) -> Result<DatasetGroups, DatasetError> {
    let mut side: Vec<Option<(Split, usize)>> = vec![None; groups.names.len()];
    for (i, split) in splits.iter().enumerate() {
        let (Some(split), Some(group)) = (split, groups.of[i]) else { continue };
        match side[group as usize] {
            None => side[group as usize] = Some((*split, i)),
            Some((first_split, first)) if first_split != *split => {
                return Err(DatasetError::GroupOnTwoSides {
                    group: groups.names[group as usize].clone(),
                    first: listing.found[first].relative.clone(),
                    first_split,
                    second: listing.found[i].relative.clone(),
                    second_split: *split,
                });
            }
            Some(_) => {}
        }
    }
    let count = |wanted: Split| side.iter().filter(|s| matches!(s, Some((split, _)) if *split == wanted)).count() as u64;
    Ok(DatasetGroups { train: count(Split::Train), val: count(Split::Val), test: count(Split::Test) })
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
    let class_names: Vec<String> = class_folders.iter().map(|(_, class, _)| class.clone()).collect::<BTreeSet<_>>().into_iter().collect();

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

/// The split file as a map from the listing's index to how the image's split is decided and
/// its group, if the line names one; every listed path must be an image of the listing.
fn read_split_file(path: &Path, roots: &Roots, listing: &Listing) -> Result<HashMap<usize, (Assign, Option<String>)>, DatasetError> {
    let text = read_text(path, roots, MAX_LIST_BYTES, "a split file")?;
    let known: HashMap<&str, usize> = listing.found.iter().enumerate().map(|(i, found)| (found.relative.as_str(), i)).collect();
    let mut assigned: HashMap<usize, (Assign, Option<String>)> = HashMap::new();
    let mut first_line: HashMap<usize, usize> = HashMap::new();
    let assign_of = |word: &str| match word.trim() {
        "train" => Some(Assign::Fixed(Split::Train)),
        "val" => Some(Assign::Fixed(Split::Val)),
        "test" => Some(Assign::Fixed(Split::Test)),
        "auto" => Some(Assign::Seeded),
        _ => None,
    };
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let malformed = |reason: String| DatasetError::Malformed { path: path.to_owned(), line: line_number, reason };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.eq_ignore_ascii_case("path,split") || line.eq_ignore_ascii_case("path,split,group") {
            continue;
        }
        // `path,split,group` when the middle of the last two fields is a split; else
        // `path,split` (a path may hold commas).
        let fields: Vec<&str> = line.rsplitn(3, ',').collect();
        let (relative, split, group) = match fields.as_slice() {
            [group, split, relative] if assign_of(split).is_some() => (*relative, *split, Some(group.trim())),
            [split, _, ..] => (line[..line.len() - split.len() - 1].trim_end(), *split, None),
            _ => return Err(malformed(format!("expected `relative/path,train|val|test|auto[,group]`, got {line:?}"))),
        };
        let assign = assign_of(split).ok_or_else(|| malformed(format!("split must be train, val, test or auto, got {:?}", split.trim())))?;
        if group == Some("") {
            return Err(malformed("the group field is empty: name the image's group (a patient, say), or leave the field out".into()));
        }
        let relative = relative.trim().replace('\\', "/");
        let relative = relative.trim_start_matches("./");
        let Some(&found) = known.get(relative) else {
            return Err(malformed(format!(
                "no image {relative} under the dataset root (paths are relative to the root, with / between folders, and name .jpg, .jpeg or .png files in class folders)"
            )));
        };
        if let Some(first) = first_line.insert(found, line_number) {
            return Err(malformed(format!("{relative} is already listed on line {first}")));
        }
        assigned.insert(found, (assign, group.map(str::to_owned)));
    }
    Ok(assigned)
}

/// The stratified split of the images `seeded` (indices into the listing), in that order
/// (see the module documentation).
fn stratified(listing: &Listing, seeded: &[usize], val_fraction: f64, seed: u64) -> Vec<Split> {
    let found = &listing.found;
    let mut splits = vec![Split::Train; seeded.len()];
    for (label, class) in listing.class_names.iter().enumerate() {
        let mut members: Vec<usize> = (0..seeded.len()).filter(|&k| found[seeded[k]].label == label as u32).collect();
        members.sort_by(|&a, &b| found[seeded[a]].relative.cmp(&found[seeded[b]].relative));
        SplitMix64::new(stream_seed(seed, class)).shuffle(&mut members);
        let val_count = (val_fraction * members.len() as f64).round() as usize;
        for &member in members.iter().take(val_count) {
            splits[member] = Split::Val;
        }
    }
    splits
}

/// The grouped stratified split of the images `seeded`, in that order: whole groups go to
/// Val or Train (see the module documentation).
fn grouped_stratified(listing: &Listing, seeded: &[usize], groups: &Groups, val_fraction: f64, seed: u64) -> Vec<Split> {
    let classes = listing.class_names.len();
    // Per group: its images (positions in `seeded`) and its count per class.
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); groups.names.len()];
    let mut counts: Vec<Vec<i64>> = vec![vec![0; classes]; groups.names.len()];
    let mut totals = vec![0i64; classes];
    for (k, &i) in seeded.iter().enumerate() {
        let group = groups.of[i].expect("every seeded image has a group") as usize;
        let label = listing.found[i].label as usize;
        members[group].push(k);
        counts[group][label] += 1;
        totals[label] += 1;
    }
    let targets: Vec<i64> = totals.iter().map(|&n| (val_fraction * n as f64).round() as i64).collect();
    let mut order: Vec<usize> = (0..groups.names.len()).filter(|&g| !members[g].is_empty()).collect();
    SplitMix64::new(stream_seed(seed, "groups")).shuffle(&mut order);
    let mut val = vec![0i64; classes];
    let mut splits = vec![Split::Train; seeded.len()];
    for group in order {
        let deviation = |add: bool| -> i64 { (0..classes).map(|c| (val[c] + if add { counts[group][c] } else { 0 } - targets[c]).abs()).sum() };
        if deviation(true) < deviation(false) {
            for c in 0..classes {
                val[c] += counts[group][c];
            }
            for &k in &members[group] {
                splits[k] = Split::Val;
            }
        }
    }
    splits
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::testing::{png_claiming, write_garbage, write_image};
    use crate::{BadImages, DatasetError, Format, Options, Roots, Source, Split, inspect, load, sample_key};

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
        let options = Options { val_fraction: 0.4, seed: 11, bad_images: BadImages::Fail, group_pattern: None };
        let source = source(dir.path(), options.clone());
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
        let other_seeds: Vec<Vec<String>> =
            (0..5).map(|seed| load(&self::source(dir.path(), Options { seed, ..options.clone() }), Split::Val, None).unwrap().images.keys).collect();
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
        assert!(err.contains("line 1: split must be train, val, test or auto, got \"holdout\""), "{err}");
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

    /// Patients P00..P29 in class folders, 1 to 4 scans each, most patients in one class and
    /// every fifth also in the next: `CLASS/Pnn_k.png`.
    fn patient_folders(root: &std::path::Path) -> usize {
        let classes = ["amd", "dme", "normal"];
        for patient in 0..30 {
            let class = patient % 3;
            for scan in 0..(1 + patient % 4) {
                write_image(&root.join(format!("{}/P{patient:02}_{scan}.png", classes[class])), 4, 4, true, (patient * 7 + scan) as u8);
            }
            if patient % 5 == 0 {
                write_image(&root.join(format!("{}/P{patient:02}_9.png", classes[(class + 1) % 3])), 4, 4, true, patient as u8);
            }
        }
        30
    }

    fn patient_of(path: &std::path::Path) -> String {
        path.file_name().unwrap().to_string_lossy().split('_').next().unwrap().to_owned()
    }

    /// Patient → the set of splits its images are on, as `read` assigned them.
    fn sides(root: &std::path::Path, options: &Options) -> std::collections::BTreeMap<String, BTreeSet<Split>> {
        let dataset = super::read(root, &Roots::unconfined(), options).unwrap();
        let mut sides: std::collections::BTreeMap<String, BTreeSet<Split>> = Default::default();
        for sample in &dataset.samples {
            sides.entry(patient_of(&sample.path)).or_default().insert(sample.split);
        }
        sides
    }

    #[test]
    fn a_group_pattern_keeps_every_patient_on_one_side_of_the_seeded_split() {
        let dir = tempfile::tempdir().unwrap();
        let patients = patient_folders(dir.path());
        let ungrouped = Options { val_fraction: 0.3, ..Options::default() };
        // The leak this fixes: split image by image, some patient is on both sides.
        let leaks = |options: &Options| sides(dir.path(), options).values().filter(|s| s.len() > 1).count();
        assert!((0..4).all(|seed| leaks(&Options { seed, ..ungrouped.clone() }) > 0), "the per-image split leaks patients");

        let grouped = Options { group_pattern: Some(r"/(P\d+)_".into()), ..ungrouped.clone() };
        for seed in 0..8 {
            let options = Options { seed, ..grouped.clone() };
            assert_eq!(leaks(&options), 0, "seed {seed}: a patient on two sides");
            let summary = inspect(&source(dir.path(), options.clone())).unwrap();
            let groups = summary.groups.expect("group counts");
            assert_eq!(groups.train + groups.val, patients as u64, "seed {seed}: {groups:?}");
            assert!(groups.val > 0 && groups.train > 0 && groups.test == 0, "{groups:?}");
            // Stratified: per class, Val is within one patient's scans (at most 4) of
            // round(0.3 * n_c).
            let dataset = super::read(dir.path(), &Roots::unconfined(), &options).unwrap();
            for label in 0..3 {
                let of_class: Vec<_> = dataset.samples.iter().filter(|s| s.label == label).collect();
                let val = of_class.iter().filter(|s| s.split == Split::Val).count() as i64;
                let target = (0.3 * of_class.len() as f64).round() as i64;
                assert!((val - target).abs() <= 4, "seed {seed}, class {label}: {val} val of {}, target {target}", of_class.len());
            }
        }
        let val_keys = |seed| load(&source(dir.path(), Options { seed, ..grouped.clone() }), Split::Val, None).unwrap().images.keys;
        assert_eq!(val_keys(3), val_keys(3), "same seed, same split");
        assert!((0..4).any(|seed| val_keys(seed) != val_keys(3)), "the seed changes the split");
        // Without a grouping rule there are no counts (and nothing else changes).
        assert_eq!(inspect(&source(dir.path(), ungrouped)).unwrap().groups, None);
    }

    #[test]
    fn a_layout_with_a_patient_on_two_sides_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        write_image(&dir.path().join("train/amd/P01_0.png"), 4, 4, true, 1);
        write_image(&dir.path().join("train/amd/P02_0.png"), 4, 4, true, 2);
        write_image(&dir.path().join("val/amd/P01_1.png"), 4, 4, true, 3);
        write_image(&dir.path().join("val/normal/P03_0.png"), 4, 4, true, 4);
        let options = Options { group_pattern: Some(r"(P\d+)_".into()), ..Options::default() };
        let err = inspect(&source(dir.path(), options.clone())).unwrap_err();
        assert!(matches!(err, DatasetError::GroupOnTwoSides { ref group, .. } if group == "P01"), "{err}");
        let text = err.to_string();
        assert!(text.contains("train/amd/P01_0.png is train") && text.contains("val/amd/P01_1.png is val"), "{text}");

        std::fs::rename(dir.path().join("val/amd/P01_1.png"), dir.path().join("train/amd/P01_1.png")).unwrap();
        let summary = inspect(&source(dir.path(), options)).unwrap();
        assert_eq!(summary.groups, Some(protocol::DatasetGroups { train: 2, val: 1, test: 0 }));
    }

    #[test]
    fn split_csv_names_groups_and_leaves_auto_lines_to_the_grouped_split() {
        let dir = tempfile::tempdir().unwrap();
        patient_folders(dir.path());
        let mut lines = String::from("path,split,group\n");
        let dataset = super::read(dir.path(), &Roots::unconfined(), &Options::default()).unwrap();
        for sample in &dataset.samples {
            let relative = sample.path.strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned();
            // Patient 0 is the held-out test patient; the rest are placed by the seed, under
            // a group name unlike their file names (so the column, not a pattern, decides).
            let patient = patient_of(&sample.path);
            let split = if patient == "P00" { "test" } else { "auto" };
            lines.push_str(&format!("{relative},{split},subject-{patient}\n"));
        }
        std::fs::write(dir.path().join("split.csv"), &lines).unwrap();
        let options = Options { val_fraction: 0.3, ..Options::default() };
        let summary = inspect(&source(dir.path(), options.clone())).unwrap();
        let groups = summary.groups.expect("groups from the column");
        assert_eq!((groups.train + groups.val, groups.test), (29, 1), "{groups:?}");
        assert!(sides(dir.path(), &options).values().all(|s| s.len() == 1));

        // A group column on some lines only, without a pattern for the rest, says so.
        std::fs::write(dir.path().join("split.csv"), "amd/P00_0.png,train,a\namd/P03_0.png,val\n").unwrap();
        let err = inspect(&source(dir.path(), options.clone())).unwrap_err().to_string();
        assert!(err.contains("not of amd/P03_0.png"), "{err}");
        std::fs::write(dir.path().join("split.csv"), "amd/P00_0.png,train,\n").unwrap();
        let err = inspect(&source(dir.path(), options)).unwrap_err().to_string();
        assert!(err.contains("line 1: the group field is empty"), "{err}");
    }

    #[test]
    fn a_group_pattern_that_misses_an_image_or_does_not_parse_says_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        patient_folders(dir.path());
        write_image(&dir.path().join("normal/scan-without-patient.png"), 4, 4, true, 9);
        let options = |pattern: &str| Options { group_pattern: Some(pattern.into()), ..Options::default() };
        let err = inspect(&source(dir.path(), options(r"(P\d+)_"))).unwrap_err().to_string();
        assert!(err.contains("normal/scan-without-patient.png does not match the group pattern"), "{err}");
        let err = inspect(&source(dir.path(), options(r"(P\d+"))).unwrap_err().to_string();
        assert!(err.contains("not a regular expression"), "{err}");
        let err = inspect(&source(dir.path(), options(""))).unwrap_err().to_string();
        assert!(err.contains("give a regular expression"), "{err}");
        let err = inspect(&source(dir.path(), options(r"(x?)"))).unwrap_err().to_string();
        assert!(err.contains("with an empty group"), "{err}");
    }
}
