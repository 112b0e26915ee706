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
//! taken from it directly (one pass over the row). A band expected to hold under
//! [`SPARSE_LANES_PER_GROUP`] lanes per group of 4 blocks skips the stores of empty
//! groups. Ties at a pivot, a missed bracket or a degenerate sample fall back to extra
//! counting / banding passes, so the result is always exact and the work stays linear.

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use crate::KernelInfo;

/// The bits of `+inf`; every non-NaN magnitude is at most this.
pub const INF_BITS: u32 = 0x7f80_0000;

/// The signed order key of a score's bits: NaN (any) -> `i32::MIN`, `±0 -> 0`, else
/// `sign ? -mag : mag`. Numbers map to `-INF_BITS ..= INF_BITS`.
#[inline(always)]
pub const fn skey(bits: u32) -> i32 {
    let mag = bits & 0x7fff_ffff;
    if mag > INF_BITS {
        i32::MIN
    } else if bits >> 31 != 0 {
        -(mag as i32)
    } else {
        mag as i32
    }
}

/// The unsigned order key: `skey ^ 0x8000_0000` (NaN -> 0).
#[inline(always)]
pub const fn ukey(bits: u32) -> u32 {
    (skey(bits) as u32) ^ 0x8000_0000
}

/// Output order of top-k.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Ascending token index.
    Position,
    /// Descending score, ties by ascending index (NaN last).
    Score,
}

/// A predicate "key of the bits > t" in the form the vector code evaluates with two
/// integer compares; `npn` ("not a positive NaN") is `bits as i32 <= INF_BITS`:
/// - `SGt(c)` (for `t >= 0`): `bits as i32 > c as i32 && npn`;
/// - `ULt(c)` (for `t < 0`): `bits < c && npn` (unsigned), `c = 0x8000_0000 + |t|`;
/// - `All`: always true (the key is >= the NaN key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pred {
    SGt(u32),
    ULt(u32),
    All,
}

/// `Pred` modes as const-generic parameters of the vector loops.
pub const M_SGT: u8 = 0;
pub const M_ULT: u8 = 1;
pub const M_ALL: u8 = 2;

impl Pred {
    /// `skey(x) > t`. `t >= INF_BITS` is never true (`SGt(INF_BITS)`).
    #[inline(always)]
    pub const fn gt(t: i32) -> Pred {
        if t >= INF_BITS as i32 {
            Pred::SGt(INF_BITS)
        } else if t >= 0 {
            Pred::SGt(t as u32)
        } else if t < -(INF_BITS as i32) - 1 {
            // Every number and no NaN (t is the NaN key or below every number).
            Pred::ULt(0x8000_0000 + INF_BITS + 1)
        } else {
            Pred::ULt(0x8000_0000u32.wrapping_add(t.unsigned_abs()))
        }
    }

    /// `skey(x) >= t`.
    #[inline(always)]
    pub const fn ge(t: i32) -> Pred {
        if t == i32::MIN {
            Pred::All
        } else {
            Pred::gt(t - 1)
        }
    }

    /// The never-true predicate.
    pub const NEVER: Pred = Pred::SGt(INF_BITS);

    /// Scalar evaluation on the bits of a score.
    #[inline(always)]
    pub const fn eval(self, bits: u32) -> bool {
        let npn = (bits as i32) <= INF_BITS as i32;
        match self {
            Pred::SGt(c) => (bits as i32) > c as i32 && npn,
            Pred::ULt(c) => bits < c && npn,
            Pred::All => true,
        }
    }

    /// `(mode, constant)` for the vector loops.
    #[inline(always)]
    pub const fn parts(self) -> (u8, u32) {
        match self {
            Pred::SGt(c) => (M_SGT, c),
            Pred::ULt(c) => (M_ULT, c),
            Pred::All => (M_ALL, 0),
        }
    }

    /// The threshold predicate `s > tau` (never true for a NaN tau).
    #[inline(always)]
    pub const fn above(tau: f32) -> Pred {
        let b = tau.to_bits();
        if b & 0x7fff_ffff > INF_BITS {
            Pred::NEVER
        } else {
            Pred::gt(skey(b))
        }
    }
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

// ---------------------------------------------------------------------------------
// The per-tier vector primitives and the loops built from them.
// ---------------------------------------------------------------------------------

/// How a pass combines the keep bytes with its predicate.
pub(crate) const KEEP_NONE: u8 = 0;
/// `pred | keep` (threshold, top-k output).
pub(crate) const KEEP_INCL: u8 = 1;
/// `pred & !keep` (top-k candidate passes: forced tokens are not candidates).
pub(crate) const KEEP_EXCL: u8 = 2;

/// The vector primitives of one tier: `W` lanes of u32 per block and a `W`-bit lane
/// mask. Every method is `#[inline(always)]` in the implementations, so the loops below
/// compile inside each tier's `#[target_feature]` entry points.
pub(crate) trait Lanes: Copy {
    const W: usize;
    type V: Copy;
    type M: Copy;
    /// What the predicates share per block (the "not a positive NaN" lanes, ...).
    type N: Copy;
    /// Per-loop form of a predicate constant.
    type C: Copy;

