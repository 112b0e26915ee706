//! Batched attention: dense batches (one stride per tensor between sequences) and
//! ragged batches (sequences packed back to back, described by cumulative offsets
//! `cu_seqlens_q` / `cu_seqlens_k` as in FlashAttention's varlen interface), and
//! implicit positions for causal and windowed masking ([`CausalAlign`]).
//!
//! A batch runs the kernel once per sequence on views of the caller's tensors (nothing
//! is copied), so every sequence's outputs, log-sum-exps and attention mass are
//! bit-identical to a separate call over that sequence alone, for every thread count
//! (small sequences run in parallel with one another, larger ones split themselves).
//! Every argument of every sequence is validated before anything is written.

use super::attend::{
    span_dims, AttendElement, AttendExtras, AttendOptions, Heads, HeadsMut, KeySubset, OutElement,
};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::span;
use crate::parallel::{self, Shared};
use crate::Kernels;
use tokenroute_kernels::attend::{
    self as ka, AttendArgs, AttendFn, KeySet, ListsPer, MergeFn, OutType,
};

/// Where the positions of causal and windowed masking come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CausalAlign {
    /// From `q_positions` and `k_positions` (required when masking).
    #[default]
    Positions,
    /// Implicit: key row `j` of a sequence is at position `j`, its query `i` at `i`: the
    /// first query is aligned with the first key (ONNX `is_causal`, PyTorch's
    /// `is_causal`; with `n_q > n_k` the last queries see every key).
    TopLeft,
    /// Implicit: key row `j` at `j`, query `i` at `i + n_k - n_q`: the last query is
    /// aligned with the last key (decoding after a KV cache, FlashAttention's causal;
    /// with `n_q > n_k` the first `n_q - n_k` queries see no key under causal masking).
    BottomRight,
}

/// Strides between the sequences of a dense batch, in elements of each tensor.
///
/// For the inputs (`q`, `k`, `v`, positions) 0 means every sequence shares one tensor.
/// `out` must not be 0 when there are several sequences. `lse`: 0 means
/// `n_q * lse_token_stride` (packed). `mass`: 0 means every sequence adds into the same
/// arrays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStrides {
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub out: usize,
    pub lse: usize,
    pub mass: usize,
    pub q_positions: usize,
    pub k_positions: usize,
}

/// How the tensors of an attention call split into sequences.
#[derive(Clone, Copy, Debug, Default)]
pub enum Batch<'a> {
    /// One sequence: the tensors as given.
    #[default]
    One,
    /// `n` sequences of equal shape: sequence `b` is the given views moved by
    /// `b * strides.x` elements (`n_q`, `n_k` are per sequence).
    Dense { n: usize, strides: BatchStrides },
    /// Sequences packed back to back: sequence `b` has query rows
    /// `cu_seqlens_q[b] .. cu_seqlens_q[b + 1]` of `q` (and `out`, the log-sum-exp and
    /// the query positions) and key rows `cu_seqlens_k[b] .. cu_seqlens_k[b + 1]` of `k`
    /// and `v` (and the attention mass and key positions). Both arrays hold
    /// `n_seqs + 1` nondecreasing offsets, the last at most the tensor's rows. Rows
    /// outside every sequence are neither read nor written.
    Ragged {
        cu_seqlens_q: &'a [usize],
        cu_seqlens_k: &'a [usize],
    },
}

impl Batch<'_> {
    /// The number of sequences.
    pub fn n_seqs(&self) -> usize {
        match *self {
            Batch::One => 1,
            Batch::Dense { n, .. } => n,
            Batch::Ragged { cu_seqlens_q, .. } => cu_seqlens_q.len().saturating_sub(1),
        }
    }
}

/// One sequence of a batch: its shape and the element offsets of its views.
#[derive(Clone, Copy, Debug, Default)]
struct Seq {
    n_q: usize,
    n_k: usize,
    q: usize,
    k: usize,
    v: usize,
    out: usize,
    lse: usize,
    mass: usize,
    q_pos: usize,
    k_pos: usize,
    /// The first block list of the sequence (block key sets).
    list0: usize,
}

