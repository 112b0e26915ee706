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

use crate::simd::{self, Elem, Tier};
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

/// Rows `i..i+R` against routers `e0..e0+EB`, written to the output (before the
/// activation). With `PF`, 16-bit rows prefetch the next block's rows at the offset
/// being read, one cache line per row every other step (they are short streams that
/// the hardware prefetcher picks up late; for f32 rows this measured slower).
#[inline(always)]
unsafe fn block<S: Tier, T: Elem, const R: usize, const EB: usize, const PF: bool>(
    a: &ScoreArgs<T>,
    i: usize,
    e0: usize,
) {
    // SAFETY (whole body): the contract makes rows i..i+R of H, routers e0..e0+EB of W
    // and their outputs valid; loads stay within the d elements of each row.
    unsafe {
        let h: [*const T; R] = core::array::from_fn(|r| a.h.add((i + r) * a.h_stride));
        let w: [*const T; EB] = core::array::from_fn(|e| a.w.add((e0 + e) * a.w_stride));
        let mut acc = [[S::v16_zero(); EB]; R];
        let d = a.d;
        let ahead = R * a.h_stride;
        let prefetch = PF && core::mem::size_of::<T>() == 2;
        let mut j = 0;
        while j + 16 <= d {
            if prefetch && j % 32 == 0 {
                for r in 0..R {
                    S::prefetch(h[r].wrapping_add(ahead + j) as *const u8);
                }
            }
            let wv: [S::V16; EB] = core::array::from_fn(|e| S::v16_load(w[e].add(j)));
            for r in 0..R {
                let hv = S::v16_load(h[r].add(j));
                for e in 0..EB {
                    acc[r][e] = S::v16_fma(hv, wv[e], acc[r][e]);
                }
            }
            j += 16;
        }
        if j < d {
            let k = d - j;
            let wv: [S::V16; EB] = core::array::from_fn(|e| S::v16_load_first(w[e].add(j), k));
            for r in 0..R {
                let hv = S::v16_load_first(h[r].add(j), k);
                for e in 0..EB {
                    acc[r][e] = S::v16_fma(hv, wv[e], acc[r][e]);
                }
            }
        }
        for r in 0..R {
            for e in 0..EB {
                let s = logit(S::v16_reduce(acc[r][e]), a.bias, e0 + e);
                *a.out.add((i + r) * a.out_stride + e0 + e) = s;
            }
        }
    }
}

/// `block::<S, T, R, eb, PF>` for the router count `eb <= EB` of this block.
#[inline(always)]
unsafe fn block_eb<S: Tier, T: Elem, const R: usize, const EB: usize, const PF: bool>(
    a: &ScoreArgs<T>,
    i: usize,
    e0: usize,
    eb: usize,
) {
    // SAFETY (every arm): passed on; eb routers remain from e0.
    unsafe {
        match eb {
            8 if EB >= 8 => block::<S, T, R, 8, PF>(a, i, e0),
            7 if EB >= 7 => block::<S, T, R, 7, PF>(a, i, e0),
            6 if EB >= 6 => block::<S, T, R, 6, PF>(a, i, e0),
            5 if EB >= 5 => block::<S, T, R, 5, PF>(a, i, e0),
            4 if EB >= 4 => block::<S, T, R, 4, PF>(a, i, e0),
            3 if EB >= 3 => block::<S, T, R, 3, PF>(a, i, e0),
            2 if EB >= 2 => block::<S, T, R, 2, PF>(a, i, e0),
            _ => block::<S, T, R, 1, PF>(a, i, e0),
        }
    }
}

/// Every row in blocks of `R` rows (then single rows) against router blocks of up to
/// `EB` (`EB <= 8`).
#[inline(always)]
unsafe fn blocks<S: Tier, T: Elem, const R: usize, const EB: usize, const PF: bool>(
    a: &ScoreArgs<T>,
) {
    let mut i = 0;
    while i < a.n {
        let whole = i + R <= a.n;
        let mut e0 = 0;
        while e0 < a.e {
            let eb = core::cmp::min(EB, a.e - e0);
            // SAFETY: rows i.. (R of them when whole, else one) and routers e0..e0+eb.
            unsafe {
                if whole {
                    block_eb::<S, T, R, EB, PF>(a, i, e0, eb)
                } else {
                    block_eb::<S, T, 1, EB, PF>(a, i, e0, eb)
                }
            }
            e0 += eb;
        }
        i += if whole { R } else { 1 };
    }
}

/// The scoring of one tier: blocks of `RF` rows x `EF` routers when there are at most
/// `EF` routers (one pass over H), else `RM` rows x `EM` routers; then the activation
/// with the tier's sigmoid.
///
/// # Safety
/// The module contract; the CPU supports the tier.
#[inline(always)]
#[allow(clippy::extra_unused_type_parameters)]
unsafe fn run<
    S: Tier,
    T: Elem,
    const RF: usize,
    const EF: usize,
    const RM: usize,
    const EM: usize,
    const PF: bool,
