//! AVX-512 attention: the 16 canonical lanes of a dot product live in one zmm.
//!
//! Scores: register tiles of 4 rows x 4 keys (2 x 8, 1 x 16 for fewer rows), 16
//! accumulators reduced together by a transposed tree (30 shuffles, 15 adds) into one
//! zmm whose lane `L` is the canonical tree of accumulator `L`. P.V: tiles of 4 rows x
//! 64 output elements, `p` broadcast from the score buffer, masked FMAs where a row has
//! a zero probability. exp2 by the canonical recipe, 16 lanes at a time.

use super::{
    bound, merge, summary, AttendArgs, Axpy, Backend, BoundArgs, Elem, MergeArgs, QuestBackend,
    SummaryArgs, BK, EXP2_MIN, EXP2_POLY, SHIFTER, TILE_ROWS,
};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// The avx512 tier.
pub(crate) struct Avx512;

/// Loads of 16 canonical lanes.
pub(crate) trait L512: Elem {
    /// Half `h` (0: first, 1: second FMA) of the 32-element chunk at `p`.
    /// # Safety
    /// `p` valid for 32 elements; avx512 tier.
    unsafe fn half(p: *const Self, h: usize) -> __m512;
    /// As [`L512::half`] for a chunk of `k < 32` valid elements (zeros past them).
    /// # Safety
    /// `p` valid for `k` elements; avx512 tier.
    unsafe fn half_part(p: *const Self, h: usize, k: usize) -> __m512;
    /// Elements `0..16` in order (summaries); `k <= 16` valid, zeros past them.
    /// # Safety
    /// `p` valid for `k` elements; avx512 tier.
    unsafe fn seq(p: *const Self, k: usize) -> __m512;
}

#[inline(always)]
fn mask16(k: usize) -> u16 {
    if k >= 16 {
        0xffff
    } else {
        ((1u32 << k) - 1) as u16
    }
}

impl L512 for f32 {
    #[inline(always)]
    unsafe fn half(p: *const f32, h: usize) -> __m512 {
        unsafe { _mm512_loadu_ps(p.add(16 * h)) }
    }
    #[inline(always)]
    unsafe fn half_part(p: *const f32, h: usize, k: usize) -> __m512 {
        let n = k.saturating_sub(16 * h);
        // SAFETY: masked-off lanes are not accessed (no fault), the rest are valid.
        unsafe { _mm512_maskz_loadu_ps(mask16(n), p.wrapping_add(16 * h)) }
    }
    #[inline(always)]
    unsafe fn seq(p: *const f32, k: usize) -> __m512 {
        unsafe { _mm512_maskz_loadu_ps(mask16(k), p) }
    }
}

impl L512 for f16 {
    #[inline(always)]
    unsafe fn half(p: *const f16, h: usize) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.add(16 * h) as *const __m256i)) }
    }
    #[inline(always)]
    unsafe fn half_part(p: *const f16, h: usize, k: usize) -> __m512 {
        let n = k.saturating_sub(16 * h);
        unsafe {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                mask16(n),
                p.wrapping_add(16 * h) as *const i16,
            ))
        }
    }
    #[inline(always)]
    unsafe fn seq(p: *const f16, k: usize) -> __m512 {
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(k), p as *const i16)) }
    }
}

/// bf16 pairs: the odd element of each pair is the high half of a 32-bit lane.
#[inline(always)]
unsafe fn bf16_split(x: __m512i, h: usize) -> __m512 {
    unsafe {
        if h == 0 {
            _mm512_castsi512_ps(_mm512_and_si512(
                x,
                _mm512_set1_epi32(0xffff_0000u32 as i32),
            ))
        } else {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(x))
        }
    }
}

impl L512 for bf16 {
    #[inline(always)]
    unsafe fn half(p: *const bf16, h: usize) -> __m512 {
        unsafe { bf16_split(_mm512_loadu_si512(p as *const __m512i), h) }
    }
    #[inline(always)]
    unsafe fn half_part(p: *const bf16, h: usize, k: usize) -> __m512 {
        let m = if k >= 32 { u32::MAX } else { (1u32 << k) - 1 };
        unsafe { bf16_split(_mm512_maskz_loadu_epi16(m, p as *const i16), h) }
    }
    #[inline(always)]
    unsafe fn seq(p: *const bf16, k: usize) -> __m512 {
        unsafe {
            let v = _mm256_maskz_loadu_epi16(mask16(k), p as *const i16);
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
        }
    }
}