    unsafe fn load(p: *const u32) -> Self::V;
    /// The first `n < W` elements (reads only those), the rest 0.
    unsafe fn load_part(p: *const u32, n: usize) -> Self::V;
    fn iota(base: u32) -> Self::V;
    fn step(v: Self::V) -> Self::V;
    fn konst<const MODE: u8>(c: u32) -> Self::C;
    fn npn(b: Self::V) -> Self::N;
    fn pred<const MODE: u8>(b: Self::V, c: Self::C, n: Self::N) -> Self::M;
    /// Lanes `< n`.
    fn first(n: usize) -> Self::M;
    fn and(a: Self::M, b: Self::M) -> Self::M;
    fn or(a: Self::M, b: Self::M) -> Self::M;
    /// `a & !b`
    fn andnot(a: Self::M, b: Self::M) -> Self::M;
    fn count(m: Self::M) -> usize;
    /// The lane masks of 4 consecutive blocks as one integer: block `j` in bits
    /// `[j W, (j + 1) W)` (one mask-register move on AVX-512 instead of four).
    fn group(m: [Self::M; 4]) -> u64;
    /// The `k` lowest set lanes of `m` (`k < count(m)`).
    fn lowest(m: Self::M, k: usize) -> Self::M;
    /// Lanes whose byte is non-zero (`W` bytes).
    unsafe fn keep(p: *const u8) -> Self::M;
    /// As `keep` for the first `n < W` bytes (reads only those).
    unsafe fn keep_part(p: *const u8, n: usize) -> Self::M;
    /// Stores the selected lanes of `v`, in lane order, at `out`; may write all `W`.
    unsafe fn compress(out: *mut u32, m: Self::M, v: Self::V);
    /// As `compress`, writing only `count(m)` elements.
    unsafe fn compress_exact(out: *mut u32, m: Self::M, v: Self::V);
    /// `W` bytes: 1 for selected lanes, 0 otherwise.
    unsafe fn store_mask(out: *mut u8, m: Self::M);
    /// The first `n < W` bytes of `store_mask`.
    unsafe fn store_mask_part(out: *mut u8, m: Self::M, n: usize);
}

/// Dispatches a runtime [`Pred`] to a const mode: `with_mode!(p, M, c => body)`.
macro_rules! with_mode {
    ($p:expr, $m:ident, $c:ident => $body:expr) => {{
        match $p.parts() {
            (crate::select::M_SGT, $c) => {
                const $m: u8 = crate::select::M_SGT;
                $body
            }
            (crate::select::M_ULT, $c) => {
                const $m: u8 = crate::select::M_ULT;
                $body
            }
            (_, $c) => {
                const $m: u8 = crate::select::M_ALL;
                $body
            }
        }
    }};
}

/// Dispatches a runtime keep mode to a const: `with_keep!(keep_ptr, KIND, K => body)`.
macro_rules! with_keep {
    ($keep:expr, $kind:expr, $k:ident => $body:expr) => {{
        if $keep.is_null() {
            const $k: u8 = KEEP_NONE;
            $body
        } else if $kind == KEEP_INCL {
            const $k: u8 = KEEP_INCL;
            $body
        } else {
            const $k: u8 = KEEP_EXCL;
            $body
        }
    }};
}

/// Dispatches a runtime bool to a const: `with_bool!(cond, B => body)`.
macro_rules! with_bool {
    ($cond:expr, $b:ident => $body:expr) => {{
        if $cond {
            const $b: bool = true;
            $body
        } else {
            const $b: bool = false;
            $body
        }
    }};
}

/// A band pass skips empty groups (see [`band_pass`]) when it expects fewer band lanes
/// per group of 4 blocks than this.
pub const SPARSE_LANES_PER_GROUP: f64 = 1.0;

/// Applies the keep bytes of a full block to a predicate mask.
#[inline(always)]
unsafe fn apply_keep<L: Lanes, const K: u8>(m: L::M, keep: *const u8) -> L::M {
    match K {
        KEEP_INCL => L::or(m, unsafe { L::keep(keep) }),
        KEEP_EXCL => L::andnot(m, unsafe { L::keep(keep) }),
        _ => m,
    }
}

/// As [`apply_keep`] for a tail of `r < W` lanes.
#[inline(always)]
unsafe fn apply_keep_part<L: Lanes, const K: u8>(m: L::M, keep: *const u8, r: usize) -> L::M {
    match K {
        KEEP_INCL => L::or(m, unsafe { L::keep_part(keep, r) }),
        KEEP_EXCL => L::andnot(m, unsafe { L::keep_part(keep, r) }),
        _ => m,
    }
}

/// `(offsets of blocks 1, 2, 3 within a group, total)` from a group mask of `W`-lane
/// blocks (see [`Lanes::group`]).
#[inline(always)]
fn group_offsets<L: Lanes>(q: u64) -> ([usize; 4], usize) {
    let w = L::W as u32;
    let below = |j: u32| (q & ((1u64 << (j * w)) - 1)).count_ones() as usize;
    ([0, below(1), below(2), below(3)], q.count_ones() as usize)
}

/// Threshold pass over `s[..n]`: lanes with `pred` (combined with keep per `K`).
/// Indices `base + i` go to `out` (room for `n`, when `IDX`), 0/1 bytes to `mask`
/// (`n` bytes, when `MASK`). Returns the count. Works on groups of 4 blocks: one
/// mask move and four independent prefix counts per group, so the compress-stores of
/// a group do not wait on each other.
#[inline(always)]
unsafe fn threshold_pass<
    L: Lanes,
    const MODE: u8,
    const K: u8,
    const IDX: bool,
    const MASK: bool,
>(
    s: *const u32,
    n: usize,
    base: u32,
    c: u32,
    keep: *const u8,
    out: *mut u32,
    mask: *mut u8,
) -> usize {
    let c = L::konst::<MODE>(c);
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    let w = L::W;
    // SAFETY (whole body): reads stay in s[..n] / keep[..n]; full-vector stores go to
    // out[cnt + o..cnt + o + W] with cnt + o <= i + jW (the selected lanes before
    // block j of the group) and i + (j + 1) W <= n; tails are exact.
    unsafe {
        while i + 4 * w <= n {
            let mut m = [L::first(0); 4];
            for (j, mj) in m.iter_mut().enumerate() {
                let b = L::load(s.add(i + j * w));
                *mj = apply_keep::<L, K>(L::pred::<MODE>(b, c, L::npn(b)), keep.add(i + j * w));
            }
            let (o, total) = group_offsets::<L>(L::group(m));
            for j in 0..4 {
                if IDX {
                    L::compress(out.add(cnt + o[j]), m[j], iv);
                }
                if MASK {
                    L::store_mask(mask.add(i + j * w), m[j]);
                }
                iv = L::step(iv);
            }
            cnt += total;
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let m = apply_keep::<L, K>(L::pred::<MODE>(b, c, L::npn(b)), keep.add(i));
            if IDX {
                L::compress(out.add(cnt), m, iv);
            }
            if MASK {
                L::store_mask(mask.add(i), m);
            }
            cnt += L::count(m);
            iv = L::step(iv);
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let m = L::and(L::pred::<MODE>(b, c, L::npn(b)), L::first(r));
            let m = apply_keep_part::<L, K>(m, keep.add(i), r);
            if IDX {
                L::compress_exact(out.add(cnt), m, iv);
            }
            if MASK {
                L::store_mask_part(mask.add(i), m, r);
            }
            cnt += L::count(m);
        }
    }
    cnt
}

/// Counts the lanes with `p1` and with `p2` (candidates only: keep lanes excluded).
#[inline(always)]
unsafe fn count2_pass<L: Lanes, const M1: u8, const M2: u8, const K: u8>(
    s: *const u32,
    n: usize,
    c1: u32,
    c2: u32,
    keep: *const u8,
) -> (usize, usize) {
    let (c1, c2) = (L::konst::<M1>(c1), L::konst::<M2>(c2));
    let (mut n1, mut n2) = (0, 0);
    let mut i = 0;
    let w = L::W;
    // SAFETY: reads stay in s[..n] / keep[..n].
    unsafe {
        while i + 4 * w <= n {
            let (mut m1, mut m2) = ([L::first(0); 4], [L::first(0); 4]);
            for j in 0..4 {
                let b = L::load(s.add(i + j * w));
                let np = L::npn(b);
                m1[j] = apply_keep::<L, K>(L::pred::<M1>(b, c1, np), keep.add(i + j * w));
                m2[j] = apply_keep::<L, K>(L::pred::<M2>(b, c2, np), keep.add(i + j * w));
            }
            n1 += L::group(m1).count_ones() as usize;
            n2 += L::group(m2).count_ones() as usize;
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            n1 += L::count(apply_keep::<L, K>(L::pred::<M1>(b, c1, np), keep.add(i)));
            n2 += L::count(apply_keep::<L, K>(L::pred::<M2>(b, c2, np), keep.add(i)));
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let m1 = L::and(L::pred::<M1>(b, c1, np), f);
            let m2 = L::and(L::pred::<M2>(b, c2, np), f);
            n1 += L::count(apply_keep_part::<L, K>(m1, keep.add(i), r));
            n2 += L::count(apply_keep_part::<L, K>(m2, keep.add(i), r));
        }
    }
    (n1, n2)
}

/// The band pass: counts the candidates with `hi` (when `HAS_HI`) and compresses the
/// candidates with `lo && !hi` to `out` (room for `n`): their indices `base + i` when
/// `IDX`, else their raw bits. Returns `(above, band)`. With `SPARSE` (the band is
/// expected to hold well under one lane per group), a group without band lanes skips
/// its compress-stores: a well-predicted branch instead of four stores.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn band_pass<
    L: Lanes,
    const MHI: u8,
    const MLO: u8,
    const HAS_HI: bool,
    const IDX: bool,
    const K: u8,
    const SPARSE: bool,
>(
    s: *const u32,
    n: usize,
    base: u32,
    chi: u32,
    clo: u32,
    keep: *const u8,
    out: *mut u32,
) -> (usize, usize) {
    let (chi, clo) = (L::konst::<MHI>(chi), L::konst::<MLO>(clo));
    let mut iv = L::iota(base);
    let (mut above, mut cnt) = (0, 0);
    let mut i = 0;
    let w = L::W;
    // SAFETY: as in threshold_pass.
    unsafe {
        while i + 4 * w <= n {
            let mut bv = [L::iota(0); 4];
            let (mut his, mut bands) = ([L::first(0); 4], [L::first(0); 4]);
            for j in 0..4 {
                let b = L::load(s.add(i + j * w));
                bv[j] = b;
                let np = L::npn(b);
                let mut band = L::pred::<MLO>(b, clo, np);
                if HAS_HI {
                    let hi = apply_keep::<L, K>(L::pred::<MHI>(b, chi, np), keep.add(i + j * w));
                    his[j] = hi;
                    band = L::andnot(band, hi);
                }
                bands[j] = apply_keep::<L, K>(band, keep.add(i + j * w));
            }
            if HAS_HI {
                above += L::group(his).count_ones() as usize;
            }
            let q = L::group(bands);
            if !SPARSE || q != 0 {
                let (o, total) = group_offsets::<L>(q);
                let mut v = iv;
                for j in 0..4 {
                    L::compress(out.add(cnt + o[j]), bands[j], if IDX { v } else { bv[j] });
                    v = L::step(v);
                }
                cnt += total;
            }
            for _ in 0..4 {
                iv = L::step(iv);
            }
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            let mut band = L::pred::<MLO>(b, clo, np);
            if HAS_HI {
                let hi = apply_keep::<L, K>(L::pred::<MHI>(b, chi, np), keep.add(i));
                above += L::count(hi);
                band = L::andnot(band, hi);
            }
            let band = apply_keep::<L, K>(band, keep.add(i));
            L::compress(out.add(cnt), band, if IDX { iv } else { b });
            cnt += L::count(band);
            iv = L::step(iv);
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let mut band = L::and(L::pred::<MLO>(b, clo, np), f);
            if HAS_HI {
                let hi = L::and(L::pred::<MHI>(b, chi, np), f);
                let hi = apply_keep_part::<L, K>(hi, keep.add(i), r);
                above += L::count(hi);
                band = L::andnot(band, hi);
            }
            let band = apply_keep_part::<L, K>(band, keep.add(i), r);
            L::compress_exact(out.add(cnt), band, if IDX { iv } else { b });
            cnt += L::count(band);
        }
    }
    (above, cnt)
}

/// Stores the selected lanes at `out + cnt` without writing past `cap`.
#[inline(always)]
unsafe fn store_capped<L: Lanes>(out: *mut u32, cnt: usize, cap: usize, m: L::M, v: L::V) {
    // SAFETY: the caller guarantees cnt + count(m) <= cap.
    unsafe {
        if cnt + L::W <= cap {
            L::compress(out.add(cnt), m, v);
        } else {
            L::compress_exact(out.add(cnt), m, v);
        }
    }
}

/// The output pass of top-k: the indices `base + i` of the candidates with key > T
/// (`gt`) plus the first `need` with key == T (`ge && !gt`), and with `K == KEEP_INCL`
/// every keep lane; exactly `cap` of them in total (the caller's count), written to
/// `out[..cap]` in ascending order. Stops once `cap` are written.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn output_pass<L: Lanes, const MGE: u8, const MGT: u8, const K: u8>(
    s: *const u32,
    n: usize,
    base: u32,
    cge: u32,
    cgt: u32,
    mut need: usize,
    keep: *const u8,
    out: *mut u32,
    cap: usize,
) -> usize {
    let (cge, cgt) = (L::konst::<MGE>(cge), L::konst::<MGT>(cgt));
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads stay in s[..n] / keep[..n]; stores stay in out[..cap] because the
    // total selected is exactly cap (store_capped never writes past it).
    unsafe {
        // Phase 1: ties at T still wanted.
        while need > 0 && i + L::W <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            let mut ge = L::pred::<MGE>(b, cge, np);
            let mut gt = L::pred::<MGT>(b, cgt, np);
            let mut kp = L::first(0);
            if K == KEEP_INCL {
                kp = L::keep(keep.add(i));
                ge = L::andnot(ge, kp);
                gt = L::andnot(gt, kp);
            }
            let eq = L::andnot(ge, gt);
            let e = L::count(eq);
            let mut take = if e <= need {
                need -= e;
                ge
            } else {
                let t = L::or(gt, L::lowest(eq, need));
                need = 0;
                t
            };
            if K == KEEP_INCL {
                take = L::or(take, kp);
            }
            store_capped::<L>(out, cnt, cap, take, iv);
            cnt += L::count(take);
            iv = L::step(iv);
            i += L::W;
        }
        // Phase 2: only key > T (and keeps), in groups of 4 blocks while whole-vector
        // stores cannot pass `cap`.
        let w = L::W;
        while cnt < cap && i + 4 * w <= n {
            let mut m = [L::first(0); 4];
            for (j, mj) in m.iter_mut().enumerate() {
                let b = L::load(s.add(i + j * w));
                *mj = apply_keep::<L, K>(L::pred::<MGT>(b, cgt, L::npn(b)), keep.add(i + j * w));
            }
            let (o, total) = group_offsets::<L>(L::group(m));
            if cnt + o[3] + w > cap {
                break;
            }
            for (j, &mj) in m.iter().enumerate() {
                L::compress(out.add(cnt + o[j]), mj, iv);
                iv = L::step(iv);
            }
            cnt += total;
            i += 4 * w;
        }
        while cnt < cap && i + L::W <= n {
            let b = L::load(s.add(i));
            let take = L::pred::<MGT>(b, cgt, L::npn(b));
            let take = apply_keep::<L, K>(take, keep.add(i));
            store_capped::<L>(out, cnt, cap, take, iv);
            cnt += L::count(take);
            iv = L::step(iv);
            i += L::W;
        }
        if cnt < cap && i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let mut ge = L::and(L::pred::<MGE>(b, cge, np), f);
            let mut gt = L::and(L::pred::<MGT>(b, cgt, np), f);
            let mut kp = L::first(0);
            if K == KEEP_INCL {
                kp = L::keep_part(keep.add(i), r);
                ge = L::andnot(ge, kp);
                gt = L::andnot(gt, kp);
            }
            let eq = L::andnot(ge, gt);
            let e = L::count(eq);
            let take = if need == 0 {
                gt
            } else if e <= need {
                ge
            } else {
                L::or(gt, L::lowest(eq, need))
            };
            let take = if K == KEEP_INCL {
                L::or(take, kp)
            } else {
                take
            };
            L::compress_exact(out.add(cnt), take, iv);
            cnt += L::count(take);
        }
    }
    cnt
}

