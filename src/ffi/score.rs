//! Router scoring through the C ABI.

use super::{byte_range, disjoint, guard, range, slice, slice_mut, tkr_status, ArgName};
use crate::error::{ensure, Result};
use crate::ops::{span, DType, Element, Matrix, MatrixMut};
use crate::{Activation, Kernels};
use core::ffi::c_void;
use half::{bf16, f16};

/// Element type code: IEEE binary32.
pub const TKR_DTYPE_F32: u32 = 1;
/// Element type code: IEEE binary16, passed as uint16_t bit patterns.
pub const TKR_DTYPE_F16: u32 = 2;
/// Element type code: bfloat16, passed as uint16_t bit patterns.
pub const TKR_DTYPE_BF16: u32 = 3;

/// Activation code: the raw logit `w . h + b`.
pub const TKR_ACT_NONE: u32 = 0;
/// Activation code: the logistic sigmoid `1 / (1 + exp(-(w . h + b)))`.
pub const TKR_ACT_SIGMOID: u32 = 1;

/// Elementwise logistic sigmoid: `y[i] = 1 / (1 + exp(-x[i]))` for `i < n`.
///
/// Accuracy: at most 2 ulp from the correctly rounded result for every finite input
/// (within 2.41 ulp of the exact value; 97% of results correctly rounded; checked over
/// all 2^32 inputs), subnormal results rounded (not flushed); sigmoid(+inf) = 1,
/// sigmoid(-inf) = 0; a NaN input of any sign or payload gives the canonical quiet NaN
/// 0x7fc00000. Results, NaN included, are bit-identical on every ISA level.
///
/// - `x`: `n` floats; `y`: `n` floats. (NULL, 0) is valid. `y == x` (in place) is
///   allowed; any other overlap returns TKR_STATUS_OVERLAP.
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT
///   (misaligned pointer), TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP,
///   TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_sigmoid_f32(x: *const f32, n: usize, y: *mut f32) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        if n > 0 && core::ptr::eq(x, y) {
            // SAFETY: the caller promises n valid floats at x (== y).
            let xy = unsafe { slice_mut(y, n).arg("x")? };
            return k.sigmoid_f32_in_place(xy);
        }
        disjoint(range(x, n).arg("x")?, range(y, n).arg("y")?).arg("y")?;
        // SAFETY: the caller promises n valid floats at x and at y, now known disjoint.
        let (xs, ys) = unsafe { (slice(x, n)?, slice_mut(y, n)?) };
        k.sigmoid_f32(xs, ys)
    })
}

