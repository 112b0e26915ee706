//! The canonical tile algorithm, written once over [`Tier`]: dot products in 16
//! canonical lanes, the online softmax across the rows of a tile (`LANES` rows per
//! vector), P.V, and the probabilities of the mass pass. A tier contributes only its
//! register tiling ([`tiles!`]: the shapes of its score and P.V tiles, which never
//! change results) and, through the [`Tier`] trait, its vector operations.

use super::numerics::{exp2v, logitv, Logit};
use super::{BK, TILE_ROWS};
use crate::simd::{self, Elem, Kind, Tier};
use core::marker::PhantomData;
use half::bf16;

/// The phases of the canonical algorithm that each tier implements.
///
/// The score buffer `s` of a tile is key-major: the value of row `r` and key `j` lives
/// at `s[j * TILE_ROWS + r]` (so the online softmax runs across rows, with no
/// horizontal reductions). Visibility and nonzero-probability masks are per key, bit
/// `r` for row `r`.
pub(crate) trait Backend<T: Elem> {
    /// `s[j * TILE_ROWS + r] = dot(q row r, K row kbase + koff[j])` for `r < nrows` and
    /// at least every `j < nb`. `q` holds `nrows` packed f32 rows `dp` apart (zero past
    /// `d`); `s` points at the column of the run's first row, tile row `r0`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores(
        nrows: usize,
        r0: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
        scratch: *mut u8,
    );

    /// Called once per tile after the queries are packed (`nrows` rows at `q`, `dp`
    /// apart; output rows `dvp` apart), with the tile's scratch space
    /// (`super::scratch_bytes_dv(dp, dvp)` bytes, 64-byte aligned). The canonical tiers
    /// need nothing.
    #[inline(always)]
    unsafe fn prepare(_nrows: usize, _q: *const f32, _dp: usize, _dvp: usize, _scratch: *mut u8) {}

    /// Step 3 of the canonical algorithm for rows `r < nrows` and keys `j < nb` (dots
    /// in, `p` out): bit `r` of `vis[j]` is set when key `j` is visible to row `r`.
    /// Updates `m` and `l`, writes `alpha[r]` (1 for a row the block does not change)
    /// and `pm[j]` (bit `r` set when `p_rj != 0`). `bias`: null, or `BK x TILE_ROWS`
    /// log2-domain terms laid out like `s`, added to the logits (ALiBi, bias).
    #[allow(clippy::too_many_arguments)]
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
    );

    /// For the run of rows `r0 .. r0 + nrows`: `O_r = alpha_r * O_r`, then `O_r += p_rj
    /// v_j` (fused, in order of `j < nb`, only where bit `r` of `pm[j]` is set). `p`
    /// points at column `r0` of the score buffer, `alpha` at `alpha[r0]`, `o` at the
    /// run's first packed output row (rows `dp` apart: here `dp` is the padded V head
    /// dimension and `d` the V row length, which may differ from the query's).
    #[allow(clippy::too_many_arguments)]
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
        scratch: *mut u8,
    );

    /// `s[j][r] = exp2(logit(c, s[j][r]) + bias[j][r] - m[r]) * inv_l[r]` (no `bias`
    /// term when it is null) where bit `r` of `vis[j]` is set,
    /// `0` elsewhere, for `r < nrows`, `j < nb`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn probs(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: Logit,
        bias: *const f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    );

    /// A hint that `p` will be read soon (no effect on results).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
}

/// The canonical backend of tier `S`.
pub(crate) struct Canon<S>(PhantomData<S>);

impl<S: Tiles, T: Elem> Backend<T> for Canon<S> {
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
        // SAFETY: passed on.
        unsafe { S::scores(nrows, q, dp, d, kbase, koff, nb, s) }
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
        _scratch: *mut u8,
    ) {
        // SAFETY: passed on.
        unsafe { softmax::<S>(nrows, s, vis, nb, c, bias, m, l, alpha, pm, |_| {}) }
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
        // SAFETY: passed on.
        unsafe { S::pv(nrows, r0, p, alpha, pm, o, dp, d, vbase, voff, nb) }
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
        // SAFETY: passed on.
        unsafe { probs::<S>(nrows, s, vis, nb, c, bias, m, inv_l) }
    }

    #[inline(always)]
    unsafe fn prefetch(p: *const u8) {
        S::prefetch_l2(p)
    }
}