/// The canonical tree of one vector.
#[inline(always)]
unsafe fn hsum(v: __m512) -> f32 {
    unsafe {
        let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
        let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
        let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        let s1 = _mm_add_ss(s2, _mm_shuffle_ps::<0b01>(s2, s2));
        _mm_cvtss_f32(s1)
    }
}

/// Sixteen canonical trees at once: lane `L` of the result is the tree of `a[L]`.
#[inline(always)]
unsafe fn reduce16x16(a: &[__m512; 16]) -> __m512 {
    unsafe {
        #[inline(always)]
        unsafe fn c1(x: __m512, y: __m512) -> __m512 {
            unsafe {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x44>(x, y),
                    _mm512_shuffle_f32x4::<0xee>(x, y),
                )
            }
        }
        #[inline(always)]
        unsafe fn c2(x: __m512, y: __m512) -> __m512 {
            unsafe {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0x88>(x, y),
                    _mm512_shuffle_f32x4::<0xdd>(x, y),
                )
            }
        }
        #[inline(always)]
        unsafe fn c3(x: __m512, y: __m512) -> __m512 {
            unsafe {
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x44>(x, y),
                    _mm512_shuffle_ps::<0xee>(x, y),
                )
            }
        }
        #[inline(always)]
        unsafe fn c4(x: __m512, y: __m512) -> __m512 {
            unsafe {
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x88>(x, y),
                    _mm512_shuffle_ps::<0xdd>(x, y),
                )
            }
        }
        let u0 = c2(c1(a[0], a[4]), c1(a[8], a[12]));
        let u1 = c2(c1(a[1], a[5]), c1(a[9], a[13]));
        let u2 = c2(c1(a[2], a[6]), c1(a[10], a[14]));
        let u3 = c2(c1(a[3], a[7]), c1(a[11], a[15]));
        c4(c3(u0, u1), c3(u2, u3))
    }
}

/// The canonical exp2 of 16 lanes.
#[inline(always)]
unsafe fn exp2v(t: __m512) -> __m512 {
    unsafe {
        let sh = _mm512_set1_ps(SHIFTER);
        let r = _mm512_add_ps(t, sh);
        let n = _mm512_sub_ps(r, sh);
        let f = _mm512_sub_ps(t, n);
        let mut y = _mm512_set1_ps(EXP2_POLY[0]);
        for &c in &EXP2_POLY[1..] {
            y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(c));
        }
        let ni = _mm512_slli_epi32::<23>(_mm512_sub_epi32(
            _mm512_castps_si512(r),
            _mm512_castps_si512(sh),
        ));
        let res = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(y), ni));
        let under = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(t, _mm512_set1_ps(EXP2_MIN));
        let res = _mm512_mask_blend_ps(under, res, _mm512_setzero_ps());
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(t, t);
        _mm512_mask_blend_ps(nan, res, t)
    }
}

/// Scores of rows `R` x keys `C` (`R * C = 16`) starting at key `j0`, into the
/// key-major score buffer (lane `c * R + r` of the reduced vector is row `r`, key `c`).
#[inline(always)]
unsafe fn s_tile<T: L512, const R: usize, const C: usize>(
    q: *const f32,
    dp: usize,
    d: usize,
    kbase: *const T,
    koff: &[usize; BK],
    j0: usize,
    s: *mut f32,
) {
    unsafe {
        let kp: [*const T; C] = core::array::from_fn(|c| kbase.add(koff[j0 + c]));
        let mut acc = [_mm512_setzero_ps(); 16];
        let full = d / 32;
        for ch in 0..full {
            for h in 0..2 {
                let mut qv = [_mm512_setzero_ps(); R];
                for (r, x) in qv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(q.add(r * dp + 32 * ch + 16 * h));
                }
                for c in 0..C {
                    let kv = T::half(kp[c].add(32 * ch), h);
                    for r in 0..R {
                        acc[c * R + r] = _mm512_fmadd_ps(qv[r], kv, acc[c * R + r]);
                    }
                }
            }
        }
        let rest = d - 32 * full;
        if rest > 0 {
            for h in 0..2 {
                let mut qv = [_mm512_setzero_ps(); R];
                for (r, x) in qv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(q.add(r * dp + 32 * full + 16 * h));
                }
                for c in 0..C {
                    let kv = T::half_part(kp[c].add(32 * full), h, rest);
                    for r in 0..R {
                        acc[c * R + r] = _mm512_fmadd_ps(qv[r], kv, acc[c * R + r]);
                    }
                }
            }
        }
        let w = reduce16x16(&acc);
        match R {
            8 => {
                _mm256_storeu_ps(s.add(j0 * TILE_ROWS), _mm512_extractf32x8_ps::<0>(w));
                _mm256_storeu_ps(s.add((j0 + 1) * TILE_ROWS), _mm512_extractf32x8_ps::<1>(w));
            }
            4 => {
                _mm_storeu_ps(s.add(j0 * TILE_ROWS), _mm512_extractf32x4_ps::<0>(w));
                _mm_storeu_ps(s.add((j0 + 1) * TILE_ROWS), _mm512_extractf32x4_ps::<1>(w));
                _mm_storeu_ps(s.add((j0 + 2) * TILE_ROWS), _mm512_extractf32x4_ps::<2>(w));
                _mm_storeu_ps(s.add((j0 + 3) * TILE_ROWS), _mm512_extractf32x4_ps::<3>(w));
            }
            _ => {
                let mut tmp = [0f32; 16];
                _mm512_storeu_ps(tmp.as_mut_ptr(), w);
                for c in 0..C {
                    for r in 0..R {
                        *s.add((j0 + c) * TILE_ROWS + r) = tmp[c * R + r];
                    }
                }
            }
        }
    }
}

