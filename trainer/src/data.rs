//! A dataset split as tensors on the training device.

use std::path::Path;

use anyhow::{Context, Result};
use datasets::{ImageSet, Split};
use protocol::worker::ManifestEntry;
use protocol::{DatasetInfo, Preprocess};
use tch::{Device, Tensor};

/// Images of one split, resized once, as `u8` `[N, C, L, L]` on the device, with labels.
/// `L` is the stored side (`Preprocess::stored_size`), at least the model's input side.
pub struct DeviceSplit {
    pub images: Tensor,
    /// The side of the model's input (`spec.image_size`); evaluation sees the centre
    /// `input x input` of each stored image.
    pub input: i64,
    pub labels: Tensor,
    /// What each position is: dataset index, content key, label.
    pub manifest: Vec<ManifestEntry>,
}

impl DeviceSplit {
    pub fn len(&self) -> usize {
        self.manifest.len()
    }
    pub fn is_empty(&self) -> bool {
        self.manifest.is_empty()
    }

    /// Images `start..start + len` as evaluation sees them: the centre `input x input`.
    pub fn eval_images(&self, start: i64, len: i64) -> Tensor {
        centre(&self.images.narrow(0, start, len), self.input)
    }
}

/// The centre `size x size` of `[N, C, H, W]` images, placed as torchvision's `CenterCrop`
/// places it (`round((H - size) / 2)` from the top, ties to even, as Python rounds).
pub fn centre(images: &Tensor, size: i64) -> Tensor {
    let (_, _, h, w) = images.size4().expect("images are [N, C, H, W]");
    if h == size && w == size {
        return images.shallow_clone();
    }
    let offset = |side: i64| ((side - size) as f64 / 2.0).round_ties_even() as i64;
    images.narrow(2, offset(h), size).narrow(3, offset(w), size)
}

/// Loads `split` of `dataset` for a model input of `image_size` x `image_size`, stored at
/// `preprocess.stored_size(image_size)` (decoded once into the cache under `cache_dir` when
/// given, and read from there by later runs), keeps `subset` samples (all when `None`) and
/// moves the result to `device`.
///
/// The subset is the `subset` samples with the smallest content keys, kept in dataset order:
/// it depends on the data alone, so every seed and architecture sees the same samples.
pub fn load_split(
    dataset: &DatasetInfo,
    split: Split,
    subset: Option<u32>,
    (image_size, preprocess): (u32, Preprocess),
    device: Device,
    cache_dir: Option<&Path>,
) -> Result<DeviceSplit> {
    let stored = preprocess.stored_size(image_size);
    let format = datasets::Format::parse(&dataset.format)?;
    let source = datasets::Source::new(format, dataset.path.clone()).with_options((&dataset.options).try_into()?);
    let loaded = match cache_dir {
        Some(dir) => datasets::load_cached(&source, split, Some(stored), dir),
        None => datasets::load(&source, split, Some(stored)),
    }
    .with_context(|| format!("loading the {split} split of {}", dataset.name))?;
    if let Some((path, reason)) = loaded.skipped.first() {
        tracing::warn!(
            skipped = loaded.skipped.len(),
            "{} unreadable images left out of {}, the first {}: {reason}",
            loaded.skipped.len(),
            dataset.name,
            path.display()
        );
    }
    tracing::info!(dataset = %dataset.name, %split, samples = loaded.images.len(), from_cache = loaded.from_cache, "dataset loaded");
    let set = loaded.images;
    let chosen = choose_subset(&set.keys, subset.map(|n| n as usize));
    let manifest: Vec<ManifestEntry> =
        chosen.iter().map(|&i| ManifestEntry { dataset_index: i as u32, sample_key: set.keys[i].clone(), label: set.labels[i] }).collect();
    let images = gather_pixels(&set, &chosen)?.to_device(device);
    let labels: Vec<i64> = manifest.iter().map(|m| i64::from(m.label)).collect();
    Ok(DeviceSplit { images, input: i64::from(image_size), labels: Tensor::from_slice(&labels).to_device(device), manifest })
}

/// Positions of the `subset` smallest keys, ascending by position.
pub fn choose_subset(keys: &[String], subset: Option<usize>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    if let Some(n) = subset.filter(|&n| n < keys.len()) {
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]).then(a.cmp(&b)));
        order.truncate(n);
        order.sort_unstable();
    }
    order
}

fn gather_pixels(set: &ImageSet, chosen: &[usize]) -> Result<Tensor> {
    let mut pixels = Vec::with_capacity(chosen.len() * set.image_bytes());
    for &i in chosen {
        pixels.extend_from_slice(set.image(i).context("sample index past the end of the split")?);
    }
    // Stored channel-last (H, W, C); torch wants (C, H, W).
    Ok(Tensor::from_slice(&pixels).view([chosen.len() as i64, set.height as i64, set.width as i64, set.channels as i64]).permute([0, 3, 1, 2]).contiguous())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_takes_smallest_keys_in_dataset_order() {
        let keys: Vec<String> = ["d", "a", "c", "b"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose_subset(&keys, Some(2)), vec![1, 3]);
        assert_eq!(choose_subset(&keys, None), vec![0, 1, 2, 3]);
        assert_eq!(choose_subset(&keys, Some(10)), vec![0, 1, 2, 3]);
    }
}
