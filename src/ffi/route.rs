//! The fused route call through the C ABI: score -> select -> gather.

use super::select::{TKR_TOPK_CAPACITY, TKR_TOPK_ORDER_SCORE};
use super::{
    byte_range, disjoint, guard, range, read_options, slice, slice_mut, tkr_status, ArgName,
    OptionsStruct,
};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::route::{route_workspace_len, RouteOut, RouteSelect};
use crate::ops::select::{Order, RowSpec, TopK};
use crate::ops::{span, DType, Element, Matrix, MatrixMut};
use crate::{Activation, Kernels};
use core::ffi::c_void;
use half::{bf16, f16};

/// tkr_route select mode: exact top-k (k tokens, or a capacity ratio).
pub const TKR_ROUTE_TOPK: u32 = 1;
/// tkr_route select mode: threshold selection, every token with score > tau.
pub const TKR_ROUTE_THRESHOLD: u32 = 2;

/// Options of tkr_route (the selection's options for one sequence). A NULL options
/// pointer means all defaults; so does an all-zero struct with struct_size set
/// (tkr_route_options_init fills exactly that). Every field's zero value is its default.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_route_options {
    /// sizeof(tkr_route_options) as the caller was compiled (older, smaller structs are
    /// accepted; a larger one must have an all-zero tail this library does not know).
    pub struct_size: usize,
    /// Top-k only: TKR_TOPK_ORDER_SCORE (indices by descending score, ties by ascending
    /// index, instead of ascending position), TKR_TOPK_CAPACITY (k = ceil(capacity *
    /// n_tokens) in IEEE double precision; the k argument must then be 0), or 0. Other
    /// bits, or any flag with TKR_ROUTE_THRESHOLD: TKR_STATUS_INVALID_ARGUMENT.
    pub flags: u32,
    /// Must be 0.
    pub reserved: u32,
    /// The first keep_first tokens are always selected (clamped to n_tokens). Top-k
    /// counts forced tokens within k (k must be at least their number); threshold
    /// selection adds them to the tokens above tau.
    pub keep_first: usize,
    /// The last keep_last tokens are always selected (clamped to what keep_first
    /// leaves).
    pub keep_last: usize,
    /// NULL, or n_tokens bytes: a non-zero byte forces its token.
    pub keep_mask: *const u8,
    /// With TKR_TOPK_CAPACITY: a ratio in [0, 1]. Must be 0 without the flag.
    pub capacity: f64,
}

// SAFETY: repr(C), struct_size first, and all-zero bytes are the defaults (a null
// keep_mask, no flags, zero counts).
unsafe impl OptionsStruct for tkr_route_options {}

/// Fills *options with the defaults: every field 0, struct_size =
/// sizeof(tkr_route_options). Returns TKR_STATUS_NULL_POINTER for a NULL options.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_route_options_init(options: *mut tkr_route_options) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_route_options at options.
        let o = unsafe { slice_mut(options, 1).arg("options")? };
        // SAFETY: NULL options reads as the defaults.
        o[0] = unsafe { read_options::<tkr_route_options>(core::ptr::null())? };
        Ok(())
    })
}

/// The workspace tkr_route needs for top-k over up to n_tokens tokens: *out_bytes =
/// 8 * (n_tokens + 2 * ceil(n_tokens / 2)), that is 16 * n_tokens rounded up to a
/// multiple of 16 (the top-k scratch, the scores, and the indices when out_idx is NULL;
/// to be passed 8-byte aligned). Threshold routing needs none. Returns
/// TKR_STATUS_NULL_POINTER for a NULL out_bytes, TKR_STATUS_SIZE_OVERFLOW when the
/// size overflows. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_route_workspace_size(
    n_tokens: usize,
    out_bytes: *mut usize,
) -> tkr_status {
    guard(|| {
        let bytes = n_tokens
            .div_ceil(2)
            .checked_mul(2)
            .and_then(|w| w.checked_add(n_tokens))
            .and_then(|w| w.checked_mul(8))
            .ok_or(Error::new(
                ErrorKind::SizeOverflow,
                "workspace size overflows",
            ))?;
        debug_assert_eq!(bytes, route_workspace_len(n_tokens) * 8);
        // SAFETY: the caller promises one writable size_t at out_bytes.
        let out = unsafe { slice_mut(out_bytes, 1).arg("out_bytes")? };
        out[0] = bytes;
        Ok(())
    })
}

