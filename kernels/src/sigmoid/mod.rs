//! Elementwise logistic sigmoid over f32: `y[i] = 1 / (1 + exp(-x[i]))`.
//!
//! # Contract (every variant)
//! - `n` may be 0; `x` and `y` each point to `n` valid `f32` (any alignment).
//! - `x == y` (in place) is allowed; any other overlap is forbidden.
//! - Nothing outside `[x, x+n)` is read and nothing outside `[y, y+n)` is written.
//!
//! # Numerics (identical on every tier, bit for bit)
//! Every variant evaluates the same sequence of IEEE f32 operations per lane (the same
//! fused multiply-adds, true division, single-rounding power-of-two scaling):
//!
//! 1. `z = min(104, |x|)`; `k = round(z * 8/ln2)` (the `1.5 * 2^23` shifter inside an
//!    FMA); `r = (z - k*L1) - k*L2` with two FMAs (`L1 + L2 = ln2/8`), `|r| <= 0.0434`.
//! 2. `e' = T[k mod 8] * (1 + p(r))` with `T[j] = 2^(-j/8)` held as a two-float
//!    (hi + lo) table and `p(r) = exp(-r) - 1` of degree 4:
//!    `e' = hi + fma(hi, p, lo)`, so `exp(-z) = e' * 2^-m` with `m = k div 8`.
//! 3. `d = 1 + e' * 2^-m`, then `q = 1 / d` for `x >= +0` (sign bit clear) and
//!    `q = (e' / d) * 2^-m` for a set sign bit, the last scaling rounded once (so
//!    subnormal results are rounded, not flushed).
//!
//! Accuracy: the result is within 2.5 ulp of the exact sigmoid for every finite
//! input, hence **at most 2 ulp from the correctly rounded result** (checked over all
//! 2^32 inputs by `tests/sigmoid_exhaustive.rs`, which also reports the maximum and
//! how many results are correctly rounded). `sigmoid(+inf) = 1`, `sigmoid(-inf) = 0`,
//! `sigmoid(±0) = 0.5`; a NaN input of any sign and payload gives the canonical quiet
//! NaN [`CANONICAL_NAN`] (0x7fc00000) on every tier (`tests/nan_canonical.rs` checks all
//! of them): the recipe's operations would carry a payload that differs between
//! instruction sets.
//! Results assume the default floating-point environment (no flush-to-zero).

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use crate::KernelInfo;

/// `unsafe fn(x, y, n)`: see the module contract.
pub type SigmoidF32 = unsafe fn(x: *const f32, y: *mut f32, n: usize);

/// Every f32 sigmoid variant compiled for this target, scalar first.
pub static SIGMOID_F32: &[KernelInfo<SigmoidF32>] = &[
    crate::kernel!(sigmoid::scalar::f32_rr2_lut8_p4_div_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(sigmoid::avx2::f32_rr2_lut8_p4_div_u16),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(sigmoid::avx512::f32_rr2_lut8_p4_div_u64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(sigmoid::neon::f32_rr2_lut8_p4_div_u8),
];

/// The bit pattern of the quiet NaN every tier returns for a NaN input.
pub const CANONICAL_NAN: u32 = 0x7fc0_0000;
/// `z` is clamped to this before the reduction: `sigmoid(-104)` already rounds to 0.
pub(crate) const Z_MAX: f32 = 104.0;
/// `8 / ln 2`, rounded to f32.
pub(crate) const LOG2E_X8: f32 = f32::from_bits(0x4138_aa3b);
/// `1.5 * 2^23`: adding it rounds to an integer and leaves it in the low mantissa bits.
pub(crate) const SHIFTER: f32 = 12_582_912.0;
/// `ln2 / 8 = L1 + L2` (L1 rounded to f32, L2 the rounded remainder).
pub(crate) const LN2_8_HI: f32 = f32::from_bits(0x3db1_7218);
pub(crate) const LN2_8_LO: f32 = f32::from_bits(0xaf82_e308);
/// `p(r) = r * (-1 + r * (1/2 + r * (-1/6 + r * 1/24)))`: coefficients C4 .. C1.
pub(crate) const P4: f32 = f32::from_bits(0x3d2a_aaab); // 1/24
pub(crate) const P3: f32 = f32::from_bits(0xbe2a_aaab); // -1/6
pub(crate) const P2: f32 = 0.5;
pub(crate) const P1: f32 = -1.0;
/// `2^(-j/8)` for j = 0..8 as hi + lo, repeated twice (16-entry permutes read j mod 16).
pub(crate) const T_HI: [f32; 16] = table([
    0x3f80_0000,
    0x3f6a_c0c7,
    0x3f57_44fd,
    0x3f45_672a,
    0x3f35_04f3,
    0x3f25_fed7,
    0x3f18_37f0,
    0x3f0b_95c2,
]);
pub(crate) const T_LO: [f32; 16] = table([
    0x0000_0000,
    0xb1c1_16de,
    0xb254_a58a,
    0x318a_a837,
    0x324f_e77a,
    0xb2ac_9d5e,
    0x32a3_1b71,
    0xb1e0_aba1,
]);
/// Scaling by `2^-m` is done as `2^-min(m, 100)` then `2^-(m - min(m, 100))`: the first
/// product is exact for the values scaled here (>= 1/4), so only the second rounds.
pub(crate) const M_SPLIT: i32 = 100;

const fn table(bits: [u32; 8]) -> [f32; 16] {
    let mut t = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = f32::from_bits(bits[i % 8]);
        i += 1;
    }
    t
}
