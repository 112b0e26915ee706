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

use crate::simd::{self, Tier};
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
pub const CANONICAL_NAN: u32 = crate::numerics::CANONICAL_NAN;
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

/// `2^-m` for lanes with `0 <= m <= 126`, exactly.
#[inline(always)]
fn pow2_neg<S: Tier>(m: S::I) -> S::F {
    S::from_bits(S::shl23(S::sub_i(S::splat_i(127), m)))
}

/// The module's recipe on one vector of any tier (same operations, same order on every
/// tier; see the module doc).
#[inline(always)]
pub(crate) fn sigmoid_v<S: Tier>(x: S::F) -> S::F {
    let c = S::splat;
    let one = c(1.0);
    // min(104, |x|): the second operand (a NaN) when either is NaN.
    let z = S::min(c(Z_MAX), S::abs(x));
    let t = S::fma(z, c(LOG2E_X8), c(SHIFTER));
    let kf = S::sub(t, c(SHIFTER));
    let r = S::fnma(kf, c(LN2_8_HI), z);
    let r = S::fnma(kf, c(LN2_8_LO), r);
    let u = S::fma(r, c(P4), c(P3));
    let u = S::fma(u, r, c(P2));
    let u = S::fma(u, r, c(P1));
    let p = S::mul(u, r);
    let neg = S::sign(x);
    let y = if S::SCALEF {
        // The low bits of t are k (the shifter's low mantissa bits are zero), and
        // floor(7/8 - k/8) = -(k div 8) = -m, exact for the integers k here; the
        // scaling by 2^-m rounds once.
        let ki = S::bits(t);
        let ep = ep::<S>(ki, p);
        let neg_m = S::fma(kf, c(-0.125), c(0.875));
        let d = S::add(one, S::scalef(ep, neg_m));
        let q = S::div(S::select(neg, ep, one), d);
        S::select(neg, S::scalef(q, neg_m), q)
    } else {
        let k = S::sub_i(S::bits(t), S::splat_i(SHIFTER.to_bits() as i32));
        let ep = ep::<S>(k, p);
        let m = S::shr3(k);
        let m1 = S::min_i(m, S::splat_i(M_SPLIT));
        let s1 = pow2_neg::<S>(m1);
        // For m > M_SPLIT the scaled e is below 2^-100 either way, so d = 1 exactly.
        let d = S::add(one, S::mul(ep, s1));
        let q = S::div(S::select(neg, ep, one), d);
        let s2 = pow2_neg::<S>(S::sub_i(m, m1));
        S::select(neg, S::mul(S::mul(q, s1), s2), q)
    };
    // A NaN lane carries a payload that depends on the operations above: canonical.
    S::select(
        S::is_nan(x),
        S::from_bits(S::splat_i(CANONICAL_NAN as i32)),
        y,
    )
}

/// `e' = T[k mod 8] * (1 + p)` as `hi + fma(hi, p, lo)`.
#[inline(always)]
fn ep<S: Tier>(k: S::I, p: S::F) -> S::F {
    let hi = S::lookup8(&T_HI, k);
    let lo = S::lookup8(&T_LO, k);
    S::add(hi, S::fma(hi, p, lo))
}

/// The entry point of one tier: `U` vectors per step, then one, then a partial one.
macro_rules! entry {
    ($isa:ident, $tier:ident, $name:ident, $u:literal, $doc:literal) => {
        #[doc = concat!("The ", stringify!($isa), " sigmoid.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            simd::tier_fn!(
                $isa,
                #[doc = $doc]
                ///
                /// # Safety
                /// The CPU supports the tier; see the module contract for the pointers.
                pub unsafe fn $name(x: *const f32, y: *mut f32, n: usize) {
                    // SAFETY: passed on from the caller.
                    unsafe {
                        simd::map::<simd::$tier, $u>(
                            x,
                            y,
                            n,
                            #[inline(always)]
                            |v| sigmoid_v::<simd::$tier>(v),
                        )
                    }
                }
            );
        }
    };
}

entry!(
    scalar,
    Scalar,
    f32_rr2_lut8_p4_div_u1,
    1,
    "Elementwise sigmoid, one element at a time."
);
#[cfg(target_arch = "x86_64")]
entry!(
    avx2,
    Avx2,
    f32_rr2_lut8_p4_div_u16,
    2,
    "Elementwise sigmoid, 16 lanes per step, then 8, then a masked tail."
);
#[cfg(target_arch = "x86_64")]
entry!(
    avx512,
    Avx512,
    f32_rr2_lut8_p4_div_u64,
    4,
    "Elementwise sigmoid, 64 lanes per step, then 16, then a masked tail."
);
#[cfg(target_arch = "aarch64")]
entry!(
    neon,
    Neon,
    f32_rr2_lut8_p4_div_u8,
    2,
    "Elementwise sigmoid, 8 lanes per step, then 4, then a partial vector."
);

/// Sigmoid of one f32, by the module's recipe (the scalar tier's lane).
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    sigmoid_v::<simd::Scalar>(x)
}
