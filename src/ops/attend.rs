//! Sparse attention: attention over selected keys or key blocks, merging of partial
//! results, attention mass, and Quest key-block summaries and bounds.
//!
//! Numerics (see `tokenroute_kernels::attend` for the exact recipe): inputs are
//! converted exactly to f32, dot products and the online softmax follow one canonical
//! order of f32 operations, so every ISA level and every thread count returns
//! **bit-identical** results, and a (query, head) row's result does not depend on the
//! other queries of the call, on `n_k` or on how an engine splits the queries, except
//! through the shape-only split-K rule of decoding calls (see `attend_units`). Against
//! an exact (f64) evaluation of
//! the same inputs the output error is at most
//! `2^-17 (1 + A + n / 64) vmax + u_out |ref| + e_out`, where `A` is the largest
//! `scale * sum_e |q_e k_e|` of the row's visible keys, `n` their number, `vmax` the
//! largest `|v|` among them, `u_out` the output rounding (f32 2^-24, f16 2^-11,
//! bf16 2^-8) and `e_out` half the output type's smallest subnormal (f32 2^-150, f16
//! 2^-25, bf16 2^-134: results in the subnormal range round to a fixed grid); the
//! log-sum-exp within `2^-17 (1 + A + |lse|)`.

use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::{span, Element};
use crate::parallel::{self, Phases, Shared};
use crate::Kernels;
use half::{bf16, f16};
use tokenroute_kernels::attend::{
    self as ka, AttendFn, BoundArgs, BoundFn, MergeArgs, OutType, SummaryArgs, SummaryFn,
};

pub use super::attend_batch::{Batch, BatchStrides, CausalAlign};
pub use tokenroute_kernels::attend::ListsPer;

/// A read-only `[tokens, heads, head_dim]` tensor: element `(t, h, e)` at
/// `data[t * token_stride + h * head_stride + e]`.
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) n_tokens: usize,
    pub(crate) n_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) token_stride: usize,
    pub(crate) head_stride: usize,
}

/// A mutable `[tokens, heads, head_dim]` tensor; only the `head_dim` elements of each
/// (token, head) row are written.
#[derive(Debug)]
pub struct HeadsMut<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) n_tokens: usize,
    pub(crate) n_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) token_stride: usize,
    pub(crate) head_stride: usize,
}

/// Elements spanned by a `[tokens, heads, head_dim]` layout, after checking that its
/// rows do not overlap (`BAD_STRIDE`: the smaller stride must hold a row, the larger one
/// all rows of the smaller) and that nothing overflows (`SIZE_OVERFLOW`).
pub(crate) fn span3(
    n_tokens: usize,
    n_heads: usize,
    d: usize,
    token_stride: usize,
    head_stride: usize,
) -> Result<usize> {
    span_dims(d, &mut [(token_stride, n_tokens), (head_stride, n_heads)])
}

/// The head shape rules shared by attention, Quest bounds and Quest selection: values,
/// checked before any buffer (status precedence) by the C layer and here.
pub(crate) fn check_heads(head_dim: usize, n_heads_q: usize, n_heads_kv: usize) -> Result<()> {
    ensure!(head_dim > 0, InvalidArgument, "head_dim = 0");
    ensure!(n_heads_q > 0, InvalidArgument, "n_heads_q = 0");
    ensure!(n_heads_kv > 0, InvalidArgument, "n_heads_kv = 0");
    ensure!(
        n_heads_q % n_heads_kv == 0,
        InvalidArgument,
        "n_heads_q is not a multiple of n_heads_kv"
    );
    Ok(())
}

/// Elements spanned by rows of `d` elements laid out along `dims` (`(stride, count)`
/// pairs, in any order): 0 when a count is 0. Sorted by stride, each dimension's stride
/// must hold everything the smaller ones span (rows may not overlap; a dimension of
/// count 1 imposes nothing), and nothing may overflow.
pub(crate) fn span_dims(d: usize, dims: &mut [(usize, usize)]) -> Result<usize> {
    if dims.iter().any(|&(_, n)| n == 0) {
        return Ok(0);
    }
    dims.sort_unstable();
    let mut extent = d;
    for &(stride, n) in dims.iter() {
        if n > 1 {
            ensure!(
                stride >= extent,
                BadStride,
                "token/head strides make rows overlap"
            );
            extent = span(n, extent, stride)?;
        }
    }
    Ok(extent)
}

