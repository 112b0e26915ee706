//! Token compaction: gather rows by index, scatter them back, the gated residual
//! scatter-add, in-place stable compaction, and KV-cache compaction.
//!
//! # Index rules
//! Token indices are `u32`. Every operation checks its index list before it writes
//! anything:
//! - out-of-range indices are always an error (`OUT_OF_RANGE`), and take precedence
//!   over the other index errors;
//! - [`Kernels::gather_rows`] accepts duplicates and any order;
//! - [`Kernels::scatter_rows`] and [`Kernels::scatter_add_rows`] forbid duplicates
//!   (`DUPLICATE_INDEX`: the result would depend on the order of the writes) and accept
//!   any order;
//! - the in-place operations, [`Kernels::compact_rows`] and [`Kernels::kv_compact`],
//!   require strictly ascending lists (`UNSORTED_INDEX`, or `DUPLICATE_INDEX` for two
//!   equal neighbours; the first offending position decides): ascending order is what
//!   makes compaction in place possible and stable.
//!
//! Cost of the checks (all branch-free within blocks, so the compiler vectorizes
//! them): a gather list is read once (range); an ascending list (what the selection
//! family returns) is read once (order, then its last element for the range). An
//! unsorted list given to scatter or scatter-add is then checked for range and with a
//! bitmap of the destination rows, in a thread-local buffer that only grows; that pass
//! starts over from the beginning of the list, so the indices before the first descent
//! (rounded up to a block of 512) are read twice: at most two passes in all. A bitmap
//! larger than 4 words per index is replaced by sorting a copy of the list.

use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::{Element, Matrix, MatrixMut};
use crate::parallel::{self, MoveWaves, Shared};
use crate::Kernels;
use core::mem::size_of;
use tokenroute_kernels::compact::{CopyRowsArgs, ScatterAddArgs};

/// What an index list must satisfy (besides being in range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Any order, duplicates allowed.
    InRange,
    /// Any order, no duplicates.
    Distinct,
    /// Strictly ascending.
    Ascending,
}

const BLOCK: usize = 512;

fn out_of_range() -> Error {
    Error::new(ErrorKind::OutOfRange, "index out of range")
}

/// Whether every index is `< n`: one branch-free pass (vectorized by the compiler).
fn all_in_range(idx: &[u32], n: usize) -> bool {
    if n > u32::MAX as usize {
        return true;
    }
    let n = n as u32;
    !idx.iter().fold(false, |bad, &x| bad | (x >= n))
}

/// The length of the longest prefix, in whole blocks of [`BLOCK`] (or the whole list),
/// that is strictly ascending. Branch-free within a block, so that it vectorizes; the
/// range of an ascending list is then its last element's.
fn ascending_prefix(idx: &[u32]) -> usize {
    let mut prev: Option<u32> = None;
    let mut done = 0;
    for block in idx.chunks(BLOCK) {
        let unordered = block[1..]
            .iter()
            .zip(block)
            .fold(false, |bad, (&b, &a)| bad | (b <= a));
        if unordered || prev.is_some_and(|p| block[0] <= p) {
            return done;
        }
        prev = Some(block[block.len() - 1]);
        done += block.len();
    }
    done
}

/// Range and duplicates of an unsorted list.
fn check_distinct_unsorted(idx: &[u32], n: usize) -> Result<()> {
    if !all_in_range(idx, n) {
        return Err(out_of_range());
    }
    let dup = Error::new(ErrorKind::DuplicateIndex, "duplicate index");
    // Every index is < min(n, 2^32).
    let words = n.min(1 << 32).div_ceil(64);
    // A bitset over the index range when it is small next to the list, else a sorted
    // copy; both in the thread's compaction scratch (crate::scratch).
    let kind = crate::scratch::Kind::Compact;
    let distinct = if words <= 4 * idx.len() + 1024 {
        crate::scratch::with_scratch_of(kind, words, |bits: &mut [u64]| {
            bits.fill(0);
            idx.iter().all(|&i| {
                let (w, b) = ((i >> 6) as usize, 1u64 << (i & 63));
                let fresh = bits[w] & b == 0;
                bits[w] |= b;
                fresh
            })
        })?
    } else {
        crate::scratch::with_scratch_of(kind, idx.len(), |sorted: &mut [u32]| {
            sorted.copy_from_slice(idx);
            sorted.sort_unstable();
            sorted.windows(2).all(|w| w[0] != w[1])
        })?
    };
    if distinct {
        Ok(())
    } else {
        Err(dup)
    }
}

