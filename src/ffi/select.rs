//! Token selection through the C ABI: threshold selection, exact top-k, mask <-> indices.

use super::{
    byte_range, disjoint, guard, range, read_options, slice, slice_mut, tkr_status, ArgName,
    OptionsStruct,
};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::select::{Order, RowSpec, Tau, ThresholdOut, TopK, TopkOut, MAX_ROW};
use crate::ops::{span, Matrix, MatrixMut};
use crate::Kernels;
use core::ffi::c_void;

/// The longest row the selection calls take, in tokens (token indices are uint32_t):
/// a larger n is TKR_STATUS_INVALID_ARGUMENT.
pub const TKR_MAX_ROW: usize = u32::MAX as usize;
const _: () = assert!(TKR_MAX_ROW == MAX_ROW);

/// tkr_topk_options.flags: order each row's indices by descending score (ties by
/// ascending index, NaN last) instead of ascending token position.
pub const TKR_TOPK_ORDER_SCORE: u32 = 1;
/// tkr_topk_options.flags: take each row's k from tkr_topk_options.capacity:
/// k_row = ceil(capacity * valid_len_row).
pub const TKR_TOPK_CAPACITY: u32 = 2;

/// Options of tkr_topk_f32. A NULL options pointer means all defaults; so does an
/// all-zero struct with struct_size set (tkr_topk_options_init fills exactly that).
/// Every field's zero value is its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_topk_options {
    /// sizeof(tkr_topk_options) as the caller was compiled (older, smaller structs are
    /// accepted; a larger one must have an all-zero tail this library does not know).
    pub struct_size: usize,
    /// TKR_TOPK_ORDER_SCORE, TKR_TOPK_CAPACITY, or 0. Other bits:
    /// TKR_STATUS_INVALID_ARGUMENT.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
    /// The first keep_first tokens of every row are always selected (clamped to the
    /// row's valid length).
    pub keep_first: usize,
    /// The last keep_last tokens of every row's valid part are always selected (clamped
    /// to what keep_first leaves).
    pub keep_last: usize,
    /// NULL, or batch rows of n bytes, keep_mask_row_stride apart: a non-zero byte
    /// forces its token (bytes past a row's valid length are ignored).
    pub keep_mask: *const u8,
    /// Row stride of keep_mask in bytes; 0 means n.
    pub keep_mask_row_stride: usize,
    /// NULL, or batch valid lengths, each <= n: tokens at or past a row's valid length
    /// are padding, never read nor selected. NULL means n for every row.
    pub valid_lens: *const usize,
    /// NULL, or batch values of k (one per row; the k argument must then be 0).
    pub row_k: *const usize,
    /// With TKR_TOPK_CAPACITY: a ratio in [0, 1]; k_row = ceil(capacity *
    /// valid_len_row), the product rounded in IEEE double precision (the same as C's
    /// ceil(capacity * (double)len) or Python's math.ceil(capacity * n)). Must be 0
    /// without the flag.
    pub capacity: f64,
    /// NULL, or batch rows of floats, out_scores_row_stride apart: out_scores[r][j] gets
    /// the score of out_idx[r][j] (j < k_row), copied bit for bit (a NaN keeps its
    /// sign and payload).
    pub out_scores: *mut f32,
    /// Row stride of out_scores in floats; 0 means out_row_stride.
    pub out_scores_row_stride: usize,
}

// SAFETY: repr(C), struct_size first, and all-zero bytes are a valid value meaning
// "defaults" (null pointers, zero sizes, no flags).
unsafe impl OptionsStruct for tkr_topk_options {}

