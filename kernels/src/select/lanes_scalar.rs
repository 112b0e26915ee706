//! The scalar tier's selection primitives: one-lane "vectors" of u32 under the shared
//! passes, the reference every tier must match (and does, exactly: selection has a
//! unique answer).

use super::keys::{INF_BITS, M_SGT, M_ULT};
use super::passes::Lanes;
use crate::simd::Scalar;

/// One lane of u32; masks are 0 or 1.
impl Lanes for Scalar {
    const W: usize = 1;
    type V = u32;
    type M = u32;
    type N = bool;
    type C = u32;

    #[inline(always)]
    unsafe fn load(p: *const u32) -> u32 {
        // SAFETY: the caller passes a valid element.
        unsafe { p.read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_part(_p: *const u32, _n: usize) -> u32 {
        0 // n < 1: nothing to read
    }
    #[inline(always)]
    fn iota(base: u32) -> u32 {
        base
    }
    #[inline(always)]
    fn step(v: u32) -> u32 {
        v.wrapping_add(1)
    }
    #[inline(always)]
    fn konst<const MODE: u8>(c: u32) -> u32 {
        c
    }
    #[inline(always)]
    fn npn(b: u32) -> bool {
        (b as i32) <= INF_BITS as i32
    }
    #[inline(always)]
    fn pred<const MODE: u8>(b: u32, c: u32, npn: bool) -> u32 {
        match MODE {
            M_SGT => ((b as i32) > c as i32 && npn) as u32,
            M_ULT => (b < c && npn) as u32,
            _ => 1,
        }
    }
    #[inline(always)]
    fn first(n: usize) -> u32 {
        (n >= 1) as u32
    }
    #[inline(always)]
    fn and(a: u32, b: u32) -> u32 {
        a & b
    }
    #[inline(always)]
    fn or(a: u32, b: u32) -> u32 {
        a | b
    }
    #[inline(always)]
    fn andnot(a: u32, b: u32) -> u32 {
        a & !b
    }
    #[inline(always)]
    fn count(m: u32) -> usize {
        m as usize
    }
    #[inline(always)]
    fn group(m: [u32; 4]) -> u64 {
        (m[0] | m[1] << 1 | m[2] << 2 | m[3] << 3) as u64
    }
    #[inline(always)]
    fn max_key(acc: u32, b: u32) -> u32 {
        (acc as i32).max(super::keys::max_key(b)) as u32
    }
    #[inline(always)]
    fn key_floor() -> u32 {
        i32::MIN as u32
    }
    #[inline(always)]
    unsafe fn store(out: *mut u32, v: u32) {
        // SAFETY: the caller gives room for one element.
        unsafe { out.write_unaligned(v) }
    }
    #[inline(always)]
    fn lowest(_m: u32, _k: usize) -> u32 {
        0 // k < count(m) <= 1
    }
    #[inline(always)]
    unsafe fn keep(p: *const u8) -> u32 {
        // SAFETY: the caller passes a valid byte.
        (unsafe { *p } != 0) as u32
    }
    #[inline(always)]
    unsafe fn keep_part(_p: *const u8, _n: usize) -> u32 {
        0
    }
    #[inline(always)]
    unsafe fn compress(out: *mut u32, _m: u32, v: u32) {
        // SAFETY: the caller gives room for one element.
        unsafe { out.write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn compress_exact(out: *mut u32, m: u32, v: u32) {
        if m != 0 {
            // SAFETY: the caller gives room for count(m) = 1 element.
            unsafe { out.write_unaligned(v) }
        }
    }
    #[inline(always)]
    unsafe fn store_mask(out: *mut u8, m: u32) {
        // SAFETY: the caller gives room for one byte.
        unsafe { *out = m as u8 }
    }
    #[inline(always)]
    unsafe fn store_mask_part(_out: *mut u8, _m: u32, _n: usize) {}
}