/// Checks `idx` against `n` rows under `rule`; see the module documentation.
pub(crate) fn check_indices(idx: &[u32], n: usize, rule: Rule) -> Result<()> {
    if rule == Rule::InRange {
        ensure!(all_in_range(idx, n), OutOfRange, "index out of range");
        return Ok(());
    }
    let start = ascending_prefix(idx);
    if start == idx.len() {
        // Strictly ascending: in range when the last (largest) index is.
        ensure!(
            idx.last().is_none_or(|&last| (last as u64) < n as u64),
            OutOfRange,
            "index out of range"
        );
        return Ok(());
    }
    if rule == Rule::Distinct {
        return check_distinct_unsorted(idx, n);
    }
    ensure!(all_in_range(idx, n), OutOfRange, "index out of range");
    for j in start.max(1)..idx.len() {
        if idx[j] == idx[j - 1] {
            return Err(Error::new(ErrorKind::DuplicateIndex, "duplicate index"));
        }
        if idx[j] < idx[j - 1] {
            return Err(Error::new(
                ErrorKind::UnsortedIndex,
                "index list not ascending",
            ));
        }
    }
    unreachable!("ascending_prefix stopped at a block without a violation")
}

/// A stride in bytes. A matrix of at most one row may carry any stride (it is never
/// used), so it is not multiplied; otherwise `stride * size` fits because the data
/// slice spans at least one full stride.
fn byte_stride<T>(rows: usize, stride: usize) -> usize {
    if rows <= 1 {
        0
    } else {
        stride * size_of::<T>()
    }
}

/// Whether a KV cache is laid out token-major or head-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvLayout {
    /// `[n_tokens, n_heads, head_dim]`: row `(t, h)` at `t * token_stride + h *
    /// head_stride`, with `head_stride >= head_dim` and `token_stride >= (n_heads - 1) *
    /// head_stride + head_dim`.
    TokenMajor,
    /// `[n_heads, n_tokens, head_dim]`: row `(t, h)` at `h * head_stride + t *
    /// token_stride`, with `token_stride >= head_dim` and `head_stride >= (n_tokens - 1)
    /// * token_stride + head_dim` (a head stride for a larger capacity is fine).
    HeadMajor,
}

/// A mutable view of one KV-cache tensor (keys or values): `n_tokens x n_heads` rows of
/// `head_dim` elements, strides in elements. The stride rules of [`KvLayout`] make every
/// row disjoint from every other.
#[derive(Debug)]
pub struct KvCacheMut<'a, T> {
    data: &'a mut [T],
    layout: KvLayout,
    n_tokens: usize,
    n_heads: usize,
    head_dim: usize,
    token_stride: usize,
    head_stride: usize,
}

fn mul(a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b).ok_or(Error::new(
        ErrorKind::SizeOverflow,
        "KV-cache size overflows",
    ))
}

fn add(a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or(Error::new(
        ErrorKind::SizeOverflow,
        "KV-cache size overflows",
    ))
}

impl<'a, T> KvCacheMut<'a, T> {
    /// Checks the strides against the layout (`BAD_STRIDE`), the sizes for overflow
    /// (`SIZE_OVERFLOW`) and that `data` holds every row (`BUFFER_TOO_SMALL`).
    pub fn new(
        data: &'a mut [T],
        layout: KvLayout,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        token_stride: usize,
        head_stride: usize,
    ) -> Result<Self> {
        let need = Self::span(
            layout,
            n_tokens,
            n_heads,
            head_dim,
            token_stride,
            head_stride,
        )?;
        ensure!(
            data.len() >= need,
            BufferTooSmall,
            "KV-cache data shorter than its rows"
        );
        Ok(KvCacheMut {
            data,
            layout,
            n_tokens,
            n_heads,
            head_dim,
            token_stride,
            head_stride,
        })
    }