/// Options of tkr_threshold_f32. A NULL options pointer means all defaults; so does an
/// all-zero struct with struct_size set (tkr_threshold_options_init fills exactly
/// that). Every field's zero value is its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_threshold_options {
    /// sizeof(tkr_threshold_options) as the caller was compiled (see tkr_topk_options).
    pub struct_size: usize,
    /// No flags are defined yet: must be 0 (TKR_STATUS_INVALID_ARGUMENT otherwise).
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
    /// The first keep_first tokens of every row are always selected (clamped to the
    /// row's valid length).
    pub keep_first: usize,
    /// The last keep_last tokens of every row's valid part are always selected (clamped
    /// to what keep_first leaves).
    pub keep_last: usize,
    /// NULL, or batch rows of n bytes, keep_mask_row_stride apart: a non-zero byte
    /// forces its token (bytes past a row's valid length are ignored).
    pub keep_mask: *const u8,
    /// Row stride of keep_mask in bytes; 0 means n.
    pub keep_mask_row_stride: usize,
    /// NULL, or batch valid lengths, each <= n: tokens at or past a row's valid length
    /// are padding, never read nor selected. NULL means n for every row.
    pub valid_lens: *const usize,
    /// NULL, or batch thresholds (one per row; the tau argument is then ignored).
    pub row_tau: *const f32,
    /// NULL, or batch rows of n bytes, out_mask_row_stride apart: 1 for a selected
    /// token, 0 otherwise (0 for padding past a row's valid length).
    pub out_mask: *mut u8,
    /// Row stride of out_mask in bytes; 0 means n.
    pub out_mask_row_stride: usize,
}

// SAFETY: as for tkr_topk_options.
unsafe impl OptionsStruct for tkr_threshold_options {}

/// Fills *options with the defaults: every field 0, struct_size =
/// sizeof(tkr_topk_options). Returns TKR_STATUS_NULL_POINTER for a NULL options.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_topk_options_init(options: *mut tkr_topk_options) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_topk_options at options.
        let o = unsafe { slice_mut(options, 1).arg("options")? };
        // SAFETY: NULL options reads as the defaults.
        o[0] = unsafe { read_options::<tkr_topk_options>(core::ptr::null())? };
        Ok(())
    })
}

/// Fills *options with the defaults: every field 0, struct_size =
/// sizeof(tkr_threshold_options). Returns TKR_STATUS_NULL_POINTER for a NULL options.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_threshold_options_init(
    options: *mut tkr_threshold_options,
) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_threshold_options at options.
        let o = unsafe { slice_mut(options, 1).arg("options")? };
        // SAFETY: NULL options reads as the defaults.
        o[0] = unsafe { read_options::<tkr_threshold_options>(core::ptr::null())? };
        Ok(())
    })
}

/// The workspace tkr_topk_f32 needs for rows of up to n tokens: *out_bytes = 8 * n
/// (to be passed 8-byte aligned). Returns TKR_STATUS_NULL_POINTER for a NULL
/// out_bytes, TKR_STATUS_SIZE_OVERFLOW when 8 * n overflows. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_topk_workspace_size(n: usize, out_bytes: *mut usize) -> tkr_status {
    guard(|| {
        let bytes = crate::topk_workspace_len(n)
            .checked_mul(8)
            .ok_or(Error::new(ErrorKind::SizeOverflow, "8 * n overflows"))?;
        // SAFETY: the caller promises one writable size_t at out_bytes.
        let out = unsafe { slice_mut(out_bytes, 1).arg("out_bytes")? };
        out[0] = bytes;
        Ok(())
    })
}

