//! Helpers for the tests: real PNG and JPEG files written into temporary folders.

use std::path::Path;

use image::ExtendedColorType;

/// Writes a `width×height` image at `path`, PNG or JPEG by its extension, grey or RGB, with
/// pixels that depend on `seed` so that files differ.
pub(crate) fn write_image(path: &Path, width: u32, height: u32, colour: bool, seed: u8) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let channels = if colour { 3 } else { 1 };
    let pixels: Vec<u8> = (0..width * height * channels)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed.wrapping_mul(17)))
        .collect();
    let colour_type = if colour { ExtendedColorType::Rgb8 } else { ExtendedColorType::L8 };
    image::save_buffer(path, &pixels, width, height, colour_type).unwrap();
}

/// Writes bytes that no decoder accepts, under an image's name.
pub(crate) fn write_garbage(path: &Path) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, b"this is not an image").unwrap();
}
