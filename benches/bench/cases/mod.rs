//! The benchmark cases of every kernel family. Each family module returns its cases;
//! shapes are the ones the issues set targets for.

mod attend;
mod compact;
mod score;
mod select;
mod softmax;

use crate::Case;

pub fn all(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    v.extend(score::cases(quick));
    v.extend(select::cases(quick));
    v.extend(compact::cases(quick));
    v.extend(attend::cases(quick));
    v.extend(softmax::cases(quick));
    v
}

/// Deterministic pseudo-random f32 in [-1, 1) (xorshift), for inputs.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// f32 output bits.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
