//! Token compaction: moving rows by index (gather, scatter, in-place compaction, KV-cache
//! compaction) and the gated residual scatter-add `h[idx[j]] += g[j] * y[j]`.
//!
//! # Row copies ([`CopyRowsFn`])
//! For `j = first, first + 1, ..., n - 1` in that order, row `s = src_idx[j]` (or `j`
//! when `src_idx` is null) of `src` is copied to row `d = dst_idx[j]` (or `j`) of `dst`:
//! `row_bytes` bytes from `src + s * src_stride` to `dst + d * dst_stride` (strides in
//! bytes). Row copies are bit-exact and type-agnostic (any element size). `first`
//! (usually 0) lets a caller split one list into ranges, e.g. to walk several in-place
//! compactions in interleaved blocks.
//!
//! Contract (every variant):
//! - every row addressed is valid (`row_bytes` readable at each source row, writable at
//!   each destination row); `n`, `row_bytes` may be 0; `first <= n` (equal: nothing);
//! - for each `j`, the source and destination rows are either the very same address
//!   (the row is then skipped: in-place compaction's kept prefix) or disjoint;
//! - no destination row written at step `j` overlaps a source row read at a later step
//!   (distinct buffers; or in-place compaction with strictly ascending `src_idx`, which
//!   only ever moves a row towards the front, over rows already read or dropped);
//! - the index lists, when present, hold `n` entries (entries before `first` are never
//!   read) and are not written by the copy.
//!
//! Nothing outside the `row_bytes` of each addressed row is read or written (the
//! stride padding is never touched). Variants choose a strategy per row size (exact
//! and overlapping small moves, vector loops, and, for large copies, non-temporal
//! stores that bypass the cache: see [`NT_MIN_BYTES`]); all leave the same bytes.
//!
//! # Gated residual scatter-add ([`ScatterAddFn`])
//! For every `j < n` and column `c < d`, with `i = idx[j]`:
//! `h[i][c] = rne_T(x)` where `x = to_f32(h[i][c]) + g[j] * to_f32(y[j][c])` (or
//! `to_f32(h[i][c]) + to_f32(y[j][c])` when `g` is null), computed as an f32 product
//! rounded to f32, then an f32 sum rounded to f32 (two roundings, no fused
//! multiply-add: the result equals PyTorch's `h.index_add_(0, idx, g[:, None] * y)` in
//! f32). `rne_T` rounds to nearest, ties to even (exact for f32; subnormal results are
//! rounded, never flushed). A NaN result is stored as the canonical quiet NaN of `T`
//! (f32 `0x7fc00000`, f16 `0x7e00`, bf16 `0x7fc0`) because which operand's payload an
//! addition propagates differs between instruction sets. Results are bit-identical on
//! every tier, assuming the default floating-point environment (no flush-to-zero).
//!
//! Contract: `idx` holds `n` distinct indices of valid `h` rows (`d` elements at
//! `h + i * h_stride`), `y` holds `n` rows of `d` elements at `y_stride`, `g` is null or
//! holds `n` floats; `h` is disjoint from `y`, `g` and `idx`. Only the `d` elements of
//! the addressed `h` rows are written.

#[cfg(target_arch = "aarch64")]
mod rows_neon;
mod rows_scalar;
#[cfg(target_arch = "x86_64")]
mod rows_x86;

use crate::simd::{self, Elem, Tier};
use crate::KernelInfo;
use half::{bf16, f16};

/// Arguments of a row-copy kernel; see the module contract. Strides and sizes in bytes.
#[derive(Clone, Copy, Debug)]
pub struct CopyRowsArgs {
    pub src: *const u8,
    pub src_stride: usize,
    /// `n` source row indices, or null for rows `0..n`.
    pub src_idx: *const u32,
    pub dst: *mut u8,
    pub dst_stride: usize,
    /// `n` destination row indices, or null for rows `0..n`.
    pub dst_idx: *const u32,
    /// The first list position to copy (usually 0).
    pub first: usize,
    /// One past the last list position to copy.
    pub n: usize,
    pub row_bytes: usize,
    /// Bytes of the whole copy this call is one part of (blocks, ranges), for the choice
    /// of non-temporal stores ([`NT_MIN_BYTES`]); 0 means this call is the whole copy.
    /// Only a performance hint: the bytes left are the same either way.
    pub whole_bytes: usize,
}

