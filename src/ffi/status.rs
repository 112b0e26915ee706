//! Status codes. Values are part of the ABI and are never renumbered; a retired value
//! stays reserved here.

use crate::error::{Error, ErrorKind};
use core::cell::RefCell;
use core::ffi::c_char;
use core::fmt::Write;

/// The result of every fallible call: `TKR_STATUS_OK` (0) or an error code.
/// A fixed-width integer, not a C enum, so its size never depends on the compiler.
pub type tkr_status = u32;

/// Success.
pub const TKR_STATUS_OK: tkr_status = 0;
/// A null pointer was passed with a non-zero size. (NULL with size 0 is a valid empty
/// buffer.)
pub const TKR_STATUS_NULL_POINTER: tkr_status = 1;
/// An argument outside its domain: unknown enum code, mismatched shapes, misaligned
/// pointer, k > n, ...
pub const TKR_STATUS_INVALID_ARGUMENT: tkr_status = 2;
/// An index outside the range it must address.
pub const TKR_STATUS_OUT_OF_RANGE: tkr_status = 3;
/// A buffer or workspace smaller than the operation needs.
pub const TKR_STATUS_BUFFER_TOO_SMALL: tkr_status = 4;
/// The requested ISA level (or the one forced by TOKENROUTE_ISA) is not available on
/// this CPU.
pub const TKR_STATUS_ISA_UNAVAILABLE: tkr_status = 5;
/// A valid request this build does not support (e.g. unknown option fields set).
pub const TKR_STATUS_UNSUPPORTED: tkr_status = 6;
/// The library caught a panic (a bug: please report it). Nothing was written.
pub const TKR_STATUS_PANIC: tkr_status = 7;
/// A size computation (rows * stride, bytes) overflowed.
pub const TKR_STATUS_SIZE_OVERFLOW: tkr_status = 8;
/// A row stride smaller than the row length.
pub const TKR_STATUS_BAD_STRIDE: tkr_status = 9;
/// Buffers that must be disjoint (or identical, for in-place calls) overlap.
pub const TKR_STATUS_OVERLAP: tkr_status = 10;
/// An index list holds a duplicate where duplicates are forbidden.
pub const TKR_STATUS_DUPLICATE_INDEX: tkr_status = 11;
/// An index list is not ascending where ascending order is required.
pub const TKR_STATUS_UNSORTED_INDEX: tkr_status = 12;
/// The engine's parallel-for callback (tkr_set_parallel_for,
/// tkr_set_thread_parallel_for) returned non-zero, skipped a task, ran one twice or
/// passed an index >= n_tasks. The library then ran every task that had not run on the
/// calling thread: **the outputs are complete and identical to a successful call's**
/// (the one status after which outputs have been written). Also returned by
/// tkr_set_num_threads when the system refused to start a thread.
pub const TKR_STATUS_PARALLEL_FAILED: tkr_status = 13;

/// The name of a status code, e.g. "TKR_STATUS_OUT_OF_RANGE".
///
/// Never returns NULL: unknown codes give "TKR_STATUS_UNKNOWN". The string is static
/// (never free it). Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_status_string(status: u32) -> *const c_char {
    use super::cstr;
    if status == TKR_STATUS_OK {
        return cstr!("TKR_STATUS_OK");
    }
    match ErrorKind::ALL.into_iter().find(|k| k.code() == status) {
        Some(ErrorKind::NullPointer) => cstr!("TKR_STATUS_NULL_POINTER"),
        Some(ErrorKind::InvalidArgument) => cstr!("TKR_STATUS_INVALID_ARGUMENT"),
        Some(ErrorKind::OutOfRange) => cstr!("TKR_STATUS_OUT_OF_RANGE"),
        Some(ErrorKind::BufferTooSmall) => cstr!("TKR_STATUS_BUFFER_TOO_SMALL"),
        Some(ErrorKind::IsaUnavailable) => cstr!("TKR_STATUS_ISA_UNAVAILABLE"),
        Some(ErrorKind::Unsupported) => cstr!("TKR_STATUS_UNSUPPORTED"),
        Some(ErrorKind::Panic) => cstr!("TKR_STATUS_PANIC"),
        Some(ErrorKind::SizeOverflow) => cstr!("TKR_STATUS_SIZE_OVERFLOW"),
        Some(ErrorKind::BadStride) => cstr!("TKR_STATUS_BAD_STRIDE"),
        Some(ErrorKind::Overlap) => cstr!("TKR_STATUS_OVERLAP"),
        Some(ErrorKind::DuplicateIndex) => cstr!("TKR_STATUS_DUPLICATE_INDEX"),
        Some(ErrorKind::UnsortedIndex) => cstr!("TKR_STATUS_UNSORTED_INDEX"),
        Some(ErrorKind::ParallelFailed) => cstr!("TKR_STATUS_PARALLEL_FAILED"),
        None => cstr!("TKR_STATUS_UNKNOWN"),
    }
}

