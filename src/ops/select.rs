//! Token selection: threshold selection (`s > tau`), exact top-k, mask <-> indices,
//! per row or batched over rows, with forced keeps and per-row valid lengths.
//!
//! Every result is **identical on every ISA level** (scores are ordered through integer
//! keys of their bits; see `tokenroute_kernels::select`):
//! - numbers by value, `-0.0 == +0.0`, denormals ordinary, `±inf` the extremes;
//! - every NaN below every number (a NaN token is chosen by top-k only when k exceeds
//!   the count of non-NaN candidates), all NaNs equal;
//! - ties go to the lower index.
//!
//! # Rows
//! A batch is a [`Matrix`] of `rows x n` scores. [`RowSpec`] describes each row:
//! - `valid_lens[r]` (default `n`): tokens at or past it are padding and are never
//!   selected (nor read);
//! - forced keeps: the first `keep_first` tokens, the last `keep_last` tokens of the
//!   valid part (both clamped to it), and the tokens whose `keep_mask` byte is non-zero
//!   are always selected. Threshold selection **adds** them to the tokens above tau;
//!   top-k **counts them within k** (k must be at least the forced count of the row,
//!   else `INVALID_ARGUMENT`) and fills the rest with the best other tokens.
//!
//! # Outputs
//! Indices are positions within the row (`0..valid_len`), ascending by default; top-k
//! can order them by descending score instead ([`Order::Score`], ties by index) and
//! also return the selected scores. Each row's count goes to `counts[r]`.
//!
//! # Workspace
//! Top-k needs scratch of [`topk_workspace_len`]`(n)` u64 words (8 bytes per token).
//! Pass it (`Some(buf)`), or pass `None` to use the library's scratch
//! ([`crate::scratch`]): the calling thread's buffer, reused without allocation up to
//! [`crate::THREAD_SCRATCH_CAP`] bytes; larger workspaces come from the process-wide
//! spare or are allocated and freed per call. Threshold selection and the mask
//! conversions need no scratch.
//!
//! Validation happens before anything is written: on error the outputs are untouched.

use crate::error::{ensure, Result};
use crate::ops::{Matrix, MatrixMut};
use crate::Kernels;
use tokenroute_kernels::select::{self as ks, ThresholdArgs, TopkArgs};

pub use tokenroute_kernels::select::Order;

/// How many tokens top-k keeps in each row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TopK<'a> {
    /// The same `k` for every row.
    Fixed(usize),
    /// `k[r]` for row `r` (one per row).
    PerRow(&'a [usize]),
    /// A capacity ratio `c` in `[0, 1]`: `k_row = ceil(c * valid_len_row)`, the product
    /// taken in IEEE double precision (what C's `ceil(c * (double)len)` and Python's
    /// `math.ceil(c * n)` give).
    Capacity(f64),
}

impl TopK<'_> {
    /// `k` of row `r` whose valid length is `valid` (`PerRow` must have row `r`).
    pub(crate) fn row_k(&self, r: usize, valid: usize) -> usize {
        match *self {
            TopK::Fixed(k) => k,
            TopK::PerRow(ks) => ks[r],
            // c in [0, 1] (checked by the callers first) and valid <= 2^32: the rounded
            // product is <= valid, so the ceiling is at most valid.
            TopK::Capacity(c) => (c * valid as f64).ceil() as usize,
        }
    }
}

/// The threshold of each row: a token is selected when its score is `> tau` (never for
/// a NaN tau).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Tau<'a> {
    /// One tau for every row.
    Fixed(f32),
    /// `tau[r]` for row `r` (one per row).
    PerRow(&'a [f32]),
}

/// Which tokens of each row take part and which are always selected (see the module
/// documentation). The default is every token of every row, none forced.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowSpec<'a> {
    /// One valid length per row, each `<= n`; `None` means `n` for every row.
    pub valid_lens: Option<&'a [usize]>,
    /// The first `keep_first` tokens of each row are always selected.
    pub keep_first: usize,
    /// The last `keep_last` tokens of each row's valid part are always selected.
    pub keep_last: usize,
    /// `rows x n` bytes: a non-zero byte forces its token (bytes past a row's valid
    /// length are ignored).
    pub keep_mask: Option<Matrix<'a, u8>>,
}

