//! The avx512 tier (x86-64-v4): 16 lanes in a zmm register, mask registers, masked
//! partial loads and stores, `vscalefps`.

use super::{v16, Elem, Kind, Tier};
use core::arch::x86_64::*;
use half::{bf16, f16};

#[derive(Clone, Copy)]
pub(crate) struct Avx512;

/// The mask of the first `k` lanes (`k <= 16`).
#[inline(always)]
pub(crate) fn mask16(k: usize) -> __mmask16 {
    if k >= 16 {
        0xffff
    } else {
        ((1u32 << k) - 1) as __mmask16
    }
}

/// f32 -> bf16 bits, round to nearest even on the integer pattern
/// (`(x + 0x7fff + ((x >> 16) & 1)) >> 16`): exact for every non-NaN value, subnormals
/// included (the AVX512-BF16 instruction would flush those to zero).
#[inline(always)]
fn to_bf16(v: __m512) -> __m256i {
    // SAFETY (every function of this file): the avx512 tier is enabled in the entry
    // point this code is inlined into.
    unsafe {
        let x = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
        let r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
        _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r))
    }
}

#[inline(always)]
fn from_bf16(v: __m256i) -> __m512 {
    unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v))) }
}

/// f32 -> f16 bits, round to nearest even (F16C semantics: subnormals kept).
#[inline(always)]
fn to_f16(v: __m512) -> __m256i {
    unsafe { _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
}

impl Tier for Avx512 {
    const LANES: usize = 16;
    const SCALEF: bool = true;
    type F = __m512;
    type I = __m512i;
    type M = __mmask16;

    #[inline(always)]
    fn splat(x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn add(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn fnma(a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fnmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn min(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn abs(a: __m512) -> __m512 {
        unsafe { _mm512_abs_ps(a) }
    }
    #[inline(always)]
    fn sign(a: __m512) -> __mmask16 {
        unsafe { _mm512_movepi32_mask(_mm512_castps_si512(a)) }
    }
    #[inline(always)]
    fn is_nan(a: __m512) -> __mmask16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a) }
    }
    #[inline(always)]
    fn select(m: __mmask16, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(m, b, a) }
    }
    #[inline(always)]
    fn max(a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn lt(a: __m512, b: __m512) -> __mmask16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) }
    }
    #[inline(always)]
    fn ne(a: __m512, b: __m512) -> __mmask16 {
        unsafe { _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, b) }
    }
    #[inline(always)]
    fn and_m(a: __mmask16, b: __mmask16) -> __mmask16 {
        a & b
    }
    #[inline(always)]
    fn or_m(a: __mmask16, b: __mmask16) -> __mmask16 {
        a | b
    }
    #[inline(always)]
    fn mask_from_bits(bits: u32) -> __mmask16 {
        bits as __mmask16
    }
    #[inline(always)]
    fn mask_bits(m: __mmask16) -> u32 {
        m as u32
    }
    #[inline(always)]
    fn fma_if(on: bool, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_mask3_fmadd_ps(a, b, c, (on as __mmask16).wrapping_neg()) }
    }
    #[inline(always)]
    fn scalef(x: __m512, e: __m512) -> __m512 {
        unsafe { _mm512_scalef_ps(x, e) }
    }
    #[inline(always)]
    fn hsum(v: __m512) -> f32 {
        unsafe {
            let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
            let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
            let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
            let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
            _mm_cvtss_f32(s1)
        }
    }

    #[inline(always)]
    fn splat_i(x: i32) -> __m512i {
        unsafe { _mm512_set1_epi32(x) }
    }
    #[inline(always)]
    fn bits(a: __m512) -> __m512i {
        unsafe { _mm512_castps_si512(a) }
    }
    #[inline(always)]
    fn from_bits(a: __m512i) -> __m512 {
        unsafe { _mm512_castsi512_ps(a) }
    }
    #[inline(always)]
    fn add_i(a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_add_epi32(a, b) }
    }
    #[inline(always)]
    fn sub_i(a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_sub_epi32(a, b) }
    }
    #[inline(always)]
    fn min_i(a: __m512i, b: __m512i) -> __m512i {
        unsafe { _mm512_min_epi32(a, b) }
    }
    #[inline(always)]
    fn shl23(a: __m512i) -> __m512i {
        unsafe { _mm512_slli_epi32::<23>(a) }
    }
    #[inline(always)]
    fn shr3(a: __m512i) -> __m512i {
        unsafe { _mm512_srli_epi32::<3>(a) }
    }
    #[inline(always)]
    fn lookup8(t: &[f32; 16], k: __m512i) -> __m512 {
        // SAFETY: the table holds 16 floats (8 entries twice); vpermps reads k mod 16.
        unsafe { _mm512_permutexvar_ps(k, _mm512_loadu_ps(t.as_ptr())) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const bf16) -> __m512 {
        unsafe { from_bf16(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs(p: *const bf16, odd: bool) -> __m512 {
        unsafe { bf16_split(_mm512_loadu_si512(p as *const __m512i), odd) }
    }
    #[inline(always)]
    unsafe fn load_bf16_pairs_part(p: *const bf16, odd: bool, k: usize) -> __m512 {
        // SAFETY: masked-off elements are neither read nor faulted on.
        unsafe { bf16_split(_mm512_maskz_loadu_epi16(mask32(k), p as *const i16), odd) }
    }
    #[inline(always)]
    unsafe fn store_f16(p: *mut f16, v: __m512) {
        unsafe { _mm256_storeu_si256(p as *mut __m256i, to_f16(v)) }
    }
    #[inline(always)]
    unsafe fn store_bf16(p: *mut bf16, v: __m512) {
        unsafe { _mm256_storeu_si256(p as *mut __m256i, to_bf16(v)) }
    }
    #[inline(always)]
    unsafe fn load_part<T: Elem>(p: *const T, k: usize) -> __m512 {
        // SAFETY: masked-off lanes are neither read nor faulted on.
        unsafe {
            match T::KIND {
                Kind::F32 => _mm512_maskz_loadu_ps(mask16(k), p as *const f32),
                Kind::F16 => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(k), p as *const i16)),
                Kind::BF16 => from_bf16(_mm256_maskz_loadu_epi16(mask16(k), p as *const i16)),
            }
        }
    }
    #[inline(always)]
    unsafe fn store_part<T: Elem>(p: *mut T, v: __m512, k: usize) {
        // SAFETY: masked-off lanes are not written.
        unsafe {
            match T::KIND {
                Kind::F32 => _mm512_mask_storeu_ps(p as *mut f32, mask16(k), v),
                Kind::F16 => _mm256_mask_storeu_epi16(p as *mut i16, mask16(k), to_f16(v)),
                Kind::BF16 => _mm256_mask_storeu_epi16(p as *mut i16, mask16(k), to_bf16(v)),
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

    v16!(1);

    #[inline(always)]
    unsafe fn v16_store_trees<const R: usize, const C: usize>(
        acc: &[[[__m512; 1]; R]; C],
        s: *mut f32,
        stride: usize,
    ) {
        if R * C != 16 {
            // SAFETY: passed on.
            return unsafe { super::store_trees_each::<Self, R, C>(acc, s, stride) };
        }
        let a: [__m512; 16] = core::array::from_fn(|i| acc[i / R][i % R][0]);
        // Lane `c * R + r` of w is tree (c, r).
        let w = reduce16x16(&a);
        // SAFETY: the runs of R floats at s, stride apart, are writable.
        unsafe {
            match R {
                8 => {
                    _mm256_storeu_ps(s, _mm512_extractf32x8_ps::<0>(w));
                    _mm256_storeu_ps(s.add(stride), _mm512_extractf32x8_ps::<1>(w));
                }
                4 => {
                    _mm_storeu_ps(s, _mm512_extractf32x4_ps::<0>(w));
                    _mm_storeu_ps(s.add(stride), _mm512_extractf32x4_ps::<1>(w));
                    _mm_storeu_ps(s.add(2 * stride), _mm512_extractf32x4_ps::<2>(w));
                    _mm_storeu_ps(s.add(3 * stride), _mm512_extractf32x4_ps::<3>(w));
                }
                _ => {
                    let mut tmp = [0f32; 16];
                    _mm512_storeu_ps(tmp.as_mut_ptr(), w);
                    for c in 0..C {
                        for r in 0..R {
                            *s.add(c * stride + r) = tmp[c * R + r];
                        }
                    }
                }
            }
        }
    }
}

/// The mask of the first `k` of 32 lanes (`k <= 32`).
#[inline(always)]
fn mask32(k: usize) -> __mmask32 {
    if k >= 32 {
        u32::MAX
    } else {
        (1u32 << k) - 1
    }
}

/// bf16 pairs (32-bit lanes): the odd element of each pair is the high half.
#[inline(always)]
fn bf16_split(x: __m512i, odd: bool) -> __m512 {
    unsafe {
        _mm512_castsi512_ps(if odd {
            _mm512_and_si512(x, _mm512_set1_epi32(0xffff_0000u32 as i32))
        } else {
            _mm512_slli_epi32::<16>(x)
        })
    }
}

/// Sixteen canonical 16-lane trees at once: lane `L` of the result is the tree of
/// `a[L]` (30 shuffles, 15 adds).
#[inline(always)]
fn reduce16x16(a: &[__m512; 16]) -> __m512 {
    #[inline(always)]
    fn c1(x: __m512, y: __m512) -> __m512 {
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(x, y),
                _mm512_shuffle_f32x4::<0xee>(x, y),
            )
        }
    }
    #[inline(always)]
    fn c2(x: __m512, y: __m512) -> __m512 {
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(x, y),
                _mm512_shuffle_f32x4::<0xdd>(x, y),
            )
        }
    }
    #[inline(always)]
    fn c3(x: __m512, y: __m512) -> __m512 {
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(x, y),
                _mm512_shuffle_ps::<0xee>(x, y),
            )
        }
    }
    #[inline(always)]
    fn c4(x: __m512, y: __m512) -> __m512 {
        unsafe {
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x88>(x, y),
                _mm512_shuffle_ps::<0xdd>(x, y),
            )
        }
    }
    let u0 = c2(c1(a[0], a[4]), c1(a[8], a[12]));
    let u1 = c2(c1(a[1], a[5]), c1(a[9], a[13]));
    let u2 = c2(c1(a[2], a[6]), c1(a[10], a[14]));
    let u3 = c2(c1(a[3], a[7]), c1(a[11], a[15]));
    c4(c3(u0, u1), c3(u2, u3))
}
