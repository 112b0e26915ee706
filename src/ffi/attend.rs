//! Sparse attention, merging, attention mass and Quest bounds through the C ABI.

use super::{
    byte_range, disjoint, guard, range, read_options, slice, slice_mut, tkr_status, ArgName,
    OptionsStruct,
};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::attend::{check_heads, span3, AttendElement, OutElement};
use crate::ops::attend_batch::{block_list_count, extents, list_groups};
use crate::ops::{span, DType};
use crate::{
    AttendBias, AttendExtras, AttendOptions, Batch, BatchStrides, BiasData, CausalAlign, Heads,
    HeadsMut, Kernels, KeySubset, ListsPer, MatrixMut,
};
use core::ffi::c_void;
use half::{bf16, f16};

/// tkr_attention_options.flags: mask keys after the query, by position.
pub const TKR_ATTENTION_CAUSAL: u32 = 1;
/// tkr_attention_options.flags: allow the AVX512-BF16 dot-product path for bf16 inputs
/// on CPUs that have it (faster; not bit-identical to the other ISA levels).
pub const TKR_ATTENTION_BF16_DOT: u32 = 2;
/// tkr_attention_options.flags: options->window_right applies: keys up to
/// q_pos + window_right are visible, and the window no longer implies causal masking
/// (TKR_ATTENTION_CAUSAL still limits the right side to q_pos).
pub const TKR_ATTENTION_WINDOW_RIGHT: u32 = 4;

/// tkr_attention_keys.kind: every key row, in order.
pub const TKR_KEYS_DENSE: u32 = 0;
/// tkr_attention_keys.kind: a list of key rows shared by every query and head.
pub const TKR_KEYS_INDICES: u32 = 1;
/// tkr_attention_keys.kind: per query block, a list of key blocks.
pub const TKR_KEYS_BLOCKS: u32 = 2;
/// tkr_attention_keys.kind (batches only): per sequence, a list of its key rows.
pub const TKR_KEYS_SEQ_INDICES: u32 = 3;

/// tkr_attention_options.causal_align: positions from q_positions and k_positions
/// (required when causal or windowed).
pub const TKR_CAUSAL_ALIGN_POSITIONS: u32 = 0;
/// tkr_attention_options.causal_align: implicit positions, key row j of a sequence at j
/// and its query i at i (the first query aligned with the first key: ONNX and PyTorch
/// is_causal).
pub const TKR_CAUSAL_ALIGN_TOP_LEFT: u32 = 1;
/// tkr_attention_options.causal_align: implicit positions, key row j at j and query i at
/// i + n_k - n_q (the last query aligned with the last key: decoding after a KV cache,
/// FlashAttention's causal).
pub const TKR_CAUSAL_ALIGN_BOTTOM_RIGHT: u32 = 2;

/// tkr_attention_keys.block_lists: one list per query block, shared by all heads.
pub const TKR_BLOCK_LISTS_SHARED: u32 = 0;
/// tkr_attention_keys.block_lists: one list per (KV head, query block).
pub const TKR_BLOCK_LISTS_PER_KV_HEAD: u32 = 1;
/// tkr_attention_keys.block_lists: one list per (query head, query block).
pub const TKR_BLOCK_LISTS_PER_Q_HEAD: u32 = 2;

/// Options of tkr_attention. Zero (or a NULL pointer) means the default for every field;
/// set struct_size to sizeof(tkr_attention_options) (tkr_attention_options_init does).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_attention_options {
    /// sizeof(tkr_attention_options), so the struct can grow.
    pub struct_size: usize,
    /// Softmax scale; 0 means 1 / sqrt(head_dim). Must be finite.
    pub scale: f32,
    /// TKR_ATTENTION_CAUSAL and/or TKR_ATTENTION_BF16_DOT.
    pub flags: u32,
    /// Sliding window: with window w > 0 a key is visible when
    /// q_pos - w < k_pos <= q_pos (implies causal masking unless
    /// TKR_ATTENTION_WINDOW_RIGHT). 0: no window (no left limit).
    pub window: u32,
    /// Output element type: 0 = the input dtype, else TKR_DTYPE_F32/F16/BF16.
    pub out_dtype: u32,
    /// n_q original positions of the queries (required when causal or windowed).
    pub q_positions: *const u32,
    /// n_k original positions, one per K row (required when causal or windowed).
    pub k_positions: *const u32,
    /// NULL, or the natural log-sum-exp of row (i, h) at lse[i * lse_token_stride + h]
    /// (-inf for a row that sees no key).
    pub lse: *mut f32,
    /// Floats between tokens in lse; 0 means n_heads_q.
    pub lse_token_stride: usize,
    /// NULL, or per-key attention mass (sum over queries and heads of the softmax
    /// probability), ADDED to mass[g * mass_head_stride + k] for K row k and KV head g.
    /// Summation order (fixed by the shape, never by the threads): the rows adding into
    /// one array (one KV head's, or all rows when mass_head_stride = 0) are, up to 1024
    /// of them, added in row order onto the array; more are cut into units of 1024 rows
    /// in row order, each summed from +0 in row order, the units' sums added in unit
    /// order and the total added to the array. A key listed twice in a row's keys gets
    /// both probabilities. Error: an element starting at m that receives N
    /// probabilities from R rows, exactly summing to S, is within
    /// 2^-17 (1 + A) (1 + R/64) (1 + S) + 2^-24 N (|m| + S) + 2^-22 (1 + |m|) of m + S
    /// (A as in the attention bound; the second term is the f32 summation).
    pub mass: *mut f32,
    /// 0: every head adds into the same n_k floats; else floats between KV heads' arrays
    /// (>= n_k).
    pub mass_head_stride: usize,
    /// Where the positions of causal and windowed masking come from:
    /// TKR_CAUSAL_ALIGN_POSITIONS (0: q_positions and k_positions), or implicit positions
    /// per sequence, TKR_CAUSAL_ALIGN_TOP_LEFT or TKR_CAUSAL_ALIGN_BOTTOM_RIGHT (then
    /// q_positions and k_positions must be NULL).
    pub causal_align: u32,
    /// NULL: one sequence. Else the batch the tensors hold (see tkr_attention_batch).
    pub batch: *const tkr_attention_batch,
    /// NULL, or n_heads_q sink logits (gpt-oss style): sink h joins the softmax
    /// denominator of every row of query head h as exp(sinks[h]) without a value (-inf:
    /// no sink); the log-sum-exp includes it. Rows are merged with it by
    /// tkr_attention_merge's canonical merge (error bound + 2^-22 vmax). Not together
    /// with mass (TKR_STATUS_UNSUPPORTED).
    pub sinks: *const f32,
    /// With TKR_ATTENTION_WINDOW_RIGHT: the right extent r, keys with
    /// k_pos <= q_pos + r visible (UINT32_MAX: no right limit); with window w > 0 the
    /// two-sided local window q_pos - w < k_pos <= q_pos + r (a symmetric encoder window
    /// of radius w - 1: r = w - 1).
    pub window_right: u32,
    /// Ignored, always: the padding of the 104-byte struct of earlier versions, which
    /// their callers may have left unset.
    pub reserved0: u32,
    /// Logit softcap c (Gemma 2): 0 means none; else c finite and > 0, and every logit
    /// scale * q . k becomes c * tanh(scale * q . k / c) before masking and the softmax
    /// (the mass and the log-sum-exp use the capped logits). The error bounds gain
    /// 2^-20 c vmax (outputs), 2^-20 c (log-sum-exp) and 2^-20 c (1 + R/64) (1 + S)
    /// (mass); A stays uncapped.
    pub softcap: f32,
    /// NULL, or n_heads_q ALiBi slopes (BLOOM, MPT; finite): -slopes[h] * |q_pos - k_pos|
    /// joins every logit of query head h (after the softcap). Positions come from
    /// q_positions / k_positions or the implicit causal_align, also without causal
    /// masking. A of the error bound includes the term's magnitude.
    pub alibi_slopes: *const f32,
    /// NULL, or an additive bias of bias_dtype elements (relative-position biases, ONNX
    /// float attn_mask with -inf): element (query head h, query i, K row k) of sequence b
    /// at bias[b * bias_batch_stride + h * bias_head_stride + i * bias_query_stride + k]
    /// (strides in elements; keys contiguous; a stride of 0 broadcasts; k counts the
    /// sequence's K rows). It joins the logit after the softcap and ALiBi; a row whose
    /// visible keys all get -inf is empty (zeros, log-sum-exp -inf), +inf or NaN makes
    /// the row NaN. A of the error bound includes |bias|. Not with a ragged batch
    /// (TKR_STATUS_UNSUPPORTED).
    pub bias: *const c_void,
    pub bias_head_stride: usize,
    pub bias_query_stride: usize,
    pub bias_batch_stride: usize,
    /// The head size dv of v and out (multi-head latent attention, e.g. head_dim = 192
    /// for q and k and v_head_dim = 128, without zero-padding v): 0 means head_dim. v is
    /// then [n_k, n_heads_kv, dv] and out [n_q, n_heads_q, dv], and their strides follow
    /// the overlap rule with rows of dv elements (a head stride below dv with several
    /// heads, say, is TKR_STATUS_BAD_STRIDE). The default scale stays
    /// 1 / sqrt(head_dim); vmax in the error bounds is over the dv elements of v. (A
    /// struct of an earlier version, without this field, means 0.)
    pub v_head_dim: usize,
    /// Element type of bias: 0 or TKR_DTYPE_F32 (float), TKR_DTYPE_F16 or TKR_DTYPE_BF16
    /// (converted to float exactly: a 16-bit bias gives the bits of the float bias with
    /// the same values). Structs older than this field (160 bytes or less) have float biases.
    pub bias_dtype: u32,
}
unsafe impl OptionsStruct for tkr_attention_options {}