/// `O = alpha * O`, then the fused `p v` sums, for `R` rows and `NCH` chunks of 32
/// output elements starting at chunk `ch0` (the last one holding `rest` elements when
/// `PART`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_tile<T: L512, const R: usize, const NCH: usize, const PART: bool>(
    r0: usize,
    p: *const f32,
    alpha: *const f32,
    pm: &[u16; BK],
    masked: bool,
    o: *mut f32,
    dp: usize,
    vbase: *const T,
    voff: &[usize; BK],
    nb: usize,
    ch0: usize,
    rest: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 8]; R];
        for r in 0..R {
            let a = _mm512_set1_ps(*alpha.add(r));
            for v in 0..2 * NCH {
                acc[r][v] = _mm512_mul_ps(a, _mm512_loadu_ps(o.add(r * dp + 32 * ch0 + 16 * v)));
            }
        }
        for j in 0..nb {
            let vp = vbase.add(voff[j] + 32 * ch0);
            let mut vv = [_mm512_setzero_ps(); 8];
            for v in 0..2 * NCH {
                vv[v] = if PART && v / 2 == NCH - 1 {
                    T::half_part(vp.add(32 * (v / 2)), v % 2, rest)
                } else {
                    T::half(vp.add(32 * (v / 2)), v % 2)
                };
            }
            let pr = p.add(j * TILE_ROWS);
            if masked {
                let bits = pm[j] >> r0;
                for r in 0..R {
                    let k = ((bits >> r) & 1).wrapping_neg();
                    let pb = _mm512_set1_ps(*pr.add(r));
                    for v in 0..2 * NCH {
                        acc[r][v] = _mm512_mask3_fmadd_ps(pb, vv[v], acc[r][v], k);
                    }
                }
            } else {
                for r in 0..R {
                    let pb = _mm512_set1_ps(*pr.add(r));
                    for v in 0..2 * NCH {
                        acc[r][v] = _mm512_fmadd_ps(pb, vv[v], acc[r][v]);
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..2 * NCH {
                _mm512_storeu_ps(o.add(r * dp + 32 * ch0 + 16 * v), acc[r][v]);
            }
        }
    }
}

/// Every output chunk of `R` rows, `NCH` chunks of 32 at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_rows<T: L512, const R: usize, const NCH: usize>(
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
    let rows = ((1u32 << R) - 1) as u16;
    let masked = pm[..nb].iter().any(|&b| (b >> r0) & rows != rows);
    let full = d / 32;
    let rest = d % 32;
    let mut ch = 0;
    // SAFETY (all calls): as the caller's.
    unsafe {
        while ch + NCH <= full {
            pv_tile::<T, R, NCH, false>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, 0);
            ch += NCH;
        }
        while ch < full {
            pv_tile::<T, R, 1, false>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, 0);
            ch += 1;
        }
        if rest > 0 {
            pv_tile::<T, R, 1, true>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, rest);
        }
    }
}

