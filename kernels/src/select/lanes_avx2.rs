//! AVX2 selection: 8 lanes per block; predicates as `vpcmpgtd` (unsigned compares via
//! the sign-flip), lane masks through `vmovmskps`, and compression by `vpermd` with a
//! 256-entry lookup table of packed byte indices (2 KiB), then a whole-vector store.

use super::keys::{INF_BITS, M_SGT, M_ULT};
use super::passes::Lanes;
use crate::simd::Avx2;
use core::arch::x86_64::*;

/// `PERM[m]`: byte j = the lane of the j-th set bit of `m`.
static PERM: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut m = 0;
    while m < 256 {
        let (mut j, mut b, mut e) = (0, 0, 0u64);
        while b < 8 {
            if (m >> b) & 1 != 0 {
                e |= (b as u64) << (8 * j);
                j += 1;
            }
            b += 1;
        }
        t[m] = e;
        m += 1;
    }
    t
};

/// `BYTES[m]`: byte j = bit j of `m`.
static BYTES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut m = 0;
    while m < 256 {
        let mut b = 0;
        let mut e = 0u64;
        while b < 8 {
            e |= (((m >> b) & 1) as u64) << (8 * b);
            b += 1;
        }
        t[m] = e;
        m += 1;
    }
    t
};

/// Per-block data shared by the predicates: the positive-NaN lanes and the bits with
/// the sign flipped (for unsigned compares).
#[derive(Clone, Copy)]
pub(crate) struct Shared {
    posnan: __m256i,
    flipped: __m256i,
}

/// All-ones in lanes `< n`.
#[inline(always)]
fn lanes_below(n: usize) -> __m256i {
    // SAFETY: the avx2 tier is enabled in every caller.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

#[inline(always)]
fn bits(v: __m256i) -> u32 {
    // SAFETY: as above.
    unsafe { _mm256_movemask_ps(_mm256_castsi256_ps(v)) as u32 }
}

#[inline(always)]
fn permute(m: u32, v: __m256i) -> __m256i {
    // SAFETY: as above; m < 256.
    unsafe {
        let perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(*PERM.get_unchecked(m as usize) as i64));
        _mm256_permutevar8x32_epi32(v, perm)
    }
}

impl Lanes for Avx2 {
    const W: usize = 8;
    type V = __m256i;
    type M = u32;
    type N = Shared;
    type C = __m256i;

    #[inline(always)]
    unsafe fn load(p: *const u32) -> __m256i {
        // SAFETY: the caller passes 8 valid elements.
        unsafe { _mm256_loadu_si256(p as *const __m256i) }
    }
    #[inline(always)]
    unsafe fn load_part(p: *const u32, n: usize) -> __m256i {
        // SAFETY: masked lanes are not accessed; the first n are valid.
        unsafe { _mm256_maskload_epi32(p as *const i32, lanes_below(n)) }
    }
    #[inline(always)]
    fn iota(base: u32) -> __m256i {
        // SAFETY: as above.
        unsafe {
            _mm256_add_epi32(
                _mm256_set1_epi32(base as i32),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
    }
    #[inline(always)]
    fn step(v: __m256i) -> __m256i {
        // SAFETY: as above.
        unsafe { _mm256_add_epi32(v, _mm256_set1_epi32(8)) }
    }
    #[inline(always)]
    fn konst<const MODE: u8>(c: u32) -> __m256i {
        // SAFETY: as above.
        unsafe {
            match MODE {
                M_ULT => _mm256_set1_epi32((c ^ 0x8000_0000) as i32),
                _ => _mm256_set1_epi32(c as i32),
            }
        }
    }
    #[inline(always)]
    fn npn(b: __m256i) -> Shared {
        // SAFETY: as above.
        unsafe {
            Shared {
                posnan: _mm256_cmpgt_epi32(b, _mm256_set1_epi32(INF_BITS as i32)),
                flipped: _mm256_xor_si256(b, _mm256_set1_epi32(i32::MIN)),
            }
        }
    }
    #[inline(always)]
    fn pred<const MODE: u8>(b: __m256i, c: __m256i, n: Shared) -> u32 {
        // SAFETY: as above.
        unsafe {
            match MODE {
                M_SGT => bits(_mm256_andnot_si256(n.posnan, _mm256_cmpgt_epi32(b, c))),
                M_ULT => bits(_mm256_andnot_si256(
                    n.posnan,
                    _mm256_cmpgt_epi32(c, n.flipped),
                )),
                _ => 0xff,
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
        m.count_ones() as usize
    }
    #[inline(always)]
    fn group(m: [u32; 4]) -> u64 {
        (m[0] as u64) | (m[1] as u64) << 8 | (m[2] as u64) << 16 | (m[3] as u64) << 24
    }
    #[inline(always)]
    fn max_key(acc: __m256i, b: __m256i) -> __m256i {
        // SAFETY: the avx2 tier is enabled in every caller.
        unsafe {
            let k = _mm256_xor_si256(b, _mm256_srli_epi32::<1>(_mm256_srai_epi32::<31>(b)));
            _mm256_max_epi32(acc, k)
        }
    }
    #[inline(always)]
    fn key_floor() -> __m256i {
        // SAFETY: as above.
        unsafe { _mm256_set1_epi32(i32::MIN) }
    }
    #[inline(always)]
    unsafe fn store(out: *mut u32, v: __m256i) {
        // SAFETY: the caller gives room for 8 elements.
        unsafe { _mm256_storeu_si256(out as *mut __m256i, v) }
    }
    #[inline(always)]
    fn lowest(m: u32, k: usize) -> u32 {
        // SAFETY: bmi2 is part of the tier.
        unsafe { _pdep_u32((1u32 << k) - 1, m) }
    }
    #[inline(always)]
    unsafe fn keep(p: *const u8) -> u32 {
        // SAFETY: the caller passes 8 valid bytes.
        unsafe {
            let v = _mm_loadl_epi64(p as *const __m128i);
            let z = _mm_cmpeq_epi8(v, _mm_setzero_si128());
            !(_mm_movemask_epi8(z) as u32) & 0xff
        }
    }
    #[inline(always)]
    unsafe fn keep_part(p: *const u8, n: usize) -> u32 {
        let mut tmp = [0u8; 8];
        // SAFETY: the caller passes n < 8 valid bytes; tmp is local.
        unsafe {
            core::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            Self::keep(tmp.as_ptr())
        }
    }
    #[inline(always)]
    unsafe fn compress(out: *mut u32, m: u32, v: __m256i) {
        // SAFETY: the caller gives room for 8 elements.
        unsafe { _mm256_storeu_si256(out as *mut __m256i, permute(m, v)) }
    }
    #[inline(always)]
    unsafe fn compress_exact(out: *mut u32, m: u32, v: __m256i) {
        // SAFETY: the caller gives room for count(m) elements; masked lanes are not
        // written.
        unsafe {
            _mm256_maskstore_epi32(out as *mut i32, lanes_below(Self::count(m)), permute(m, v))
        }
    }
    #[inline(always)]
    unsafe fn store_mask(out: *mut u8, m: u32) {
        // SAFETY: the caller gives room for 8 bytes; m < 256.
        unsafe { (out as *mut u64).write_unaligned(*BYTES.get_unchecked(m as usize)) }
    }
    #[inline(always)]
    unsafe fn store_mask_part(out: *mut u8, m: u32, n: usize) {
        // SAFETY: the caller gives room for n < 8 bytes; m < 256.
        unsafe {
            let b = BYTES.get_unchecked(m as usize).to_le_bytes();
            core::ptr::copy_nonoverlapping(b.as_ptr(), out, n)
        }
    }
}