/// Where top-k writes.
#[derive(Debug)]
pub struct TopkOut<'a> {
    /// One row per score row, at least `k_row` columns: `indices[r][..k_row]` is written
    /// (nothing else).
    pub indices: MatrixMut<'a, u32>,
    /// Optional: the scores of the selected tokens, `scores[r][j]` for `indices[r][j]`.
    pub scores: Option<MatrixMut<'a, f32>>,
    /// Optional: `counts[r] = k_row`, one per row.
    pub counts: Option<&'a mut [usize]>,
}

/// Where threshold selection writes.
#[derive(Debug)]
pub struct ThresholdOut<'a> {
    /// Optional: one row per score row, at least `valid_len_row` columns. The first
    /// `counts[r]` entries of row `r` are the selected indices, ascending; the entries
    /// after them up to the row's valid length may be overwritten (whole vectors are
    /// stored), nothing past it.
    pub indices: Option<MatrixMut<'a, u32>>,
    /// Optional: `rows x n` bytes, 1 for a selected token and 0 otherwise (0 for the
    /// padding past a row's valid length).
    pub mask: Option<MatrixMut<'a, u8>>,
    /// Optional: the number of selected tokens of each row.
    pub counts: Option<&'a mut [usize]>,
}

/// Scratch of top-k over rows of up to `n` tokens, in u64 words (8 bytes per token:
/// the kernels' `topk_scratch_words(n) = 2n` u32 words, 8-byte aligned).
pub const fn topk_workspace_len(n: usize) -> usize {
    n
}

/// Top-k is given at most this many tokens per row (indices are `u32`).
pub const MAX_ROW: usize = u32::MAX as usize;

/// Runs `f` on `words` words of scratch: the caller's, or the library's
/// ([`crate::scratch`]: the thread's reusable buffer, bounded after the call).
/// `too_small` is the error message for a caller's workspace under `words`.
pub(crate) fn with_workspace<R>(
    words: usize,
    caller: Option<&mut [u64]>,
    too_small: &'static str,
    f: impl FnOnce(&mut [u64]) -> R,
) -> Result<R> {
    if let Some(ws) = caller {
        ensure!(ws.len() >= words, BufferTooSmall, too_small);
        return Ok(f(&mut ws[..words]));
    }
    crate::scratch::with_scratch_of(crate::scratch::Kind::Select, words, f)
}

/// The validated shape of a batch: rows, row length and per-row valid lengths.
struct Batch<'a> {
    rows: usize,
    n: usize,
    valid: Option<&'a [usize]>,
    keep: Option<Matrix<'a, u8>>,
}

impl<'a> Batch<'a> {
    fn new(scores: &Matrix<'_, f32>, spec: &RowSpec<'a>) -> Result<Batch<'a>> {
        let (rows, n) = (scores.rows, scores.cols);
        ensure!(
            n <= MAX_ROW,
            InvalidArgument,
            "rows longer than 2^32 - 1 tokens"
        );
        if let Some(v) = spec.valid_lens {
            ensure!(
                v.len() == rows,
                InvalidArgument,
                "valid_lens must have one entry per row"
            );
            ensure!(
                v.iter().all(|&l| l <= n),
                InvalidArgument,
                "a valid length exceeds the row length"
            );
        }
        if let Some(m) = &spec.keep_mask {
            ensure!(
                m.rows == rows && m.cols == n,
                InvalidArgument,
                "keep_mask must be rows x n"
            );
        }
        Ok(Batch {
            rows,
            n,
            valid: spec.valid_lens,
            keep: spec.keep_mask,
        })
    }

    fn valid(&self, r: usize) -> usize {
        self.valid.map_or(self.n, |v| v[r])
    }

    fn max_valid(&self) -> usize {
        self.valid
            .map_or(self.n, |v| v.iter().copied().max().unwrap_or(0))
    }

    /// Row `r`'s keep bytes (its valid part), or null.
    fn keep_ptr(&self, r: usize) -> *const u8 {
        match &self.keep {
            Some(m) if self.valid(r) > 0 => m.data[r * m.stride..].as_ptr(),
            _ => core::ptr::null(),
        }
    }
}

/// `(ptr to row r, its length)` of an output matrix, for the kernels.
fn row_mut<T>(m: &mut MatrixMut<'_, T>, r: usize) -> *mut T {
    // r * stride <= span - cols: in bounds (or one past the end when cols == 0, not
    // dereferenced then).
    m.data[r * m.stride..].as_mut_ptr()
}