/// The validated, per-call part of a batched attention call.
struct Call<'x, T> {
    q: Heads<'x, T>,
    k: Heads<'x, T>,
    v: Heads<'x, T>,
    batch: Batch<'x>,
    out_tok: usize,
    lse_tok: usize,
    lse_batch: usize,
    mass_head: usize,
    /// Query heads per KV head.
    g: usize,
}

impl<T> Call<'_, T> {
    fn seq(&self, b: usize) -> Seq {
        match self.batch {
            Batch::One => Seq {
                n_q: self.q.n_tokens,
                n_k: self.k.n_tokens,
                ..Seq::default()
            },
            Batch::Dense { strides: s, .. } => Seq {
                n_q: self.q.n_tokens,
                n_k: self.k.n_tokens,
                q: b * s.q,
                k: b * s.k,
                v: b * s.v,
                out: b * s.out,
                lse: b * self.lse_batch,
                mass: b * s.mass,
                q_pos: b * s.q_positions,
                k_pos: b * s.k_positions,
                list0: 0,
            },
            Batch::Ragged {
                cu_seqlens_q: cq,
                cu_seqlens_k: ck,
            } => {
                let (q0, k0) = (cq[b], ck[b]);
                Seq {
                    n_q: cq[b + 1] - q0,
                    n_k: ck[b + 1] - k0,
                    q: q0 * self.q.token_stride,
                    k: k0 * self.k.token_stride,
                    v: k0 * self.v.token_stride,
                    out: q0 * self.out_tok,
                    lse: q0 * self.lse_tok,
                    mass: k0,
                    q_pos: q0,
                    k_pos: k0,
                    list0: 0,
                }
            }
        }
    }

    /// Block lists per query block (1 for other key sets).
    fn groups(&self, keys: &KeySubset<'_>) -> usize {
        match *keys {
            KeySubset::Blocks { per, .. } => list_groups(per, self.q.n_heads, self.k.n_heads),
            _ => 1,
        }
    }

    /// The block lists of a sequence of `n_q` queries (0 for other key sets; `None` on
    /// overflow).
    fn n_lists(&self, keys: &KeySubset<'_>, n_q: usize) -> Option<usize> {
        match *keys {
            KeySubset::Blocks { query_block, .. } => {
                n_q.div_ceil(query_block).checked_mul(self.groups(keys))
            }
            _ => Some(0),
        }
    }
}

/// Block lists per query block: 1 shared, one per KV head or one per query head.
pub(crate) fn list_groups(per: ListsPer, h_q: usize, h_kv: usize) -> usize {
    match per {
        ListsPer::Shared => 1,
        ListsPer::KvHead => h_kv,
        ListsPer::QHead => h_q,
    }
}

/// The block lists of a whole batch (`query_block > 0`): `ceil(n_q_b / query_block) *
/// groups` for every sequence `b` (`n_q`: the queries of a sequence of a dense batch, the
/// rows of a ragged one). Refuses decreasing `cu_seqlens_q` and overflow.
pub(crate) fn block_list_count(
    batch: &Batch<'_>,
    n_q: usize,
    query_block: usize,
    groups: usize,
) -> Result<usize> {
    let per = |n: usize| n.div_ceil(query_block).checked_mul(groups);
    let overflow = || too_big("number of block lists overflows");
    match *batch {
        Batch::One => per(n_q).ok_or_else(overflow),
        Batch::Dense { n, .. } => per(n_q).and_then(|x| x.checked_mul(n)).ok_or_else(overflow),
        Batch::Ragged { cu_seqlens_q, .. } => {
            let mut total = 0usize;
            for w in cu_seqlens_q.windows(2) {
                let n = w[1].checked_sub(w[0]).ok_or(Error::new(
                    ErrorKind::InvalidArgument,
                    "cu_seqlens must be nondecreasing",
                ))?;
                total = per(n)
                    .and_then(|x| x.checked_add(total))
                    .ok_or_else(overflow)?;
            }
            Ok(total)
        }
    }
}

