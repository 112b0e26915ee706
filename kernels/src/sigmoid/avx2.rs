//! AVX2 sigmoid: 8 lanes per vector, two vectors per step, masked tail.
//! `vpermps` reads the 8-entry table; the power-of-two scaling is two multiplies by
//! constructed powers of two (the first exact), as in the scalar code.

use super::*;
use core::arch::x86_64::*;

/// `2^-m` for lanes with `0 <= m <= 126`.
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
fn pow2_neg(m: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_sub_epi32(
        _mm256_set1_epi32(127),
        m,
    )))
}

/// The module's recipe on 8 lanes (same operations, same order as scalar).
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub(crate) fn sigmoid_ps(x: __m256) -> __m256 {
    let one = _mm256_set1_ps(1.0);
    let abs = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff)));
    // min(104, |x|): minps returns its second operand when either is NaN.
    let z = _mm256_min_ps(_mm256_set1_ps(Z_MAX), abs);
    let t = _mm256_fmadd_ps(z, _mm256_set1_ps(LOG2E_X8), _mm256_set1_ps(SHIFTER));
    let kf = _mm256_sub_ps(t, _mm256_set1_ps(SHIFTER));
    let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_8_HI), z);
    let r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(LN2_8_LO), r);
    let u = _mm256_fmadd_ps(r, _mm256_set1_ps(P4), _mm256_set1_ps(P3));
    let u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(P2));
    let u = _mm256_fmadd_ps(u, r, _mm256_set1_ps(P1));
    let p = _mm256_mul_ps(u, r);
    let k = _mm256_sub_epi32(
        _mm256_castps_si256(t),
        _mm256_set1_epi32(SHIFTER.to_bits() as i32),
    );
    // SAFETY (both loads): the tables hold at least 8 floats.
    let hi = _mm256_permutevar8x32_ps(unsafe { _mm256_loadu_ps(T_HI.as_ptr()) }, k);
    let lo = _mm256_permutevar8x32_ps(unsafe { _mm256_loadu_ps(T_LO.as_ptr()) }, k);
    let ep = _mm256_add_ps(hi, _mm256_fmadd_ps(hi, p, lo));
    let m = _mm256_srli_epi32::<3>(k);
    let m1 = _mm256_min_epi32(m, _mm256_set1_epi32(M_SPLIT));
    let s1 = pow2_neg(m1);
    // For m > M_SPLIT the scaled e is below 2^-100 either way, so d = 1 exactly.
    let d = _mm256_add_ps(one, _mm256_mul_ps(ep, s1));
    // blendv picks by the sign bit of x: e' for a set sign bit, 1 otherwise.
    let q = _mm256_div_ps(_mm256_blendv_ps(one, ep, x), d);
    let s2 = pow2_neg(_mm256_sub_epi32(m, m1));
    let qn = _mm256_mul_ps(_mm256_mul_ps(q, s1), s2);
    let y = _mm256_blendv_ps(q, qn, x);
    // A NaN lane carries a payload that depends on the operations above: canonical.
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    _mm256_blendv_ps(
        y,
        _mm256_castsi256_ps(_mm256_set1_epi32(CANONICAL_NAN as i32)),
        nan,
    )
}

/// Lane mask with the first `k` of 8 lanes set (k <= 8), for maskload/maskstore.
#[inline]
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub(crate) fn first_lanes(k: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(k as i32), idx)
}

/// Elementwise sigmoid, 16 lanes per step, then 8, then a masked tail.
///
/// # Safety
/// The CPU supports the avx2 tier; see the module contract for the pointers.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f32_rr2_lut8_p4_div_u16(x: *const f32, y: *mut f32, n: usize) {
    let mut i = 0;
    // SAFETY (every block): offsets stay below n; both pointers are valid for n
    // elements; each vector is loaded before the store that may alias it.
    while i + 16 <= n {
        unsafe {
            let a = sigmoid_ps(_mm256_loadu_ps(x.add(i)));
            let b = sigmoid_ps(_mm256_loadu_ps(x.add(i + 8)));
            _mm256_storeu_ps(y.add(i), a);
            _mm256_storeu_ps(y.add(i + 8), b);
        }
        i += 16;
    }
    while i + 8 <= n {
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