>(
    a: &ScoreArgs<T>,
    sigmoid: crate::sigmoid::SigmoidF32,
) {
    // SAFETY: passed on; every logit is written before the activation pass.
    unsafe {
        if a.e <= EF {
            blocks::<S, T, RF, EF, PF>(a);
        } else {
            blocks::<S, T, RM, EM, PF>(a);
        }
        activate(a, sigmoid);
    }
}

/// The entry points of one tier: `name: element type => (RF, EF, RM, EM, PF)` (see
/// [`run`]) or `=> sized` (the avx512 policy).
macro_rules! entries {
    ($isa:ident, $tier:ident, $sigmoid:path, $($name:ident: $t:ident => $policy:tt),+ $(,)?) => {
        #[doc = concat!("The ", stringify!($isa), " scoring entry points.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            $(simd::tier_fn!(
                $isa,
                /// # Safety
                /// The CPU supports the tier; see the module contract.
                pub unsafe fn $name(a: &ScoreArgs<$t>) {
                    // SAFETY: passed on from the caller.
                    unsafe { entries!(@call $tier, $t, $sigmoid, a, $policy) }
                }
            );)+
        }
    };
    (@call $tier:ident, $t:ident, $sigmoid:path, $a:ident, ($rf:literal, $ef:literal, $rm:literal, $em:literal, $pf:literal)) => {
        run::<simd::$tier, $t, $rf, $ef, $rm, $em, $pf>($a, $sigmoid)
    };
    (@call $tier:ident, $t:ident, $sigmoid:path, $a:ident, sized) => {
        // 16-bit H beyond the L2 cache with at most 4 routers streams best one row at a
        // time (the next row prefetched: 94-102% of the read ceiling against 67-80% for
        // 4-row blocks on AMD Zen 4, `cargo bench --bench variants`); everything else in
        // 4-row (or 2-row x 8-router) blocks.
        if core::mem::size_of::<$t>() == 2 && $a.e <= 4 && $a.n * $a.d * 2 > (2 << 20) {
            run::<simd::$tier, $t, 1, 8, 1, 8, true>($a, $sigmoid)
        } else {
            run::<simd::$tier, $t, 4, 4, 2, 8, true>($a, $sigmoid)
        }
    };
}

entries!(
    scalar, Scalar, crate::sigmoid::scalar::f32_rr2_lut8_p4_div_u1,
    f32_fma16_u1: f32 => (1, 1, 1, 1, false),
    f16_fma16_u1: f16 => (1, 1, 1, 1, false),
    bf16_fma16_u1: bf16 => (1, 1, 1, 1, false),
);
#[cfg(target_arch = "x86_64")]
entries!(
    avx2, Avx2, crate::sigmoid::avx2::f32_rr2_lut8_p4_div_u16,
    f32_fma16_r4e2: f32 => (4, 1, 2, 2, false),
    f16_fma16_r4e2: f16 => (4, 1, 2, 2, false),
    bf16_fma16_r4e2: bf16 => (4, 1, 2, 2, false),
);
// Up to 4 routers: blocks of 4 rows x all routers (one pass over H). More routers:
// blocks of 2 rows x 8 routers (16 accumulators, each H row read once per 8 routers;
// with fewer rows per block, W stays in L1/L2 and H streams once). `r1e8`: one row at a
// time against up to 8 routers, a single sequential stream over H.
#[cfg(target_arch = "x86_64")]
entries!(
    avx512, Avx512, crate::sigmoid::avx512::f32_rr2_lut8_p4_div_u64,
    f32_fma16_r4e4_r2e8: f32 => (4, 4, 2, 8, true),
    f16_fma16_r4e4_r2e8: f16 => (4, 4, 2, 8, true),
    bf16_fma16_r4e4_r2e8: bf16 => (4, 4, 2, 8, true),
    f32_fma16_r1e8: f32 => (1, 8, 1, 8, true),
    f16_fma16_r1e8: f16 => (1, 8, 1, 8, true),
    bf16_fma16_r1e8: bf16 => (1, 8, 1, 8, true),
    f16_fma16_sized: f16 => sized,
    bf16_fma16_sized: bf16 => sized,
);
#[cfg(target_arch = "aarch64")]
entries!(
    neon, Neon, crate::sigmoid::neon::f32_rr2_lut8_p4_div_u8,
    f32_fma16_r4e2: f32 => (4, 1, 2, 2, false),
    f16_fma16_r4e2: f16 => (4, 1, 2, 2, false),
    bf16_fma16_r4e2: bf16 => (4, 1, 2, 2, false),
);