impl<'a, T> Heads<'a, T> {
    /// Checks the layout (rows may not overlap) and that `data` holds every row.
    pub fn new(
        data: &'a [T],
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        token_stride: usize,
        head_stride: usize,
    ) -> Result<Self> {
        let need = span3(n_tokens, n_heads, head_dim, token_stride, head_stride)?;
        ensure!(
            data.len() >= need,
            BufferTooSmall,
            "tensor data shorter than its layout"
        );
        Ok(Heads {
            data,
            n_tokens,
            n_heads,
            head_dim,
            token_stride,
            head_stride,
        })
    }
    /// A dense `[tokens, heads, head_dim]` tensor.
    pub fn dense(data: &'a [T], n_tokens: usize, n_heads: usize, head_dim: usize) -> Result<Self> {
        let ts = n_heads.checked_mul(head_dim).ok_or(Error::new(
            ErrorKind::SizeOverflow,
            "heads * head_dim overflows",
        ))?;
        Self::new(data, n_tokens, n_heads, head_dim, ts, head_dim)
    }
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
}

impl<'a, T> HeadsMut<'a, T> {
    /// Checks the layout (rows may not overlap) and that `data` holds every row.
    pub fn new(
        data: &'a mut [T],
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        token_stride: usize,
        head_stride: usize,
    ) -> Result<Self> {
        let need = span3(n_tokens, n_heads, head_dim, token_stride, head_stride)?;
        ensure!(
            data.len() >= need,
            BufferTooSmall,
            "tensor data shorter than its layout"
        );
        Ok(HeadsMut {
            data,
            n_tokens,
            n_heads,
            head_dim,
            token_stride,
            head_stride,
        })
    }
    /// A dense `[tokens, heads, head_dim]` tensor.
    pub fn dense(
        data: &'a mut [T],
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
    ) -> Result<Self> {
        let ts = n_heads.checked_mul(head_dim).ok_or(Error::new(
            ErrorKind::SizeOverflow,
            "heads * head_dim overflows",
        ))?;
        Self::new(data, n_tokens, n_heads, head_dim, ts, head_dim)
    }
}

/// Which keys every (query, head) row attends over.
#[derive(Clone, Copy, Debug, Default)]
pub enum KeySubset<'a> {
    /// Every key, in order.
    #[default]
    Dense,
    /// Batches only ([`Kernels::attention_batch`]): sequence `b` attends over the K
    /// rows `indices[offsets[b] .. offsets[b + 1]]` of its own keys (`n_seqs + 1`
    /// nondecreasing offsets).
    SeqIndices {
        indices: &'a [u32],
        offsets: &'a [usize],
    },
    /// The listed K rows (each `< n_k`; duplicates allowed, counted twice), the same
    /// for every query and head; read in place, never gathered.
    Indices(&'a [u32]),
    /// Block-sparse: per query block of `query_block` queries (and per list group, see
    /// [`ListsPer`]) a list of key blocks of `block_size` keys; block `b` stands for K
    /// rows `b * block_size .. min((b + 1) * block_size, n_k)`. List `L` is
    /// `ids[offsets[L] .. offsets[L + 1]]`, with `L = qb` (shared), `g * n_qblocks + qb`
    /// (per KV head `g`) or `h * n_qblocks + qb` (per query head `h`).
    Blocks {
        block_size: usize,
        query_block: usize,
        offsets: &'a [usize],
        ids: &'a [u32],
        per: ListsPer,
    },
}

/// Masking and scaling of an attention call.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttendOptions<'a> {
    /// The softmax scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
    /// Logit softcap `c` (Gemma 2): the logit `scale * q.k` becomes
    /// `c * tanh(scale * q.k / c)` before masking and the softmax. `None`: none;
    /// `Some(c)` needs `c` finite and `> 0`. The error bounds gain `2^-20 c vmax`
    /// (outputs), `2^-20 c` (log-sum-exp) and `2^-20 c (1 + R/64) (1 + S)` (mass; see
    /// the C header); `A` stays the uncapped `scale * sum |q k|`.
    pub softcap: Option<f32>,
    /// ALiBi slopes (BLOOM, MPT), one per query head: `-slope[h] * |q_pos - k_pos|`
    /// joins the logit of head `h` (after the softcap). Needs positions: `q_positions`
    /// and `k_positions`, or an implicit [`CausalAlign`], also without causal masking.
    /// Slopes must be finite. `A` of the error bound includes the term's magnitude.
    pub alibi_slopes: Option<&'a [f32]>,
    /// An additive bias tensor of f32, f16 or bf16 (relative-position biases, float masks
    /// with `-inf`): see [`AttendBias`]. Joins the logit after the softcap (and ALiBi). A
    /// row whose visible keys all get `-inf` is an empty row (zeros, log-sum-exp `-inf`);
    /// `+inf` or NaN makes the row NaN. `A` of the error bound includes `|bias|`. Not in ragged
    /// batches (`UNSUPPORTED`).
    pub bias: Option<AttendBias<'a>>,
    /// Mask keys after the query, by position (`k_pos[k] <= q_pos[i]` is visible).
    pub causal: bool,
    /// With a window `w > 0` (implies causal masking), keys at or before
    /// `q_pos[i] - w` are masked too.
    pub window: u32,
    /// A right extent: keys up to `q_pos[i] + r` are visible (`u32::MAX`: no right
    /// limit), so that causality and the window's sides are separate options: `causal`
    /// still limits the right side to `q_pos[i]`, and a window no longer implies causal
    /// masking. `window = w > 0` with `window_right = Some(r)` is the two-sided local
    /// window `q_pos[i] - w < k_pos <= q_pos[i] + r` (bidirectional encoders: `Some(w -
    /// 1)` for a symmetric one); `window = 0` leaves the left side unlimited.
    pub window_right: Option<u32>,
    /// `n_q` query positions and `n_k` key positions (one per K row), required when
    /// masking with [`CausalAlign::Positions`].
    pub q_positions: Option<&'a [u32]>,
    pub k_positions: Option<&'a [u32]>,
    /// Implicit positions instead of `q_positions` / `k_positions` (which must then be
    /// `None`): see [`CausalAlign`].
    pub align: CausalAlign,
    /// Sink logits, one per query head (gpt-oss style): each joins its rows' softmax
    /// denominator as `exp(sink)` without a value (`-inf`: none). Computed as one more
    /// part of `attention_merge`'s canonical merge over the kernel's f32 rows, so the
    /// output error grows by the merge's `2^-22 vmax`; not with a mass output.
    pub sinks: Option<&'a [f32]>,
    /// Allow the AVX512-BF16 dot-product path for bf16 inputs where the CPU has it
    /// (not bit-identical to the other levels; see `Kernels::attention`).
    pub bf16_dot: bool,
}

