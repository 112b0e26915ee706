//! Token selection: threshold selection (`s_i > tau`), exact top-k, and mask <-> index
//! conversions.
//!
//! # Order of scores (identical on every tier)
//! Scores are compared through an integer key of their bits, never through the FPU, so
//! the result does not depend on the floating-point environment (flush-to-zero or
//! denormals-are-zero modes) nor on the tier:
//! - every number is ordered by value; `-0.0` and `+0.0` are **equal**; denormals are
//!   ordinary (never flushed); `-inf` and `+inf` are the extremes of the numbers;
//! - every NaN (any sign, any payload) ranks **below every number**, and all NaNs are
//!   equal to each other;
//! - among equal scores the **lower index** ranks higher (ties go to the lower index).
//!
//! The signed key is [`skey`]: `mag = bits & 0x7fff_ffff`, `NaN -> i32::MIN`, else
//! `sign ? -mag : mag`. Threshold selection picks `i` with `skey(s_i) > skey(tau)`
//! (nothing when tau is NaN), which is exactly `s_i > tau` in IEEE arithmetic without
//! flushing. Top-k picks the `k` largest `(skey(s_i), -i)`.
//!
//! # Forced keeps
//! `keep_first` (clamped to `n`) first tokens, `keep_last` (clamped to the rest) last
//! tokens and the tokens whose `keep` byte is non-zero are always selected. Threshold
//! selection adds them to the tokens above tau; top-k counts them within `k` (the
//! caller guarantees `k >= forced count`) and picks the `k - forced` best of the others.
//!
//! # Contract (every variant)
//! - `scores` points to `n` valid f32 (any alignment); `keep` is null or points to `n`
//!   bytes; `n <= u32::MAX`.
//! - Threshold: `out_idx` is null or has room for `n` indices: the count `c` is returned,
//!   `out_idx[..c]` holds the selected indices ascending, and `out_idx[c..n]` may have
//!   been overwritten (whole vectors are stored). `out_mask` is null or has `mask_len >=
//!   n` bytes: byte `i < n` is 1 when token `i` is selected, else 0, and bytes
//!   `n..mask_len` are set to 0.
//! - Top-k: `k <= n`, `k >= forced count`; `out_idx` has room for exactly `k` indices and
//!   nothing past them is written; `out_scores` is null or has room for `k` floats;
//!   `scratch` is 8-byte aligned with [`topk_scratch_words`]`(n)` u32 words. Output
//!   order: ascending index ([`Order::Position`]) or descending score with ties by
//!   ascending index ([`Order::Score`]); `out_scores[j]` is the score of `out_idx[j]`.
//! - Mask to indices: `out` has room for `n` indices, `out[c..n]` may be overwritten.
//! - Outputs never overlap inputs. Kernels never allocate and never fail.
//!
//! # Algorithms
//! Threshold: compare the bits against precomputed constants (one unsigned range check
//! for `tau >= 0` on AVX-512, two integer compares otherwise, see [`Pred`]) and compress
//! the index vector into a register, then store whole vectors (AVX-512 `vpcompressd`
//! register form, AVX2 `vpermd` with a lookup table, NEON `tbl`); the tail is stored
//! exactly. The passes work on groups of 4 blocks: the 4 lane masks become one integer
//! (fewer mask-register moves on AVX-512, which bound the per-block loop on Zen 4),
//! whose prefix bit counts give every block's output offset at once, so the
//! compress-stores of a group are independent.
//!
//! Top-k (a Floyd-Rivest style selection on integer keys): a deterministic stratified
//! sample of the candidates gives two pivots that bracket the k-th key with high
//! probability; one SIMD pass counts the tokens above the upper pivot and compresses
//! the band between the pivots into scratch; the exact k-th key is found in the band by
//! radix selection; one more SIMD pass compresses the indices with key > T plus the
//! first `need` with key == T. For small k the band holds indices and the output is
//! taken from it directly (one pass over the row). Small k on rows up to
//! [`GROUP_FILTER_MAX_ROW`] without keep bytes skips the sample (whose scattered loads
//! miss the cache when the row is not in L2): one pass takes a representative (the
//! maximum) of every group of up to 64 scores (at least `4k` groups), the `k`-th largest
//! representative is a lower bound of the `k`-th largest score that leaves a band of
//! about `k` tokens, and a second pass (now from L2) collects them. A band expected to hold under
//! [`SPARSE_LANES_PER_GROUP`] lanes per group of 4 blocks skips the stores of empty
//! groups. Ties at a pivot, a missed bracket or a degenerate sample fall back to extra
//! counting / banding passes, so the result is always exact and the work stays linear.

