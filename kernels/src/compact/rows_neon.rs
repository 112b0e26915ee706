//! NEON row moves: exact or overlapping small moves below 16 bytes (shared with every
//! tier), one or two overlapping 16/32/64-byte moves up to 128 bytes, then a 128-byte
//! loop with an overlapping last 64 bytes.

use super::{rows, small_rows, CopyRowsArgs, RowCopy};
use core::arch::aarch64::*;

/// One unaligned move of `K` bytes (16, 32 or 64).
#[inline(always)]
unsafe fn move_vec<const K: usize>(d: *mut u8, s: *const u8) {
    // SAFETY: the caller gives K readable bytes at s and K writable bytes at d.
    unsafe {
        match K {
            16 => vst1q_u8(d, vld1q_u8(s)),
            32 => vst1q_u8_x2(d, vld1q_u8_x2(s)),
            64 => vst1q_u8_x4(d, vld1q_u8_x4(s)),
            _ => unreachable!(),
        }
    }
}

/// Rows of exactly `K` bytes, `K` in {16, 32, 64}.
struct Vector<const K: usize>;
impl<const K: usize> RowCopy for Vector<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, _rb: usize) {
        // SAFETY: the row is K bytes.
        unsafe { move_vec::<K>(d, s) }
    }
}

/// Rows of `K < rb < 2K` bytes: the first and the last `K` bytes (overlapping).
struct VectorPair<const K: usize>;
impl<const K: usize> RowCopy for VectorPair<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: K <= rb; the rows are disjoint, so the order of the moves is free.
        unsafe {
            move_vec::<K>(d, s);
            move_vec::<K>(d.add(rb - K), s.add(rb - K));
        }
    }
}

/// Rows of 128 bytes or more: 128 bytes per step, then 64, then the last 64 bytes again
/// (overlapping).
struct Long;
impl RowCopy for Long {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 128; every access lies in [0, rb).
        unsafe {
            let mut i = 0;
            while i + 128 <= rb {
                let v0 = vld1q_u8_x4(s.add(i));
                let v1 = vld1q_u8_x4(s.add(i + 64));
                vst1q_u8_x4(d.add(i), v0);
                vst1q_u8_x4(d.add(i + 64), v1);
                i += 128;
            }
            if i + 64 <= rb {
                move_vec::<64>(d.add(i), s.add(i));
                i += 64;
            }
            if i < rb {
                move_vec::<64>(d.add(rb - 64), s.add(rb - 64));
            }
        }
    }
}

/// The neon tier's row copy; expanded inside its entry point.
///
/// # Safety
/// See the module contract; the CPU supports NEON.
#[inline(always)]
pub(super) unsafe fn copy_rows(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller; each strategy gets rows of its size class.
    unsafe {
        if small_rows(a) {
            return;
        }
        match a.row_bytes {
            16 => rows::<Vector<16>>(a),
            17..=31 => rows::<VectorPair<16>>(a),
            32 => rows::<Vector<32>>(a),
            33..=63 => rows::<VectorPair<32>>(a),
            64 => rows::<Vector<64>>(a),
            65..=127 => rows::<VectorPair<64>>(a),
            _ => rows::<Long>(a),
        }
    }
}