/// An additive attention bias: element (query head `h`, query `i`, K row `k`) of
/// sequence `b` at `data[b * batch_stride + h * head_stride + i * query_stride + k]`
/// (keys contiguous; a stride of 0 broadcasts over heads, queries or sequences). `k`
/// counts the K rows of the sequence (not positions in an index or block list).
/// The elements are f32, f16 or bf16 ([`BiasData`]); 16-bit values are converted to f32
/// exactly, so they give the bits of an f32 bias holding the same values.
#[derive(Clone, Copy, Debug)]
pub struct AttendBias<'a> {
    pub data: BiasData<'a>,
    pub head_stride: usize,
    pub query_stride: usize,
    /// Elements between the sequences of a dense batch.
    pub batch_stride: usize,
}

/// The elements of an [`AttendBias`]: f32, f16 or bf16 (`From` a slice of each).
#[derive(Clone, Copy, Debug)]
pub enum BiasData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

impl<'a> From<&'a [f32]> for BiasData<'a> {
    fn from(x: &'a [f32]) -> Self {
        BiasData::F32(x)
    }
}

impl<'a> From<&'a [f16]> for BiasData<'a> {
    fn from(x: &'a [f16]) -> Self {
        BiasData::F16(x)
    }
}

impl<'a> From<&'a [bf16]> for BiasData<'a> {
    fn from(x: &'a [bf16]) -> Self {
        BiasData::BF16(x)
    }
}

impl BiasData<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            BiasData::F32(x) => x.len(),
            BiasData::F16(x) => x.len(),
            BiasData::BF16(x) => x.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first element's address.
    pub(crate) fn ptr(&self) -> *const u8 {
        match self {
            BiasData::F32(x) => x.as_ptr() as *const u8,
            BiasData::F16(x) => x.as_ptr() as *const u8,
            BiasData::BF16(x) => x.as_ptr() as *const u8,
        }
    }

    /// The byte range `[start, end)` of the elements (for overlap checks).
    pub(crate) fn byte_range(&self) -> (usize, usize) {
        let start = self.ptr() as usize;
        (start, start + self.len() * self.kind().size())
    }

    /// The kernel's element type.
    pub(crate) fn kind(&self) -> OutType {
        match self {
            BiasData::F32(_) => OutType::F32,
            BiasData::F16(_) => OutType::F16,
            BiasData::BF16(_) => OutType::BF16,
        }
    }
}

impl AttendBias<'_> {
    /// Elements a call reads: `(n_seqs - 1) * batch_stride + (h_q - 1) * head_stride +
    /// (n_q - 1) * query_stride + n_k`, or 0 when any of the counts is 0.
    pub fn extent(
        n_seqs: usize,
        h_q: usize,
        n_q: usize,
        n_k: usize,
        head_stride: usize,
        query_stride: usize,
        batch_stride: usize,
    ) -> Result<usize> {
        if n_seqs == 0 || h_q == 0 || n_q == 0 || n_k == 0 {
            return Ok(0);
        }
        (n_seqs - 1)
            .checked_mul(batch_stride)
            .and_then(|x| x.checked_add((h_q - 1).checked_mul(head_stride)?))
            .and_then(|x| x.checked_add((n_q - 1).checked_mul(query_stride)?))
            .and_then(|x| x.checked_add(n_k))
            .ok_or(Error::new(ErrorKind::SizeOverflow, "bias extent overflows"))
    }
}

