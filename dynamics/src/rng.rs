//! The one seeded random-number generator of forgetlab: SplitMix64 (Steele, Lea and Flood
//! 2014, "Fast splittable pseudorandom number generators"). Its output is fixed by its
//! definition, so a split, a tie-break at a top-q cut, a synthetic image or a bench's fake
//! records made from a seed are the same in every version of forgetlab and of its
//! dependencies. Training's own randomness (initialisation, augmentation, dropout) is
//! libtorch's, seeded from the run's seed; everything forgetlab draws itself comes from here.

/// The SplitMix64 state: `next_u64` adds the golden-ratio increment and returns the
/// finaliser ([`mix`]) of the new state.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

/// The golden-ratio increment `floor(2^64 / phi)`, odd.
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser (a variant of MurmurHash3's `fmix64`): a bijection of `u64` that
/// spreads every input bit over the output.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// `state += GOLDEN`, then `mix(state)`.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A number in `0..bound` as `(next * bound) >> 64` (Lemire's multiply, without the
    /// rejection step: its bias, below `bound / 2^64`, does not matter here).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// A float in `[0, 1)` from the top 24 bits: every value a multiple of `2^-24`.
    pub fn unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A float in `[0, 1)` from the top 53 bits.
    pub fn unit_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Fisher–Yates shuffle, last position first.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            let pick = self.below(last as u64 + 1) as usize;
            items.swap(last, pick);
        }
    }
}

/// Seed for one named stream under `seed`: FNV-1a of `name` mixed into `seed`, so streams
/// for different names (classes, splits) are independent and stable.
pub fn stream_seed(seed: u64, name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    SplitMix64::new(seed ^ hash).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // Reference values of SplitMix64 seeded with 1234567 (from the published C code).
        let mut rng = SplitMix64::new(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn units_lie_in_the_unit_interval() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..10_000 {
            let (a, b) = (rng.unit_f32(), rng.unit_f64());
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b), "{a} {b}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..50).collect();
        SplitMix64::new(9).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
