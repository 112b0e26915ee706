//! Portable reference sigmoid: the module's recipe, one lane at a time, with an exact
//! software fused multiply-add so that it matches the SIMD tiers bit for bit.

use super::*;
use crate::score::fma_f32 as fma;

/// `2^-m` for `0 <= m <= 126`, exactly.
#[inline(always)]
fn pow2_neg(m: i32) -> f32 {
    f32::from_bits(((127 - m) as u32) << 23)
}

/// `q * 2^-m` rounded once (`q >= 1/4`, `0 <= m <= 226`).
#[inline(always)]
fn scale(q: f32, m: i32) -> f32 {
    let m1 = if m < M_SPLIT { m } else { M_SPLIT };
    (q * pow2_neg(m1)) * pow2_neg(m - m1)
}

/// Sigmoid of one f32, by the module's recipe.
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    if x.is_nan() {
        return f32::from_bits(CANONICAL_NAN);
    }
    let a = f32::from_bits(x.to_bits() & 0x7fff_ffff);
    // min(104, a) with NaN propagating, as `minps(104, a)` does.
    let z = if Z_MAX < a { Z_MAX } else { a };
    let t = fma(z, LOG2E_X8, SHIFTER);
    let kf = t - SHIFTER;
    let r = fma(-kf, LN2_8_HI, z);
    let r = fma(-kf, LN2_8_LO, r);
    let u = fma(r, P4, P3);
    let u = fma(u, r, P2);
    let u = fma(u, r, P1);
    let p = u * r;
    let k = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let j = (k & 15) as usize;
    let (hi, lo) = (T_HI[j], T_LO[j]);
    let ep = hi + fma(hi, p, lo);
    let m = (k >> 3) as i32;
    let d = 1.0 + scale(ep, m);
    if x.to_bits() >> 31 == 0 {
        1.0 / d
    } else {
        scale(ep / d, m)
    }
}

/// Elementwise sigmoid, one element at a time.
///
/// # Safety
/// See the module contract: `x` and `y` valid for `n` elements, equal or disjoint.
pub unsafe fn f32_rr2_lut8_p4_div_u1(x: *const f32, y: *mut f32, n: usize) {
    for i in 0..n {
        // SAFETY: i < n and both pointers are valid for n elements; reading x[i]
        // before writing y[i] keeps the in-place case correct.
        unsafe { *y.add(i) = sigmoid_f32(*x.add(i)) };
    }
}