/// `unsafe fn(&CopyRowsArgs)`: see the module contract.
pub type CopyRowsFn = unsafe fn(args: &CopyRowsArgs);

/// Copies of at least this many bytes in total (`n * row_bytes`, or the `whole_bytes`
/// hint of a copy split into several calls), with rows of at least
/// [`NT_MIN_ROW`] bytes, use non-temporal stores on x86: the destination would not fit
/// in the cache anyway, and streaming stores skip the read-for-ownership of every
/// destination line. Smaller copies keep their result in the cache for the next layer.
pub const NT_MIN_BYTES: usize = 8 << 20;
/// See [`NT_MIN_BYTES`].
pub const NT_MIN_ROW: usize = 256;

/// Every row-copy variant compiled for this target, scalar first.
pub static COPY_ROWS: &[KernelInfo<CopyRowsFn>] = &[
    crate::kernel!(compact::scalar::bytes_rows_memcpy),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx2::bytes_rows_y256nt),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx512::bytes_rows_y256nt),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(compact::neon::bytes_rows_q64),
];

/// Arguments of a gated scatter-add kernel; see the module contract. Strides in
/// elements.
#[derive(Clone, Copy, Debug)]
pub struct ScatterAddArgs<T> {
    pub h: *mut T,
    pub h_stride: usize,
    pub idx: *const u32,
    pub n: usize,
    pub y: *const T,
    pub y_stride: usize,
    /// `n` gates, or null for a gate of 1.
    pub g: *const f32,
    pub d: usize,
}

/// `unsafe fn(&ScatterAddArgs<T>)`: see the module contract.
pub type ScatterAddFn<T> = unsafe fn(args: &ScatterAddArgs<T>);

/// Every f32 scatter-add variant compiled for this target, scalar first.
pub static SCATTER_ADD_F32: &[KernelInfo<ScatterAddFn<f32>>] = &[
    crate::kernel!(compact::scalar::f32_scatter_add_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx2::f32_scatter_add_u4),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx512::f32_scatter_add_u4),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(compact::neon::f32_scatter_add_u4),
];

/// Every f16 scatter-add variant compiled for this target, scalar first.
pub static SCATTER_ADD_F16: &[KernelInfo<ScatterAddFn<f16>>] = &[
    crate::kernel!(compact::scalar::f16_scatter_add_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx2::f16_scatter_add_u4),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx512::f16_scatter_add_u4),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(compact::neon::f16_scatter_add_u4),
];

/// Every bf16 scatter-add variant compiled for this target, scalar first.
pub static SCATTER_ADD_BF16: &[KernelInfo<ScatterAddFn<bf16>>] = &[
    crate::kernel!(compact::scalar::bf16_scatter_add_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx2::bf16_scatter_add_u4),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(compact::avx512::bf16_scatter_add_u4),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(compact::neon::bf16_scatter_add_u4),
];

/// The canonical quiet NaN bit patterns stored for a NaN scatter-add result.
pub const CANONICAL_NAN_F32: u32 = 0x7fc0_0000;
/// See [`CANONICAL_NAN_F32`].
pub const CANONICAL_NAN_F16: u16 = 0x7e00;
/// See [`CANONICAL_NAN_F32`].
pub const CANONICAL_NAN_BF16: u16 = 0x7fc0;

// ---------------------------------------------------------------------------------------
// The row loop shared by every tier. A tier provides `RowCopy` strategies (vector moves
// need its intrinsics); the small scalar ones live here. Everything is
// `#[inline(always)]` so that it expands inside the tier's `#[target_feature]` function.

