//! What reading a dataset gives, whatever its format: a [`Summary`] for registration, a
//! [`Loaded`] split, and the [`BadImages`] policy the file readers follow. Here so that the
//! readers (`files`, `folder`, `cub`, `npz`) and [`crate::Source`], which dispatches to them,
//! share these types without depending on each other.

use std::path::PathBuf;

use crate::ImageSet;

/// What to do with an image file that cannot be read or decoded (ImageFolder and CUB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BadImages {
    /// Stop with an error naming the file and the decoder's reason. Headers are read over the
    /// whole dataset (they decide channels and the native size), so a file with an unreadable
    /// header fails the loading of every split.
    #[default]
    Fail,
    /// Leave the sample out and list it in [`Loaded::skipped`].
    Skip,
}

impl BadImages {
    pub fn as_str(self) -> &'static str {
        match self {
            BadImages::Fail => "fail",
            BadImages::Skip => "skip",
        }
    }

    /// The policy named by [`BadImages::as_str`].
    pub fn parse(name: &str) -> Option<BadImages> {
        [BadImages::Fail, BadImages::Skip].into_iter().find(|policy| policy.as_str() == name)
    }
}

/// What registration needs to know of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub num_classes: usize,
    /// In label order. Formats that ship no names (IDX, npz, synthetic) get `"0"`, `"1"`, ...
    pub class_names: Vec<String>,
    pub train_size: usize,
    pub val_size: usize,
    /// 0 where the dataset has no Test split.
    pub test_size: usize,
    /// The native size, when every image has the same.
    pub height: Option<usize>,
    pub width: Option<usize>,
    /// 1 when every image is greyscale, else 3.
    pub channels: usize,
    /// Groups per side, for an ImageFolder read with a grouping rule.
    pub groups: Option<protocol::DatasetGroups>,
}

/// One decoded split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The images, labels and keys, without the skipped samples.
    pub images: ImageSet,
    /// Image files left out under [`BadImages::Skip`], with the reason, in dataset order.
    pub skipped: Vec<(PathBuf, String)>,
    /// Whether [`crate::load_cached`] read this from its cache file.
    pub from_cache: bool,
}