/// Optional outputs of an attention call.
#[derive(Debug, Default)]
pub struct AttendExtras<'a> {
    /// The natural log-sum-exp of every row: `lse[i * lse_token_stride + h]`
    /// (`-inf` for a row that sees no key).
    pub lse: Option<(&'a mut [f32], usize)>,
    /// Attention mass, **added** to `mass[g * mass_head_stride + k]` for K row `k` and
    /// KV head `g` (`mass_head_stride = 0`: every head into the same `n_k` floats).
    /// Summation order and error bound: `tkr_attention_options.mass` in the C header.
    pub mass: Option<(&'a mut [f32], usize)>,
}

/// Runs `f` with at least `bytes` bytes of 64-byte aligned scratch of the running
/// thread (its attention scratch, [`crate::scratch`]: bounded after the call).
pub(crate) fn with_workspace<R>(bytes: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
    crate::scratch::with_scratch(crate::scratch::Kind::Attend, bytes, |l| {
        f(l.as_mut_ptr() as *mut u8)
    })
}

/// The element types attention supports (f32, f16, bf16).
pub trait AttendElement: Element + ka::Elem {
    #[doc(hidden)]
    fn attend_fn(k: &Kernels) -> AttendFn<Self>;
    #[doc(hidden)]
    fn summary_fn(k: &Kernels) -> SummaryFn<Self>;
    #[doc(hidden)]
    fn bound_fn(k: &Kernels) -> BoundFn<Self>;
    #[doc(hidden)]
    fn out_type() -> OutType;
    /// The opt-in AVX512-BF16 kernel where this type and CPU allow it.
    #[doc(hidden)]
    fn dot_fn(_k: &Kernels) -> Option<AttendFn<Self>> {
        None
    }
}

impl AttendElement for f32 {
    fn attend_fn(k: &Kernels) -> AttendFn<f32> {
        k.attend_f32
    }
    fn summary_fn(k: &Kernels) -> SummaryFn<f32> {
        k.key_summary_f32
    }
    fn bound_fn(k: &Kernels) -> BoundFn<f32> {
        k.key_bound_f32
    }
    fn out_type() -> OutType {
        OutType::F32
    }
}
impl AttendElement for f16 {
    fn attend_fn(k: &Kernels) -> AttendFn<f16> {
        k.attend_f16
    }
    fn summary_fn(k: &Kernels) -> SummaryFn<f16> {
        k.key_summary_f16
    }
    fn bound_fn(k: &Kernels) -> BoundFn<f16> {
        k.key_bound_f16
    }
    fn out_type() -> OutType {
        OutType::F16
    }
}
impl AttendElement for bf16 {
    fn attend_fn(k: &Kernels) -> AttendFn<bf16> {
        k.attend_bf16
    }
    fn summary_fn(k: &Kernels) -> SummaryFn<bf16> {
        k.key_summary_bf16
    }
    fn bound_fn(k: &Kernels) -> BoundFn<bf16> {
        k.key_bound_bf16
    }
    fn out_type() -> OutType {
        OutType::BF16
    }
    fn dot_fn(k: &Kernels) -> Option<AttendFn<bf16>> {
        k.attend_bf16_dot()
    }
}

/// The output element types (f32, f16, bf16).
pub trait OutElement: Element {
    #[doc(hidden)]
    fn out_type() -> OutType;
}
impl OutElement for f32 {
    fn out_type() -> OutType {
        OutType::F32
    }
}
impl OutElement for f16 {
    fn out_type() -> OutType {
        OutType::F16
    }
}
impl OutElement for bf16 {
    fn out_type() -> OutType {
        OutType::BF16
    }
}

impl Kernels {
    /// Attention of `q` `[n_q, H_q, d]` over a subset of the keys of `k` `[n_k, H_kv,
    /// d]` and `v` `[n_k, H_kv, dv]`, written to `out` `[n_q, H_q, dv]` (any of f32, f16,
    /// bf16). V's head dimension `dv` may differ from Q/K's `d` (multi-head latent
    /// attention: `d = 192`, `dv = 128`, no zero-padding of V); the default scale stays
    /// `1 / sqrt(d)`, and with `dv = d` every result is bit for bit what it always was.
    ///
    /// Query head `h` reads KV head `h / (H_q / H_kv)`; `H_q` must be a multiple of
    /// `H_kv`. Flash-style: keys are taken in fixed blocks of 64 with an online softmax,
    /// the `n_q x n_k` scores are never materialized, large logits are stable, and a row
    /// that sees no key gets zeros (and a log-sum-exp of `-inf`), never NaN. A NaN logit
    /// makes its row NaN (every NaN output, the log-sum-exp included, is the canonical
    /// quiet NaN of its type); a masked key contributes nothing even when its K or V
    /// holds infinities or NaNs.
    ///
    /// Results are bit-identical on every ISA level, except with
    /// [`AttendOptions::bf16_dot`] on a CPU with AVX512-BF16 (bf16 products summed by
    /// `vdpbf16ps`, probabilities rounded to bf16 for P.V): see the crate docs for its
    /// bound.
    ///
    /// Errors: `INVALID_ARGUMENT` (`q` and `k` head dims differ, `out`'s differs from
    /// `v`'s, a head dim is 0, `H_q % H_kv != 0`, `K`/`V` tokens or heads differ, `out`'s
    /// tokens or heads differ from `q`'s, a non-finite scale, malformed block
    /// lists, `n_k >= 2^32`), `OUT_OF_RANGE` (a key index or block id), `NULL_POINTER`
    /// (positions missing when masking), `BUFFER_TOO_SMALL`, `BAD_STRIDE`,
    /// `SIZE_OVERFLOW`. Nothing is written on error.
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: AttendElement, O: OutElement>(
        &self,
        q: Heads<'_, T>,
        k: Heads<'_, T>,
        v: Heads<'_, T>,
        keys: KeySubset<'_>,
        opts: &AttendOptions<'_>,
        out: HeadsMut<'_, O>,
        extras: AttendExtras<'_>,
    ) -> Result<()> {
        self.attention_batch(q, k, v, keys, opts, &Batch::One, out, extras)
    }

    /// Combines partial attention results over disjoint key chunks (flash-decoding):
    /// `parts` holds `n_parts` blocks of `n_rows` rows of `d` normalized outputs
    /// (element `(i, r, e)` at `parts[i * part_stride + r * row_stride + e]`), `lse`
    /// their log-sum-exps (`lse[i * lse_part_stride + r]`). Writes the exact combination
    /// to `out` (rows x d) and its log-sum-exp to `out_lse`. Equal to one call over all
    /// the keys within rounding (weights computed in f64); bit-identical on every level.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_merge<O: OutElement>(
        &self,
        n_parts: usize,
        parts: &[f32],
        part_stride: usize,
        row_stride: usize,
        lse: &[f32],
        lse_part_stride: usize,
        out: crate::MatrixMut<'_, O>,
        out_lse: Option<&mut [f32]>,
    ) -> Result<()> {
        let (n_rows, d) = (out.rows, out.cols);
        ensure!(d > 0, InvalidArgument, "head_dim = 0");
        let need_o = span3(n_parts, n_rows, d, part_stride, row_stride)?;
        ensure!(
            parts.len() >= need_o,
            BufferTooSmall,
            "partial outputs too short"
        );
        let need_l = span(n_parts, n_rows, lse_part_stride)?;
        ensure!(lse.len() >= need_l, BufferTooSmall, "partial lse too short");
        let mut lse_out = core::ptr::null_mut();
        if let Some(l) = out_lse {
            ensure!(l.len() >= n_rows, BufferTooSmall, "out_lse too short");
            lse_out = l.as_mut_ptr();
        }
        if n_rows == 0 {
            // Nothing to write: never size (or allocate) a workspace for head_dim.
            return Ok(());
        }
        let ws = d.checked_mul(4).ok_or(Error::new(
            ErrorKind::SizeOverflow,
            "workspace size overflows",
        ))?;
        let args = MergeArgs {
            n_parts,
            n_rows,
            d,
            o: parts.as_ptr(),
            part_stride,
            row_stride,
            lse: lse.as_ptr(),
            lse_part_stride,
            out: out.data.as_mut_ptr() as *mut u8,
            out_type: O::out_type(),
            out_row_stride: out.stride,
            out_lse: lse_out,
            workspace: core::ptr::null_mut(),
        };
        // Rows are merged independently: units of consecutive rows.
        let (f, sh) = (self.attend_merge, Shared(args));
        let esz = O::out_type().size();
        let row_work = n_parts.saturating_mul(d).saturating_mul(8).max(1);
        parallel::for_each_range(
            n_rows,
            parallel::items_per_unit(row_work),
            n_rows.saturating_mul(row_work),
            &|r| {
                let mut a = sh.get();
                a.o = a.o.wrapping_add(r.start * a.row_stride);
                a.lse = a.lse.wrapping_add(r.start);
                a.out = a.out.wrapping_add(r.start * a.out_row_stride * esz);
                if !a.out_lse.is_null() {
                    a.out_lse = a.out_lse.wrapping_add(r.start);
                }
                a.n_rows = r.len();
                with_workspace(ws, |w| {
                    a.workspace = w as *mut f32;
                    // SAFETY: the spans were checked; outputs are unique borrows, and
                    // units write disjoint rows.
                    unsafe { f(&a) }
                })
            },
        )
    }

    /// Quest key-block summaries: for key blocks `blocks` of `block_size` keys of `k`
    /// `[n_k, H_kv, d]`, the elementwise minimum and maximum of each block's keys per KV
    /// head, written (as f32, exactly) to `kmin`/`kmax[(b * H_kv + g) * d + e]` (layout
    /// `[n_blocks, H_kv, d]`; the last block may be partial). A NaN element makes both
    /// NaN. Update only the last block as keys are appended.
    pub fn key_block_summary<T: AttendElement>(
        &self,
        k: Heads<'_, T>,
        block_size: usize,
        blocks: core::ops::Range<usize>,
        kmin: &mut [f32],
        kmax: &mut [f32],
    ) -> Result<()> {
        let d = k.head_dim;
        ensure!(d > 0, InvalidArgument, "head_dim = 0");
        ensure!(block_size > 0, InvalidArgument, "block_size = 0");
        ensure!(k.n_heads > 0, InvalidArgument, "n_heads_kv = 0");
        let n_blocks = k.n_tokens.div_ceil(block_size);
        ensure!(
            blocks.start <= blocks.end,
            InvalidArgument,
            "block range is reversed"
        );
        ensure!(
            blocks.end <= n_blocks,
            OutOfRange,
            "block range past the last block"
        );
        let need = blocks
            .end
            .checked_mul(k.n_heads)
            .and_then(|x| x.checked_mul(d))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        ensure!(
            kmin.len() >= need && kmax.len() >= need,
            BufferTooSmall,
            "summary buffers shorter than block_end * heads * head_dim"
        );
        let a = SummaryArgs {
            k: k.data.as_ptr(),
            n_k: k.n_tokens,
            h_kv: k.n_heads,
            d,
            k_tok: k.token_stride,
            k_head: k.head_stride,
            block: block_size,
            b0: blocks.start,
            b1: blocks.end,
            kmin: kmin.as_mut_ptr(),
            kmax: kmax.as_mut_ptr(),
        };
        // Blocks are independent: units of consecutive blocks.
        let (f, sh) = (T::summary_fn(self), Shared(a));
        // Saturating: neither block_size nor, without keys, the heads are bounded by a
        // buffer.
        let block_work = block_size
            .saturating_mul(k.n_heads)
            .saturating_mul(d)
            .saturating_mul(core::mem::size_of::<T>())
            .saturating_add(8);
        parallel::for_each_range(
            blocks.len(),
            parallel::items_per_unit(block_work),
            blocks.len().saturating_mul(block_work),
            &|r| {
                let mut a = sh.get();
                (a.b0, a.b1) = (blocks.start + r.start, blocks.start + r.end);
                // SAFETY: checked above; kmin and kmax are distinct unique borrows, and
                // units write disjoint blocks.
                unsafe { f(&a) };
                Ok(())
            },
        )
    }

    /// Quest bounds: for every query row `(i, h)` of `q` and key block `b < n_blocks` of
    /// its KV head, `out[(i * H_q + h) * out_stride + b]` = an upper bound of `q . k`
    /// over the block's keys, `sum_e max(q_e min_e, q_e max_e)` plus a margin that
    /// covers every rounding error: never below the exact block maximum.
    #[allow(clippy::too_many_arguments)]
    pub fn key_block_bound<T: AttendElement>(
        &self,
        q: Heads<'_, T>,
        kmin: &[f32],
        kmax: &[f32],
        n_blocks: usize,
        n_heads_kv: usize,
        out: &mut [f32],
        out_stride: usize,
    ) -> Result<()> {
        let d = q.head_dim;
        ensure!(d > 0, InvalidArgument, "head_dim = 0");
        ensure!(q.n_heads > 0, InvalidArgument, "n_heads_q = 0");
        ensure!(n_heads_kv > 0, InvalidArgument, "n_heads_kv = 0");
        ensure!(
            q.n_heads % n_heads_kv == 0,
            InvalidArgument,
            "n_heads_q is not a multiple of n_heads_kv"
        );
        let need = n_blocks
            .checked_mul(n_heads_kv)
            .and_then(|x| x.checked_mul(d))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        ensure!(
            kmin.len() >= need && kmax.len() >= need,
            BufferTooSmall,
            "summaries shorter than n_blocks * heads * head_dim"
        );
        let rows = q
            .n_tokens
            .checked_mul(q.n_heads)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "rows overflow"))?;
        let need = span(rows, n_blocks, out_stride)?;
        ensure!(out.len() >= need, BufferTooSmall, "bound buffer too small");
        if rows == 0 || n_blocks == 0 {
            // Nothing to write: never size (or allocate) a workspace for head_dim.
            return Ok(());
        }
        let ws = d
            .checked_add(15)
            .and_then(|x| x.checked_mul(4))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "workspace size overflows",
            ))?;
        let a = BoundArgs {
            q: q.data.as_ptr(),
            n_q: q.n_tokens,
            h_q: q.n_heads,
            d,
            q_tok: q.token_stride,
            q_head: q.head_stride,
            kmin: kmin.as_ptr(),
            kmax: kmax.as_ptr(),
            n_blocks,
            h_kv: n_heads_kv,
            out: out.as_mut_ptr(),
            out_stride,
            workspace: core::ptr::null_mut(),
        };
        bound_units(T::bound_fn(self), a, ws)
    }
}