/// Runs `f` with `n` u32 of the thread's position scratch ([`crate::scratch`]: bounded
/// after the call).
fn with_positions<R>(n: usize, f: impl FnOnce(&mut [u32]) -> R) -> Result<R> {
    crate::scratch::with_scratch_of(crate::scratch::Kind::Positions, n, f)
}

/// Writes the implicit positions of a sequence: `n_q` query positions then `n_k` key
/// positions, shifted so that none is negative (masking depends on differences only).
fn implicit_positions(align: CausalAlign, n_q: usize, n_k: usize, out: &mut [u32]) {
    // Query i at i + off, key j at j; shifted by max(0, -off).
    let (q0, k0) = match align {
        CausalAlign::BottomRight if n_q <= n_k => (n_k - n_q, 0),
        CausalAlign::BottomRight => (0, n_q - n_k),
        _ => (0, 0),
    };
    let (qp, kp) = out.split_at_mut(n_q);
    for (i, p) in qp.iter_mut().enumerate() {
        *p = (q0 + i) as u32;
    }
    for (j, p) in kp.iter_mut().enumerate() {
        *p = (k0 + j) as u32;
    }
}

fn too_big(what: &'static str) -> Error {
    Error::new(ErrorKind::SizeOverflow, what)
}

/// Elements spanned by a batched `[n, tokens, heads, d]` view with batch stride `bs`
/// (0: shared, allowed only for inputs and for empty outputs), after the overlap rules of `span_dims`.
fn batch_span(h: Dims, n: usize, bs: usize, input: bool) -> Result<usize> {
    let (tok, heads, d, ts, hs) = (h.0, h.1, h.2, h.3, h.4);
    if n > 1 && bs == 0 {
        // An empty per-sequence view (no tokens or no heads) shares no memory.
        let per = span_dims(d, &mut [(ts, tok), (hs, heads)])?;
        ensure!(
            input || per == 0,
            BadStride,
            "sequences of an output may not share memory (batch stride 0)"
        );
        return Ok(per);
    }
    span_dims(d, &mut [(ts, tok), (hs, heads), (bs, n)])
}

/// A view's dimensions: (tokens, heads, head_dim, token stride, head stride).
pub(crate) type Dims = (usize, usize, usize, usize, usize);

/// Elements every buffer of a batched call must hold (0 for an empty one), and the
/// lse elements between sequences.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extents {
    pub q: usize,
    pub k: usize,
    pub v: usize,
    pub out: usize,
    pub lse: usize,
    pub mass: usize,
    pub q_pos: usize,
    pub k_pos: usize,
    pub lse_batch: usize,
}

/// The extents of a call's buffers under `batch` (`q`, `k`, `v`, `out`: the views of
/// one sequence, or of every row for a ragged batch; `lse`: whether it is written, and
/// its token stride; `mass_head`: its head stride, 0 for one array), with the overlap
/// rules of dense batch strides.
pub(crate) fn extents(
    batch: &Batch<'_>,
    q: Dims,
    k: Dims,
    v: Dims,
    out: Dims,
    lse: (bool, usize),
    mass_head: usize,
) -> Result<Extents> {
    let ((n_q, h_q), (n_k, h_kv)) = ((q.0, q.1), (k.0, k.1));
    // Without an lse output its layout is not looked at (any token stride is fine).
    let lse_per = if lse.0 { span(n_q, h_q, lse.1)? } else { 0 };
    let mass_per = if mass_head == 0 {
        n_k
    } else {
        span(h_kv, n_k, mass_head)?
    };
    let (n, s) = match *batch {
        Batch::Dense { n, strides } => (n, strides),
        Batch::One | Batch::Ragged { .. } => (1, BatchStrides::default()),
    };
    let lse_batch = if !lse.0 {
        0
    } else if s.lse == 0 {
        n_q.checked_mul(lse.1)
            .ok_or(too_big("lse size overflows"))?
    } else {
        s.lse
    };
    ensure!(
        n < 2 || !lse.0 || lse_batch >= lse_per,
        BadStride,
        "lse batch stride makes sequences overlap"
    );
    // (n - 1) * stride + per, or 0 for an empty batch.
    let ext = |stride: usize, per: usize| -> Result<usize> {
        match n {
            0 => Ok(0),
            _ => (n - 1)
                .checked_mul(stride)
                .and_then(|x| x.checked_add(per))
                .ok_or(too_big("batch size overflows")),
        }
    };
    Ok(Extents {
        q: batch_span(q, n, s.q, true)?,
        k: batch_span(k, n, s.k, true)?,
        v: batch_span(v, n, s.v, true)?,
        out: batch_span(out, n, s.out, false)?,
        lse: ext(lse_batch, lse_per)?,
        mass: ext(s.mass, mass_per)?,
        q_pos: ext(s.q_positions, n_q)?,
        k_pos: ext(s.k_positions, n_k)?,
        lse_batch,
    })
}

