//! The C ABI: every `#[no_mangle] extern "C"` function of the library, and nothing
//! else. Each one validates every argument (turning pointers into checked slices),
//! calls the safe API inside a panic guard, and returns a `tkr_status`. On error
//! nothing has been written.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod isa;
pub mod score;
pub mod status;
pub mod version;

use crate::error::{Error, ErrorKind, Result};
pub use status::*;

/// Runs `f` and maps its outcome to a status; a panic becomes `TKR_STATUS_PANIC`.
#[inline]
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> tkr_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => TKR_STATUS_OK,
        Ok(Err(e)) => e.kind.code(),
        Err(_) => TKR_STATUS_PANIC,
    }
}

/// `(ptr, len)` from C as a slice: `(anything, 0)` is empty; otherwise the pointer must
/// be non-null and aligned for `T`, and `len` elements must fit in `isize::MAX` bytes.
///
/// # Safety
/// When `len > 0` and the checks pass, `ptr` must be valid for reads of `len` elements
/// for `'a` (the caller's promise through the C API).
pub(crate) unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_ptr(ptr, len)?;
    // SAFETY: non-null, aligned, size fits; validity is the caller's promise.
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// Mutable form of [`slice`].
///
/// # Safety
/// As [`slice`], for writes, and no other live reference may cover the range.
pub(crate) unsafe fn slice_mut<'a, T>(ptr: *mut T, len: usize) -> Result<&'a mut [T]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_ptr(ptr, len)?;
    // SAFETY: as in `slice`.
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}

fn check_ptr<T>(ptr: *const T, len: usize) -> Result<()> {
    if ptr.is_null() {
        return Err(Error::new(
            ErrorKind::NullPointer,
            "null pointer with a non-zero size",
        ));
    }
    if (ptr as usize) % core::mem::align_of::<T>() != 0 {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "pointer not aligned for its element type",
        ));
    }
    match len.checked_mul(core::mem::size_of::<T>()) {
        Some(bytes)
            if bytes <= isize::MAX as usize && (ptr as usize).checked_add(bytes).is_some() =>
        {
            Ok(())
        }
        _ => Err(Error::new(
            ErrorKind::SizeOverflow,
            "buffer size overflows the address space",
        )),
    }
}

/// Byte range `[start, end)` of `len` elements at `ptr`, after the checks of [`slice`]
/// (empty for `len == 0`).
pub(crate) fn range<T>(ptr: *const T, len: usize) -> Result<(usize, usize)> {
    if len == 0 {
        return Ok((0, 0));
    }
    check_ptr(ptr, len)?;
    Ok((ptr as usize, ptr as usize + len * core::mem::size_of::<T>()))
}

/// Byte range `[start, end)` of a slice, for overlap checks.
pub(crate) fn byte_range<T>(s: &[T]) -> (usize, usize) {
    let start = s.as_ptr() as usize;
    (start, start + core::mem::size_of_val(s))
}

/// Fails with `OVERLAP` when the two (non-empty) byte ranges intersect.
pub(crate) fn disjoint(a: (usize, usize), b: (usize, usize)) -> Result<()> {
    if a.0 < a.1 && b.0 < b.1 && a.0 < b.1 && b.0 < a.1 {
        return Err(Error::new(
            ErrorKind::Overlap,
            "an output overlaps another buffer",
        ));
    }
    Ok(())
}

/// A static NUL-terminated string as a C pointer.
macro_rules! cstr {
    ($s:expr) => {
        concat!($s, "\0").as_ptr() as *const core::ffi::c_char
    };
}
pub(crate) use cstr;