/// The fused route call for one sequence: router scores, selection, and the compacted
/// rows, in one call. Identical to tkr_score (one router) -> tkr_topk_f32 or
/// tkr_threshold_f32 (one row, same options) -> tkr_gather_rows, on every ISA level.
///
/// 1. s_i = act(sum_j h[i][j] * w[j] + bias) for every token i < n_tokens (the numerics
///    of tkr_score: bit-identical on every level);
/// 2. the selection: TKR_ROUTE_TOPK keeps the k highest scores (exact; ties to the lower
///    index; NaN below every number), TKR_ROUTE_THRESHOLD every score > tau (none for a
///    NaN tau), plus the forced keeps of options;
/// 3. out_idx[j] = the j-th selected token (ascending, or by descending score with
///    TKR_TOPK_ORDER_SCORE), out_scores[j] = its score, out_rows[j] = its row of h.
///
/// - dtype: TKR_DTYPE_F32, TKR_DTYPE_F16 or TKR_DTYPE_BF16, the element type of h, w
///   and out_rows (f16/bf16 as uint16_t bit patterns).
/// - h: n_tokens rows of d elements, h_row_stride elements apart (n_tokens < 2^32).
/// - w: the router, d elements. bias: one float, or NULL for none.
/// - activation: TKR_ACT_SIGMOID or TKR_ACT_NONE (then tau compares raw logits).
/// - select: TKR_ROUTE_TOPK (k, or options->capacity with TKR_TOPK_CAPACITY) or
///   TKR_ROUTE_THRESHOLD (tau; k must be 0).
/// - out_idx, out_scores (each may be NULL: not wanted; top-k then keeps the indices in
///   its workspace), out_rows (rows of d elements, out_rows_stride elements apart): room
///   for out_capacity tokens each, which must be at least k (top-k) or n_tokens
///   (threshold selection may select every token); entries past the count are left as
///   they are.
/// - out_count: receives the number of selected tokens.
/// - workspace: top-k only, tkr_route_workspace_size(n_tokens) bytes, 8-byte aligned;
///   (NULL, 0) uses the library's scratch: the calling thread's buffer, reused without
///   allocation while it needs at most TKR_THREAD_SCRATCH_CAP bytes, above that the
///   process-wide spare or a buffer freed after the call (see
///   tkr_release_thread_buffers). Threshold routing scores,
///   selects and gathers block by block while the rows are in cache, on the stack, and
///   ignores it.
/// - Outputs (out_idx, out_scores, out_rows, out_count, workspace) must not overlap each
///   other nor the inputs (h, w, bias, keep_mask). Pointers must be aligned for their
///   element type.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown dtype, activation,
///   select mode or flags, non-zero reserved, k > n_tokens, a capacity outside [0, 1] or
///   with a non-zero k, forced keeps exceeding k, misaligned pointer),
///   TKR_STATUS_BUFFER_TOO_SMALL (out_capacity or workspace_size too small),
///   TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP,
///   TKR_STATUS_UNSUPPORTED (unknown options fields set), TKR_STATUS_ISA_UNAVAILABLE. On
///   error nothing is written.
/// - Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_route(
    dtype: u32,
    h: *const c_void,
    n_tokens: usize,
    d: usize,
    h_row_stride: usize,
    w: *const c_void,
    bias: *const f32,
    activation: u32,
    select: u32,
    k: usize,
    tau: f32,
    options: *const tkr_route_options,
    out_idx: *mut u32,
    out_scores: *mut f32,
    out_rows: *mut c_void,
    out_rows_stride: usize,
    out_capacity: usize,
    out_count: *mut usize,
    workspace: *mut c_void,
    workspace_size: usize,
) -> tkr_status {
    guard(|| {
        let act = match activation {
            super::score::TKR_ACT_NONE => Activation::None,
            super::score::TKR_ACT_SIGMOID => Activation::Sigmoid,
            _ => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "unknown activation code")
                        .with_arg("activation"),
                )
            }
        };
        // SAFETY: NULL or a caller's struct of struct_size readable bytes.
        let o = unsafe { read_options(options).arg("options")? };
        ensure!(
            o.reserved == 0,
            InvalidArgument,
            "options->reserved": "must be 0"
        );
        let how = match select {
            TKR_ROUTE_TOPK => {
                ensure!(
                    o.flags & !(TKR_TOPK_ORDER_SCORE | TKR_TOPK_CAPACITY) == 0,
                    InvalidArgument,
                    "options->flags": "unknown tkr_route_options flags"
                );
                let order = if o.flags & TKR_TOPK_ORDER_SCORE != 0 {
                    Order::Score
                } else {
                    Order::Position
                };
                let kk = if o.flags & TKR_TOPK_CAPACITY != 0 {
                    ensure!(
                        k == 0,
                        InvalidArgument,
                        "k": "non-zero together with TKR_TOPK_CAPACITY"
                    );
                    ensure!(
                        (0.0..=1.0).contains(&o.capacity),
                        InvalidArgument,
                        "options->capacity": "must be in [0, 1]"
                    );
                    TopK::Capacity(o.capacity)
                } else {
                    ensure!(
                        o.capacity == 0.0,
                        InvalidArgument,
                        "options->capacity": "set without TKR_TOPK_CAPACITY"
                    );
                    ensure!(k <= n_tokens, InvalidArgument, "k": "k > n_tokens");
                    TopK::Fixed(k)
                };
                RouteSelect::TopK(kk, order)
            }
            TKR_ROUTE_THRESHOLD => {
                ensure!(
                    o.flags == 0 && o.capacity == 0.0,
                    InvalidArgument,
                    "options": "top-k flags or capacity with TKR_ROUTE_THRESHOLD"
                );
                ensure!(k == 0, InvalidArgument, "k": "non-zero with TKR_ROUTE_THRESHOLD");
                RouteSelect::Threshold(tau)
            }
            _ => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "unknown select mode code")
                        .with_arg("select"),
                )
            }
        };
        let raw = RawRoute {
            h,
            n_tokens,
            d,
            h_row_stride,
            w,
            bias,
            act,
            how,
            opts: o,
            out_idx,
            out_scores,
            out_rows,
            out_rows_stride,
            out_capacity,
            out_count,
            workspace,
            workspace_size,
        };
        // SAFETY: the caller's promises about the buffers, passed on.
        unsafe {
            match DType::from_code(dtype) {
                Some(DType::F32) => raw.run::<f32>(),
                Some(DType::F16) => raw.run::<f16>(),
                Some(DType::BF16) => raw.run::<bf16>(),
                None => {
                    Err(Error::new(ErrorKind::InvalidArgument, "unknown dtype code")
                        .with_arg("dtype"))
                }
            }
        }
    })
}

