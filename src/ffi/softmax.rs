//! Row softmax through the C ABI.

use super::{
    byte_range, disjoint, guard, read_options, slice, slice_mut, tkr_status, ArgName, OptionsStruct,
};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::attend::OutElement;
use crate::ops::softmax::SoftmaxOptions;
use crate::ops::{span, DType, Element, Matrix, MatrixMut};
use crate::Kernels;
use core::ffi::c_void;
use half::{bf16, f16};

/// Options of tkr_softmax. Zero (or a NULL pointer) means the default for every field;
/// set struct_size to sizeof(tkr_softmax_options) (tkr_softmax_options_init does).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct tkr_softmax_options {
    /// sizeof(tkr_softmax_options), so the struct can grow.
    pub struct_size: usize,
    /// Multiplies every input before the bias; 0 means 1. Must be finite (negative
    /// values are allowed: a softmin).
    pub scale: f32,
    /// Output element type: 0 = the input dtype, else TKR_DTYPE_F32/F16/BF16.
    pub out_dtype: u32,
    /// NULL, or f32 bias rows of n values added to the scaled inputs (-inf masks an
    /// element): one row for every row of x (bias_row_stride = 0) or one per row.
    pub bias: *const f32,
    /// 0: the one bias row is added to every row; else floats between the bias rows of
    /// consecutive rows of x (>= n).
    pub bias_row_stride: usize,
}
// SAFETY: repr(C), struct_size first, and all-zero bytes are the defaults (scale 1, the
// input dtype out, no bias).
unsafe impl OptionsStruct for tkr_softmax_options {}

/// Fills *options with the defaults: every field 0, struct_size =
/// sizeof(tkr_softmax_options). Returns TKR_STATUS_NULL_POINTER for a NULL options.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_softmax_options_init(options: *mut tkr_softmax_options) -> tkr_status {
    guard(|| {
        // SAFETY: the caller promises room for one tkr_softmax_options at options.
        let o = unsafe { slice_mut(options, 1).arg("options")? };
        // SAFETY: NULL options reads as the defaults.
        o[0] = unsafe { read_options::<tkr_softmax_options>(core::ptr::null())? };
        Ok(())
    })
}

/// Row softmax: for every row r < n_rows and j < n, with the logits
/// t_j = scale * x[r * x_row_stride + j] + bias[r * bias_row_stride + j] (no bias term
/// without a bias),
/// out[r * out_row_stride + j] = exp(t_j - max_i t_i) / sum_i exp(t_i - max_i t_i).
///
/// - dtype: TKR_DTYPE_F32, TKR_DTYPE_F16 or TKR_DTYPE_BF16, the element type of x
///   (f16/bf16 as uint16_t bit patterns, widened exactly); the output type is
///   options->out_dtype (default: dtype).
/// - Numerics: attention's (tkr_attention): logits in base 2 (t_j * log2(e) as
///   x_j * c with c = scale * log2(e) rounded once, plus bias_j * log2(e) by a fused
///   multiply-add), blocks of 64 elements with the online softmax and exp2 of
///   attention, fixed summation order. Results are **bit-identical on every ISA level**
///   and thread count, and equal bit for bit to the attention probabilities (the mass)
///   one query would give keys scored by the row. Error: within
///   2^-19 (2 + A + n/256) |exact| + u_out |exact| + 2^-124 + e_out of the exact value
///   (A: the largest |scale x_j| + |bias_j| over the row's finite logits; u_out: the
///   output rounding, 0 for f32, 2^-11 f16, 2^-8 bf16; e_out: half the output type's
///   smallest subnormal, 2^-150 f32, 2^-25 f16, 2^-134 bf16).
/// - Special values: a -inf logit is a masked element (output +0); a row whose logits
///   are all -inf gives +0 everywhere (like an attention row that sees no key: zeros,
///   never NaN); a NaN logit (a NaN input or bias, -inf + inf) or a +inf logit
///   (exp(inf - inf), as in PyTorch; also when x * scale * log2(e) overflows f32, i.e.
///   |scale x| > 2.3e38) makes every output of its row the canonical quiet NaN (f32
///   0x7fc00000, f16 0x7e00, bf16 0x7fc0), whatever the NaN's sign and payload. Other
///   rows are unaffected.
/// - x: n_rows rows of n elements, x_row_stride elements apart (>= n).
/// - out: n_rows rows of n elements of the output type, out_row_stride apart (>= n);
///   only those elements are written. In place is allowed: out == x with the input
///   dtype out and out_row_stride == x_row_stride; any other overlap of out with x or
///   the bias is TKR_STATUS_OVERLAP.
/// - (NULL, 0) is a valid empty buffer (n_rows = 0 or n = 0). Returns TKR_STATUS_OK,
///   TKR_STATUS_INVALID_ARGUMENT (unknown dtype or out_dtype, a scale that is not
///   finite, options struct_size too small, misaligned pointer), TKR_STATUS_UNSUPPORTED
///   (options fields this library does not know), TKR_STATUS_BAD_STRIDE (a row stride
///   smaller than n), TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_NULL_POINTER,
///   TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE, TKR_STATUS_PARALLEL_FAILED. On error
///   nothing is written.
/// - Thread-safe; no allocation. Rows are independent: large calls run on the library's
///   threads (tkr_set_num_threads) with the same bits.
#[no_mangle]
pub unsafe extern "C" fn tkr_softmax(
    dtype: u32,
    x: *const c_void,
    n_rows: usize,
    n: usize,
    x_row_stride: usize,
    options: *const tkr_softmax_options,
    out: *mut c_void,
    out_row_stride: usize,
) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        let dtype = DType::from_code(dtype);
        ensure!(dtype.is_some(), InvalidArgument, "dtype": "unknown dtype code");
        let dtype = dtype.unwrap_or(DType::F32);
        // SAFETY: NULL or a struct of at least struct_size readable bytes (caller).
        let opts = unsafe { read_options(options).arg("options")? };
        let out_dtype = match opts.out_dtype {
            0 => dtype,
            c => DType::from_code(c).ok_or(
                Error::new(ErrorKind::InvalidArgument, "unknown dtype code")
                    .with_arg("options->out_dtype"),
            )?,
        };
        let scale = if opts.scale == 0.0 { 1.0 } else { opts.scale };
        ensure!(
            scale.is_finite(),
            InvalidArgument,
            "options->scale": "not finite"
        );
        let raw = RawSoftmax {
            x,
            n_rows,
            n,
            x_row_stride,
            scale,
            bias: opts.bias,
            bias_row_stride: opts.bias_row_stride,
            out,
            out_row_stride,
        };
        // SAFETY: the caller's promises about the buffers, passed on.
        unsafe {
            match (dtype, out_dtype) {
                (DType::F32, DType::F32) => raw.run::<f32, f32>(k),
                (DType::F32, DType::F16) => raw.run::<f32, f16>(k),
                (DType::F32, DType::BF16) => raw.run::<f32, bf16>(k),
                (DType::F16, DType::F32) => raw.run::<f16, f32>(k),
                (DType::F16, DType::F16) => raw.run::<f16, f16>(k),
                (DType::F16, DType::BF16) => raw.run::<f16, bf16>(k),
                (DType::BF16, DType::F32) => raw.run::<bf16, f32>(k),
                (DType::BF16, DType::F16) => raw.run::<bf16, f16>(k),
                (DType::BF16, DType::BF16) => raw.run::<bf16, bf16>(k),
            }
        }
    })
}

