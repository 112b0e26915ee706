//! Elementwise logistic sigmoid over f32: `y[i] = 1 / (1 + exp(-x[i]))`.
//!
//! # Contract (every variant)
//! - `n` may be 0; `x` and `y` each point to `n` valid `f32` (any alignment).
//! - `x == y` (in place) is allowed; any other overlap is forbidden.
//! - Nothing outside `[x, x+n)` is read and nothing outside `[y, y+n)` is written.
//!
//! # Numerics (identical on every tier, bit for bit)
//! Every variant evaluates the same sequence of IEEE f64 operations per element
//! (no fused multiply-add, true division) and rounds once to f32 at the end:
//!
//! 1. `z = min(|x|, 120)`; `n = round(-z * log2 e)` (round-to-nearest-even by the
//!    1.5 * 2^52 shifter); `r = (-z - n * ln2_hi) - n * ln2_lo`, `|r| <= 0.347`.
//! 2. `e = p(r) * 2^n ≈ exp(-z)` with `p` the degree-9 Taylor polynomial of `exp`
//!    (truncation error < 1e-11 relative), Horner form with separate mul and add.
//! 3. `q = (x >= 0 ? 1 : e) / (1 + e)`, then `q` rounded to nearest-even f32.
//!
//! The f64 value is within 2e-11 relative of the true sigmoid, so the f32 result is
//! the correctly rounded one or its neighbour: **at most 1 ulp** from the correctly
//! rounded result for every finite input, subnormal outputs included (they are
//! rounded, not flushed). `sigmoid(+inf) = 1`, `sigmoid(-inf) = 0`,
//! `sigmoid(±0) = 0.5`, `sigmoid(NaN)` = the input NaN, quieted (`x + x`).
//! This is checked over all 2^32 inputs by `tests/sigmoid_exhaustive.rs`.
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
    crate::kernel!(sigmoid::scalar::f32_rr_p9_div_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(sigmoid::avx2::f32_rr_p9_div_u8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(sigmoid::avx512::f32_rr_p9_div_u16),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(sigmoid::neon::f32_rr_p9_div_u4),
];

// Constants shared by every tier (f64). `LN2_HI` has 32 significant bits, so
// `n * LN2_HI` is exact for |n| < 2^21.
pub(crate) const NEG_LOG2E: f64 = -core::f64::consts::LOG2_E;
pub(crate) const SHIFTER: f64 = 6755399441055744.0; // 1.5 * 2^52
pub(crate) const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
pub(crate) const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
pub(crate) const Z_MAX: f64 = 120.0;
pub(crate) const ONE_BITS: u64 = 0x3ff0_0000_0000_0000;
pub(crate) const SIGN_BIT: u64 = 0x8000_0000_0000_0000;
/// Taylor coefficients 1/k!, highest degree first (c9 .. c0).
pub(crate) const POLY: [f64; 10] = [
    1.0 / 362880.0,
    1.0 / 40320.0,
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];