/// Mask -> indices: `base + i` for the non-zero bytes of `mask[..n]`.
#[inline(always)]
pub(crate) unsafe fn mask_pass<L: Lanes>(
    mask: *const u8,
    n: usize,
    base: u32,
    out: *mut u32,
) -> usize {
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads in mask[..n]; stores as in threshold_pass.
    unsafe {
        while i + L::W <= n {
            let m = L::keep(mask.add(i));
            L::compress(out.add(cnt), m, iv);
            cnt += L::count(m);
            iv = L::step(iv);
            i += L::W;
        }
        if i < n {
            let m = L::keep_part(mask.add(i), n - i);
            L::compress_exact(out.add(cnt), m, iv);
            cnt += L::count(m);
        }
    }
    cnt
}

/// The number of non-zero bytes of `p[..n]`.
#[inline(always)]
pub(crate) unsafe fn count_nonzero<L: Lanes>(p: *const u8, n: usize) -> usize {
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads in p[..n].
    unsafe {
        while i + L::W <= n {
            cnt += L::count(L::keep(p.add(i)));
            i += L::W;
        }
        if i < n {
            cnt += L::count(L::keep_part(p.add(i), n - i));
        }
    }
    cnt
}

// ---------------------------------------------------------------------------------
// Drivers shared by every tier.
// ---------------------------------------------------------------------------------