/// Room for the last error message of a thread, NUL included (longer ones are cut).
const MESSAGE_CAP: usize = 256;

thread_local! {
    /// The calling thread's last error message (a NUL-terminated string).
    static LAST_ERROR: RefCell<[u8; MESSAGE_CAP]> = const { RefCell::new([0; MESSAGE_CAP]) };
}

/// Writes into a fixed buffer, keeping room for the NUL and cutting what does not fit.
struct Cut<'a> {
    buf: &'a mut [u8; MESSAGE_CAP],
    len: usize,
}

impl Write for Cut<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = MESSAGE_CAP - 1 - self.len;
        let mut n = s.len().min(room);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Records the calling thread's last error message: `"<argument>: <rule>"`, or the
/// rule alone when it names its arguments. No allocation.
pub(crate) fn set_last_error(args: core::fmt::Arguments<'_>) {
    LAST_ERROR.with(|cell| {
        let mut buf = cell.borrow_mut();
        let mut w = Cut {
            buf: &mut buf,
            len: 0,
        };
        let _ = w.write_fmt(args);
        let len = w.len;
        buf[len] = 0;
    });
}

/// Records `e` as the calling thread's last error.
pub(crate) fn set_last_error_from(e: &Error) {
    if e.arg.is_empty() {
        set_last_error(format_args!("{}", e.what));
    } else {
        set_last_error(format_args!("{}: {}", e.arg, e.what));
    }
}

/// What the most recent failing call on the calling thread rejected: the argument, as
/// this header names it, and the rule it broke, e.g. "h_row_stride: row stride smaller
/// than the row" or "n_heads_kv = 0". "" before any failure. A successful call leaves
/// it unchanged, so read it right after the failing call (check the status first).
///
/// Never NULL. The string belongs to the calling thread: valid until that thread
/// exits, its contents replaced by the thread's next failing call. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_last_error_message() -> *const c_char {
    LAST_ERROR.with(|cell| cell.as_ptr() as *const c_char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        unsafe { CStr::from_ptr(tkr_last_error_message()) }
            .to_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn last_error_message_is_per_thread_and_cut_to_fit() {
        let e = Error::new(ErrorKind::BadStride, "row stride smaller than the row")
            .with_arg("h_row_stride");
        set_last_error_from(&e);
        assert_eq!(last(), "h_row_stride: row stride smaller than the row");
        // Another thread has its own (empty) message.
        assert_eq!(std::thread::spawn(last).join().unwrap(), "");
        // An inner name wins over an outer one.
        assert_eq!(e.with_arg("outer").arg, "h_row_stride");
        // Too long: cut at a character boundary, NUL-terminated.
        let long = "é".repeat(400);
        set_last_error(format_args!("{long}"));
        let got = last();
        assert!(got.len() <= MESSAGE_CAP - 1 && got.len() >= MESSAGE_CAP - 2);
        assert!(long.starts_with(&got));
    }

    #[test]
    fn codes_and_names_agree_with_error_kinds() {
        let consts = [
            (TKR_STATUS_NULL_POINTER, ErrorKind::NullPointer),
            (TKR_STATUS_INVALID_ARGUMENT, ErrorKind::InvalidArgument),
            (TKR_STATUS_OUT_OF_RANGE, ErrorKind::OutOfRange),
            (TKR_STATUS_BUFFER_TOO_SMALL, ErrorKind::BufferTooSmall),
            (TKR_STATUS_ISA_UNAVAILABLE, ErrorKind::IsaUnavailable),
            (TKR_STATUS_UNSUPPORTED, ErrorKind::Unsupported),
            (TKR_STATUS_PANIC, ErrorKind::Panic),
            (TKR_STATUS_SIZE_OVERFLOW, ErrorKind::SizeOverflow),
            (TKR_STATUS_BAD_STRIDE, ErrorKind::BadStride),
            (TKR_STATUS_OVERLAP, ErrorKind::Overlap),
            (TKR_STATUS_DUPLICATE_INDEX, ErrorKind::DuplicateIndex),
            (TKR_STATUS_UNSORTED_INDEX, ErrorKind::UnsortedIndex),
            (TKR_STATUS_PARALLEL_FAILED, ErrorKind::ParallelFailed),
        ];
        assert_eq!(consts.len(), ErrorKind::ALL.len());
        for (code, kind) in consts {
            assert_eq!(code, kind.code());
            let name = unsafe { CStr::from_ptr(tkr_status_string(code)) }
                .to_str()
                .unwrap();
            assert_eq!(name, format!("TKR_STATUS_{}", kind.name()));
        }
        let ok = unsafe { CStr::from_ptr(tkr_status_string(0)) };
        assert_eq!(ok.to_str().unwrap(), "TKR_STATUS_OK");
        let unknown = unsafe { CStr::from_ptr(tkr_status_string(999)) };
        assert_eq!(unknown.to_str().unwrap(), "TKR_STATUS_UNKNOWN");
    }
}