impl Kernels {
    /// Quest's query-aware block selection, end to end: for every query `i < n_q` and
    /// query head `h`, the bounds of [`Kernels::key_block_bound`] over the `n_blocks` key
    /// blocks of its KV head, then the exact top-`k` blocks by bound through the
    /// selection family ([`Kernels::topk_f32`]: ties to the lower block, NaN bounds
    /// last), the first `keep_first` and last `keep_last` blocks always included (the
    /// attention sink and the block holding the newest keys), ids ascending.
    ///
    /// Writes the lists in the layout of [`KeySubset::Blocks`] with
    /// `per: ListsPer::QHead` and `query_block: 1`: list `h * n_q + i` is
    /// `ids[offsets[L] .. offsets[L + 1]]`, `offsets[L] = L * k_eff` with
    /// `k_eff = min(k, n_blocks)`; `ids` needs `n_q * H_q * k_eff` entries and `offsets`
    /// `n_q * H_q + 1`. Returns `k_eff`.
    ///
    /// Errors: those of the bound and of top-k (`INVALID_ARGUMENT` when
    /// `keep_first + keep_last > k_eff`), `BUFFER_TOO_SMALL` for short outputs. Uses the
    /// thread's reusable scratch (`4 * n_q * H_q * n_blocks` bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn quest_select_blocks<T: AttendElement>(
        &self,
        q: Heads<'_, T>,
        kmin: &[f32],
        kmax: &[f32],
        n_blocks: usize,
        n_heads_kv: usize,
        k: usize,
        keep_first: usize,
        keep_last: usize,
        ids: &mut [u32],
        offsets: &mut [usize],
    ) -> Result<usize> {
        let (n_q, h_q, d) = (q.n_tokens, q.n_heads, q.head_dim);
        check_heads(d, h_q, n_heads_kv)?;
        let rows = n_q
            .checked_mul(h_q)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "rows overflow"))?;
        let k_eff = k.min(n_blocks);
        ensure!(
            keep_first.saturating_add(keep_last) <= k_eff,
            InvalidArgument,
            "forced blocks exceed k"
        );
        let n_ids = rows
            .checked_mul(k_eff)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "ids size overflows"))?;
        ensure!(
            ids.len() >= n_ids,
            BufferTooSmall,
            "ids shorter than n_q * H_q * k"
        );
        ensure!(
            offsets.len() > rows,
            BufferTooSmall,
            "offsets shorter than n_q * H_q + 1"
        );
        let need = n_blocks
            .checked_mul(n_heads_kv)
            .and_then(|x| x.checked_mul(d))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        ensure!(
            kmin.len() >= need && kmax.len() >= need,
            BufferTooSmall,
            "summaries shorter than n_blocks * heads * head_dim"
        );
        let nb_bytes = rows
            .checked_mul(n_blocks)
            .and_then(|x| x.checked_mul(4))
            .ok_or(Error::new(ErrorKind::SizeOverflow, "bounds size overflows"))?;
        if rows == 0 || n_blocks == 0 {
            for (l, o) in offsets.iter_mut().enumerate().take(rows + 1) {
                *o = l * k_eff;
            }
            return Ok(k_eff);
        }
        let ids_bytes = n_ids
            .checked_mul(4)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "ids size overflows"))?;
        // Scratch: the bounds (rows x n_blocks f32, rows in (i, h) order), then the
        // selected ids in that order; each bound unit has its own query row workspace.
        let total = nb_bytes.checked_add(ids_bytes).ok_or(Error::new(
            ErrorKind::SizeOverflow,
            "scratch size overflows",
        ))?;
        let bound_ws = ((d + 15) & !15) * 4;
        parallel::with_call_scratch(total, |w| -> Result<usize> {
            let ws = w as usize;
            // SAFETY: the scratch holds the bytes asked, 64-byte aligned, for this call.
            let bounds =
                unsafe { core::slice::from_raw_parts_mut(ws as *mut f32, rows * n_blocks) };
            let sel =
                unsafe { core::slice::from_raw_parts_mut((ws + nb_bytes) as *mut u32, n_ids) };
            let a = BoundArgs {
                q: q.data.as_ptr(),
                n_q,
                h_q,
                d,
                q_tok: q.token_stride,
                q_head: q.head_stride,
                kmin: kmin.as_ptr(),
                kmax: kmax.as_ptr(),
                n_blocks,
                h_kv: n_heads_kv,
                out: bounds.as_mut_ptr(),
                out_stride: n_blocks,
                workspace: core::ptr::null_mut(),
            };
            // Checked above: q's rows, the summaries and the scratch.
            let mut phases = Phases::default();
            phases.run(bound_units(T::bound_fn(self), a, bound_ws))?;
            phases.run(self.topk_f32(
                crate::Matrix::new(bounds, rows, n_blocks, n_blocks)?,
                crate::ops::select::TopK::Fixed(k_eff),
                crate::ops::select::Order::Position,
                &crate::ops::select::RowSpec {
                    keep_first,
                    keep_last,
                    ..Default::default()
                },
                crate::ops::select::TopkOut {
                    indices: crate::MatrixMut::new(sel, rows, k_eff, k_eff)?,
                    scores: None,
                    counts: None,
                },
                None,
            ))?;
            // Lists in (query head, query) order.
            for i in 0..n_q {
                for h in 0..h_q {
                    let (src, dst) = ((i * h_q + h) * k_eff, (h * n_q + i) * k_eff);
                    ids[dst..dst + k_eff].copy_from_slice(&sel[src..src + k_eff]);
                }
            }
            for (l, o) in offsets.iter_mut().enumerate().take(rows + 1) {
                *o = l * k_eff;
            }
            phases.finish()?;
            Ok(k_eff)
        })?
    }
}