/// Fails with OVERLAP (naming the output) unless every output range is disjoint from
/// every input range and from every other output range.
fn all_disjoint(outs: &[(&'static str, (usize, usize))], ins: &[(usize, usize)]) -> Result<()> {
    for (j, &(name, o)) in outs.iter().enumerate() {
        for &x in ins.iter().chain(outs[j + 1..].iter().map(|(_, r)| r)) {
            disjoint(o, x).arg(name)?;
        }
    }
    Ok(())
}

/// The rows, forced keeps and valid lengths shared by both selection calls, as
/// validated slices.
struct CRows<'a> {
    scores: Matrix<'a, f32>,
    keep: Option<Matrix<'a, u8>>,
    valid: Option<&'a [usize]>,
    /// Byte ranges of the inputs (scores, keep mask, valid lengths, one spare slot);
    /// unused slots are empty.
    ranges: [(usize, usize); 4],
}

/// # Safety
/// The pointers hold what the tkr_topk_f32 / tkr_threshold_f32 documentation says.
#[allow(clippy::too_many_arguments)]
unsafe fn c_rows<'a>(
    scores: *const f32,
    batch: usize,
    n: usize,
    scores_row_stride: usize,
    keep_mask: *const u8,
    keep_mask_row_stride: usize,
    valid_lens: *const usize,
) -> Result<CRows<'a>> {
    ensure!(
        n <= MAX_ROW,
        InvalidArgument,
        "n": "rows longer than 2^32 - 1 tokens"
    );
    let sn = span(batch, n, scores_row_stride).arg("scores_row_stride")?;
    // SAFETY: the caller's promises, passed on; sizes from the documented shapes.
    let s = unsafe { slice(scores, sn).arg("scores")? };
    let mut ranges = [(0, 0); 4];
    ranges[0] = byte_range(s);
    let keep = if keep_mask.is_null() {
        None
    } else {
        let stride = if keep_mask_row_stride == 0 {
            n
        } else {
            keep_mask_row_stride
        };
        let kn = span(batch, n, stride).arg("keep_mask_row_stride")?;
        // SAFETY: as above.
        let k = unsafe { slice(keep_mask, kn).arg("keep_mask")? };
        ranges[1] = byte_range(k);
        Some(Matrix::new(k, batch, n, stride)?)
    };
    let valid = if valid_lens.is_null() {
        None
    } else {
        // SAFETY: as above.
        let v = unsafe { slice(valid_lens, batch).arg("valid_lens")? };
        ensure!(
            v.iter().all(|&l| l <= n),
            InvalidArgument,
            "valid_lens": "a valid length exceeds n"
        );
        ranges[2] = byte_range(v);
        Some(v)
    };
    Ok(CRows {
        scores: Matrix::new(s, batch, n, scores_row_stride)?,
        keep,
        valid,
        ranges,
    })
}

