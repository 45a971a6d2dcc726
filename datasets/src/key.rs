use sha2::{Digest, Sha256};

/// A sample's stable key: the first 128 bits of SHA-256 over its label (4 bytes,
/// little-endian) and its pixels, in lowercase hex. The same image with the same label has
/// the same key in every run, whatever its position, so runs are joined on it.
pub fn sample_key(pixels: &[u8], label: u32) -> String {
    let mut hasher = Sha256::new();
    hasher.update(label.to_le_bytes());
    hasher.update(pixels);
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_pixels_and_label() {
        let a = sample_key(&[1, 2, 3], 0);
        assert_eq!(a.len(), 32);
        assert_eq!(a, sample_key(&[1, 2, 3], 0));
        assert_ne!(a, sample_key(&[1, 2, 4], 0));
        assert_ne!(a, sample_key(&[1, 2, 3], 1));
    }
}
