//! The safe, validated API: shapes, strides and element types, then one module per
//! kernel family.

pub mod attend;
pub mod attend_batch;
mod attend_units;
pub mod compact;
pub mod route;
pub mod score;
pub mod select;
pub mod softmax;

use crate::error::{ensure, Result};
use half::{bf16, f16};

/// Element types of the kernels' inputs. The discriminant is the C ABI code
/// (`TKR_DTYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum DType {
    F32 = 1,
    F16 = 2,
    BF16 = 3,
}

impl DType {
    pub const fn from_code(code: u32) -> Option<DType> {
        match code {
            1 => Some(DType::F32),
            2 => Some(DType::F16),
            3 => Some(DType::BF16),
            _ => None,
        }
    }
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// f32, f16 or bf16 (sealed).
pub trait Element: sealed::Sealed + Copy + Default + Send + Sync + 'static {
    const DTYPE: DType;
    /// The scoring kernel of this element type in a table.
    #[doc(hidden)]
    fn score_fn(k: &crate::Kernels) -> tokenroute_kernels::score::ScoreFn<Self>;
    /// The scatter-add kernel of this element type in a table.
    #[doc(hidden)]
    fn scatter_add_fn(k: &crate::Kernels) -> tokenroute_kernels::compact::ScatterAddFn<Self>;
    /// The row-softmax kernel of this input type in a table.
    #[doc(hidden)]
    fn softmax_fn(k: &crate::Kernels) -> tokenroute_kernels::softmax::SoftmaxFn<Self>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn score_fn(k: &crate::Kernels) -> tokenroute_kernels::score::ScoreFn<f32> {
        k.score_f32
    }
    fn scatter_add_fn(k: &crate::Kernels) -> tokenroute_kernels::compact::ScatterAddFn<f32> {
        k.scatter_add_f32
    }
    fn softmax_fn(k: &crate::Kernels) -> tokenroute_kernels::softmax::SoftmaxFn<f32> {
        k.softmax_f32
    }
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
    fn score_fn(k: &crate::Kernels) -> tokenroute_kernels::score::ScoreFn<f16> {
        k.score_f16
    }
    fn scatter_add_fn(k: &crate::Kernels) -> tokenroute_kernels::compact::ScatterAddFn<f16> {
        k.scatter_add_f16
    }
    fn softmax_fn(k: &crate::Kernels) -> tokenroute_kernels::softmax::SoftmaxFn<f16> {
        k.softmax_f16
    }
}
impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    fn score_fn(k: &crate::Kernels) -> tokenroute_kernels::score::ScoreFn<bf16> {
        k.score_bf16
    }
    fn scatter_add_fn(k: &crate::Kernels) -> tokenroute_kernels::compact::ScatterAddFn<bf16> {
        k.scatter_add_bf16
    }
    fn softmax_fn(k: &crate::Kernels) -> tokenroute_kernels::softmax::SoftmaxFn<bf16> {
        k.softmax_bf16
    }
}

/// Elements spanned by `rows` rows of `cols` elements at `stride`:
/// `(rows - 1) * stride + cols`, or 0 when `rows == 0`. Checks `stride >= cols`
/// (`BAD_STRIDE`) and overflow (`SIZE_OVERFLOW`).
pub(crate) fn span(rows: usize, cols: usize, stride: usize) -> Result<usize> {
    ensure!(stride >= cols, BadStride, "row stride smaller than the row");
    if rows == 0 {
        return Ok(0);
    }
    (rows - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(cols))
        .ok_or(crate::Error::new(
            crate::ErrorKind::SizeOverflow,
            "rows * stride overflows",
        ))
}

/// A read-only row-major matrix view: `rows` rows of `cols` elements, `stride`
/// elements apart.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) stride: usize,
}

impl<'a, T> Matrix<'a, T> {
    /// Checks `stride >= cols` and that `data` holds every row.
    pub fn new(data: &'a [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        let need = span(rows, cols, stride)?;
        ensure!(
            data.len() >= need,
            BufferTooSmall,
            "matrix data shorter than rows * stride"
        );
        Ok(Matrix {
            data,
            rows,
            cols,
            stride,
        })
    }
    /// A dense matrix (`stride == cols`).
    pub fn dense(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols)
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
    pub fn as_ptr(&self) -> *const T {
        self.data.as_ptr()
    }
}

/// A mutable row-major matrix view; only the `cols` elements of each row are written.
#[derive(Debug)]
pub struct MatrixMut<'a, T> {
    pub(crate) data: &'a mut [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) stride: usize,
}

impl<'a, T> MatrixMut<'a, T> {
    /// Checks `stride >= cols` and that `data` holds every row.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, stride: usize) -> Result<Self> {
        let need = span(rows, cols, stride)?;
        ensure!(
            data.len() >= need,
            BufferTooSmall,
            "matrix data shorter than rows * stride"
        );
        Ok(MatrixMut {
            data,
            rows,
            cols,
            stride,
        })
    }
    /// A dense matrix (`stride == cols`).
    pub fn dense(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self> {
        Self::new(data, rows, cols, cols)
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn stride(&self) -> usize {
        self.stride
    }
}
