//! The single entry point: a [`Source`] names a dataset on disk (or a synthetic spec),
//! [`inspect`] summarises it, [`load`] decodes one split.

use std::path::PathBuf;

use crate::files::{inspect_files, load_files};
use crate::limits::MAX_IMAGE_SIZE;
pub use crate::read::{BadImages, Loaded, Summary};
use crate::roots::Roots;
use crate::synthetic::{SyntheticSpec, generate_at};
use crate::{DatasetError, Split, cub, decode, folder, idx, npz};

/// The on-disk formats read here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// MNIST / Fashion-MNIST IDX files in a folder, gzipped or not: `train-images-idx3-ubyte`
    /// and `train-labels-idx1-ubyte` are Train, `t10k-*` are Val; no Test.
    Idx,
    /// A folder per class; class names are the sorted folder names. The first layout that
    /// applies decides the splits:
    /// 1. `ROOT/split.csv`, lines `relative/path,train|val|test`, decides each image's split
    ///    (images it does not list are left out);
    /// 2. `ROOT/train/CLASS/…` with `ROOT/val/CLASS/…` (and `ROOT/test/CLASS/…` as Test, or
    ///    as Val when there is no `val/`);
    /// 3. `ROOT/CLASS/…`: per class, files sorted by relative path, shuffled by SplitMix64
    ///    seeded from [`Options::seed`] and the class name; the first
    ///    `round(val_fraction * n)` are Val.
    ///
    /// With a grouping rule ([`Options::group_pattern`], or a third `group` column of
    /// `split.csv`) every image belongs to a group (a patient), the seeded split moves whole
    /// groups (see `folder.rs`), and a layout with a group on two sides is refused.
    ///
    /// Images are `.jpg`, `.jpeg`, `.png` (any case) at any depth under a class folder.
    ImageFolder,
    /// CUB-200-2011's own layout: `images.txt` (`id path` under `images/`),
    /// `image_class_labels.txt` (`id class_id`, from 1), `train_test_split.txt` (`id 1|0`:
    /// Train | Val), `classes.txt` (`class_id name`). Labels are `class_id - 1`; no Test.
    Cub,
    /// A MedMNIST `.npz`: `.npy` arrays `{train,val,test}_images` (`uint8`, `(N, H, W)` or
    /// `(N, H, W, 3)`) and `{train,val,test}_labels` (`(N,)` or `(N, 1)`, any integer type),
    /// stored or deflated. `test_*` is the Test split, kept for a final evaluation.
    Npz,
    /// Generated images; the source's path is a [`SyntheticSpec`] in its text form.
    Synthetic,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Idx, Format::ImageFolder, Format::Cub, Format::Npz, Format::Synthetic];

    /// `"idx"`, `"image_folder"`, `"cub"`, `"npz"` or `"synthetic"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Idx => "idx",
            Format::ImageFolder => "image_folder",
            Format::Cub => "cub",
            Format::Npz => "npz",
            Format::Synthetic => "synthetic",
        }
    }

    /// The format named by [`Format::as_str`].
    pub fn parse(name: &str) -> Result<Format, DatasetError> {
        Format::ALL.into_iter().find(|format| format.as_str() == name).ok_or_else(|| DatasetError::UnknownFormat(name.to_owned()))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Choices that change what a source loads as.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Share of each class held out as Val by the ImageFolder class-folder layout, in `[0, 1)`.
    pub val_fraction: f64,
    /// Seed of that stratified split.
    pub seed: u64,
    pub bad_images: BadImages,
    /// ImageFolder: a regular expression over each image's path relative to the root (`/`
    /// between folders); its first capture group, or the whole match, is the image's group.
    pub group_pattern: Option<String>,
}

/// The longest grouping rule accepted, and the compiled size it may reach.
const MAX_GROUP_PATTERN: usize = 500;
const MAX_GROUP_PATTERN_BYTES: usize = 1 << 20;