/// Exact top-k of every row of a batch of f32 scores: the k_row highest scores of each
/// row, with forced keeps, per-row valid lengths and per-row k.
///
/// Order of scores (identical on every ISA level): numbers by value, -0.0 == +0.0,
/// denormals ordinary, -inf and +inf the extremes; every NaN ranks below every number
/// (a NaN token is chosen only when k_row exceeds the row's count of non-NaN
/// candidates) and all NaNs are equal; among equal scores the lower index wins. The
/// result is exactly the same on every ISA level.
///
/// Forced keeps (options): the first keep_first tokens, the last keep_last tokens of the
/// valid part and the tokens whose keep_mask byte is non-zero are always selected, and
/// they COUNT WITHIN k: each row selects its forced tokens plus the k_row - forced best
/// other tokens. k_row smaller than the row's forced count is
/// TKR_STATUS_INVALID_ARGUMENT.
///
/// - scores: batch rows of n floats, scores_row_stride (>= n) floats apart. Row r's
///   tokens at or past valid_lens[r] (options) are never read.
/// - k: every row's k (0 <= k <= the row's valid length; k = 0 and k = n are valid),
///   or 0 when options->row_k or TKR_TOPK_CAPACITY gives each row its own.
/// - options: NULL for defaults (ascending positions, no forced keeps, every token
///   valid, no scores output); see tkr_topk_options.
/// - out_idx: batch rows, out_row_stride uint32_t apart: row r gets its k_row selected
///   token positions (0 <= i < valid_len), ascending, or by descending score with
///   TKR_TOPK_ORDER_SCORE. Nothing else is written. out_row_stride must be at least the
///   largest k_row.
/// - out_counts: NULL, or batch size_t: out_counts[r] = k_row.
/// - workspace, workspace_size: scratch of tkr_topk_workspace_size(largest valid
///   length) bytes, 8-byte aligned; or (NULL, 0) to use the library's scratch: the
///   calling thread's buffer, reused without allocation while the workspace needs at
///   most TKR_THREAD_SCRATCH_CAP bytes (131072 tokens); above that the process-wide
///   spare or a buffer freed after the call, so that a thread keeps at most the cap (see
///   tkr_release_thread_buffers).
/// - Aliasing: the outputs (out_idx, out_counts, out_scores, workspace) must not
///   overlap each other nor any input (scores, keep_mask, valid_lens, row_k):
///   TKR_STATUS_OVERLAP.
/// - (NULL, 0) is a valid empty buffer; batch = 0 does nothing.
/// - Returns TKR_STATUS_OK; TKR_STATUS_NULL_POINTER (a NULL buffer of non-zero size);
///   TKR_STATUS_INVALID_ARGUMENT (k_row > valid length, forced keeps exceeding k_row,
///   k != 0 together with row_k or TKR_TOPK_CAPACITY, row_k together with
///   TKR_TOPK_CAPACITY, a capacity outside [0, 1] or set without the flag, unknown flag
///   bits, reserved != 0, a valid length > n, n > 2^32 - 1, a misaligned pointer or
///   workspace); TKR_STATUS_BAD_STRIDE (a stride smaller than its row);
///   TKR_STATUS_BUFFER_TOO_SMALL (workspace smaller than needed);
///   TKR_STATUS_SIZE_OVERFLOW; TKR_STATUS_OVERLAP; TKR_STATUS_UNSUPPORTED (options
///   fields this library does not know are set); TKR_STATUS_ISA_UNAVAILABLE. On error
///   nothing is written.
/// - Thread-safe, single-threaded: split the batch across threads by rows.
#[no_mangle]
pub unsafe extern "C" fn tkr_topk_f32(
    scores: *const f32,
    batch: usize,
    n: usize,
    scores_row_stride: usize,
    k: usize,
    options: *const tkr_topk_options,
    out_idx: *mut u32,
    out_row_stride: usize,
    out_counts: *mut usize,
    workspace: *mut c_void,
    workspace_size: usize,
) -> tkr_status {
    guard(|| {
        let kern = Kernels::active()?;
        // SAFETY: NULL or a caller's struct of struct_size readable bytes.
        let o = unsafe { read_options(options).arg("options")? };
        ensure!(
            o.flags & !(TKR_TOPK_ORDER_SCORE | TKR_TOPK_CAPACITY) == 0,
            InvalidArgument,
            "options->flags": "unknown tkr_topk_options flags"
        );
        ensure!(
            o.reserved == 0,
            InvalidArgument,
            "options->reserved": "must be 0"
        );
        // The values first (status precedence): k, row_k and capacity together, and a
        // fixed k against n; a k above a row's valid length once valid_lens is read.
        let capacity = o.flags & TKR_TOPK_CAPACITY != 0;
        if capacity {
            ensure!(
                k == 0 && o.row_k.is_null(),
                InvalidArgument,
                "k": "TKR_TOPK_CAPACITY with a non-zero k or row_k"
            );
            ensure!(
                (0.0..=1.0).contains(&o.capacity),
                InvalidArgument,
                "options->capacity": "must be in [0, 1]"
            );
        } else {
            ensure!(
                o.capacity == 0.0,
                InvalidArgument,
                "options->capacity": "set without TKR_TOPK_CAPACITY"
            );
            ensure!(
                o.row_k.is_null() || k == 0,
                InvalidArgument,
                "k": "non-zero together with options->row_k"
            );
        }
        ensure!(
            k <= n || batch == 0,
            InvalidArgument,
            "k": "k > n (the row's valid length)"
        );
        // SAFETY: the caller's promises about the buffers, passed on.
        let rows = unsafe {
            c_rows(
                scores,
                batch,
                n,
                scores_row_stride,
                o.keep_mask,
                o.keep_mask_row_stride,
                o.valid_lens,
            )?
        };
        let mut ins = rows.ranges;
        let kspec = if capacity {
            TopK::Capacity(o.capacity)
        } else if o.row_k.is_null() {
            TopK::Fixed(k)
        } else {
            // SAFETY: the caller promises batch size_t at row_k.
            let ks = unsafe { slice(o.row_k, batch).arg("options->row_k")? };
            ins[3] = byte_range(ks);
            TopK::PerRow(ks)
        };
        let valid = |r: usize| rows.valid.map_or(n, |v| v[r]);
        let mut max_k = 0;
        for r in 0..batch {
            let kr = kspec.row_k(r, valid(r));
            ensure!(
                kr <= valid(r),
                InvalidArgument,
                "k": "k > n (the row's valid length)"
            );
            max_k = max_k.max(kr);
        }
        let on = span(batch, max_k, out_row_stride).arg("out_row_stride")?;
        // out_idx, out_scores, out_counts, workspace (no allocation on this path).
        let mut outs = [("", (0, 0)); 4];
        outs[0] = ("out_idx", range(out_idx, on).arg("out_idx")?);
        let sc_stride = if o.out_scores_row_stride == 0 {
            out_row_stride
        } else {
            o.out_scores_row_stride
        };
        let sn = if o.out_scores.is_null() {
            0
        } else {
            span(batch, max_k, sc_stride).arg("options->out_scores_row_stride")?
        };
        outs[1] = (
            "options->out_scores",
            range(o.out_scores, sn).arg("options->out_scores")?,
        );
        let cn = if out_counts.is_null() { 0 } else { batch };
        outs[2] = ("out_counts", range(out_counts, cn).arg("out_counts")?);
        let max_valid = rows
            .valid
            .map_or(n, |v| v.iter().copied().max().unwrap_or(0));
        let words = crate::topk_workspace_len(max_valid);
        let ws = if workspace.is_null() && workspace_size == 0 {
            None
        } else {
            ensure!(
                workspace_size / 8 >= words,
                BufferTooSmall,
                "workspace_size": "smaller than tkr_topk_workspace_size"
            );
            outs[3] = (
                "workspace",
                range(workspace as *const u64, words).arg("workspace")?,
            );
            Some(workspace as *mut u64)
        };
        all_disjoint(&outs, &ins)?;
        // SAFETY: sizes from the documented shapes; each output is disjoint from every
        // other buffer (checked), so the mutable slices are unique.
        let (idx, sc, counts, ws) = unsafe {
            (
                slice_mut(out_idx, on)?,
                if o.out_scores.is_null() {
                    None
                } else {
                    Some(slice_mut(o.out_scores, sn)?)
                },
                if out_counts.is_null() {
                    None
                } else {
                    Some(slice_mut(out_counts, batch)?)
                },
                match ws {
                    Some(p) => Some(slice_mut(p, words)?),
                    None => None,
                },
            )
        };
        kern.topk_f32(
            rows.scores,
            kspec,
            if o.flags & TKR_TOPK_ORDER_SCORE != 0 {
                Order::Score
            } else {
                Order::Position
            },
            &RowSpec {
                valid_lens: rows.valid,
                keep_first: o.keep_first,
                keep_last: o.keep_last,
                keep_mask: rows.keep,
            },
            TopkOut {
                indices: MatrixMut::new(idx, batch, max_k, out_row_stride)?,
                scores: match sc {
                    Some(s) => Some(MatrixMut::new(s, batch, max_k, sc_stride)?),
                    None => None,
                },
                counts,
            },
            ws,
        )
    })
}

