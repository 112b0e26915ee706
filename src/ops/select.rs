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
//! Pass it (`Some(buf)`), or pass `None` to use a buffer owned by the calling thread
//! that grows to the largest row seen and is reused: no heap allocation per call once
//! it has grown (it is freed when the thread exits). Threshold selection and the mask
//! conversions need no scratch.
//!
//! Validation happens before anything is written: on error the outputs are untouched.

use crate::error::{ensure, Result};
use crate::ops::{Matrix, MatrixMut};
use crate::parallel::{self, Phases, Shared};
use crate::Kernels;
use core::cell::RefCell;
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

/// Tokens per chunk of a long top-k row (see [`Kernels::topk_f32`]).
pub const TOPK_CHUNK: usize = 1 << 16;

/// Whether a top-k row of `len` tokens keeping `k` is split into chunks: `len >= 2
/// TOPK_CHUNK` and `1 <= k <= TOPK_CHUNK / 8` (then the candidates are few). Depends on
/// the shape only; the result is exact either way.
const fn chunks_topk(len: usize, k: usize) -> bool {
    len >= 2 * TOPK_CHUNK && k >= 1 && k <= TOPK_CHUNK / 8
}

/// Tokens per chunk of a long threshold row: rows of at least twice this split.
pub const THRESHOLD_CHUNK: usize = 1 << 16;

/// The chunk of a threshold row of `n` tokens: [`THRESHOLD_CHUNK`], larger for rows of
/// more than 1024 chunks (at most 1024 chunks).
const fn threshold_chunk(n: usize) -> usize {
    let c = n.div_ceil(1024);
    if c > THRESHOLD_CHUNK {
        c
    } else {
        THRESHOLD_CHUNK
    }
}

/// Indices moved per piece when compacting a chunked threshold row (at least).
const PIECE: usize = 1 << 14;

