//! Fused router scoring: `out[i][e] = act(sum_j h[i][j] * w[e][j] + bias[e])`.
//!
//! H is `[n, d]` with row stride `h_stride`, W is `[e, d]` with row stride `w_stride`,
//! both in the same dtype (f32, f16 or bf16; converted exactly to f32), the bias is
//! f32 (or absent), and the output is f32 `[n, e]` with row stride `out_stride`.
//!
//! # Canonical order (identical on every tier, bit for bit)
//! Each (token, router) dot product is accumulated in 16 lanes: lane `l` holds
//! `fma(h[j], w[j], lane)` over `j = l, l + 16, l + 32, ...` in increasing `j`,
//! starting from +0.0 (elements past `d` count as 0 * 0). The 16 lanes are then summed
//! by a fixed tree: `s8[i] = a[i] + a[i+8]`, `s4[i] = s8[i] + s8[i+4]`,
//! `s2[i] = s4[i] + s4[i+2]`, `dot = s2[0] + s2[1]`. Then `dot + bias[e]` (when a bias
//! is given) and the activation (`sigmoid` is exactly the `sigmoid` module's).
//! A row's score therefore depends only on that row, W and the bias: never on the
//! tier, on `n`, or on where the row sits in the batch.
//!
//! # Contract (every variant)
//! `n >= 0`, `d >= 0`, `e >= 1` when `n > 0`; `h_stride >= d`, `w_stride >= d`,
//! `out_stride >= e`; every row pointer in range; output disjoint from the inputs.
//! The kernels read exactly the `d` elements of each row and write exactly the `e`
//! outputs of each row (never the stride padding).

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use crate::KernelInfo;
use half::{bf16, f16};

/// Activation applied to `dot + bias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// The raw logit.
    None,
    /// The logistic sigmoid (see the `sigmoid` module for its numerics).
    Sigmoid,
}

/// Arguments of a scoring kernel; see the module contract.
#[derive(Clone, Copy, Debug)]
pub struct ScoreArgs<T> {
    pub h: *const T,
    pub n: usize,
    pub d: usize,
    pub h_stride: usize,
    pub w: *const T,
    pub e: usize,
    pub w_stride: usize,
    /// `e` f32 values, or null for no bias.
    pub bias: *const f32,
    pub act: Activation,
    pub out: *mut f32,
    pub out_stride: usize,
}

/// `unsafe fn(&ScoreArgs<T>)`: see the module contract.
pub type ScoreFn<T> = unsafe fn(args: &ScoreArgs<T>);

/// Every f32 scoring variant compiled for this target, scalar first.
pub static SCORE_F32: &[KernelInfo<ScoreFn<f32>>] = &[
    crate::kernel!(score::scalar::f32_fma16_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx2::f32_fma16_r4e2),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::f32_fma16_r4e4_r2e8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::f32_fma16_r1e8),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(score::neon::f32_fma16_r4e2),
];

/// Every f16 scoring variant compiled for this target, scalar first.
pub static SCORE_F16: &[KernelInfo<ScoreFn<f16>>] = &[
    crate::kernel!(score::scalar::f16_fma16_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx2::f16_fma16_r4e2),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::f16_fma16_r4e4_r2e8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::f16_fma16_r1e8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::f16_fma16_sized),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(score::neon::f16_fma16_r4e2),
];

/// Every bf16 scoring variant compiled for this target, scalar first.
pub static SCORE_BF16: &[KernelInfo<ScoreFn<bf16>>] = &[
    crate::kernel!(score::scalar::bf16_fma16_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx2::bf16_fma16_r4e2),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::bf16_fma16_r4e4_r2e8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::bf16_fma16_r1e8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(score::avx512::bf16_fma16_sized),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(score::neon::bf16_fma16_r4e2),
];

/// The canonical 16-lane reduction tree.
#[inline(always)]
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut s8 = [0f32; 8];
    for i in 0..8 {
        s8[i] = a[i] + a[i + 8];
    }
    let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// `dot + bias[e]` with NaN made canonical: the logit every tier writes before the
/// activation pass.
///
/// # Safety
/// `bias` is null or points to more than `e` floats.
#[inline(always)]
pub unsafe fn logit(dot: f32, bias: *const f32, e: usize) -> f32 {
    let s = if bias.is_null() {
        dot
    } else {
        // SAFETY: the caller gives `e` valid bias values when bias is non-null.
        dot + unsafe { *bias.add(e) }
    };
    if s.is_nan() {
        // One NaN for every tier: which operand's payload a NaN sum carries differs
        // between instruction sets.
        f32::NAN
    } else {
        s
    }
}

/// The activation pass over the written logits, with the tier's elementwise sigmoid
/// (bit-identical on every tier, and a NaN gives the canonical quiet NaN).
///
/// # Safety
/// `a.out` holds `a.n` rows of `a.e` written logits, `a.out_stride` apart; `sigmoid`
/// can run on this CPU.
#[inline(always)]
pub(crate) unsafe fn activate<T>(a: &ScoreArgs<T>, sigmoid: crate::sigmoid::SigmoidF32) {
    if a.act != Activation::Sigmoid || a.n == 0 {
        return;
    }
    // SAFETY (every call): rows are within the output; in place is allowed.
    if a.out_stride == a.e {
        unsafe { sigmoid(a.out, a.out, a.n * a.e) };
    } else {
        for i in 0..a.n {
            let row = unsafe { a.out.add(i * a.out_stride) };
            unsafe { sigmoid(row, row, a.e) };
        }
    }
}

/// Walks all rows of `$a`: blocks of `$R` rows, then single rows, each against router
/// blocks of at most `$EB`, calling `$block(i, rows, e0, eb)`. A macro rather than a
/// function taking a closure, so the block body is expanded inside the caller's
/// `#[target_feature]` function and its intrinsics inline.
macro_rules! drive {
    ($a:expr, $R:expr, $EB:expr, |$i:ident, $r:ident, $e0:ident, $eb:ident| $body:expr) => {{
        let a = $a;
        let mut $i = 0;
        while $i < a.n {
            #[allow(clippy::int_plus_one)] // R = 1 instantiations
            let $r = if $i + $R <= a.n { $R } else { 1 };
            let mut $e0 = 0;
            while $e0 < a.e {
                let $eb = core::cmp::min($EB, a.e - $e0);
                $body;
                $e0 += $eb;
            }
            $i += $r;
        }
    }};
}
pub(crate) use drive;

/// Exactly rounded `a * b + c` for f32 without hardware FMA or libm: the product is
/// exact in f64, the f64 sum is rounded to odd (TwoSum + sticky bit), and rounding
/// that to f32 is then the correctly rounded fused result (53 >= 2 * 24 + 2).
#[inline(always)]
pub fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let c = c as f64;
    let s = p + c;
    if !s.is_finite() {
        return s as f32;
    }
    let bb = s - p;
    let err = (p - (s - bb)) + (c - bb);
    let bits = s.to_bits();
    let s = if err != 0.0 && bits & 1 == 0 {
        // Move to the odd neighbour on err's side of s.
        if (err > 0.0) == (s > 0.0) {
            f64::from_bits(bits + 1)
        } else {
            f64::from_bits(bits - 1)
        }
    } else {
        s
    };
    s as f32
}
