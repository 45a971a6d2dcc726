//! What the readers are willing to allocate, in one place.
//!
//! A header can claim anything (`shape (2**40, 28, 28)`, an IDX dimension of `u32::MAX`, a
//! PNG of 100000×100000 pixels); none of those claims is allocated before it is checked
//! against the bytes actually present: the file's length for plain data, and for deflated
//! data (zip members, gzip) the most that many compressed bytes can inflate to. Buffers
//! that stay large after that are reserved with `try_reserve`, so that a failed allocation
//! is an error and not an abort of the process.

/// Deflate's largest expansion: one 258-byte match costs at least two bits, about 1032 : 1
/// (zlib's technical notes). No honest deflate stream inflates by more.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Headers and trailers around a deflate stream (gzip, zip) that the ratio does not cover.
const DEFLATE_SLACK: u64 = 1 << 16;

/// The most bytes `compressed` bytes of deflate data can inflate to.
pub(crate) fn max_inflated(compressed: u64) -> u64 {
    compressed.saturating_mul(DEFLATE_MAX_RATIO).saturating_add(DEFLATE_SLACK)
}

/// Widest and highest image a file (PNG, JPEG) or an array (IDX, npz) may have.
pub(crate) const MAX_IMAGE_SIDE: u32 = 16_384;

/// The most a decoder may allocate for one image file (the `image` crate's default).
pub(crate) const MAX_DECODE_BYTES: u64 = 512 << 20;

/// The largest image file read (a 16384×16384 PNG of noise is about 800 MB; real photos
/// of datasets are far smaller).
pub(crate) const MAX_IMAGE_FILE_BYTES: u64 = 256 << 20;

/// The largest list file read (`images.txt`, `split.csv`): CUB's `images.txt` is 0.6 MB.
pub(crate) const MAX_LIST_BYTES: u64 = 64 << 20;

/// The largest `S` of an `S×S` image size asked for.
pub(crate) const MAX_IMAGE_SIZE: u32 = 4096;

/// The most pixels an image may have once scaled so that its shorter side is the size
/// asked for, before its centre is cropped (the resize works in `f32` RGBA: 16 bytes each).
pub(crate) const MAX_SCALED_PIXELS: u64 = 1 << 24;

/// `len` zero bytes, or an error when they cannot be allocated.
pub(crate) fn zeroed(len: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| format!("cannot allocate {len} bytes for the decoded images"))?;
    bytes.resize(len, 0);
    Ok(bytes)
}

/// The first `len` bytes of `reader` (fewer if it ends first). The buffer grows only as
/// bytes arrive, fallibly, so a claimed length costs nothing until the data is there: a
/// claim checked against [`max_inflated`] still allocates no more than the real data.
pub(crate) fn read_up_to(reader: &mut dyn std::io::Read, len: usize) -> Result<Vec<u8>, String> {
    const FIRST_CHUNK: usize = 1 << 16;
    let mut data = Vec::new();
    while data.len() < len {
        let start = data.len();
        let chunk = (len - start).min(start.max(FIRST_CHUNK));
        data.try_reserve_exact(chunk).map_err(|_| format!("cannot allocate {} bytes", start + chunk))?;
        data.resize(start + chunk, 0);
        let mut filled = start;
        while filled < data.len() {
            match reader.read(&mut data[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("cannot read the data: {error}")),
            }
        }
        data.truncate(filled);
        if filled < start + chunk {
            break;
        }
    }
    Ok(data)
}

/// The product of `factors`, or `None` when it overflows a `usize`.
pub(crate) fn product(factors: impl IntoIterator<Item = usize>) -> Option<usize> {
    factors.into_iter().try_fold(1usize, |product, factor| product.checked_mul(factor))
}