/// `((p_i + p_(16+i)) + p_(32+i)) + p_(48+i)` over the keys `< nb` (0 when none).
#[inline(always)]
unsafe fn lane_sum(s: *const f32, i: usize, nb: usize) -> __m512 {
    unsafe {
        let mut acc = _mm512_setzero_ps();
        let mut j = i;
        while j < nb {
            let pj = _mm512_loadu_ps(s.add(j * TILE_ROWS));
            acc = if j == i { pj } else { _mm512_add_ps(acc, pj) };
            j += 16;
        }
        acc
    }
}

impl<T: L512> Backend<T> for Avx512 {
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
        // SAFETY (all calls): rows r.. of q and columns of s exist; keys j0 + C <= BK.
        unsafe {
            // Keys outer, groups of 8 rows inner: each pair of K rows is read from memory
            // once and reused from L1 by the next row group.
            let r8 = nrows / 8 * 8;
            let mut j = 0;
            while r8 > 0 && j < nb {
                while r + 8 <= r8 {
                    s_tile::<T, 8, 2>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    r += 8;
                }
                r = 0;
                j += 2;
            }
            r = r8;
            if r + 4 <= nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 4, 4>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 4;
                }
                r += 4;
            }
            if r + 2 <= nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 2, 8>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 8;
                }
                r += 2;
            }
            if r < nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 1, 16>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 16;
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
        scratch: *mut u8,
    ) {
        // SAFETY: as the caller's.
        unsafe { softmax_impl::<false>(nrows, s, vis, nb, c, m, l, alpha, pm, scratch) }
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
            while r + 8 <= nrows {
                pv_rows::<T, 8, 1>(
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
                r += 8;
            }
            if r + 4 <= nrows {
                pv_rows::<T, 4, 2>(
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
                r += 4;
            }
            if r + 2 <= nrows {
                pv_rows::<T, 2, 4>(
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
                pv_rows::<T, 1, 4>(
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
        _nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    ) {
        // SAFETY: BK x TILE_ROWS floats.
        unsafe {
            let cv = _mm512_set1_ps(c);
            let (mv, iv) = (_mm512_loadu_ps(m.as_ptr()), _mm512_loadu_ps(inv_l.as_ptr()));
            for j in 0..nb {
                let x = _mm512_mul_ps(_mm512_loadu_ps(s.add(j * TILE_ROWS)), cv);
                let p = _mm512_mul_ps(exp2v(_mm512_sub_ps(x, mv)), iv);
                _mm512_storeu_ps(s.add(j * TILE_ROWS), _mm512_maskz_mov_ps(vis[j], p));
            }
        }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) };
    }
}

/// The online-softmax step; with `ROUND` (the AVX512-BF16 path), when every row of the
/// tile has a nonzero probability for every key of the block, the probabilities are
/// rounded to bf16 (before their sum) and packed in key pairs into the scratch, and the
/// scratch flag is set.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn softmax_impl<const ROUND: bool>(
    nrows: usize,
    s: *mut f32,
    vis: &[u16; BK],
    nb: usize,
    c: f32,
    m: &mut [f32; TILE_ROWS],
    l: &mut [f32; TILE_ROWS],
    alpha: &mut [f32; TILE_ROWS],
    pm: &mut [u16; BK],
    scratch: *mut u8,
) {
    // SAFETY (block): BK x TILE_ROWS floats at s; the arrays hold TILE_ROWS.
    unsafe {
        let cv = _mm512_set1_ps(c);
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let zero = _mm512_setzero_ps();
        let rows = if nrows >= 16 {
            u16::MAX
        } else {
            ((1u32 << nrows) - 1) as u16
        };
        let mut mx = ninf;
        let mut nan: u16 = 0;
        for j in 0..nb {
            let x = _mm512_mask_blend_ps(
                vis[j],
                ninf,
                _mm512_mul_ps(_mm512_loadu_ps(s.add(j * TILE_ROWS)), cv),
            );
            _mm512_storeu_ps(s.add(j * TILE_ROWS), x);
            let ord = _mm512_cmp_ps_mask::<_CMP_ORD_Q>(x, x);
            nan |= !ord;
            mx = _mm512_mask_max_ps(mx, ord, x, mx);
        }
        let mbv = _mm512_mask_blend_ps(nan, mx, _mm512_set1_ps(f32::NAN));
        let mo = _mm512_loadu_ps(m.as_ptr());
        let mn = _mm512_max_ps(mbv, mo);
        let mn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(mbv, mo), mn, mbv);
        let mn = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_UNORD_Q>(mo, mo), mn, mo);
        let active = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(mn, ninf) & rows;
        let al = _mm512_mask_blend_ps(active, _mm512_set1_ps(1.0), exp2v(_mm512_sub_ps(mo, mn)));
        _mm512_storeu_ps(alpha.as_mut_ptr(), al);
        _mm512_storeu_ps(m.as_mut_ptr(), _mm512_mask_blend_ps(active, mo, mn));
        for j in 0..nb {
            let x = _mm512_loadu_ps(s.add(j * TILE_ROWS));
            let p = _mm512_maskz_mov_ps(active, exp2v(_mm512_sub_ps(x, mn)));
            _mm512_storeu_ps(s.add(j * TILE_ROWS), p);
            pm[j] = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(p, zero) & active;
        }
        for b in pm[nb..].iter_mut() {
            *b = 0;
        }
        if ROUND {
            let eligible = pm[..nb].iter().all(|&b| b == rows);
            *(scratch as *mut u32) = eligible as u32;
            if eligible {
                let pp = scratch.add(PP_OFF) as *mut u32;
                for kp in 0..nb.div_ceil(2) {
                    let mut pair = _mm512_setzero_si512();
                    for h in 0..2 {
                        let j = 2 * kp + h;
                        if j < nb {
                            let p = _mm512_loadu_ps(s.add(j * TILE_ROWS));
                            let b = _mm512_cvtepu16_epi32(bh_bits(p));
                            let r = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(b));
                            _mm512_storeu_ps(s.add(j * TILE_ROWS), r);
                            pair = if h == 0 {
                                b
                            } else {
                                _mm512_or_si512(pair, _mm512_slli_epi32::<16>(b))
                            };
                        }
                    }
                    _mm512_storeu_si512(pp.add(kp * TILE_ROWS) as *mut __m512i, pair);
                }
            }
        }
        // psum: lanes t_i = ((p_i + p_16+i) + p_32+i) + p_48+i, then the tree.
        let mut s8 = [zero; 8];
        for (i, x) in s8.iter_mut().enumerate() {
            *x = _mm512_add_ps(lane_sum(s, i, nb), lane_sum(s, i + 8, nb));
        }
        let mut s4 = [zero; 4];
        for (i, x) in s4.iter_mut().enumerate() {
            *x = _mm512_add_ps(s8[i], s8[i + 4]);
        }
        let s2 = [_mm512_add_ps(s4[0], s4[2]), _mm512_add_ps(s4[1], s4[3])];
        let psum = _mm512_add_ps(s2[0], s2[1]);
        let lv = _mm512_add_ps(_mm512_mul_ps(al, _mm512_loadu_ps(l.as_ptr())), psum);
        _mm512_storeu_ps(
            l.as_mut_ptr(),
            _mm512_mask_blend_ps(active, _mm512_loadu_ps(l.as_ptr()), lv),
        );
    }
}