/// Fused router scores: `scores[i * scores_row_stride + e] =
/// act(sum_j h[i * h_row_stride + j] * w[e * w_row_stride + j] + bias[e])` for every
/// token `i < n_tokens` and router `e < n_routers`, `j < d`.
///
/// - `dtype`: TKR_DTYPE_F32, TKR_DTYPE_F16 or TKR_DTYPE_BF16, the element type of both
///   `h` and `w` (f16/bf16 as uint16_t bit patterns). Arithmetic is f32 with fused
///   multiply-adds in a fixed order (16 lanes, then a fixed tree), so a token's score
///   is **bit-identical on every ISA level**, for any n_tokens and any position in the
///   batch: an engine may split the tokens across threads or calls freely.
/// - `h`: `n_tokens` rows of `d` elements, `h_row_stride` (elements) apart.
/// - `w`: `n_routers` rows of `d` elements, `w_row_stride` apart. n_routers = 1 is the
///   classic router; n_routers > 1 scores several paths at once.
/// - `bias`: `n_routers` floats, or NULL for none.
/// - `activation`: TKR_ACT_SIGMOID or TKR_ACT_NONE.
/// - `scores`: `n_tokens` rows of `n_routers` floats, `scores_row_stride` apart; only
///   those floats are written. It must not overlap `h`, `w` or `bias`.
/// - Accuracy: a finite logit is within
///   (ceil(d/16) + 5) * 2^-24 * (sum_j |h_j w_j| + |b|) + (d + 16) * 2^-149
///   of the exact value (the second term bounds the rounding of results below the normal
///   range, 2^-149 being the smallest subnormal); the sigmoid adds at most 2 ulp.
///   Overflow: a logit whose canonical f32 evaluation is not finite (a partial sum
///   overflowed, or an input is inf or NaN) is recomputed in f64 (every product exact,
///   summed in order of j, then the bias, rounded once), identically on every level; so
///   an overflowing partial sum never turns a representable logit into inf or NaN. The
///   logit is +-inf only when the exact value lies outside the f32 range (up to the
///   bound), and NaN only when an input is NaN or the exact sum has no value (inf - inf,
///   0 * inf). A NaN score (with either activation) is the quiet NaN 0x7fc00000.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER,
///   TKR_STATUS_INVALID_ARGUMENT (unknown dtype or activation, n_routers = 0 with
///   n_tokens > 0, misaligned pointer), TKR_STATUS_BAD_STRIDE (a stride smaller than
///   its row), TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE.
///   On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_score(
    dtype: u32,
    h: *const c_void,
    n_tokens: usize,
    d: usize,
    h_row_stride: usize,
    w: *const c_void,
    n_routers: usize,
    w_row_stride: usize,
    bias: *const f32,
    activation: u32,
    scores: *mut f32,
    scores_row_stride: usize,
) -> tkr_status {
    guard(|| {
        let dtype = DType::from_code(dtype);
        ensure!(dtype.is_some(), InvalidArgument, "dtype": "unknown dtype code");
        let act = match activation {
            TKR_ACT_NONE => Activation::None,
            TKR_ACT_SIGMOID => Activation::Sigmoid,
            _ => {
                return Err(crate::Error::new(
                    crate::ErrorKind::InvalidArgument,
                    "unknown activation code",
                )
                .with_arg("activation"))
            }
        };
        ensure!(
            n_routers > 0 || n_tokens == 0,
            InvalidArgument,
            "n_routers": "0 (no routers) for a non-empty batch"
        );
        let raw = RawScore {
            h,
            n_tokens,
            d,
            h_row_stride,
            w,
            n_routers,
            w_row_stride,
            bias,
            act,
            scores,
            scores_row_stride,
        };
        // SAFETY: the caller's promises about the buffers, passed on.
        unsafe {
            match dtype {
                Some(DType::F32) => raw.run::<f32>(),
                Some(DType::F16) => raw.run::<f16>(),
                _ => raw.run::<bf16>(),
            }
        }
    })
}

struct RawScore {
    h: *const c_void,
    n_tokens: usize,
    d: usize,
    h_row_stride: usize,
    w: *const c_void,
    n_routers: usize,
    w_row_stride: usize,
    bias: *const f32,
    act: Activation,
    scores: *mut f32,
    scores_row_stride: usize,
}

impl RawScore {
    /// # Safety
    /// The buffers hold what the tkr_score documentation says.
    unsafe fn run<T: Element>(&self) -> Result<()> {
        let k = Kernels::active()?;
        let hn = span(self.n_tokens, self.d, self.h_row_stride).arg("h_row_stride")?;
        let wn = span(self.n_routers, self.d, self.w_row_stride).arg("w_row_stride")?;
        let on =
            span(self.n_tokens, self.n_routers, self.scores_row_stride).arg("scores_row_stride")?;
        // SAFETY: sizes come from the documented shapes; validity is the caller's promise.
        let (hs, ws, out) = unsafe {
            (
                slice(self.h as *const T, hn).arg("h")?,
                slice(self.w as *const T, wn).arg("w")?,
                slice(self.scores as *const f32, on).arg("scores")?,
            )
        };
        let bias = if self.bias.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice(self.bias, self.n_routers).arg("bias")? })
        };
        let o = byte_range(out);
        disjoint(o, byte_range(hs)).arg("scores")?;
        disjoint(o, byte_range(ws)).arg("scores")?;
        if let Some(b) = bias {
            disjoint(o, byte_range(b)).arg("scores")?;
        }
        // SAFETY: checked above: the output is disjoint from every input.
        let out = unsafe { slice_mut(self.scores, on)? };
        k.score(
            Matrix::new(hs, self.n_tokens, self.d, self.h_row_stride)?,
            Matrix::new(ws, self.n_routers, self.d, self.w_row_stride)?,
            bias,
            self.act,
            MatrixMut::new(out, self.n_tokens, self.n_routers, self.scores_row_stride)?,
        )
    }
}