/// How the tensors of tkr_attention split into sequences (options->batch). Every
/// sequence attends over its own keys with the same options and gets results
/// bit-identical to a separate call over that sequence alone (for every thread count);
/// nothing is copied.
///
/// - Dense batch (cu_seqlens_q and cu_seqlens_k NULL): n_seqs sequences of n_q queries
///   and n_k keys each; sequence b's tensors are the ones described by the call's
///   pointers and strides moved by b * <tensor>_batch_stride elements. An input stride
///   of 0 shares one tensor between the sequences; out_batch_stride may not be 0 when
///   n_seqs > 1 and n_q > 0 (TKR_STATUS_BAD_STRIDE), nor make rows overlap; lse_batch_stride 0 means
///   n_q * lse_token_stride; mass_batch_stride 0 means every sequence adds into the same
///   arrays.
/// - Ragged batch (cu_seqlens_q and cu_seqlens_k: n_seqs + 1 nondecreasing offsets
///   each, the last at most n_q / n_k; every batch stride 0): the call's n_q and n_k
///   count every row; sequence b has query rows cu_seqlens_q[b] .. cu_seqlens_q[b + 1]
///   (of q, out, lse, q_positions) and key rows cu_seqlens_k[b] .. cu_seqlens_k[b + 1]
///   (of k, v, mass, k_positions). Rows outside every sequence are neither read nor
///   written.
/// - Keys per sequence: dense, a key-row list shared by every sequence (each entry
///   below every sequence's n_k), TKR_KEYS_SEQ_INDICES (list b for sequence b), or
///   block lists (every sequence's lists back to back, ceil(n_q_b / query_block_size)
///   per group for sequence b; block ids count the sequence's own key blocks).
/// - Positions: explicit ones are indexed like the rows they belong to (dense: moved by
///   the positions' batch strides); implicit ones (options->causal_align) start at 0 in
///   every sequence.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_attention_batch {
    /// sizeof(tkr_attention_batch).
    pub struct_size: usize,
    /// Number of sequences (0: nothing is computed).
    pub n_seqs: usize,
    /// Ragged batches: n_seqs + 1 query row offsets (NULL for a dense batch).
    pub cu_seqlens_q: *const usize,
    /// Ragged batches: n_seqs + 1 key row offsets (NULL for a dense batch).
    pub cu_seqlens_k: *const usize,
    /// Dense batches: elements between sequences of q, k, v and out.
    pub q_batch_stride: usize,
    pub k_batch_stride: usize,
    pub v_batch_stride: usize,
    pub out_batch_stride: usize,
    /// Dense batches: floats between sequences of options->lse and options->mass.
    pub lse_batch_stride: usize,
    pub mass_batch_stride: usize,
    /// Dense batches: entries between sequences of the explicit positions.
    pub q_positions_batch_stride: usize,
    pub k_positions_batch_stride: usize,
}
unsafe impl OptionsStruct for tkr_attention_batch {}

/// Which keys every (query, head) row attends over (tkr_attention). Zero (or a NULL
/// pointer) means dense attention over all n_k keys.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_attention_keys {
    /// sizeof(tkr_attention_keys).
    pub struct_size: usize,
    /// TKR_KEYS_DENSE, TKR_KEYS_INDICES or TKR_KEYS_BLOCKS.
    pub kind: u32,
    /// TKR_KEYS_BLOCKS: TKR_BLOCK_LISTS_SHARED, _PER_KV_HEAD or _PER_Q_HEAD.
    pub block_lists: u32,
    /// TKR_KEYS_INDICES: n_indices K rows (each < n_k; duplicates count twice), read in
    /// place (nothing is gathered).
    pub indices: *const u32,
    pub n_indices: usize,
    /// TKR_KEYS_BLOCKS: keys per key block; block b is K rows
    /// b * block_size .. min((b + 1) * block_size, n_k).
    pub block_size: usize,
    /// TKR_KEYS_BLOCKS: queries per query block.
    pub query_block_size: usize,
    /// TKR_KEYS_BLOCKS: n_lists + 1 nondecreasing offsets into block_ids, where n_lists =
    /// ceil(n_q / query_block_size) times 1 (shared), n_heads_kv or n_heads_q. List L is
    /// block_ids[block_offsets[L] .. block_offsets[L + 1]], with L = qb, g * n_qblocks + qb
    /// or h * n_qblocks + qb.
    pub block_offsets: *const usize,
    /// TKR_KEYS_BLOCKS: key block ids (each < ceil(n_k / block_size)).
    pub block_ids: *const u32,
    pub n_block_ids: usize,
    /// TKR_KEYS_SEQ_INDICES (batches): n_seqs + 1 nondecreasing offsets into indices;
    /// sequence b attends over its key rows indices[index_offsets[b] ..
    /// index_offsets[b + 1]] (each below the sequence's n_k).
    pub index_offsets: *const usize,
}
unsafe impl OptionsStruct for tkr_attention_keys {}

/// Fills *options with the defaults: every field 0, struct_size =
/// sizeof(tkr_attention_options). Returns TKR_STATUS_NULL_POINTER for a NULL options.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_attention_options_init(
    options: *mut tkr_attention_options,
) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_attention_options at options.
        let o = unsafe { slice_mut(options, 1).arg("options")? };
        // SAFETY: NULL options reads as the defaults.
        o[0] = unsafe { read_options::<tkr_attention_options>(core::ptr::null())? };
        Ok(())
    })
}