impl Axpy for Avx512 {
    #[inline(always)]
    unsafe fn axpy(n: usize, a: f32, x: *const f32, y: *mut f32) {
        // SAFETY: n elements at x and y; masked tail.
        unsafe {
            let av = _mm512_set1_ps(a);
            let mut e = 0;
            while e + 16 <= n {
                let r = _mm512_fmadd_ps(av, _mm512_loadu_ps(x.add(e)), _mm512_loadu_ps(y.add(e)));
                _mm512_storeu_ps(y.add(e), r);
                e += 16;
            }
            if e < n {
                let k = mask16(n - e);
                let r = _mm512_fmadd_ps(
                    av,
                    _mm512_maskz_loadu_ps(k, x.add(e)),
                    _mm512_maskz_loadu_ps(k, y.add(e)),
                );
                _mm512_mask_storeu_ps(y.add(e), k, r);
            }
        }
    }
}

impl<T: L512> QuestBackend<T> for Avx512 {
    #[inline(always)]
    unsafe fn minmax(p: *const T, stride: usize, n: usize, d: usize, mn: *mut f32, mx: *mut f32) {
        // SAFETY: n rows of d elements; d outputs; masked tails.
        unsafe {
            let mut e = 0;
            while e < d {
                let k = core::cmp::min(16, d - e);
                let mut lo = _mm512_set1_ps(f32::INFINITY);
                let mut hi = _mm512_set1_ps(f32::NEG_INFINITY);
                let mut nan: u16 = 0;
                for j in 0..n {
                    let x = T::seq(p.add(j * stride + e), k);
                    nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                    lo = _mm512_min_ps(x, lo);
                    hi = _mm512_max_ps(x, hi);
                }
                let qn = _mm512_set1_ps(f32::NAN);
                lo = _mm512_mask_blend_ps(nan, lo, qn);
                hi = _mm512_mask_blend_ps(nan, hi, qn);
                _mm512_mask_storeu_ps(mn.add(e), mask16(k), lo);
                _mm512_mask_storeu_ps(mx.add(e), mask16(k), hi);
                e += 16;
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
            let absm = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fff_ffff));
            for b in 0..n_blocks {
                let (mut s, mut a) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let mut e = 0;
                while e < d {
                    let k = mask16(d - e);
                    let qv = _mm512_loadu_ps(q.add(e));
                    let x = _mm512_mul_ps(qv, _mm512_maskz_loadu_ps(k, mn.add(b * stride + e)));
                    let y = _mm512_mul_ps(qv, _mm512_maskz_loadu_ps(k, mx.add(b * stride + e)));
                    let t = _mm512_max_ps(x, y);
                    s = _mm512_add_ps(s, t);
                    a = _mm512_add_ps(a, _mm512_and_ps(t, absm));
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
        /// The CPU supports the avx512 tier; see the module contract.
        #[target_feature(
            enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
        )]
        pub unsafe fn $attend(a: &AttendArgs<$t>) {
            unsafe { super::attend::<$t, Avx512>(a) }
        }
        /// # Safety
        /// The CPU supports the avx512 tier; see [`SummaryArgs`].
        #[target_feature(
            enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
        )]
        pub unsafe fn $summary(a: &SummaryArgs<$t>) {
            unsafe { summary::<$t, Avx512>(a) }
        }
        /// # Safety
        /// The CPU supports the avx512 tier; see [`BoundArgs`].
        #[target_feature(
            enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
        )]
        pub unsafe fn $bound(a: &BoundArgs<$t>) {
            unsafe { bound::<$t, Avx512>(a) }
        }
    };
}
entries!(f32, f32_fma16_b64, f32_summary_v16, f32_bound_v16);
entries!(f16, f16_fma16_b64, f16_summary_v16, f16_bound_v16);
entries!(bf16, bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16);

