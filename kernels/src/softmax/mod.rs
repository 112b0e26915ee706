//! Row softmax: `y_j = exp(scale * x_j + b_j - max) / sum_i exp(scale * x_i + b_i - max)`
//! over each row of a strided matrix, with the numerics of attention: a row's outputs
//! are, bit for bit, the attention probabilities (the attention mass) that one query
//! would give keys whose scores are the row.
//!
//! # Tensors
//! `rows` rows of `n` elements of `T` (f32, f16 or bf16, widened exactly), row `r` at
//! `x + r * x_stride`; the optional bias is f32, row `r` at `bias + r * bias_stride`
//! (`bias_stride = 0`: one vector for every row); the output is f32, f16 or bf16
//! (`out_type`), row `r` at element `r * out_stride` of `out`.
//!
//! # Canonical arithmetic (identical on every tier, bit for bit)
//! `c = (scale as f64 * log2(e)) as f32` (attention's `c`). For one row:
//! 1. the logit of element `j` is `t_j = x_j * c` without a bias and
//!    `t_j = fma(x_j, c, b_j * L)` with one (`L = log2(e)` rounded to f32);
//! 2. the row is cut into blocks of [`BK`] = 64 elements (attention's key blocks), and
//!    each block updates `(m, l)` from `(-inf, 0)` exactly as attention's online softmax
//!    does: `m' = max(m, max_block t)`; when `m' = -inf` the block changes nothing;
//!    otherwise `alpha = exp2(m - m')`, `p_j = exp2(t_j - m')`, the block sum is the
//!    canonical 16-lane tree ([`crate::numerics::reduce16`]) of the lanes
//!    `((p_i + p_(16+i)) + p_(32+i)) + p_(48+i)` (p = 0 past the row's end), and
//!    `l = alpha * l + psum` (two roundings);
//! 3. `y_j = exp2(t_j - m) * (1 / l)` (the reciprocal rounded once), rounded to the
//!    output type. `exp2` is attention's canonical exp2 (`attend::numerics`).
//!
//! Special rows: a NaN logit anywhere in a row (a NaN input or bias, `inf - inf`,
//! `inf * 0`) or a `+inf` logit (`exp(inf - inf)`) makes every output of the row the
//! output type's canonical quiet NaN (f32 `0x7fc00000`, f16 `0x7e00`, bf16 `0x7fc0`); a
//! `-inf` logit is a masked element (output `+0`); a row whose logits are all `-inf`
//! (attention's row that sees no key) gives `+0` everywhere.
//!
//! # Contract (every variant)
//! The caller has validated shapes and strides (`x_stride >= n`, `out_stride >= n`,
//! `bias_stride >= n` unless 0) and pointers (valid for the rows described when
//! `rows > 0` and `n > 0`). `out` may be exactly `x` (same element type and stride: in
//! place); any other overlap between the output and an input is forbidden. Nothing
//! outside the described elements is read or written; no allocation.

use crate::attend::{exp2v, scale_log2e, OutType};
use crate::numerics::{reduce16, CANONICAL_NAN};
use crate::simd::{self, Elem, Kind, Tier};
use crate::KernelInfo;
use half::{bf16, f16};

/// Elements per online-softmax block (attention's [`crate::attend::BK`]).
pub const BK: usize = crate::attend::BK;

/// `log2(e)` rounded to f32: the factor of the bias.
pub const LOG2E: f32 = core::f32::consts::LOG2_E;

/// One softmax call over `rows` rows (see the module doc).
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxArgs<T> {
    pub x: *const T,
    pub rows: usize,
    pub n: usize,
    /// Elements between rows of `x`.
    pub x_stride: usize,
    pub scale: f32,
    /// NULL: no bias.
    pub bias: *const f32,
    /// Floats between bias rows; 0: one bias vector for every row.
    pub bias_stride: usize,
    pub out: *mut u8,
    pub out_type: OutType,
    /// Elements (of `out_type`) between output rows.
    pub out_stride: usize,
}