impl Kernels {
    /// [`Kernels::attention`] over a batch of sequences (see [`Batch`]): every sequence
    /// attends over its own keys, with the same options, and gets results bit-identical
    /// to a separate call over it alone.
    ///
    /// Per sequence, the key set is: every key of the sequence (`KeySubset::Dense`); a
    /// list of the sequence's key rows (`KeySubset::Indices`: the same list for every
    /// sequence, each entry below every sequence's `n_k`; `KeySubset::SeqIndices`: list
    /// `b` for sequence `b`); or block lists (`KeySubset::Blocks`: the lists of every
    /// sequence back to back, sequence `b`'s first list following the lists of the
    /// sequences before it, each sequence having `ceil(n_q_b / query_block)` lists per
    /// group; block ids count the sequence's key blocks). Positions (explicit) are
    /// indexed like the query and key rows; [`CausalAlign`] gives implicit ones per
    /// sequence.
    ///
    /// Errors, besides those of [`Kernels::attention`]: `INVALID_ARGUMENT` (cumulative
    /// offsets of a different count or not nondecreasing, `SeqIndices` without a batch
    /// or with `n_seqs + 1` offsets missing, explicit positions together with an
    /// implicit alignment), `OUT_OF_RANGE` (cumulative offsets past the tensors' rows,
    /// index offsets past the list), `BAD_STRIDE` (output sequences overlapping),
    /// `BUFFER_TOO_SMALL` (a tensor shorter than its batch). Nothing is written on
    /// error.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_batch<T: AttendElement, O: OutElement>(
        &self,
        q: Heads<'_, T>,
        k: Heads<'_, T>,
        v: Heads<'_, T>,
        keys: KeySubset<'_>,
        opts: &AttendOptions<'_>,
        batch: &Batch<'_>,
        out: HeadsMut<'_, O>,
        extras: AttendExtras<'_>,
    ) -> Result<()> {
        let (d, dv) = (q.head_dim, v.head_dim);
        ensure!(d > 0, InvalidArgument, "head_dim = 0");
        ensure!(dv > 0, InvalidArgument, "v head_dim = 0");
        ensure!(k.head_dim == d, InvalidArgument, "q and k head dims differ");
        ensure!(
            out.head_dim == dv,
            InvalidArgument,
            "out head dim differs from v's"
        );
        ensure!(
            k.n_tokens == v.n_tokens && k.n_heads == v.n_heads,
            InvalidArgument,
            "k and v shapes differ"
        );
        ensure!(
            out.n_tokens == q.n_tokens && out.n_heads == q.n_heads,
            InvalidArgument,
            "out must have q's tokens and heads"
        );
        let (h_q, h_kv) = (q.n_heads, k.n_heads);
        super::attend::check_heads(d, h_q, h_kv)?;
        let scale = match opts.scale {
            None => (1.0 / (d as f64).sqrt()) as f32,
            Some(s) => {
                ensure!(s.is_finite(), InvalidArgument, "scale must be finite");
                s
            }
        };
        let softcap = match opts.softcap {
            None => 0.0,
            Some(c) => {
                ensure!(
                    c.is_finite() && c > 0.0,
                    InvalidArgument,
                    "softcap must be finite and > 0"
                );
                c
            }
        };
        let masked = opts.causal || opts.window > 0 || opts.window_right.is_some();
        // Positions are read for masking and for ALiBi.
        let positioned = masked || opts.alibi_slopes.is_some();
        let right = match opts.window_right {
            Some(r) if !opts.causal => r,
            _ => 0,
        };
        let implicit = opts.align != CausalAlign::Positions;
        let sinks = match opts.sinks {
            None => core::ptr::null(),
            Some(s) => {
                ensure!(
                    s.len() == h_q,
                    InvalidArgument,
                    "need one sink per query head"
                );
                ensure!(
                    extras.mass.is_none(),
                    Unsupported,
                    "sinks together with an attention mass output"
                );
                s.as_ptr()
            }
        };
        if let Some(bs) = opts.bias {
            ensure!(
                !matches!(batch, Batch::Ragged { .. }),
                Unsupported,
                "a bias tensor in a ragged batch"
            );
            let need = super::attend::AttendBias::extent(
                batch.n_seqs(),
                h_q,
                q.n_tokens,
                k.n_tokens,
                bs.head_stride,
                bs.query_stride,
                bs.batch_stride,
            )?;
            ensure!(
                bs.data.len() >= need,
                BufferTooSmall,
                "bias tensor shorter than its strides need"
            );
        }
        if let Some(s) = opts.alibi_slopes {
            ensure!(
                s.len() == h_q,
                InvalidArgument,
                "need one ALiBi slope per query head"
            );
            ensure!(
                s.iter().all(|x| x.is_finite()),
                InvalidArgument,
                "ALiBi slopes must be finite"
            );
        }
        ensure!(
            !implicit || (opts.q_positions.is_none() && opts.k_positions.is_none()),
            InvalidArgument,
            "positions given together with an implicit causal alignment"
        );
        let n_seqs = batch.n_seqs();
        if let KeySubset::SeqIndices { .. } = keys {
            ensure!(
                !matches!(batch, Batch::One),
                InvalidArgument,
                "per-sequence index lists need a batch"
            );
        }
        let lse_tok = match extras.lse {
            Some((_, 0)) | None => h_q,
            Some((_, s)) => s,
        };
        let mut call = Call {
            q,
            k,
            v,
            batch: *batch,
            out_tok: out.token_stride,
            lse_tok,
            lse_batch: 0,
            mass_head: extras.mass.as_ref().map_or(0, |m| m.1),
            g: h_q / h_kv,
        };

        // The batch's extent in every buffer (V and the output rows hold dv elements).
        let dims = |n: usize, h: usize, ts: usize, hs: usize| (n, h, d, ts, hs);
        let dims_v = |n: usize, h: usize, ts: usize, hs: usize| (n, h, dv, ts, hs);
        let e = extents(
            batch,
            dims(q.n_tokens, h_q, q.token_stride, q.head_stride),
            dims(k.n_tokens, h_kv, k.token_stride, k.head_stride),
            dims_v(v.n_tokens, h_kv, v.token_stride, v.head_stride),
            dims_v(out.n_tokens, h_q, out.token_stride, out.head_stride),
            (extras.lse.is_some(), lse_tok),
            call.mass_head,
        )?;
        for (need, have) in [
            (e.q, q.data.len()),
            (e.k, k.data.len()),
            (e.v, v.data.len()),
            (e.out, out.data.len()),
        ] {
            ensure!(
                have >= need,
                BufferTooSmall,
                "tensor data shorter than its batch"
            );
        }
        call.lse_batch = e.lse_batch;
        let (lse_need, mass_need, q_pos_need, k_pos_need) = (e.lse, e.mass, e.q_pos, e.k_pos);
        if let Batch::Ragged {
            cu_seqlens_q: cq,
            cu_seqlens_k: ck,
        } = *batch
        {
            ensure!(
                !cq.is_empty(),
                InvalidArgument,
                "cu_seqlens need n_seqs + 1 entries"
            );
            ensure!(
                cq.len() == ck.len(),
                InvalidArgument,
                "cu_seqlens_q and cu_seqlens_k differ in length"
            );
            // Sequences index the views by row: every view holds its rows.
            for (cu, rows) in [(cq, q.n_tokens), (ck, k.n_tokens)] {
                ensure!(
                    cu.windows(2).all(|w| w[0] <= w[1]),
                    InvalidArgument,
                    "cu_seqlens must be nondecreasing"
                );
                ensure!(
                    cu[cu.len() - 1] <= rows,
                    OutOfRange,
                    "cu_seqlens past the tensor's rows"
                );
            }
        }
        if let Some((buf, _)) = &extras.lse {
            ensure!(
                buf.len() >= lse_need,
                BufferTooSmall,
                "lse buffer too small"
            );
        }
        if let Some((buf, _)) = &extras.mass {
            ensure!(
                buf.len() >= mass_need,
                BufferTooSmall,
                "mass buffer too small"
            );
        }
        if positioned && !implicit {
            let qp = opts.q_positions.ok_or(Error::new(
                ErrorKind::NullPointer,
                "query positions are required for causal masking and ALiBi",
            ))?;
            let kp = opts.k_positions.ok_or(Error::new(
                ErrorKind::NullPointer,
                "key positions are required for causal masking and ALiBi",
            ))?;
            let exact = matches!(batch, Batch::One | Batch::Ragged { .. });
            let ok = |have: usize, need: usize| if exact { have == need } else { have >= need };
            ensure!(
                ok(qp.len(), q_pos_need),
                InvalidArgument,
                "need one position per query"
            );
            ensure!(
                ok(kp.len(), k_pos_need),
                InvalidArgument,
                "need one position per K row"
            );
        }
        // Per-sequence index lists and block lists, as a whole.
        if let KeySubset::SeqIndices { indices, offsets } = keys {
            ensure!(
                offsets.len() == n_seqs + 1,
                InvalidArgument,
                "per-sequence index lists need n_seqs + 1 offsets"
            );
            ensure!(
                offsets.windows(2).all(|w| w[0] <= w[1]),
                InvalidArgument,
                "index offsets must be nondecreasing"
            );
            ensure!(
                offsets[n_seqs] <= indices.len(),
                OutOfRange,
                "index offsets point past the list"
            );
        }
        if let KeySubset::Blocks {
            block_size,
            query_block,
            offsets,
            ..
        } = keys
        {
            ensure!(block_size > 0, InvalidArgument, "block_size = 0");
            ensure!(query_block > 0, InvalidArgument, "query_block_size = 0");
            let total = block_list_count(batch, q.n_tokens, query_block, call.groups(&keys))?;
            ensure!(
                offsets.len() == total + 1,
                InvalidArgument,
                "block offsets must have n_lists + 1 entries"
            );
            ensure!(
                offsets.windows(2).all(|w| w[0] <= w[1]),
                InvalidArgument,
                "block offsets must be nondecreasing"
            );
        }

        // Every sequence's own checks first, then the runs: nothing is written on error.
        let mut list0 = 0;
        for b in 0..n_seqs {
            let mut s = call.seq(b);
            s.list0 = list0;
            list0 += call.n_lists(&keys, s.n_q).unwrap_or(0);
            seq_keys(&call, &keys, &s, b, true)?;
            ensure!(
                s.n_k <= u32::MAX as usize,
                InvalidArgument,
                "n_k must be below 2^32 (key indices are 32-bit)"
            );
            if implicit && positioned {
                ensure!(
                    s.n_q <= u32::MAX as usize + 1,
                    InvalidArgument,
                    "implicit positions need n_q <= 2^32"
                );
            }
        }
        if q.n_tokens == 0 {
            // Nothing to write: never size a workspace for head_dim.
            return Ok(());
        }
        let ws = ka::workspace_bytes_dv(d, dv).ok_or(too_big("workspace size overflows"))?;
        let (out_ptr, out_type) = (out.data.as_mut_ptr() as *mut u8, O::out_type());
        let esz = out_type.size();
        let (lse_ptr, mass_ptr) = (
            extras
                .lse
                .map_or(core::ptr::null_mut(), |(b, _)| b.as_mut_ptr()),
            extras
                .mass
                .map_or(core::ptr::null_mut(), |(b, _)| b.as_mut_ptr()),
        );
        let sh = Shared((out_ptr, lse_ptr, mass_ptr, sinks));
        // Runs sequence `s` (its first block list at `s.list0`).
        let run_seq = |b: usize, s: Seq| -> Result<()> {
            let (out_ptr, lse_ptr, mass_ptr, sinks) = sh.get();
            let mut args = AttendArgs {
                q: q.data.as_ptr().wrapping_add(s.q),
                n_q: s.n_q,
                h_q,
                d,
                dv,
                q_tok: q.token_stride,
                q_head: q.head_stride,
                k: k.data.as_ptr().wrapping_add(s.k),
                n_k: s.n_k,
                h_kv,
                k_tok: k.token_stride,
                k_head: k.head_stride,
                v: v.data.as_ptr().wrapping_add(s.v),
                v_tok: v.token_stride,
                v_head: v.head_stride,
                keys: seq_keys(&call, &keys, &s, b, false)?,
                scale,
                softcap,
                alibi: opts.alibi_slopes.map_or(core::ptr::null(), |s| s.as_ptr()),
                bias: opts.bias.map_or(core::ptr::null(), |bs| {
                    bs.data
                        .ptr()
                        .wrapping_add(b * bs.batch_stride * bs.data.kind().size())
                }),
                bias_type: opts.bias.map_or(OutType::F32, |bs| bs.data.kind()),
                bias_head: opts.bias.map_or(0, |bs| bs.head_stride),
                bias_query: opts.bias.map_or(0, |bs| bs.query_stride),
                causal: masked,
                window: opts.window,
                right,
                q_pos: core::ptr::null(),
                k_pos: core::ptr::null(),
                out: out_ptr.wrapping_add(s.out * esz),
                out_type,
                o_tok: out.token_stride,
                o_head: out.head_stride,
                lse: if lse_ptr.is_null() {
                    lse_ptr
                } else {
                    lse_ptr.wrapping_add(s.lse)
                },
                lse_tok: call.lse_tok,
                mass: if mass_ptr.is_null() {
                    mass_ptr
                } else {
                    mass_ptr.wrapping_add(s.mass)
                },
                mass_head: call.mass_head,
                workspace: core::ptr::null_mut(),
            };
            // The dot-product path fills 16 query rows per KV head in its vector lanes;
            // with fewer (decoding) the canonical path is as fast.
            let f = match T::dot_fn(self) {
                Some(f) if opts.bf16_dot && s.n_q.saturating_mul(call.g) >= ka::TILE_ROWS => f,
                _ => T::attend_fn(self),
            };
            if !positioned {
                run(f, self.attend_merge, args, ws, sinks)
            } else if implicit {
                with_positions(s.n_q + s.n_k, |p| {
                    implicit_positions(opts.align, s.n_q, s.n_k, p);
                    args.q_pos = p.as_ptr();
                    args.k_pos = p[s.n_q..].as_ptr();
                    run(f, self.attend_merge, args, ws, sinks)
                })?
            } else {
                // Checked above to hold every sequence's positions.
                args.q_pos = opts
                    .q_positions
                    .unwrap_or(&[])
                    .as_ptr()
                    .wrapping_add(s.q_pos);
                args.k_pos = opts
                    .k_positions
                    .unwrap_or(&[])
                    .as_ptr()
                    .wrapping_add(s.k_pos);
                run(f, self.attend_merge, args, ws, sinks)
            }
        };
        // Threads: a sequence with enough work for threads of its own splits into its
        // own units (see `attend_units`), one sequence after the other; the smaller ones
        // run as the units of one parallel loop over the batch (each inline on the thread
        // that runs it), unless they add into one shared mass array. A sequence computes
        // the same bits either way (its units are fixed by its shape alone), so the
        // outputs never depend on this grouping or on the threads.
        let seq_work = |s: &Seq| {
            s.n_q
                .saturating_mul(h_q)
                .saturating_mul(s.n_k.max(1))
                .saturating_mul(d.max(dv))
        };
        let min_work = parallel::min_parallel_work();
        let big = |s: &Seq| seq_work(s) >= min_work;
        let shared_mass = !mass_ptr.is_null()
            && matches!(batch, Batch::Dense { n, strides } if *n > 1 && strides.mass == 0);
        let mut list0 = 0;
        let mut small_work = 0usize;
        for b in 0..n_seqs {
            let mut s = call.seq(b);
            s.list0 = list0;
            list0 += call.n_lists(&keys, s.n_q).unwrap_or(0);
            if s.n_q == 0 {
                continue;
            }
            if shared_mass || big(&s) {
                run_seq(b, s)?;
            } else {
                small_work = small_work.saturating_add(seq_work(&s));
            }
        }
        if shared_mass || small_work == 0 {
            return Ok(());
        }
        // Ranges of consecutive sequences (a range finds its first block list by adding
        // up the lists of the sequences before it).
        let per = n_seqs.div_ceil(256);
        parallel::for_each_range(n_seqs, per, small_work, &|range| {
            let mut list0 = 0;
            for b in 0..range.end {
                let mut s = call.seq(b);
                s.list0 = list0;
                list0 += call.n_lists(&keys, s.n_q).unwrap_or(0);
                if b >= range.start && s.n_q > 0 && !big(&s) {
                    run_seq(b, s)?;
                }
            }
            Ok(())
        })
    }
}