/// Writes `start..start + len` as indices to `out`.
#[inline(always)]
unsafe fn write_range(out: *mut u32, start: usize, len: usize) {
    for j in 0..len {
        // SAFETY: the caller gives room for len indices.
        unsafe { *out.add(j) = (start + j) as u32 };
    }
}

/// Threshold selection of one row (see the module contract).
#[inline(always)]
pub(crate) unsafe fn threshold<L: Lanes>(a: &ThresholdArgs) -> usize {
    let n = a.n;
    let (kf, kl) = forced_ranges(n, a.keep_first, a.keep_last);
    let mid = n - kf - kl;
    let s = a.scores as *const u32;
    let pred = Pred::above(a.tau);
    let mut cnt = 0;
    // SAFETY (whole body): every range below lies in [0, n) of the caller's buffers.
    unsafe {
        if !a.out_idx.is_null() {
            write_range(a.out_idx, 0, kf);
        }
        if !a.out_mask.is_null() {
            core::ptr::write_bytes(a.out_mask, 1, kf);
        }
        cnt += kf;
        let keep = if a.keep.is_null() {
            a.keep
        } else {
            a.keep.add(kf)
        };
        let (sm, out, mask) = (
            s.add(kf),
            if a.out_idx.is_null() {
                a.out_idx
            } else {
                a.out_idx.add(kf)
            },
            if a.out_mask.is_null() {
                a.out_mask
            } else {
                a.out_mask.add(kf)
            },
        );
        cnt += with_mode!(pred, MODE, c => with_keep!(keep, KEEP_INCL, K => {
            match (a.out_idx.is_null(), a.out_mask.is_null()) {
                (false, false) => threshold_pass::<L, MODE, K, true, true>(sm, mid, kf as u32, c, keep, out, mask),
                (false, true) => threshold_pass::<L, MODE, K, true, false>(sm, mid, kf as u32, c, keep, out, mask),
                (true, false) => threshold_pass::<L, MODE, K, false, true>(sm, mid, kf as u32, c, keep, out, mask),
                (true, true) => threshold_pass::<L, MODE, K, false, false>(sm, mid, kf as u32, c, keep, out, mask),
            }
        }));
        if !a.out_idx.is_null() {
            write_range(a.out_idx.add(cnt), n - kl, kl);
        }
        if !a.out_mask.is_null() {
            core::ptr::write_bytes(a.out_mask.add(n - kl), 1, kl);
            core::ptr::write_bytes(a.out_mask.add(n), 0, a.mask_len - n);
        }
    }
    cnt + kl
}