/// Runs the bound kernel on `a` in units of consecutive queries (each row's bounds
/// depend on its query only), with `ws` bytes of workspace per unit.
fn bound_units<T: Copy>(f: BoundFn<T>, a: BoundArgs<T>, ws: usize) -> Result<()> {
    let sh = Shared(a);
    let q_work = a.h_q.saturating_mul(a.n_blocks).saturating_mul(a.d).max(1);
    parallel::for_each_range(
        a.n_q,
        parallel::items_per_unit(q_work),
        a.n_q.saturating_mul(q_work),
        &|r| {
            let mut a = sh.get();
            a.q = a.q.wrapping_add(r.start * a.q_tok);
            a.out = a.out.wrapping_add(r.start * a.h_q * a.out_stride);
            a.n_q = r.len();
            with_workspace(ws, |w| {
                a.workspace = w as *mut f32;
                // SAFETY: the caller validated `a`; units take disjoint queries (and
                // output rows).
                unsafe { f(&a) }
            })
        },
    )
}

/// [`Kernels::attention`] on the active level.
pub fn attention<T: AttendElement, O: OutElement>(
    q: Heads<'_, T>,
    k: Heads<'_, T>,
    v: Heads<'_, T>,
    keys: KeySubset<'_>,
    opts: &AttendOptions<'_>,
    out: HeadsMut<'_, O>,
    extras: AttendExtras<'_>,
) -> Result<()> {
    Kernels::active()?.attention(q, k, v, keys, opts, out, extras)
}

