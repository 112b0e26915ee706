//! The scalar tier: one lane, portable Rust, the exact software fused multiply-add
//! ([`fma_f32`]), so that it matches the SIMD tiers bit for bit.

use super::{v16, Tier};
use crate::numerics::fma_f32;
use half::{bf16, f16};

#[derive(Clone, Copy)]
pub(crate) struct Scalar;

impl Tier for Scalar {
    const LANES: usize = 1;
    type F = f32;
    type I = i32;
    type M = bool;

    #[inline(always)]
    fn splat(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        fma_f32(a, b, c)
    }
    #[inline(always)]
    fn fnma(a: f32, b: f32, c: f32) -> f32 {
        fma_f32(-a, b, c)
    }
    #[inline(always)]
    fn min(a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn abs(a: f32) -> f32 {
        f32::from_bits(a.to_bits() & 0x7fff_ffff)
    }
    #[inline(always)]
    fn sign(a: f32) -> bool {
        a.to_bits() >> 31 != 0
    }
    #[inline(always)]
    fn is_nan(a: f32) -> bool {
        a.is_nan()
    }
    #[inline(always)]
    fn select(m: bool, a: f32, b: f32) -> f32 {
        if m {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn max(a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn lt(a: f32, b: f32) -> bool {
        a < b
    }
    #[inline(always)]
    fn ne(a: f32, b: f32) -> bool {
        a != b
    }
    #[inline(always)]
    fn and_m(a: bool, b: bool) -> bool {
        a & b
    }
    #[inline(always)]
    fn or_m(a: bool, b: bool) -> bool {
        a | b
    }
    #[inline(always)]
    fn mask_from_bits(bits: u32) -> bool {
        bits & 1 != 0
    }
    #[inline(always)]
    fn mask_bits(m: bool) -> u32 {
        m as u32
    }
    #[inline(always)]
    fn fma_if(on: bool, a: f32, b: f32, c: f32) -> f32 {
        // The software fused multiply-add is only evaluated where it is used.
        if on {
            fma_f32(a, b, c)
        } else {
            c
        }
    }
    #[inline(always)]
    fn hsum(v: f32) -> f32 {
        v
    }

    #[inline(always)]
    fn splat_i(x: i32) -> i32 {
        x
    }
    #[inline(always)]
    fn bits(a: f32) -> i32 {
        a.to_bits() as i32
    }
    #[inline(always)]
    fn from_bits(a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    #[inline(always)]
    fn add_i(a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    #[inline(always)]
    fn sub_i(a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    #[inline(always)]
    fn min_i(a: i32, b: i32) -> i32 {
        a.min(b)
    }
    #[inline(always)]
    fn shl23(a: i32) -> i32 {
        ((a as u32) << 23) as i32
    }
    #[inline(always)]
    fn shr3(a: i32) -> i32 {
        ((a as u32) >> 3) as i32
    }
    #[inline(always)]
    fn lookup8(t: &[f32; 16], k: i32) -> f32 {
        t[(k & 15) as usize]
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        // SAFETY: one float at p.
        unsafe { p.read_unaligned() }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        // SAFETY: one float at p.
        unsafe { p.write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> f32 {
        // SAFETY: one element at p.
        super::Elem::to_f32(unsafe { p.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> f32 {
        // SAFETY: one element at p.
        super::Elem::to_f32(unsafe { p.read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const bf16, odd: bool) -> f32 {
        // SAFETY: two elements at p.
        super::Elem::to_f32(unsafe { p.add(odd as usize).read_unaligned() })
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs_part(p: *const bf16, odd: bool, k: usize) -> f32 {
        // k < 2: the odd element is never valid, the even one when k = 1.
        if odd || k == 0 {
            0.0
        } else {
            // SAFETY: one element at p.
            super::Elem::to_f32(unsafe { p.read_unaligned() })
        }
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut f16, v: f32) {
        // SAFETY: one element at p.
        unsafe { p.write_unaligned(f16::from_f32(v)) }
    }
    #[inline(always)]
    unsafe fn store_bf16(p: *mut bf16, v: f32) {
        // SAFETY: one element at p.
        unsafe { p.write_unaligned(bf16::from_f32(v)) }
    }
    #[inline(always)]
    unsafe fn load_part<T: super::Elem>(_p: *const T, _k: usize) -> f32 {
        0.0 // k < 1: nothing to read
    }
    #[inline(always)]
    unsafe fn store_part<T: super::Elem>(_p: *mut T, _v: f32, _k: usize) {}

    v16!(16);
}
