//! Pixels: reading image headers, decoding PNG and JPEG files, bringing images to `S×S`, and
//! turning raw pixel arrays (IDX, npz, synthetic) into an [`ImageSet`] with keys.
//!
//! Image files are read confined to the source's roots, no larger than
//! [`MAX_IMAGE_FILE_BYTES`], and decoded under [`image::Limits`]: a header may claim any
//! size, and it is refused (with its size in the message) rather than allocated.

use std::io::{BufRead, BufReader, Cursor, Seek};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, Limits, RgbImage};

use crate::limits::{self, MAX_DECODE_BYTES, MAX_IMAGE_FILE_BYTES, MAX_IMAGE_SIDE, MAX_SCALED_PIXELS};
use crate::roots::{Roots, open_file, read_file};
use crate::{DatasetError, ImageSet, sample_key};

/// Why an image file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// Not a usable image: the reader's or decoder's reason. [`crate::BadImages`] decides
    /// whether that fails the load or skips the file.
    Bad(String),
    /// The file leads outside the data roots: always an error, whatever the policy.
    Outside,
}

impl From<DatasetError> for Unusable {
    fn from(error: DatasetError) -> Unusable {
        match error {
            DatasetError::OutsideRoots { .. } => Unusable::Outside,
            // The path is the caller's to name: keep the reason alone.
            DatasetError::Io { source, .. } => Unusable::Bad(source.to_string()),
            DatasetError::TooLarge { reason, .. } => Unusable::Bad(format!("too large: {reason}")),
            other => Unusable::Bad(other.to_string()),
        }
    }
}

/// The decoders' limits: no side over [`MAX_IMAGE_SIDE`], no more than [`MAX_DECODE_BYTES`].
fn decode_limits(with_sides: bool) -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    if with_sides {
        limits.max_image_width = Some(MAX_IMAGE_SIDE);
        limits.max_image_height = Some(MAX_IMAGE_SIDE);
    }
    limits
}

/// Runs a decoder; a panic in it (a decoder bug that a crafted file found) is the file's
/// failure, not the server's.
fn guarded<T>(decode: impl FnOnce() -> Result<T, String>) -> Result<T, Unusable> {
    catch_unwind(AssertUnwindSafe(decode)).unwrap_or_else(|_| Err("the decoder failed on this file".into())).map_err(Unusable::Bad)
}

/// Refuses an image side of 0 or over [`MAX_IMAGE_SIDE`].
fn check_sides(width: u64, height: u64) -> Result<(), String> {
    let side = u64::from(MAX_IMAGE_SIDE);
    if width == 0 || height == 0 {
        return Err(format!("the image is {width}x{height} pixels: it has no pixels"));
    }
    if width > side || height > side {
        return Err(format!("the image is {width}x{height} pixels; at most {side}x{side} are read"));
    }
    Ok(())
}

/// Checks the `height×width` of the images of a raw array (IDX, npz).
pub(crate) fn check_raw_image(height: usize, width: usize) -> Result<(), String> {
    check_sides(width as u64, height as u64)
}

/// What an image file's header says, read without decoding the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    pub width: u32,
    pub height: u32,
    /// No colour channels (grey, or grey with alpha).
    pub grey: bool,
}

/// Reads the header of the image at `path` (format found from its content, not its name).
/// The error is the reader's or decoder's own reason.
pub(crate) fn probe(path: &Path, roots: &Roots) -> Result<Probe, Unusable> {
    let file = open_file(path, roots)?;
    let len = file.metadata().map_err(|e| Unusable::Bad(e.to_string()))?.len();
    if len > MAX_IMAGE_FILE_BYTES {
        return Err(Unusable::Bad(format!("the file has {len} bytes; image files of at most {MAX_IMAGE_FILE_BYTES} are read")));
    }
    guarded(|| {
        let decoder = open_decoder(BufReader::new(file), len)?;
        let (width, height) = decoder.dimensions();
        Ok(Probe { width, height, grey: !decoder.color_type().has_color() })
    })
}

/// A decoder for the `len` bytes of an image file in `reader`, its header checked before
/// anything is allocated for the pixels: sides at most [`MAX_IMAGE_SIDE`], decoded size at
/// most [`MAX_DECODE_BYTES`], and no more stored pixel data than `len` compressed bytes can
/// inflate to (a 100-byte file claiming 10000×10000 pixels is refused, not allocated).
fn open_decoder<'a, R: BufRead + Seek + 'a>(reader: R, len: u64) -> Result<impl ImageDecoder + 'a, String> {
    let mut reader = ImageReader::new(reader).with_guessed_format().map_err(|e| e.to_string())?;
    // Sides are checked here rather than by the decoder, for a message that gives them.
    reader.limits(decode_limits(false));
    let decoder = reader.into_decoder().map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions();
    check_sides(u64::from(width), u64::from(height))?;
    let decoded = decoder.total_bytes();
    if decoded > MAX_DECODE_BYTES {
        return Err(format!("{width}x{height} pixels would take {decoded} bytes decoded; at most {MAX_DECODE_BYTES}"));
    }
    let stored = u64::from(width) * u64::from(height) * u64::from(decoder.original_color_type().bits_per_pixel()) / 8;
    if stored > limits::max_inflated(len) {
        return Err(format!("the header claims {width}x{height} pixels, more than the file's {len} bytes can hold"));
    }
    Ok(decoder)
}

