//! A generated dataset for tests, fixed by a [`SyntheticSpec`]. The image is cut into
//! `classes` horizontal bands of equal height (row `y` is in band `y * classes / size`); an
//! image of class `c` has band `c` bright (200) and the others dark (40), plus uniform noise
//! in `-48..=48` per pixel and channel, clamped to `0..=255`. Every image is a function of
//! its row alone before noise, so a horizontal flip keeps its class, and a small CNN learns
//! the classes in a few epochs.
//!
//! Sample `i` of a split has class `i % classes`; the noise is one SplitMix64 stream per
//! split, seeded from the spec's seed and the split's name.

use std::fmt;

use crate::decode::raw_image_set;
use crate::{DatasetError, ImageSet, Split};
use dynamics::rng::{SplitMix64, stream_seed};

const BRIGHT: i32 = 200;
const DARK: i32 = 40;
const NOISE: u64 = 48;
const MAX_SIZE: u32 = 4096;
/// The most bytes one split's images may take: a split is generated whole, in memory.
const MAX_SPLIT_BYTES: u64 = 1 << 32;

/// What fixes a synthetic dataset. Its text form, which [`SyntheticSpec::parse`] reads and
/// `Display` writes, is the `path` of a [`crate::Source`] of format `synthetic`:
/// `classes=4,train_per_class=32,val_per_class=8,size=16,channels=1,seed=7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyntheticSpec {
    /// 1 to `size`: each class needs a band at least one row high.
    pub classes: u32,
    pub train_per_class: u32,
    pub val_per_class: u32,
    /// Images are `size×size`.
    pub size: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u32,
    pub seed: u64,
}

impl SyntheticSpec {
    /// Reads `key=value` pairs separated by commas, every key of the struct once, in any order.
    pub fn parse(text: &str) -> Result<SyntheticSpec, DatasetError> {
        let invalid = |reason: String| DatasetError::InvalidSpec { spec: text.to_owned(), reason };
        let mut values: [Option<u64>; 6] = [None; 6];
        const KEYS: [&str; 6] = ["classes", "train_per_class", "val_per_class", "size", "channels", "seed"];
        for pair in text.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(invalid(format!("expected key=value, got {pair:?}")));
            };
            let key = key.trim();
            let Some(position) = KEYS.iter().position(|known| *known == key) else {
                return Err(invalid(format!("unknown key {key:?}; the keys are {}", KEYS.join(", "))));
            };
            let value = value.trim().parse().map_err(|_| invalid(format!("{key} must be a whole number, got {:?}", value.trim())))?;
            if values[position].replace(value).is_some() {
                return Err(invalid(format!("{key} is given twice")));
            }
        }
        let mut take =
            |position: usize| -> Result<u64, DatasetError> { values[position].take().ok_or_else(|| invalid(format!("{} is missing", KEYS[position]))) };
        let small = |position: usize, value: u64| -> Result<u32, DatasetError> {
            u32::try_from(value).map_err(|_| invalid(format!("{} is too large: {value}", KEYS[position])))
        };
        let spec = SyntheticSpec {
            classes: small(0, take(0)?)?,
            train_per_class: small(1, take(1)?)?,
            val_per_class: small(2, take(2)?)?,
            size: small(3, take(3)?)?,
            channels: small(4, take(4)?)?,
            seed: take(5)?,
        };
        spec.check()?;
        Ok(spec)
    }

    fn check(&self) -> Result<(), DatasetError> {
        let invalid = |reason: String| DatasetError::InvalidSpec { spec: self.to_string(), reason };
        if !(1..=MAX_SIZE).contains(&self.size) {
            return Err(invalid(format!("size must be from 1 to {MAX_SIZE}, got {}", self.size)));
        }
        if self.classes == 0 || self.classes > self.size {
            return Err(invalid(format!("classes must be from 1 to size ({}), got {}", self.size, self.classes)));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(invalid(format!("channels must be 1 or 3, got {}", self.channels)));
        }
        let image = u128::from(self.size) * u128::from(self.size) * u128::from(self.channels);
        let largest = self.train_per_class.max(self.val_per_class);
        let bytes = u128::from(self.classes) * u128::from(largest) * image;
        if bytes > u128::from(MAX_SPLIT_BYTES) {
            return Err(invalid(format!(
                "a split of {} x {largest} images of {}x{}x{} would take {bytes} bytes; at most {MAX_SPLIT_BYTES}: fewer images per class or a smaller size",
                self.classes, self.size, self.size, self.channels
            )));
        }
        Ok(())
    }

    fn per_class(&self, split: Split) -> Option<u32> {
        match split {
            Split::Train => Some(self.train_per_class),
            Split::Val => Some(self.val_per_class),
            Split::Test => None,
        }
    }

    /// Class names: `"0"`, `"1"`, ...
    pub fn class_names(&self) -> Vec<String> {
        (0..self.classes).map(|class| class.to_string()).collect()
    }
}