/// Fills *keys with the defaults (dense): every field 0, struct_size =
/// sizeof(tkr_attention_keys). Returns TKR_STATUS_NULL_POINTER for a NULL keys.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_attention_keys_init(keys: *mut tkr_attention_keys) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_attention_keys at keys.
        let k = unsafe { slice_mut(keys, 1).arg("keys")? };
        // SAFETY: NULL keys reads as the defaults.
        k[0] = unsafe { read_options::<tkr_attention_keys>(core::ptr::null())? };
        Ok(())
    })
}

/// Fills *batch with the defaults: every field 0 (a dense batch of no sequence),
/// struct_size = sizeof(tkr_attention_batch). Returns TKR_STATUS_NULL_POINTER for a NULL
/// batch. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_attention_batch_init(batch: *mut tkr_attention_batch) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_attention_batch at batch.
        let b = unsafe { slice_mut(batch, 1).arg("batch")? };
        // SAFETY: NULL batch reads as the defaults.
        b[0] = unsafe { read_options::<tkr_attention_batch>(core::ptr::null())? };
        Ok(())
    })
}

/// A dtype code (argument `name`) as a DType.

fn dtype_of(code: u32, name: &'static str) -> Result<DType> {
    DType::from_code(code)
        .ok_or(Error::new(ErrorKind::InvalidArgument, "unknown dtype code").with_arg(name))
}

/// Attention of queries over a subset of keys, flash-style, with optional causal and
/// windowed masking by original positions, GQA, log-sum-exp and attention-mass outputs.
///
/// For every query token i < n_q and query head h < n_heads_q, with KV head
/// g = h / (n_heads_q / n_heads_kv):
/// out[i][h] = sum_j softmax_j(scale * q[i][h] . k[j][g]) v[j][g] over the visible keys j
/// of the row's key sequence (see tkr_attention_keys).
///
/// - `dtype`: TKR_DTYPE_F32, TKR_DTYPE_F16 or TKR_DTYPE_BF16 for q, k and v (f16/bf16 as
///   uint16_t bit patterns); arithmetic is f32.
/// - `q`: [n_q, n_heads_q, head_dim], element (t, h, e) at
///   q[t * q_token_stride + h * q_head_stride + e] (strides in elements). Rows may not
///   overlap: the smaller stride must hold head_dim elements, the larger one all rows of
///   the smaller (both token-major and head-major layouts work).
/// - `k`: [n_k, n_heads_kv, head_dim], `v`: [n_k, n_heads_kv, dv] with dv =
///   options->v_head_dim (0, the default: dv = head_dim; multi-head latent attention:
///   head_dim 192, dv 128), each with its own strides and the same overlap rule (v's
///   with dv elements per row). n_heads_q must be a multiple of n_heads_kv (GQA; MQA
///   with n_heads_kv = 1).
/// - `keys`: NULL (dense) or the key subset. `options`: NULL (defaults) or the options.
/// - `out`: [n_q, n_heads_q, dv] of options->out_dtype (default: dtype), with its
///   strides (the overlap rule with dv elements per row); only the dv elements of each
///   row are written.
/// - Batches (options->batch, see tkr_attention_batch): a dense batch of n_seqs
///   sequences of n_q queries and n_k keys each at batch strides, or a ragged batch of
///   sequences packed back to back (n_q and n_k then count every row), in one call;
///   every sequence's results are bit-identical to a separate call over it.
/// - Masking positions: options->q_positions / k_positions, or implicit ones per
///   sequence by options->causal_align (top-left: query i at i; bottom-right: query i
///   at i + n_k - n_q; key j at j).
///
/// Numerics: keys are taken in fixed blocks of 64 with an online softmax (never an
/// n_q x n_k matrix; stable for large logits); a row with no visible key gets zeros and a
/// log-sum-exp of -inf, never NaN; a masked key contributes nothing even if its K or V
/// holds inf or NaN; a NaN logit makes its row NaN (every NaN output, lse included, is
/// the canonical quiet NaN: f32 0x7fc00000, f16 0x7e00, bf16 0x7fc0). Results are
/// bit-identical on every ISA level and for every thread count (except with
/// TKR_ATTENTION_BF16_DOT on a CPU with AVX512-BF16), and a row's result depends only on
/// its own query, its keys and, for split-K, the call's shape: a call without a mass
/// output, over every key or an index list of at least 1024 keys, with at most 64 rows
/// per KV head (n_q * n_heads_q / n_heads_kv <= 64: decoding) cuts the key sequence into
/// fixed chunks of 512 keys, one unit per (KV head, chunk), merged in chunk order by
/// tkr_attention_merge's canonical merge (split-K: one query uses every core); its rows
/// differ from an unsplit computation within the bound below. Other calls split into
/// units of 64 rows (per KV head, or per query head for per-query-head block lists).
/// Against an exact evaluation the error is at most
/// 2^-17 (1 + A + n/64) vmax + u_out |exact| + e_out (A: the largest scale * sum_e
/// |q_e k_e| over the row's visible keys, n their number, vmax the largest |v| among them,
/// u_out: 2^-24 f32, 2^-11 f16, 2^-8 bf16 output; e_out, half the output type's smallest
/// subnormal, for results in its subnormal range: 2^-150 f32, 2^-25 f16, 2^-134 bf16);
/// log-sum-exp within 2^-17 (1 + A + |lse|). With
/// TKR_ATTENTION_BF16_DOT add 2^-8 (1 + A) vmax.
///
/// Aliasing: out, lse and mass must not overlap each other or any input
/// (TKR_STATUS_OVERLAP). (NULL, 0) is a valid empty buffer.
///
/// Returns TKR_STATUS_OK; TKR_STATUS_NULL_POINTER (a NULL buffer with a non-zero size,
/// or positions missing when causal/windowed or with ALiBi); TKR_STATUS_INVALID_ARGUMENT
/// (unknown dtype, out_dtype, bias_dtype, flags, key kind, block_lists or causal_align;
/// head_dim = 0; head counts that are 0 or do not divide; non-finite scale; softcap negative, NaN or
/// infinite; an ALiBi slope not finite; n_k >= 2^32; block_size or
/// query_block_size 0; block offsets not nondecreasing; misaligned pointer or options
/// struct_size too small; positions given with an implicit causal_align;
/// TKR_KEYS_SEQ_INDICES without a batch; cu_seqlens or index offsets not nondecreasing;
/// batch strides in a ragged batch); TKR_STATUS_OUT_OF_RANGE (a key index >= n_k (of
/// its sequence), a block id >= ceil(n_k / block_size), a block offset past
/// n_block_ids, cu_seqlens past n_q / n_k, index offsets past n_indices);
/// TKR_STATUS_BAD_STRIDE (overlapping rows, sequences of an output overlapping);
/// TKR_STATUS_SIZE_OVERFLOW; TKR_STATUS_OVERLAP; TKR_STATUS_UNSUPPORTED (unknown nonzero
/// fields in a larger options or keys struct); TKR_STATUS_ISA_UNAVAILABLE. On error
/// nothing is written.
///
/// Thread-safe and reentrant. The first call on a thread (or one with a larger head_dim
/// or dv) allocates a per-thread scratch buffer of about 384 * head_dim + 768 * dv +
/// 25000 bytes (on every thread that runs units of the call), kept for reuse; split-K
/// calls also use a buffer of the calling thread of
/// 4 * ceil(keys / 512) * n_q * n_heads_q * (dv + 1) bytes, and
/// calls adding the mass of more than 1024 rows into one array one of 4 * n_k bytes per
/// unit of 1024 rows, and calls with sinks (not split-K) one of
/// 4 * n_q * n_heads_q * (2 * dv + 2) bytes, kept likewise; later calls do not
/// allocate.
#[no_mangle]
pub unsafe extern "C" fn tkr_attention(
    dtype: u32,
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    k: *const c_void,
    v: *const c_void,
    n_k: usize,
    n_heads_kv: usize,
    k_token_stride: usize,
    k_head_stride: usize,
    v_token_stride: usize,
    v_head_stride: usize,
    keys: *const tkr_attention_keys,
    options: *const tkr_attention_options,
    out: *mut c_void,
    out_token_stride: usize,
    out_head_stride: usize,
) -> tkr_status {
    guard(|| {
        let dtype = dtype_of(dtype, "dtype")?;
        // SAFETY: NULL or a struct of at least struct_size readable bytes (caller).
        let opts = unsafe { read_options(options).arg("options")? };
        let ks = unsafe { read_options(keys).arg("keys")? };
        let out_dtype = if opts.out_dtype == 0 {
            dtype
        } else {
            dtype_of(opts.out_dtype, "options->out_dtype")?
        };
        let raw = RawAttention {
            q,
            n_q,
            n_heads_q,
            head_dim,
            q_token_stride,
            q_head_stride,
            k,
            v,
            n_k,
            n_heads_kv,
            k_token_stride,
            k_head_stride,
            v_token_stride,
            v_head_stride,
            keys: ks,
            opts,
            out,
            out_token_stride,
            out_head_stride,
        };
        // SAFETY: the caller's promises about the buffers, passed on.
        unsafe {
            match (dtype, out_dtype) {
                (DType::F32, DType::F32) => raw.run::<f32, f32>(),
                (DType::F32, DType::F16) => raw.run::<f32, f16>(),
                (DType::F32, DType::BF16) => raw.run::<f32, bf16>(),
                (DType::F16, DType::F32) => raw.run::<f16, f32>(),
                (DType::F16, DType::F16) => raw.run::<f16, f16>(),
                (DType::F16, DType::BF16) => raw.run::<f16, bf16>(),
                (DType::BF16, DType::F32) => raw.run::<bf16, f32>(),
                (DType::BF16, DType::F16) => raw.run::<bf16, f16>(),
                (DType::BF16, DType::BF16) => raw.run::<bf16, bf16>(),
            }
        }
    })
}

