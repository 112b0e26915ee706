//! The opt-in AVX512-BF16 attention (bf16 inputs only): an avx512-level kernel that also
//! needs `avx512bf16`. Not the canonical order, so not bit-identical to the other
//! levels (see `ATTEND_BF16_DPBF16`).
//!
//! Scores: queries in lanes (the tile's 16 rows), `vdpbf16ps` of packed query pairs
//! with each key's pair broadcast straight from K (nothing packed per key), written
//! key-major: sequential over dimension pairs. P.V: when every row of the tile has a
//! nonzero probability for every key of the block, the probabilities are rounded to
//! bf16 and `vdpbf16ps` sums key pairs against the block's values interleaved in key
//! pairs; otherwise (masked or underflowed keys) the block uses the canonical f32 P.V,
//! so a masked key still contributes nothing. The online softmax, masks and blocks are
//! the canonical ones (`canon.rs`), with the rounding hooked into the softmax.

use super::canon::{probs, softmax, Backend, Canon};
use super::numerics::Logit;
use super::{AttendArgs, BK, TILE_ROWS};
use crate::simd::{self, Avx512, Tier};
use core::arch::x86_64::*;
use half::bf16;

/// Scratch layout (bytes): the eligibility flag (u32) at 0, the byte offset of the
/// value pairs (u64) at [`VP_AT`], probability pairs `[32][16]` u32 at [`PP_OFF`],
/// query pairs `[dp / 2][16]` u32 at [`QT_OFF`], value pairs `[32][dvp]` u32 at
/// [`vp_off`]`(dp)` (see `super::scratch_bytes_dv`; `dp` and `dvp` the padded Q/K and V
/// head dimensions). `prepare` records the value pairs' offset, so that P.V, which
/// knows only `dvp`, finds them.
const VP_AT: usize = 8;
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
    unsafe fn prepare(nrows: usize, q: *const f32, dp_: usize, _dvp: usize, scratch: *mut u8) {
        // Query pairs: qt[i][r] = bf16 bits of elements (2i, 2i + 1) of row r (exact:
        // the packed f32 values are bf16 values), rows past nrows zero.
        // SAFETY: the packed rows and the scratch are as the driver lays them out.
        unsafe {
            *(scratch.add(VP_AT) as *mut u64) = vp_off(dp_) as u64;
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
        c: Logit,
        bias: *const f32,
        m: &mut [f32; TILE_ROWS],
        l: &mut [f32; TILE_ROWS],
        alpha: &mut [f32; TILE_ROWS],
        pm: &mut [u16; BK],
        scratch: *mut u8,
    ) {
        let rows = if nrows >= 16 {
            u16::MAX
        } else {
            ((1u32 << nrows) - 1) as u16
        };
        // SAFETY: as the caller's; the scratch holds the flag and the probability pairs
        // at PP_OFF.
        unsafe {
            softmax::<Avx512>(nrows, s, vis, nb, c, bias, m, l, alpha, pm, |pm| {
                round_probs(rows, s, nb, pm, scratch)
            })
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
        dp_: usize,
        d: usize,
        vbase: *const bf16,
        voff: &[usize; BK],
        nb: usize,
        scratch: *mut u8,
    ) {
        // SAFETY (block): the scratch layout above; V rows hold d elements (here `dp_`
        // and `d` are V's: the output rows).
        unsafe {
            if *(scratch as *const u32) == 0 {
                return <Canon<Avx512> as Backend<bf16>>::pv(
                    nrows, r0, p, alpha, pm, o, dp_, d, vbase, voff, nb, scratch,
                );
            }
            // Interleave the block's values in key pairs, canonical output layout:
            // per chunk of 32, the 16 odd elements' pairs, then the 16 even ones'.
            let vpk = scratch.add(*(scratch.add(VP_AT) as *const u64) as usize) as *mut u32;
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
        c: Logit,
        bias: *const f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    ) {
        // SAFETY: as the caller's.
        unsafe { probs::<Avx512>(nrows, s, vis, nb, c, bias, m, inv_l) }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        <Avx512 as Tier>::prefetch_l2(p)
    }
}

/// The rounding step of the softmax: when every row of the tile (`rows`) has a
/// nonzero probability for every key of the block, the probabilities are rounded to
/// bf16 (before their sum) and packed in key pairs into the scratch, and the scratch
/// flag is set; otherwise the flag is cleared.
///
/// # Safety
/// `s` holds the block's probabilities (`BK x TILE_ROWS`); the scratch is laid out as
/// above; avx512bf16 is enabled.
#[inline(always)]
unsafe fn round_probs(rows: u16, s: *mut f32, nb: usize, pm: &[u16; BK], scratch: *mut u8) {
    // SAFETY (block): as described.
    unsafe {
        let eligible = pm[..nb].iter().all(|&b| b == rows);
        *(scratch as *mut u32) = eligible as u32;
        if !eligible {
            return;
        }
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

simd::for_tier!(
    avx512bf16,
    with_features,
    /// # Safety
    /// The CPU supports the avx512 tier and AVX512-BF16; see the module contract.
    pub unsafe fn bf16_dpbf16_b64(a: &AttendArgs<bf16>) {
        // SAFETY: passed on from the caller.
        unsafe { super::driver::attend::<bf16, Avx512Bf16>(a) }
    }
);
