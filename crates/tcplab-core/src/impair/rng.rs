//! The wire's pseudo-random numbers: SplitMix64 (Steele, Lea, Flood 2014), small, fast
//! and fully determined by its seed, so a seeded run drops the same segments every time.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `ppm` parts per million.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        // Always draw, so the n-th packet's fate depends only on the seed and n.
        let draw = self.next_u64() % 1_000_000;
        draw < u64::from(ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn chance_is_roughly_the_probability() {
        let mut r = SplitMix64::new(7);
        let hits = (0..100_000).filter(|_| r.chance_ppm(50_000)).count();
        assert!((4_000..6_000).contains(&hits), "{hits} of 100000 at 5%");
    }
}
