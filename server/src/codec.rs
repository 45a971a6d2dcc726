//! The column codec of stored records: lossless. A column is a sequence of fixed-width
//! little-endian values (u8, u16, f32, f64). Its bytes are split into planes (every value's
//! byte 0, then every byte 1, ...), which puts the slowly varying sign/exponent bytes of
//! floats together, then compressed with zstd (level 3). On a real run's records
//! (bench/RESULTS.md) correct and predicted shrink to about 0.1 byte per value; loss, margin
//! and EL2N to about 3.5 of their 4 bytes, since their low mantissa bits are noise. XOR with
//! the previous epoch of the same sample was tried and gained nothing on real records.
//!
//! Layout: `[2, width, count: u32 LE, zstd frame]`.

const VERSION: u8 = 2;
const HEADER: usize = 6;
const LEVEL: i32 = 1;

/// Encodes `raw`, values of `width` bytes.
pub fn encode(raw: &[u8], width: usize) -> Vec<u8> {
    assert!(matches!(width, 1 | 2 | 4 | 8) && raw.len().is_multiple_of(width), "a column of 1-, 2-, 4- or 8-byte values");
    let count = raw.len() / width;
    let mut planes = vec![0u8; raw.len()];
    for (i, value) in raw.chunks_exact(width).enumerate() {
        for (b, byte) in value.iter().enumerate() {
            planes[b * count + i] = *byte;
        }
    }
    let mut out = Vec::with_capacity(HEADER + raw.len() / 2);
    out.push(VERSION);
    out.push(width as u8);
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
    let count = u32::from_le_bytes(data[2..6].try_into().unwrap()) as usize;
    if !matches!(width, 1 | 2 | 4 | 8) {
        return Err(format!("an encoded column with width {width}"));
    }
    let planes = zstd::bulk::decompress(&data[HEADER..], count * width).map_err(|e| format!("a damaged column: {e}"))?;
    if planes.len() != count * width {
        return Err(format!("a damaged column: {} bytes for {count} values of {width}", planes.len()));
    }
    let mut raw = vec![0u8; count * width];
    for (i, value) in raw.chunks_exact_mut(width).enumerate() {
        for (b, byte) in value.iter_mut().enumerate() {
            *byte = planes[b * count + i];
        }
    }
    Ok(raw)
}

/// p_true as the worker computes it from the same log-softmax as the loss: `exp(-loss)` in
/// f32. Stored p_true is the XOR of its bits with this prediction (mostly zero bits), so the
/// column costs a fraction of a byte per value and stays exact: the prediction needs only to
/// be the same at encoding and decoding, which it is on every machine because it uses only
/// IEEE-754 basic operations (no libm).
pub fn predict_p_true(loss: f32) -> f32 {
    let x = -f64::from(loss);
    if x.is_nan() {
        return f32::NAN;
    }
    if x < -200.0 {
        return 0.0;
    }
    if x > 80.0 {
        return f32::INFINITY;
    }
    // exp(x) = 2^k exp(r), r = x - k ln 2 in [-ln2/2, ln2/2], exp(r) by its Taylor series.
    // ln 2 split as in fdlibm: the high part has trailing zero bits, so k * LN2_HI is exact.
    let (ln2_hi, ln2_lo) = (f64::from_bits(0x3FE6_2E42_FEE0_0000), f64::from_bits(0x3DEA_39EF_3579_3C76));
    let k = (x / std::f64::consts::LN_2 + if x < 0.0 { -0.5 } else { 0.5 }) as i64;
    let r = (x - k as f64 * ln2_hi) - k as f64 * ln2_lo;
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 1..=14 {
        term = term * r / f64::from(n);
        sum += term;
    }
    (sum * f64::from_bits(((k + 1023) as u64) << 52)) as f32
}

/// The bits stored for p_true: its XOR with [`predict_p_true`].
pub fn p_true_residual(p_true: f32, loss: f32) -> u32 {
    p_true.to_bits() ^ predict_p_true(loss).to_bits()
}

/// p_true from its stored residual and the loss.
pub fn p_true_from_residual(residual: u32, loss: f32) -> f32 {
    f32::from_bits(residual ^ predict_p_true(loss).to_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips_every_width(values in proptest::collection::vec(any::<u8>(), 0..2000), width in prop_oneof![Just(1usize), Just(2), Just(4), Just(8)]) {
            let raw = &values[..values.len() / width * width];
            prop_assert_eq!(decode(&encode(raw, width)).unwrap(), raw);
        }
    }

    #[test]
    fn the_p_true_prediction_is_close_and_the_residual_exact() {
        for loss in [0.0f32, 1e-7, 0.01, std::f32::consts::LN_2, 1.0, std::f32::consts::LN_10, 10.0, 87.0, 103.0, 150.0, 250.0] {
            let exact = (-f64::from(loss)).exp() as f32;
            let predicted = predict_p_true(loss);
            assert!(predicted.to_bits().abs_diff(exact.to_bits()) <= 1, "loss {loss}: {predicted} vs {exact}");
            for p_true in [exact, f32::from_bits(exact.to_bits().wrapping_add(1)), 0.5, 0.0, f32::NAN] {
                assert_eq!(p_true_from_residual(p_true_residual(p_true, loss), loss).to_bits(), p_true.to_bits());
            }
        }
        assert!(predict_p_true(f32::NAN).is_nan());
    }

    #[test]
    fn floats_round_trip_bit_for_bit() {
        let values = [0.0f32, -0.0, 1.0, 0.999_999_9, f32::MIN_POSITIVE, f32::NAN, f32::INFINITY, -3.5e-30];
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(decode(&encode(&raw, 4)).unwrap(), raw);
    }

    #[test]
    fn floats_in_a_narrow_range_shrink() {
        // p_true settling towards 1: the sign/exponent plane is nearly constant.
        let raw: Vec<u8> = (0..10_000).map(|i| 1.0 - 0.5f32.powi(10 + i % 10)).flat_map(|v: f32| v.to_le_bytes()).collect();
        let encoded = encode(&raw, 4);
        assert!(encoded.len() * 8 < raw.len(), "{} bytes from {}", encoded.len(), raw.len());
    }

    #[test]
    fn damage_is_reported() {
        let encoded = encode(&[1, 2, 3, 4], 1);
        assert!(decode(&encoded[..5]).is_err());
        let mut wrong = encoded.clone();
        wrong[0] = 9;
        assert!(decode(&wrong).unwrap_err().contains("not an encoded column"));
        let mut short = encoded;
        short.truncate(HEADER + 2);
        assert!(decode(&short).is_err());
    }
}