mod keys;
#[cfg(target_arch = "x86_64")]
mod lanes_avx2;
#[cfg(target_arch = "x86_64")]
mod lanes_avx512;
#[cfg(target_arch = "aarch64")]
mod lanes_neon;
mod lanes_scalar;
mod passes;
mod radix;
mod topk;

pub use keys::{max_key, skey, ukey, Pred, INF_BITS, M_ALL, M_SGT, M_ULT};
pub use passes::SPARSE_LANES_PER_GROUP;
pub use radix::select_kth;
pub use topk::{
    sample_positions, sample_size, DIRECT_MAX, GROUP_FILTER_DIV, GROUP_FILTER_MAX_ROW,
    GROUP_MAX_REPS,
};

use crate::simd;
use crate::KernelInfo;

/// Output order of top-k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Ascending token index.
    Position,
    /// Descending score, ties by ascending index (NaN last).
    Score,
}

/// Arguments of a threshold-selection kernel (one row); see the module contract.
#[derive(Clone, Copy, Debug)]
pub struct ThresholdArgs {
    pub scores: *const f32,
    pub n: usize,
    pub tau: f32,
    pub keep_first: usize,
    pub keep_last: usize,
    /// `n` bytes (non-zero = always selected), or null.
    pub keep: *const u8,
    /// Room for `n` indices, or null.
    pub out_idx: *mut u32,
    /// `mask_len` bytes, or null.
    pub out_mask: *mut u8,
    pub mask_len: usize,
}

/// Arguments of a top-k kernel (one row); see the module contract.
#[derive(Clone, Copy, Debug)]
pub struct TopkArgs {
    pub scores: *const f32,
    pub n: usize,
    pub k: usize,
    pub keep_first: usize,
    pub keep_last: usize,
    /// `n` bytes (non-zero = always selected), or null.
    pub keep: *const u8,
    pub order: Order,
    /// Room for `k` indices.
    pub out_idx: *mut u32,
    /// Room for `k` floats, or null.
    pub out_scores: *mut f32,
    /// 8-byte aligned, [`topk_scratch_words`]`(n)` words.
    pub scratch: *mut u32,
}

/// `unsafe fn(&ThresholdArgs) -> count`: see the module contract.
pub type ThresholdFn = unsafe fn(args: &ThresholdArgs) -> usize;
/// `unsafe fn(&TopkArgs)`: see the module contract.
pub type TopkFn = unsafe fn(args: &TopkArgs);
/// `unsafe fn(mask, n, out) -> count`: indices of the non-zero bytes, ascending.
pub type MaskToIndicesFn = unsafe fn(mask: *const u8, n: usize, out: *mut u32) -> usize;
/// `unsafe fn(idx, count, mask, n)`: `mask[..n] = 0`, then `mask[idx[j]] = 1`
/// (every `idx[j] < n`).
pub type IndicesToMaskFn = unsafe fn(idx: *const u32, count: usize, mask: *mut u8, n: usize);
/// `unsafe fn(bytes, n) -> count` of the non-zero bytes.
pub type CountNonzeroFn = unsafe fn(bytes: *const u8, n: usize) -> usize;

/// Scratch of a top-k row of length `n`, in u32 words (8-byte aligned).
pub const fn topk_scratch_words(n: usize) -> usize {
    2 * n
}

/// The number of forced keeps of a row: `keep_first` and `keep_last` clamped, plus
/// `keep_count` (the non-zero keep bytes strictly between those two ranges).
pub const fn forced_ranges(n: usize, keep_first: usize, keep_last: usize) -> (usize, usize) {
    let kf = if keep_first < n { keep_first } else { n };
    let rest = n - kf;
    let kl = if keep_last < rest { keep_last } else { rest };
    (kf, kl)
}

macro_rules! registry {
    ($name:ident, $ty:ty, $scalar:ident, $avx2:ident, $avx512:ident, $neon:ident, $doc:expr) => {
        #[doc = $doc]
        pub static $name: &[KernelInfo<$ty>] = &[
            crate::kernel!(select::scalar::$scalar),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(select::avx2::$avx2),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(select::avx512::$avx512),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(select::neon::$neon),
        ];
    };
}

