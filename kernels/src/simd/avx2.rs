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
    fn max(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn lt(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_cmp_ps::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn ne(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_cmp_ps::<_CMP_NEQ_UQ>(a, b) }
    }
    #[inline(always)]
    fn and_m(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_and_ps(a, b) }
    }
    #[inline(always)]
    fn or_m(a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_or_ps(a, b) }
    }
    #[inline(always)]
    fn mask_from_bits(bits: u32) -> __m256 {
        unsafe {
            let v = _mm256_set1_epi32((bits & 0xff) as i32);
            let sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(v, sel), sel))
        }
    }
    #[inline(always)]
    fn mask_bits(m: __m256) -> u32 {
        unsafe { _mm256_movemask_ps(m) as u32 }
    }
    #[inline(always)]
    fn fma_if(on: bool, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe {
            let m = _mm256_castsi256_ps(_mm256_set1_epi32((on as i32).wrapping_neg()));
            _mm256_blendv_ps(c, _mm256_fmadd_ps(a, b, c), m)
        }
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
    fn add_i(a: __m256i, b: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(a, b) }
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
    unsafe fn load_bf16_pairs(p: *const bf16, odd: bool) -> __m256 {
        unsafe {
            let x = _mm256_loadu_si256(p as *const __m256i);
            _mm256_castsi256_ps(if odd {
                _mm256_and_si256(x, _mm256_set1_epi32(0xffff_0000u32 as i32))
            } else {
                _mm256_slli_epi32::<16>(x)
            })
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
    #[inline(always)]
    fn prefetch_l2(p: *const u8) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) }
    }

    v16!(2);

    #[inline(always)]
    unsafe fn v16_store_trees<const R: usize, const C: usize>(
        acc: &[[[__m256; 2]; R]; C],
        s: *mut f32,
        stride: usize,
    ) {
        if R * C != 4 {
            // SAFETY: passed on.
            return unsafe { super::store_trees_each::<Self, R, C>(acc, s, stride) };
        }
        let a: [[__m256; 2]; 4] = core::array::from_fn(|i| acc[i / R][i % R]);
        // SAFETY: the runs of R floats at s, stride apart, are writable.
        unsafe {
            let w = reduce4(a[0], a[2], a[1], a[3]);
            let v = _mm_movelh_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps::<1>(w));
            match R {
                4 => _mm_storeu_ps(s, v),
                2 => {
                    _mm_store_sd(s as *mut f64, _mm_castps_pd(v));
                    _mm_storeh_pd(s.add(stride) as *mut f64, _mm_castps_pd(v));
                }
                _ => {
                    let mut tmp = [0f32; 4];
                    _mm_storeu_ps(tmp.as_mut_ptr(), v);
                    for (c, x) in tmp.iter().enumerate() {
                        *s.add(c * stride) = *x;
                    }
                }
            }
        }
    }
}

/// Four canonical 16-lane trees at once: returns ymm whose 128-bit lane 0 starts with
/// the trees of `a` and `c`, lane 1 with those of `b` and `d`.
#[inline(always)]
fn reduce4(a: [__m256; 2], b: [__m256; 2], c: [__m256; 2], d: [__m256; 2]) -> __m256 {
    unsafe {
        let (a, b, c, d) = (
            _mm256_add_ps(a[0], a[1]),
            _mm256_add_ps(b[0], b[1]),
            _mm256_add_ps(c[0], c[1]),
            _mm256_add_ps(d[0], d[1]),
        );
        let u0 = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(a, b),
            _mm256_permute2f128_ps::<0x31>(a, b),
        );
        let u1 = _mm256_add_ps(
            _mm256_permute2f128_ps::<0x20>(c, d),
            _mm256_permute2f128_ps::<0x31>(c, d),
        );
        let v = _mm256_add_ps(
            _mm256_shuffle_ps::<0x44>(u0, u1),
            _mm256_shuffle_ps::<0xee>(u0, u1),
        );
        _mm256_add_ps(
            _mm256_shuffle_ps::<0x88>(v, v),
            _mm256_shuffle_ps::<0xdd>(v, v),
        )
    }
}