/// Runs the kernel on one sequence's validated arguments, in units (see
/// `attend_units`): attention_batch checked that every view holds the rows of every
/// sequence it describes, that every index and block id is in range of the sequence's
/// keys, that positions are present when masking, and that outputs are unique borrows
/// (disjoint from the inputs) whose sequences do not overlap.
fn run<T: Copy>(
    f: AttendFn<T>,
    merge: MergeFn,
    args: AttendArgs<T>,
    ws: usize,
    sinks: *const f32,
) -> Result<()> {
    super::attend_units::attend(f, merge, args, ws, sinks)
}

/// The kernel's key set of sequence `b`; with `check`, validates it first.
fn seq_keys<T>(
    call: &Call<'_, T>,
    keys: &KeySubset<'_>,
    s: &Seq,
    b: usize,
    check: bool,
) -> Result<KeySet> {
    let in_range = |idx: &[u32]| idx.iter().all(|&i| (i as usize) < s.n_k);
    Ok(match *keys {
        KeySubset::Dense => KeySet::Dense,
        KeySubset::Indices(idx) => {
            ensure!(
                !check || in_range(idx),
                OutOfRange,
                "key index >= the sequence's n_k"
            );
            KeySet::Indices {
                idx: idx.as_ptr(),
                n: idx.len(),
            }
        }
        KeySubset::SeqIndices { indices, offsets } => {
            let idx = &indices[offsets[b]..offsets[b + 1]];
            ensure!(
                !check || in_range(idx),
                OutOfRange,
                "key index >= the sequence's n_k"
            );
            KeySet::Indices {
                idx: idx.as_ptr(),
                n: idx.len(),
            }
        }
        KeySubset::Blocks {
            block_size,
            query_block,
            offsets,
            ids,
            per,
        } => {
            let n_lists = call.n_lists(keys, s.n_q).unwrap_or(0);
            let lists = &offsets[s.list0..s.list0 + n_lists + 1];
            if check {
                ensure!(
                    lists[n_lists] <= ids.len(),
                    OutOfRange,
                    "block offsets point past the block ids"
                );
                let n_blocks = s.n_k.div_ceil(block_size);
                ensure!(
                    ids[lists[0]..lists[n_lists]]
                        .iter()
                        .all(|&b| (b as usize) < n_blocks),
                    OutOfRange,
                    "key block id >= ceil(n_k / block_size)"
                );
            }
            KeySet::Blocks {
                block: block_size,
                q_block: query_block,
                offsets: lists.as_ptr(),
                ids: ids.as_ptr(),
                per,
            }
        }
    })
}
