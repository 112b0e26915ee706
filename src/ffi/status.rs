//! Status codes. Values are part of the ABI and are never renumbered; a retired value
//! stays reserved here.

use crate::error::ErrorKind;
use core::ffi::c_char;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

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
