//! AVX2 attention: the 16 canonical lanes of a dot product live in a pair of ymm
//! registers (lanes 0..8 and 8..16).
//!
//! Scores: register tiles of 2 rows x 2 keys (1 x 4 for a single row), four
//! accumulators reduced together by a transposed tree. P.V: tiles of 2 rows x 32 output
//! elements, blends where a row has a zero probability. exp2 by the canonical recipe.

use super::{
    bound, merge, summary, AttendArgs, Axpy, Backend, BoundArgs, Elem, MergeArgs, QuestBackend,
    SummaryArgs, BK, EXP2_MIN, EXP2_POLY, SHIFTER, TILE_ROWS,
};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// The avx2 tier.
pub(crate) struct Avx2;

/// 16 canonical lanes.
type V = [__m256; 2];

/// Loads of 16 canonical lanes.
pub(crate) trait L256: Elem {
    /// Half `h` (0: first, 1: second FMA) of the 32-element chunk at `p`, of which the
    /// first `k` elements are valid (`k >= 32`: all); zeros past them.
    /// # Safety
    /// `p` valid for `min(k, 32)` elements; avx2 tier.
    unsafe fn half(p: *const Self, h: usize, k: usize) -> V;
    /// Elements `0..8` in order (summaries).
    /// # Safety
    /// `p` valid for 8 elements; avx2 tier.
    unsafe fn seq8(p: *const Self) -> __m256;
}

/// Copies the first `k` of `n` elements at `p` into a zero-padded buffer.
#[inline(always)]
unsafe fn padded<T: Copy + Default, const N: usize>(p: *const T, k: usize) -> [T; N] {
    let mut b = [T::default(); N];
    // SAFETY: k < N elements are valid at p.
    unsafe { core::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), k) };
    b
}

