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
    let pixels: Vec<u8> = (0..width * height * channels).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed.wrapping_mul(17))).collect();
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

/// A PNG whose header claims `width×height` pixels (its checksum fixed, so decoders believe
/// it) over the pixel data of a 1×1 RGB image.
pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut cursor = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(1, 1).write_to(&mut cursor, image::ImageFormat::Png).unwrap();
    let mut png = cursor.into_inner();
    // Signature (8), IHDR length (4) and type (4), then width and height; the CRC covers
    // the type and the 13 data bytes.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}