impl Kernels {
    /// The forced count of a row of `len` tokens whose keep bytes start at `keep`.
    fn forced_count(&self, len: usize, keep_first: usize, keep_last: usize, keep: &[u8]) -> usize {
        let (kf, kl) = ks::forced_ranges(len, keep_first, keep_last);
        let mid = if keep.is_empty() {
            0
        } else {
            let m = &keep[kf..len - kl];
            // SAFETY: m holds m.len() bytes.
            unsafe { (self.select_count_nonzero_u8)(m.as_ptr(), m.len()) }
        };
        kf + kl + mid
    }

    /// Exact top-k of every row of `scores` (see the module documentation for the order
    /// of scores, forced keeps, valid lengths and the workspace).
    ///
    /// Errors (nothing written): `INVALID_ARGUMENT` for shapes that disagree (an output
    /// or `k`/`valid_lens` list without one row per score row, a keep mask not `rows x
    /// n`), `k_row > valid_len_row`, a capacity outside `[0, 1]`, forced keeps
    /// exceeding `k_row`, rows longer than 2^32 - 1; `BUFFER_TOO_SMALL` for an output
    /// row shorter than `k_row` or a workspace shorter than `topk_workspace_len(n)`.
    pub fn topk_f32(
        &self,
        scores: Matrix<'_, f32>,
        k: TopK<'_>,
        order: Order,
        spec: &RowSpec<'_>,
        mut out: TopkOut<'_>,
        workspace: Option<&mut [u64]>,
    ) -> Result<()> {
        let b = Batch::new(&scores, spec)?;
        ensure!(
            out.indices.rows == b.rows,
            InvalidArgument,
            "indices must have one row per score row"
        );
        if let Some(s) = &out.scores {
            ensure!(
                s.rows == b.rows,
                InvalidArgument,
                "scores output must have one row per score row"
            );
        }
        if let Some(c) = &out.counts {
            ensure!(
                c.len() == b.rows,
                InvalidArgument,
                "counts must have one entry per row"
            );
        }
        match k {
            TopK::Fixed(_) => {}
            TopK::PerRow(ks) => ensure!(
                ks.len() == b.rows,
                InvalidArgument,
                "per-row k must have one entry per row"
            ),
            TopK::Capacity(c) => ensure!(
                (0.0..=1.0).contains(&c),
                InvalidArgument,
                "capacity must be in [0, 1]"
            ),
        }
        let k_of = |r: usize| k.row_k(r, b.valid(r));
        let keep_row = |r: usize| -> &[u8] {
            match &b.keep {
                Some(m) => &m.data[r * m.stride..r * m.stride + b.valid(r)],
                None => &[],
            }
        };
        for r in 0..b.rows {
            let (len, kr) = (b.valid(r), k_of(r));
            ensure!(kr <= len, InvalidArgument, "k > n (the row's valid length)");
            ensure!(
                kr <= out.indices.cols,
                BufferTooSmall,
                "indices row shorter than k"
            );
            if let Some(s) = &out.scores {
                ensure!(
                    kr <= s.cols,
                    BufferTooSmall,
                    "scores output row shorter than k"
                );
            }
            ensure!(
                self.forced_count(len, spec.keep_first, spec.keep_last, keep_row(r)) <= kr,
                InvalidArgument,
                "forced keeps exceed k"
            );
        }
        let words = topk_workspace_len(b.max_valid());
        with_workspace(
            words,
            workspace,
            "workspace smaller than topk_workspace_len(n)",
            |ws| {
                for r in 0..b.rows {
                    let kr = k_of(r);
                    let args = TopkArgs {
                        scores: scores.data[r * scores.stride..].as_ptr(),
                        n: b.valid(r),
                        k: kr,
                        keep_first: spec.keep_first,
                        keep_last: spec.keep_last,
                        keep: b.keep_ptr(r),
                        order,
                        out_idx: row_mut(&mut out.indices, r),
                        out_scores: out
                            .scores
                            .as_mut()
                            .map_or(core::ptr::null_mut(), |s| row_mut(s, r)),
                        scratch: ws.as_mut_ptr() as *mut u32,
                    };
                    // SAFETY: row r holds valid(r) scores and keep bytes; the output rows
                    // have room for k_r (checked); k_r <= valid(r) and >= the forced count
                    // (checked); the scratch holds topk_scratch_words(max valid) u32 words,
                    // 8-byte aligned; outputs are unique borrows, disjoint from the inputs.
                    unsafe { (self.select_topk_f32)(&args) };
                    if let Some(c) = out.counts.as_deref_mut() {
                        c[r] = kr;
                    }
                }
            },
        )
    }