    /// A dense cache: `[n_tokens, n_heads, head_dim]` or `[n_heads, n_tokens, head_dim]`.
    pub fn dense(
        data: &'a mut [T],
        layout: KvLayout,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let (ts, hs) = match layout {
            KvLayout::TokenMajor => (mul(n_heads, head_dim)?, head_dim),
            KvLayout::HeadMajor => (head_dim, mul(n_tokens, head_dim)?),
        };
        Self::new(data, layout, n_tokens, n_heads, head_dim, ts, hs)
    }

    /// Elements spanned by the rows; checks the stride rules.
    pub(crate) fn span(
        layout: KvLayout,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        token_stride: usize,
        head_stride: usize,
    ) -> Result<usize> {
        let (outer_n, outer_s, inner_n, inner_s) = match layout {
            KvLayout::TokenMajor => (n_tokens, token_stride, n_heads, head_stride),
            KvLayout::HeadMajor => (n_heads, head_stride, n_tokens, token_stride),
        };
        ensure!(
            inner_s >= head_dim,
            BadStride,
            "KV-cache inner stride smaller than head_dim"
        );
        let inner_span = add(mul(inner_n.max(1) - 1, inner_s)?, head_dim)?;
        ensure!(
            outer_s >= inner_span,
            BadStride,
            "KV-cache outer stride smaller than the rows it holds"
        );
        if n_tokens == 0 || n_heads == 0 {
            return Ok(0);
        }
        add(mul(outer_n - 1, outer_s)?, inner_span)
    }
}

