//! Image datasets as forgetlab reads them: decoded to `u8` pixels, row-major, channel-last,
//! with integer labels and a stable content key per sample.
//!
//! Formats: IDX (MNIST, Fashion-MNIST), gzipped or not. More formats (ImageFolder, CUB,
//! MedMNIST) belong here too, each returning the same [`ImageSet`].
//!
//! Not here: tensors, resizing, augmentation (the trainer does those on its device).

mod idx;
mod key;

pub use idx::{encode_idx, inspect_idx_dir, load_idx_split, IdxSummary};
pub use key::sample_key;

use std::path::PathBuf;

/// Which split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    /// Held-out data evaluated each epoch (the IDX "t10k" files).
    Val,
}

/// Decoded images of one split.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// `len * height * width * channels` bytes, sample after sample.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
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
    /// The pixels of sample `index`, or `None` past the end.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let size = self.image_bytes();
        self.pixels.get(index * size..(index + 1) * size)
    }
    /// Content keys of every sample, in order.
    pub fn sample_keys(&self) -> Vec<String> {
        (0..self.len())
            .map(|i| sample_key(self.image(i).unwrap_or_default(), self.labels[i]))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid IDX file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("no {what} file in {dir}: expected one of {expected}")]
    Missing { dir: PathBuf, what: String, expected: String },
    #[error("{images} has {image_count} images but {labels} has {label_count} labels")]
    CountMismatch { images: PathBuf, image_count: usize, labels: PathBuf, label_count: usize },
}

/// Class names of Fashion-MNIST, in label order (Xiao et al. 2017).
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