/// Indices -> mask (a scatter; the same on every tier).
#[inline(always)]
pub(crate) unsafe fn indices_to_mask(idx: *const u32, count: usize, mask: *mut u8, n: usize) {
    // SAFETY: mask has n bytes, idx has count entries, each < n (contract).
    unsafe {
        core::ptr::write_bytes(mask, 0, n);
        for j in 0..count {
            *mask.add(*idx.add(j) as usize) = 1;
        }
    }
}

/// What the search for the k-th key found.
enum Found {
    /// The k-th key is `t`; take every candidate with key > t and the first `need`
    /// with key == t.
    Threshold { t: i32, need: usize },
    /// The selection (exactly `kk` indices, ascending) was already written.
    Written,
}

/// Candidates of a row region: `s[..m]` are the scores of indices `base..base + m`;
/// lanes whose keep byte is non-zero are not candidates.
#[derive(Clone, Copy)]
struct Region {
    s: *const u32,
    m: usize,
    base: u32,
    keep: *const u8,
}

/// The positions top-k samples in a region of `m > DIRECT_MAX` tokens: one pseudo-random
/// position in each of `sample_size(m)` equal strata, ascending. Each position is a hash
/// of its stratum number alone (no serial generator state), so the loads of the sample
/// overlap. Deterministic, so tests can build inputs that defeat the sample on purpose.
pub fn sample_positions(m: usize) -> impl Iterator<Item = usize> {
    let want = sample_size(m);
    let stride = m / want;
    (0..want).map(move |j| {
        let mut h = (j as u32 ^ 0x9e37_79b9).wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        // h * stride / 2^32 < stride: a multiply instead of a division.
        j * stride + ((h as u64 * stride as u64) >> 32) as usize
    })
}

/// Rows up to this length are selected directly on all their keys (no sampling).
pub const DIRECT_MAX: usize = 512;

