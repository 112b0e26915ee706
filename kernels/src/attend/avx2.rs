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

/// Scores of 2 rows x 2 keys (`R = 2`) or 1 row x 4 keys (`R = 1`) from key `j0`.
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
    const { assert!(R == 1 || R == 2) };
    unsafe {
        let nk = 4 / R;
        let kp: [*const T; 4] = core::array::from_fn(|c| kbase.add(koff[j0 + c % nk]));
        let z = [_mm256_setzero_ps(); 2];
        let mut acc = [z; 4];
        let mut ch = 0;
        while ch < d {
            let k = d - ch;
            for h in 0..2 {
                let qv: [V; R] = core::array::from_fn(|r| loadv(q.add(r * dp + ch + 16 * h)));
                for c in 0..nk {
                    let kv = T::half(kp[c].add(ch), h, k);
                    for r in 0..R {
                        acc[r * nk + c] = fma(qv[r], kv, acc[r * nk + c]);
                    }
                }
            }
            ch += 32;
        }
        if R == 2 {
            // acc: (r0 k0), (r0 k1), (r1 k0), (r1 k1).
            let w = reduce4(acc[0], acc[2], acc[1], acc[3]);
            _mm_store_sd(
                s.add(j0) as *mut f64,
                _mm_castps_pd(_mm256_castps256_ps128(w)),
            );
            _mm_store_sd(
                s.add(BK + j0) as *mut f64,
                _mm_castps_pd(_mm256_extractf128_ps::<1>(w)),
            );
        } else {
            let w = reduce4(acc[0], acc[2], acc[1], acc[3]);
            let lo = _mm256_castps256_ps128(w);
            let hi = _mm256_extractf128_ps::<1>(w);
            _mm_storeu_ps(s.add(j0), _mm_movelh_ps(lo, hi));
        }
    }
}