impl Default for Options {
    /// A 10 % stratified Val split with seed 0; bad images fail the load; no groups.
    fn default() -> Self {
        Options { val_fraction: 0.1, seed: 0, bad_images: BadImages::Fail, group_pattern: None }
    }
}

impl Options {
    /// Options from their stored form (the policy by name), checked.
    pub fn from_parts(val_fraction: f64, seed: u64, bad_images: &str, group_pattern: Option<&str>) -> Result<Options, DatasetError> {
        let bad_images =
            BadImages::parse(bad_images).ok_or_else(|| DatasetError::InvalidOption(format!("bad_images must be fail or skip, got {bad_images:?}")))?;
        let options = Options { val_fraction, seed, bad_images, group_pattern: group_pattern.map(str::to_owned) };
        options.check()?;
        Ok(options)
    }

    pub(crate) fn check(&self) -> Result<(), DatasetError> {
        if !(0.0..1.0).contains(&self.val_fraction) {
            return Err(DatasetError::InvalidOption(format!("val fraction must be at least 0 and below 1, got {}", self.val_fraction)));
        }
        self.group_regex()?;
        Ok(())
    }

    /// The grouping rule compiled, or an error that says what is wrong with it.
    pub(crate) fn group_regex(&self) -> Result<Option<regex::Regex>, DatasetError> {
        let Some(pattern) = &self.group_pattern else { return Ok(None) };
        let invalid = |reason: String| DatasetError::InvalidOption(format!("group pattern {pattern:?}: {reason}"));
        if pattern.is_empty() || pattern.len() > MAX_GROUP_PATTERN {
            return Err(invalid(format!("give a regular expression of 1 to {MAX_GROUP_PATTERN} characters")));
        }
        let regex =
            regex::RegexBuilder::new(pattern).size_limit(MAX_GROUP_PATTERN_BYTES).build().map_err(|e| invalid(format!("not a regular expression: {e}")))?;
        Ok(Some(regex))
    }
}

/// A dataset: its format, where it is, the options it loads with, and where it may read.
///
/// Build one with [`Source::new`] and the `with_` methods rather than a struct literal, so
/// that a new field does not break callers.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub format: Format,
    /// The dataset's folder (IDX, ImageFolder, CUB), its file (npz), or a
    /// [`SyntheticSpec`] in its text form (synthetic).
    pub path: PathBuf,
    pub options: Options,
    /// The folders every file read must lie under (checked on each file as it is opened);
    /// [`Roots::unconfined`] by default. A server reading datasets that its users name sets
    /// its data roots here.
    pub roots: Roots,
}

impl Source {
    /// An unconfined source with the default [`Options`].
    pub fn new(format: Format, path: impl Into<PathBuf>) -> Source {
        Source { format, path: path.into(), options: Options::default(), roots: Roots::unconfined() }
    }

    /// This source with `options`.
    pub fn with_options(self, options: Options) -> Source {
        Source { options, ..self }
    }

    /// This source reading only under `roots`.
    pub fn confined_to(self, roots: Roots) -> Source {
        Source { roots, ..self }
    }

    /// The synthetic dataset of `spec`.
    pub fn synthetic(spec: &SyntheticSpec) -> Source {
        Source::new(Format::Synthetic, spec.to_string())
    }

    fn synthetic_spec(&self) -> Result<SyntheticSpec, DatasetError> {
        SyntheticSpec::parse(&self.path.to_string_lossy())
    }

    /// The files whose sizes and modification times decide what this source loads as
    /// (empty for a synthetic source).
    pub(crate) fn files(&self) -> Result<Vec<PathBuf>, DatasetError> {
        match self.format {
            Format::Idx => Ok(idx::files(&self.path)),
            Format::ImageFolder => folder::source_files(&self.path, &self.roots),
            Format::Cub => cub::source_files(&self.path, &self.roots),
            Format::Npz => Ok(vec![self.path.clone()]),
            Format::Synthetic => Ok(Vec::new()),
        }
    }
}

