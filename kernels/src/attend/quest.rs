//! Quest's query-aware block selection: per-block key summaries (elementwise minimum
//! and maximum) and the upper bound of `q . k` over a block, written once over
//! [`Tier`].

use super::numerics::canon_nan;
use crate::simd::{load_elem, Elem, Tier};

/// Arguments of the key-block summary: for key blocks `b0 .. b1` of `block` keys of K
/// `[n_k, H_kv, d]` and every KV head `g`, the elementwise minimum and maximum over the
/// block's keys (`b * block .. min((b + 1) * block, n_k)`, never empty), written as f32
/// to `kmin/kmax[(b * h_kv + g) * d + e]` (layout `[n_blocks, H_kv, d]`, like K). A
/// NaN element makes both NaN. Exact, so identical on every tier.
#[derive(Clone, Copy, Debug)]
pub struct SummaryArgs<T> {
    pub k: *const T,
    pub n_k: usize,
    pub h_kv: usize,
    pub d: usize,
    pub k_tok: usize,
    pub k_head: usize,
    pub block: usize,
    pub b0: usize,
    pub b1: usize,
    pub kmin: *mut f32,
    pub kmax: *mut f32,
}

/// `unsafe fn(&SummaryArgs<T>)`: see [`SummaryArgs`].
pub type SummaryFn<T> = unsafe fn(args: &SummaryArgs<T>);

/// Arguments of the Quest bound: for every query row `(i, h)` and key block `b <
/// n_blocks` of its KV head `g = h / (H_q / H_kv)`, an upper bound of `q . k` over the
/// block's keys, written to `out[(i * h_q + h) * out_stride + b]`.
///
/// Canonical: `t_e = max(q_e * mn_e, q_e * mx_e)` (products rounded; `max(a, b) = a > b ?
/// a : b`), summed in 16 lanes (lane `e % 16`, in order, from +0) and by the fixed tree,
/// giving `s`; likewise `a` from `|t_e|`; the bound is `s + (cm * a + ab)` (each
/// operation rounded) with `cm = (ceil(d / 16) + 6) * 2^-23` ([`bound_margin`]) and
/// `ab = (d + 16) * 2^-148` ([`bound_absolute`]: products below the normal range),
/// which cover every rounding error: the bound is never below the exact maximum of
/// `q . k` over the block. A NaN bound is the canonical quiet NaN.
#[derive(Clone, Copy, Debug)]
pub struct BoundArgs<T> {
    pub q: *const T,
    pub n_q: usize,
    pub h_q: usize,
    pub d: usize,
    pub q_tok: usize,
    pub q_head: usize,
    /// `[n_blocks, H_kv, d]` as written by the summary.
    pub kmin: *const f32,
    pub kmax: *const f32,
    pub n_blocks: usize,
    pub h_kv: usize,
    pub out: *mut f32,
    pub out_stride: usize,
    /// `pad16(d)` floats of scratch, 64-byte aligned.
    pub workspace: *mut f32,
}

/// `unsafe fn(&BoundArgs<T>)`: see [`BoundArgs`].
pub type BoundFn<T> = unsafe fn(args: &BoundArgs<T>);

/// The margin factor of the bound for head dimension `d`.
#[inline(always)]
pub fn bound_margin(d: usize) -> f32 {
    (d.div_ceil(16) + 6) as f32 * f32::from_bits(0x3400_0000) // 2^-23
}

/// The absolute margin of the bound for head dimension `d`: `(d + 16) * 2^-148`. A
/// product rounded below the normal range may lose up to 2^-150, which the relative
/// margin cannot cover (sums of such values are exact); this is four times the need
/// for the `d` products, so the rounding of `d + 16` to f32 and of the margin's own
/// sum never matter.
#[inline(always)]
pub fn bound_absolute(d: usize) -> f32 {
    d.saturating_add(16) as f32 * f32::from_bits(2) // 2^-148
}

