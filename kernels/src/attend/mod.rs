//! Sparse attention: flash-style attention of queries over a subset of keys, merging of
//! partial results by log-sum-exp, per-key attention mass, and the key-block summaries
//! and bounds of query-aware block selection (Quest).
//!
//! # Tensors
//! Q and K are `[n_q, H_q, d]` and `[n_k, H_kv, d]`, V is `[n_k, H_kv, dv]` and the
//! output `[n_q, H_q, dv]` (`dv` may differ from `d`: multi-head latent attention, e.g.
//! `d = 192`, `dv = 128`; with `dv = d` every bit is as it always was);
//! element `(t, h, e)` of a tensor lives at `base + t * tok_stride + h * head_stride + e`
//! (strides in elements, each tensor its own). Query head `h` reads KV head
//! `h / (H_q / H_kv)` (GQA; MQA when `H_kv == 1`). Q, K and V share one element type
//! (f32, f16 or bf16), converted exactly to f32; the output is f32, f16 or bf16
//! (rounded to nearest even).
//!
//! # Key sequences
//! Every (query, head) row attends over a *key sequence*, a list of K rows:
//! - [`KeySet::Dense`]: `0, 1, ..., n_k - 1`;
//! - [`KeySet::Indices`]: a list of K rows shared by every query and head (the keys
//!   kept by token selection), read in place: nothing is gathered;
//! - [`KeySet::Blocks`]: per query block of `q_block` consecutive queries (and per list
//!   group, see [`ListsPer`]), a list of key blocks of `block` keys; key block `b`
//!   stands for K rows `b * block .. min((b + 1) * block, n_k)`.
//!
//! Masking (optional) is by original positions: with `causal`, key row `k` is visible
//! to query `i` when `k_pos[k] <= q_pos[i]`, and with a window `w > 0` also when
//! `q_pos[i] - w < k_pos[k]`. Positions are `u32` token positions of the original
//! sequence, so pruned and compacted sequences mask correctly.
//!
//! # Canonical arithmetic (identical on every tier, bit for bit)
//! `c = (scale as f64 * log2(e)) as f32`. For one row:
//! 1. **dot**: `d` is padded with zeros to `dp`, a multiple of 32. Each chunk of 32
//!    elements feeds 16 lanes, two fused multiply-adds per lane, in this order: for f32
//!    and f16, lane `l` takes element `32c + l`, then `32c + 16 + l`; for bf16, element
//!    `32c + 2l + 1`, then `32c + 2l` (the order of `vdpbf16ps`). Lanes start at +0;
//!    the dot is the fixed 16-lane tree of [`crate::numerics::reduce16`].
//! 2. `x = dot * c` (with a logit softcap, `x = k2 * tanh(dot * k1)` instead: see
//!    [`Logit`] for the constants and the tanh); with ALiBi and/or a bias tensor,
//!    `x = x + b` with `b` the ALiBi term from [`alibi_log2`], the bias
//!    `f32(bias * log2(e))`, or their f32 sum (one more rounding each); `x = -inf` for a
//!    key the row may not see.
//! 3. The key sequence is cut into blocks of [`BK`] = 64 consecutive entries (fixed:
//!    never derived from `n_k`, the number of queries or threads). Per block, with
//!    state `(m, l, O)` starting at `(-inf, 0, 0)`: `mb` = the largest `x` (`-inf` when
//!    none is visible); `m' = max(m, mb)`, NaN when `m` or a visible `x` is NaN. When
//!    `m' = -inf` the block changes nothing.
//!    Otherwise `alpha = exp2(m - m')`, `p_j = exp2(x_j - m')`,
//!    `psum = tree16(((p[0..16] + p[16..32]) + p[32..48]) + p[48..64])` (lanewise, `p = 0`
//!    past the block's end), `l = alpha * l + psum` (two roundings), and each output
//!    element (`e < dv`) `O_e = alpha * O_e`, then `O_e = fma(p_j, v_je, O_e)` for every `j` of the
//!    block in order **whose `p_j != 0`** (a masked or underflowed key contributes
//!    nothing, even when its value is infinite or NaN); then `m = m'`.
//! 4. `out_e = O_e / l`, rounded to the output type; the log-sum-exp is
//!    `(ln 2 * (m + log2 l))` evaluated in f64 and rounded to f32. A row with no visible
//!    key (`l = 0`) gets zeros and a log-sum-exp of `-inf`, never NaN.
//!
//! `exp2(t)` (used only for `t <= 0` or NaN) is: NaN for NaN, `+0` for `t < -125`,
//! otherwise `n = round_half_even(t)` (by the `1.5 * 2^23` shifter), `f = t - n`, the
//! degree-6 polynomial [`EXP2_POLY`] in `f` by fused Horner steps, times `2^n` (exponent
//! add). Its relative error is below 2^-22. A NaN logit makes its row NaN (output and
//! log-sum-exp).
//!
//! The attention mass of key row `k` adds, for every row that sees it (in row order),
//! `exp2(x - m) * (1 / l)` with the row's final `m` and `l` (one more pass over the keys).
//!
//! # Contract (every variant)
//! The caller (the `tokenroute` crate) has validated every shape, stride, index and
//! pointer: `H_kv >= 1`, `H_q % H_kv == 0`, `d >= 1`, `dv >= 1`, every key index and
//! block id in range, positions present when masking, the workspace at least
//! [`workspace_bytes_dv`]`(d, dv)` bytes and 64-byte aligned, outputs disjoint from
//! inputs. Kernels read only the described elements, write only the described outputs
//! (the `dv` elements of each output row, the log-sum-exp and mass entries), never
//! allocate.
//!
//! # Code
//! `numerics.rs` (exp2, the f64 logarithm and exponential, output rounding, the packed
//! order), `keys.rs` (key sequences and visibility), `driver.rs` (tiles, blocks, mass,
//! normalization), `canon.rs` (the canonical tile arithmetic written once over the
//! SIMD tiers, and each tier's register tiling), `merge.rs`, `quest.rs`; `dpbf16.rs`
//! holds the one truly per-ISA kernel (AVX512-BF16 dot products). The entry points of
//! each tier (`scalar`, `avx2`, `avx512`, `neon`) are generated below.