    /// Threshold selection `s > tau` of every row of `scores`, plus the forced keeps
    /// (see the module documentation). At least one of the outputs is usually given;
    /// with none the call only validates.
    ///
    /// Errors (nothing written): `INVALID_ARGUMENT` for shapes that disagree (an output
    /// or `tau`/`valid_lens` list without one row per score row, a keep mask or mask
    /// output not `rows x n`), rows longer than 2^32 - 1; `BUFFER_TOO_SMALL` for an
    /// indices row shorter than the row's valid length.
    pub fn threshold_f32(
        &self,
        scores: Matrix<'_, f32>,
        tau: Tau<'_>,
        spec: &RowSpec<'_>,
        mut out: ThresholdOut<'_>,
    ) -> Result<()> {
        let b = Batch::new(&scores, spec)?;
        if let Tau::PerRow(t) = tau {
            ensure!(
                t.len() == b.rows,
                InvalidArgument,
                "per-row tau must have one entry per row"
            );
        }
        if let Some(i) = &out.indices {
            ensure!(
                i.rows == b.rows,
                InvalidArgument,
                "indices must have one row per score row"
            );
            ensure!(
                i.cols >= b.max_valid(),
                BufferTooSmall,
                "indices row shorter than the row's valid length"
            );
        }
        if let Some(m) = &out.mask {
            ensure!(
                m.rows == b.rows && m.cols == b.n,
                InvalidArgument,
                "mask output must be rows x n"
            );
        }
        if let Some(c) = &out.counts {
            ensure!(
                c.len() == b.rows,
                InvalidArgument,
                "counts must have one entry per row"
            );
        }
        for r in 0..b.rows {
            let args = ThresholdArgs {
                scores: scores.data[r * scores.stride..].as_ptr(),
                n: b.valid(r),
                tau: match tau {
                    Tau::Fixed(t) => t,
                    Tau::PerRow(t) => t[r],
                },
                keep_first: spec.keep_first,
                keep_last: spec.keep_last,
                keep: b.keep_ptr(r),
                out_idx: out
                    .indices
                    .as_mut()
                    .map_or(core::ptr::null_mut(), |i| row_mut(i, r)),
                out_mask: out
                    .mask
                    .as_mut()
                    .map_or(core::ptr::null_mut(), |m| row_mut(m, r)),
                mask_len: b.n,
            };
            // SAFETY: row r holds valid(r) scores and keep bytes; an indices row has room
            // for valid(r) entries and a mask row for n bytes (checked); outputs are
            // unique borrows, disjoint from the inputs.
            let c = unsafe { (self.select_threshold_f32)(&args) };
            if let Some(cs) = out.counts.as_deref_mut() {
                cs[r] = c;
            }
        }
        Ok(())
    }

    /// Top-k of one row with no forced keeps: `out[..k]` gets the indices (ascending, or
    /// by descending score), nothing else is written. Uses the thread's reusable
    /// workspace. Errors: `k > scores.len()` (`INVALID_ARGUMENT`), `out` shorter than k
    /// (`BUFFER_TOO_SMALL`).
    pub fn topk_row_f32(
        &self,
        scores: &[f32],
        k: usize,
        order: Order,
        out: &mut [u32],
    ) -> Result<()> {
        let n = scores.len();
        let cols = out.len();
        self.topk_f32(
            Matrix::new(scores, 1, n, n)?,
            TopK::Fixed(k),
            order,
            &RowSpec::default(),
            TopkOut {
                indices: MatrixMut::new(out, 1, cols, cols)?,
                scores: None,
                counts: None,
            },
            None,
        )
    }

    /// Threshold selection of one row with no forced keeps: returns the count `c`;
    /// `out[..c]` holds the indices with `scores[i] > tau`, ascending, and
    /// `out[c..scores.len()]` may be overwritten. Errors: `out` shorter than `scores`
    /// (`BUFFER_TOO_SMALL`).
    pub fn threshold_row_f32(&self, scores: &[f32], tau: f32, out: &mut [u32]) -> Result<usize> {
        let n = scores.len();
        let cols = out.len();
        let mut count = [0usize];
        self.threshold_f32(
            Matrix::new(scores, 1, n, n)?,
            Tau::Fixed(tau),
            &RowSpec::default(),
            ThresholdOut {
                indices: Some(MatrixMut::new(out, 1, cols, cols)?),
                mask: None,
                counts: Some(&mut count),
            },
        )?;
        Ok(count[0])
    }

