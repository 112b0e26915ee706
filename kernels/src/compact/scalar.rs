//! Portable row moves and scatter-add: exact small moves for rows under 16 bytes, one or
//! two (overlapping) moves of 16 or 32 bytes up to 64 bytes, `memcpy` per row above
//! (a call per tiny row would cost more than the move); the scatter-add one element at
//! a time.

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

/// Rows of `8W <= rb <= 16W` bytes, `W` in {2, 4}: the first and the last `W` 8-byte
/// words (overlapping when `rb < 16W`), all loaded before any is stored.
struct Words<const W: usize>;
impl<const W: usize> RowCopy for Words<W> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: 8W <= rb, so both 8W-byte windows lie inside the row.
        unsafe {
            let a = (s as *const [u64; W]).read_unaligned();
            let b = (s.add(rb - 8 * W) as *const [u64; W]).read_unaligned();
            (d as *mut [u64; W]).write_unaligned(a);
            (d.add(rb - 8 * W) as *mut [u64; W]).write_unaligned(b);
        }
    }
}

/// # Safety
/// See the module contract.
pub unsafe fn bytes_rows_memcpy(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller.
    unsafe {
        if small_rows(a) {
            return;
        }
        match a.row_bytes {
            16..=32 => rows::<Words<2>>(a),
            33..=64 => rows::<Words<4>>(a),
            _ => rows::<Memcpy>(a),
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