/// `unsafe fn(&SoftmaxArgs<T>)`: see the module contract.
pub type SoftmaxFn<T> = unsafe fn(args: &SoftmaxArgs<T>);

/// The logits of the `LANES` elements at `x` (and `b`), or of the first `k < LANES`
/// with `-inf` past them when `k` is given.
///
/// # Safety
/// The elements are readable; the tier's features are enabled.
#[inline(always)]
unsafe fn logits<S: Tier, T: Elem>(
    x: *const T,
    b: *const f32,
    c: S::F,
    part: Option<usize>,
) -> S::F {
    // SAFETY: passed on from the caller.
    unsafe {
        let (v, bv) = match part {
            None => (
                simd::load_elem::<S, T>(x),
                (!b.is_null()).then(|| S::load(b)),
            ),
            Some(k) => (
                S::load_part(x, k),
                (!b.is_null()).then(|| S::load_part(b, k)),
            ),
        };
        let t = match bv {
            None => S::mul(v, c),
            Some(bv) => S::fma(v, c, S::mul(bv, S::splat(LOG2E))),
        };
        match part {
            None => t,
            Some(k) => S::select(
                S::mask_from_bits((1u32 << k) - 1),
                t,
                S::splat(f32::NEG_INFINITY),
            ),
        }
    }
}

/// Steps 1-2 of one row: its final `(m, l)` and the start of the blocks whose
/// probabilities `exp2(t - m)` were stored at `keep` (unless it is NULL; `n` then), or
/// `None` when a logit is NaN. A block's `p_j = exp2(t_j - m')` equals step 3's
/// `exp2(t_j - m)` when its `m'` is the row's final `m`: from the block where the
/// maximum last grew on, the output pass only scales them.
///
/// # Safety
/// `n` elements at `x` (and `b`), and at `keep` (writable, disjoint from them) unless it
/// is NULL; the tier's features are enabled.
#[inline(always)]
unsafe fn row_state<S: Tier, T: Elem>(
    x: *const T,
    b: *const f32,
    n: usize,
    c: S::F,
    keep: *mut f32,
) -> Option<(f32, f32, usize)> {
    let w = S::LANES;
    let ninf = S::splat(f32::NEG_INFINITY);
    let zero = S::splat(0.0);
    let (mut m, mut l) = (f32::NEG_INFINITY, 0f32);
    let mut kept = if keep.is_null() { n } else { 0 };
    let mut buf = [0f32; BK];
    let mut i = 0;
    while i < n {
        let nb = (n - i).min(BK);
        let nv = nb.div_ceil(w);
        if nb < BK {
            buf.fill(f32::NEG_INFINITY);
        }
        // Logits of the block into buf (-inf past the row's end, where p = +0 adds
        // nothing), their maximum and any NaN.
        let mut mx = ninf;
        let mut nan = S::mask_from_bits(0);
        for v in 0..nv {
            let o = v * w;
            let part = (o + w > nb).then_some(nb - o);
            let bo = if b.is_null() {
                b
            } else {
                b.wrapping_add(i + o)
            };
            // SAFETY: elements i + o .. i + min(o + w, nb) < n of the row; buf holds BK.
            let t = unsafe { logits::<S, T>(x.add(i + o), bo, c, part) };
            unsafe { S::store(buf.as_mut_ptr().add(o), t) };
            nan = S::or_m(nan, S::is_nan(t));
            // maxps semantics: a NaN t leaves mx (NaN rows are reported below).
            mx = S::max(t, mx);
        }
        if S::mask_bits(nan) != 0 {
            return None;
        }
        let mut lanes = [f32::NEG_INFINITY; 16];
        // SAFETY: LANES <= 16 floats.
        unsafe { S::store(lanes.as_mut_ptr(), mx) };
        let mb = lanes[..w].iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
        let mn = mb.max(m);
        if mn != f32::NEG_INFINITY {
            let mv = S::splat(mn);
            // The 16 canonical lanes: vector s of 16 / LANES holds lanes s * LANES ..
            let mut acc = [zero; 16];
            let per = 16 / w;
            for v in 0..BK / w {
                // SAFETY: buf holds the block's logits (-inf past its end).
                let t = unsafe { S::load(buf.as_ptr().add(v * w)) };
                let p = exp2v::<S>(S::sub(t, mv));
                acc[v % per] = S::add(acc[v % per], p);
                let o = i + v * w;
                if !keep.is_null() && o < n {
                    // SAFETY: elements o .. min(o + LANES, n) of keep.
                    unsafe {
                        if o + w <= n {
                            S::store(keep.add(o), p);
                        } else {
                            S::store_part(keep.add(o), p, n - o);
                        }
                    }
                }
            }
            for (s, a) in acc.iter().enumerate().take(per) {
                // SAFETY: lanes s * LANES .. (s + 1) * LANES <= 16.
                unsafe { S::store(lanes.as_mut_ptr().add(s * w), *a) };
            }
            let psum = reduce16(&lanes);
            // l = alpha * l + psum with alpha = exp2(m - mn) (attention's two roundings);
            // alpha = exp2(0) = 1 exactly when the maximum did not grow.
            l = if m == mn {
                l + psum
            } else {
                // SAFETY: lanes holds 16 >= LANES floats.
                unsafe { S::store(lanes.as_mut_ptr(), exp2v::<S>(S::splat(m - mn))) };
                lanes[0] * l + psum
            };
            if m != mn && !keep.is_null() {
                kept = i;
            }
            m = mn;
        }
        i += nb;
    }
    Some((m, l, kept))
}