impl TryFrom<&protocol::DatasetOptions> for Options {
    type Error = DatasetError;

    /// The options as stored with a registered dataset (the policy by name), checked.
    fn try_from(options: &protocol::DatasetOptions) -> Result<Options, DatasetError> {
        Options::from_parts(options.val_fraction, options.split_seed, &options.bad_images, options.group_pattern.as_deref())
    }
}

/// A registered dataset's description for the API and the workers: `name`, where `source`
/// is, what `summary` found, and the options it loads with. Mixed image sizes read as 0.
pub fn describe(name: &str, source: &Source, summary: Summary, options: protocol::DatasetOptions) -> protocol::DatasetInfo {
    protocol::DatasetInfo {
        name: name.to_owned(),
        format: source.format.as_str().to_owned(),
        path: source.path.display().to_string(),
        num_classes: summary.num_classes as u32,
        class_names: summary.class_names,
        train_size: summary.train_size as u64,
        val_size: summary.val_size as u64,
        image_height: summary.height.unwrap_or(0) as u32,
        image_width: summary.width.unwrap_or(0) as u32,
        channels: summary.channels as u32,
        options,
        groups: summary.groups,
    }
}

fn numbered_classes(count: usize) -> Vec<String> {
    (0..count).map(|label| label.to_string()).collect()
}

/// Summarises `source` cheaply: lists and image headers for ImageFolder and CUB, array
/// headers and labels for npz, the files for IDX, the spec for synthetic.
pub fn inspect(source: &Source) -> Result<Summary, DatasetError> {
    source.options.check()?;
    let policy = source.options.bad_images;
    match source.format {
        Format::ImageFolder => inspect_files(&read_folder(source)?, policy),
        Format::Cub => inspect_files(&cub::read(&source.path, &source.roots)?, policy),
        Format::Idx => {
            let summary = idx::inspect_dir(&source.path, &source.roots)?;
            Ok(Summary {
                num_classes: summary.num_classes,
                class_names: numbered_classes(summary.num_classes),
                train_size: summary.train_size,
                val_size: summary.val_size,
                test_size: 0,
                height: Some(summary.height),
                width: Some(summary.width),
                channels: 1,
                groups: None,
            })
        }
        Format::Npz => npz::inspect(&source.path, &source.roots),
        Format::Synthetic => {
            let spec = source.synthetic_spec()?;
            Ok(Summary {
                num_classes: spec.classes as usize,
                class_names: spec.class_names(),
                train_size: spec.classes as usize * spec.train_per_class as usize,
                val_size: spec.classes as usize * spec.val_per_class as usize,
                test_size: 0,
                height: Some(spec.size as usize),
                width: Some(spec.size as usize),
                channels: spec.channels as usize,
                groups: None,
            })
        }
    }
}

/// Decodes `split` of `source`, every image brought to `image_size×image_size` (shorter side
/// scaled to the size, bilinear, then the centre cropped), or kept at its native size when
/// `image_size` is `None` (an error naming two images that differ, if they do).
pub fn load(source: &Source, split: Split, image_size: Option<u32>) -> Result<Loaded, DatasetError> {
    source.options.check()?;
    if let Some(size) = image_size.filter(|size| !(1..=MAX_IMAGE_SIZE).contains(size)) {
        return Err(DatasetError::InvalidOption(format!("image size must be from 1 to {MAX_IMAGE_SIZE} pixels, got {size}")));
    }
    let policy = source.options.bad_images;
    let images = match source.format {
        Format::ImageFolder => return load_files(&read_folder(source)?, split, image_size, policy),
        Format::Cub => return load_files(&cub::read(&source.path, &source.roots)?, split, image_size, policy),
        Format::Idx => {
            let set = idx::load_split(&source.path, &source.roots, split)?;
            match image_size {
                Some(size) if (size as usize, size as usize) != (set.height, set.width) => {
                    decode::raw_image_set(&set.pixels, set.labels, set.height, set.width, set.channels, image_size)
                        .map_err(|reason| DatasetError::TooLarge { path: source.path.clone(), reason })?
                }
                _ => set,
            }
        }
        Format::Npz => npz::load(&source.path, &source.roots, split, image_size)?,
        Format::Synthetic => generate_at(&source.synthetic_spec()?, split, image_size)?,
    };
    Ok(Loaded { images, skipped: Vec::new(), from_cache: false })
}

