//! AVX2 row moves (the shared 256-bit x86 strategies of `compact::x86`) and
//! scatter-add: 4 x 8 lanes per step, F16C for f16, integer round-to-nearest-even for
//! bf16, a scalar tail.

use super::{add_tail, AddElem, CopyRowsArgs, ScatterAddArgs};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Row moves: the shared 256-bit x86 strategies (see `compact::x86`).
///
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn bytes_rows_y256nt(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller; the tier includes AVX2.
    unsafe { super::x86::copy_rows(a) }
}

// ---------------------------------------------------------------------------------------
// Scatter-add.

/// 8 lanes of an element type as f32, and the rounding store.
trait Lanes: AddElem {
    /// # Safety
    /// 8 elements readable at p.
    unsafe fn load(p: *const Self) -> __m256;
    /// # Safety
    /// 8 elements writable at p; v has no NaN but the canonical one.
    unsafe fn store(p: *mut Self, v: __m256);
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, v: __m256) {
        // F16C rounds to nearest even and keeps subnormals.
        unsafe {
            _mm_storeu_si128(
                p as *mut __m128i,
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            )
        }
    }
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m256 {
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, v: __m256) {
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
}

/// `h + g * y` (or `h + y`) with NaN replaced by the canonical NaN.
#[inline(always)]
unsafe fn add8<const GATED: bool>(h: __m256, y: __m256, g: __m256) -> __m256 {
    unsafe {
        let t = if GATED { _mm256_mul_ps(g, y) } else { y };
        let s = _mm256_add_ps(h, t);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(s, s);
        _mm256_blendv_ps(
            s,
            _mm256_castsi256_ps(_mm256_set1_epi32(super::CANONICAL_NAN_F32 as i32)),
            nan,
        )
    }
}

#[inline(always)]
unsafe fn add_row<T: Lanes, const GATED: bool>(
    hr: *mut T,
    yr: *const T,
    g: __m256,
    gs: f32,
    d: usize,
) {
    // SAFETY: every access lies in [0, d) of the two rows.
    unsafe {
        let mut c = 0;
        while c + 32 <= d {
            let y0 = T::load(yr.add(c));
            let y1 = T::load(yr.add(c + 8));
            let y2 = T::load(yr.add(c + 16));
            let y3 = T::load(yr.add(c + 24));
            let h0 = T::load(hr.add(c));
            let h1 = T::load(hr.add(c + 8));
            let h2 = T::load(hr.add(c + 16));
            let h3 = T::load(hr.add(c + 24));
            T::store(hr.add(c), add8::<GATED>(h0, y0, g));
            T::store(hr.add(c + 8), add8::<GATED>(h1, y1, g));
            T::store(hr.add(c + 16), add8::<GATED>(h2, y2, g));
            T::store(hr.add(c + 24), add8::<GATED>(h3, y3, g));
            c += 32;
        }
        while c + 8 <= d {
            let v = add8::<GATED>(T::load(hr.add(c)), T::load(yr.add(c)), g);
            T::store(hr.add(c), v);
            c += 8;
        }
        add_tail(hr, yr, if GATED { Some(gs) } else { None }, c, d);
    }
}

#[inline(always)]
unsafe fn scatter_add<T: Lanes>(a: &ScatterAddArgs<T>) {
    for j in 0..a.n {
        // SAFETY: the contract makes idx[j], row idx[j] of h, row j of y and g[j] valid.
        unsafe {
            let hr = a.h.add(*a.idx.add(j) as usize * a.h_stride);
            let yr = a.y.add(j * a.y_stride);
            if j + 1 < a.n {
                // The head of the next destination row (its index is not predictable).
                let next = a.h.add(*a.idx.add(j + 1) as usize * a.h_stride) as *const i8;
                for line in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * line));
                }
            }
            if a.g.is_null() {
                add_row::<T, false>(hr, yr, _mm256_setzero_ps(), 1.0, a.d);
            } else {
                let g = *a.g.add(j);
                add_row::<T, true>(hr, yr, _mm256_set1_ps(g), g, a.d);
            }
        }
    }
}

/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f32_scatter_add_u4(a: &ScatterAddArgs<f32>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f16_scatter_add_u4(a: &ScatterAddArgs<f16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn bf16_scatter_add_u4(a: &ScatterAddArgs<bf16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
