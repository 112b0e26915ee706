//! Portable row moves: exact small moves for rows under 16 bytes, one or two
//! (overlapping) moves of 16 or 32 bytes up to 64 bytes, `memcpy` per row above (a call
//! per tiny row would cost more than the move).

use super::{rows, small_rows, CopyRowsArgs, RowCopy};

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

/// The scalar tier's row copy.
///
/// # Safety
/// See the module contract.
#[inline(always)]
pub(super) unsafe fn copy_rows(a: &CopyRowsArgs) {
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