/// # Safety
/// The CPU supports the avx512 tier; see [`MergeArgs`].
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl"
)]
pub unsafe fn f32_merge_u16(a: &MergeArgs) {
    unsafe { merge::<Avx512>(a) }
}

// ------------------------------------------------------------------------------------
// The opt-in AVX512-BF16 path (bf16 inputs only).
//
// Scores: queries in lanes (the tile's 16 rows), `vdpbf16ps` of packed query pairs
// with each key's pair broadcast straight from K (nothing packed per key), written
// key-major: sequential over dimension pairs, so not the canonical order. P.V: when
// every row of the tile has a nonzero probability for every key of the block, the
// probabilities are rounded to bf16 and `vdpbf16ps` sums key pairs against the block's
// values interleaved in key pairs; otherwise (masked or underflowed keys) the block
// uses the canonical f32 P.V, so a masked key still contributes nothing. The online
// softmax, masks and blocks are the canonical ones.

/// Scratch layout (bytes): the eligibility flag at 0, probability pairs `[32][16]` u32
/// at [`PP_OFF`], query pairs `[dp / 2][16]` u32 at [`QT_OFF`], value pairs `[32][dp]`
/// u32 at [`vp_off`] (see `super::scratch_bytes`).
const PP_OFF: usize = 64;
const QT_OFF: usize = PP_OFF + BK / 2 * TILE_ROWS * 4;

#[inline(always)]
fn vp_off(dp: usize) -> usize {
    QT_OFF + dp / 2 * TILE_ROWS * 4
}

/// The bf16 bits (round to nearest even) of 16 floats.
#[inline(always)]
unsafe fn bh_bits(p: __m512) -> __m256i {
    unsafe { core::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(p)) }
}

#[inline(always)]
unsafe fn dp(acc: __m512, a: __m512i, b: __m512i) -> __m512 {
    unsafe {
        _mm512_dpbf16_ps(
            acc,
            core::mem::transmute::<__m512i, __m512bh>(a),
            core::mem::transmute::<__m512i, __m512bh>(b),
        )
    }
}

/// The AVX512-BF16 tier-variant (an avx512 level kernel that also needs avx512bf16).
pub(crate) struct Avx512Bf16;