registry!(
    THRESHOLD_F32,
    ThresholdFn,
    f32_threshold_u4,
    f32_threshold_lut_u32,
    f32_threshold_vcompress_u64,
    f32_threshold_tbl_u16,
    "Every f32 threshold-selection variant compiled for this target, scalar first."
);
registry!(
    TOPK_F32,
    TopkFn,
    f32_topk_band_u4,
    f32_topk_band_lut_u32,
    f32_topk_band_vcompress_u64,
    f32_topk_band_tbl_u16,
    "Every f32 top-k variant compiled for this target, scalar first."
);
registry!(
    MASK_TO_INDICES,
    MaskToIndicesFn,
    u8_mask_to_indices_u1,
    u8_mask_to_indices_lut_u8,
    u8_mask_to_indices_vcompress_u16,
    u8_mask_to_indices_tbl_u4,
    "Every mask-to-indices variant compiled for this target, scalar first."
);
registry!(
    INDICES_TO_MASK,
    IndicesToMaskFn,
    u32_indices_to_mask_u1,
    u32_indices_to_mask_u1,
    u32_indices_to_mask_u1,
    u32_indices_to_mask_u1,
    "Every indices-to-mask variant compiled for this target, scalar first (a scatter: \
     the same code on every tier, compiled with the tier's features)."
);
registry!(
    COUNT_NONZERO_U8,
    CountNonzeroFn,
    u8_count_nonzero_u1,
    u8_count_nonzero_u8,
    u8_count_nonzero_u16,
    u8_count_nonzero_u4,
    "Every non-zero-byte counter compiled for this target, scalar first."
);

/// The entry points of one tier: the shared drivers over its [`passes::Lanes`].
macro_rules! entries {
    ($isa:ident, $tier:ident, $thr:ident, $topk:ident, $m2i:ident, $i2m:ident, $cnt:ident) => {
        #[doc = concat!("The ", stringify!($isa), " selection entry points.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            simd::tier_fn!(
                $isa,
                /// Threshold selection of one row (see the module contract).
                ///
                /// # Safety
                /// The CPU supports the tier; see the module contract.
                pub unsafe fn $thr(a: &ThresholdArgs) -> usize {
                    // SAFETY: the caller upholds the contract.
                    unsafe { topk::threshold::<simd::$tier>(a) }
                }
            );
            simd::tier_fn!(
                $isa,
                /// Exact top-k of one row: sampled pivots or group maxima, band and
                /// output passes, radix selection (see the module contract).
                ///
                /// # Safety
                /// The CPU supports the tier; see the module contract.
                pub unsafe fn $topk(a: &TopkArgs) {
                    // SAFETY: the caller upholds the contract.
                    unsafe { topk::topk::<simd::$tier>(a) }
                }
            );
            simd::tier_fn!(
                $isa,
                /// Indices of the non-zero bytes.
                ///
                /// # Safety
                /// The CPU supports the tier; `mask` holds `n` bytes, `out` room for `n`.
                pub unsafe fn $m2i(mask: *const u8, n: usize, out: *mut u32) -> usize {
                    // SAFETY: the caller upholds the contract.
                    unsafe { passes::mask_pass::<simd::$tier>(mask, n, 0, out) }
                }
            );
            simd::tier_fn!(
                $isa,
                /// `mask[..n] = 0`, then 1 at every index (a scatter).
                ///
                /// # Safety
                /// The CPU supports the tier; `idx` holds `count` indices `< n`, `mask`
                /// `n` bytes.
                pub unsafe fn $i2m(idx: *const u32, count: usize, mask: *mut u8, n: usize) {
                    // SAFETY: the caller upholds the contract.
                    unsafe { topk::indices_to_mask(idx, count, mask, n) }
                }
            );
            simd::tier_fn!(
                $isa,
                /// The number of non-zero bytes.
                ///
                /// # Safety
                /// The CPU supports the tier; `p` holds `n` bytes.
                pub unsafe fn $cnt(p: *const u8, n: usize) -> usize {
                    // SAFETY: the caller upholds the contract.
                    unsafe { passes::count_nonzero::<simd::$tier>(p, n) }
                }
            );
        }
    };
}

entries!(
    scalar,
    Scalar,
    f32_threshold_u4,
    f32_topk_band_u4,
    u8_mask_to_indices_u1,
    u32_indices_to_mask_u1,
    u8_count_nonzero_u1
);
// `vpermd` with a 256-entry lookup table of packed lane indices.
#[cfg(target_arch = "x86_64")]
entries!(
    avx2,
    Avx2,
    f32_threshold_lut_u32,
    f32_topk_band_lut_u32,
    u8_mask_to_indices_lut_u8,
    u32_indices_to_mask_u1,
    u8_count_nonzero_u8
);
// `vpcompressd` into a register, then whole-vector stores.
#[cfg(target_arch = "x86_64")]
entries!(
    avx512,
    Avx512,
    f32_threshold_vcompress_u64,
    f32_topk_band_vcompress_u64,
    u8_mask_to_indices_vcompress_u16,
    u32_indices_to_mask_u1,
    u8_count_nonzero_u16
);
// `tbl` byte shuffles from a 16-entry table.
#[cfg(target_arch = "aarch64")]
entries!(
    neon,
    Neon,
    f32_threshold_tbl_u16,
    f32_topk_band_tbl_u16,
    u8_mask_to_indices_tbl_u4,
    u32_indices_to_mask_u1,
    u8_count_nonzero_u4
);
