//! Merging partial attention results (disjoint key chunks of the same rows) by their
//! log-sum-exps, in one canonical order.

use super::numerics::{canon_nan, exp_f64, ln_f64, store_out};
use super::OutType;
use crate::simd::Tier;

/// Arguments of the merge kernel: `n_parts` partial results of the same rows over
/// disjoint key chunks, each normalized (`O_i`) with its log-sum-exp (`lse_i`).
///
/// Canonical: `M = max_i lse_i`. A NaN `lse_i` makes the row NaN; `M = -inf` gives
/// zeros and `-inf`. Else `w_i = exp(lse_i - M)` and `W = sum_i w_i` in f64 (in part
/// order), `omega_i = (w_i / W) as f32`, `out_e = fma(omega_i, O_ie, out_e)` over the parts
/// in order with `omega_i != 0`, from +0; `lse = (M + ln W) as f32`.
#[derive(Clone, Copy, Debug)]
pub struct MergeArgs {
    pub n_parts: usize,
    pub n_rows: usize,
    pub d: usize,
    /// Element `e` of row `r` of part `i` at `o[i * part_stride + r * row_stride + e]`.
    pub o: *const f32,
    pub part_stride: usize,
    pub row_stride: usize,
    /// `lse[i * lse_part_stride + r]`.
    pub lse: *const f32,
    pub lse_part_stride: usize,
    pub out: *mut u8,
    pub out_type: OutType,
    pub out_row_stride: usize,
    /// Null, or `n_rows` floats.
    pub out_lse: *mut f32,
    /// `d` floats of scratch (any alignment).
    pub workspace: *mut f32,
}

/// `unsafe fn(&MergeArgs)`: see [`MergeArgs`].
pub type MergeFn = unsafe fn(args: &MergeArgs);

/// `y[e] = fma(a, x[e], y[e])` for `e < n`, `LANES` at a time, then a partial vector.
///
/// # Safety
/// `n` floats at `x` and `y`; the tier's features are enabled.
#[inline(always)]
unsafe fn axpy<S: Tier>(n: usize, a: f32, x: *const f32, y: *mut f32) {
    let av = S::splat(a);
    let w = S::LANES;
    let mut e = 0;
    // SAFETY: every access is below n.
    unsafe {
        while e + w <= n {
            let r = S::fma(av, S::load(x.add(e)), S::load(y.add(e)));
            S::store(y.add(e), r);
            e += w;
        }
        if e < n {
            let k = n - e;
            let r = S::fma(av, S::load_part(x.add(e), k), S::load_part(y.add(e), k));
            S::store_part(y.add(e), r, k);
        }
    }
}

/// The merge driver of every tier.
///
/// # Safety
/// See [`MergeArgs`]: every described element is valid; outputs disjoint from inputs.
#[inline(always)]
pub(crate) unsafe fn merge<S: Tier>(a: &MergeArgs) {
    let esz = a.out_type.size();
    for r in 0..a.n_rows {
        // SAFETY (block): the contract makes every described element valid.
        unsafe {
            let mut mx = f32::NEG_INFINITY;
            let mut nan = false;
            for i in 0..a.n_parts {
                let x = *a.lse.add(i * a.lse_part_stride + r);
                nan |= x.is_nan();
                if x > mx {
                    mx = x;
                }
            }
            let acc = a.workspace;
            core::ptr::write_bytes(acc, 0, a.d);
            let lse = if nan {
                for e in 0..a.d {
                    *acc.add(e) = f32::NAN;
                }
                f32::NAN
            } else if mx == f32::NEG_INFINITY {
                f32::NEG_INFINITY
            } else {
                let mut w_sum = 0f64;
                for i in 0..a.n_parts {
                    w_sum += exp_f64(*a.lse.add(i * a.lse_part_stride + r) as f64 - mx as f64);
                }
                for i in 0..a.n_parts {
                    let w = exp_f64(*a.lse.add(i * a.lse_part_stride + r) as f64 - mx as f64);
                    let omega = (w / w_sum) as f32;
                    if omega != 0.0 {
                        axpy::<S>(
                            a.d,
                            omega,
                            a.o.add(i * a.part_stride + r * a.row_stride),
                            acc,
                        );
                    }
                }
                (mx as f64 + ln_f64(w_sum)) as f32
            };
            let dst = a.out.add(r * a.out_row_stride * esz);
            for e in 0..a.d {
                store_out(dst, a.out_type, e, *acc.add(e));
            }
            if !a.out_lse.is_null() {
                *a.out_lse.add(r) = canon_nan(lse);
            }
        }
    }
}