/// Sample size for a region of `m` candidates.
pub fn sample_size(m: usize) -> usize {
    // ~ 4 sqrt(m), a power of two in [64, 4096].
    let target = 4 * isqrt(m);
    target.next_power_of_two().clamp(64, 4096).min(m)
}

fn isqrt(x: usize) -> usize {
    if x < 2 {
        return x;
    }
    let mut r = (x as f64).sqrt() as usize;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

/// Top-k of one row (see the module contract).
#[inline(always)]
pub(crate) unsafe fn topk<L: Lanes>(a: &TopkArgs) {
    let n = a.n;
    let k = a.k;
    let s = a.scores as *const u32;
    let (kf, kl) = forced_ranges(n, a.keep_first, a.keep_last);
    let m = n - kf - kl;
    // SAFETY (whole body): all ranges lie within the caller's buffers as the contract
    // describes; the scratch holds 2n words.
    unsafe {
        let keep = if a.keep.is_null() {
            a.keep
        } else {
            a.keep.add(kf)
        };
        let kept = if keep.is_null() {
            0
        } else {
            count_nonzero::<L>(keep, m)
        };
        let kk = k - kf - kl - kept; // candidates to choose
        let cands = m - kept;
        let cap = kk + kept; // indices written for the middle region
        write_range(a.out_idx, 0, kf);
        let out = a.out_idx.add(kf);
        let region = Region {
            s: s.add(kf),
            m,
            base: kf as u32,
            keep,
        };
        let found = if kk == 0 {
            Found::Threshold {
                t: i32::MAX,
                need: 0,
            }
        } else if kk == cands {
            Found::Threshold {
                t: i32::MIN,
                need: cands,
            }
        } else {
            find_kth::<L>(region, cands, kk, a.scratch, out)
        };
        if let Found::Threshold { t, need } = found {
            let ge = if t == i32::MAX {
                Pred::NEVER
            } else {
                Pred::ge(t)
            };
            let gt = Pred::gt(t);
            with_mode!(ge, MGE, cge => with_mode!(gt, MGT, cgt => with_keep!(keep, KEEP_INCL, K => {
                output_pass::<L, MGE, MGT, K>(region.s, m, region.base, cge, cgt, need, keep, out, cap)
            })));
        }
        write_range(a.out_idx.add(kf + cap), n - kl, kl);
        if a.order == Order::Score && k > 1 {
            sort_by_score(s, a.out_idx, k, a.scratch as *mut u64);
        }
        if !a.out_scores.is_null() {
            for j in 0..k {
                *a.out_scores.add(j) = *a.scores.add(*a.out_idx.add(j) as usize);
            }
        }
    }
}

/// Reorders `idx[..k]` by descending key, ties by ascending index (`pairs`: k u64).
#[inline(always)]
unsafe fn sort_by_score(s: *const u32, idx: *mut u32, k: usize, pairs: *mut u64) {
    // SAFETY: idx has k entries, pairs has room for k u64 (scratch >= 2n words, k <= n).
    unsafe {
        let p = core::slice::from_raw_parts_mut(pairs, k);
        for (j, e) in p.iter_mut().enumerate() {
            let i = *idx.add(j);
            *e = (((!ukey(*s.add(i as usize))) as u64) << 32) | i as u64;
        }
        p.sort_unstable();
        for (j, e) in p.iter().enumerate() {
            *idx.add(j) = *e as u32;
        }
    }
}

/// Finds the `kk`-th largest candidate key of the region (`0 < kk < cands`).
#[inline(always)]
unsafe fn find_kth<L: Lanes>(
    r: Region,
    cands: usize,
    kk: usize,
    scratch: *mut u32,
    out: *mut u32,
) -> Found {
    let m = r.m;
    // SAFETY: scratch holds 2m words: region 1 = scratch[..m], region 2 = scratch[m..].
    unsafe {
        let reg1 = scratch;
        let reg2 = scratch.add(m);
        if m <= DIRECT_MAX {
            // Every candidate key, then exact selection.
            let mut c = 0;
            for i in 0..m {
                if r.keep.is_null() || *r.keep.add(i) == 0 {
                    *reg2.add(c) = ukey(*r.s.add(i));
                    c += 1;
                }
            }
            return threshold_from_keys(reg2, c, kk);
        }

        // Stratified deterministic sample of candidate keys (in region 2).
        let smp = reg2 as *mut i32;
        let mut ns = 0;
        for i in sample_positions(m) {
            if r.keep.is_null() || *r.keep.add(i) == 0 {
                *smp.add(ns) = skey(*r.s.add(i));
                ns += 1;
            }
        }
        if ns < 16 {
            // The keep mask hides almost every sampled token: band everything.
            return band_all::<L>(r, kk, reg2);
        }
        let sample = core::slice::from_raw_parts_mut(smp, ns);
        // Expected rank of the k-th key in the sample (0-based, descending), and a
        // margin of ~2.5 standard deviations.
        let p = kk as f64 / cands as f64;
        let mid = p * ns as f64;
        let dev = 2.5 * (ns as f64 * p * (1.0 - p)).sqrt() + 1.5;
        let hi_rank = (mid - dev).floor();
        let lo_rank = (mid + dev).ceil();
        // Descending order statistics of the sample.
        let (hi, lo, smax) = if hi_rank < 0.0 && lo_rank < SMALL_RANK as f64 {
            // Small k: only the lower pivot, from a short sorted list of the largest.
            let (lo, smax) = small_rank(sample, lo_rank as usize);
            (None, lo, smax)
        } else {
            let mut rest: &mut [i32] = sample;
            let mut skipped = 0;
            let hi = if hi_rank >= 0.0 {
                let j = hi_rank as usize;
                let h = *rest.select_nth_unstable_by(j, |x, y| y.cmp(x)).1;
                // Everything after j ranks at or below it: the lower pivot is there.
                rest = &mut rest[j + 1..];
                skipped = j + 1;
                Some(h)
            } else {
                None
            };
            let lo = if (lo_rank as usize) < ns {
                let j = lo_rank as usize - skipped;
                Some(*rest.select_nth_unstable_by(j, |x, y| y.cmp(x)).1)
            } else {
                None
            };
            (hi, lo, *sample.iter().max().unwrap_or(&i32::MIN))
        };
        // Expected band lanes per group of 4 blocks.
        let per_group = |ranks: f64| ranks / ns as f64 * (4 * L::W) as f64;

        match (hi, lo) {
            (None, Some(lo)) if lo != smax => {
                // Small k: the band (lo, +inf) holds the answer; keep its indices.
                let sparse = per_group(lo_rank + 1.0) < SPARSE_LANES_PER_GROUP;
                let band = with_mode!(Pred::gt(lo), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => with_bool!(sparse, S => {
                    band_pass::<L, MLO, MLO, false, true, K, S>(r.s, m, r.base, 0, clo, r.keep, reg1).1
                })));
                if band >= kk {
                    for j in 0..band {
                        *reg2.add(j) = ukey(*r.s.add((*reg1.add(j) - r.base) as usize));
                    }
                    let found = threshold_from_keys(reg2, band, kk);
                    if !r.keep.is_null() {
                        return found;
                    }
                    // Without keep bytes the band (ascending indices) is the output.
                    let Found::Threshold { t, mut need } = found else {
                        return found;
                    };
                    let tu = (t as u32) ^ 0x8000_0000;
                    let mut w = 0;
                    for j in 0..band {
                        let i = *reg1.add(j);
                        let u = ukey(*r.s.add((i - r.base) as usize));
                        if u > tu || (u == tu && need > 0) {
                            if u == tu {
                                need -= 1;
                            }
                            *out.add(w) = i;
                            w += 1;
                        }
                    }
                    debug_assert_eq!(w, kk);
                    return Found::Written;
                }
                below_pivot::<L>(r, kk, lo, band, reg2)
            }
            (None, Some(lo)) => {
                // The pivot is the sample's maximum: ties at the top are likely.
                pivot_tie::<L>(r, kk, lo, reg2)
            }
            (Some(hi), Some(lo)) if hi == lo => pivot_tie::<L>(r, kk, hi, reg2),
            (Some(hi), lo) => {
                // Two pivots: count above hi, band (lo, hi] as raw bits in region 2.
                let lo_pred = match lo {
                    Some(lo) => Pred::gt(lo),
                    None => Pred::All,
                };
                let sparse = per_group(lo_rank - hi_rank) < SPARSE_LANES_PER_GROUP;
                let (above, band) = with_mode!(Pred::gt(hi), MHI, chi => with_mode!(lo_pred, MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => with_bool!(sparse, S => {
                    band_pass::<L, MHI, MLO, true, false, K, S>(r.s, m, r.base, chi, clo, r.keep, reg2)
                }))));
                if above >= kk {
                    // Missed high: band (hi, +inf).
                    let band = with_mode!(Pred::gt(hi), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => {
                        band_pass::<L, MLO, MLO, false, false, K, false>(r.s, m, r.base, 0, clo, r.keep, reg2).1
                    }));
                    keys_in_place(reg2, band);
                    threshold_from_keys(reg2, band, kk)
                } else if above + band >= kk {
                    keys_in_place(reg2, band);
                    threshold_from_keys(reg2, band, kk - above)
                } else {
                    // lo is Some here: with lo = -inf the band holds every candidate.
                    below_pivot::<L>(r, kk, lo.unwrap_or(i32::MIN), above + band, reg2)
                }
            }
            (None, None) => band_all::<L>(r, kk, reg2),
        }
    }
}

