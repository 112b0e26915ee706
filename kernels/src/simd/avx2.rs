//! The avx2 tier (x86-64-v3): 8 lanes in a ymm register; masks are vectors whose lanes
//! are selected by their sign bit (`blendv`), F16C conversions, masked partial f32
//! loads and stores (`vmaskmovps`).

use super::{v16, Elem, Kind, Tier};
use core::arch::x86_64::*;
use half::{bf16, f16};

#[derive(Clone, Copy)]
pub(crate) struct Avx2;

/// Lanes below `k` (for maskload / maskstore).
#[inline(always)]
pub(crate) fn first_lanes(k: usize) -> __m256i {
    // SAFETY (every function of this file): the avx2 tier is enabled in the entry
    // point this code is inlined into.
    unsafe {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(k as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }
}

impl Tier for Avx2 {
    const LANES: usize = 8;
    type F = __m256;
    type I = __m256i;
    type M = __m256;

    #[inline(always)]
    fn splat(x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn add(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn fnma(a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn min(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn abs(a: __m256) -> __m256 {
        unsafe { _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff))) }
    }
    #[inline(always)]
    fn sign(a: __m256) -> __m256 {
        a // blendv reads the sign bit
    }
    #[inline(always)]
    fn is_nan(a: __m256) -> __m256 {
        unsafe { _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a) }
    }
    #[inline(always)]
    fn select(m: __m256, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_blendv_ps(b, a, m) }
    }
    #[inline(always)]
    fn hsum(v: __m256) -> f32 {
        unsafe {
            let s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
            _mm_cvtss_f32(s1)
        }
    }

    #[inline(always)]
    fn splat_i(x: i32) -> __m256i {
        unsafe { _mm256_set1_epi32(x) }
    }
    #[inline(always)]
    fn bits(a: __m256) -> __m256i {
        unsafe { _mm256_castps_si256(a) }
    }
    #[inline(always)]
    fn from_bits(a: __m256i) -> __m256 {
        unsafe { _mm256_castsi256_ps(a) }
    }
    #[inline(always)]
    fn sub_i(a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn min_i(a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_min_epi32(a, b) }
    }
    #[inline(always)]
    fn shl23(a: __m256i) -> __m256i {
        unsafe { _mm256_slli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shr3(a: __m256i) -> __m256i {
        unsafe { _mm256_srli_epi32::<3>(a) }
    }
    #[inline(always)]
    fn lookup8(t: &[f32; 16], k: __m256i) -> __m256 {
        // SAFETY: the table holds 16 floats; vpermps reads k mod 8.
        unsafe { _mm256_permutevar8x32_ps(_mm256_loadu_ps(t.as_ptr()), k) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> __m256 {
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut f16, v: __m256) {
        // F16C rounds to nearest even and keeps subnormals.
        unsafe {
            _mm_storeu_si128(
                p as *mut __m128i,
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            )
        }
    }
    #[inline(always)]
    unsafe fn store_bf16(p: *mut bf16, v: __m256) {
        // Round to nearest even on the integer pattern: exact for every non-NaN value,
        // subnormals included.
        unsafe {
            let x = _mm256_castps_si256(v);
            let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
            let r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
            let r = _mm256_srli_epi32::<16>(r);
            let packed =
                _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
            _mm_storeu_si128(p as *mut __m128i, packed);
        }
    }
    #[inline(always)]
    unsafe fn load_part<T: Elem>(p: *const T, k: usize) -> __m256 {
        // SAFETY: maskload does not touch (or fault on) masked-off lanes.
        unsafe {
            match T::KIND {
                Kind::F32 => _mm256_maskload_ps(p as *const f32, first_lanes(k)),
                _ => super::load_part_buffered::<Self, T>(p, k),
            }
        }
    }
    #[inline(always)]
    unsafe fn store_part<T: Elem>(p: *mut T, v: __m256, k: usize) {
        // SAFETY: maskstore does not touch (or fault on) masked-off lanes.
        unsafe {
            match T::KIND {
                Kind::F32 => _mm256_maskstore_ps(p as *mut f32, first_lanes(k), v),
                _ => super::store_part_buffered::<Self, T>(p, v, k),
            }
        }
    }
    #[inline(always)]
    fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
    }

    v16!(2);
}
