//! NEON sigmoid: 4 lanes per vector, two vectors per step, scalar tail (same recipe,
//! same bits). `tbl` reads the 8-entry table; the power-of-two scaling is two
//! multiplies by constructed powers of two (the first exact), as in the scalar code.

use super::*;
use core::arch::aarch64::*;

/// `2^-m` for lanes with `0 <= m <= 126`.
#[inline]
#[target_feature(enable = "neon")]
fn pow2_neg(m: uint32x4_t) -> float32x4_t {
    vreinterpretq_f32_u32(vshlq_n_u32::<23>(vsubq_u32(vdupq_n_u32(127), m)))
}

/// Looks up `table[j]` (8 floats) for each lane's `j` in `0..8`.
#[inline]
#[target_feature(enable = "neon")]
fn lookup8(table: &[f32; 16], byte_idx: uint8x16_t) -> float32x4_t {
    // SAFETY: the table holds 16 floats; the two loads read its first 8.
    let t = unsafe {
        uint8x16x2_t(
            vreinterpretq_u8_f32(vld1q_f32(table.as_ptr())),
            vreinterpretq_u8_f32(vld1q_f32(table.as_ptr().add(4))),
        )
    };
    vreinterpretq_f32_u8(vqtbl2q_u8(t, byte_idx))
}

/// The module's recipe on 4 lanes (same operations, same order as scalar).
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn sigmoid_ps(x: float32x4_t) -> float32x4_t {
    let one = vdupq_n_f32(1.0);
    // min(104, |x|): fmin propagates NaN, like minps with the NaN second.
    let z = vminq_f32(vdupq_n_f32(Z_MAX), vabsq_f32(x));
    let t = vfmaq_f32(vdupq_n_f32(SHIFTER), z, vdupq_n_f32(LOG2E_X8));
    let kf = vsubq_f32(t, vdupq_n_f32(SHIFTER));
    let r = vfmsq_f32(z, kf, vdupq_n_f32(LN2_8_HI));
    let r = vfmsq_f32(r, kf, vdupq_n_f32(LN2_8_LO));
    let u = vfmaq_f32(vdupq_n_f32(P3), r, vdupq_n_f32(P4));
    let u = vfmaq_f32(vdupq_n_f32(P2), u, r);
    let u = vfmaq_f32(vdupq_n_f32(P1), u, r);
    let p = vmulq_f32(u, r);
    let k = vsubq_u32(vreinterpretq_u32_f32(t), vdupq_n_u32(SHIFTER.to_bits()));
    // Byte indices 4j + (0, 1, 2, 3) of each lane's table entry.
    let j = vandq_u32(k, vdupq_n_u32(7));
    let bytes = vaddq_u32(vmulq_n_u32(j, 0x0404_0404), vdupq_n_u32(0x0302_0100));
    let bytes = vreinterpretq_u8_u32(bytes);
    let hi = lookup8(&T_HI, bytes);
    let lo = lookup8(&T_LO, bytes);
    let ep = vaddq_f32(hi, vfmaq_f32(lo, hi, p));
    let m = vshrq_n_u32::<3>(k);
    let m1 = vminq_u32(m, vdupq_n_u32(M_SPLIT as u32));
    let s1 = pow2_neg(m1);
    // For m > M_SPLIT the scaled e is below 2^-100 either way, so d = 1 exactly.
    let d = vaddq_f32(one, vmulq_f32(ep, s1));
    let neg = vcltzq_s32(vreinterpretq_s32_f32(x));
    let q = vdivq_f32(vbslq_f32(neg, ep, one), d);
    let s2 = pow2_neg(vsubq_u32(m, m1));
    let qn = vmulq_f32(vmulq_f32(q, s1), s2);
    let y = vbslq_f32(neg, qn, q);
    // A NaN lane carries a payload that depends on the operations above: canonical.
    let ordered = vceqq_f32(x, x);
    vbslq_f32(
        ordered,
        y,
        vreinterpretq_f32_u32(vdupq_n_u32(CANONICAL_NAN)),
    )
}

/// Elementwise sigmoid, 8 lanes per step, then 4, then a scalar tail.
///
/// # Safety
/// See the module contract for the pointers.
#[target_feature(enable = "neon")]
pub unsafe fn f32_rr2_lut8_p4_div_u8(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY (every block): offsets stay below n; both pointers are valid for n
    // elements; each vector is loaded before the store that may alias it.
    while i + 8 <= n {
        unsafe {
            let a = sigmoid_ps(vld1q_f32(x.add(i)));
            let b = sigmoid_ps(vld1q_f32(x.add(i + 4)));
            vst1q_f32(y.add(i), a);
            vst1q_f32(y.add(i + 4), b);
        }
        i += 8;
    }
    while i + 4 <= n {
        unsafe { vst1q_f32(y.add(i), sigmoid_ps(vld1q_f32(x.add(i)))) };
        i += 4;
    }
    while i < n {
        unsafe { *y.add(i) = super::scalar::sigmoid_f32(*x.add(i)) };
        i += 1;
    }
}