/// Scores of the run's rows (lanes `r0 .. r0 + nrows`) for `C` keys from `j0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn s_dp<const C: usize>(
    rows: u16,
    qt: *const u32,
    d: usize,
    kbase: *const bf16,
    koff: &[usize; BK],
    j0: usize,
    s0: *mut f32,
) {
    unsafe {
        let kp: [*const u32; C] = core::array::from_fn(|c| kbase.add(koff[j0 + c]) as *const u32);
        let mut acc = [_mm512_setzero_ps(); C];
        let pairs = d / 2;
        for i in 0..pairs {
            let qv = _mm512_loadu_si512(qt.add(i * TILE_ROWS) as *const __m512i);
            for c in 0..C {
                acc[c] = dp(
                    acc[c],
                    qv,
                    _mm512_set1_epi32(kp[c].add(i).read_unaligned() as i32),
                );
            }
        }
        if d % 2 == 1 {
            let qv = _mm512_loadu_si512(qt.add(pairs * TILE_ROWS) as *const __m512i);
            for c in 0..C {
                let last = (kp[c] as *const u16).add(d - 1).read_unaligned() as i32;
                acc[c] = dp(acc[c], qv, _mm512_set1_epi32(last));
            }
        }
        for c in 0..C {
            _mm512_mask_storeu_ps(s0.add((j0 + c) * TILE_ROWS), rows, acc[c]);
        }
    }
}