    /// The indices of the non-zero bytes of `mask`, ascending: returns the count `c`;
    /// `out[..c]` holds them and `out[c..mask.len()]` may be overwritten. Errors: `out`
    /// shorter than `mask` (`BUFFER_TOO_SMALL`), `mask` longer than 2^32 - 1
    /// (`INVALID_ARGUMENT`).
    pub fn mask_to_indices(&self, mask: &[u8], out: &mut [u32]) -> Result<usize> {
        ensure!(
            mask.len() <= MAX_ROW,
            InvalidArgument,
            "mask longer than 2^32 - 1"
        );
        ensure!(
            out.len() >= mask.len(),
            BufferTooSmall,
            "out shorter than the mask"
        );
        // SAFETY: mask holds mask.len() bytes, out has room for as many indices, and
        // the two are distinct borrows.
        Ok(unsafe { (self.select_mask_to_indices)(mask.as_ptr(), mask.len(), out.as_mut_ptr()) })
    }

    /// `mask[i] = 1` for every `i` in `indices` (duplicates allowed), every other byte
    /// 0. Errors (nothing written): an index `>= mask.len()` (`OUT_OF_RANGE`).
    pub fn indices_to_mask(&self, indices: &[u32], mask: &mut [u8]) -> Result<()> {
        let n = mask.len();
        ensure!(
            indices.iter().all(|&i| (i as usize) < n),
            OutOfRange,
            "an index is >= the mask length"
        );
        // SAFETY: every index < n (checked); the buffers are distinct borrows.
        unsafe {
            (self.select_indices_to_mask)(indices.as_ptr(), indices.len(), mask.as_mut_ptr(), n)
        };
        Ok(())
    }
}

/// [`Kernels::topk_f32`] on the active level.
pub fn topk_f32(
    scores: Matrix<'_, f32>,
    k: TopK<'_>,
    order: Order,
    spec: &RowSpec<'_>,
    out: TopkOut<'_>,
    workspace: Option<&mut [u64]>,
) -> Result<()> {
    Kernels::active()?.topk_f32(scores, k, order, spec, out, workspace)
}

/// [`Kernels::threshold_f32`] on the active level.
pub fn threshold_f32(
    scores: Matrix<'_, f32>,
    tau: Tau<'_>,
    spec: &RowSpec<'_>,
    out: ThresholdOut<'_>,
) -> Result<()> {
    Kernels::active()?.threshold_f32(scores, tau, spec, out)
}

/// [`Kernels::mask_to_indices`] on the active level.
pub fn mask_to_indices(mask: &[u8], out: &mut [u32]) -> Result<usize> {
    Kernels::active()?.mask_to_indices(mask, out)
}

/// [`Kernels::indices_to_mask`] on the active level.
pub fn indices_to_mask(indices: &[u32], mask: &mut [u8]) -> Result<()> {
    Kernels::active()?.indices_to_mask(indices, mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_covers_the_kernel_scratch() {
        for n in [0, 1, 2, 3, 1000, 1 << 20, MAX_ROW] {
            assert!(2 * topk_workspace_len(n) >= ks::topk_scratch_words(n));
        }
    }

    #[test]
    fn capacity_is_the_ceiling_of_the_double_product() {
        let k = |c: f64, len: usize| TopK::Capacity(c).row_k(0, len);
        assert_eq!(k(0.1, 50), 5);
        assert_eq!(k(0.125, 8), 1);
        assert_eq!(k(0.125, 9), 2);
        assert_eq!(k(0.0, 100), 0);
        assert_eq!(k(1.0, 100), 100);
        assert_eq!(k(1.0, MAX_ROW), MAX_ROW);
        // The double product 0.07 * 100 rounds to 7.000000000000001: 8, as in C and
        // Python (math.ceil(0.07 * 100) == 8).
        assert_eq!(k(0.07, 100), 8);
        assert_eq!(k(0.7, 10), 7);
        assert_eq!(k(0.5, 0), 0);
    }
}
