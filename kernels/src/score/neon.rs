//! NEON scoring: the 16 canonical lanes of each (row, router) accumulator live in four
//! q registers. Blocks of 4 rows x 1 router when there is one router, 2 x 2 otherwise.

use super::{activate, drive, logit, ScoreArgs, ToF32};
use core::arch::aarch64::*;
use half::{bf16, f16};

type V16 = [float32x4_t; 4];

/// Loading 16 elements as four f32 vectors (exact conversion).
trait Load16: ToF32 + Default {
    /// # Safety
    /// `p` valid for 16 elements.
    unsafe fn load(p: *const Self) -> V16;
    /// Loads the first `k < 16` elements, the rest as +0.0.
    /// # Safety
    /// `p` valid for `k` elements.
    #[inline(always)]
    unsafe fn load_first(p: *const Self, k: usize) -> V16 {
        let mut buf = [Self::default(); 16];
        // SAFETY: k < 16 elements are valid at p; buf holds 16.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), k);
            Self::load(buf.as_ptr())
        }
    }
}

impl Load16 for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> V16 {
        unsafe {
            [
                vld1q_f32(p),
                vld1q_f32(p.add(4)),
                vld1q_f32(p.add(8)),
                vld1q_f32(p.add(12)),
            ]
        }
    }
}

/// Exact f16 -> f32 of four lanes with integer ops and one multiply by 2^112
/// (which also scales f16 subnormals, held as f32 subnormals, exactly).
#[inline(always)]
unsafe fn f16x4_to_f32(x: uint16x4_t) -> float32x4_t {
    unsafe {
        let x = vmovl_u16(x);
        let em = vshlq_n_u32::<13>(vandq_u32(x, vdupq_n_u32(0x7fff)));
        let scaled = vreinterpretq_u32_f32(vmulq_f32(
            vreinterpretq_f32_u32(em),
            vdupq_n_f32(f32::from_bits(0x7780_0000)), // 2^112
        ));
        let special = vceqq_u32(vandq_u32(x, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
        let infnan = vorrq_u32(em, vdupq_n_u32(0x7f80_0000));
        let mag = vbslq_u32(special, infnan, scaled);
        let sign = vshlq_n_u32::<16>(vandq_u32(x, vdupq_n_u32(0x8000)));
        vreinterpretq_f32_u32(vorrq_u32(mag, sign))
    }
}

impl Load16 for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> V16 {
        unsafe {
            let a = vld1q_u16(p as *const u16);
            let b = vld1q_u16((p as *const u16).add(8));
            [
                f16x4_to_f32(vget_low_u16(a)),
                f16x4_to_f32(vget_high_u16(a)),
                f16x4_to_f32(vget_low_u16(b)),
                f16x4_to_f32(vget_high_u16(b)),
            ]
        }
    }
}

impl Load16 for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> V16 {
        unsafe {
            let a = vld1q_u16(p as *const u16);
            let b = vld1q_u16((p as *const u16).add(8));
            [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(a))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(a)),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(b))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(b)),
            ]
        }
    }
}

/// The canonical reduction tree on four q registers (lanes 0..4, 4..8, 8..12, 12..16).
#[inline(always)]
unsafe fn reduce(v: V16) -> f32 {
    unsafe {
        let s8lo = vaddq_f32(v[0], v[2]);
        let s8hi = vaddq_f32(v[1], v[3]);
        let s4 = vaddq_f32(s8lo, s8hi);
        let s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
        vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
    }
}

#[inline(always)]
unsafe fn fma4(h: V16, w: V16, acc: V16) -> V16 {
    unsafe {
        [
            vfmaq_f32(acc[0], h[0], w[0]),
            vfmaq_f32(acc[1], h[1], w[1]),
            vfmaq_f32(acc[2], h[2], w[2]),
            vfmaq_f32(acc[3], h[3], w[3]),
        ]
    }
}

/// Rows `i..i+R` against routers `e0..e0+EB`, written to the output.
#[inline(always)]
unsafe fn block<T: Load16, const R: usize, const EB: usize>(a: &ScoreArgs<T>, i: usize, e0: usize) {
    unsafe {
        let h: [*const T; R] = core::array::from_fn(|r| a.h.add((i + r) * a.h_stride));
        let w: [*const T; EB] = core::array::from_fn(|e| a.w.add((e0 + e) * a.w_stride));
        let zero = [vdupq_n_f32(0.0); 4];
        let mut acc = [[zero; EB]; R];
        let d = a.d;
        let mut j = 0;
        while j + 16 <= d {
            let mut wv = [zero; EB];
            for e in 0..EB {
                wv[e] = T::load(w[e].add(j));
            }
            for r in 0..R {
                let hv = T::load(h[r].add(j));
                for e in 0..EB {
                    acc[r][e] = fma4(hv, wv[e], acc[r][e]);
                }
            }
            j += 16;
        }
        if j < d {
            let k = d - j;
            let mut wv = [zero; EB];
            for e in 0..EB {
                wv[e] = T::load_first(w[e].add(j), k);
            }
            for r in 0..R {
                let hv = T::load_first(h[r].add(j), k);
                for e in 0..EB {
                    acc[r][e] = fma4(hv, wv[e], acc[r][e]);
                }
            }
        }
        for r in 0..R {
            for e in 0..EB {
                let s = logit(a, i + r, e0 + e, reduce(acc[r][e]));
                *a.out.add((i + r) * a.out_stride + e0 + e) = s;
            }
        }
    }
}

#[inline(always)]
unsafe fn run<T: Load16>(a: &ScoreArgs<T>) {
    if a.e == 1 {
        drive!(a, 4, 1, |i, r, e0, _eb| unsafe {
            if r == 4 {
                block::<T, 4, 1>(a, i, e0)
            } else {
                block::<T, 1, 1>(a, i, e0)
            }
        });
    } else {
        drive!(a, 2, 2, |i, r, e0, eb| unsafe {
            match (r, eb) {
                (2, 2) => block::<T, 2, 2>(a, i, e0),
                (2, _) => block::<T, 2, 1>(a, i, e0),
                (_, 2) => block::<T, 1, 2>(a, i, e0),
                (_, _) => block::<T, 1, 1>(a, i, e0),
            }
        });
    }
    // SAFETY: every logit was written above; this tier's sigmoid runs here.
    unsafe { activate(a, crate::sigmoid::neon::f32_rr2_lut8_p4_div_u8) };
}

/// # Safety
/// See the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn f32_fma16_r4e2(a: &ScoreArgs<f32>) {
    unsafe { run(a) }
}
/// # Safety
/// See the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn f16_fma16_r4e2(a: &ScoreArgs<f16>) {
    unsafe { run(a) }
}
/// # Safety
/// See the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn bf16_fma16_r4e2(a: &ScoreArgs<bf16>) {
    unsafe { run(a) }
}
