//! The neon tier (aarch64 Advanced SIMD): 4 lanes in a q register, `tbl` lookups,
//! `fcvtl` / `fcvtn` for f16. Minima are compare-and-select with the x86 `minps`
//! semantics, so NaNs behave as on the other tiers.

use super::{v16, Tier};
use core::arch::aarch64::*;
use core::arch::asm;
use half::{bf16, f16};

#[derive(Clone, Copy)]
pub(crate) struct Neon;

impl Tier for Neon {
    const LANES: usize = 4;
    type F = float32x4_t;
    type I = int32x4_t;
    type M = uint32x4_t;

    // SAFETY (every function of this impl): neon is enabled in the entry point this
    // code is inlined into.
    #[inline(always)]
    fn splat(x: f32) -> float32x4_t {
        unsafe { vdupq_n_f32(x) }
    }
    #[inline(always)]
    fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vaddq_f32(a, b) }
    }
    #[inline(always)]
    fn sub(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vsubq_f32(a, b) }
    }
    #[inline(always)]
    fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vmulq_f32(a, b) }
    }
    #[inline(always)]
    fn div(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vdivq_f32(a, b) }
    }
    #[inline(always)]
    fn fma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        unsafe { vfmaq_f32(c, a, b) }
    }
    #[inline(always)]
    fn fnma(a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        unsafe { vfmsq_f32(c, a, b) }
    }
    #[inline(always)]
    fn min(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vbslq_f32(vcltq_f32(a, b), a, b) }
    }
    #[inline(always)]
    fn abs(a: float32x4_t) -> float32x4_t {
        unsafe { vabsq_f32(a) }
    }
    #[inline(always)]
    fn sign(a: float32x4_t) -> uint32x4_t {
        unsafe { vcltzq_s32(vreinterpretq_s32_f32(a)) }
    }
    #[inline(always)]
    fn is_nan(a: float32x4_t) -> uint32x4_t {
        unsafe { vmvnq_u32(vceqq_f32(a, a)) }
    }
    #[inline(always)]
    fn select(m: uint32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vbslq_f32(m, a, b) }
    }
    #[inline(always)]
    fn max(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        unsafe { vbslq_f32(vcgtq_f32(a, b), a, b) }
    }
    #[inline(always)]
    fn lt(a: float32x4_t, b: float32x4_t) -> uint32x4_t {
        unsafe { vcltq_f32(a, b) }
    }
    #[inline(always)]
    fn ne(a: float32x4_t, b: float32x4_t) -> uint32x4_t {
        unsafe { vmvnq_u32(vceqq_f32(a, b)) }
    }
    #[inline(always)]
    fn and_m(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        unsafe { vandq_u32(a, b) }
    }
    #[inline(always)]
    fn or_m(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        unsafe { vorrq_u32(a, b) }
    }
    #[inline(always)]
    fn mask_from_bits(bits: u32) -> uint32x4_t {
        unsafe {
            let sel: [u32; 4] = [1, 2, 4, 8];
            vtstq_u32(vdupq_n_u32(bits & 0xf), vld1q_u32(sel.as_ptr()))
        }
    }
    #[inline(always)]
    fn mask_bits(m: uint32x4_t) -> u32 {
        unsafe {
            let sel: [u32; 4] = [1, 2, 4, 8];
            vaddvq_u32(vandq_u32(m, vld1q_u32(sel.as_ptr())))
        }
    }
    #[inline(always)]
    fn fma_if(on: bool, a: float32x4_t, b: float32x4_t, c: float32x4_t) -> float32x4_t {
        unsafe {
            vbslq_f32(
                vdupq_n_u32((on as u32).wrapping_neg()),
                vfmaq_f32(c, a, b),
                c,
            )
        }
    }
    #[inline(always)]
    fn hsum(v: float32x4_t) -> f32 {
        unsafe {
            let s2 = vadd_f32(vget_low_f32(v), vget_high_f32(v));
            vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
        }
    }

    #[inline(always)]
    fn splat_i(x: i32) -> int32x4_t {
        unsafe { vdupq_n_s32(x) }
    }
    #[inline(always)]
    fn bits(a: float32x4_t) -> int32x4_t {
        unsafe { vreinterpretq_s32_f32(a) }
    }
    #[inline(always)]
    fn from_bits(a: int32x4_t) -> float32x4_t {
        unsafe { vreinterpretq_f32_s32(a) }
    }
    #[inline(always)]
    fn add_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        unsafe { vaddq_s32(a, b) }
    }
    #[inline(always)]
    fn sub_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        unsafe { vsubq_s32(a, b) }
    }
    #[inline(always)]
    fn min_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        unsafe { vminq_s32(a, b) }
    }
    #[inline(always)]
    fn shl23(a: int32x4_t) -> int32x4_t {
        unsafe { vshlq_n_s32::<23>(a) }
    }
    #[inline(always)]
    fn shr3(a: int32x4_t) -> int32x4_t {
        unsafe { vreinterpretq_s32_u32(vshrq_n_u32::<3>(vreinterpretq_u32_s32(a))) }
    }
    #[inline(always)]
    fn lookup8(t: &[f32; 16], k: int32x4_t) -> float32x4_t {
        // Byte indices 4j + (0, 1, 2, 3) of each lane's entry j = k mod 8, then `tbl`
        // over the table's first 8 floats.
        unsafe {
            let j = vandq_u32(vreinterpretq_u32_s32(k), vdupq_n_u32(7));
            let bytes = vaddq_u32(vmulq_n_u32(j, 0x0404_0404), vdupq_n_u32(0x0302_0100));
            let tab = uint8x16x2_t(
                vreinterpretq_u8_f32(vld1q_f32(t.as_ptr())),
                vreinterpretq_u8_f32(vld1q_f32(t.as_ptr().add(4))),
            );
            vreinterpretq_f32_u8(vqtbl2q_u8(tab, vreinterpretq_u8_u32(bytes)))
        }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        unsafe { vst1q_f32(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> float32x4_t {
        unsafe {
            let h = vld1_u16(p as *const u16);
            let out: float32x4_t;
            // SAFETY: fcvtl widens four f16 lanes to f32 exactly; registers only.
            asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) out, in(vreg) h,
                 options(pure, nomem, nostack, preserves_flags));
            out
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> float32x4_t {
        unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16))) }
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const bf16, odd: bool) -> float32x4_t {
        unsafe {
            let x = vreinterpretq_u32_u16(vld1q_u16(p as *const u16));
            vreinterpretq_f32_u32(if odd {
                vandq_u32(x, vdupq_n_u32(0xffff_0000))
            } else {
                vshlq_n_u32::<16>(x)
            })
        }
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut f16, v: float32x4_t) {
        unsafe {
            let h: uint16x4_t;
            // SAFETY: fcvtn narrows four f32 lanes to f16 (round to nearest even under
            // the default FPCR, subnormals kept); registers only.
            asm!("fcvtn {0:v}.4h, {1:v}.4s", out(vreg) h, in(vreg) v,
                 options(pure, nomem, nostack, preserves_flags));
            vst1_u16(p as *mut u16, h);
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(p: *mut bf16, v: float32x4_t) {
        // Round to nearest even on the integer pattern: exact for every non-NaN value,
        // subnormals included.
        unsafe {
            let x = vreinterpretq_u32_f32(v);
            let lsb = vandq_u32(vshrq_n_u32::<16>(x), vdupq_n_u32(1));
            let r = vaddq_u32(vaddq_u32(x, vdupq_n_u32(0x7fff)), lsb);
            vst1_u16(p as *mut u16, vshrn_n_u32::<16>(r));
        }
    }

    v16!(4);
}