fn read_folder(source: &Source) -> Result<crate::files::FileDataset, DatasetError> {
    folder::read(&source.path, &source.roots, &source.options)
}

/// The path of `source` as a string for the cache's identity (absolute where it exists).
pub(crate) fn identity_path(source: &Source) -> String {
    match source.format {
        Format::Synthetic => source.path.to_string_lossy().into_owned(),
        _ => std::fs::canonicalize(&source.path).unwrap_or_else(|_| source.path.clone()).to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyntheticSpec, encode_idx, load_idx_split};

    #[test]
    fn format_names_round_trip_and_unknown_ones_list_the_known() {
        for format in Format::ALL {
            assert_eq!(Format::parse(format.as_str()).unwrap(), format);
        }
        let err = Format::parse("folder").unwrap_err().to_string();
        assert!(err.contains("expected one of idx, image_folder, cub, npz, synthetic"), "{err}");
    }

    #[test]
    fn idx_through_the_entry_point_keeps_its_keys_at_any_size() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..3 * 16).map(|i| i as u8).collect();
        std::fs::write(dir.path().join("train-images-idx3-ubyte"), encode_idx(&[3, 4, 4], &pixels)).unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), encode_idx(&[3], &[1, 0, 1])).unwrap();
        std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), encode_idx(&[1, 4, 4], &[0; 16])).unwrap();
        std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), encode_idx(&[1], &[0])).unwrap();
        let source = Source::new(Format::Idx, dir.path());
        let direct = load_idx_split(dir.path(), Split::Train).unwrap();
        let native = load(&source, Split::Train, None).unwrap().images;
        assert_eq!(native, direct);
        assert_eq!(direct.sample_keys(), (0..3).map(|i| crate::sample_key(direct.image(i).unwrap(), direct.labels[i])).collect::<Vec<_>>());
        let resized = load(&source, Split::Train, Some(8)).unwrap().images;
        assert_eq!((resized.height, resized.width, resized.channels), (8, 8, 1));
        assert_eq!(resized.keys, direct.keys);
        let summary = inspect(&source).unwrap();
        assert_eq!((summary.train_size, summary.val_size, summary.num_classes, summary.channels), (3, 1, 2, 1));
        assert!(load(&source, Split::Test, None).unwrap_err().to_string().contains("t10k is the Val split"));
        assert!(load(&source, Split::Train, Some(0)).is_err());
    }

    #[test]
    fn synthetic_sources_carry_their_spec_as_the_path() {
        let spec = SyntheticSpec { classes: 3, train_per_class: 2, val_per_class: 1, size: 6, channels: 1, seed: 5 };
        let source = Source::synthetic(&spec);
        assert_eq!(source.path.to_string_lossy(), "classes=3,train_per_class=2,val_per_class=1,size=6,channels=1,seed=5");
        let summary = inspect(&source).unwrap();
        assert_eq!((summary.train_size, summary.val_size, summary.height, summary.channels), (6, 3, Some(6), 1));
        let small = load(&source, Split::Train, Some(3)).unwrap().images;
        assert_eq!((small.height, small.len()), (3, 6));
        assert_eq!(small.keys, crate::generate(&spec, Split::Train).unwrap().keys);
        let broken = Source::new(Format::Synthetic, "classes=3");
        assert!(inspect(&broken).unwrap_err().to_string().contains("is missing"));
    }
}