/// A tier's register tiling of the scores and of P.V (see [`tiles!`]).
pub(crate) trait Tiles: Tier {
    /// [`Backend::scores`] (with `s` at the run's first column).
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores<T: Elem>(
        nrows: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
    );
    /// [`Backend::pv`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv<T: Elem>(
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
    );
}

/// `tiles!(Tier; scores: (R, C), ...; pv: (R, N), ...)`: score tiles of `R` rows x `C`
/// keys (the first shape repeats over the rows, keys outer, so each K row is read once
/// for all of them; each later shape takes the rows left, at most once), and P.V tiles of
/// `R` rows x `N` chunks of 32 output elements (the first shape repeats, each later one
/// at most once). `R * C` accumulators of 16 lanes make a score tile; `2 * R * N`
/// vectors of 16 lanes a P.V tile (`N <= 4`).
macro_rules! tiles {
    ($tier:ty;
     scores: ($r0:literal, $c0:literal) $(, ($r:literal, $c:literal))*;
     pv: ($p0:literal, $n0:literal) $(, ($pr:literal, $pn:literal))*) => {
        // `r + 1 <= nrows` for a shape of one row reads as the others do.
        #[allow(clippy::int_plus_one)]
        impl Tiles for $tier {
            #[inline(always)]
            unsafe fn scores<T: Elem>(
                nrows: usize,
                q: *const f32,
                dp: usize,
                d: usize,
                kbase: *const T,
                koff: &[usize; BK],
                nb: usize,
                s: *mut f32,
            ) {
                // SAFETY (every call): rows r.. of q and columns of s exist; the key
                // offsets are valid up to BK.
                unsafe {
                    let r = nrows / $r0 * $r0;
                    let mut j = 0;
                    while r > 0 && j < nb {
                        let mut r1 = 0;
                        while r1 < r {
                            s_tile::<Self, T, $r0, $c0>(q.add(r1 * dp), dp, d, kbase, koff, j, s.add(r1));
                            r1 += $r0;
                        }
                        j += $c0;
                    }
                    #[allow(unused_mut)]
                    let mut r = r;
                    $(
                        if r + $r <= nrows {
                            let mut j = 0;
                            while j < nb {
                                s_tile::<Self, T, $r, $c>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                                j += $c;
                            }
                            r += $r;
                        }
                    )*
                    let _ = r;
                }
            }

            #[inline(always)]
            unsafe fn pv<T: Elem>(
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
            ) {
                let mut r = 0;
                // SAFETY (every call): rows r.. of every buffer exist.
                unsafe {
                    while r + $p0 <= nrows {
                        pv_rows::<Self, T, $p0, $n0>(
                            r0 + r, p.add(r), alpha.add(r), pm, o.add(r * dp), dp, d, vbase, voff, nb,
                        );
                        r += $p0;
                    }
                    $(
                        if r + $pr <= nrows {
                            pv_rows::<Self, T, $pr, $pn>(
                                r0 + r, p.add(r), alpha.add(r), pm, o.add(r * dp), dp, d, vbase, voff, nb,
                            );
                            r += $pr;
                        }
                    )*
                    let _ = r;
                }
            }
        }
    };
}

// The tilings (measured per tier; any tiling gives the same bits). avx512: 4 x 4 (and
// wider) score tiles reduced by one 16-tree transposition, 8 rows x 32 outputs for P.V;
// avx2 and neon: 4 accumulators (2 x 2) per score tile, 2 rows x 32 outputs for P.V.
tiles!(simd::Scalar; scores: (1, 1); pv: (1, 1));
#[cfg(target_arch = "x86_64")]
tiles!(simd::Avx2; scores: (4, 1), (2, 2), (1, 4); pv: (2, 1), (1, 1));
#[cfg(target_arch = "x86_64")]
tiles!(simd::Avx512; scores: (8, 2), (4, 4), (2, 8), (1, 16); pv: (8, 1), (4, 2), (2, 4), (1, 4));
#[cfg(target_arch = "aarch64")]
tiles!(simd::Neon; scores: (4, 1), (2, 2), (1, 4); pv: (2, 1), (1, 1));

