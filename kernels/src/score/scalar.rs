//! Portable reference scoring: the canonical order, one element at a time.

use super::{activate, drive, fma_f32, logit, reduce16, ScoreArgs, ToF32};
use half::{bf16, f16};

/// The canonical dot product of one row pair.
///
/// # Safety
/// `h` and `w` valid for `d` elements.
#[inline(always)]
unsafe fn dot<T: ToF32>(h: *const T, w: *const T, d: usize) -> f32 {
    let mut acc = [0f32; 16];
    for j in 0..d {
        // SAFETY: j < d.
        let (x, y) = unsafe { ((*h.add(j)).to_f32(), (*w.add(j)).to_f32()) };
        acc[j % 16] = fma_f32(x, y, acc[j % 16]);
    }
    reduce16(&acc)
}

#[inline(always)]
unsafe fn run<T: ToF32>(a: &ScoreArgs<T>) {
    drive!(a, 1, 1, |i, _r, e, _eb| {
        // SAFETY: the contract makes row i of H, row e of W and out[i][e] valid.
        unsafe {
            let d = dot(a.h.add(i * a.h_stride), a.w.add(e * a.w_stride), a.d);
            *a.out.add(i * a.out_stride + e) = logit(a, i, e, d);
        }
    });
    // SAFETY: every logit was written above; this tier's sigmoid runs here.
    unsafe { activate(a, crate::sigmoid::scalar::f32_rr2_lut8_p4_div_u1) };
}

/// # Safety
/// See the module contract.
pub unsafe fn f32_fma16_u1(a: &ScoreArgs<f32>) {
    unsafe { run(a) }
}
/// # Safety
/// See the module contract.
pub unsafe fn f16_fma16_u1(a: &ScoreArgs<f16>) {
    unsafe { run(a) }
}
/// # Safety
/// See the module contract.
pub unsafe fn bf16_fma16_u1(a: &ScoreArgs<bf16>) {
    unsafe { run(a) }
}