/// How one row is moved. `PF` bytes of the next row are prefetched (0 = none): of the
/// next source row when the source is indexed (gather), else of the next destination
/// row when that is indexed and the strategy stores through the cache (scatter).
pub(crate) trait RowCopy {
    const PF: usize = 0;
    /// Whether the strategy streams its stores past the cache.
    const NT: bool = false;
    /// # Safety
    /// `row_bytes` readable at `s`, writable at `d`, disjoint; `row_bytes` within the
    /// strategy's size class.
    unsafe fn copy(d: *mut u8, s: *const u8, row_bytes: usize);
}

/// One unaligned move of `K` bytes (1, 2, 4 or 8).
#[inline(always)]
pub(crate) unsafe fn move_word<const K: usize>(d: *mut u8, s: *const u8) {
    // SAFETY: the caller gives K readable bytes at s and K writable bytes at d.
    unsafe {
        match K {
            1 => *d = *s,
            2 => (d as *mut u16).write_unaligned((s as *const u16).read_unaligned()),
            4 => (d as *mut u32).write_unaligned((s as *const u32).read_unaligned()),
            8 => (d as *mut u64).write_unaligned((s as *const u64).read_unaligned()),
            _ => unreachable!(),
        }
    }
}

/// Rows of exactly `K` bytes, `K` in {1, 2, 4, 8}.
pub(crate) struct Word<const K: usize>;
impl<const K: usize> RowCopy for Word<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, _rb: usize) {
        // SAFETY: the row is K bytes.
        unsafe { move_word::<K>(d, s) }
    }
}

/// Rows of `K < rb < 2K` bytes, `K` in {2, 4, 8}: the first and the last `K` bytes
/// (overlapping), both loaded before either is stored.
pub(crate) struct WordPair<const K: usize>;
impl<const K: usize> RowCopy for WordPair<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: K <= rb, so both K-byte windows lie inside the row.
        unsafe {
            match K {
                2 => {
                    let a = (s as *const u16).read_unaligned();
                    let b = (s.add(rb - 2) as *const u16).read_unaligned();
                    (d as *mut u16).write_unaligned(a);
                    (d.add(rb - 2) as *mut u16).write_unaligned(b);
                }
                4 => {
                    let a = (s as *const u32).read_unaligned();
                    let b = (s.add(rb - 4) as *const u32).read_unaligned();
                    (d as *mut u32).write_unaligned(a);
                    (d.add(rb - 4) as *mut u32).write_unaligned(b);
                }
                8 => {
                    let a = (s as *const u64).read_unaligned();
                    let b = (s.add(rb - 8) as *const u64).read_unaligned();
                    (d as *mut u64).write_unaligned(a);
                    (d.add(rb - 8) as *mut u64).write_unaligned(b);
                }
                _ => unreachable!(),
            }
        }
    }
}

/// Index `j` through an optional map.
#[inline(always)]
unsafe fn map<const MAPPED: bool>(idx: *const u32, j: usize) -> usize {
    if MAPPED {
        // SAFETY: the contract gives n entries and j < n.
        unsafe { *idx.add(j) as usize }
    } else {
        j
    }
}

/// The row loop for one strategy and one combination of index maps. `SAME`: source and
/// destination are one buffer (in-place compaction), so a row that is already in place
/// is skipped; otherwise no row can coincide and the check is compiled out.
#[inline(always)]
unsafe fn rows_mapped<C: RowCopy, const SI: bool, const DI: bool, const SAME: bool>(
    a: &CopyRowsArgs,
) {
    let rb = a.row_bytes;
    for j in a.first..a.n {
        // SAFETY: the contract makes every addressed row valid.
        unsafe {
            let s = a.src.add(map::<SI>(a.src_idx, j) * a.src_stride);
            let d = a.dst.add(map::<DI>(a.dst_idx, j) * a.dst_stride);
            if C::PF > 0 && (SI || (DI && !C::NT)) && j + 1 < a.n {
                let next = if SI {
                    a.src.add(map::<SI>(a.src_idx, j + 1) * a.src_stride)
                } else {
                    a.dst.add(map::<DI>(a.dst_idx, j + 1) * a.dst_stride) as *const u8
                };
                let mut off = 0;
                while off < C::PF && off < rb {
                    prefetch(next.wrapping_add(off));
                    off += 64;
                }
            }
            if !SAME || s as usize != d as usize {
                C::copy(d, s, rb);
            }
        }
    }
}