impl L256 for f32 {
    #[inline(always)]
    unsafe fn half(p: *const f32, h: usize, k: usize) -> V {
        unsafe {
            let mut out = [_mm256_setzero_ps(); 2];
            for (i, o) in out.iter_mut().enumerate() {
                let at = 16 * h + 8 * i;
                if k >= at + 8 {
                    *o = _mm256_loadu_ps(p.add(at));
                } else if k > at {
                    let b = padded::<f32, 8>(p.add(at), k - at);
                    *o = _mm256_loadu_ps(b.as_ptr());
                }
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn seq8(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
}

impl L256 for f16 {
    #[inline(always)]
    unsafe fn half(p: *const f16, h: usize, k: usize) -> V {
        unsafe {
            let mut out = [_mm256_setzero_ps(); 2];
            for (i, o) in out.iter_mut().enumerate() {
                let at = 16 * h + 8 * i;
                if k >= at + 8 {
                    *o = _mm256_cvtph_ps(_mm_loadu_si128(p.add(at) as *const __m128i));
                } else if k > at {
                    let b = padded::<f16, 8>(p.add(at), k - at);
                    *o = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr() as *const __m128i));
                }
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn seq8(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
}

impl L256 for bf16 {
    #[inline(always)]
    unsafe fn half(p: *const bf16, h: usize, k: usize) -> V {
        unsafe {
            let mut out = [_mm256_setzero_ps(); 2];
            for (i, o) in out.iter_mut().enumerate() {
                let at = 16 * i;
                let x = if k >= at + 16 {
                    _mm256_loadu_si256(p.add(at) as *const __m256i)
                } else if k > at {
                    let b = padded::<bf16, 16>(p.add(at), k - at);
                    _mm256_loadu_si256(b.as_ptr() as *const __m256i)
                } else {
                    continue;
                };
                *o = if h == 0 {
                    _mm256_castsi256_ps(_mm256_and_si256(
                        x,
                        _mm256_set1_epi32(0xffff_0000u32 as i32),
                    ))
                } else {
                    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x))
                };
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn seq8(p: *const bf16) -> __m256 {
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        }
    }
}

#[inline(always)]
unsafe fn fma(a: V, b: V, c: V) -> V {
    unsafe {
        [
            _mm256_fmadd_ps(a[0], b[0], c[0]),
            _mm256_fmadd_ps(a[1], b[1], c[1]),
        ]
    }
}

#[inline(always)]
unsafe fn loadv(p: *const f32) -> V {
    unsafe { [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))] }
}

#[inline(always)]
unsafe fn storev(p: *mut f32, v: V) {
    unsafe {
        _mm256_storeu_ps(p, v[0]);
        _mm256_storeu_ps(p.add(8), v[1]);
    }
}

/// The canonical tree of 16 lanes.
#[inline(always)]
unsafe fn hsum(v: V) -> f32 {
    unsafe {
        let s8 = _mm256_add_ps(v[0], v[1]);
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

/// Four canonical trees: returns ymm whose 128-bit lane 0 starts with the trees of `a`
/// and `c`, lane 1 with those of `b` and `d`.
#[inline(always)]
unsafe fn reduce4(a: V, b: V, c: V, d: V) -> __m256 {
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

/// The canonical exp2 of 8 lanes.
#[inline(always)]
unsafe fn exp2v(t: __m256) -> __m256 {
    unsafe {
        let sh = _mm256_set1_ps(SHIFTER);
        let r = _mm256_add_ps(t, sh);
        let n = _mm256_sub_ps(r, sh);
        let f = _mm256_sub_ps(t, n);
        let mut y = _mm256_set1_ps(EXP2_POLY[0]);
        for &c in &EXP2_POLY[1..] {
            y = _mm256_fmadd_ps(y, f, _mm256_set1_ps(c));
        }
        let ni = _mm256_slli_epi32::<23>(_mm256_sub_epi32(
            _mm256_castps_si256(r),
            _mm256_castps_si256(sh),
        ));
        let res = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(y), ni));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(t, _mm256_set1_ps(EXP2_MIN));
        let res = _mm256_andnot_ps(under, res);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t);
        _mm256_blendv_ps(res, t, nan)
    }
}

/// Lane masks of 8 bits.
#[inline(always)]
unsafe fn bits8(b: u64) -> __m256 {
    unsafe {
        let v = _mm256_set1_epi32((b & 0xff) as i32);
        let sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(v, sel), sel))
    }
}

/// Scores of `R` rows x `4 / R` keys from key `j0` into the key-major score buffer.
#[inline(always)]
unsafe fn s_tile<T: L256, const R: usize>(
    q: *const f32,
    dp: usize,
    d: usize,
    kbase: *const T,
    koff: &[usize; BK],
    j0: usize,
    s: *mut f32,
) {
    unsafe {
        let nk = 4 / R;
        let kp: [*const T; 4] = core::array::from_fn(|c| kbase.add(koff[j0 + c % nk]));
        let z = [_mm256_setzero_ps(); 2];
        // acc[c * R + r]: row r, key c.
        let mut acc = [z; 4];
        let mut ch = 0;
        while ch < d {
            let k = d - ch;
            for h in 0..2 {
                let mut qv = [z; R];
                for (r, x) in qv.iter_mut().enumerate() {
                    *x = loadv(q.add(r * dp + ch + 16 * h));
                }
                for c in 0..nk {
                    let kv = T::half(kp[c].add(ch), h, k);
                    for r in 0..R {
                        acc[c * R + r] = fma(qv[r], kv, acc[c * R + r]);
                    }
                }
            }
            ch += 32;
        }
        let w = reduce4(acc[0], acc[2], acc[1], acc[3]);
        let v = _mm_movelh_ps(_mm256_castps256_ps128(w), _mm256_extractf128_ps::<1>(w));
        match R {
            4 => _mm_storeu_ps(s.add(j0 * TILE_ROWS), v),
            2 => {
                _mm_store_sd(s.add(j0 * TILE_ROWS) as *mut f64, _mm_castps_pd(v));
                _mm_storeh_pd(s.add((j0 + 1) * TILE_ROWS) as *mut f64, _mm_castps_pd(v));
            }
            _ => {
                let mut tmp = [0f32; 4];
                _mm_storeu_ps(tmp.as_mut_ptr(), v);
                for (c, x) in tmp.iter().enumerate() {
                    *s.add((j0 + c) * TILE_ROWS) = *x;
                }
            }
        }
    }
}

/// `((p_i + p_(16+i)) + p_(32+i)) + p_(48+i)` over the keys `< nb` of 8 rows.
#[inline(always)]
unsafe fn lane_sum(s: *const f32, i: usize, nb: usize) -> __m256 {
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut j = i;
        while j < nb {
            let pj = _mm256_loadu_ps(s.add(j * TILE_ROWS));
            acc = if j == i { pj } else { _mm256_add_ps(acc, pj) };
            j += 16;
        }
        acc
    }
}

impl<T: L256> Backend<T> for Avx2 {
    #[inline(always)]
    unsafe fn scores(
        nrows: usize,
        _r0: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
        _scratch: *mut u8,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of q and columns of s exist; keys j0 + 4 <= BK.
        unsafe {
            while r + 4 <= nrows {
                for j in 0..nb {
                    s_tile::<T, 4>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                }
                r += 4;
            }
            if r + 2 <= nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 2>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 2;
                }
                r += 2;
            }
            if r < nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 1>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 4;
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn softmax(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &mut [f32; TILE_ROWS],
        l: &mut [f32; TILE_ROWS],
        alpha: &mut [f32; TILE_ROWS],
        pm: &mut [u16; BK],
        _scratch: *mut u8,
    ) {
        // SAFETY (block): BK x TILE_ROWS floats at s; the arrays hold TILE_ROWS.
        unsafe {
            let cv = _mm256_set1_ps(c);
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let zero = _mm256_setzero_ps();
            pm.iter_mut().for_each(|b| *b = 0);
            for half in 0..2 {
                let h8 = 8 * half;
                if h8 >= nrows {
                    break;
                }
                let sh = s.add(h8);
                let rows = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
                    _mm256_set1_epi32((nrows - h8) as i32),
                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                ));
                let mut mx = ninf;
                let mut nan = zero;
                for j in 0..nb {
                    let k = bits8((vis[j] >> h8) as u64);
                    let x = _mm256_blendv_ps(
                        ninf,
                        _mm256_mul_ps(_mm256_loadu_ps(sh.add(j * TILE_ROWS)), cv),
                        k,
                    );
                    _mm256_storeu_ps(sh.add(j * TILE_ROWS), x);
                    let ord = _mm256_cmp_ps::<_CMP_ORD_Q>(x, x);
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
                    mx = _mm256_blendv_ps(mx, _mm256_max_ps(x, mx), ord);
                }
                let mbv = _mm256_blendv_ps(mx, _mm256_set1_ps(f32::NAN), nan);
                let mo = _mm256_loadu_ps(m.as_ptr().add(h8));
                let mn = _mm256_max_ps(mbv, mo);
                let mn = _mm256_blendv_ps(mn, mbv, _mm256_cmp_ps::<_CMP_UNORD_Q>(mbv, mo));
                let mn = _mm256_blendv_ps(mn, mo, _mm256_cmp_ps::<_CMP_UNORD_Q>(mo, mo));
                let act = _mm256_and_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(mn, ninf), rows);
                let al = _mm256_blendv_ps(_mm256_set1_ps(1.0), exp2v(_mm256_sub_ps(mo, mn)), act);
                _mm256_storeu_ps(alpha.as_mut_ptr().add(h8), al);
                _mm256_storeu_ps(m.as_mut_ptr().add(h8), _mm256_blendv_ps(mo, mn, act));
                for j in 0..nb {
                    let x = _mm256_loadu_ps(sh.add(j * TILE_ROWS));
                    let p = _mm256_and_ps(exp2v(_mm256_sub_ps(x, mn)), act);
                    _mm256_storeu_ps(sh.add(j * TILE_ROWS), p);
                    let nz = _mm256_and_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(p, zero), act);
                    pm[j] |= (_mm256_movemask_ps(nz) as u16) << h8;
                }
                let mut s8 = [zero; 8];
                for (i, x) in s8.iter_mut().enumerate() {
                    *x = _mm256_add_ps(lane_sum(sh, i, nb), lane_sum(sh, i + 8, nb));
                }
                let mut s4 = [zero; 4];
                for (i, x) in s4.iter_mut().enumerate() {
                    *x = _mm256_add_ps(s8[i], s8[i + 4]);
                }
                let s2 = [_mm256_add_ps(s4[0], s4[2]), _mm256_add_ps(s4[1], s4[3])];
                let psum = _mm256_add_ps(s2[0], s2[1]);
                let lo = _mm256_loadu_ps(l.as_ptr().add(h8));
                let lv = _mm256_add_ps(_mm256_mul_ps(al, lo), psum);
                _mm256_storeu_ps(l.as_mut_ptr().add(h8), _mm256_blendv_ps(lo, lv, act));
            }
        }
    }

    #[inline(always)]
    unsafe fn pv(
        nrows: usize,
        r0: usize,
        p: *const f32,
        alpha: *const f32,
        pm: &[u16; BK],
        o: *mut f32,
        dp: usize,
        d: usize,
        vbase: *const T,
        voff: &[usize; BK],
        nb: usize,
        _scratch: *mut u8,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of every buffer exist.
        unsafe {
            while r + 2 <= nrows {
                pv_rows::<T, 2>(
                    r0 + r,
                    p.add(r),
                    alpha.add(r),
                    pm,
                    o.add(r * dp),
                    dp,
                    d,
                    vbase,
                    voff,
                    nb,
                );
                r += 2;
            }
            if r < nrows {
                pv_rows::<T, 1>(
                    r0 + r,
                    p.add(r),
                    alpha.add(r),
                    pm,
                    o.add(r * dp),
                    dp,
                    d,
                    vbase,
                    voff,
                    nb,
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn probs(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    ) {
        // SAFETY: BK x TILE_ROWS floats.
        unsafe {
            let cv = _mm256_set1_ps(c);
            for half in 0..2 {
                let h8 = 8 * half;
                if h8 >= nrows {
                    break;
                }
                let (mv, iv) = (
                    _mm256_loadu_ps(m.as_ptr().add(h8)),
                    _mm256_loadu_ps(inv_l.as_ptr().add(h8)),
                );
                for j in 0..nb {
                    let k = bits8((vis[j] >> h8) as u64);
                    let at = s.add(j * TILE_ROWS + h8);
                    let x = _mm256_mul_ps(_mm256_loadu_ps(at), cv);
                    let p = _mm256_mul_ps(exp2v(_mm256_sub_ps(x, mv)), iv);
                    _mm256_storeu_ps(at, _mm256_and_ps(p, k));
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) };
    }
}

/// `O = alpha O + sum p v` for `R` rows, one chunk of 32 output elements at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_rows<T: L256, const R: usize>(
    r0: usize,
    p: *const f32,
    alpha: *const f32,
    pm: &[u16; BK],
    o: *mut f32,
    dp: usize,
    d: usize,
    vbase: *const T,
    voff: &[usize; BK],
    nb: usize,
) {
    unsafe {
        let rows = ((1u32 << R) - 1) as u16;
        let masked = pm[..nb].iter().any(|&b| (b >> r0) & rows != rows);
        let mut ch = 0;
        while ch < d {
            let k = d - ch;
            let z = [_mm256_setzero_ps(); 2];
            let mut acc = [[z; 2]; R];
            for r in 0..R {
                let a = _mm256_set1_ps(*alpha.add(r));
                for h in 0..2 {
                    let x = loadv(o.add(r * dp + ch + 16 * h));
                    acc[r][h] = [_mm256_mul_ps(a, x[0]), _mm256_mul_ps(a, x[1])];
                }
            }
            for j in 0..nb {
                let vp = vbase.add(voff[j] + ch);
                let vv = [T::half(vp, 0, k), T::half(vp, 1, k)];
                let pr = p.add(j * TILE_ROWS);
                for r in 0..R {
                    let pb = _mm256_set1_ps(*pr.add(r));
                    let pb = [pb, pb];
                    if masked {
                        let bit = ((pm[j] >> (r0 + r)) & 1) as i32;
                        let mk = _mm256_castsi256_ps(_mm256_set1_epi32(bit.wrapping_neg()));
                        for h in 0..2 {
                            let f = fma(pb, vv[h], acc[r][h]);
                            acc[r][h] = [
                                _mm256_blendv_ps(acc[r][h][0], f[0], mk),
                                _mm256_blendv_ps(acc[r][h][1], f[1], mk),
                            ];
                        }
                    } else {
                        for h in 0..2 {
                            acc[r][h] = fma(pb, vv[h], acc[r][h]);
                        }
                    }
                }
            }
            for r in 0..R {
                for h in 0..2 {
                    storev(o.add(r * dp + ch + 16 * h), acc[r][h]);
                }
            }
            ch += 32;
        }
    }
}

impl Axpy for Avx2 {
    #[inline(always)]
    unsafe fn axpy(n: usize, a: f32, x: *const f32, y: *mut f32) {
        // SAFETY: n elements at x and y.
        unsafe {
            let av = _mm256_set1_ps(a);
            let mut e = 0;
            while e + 8 <= n {
                let r = _mm256_fmadd_ps(av, _mm256_loadu_ps(x.add(e)), _mm256_loadu_ps(y.add(e)));
                _mm256_storeu_ps(y.add(e), r);
                e += 8;
            }
            while e < n {
                let r = _mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(*x.add(e)), _mm_set_ss(*y.add(e)));
                *y.add(e) = _mm_cvtss_f32(r);
                e += 1;
            }
        }
    }
}

impl<T: L256> QuestBackend<T> for Avx2 {
    #[inline(always)]
    unsafe fn minmax(p: *const T, stride: usize, n: usize, d: usize, mn: *mut f32, mx: *mut f32) {
        // SAFETY: n rows of d elements; d outputs.
        unsafe {
            let mut e = 0;
            while e + 8 <= d {
                let mut lo = _mm256_set1_ps(f32::INFINITY);
                let mut hi = _mm256_set1_ps(f32::NEG_INFINITY);
                let mut nan = _mm256_setzero_ps();
                for j in 0..n {
                    let x = T::seq8(p.add(j * stride + e));
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
                    lo = _mm256_min_ps(x, lo);
                    hi = _mm256_max_ps(x, hi);
                }
                let qn = _mm256_set1_ps(f32::NAN);
                _mm256_storeu_ps(mn.add(e), _mm256_blendv_ps(lo, qn, nan));
                _mm256_storeu_ps(mx.add(e), _mm256_blendv_ps(hi, qn, nan));
                e += 8;
            }
            if e < d {
                <super::scalar::Scalar as QuestBackend<T>>::minmax(
                    p.add(e),
                    stride,
                    n,
                    d - e,
                    mn.add(e),
                    mx.add(e),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn bound_row(
        q: *const f32,
        d: usize,
        mn: *const f32,
        mx: *const f32,
        stride: usize,
        n_blocks: usize,
        out: *mut f32,
    ) {
        let cm = super::bound_margin(d);
        // SAFETY: q holds pad16(d) floats; summaries d floats each; n_blocks outputs.
        unsafe {
            let absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
            for b in 0..n_blocks {
                let z = _mm256_setzero_ps();
                let (mut s, mut a) = ([z, z], [z, z]);
                let mut e = 0;
                while e < d {
                    for i in 0..2 {
                        let at = e + 8 * i;
                        let (lo, hi) = if at + 8 <= d {
                            (
                                _mm256_loadu_ps(mn.add(b * stride + at)),
                                _mm256_loadu_ps(mx.add(b * stride + at)),
                            )
                        } else if at < d {
                            let bl = padded::<f32, 8>(mn.add(b * stride + at), d - at);
                            let bh = padded::<f32, 8>(mx.add(b * stride + at), d - at);
                            (_mm256_loadu_ps(bl.as_ptr()), _mm256_loadu_ps(bh.as_ptr()))
                        } else {
                            (z, z)
                        };
                        let qv = _mm256_loadu_ps(q.add(at));
                        let t = _mm256_max_ps(_mm256_mul_ps(qv, lo), _mm256_mul_ps(qv, hi));
                        s[i] = _mm256_add_ps(s[i], t);
                        a[i] = _mm256_add_ps(a[i], _mm256_and_ps(t, absm));
                    }
                    e += 16;
                }
                *out.add(b) = hsum(s) + cm * hsum(a);
            }
        }
    }
}

macro_rules! entries {
    ($t:ty, $attend:ident, $summary:ident, $bound:ident) => {
        /// # Safety
        /// The CPU supports the avx2 tier; see the module contract.
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
        pub unsafe fn $attend(a: &AttendArgs<$t>) {
            unsafe { super::attend::<$t, Avx2>(a) }
        }
        /// # Safety
        /// The CPU supports the avx2 tier; see [`SummaryArgs`].
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
        pub unsafe fn $summary(a: &SummaryArgs<$t>) {
            unsafe { summary::<$t, Avx2>(a) }
        }
        /// # Safety
        /// The CPU supports the avx2 tier; see [`BoundArgs`].
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
        pub unsafe fn $bound(a: &BoundArgs<$t>) {
            unsafe { bound::<$t, Avx2>(a) }
        }
    };
}
entries!(f32, f32_fma16_b64, f32_summary_v16, f32_bound_v16);
entries!(f16, f16_fma16_b64, f16_summary_v16, f16_bound_v16);
entries!(bf16, bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16);

/// # Safety
/// The CPU supports the avx2 tier; see [`MergeArgs`].
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt")]
pub unsafe fn f32_merge_u8(a: &MergeArgs) {
    unsafe { merge::<Avx2>(a) }
}