/// Half `h` (0: the first fused multiply-add of each lane, 1: the second) of the
/// 32-element chunk at `p`, as 16 canonical lanes (the module doc of `attend`, step 1):
/// elements `16h + l` (f32, f16), or the odd (`h = 0`) / even element of pair `l`
/// (bf16).
///
/// # Safety
/// 32 elements readable at `p`; the tier's features are enabled.
#[inline(always)]
pub(crate) unsafe fn half<S: Tier, T: Elem>(p: *const T, h: usize) -> S::V16 {
    // SAFETY: passed on.
    unsafe {
        if T::KIND == Kind::BF16 {
            S::v16_load_pairs(p as *const bf16, h == 0)
        } else {
            S::v16_load(p.add(16 * h))
        }
    }
}

/// As [`half`] for a chunk whose first `k < 32` elements are valid (zeros past them;
/// reads only those).
///
/// # Safety
/// `k` elements readable at `p`; the tier's features are enabled.
#[inline(always)]
pub(crate) unsafe fn half_part<S: Tier, T: Elem>(p: *const T, h: usize, k: usize) -> S::V16 {
    // SAFETY: only elements below k are read.
    unsafe {
        if T::KIND == Kind::BF16 {
            S::v16_load_pairs_first(p as *const bf16, h == 0, k)
        } else {
            let n = k.saturating_sub(16 * h);
            if n >= 16 {
                S::v16_load(p.add(16 * h))
            } else {
                S::v16_load_first(p.wrapping_add(16 * h), n)
            }
        }
    }
}

/// Scores of `R` rows x `C` keys from key `j0` into the key-major score buffer (row `r`
/// of the tile at column `r` of `s`).
#[inline(always)]
unsafe fn s_tile<S: Tier, T: Elem, const R: usize, const C: usize>(
    q: *const f32,
    dp: usize,
    d: usize,
    kbase: *const T,
    koff: &[usize; BK],
    j0: usize,
    s: *mut f32,
) {
    // SAFETY (block): packed query rows hold dp floats; K rows hold d elements; the
    // score buffer holds BK x TILE_ROWS floats.
    unsafe {
        let kp: [*const T; C] = core::array::from_fn(|c| kbase.add(koff[j0 + c]));
        let mut acc = [[S::v16_zero(); R]; C];
        let full = d / 32;
        for ch in 0..full {
            for h in 0..2 {
                let qv: [S::V16; R] =
                    core::array::from_fn(|r| S::v16_load(q.add(r * dp + 32 * ch + 16 * h)));
                for c in 0..C {
                    let kv = half::<S, T>(kp[c].add(32 * ch), h);
                    for r in 0..R {
                        acc[c][r] = S::v16_fma(qv[r], kv, acc[c][r]);
                    }
                }
            }
        }
        let rest = d - 32 * full;
        if rest > 0 {
            for h in 0..2 {
                let qv: [S::V16; R] =
                    core::array::from_fn(|r| S::v16_load(q.add(r * dp + 32 * full + 16 * h)));
                for c in 0..C {
                    let kv = half_part::<S, T>(kp[c].add(32 * full), h, rest);
                    for r in 0..R {
                        acc[c][r] = S::v16_fma(qv[r], kv, acc[c][r]);
                    }
                }
            }
        }
        S::v16_store_trees::<R, C>(&acc, s.add(j0 * TILE_ROWS), TILE_ROWS);
    }
}