/// Threshold selection over a batch of f32 scores: the tokens with score > tau
/// (strict, as route_i = [S_i > tau]) of every row, plus the forced keeps, as ascending
/// indices with per-row counts and/or as a per-token byte mask.
///
/// Comparison (identical on every ISA level, independent of the FPU's flush-to-zero
/// modes): IEEE s > tau on the exact values; -0.0 == +0.0, denormals are ordinary,
/// a NaN score is never above tau, a NaN tau selects nothing (but the forced keeps).
///
/// Forced keeps (options): the first keep_first tokens, the last keep_last tokens of the
/// valid part and the tokens whose keep_mask byte is non-zero are always selected, in
/// ADDITION to the tokens above tau (each token appears once).
///
/// - scores: batch rows of n floats, scores_row_stride (>= n) floats apart. Row r's
///   tokens at or past valid_lens[r] (options) are never read nor selected.
/// - tau: every row's threshold, unless options->row_tau gives one per row.
/// - options: NULL for defaults (no forced keeps, every token valid, no mask output);
///   see tkr_threshold_options.
/// - out_idx: NULL, or batch rows, out_row_stride uint32_t apart, each with room for
///   the row's valid length (out_row_stride >= the largest valid length): row r's first
///   out_counts[r] entries are its selected positions, ascending; the entries after them
///   up to the row's valid length may be overwritten (whole vectors are stored),
///   nothing past it. out_row_stride is ignored when out_idx is NULL.
/// - out_counts: NULL, or batch size_t: the number of selected tokens of each row.
/// - Aliasing: the outputs (out_idx, out_counts, out_mask) must not overlap each other
///   nor any input (scores, keep_mask, valid_lens, row_tau): TKR_STATUS_OVERLAP.
/// - (NULL, 0) is a valid empty buffer; batch = 0 does nothing.
/// - Returns TKR_STATUS_OK; TKR_STATUS_NULL_POINTER; TKR_STATUS_INVALID_ARGUMENT (a
///   valid length > n, n > 2^32 - 1, flags or reserved != 0, a misaligned pointer);
///   TKR_STATUS_BAD_STRIDE (a stride smaller than its row); TKR_STATUS_SIZE_OVERFLOW;
///   TKR_STATUS_OVERLAP; TKR_STATUS_UNSUPPORTED (options fields this library does not
///   know are set); TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_threshold_f32(
    scores: *const f32,
    batch: usize,
    n: usize,
    scores_row_stride: usize,
    tau: f32,
    options: *const tkr_threshold_options,
    out_idx: *mut u32,
    out_row_stride: usize,
    out_counts: *mut usize,
) -> tkr_status {
    guard(|| {
        let kern = Kernels::active()?;
        // SAFETY: NULL or a caller's struct of struct_size readable bytes.
        let o = unsafe { read_options(options).arg("options")? };
        ensure!(
            o.flags == 0,
            InvalidArgument,
            "options->flags": "unknown tkr_threshold_options flags"
        );
        ensure!(
            o.reserved == 0,
            InvalidArgument,
            "options->reserved": "must be 0"
        );
        // SAFETY: the caller's promises about the buffers, passed on.
        let rows = unsafe {
            c_rows(
                scores,
                batch,
                n,
                scores_row_stride,
                o.keep_mask,
                o.keep_mask_row_stride,
                o.valid_lens,
            )?
        };
        let mut ins = rows.ranges;
        let taus = if o.row_tau.is_null() {
            Tau::Fixed(tau)
        } else {
            // SAFETY: the caller promises batch floats at row_tau.
            let t = unsafe { slice(o.row_tau, batch).arg("options->row_tau")? };
            ins[3] = byte_range(t);
            Tau::PerRow(t)
        };
        let max_valid = rows
            .valid
            .map_or(n, |v| v.iter().copied().max().unwrap_or(0));
        let on = if out_idx.is_null() {
            0
        } else {
            span(batch, max_valid, out_row_stride).arg("out_row_stride")?
        };
        let mask_stride = if o.out_mask_row_stride == 0 {
            n
        } else {
            o.out_mask_row_stride
        };
        let mn = if o.out_mask.is_null() {
            0
        } else {
            span(batch, n, mask_stride).arg("options->out_mask_row_stride")?
        };
        let cn = if out_counts.is_null() { 0 } else { batch };
        let outs = [
            ("out_idx", range(out_idx, on).arg("out_idx")?),
            (
                "options->out_mask",
                range(o.out_mask, mn).arg("options->out_mask")?,
            ),
            ("out_counts", range(out_counts, cn).arg("out_counts")?),
        ];
        all_disjoint(&outs, &ins)?;
        // SAFETY: sizes from the documented shapes; each output is disjoint from every
        // other buffer (checked), so the mutable slices are unique.
        let (idx, mask, counts) = unsafe {
            (
                if out_idx.is_null() {
                    None
                } else {
                    Some(slice_mut(out_idx, on)?)
                },
                if o.out_mask.is_null() {
                    None
                } else {
                    Some(slice_mut(o.out_mask, mn)?)
                },
                if out_counts.is_null() {
                    None
                } else {
                    Some(slice_mut(out_counts, batch)?)
                },
            )
        };
        kern.threshold_f32(
            rows.scores,
            taus,
            &RowSpec {
                valid_lens: rows.valid,
                keep_first: o.keep_first,
                keep_last: o.keep_last,
                keep_mask: rows.keep,
            },
            ThresholdOut {
                indices: match idx {
                    Some(i) => Some(MatrixMut::new(i, batch, max_valid, out_row_stride)?),
                    None => None,
                },
                mask: match mask {
                    Some(m) => Some(MatrixMut::new(m, batch, n, mask_stride)?),
                    None => None,
                },
                counts,
            },
        )
    })
}