/// A read prefetch into all cache levels (a no-op where the tier has none). Prefetches
/// never fault, so the address need not be valid.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch does not access memory architecturally; sse is baseline x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`rows_mapped`] with the index maps of `a`.
#[inline(always)]
pub(crate) unsafe fn rows<C: RowCopy>(a: &CopyRowsArgs) {
    let same = a.src as usize == a.dst as usize;
    // SAFETY: passed on from the caller.
    unsafe {
        match (!a.src_idx.is_null(), !a.dst_idx.is_null(), same) {
            (true, false, false) => rows_mapped::<C, true, false, false>(a),
            (true, false, true) => rows_mapped::<C, true, false, true>(a),
            (false, true, false) => rows_mapped::<C, false, true, false>(a),
            (false, true, true) => rows_mapped::<C, false, true, true>(a),
            (true, true, false) => rows_mapped::<C, true, true, false>(a),
            (true, true, true) => rows_mapped::<C, true, true, true>(a),
            (false, false, false) => rows_mapped::<C, false, false, false>(a),
            (false, false, true) => rows_mapped::<C, false, false, true>(a),
        }
    }
}

/// Dispatch on the row size for row sizes below 16 bytes, the same on every tier.
/// Returns false when the row size is 16 or more (the tier's own strategies apply).
#[inline(always)]
pub(crate) unsafe fn small_rows(a: &CopyRowsArgs) -> bool {
    // SAFETY: passed on from the caller.
    unsafe {
        match a.row_bytes {
            0 => {}
            1 => rows::<Word<1>>(a),
            2 => rows::<Word<2>>(a),
            3 => rows::<WordPair<2>>(a),
            4 => rows::<Word<4>>(a),
            5..=7 => rows::<WordPair<4>>(a),
            8 => rows::<Word<8>>(a),
            9..=15 => rows::<WordPair<8>>(a),
            _ => return false,
        }
    }
    true
}

/// Whether a copy streams its stores past the cache (see [`NT_MIN_BYTES`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn use_nt(a: &CopyRowsArgs) -> bool {
    a.row_bytes >= NT_MIN_ROW
        && a.n
            .saturating_sub(a.first)
            .saturating_mul(a.row_bytes)
            .max(a.whole_bytes)
            >= NT_MIN_BYTES
}

// ---------------------------------------------------------------------------------------
// The scatter-add, written once for every tier.

/// `h + g * y` (or `h + y`), a NaN made the canonical one.
#[inline(always)]
fn add_v<S: Tier, const GATED: bool>(h: S::F, y: S::F, g: S::F) -> S::F {
    let t = if GATED { S::mul(g, y) } else { y };
    simd::canon_nan::<S>(S::add(h, t))
}

/// One row: 4 vectors per step, then one, then a partial vector.
///
/// # Safety
/// `hr` and `yr` valid for `d` elements.
#[inline(always)]
unsafe fn add_row<S: Tier, T: Elem, const GATED: bool>(
    hr: *mut T,
    yr: *const T,
    g: S::F,
    d: usize,
) {
    let w = S::LANES;
    let ld = |p: *const T| unsafe { simd::load_elem::<S, T>(p) };
    // SAFETY: every access lies in [0, d) of the two rows.
    unsafe {
        let mut c = 0;
        while c + 4 * w <= d {
            let y: [S::F; 4] = core::array::from_fn(|u| ld(yr.add(c + u * w)));
            let h: [S::F; 4] = core::array::from_fn(|u| ld(hr.add(c + u * w)));
            for u in 0..4 {
                simd::store_elem::<S, T>(hr.add(c + u * w), add_v::<S, GATED>(h[u], y[u], g));
            }
            c += 4 * w;
        }
        while c + w <= d {
            let v = add_v::<S, GATED>(ld(hr.add(c)), ld(yr.add(c)), g);
            simd::store_elem::<S, T>(hr.add(c), v);
            c += w;
        }
        if c < d {
            let k = d - c;
            let v = add_v::<S, GATED>(S::load_part(hr.add(c), k), S::load_part(yr.add(c), k), g);
            S::store_part(hr.add(c), v, k);
        }
    }
}

