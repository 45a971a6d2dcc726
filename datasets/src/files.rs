//! Datasets of one image file per sample (ImageFolder, CUB): what they have in common once
//! their layout is read — summarising from headers and decoding one split.
//!
//! An image that leads outside the data roots fails the whole load under either
//! [`BadImages`] policy: it is not a bad image but a dataset reaching where it may not.

use std::path::{Path, PathBuf};

use crate::decode::{Probe, Unusable, decode_file, parallel_fill, probe};
use crate::read::{BadImages, Loaded, Summary};
use crate::roots::Roots;
use crate::{DatasetError, ImageSet, Split, limits};

/// One image file and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileSample {
    pub path: PathBuf,
    pub label: u32,
    pub split: Split,
}

/// A file-based dataset as its layout describes it, before any image is opened.
#[derive(Debug, Clone)]
pub(crate) struct FileDataset {
    pub root: PathBuf,
    pub class_names: Vec<String>,
    /// In the order the splits are loaded: by label, then by path.
    pub samples: Vec<FileSample>,
    /// What to do when a split that has no samples is asked for (only `Test` may be absent).
    pub no_test_hint: String,
    /// Where the images may be read from.
    pub roots: Roots,
    /// Groups per side, when the layout was read with a grouping rule.
    pub groups: Option<protocol::DatasetGroups>,
}

/// What `policy` makes of an image that cannot be used: `Ok(reason)` to skip it, or the error.
fn judge(path: &Path, unusable: &Unusable, policy: BadImages) -> Result<String, DatasetError> {
    match (unusable, policy) {
        (Unusable::Outside, _) => Err(DatasetError::OutsideRoots { path: path.to_owned() }),
        (Unusable::Bad(reason), BadImages::Fail) => Err(DatasetError::BadImage { path: path.to_owned(), reason: reason.clone() }),
        (Unusable::Bad(reason), BadImages::Skip) => Ok(reason.clone()),
    }
}

/// The headers of every image of the dataset, and what follows from them.
struct Survey {
    probes: Vec<Result<Probe, Unusable>>,
    /// 1 when every readable image is greyscale, else 3.
    channels: usize,
    /// `(width, height)` when every readable image has it.
    native: Result<(u32, u32), DatasetError>,
}

/// Reads every header. Under [`BadImages::Fail`] an unreadable one is an error naming it;
/// under `Skip` it is left out of the channel and size decisions.
fn survey(dataset: &FileDataset, policy: BadImages) -> Result<Survey, DatasetError> {
    let probes = parallel_fill(&dataset.samples, &mut [], 0, |sample, _| probe(&sample.path, &dataset.roots));
    let mut first: Option<(&FileSample, Probe)> = None;
    let mut native = Ok((0, 0));
    let mut all_grey = true;
    for (sample, probed) in dataset.samples.iter().zip(&probes) {
        let probed = match probed {
            Ok(probed) => *probed,
            Err(unusable) => {
                judge(&sample.path, unusable, policy)?;
                continue;
            }
        };
        all_grey &= probed.grey;
        match first {
            None => {
                first = Some((sample, probed));
                native = Ok((probed.width, probed.height));
            }
            Some((first_sample, first_probe)) => {
                let (size, first_size) = ((probed.width, probed.height), (first_probe.width, first_probe.height));
                if size != first_size && native.is_ok() {
                    native = Err(DatasetError::MixedSizes { first: first_sample.path.clone(), first_size, other: sample.path.clone(), other_size: size });
                }
            }
        }
    }
    Ok(Survey { probes, channels: if all_grey && first.is_some() { 1 } else { 3 }, native })
}

/// Counts and shapes from the headers alone. Sizes count the images whose header reads;
/// one whose body alone is corrupt is counted here and skipped by [`load_files`].
pub(crate) fn inspect_files(dataset: &FileDataset, policy: BadImages) -> Result<Summary, DatasetError> {
    let survey = survey(dataset, policy)?;
    let count = |split: Split| dataset.samples.iter().zip(&survey.probes).filter(|(sample, probed)| sample.split == split && probed.is_ok()).count();
    let native = survey.native.ok();
    Ok(Summary {
        num_classes: dataset.class_names.len(),
        class_names: dataset.class_names.clone(),
        train_size: count(Split::Train),
        val_size: count(Split::Val),
        test_size: count(Split::Test),
        height: native.map(|(_, height)| height as usize),
        width: native.map(|(width, _)| width as usize),
        channels: survey.channels,
        groups: dataset.groups,
    })
}

/// Decodes `split`, fitted to `size×size` when `size` is set. Channels and, without a size,
/// the native size are decided over the whole dataset so that every split agrees.
pub(crate) fn load_files(dataset: &FileDataset, split: Split, size: Option<u32>, policy: BadImages) -> Result<Loaded, DatasetError> {
    let survey = survey(dataset, policy)?;
    let chosen: Vec<(&FileSample, &Result<Probe, Unusable>)> = dataset.samples.iter().zip(&survey.probes).filter(|(sample, _)| sample.split == split).collect();
    if chosen.is_empty() && split == Split::Test {
        return Err(DatasetError::NoSplit { path: dataset.root.clone(), split, hint: dataset.no_test_hint.clone() });
    }
    let (width, height) = match size {
        Some(size) => (size, size),
        None => survey.native?,
    };
    let channels = survey.channels;
    let too_large = |reason: String| DatasetError::TooLarge { path: dataset.root.clone(), reason };
    let image_bytes = limits::product([width as usize, height as usize, channels])
        .ok_or_else(|| too_large(format!("images of {width}x{height} pixels cannot be held in memory")))?;
    let total = limits::product([chosen.len(), image_bytes])
        .ok_or_else(|| too_large(format!("{} images of {width}x{height} pixels cannot be held in memory", chosen.len())))?;
    let mut pixels = limits::zeroed(total).map_err(too_large)?;
    let outcomes = parallel_fill(&chosen, &mut pixels, image_bytes, |(sample, probed), slot| match probed {
        Ok(_) => decode_file(&sample.path, &dataset.roots, sample.label, channels, size, slot),
        Err(unusable) => Err(unusable.clone()),
    });

    let (mut labels, mut keys, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    for (index, ((sample, _), outcome)) in chosen.iter().zip(outcomes).enumerate() {
        match outcome {
            Ok(key) => {
                let kept = labels.len();
                pixels.copy_within(index * image_bytes..(index + 1) * image_bytes, kept * image_bytes);
                labels.push(sample.label);
                keys.push(key);
            }
            Err(unusable) => skipped.push((sample.path.clone(), judge(&sample.path, &unusable, policy)?)),
        }
    }
    pixels.truncate(labels.len() * image_bytes);
    let images = ImageSet { pixels, labels, keys, height: height as usize, width: width as usize, channels };
    Ok(Loaded { images, skipped, from_cache: false })
}