struct RawAttention {
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    k: *const c_void,
    v: *const c_void,
    n_k: usize,
    n_heads_kv: usize,
    k_token_stride: usize,
    k_head_stride: usize,
    v_token_stride: usize,
    v_head_stride: usize,
    keys: tkr_attention_keys,
    opts: tkr_attention_options,
    out: *mut c_void,
    out_token_stride: usize,
    out_head_stride: usize,
}

impl RawAttention {
    /// # Safety
    /// The buffers hold what the tkr_attention documentation says.
    unsafe fn run<T: AttendElement, O: OutElement>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        let o = &self.opts;
        ensure!(
            o.flags
                & !(TKR_ATTENTION_CAUSAL | TKR_ATTENTION_BF16_DOT | TKR_ATTENTION_WINDOW_RIGHT)
                == 0,
            InvalidArgument,
            "options->flags": "unknown attention flags"
        );
        ensure!(
            self.keys.kind <= TKR_KEYS_SEQ_INDICES,
            InvalidArgument,
            "keys->kind": "unknown key set kind"
        );
        let align = match o.causal_align {
            TKR_CAUSAL_ALIGN_POSITIONS => CausalAlign::Positions,
            TKR_CAUSAL_ALIGN_TOP_LEFT => CausalAlign::TopLeft,
            TKR_CAUSAL_ALIGN_BOTTOM_RIGHT => CausalAlign::BottomRight,
            _ => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "unknown causal_align code")
                        .with_arg("options->causal_align"),
                )
            }
        };
        let d = self.head_dim;
        // Shape rules first, so that they get their own status before any buffer check.
        check_heads(d, self.n_heads_q, self.n_heads_kv)?;
        // V's and the output's head size (0: head_dim).
        let dv = if o.v_head_dim == 0 { d } else { o.v_head_dim };
        // The batch (NULL: one sequence) and what every buffer must hold.
        let bt = if o.batch.is_null() {
            None
        } else {
            // SAFETY: a struct of at least struct_size readable bytes (caller).
            Some(unsafe { read_options(o.batch).arg("options->batch")? })
        };
        // The remaining values, before any buffer is looked at (status precedence).
        ensure!(
            o.scale.is_finite(),
            InvalidArgument,
            "options->scale": "must be finite"
        );
        ensure!(
            o.softcap == 0.0 || (o.softcap.is_finite() && o.softcap > 0.0),
            InvalidArgument,
            "options->softcap": "must be 0 (none) or finite and > 0"
        );
        let bias_dtype = if o.bias_dtype == 0 {
            DType::F32
        } else {
            dtype_of(o.bias_dtype, "options->bias_dtype")?
        };
        ensure!(
            o.sinks.is_null() || o.mass.is_null(),
            Unsupported,
            "options->sinks": "together with an attention mass output"
        );
        ensure!(
            o.bias.is_null()
                || bt.is_none_or(|b| b.cu_seqlens_q.is_null() && b.cu_seqlens_k.is_null()),
            Unsupported,
            "options->bias": "with a ragged batch"
        );
        let window_right = (o.flags & TKR_ATTENTION_WINDOW_RIGHT != 0).then_some(o.window_right);
        // Positions are read for masking and for ALiBi.
        let masked = o.flags & TKR_ATTENTION_CAUSAL != 0
            || o.window > 0
            || window_right.is_some()
            || !o.alibi_slopes.is_null();
        let implicit = align != CausalAlign::Positions;
        ensure!(
            !implicit || (o.q_positions.is_null() && o.k_positions.is_null()),
            InvalidArgument,
            "options->causal_align": "implicit positions take no q_positions or k_positions"
        );
        ensure!(
            self.keys.kind != TKR_KEYS_SEQ_INDICES || bt.is_some(),
            InvalidArgument,
            "keys->kind": "per-sequence index lists need options->batch"
        );
        let lists_per = if self.keys.kind == TKR_KEYS_BLOCKS {
            let per = match self.keys.block_lists {
                TKR_BLOCK_LISTS_SHARED => ListsPer::Shared,
                TKR_BLOCK_LISTS_PER_KV_HEAD => ListsPer::KvHead,
                TKR_BLOCK_LISTS_PER_Q_HEAD => ListsPer::QHead,
                _ => {
                    return Err(
                        Error::new(ErrorKind::InvalidArgument, "unknown block_lists code")
                            .with_arg("keys->block_lists"),
                    )
                }
            };
            ensure!(
                self.keys.query_block_size > 0,
                InvalidArgument,
                "keys->query_block_size": "must be > 0"
            );
            ensure!(
                self.keys.block_size > 0,
                InvalidArgument,
                "keys->block_size": "must be > 0"
            );
            per
        } else {
            ListsPer::Shared
        };
        // One sequence's sizes (a ragged batch's are checked per sequence once its
        // offsets are read).
        if bt.is_none_or(|b| b.cu_seqlens_q.is_null() && b.cu_seqlens_k.is_null()) {
            ensure!(
                self.n_k <= u32::MAX as usize,
                InvalidArgument,
                "n_k": "2^32 keys or more (key indices are 32-bit)"
            );
            ensure!(
                !(implicit && masked) || self.n_q <= u32::MAX as usize + 1,
                InvalidArgument,
                "n_q": "implicit positions need n_q <= 2^32"
            );
        }
        let batch = match bt {
            None => Batch::One,
            Some(b) if b.cu_seqlens_q.is_null() && b.cu_seqlens_k.is_null() => Batch::Dense {
                n: b.n_seqs,
                strides: BatchStrides {
                    q: b.q_batch_stride,
                    k: b.k_batch_stride,
                    v: b.v_batch_stride,
                    out: b.out_batch_stride,
                    lse: b.lse_batch_stride,
                    mass: b.mass_batch_stride,
                    q_positions: b.q_positions_batch_stride,
                    k_positions: b.k_positions_batch_stride,
                },
            },
            Some(b) => {
                ensure!(
                    [
                        b.q_batch_stride,
                        b.k_batch_stride,
                        b.v_batch_stride,
                        b.out_batch_stride,
                        b.lse_batch_stride,
                        b.mass_batch_stride,
                        b.q_positions_batch_stride,
                        b.k_positions_batch_stride,
                    ]
                    .iter()
                    .all(|&x| x == 0),
                    InvalidArgument,
                    "options->batch": "a ragged batch takes no batch strides"
                );
                let n = b
                    .n_seqs
                    .checked_add(1)
                    .ok_or(Error::new(ErrorKind::SizeOverflow, "n_seqs + 1 overflows"))?;
                // SAFETY: n_seqs + 1 offsets each (caller); NULL is NULL_POINTER.
                Batch::Ragged {
                    cu_seqlens_q: unsafe {
                        slice(b.cu_seqlens_q, n).arg("options->batch->cu_seqlens_q")?
                    },
                    cu_seqlens_k: unsafe {
                        slice(b.cu_seqlens_k, n).arg("options->batch->cu_seqlens_k")?
                    },
                }
            }
        };
        let lse_stride = if o.lse_token_stride == 0 {
            self.n_heads_q
        } else {
            o.lse_token_stride
        };
        let dims = |n: usize, h: usize, ts: usize, hs: usize| (n, h, d, ts, hs);
        let dims_v = |n: usize, h: usize, ts: usize, hs: usize| (n, h, dv, ts, hs);
        let qdims = dims(
            self.n_q,
            self.n_heads_q,
            self.q_token_stride,
            self.q_head_stride,
        );
        let kdims = dims(
            self.n_k,
            self.n_heads_kv,
            self.k_token_stride,
            self.k_head_stride,
        );
        let vdims = dims_v(
            self.n_k,
            self.n_heads_kv,
            self.v_token_stride,
            self.v_head_stride,
        );
        let odims = dims_v(
            self.n_q,
            self.n_heads_q,
            self.out_token_stride,
            self.out_head_stride,
        );
        // Each view's own layout first, so that a bad stride names its tensor.
        for (t, name) in [
            (qdims, "q_token_stride, q_head_stride"),
            (kdims, "k_token_stride, k_head_stride"),
            (vdims, "v_token_stride, v_head_stride"),
            (odims, "out_token_stride, out_head_stride"),
        ] {
            span3(t.0, t.1, t.2, t.3, t.4).arg(name)?;
        }
        if !o.lse.is_null() {
            span(self.n_q, self.n_heads_q, lse_stride).arg("options->lse_token_stride")?;
        }
        if !o.mass.is_null() && o.mass_head_stride != 0 {
            span(self.n_heads_kv, self.n_k, o.mass_head_stride).arg("options->mass_head_stride")?;
        }
        let e = extents(
            &batch,
            qdims,
            kdims,
            vdims,
            odims,
            (!o.lse.is_null(), lse_stride),
            if o.mass.is_null() {
                0
            } else {
                o.mass_head_stride
            },
        )
        .arg("options->batch")?;
        let (qn, kn, vn, on) = (e.q, e.k, e.v, e.out);
        // SAFETY (all slices): sizes come from the documented shapes; validity is the
        // caller's promise.
        let (qs, ks, vs) = unsafe {
            (
                slice(self.q as *const T, qn).arg("q")?,
                slice(self.k as *const T, kn).arg("k")?,
                slice(self.v as *const T, vn).arg("v")?,
            )
        };
        let (mut qp, mut kp) = (None, None);
        if !implicit && masked {
            // NULL with a non-zero count is NULL_POINTER (slice's rule).
            qp = Some(unsafe { slice(o.q_positions, e.q_pos).arg("options->q_positions")? });
            kp = Some(unsafe { slice(o.k_positions, e.k_pos).arg("options->k_positions")? });
        }
        let sinks = if o.sinks.is_null() {
            None
        } else {
            Some(unsafe { slice(o.sinks, self.n_heads_q).arg("options->sinks")? })
        };
        let alibi = if o.alibi_slopes.is_null() {
            None
        } else {
            Some(unsafe { slice(o.alibi_slopes, self.n_heads_q).arg("options->alibi_slopes")? })
        };
        let bias = if o.bias.is_null() {
            None
        } else {
            let n = AttendBias::extent(
                batch.n_seqs(),
                self.n_heads_q,
                self.n_q,
                self.n_k,
                o.bias_head_stride,
                o.bias_query_stride,
                o.bias_batch_stride,
            )
            .arg("options->bias")?;
            // SAFETY: the caller's promise that bias holds the elements the strides reach.
            let data: BiasData = unsafe {
                match bias_dtype {
                    DType::F32 => slice(o.bias as *const f32, n).arg("options->bias")?.into(),
                    DType::F16 => slice(o.bias as *const f16, n).arg("options->bias")?.into(),
                    DType::BF16 => slice(o.bias as *const bf16, n).arg("options->bias")?.into(),
                }
            };
            Some(AttendBias {
                data,
                head_stride: o.bias_head_stride,
                query_stride: o.bias_query_stride,
                batch_stride: o.bias_batch_stride,
            })
        };
        // Byte ranges of every input (fixed capacity: no allocation on this path).
        let mut inputs = [(0usize, 0usize); 12];
        let mut n_in = 0;
        let mut push = |r: (usize, usize)| {
            inputs[n_in] = r;
            n_in += 1;
        };
        push(byte_range(qs));
        push(byte_range(ks));
        push(byte_range(vs));
        if let Some(p) = qp {
            push(byte_range(p));
        }
        if let Some(p) = kp {
            push(byte_range(p));
        }
        if let Some(p) = sinks {
            push(byte_range(p));
        }
        if let Some(p) = alibi {
            push(byte_range(p));
        }
        if let Some(b) = bias {
            push(b.data.byte_range());
        }
        if let Batch::Ragged {
            cu_seqlens_q,
            cu_seqlens_k,
        } = batch
        {
            push(byte_range(cu_seqlens_q));
            push(byte_range(cu_seqlens_k));
        }
        let subset = match self.keys.kind {
            TKR_KEYS_INDICES => {
                let idx =
                    unsafe { slice(self.keys.indices, self.keys.n_indices).arg("keys->indices")? };
                push(byte_range(idx));
                KeySubset::Indices(idx)
            }
            TKR_KEYS_SEQ_INDICES => {
                let idx =
                    unsafe { slice(self.keys.indices, self.keys.n_indices).arg("keys->indices")? };
                let n = batch
                    .n_seqs()
                    .checked_add(1)
                    .ok_or(Error::new(ErrorKind::SizeOverflow, "n_seqs + 1 overflows"))?;
                let offsets =
                    unsafe { slice(self.keys.index_offsets, n).arg("keys->index_offsets")? };
                push(byte_range(idx));
                push(byte_range(offsets));
                KeySubset::SeqIndices {
                    indices: idx,
                    offsets,
                }
            }
            TKR_KEYS_BLOCKS => {
                let per = lists_per;
                let groups = list_groups(per, self.n_heads_q, self.n_heads_kv);
                let n_offsets =
                    block_list_count(&batch, self.n_q, self.keys.query_block_size, groups)
                        .arg("keys->block_offsets")?
                        .checked_add(1)
                        .ok_or(Error::new(
                            ErrorKind::SizeOverflow,
                            "number of block lists overflows",
                        ))?;
                let offsets = unsafe {
                    slice(self.keys.block_offsets, n_offsets).arg("keys->block_offsets")?
                };
                let ids = unsafe {
                    slice(self.keys.block_ids, self.keys.n_block_ids).arg("keys->block_ids")?
                };
                push(byte_range(offsets));
                push(byte_range(ids));
                KeySubset::Blocks {
                    block_size: self.keys.block_size,
                    query_block: self.keys.query_block_size,
                    offsets,
                    ids,
                    per,
                }
            }
            _ => KeySubset::Dense,
        };
        // Outputs: their ranges, disjoint from every input and from each other.
        const OUT_NAMES: [&str; 3] = ["out", "options->lse", "options->mass"];
        let mut outs = [(0usize, 0usize); 3];
        outs[0] = range(self.out as *const O, on).arg("out")?;
        let lse_n = if o.lse.is_null() { 0 } else { e.lse };
        if !o.lse.is_null() {
            outs[1] = range(o.lse as *const f32, lse_n).arg("options->lse")?;
        }
        let mass_n = if o.mass.is_null() { 0 } else { e.mass };
        if !o.mass.is_null() {
            outs[2] = range(o.mass as *const f32, mass_n).arg("options->mass")?;
        }
        for (i, a) in outs.iter().enumerate() {
            for b in &inputs[..n_in] {
                disjoint(*a, *b).arg(OUT_NAMES[i])?;
            }
            for b in &outs[i + 1..] {
                disjoint(*a, *b).arg(OUT_NAMES[i])?;
            }
        }
        let scale = if o.scale == 0.0 { None } else { Some(o.scale) };
        let opts = AttendOptions {
            scale,
            softcap: (o.softcap != 0.0).then_some(o.softcap),
            alibi_slopes: alibi,
            bias,
            causal: o.flags & TKR_ATTENTION_CAUSAL != 0,
            window: o.window,
            q_positions: qp,
            k_positions: kp,
            align,
            window_right,
            sinks,
            bf16_dot: o.flags & TKR_ATTENTION_BF16_DOT != 0,
        };
        // SAFETY: the output ranges were checked disjoint from every input and from
        // each other.
        let out = unsafe { slice_mut(self.out as *mut O, on)? };
        let extras = AttendExtras {
            lse: if o.lse.is_null() {
                None
            } else {
                Some((unsafe { slice_mut(o.lse, lse_n)? }, lse_stride))
            },
            mass: if o.mass.is_null() {
                None
            } else {
                Some((unsafe { slice_mut(o.mass, mass_n)? }, o.mass_head_stride))
            },
        };
        kern.attention_batch(
            Heads::new(
                qs,
                self.n_q,
                self.n_heads_q,
                d,
                self.q_token_stride,
                self.q_head_stride,
            )?,
            Heads::new(
                ks,
                self.n_k,
                self.n_heads_kv,
                d,
                self.k_token_stride,
                self.k_head_stride,
            )?,
            Heads::new(
                vs,
                self.n_k,
                self.n_heads_kv,
                dv,
                self.v_token_stride,
                self.v_head_stride,
            )?,
            subset,
            &opts,
            &batch,
            HeadsMut::new(
                out,
                self.n_q,
                self.n_heads_q,
                dv,
                self.out_token_stride,
                self.out_head_stride,
            )?,
            extras,
        )
    }
}

