//! NEON sigmoid: 4 f32 per step, evaluated as two vectors of 2 f64.

use super::{LN2_HI, LN2_LO, NEG_LOG2E, ONE_BITS, POLY, SHIFTER, SIGN_BIT, Z_MAX};
use core::arch::aarch64::*;

/// The module's f64 recipe on 2 lanes (same operations, same order as scalar).
/// `vminq_f64` differs from `minpd` only for NaN lanes, which are replaced later.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn sigmoid_pd(x: float64x2_t) -> float64x2_t {
    let z = vabsq_f64(x);
    let z = vminq_f64(z, vdupq_n_f64(Z_MAX));
    let t = vmulq_f64(z, vdupq_n_f64(NEG_LOG2E));
    let tm = vaddq_f64(t, vdupq_n_f64(SHIFTER));
    let nf = vsubq_f64(tm, vdupq_n_f64(SHIFTER));
    let negz = vreinterpretq_f64_u64(veorq_u64(vreinterpretq_u64_f64(z), vdupq_n_u64(SIGN_BIT)));
    let r = vsubq_f64(negz, vmulq_f64(nf, vdupq_n_f64(LN2_HI)));
    let r = vsubq_f64(r, vmulq_f64(nf, vdupq_n_f64(LN2_LO)));
    let mut p = vdupq_n_f64(POLY[0]);
    let mut i = 1;
    while i < POLY.len() {
        p = vaddq_f64(vmulq_f64(p, r), vdupq_n_f64(POLY[i]));
        i += 1;
    }
    let scale = vreinterpretq_f64_u64(vaddq_u64(
        vshlq_n_u64::<52>(vreinterpretq_u64_f64(tm)),
        vdupq_n_u64(ONE_BITS),
    ));
    let e = vmulq_f64(p, scale);
    let one = vdupq_n_f64(1.0);
    let d = vaddq_f64(one, e);
    let nonneg = vcgezq_f64(x);
    let num = vbslq_f64(nonneg, one, e);
    vdivq_f64(num, d)
}

/// Sigmoid of 4 f32 lanes.
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn sigmoid_ps(x: float32x4_t) -> float32x4_t {
    let lo = sigmoid_pd(vcvt_f64_f32(vget_low_f32(x)));
    let hi = sigmoid_pd(vcvt_high_f64_f32(x));
    let y = vcvt_high_f32_f64(vcvt_f32_f64(lo), hi);
    let ordered = vceqq_f32(x, x);
    vbslq_f32(ordered, y, vaddq_f32(x, x))
}

/// Elementwise sigmoid, 4 lanes per step, scalar tail (same recipe, same bits).
///
/// # Safety
/// See the module contract for the pointers.
#[target_feature(enable = "neon")]
pub unsafe fn f32_rr_p9_div_u4(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: i + 4 <= n, both pointers valid for n elements.
        unsafe { vst1q_f32(y.add(i), sigmoid_ps(vld1q_f32(x.add(i)))) };
        i += 4;
    }
    while i < n {
        // SAFETY: i < n.
        unsafe { *y.add(i) = super::scalar::sigmoid_f32(*x.add(i)) };
        i += 1;
    }
}
