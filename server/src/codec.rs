//! The column codec of stored records: lossless, about 2-8x smaller than packed arrays on
//! training records (bench/RESULTS.md).
//!
//! A column is a sequence of fixed-width little-endian values (u8, u16, f32, f64) cut into
//! series (one sample's values over the epochs). Encoding:
//! 1. each value is XORed with the one before it in its series, so a value that barely
//!    changes from epoch to epoch (p_true near 1, a stable prediction) leaves mostly zero bits;
//! 2. the bytes are split into planes (every value's byte 0, then every byte 1, ...), which
//!    puts the slowly varying sign/exponent bytes of floats together;
//! 3. zstd (level 3).
//!
//! Layout: `[1, width, series: u32 LE, count: u32 LE, zstd frame]`.

const VERSION: u8 = 1;
const HEADER: usize = 10;
const LEVEL: i32 = 3;

/// Encodes `raw` (values of `width` bytes, in series of `series` values).
pub fn encode(raw: &[u8], width: usize, series: usize) -> Vec<u8> {
    assert!(matches!(width, 1 | 2 | 4 | 8) && raw.len() % width == 0 && series > 0, "a column of 1-, 2-, 4- or 8-byte values in series");
    let count = raw.len() / width;
    let mut planes = vec![0u8; raw.len()];
    for i in 0..count {
        let value = &raw[i * width..(i + 1) * width];
        let previous = if i % series == 0 { None } else { Some(&raw[(i - 1) * width..i * width]) };
        for b in 0..width {
            planes[b * count + i] = value[b] ^ previous.map_or(0, |p| p[b]);
        }
    }
    let mut out = Vec::with_capacity(HEADER + raw.len() / 2);
    out.push(VERSION);
    out.push(width as u8);
    out.extend_from_slice(&(series as u32).to_le_bytes());
    out.extend_from_slice(&(count as u32).to_le_bytes());
    out.extend_from_slice(&zstd::bulk::compress(&planes, LEVEL).expect("zstd compresses any input"));
    out
}

/// Decodes what [`encode`] wrote, returning the raw little-endian values.
pub fn decode(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < HEADER || data[0] != VERSION {
        return Err(format!("not an encoded column (version {:?}, {} bytes)", data.first(), data.len()));
    }
    let width = usize::from(data[1]);
    let series = u32::from_le_bytes(data[2..6].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(data[6..10].try_into().unwrap()) as usize;
    if !matches!(width, 1 | 2 | 4 | 8) || series == 0 {
        return Err(format!("an encoded column with width {width} and series {series}"));
    }
    let planes = zstd::bulk::decompress(&data[HEADER..], count * width).map_err(|e| format!("a damaged column: {e}"))?;
    if planes.len() != count * width {
        return Err(format!("a damaged column: {} bytes for {count} values of {width}", planes.len()));
    }
    let mut raw = vec![0u8; count * width];
    for i in 0..count {
        for b in 0..width {
            let delta = planes[b * count + i];
            raw[i * width + b] = if i % series == 0 { delta } else { delta ^ raw[(i - 1) * width + b] };
        }
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_every_width_and_series(values in proptest::collection::vec(any::<u8>(), 0..2000), width in prop_oneof![Just(1usize), Just(2), Just(4), Just(8)], series in 1usize..50) {
            let raw = &values[..values.len() / width * width];
            prop_assert_eq!(decode(&encode(raw, width, series)).unwrap(), raw);
        }
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let values = [0.0f32, -0.0, 1.0, 0.999_999_9, f32::MIN_POSITIVE, f32::NAN, f32::INFINITY, -3.5e-30];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&encode(&raw, 4, 3)).unwrap(), raw);
    }

    #[test]
    fn slowly_changing_series_shrink() {
        // 100 samples x 100 epochs of p_true settling towards 1.
        let raw: Vec<u8> = (0..100).flat_map(|s| (0..100).map(move |e| 1.0 - 0.5f32.powi(e.min(20 + s % 5)))).flat_map(|v: f32| v.to_le_bytes()).collect();
        let encoded = encode(&raw, 4, 100);
        assert!(encoded.len() * 8 < raw.len(), "{} bytes from {}", encoded.len(), raw.len());
    }

    #[test]
    fn damage_is_reported() {
        let encoded = encode(&[1, 2, 3, 4], 1, 2);
        assert!(decode(&encoded[..5]).is_err());
        let mut wrong = encoded.clone();
        wrong[0] = 9;
        assert!(decode(&wrong).unwrap_err().contains("not an encoded column"));
        let mut short = encoded;
        short.truncate(HEADER + 2);
        assert!(decode(&short).is_err());
    }
}