mod canon;
mod driver;
mod keys;
mod merge;
mod numerics;
mod quest;

#[cfg(target_arch = "x86_64")]
mod dpbf16;

pub use crate::simd::Elem;
pub use merge::{MergeArgs, MergeFn};
pub use numerics::{
    alibi_log2, canon_nan, canon_pos, exp2_f32, exp_f64, ln_f64, lse_of, pad32, scale_log2e,
    store_out, Logit, EXP2_MIN, EXP2_POLY, SHIFTER,
};
// The vector exp2, for the row softmax (`crate::softmax`) to share attention's numerics.
pub(crate) use numerics::exp2v;
pub use quest::{bound_absolute, bound_margin, BoundArgs, BoundFn, SummaryArgs, SummaryFn};

use crate::simd;
use crate::KernelInfo;
use half::{bf16, f16};

/// Keys per online-softmax block: fixed, so that results never depend on `n_k`, the
/// number of queries, or how an engine splits work.
pub const BK: usize = 64;
/// Rows (query, head pairs) processed together: fixed on every tier.
pub const TILE_ROWS: usize = 16;
/// Tiles sharing each block of keys while it is in cache.
pub const SUPER: usize = 4;

/// Bytes of workspace an attention call with head dimension `d` (Q, K, V and the
/// output) needs (`None` on overflow): [`workspace_bytes_dv`]`(d, d)`.
pub fn workspace_bytes(d: usize) -> Option<usize> {
    workspace_bytes_dv(d, d)
}

/// Bytes of workspace an attention call with Q/K head dimension `d` and V/output head
/// dimension `dv` needs (`None` on overflow). The workspace must be 64-byte aligned.
pub fn workspace_bytes_dv(d: usize, dv: usize) -> Option<usize> {
    let dp = d.checked_add(31)? & !31;
    let dvp = dv.checked_add(31)? & !31;
    // Per tile: packed queries (TILE_ROWS x dp), accumulators (TILE_ROWS x dvp), scores
    // (TILE_ROWS x BK), scratch.
    let per_tile = TILE_ROWS
        .checked_mul(dp.checked_add(dvp)?)?
        .checked_add(TILE_ROWS * BK)?
        .checked_mul(4)?
        .checked_add(scratch_bytes_dv(dp, dvp)?)?;
    per_tile.checked_mul(SUPER)
}

