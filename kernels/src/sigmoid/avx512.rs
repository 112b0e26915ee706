//! AVX-512 sigmoid: 16 f32 per step, evaluated as two vectors of 8 f64.

use super::{LN2_HI, LN2_LO, NEG_LOG2E, ONE_BITS, POLY, SHIFTER, SIGN_BIT, Z_MAX};
use core::arch::x86_64::*;

/// The module's f64 recipe on 8 lanes (same operations, same order as scalar).
#[inline]
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub(crate) fn sigmoid_pd(x: __m512d) -> __m512d {
    let z = _mm512_castsi512_pd(_mm512_andnot_si512(
        _mm512_set1_epi64(SIGN_BIT as i64),
        _mm512_castpd_si512(x),
    ));
    let z = _mm512_min_pd(z, _mm512_set1_pd(Z_MAX));
    let t = _mm512_mul_pd(z, _mm512_set1_pd(NEG_LOG2E));
    let tm = _mm512_add_pd(t, _mm512_set1_pd(SHIFTER));
    let nf = _mm512_sub_pd(tm, _mm512_set1_pd(SHIFTER));
    let negz = _mm512_castsi512_pd(_mm512_xor_si512(
        _mm512_castpd_si512(z),
        _mm512_set1_epi64(SIGN_BIT as i64),
    ));
    let r = _mm512_sub_pd(negz, _mm512_mul_pd(nf, _mm512_set1_pd(LN2_HI)));
    let r = _mm512_sub_pd(r, _mm512_mul_pd(nf, _mm512_set1_pd(LN2_LO)));
    let mut p = _mm512_set1_pd(POLY[0]);
    let mut i = 1;
    while i < POLY.len() {
        p = _mm512_add_pd(_mm512_mul_pd(p, r), _mm512_set1_pd(POLY[i]));
        i += 1;
    }
    let scale = _mm512_castsi512_pd(_mm512_add_epi64(
        _mm512_slli_epi64::<52>(_mm512_castpd_si512(tm)),
        _mm512_set1_epi64(ONE_BITS as i64),
    ));
    let e = _mm512_mul_pd(p, scale);
    let one = _mm512_set1_pd(1.0);
    let d = _mm512_add_pd(one, e);
    let nonneg = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, _mm512_setzero_pd());
    let num = _mm512_mask_blend_pd(nonneg, e, one);
    _mm512_div_pd(num, d)
}

/// Sigmoid of 16 f32 lanes.
#[inline]
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub(crate) fn sigmoid_ps(x: __m512) -> __m512 {
    let lo = sigmoid_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(x)));
    let hi = sigmoid_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(x)));
    let y = _mm512_insertf32x8::<1>(
        _mm512_castps256_ps512(_mm512_cvtpd_ps(lo)),
        _mm512_cvtpd_ps(hi),
    );
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_add_ps(y, nan, x, x)
}

/// Elementwise sigmoid, 16 lanes per step, masked tail.
///
/// # Safety
/// The CPU supports the avx512 tier; see the module contract for the pointers.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_rr_p9_div_u16(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n, both pointers valid for n elements.
        unsafe { _mm512_storeu_ps(y.add(i), sigmoid_ps(_mm512_loadu_ps(x.add(i)))) };
        i += 16;
    }
    if i < n {
        let m: __mmask16 = (1u16 << (n - i)) - 1;
        // SAFETY: masked lanes are neither read nor written; the rest are < n.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, x.add(i));
            _mm512_mask_storeu_ps(y.add(i), m, sigmoid_ps(v));
        }
    }
}