/// P.V by bf16 key pairs for `R` rows and `NV` vectors of 16 outputs from vector `v0`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_dp<const R: usize, const NV: usize>(
    r0: usize,
    pp: *const u32,
    vpk: *const u32,
    npairs: usize,
    alpha: *const f32,
    o: *mut f32,
    dp_: usize,
    v0: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; R];
        for r in 0..R {
            let a = _mm512_set1_ps(*alpha.add(r));
            for v in 0..NV {
                acc[r][v] = _mm512_mul_ps(a, _mm512_loadu_ps(o.add(r * dp_ + 16 * (v0 + v))));
            }
        }
        for kp in 0..npairs {
            let mut vv = [_mm512_setzero_si512(); NV];
            for v in 0..NV {
                vv[v] = _mm512_loadu_si512(vpk.add(kp * dp_ + 16 * (v0 + v)) as *const __m512i);
            }
            for r in 0..R {
                let pb = _mm512_set1_epi32(*pp.add(kp * TILE_ROWS + r0 + r) as i32);
                for v in 0..NV {
                    acc[r][v] = dp(acc[r][v], pb, vv[v]);
                }
            }
        }
        for r in 0..R {
            for v in 0..NV {
                _mm512_storeu_ps(o.add(r * dp_ + 16 * (v0 + v)), acc[r][v]);
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_dp_rows<const R: usize>(
    r0: usize,
    pp: *const u32,
    vpk: *const u32,
    npairs: usize,
    alpha: *const f32,
    o: *mut f32,
    dp_: usize,
) {
    let nv = dp_ / 16;
    let mut v = 0;
    // SAFETY (all calls): as the caller's.
    unsafe {
        while v + 4 <= nv {
            pv_dp::<R, 4>(r0, pp, vpk, npairs, alpha, o, dp_, v);
            v += 4;
        }
        if v < nv {
            pv_dp::<R, 2>(r0, pp, vpk, npairs, alpha, o, dp_, v);
        }
    }
}

impl Backend<bf16> for Avx512Bf16 {
    #[inline(always)]
    unsafe fn prepare(nrows: usize, q: *const f32, dp_: usize, scratch: *mut u8) {
        // Query pairs: qt[i][r] = bf16 bits of elements (2i, 2i + 1) of row r (exact:
        // the packed f32 values are bf16 values), rows past nrows zero.
        // SAFETY: the packed rows and the scratch are as the driver lays them out.
        unsafe {
            let qt = scratch.add(QT_OFF) as *mut u32;
            for c in 0..dp_ / 32 {
                for l in 0..16 {
                    for r in 0..TILE_ROWS {
                        let v = if r < nrows {
                            let odd = (*q.add(r * dp_ + 32 * c + l)).to_bits();
                            let even = (*q.add(r * dp_ + 32 * c + 16 + l)).to_bits();
                            (even >> 16) | (odd & 0xffff_0000)
                        } else {
                            0
                        };
                        *qt.add((16 * c + l) * TILE_ROWS + r) = v;
                    }
                }
            }
        }
    }

    #[inline(always)]
    unsafe fn scores(
        nrows: usize,
        r0: usize,
        _q: *const f32,
        dp_: usize,
        d: usize,
        kbase: *const bf16,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
        scratch: *mut u8,
    ) {
        let rows = ((((1u32 << nrows) - 1) << r0) & 0xffff) as u16;
        let _ = dp_;
        // SAFETY: s points at column r0 of the key-major buffer; keys j0 + 8 <= BK.
        unsafe {
            let qt = scratch.add(QT_OFF) as *const u32;
            let s0 = s.sub(r0);
            let mut j = 0;
            while j < nb {
                s_dp::<8>(rows, qt, d, kbase, koff, j, s0);
                j += 8;
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
        scratch: *mut u8,
    ) {
        // SAFETY: as the caller's; the scratch holds the probability pairs at PP_OFF.
        unsafe { softmax_impl::<true>(nrows, s, vis, nb, c, m, l, alpha, pm, scratch) }
    }

    #[inline(always)]
    unsafe fn pv(
        nrows: usize,
        r0: usize,
        p: *const f32,
        alpha: *const f32,
        pm: &[u16; BK],
        o: *mut f32,
        dp_: usize,
        d: usize,
        vbase: *const bf16,
        voff: &[usize; BK],
        nb: usize,
        scratch: *mut u8,
    ) {
        // SAFETY (block): the scratch layout above; V rows hold d elements.
        unsafe {
            if *(scratch as *const u32) == 0 {
                return <Avx512 as Backend<bf16>>::pv(
                    nrows, r0, p, alpha, pm, o, dp_, d, vbase, voff, nb, scratch,
                );
            }
            // Interleave the block's values in key pairs, canonical output layout:
            // per chunk of 32, the 16 odd elements' pairs, then the 16 even ones'.
            let vpk = scratch.add(vp_off(dp_)) as *mut u32;
            let npairs = nb.div_ceil(2);
            let lo16 = _mm512_set1_epi32(0xffff);
            let hi16 = _mm512_set1_epi32(0xffff_0000u32 as i32);
            for kp in 0..npairs {
                let a = vbase.add(voff[2 * kp]);
                let has_b = 2 * kp + 1 < nb;
                let b = vbase.add(voff[if has_b { 2 * kp + 1 } else { 2 * kp }]);
                for ch in 0..dp_ / 32 {
                    let k = d.saturating_sub(32 * ch).min(32);
                    let m = if k >= 32 { u32::MAX } else { (1u32 << k) - 1 };
                    let x = _mm512_maskz_loadu_epi16(m, a.add(32 * ch) as *const i16);
                    let y = if has_b {
                        _mm512_maskz_loadu_epi16(m, b.add(32 * ch) as *const i16)
                    } else {
                        _mm512_setzero_si512()
                    };
                    let odd =
                        _mm512_or_si512(_mm512_srli_epi32::<16>(x), _mm512_and_si512(y, hi16));
                    let even =
                        _mm512_or_si512(_mm512_and_si512(x, lo16), _mm512_slli_epi32::<16>(y));
                    _mm512_storeu_si512(vpk.add(kp * dp_ + 32 * ch) as *mut __m512i, odd);
                    _mm512_storeu_si512(vpk.add(kp * dp_ + 32 * ch + 16) as *mut __m512i, even);
                }
            }
            let pp = scratch.add(PP_OFF) as *const u32;
            let mut r = 0;
            while r + 4 <= nrows {
                pv_dp_rows::<4>(r0 + r, pp, vpk, npairs, alpha.add(r), o.add(r * dp_), dp_);
                r += 4;
            }
            while r < nrows {
                pv_dp_rows::<1>(r0 + r, pp, vpk, npairs, alpha.add(r), o.add(r * dp_), dp_);
                r += 1;
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
        // SAFETY: as the caller's.
        unsafe { <Avx512 as Backend<bf16>>::probs(nrows, s, vis, nb, c, m, inv_l) }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        // SAFETY: a prefetch never faults.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p as *const i8) };
    }
}

/// # Safety
/// The CPU supports the avx512 tier and AVX512-BF16; see the module contract.
#[target_feature(
    enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx512bf16"
)]
pub unsafe fn bf16_dpbf16_b64(a: &AttendArgs<bf16>) {
    unsafe { super::attend::<bf16, Avx512Bf16>(a) }
}
