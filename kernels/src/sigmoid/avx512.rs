//! AVX-512 sigmoid: 16 lanes per vector, four vectors per step, masked tail.
//! `vpermps` reads the 8-entry table (16-entry, repeated), `vscalefps` does the
//! single-rounding power-of-two scaling the scalar code does in two multiplies.

use super::*;
use core::arch::x86_64::*;

/// The module's recipe on 16 lanes (same operations, same order as scalar).
#[inline]
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub(crate) fn sigmoid_ps(x: __m512) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    // min(104, |x|): minps returns its second operand when either is NaN.
    let z = _mm512_min_ps(_mm512_set1_ps(Z_MAX), _mm512_abs_ps(x));
    let t = _mm512_fmadd_ps(z, _mm512_set1_ps(LOG2E_X8), _mm512_set1_ps(SHIFTER));
    let kf = _mm512_sub_ps(t, _mm512_set1_ps(SHIFTER));
    let r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_8_HI), z);
    let r = _mm512_fnmadd_ps(kf, _mm512_set1_ps(LN2_8_LO), r);
    let u = _mm512_fmadd_ps(r, _mm512_set1_ps(P4), _mm512_set1_ps(P3));
    let u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(P2));
    let u = _mm512_fmadd_ps(u, r, _mm512_set1_ps(P1));
    let p = _mm512_mul_ps(u, r);
    // The low bits of t are k (the shifter's low mantissa bits are zero).
    let ki = _mm512_castps_si512(t);
    // SAFETY (both loads): the tables hold 16 floats.
    let hi = _mm512_permutexvar_ps(ki, unsafe { _mm512_loadu_ps(T_HI.as_ptr()) });
    let lo = _mm512_permutexvar_ps(ki, unsafe { _mm512_loadu_ps(T_LO.as_ptr()) });
    let ep = _mm512_add_ps(hi, _mm512_fmadd_ps(hi, p, lo));
    // floor(7/8 - k/8) = -(k div 8) = -m, exact for the integers k here.
    let neg_m = _mm512_fmadd_ps(kf, _mm512_set1_ps(-0.125), _mm512_set1_ps(0.875));
    let d = _mm512_add_ps(one, _mm512_scalef_ps(ep, neg_m));
    let neg = _mm512_movepi32_mask(_mm512_castps_si512(x));
    let q = _mm512_div_ps(_mm512_mask_blend_ps(neg, one, ep), d);
    let y = _mm512_mask_scalef_ps(q, neg, q, neg_m);
    // A NaN lane carries a payload that depends on the operations above: canonical.
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_ps(
        y,
        nan,
        _mm512_castsi512_ps(_mm512_set1_epi32(CANONICAL_NAN as i32)),
    )
}

/// Elementwise sigmoid, 64 lanes per step, then 16, then a masked tail.
///
/// # Safety
/// The CPU supports the avx512 tier; see the module contract for the pointers.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_rr2_lut8_p4_div_u64(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY (every block): offsets stay below n; both pointers are valid for n
    // elements; each vector is loaded before the store that may alias it.
    while i + 64 <= n {
        unsafe {
            let a = sigmoid_ps(_mm512_loadu_ps(x.add(i)));
            let b = sigmoid_ps(_mm512_loadu_ps(x.add(i + 16)));
            let c = sigmoid_ps(_mm512_loadu_ps(x.add(i + 32)));
            let d = sigmoid_ps(_mm512_loadu_ps(x.add(i + 48)));
            _mm512_storeu_ps(y.add(i), a);
            _mm512_storeu_ps(y.add(i + 16), b);
            _mm512_storeu_ps(y.add(i + 32), c);
            _mm512_storeu_ps(y.add(i + 48), d);
        }
        i += 64;
    }
    while i + 16 <= n {
        unsafe { _mm512_storeu_ps(y.add(i), sigmoid_ps(_mm512_loadu_ps(x.add(i)))) };
        i += 16;
    }
    if i < n {
        let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
        // SAFETY: masked-off lanes are neither read nor written.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, x.add(i));
            _mm512_mask_storeu_ps(y.add(i), m, sigmoid_ps(v));
        }
    }
}
