//! AVX-512 row moves and scatter-add.
//!
//! Row moves use the shared 256-bit x86 strategies of `compact::x86` (measured faster
//! than 512-bit moves for copies on Zen 4; see there). Scatter-add: 4 x 16 lanes per
//! step, a masked tail, integer round-to-nearest-even for bf16 (the AVX512-BF16
//! conversion would flush subnormals).

use super::{AddElem, CopyRowsArgs, ScatterAddArgs};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Row moves: the shared 256-bit x86 strategies (see `compact::x86`).
///
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn bytes_rows_y256nt(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller; the tier includes AVX2.
    unsafe { super::x86::copy_rows(a) }
}

// ---------------------------------------------------------------------------------------
// Scatter-add.

/// 16 lanes of an element type as f32, and the rounding store.
trait Lanes: AddElem {
    /// # Safety
    /// 16 elements readable at p.
    unsafe fn load(p: *const Self) -> __m512;
    /// Lanes `< k` from p, the rest +0.0. # Safety: k < 16 elements readable at p.
    unsafe fn load_first(p: *const Self, k: usize) -> __m512;
    /// # Safety
    /// 16 elements writable at p; v has no NaN but the canonical one.
    unsafe fn store(p: *mut Self, v: __m512);
    /// # Safety
    /// k < 16 elements writable at p.
    unsafe fn store_first(p: *mut Self, v: __m512, k: usize);
}

#[inline(always)]
fn mask(k: usize) -> u16 {
    ((1u32 << k) - 1) as u16
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, k: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask(k), p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        unsafe { _mm512_storeu_ps(p, v) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, v: __m512, k: usize) {
        unsafe { _mm512_mask_storeu_ps(p, mask(k), v) }
    }
}

/// f32 -> f16 bits, round to nearest even (F16C semantics: subnormals kept).
#[inline(always)]
unsafe fn to_f16(v: __m512) -> __m256i {
    unsafe { _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v) }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f16, k: usize) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask(k), p as *const i16)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, v: __m512) {
        unsafe { _mm256_storeu_si256(p as *mut __m256i, to_f16(v)) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f16, v: __m512, k: usize) {
        unsafe { _mm256_mask_storeu_epi16(p as *mut i16, mask(k), to_f16(v)) }
    }
}

/// f32 -> bf16 bits, round to nearest even on the integer pattern
/// (`(x + 0x7fff + ((x >> 16) & 1)) >> 16`): exact for every non-NaN value, subnormals
/// included (the AVX512-BF16 instruction would flush those to zero).
#[inline(always)]
unsafe fn to_bf16(v: __m512) -> __m256i {
    unsafe {
        let x = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
        let r = _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
        _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(r))
    }
}

#[inline(always)]
unsafe fn from_bf16(v: __m256i) -> __m512 {
    unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v))) }
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m512 {
        unsafe { from_bf16(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const bf16, k: usize) -> __m512 {
        unsafe { from_bf16(_mm256_maskz_loadu_epi16(mask(k), p as *const i16)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, v: __m512) {
        unsafe { _mm256_storeu_si256(p as *mut __m256i, to_bf16(v)) }
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut bf16, v: __m512, k: usize) {
        unsafe { _mm256_mask_storeu_epi16(p as *mut i16, mask(k), to_bf16(v)) }
    }
}

/// `h + g * y` (or `h + y`) with NaN replaced by the canonical NaN.
#[inline(always)]
unsafe fn add16<const GATED: bool>(h: __m512, y: __m512, g: __m512) -> __m512 {
    unsafe {
        let t = if GATED { _mm512_mul_ps(g, y) } else { y };
        let s = _mm512_add_ps(h, t);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(s, s);
        _mm512_mask_mov_ps(
            s,
            nan,
            _mm512_castsi512_ps(_mm512_set1_epi32(super::CANONICAL_NAN_F32 as i32)),
        )
    }
}

#[inline(always)]
unsafe fn add_row<T: Lanes, const GATED: bool>(hr: *mut T, yr: *const T, g: __m512, d: usize) {
    // SAFETY: every access lies in [0, d) of the two rows.
    unsafe {
        let mut c = 0;
        while c + 64 <= d {
            let y0 = T::load(yr.add(c));
            let y1 = T::load(yr.add(c + 16));
            let y2 = T::load(yr.add(c + 32));
            let y3 = T::load(yr.add(c + 48));
            let h0 = T::load(hr.add(c));
            let h1 = T::load(hr.add(c + 16));
            let h2 = T::load(hr.add(c + 32));
            let h3 = T::load(hr.add(c + 48));
            T::store(hr.add(c), add16::<GATED>(h0, y0, g));
            T::store(hr.add(c + 16), add16::<GATED>(h1, y1, g));
            T::store(hr.add(c + 32), add16::<GATED>(h2, y2, g));
            T::store(hr.add(c + 48), add16::<GATED>(h3, y3, g));
            c += 64;
        }
        while c + 16 <= d {
            let v = add16::<GATED>(T::load(hr.add(c)), T::load(yr.add(c)), g);
            T::store(hr.add(c), v);
            c += 16;
        }
        if c < d {
            let k = d - c;
            let v = add16::<GATED>(T::load_first(hr.add(c), k), T::load_first(yr.add(c), k), g);
            T::store_first(hr.add(c), v, k);
        }
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
                add_row::<T, false>(hr, yr, _mm512_setzero_ps(), a.d);
            } else {
                add_row::<T, true>(hr, yr, _mm512_set1_ps(*a.g.add(j)), a.d);
            }
        }
    }
}

/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_scatter_add_u4(a: &ScatterAddArgs<f32>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f16_scatter_add_u4(a: &ScatterAddArgs<f16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn bf16_scatter_add_u4(a: &ScatterAddArgs<bf16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