/// Merges partial attention results computed over disjoint key chunks (flash-decoding):
/// for every row r < n_rows, out[r] = sum_i w_i part_out[i][r] with
/// w_i = exp(part_lse[i][r] - M) / sum_j exp(part_lse[j][r] - M), M = max_i part_lse[i][r],
/// and out_lse[r] = M + ln(sum_j exp(part_lse[j][r] - M)). Exact up to rounding: the
/// merge of tkr_attention calls over disjoint key chunks (each with its lse) equals one
/// call over all the keys within the tkr_attention bound plus 2^-22 vmax.
///
/// - `part_out`: element e of row r of part i at
///   part_out[i * part_stride + r * row_stride + e] (floats; f32 partials, normalized as
///   tkr_attention writes them). Rows of a part are (query, head) rows in any order the
///   caller chose, e.g. row = i * n_heads_q + h for a dense [n_q, n_heads_q, head_dim].
/// - `part_lse`: part_lse[i * lse_part_stride + r].
/// - A row whose parts all have lse = -inf gets zeros and -inf; a NaN lse makes its row
///   NaN. Parts with zero weight are skipped (their values never read into the sum).
/// - `out`: n_rows rows of head_dim elements of `out_dtype` (TKR_DTYPE_F32/F16/BF16),
///   out_row_stride apart. `out_lse`: NULL or n_rows floats.
/// - Bit-identical on every ISA level (weights in f64 by a portable recipe, then one
///   fused multiply-add per part and element, in part order).
/// - Aliasing: out and out_lse must not overlap each other or the inputs.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT
///   (unknown out_dtype, head_dim = 0, misaligned pointer), TKR_STATUS_BAD_STRIDE,
///   TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On error
///   nothing is written.
/// - Thread-safe; uses the per-thread scratch buffer (head_dim floats).
#[no_mangle]
pub unsafe extern "C" fn tkr_attention_merge(
    out_dtype: u32,
    part_out: *const f32,
    n_parts: usize,
    n_rows: usize,
    head_dim: usize,
    part_stride: usize,
    row_stride: usize,
    part_lse: *const f32,
    lse_part_stride: usize,
    out: *mut c_void,
    out_row_stride: usize,
    out_lse: *mut f32,
) -> tkr_status {
    guard(|| {
        let raw = RawMerge {
            n_parts,
            n_rows,
            head_dim,
            part_out,
            part_stride,
            row_stride,
            part_lse,
            lse_part_stride,
            out,
            out_row_stride,
            out_lse,
        };
        // SAFETY: the caller's promises, passed on.
        unsafe {
            match dtype_of(out_dtype, "out_dtype")? {
                DType::F32 => raw.run::<f32>(),
                DType::F16 => raw.run::<f16>(),
                DType::BF16 => raw.run::<bf16>(),
            }
        }
    })
}

