//! Image datasets as forgetlab reads them: decoded to `u8` pixels, row-major, channel-last,
//! at one fixed size, with integer labels and a stable content key per sample.
//!
//! Formats ([`Format`]): IDX (MNIST, Fashion-MNIST), ImageFolder (a folder per class, as
//! OCT2017 and OCTDL ship), CUB-200-2011's own layout, MedMNIST `.npz`, and a generated
//! synthetic set for tests. [`inspect`] summarises a [`Source`] cheaply, [`load`] decodes one
//! split, [`load_cached`] decodes it once into a cache file and reads that afterwards.
//!
//! Sizes: images are brought to `S×S` at load time by scaling the shorter side to `S`
//! (bilinear) and cropping the centre; `image_size = None` keeps the native size, which must
//! then be the same for every image. Channels: 1 when every image of the dataset is greyscale,
//! else 3 (RGB; alpha dropped, grey images converted).
//!
//! Every file a reader opens is confined to the source's [`Roots`] (checked on the open
//! descriptor), and every allocation is bounded by the bytes actually present (see
//! `limits.rs`): a hostile file gives a [`DatasetError`], never a panic or an abort.
//!
//! Not here: tensors, augmentation, normalisation (the trainer does those on its device).

mod cache;
mod cub;
mod decode;
mod files;
mod folder;
mod idx;
mod key;
mod limits;
mod npy;
mod npz;
mod read;
mod roots;
mod source;
mod synthetic;
#[cfg(test)]
mod testing;

pub use cache::{cache_path, load_cached};
pub use idx::{IdxSummary, encode_idx, inspect_idx_dir, load_idx_split};
pub use key::sample_key;
pub use npy::{encode_f32_array, read_f32_array};
pub use roots::Roots;
pub use source::{BadImages, Format, Loaded, Options, Source, Summary, describe, inspect, load};
pub use synthetic::{SyntheticSpec, generate};

use std::path::PathBuf;

/// Which split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    /// Held-out data evaluated each epoch (the IDX "t10k" files, MedMNIST's `val` arrays,
    /// CUB's test half, an ImageFolder's `val/` folder).
    Val,
    /// Data kept for a final evaluation, where a dataset ships it apart from `Val`: MedMNIST's
    /// `test` arrays, an ImageFolder's `test/` folder next to `val/`, `test` lines of a split file.
    Test,
}

impl Split {
    /// `"train"`, `"val"` or `"test"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decoded images of one split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `len * height * width * channels` bytes, sample after sample.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    /// [`sample_key`] of each sample, over its original bytes (the encoded file for
    /// ImageFolder and CUB, the stored pixels for IDX, npz and synthetic), so a key does not
    /// depend on the image size the set was loaded at.
    pub keys: Vec<String>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image_bytes(&self) -> usize {
        self.height * self.width * self.channels
    }
    /// The pixels of sample `index`, or `None` past the end (any index: a thumbnail URL's
    /// index comes from the request, and `index * size` must not overflow).
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.image_bytes();
        let start = index.checked_mul(size)?;
        self.pixels.get(start..start.checked_add(size)?)
    }
    /// Content keys of every sample, in order (a copy of [`ImageSet::keys`]).
    pub fn sample_keys(&self) -> Vec<String> {
        self.keys.clone()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source} (check that the folder exists and is writable)")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid IDX file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("no {what} file in {dir}: expected one of {expected}")]
    Missing { dir: PathBuf, what: String, expected: String },
    #[error("{images} has {image_count} images but {labels} has {label_count} labels")]
    CountMismatch { images: PathBuf, image_count: usize, labels: PathBuf, label_count: usize },
    #[error("cannot decode image {path}: {reason} (replace or remove the file, or load with bad images = skip)")]
    BadImage { path: PathBuf, reason: String },
    #[error("{path}, line {line}: {reason}")]
    Malformed { path: PathBuf, line: usize, reason: String },
    #[error("{path}: array {array}: {reason}")]
    Npy { path: PathBuf, array: String, reason: String },
    #[error("{path} is not a readable .npz (zip) archive: {reason}")]
    Archive { path: PathBuf, reason: String },
    #[error(
        "images differ in size ({first} is {}x{}, {other} is {}x{}): pass an image size to bring them all to one size",
        first_size.0, first_size.1, other_size.0, other_size.1
    )]
    MixedSizes { first: PathBuf, first_size: (u32, u32), other: PathBuf, other_size: (u32, u32) },
    #[error("the dataset at {path} has no {split} split: {hint}")]
    NoSplit { path: PathBuf, split: Split, hint: String },
    #[error("no .jpg, .jpeg or .png images under {dir}: expected class folders (ROOT/CLASS/*.png) or train/ and val/ folders of class folders")]
    NoImages { dir: PathBuf },
    #[error("{0}")]
    InvalidOption(String),
    /// A grouping rule found one group (a patient) on two sides of the split.
    #[error(
        "group {group:?} is on two sides: {first} is {first_split} and {second} is {second_split}; a group (a patient) must stay on one side, or validation sees what training saw: move its images to one split (train/ and val/ folders, or split.csv), let the seeded split place them (split.csv's `auto`), or leave the grouping rule out"
    )]
    GroupOnTwoSides { group: String, first: String, first_split: Split, second: String, second_split: Split },
    #[error("unknown dataset format {0:?}: expected one of idx, image_folder, cub, npz, synthetic")]
    UnknownFormat(String),
    #[error("synthetic dataset spec {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },
    /// A file or folder the reader opened lies outside the source's [`Roots`]. The message
    /// names the path as the dataset names it, not where it leads.
    #[error("{path} leads outside the data roots: a dataset may read only files under them (a link, `..` or a folder moved since registration is refused)")]
    OutsideRoots { path: PathBuf },
    /// Reading would take more memory than the file can justify, or than the limits allow.
    #[error("{path} is too large: {reason}")]
    TooLarge { path: PathBuf, reason: String },
}

/// Class names of Fashion-MNIST, in label order (Xiao et al. 2017).
pub const FASHION_MNIST_CLASSES: [&str; 10] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