/// Decodes the image file at `path` to `channels` (1: grey, 3: RGB with alpha dropped),
/// fitted to `size×size` when `size` is set, into `slot`; returns its [`sample_key`] over the
/// file's bytes. The error is the reason the file could not be used.
pub(crate) fn decode_file(path: &Path, roots: &Roots, label: u32, channels: usize, size: Option<u32>, slot: &mut [u8]) -> Result<String, Unusable> {
    let bytes = read_file(path, roots, MAX_IMAGE_FILE_BYTES, "an image file")?;
    let key = sample_key(&bytes, label);
    let decoded = guarded(|| {
        let mut decoder = open_decoder(Cursor::new(&bytes), bytes.len() as u64)?;
        let (width, height) = decoder.dimensions();
        if let Some(size) = size {
            check_fit(width, height, size)?;
        }
        decoder.set_limits(decode_limits(true)).map_err(|e| e.to_string())?;
        DynamicImage::from_decoder(decoder).map_err(|e| e.to_string())
    })?;
    guarded(|| fill_slot(decoded, channels, size, slot))?;
    Ok(key)
}

/// Converts, fits and copies one decoded image into its slot.
fn fill_slot(decoded: DynamicImage, channels: usize, size: Option<u32>, slot: &mut [u8]) -> Result<(), String> {
    let converted = if channels == 1 { DynamicImage::ImageLuma8(decoded.into_luma8()) } else { DynamicImage::ImageRgb8(decoded.into_rgb8()) };
    let fitted = match size {
        Some(size) => fit_square(converted, size),
        None => converted,
    };
    let pixels = fitted.as_bytes();
    if pixels.len() != slot.len() {
        return Err(format!("decoded to {}x{} pixels, which its header did not announce", fitted.width(), fitted.height()));
    }
    slot.copy_from_slice(pixels);
    Ok(())
}

/// The size [`fit_square`] scales a `width×height` image to before cropping.
fn scaled_size(width: u32, height: u32, size: u32) -> (u32, u32) {
    let scale = |longer: u32, shorter: u32| -> u32 {
        let scaled = (u64::from(longer) * u64::from(size) + u64::from(shorter) / 2) / u64::from(shorter.max(1));
        u32::try_from(scaled).unwrap_or(u32::MAX).max(size)
    };
    if width <= height { (size, scale(height, width)) } else { (scale(width, height), size) }
}

/// Refuses what [`fit_square`] cannot do within the limits: an image without pixels, or one
/// so elongated that scaling its shorter side to `size` makes more than
/// [`MAX_SCALED_PIXELS`].
pub(crate) fn check_fit(width: u32, height: u32, size: u32) -> Result<(), String> {
    check_sides(u64::from(width), u64::from(height))?;
    let (scaled_width, scaled_height) = scaled_size(width, height, size);
    let pixels = u64::from(scaled_width) * u64::from(scaled_height);
    if pixels > MAX_SCALED_PIXELS {
        return Err(format!(
            "a {width}x{height} image brought to {size}x{size} is first scaled to {scaled_width}x{scaled_height} pixels, more than {MAX_SCALED_PIXELS}: choose a smaller image size"
        ));
    }
    Ok(())
}

/// Brings `image` to `size×size`: scales it (bilinear, aspect ratio kept) so that its shorter
/// side is `size` and its longer side `round(longer * size / shorter)`, then crops the centre
/// `size×size` (dropping `floor(excess / 2)` pixels before it). A square image is just scaled.
pub(crate) fn fit_square(image: DynamicImage, size: u32) -> DynamicImage {
    let (width, height) = (image.width(), image.height());
    if (width, height) == (size, size) {
        return image;
    }
    let (scaled_width, scaled_height) = scaled_size(width, height, size);
    let scaled = image.resize_exact(scaled_width, scaled_height, FilterType::Triangle);
    if (scaled_width, scaled_height) == (size, size) {
        return scaled;
    }
    scaled.crop_imm((scaled_width - size) / 2, (scaled_height - size) / 2, size, size)
}

