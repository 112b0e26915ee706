//! Portable row moves and scatter-add: exact small moves for rows under 16 bytes,
//! `memcpy` per row otherwise; the scatter-add one element at a time.

use super::{add_tail, rows, small_rows, AddElem, CopyRowsArgs, RowCopy, ScatterAddArgs};
use half::{bf16, f16};

/// Any row size: the platform's `memcpy`.
struct Memcpy;
impl RowCopy for Memcpy {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: the rows are valid and disjoint (RowCopy contract).
        unsafe { core::ptr::copy_nonoverlapping(s, d, rb) }
    }
}

/// # Safety
/// See the module contract.
pub unsafe fn bytes_rows_memcpy(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller.
    unsafe {
        if !small_rows(a) {
            rows::<Memcpy>(a);
        }
    }
}

#[inline(always)]
unsafe fn scatter_add<T: AddElem>(a: &ScatterAddArgs<T>) {
    for j in 0..a.n {
        // SAFETY: the contract makes idx[j], row idx[j] of h, row j of y and g[j] valid.
        unsafe {
            let i = *a.idx.add(j) as usize;
            let g = if a.g.is_null() {
                None
            } else {
                Some(*a.g.add(j))
            };
            add_tail(a.h.add(i * a.h_stride), a.y.add(j * a.y_stride), g, 0, a.d);
        }
    }
}

/// # Safety
/// See the module contract.
pub unsafe fn f32_scatter_add_u1(a: &ScatterAddArgs<f32>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// See the module contract.
pub unsafe fn f16_scatter_add_u1(a: &ScatterAddArgs<f16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// See the module contract.
pub unsafe fn bf16_scatter_add_u1(a: &ScatterAddArgs<bf16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
