//! The fused route call: score -> select -> gather for one sequence, returning the
//! selected indices, their scores and the compacted rows.
//!
//! The result is **identical** to the three separate calls ([`Kernels::score`] with one
//! router, [`Kernels::topk_f32`] or [`Kernels::threshold_f32`] on one row,
//! [`Kernels::gather_rows`]) on every level: it is made of them.
//!
//! - Top-k needs every score before it can select: the call scores all tokens into
//!   scratch, selects straight into the outputs, then gathers the rows. It costs what
//!   the three calls cost, without their intermediate buffers.
//! - Threshold selection decides each token from its own score (and the forced keeps,
//!   known up front), so the call walks the sequence in blocks of about 4 MiB: score the
//!   block, select in it, gather its selected rows while they are still in the cache.
//!   The hidden states are read from memory once instead of once for scoring and again
//!   for the gather.

use crate::error::{ensure, Result};
use crate::ops::score::Activation;
use crate::ops::select::{
    topk_workspace_len, with_workspace, Order, RowSpec, Tau, ThresholdOut, TopK, TopkOut,
};
use crate::ops::{Element, Matrix, MatrixMut};
use crate::Kernels;
use tokenroute_kernels::select::forced_ranges;

/// How the route call selects tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RouteSelect<'a> {
    /// Exact top-k ([`TopK::Fixed`], [`TopK::Capacity`], or [`TopK::PerRow`] with one
    /// entry), the indices in `Order` (ascending position, or descending score).
    TopK(TopK<'a>, Order),
    /// Threshold selection `s > tau` (never for a NaN tau); indices ascending.
    Threshold(f32),
}

/// Where the route call writes: room for the selected tokens in each output. Top-k
/// needs room for `k` (after capacity rounding); threshold selection, which may select
/// every token, for the valid length.
#[derive(Debug)]
pub struct RouteOut<'a, T> {
    /// Optional: `indices[j]`, the position of the j-th selected token (top-k without
    /// it keeps the indices in its workspace).
    pub indices: Option<&'a mut [u32]>,
    /// Optional: `scores[j]`, the router score of token `indices[j]`.
    pub scores: Option<&'a mut [f32]>,
    /// `rows[j] = h[indices[j]]`; as many columns as `h`.
    pub rows: MatrixMut<'a, T>,
}

/// Scratch of a top-k route call over up to `n` tokens, in u64 words: the top-k
/// workspace, the `n` scores, and room for `n` indices (used when the caller does not
/// want them; threshold routing needs none).
pub const fn route_workspace_len(n: usize) -> usize {
    topk_workspace_len(n) + 2 * n.div_ceil(2)
}

/// Bytes of hidden states the threshold route scores and gathers per block: small
/// enough that the block's rows are still in the cache (L2 or L3) when the gather
/// reads them, large enough that each score call streams like a large one.
const BLOCK_BYTES: usize = 4 << 20;
/// Tokens per threshold block: at least 16, at most [`MAX_BLOCK`].
const MAX_BLOCK: usize = 1024;