/// The positions of the non-zero bytes of mask[0..n], ascending: *out_count = c and
/// out_idx[0..c] holds them; out_idx[c..n] may be overwritten (whole vectors are
/// stored), nothing past n.
///
/// - mask: n bytes; out_idx: room for n uint32_t; out_count: one size_t.
/// - Aliasing: out_idx and out_count must not overlap mask nor each other.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (n >
///   2^32 - 1, a misaligned pointer), TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP,
///   TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_mask_to_indices(
    mask: *const u8,
    n: usize,
    out_idx: *mut u32,
    out_count: *mut usize,
) -> tkr_status {
    guard(|| {
        let kern = Kernels::active()?;
        ensure!(n <= MAX_ROW, InvalidArgument, "n": "n > 2^32 - 1");
        let m_r = range(mask, n).arg("mask")?;
        let outs = [
            ("out_idx", range(out_idx, n).arg("out_idx")?),
            ("out_count", range(out_count, 1).arg("out_count")?),
        ];
        all_disjoint(&outs, &[m_r])?;
        // SAFETY: the caller's promises; the outputs are disjoint from every other
        // buffer (checked).
        let (m, idx, cnt) = unsafe {
            (
                slice(mask, n)?,
                slice_mut(out_idx, n)?,
                slice_mut(out_count, 1)?,
            )
        };
        cnt[0] = kern.mask_to_indices(m, idx)?;
        Ok(())
    })
}

/// out_mask[0..n] = 0, then out_mask[indices[j]] = 1 for every j < count (duplicates
/// allowed, any order).
///
/// - indices: count uint32_t, each < n (TKR_STATUS_OUT_OF_RANGE otherwise, with nothing
///   written); out_mask: n bytes, not overlapping indices.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_OUT_OF_RANGE,
///   TKR_STATUS_INVALID_ARGUMENT (a misaligned pointer), TKR_STATUS_SIZE_OVERFLOW,
///   TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_indices_to_mask(
    indices: *const u32,
    count: usize,
    out_mask: *mut u8,
    n: usize,
) -> tkr_status {
    guard(|| {
        let kern = Kernels::active()?;
        disjoint(
            range(out_mask, n).arg("out_mask")?,
            range(indices, count).arg("indices")?,
        )
        .arg("out_mask")?;
        // SAFETY: the caller's promises; the two buffers are disjoint (checked).
        let (idx, mask) = unsafe { (slice(indices, count)?, slice_mut(out_mask, n)?) };
        kern.indices_to_mask(idx, mask)
    })
}
