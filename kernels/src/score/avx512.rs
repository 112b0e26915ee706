//! AVX-512 scoring: one zmm accumulator per (row, router) holds the 16 canonical lanes;
//! blocks of 4 rows x up to 4 routers, or 2 rows x up to 8 routers, share each load.

use super::{activate, drive, logit, ScoreArgs, ToF32};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// Loading 16 elements as f32 (exact conversion).
trait Load16: ToF32 {
    /// # Safety
    /// `p` valid for 16 elements; the caller has the avx512 tier.
    unsafe fn load(p: *const Self) -> __m512;
    /// Loads the first `k < 16` elements, the rest as +0.0.
    /// # Safety
    /// `p` valid for `k` elements; the caller has the avx512 tier.
    unsafe fn load_first(p: *const Self, k: usize) -> __m512;
}

impl Load16 for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        unsafe { _mm512_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, k: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(((1u32 << k) - 1) as u16, p) }
    }
}

impl Load16 for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f16, k: usize) -> __m512 {
        unsafe {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                ((1u32 << k) - 1) as u16,
                p as *const i16,
            ))
        }
    }
}

impl Load16 for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m512 {
        unsafe {
            let w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn load_first(p: *const bf16, k: usize) -> __m512 {
        unsafe {
            let v = _mm256_maskz_loadu_epi16(((1u32 << k) - 1) as u16, p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
        }
    }
}

/// The canonical reduction tree on one zmm.
#[inline(always)]
unsafe fn reduce(v: __m512) -> f32 {
    unsafe {
        let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

/// Rows `i..i+R` against routers `e0..e0+EB`, written to the output.
#[inline(always)]
unsafe fn block<T: Load16, const R: usize, const EB: usize>(a: &ScoreArgs<T>, i: usize, e0: usize) {
    unsafe {
        let h: [*const T; R] = core::array::from_fn(|r| a.h.add((i + r) * a.h_stride));
        let w: [*const T; EB] = core::array::from_fn(|e| a.w.add((e0 + e) * a.w_stride));
        let mut acc = [[_mm512_setzero_ps(); EB]; R];
        let d = a.d;
        // 16-bit rows are short streams (8 KiB at d = 4096) that the hardware
        // prefetcher alone picks up late: prefetch the next block's rows at the offset
        // being read now, one cache line per row every other step. (For f32 rows this
        // measured slower, so they are left to the hardware.)
        let ahead = R * a.h_stride;
        let prefetch = core::mem::size_of::<T>() == 2;
        let mut j = 0;
        while j + 16 <= d {
            if prefetch && j % 32 == 0 {
                for r in 0..R {
                    _mm_prefetch::<_MM_HINT_T0>(h[r].wrapping_add(ahead + j) as *const i8);
                }
            }
            let mut wv = [_mm512_setzero_ps(); EB];
            for e in 0..EB {
                wv[e] = T::load(w[e].add(j));
            }
            for r in 0..R {
                let hv = T::load(h[r].add(j));
                for e in 0..EB {
                    acc[r][e] = _mm512_fmadd_ps(hv, wv[e], acc[r][e]);
                }
            }
            j += 16;
        }
        if j < d {
            let k = d - j;
            let mut wv = [_mm512_setzero_ps(); EB];
            for e in 0..EB {
                wv[e] = T::load_first(w[e].add(j), k);
            }
            for r in 0..R {
                let hv = T::load_first(h[r].add(j), k);
                for e in 0..EB {
                    acc[r][e] = _mm512_fmadd_ps(hv, wv[e], acc[r][e]);
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

/// Calls `block::<T, R, eb>` for the router count `eb` of this block (1..=8).
macro_rules! block_eb {
    ($T:ty, $R:expr, $a:expr, $i:expr, $e0:expr, $eb:expr) => {
        match $eb {
            8 => block::<$T, $R, 8>($a, $i, $e0),
            7 => block::<$T, $R, 7>($a, $i, $e0),
            6 => block::<$T, $R, 6>($a, $i, $e0),
            5 => block::<$T, $R, 5>($a, $i, $e0),
            4 => block::<$T, $R, 4>($a, $i, $e0),
            3 => block::<$T, $R, 3>($a, $i, $e0),
            2 => block::<$T, $R, 2>($a, $i, $e0),
            _ => block::<$T, $R, 1>($a, $i, $e0),
        }
    };
}

/// Up to 4 routers: blocks of 4 rows x all routers (one pass over H). More routers:
/// blocks of 2 rows x 8 routers (16 accumulators, each H row read once per 8
/// routers; with fewer rows per block, W stays in L1/L2 and H streams once).
#[inline(always)]
unsafe fn run<T: Load16>(a: &ScoreArgs<T>) {
    if a.e <= 4 {
        drive!(a, 4, 4, |i, r, e0, eb| unsafe {
            if r == 4 {
                block_eb!(T, 4, a, i, e0, eb)
            } else {
                block_eb!(T, 1, a, i, e0, eb)
            }
        });
    } else {
        drive!(a, 2, 8, |i, r, e0, eb| unsafe {
            if r == 2 {
                block_eb!(T, 2, a, i, e0, eb)
            } else {
                block_eb!(T, 1, a, i, e0, eb)
            }
        });
    }
    // SAFETY: every logit was written above; this tier's sigmoid runs here.
    unsafe { activate(a, crate::sigmoid::avx512::f32_rr2_lut8_p4_div_u64) };
}

/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_fma16_r4e4_r2e8(a: &ScoreArgs<f32>) {
    unsafe { run(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f16_fma16_r4e4_r2e8(a: &ScoreArgs<f16>) {
    unsafe { run(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn bf16_fma16_r4e4_r2e8(a: &ScoreArgs<bf16>) {
    unsafe { run(a) }
}

/// One row at a time against up to 8 routers: a single sequential stream over H.
#[inline(always)]
unsafe fn run_rows<T: Load16>(a: &ScoreArgs<T>) {
    drive!(a, 1, 8, |i, _r, e0, eb| unsafe {
        block_eb!(T, 1, a, i, e0, eb)
    });
    // SAFETY: every logit was written above; this tier's sigmoid runs here.
    unsafe { activate(a, crate::sigmoid::avx512::f32_rr2_lut8_p4_div_u64) };
}

/// The default policy, from `cargo bench --bench variants` on AMD Zen 4: 16-bit H
/// beyond the L2 cache with at most 4 routers streams best one row at a time (with
/// the next row prefetched: 94-102% of the read ceiling against 67-80% for 4-row
/// blocks); everything else in 4-row (or 2-row x 8-router) blocks.
#[inline(always)]
unsafe fn run_sized<T: Load16>(a: &ScoreArgs<T>) {
    if core::mem::size_of::<T>() == 2 && a.e <= 4 && a.n * a.d * 2 > (2 << 20) {
        unsafe { run_rows(a) }
    } else {
        unsafe { run(a) }
    }
}

/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_fma16_r1e8(a: &ScoreArgs<f32>) {
    unsafe { run_rows(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f16_fma16_r1e8(a: &ScoreArgs<f16>) {
    unsafe { run_rows(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn bf16_fma16_r1e8(a: &ScoreArgs<bf16>) {
    unsafe { run_rows(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f16_fma16_sized(a: &ScoreArgs<f16>) {
    unsafe { run_sized(a) }
}
/// # Safety
/// The CPU supports the avx512 tier; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn bf16_fma16_sized(a: &ScoreArgs<bf16>) {
    unsafe { run_sized(a) }
}