struct RawSoftmax {
    x: *const c_void,
    n_rows: usize,
    n: usize,
    x_row_stride: usize,
    scale: f32,
    bias: *const f32,
    bias_row_stride: usize,
    out: *mut c_void,
    out_row_stride: usize,
}

impl RawSoftmax {
    /// # Safety
    /// The buffers hold what the tkr_softmax documentation says.
    unsafe fn run<T: Element, O: OutElement>(self, k: &Kernels) -> Result<()> {
        let xn = span(self.n_rows, self.n, self.x_row_stride).arg("x_row_stride")?;
        let on = span(self.n_rows, self.n, self.out_row_stride).arg("out_row_stride")?;
        ensure!(
            self.bias_row_stride == 0 || self.bias_row_stride >= self.n,
            BadStride,
            "options->bias_row_stride": "row stride smaller than the row"
        );
        let (b_rows, b_stride) = match self.bias_row_stride {
            0 => (self.n_rows.min(1), self.n),
            s => (self.n_rows, s),
        };
        let bn = span(b_rows, self.n, b_stride).arg("options->bias_row_stride")?;
        let empty = self.n_rows == 0 || self.n == 0;
        // SAFETY: sizes come from the documented shapes; validity is the caller's promise.
        let (xs, outs) = unsafe {
            (
                slice(self.x as *const T, if empty { 0 } else { xn }).arg("x")?,
                slice(self.out as *const O, if empty { 0 } else { on }).arg("out")?,
            )
        };
        let bias = if self.bias.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice(self.bias, if empty { 0 } else { bn }).arg("options->bias")? })
        };
        if empty {
            return Ok(());
        }
        let o = byte_range(outs);
        if let Some(b) = bias {
            disjoint(o, byte_range(b)).arg("out")?;
        }
        let in_place = core::ptr::eq(self.out as *const u8, self.x as *const u8);
        if in_place {
            ensure!(
                O::DTYPE == T::DTYPE && self.out_row_stride == self.x_row_stride,
                Overlap,
                "out": "in place (out == x) needs the input dtype out and out_row_stride == x_row_stride"
            );
        } else {
            disjoint(o, byte_range(xs)).arg("out")?;
        }
        let opts = SoftmaxOptions {
            scale: self.scale,
            bias: match bias {
                None => None,
                Some(b) => Some(Matrix::new(b, b_rows, self.n, b_stride)?),
            },
        };
        // SAFETY: checked above: out is disjoint from every input, or exactly x with its
        // type and stride.
        let out = unsafe { slice_mut(self.out as *mut O, on)? };
        let out = MatrixMut::new(out, self.n_rows, self.n, self.out_row_stride)?;
        if in_place {
            return k.softmax_in_place(out, &opts);
        }
        k.softmax(
            Matrix::new(xs, self.n_rows, self.n, self.x_row_stride)?,
            out,
            &opts,
        )
    }
}