impl Kernels {
    /// The fused route call for one sequence of `h.rows()` tokens: router scores
    /// `s_i = act(w . h_i + bias)`, selection among the first `valid` tokens
    /// (`keep.valid_lens`, one entry, or all), then `out.rows[j] = h[out.indices[j]]`.
    /// Returns the number of selected tokens.
    ///
    /// `keep` carries the selection's forced keeps (`keep_first`, `keep_last`, a `1 x n`
    /// `keep_mask`) and the valid length, exactly as for one row of
    /// [`Kernels::topk_f32`] / [`Kernels::threshold_f32`]. `workspace` (top-k only):
    /// [`route_workspace_len`]`(n)` words, or `None` for a reusable buffer owned by the
    /// calling thread.
    ///
    /// Errors (nothing written): `INVALID_ARGUMENT` for `w` not of length `d`, `rows` not
    /// `d` wide, a `valid_lens` or per-row `k` list without exactly one entry, a keep mask
    /// not `1 x n`, `k` larger than the valid length, a capacity outside `[0, 1]`, forced
    /// keeps exceeding `k`; `BUFFER_TOO_SMALL` for an output or workspace with too
    /// little room (see [`RouteOut`]).
    #[allow(clippy::too_many_arguments)]
    pub fn route<T: Element>(
        &self,
        h: Matrix<'_, T>,
        w: &[T],
        bias: Option<f32>,
        act: Activation,
        select: RouteSelect<'_>,
        keep: &RowSpec<'_>,
        out: RouteOut<'_, T>,
        workspace: Option<&mut [u64]>,
    ) -> Result<usize> {
        let (n, d) = (h.rows, h.cols);
        ensure!(w.len() == d, InvalidArgument, "w must have d elements");
        ensure!(
            out.rows.cols == d,
            InvalidArgument,
            "output rows must have d elements"
        );
        let valid = match keep.valid_lens {
            None => n,
            Some(v) => {
                ensure!(
                    v.len() == 1,
                    InvalidArgument,
                    "valid_lens must have one entry (one sequence)"
                );
                ensure!(
                    v[0] <= n,
                    InvalidArgument,
                    "a valid length exceeds the row length"
                );
                v[0]
            }
        };
        if let Some(m) = &keep.keep_mask {
            ensure!(
                m.rows == 1 && m.cols == n,
                InvalidArgument,
                "keep_mask must be 1 x n"
            );
        }
        let needed = match select {
            RouteSelect::TopK(k, _) => {
                match k {
                    TopK::Fixed(_) => {}
                    TopK::PerRow(ks) => ensure!(
                        ks.len() == 1,
                        InvalidArgument,
                        "per-row k must have one entry (one sequence)"
                    ),
                    TopK::Capacity(c) => ensure!(
                        (0.0..=1.0).contains(&c),
                        InvalidArgument,
                        "capacity must be in [0, 1]"
                    ),
                }
                let kr = k.row_k(0, valid);
                ensure!(kr <= valid, InvalidArgument, "k > n (the valid length)");
                kr
            }
            RouteSelect::Threshold(_) => valid,
        };
        let room = out
            .indices
            .as_ref()
            .map_or(usize::MAX, |s| s.len())
            .min(out.rows.rows)
            .min(out.scores.as_ref().map_or(usize::MAX, |s| s.len()));
        ensure!(
            room >= needed,
            BufferTooSmall,
            "route outputs have room for fewer tokens than the selection may return"
        );
        let bias = bias.map(|b| [b]);
        let h = Matrix::new(h.data, valid, d, h.stride)?;
        match select {
            RouteSelect::TopK(k, order) => {
                let words = route_workspace_len(valid);
                with_workspace(
                    words,
                    workspace,
                    "workspace smaller than route_workspace_len(n)",
                    |ws| self.route_topk(h, w, bias, act, k, order, keep, out, ws),
                )?
            }
            RouteSelect::Threshold(tau) => self.route_threshold(h, w, bias, act, tau, keep, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn route_topk<T: Element>(
        &self,
        h: Matrix<'_, T>,
        w: &[T],
        bias: Option<[f32; 1]>,
        act: Activation,
        k: TopK<'_>,
        order: Order,
        keep: &RowSpec<'_>,
        out: RouteOut<'_, T>,
        ws: &mut [u64],
    ) -> Result<usize> {
        let (n, d) = (h.rows, h.cols);
        let (topk_ws, rest) = ws.split_at_mut(topk_workspace_len(n));
        let (score_ws, idx_ws) = rest.split_at_mut(n.div_ceil(2));
        // SAFETY: n.div_ceil(2) u64 words hold n f32, or n u32 (alignment 8 >= 4, no
        // invalid bit patterns).
        let scores: &mut [f32] =
            unsafe { core::slice::from_raw_parts_mut(score_ws.as_mut_ptr() as *mut f32, n) };
        let idx_scratch: &mut [u32] =
            unsafe { core::slice::from_raw_parts_mut(idx_ws.as_mut_ptr() as *mut u32, n) };
        self.score(
            h,
            Matrix::new(w, 1, d, d)?,
            bias.as_ref().map(|b| &b[..]),
            act,
            MatrixMut::new(scores, n, 1, 1)?,
        )?;
        let kr = k.row_k(0, n);
        let one_row = RowSpec {
            valid_lens: None,
            keep_mask: match &keep.keep_mask {
                Some(m) => Some(Matrix::new(m.data, 1, n, n)?),
                None => None,
            },
            ..*keep
        };
        let RouteOut {
            indices,
            scores: out_scores,
            rows,
        } = out;
        let idx = &mut indices.unwrap_or(idx_scratch)[..kr];
        // Selects straight into the outputs; it validates (forced keeps <= k) before it
        // writes anything.
        self.topk_f32(
            Matrix::new(scores, 1, n, n)?,
            k,
            order,
            &one_row,
            TopkOut {
                indices: MatrixMut::new(&mut *idx, 1, kr, kr)?,
                scores: match out_scores {
                    Some(s) => Some(MatrixMut::new(&mut s[..kr], 1, kr, kr)?),
                    None => None,
                },
                counts: None,
            },
            Some(topk_ws),
        )?;
        let rows = MatrixMut::new(rows.data, kr, d, rows.stride)?;
        self.gather_rows(h, &*idx, rows)?;
        Ok(kr)
    }

    #[allow(clippy::too_many_arguments)]
    fn route_threshold<T: Element>(
        &self,
        h: Matrix<'_, T>,
        w: &[T],
        bias: Option<[f32; 1]>,
        act: Activation,
        tau: f32,
        keep: &RowSpec<'_>,
        out: RouteOut<'_, T>,
    ) -> Result<usize> {
        let (n, d, hs) = (h.rows, h.cols, h.stride);
        let row_bytes = d.max(1) * core::mem::size_of::<T>();
        let block = (BLOCK_BYTES / row_bytes).clamp(16, MAX_BLOCK);
        let (kf, kl) = forced_ranges(n, keep.keep_first, keep.keep_last);
        let last_start = n - kl;
        let wm = Matrix::new(w, 1, d, d)?;
        let RouteOut {
            mut indices,
            scores: mut out_scores,
            rows,
        } = out;
        let (rows_data, rows_stride) = (rows.data, rows.stride);
        let mut sb = [0f32; MAX_BLOCK];
        let mut ib = [0u32; MAX_BLOCK];
        let mut count = 0usize;
        let mut j0 = 0;
        while j0 < n {
            let j1 = n.min(j0 + block);
            let len = j1 - j0;
            let hb = Matrix::new(&h.data[j0 * hs..], len, d, hs)?;
            self.score(
                hb,
                wm,
                bias.as_ref().map(|b| &b[..]),
                act,
                MatrixMut::new(&mut sb[..len], len, 1, 1)?,
            )?;
            // The forced keeps of the sequence, in block coordinates.
            let spec = RowSpec {
                valid_lens: None,
                keep_first: kf.saturating_sub(j0).min(len),
                keep_last: j1.saturating_sub(last_start.max(j0)).min(len),
                keep_mask: match &keep.keep_mask {
                    Some(m) => Some(Matrix::new(&m.data[j0..], 1, len, len)?),
                    None => None,
                },
            };
            let mut c = [0usize];
            self.threshold_f32(
                Matrix::new(&sb[..len], 1, len, len)?,
                Tau::Fixed(tau),
                &spec,
                ThresholdOut {
                    indices: Some(MatrixMut::new(&mut ib[..len], 1, len, len)?),
                    mask: None,
                    counts: Some(&mut c),
                },
            )?;
            let c = c[0];
            if let Some(idx) = indices.as_deref_mut() {
                for (o, &i) in idx[count..count + c].iter_mut().zip(&ib[..c]) {
                    *o = j0 as u32 + i;
                }
            }
            if let Some(s) = out_scores.as_deref_mut() {
                for (o, &i) in s[count..count + c].iter_mut().zip(&ib[..c]) {
                    *o = sb[i as usize];
                }
            }
            if c > 0 {
                let dst = MatrixMut::new(&mut rows_data[count * rows_stride..], c, d, rows_stride)?;
                // The blocks add up to at most n rows: stream like a gather of that size.
                self.gather_rows_part(hb, &ib[..c], dst, n.saturating_mul(row_bytes))?;
            }
            count += c;
            j0 = j1;
        }
        Ok(count)
    }
}

/// [`Kernels::route`] on the active level.
#[allow(clippy::too_many_arguments)]
pub fn route<T: Element>(
    h: Matrix<'_, T>,
    w: &[T],
    bias: Option<f32>,
    act: Activation,
    select: RouteSelect<'_>,
    keep: &RowSpec<'_>,
    out: RouteOut<'_, T>,
    workspace: Option<&mut [u64]>,
) -> Result<usize> {
    Kernels::active()?.route(h, w, bias, act, select, keep, out, workspace)
}
