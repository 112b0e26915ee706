//! AVX-512 selection: 16 lanes per block, predicates as masked integer compares into
//! mask registers, and `vpcompressd` **into a register** followed by a whole-vector
//! store. The memory-destination form of `vpcompressd` is microcoded on AMD Zen 4
//! (over 10x slower); the zero-masking register form has a false dependency on its
//! destination there, so the merge form is used with the source vector itself as the
//! merge operand (a true dependency on a value that is already available).

use super::keys::{INF_BITS, M_SGT, M_ULT};
use super::passes::Lanes;
use crate::simd::Avx512;
use core::arch::x86_64::*;

impl Lanes for Avx512 {
    const W: usize = 16;
    type V = __m512i;
    type M = __mmask16;
    type N = __mmask16;
    type C = (__m512i, __m512i);

    #[inline(always)]
    unsafe fn load(p: *const u32) -> __m512i {
        // SAFETY: the caller passes 16 valid elements.
        unsafe { _mm512_loadu_si512(p as *const __m512i) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const u32, n: usize) -> __m512i {
        // SAFETY: masked lanes are not accessed; the first n are valid.
        unsafe { _mm512_maskz_loadu_epi32(Self::first(n), p as *const i32) }
    }
    #[inline(always)]
    fn iota(base: u32) -> __m512i {
        // SAFETY: the avx512 tier is enabled in every caller.
        unsafe {
            _mm512_add_epi32(
                _mm512_set1_epi32(base as i32),
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            )
        }
    }
    #[inline(always)]
    fn step(v: __m512i) -> __m512i {
        // SAFETY: as above.
        unsafe { _mm512_add_epi32(v, _mm512_set1_epi32(16)) }
    }
    #[inline(always)]
    fn konst<const MODE: u8>(c: u32) -> (__m512i, __m512i) {
        // SAFETY: as above.
        unsafe {
            match MODE {
                // c <= INF_BITS (Pred::gt): c < b <= INF as one unsigned range check,
                // b - (c + 1) < INF - c.
                M_SGT => (
                    _mm512_set1_epi32(c.wrapping_add(1) as i32),
                    _mm512_set1_epi32((INF_BITS - c) as i32),
                ),
                _ => (_mm512_set1_epi32(c as i32), _mm512_setzero_si512()),
            }
        }
    }
    #[inline(always)]
    fn npn(b: __m512i) -> __mmask16 {
        // SAFETY: as above.
        unsafe { _mm512_cmple_epi32_mask(b, _mm512_set1_epi32(INF_BITS as i32)) }
    }
    #[inline(always)]
    fn pred<const MODE: u8>(b: __m512i, c: (__m512i, __m512i), npn: __mmask16) -> __mmask16 {
        // SAFETY: as above.
        unsafe {
            match MODE {
                M_SGT => _mm512_cmplt_epu32_mask(_mm512_sub_epi32(b, c.0), c.1),
                M_ULT => _mm512_mask_cmplt_epu32_mask(npn, b, c.0),
                _ => 0xffff,
            }
        }
    }
    #[inline(always)]
    fn first(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }
    #[inline(always)]
    fn and(a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn or(a: __mmask16, b: __mmask16) -> __mmask16 {
        a | b
    }
    #[inline(always)]
    fn andnot(a: __mmask16, b: __mmask16) -> __mmask16 {
        a & !b
    }
    #[inline(always)]
    fn count(m: __mmask16) -> usize {
        m.count_ones() as usize
    }
    #[inline(always)]
    fn group(m: [__mmask16; 4]) -> u64 {
        // SAFETY: the avx512 tier (avx512bw) is enabled in every caller.
        unsafe {
            let lo = _mm512_kunpackw(m[1] as u32, m[0] as u32);
            let hi = _mm512_kunpackw(m[3] as u32, m[2] as u32);
            _mm512_kunpackd(hi as u64, lo as u64) as u64
        }
    }
    #[inline(always)]
    fn max_key(acc: __m512i, b: __m512i) -> __m512i {
        // SAFETY: the avx512 tier is enabled in every caller.
        unsafe {
            let k = _mm512_xor_si512(b, _mm512_srli_epi32::<1>(_mm512_srai_epi32::<31>(b)));
            _mm512_max_epi32(acc, k)
        }
    }
    #[inline(always)]
    fn key_floor() -> __m512i {
        // SAFETY: as above.
        unsafe { _mm512_set1_epi32(i32::MIN) }
    }
    #[inline(always)]
    unsafe fn store(out: *mut u32, v: __m512i) {
        // SAFETY: the caller gives room for 16 elements.
        unsafe { _mm512_storeu_si512(out as *mut __m512i, v) }
    }
    #[inline(always)]
    fn lowest(m: __mmask16, k: usize) -> __mmask16 {
        // SAFETY: bmi2 is part of the tier.
        unsafe { _pdep_u32((1u32 << k) - 1, m as u32) as __mmask16 }
    }
    #[inline(always)]
    unsafe fn keep(p: *const u8) -> __mmask16 {
        // SAFETY: the caller passes 16 valid bytes.
        unsafe {
            let v = _mm_loadu_si128(p as *const __m128i);
            _mm_test_epi8_mask(v, v)
        }
    }
    #[inline(always)]
    unsafe fn keep_part(p: *const u8, n: usize) -> __mmask16 {
        // SAFETY: masked lanes are not accessed; the first n are valid.
        unsafe {
            let v = _mm_maskz_loadu_epi8(Self::first(n), p as *const i8);
            _mm_test_epi8_mask(v, v)
        }
    }
    #[inline(always)]
    unsafe fn compress(out: *mut u32, m: __mmask16, v: __m512i) {
        // SAFETY: the caller gives room for 16 elements.
        unsafe { _mm512_storeu_si512(out as *mut __m512i, _mm512_mask_compress_epi32(v, m, v)) }
    }
    #[inline(always)]
    unsafe fn compress_exact(out: *mut u32, m: __mmask16, v: __m512i) {
        // SAFETY: the caller gives room for count(m) elements; masked lanes are not
        // written.
        unsafe {
            let c = _mm512_mask_compress_epi32(v, m, v);
            _mm512_mask_storeu_epi32(out as *mut i32, Self::first(Self::count(m)), c)
        }
    }
    #[inline(always)]
    unsafe fn store_mask(out: *mut u8, m: __mmask16) {
        // SAFETY: the caller gives room for 16 bytes.
        unsafe { _mm_storeu_si128(out as *mut __m128i, _mm_maskz_mov_epi8(m, _mm_set1_epi8(1))) }
    }
    #[inline(always)]
    unsafe fn store_mask_part(out: *mut u8, m: __mmask16, n: usize) {
        // SAFETY: the caller gives room for n bytes; masked lanes are not written.
        unsafe {
            _mm_mask_storeu_epi8(
                out as *mut i8,
                Self::first(n),
                _mm_maskz_mov_epi8(m, _mm_set1_epi8(1)),
            )
        }
    }
}
