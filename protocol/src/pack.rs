//! Packing of per-epoch columns into little-endian byte arrays, as stored in SQLite BLOBs.
//! Fixed-width, no header: the row that holds a BLOB knows its length and type.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a packed array of {element}-byte values has {len} bytes, not a multiple of {element}")]
pub struct PackError {
    pub element: usize,
    pub len: usize,
}

pub fn pack_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn unpack_f32(bytes: &[u8]) -> Result<Vec<f32>, PackError> {
    check(bytes, 4)?;
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn pack_u32(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn unpack_u32(bytes: &[u8]) -> Result<Vec<u32>, PackError> {
    check(bytes, 4)?;
    Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn pack_u16(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn unpack_u16(bytes: &[u8]) -> Result<Vec<u16>, PackError> {
    check(bytes, 2)?;
    Ok(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect())
}

/// One bit per value, least significant bit first: value `i` is bit `i % 8` of byte `i / 8`;
/// the unused bits of the last byte are 0.
pub fn pack_bits(values: &[bool]) -> Vec<u8> {
    let mut bytes = vec![0u8; values.len().div_ceil(8)];
    for (i, _) in values.iter().enumerate().filter(|(_, v)| **v) {
        bytes[i / 8] |= 1 << (i % 8);
    }
    bytes
}

/// The `len` values of [`pack_bits`], or a message when the bytes do not hold exactly that many.
pub fn unpack_bits(bytes: &[u8], len: usize) -> Result<Vec<bool>, String> {
    if bytes.len() != len.div_ceil(8) {
        return Err(format!("{} bytes of bits cannot hold {len} values; that takes {}", bytes.len(), len.div_ceil(8)));
    }
    if len % 8 != 0 && bytes[len / 8] >> (len % 8) != 0 {
        return Err(format!("bits past the {len} values are set"));
    }
    Ok((0..len).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect())
}

fn check(bytes: &[u8], element: usize) -> Result<(), PackError> {
    if bytes.len() % element == 0 { Ok(()) } else { Err(PackError { element, len: bytes.len() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        let values = [0.0f32, -1.5, f32::MIN_POSITIVE, 3.4e38, f32::NAN];
        let back = unpack_f32(&pack_f32(&values)).unwrap();
        assert_eq!(back.len(), values.len());
        for (a, b) in values.iter().zip(&back) {
            assert_eq!(a.to_bits(), b.to_bits());
        }
        assert_eq!(unpack_u16(&pack_u16(&[0, 7, 65535])).unwrap(), vec![0, 7, 65535]);
        assert_eq!(unpack_u32(&pack_u32(&[0, 7, u32::MAX])).unwrap(), vec![0, 7, u32::MAX]);
    }

    #[test]
    fn bits_round_trip_and_refuse_stray_bits() {
        let values = [true, false, false, true, true, false, false, false, true, true];
        let bytes = pack_bits(&values);
        assert_eq!(bytes, vec![0b0001_1001, 0b0000_0011]);
        assert_eq!(unpack_bits(&bytes, 10).unwrap(), values);
        assert!(unpack_bits(&bytes, 9).unwrap_err().contains("past the 9 values"));
        assert!(unpack_bits(&bytes, 17).is_err());
        assert_eq!(unpack_bits(&[], 0).unwrap(), Vec::<bool>::new());
    }

    #[test]
    fn refuses_truncated_arrays() {
        assert_eq!(unpack_f32(&[1, 2, 3]), Err(PackError { element: 4, len: 3 }));
    }
}
