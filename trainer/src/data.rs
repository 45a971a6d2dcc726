//! A dataset split as tensors on the training device.

use std::path::Path;

use anyhow::{Context, Result, bail};
use datasets::{ImageSet, Split};
use protocol::worker::ManifestEntry;
use protocol::DatasetInfo;
use tch::{Device, Kind, Tensor};

/// Images of one split, resized once, as `u8` `[N, C, S, S]` on the device, with labels.
pub struct DeviceSplit {
    pub images: Tensor,
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
}

/// Loads `split` of `dataset`, keeps `subset` samples (all when `None`), resizes to
/// `image_size` and moves the result to `device`.
///
/// The subset is the `subset` samples with the smallest content keys, kept in dataset order:
/// it depends on the data alone, so every seed and architecture sees the same samples.
pub fn load_split(dataset: &DatasetInfo, split: Split, subset: Option<u32>, image_size: u32, device: Device) -> Result<DeviceSplit> {
    if dataset.format != "idx" {
        bail!("dataset format {:?} is not supported by this worker (idx only)", dataset.format);
    }
    let set = datasets::load_idx_split(Path::new(&dataset.path), split)
        .with_context(|| format!("loading the {split:?} split of {}", dataset.name))?;
    let keys = set.sample_keys();
    let chosen = choose_subset(&keys, subset.map(|n| n as usize));
    let manifest: Vec<ManifestEntry> = chosen
        .iter()
        .map(|&i| ManifestEntry { dataset_index: i as u32, sample_key: keys[i].clone(), label: set.labels[i] })
        .collect();
    let images = gather_pixels(&set, &chosen)?;
    let images = resize_u8(&images, image_size as i64).to_device(device);
    let labels: Vec<i64> = manifest.iter().map(|m| i64::from(m.label)).collect();
    Ok(DeviceSplit { images, labels: Tensor::from_slice(&labels).to_device(device), manifest })
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
    Ok(Tensor::from_slice(&pixels)
        .view([chosen.len() as i64, set.height as i64, set.width as i64, set.channels as i64])
        .permute([0, 3, 1, 2])
        .contiguous())
}

fn resize_u8(images: &Tensor, size: i64) -> Tensor {
    let (_, _, h, w) = images.size4().expect("images are 4-d");
    if h == size && w == size {
        return images.shallow_clone();
    }
    images
        .to_kind(Kind::Float)
        .upsample_bilinear2d([size, size], false, None, None)
        .round()
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8)
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

    #[test]
    fn resize_keeps_shape_and_range() {
        let images = Tensor::from_slice(&[0u8, 255, 255, 0]).view([1, 1, 2, 2]);
        let out = resize_u8(&images, 4);
        assert_eq!(out.size(), vec![1, 1, 4, 4]);
        assert_eq!(out.kind(), Kind::Uint8);
        assert_eq!(out.max().int64_value(&[]), 255);
    }
}