/// The gated residual scatter-add (see the module contract), rows in list order, the
/// head of the next destination row prefetched.
///
/// # Safety
/// The module contract; the CPU supports the tier.
#[inline(always)]
unsafe fn scatter_add<S: Tier, T: Elem>(a: &ScatterAddArgs<T>) {
    for j in 0..a.n {
        // SAFETY: the contract makes idx[j], row idx[j] of h, row j of y and g[j] valid.
        unsafe {
            let hr = a.h.add(*a.idx.add(j) as usize * a.h_stride);
            let yr = a.y.add(j * a.y_stride);
            if j + 1 < a.n {
                // The head of the next destination row (its index is not predictable).
                let next = a.h.add(*a.idx.add(j + 1) as usize * a.h_stride) as *const u8;
                for line in 0..4 {
                    S::prefetch(next.wrapping_add(64 * line));
                }
            }
            if a.g.is_null() {
                add_row::<S, T, false>(hr, yr, S::splat(0.0), a.d);
            } else {
                add_row::<S, T, true>(hr, yr, S::splat(*a.g.add(j)), a.d);
            }
        }
    }
}

/// The entry points of one tier: its row copy (`$rows`) and the scatter-adds.
macro_rules! entries {
    ($isa:ident, $tier:ident, $rows:path, $copy:ident, $f32:ident, $f16:ident, $bf16:ident) => {
        #[doc = concat!("The ", stringify!($isa), " compaction entry points.")]
        pub mod $isa {
            #[allow(unused_imports)]
            use super::*;
            simd::tier_fn!(
                $isa,
                /// Row moves by index (see the module contract).
                ///
                /// # Safety
                /// The CPU supports the tier; see the module contract.
                pub unsafe fn $copy(a: &CopyRowsArgs) {
                    // SAFETY: passed on from the caller.
                    unsafe { $rows(a) }
                }
            );
            entries!(@add $isa, $tier, $f32, f32);
            entries!(@add $isa, $tier, $f16, f16);
            entries!(@add $isa, $tier, $bf16, bf16);
        }
    };
    (@add $isa:ident, $tier:ident, $name:ident, $t:ident) => {
        simd::tier_fn!(
            $isa,
            /// The gated residual scatter-add (see the module contract).
            ///
            /// # Safety
            /// The CPU supports the tier; see the module contract.
            pub unsafe fn $name(a: &ScatterAddArgs<$t>) {
                // SAFETY: passed on from the caller.
                unsafe { scatter_add::<simd::$tier, $t>(a) }
            }
        );
    };
}

entries!(
    scalar,
    Scalar,
    rows_scalar::copy_rows,
    bytes_rows_memcpy,
    f32_scatter_add_u1,
    f16_scatter_add_u1,
    bf16_scatter_add_u1
);
// The x86 tiers share the 256-bit row moves of `rows_x86`.
#[cfg(target_arch = "x86_64")]
entries!(
    avx2,
    Avx2,
    rows_x86::copy_rows,
    bytes_rows_y256nt,
    f32_scatter_add_u4,
    f16_scatter_add_u4,
    bf16_scatter_add_u4
);
#[cfg(target_arch = "x86_64")]
entries!(
    avx512,
    Avx512,
    rows_x86::copy_rows,
    bytes_rows_y256nt,
    f32_scatter_add_u4,
    f16_scatter_add_u4,
    bf16_scatter_add_u4
);
#[cfg(target_arch = "aarch64")]
entries!(
    neon,
    Neon,
    rows_neon::copy_rows,
    bytes_rows_q64,
    f32_scatter_add_u4,
    f16_scatter_add_u4,
    bf16_scatter_add_u4
);