struct RawMerge {
    n_parts: usize,
    n_rows: usize,
    head_dim: usize,
    part_out: *const f32,
    part_stride: usize,
    row_stride: usize,
    part_lse: *const f32,
    lse_part_stride: usize,
    out: *mut c_void,
    out_row_stride: usize,
    out_lse: *mut f32,
}

impl RawMerge {
    /// # Safety
    /// The buffers hold what the tkr_attention_merge documentation says.
    unsafe fn run<O: OutElement>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        ensure!(self.head_dim > 0, InvalidArgument, "head_dim = 0");
        let pn = span3(
            self.n_parts,
            self.n_rows,
            self.head_dim,
            self.part_stride,
            self.row_stride,
        )
        .arg("part_stride, row_stride")?;
        let ln = span(self.n_parts, self.n_rows, self.lse_part_stride).arg("lse_part_stride")?;
        let on = span(self.n_rows, self.head_dim, self.out_row_stride).arg("out_row_stride")?;
        let (parts, lse) = unsafe {
            (
                slice(self.part_out, pn).arg("part_out")?,
                slice(self.part_lse, ln).arg("part_lse")?,
            )
        };
        let o = range(self.out as *const O, on).arg("out")?;
        let ol = if self.out_lse.is_null() {
            (0, 0)
        } else {
            range(self.out_lse as *const f32, self.n_rows).arg("out_lse")?
        };
        for (x, name) in [(o, "out"), (ol, "out_lse")] {
            disjoint(x, byte_range(parts)).arg(name)?;
            disjoint(x, byte_range(lse)).arg(name)?;
        }
        disjoint(o, ol).arg("out")?;
        // SAFETY: checked disjoint above.
        let out = unsafe { slice_mut(self.out as *mut O, on)? };
        let out_lse = if self.out_lse.is_null() {
            None
        } else {
            Some(unsafe { slice_mut(self.out_lse, self.n_rows)? })
        };
        kern.attention_merge(
            self.n_parts,
            parts,
            self.part_stride,
            self.row_stride,
            lse,
            self.lse_part_stride,
            MatrixMut::new(out, self.n_rows, self.head_dim, self.out_row_stride)?,
            out_lse,
        )
    }
}