/// `O = alpha * O`, then the fused `p v` sums, for `R` rows and `NCH` chunks of 32
/// output elements from chunk `ch0` (the last one holding `rest` elements when `PART`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_tile<S: Tier, T: Elem, const R: usize, const NCH: usize, const PART: bool>(
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
    // SAFETY (block): R rows of the tile's buffers; V rows hold d elements.
    unsafe {
        let mut acc = [[S::v16_zero(); 8]; R];
        for r in 0..R {
            let a = S::v16_splat(*alpha.add(r));
            for v in 0..2 * NCH {
                let x = S::v16_load(o.add(r * dp + 32 * ch0 + 16 * v));
                acc[r][v] = S::v16_zip(a, x, S::mul);
            }
        }
        for j in 0..nb {
            let vp = vbase.add(voff[j] + 32 * ch0);
            let mut vv = [S::v16_zero(); 8];
            for v in 0..2 * NCH {
                vv[v] = if PART && v / 2 == NCH - 1 {
                    half_part::<S, T>(vp.add(32 * (v / 2)), v % 2, rest)
                } else {
                    half::<S, T>(vp.add(32 * (v / 2)), v % 2)
                };
            }
            let pr = p.add(j * TILE_ROWS);
            if masked {
                let bits = pm[j] >> r0;
                for r in 0..R {
                    let on = (bits >> r) & 1 != 0;
                    let pb = S::v16_splat(*pr.add(r));
                    for v in 0..2 * NCH {
                        acc[r][v] = S::v16_fma_if(on, pb, vv[v], acc[r][v]);
                    }
                }
            } else {
                for r in 0..R {
                    let pb = S::v16_splat(*pr.add(r));
                    for v in 0..2 * NCH {
                        acc[r][v] = S::v16_fma(pb, vv[v], acc[r][v]);
                    }
                }
            }
        }
        for r in 0..R {
            for v in 0..2 * NCH {
                S::v16_store(o.add(r * dp + 32 * ch0 + 16 * v), acc[r][v]);
            }
        }
    }
}

/// Every output chunk of `R` rows, `NCH` chunks at a time, then one at a time, then the
/// partial last chunk.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_rows<S: Tier, T: Elem, const R: usize, const NCH: usize>(
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
    // SAFETY (every call): as the caller's.
    unsafe {
        while ch + NCH <= full {
            pv_tile::<S, T, R, NCH, false>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, 0);
            ch += NCH;
        }
        while ch < full {
            pv_tile::<S, T, R, 1, false>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, 0);
            ch += 1;
        }
        if rest > 0 {
            pv_tile::<S, T, R, 1, true>(r0, p, alpha, pm, masked, o, dp, vbase, voff, nb, ch, rest);
        }
    }
}

/// `((p_i + p_(16+i)) + p_(32+i)) + p_(48+i)` over the keys `< nb` of `LANES` rows (0
/// when none).
#[inline(always)]
unsafe fn lane_sum<S: Tier>(s: *const f32, i: usize, nb: usize) -> S::F {
    let mut acc = S::splat(0.0);
    let mut j = i;
    while j < nb {
        // SAFETY: key j's column of LANES rows is in the score buffer.
        let pj = unsafe { S::load(s.add(j * TILE_ROWS)) };
        acc = if j == i { pj } else { S::add(acc, pj) };
        j += 16;
    }
    acc
}

/// The bits of the first `n` rows of a group (`n` may exceed 32).
#[inline(always)]
fn low_bits(n: usize) -> u32 {
    if n >= 32 {
        u32::MAX
    } else {
        (1u32 << n) - 1
    }
}