/// Step 3 of one row (or its NaN / empty result), stored as `O`.
///
/// # Safety
/// `n` elements at `x` (and `b`) readable and at `y` writable (equal to `x` only in
/// place); the tier's features are enabled.
#[inline(always)]
unsafe fn row<S: Tier, T: Elem, O: Elem>(x: *const T, b: *const f32, n: usize, c: S::F, y: *mut O) {
    let w = S::LANES;
    // SAFETY (function): offsets below n; every vector is loaded before the store that
    // may alias it (in place).
    // f32 outputs (not in place) keep the last blocks' probabilities during step 2.
    let keep = if O::KIND == Kind::F32 && y as *const u8 != x as *const u8 {
        y as *mut f32
    } else {
        core::ptr::null_mut()
    };
    let state = unsafe { row_state::<S, T>(x, b, n, c, keep) };
    let fill = |v: f32| {
        let v = S::splat(v);
        let mut i = 0;
        while i + w <= n {
            unsafe { simd::store_elem::<S, O>(y.add(i), v) };
            i += w;
        }
        if i < n {
            unsafe { S::store_part(y.add(i), v, n - i) };
        }
    };
    match state {
        Some((m, l, kept)) if !l.is_nan() => {
            if m == f32::NEG_INFINITY {
                return fill(0.0);
            }
            let (mv, iv) = (S::splat(m), S::splat(1.0 / l));
            let bo = |i: usize| if b.is_null() { b } else { b.wrapping_add(i) };
            // Before `kept` (a multiple of LANES, or n): exp2(t - m) again.
            let mut i = 0;
            while i + w <= kept {
                let t = unsafe { logits::<S, T>(x.add(i), bo(i), c, None) };
                let p = S::mul(exp2v::<S>(S::sub(t, mv)), iv);
                unsafe { simd::store_elem::<S, O>(y.add(i), p) };
                i += w;
            }
            if i < kept {
                let k = kept - i;
                let t = unsafe { logits::<S, T>(x.add(i), bo(i), c, Some(k)) };
                let p = S::mul(exp2v::<S>(S::sub(t, mv)), iv);
                unsafe { S::store_part(y.add(i), p, k) };
                i = kept;
            }
            // From `kept` on (f32 outputs): the probabilities kept at y, scaled.
            let kp = keep as *const f32;
            while i + w <= n {
                unsafe { S::store(keep.add(i), S::mul(S::load(kp.add(i)), iv)) };
                i += w;
            }
            if i < n {
                let k = n - i;
                unsafe { S::store_part(keep.add(i), S::mul(S::load_part(kp.add(i), k), iv), k) };
            }
        }
        // A NaN logit, or +inf (then l is NaN).
        _ => fill(f32::from_bits(CANONICAL_NAN)),
    }
}