/// Quest key-block summaries: for key blocks block_begin .. block_end of block_size keys
/// of k [n_k, n_heads_kv, head_dim] (element (t, g, e) at
/// k[t * k_token_stride + g * k_head_stride + e]), the elementwise minimum and maximum
/// over each block's keys (block b: K rows b * block_size .. min((b + 1) * block_size,
/// n_k)), per KV head, written as f32 to kmin[(b * n_heads_kv + g) * head_dim + e] and
/// kmax[...] (layout [n_blocks, n_heads_kv, head_dim], like K; exact). A NaN element
/// makes both the canonical quiet NaN 0x7fc00000. As keys are appended, recompute only the last block.
///
/// - `dtype`: TKR_DTYPE_F32/F16/BF16. `kmin`, `kmax`: at least
///   block_end * n_heads_kv * head_dim floats each; only the described blocks are written.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown
///   dtype, head_dim = 0, n_heads_kv = 0, block_size = 0, block_begin > block_end,
///   misaligned pointer), TKR_STATUS_OUT_OF_RANGE (block_end > ceil(n_k / block_size)),
///   TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP (kmin, kmax and k
///   must not overlap), TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Bit-identical on every ISA level. Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_key_block_summary(
    dtype: u32,
    k: *const c_void,
    n_k: usize,
    n_heads_kv: usize,
    head_dim: usize,
    k_token_stride: usize,
    k_head_stride: usize,
    block_size: usize,
    block_begin: usize,
    block_end: usize,
    kmin: *mut f32,
    kmax: *mut f32,
) -> tkr_status {
    guard(|| {
        let raw = RawSummary {
            k,
            n_k,
            n_heads_kv,
            head_dim,
            k_token_stride,
            k_head_stride,
            block_size,
            block_begin,
            block_end,
            kmin,
            kmax,
        };
        // SAFETY: the caller's promises, passed on.
        unsafe {
            match dtype_of(dtype, "dtype")? {
                DType::F32 => raw.run::<f32>(),
                DType::F16 => raw.run::<f16>(),
                DType::BF16 => raw.run::<bf16>(),
            }
        }
    })
}

struct RawSummary {
    k: *const c_void,
    n_k: usize,
    n_heads_kv: usize,
    head_dim: usize,
    k_token_stride: usize,
    k_head_stride: usize,
    block_size: usize,
    block_begin: usize,
    block_end: usize,
    kmin: *mut f32,
    kmax: *mut f32,
}

impl RawSummary {
    /// # Safety
    /// The buffers hold what the tkr_key_block_summary documentation says.
    unsafe fn run<T: AttendElement>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        ensure!(self.head_dim > 0, InvalidArgument, "head_dim = 0");
        ensure!(self.n_heads_kv > 0, InvalidArgument, "n_heads_kv = 0");
        ensure!(self.block_size > 0, InvalidArgument, "block_size = 0");
        ensure!(
            self.block_begin <= self.block_end,
            InvalidArgument,
            "block range is reversed"
        );
        ensure!(
            self.block_end <= self.n_k.div_ceil(self.block_size),
            OutOfRange,
            "block_end past the last block"
        );
        let kn = span3(
            self.n_k,
            self.n_heads_kv,
            self.head_dim,
            self.k_token_stride,
            self.k_head_stride,
        )
        .arg("k_token_stride, k_head_stride")?;
        let sn = self
            .block_end
            .checked_mul(self.n_heads_kv)
            .and_then(|x| x.checked_mul(self.head_dim))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        let ks = unsafe { slice(self.k as *const T, kn).arg("k")? };
        let (a, b) = (
            range(self.kmin as *const f32, sn).arg("kmin")?,
            range(self.kmax as *const f32, sn).arg("kmax")?,
        );
        disjoint(a, b).arg("kmin")?;
        disjoint(a, byte_range(ks)).arg("kmin")?;
        disjoint(b, byte_range(ks)).arg("kmax")?;
        // SAFETY: checked disjoint above.
        let (mn, mx) = unsafe { (slice_mut(self.kmin, sn)?, slice_mut(self.kmax, sn)?) };
        kern.key_block_summary(
            Heads::new(
                ks,
                self.n_k,
                self.n_heads_kv,
                self.head_dim,
                self.k_token_stride,
                self.k_head_stride,
            )?,
            self.block_size,
            self.block_begin..self.block_end,
            mn,
            mx,
        )
    }
}

/// Quest bounds: for every query row (i, h) of q [n_q, n_heads_q, head_dim] and key
/// block b < n_blocks of its KV head g = h / (n_heads_q / n_heads_kv),
/// bound[(i * n_heads_q + h) * bound_row_stride + b] = sum_e max(q_e * kmin_e, q_e * kmax_e)
/// (with the block's summaries from tkr_key_block_summary) plus a margin covering every
/// rounding error, so that it is never below the exact maximum of q . k over the
/// block's keys. Rank blocks by it (top-k) to choose the key blocks of a
/// TKR_KEYS_BLOCKS attention call. A NaN in q or the summaries gives a NaN bound, the
/// canonical quiet NaN 0x7fc00000; results are bit-identical on every ISA level.
///
/// - `dtype`: of q. `kmin`, `kmax`: n_blocks * n_heads_kv * head_dim floats each.
/// - `bound`: n_q * n_heads_q rows of n_blocks floats, bound_row_stride apart.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown
///   dtype, head_dim = 0, head counts 0 or not dividing, misaligned pointer),
///   TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP (bound must not
///   overlap the inputs), TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Bit-identical on every ISA level. Thread-safe; uses the per-thread scratch buffer.
#[no_mangle]
pub unsafe extern "C" fn tkr_key_block_bound(
    dtype: u32,
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    kmin: *const f32,
    kmax: *const f32,
    n_blocks: usize,
    n_heads_kv: usize,
    bound: *mut f32,
    bound_row_stride: usize,
) -> tkr_status {
    guard(|| {
        let raw = RawBound {
            q,
            n_q,
            n_heads_q,
            head_dim,
            q_token_stride,
            q_head_stride,
            kmin,
            kmax,
            n_blocks,
            n_heads_kv,
            bound,
            bound_row_stride,
        };
        // SAFETY: the caller's promises, passed on.
        unsafe {
            match dtype_of(dtype, "dtype")? {
                DType::F32 => raw.run::<f32>(),
                DType::F16 => raw.run::<f16>(),
                DType::BF16 => raw.run::<bf16>(),
            }
        }
    })
}