/// Turns `count` raw images of `height×width×channels` bytes (channel-last, `channels` 1 or
/// 3) into an [`ImageSet`], each keyed by [`sample_key`] over its raw bytes and fitted to
/// `size×size` when `size` is set (see [`fit_square`]). The error says why the images
/// cannot be made: sides out of bounds, too few bytes, or too much memory.
pub(crate) fn raw_image_set(raw: &[u8], labels: Vec<u32>, height: usize, width: usize, channels: usize, size: Option<u32>) -> Result<ImageSet, String> {
    check_raw_image(height, width)?;
    if let Some(size) = size {
        check_fit(width as u32, height as u32, size)?;
    }
    // Sides are at most MAX_IMAGE_SIDE and channels 1 or 3: no product here overflows.
    let raw_bytes = height * width * channels;
    if limits::product([labels.len(), raw_bytes]).is_none_or(|needed| raw.len() < needed) {
        return Err(format!("{} images of {height}x{width}x{channels} need more than the {} bytes there are", labels.len(), raw.len()));
    }
    let (out_height, out_width) = match size {
        Some(size) => (size as usize, size as usize),
        None => (height, width),
    };
    let out_bytes = out_height * out_width * channels;
    let indices: Vec<usize> = (0..labels.len()).collect();
    let total = limits::product([labels.len(), out_bytes]).ok_or("the decoded images would not fit in memory")?;
    let mut pixels = limits::zeroed(total)?;
    let keys = parallel_fill(&indices, &mut pixels, out_bytes, |&index, slot| {
        let image = &raw[index * raw_bytes..(index + 1) * raw_bytes];
        if (out_height, out_width) == (height, width) {
            slot.copy_from_slice(image);
        } else {
            let fitted = fit_square(raw_to_image(image, height, width, channels), out_height as u32);
            slot.copy_from_slice(fitted.as_bytes());
        }
        sample_key(image, labels[index])
    });
    Ok(ImageSet { pixels, labels, keys, height: out_height, width: out_width, channels })
}

fn raw_to_image(image: &[u8], height: usize, width: usize, channels: usize) -> DynamicImage {
    let (width, height) = (width as u32, height as u32);
    // The callers slice exactly height * width * channels bytes, so the buffers always fit.
    if channels == 1 {
        DynamicImage::ImageLuma8(GrayImage::from_raw(width, height, image.to_vec()).expect("grey buffer of the image's size"))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, image.to_vec()).expect("RGB buffer of the image's size"))
    }
}

/// Runs `work(item, slot)` for every item on all cores, where `slot` is the item's own
/// `slot_bytes` of `out` (item `i` owns `out[i * slot_bytes..(i + 1) * slot_bytes]`), and
/// returns the results in item order.
pub(crate) fn parallel_fill<T: Sync, R: Send>(items: &[T], out: &mut [u8], slot_bytes: usize, work: impl Fn(&T, &mut [u8]) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, items.len().max(1));
    let per_thread = items.len().div_ceil(threads).max(1);
    let work = &work;
    std::thread::scope(|scope| {
        let mut rest = out;
        let mut handles = Vec::new();
        for part in items.chunks(per_thread) {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(part.len() * slot_bytes);
            rest = tail;
            handles.push(
                scope.spawn(move || part.iter().enumerate().map(|(i, item)| work(item, &mut mine[i * slot_bytes..(i + 1) * slot_bytes])).collect::<Vec<R>>()),
            );
        }
        // A panic in `work` is a bug of ours or of a decoder: pass it on as it is.
        handles.into_iter().flat_map(|handle| handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_square_scales_the_shorter_side_and_crops_the_centre() {
        // 4 wide, 2 high: left half black, right half white. Scaled to 2 high it is 4 wide;
        // the centre crop keeps one black and one white column.
        let mut image = GrayImage::new(4, 2);
        for y in 0..2 {
            for x in 2..4 {
                image.put_pixel(x, y, image::Luma([255]));
            }
        }
        let fitted = fit_square(DynamicImage::ImageLuma8(image.clone()), 2);
        assert_eq!((fitted.width(), fitted.height()), (2, 2));
        assert_eq!(fitted.as_bytes(), &[0, 255, 0, 255]);
        let tall = fit_square(DynamicImage::ImageLuma8(image::imageops::rotate90(&image)), 4);
        assert_eq!((tall.width(), tall.height()), (4, 4));
    }

    #[test]
    fn raw_sets_keep_keys_of_the_stored_pixels_at_any_size() {
        let raw: Vec<u8> = (0..2 * 4 * 4).map(|v| v as u8).collect();
        let native = raw_image_set(&raw, vec![0, 1], 4, 4, 1, None).unwrap();
        assert_eq!(native.pixels, raw);
        assert_eq!(native.keys[1], sample_key(&raw[16..], 1));
        let small = raw_image_set(&raw, vec![0, 1], 4, 4, 1, Some(2)).unwrap();
        assert_eq!((small.height, small.width, small.pixels.len()), (2, 2, 8));
        assert_eq!(small.keys, native.keys);
    }

    #[test]
    fn parallel_fill_keeps_item_order_and_slots() {
        let items: Vec<u8> = (0..37).collect();
        let mut out = vec![0; 37 * 2];
        let results = parallel_fill(&items, &mut out, 2, |&item, slot| {
            slot.fill(item);
            u32::from(item) * 10
        });
        assert_eq!(results, (0..37).map(|i| i * 10).collect::<Vec<u32>>());
        assert!(out.chunks(2).enumerate().all(|(i, slot)| slot == [i as u8, i as u8]));
    }
}
