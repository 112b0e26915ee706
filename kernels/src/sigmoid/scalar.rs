//! Portable reference sigmoid. Defines the exact operation sequence every tier follows.

use super::{LN2_HI, LN2_LO, NEG_LOG2E, ONE_BITS, POLY, SHIFTER, SIGN_BIT, Z_MAX};

/// Sigmoid of one f32, by the module's f64 recipe.
#[inline]
pub fn sigmoid_f32(x: f32) -> f32 {
    if x.is_nan() {
        return x + x;
    }
    let xd = x as f64;
    let z = f64::from_bits(xd.to_bits() & !SIGN_BIT);
    // `min` spelled out so NaN-free inputs take the same path as `vminpd`.
    let z = if z < Z_MAX { z } else { Z_MAX };
    let t = z * NEG_LOG2E;
    let tm = t + SHIFTER;
    let nf = tm - SHIFTER;
    let negz = f64::from_bits(z.to_bits() ^ SIGN_BIT);
    let r = negz - nf * LN2_HI;
    let r = r - nf * LN2_LO;
    let mut p = POLY[0];
    let mut i = 1;
    while i < POLY.len() {
        p = p * r + POLY[i];
        i += 1;
    }
    let scale = f64::from_bits((tm.to_bits() << 52).wrapping_add(ONE_BITS));
    let e = p * scale;
    let d = 1.0 + e;
    let num = if xd >= 0.0 { 1.0 } else { e };
    (num / d) as f32
}

/// Elementwise sigmoid, one element at a time.
///
/// # Safety
/// See the module contract: `x` and `y` valid for `n` elements, equal or disjoint.
pub unsafe fn f32_rr_p9_div_u1(x: *const f32, y: *mut f32, n: usize) {
    for i in 0..n {
        // SAFETY: i < n and both pointers are valid for n elements; reading x[i]
        // before writing y[i] keeps the in-place case correct.
        unsafe { *y.add(i) = sigmoid_f32(*x.add(i)) };
    }
}
