//! Row softmax with attention's numerics.

use crate::error::{ensure, Result};
use crate::ops::attend::OutElement;
use crate::ops::{Element, Matrix, MatrixMut};
use crate::parallel::{self, Shared};
use crate::Kernels;
use tokenroute_kernels::softmax::SoftmaxArgs;

/// Options of [`Kernels::softmax`]: the logits of row `r` are `scale * x[r][j] +
/// bias[r][j]`.
#[derive(Clone, Copy, Debug)]
pub struct SoftmaxOptions<'a> {
    /// Any finite value (negative: a softmin); 1 by default.
    pub scale: f32,
    /// `None`, or f32 rows of `n` values: one row added to every row of `x` (a 1-row
    /// matrix), or one row per row of `x`. `-inf` masks an element.
    pub bias: Option<Matrix<'a, f32>>,
}

impl Default for SoftmaxOptions<'_> {
    fn default() -> Self {
        SoftmaxOptions {
            scale: 1.0,
            bias: None,
        }
    }
}

impl Kernels {
    /// Row softmax: `out[r][j] = exp(t_j - max_i t_i) / sum_i exp(t_i - max_i t_i)` with
    /// `t_j = scale * x[r][j] + bias[r][j]`, for every row of `x` (f32, f16 or bf16),
    /// written to `out` (f32, f16 or bf16; same shape).
    ///
    /// Computed with attention's numerics (`tokenroute_kernels::softmax`): bit-identical
    /// on every level and for every thread count, and equal bit for bit to the attention
    /// probabilities (mass) one query would give keys scored by the row. Within
    /// `2^-19 (2 + A + n/256) |exact| + u_out |exact| + 2^-124 + e_out` of the exact
    /// value (A: the largest `|scale x_j| + |b_j|` of the row's finite logits; u_out,
    /// e_out: the output rounding, 0 for f32 beside 2^-150). A `-inf` logit is masked
    /// (`+0`); a row whose logits are all `-inf` gives `+0` everywhere (attention's row
    /// that sees no key); a NaN or `+inf` logit (also one whose f32 evaluation
    /// `x * scale * log2(e)` overflows) makes its row the canonical quiet NaN.
    pub fn softmax<T: Element, O: OutElement>(
        &self,
        x: Matrix<'_, T>,
        out: MatrixMut<'_, O>,
        opts: &SoftmaxOptions<'_>,
    ) -> Result<()> {
        ensure!(
            out.rows == x.rows && out.cols == x.cols,
            InvalidArgument,
            "out must have the shape of x"
        );
        // SAFETY: `out` is a unique borrow, disjoint from `x` and the bias.
        unsafe {
            self.softmax_raw(
                x.data.as_ptr(),
                x.rows,
                x.cols,
                x.stride,
                opts,
                out.data.as_mut_ptr(),
                out.stride,
            )
        }
    }

    /// [`Kernels::softmax`] in place (the output has the input's type and layout).
    pub fn softmax_in_place<T: OutElement>(
        &self,
        x: MatrixMut<'_, T>,
        opts: &SoftmaxOptions<'_>,
    ) -> Result<()> {
        // SAFETY: the rows of `x` (a unique borrow) are read then written in place, which
        // the kernels allow; the bias is a shared borrow, so disjoint from them.
        unsafe {
            self.softmax_raw(
                x.data.as_ptr(),
                x.rows,
                x.cols,
                x.stride,
                opts,
                x.data.as_mut_ptr(),
                x.stride,
            )
        }
    }

    /// # Safety
    /// `x` holds the rows described (checked by its `Matrix`), `out` as many rows of `n`
    /// at `out_stride`, disjoint from `x` and the bias or exactly `x` (same type and
    /// stride).
    #[allow(clippy::too_many_arguments)]
    unsafe fn softmax_raw<T: Element, O: OutElement>(
        &self,
        x: *const T,
        rows: usize,
        n: usize,
        x_stride: usize,
        opts: &SoftmaxOptions<'_>,
        out: *mut O,
        out_stride: usize,
    ) -> Result<()> {
        ensure!(
            opts.scale.is_finite(),
            InvalidArgument,
            "scale": "not finite"
        );
        let (bias, bias_stride) = match &opts.bias {
            None => (core::ptr::null(), 0),
            Some(b) => {
                ensure!(
                    b.cols == n,
                    InvalidArgument,
                    "bias": "rows must have n values"
                );
                ensure!(
                    b.rows == 1 || b.rows == rows,
                    InvalidArgument,
                    "bias": "must have 1 row or one per row of x"
                );
                (b.data.as_ptr(), if b.rows == 1 { 0 } else { b.stride })
            }
        };
        if rows == 0 || n == 0 {
            return Ok(());
        }
        let args = SoftmaxArgs {
            x,
            rows,
            n,
            x_stride,
            scale: opts.scale,
            bias,
            bias_stride,
            out: out as *mut u8,
            out_type: O::out_type(),
            out_stride,
        };
        // Rows are independent: units of consecutive rows (bytes moved plus a quarter of
        // about 40 flops per element).
        let row_work = n.saturating_mul(core::mem::size_of::<T>() + core::mem::size_of::<O>() + 10);
        let (f, a) = (T::softmax_fn(self), Shared(args));
        parallel::for_each_range(
            rows,
            parallel::items_per_unit(row_work),
            rows.saturating_mul(row_work),
            &|r| {
                let mut a = a.get();
                // SAFETY: the rows were validated by the caller; units take disjoint row
                // ranges.
                unsafe {
                    a.x = a.x.add(r.start * a.x_stride);
                    a.out = (a.out as *mut O).add(r.start * a.out_stride) as *mut u8;
                    if !a.bias.is_null() {
                        a.bias = a.bias.add(r.start * a.bias_stride);
                    }
                    a.rows = r.len();
                    f(&a)
                };
                Ok(())
            },
        )
    }
}

/// [`Kernels::softmax`] on the active level.
pub fn softmax<T: Element, O: OutElement>(
    x: Matrix<'_, T>,
    out: MatrixMut<'_, O>,
    opts: &SoftmaxOptions<'_>,
) -> Result<()> {
    Kernels::active()?.softmax(x, out, opts)
}

/// [`Kernels::softmax_in_place`] on the active level.
pub fn softmax_in_place<T: OutElement>(
    x: MatrixMut<'_, T>,
    opts: &SoftmaxOptions<'_>,
) -> Result<()> {
    Kernels::active()?.softmax_in_place(x, opts)
}