/// Min/max of `n >= 1` rows (`p + j * stride`) of `d` elements, `LANES` elements at a
/// time (a NaN makes both NaN).
///
/// # Safety
/// The rows and `d` outputs at `mn`, `mx` are valid; the tier's features are enabled.
#[inline(always)]
unsafe fn minmax<S: Tier, T: Elem>(
    p: *const T,
    stride: usize,
    n: usize,
    d: usize,
    mn: *mut f32,
    mx: *mut f32,
) {
    let w = S::LANES;
    let mut e = 0;
    // SAFETY (block): every access is below d in a valid row.
    unsafe {
        while e < d {
            let k = core::cmp::min(w, d - e);
            let mut lo = S::splat(f32::INFINITY);
            let mut hi = S::splat(f32::NEG_INFINITY);
            let mut nan = S::mask_from_bits(0);
            for j in 0..n {
                let at = p.add(j * stride + e);
                let x = if k == w {
                    load_elem::<S, T>(at)
                } else {
                    S::load_part(at, k)
                };
                nan = S::or_m(nan, S::is_nan(x));
                lo = S::min(x, lo);
                hi = S::max(x, hi);
            }
            let qn = S::splat(f32::NAN);
            let (lo, hi) = (S::select(nan, qn, lo), S::select(nan, qn, hi));
            if k == w {
                S::store(mn.add(e), lo);
                S::store(mx.add(e), hi);
            } else {
                S::store_part(mn.add(e), lo, k);
                S::store_part(mx.add(e), hi, k);
            }
            e += w;
        }
    }
}

/// Bounds of one packed query row `q` (`pad16(d)` floats, zero past `d`) against
/// `n_blocks` summaries `stride` floats apart, to `out[b]`.
///
/// # Safety
/// As described; the tier's features are enabled.
#[inline(always)]
unsafe fn bound_row<S: Tier>(
    q: *const f32,
    d: usize,
    mn: *const f32,
    mx: *const f32,
    stride: usize,
    n_blocks: usize,
    out: *mut f32,
) {
    let (cm, ab) = (bound_margin(d), bound_absolute(d));
    // SAFETY (block): q holds pad16(d) floats; summaries d floats each; n_blocks
    // outputs.
    unsafe {
        for b in 0..n_blocks {
            let (mut s, mut a) = (S::v16_zero(), S::v16_zero());
            let (lo_row, hi_row) = (mn.add(b * stride), mx.add(b * stride));
            let mut e = 0;
            while e < d {
                let (lo, hi) = if e + 16 <= d {
                    (S::v16_load(lo_row.add(e)), S::v16_load(hi_row.add(e)))
                } else {
                    (
                        S::v16_load_first(lo_row.add(e), d - e),
                        S::v16_load_first(hi_row.add(e), d - e),
                    )
                };
                let qv = S::v16_load(q.add(e));
                let t = S::v16_zip(
                    S::v16_zip(qv, lo, S::mul),
                    S::v16_zip(qv, hi, S::mul),
                    S::max,
                );
                s = S::v16_zip(s, t, S::add);
                a = S::v16_zip(a, S::v16_map(t, S::abs), S::add);
                e += 16;
            }
            *out.add(b) = S::v16_reduce(s) + (cm * S::v16_reduce(a) + ab);
        }
    }
}

/// The summary of every tier.
///
/// # Safety
/// See [`SummaryArgs`].
#[inline(always)]
pub(crate) unsafe fn summary<S: Tier, T: Elem>(a: &SummaryArgs<T>) {
    for b in a.b0..a.b1 {
        let k0 = b * a.block;
        let n = core::cmp::min(a.block, a.n_k - k0);
        for g in 0..a.h_kv {
            // SAFETY: rows k0 .. k0 + n of head g exist; output (b, g) holds d floats.
            unsafe {
                minmax::<S, T>(
                    a.k.add(k0 * a.k_tok + g * a.k_head),
                    a.k_tok,
                    n,
                    a.d,
                    a.kmin.add((b * a.h_kv + g) * a.d),
                    a.kmax.add((b * a.h_kv + g) * a.d),
                );
            }
        }
    }
}

/// The bound of every tier.
///
/// # Safety
/// See [`BoundArgs`].
#[inline(always)]
pub(crate) unsafe fn bound<S: Tier, T: Elem>(a: &BoundArgs<T>) {
    let grp = a.h_q / a.h_kv;
    let d16 = (a.d + 15) & !15;
    for i in 0..a.n_q {
        for h in 0..a.h_q {
            let g = h / grp;
            // SAFETY: row (i, h) holds d elements; the workspace d16 floats; the
            // summaries n_blocks * h_kv * d floats; the output row n_blocks floats.
            unsafe {
                let src = a.q.add(i * a.q_tok + h * a.q_head);
                for e in 0..d16 {
                    *a.workspace.add(e) = if e < a.d { (*src.add(e)).to_f32() } else { 0.0 };
                }
                let out = a.out.add((i * a.h_q + h) * a.out_stride);
                bound_row::<S>(
                    a.workspace,
                    a.d,
                    a.kmin.add(g * a.d),
                    a.kmax.add(g * a.d),
                    a.h_kv * a.d,
                    a.n_blocks,
                    out,
                );
                // A NaN bound would carry an operand's payload: canonical.
                for b in 0..a.n_blocks {
                    *out.add(b) = canon_nan(*out.add(b));
                }
            }
        }
    }
}