struct RawRoute<'a> {
    h: *const c_void,
    n_tokens: usize,
    d: usize,
    h_row_stride: usize,
    w: *const c_void,
    bias: *const f32,
    act: Activation,
    how: RouteSelect<'a>,
    opts: tkr_route_options,
    out_idx: *mut u32,
    out_scores: *mut f32,
    out_rows: *mut c_void,
    out_rows_stride: usize,
    out_capacity: usize,
    out_count: *mut usize,
    workspace: *mut c_void,
    workspace_size: usize,
}

impl RawRoute<'_> {
    /// # Safety
    /// The buffers hold what the tkr_route documentation says.
    unsafe fn run<T: Element>(&self) -> Result<()> {
        let kern = Kernels::active()?;
        let (n, d, cap) = (self.n_tokens, self.d, self.out_capacity);
        ensure!(
            n <= u32::MAX as usize,
            InvalidArgument,
            "n_tokens": "more than 2^32 - 1 tokens"
        );
        // The outputs' room, before any buffer is looked at (status precedence).
        let needed = match &self.how {
            RouteSelect::TopK(k, _) => k.row_k(0, n),
            RouteSelect::Threshold(_) => n,
        };
        ensure!(
            cap >= needed,
            BufferTooSmall,
            "out_capacity": "room for fewer tokens than the selection may return"
        );
        let hn = span(n, d, self.h_row_stride).arg("h_row_stride")?;
        let on = span(cap, d, self.out_rows_stride).arg("out_rows_stride")?;
        // SAFETY: sizes from the documented shapes; validity is the caller's promise.
        let (hs, ws) = unsafe {
            (
                slice(self.h as *const T, hn).arg("h")?,
                slice(self.w as *const T, d).arg("w")?,
            )
        };
        let mut ins = vec![byte_range(hs), byte_range(ws)];
        let bias = if self.bias.is_null() {
            None
        } else {
            // SAFETY: as above.
            let b = unsafe { slice(self.bias, 1).arg("bias")? };
            ins.push(byte_range(b));
            Some(b[0])
        };
        let keep_mask = if self.opts.keep_mask.is_null() {
            None
        } else {
            // SAFETY: as above.
            let m = unsafe { slice(self.opts.keep_mask, n).arg("options->keep_mask")? };
            ins.push(byte_range(m));
            Some(Matrix::new(m, 1, n, n)?)
        };
        let mut outs = vec![
            (
                "out_rows",
                range(self.out_rows as *const T, on).arg("out_rows")?,
            ),
            (
                "out_count",
                range(self.out_count as *const usize, 1).arg("out_count")?,
            ),
        ];
        if !self.out_idx.is_null() {
            outs.push((
                "out_idx",
                range(self.out_idx as *const u32, cap).arg("out_idx")?,
            ));
        }
        if !self.out_scores.is_null() {
            outs.push((
                "out_scores",
                range(self.out_scores as *const f32, cap).arg("out_scores")?,
            ));
        }
        let use_ws = matches!(self.how, RouteSelect::TopK(..)) && self.workspace_size > 0;
        let ws_words = self.workspace_size / 8;
        if use_ws {
            ensure!(
                self.workspace.is_null() || (self.workspace as usize) % 8 == 0,
                InvalidArgument,
                "workspace": "not 8-byte aligned"
            );
            outs.push((
                "workspace",
                range(self.workspace as *const u64, ws_words).arg("workspace")?,
            ));
        }
        for (j, &(name, a)) in outs.iter().enumerate() {
            for &b in ins.iter().chain(outs[j + 1..].iter().map(|(_, r)| r)) {
                disjoint(a, b).arg(name)?;
            }
        }
        // SAFETY: checked above: every output is disjoint from the inputs and the
        // other outputs; sizes from the documented shapes.
        let (rows, count) = unsafe {
            (
                slice_mut(self.out_rows as *mut T, on)?,
                slice_mut(self.out_count, 1)?,
            )
        };
        let idx = if self.out_idx.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice_mut(self.out_idx, cap)? })
        };
        let scores = if self.out_scores.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice_mut(self.out_scores, cap)? })
        };
        let wsl = if use_ws {
            // SAFETY: as above; 8-byte aligned (checked).
            Some(unsafe { slice_mut(self.workspace as *mut u64, ws_words)? })
        } else {
            None
        };
        let keep = RowSpec {
            valid_lens: None,
            keep_first: self.opts.keep_first,
            keep_last: self.opts.keep_last,
            keep_mask,
        };
        let c = kern.route(
            Matrix::new(hs, n, d, self.h_row_stride)?,
            ws,
            bias,
            self.act,
            self.how,
            &keep,
            RouteOut {
                indices: idx,
                scores,
                rows: MatrixMut::new(rows, cap, d, self.out_rows_stride)?,
            },
            wsl,
        )?;
        count[0] = c;
        Ok(())
    }
}