/// Which tokens a KV-cache compaction keeps.
#[derive(Clone, Copy, Debug)]
pub enum KvKeep<'a> {
    /// One strictly ascending list for every head.
    Shared(&'a [u32]),
    /// `n_heads` strictly ascending lists of the same length, head after head (H2O /
    /// SnapKV-style eviction per head).
    PerHead(&'a [u32]),
}

impl Kernels {
    /// Gathers rows: `dst[j] = src[idx[j]]` for every `j < idx.len()`.
    ///
    /// Any element type (the rows are copied bit for bit). `dst` has one row per index
    /// and rows as long as `src`'s. Indices may repeat and come in any order; an index
    /// `>= src.rows()` is `OUT_OF_RANGE`, and on error nothing is written.
    pub fn gather_rows<T: Copy>(
        &self,
        src: Matrix<'_, T>,
        idx: &[u32],
        dst: MatrixMut<'_, T>,
    ) -> Result<()> {
        self.gather_rows_part(src, idx, dst, 0)
    }

    /// [`Kernels::gather_rows`] as one part of a larger gather of `whole_bytes` bytes
    /// (for the kernel's choice of streaming stores; 0: this call is the whole).
    pub(crate) fn gather_rows_part<T: Copy>(
        &self,
        src: Matrix<'_, T>,
        idx: &[u32],
        dst: MatrixMut<'_, T>,
        whole_bytes: usize,
    ) -> Result<()> {
        ensure!(
            dst.cols == src.cols,
            InvalidArgument,
            "src and dst rows differ in length"
        );
        ensure!(
            dst.rows == idx.len(),
            InvalidArgument,
            "dst must have one row per index"
        );
        check_indices(idx, src.rows, Rule::InRange)?;
        let a = CopyRowsArgs {
            src: src.data.as_ptr() as *const u8,
            src_stride: byte_stride::<T>(src.rows, src.stride),
            src_idx: idx.as_ptr(),
            dst: dst.data.as_mut_ptr() as *mut u8,
            dst_stride: byte_stride::<T>(dst.rows, dst.stride),
            dst_idx: core::ptr::null(),
            first: 0,
            n: idx.len(),
            row_bytes: src.cols.saturating_mul(size_of::<T>()),
            whole_bytes: if whole_bytes == 0 {
                idx.len()
                    .saturating_mul(src.cols)
                    .saturating_mul(size_of::<T>())
            } else {
                whole_bytes
            },
        };
        // SAFETY: both views hold every row they describe, indices are in range, and
        // `dst` is a unique borrow, disjoint from `src` and `idx`; units copy disjoint
        // destination rows.
        unsafe { self.copy_rows_units(a) }
    }

    /// Runs a row copy without in-place overlap as units of consecutive list positions
    /// (each destination row is written by one unit; a copy is exact, so any split gives
    /// the same bytes). `whole_bytes` should hold the whole copy's size, so that every
    /// unit makes the kernel's choice of stores for the whole.
    ///
    /// # Safety
    /// `a` satisfies the row-copy contract, and no destination row is a source row.
    unsafe fn copy_rows_units(&self, a: CopyRowsArgs) -> Result<()> {
        let (f, a) = (self.copy_rows, Shared(a));
        let row_work = a.0.row_bytes.saturating_mul(2).saturating_add(8);
        let n = a.0.n;
        parallel::for_each_range(
            n,
            parallel::items_per_unit(row_work),
            n.saturating_mul(row_work),
            &|r| {
                let mut a = a.get();
                (a.first, a.n) = (r.start, r.end);
                // SAFETY: the caller's contract, on a sub-range of the list.
                unsafe { f(&a) };
                Ok(())
            },
        )
    }

    /// Runs an in-place compaction `dst row j = src row keep[j]` for `j < keep.len()`
    /// (strictly ascending `keep`) as pieces of consecutive positions in waves that never
    /// overwrite a row a piece of an earlier position has yet to read
    /// ([`MoveWaves`]). `copy(j0, j1)` moves positions `j0..j1`; `src(j0, j1)` is the range
    /// of source rows it reads (ascending with `j0`, starting at or after `j0`).
    fn compact_waves(
        &self,
        n_keep: usize,
        row_work: usize,
        src: &(dyn Fn(usize, usize) -> core::ops::Range<usize> + Sync),
        copy: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        let per = parallel::items_per_unit(row_work).max(n_keep.div_ceil(parallel::MAX_PIECES));
        let pieces = n_keep.div_ceil(per);
        let span = |p: usize| (p * per, n_keep.min((p + 1) * per));
        let plan = MoveWaves::plan(
            pieces,
            &|p| {
                let (j0, j1) = span(p);
                src(j0, j1)
            },
            &|p| {
                let (j0, j1) = span(p);
                j0..j1
            },
        );
        plan.run(n_keep.saturating_mul(row_work), &|p| {
            let (j0, j1) = span(p);
            copy(j0, j1);
            Ok(())
        })
    }

    /// Scatters rows: `dst[idx[j]] = src[j]` for every `j < idx.len()`; the other rows
    /// of `dst` are left as they are.
    ///
    /// Any element type. `src` has one row per index. Indices may come in any order but
    /// must be distinct (`DUPLICATE_INDEX`) and `< dst.rows()` (`OUT_OF_RANGE`); on
    /// error nothing is written.
    pub fn scatter_rows<T: Copy>(
        &self,
        src: Matrix<'_, T>,
        idx: &[u32],
        dst: MatrixMut<'_, T>,
    ) -> Result<()> {
        ensure!(
            dst.cols == src.cols,
            InvalidArgument,
            "src and dst rows differ in length"
        );
        ensure!(
            src.rows == idx.len(),
            InvalidArgument,
            "src must have one row per index"
        );
        check_indices(idx, dst.rows, Rule::Distinct)?;
        let a = CopyRowsArgs {
            src: src.data.as_ptr() as *const u8,
            src_stride: byte_stride::<T>(src.rows, src.stride),
            src_idx: core::ptr::null(),
            dst: dst.data.as_mut_ptr() as *mut u8,
            dst_stride: byte_stride::<T>(dst.rows, dst.stride),
            dst_idx: idx.as_ptr(),
            first: 0,
            n: idx.len(),
            row_bytes: src.cols.saturating_mul(size_of::<T>()),
            whole_bytes: idx
                .len()
                .saturating_mul(src.cols)
                .saturating_mul(size_of::<T>()),
        };
        // SAFETY: as in gather_rows; distinct indices make the written rows disjoint.
        unsafe { self.copy_rows_units(a) }
    }

    /// The gated residual scatter-add of Mixture-of-Depths:
    /// `h[idx[j]] = h[idx[j]] + gate[j] * y[j]` for every `j < idx.len()` (or
    /// `h[idx[j]] + y[j]` when `gate` is `None`); the other rows of `h` keep their state.
    ///
    /// `y` is the block's output delta, so the gate scales only the delta, never the
    /// residual stream. Arithmetic is f32: the product rounded to f32, then the sum
    /// rounded to f32 (no fused multiply-add, so f32 results equal PyTorch's
    /// `h.index_add_(0, idx, gate[:, None] * y)`), then rounded to `T` to nearest even
    /// (subnormals kept). A NaN result is stored as the canonical quiet NaN of `T`.
    /// Bit-identical on every ISA level. Indices in any order, distinct
    /// (`DUPLICATE_INDEX`), `< h.rows()` (`OUT_OF_RANGE`); `gate` has one value per
    /// index. On error nothing is written.
    pub fn scatter_add_rows<T: Element>(
        &self,
        h: MatrixMut<'_, T>,
        idx: &[u32],
        y: Matrix<'_, T>,
        gate: Option<&[f32]>,
    ) -> Result<()> {
        ensure!(
            y.cols == h.cols,
            InvalidArgument,
            "h and y rows differ in length"
        );
        ensure!(
            y.rows == idx.len(),
            InvalidArgument,
            "y must have one row per index"
        );
        if let Some(g) = gate {
            ensure!(
                g.len() == idx.len(),
                InvalidArgument,
                "gate must have one value per index"
            );
        }
        check_indices(idx, h.rows, Rule::Distinct)?;
        if idx.is_empty() {
            return Ok(());
        }
        let a = ScatterAddArgs {
            h: h.data.as_mut_ptr(),
            h_stride: if h.rows <= 1 { 0 } else { h.stride },
            idx: idx.as_ptr(),
            n: idx.len(),
            y: y.data.as_ptr(),
            y_stride: if y.rows <= 1 { 0 } else { y.stride },
            g: gate.map_or(core::ptr::null(), <[f32]>::as_ptr),
            d: h.cols,
        };
        // Distinct indices: units of consecutive list positions write disjoint rows.
        let (f, a) = (T::scatter_add_fn(self), Shared(a));
        let row_work = h.cols.saturating_mul(3 * size_of::<T>()).saturating_add(8);
        parallel::for_each_range(
            idx.len(),
            parallel::items_per_unit(row_work),
            idx.len().saturating_mul(row_work),
            &|r| {
                let mut a = a.get();
                // SAFETY: the views hold every row, indices are distinct and in range, and
                // `h` is a unique borrow, disjoint from `y`, `gate` and `idx`; a unit
                // takes positions r of the list, of y and of the gates.
                unsafe {
                    a.idx = a.idx.add(r.start);
                    a.y = a.y.add(r.start * a.y_stride);
                    if !a.g.is_null() {
                        a.g = a.g.add(r.start);
                    }
                    a.n = r.len();
                    f(&a)
                };
                Ok(())
            },
        )
    }

    /// In-place stable compaction (token pruning): moves rows `keep[0], keep[1], ...` to
    /// rows `0, 1, ...` in that order and returns the new row count, `keep.len()`.
    ///
    /// Any element type. `keep` must be strictly ascending (`UNSORTED_INDEX`,
    /// `DUPLICATE_INDEX`) and `< data.rows()` (`OUT_OF_RANGE`). Rows from `keep.len()`
    /// on keep their previous contents; a kept prefix that is already in place is not
    /// touched. On error nothing is written. Use the same call with `cols = 1` for the
    /// per-token side arrays (position ids, attention masks).
    pub fn compact_rows<T: Copy>(&self, data: MatrixMut<'_, T>, keep: &[u32]) -> Result<usize> {
        check_indices(keep, data.rows, Rule::Ascending)?;
        let p = data.data.as_mut_ptr() as *mut u8;
        let stride = byte_stride::<T>(data.rows, data.stride);
        let a = CopyRowsArgs {
            src: p,
            src_stride: stride,
            src_idx: keep.as_ptr(),
            dst: p,
            dst_stride: stride,
            dst_idx: core::ptr::null(),
            first: 0,
            n: keep.len(),
            row_bytes: data.cols.saturating_mul(size_of::<T>()),
            whole_bytes: keep
                .len()
                .saturating_mul(data.cols)
                .saturating_mul(size_of::<T>()),
        };
        let (f, a) = (self.copy_rows, Shared(a));
        self.compact_waves(
            keep.len(),
            a.0.row_bytes.saturating_mul(2).saturating_add(8),
            &|j0, j1| keep[j0] as usize..keep[j1 - 1] as usize + 1,
            &|j0, j1| {
                let mut a = a.get();
                (a.first, a.n) = (j0, j1);
                // SAFETY: the view holds every row; `keep` is strictly ascending and in
                // range, so row keep[j] >= j is either row j itself (skipped) or a row
                // not yet written and never read again (the kernel's in-place contract);
                // the waves keep that true across pieces.
                unsafe { f(&a) };
            },
        )?;
        Ok(keep.len())
    }

    /// KV-cache compaction in place: keeps the tokens of `keep` (strictly ascending, `<
    /// n_tokens`), stable, moving them to token positions `0, 1, ...` of every head, and
    /// returns the new token count. With [`KvKeep::PerHead`] each head keeps its own
    /// tokens (the same number in every head). Token positions from the new count on
    /// keep their previous contents. On error (`OUT_OF_RANGE`, `UNSORTED_INDEX`,
    /// `DUPLICATE_INDEX`, `INVALID_ARGUMENT` for a per-head list whose length is not a
    /// multiple of `n_heads`) nothing is written. Call it once for the keys and once for
    /// the values.
    pub fn kv_compact<T: Copy>(&self, cache: KvCacheMut<'_, T>, keep: KvKeep<'_>) -> Result<usize> {
        let c = cache;
        let (n_keep, per_head) = match keep {
            KvKeep::Shared(k) => {
                check_indices(k, c.n_tokens, Rule::Ascending)?;
                (k.len(), false)
            }
            KvKeep::PerHead(k) => {
                if c.n_heads == 0 {
                    ensure!(
                        k.is_empty(),
                        InvalidArgument,
                        "per-head lists for a cache without heads"
                    );
                    return Ok(0);
                }
                ensure!(
                    k.len() % c.n_heads == 0,
                    InvalidArgument,
                    "per-head keep lists must have the same length in every head"
                );
                let n_keep = k.len() / c.n_heads;
                // Empty lists hold nothing to check (and n_heads may be huge).
                let checked = if n_keep == 0 { 0 } else { c.n_heads };
                for h in 0..checked {
                    check_indices(
                        &k[h * n_keep..(h + 1) * n_keep],
                        c.n_tokens,
                        Rule::Ascending,
                    )?;
                }
                (n_keep, true)
            }
        };
        let list = |h: usize| match keep {
            KvKeep::Shared(k) => k.as_ptr(),
            // SAFETY (of the later use): h < n_heads, so the list lies in `k`.
            KvKeep::PerHead(k) => k[h * n_keep..].as_ptr(),
        };
        if n_keep == 0 || c.head_dim == 0 || size_of::<T>() == 0 {
            return Ok(n_keep);
        }
        let sz = size_of::<T>();
        let base = c.data.as_mut_ptr() as *mut u8;
        let ts = if c.n_tokens <= 1 {
            0
        } else {
            c.token_stride * sz
        };
        let whole = n_keep.saturating_mul(c.n_heads * c.head_dim * sz);
        let f = self.copy_rows;
        // The source tokens positions j0..j1 read, over every head.
        let src = |j0: usize, j1: usize| match keep {
            KvKeep::Shared(k) => k[j0] as usize..k[j1 - 1] as usize + 1,
            KvKeep::PerHead(k) => {
                let lo = (0..c.n_heads).map(|h| k[h * n_keep + j0]).min();
                let hi = (0..c.n_heads).map(|h| k[h * n_keep + j1 - 1]).max();
                lo.unwrap_or(0) as usize..hi.unwrap_or(0) as usize + 1
            }
        };
        let row_work = c
            .n_heads
            .saturating_mul(c.head_dim)
            .saturating_mul(2 * sz)
            .saturating_add(8);
        if c.layout == KvLayout::TokenMajor
            && !per_head
            && (c.n_heads == 1 || c.head_stride == c.head_dim)
        {
            // Each token's heads form one contiguous row.
            let a = Shared(CopyRowsArgs {
                src: base,
                src_stride: ts,
                src_idx: list(0),
                dst: base,
                dst_stride: ts,
                dst_idx: core::ptr::null(),
                first: 0,
                n: n_keep,
                row_bytes: c.n_heads.saturating_mul(c.head_dim).saturating_mul(sz),
                whole_bytes: whole,
            });
            self.compact_waves(n_keep, row_work, &src, &|j0, j1| {
                let mut a = a.get();
                (a.first, a.n) = (j0, j1);
                // SAFETY: as in compact_rows; token rows are disjoint (stride rule).
                unsafe { f(&a) };
            })?;
            return Ok(n_keep);
        }
        // Token-major heads are interleaved in memory: walk the tokens in blocks and,
        // per block, every head, so the cache is swept once rather than once per head.
        // Head-major heads are contiguous: one pass per head.
        let block = match c.layout {
            KvLayout::TokenMajor => KV_BLOCK,
            KvLayout::HeadMajor => n_keep,
        };
        let (head_bytes, head_dim_bytes, n_heads) =
            (c.head_stride * sz, c.head_dim * sz, c.n_heads);
        let lists = Shared((base, keep));
        self.compact_waves(n_keep, row_work, &src, &|from, to| {
            let (base, keep) = lists.get();
            let mut j0 = from;
            while j0 < to {
                let j1 = to.min(j0 + block);
                for h in 0..n_heads {
                    let a = CopyRowsArgs {
                        src: base.wrapping_add(h * head_bytes),
                        src_stride: ts,
                        src_idx: match keep {
                            KvKeep::Shared(k) => k.as_ptr(),
                            KvKeep::PerHead(k) => k[h * n_keep..].as_ptr(),
                        },
                        dst: base.wrapping_add(h * head_bytes),
                        dst_stride: ts,
                        dst_idx: core::ptr::null(),
                        first: j0,
                        n: j1,
                        row_bytes: head_dim_bytes,
                        whole_bytes: whole,
                    };
                    // SAFETY: as in compact_rows, within one head (h < n_heads, so the
                    // head's first row lies in the cache); the stride rules of the layout
                    // make rows of different heads disjoint. Across the blocks and the
                    // waves, row keep_h[j] >= j of head h is read before any piece writes
                    // it, and no head touches another head's rows.
                    unsafe { f(&a) };
                }
                j0 = j1;
            }
        })?;
        Ok(n_keep)
    }
}

/// Tokens per block when compacting a token-major KV cache head by head.
const KV_BLOCK: usize = 64;

/// [`Kernels::gather_rows`] on the active level.
pub fn gather_rows<T: Copy>(src: Matrix<'_, T>, idx: &[u32], dst: MatrixMut<'_, T>) -> Result<()> {
    Kernels::active()?.gather_rows(src, idx, dst)
}

/// [`Kernels::scatter_rows`] on the active level.
pub fn scatter_rows<T: Copy>(src: Matrix<'_, T>, idx: &[u32], dst: MatrixMut<'_, T>) -> Result<()> {
    Kernels::active()?.scatter_rows(src, idx, dst)
}

/// [`Kernels::scatter_add_rows`] on the active level.
pub fn scatter_add_rows<T: Element>(
    h: MatrixMut<'_, T>,
    idx: &[u32],
    y: Matrix<'_, T>,
    gate: Option<&[f32]>,
) -> Result<()> {
    Kernels::active()?.scatter_add_rows(h, idx, y, gate)
}

/// [`Kernels::compact_rows`] on the active level.
pub fn compact_rows<T: Copy>(data: MatrixMut<'_, T>, keep: &[u32]) -> Result<usize> {
    Kernels::active()?.compact_rows(data, keep)
}

/// [`Kernels::kv_compact`] on the active level.
pub fn kv_compact<T: Copy>(cache: KvCacheMut<'_, T>, keep: KvKeep<'_>) -> Result<usize> {
    Kernels::active()?.kv_compact(cache, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(r: Result<()>) -> Option<ErrorKind> {
        r.err().map(|e| e.kind)
    }

    #[test]
    fn index_rules() {
        use ErrorKind::*;
        let long: Vec<u32> = (0..1000).collect();
        for rule in [Rule::InRange, Rule::Distinct, Rule::Ascending] {
            assert_eq!(kind(check_indices(&[], 0, rule)), None);
            assert_eq!(kind(check_indices(&long, 1000, rule)), None);
            assert_eq!(kind(check_indices(&long, 999, rule)), Some(OutOfRange));
            assert_eq!(kind(check_indices(&[0], 0, rule)), Some(OutOfRange));
            assert_eq!(kind(check_indices(&[u32::MAX], usize::MAX, rule)), None);
        }
        assert_eq!(kind(check_indices(&[3, 3, 1], 4, Rule::InRange)), None);
        assert_eq!(kind(check_indices(&[3, 1, 2], 4, Rule::Distinct)), None);
        assert_eq!(
            kind(check_indices(&[3, 1, 3], 4, Rule::Distinct)),
            Some(DuplicateIndex)
        );
        assert_eq!(
            kind(check_indices(&[3, 1, 3, 9], 4, Rule::Distinct)),
            Some(OutOfRange)
        );
        assert_eq!(
            kind(check_indices(&[1, 3, 2], 4, Rule::Ascending)),
            Some(UnsortedIndex)
        );
        assert_eq!(
            kind(check_indices(&[1, 3, 3, 2], 4, Rule::Ascending)),
            Some(DuplicateIndex)
        );
        assert_eq!(
            kind(check_indices(&[1, 3, 2, 2], 4, Rule::Ascending)),
            Some(UnsortedIndex)
        );
        assert_eq!(
            kind(check_indices(&[1, 3, 2, 7], 4, Rule::Ascending)),
            Some(OutOfRange)
        );
        // Violations at every position of long lists, across block boundaries.
        for p in [1usize, 63, 64, 65, 511, 512, 513, 999] {
            let mut v = long.clone();
            v[p] = v[p - 1];
            assert_eq!(
                kind(check_indices(&v, 1000, Rule::Ascending)),
                Some(DuplicateIndex),
                "{p}"
            );
            assert_eq!(
                kind(check_indices(&v, 1000, Rule::Distinct)),
                Some(DuplicateIndex),
                "{p}"
            );
            let mut v = long.clone();
            v.swap(p - 1, p);
            assert_eq!(
                kind(check_indices(&v, 1000, Rule::Ascending)),
                Some(UnsortedIndex),
                "{p}"
            );
            assert_eq!(kind(check_indices(&v, 1000, Rule::Distinct)), None, "{p}");
            let mut v = long.clone();
            v[p] = 1000;
            for rule in [Rule::InRange, Rule::Distinct, Rule::Ascending] {
                assert_eq!(kind(check_indices(&v, 1000, rule)), Some(OutOfRange), "{p}");
            }
        }
        // A duplicate far apart in a huge index space takes the sorting path.
        let sparse = [5u32, 4_000_000_000, 17, 4_000_000_000];
        assert_eq!(
            kind(check_indices(&sparse, 1 << 40, Rule::Distinct)),
            Some(DuplicateIndex)
        );
        assert_eq!(
            kind(check_indices(&sparse[..3], 1 << 40, Rule::Distinct)),
            None
        );
    }

    #[test]
    fn kv_stride_rules() {
        use KvLayout::*;
        let s = |l, t, h, d, ts, hs| KvCacheMut::<u8>::span(l, t, h, d, ts, hs).map_err(|e| e.kind);
        assert_eq!(s(TokenMajor, 4, 2, 8, 16, 8), Ok(3 * 16 + 8 + 8));
        assert_eq!(s(TokenMajor, 4, 2, 8, 15, 8), Err(ErrorKind::BadStride));
        assert_eq!(s(TokenMajor, 4, 2, 8, 16, 7), Err(ErrorKind::BadStride));
        assert_eq!(s(HeadMajor, 4, 2, 8, 8, 40), Ok(40 + 3 * 8 + 8));
        assert_eq!(s(HeadMajor, 4, 2, 8, 8, 31), Err(ErrorKind::BadStride));
        assert_eq!(s(HeadMajor, 0, 2, 8, 8, 8), Ok(0));
        assert_eq!(
            s(TokenMajor, usize::MAX, 2, 8, 16, 8),
            Err(ErrorKind::SizeOverflow)
        );
    }
}
