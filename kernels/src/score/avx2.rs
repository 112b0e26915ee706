//! AVX2 scoring: the 16 canonical lanes of each (row, router) accumulator live in a
//! pair of ymm registers (lanes 0..8 and 8..16). Blocks of 4 rows x 1 router when
//! there is one router, 2 rows x 2 routers otherwise (16 ymm registers in all).

use super::{activate, drive, logit, ScoreArgs, ToF32};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Loading 16 elements as two f32 vectors (exact conversion).
trait Load16: ToF32 + Default {
    /// # Safety
    /// `p` valid for 16 elements; the caller has the avx2 tier.
    unsafe fn load(p: *const Self) -> [__m256; 2];
    /// Loads the first `k < 16` elements, the rest as +0.0.
    /// # Safety
    /// `p` valid for `k` elements; the caller has the avx2 tier.
    #[inline(always)]
    unsafe fn load_first(p: *const Self, k: usize) -> [__m256; 2] {
        let mut buf = [Self::default(); 16];
        // SAFETY: k < 16 elements are valid at p; buf holds 16.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), k);
            Self::load(buf.as_ptr())
        }
    }
}

impl Load16 for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [__m256; 2] {
        unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
    }
}

impl Load16 for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> [__m256; 2] {
        unsafe {
            let v = _mm256_loadu_si256(p as *const __m256i);
            [
                _mm256_cvtph_ps(_mm256_castsi256_si128(v)),
                _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(v)),
            ]
        }
    }
}

impl Load16 for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> [__m256; 2] {
        unsafe {
            let v = _mm256_loadu_si256(p as *const __m256i);
            let lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(v));
            let hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(v));
            [
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(lo)),
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(hi)),
            ]
        }
    }
}

/// The canonical reduction tree on a (lanes 0..8, lanes 8..16) pair.
#[inline(always)]
unsafe fn reduce(v: [__m256; 2]) -> f32 {
    unsafe {
        let s8 = _mm256_add_ps(v[0], v[1]);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

#[inline(always)]
unsafe fn fma2(h: [__m256; 2], w: [__m256; 2], acc: [__m256; 2]) -> [__m256; 2] {
    unsafe {
        [
            _mm256_fmadd_ps(h[0], w[0], acc[0]),
            _mm256_fmadd_ps(h[1], w[1], acc[1]),
        ]
    }
}

/// Rows `i..i+R` against routers `e0..e0+EB`, written to the output.
#[inline(always)]
unsafe fn block<T: Load16, const R: usize, const EB: usize>(a: &ScoreArgs<T>, i: usize, e0: usize) {
    unsafe {
        let h: [*const T; R] = core::array::from_fn(|r| a.h.add((i + r) * a.h_stride));
        let w: [*const T; EB] = core::array::from_fn(|e| a.w.add((e0 + e) * a.w_stride));
        let zero = [_mm256_setzero_ps(); 2];
        let mut acc = [[zero; EB]; R];
        let d = a.d;
        let mut j = 0;
        while j + 16 <= d {
            let mut wv = [zero; EB];
            for e in 0..EB {
                wv[e] = T::load(w[e].add(j));
            }
            for r in 0..R {
                let hv = T::load(h[r].add(j));
                for e in 0..EB {
                    acc[r][e] = fma2(hv, wv[e], acc[r][e]);
                }
            }
            j += 16;
        }
        if j < d {
            let k = d - j;
            let mut wv = [zero; EB];
            for e in 0..EB {
                wv[e] = T::load_first(w[e].add(j), k);
            }
            for r in 0..R {
                let hv = T::load_first(h[r].add(j), k);
                for e in 0..EB {
                    acc[r][e] = fma2(hv, wv[e], acc[r][e]);
                }
            }
        }
        for r in 0..R {
            for e in 0..EB {
                let s = logit(a, i + r, e0 + e, reduce(acc[r][e]));
                *a.out.add((i + r) * a.out_stride + e0 + e) = s;
            }
        }
    }
}

#[inline(always)]
unsafe fn run<T: Load16>(a: &ScoreArgs<T>) {
    if a.e == 1 {
        drive!(a, 4, 1, |i, r, e0, _eb| unsafe {
            if r == 4 {
                block::<T, 4, 1>(a, i, e0)
            } else {
                block::<T, 1, 1>(a, i, e0)
            }
        });
    } else {
        drive!(a, 2, 2, |i, r, e0, eb| unsafe {
            match (r, eb) {
                (2, 2) => block::<T, 2, 2>(a, i, e0),
                (2, _) => block::<T, 2, 1>(a, i, e0),
                (_, 2) => block::<T, 1, 2>(a, i, e0),
                (_, _) => block::<T, 1, 1>(a, i, e0),
            }
        });
    }
    // SAFETY: every logit was written above; this tier's sigmoid runs here.
    unsafe { activate(a, crate::sigmoid::avx2::f32_rr2_lut8_p4_div_u16) };
}

/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f32_fma16_r4e2(a: &ScoreArgs<f32>) {
    unsafe { run(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f16_fma16_r4e2(a: &ScoreArgs<f16>) {
    unsafe { run(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn bf16_fma16_r4e2(a: &ScoreArgs<bf16>) {
    unsafe { run(a) }
}