/// Sample ranks below this use [`small_rank`] instead of a quickselect.
const SMALL_RANK: usize = 32;

/// The `r`-th largest (0-based) of `x` (`None` when `r >= x.len()`) and the maximum,
/// by one pass that keeps the `r + 1` largest sorted (`r < SMALL_RANK`, `x` non-empty).
fn small_rank(x: &[i32], r: usize) -> (Option<i32>, i32) {
    let mut top = [i32::MIN; SMALL_RANK];
    let t = r + 1;
    let mut len = 0;
    for &v in x {
        if len < t {
            len += 1;
        } else if v <= top[t - 1] {
            continue;
        }
        // Insert v into top[..len] (descending), dropping the last.
        let mut j = len - 1;
        while j > 0 && top[j - 1] < v {
            top[j] = top[j - 1];
            j -= 1;
        }
        top[j] = v;
    }
    ((len == t).then_some(top[r]), top[0])
}

/// Every candidate's key into `keys`, then exact selection.
#[inline(always)]
unsafe fn band_all<L: Lanes>(r: Region, kk: usize, keys: *mut u32) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        let band = with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, M_ALL, M_ALL, false, false, K, false>(r.s, r.m, r.base, 0, 0, r.keep, keys).1
        });
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk)
    }
}

/// The k-th key is at most `lo`; `above` candidates have key > lo.
#[inline(always)]
unsafe fn below_pivot<L: Lanes>(
    r: Region,
    kk: usize,
    lo: i32,
    above: usize,
    keys: *mut u32,
) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        // How many equal lo?
        let (_, ge) = with_mode!(Pred::gt(lo), M1, c1 => with_mode!(Pred::ge(lo), M2, c2 => with_keep!(r.keep, KEEP_EXCL, K => {
            count2_pass::<L, M1, M2, K>(r.s, r.m, c1, c2, r.keep)
        })));
        if ge >= kk {
            return Found::Threshold {
                t: lo,
                need: kk - above,
            };
        }
        // Band (-inf, lo) including NaN.
        let band = with_mode!(Pred::ge(lo), MHI, chi => with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, MHI, M_ALL, true, false, K, false>(r.s, r.m, r.base, chi, 0, r.keep, keys).1
        }));
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk - ge)
    }
}