/// Step 3 of the canonical algorithm ([`Backend::softmax`]), `LANES` rows at a time.
/// `round` runs on each group of rows once its probabilities and `pm` bits are in place
/// and before they are summed (the AVX512-BF16 path rounds them there; its tier holds
/// the tile's 16 rows in one group).
///
/// # Safety
/// `s` holds `BK x TILE_ROWS` floats; the tier's features are enabled.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn softmax<S: Tier>(
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
    mut round: impl FnMut(&[u16; BK]),
) {
    let ninf = S::splat(f32::NEG_INFINITY);
    let zero = S::splat(0.0);
    pm.iter_mut().for_each(|b| *b = 0);
    let mut g = 0;
    // SAFETY (block): rows g .. g + LANES <= TILE_ROWS of every array and buffer.
    unsafe {
        while g < nrows {
            let sg = s.add(g);
            let rows = S::mask_from_bits(low_bits(nrows - g));
            let mut mx = ninf;
            let mut nan = S::mask_from_bits(0);
            for j in 0..nb {
                let k = S::mask_from_bits((vis[j] >> g) as u32);
                let mut x = logitv::<S>(c, S::load(sg.add(j * TILE_ROWS)));
                if !bias.is_null() {
                    x = S::add(x, S::load(bias.add(j * TILE_ROWS + g)));
                }
                let x = S::select(k, x, ninf);
                S::store(sg.add(j * TILE_ROWS), x);
                let xn = S::is_nan(x);
                nan = S::or_m(nan, xn);
                mx = S::select(xn, mx, S::max(x, mx));
            }
            let mbv = S::select(nan, S::splat(f32::NAN), mx);
            let mo = S::load(m.as_ptr().add(g));
            // m' = max(m, mb), NaN when either is (the stored m's NaN first).
            let mn = S::select(S::is_nan(mbv), mbv, S::max(mbv, mo));
            let mn = S::select(S::is_nan(mo), mo, mn);
            let act = S::and_m(S::ne(mn, ninf), rows);
            let al = S::select(act, exp2v::<S>(S::sub(mo, mn)), S::splat(1.0));
            S::store(alpha.as_mut_ptr().add(g), al);
            S::store(m.as_mut_ptr().add(g), S::select(act, mn, mo));
            for j in 0..nb {
                let x = S::load(sg.add(j * TILE_ROWS));
                let p = S::select(act, exp2v::<S>(S::sub(x, mn)), zero);
                S::store(sg.add(j * TILE_ROWS), p);
                let nz = S::and_m(S::ne(p, zero), act);
                pm[j] |= (S::mask_bits(nz) << g) as u16;
            }
            round(pm);
            let mut s8 = [zero; 8];
            for (i, x) in s8.iter_mut().enumerate() {
                *x = S::add(lane_sum::<S>(sg, i, nb), lane_sum::<S>(sg, i + 8, nb));
            }
            let mut s4 = [zero; 4];
            for (i, x) in s4.iter_mut().enumerate() {
                *x = S::add(s8[i], s8[i + 4]);
            }
            let s2 = [S::add(s4[0], s4[2]), S::add(s4[1], s4[3])];
            let psum = S::add(s2[0], s2[1]);
            let lo = S::load(l.as_ptr().add(g));
            let lv = S::add(S::mul(al, lo), psum);
            S::store(l.as_mut_ptr().add(g), S::select(act, lv, lo));
            g += S::LANES;
        }
    }
}

/// [`Backend::probs`], `LANES` rows at a time.
///
/// # Safety
/// `s` holds `BK x TILE_ROWS` floats; the tier's features are enabled.
#[inline(always)]
pub(crate) unsafe fn probs<S: Tier>(
    nrows: usize,
    s: *mut f32,
    vis: &[u16; BK],
    nb: usize,
    c: Logit,
    bias: *const f32,
    m: &[f32; TILE_ROWS],
    inv_l: &[f32; TILE_ROWS],
) {
    let mut g = 0;
    // SAFETY (block): rows g .. g + LANES <= TILE_ROWS of every array and buffer.
    unsafe {
        while g < nrows {
            let (mv, iv) = (S::load(m.as_ptr().add(g)), S::load(inv_l.as_ptr().add(g)));
            for j in 0..nb {
                let k = S::mask_from_bits((vis[j] >> g) as u32);
                let at = s.add(j * TILE_ROWS + g);
                let mut x = logitv::<S>(c, S::load(at));
                if !bias.is_null() {
                    x = S::add(x, S::load(bias.add(j * TILE_ROWS + g)));
                }
                let p = S::mul(exp2v::<S>(S::sub(x, mv)), iv);
                S::store(at, S::select(k, p, S::splat(0.0)));
            }
            g += S::LANES;
        }
    }
}