/// Bytes of per-tile scratch for a padded head dimension `dp` (Q, K, V):
/// [`scratch_bytes_dv`]`(dp, dp)`.
pub const fn scratch_bytes(dp: usize) -> Option<usize> {
    scratch_bytes_dv(dp, dp)
}

/// Bytes of per-tile scratch for padded head dimensions `dp` (Q, K) and `dvp` (V) (used
/// by the AVX512-BF16 path: packed query pairs, probability pairs, value pairs).
pub const fn scratch_bytes_dv(dp: usize, dvp: usize) -> Option<usize> {
    // 64 (flags) + BK / 2 * TILE_ROWS * 4 (probability pairs) + dp / 2 * TILE_ROWS * 4
    // (query pairs) + BK / 2 * dvp * 4 (value pairs).
    let (q, v) = match (dp.checked_mul(32), dvp.checked_mul(128)) {
        (Some(q), Some(v)) => (q, v),
        _ => return None,
    };
    match q.checked_add(v) {
        Some(x) => x.checked_add(64 + BK / 2 * TILE_ROWS * 4),
        None => None,
    }
}

/// Output element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    BF16,
}

impl OutType {
    pub const fn size(self) -> usize {
        match self {
            OutType::F32 => 4,
            OutType::F16 | OutType::BF16 => 2,
        }
    }
}

/// Which rows share a block list (see [`KeySet::Blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListsPer {
    /// One list per query block, shared by every head: list `qb`.
    Shared,
    /// One list per (KV head, query block): list `g * n_qblocks + qb`.
    KvHead,
    /// One list per (query head, query block): list `h * n_qblocks + qb`.
    QHead,
}

/// The key sequence of every row; see the module doc.
#[derive(Clone, Copy, Debug)]
pub enum KeySet {
    Dense,
    Indices {
        idx: *const u32,
        n: usize,
    },
    Blocks {
        /// Keys per key block (>= 1).
        block: usize,
        /// Queries per query block (>= 1).
        q_block: usize,
        /// `n_lists + 1` nondecreasing offsets into `ids`; list `L` is
        /// `ids[offsets[L] .. offsets[L + 1]]`.
        offsets: *const usize,
        /// Key block ids, each `< ceil(n_k / block)`.
        ids: *const u32,
        per: ListsPer,
    },
}

