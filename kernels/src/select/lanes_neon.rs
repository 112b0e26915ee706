//! NEON selection: 4 lanes per block; native signed/unsigned compares, the lane mask as
//! 4 bits (`and` with 1,2,4,8 then `addv`), and compression by `tbl` with a 16-entry
//! table of byte shuffles, then a whole-vector store.

use super::keys::{INF_BITS, M_SGT, M_ULT};
use super::passes::Lanes;
use crate::simd::Neon;
use core::arch::aarch64::*;

/// `SHUF[m]`: the byte shuffle moving the set lanes of `m` to the front.
static SHUF: [[u8; 16]; 16] = {
    let mut t = [[0u8; 16]; 16];
    let mut m = 0;
    while m < 16 {
        let (mut j, mut b) = (0, 0);
        while b < 4 {
            if (m >> b) & 1 != 0 {
                let mut x = 0;
                while x < 4 {
                    t[m][4 * j + x] = (4 * b + x) as u8;
                    x += 1;
                }
                j += 1;
            }
            b += 1;
        }
        m += 1;
    }
    t
};

/// `BYTES[m]`: byte j = bit j of `m`.
static BYTES: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut m = 0;
    while m < 16 {
        let mut b = 0;
        while b < 4 {
            t[m] |= (((m >> b) & 1) as u32) << (8 * b);
            b += 1;
        }
        m += 1;
    }
    t
};

#[inline(always)]
fn bits(v: uint32x4_t) -> u32 {
    // SAFETY: neon is enabled in every caller.
    unsafe {
        const W: [u32; 4] = [1, 2, 4, 8];
        vaddvq_u32(vandq_u32(v, vld1q_u32(W.as_ptr())))
    }
}

impl Lanes for Neon {
    const W: usize = 4;
    type V = uint32x4_t;
    type M = u32;
    type N = uint32x4_t;
    type C = uint32x4_t;

    #[inline(always)]
    unsafe fn load(p: *const u32) -> uint32x4_t {
        // SAFETY: the caller passes 4 valid elements.
        unsafe { vld1q_u32(p) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const u32, n: usize) -> uint32x4_t {
        let mut tmp = [0u32; 4];
        // SAFETY: the caller passes n < 4 valid elements; tmp is local.
        unsafe {
            core::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            vld1q_u32(tmp.as_ptr())
        }
    }
    #[inline(always)]
    fn iota(base: u32) -> uint32x4_t {
        const I: [u32; 4] = [0, 1, 2, 3];
        // SAFETY: as above.
        unsafe { vaddq_u32(vdupq_n_u32(base), vld1q_u32(I.as_ptr())) }
    }
    #[inline(always)]
    fn step(v: uint32x4_t) -> uint32x4_t {
        // SAFETY: as above.
        unsafe { vaddq_u32(v, vdupq_n_u32(4)) }
    }
    #[inline(always)]
    fn konst<const MODE: u8>(c: u32) -> uint32x4_t {
        // SAFETY: as above.
        unsafe { vdupq_n_u32(c) }
    }
    #[inline(always)]
    fn npn(b: uint32x4_t) -> uint32x4_t {
        // SAFETY: as above.
        unsafe { vcleq_s32(vreinterpretq_s32_u32(b), vdupq_n_s32(INF_BITS as i32)) }
    }
    #[inline(always)]
    fn pred<const MODE: u8>(b: uint32x4_t, c: uint32x4_t, npn: uint32x4_t) -> u32 {
        // SAFETY: as above.
        unsafe {
            match MODE {
                M_SGT => bits(vandq_u32(
                    vcgtq_s32(vreinterpretq_s32_u32(b), vreinterpretq_s32_u32(c)),
                    npn,
                )),
                M_ULT => bits(vandq_u32(vcltq_u32(b, c), npn)),
                _ => 0xf,
            }
        }
    }
    #[inline(always)]
    fn first(n: usize) -> u32 {
        (1u32 << n) - 1
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
        // Bit counts of 0..16 as nibbles. m < 16.
        ((0x4332_3221_3221_2110u64 >> (4 * m)) & 0xf) as usize
    }
    #[inline(always)]
    fn group(m: [u32; 4]) -> u64 {
        (m[0] | m[1] << 4 | m[2] << 8 | m[3] << 12) as u64
    }
    #[inline(always)]
    fn max_key(acc: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        // SAFETY: neon is enabled in every caller.
        unsafe {
            let bs = vreinterpretq_s32_u32(b);
            let flip = vshrq_n_u32::<1>(vreinterpretq_u32_s32(vshrq_n_s32::<31>(bs)));
            let k = vreinterpretq_s32_u32(veorq_u32(b, flip));
            vreinterpretq_u32_s32(vmaxq_s32(vreinterpretq_s32_u32(acc), k))
        }
    }
    #[inline(always)]
    fn key_floor() -> uint32x4_t {
        // SAFETY: as above.
        unsafe { vdupq_n_u32(i32::MIN as u32) }
    }
    #[inline(always)]
    unsafe fn store(out: *mut u32, v: uint32x4_t) {
        // SAFETY: the caller gives room for 4 elements.
        unsafe { vst1q_u32(out, v) }
    }
    #[inline(always)]
    fn lowest(mut m: u32, k: usize) -> u32 {
        while m.count_ones() as usize > k {
            m &= !(1u32 << (31 - m.leading_zeros()));
        }
        m
    }
    #[inline(always)]
    unsafe fn keep(p: *const u8) -> u32 {
        // SAFETY: the caller passes 4 valid bytes.
        let w = unsafe { (p as *const u32).read_unaligned() }.to_le();
        ((w & 0xff != 0) as u32)
            | (((w & 0xff00 != 0) as u32) << 1)
            | (((w & 0xff_0000 != 0) as u32) << 2)
            | (((w & 0xff00_0000 != 0) as u32) << 3)
    }
    #[inline(always)]
    unsafe fn keep_part(p: *const u8, n: usize) -> u32 {
        let mut tmp = [0u8; 4];
        // SAFETY: the caller passes n < 4 valid bytes; tmp is local.
        unsafe {
            core::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            Self::keep(tmp.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn compress(out: *mut u32, m: u32, v: uint32x4_t) {
        // SAFETY: the caller gives room for 4 elements; m < 16.
        unsafe {
            let shuf = vld1q_u8(SHUF.get_unchecked(m as usize).as_ptr());
            let c = vqtbl1q_u8(vreinterpretq_u8_u32(v), shuf);
            vst1q_u32(out, vreinterpretq_u32_u8(c))
        }
    }
    #[inline(always)]
    unsafe fn compress_exact(out: *mut u32, m: u32, v: uint32x4_t) {
        let mut tmp = [0u32; 4];
        // SAFETY: tmp is local; the caller gives room for count(m) elements.
        unsafe {
            Self::compress(tmp.as_mut_ptr(), m, v);
            core::ptr::copy_nonoverlapping(tmp.as_ptr(), out, Self::count(m))
        }
    }
    #[inline(always)]
    unsafe fn store_mask(out: *mut u8, m: u32) {
        // SAFETY: the caller gives room for 4 bytes; m < 16.
        unsafe { (out as *mut u32).write_unaligned(BYTES.get_unchecked(m as usize).to_le()) }
    }
    #[inline(always)]
    unsafe fn store_mask_part(out: *mut u8, m: u32, n: usize) {
        // SAFETY: the caller gives room for n < 4 bytes; m < 16.
        unsafe {
            let b = BYTES.get_unchecked(m as usize).to_le_bytes();
            core::ptr::copy_nonoverlapping(b.as_ptr(), out, n)
        }
    }
}