impl<T: L256> Backend<T> for Avx2 {
    #[inline(always)]
    unsafe fn scores(
        nrows: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of q and s exist; keys j0 + 4 <= BK.
        unsafe {
            while r + 2 <= nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 2>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r * BK));
                    j += 2;
                }
                r += 2;
            }
            if r < nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 1>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r * BK));
                    j += 4;
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn softmax(
        nrows: usize,
        s: *mut f32,
        vis: &[u64; TILE_ROWS],
        c: f32,
        m: &mut [f32; TILE_ROWS],
        l: &mut [f32; TILE_ROWS],
        alpha: &mut [f32; TILE_ROWS],
        pm: &mut [u64; TILE_ROWS],
    ) {
        // SAFETY (block): nrows rows of BK floats at s; the arrays hold TILE_ROWS.
        unsafe {
            let cv = _mm256_set1_ps(c);
            let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut mb = [f32::NEG_INFINITY; TILE_ROWS];
            for r in 0..nrows {
                let row = s.add(r * BK);
                let mut mx = ninf;
                let mut nan = _mm256_setzero_ps();
                for q8 in 0..8 {
                    let k = bits8(vis[r] >> (8 * q8));
                    let x = _mm256_blendv_ps(
                        ninf,
                        _mm256_mul_ps(_mm256_loadu_ps(row.add(8 * q8)), cv),
                        k,
                    );
                    _mm256_storeu_ps(row.add(8 * q8), x);
                    let ord = _mm256_cmp_ps::<_CMP_ORD_Q>(x, x);
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
                    mx = _mm256_blendv_ps(mx, _mm256_max_ps(x, mx), ord);
                }
                let h = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps::<1>(mx));
                let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
                let h = _mm_max_ss(h, _mm_shuffle_ps::<0b01>(h, h));
                mb[r] = if _mm256_movemask_ps(nan) != 0 {
                    f32::NAN
                } else {
                    _mm_cvtss_f32(h)
                };
            }
            let mut active = 0u32;
            for half in 0..2 {
                let mo = _mm256_loadu_ps(m.as_ptr().add(8 * half));
                let mbv = _mm256_loadu_ps(mb.as_ptr().add(8 * half));
                let mn = _mm256_max_ps(mbv, mo);
                let mn = _mm256_blendv_ps(mn, mbv, _mm256_cmp_ps::<_CMP_UNORD_Q>(mbv, mo));
                let mn = _mm256_blendv_ps(mn, mo, _mm256_cmp_ps::<_CMP_UNORD_Q>(mo, mo));
                let act = _mm256_cmp_ps::<_CMP_NEQ_UQ>(mn, ninf);
                let al = _mm256_blendv_ps(_mm256_set1_ps(1.0), exp2v(_mm256_sub_ps(mo, mn)), act);
                _mm256_storeu_ps(alpha.as_mut_ptr().add(8 * half), al);
                _mm256_storeu_ps(m.as_mut_ptr().add(8 * half), mn);
                active |= (_mm256_movemask_ps(act) as u32) << (8 * half);
            }
            for r in 0..nrows {
                let row = s.add(r * BK);
                if (active >> r) & 1 == 0 {
                    for q8 in 0..8 {
                        _mm256_storeu_ps(row.add(8 * q8), _mm256_setzero_ps());
                    }
                    pm[r] = 0;
                    continue;
                }
                let mv = _mm256_set1_ps(m[r]);
                let mut bits = 0u64;
                let mut pv = [_mm256_setzero_ps(); 8];
                for q8 in 0..8 {
                    let p = exp2v(_mm256_sub_ps(_mm256_loadu_ps(row.add(8 * q8)), mv));
                    _mm256_storeu_ps(row.add(8 * q8), p);
                    let nz = _mm256_cmp_ps::<_CMP_NEQ_UQ>(p, _mm256_setzero_ps());
                    bits |= (_mm256_movemask_ps(nz) as u32 as u64) << (8 * q8);
                    pv[q8] = p;
                }
                let mut sum = [pv[0], pv[1]];
                for g in 1..4 {
                    sum = [
                        _mm256_add_ps(sum[0], pv[2 * g]),
                        _mm256_add_ps(sum[1], pv[2 * g + 1]),
                    ];
                }
                l[r] = alpha[r] * l[r] + hsum(sum);
                pm[r] = bits;
            }
        }
    }

    #[inline(always)]
    unsafe fn pv(
        nrows: usize,
        p: *const f32,
        alpha: *const f32,
        pm: *const u64,
        o: *mut f32,
        dp: usize,
        d: usize,
        vbase: *const T,
        voff: &[usize; BK],
        nb: usize,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of every buffer exist.
        unsafe {
            while r + 2 <= nrows {
                pv_rows::<T, 2>(
                    p.add(r * BK),
                    alpha.add(r),
                    pm.add(r),
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
                    p.add(r * BK),
                    alpha.add(r),
                    pm.add(r),
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
        vis: &[u64; TILE_ROWS],
        c: f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    ) {
        // SAFETY: nrows rows of BK floats.
        unsafe {
            let cv = _mm256_set1_ps(c);
            for r in 0..nrows {
                let row = s.add(r * BK);
                let (mv, iv) = (_mm256_set1_ps(m[r]), _mm256_set1_ps(inv_l[r]));
                for q8 in 0..8 {
                    let k = bits8(vis[r] >> (8 * q8));
                    let x = _mm256_mul_ps(_mm256_loadu_ps(row.add(8 * q8)), cv);
                    let p = _mm256_mul_ps(exp2v(_mm256_sub_ps(x, mv)), iv);
                    _mm256_storeu_ps(row.add(8 * q8), _mm256_and_ps(p, k));
                }
            }
        }
    }
}

/// `O = alpha O + sum p v` for `R` rows, one chunk of 32 output elements at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_rows<T: L256, const R: usize>(
    p: *const f32,
    alpha: *const f32,
    pm: *const u64,
    o: *mut f32,
    dp: usize,
    d: usize,
    vbase: *const T,
    voff: &[usize; BK],
    nb: usize,
) {
    unsafe {
        let all = if nb == 64 { u64::MAX } else { (1u64 << nb) - 1 };
        let mut masked = false;
        let mut bits = [0u64; R];
        for r in 0..R {
            bits[r] = *pm.add(r);
            masked |= bits[r] & all != all;
        }
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
                for r in 0..R {
                    let pb = _mm256_set1_ps(*p.add(r * BK + j));
                    let pb = [pb, pb];
                    if masked {
                        let mk = _mm256_castsi256_ps(_mm256_set1_epi32(
                            ((bits[r] >> j) & 1).wrapping_neg() as i32,
                        ));
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
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
        pub unsafe fn $attend(a: &AttendArgs<$t>) {
            unsafe { super::attend::<$t, Avx2>(a) }
        }
        /// # Safety
        /// The CPU supports the avx2 tier; see [`SummaryArgs`].
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
        pub unsafe fn $summary(a: &SummaryArgs<$t>) {
            unsafe { summary::<$t, Avx2>(a) }
        }
        /// # Safety
        /// The CPU supports the avx2 tier; see [`BoundArgs`].
        #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
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
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn f32_merge_u8(a: &MergeArgs) {
    unsafe { merge::<Avx2>(a) }
}