/// The sample's pivot `v` is probably tied with many candidates: count > v and >= v.
#[inline(always)]
unsafe fn pivot_tie<L: Lanes>(r: Region, kk: usize, v: i32, keys: *mut u32) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        let (gt, ge) = with_mode!(Pred::gt(v), M1, c1 => with_mode!(Pred::ge(v), M2, c2 => with_keep!(r.keep, KEEP_EXCL, K => {
            count2_pass::<L, M1, M2, K>(r.s, r.m, c1, c2, r.keep)
        })));
        if gt < kk && kk <= ge {
            return Found::Threshold {
                t: v,
                need: kk - gt,
            };
        }
        if gt >= kk {
            let band = with_mode!(Pred::gt(v), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => {
                band_pass::<L, MLO, MLO, false, false, K, false>(r.s, r.m, r.base, 0, clo, r.keep, keys).1
            }));
            keys_in_place(keys, band);
            return threshold_from_keys(keys, band, kk);
        }
        let band = with_mode!(Pred::ge(v), MHI, chi => with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, MHI, M_ALL, true, false, K, false>(r.s, r.m, r.base, chi, 0, r.keep, keys).1
        }));
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk - ge)
    }
}

/// Raw bits -> unsigned keys, in place.
#[inline(always)]
unsafe fn keys_in_place(p: *mut u32, len: usize) {
    // SAFETY: p holds len words.
    let keys = unsafe { core::slice::from_raw_parts_mut(p, len) };
    for x in keys {
        *x = ukey(*x);
    }
}

/// The `r`-th largest of `keys[..len]` (unsigned keys, `1 <= r <= len`) as a threshold:
/// the candidates outside `keys` that rank above it are all greater than every key in
/// it, so the ties still needed are `r - (keys greater than it)`.
#[inline(always)]
unsafe fn threshold_from_keys(keys: *mut u32, len: usize, r: usize) -> Found {
    // SAFETY: keys holds len words.
    let keys = unsafe { core::slice::from_raw_parts_mut(keys, len) };
    let (t, greater) = select_kth(keys, r);
    Found::Threshold {
        t: (t ^ 0x8000_0000) as i32,
        need: r - greater,
    }
}

/// The highest digit whose bucket holds the `r`-th largest value: `(digit, bucket size,
/// values in higher buckets)`.
#[inline(always)]
fn pick_digit(r: usize, bucket: impl Fn(usize) -> usize) -> (u32, usize, usize) {
    let mut acc = 0;
    for d in (0..256).rev() {
        let h = bucket(d);
        if acc + h >= r {
            return (d as u32, h, acc);
        }
        acc += h;
    }
    (0, 0, acc)
}

/// The `r`-th largest value of `keys` (`1 <= r <= len`) and how many values are
/// strictly greater than it. Radix selection on the bits that differ, 8 per round,
/// compacting the chosen bucket in place; small slices are sorted.
pub fn select_kth(keys: &mut [u32], mut r: usize) -> (u32, usize) {
    let mut len = keys.len();
    let mut greater = 0;
    loop {
        let cur = &mut keys[..len];
        if len <= 48 {
            cur.sort_unstable_by(|a, b| b.cmp(a));
            let t = cur[r - 1];
            let g = cur.iter().take_while(|&&x| x > t).count();
            return (t, greater + g);
        }
        let (mut mn, mut mx) = (u32::MAX, 0u32);
        for &x in cur.iter() {
            mn = mn.min(x);
            mx = mx.max(x);
        }
        if mn == mx {
            return (mn, greater);
        }
        let top = 31 - (mn ^ mx).leading_zeros();
        let shift = top.saturating_sub(7);
        let (digit, size, acc) = if len < 1024 {
            // One histogram: less to clear and scan than the four below.
            let mut hist = [0u32; 256];
            for &x in cur.iter() {
                hist[((x >> shift) & 0xff) as usize] += 1;
            }
            pick_digit(r, |d| hist[d] as usize)
        } else {
            // Four interleaved histograms, so runs of equal digits do not serialize.
            let mut hist = [[0u32; 256]; 4];
            let mut chunks = cur.chunks_exact(4);
            for c in &mut chunks {
                hist[0][((c[0] >> shift) & 0xff) as usize] += 1;
                hist[1][((c[1] >> shift) & 0xff) as usize] += 1;
                hist[2][((c[2] >> shift) & 0xff) as usize] += 1;
                hist[3][((c[3] >> shift) & 0xff) as usize] += 1;
            }
            for &x in chunks.remainder() {
                hist[0][((x >> shift) & 0xff) as usize] += 1;
            }
            pick_digit(r, |d| {
                (hist[0][d] + hist[1][d] + hist[2][d] + hist[3][d]) as usize
            })
        };
        r -= acc;
        greater += acc;
        let mut w = 0;
        for j in 0..len {
            let x = cur[j];
            cur[w] = x;
            w += (((x >> shift) & 0xff) == digit) as usize;
        }
        debug_assert_eq!(w, size);
        len = size;
    }
}