/// Runs `row(r)` for every row that is not `long(r)`, in units of whole rows (`row_work`
/// each), then `long_row(r)` for each long row in order (which splits it into its own
/// units). A parallel-for failure is reported after every row has run.
fn rows_then_long(
    rows: usize,
    row_work: usize,
    long: &(dyn Fn(usize) -> bool + Sync),
    row: &(dyn Fn(usize) -> Result<()> + Sync),
    long_row: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<()> {
    let row_work = row_work.max(1);
    let mut phases = Phases::default();
    phases.run(parallel::for_each_range(
        rows,
        parallel::items_per_unit(row_work),
        rows.saturating_mul(row_work),
        &|rs| rs.filter(|&r| !long(r)).try_for_each(row),
    ))?;
    for r in (0..rows).filter(|&r| long(r)) {
        phases.run(long_row(r))?;
    }
    phases.finish()
}

/// An output matrix as a base pointer and a row stride, for the units.
#[derive(Clone, Copy)]
struct RawOut<T> {
    p: *mut T,
    stride: usize,
}

impl<T> RawOut<T> {
    fn of(m: &mut MatrixMut<'_, T>) -> RawOut<T> {
        RawOut {
            p: m.data.as_mut_ptr(),
            stride: m.stride,
        }
    }
    /// Row `r` (`r < rows`: within the validated span).
    fn row(self, r: usize) -> *mut T {
        self.p.wrapping_add(r * self.stride)
    }
}

/// The top-k scratch of a unit: the caller's workspace for units on the calling thread
/// (which run there one after another), the running thread's reusable buffer elsewhere.
pub(crate) struct UnitWorkspace {
    words: usize,
    caller: Option<Shared<*mut u64>>,
    thread: std::thread::ThreadId,
}

impl UnitWorkspace {
    /// `caller`, when given, holds at least `words` words.
    pub(crate) fn new(words: usize, caller: Option<&mut [u64]>) -> UnitWorkspace {
        UnitWorkspace {
            words,
            caller: caller.map(|w| Shared(w.as_mut_ptr())),
            thread: std::thread::current().id(),
        }
    }
    /// Runs `f` on `words` words of scratch (as u32 words, 8-byte aligned).
    pub(crate) fn with(&self, f: impl FnOnce(*mut u32)) -> Result<()> {
        match self.caller {
            Some(p) if std::thread::current().id() == self.thread => {
                f(p.get() as *mut u32);
                Ok(())
            }
            _ => with_workspace(self.words, None, "", |w| f(w.as_mut_ptr() as *mut u32)),
        }
    }
}

thread_local! {
    /// The calling thread's reusable top-k scratch (grow-only).
    static WORKSPACE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on `words` words of scratch: the caller's, the thread's reusable buffer, or
/// (only while the thread is being torn down, or re-entered) a temporary one.
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
    let mut f = Some(f);
    let mut out = None;
    let _ = WORKSPACE.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            if buf.len() < words {
                let extra = words - buf.len();
                buf.reserve_exact(extra);
                buf.resize(words, 0);
            }
            out = Some((f.take().expect("called once"))(&mut buf[..words]));
        }
    });
    Ok(match out {
        Some(r) => r,
        None => (f.take().expect("not called yet"))(&mut vec![0u64; words]),
    })
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
        if let Some(ws) = &workspace {
            ensure!(
                ws.len() >= words,
                BufferTooSmall,
                "workspace smaller than topk_workspace_len(n)"
            );
        }
        let ws = UnitWorkspace::new(words, workspace);
        let outs = Shared((
            RawOut::of(&mut out.indices),
            out.scores.as_mut().map(RawOut::of),
            out.counts.as_deref_mut().map(<[usize]>::as_mut_ptr),
        ));
        let row_args = |r: usize, scratch: *mut u32| -> TopkArgs {
            let (idx, sc, _) = outs.get();
            TopkArgs {
                scores: scores.data[r * scores.stride..].as_ptr(),
                n: b.valid(r),
                k: k_of(r),
                keep_first: spec.keep_first,
                keep_last: spec.keep_last,
                keep: b.keep_ptr(r),
                order,
                out_idx: idx.row(r),
                out_scores: sc.map_or(core::ptr::null_mut(), |s| s.row(r)),
                scratch,
            }
        };
        let set_count = |r: usize| {
            if let Some(c) = outs.get().2 {
                // SAFETY: counts has one entry per row (checked); each row is one unit's.
                unsafe { *c.add(r) = k_of(r) };
            }
        };
        // Rows are independent: units of whole rows, except long rows with a small k,
        // which split into fixed chunks (below).
        rows_then_long(
            b.rows,
            b.n.saturating_mul(12),
            &|r| chunks_topk(b.valid(r), k_of(r)),
            &|r| {
                ws.with(|scratch| {
                    let args = row_args(r, scratch);
                    // SAFETY: row r holds valid(r) scores and keep bytes; the output rows
                    // have room for k_r (checked); k_r <= valid(r) and >= the forced count
                    // (checked); the scratch holds topk_scratch_words(max valid) u32
                    // words, 8-byte aligned; outputs are unique borrows, disjoint from
                    // the inputs, and each row is written by one unit.
                    unsafe { (self.select_topk_f32)(&args) };
                })?;
                set_count(r);
                Ok(())
            },
            &mut |r| {
                let res = self.topk_chunked(row_args(r, core::ptr::null_mut()), &ws);
                set_count(r);
                res
            },
        )
    }

    /// Top-k of one long row (`a.n >= 2 TOPK_CHUNK`, `a.k <= TOPK_CHUNK / 8`) in fixed
    /// chunks of [`TOPK_CHUNK`] tokens: each chunk's own top-`min(k, len)` (its forced
    /// keeps included) are the candidates, which hold the row's top-k; a top-k of the
    /// candidates, in chunk order (so ascending positions and the ties' lower-index rule
    /// carry over), with the forced ones forced again, is the row's. Exact: identical to
    /// the one-pass result.
    fn topk_chunked(&self, a: TopkArgs, ws: &UnitWorkspace) -> Result<()> {
        let (n, k) = (a.n, a.k);
        let n_ch = n.div_ceil(TOPK_CHUNK);
        let (kf, kl) = ks::forced_ranges(n, a.keep_first, a.keep_last);
        let forced = kf + kl > 0 || !a.keep.is_null();
        let slots = n_ch * k;
        // Candidates: scores (f32), indices (u32), forced flags (u8), k slots per chunk.
        let bytes = slots * 9;
        let f = self.select_topk_f32;
        parallel::with_call_scratch(bytes, |base| -> Result<()> {
            let sh = Shared((a, base));
            let mut phases = Phases::default();
            phases.run(parallel::for_each(n_ch, n.saturating_mul(12), &|c| {
                let (a, base) = sh.get();
                let (c0, c1) = (c * TOPK_CHUNK, n.min((c + 1) * TOPK_CHUNK));
                let len = c1 - c0;
                let kc = k.min(len);
                let kf_c = kf.saturating_sub(c0).min(len);
                let kl_c = c1.saturating_sub((n - kl).max(c0)).min(len);
                // SAFETY: the scratch holds `slots` entries of each kind; chunk c owns
                // slots c*k .. c*k + kc.
                let (cs, ci, ck) = unsafe {
                    (
                        (base as *mut f32).add(c * k),
                        (base.add(slots * 4) as *mut u32).add(c * k),
                        base.add(slots * 8).add(c * k),
                    )
                };
                ws.with(|scratch| {
                    let args = TopkArgs {
                        scores: a.scores.wrapping_add(c0),
                        n: len,
                        k: kc,
                        keep_first: kf_c,
                        keep_last: kl_c,
                        keep: if a.keep.is_null() {
                            a.keep
                        } else {
                            a.keep.wrapping_add(c0)
                        },
                        order: Order::Position,
                        out_idx: ci,
                        out_scores: cs,
                        scratch,
                    };
                    // SAFETY: the chunk lies in the row; its forced count is at most
                    // min(k, len) (the row's is at most k); outputs are the chunk's slots.
                    unsafe { f(&args) };
                })?;
                for j in 0..kc {
                    // SAFETY: slot j < kc of this chunk, written just above.
                    unsafe {
                        let i = *ci.add(j) as usize;
                        if forced {
                            let keep = !a.keep.is_null() && *a.keep.add(c0 + i) != 0;
                            *ck.add(j) = (i < kf_c || i >= len - kl_c || keep) as u8;
                        }
                        *ci.add(j) = (c0 + i) as u32;
                    }
                }
                Ok(())
            }))?;
            // Every chunk but the last has at least k tokens: the candidates are the
            // first `cands` slots.
            let cands = (n_ch - 1) * k + k.min(n - (n_ch - 1) * TOPK_CHUNK);
            ws.with(|scratch| {
                let args = TopkArgs {
                    scores: base as *const f32,
                    n: cands,
                    k,
                    keep_first: 0,
                    keep_last: 0,
                    keep: if forced {
                        base.wrapping_add(slots * 8)
                    } else {
                        core::ptr::null()
                    },
                    order: a.order,
                    out_idx: a.out_idx,
                    out_scores: a.out_scores,
                    scratch,
                };
                // SAFETY: cands <= n candidates (scratch for n suffices); k <= cands and
                // the forced candidates number at most k; the outputs have room for k.
                unsafe {
                    f(&args);
                    let ci = base.add(slots * 4) as *const u32;
                    for j in 0..k {
                        let o = a.out_idx.add(j);
                        *o = *ci.add(*o as usize);
                    }
                }
            })?;
            phases.finish()
        })?
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
        let outs = Shared((
            out.indices.as_mut().map(RawOut::of),
            out.mask.as_mut().map(RawOut::of),
            out.counts.as_deref_mut().map(<[usize]>::as_mut_ptr),
        ));
        let row_args = |r: usize| -> ThresholdArgs {
            let (idx, mask, _) = outs.get();
            ThresholdArgs {
                scores: scores.data[r * scores.stride..].as_ptr(),
                n: b.valid(r),
                tau: match tau {
                    Tau::Fixed(t) => t,
                    Tau::PerRow(t) => t[r],
                },
                keep_first: spec.keep_first,
                keep_last: spec.keep_last,
                keep: b.keep_ptr(r),
                out_idx: idx.map_or(core::ptr::null_mut(), |i| i.row(r)),
                out_mask: mask.map_or(core::ptr::null_mut(), |m| m.row(r)),
                mask_len: b.n,
            }
        };
        let set_count = |r: usize, c: usize| {
            if let Some(cs) = outs.get().2 {
                // SAFETY: counts has one entry per row (checked); each row is one unit's.
                unsafe { *cs.add(r) = c };
            }
        };
        // Rows are independent: units of whole rows, except long rows, which split into
        // fixed chunks (below).
        rows_then_long(
            b.rows,
            b.n.saturating_mul(6),
            &|r| b.valid(r) >= 2 * THRESHOLD_CHUNK,
            &|r| {
                // SAFETY: row r holds valid(r) scores and keep bytes; an indices row has
                // room for valid(r) entries and a mask row for n bytes (checked); outputs
                // are unique borrows, disjoint from the inputs, and each row is written
                // by one unit.
                let c = unsafe { (self.select_threshold_f32)(&row_args(r)) };
                set_count(r, c);
                Ok(())
            },
            &mut |r| {
                let mut c = 0;
                let res = self.threshold_chunked(row_args(r), &mut c);
                set_count(r, c);
                res
            },
        )
    }

    /// Threshold selection of one long row in fixed chunks: each chunk selects into its
    /// own part of the output (its positions `c0..c1` of the indices row, its bytes of the
    /// mask), then the chunks' indices move left to their final places, `c0` added, in
    /// waves that never clobber an unread one ([`parallel::MoveWaves`]). Exact.
    fn threshold_chunked(&self, a: ThresholdArgs, count: &mut usize) -> Result<()> {
        let n = a.n;
        let chunk = threshold_chunk(n);
        let n_ch = n.div_ceil(chunk);
        let (kf, kl) = ks::forced_ranges(n, a.keep_first, a.keep_last);
        let f = self.select_threshold_f32;
        // Scratch: per chunk its count and final offset, then the move pieces.
        let piece_cap = parallel::MAX_PIECES;
        let bytes = (2 * n_ch + 3 * piece_cap) * core::mem::size_of::<usize>();
        parallel::with_call_scratch(bytes, |base| -> Result<()> {
            let base = base as *mut usize;
            let sh = Shared((a, base));
            let mut phases = Phases::default();
            phases.run(parallel::for_each(n_ch, n.saturating_mul(6), &|c| {
                let (a, counts) = sh.get();
                let (c0, c1) = (c * chunk, n.min((c + 1) * chunk));
                let len = c1 - c0;
                let args = ThresholdArgs {
                    scores: a.scores.wrapping_add(c0),
                    n: len,
                    tau: a.tau,
                    keep_first: kf.saturating_sub(c0).min(len),
                    keep_last: c1.saturating_sub((n - kl).max(c0)).min(len),
                    keep: if a.keep.is_null() {
                        a.keep
                    } else {
                        a.keep.wrapping_add(c0)
                    },
                    out_idx: if a.out_idx.is_null() {
                        a.out_idx
                    } else {
                        a.out_idx.wrapping_add(c0)
                    },
                    out_mask: if a.out_mask.is_null() {
                        a.out_mask
                    } else {
                        a.out_mask.wrapping_add(c0)
                    },
                    // The last chunk also clears the mask's padding.
                    mask_len: if c1 == n { a.mask_len - c0 } else { len },
                };
                // SAFETY: the chunk's scores, keep bytes, indices (room for len) and mask
                // bytes lie in the row's; chunks are disjoint.
                unsafe { *counts.add(c) = f(&args) };
                Ok(())
            }))?;
            // SAFETY: the scratch holds 2 n_ch counts and offsets, then the pieces.
            let (counts, offs, pieces) = unsafe {
                (
                    core::slice::from_raw_parts(base, n_ch),
                    core::slice::from_raw_parts_mut(base.add(n_ch), n_ch),
                    core::slice::from_raw_parts_mut(base.add(2 * n_ch), 3 * piece_cap),
                )
            };
            let mut total = 0;
            for (o, &c) in offs.iter_mut().zip(counts) {
                *o = total;
                total += c;
            }
            *count = total;
            if a.out_idx.is_null() {
                return phases.finish();
            }
            // Pieces (chunk, from, to) of the chunks' index lists, chunk 0 excepted (in
            // place, offset 0).
            let len = total.div_ceil(piece_cap / 2).max(PIECE);
            let mut m = 0;
            for (c, &cnt) in counts.iter().enumerate().skip(1) {
                let mut j = 0;
                while j < cnt {
                    let e = cnt.min(j + len);
                    pieces[3 * m..3 * m + 3].copy_from_slice(&[c, j, e]);
                    m += 1;
                    j = e;
                }
            }
            let pieces = &*pieces;
            let src = |p: usize| {
                let (c, j, e) = (pieces[3 * p], pieces[3 * p + 1], pieces[3 * p + 2]);
                c * chunk + j..c * chunk + e
            };
            let dst = |p: usize| {
                let (c, j, e) = (pieces[3 * p], pieces[3 * p + 1], pieces[3 * p + 2]);
                offs[c] + j..offs[c] + e
            };
            let out = Shared(a.out_idx);
            let plan = parallel::MoveWaves::plan(m, &src, &dst);
            phases.run(plan.run(total.saturating_mul(8), &|p| {
                let (s, d) = (src(p), dst(p));
                let add = (pieces[3 * p] * chunk) as u32;
                for (i, o) in s.zip(d) {
                    // SAFETY: both positions lie in the row's indices (< n); o <= i and
                    // pieces of one wave never touch each other's positions.
                    unsafe { *out.get().add(o) = *out.get().add(i) + add };
                }
                Ok(())
            }))?;
            phases.finish()
        })?
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