/// Every row of a call, stored as `O`.
///
/// # Safety
/// The module contract; the tier's features are enabled.
#[inline(always)]
unsafe fn rows_as<S: Tier, T: Elem, O: Elem>(a: &SoftmaxArgs<T>) {
    if a.n == 0 {
        return;
    }
    let c = S::splat(scale_log2e(a.scale));
    for r in 0..a.rows {
        // SAFETY: row r of each tensor is in range by the contract.
        unsafe {
            let b = if a.bias.is_null() {
                a.bias
            } else {
                a.bias.add(r * a.bias_stride)
            };
            let y = (a.out as *mut O).add(r * a.out_stride);
            row::<S, T, O>(a.x.add(r * a.x_stride), b, a.n, c, y);
        }
    }
}

/// The generic kernel: every row, stored as the output type.
///
/// # Safety
/// The module contract; the tier's features are enabled.
#[inline(always)]
unsafe fn softmax<S: Tier, T: Elem>(a: &SoftmaxArgs<T>) {
    // SAFETY: passed on from the caller.
    unsafe {
        match a.out_type {
            OutType::F32 => rows_as::<S, T, f32>(a),
            OutType::F16 => rows_as::<S, T, f16>(a),
            OutType::BF16 => rows_as::<S, T, bf16>(a),
        }
    }
}

/// The entry points of one tier, one per input element type.
macro_rules! entries {
    ($isa:ident, $tier:ident, [$($t:ident: $name:ident),+]) => {
        #[doc = concat!("The ", stringify!($isa), " softmax entry points.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            $(
                simd::tier_fn!(
                    $isa,
                    /// # Safety
                    /// The CPU supports the tier; see the module contract.
                    pub unsafe fn $name(a: &SoftmaxArgs<$t>) {
                        // SAFETY: passed on from the caller.
                        unsafe { softmax::<simd::$tier, $t>(a) }
                    }
                );
            )+
        }
    };
}

entries!(scalar, Scalar, [f32: f32_online_b64, f16: f16_online_b64, bf16: bf16_online_b64]);
#[cfg(target_arch = "x86_64")]
entries!(avx2, Avx2, [f32: f32_online_b64, f16: f16_online_b64, bf16: bf16_online_b64]);
#[cfg(target_arch = "x86_64")]
entries!(avx512, Avx512, [f32: f32_online_b64, f16: f16_online_b64, bf16: bf16_online_b64]);
#[cfg(target_arch = "aarch64")]
entries!(neon, Neon, [f32: f32_online_b64, f16: f16_online_b64, bf16: bf16_online_b64]);

macro_rules! registry {
    ($(#[$m:meta])* $reg:ident, $t:ty, $name:ident) => {
        $(#[$m])*
        pub static $reg: &[KernelInfo<SoftmaxFn<$t>>] = &[
            crate::kernel!(softmax::scalar::$name),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(softmax::avx2::$name),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(softmax::avx512::$name),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(softmax::neon::$name),
        ];
    };
}
registry!(
    /// Every f32-input softmax variant compiled for this target, scalar first.
    SOFTMAX_F32, f32, f32_online_b64
);
registry!(
    /// Every f16-input softmax variant compiled for this target, scalar first.
    SOFTMAX_F16, f16, f16_online_b64
);
registry!(
    /// Every bf16-input softmax variant compiled for this target, scalar first.
    SOFTMAX_BF16, bf16, bf16_online_b64
);