impl fmt::Display for SyntheticSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "classes={},train_per_class={},val_per_class={},size={},channels={},seed={}",
            self.classes, self.train_per_class, self.val_per_class, self.size, self.channels, self.seed
        )
    }
}

/// Generates `split` at its native `size×size`, keyed over its pixels.
pub fn generate(spec: &SyntheticSpec, split: Split) -> Result<ImageSet, DatasetError> {
    generate_at(spec, split, None)
}

/// Generates `split`, fitted to `image_size` when set.
pub(crate) fn generate_at(spec: &SyntheticSpec, split: Split, image_size: Option<u32>) -> Result<ImageSet, DatasetError> {
    spec.check()?;
    let Some(per_class) = spec.per_class(split) else {
        let hint = "a synthetic dataset has only train and val splits".to_owned();
        return Err(DatasetError::NoSplit { path: spec.to_string().into(), split, hint });
    };
    let count = per_class as usize * spec.classes as usize;
    let (size, channels) = (spec.size as usize, spec.channels as usize);
    let mut rng = SplitMix64::new(stream_seed(spec.seed, split.as_str()));
    let invalid = |reason: String| DatasetError::InvalidSpec { spec: spec.to_string(), reason };
    // At most MAX_SPLIT_BYTES (checked above), reserved fallibly all the same.
    let mut pixels = Vec::new();
    pixels.try_reserve_exact(count * size * size * channels).map_err(|_| invalid("cannot allocate the split's images".into()))?;
    let labels: Vec<u32> = (0..count).map(|index| (index % spec.classes as usize) as u32).collect();
    for &class in &labels {
        for row in 0..size {
            let band = row * spec.classes as usize / size;
            let base = if band == class as usize { BRIGHT } else { DARK };
            for _ in 0..size * channels {
                let noise = rng.below(2 * NOISE + 1) as i32 - NOISE as i32;
                pixels.push((base + noise).clamp(0, 255) as u8);
            }
        }
    }
    raw_image_set(&pixels, labels, size, size, channels, image_size).map_err(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SyntheticSpec {
        SyntheticSpec { classes: 4, train_per_class: 3, val_per_class: 2, size: 8, channels: 1, seed: 7 }
    }

    #[test]
    fn same_spec_same_images_other_seed_other_noise() {
        let train = generate(&spec(), Split::Train).unwrap();
        assert_eq!(train, generate(&spec(), Split::Train).unwrap());
        assert_eq!((train.len(), train.height, train.width, train.channels), (12, 8, 8, 1));
        assert_eq!(&train.labels[..5], &[0, 1, 2, 3, 0]);
        let other_seed = generate(&SyntheticSpec { seed: 8, ..spec() }, Split::Train).unwrap();
        assert_eq!(other_seed.labels, train.labels);
        assert_ne!(other_seed.pixels, train.pixels);
        let val = generate(&spec(), Split::Val).unwrap();
        assert_eq!(val.len(), 8);
        assert!(val.keys.iter().all(|key| !train.keys.contains(key)));
        let colour = generate(&SyntheticSpec { channels: 3, ..spec() }, Split::Val).unwrap();
        assert_eq!(colour.image_bytes(), 8 * 8 * 3);
    }

    #[test]
    fn class_band_is_bright_and_flip_keeps_the_class() {
        let train = generate(&spec(), Split::Train).unwrap();
        let row_mean = |image: &[u8], row: usize| image[row * 8..(row + 1) * 8].iter().map(|&p| f64::from(p)).sum::<f64>() / 8.0;
        for index in 0..train.len() {
            let image = train.image(index).unwrap();
            let class = train.labels[index] as usize;
            // Class c owns rows 2c and 2c+1 of 8.
            for row in 0..8 {
                let bright = row / 2 == class;
                assert_eq!(row_mean(image, row) > 120.0, bright, "image {index} row {row}");
            }
        }
    }

    #[test]
    fn spec_text_round_trips_and_bad_specs_say_why() {
        let text = spec().to_string();
        assert_eq!(SyntheticSpec::parse(&text).unwrap(), spec());
        let err = SyntheticSpec::parse("classes=9,train_per_class=1,val_per_class=1,size=8,channels=1,seed=0").unwrap_err();
        assert!(err.to_string().contains("classes must be from 1 to size (8), got 9"), "{err}");
        let err = SyntheticSpec::parse("classes=2,size=8").unwrap_err();
        assert!(err.to_string().contains("train_per_class is missing"), "{err}");
        assert!(generate(&spec(), Split::Test).is_err());
        // Found by reading, after schemathesis: a split this large would be allocated whole.
        let err = SyntheticSpec::parse("classes=4096,train_per_class=4294967295,val_per_class=1,size=4096,channels=3,seed=0").unwrap_err();
        assert!(err.to_string().contains("at most 4294967296: fewer images per class or a smaller size"), "{err}");
        assert!(SyntheticSpec::parse("classes=10,train_per_class=1000,val_per_class=100,size=64,channels=3,seed=0").is_ok());
    }
}
