//! Router scoring: elementwise sigmoid and fused `act(H W^T + b)`.

use crate::error::{ensure, Result};
use crate::ops::{Element, Matrix, MatrixMut};
use crate::parallel::{self, Shared};
use crate::Kernels;
use tokenroute_kernels::score::ScoreArgs;

pub use tokenroute_kernels::score::Activation;

impl Kernels {
    /// `y[i] = sigmoid(x[i])`, at most 2 ulp from the correctly rounded result,
    /// bit-identical on every level. `x` and `y` must have the same length.
    pub fn sigmoid_f32(&self, x: &[f32], y: &mut [f32]) -> Result<()> {
        ensure!(
            x.len() == y.len(),
            InvalidArgument,
            "x and y lengths differ"
        );
        self.sigmoid_units(x.as_ptr(), y.as_mut_ptr(), x.len())
    }

    /// In-place [`Kernels::sigmoid_f32`].
    pub fn sigmoid_f32_in_place(&self, x: &mut [f32]) -> Result<()> {
        self.sigmoid_units(x.as_ptr(), x.as_mut_ptr(), x.len())
    }

    /// Elementwise, so any split gives the same bits: units of consecutive elements.
    fn sigmoid_units(&self, x: *const f32, y: *mut f32, n: usize) -> Result<()> {
        let (f, p) = (self.sigmoid_f32, Shared((x, y)));
        parallel::for_each_range(n, parallel::items_per_unit(8), n * 8, &|r| {
            let (x, y) = p.get();
            // SAFETY: x and y hold n elements (the callers' slices, equal or disjoint);
            // units cover disjoint ranges.
            unsafe { f(x.add(r.start), y.add(r.start), r.len()) };
            Ok(())
        })
    }

    /// Router scores `out[i][e] = act(sum_j h[i][j] * w[e][j] + bias[e])`.
    ///
    /// `h` is `[n, d]`, `w` is `[E, d]` (same element type), `bias` has `E` values (or
    /// is `None`), `out` is `[n, E]`. Each score depends only on its row, `w` and the
    /// bias (fixed accumulation order, see `tokenroute_kernels::score`), so splitting
    /// the rows across calls or threads gives bit-identical results, on every level.
    pub fn score<T: Element>(
        &self,
        h: Matrix<'_, T>,
        w: Matrix<'_, T>,
        bias: Option<&[f32]>,
        act: Activation,
        out: MatrixMut<'_, f32>,
    ) -> Result<()> {
        ensure!(
            w.cols == h.cols,
            InvalidArgument,
            "h and w rows differ in length"
        );
        ensure!(
            out.rows == h.rows,
            InvalidArgument,
            "out must have one row per token"
        );
        ensure!(
            out.cols == w.rows,
            InvalidArgument,
            "out must have one column per router"
        );
        ensure!(
            w.rows > 0 || h.rows == 0,
            InvalidArgument,
            "n_routers = 0 (no routers) for a non-empty batch"
        );
        if let Some(b) = bias {
            ensure!(
                b.len() == w.rows,
                InvalidArgument,
                "bias must have one value per router"
            );
        }
        if h.rows == 0 {
            return Ok(());
        }
        let args = ScoreArgs {
            h: h.data.as_ptr(),
            n: h.rows,
            d: h.cols,
            h_stride: h.stride,
            w: w.data.as_ptr(),
            e: w.rows,
            w_stride: w.stride,
            bias: bias.map_or(core::ptr::null(), <[f32]>::as_ptr),
            act,
            out: out.data.as_mut_ptr(),
            out_stride: out.stride,
        };
        // Each score depends only on its row: units of consecutive rows, a multiple of
        // 16 (the kernels' row blocks divide it).
        // Saturating: without rows, cols is not bounded by a buffer.
        let row_work = h
            .cols
            .saturating_mul(core::mem::size_of::<T>())
            .saturating_add(w.rows.saturating_mul(h.cols / 2 + 4));
        let (f, a) = (T::score_fn(self), Shared(args));
        parallel::for_each_range(
            h.rows,
            parallel::items_per_unit(row_work).next_multiple_of(16),
            h.rows.saturating_mul(row_work),
            &|r| {
                let mut a = a.get();
                // SAFETY: the views were checked to hold every row they describe, shapes
                // agree, and `out` is a unique borrow, disjoint from the inputs; units
                // take disjoint row ranges.
                unsafe {
                    a.h = a.h.add(r.start * a.h_stride);
                    a.out = a.out.add(r.start * a.out_stride);
                    a.n = r.len();
                    f(&a)
                };
                Ok(())
            },
        )
    }
}

/// [`Kernels::sigmoid_f32`] on the active level.
pub fn sigmoid_f32(x: &[f32], y: &mut [f32]) -> Result<()> {
    Kernels::active()?.sigmoid_f32(x, y)
}

/// [`Kernels::sigmoid_f32_in_place`] on the active level.
pub fn sigmoid_f32_in_place(x: &mut [f32]) -> Result<()> {
    Kernels::active()?.sigmoid_f32_in_place(x)
}

/// [`Kernels::score`] on the active level.
pub fn score<T: Element>(
    h: Matrix<'_, T>,
    w: Matrix<'_, T>,
    bias: Option<&[f32]>,
    act: Activation,
    out: MatrixMut<'_, f32>,
) -> Result<()> {
    Kernels::active()?.score(h, w, bias, act, out)
}