/// [`Kernels::attention_batch`] on the active level.
#[allow(clippy::too_many_arguments)]
pub fn attention_batch<T: AttendElement, O: OutElement>(
    q: Heads<'_, T>,
    k: Heads<'_, T>,
    v: Heads<'_, T>,
    keys: KeySubset<'_>,
    opts: &AttendOptions<'_>,
    batch: &Batch<'_>,
    out: HeadsMut<'_, O>,
    extras: AttendExtras<'_>,
) -> Result<()> {
    Kernels::active()?.attention_batch(q, k, v, keys, opts, batch, out, extras)
}

/// [`Kernels::attention_merge`] on the active level.
#[allow(clippy::too_many_arguments)]
pub fn attention_merge<O: OutElement>(
    n_parts: usize,
    parts: &[f32],
    part_stride: usize,
    row_stride: usize,
    lse: &[f32],
    lse_part_stride: usize,
    out: crate::MatrixMut<'_, O>,
    out_lse: Option<&mut [f32]>,
) -> Result<()> {
    Kernels::active()?.attention_merge(
        n_parts,
        parts,
        part_stride,
        row_stride,
        lse,
        lse_part_stride,
        out,
        out_lse,
    )
}

/// [`Kernels::key_block_summary`] on the active level.
pub fn key_block_summary<T: AttendElement>(
    k: Heads<'_, T>,
    block_size: usize,
    blocks: core::ops::Range<usize>,
    kmin: &mut [f32],
    kmax: &mut [f32],
) -> Result<()> {
    Kernels::active()?.key_block_summary(k, block_size, blocks, kmin, kmax)
}

/// [`Kernels::key_block_bound`] on the active level.
pub fn key_block_bound<T: AttendElement>(
    q: Heads<'_, T>,
    kmin: &[f32],
    kmax: &[f32],
    n_blocks: usize,
    n_heads_kv: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<()> {
    Kernels::active()?.key_block_bound(q, kmin, kmax, n_blocks, n_heads_kv, out, out_stride)
}