struct RawBound {
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    kmin: *const f32,
    kmax: *const f32,
    n_blocks: usize,
    n_heads_kv: usize,
    bound: *mut f32,
    bound_row_stride: usize,
}

impl RawBound {
    /// # Safety
    /// The buffers hold what the tkr_key_block_bound documentation says.
    unsafe fn run<T: AttendElement>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        check_heads(self.head_dim, self.n_heads_q, self.n_heads_kv)?;
        let qn = span3(
            self.n_q,
            self.n_heads_q,
            self.head_dim,
            self.q_token_stride,
            self.q_head_stride,
        )
        .arg("q_token_stride, q_head_stride")?;
        let sn = self
            .n_blocks
            .checked_mul(self.n_heads_kv)
            .and_then(|x| x.checked_mul(self.head_dim))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        let rows = self
            .n_q
            .checked_mul(self.n_heads_q)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "rows overflow"))?;
        let bn = span(rows, self.n_blocks, self.bound_row_stride).arg("bound_row_stride")?;
        let (qs, mn, mx) = unsafe {
            (
                slice(self.q as *const T, qn).arg("q")?,
                slice(self.kmin, sn).arg("kmin")?,
                slice(self.kmax, sn).arg("kmax")?,
            )
        };
        let b = range(self.bound as *const f32, bn).arg("bound")?;
        for x in [byte_range(qs), byte_range(mn), byte_range(mx)] {
            disjoint(b, x).arg("bound")?;
        }
        // SAFETY: checked disjoint above.
        let out = unsafe { slice_mut(self.bound, bn)? };
        kern.key_block_bound(
            Heads::new(
                qs,
                self.n_q,
                self.n_heads_q,
                self.head_dim,
                self.q_token_stride,
                self.q_head_stride,
            )?,
            mn,
            mx,
            self.n_blocks,
            self.n_heads_kv,
            out,
            self.bound_row_stride,
        )
    }
}

/// Quest's query-aware block selection, end to end: the bounds of tkr_key_block_bound
/// for every query i < n_q and query head h over the n_blocks key blocks of its KV head,
/// then the exact top-k blocks by bound (the selection family's top-k: ties to the lower
/// block, NaN bounds last), with the first keep_first and the last keep_last blocks
/// always included (attention sink, newest keys); ids ascending.
///
/// The result is ready for tkr_attention with keys.kind = TKR_KEYS_BLOCKS,
/// block_lists = TKR_BLOCK_LISTS_PER_Q_HEAD, query_block_size = 1, block_size = the
/// summaries' block size: list L = h * n_q + i is
/// block_ids[block_offsets[L] .. block_offsets[L + 1]], block_offsets[L] = L * k_eff,
/// k_eff = min(k, n_blocks), written to *out_k (may be NULL).
///
/// - `q`: as in tkr_key_block_bound; `kmin`, `kmax`: n_blocks * n_heads_kv * head_dim
///   floats each (tkr_key_block_summary).
/// - `block_ids`: n_q * n_heads_q * k_eff entries; `block_offsets`: n_q * n_heads_q + 1.
///   Neither may overlap the inputs or each other.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown
///   dtype, head_dim = 0, head counts 0 or not dividing, keep_first + keep_last > k_eff,
///   misaligned pointer), TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW,
///   TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; uses per-thread scratch (4 * n_q * n_heads_q * (n_blocks + k_eff)
///   bytes), no allocation once it has grown.
#[no_mangle]
pub unsafe extern "C" fn tkr_quest_select_blocks(
    dtype: u32,
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    kmin: *const f32,
    kmax: *const f32,
    n_blocks: usize,
    n_heads_kv: usize,
    k: usize,
    keep_first: usize,
    keep_last: usize,
    block_ids: *mut u32,
    block_offsets: *mut usize,
    out_k: *mut usize,
) -> tkr_status {
    guard(|| {
        let raw = RawQuest {
            q,
            n_q,
            n_heads_q,
            head_dim,
            q_token_stride,
            q_head_stride,
            kmin,
            kmax,
            n_blocks,
            n_heads_kv,
            k,
            keep_first,
            keep_last,
            block_ids,
            block_offsets,
            out_k,
        };
        // SAFETY: the caller's promises, passed on.
        unsafe {
            match dtype_of(dtype, "dtype")? {
                DType::F32 => raw.run::<f32>(),
                DType::F16 => raw.run::<f16>(),
                DType::BF16 => raw.run::<bf16>(),
            }
        }
    })
}

struct RawQuest {
    q: *const c_void,
    n_q: usize,
    n_heads_q: usize,
    head_dim: usize,
    q_token_stride: usize,
    q_head_stride: usize,
    kmin: *const f32,
    kmax: *const f32,
    n_blocks: usize,
    n_heads_kv: usize,
    k: usize,
    keep_first: usize,
    keep_last: usize,
    block_ids: *mut u32,
    block_offsets: *mut usize,
    out_k: *mut usize,
}

impl RawQuest {
    /// # Safety
    /// The buffers hold what the tkr_quest_select_blocks documentation says.
    unsafe fn run<T: AttendElement>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        check_heads(self.head_dim, self.n_heads_q, self.n_heads_kv)?;
        let qn = span3(
            self.n_q,
            self.n_heads_q,
            self.head_dim,
            self.q_token_stride,
            self.q_head_stride,
        )
        .arg("q_token_stride, q_head_stride")?;
        let sn = self
            .n_blocks
            .checked_mul(self.n_heads_kv)
            .and_then(|x| x.checked_mul(self.head_dim))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "summary size overflows",
            ))?;
        let rows = self
            .n_q
            .checked_mul(self.n_heads_q)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "rows overflow"))?;
        let k_eff = self.k.min(self.n_blocks);
        let n_ids = rows
            .checked_mul(k_eff)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "ids size overflows"))?;
        let (qs, mn, mx) = unsafe {
            (
                slice(self.q as *const T, qn).arg("q")?,
                slice(self.kmin, sn).arg("kmin")?,
                slice(self.kmax, sn).arg("kmax")?,
            )
        };
        let ir = range(self.block_ids as *const u32, n_ids).arg("block_ids")?;
        let or = range(self.block_offsets as *const usize, rows + 1).arg("block_offsets")?;
        let kr = if self.out_k.is_null() {
            (0, 0)
        } else {
            range(self.out_k as *const usize, 1).arg("out_k")?
        };
        for (x, name) in [(ir, "block_ids"), (or, "block_offsets"), (kr, "out_k")] {
            for y in [byte_range(qs), byte_range(mn), byte_range(mx)] {
                disjoint(x, y).arg(name)?;
            }
        }
        disjoint(ir, or).arg("block_ids")?;
        disjoint(ir, kr).arg("block_ids")?;
        disjoint(or, kr).arg("block_offsets")?;
        // SAFETY: checked disjoint above.
        let (ids, offs) = unsafe {
            (
                slice_mut(self.block_ids, n_ids)?,
                slice_mut(self.block_offsets, rows + 1)?,
            )
        };
        let k_eff = kern.quest_select_blocks(
            Heads::new(
                qs,
                self.n_q,
                self.n_heads_q,
                self.head_dim,
                self.q_token_stride,
                self.q_head_stride,
            )?,
            mn,
            mx,
            self.n_blocks,
            self.n_heads_kv,
            self.k,
            self.keep_first,
            self.keep_last,
            ids,
            offs,
        )?;
        if !self.out_k.is_null() {
            // SAFETY: checked above (aligned, disjoint).
            unsafe { *self.out_k = k_eff };
        }
        Ok(())
    }
}