/// Arguments of an attention kernel; see the module doc and contract.
#[derive(Clone, Copy, Debug)]
pub struct AttendArgs<T> {
    pub q: *const T,
    pub n_q: usize,
    pub h_q: usize,
    /// Elements of a Q and a K row (the dot products).
    pub d: usize,
    /// Elements of a V row and of an output row (`d` unless V's head size differs).
    pub dv: usize,
    pub q_tok: usize,
    pub q_head: usize,
    pub k: *const T,
    pub n_k: usize,
    pub h_kv: usize,
    pub k_tok: usize,
    pub k_head: usize,
    pub v: *const T,
    pub v_tok: usize,
    pub v_head: usize,
    pub keys: KeySet,
    /// The softmax scale (already defaulted by the caller).
    pub scale: f32,
    /// Logit softcap: `0` none, else finite and `> 0`: the logit `scale * q.k` becomes
    /// `softcap * tanh(scale * q.k / softcap)` (see [`Logit`]).
    pub softcap: f32,
    /// Null, or ALiBi slopes, one per query head: `-slope[h] * |q_pos - k_pos|` joins
    /// the (capped) logit of head `h` (then `q_pos` and `k_pos` must be given even
    /// without `causal`). See [`alibi_log2`] for the exact arithmetic.
    pub alibi: *const f32,
    /// Null, or an additive bias of element type `bias_type`: element
    /// `bias[h * bias_head + i * bias_query + k]` joins the (capped) logit of query head
    /// `h`, query `i` and K row `k` (`-inf` masks; strides in elements, 0 broadcasts;
    /// f16 and bf16 are converted to f32 exactly, so a 16-bit bias gives the bits of the
    /// f32 bias holding the same values).
    pub bias: *const u8,
    pub bias_type: OutType,
    pub bias_head: usize,
    pub bias_query: usize,
    /// Mask by position: a key is visible when `q_pos - window < k_pos <= q_pos + right`
    /// (with `window = 0`: no left limit).
    pub causal: bool,
    /// With `causal`: also mask keys at or before `q_pos - window` (0 = no window).
    pub window: u32,
    /// With `causal`: keys up to `q_pos + right` are visible (0: causal; `u32::MAX`: no
    /// right limit).
    pub right: u32,
    /// `n_q` positions (when `causal`), else may be null.
    pub q_pos: *const u32,
    /// `n_k` positions, one per K row (when `causal`), else may be null.
    pub k_pos: *const u32,
    pub out: *mut u8,
    pub out_type: OutType,
    pub o_tok: usize,
    pub o_head: usize,
    /// Null, or the log-sum-exp of row `(i, h)` at `lse[i * lse_tok + h]`.
    pub lse: *mut f32,
    pub lse_tok: usize,
    /// Null, or per-key attention mass, added to `mass[g * mass_head + k]` for KV
    /// head `g` and K row `k` (`mass_head = 0`: every head into one array).
    pub mass: *mut f32,
    pub mass_head: usize,
    /// [`workspace_bytes_dv`]`(d, dv)` bytes, 64-byte aligned.
    pub workspace: *mut u8,
}

/// `unsafe fn(&AttendArgs<T>)`: see the module contract.
pub type AttendFn<T> = unsafe fn(args: &AttendArgs<T>);

/// The entry points of one tier: per element type the attention, summary and bound
/// kernels, then the merge (and any extra item of the tier's module).
macro_rules! entries {
    ($isa:ident, $tier:ident, $merge:ident,
     [$($t:ident: $attend:ident, $summary:ident, $bound:ident);+]
     $($extra:item)*) => {
        #[doc = concat!("The ", stringify!($isa), " attention entry points.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            $(
                simd::tier_fn!(
                    $isa,
                    /// # Safety
                    /// The CPU supports the tier; see the module contract.
                    pub unsafe fn $attend(a: &AttendArgs<$t>) {
                        // SAFETY: passed on from the caller.
                        unsafe { driver::attend::<$t, canon::Canon<simd::$tier>>(a) }
                    }
                );
                simd::tier_fn!(
                    $isa,
                    /// # Safety
                    /// The CPU supports the tier; see [`SummaryArgs`].
                    pub unsafe fn $summary(a: &SummaryArgs<$t>) {
                        // SAFETY: passed on from the caller.
                        unsafe { quest::summary::<simd::$tier, $t>(a) }
                    }
                );
                simd::tier_fn!(
                    $isa,
                    /// # Safety
                    /// The CPU supports the tier; see [`BoundArgs`].
                    pub unsafe fn $bound(a: &BoundArgs<$t>) {
                        // SAFETY: passed on from the caller.
                        unsafe { quest::bound::<simd::$tier, $t>(a) }
                    }
                );
            )+
            simd::tier_fn!(
                $isa,
                /// # Safety
                /// The CPU supports the tier; see [`MergeArgs`].
                pub unsafe fn $merge(a: &MergeArgs) {
                    // SAFETY: passed on from the caller.
                    unsafe { merge::merge::<simd::$tier>(a) }
                }
            );
            $($extra)*
        }
    };
}

entries!(scalar, Scalar, f32_merge_u1, [
    f32: f32_fma16_b64, f32_summary_u1, f32_bound_u1;
    f16: f16_fma16_b64, f16_summary_u1, f16_bound_u1;
    bf16: bf16_fma16_b64, bf16_summary_u1, bf16_bound_u1]);
