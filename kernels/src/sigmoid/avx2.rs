//! AVX2 sigmoid: 8 f32 per step, evaluated as two vectors of 4 f64.

use super::{LN2_HI, LN2_LO, NEG_LOG2E, ONE_BITS, POLY, SHIFTER, SIGN_BIT, Z_MAX};
use core::arch::x86_64::*;

/// The module's f64 recipe on 4 lanes (same operations, same order as scalar).
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub(crate) fn sigmoid_pd(x: __m256d) -> __m256d {
    let sign = _mm256_castsi256_pd(_mm256_set1_epi64x(SIGN_BIT as i64));
    let z = _mm256_andnot_pd(sign, x);
    let z = _mm256_min_pd(z, _mm256_set1_pd(Z_MAX));
    let t = _mm256_mul_pd(z, _mm256_set1_pd(NEG_LOG2E));
    let tm = _mm256_add_pd(t, _mm256_set1_pd(SHIFTER));
    let nf = _mm256_sub_pd(tm, _mm256_set1_pd(SHIFTER));
    let negz = _mm256_xor_pd(z, sign);
    let r = _mm256_sub_pd(negz, _mm256_mul_pd(nf, _mm256_set1_pd(LN2_HI)));
    let r = _mm256_sub_pd(r, _mm256_mul_pd(nf, _mm256_set1_pd(LN2_LO)));
    let mut p = _mm256_set1_pd(POLY[0]);
    let mut i = 1;
    while i < POLY.len() {
        p = _mm256_add_pd(_mm256_mul_pd(p, r), _mm256_set1_pd(POLY[i]));
        i += 1;
    }
    let scale = _mm256_castsi256_pd(_mm256_add_epi64(
        _mm256_slli_epi64::<52>(_mm256_castpd_si256(tm)),
        _mm256_set1_epi64x(ONE_BITS as i64),
    ));
    let e = _mm256_mul_pd(p, scale);
    let one = _mm256_set1_pd(1.0);
    let d = _mm256_add_pd(one, e);
    let nonneg = _mm256_cmp_pd::<_CMP_GE_OQ>(x, _mm256_setzero_pd());
    let num = _mm256_blendv_pd(e, one, nonneg);
    _mm256_div_pd(num, d)
}

/// Sigmoid of 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub(crate) fn sigmoid_ps(x: __m256) -> __m256 {
    let lo = sigmoid_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    let hi = sigmoid_pd(_mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x)));
    let y = _mm256_insertf128_ps::<1>(
        _mm256_castps128_ps256(_mm256_cvtpd_ps(lo)),
        _mm256_cvtpd_ps(hi),
    );
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    _mm256_blendv_ps(y, _mm256_add_ps(x, x), nan)
}

/// Lane mask with the first `k` of 8 lanes set (k <= 8), for maskload/maskstore.
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub(crate) fn first_lanes(k: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(k as i32), idx)
}

/// Elementwise sigmoid, 8 lanes per step, masked tail.
///
/// # Safety
/// The CPU supports the avx2 tier; see the module contract for the pointers.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn f32_rr_p9_div_u8(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n, both pointers valid for n elements.
        unsafe { _mm256_storeu_ps(y.add(i), sigmoid_ps(_mm256_loadu_ps(x.add(i)))) };
        i += 8;
    }
    if i < n {
        let m = first_lanes(n - i);
        // SAFETY: maskload/maskstore do not touch masked-off lanes (no fault either).
        unsafe {
            let v = _mm256_maskload_ps(x.add(i), m);
            _mm256_maskstore_ps(y.add(i), m, sigmoid_ps(v));
        }
    }
}