#[cfg(target_arch = "x86_64")]
entries!(avx2, Avx2, f32_merge_u8, [
    f32: f32_fma16_b64, f32_summary_v16, f32_bound_v16;
    f16: f16_fma16_b64, f16_summary_v16, f16_bound_v16;
    bf16: bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16]);
#[cfg(target_arch = "x86_64")]
entries!(avx512, Avx512, f32_merge_u16, [
    f32: f32_fma16_b64, f32_summary_v16, f32_bound_v16;
    f16: f16_fma16_b64, f16_summary_v16, f16_bound_v16;
    bf16: bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16]
    pub use super::dpbf16::bf16_dpbf16_b64;);
#[cfg(target_arch = "aarch64")]
entries!(neon, Neon, f32_merge_u4, [
    f32: f32_fma16_b64, f32_summary_v16, f32_bound_v16;
    f16: f16_fma16_b64, f16_summary_v16, f16_bound_v16;
    bf16: bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16]);

// ------------------------------------------------------------------------------------
// Registries.

/// Every f32 attention variant compiled for this target, scalar first.
pub static ATTEND_F32: &[KernelInfo<AttendFn<f32>>] = &[
    crate::kernel!(attend::scalar::f32_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f32_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f32_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f32_fma16_b64),
];

/// Every f16 attention variant compiled for this target, scalar first.
pub static ATTEND_F16: &[KernelInfo<AttendFn<f16>>] = &[
    crate::kernel!(attend::scalar::f16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f16_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f16_fma16_b64),
];

/// Every bf16 attention variant compiled for this target, scalar first.
pub static ATTEND_BF16: &[KernelInfo<AttendFn<bf16>>] = &[
    crate::kernel!(attend::scalar::bf16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::bf16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::bf16_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::bf16_fma16_b64),
];

/// The opt-in bf16 attention built on AVX512-BF16 dot products (`vdpbf16ps`): an
/// avx512-level kernel that also needs the `avx512bf16` feature (check it at run time,
/// e.g. `is_x86_feature_detected!("avx512bf16")`, before calling). Not bit-identical to
/// [`ATTEND_BF16`]: scores are summed in pairs of dimensions in order, and on blocks
/// where every row has a nonzero probability for every key, probabilities are rounded
/// to bf16 for P.V (elsewhere the canonical f32 P.V runs, so masked keys still
/// contribute nothing).
#[cfg(target_arch = "x86_64")]
pub static ATTEND_BF16_DPBF16: &[KernelInfo<AttendFn<bf16>>] =
    &[crate::kernel!(attend::avx512::bf16_dpbf16_b64)];

/// Every merge variant compiled for this target, scalar first.
pub static MERGE_F32: &[KernelInfo<MergeFn>] = &[
    crate::kernel!(attend::scalar::f32_merge_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f32_merge_u8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f32_merge_u16),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f32_merge_u4),
];

macro_rules! quest_registries {
    ($sum:ident, $bnd:ident, $t:ty, $s_scalar:ident, $b_scalar:ident, $s:ident, $b:ident) => {
        /// Every key-block summary variant of this element type, scalar first.
        pub static $sum: &[KernelInfo<SummaryFn<$t>>] = &[
            crate::kernel!(attend::scalar::$s_scalar),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx2::$s),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx512::$s),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(attend::neon::$s),
        ];
        /// Every Quest bound variant of this element type, scalar first.
        pub static $bnd: &[KernelInfo<BoundFn<$t>>] = &[
            crate::kernel!(attend::scalar::$b_scalar),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx2::$b),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx512::$b),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(attend::neon::$b),
        ];
    };
}
quest_registries!(
    SUMMARY_F32,
    BOUND_F32,
    f32,
    f32_summary_u1,
    f32_bound_u1,
    f32_summary_v16,
    f32_bound_v16
);
quest_registries!(
    SUMMARY_F16,
    BOUND_F16,
    f16,
    f16_summary_u1,
    f16_bound_u1,
    f16_summary_v16,
    f16_bound_v16
);
quest_registries!(
    SUMMARY_BF16,
    BOUND_BF16,
    bf16,
    bf16_summary_u1,
    bf16_bound_u1,
    bf16_summary_v16,
    bf16_bound_v16
);
