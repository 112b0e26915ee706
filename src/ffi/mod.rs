//! The C ABI: every `#[no_mangle] extern "C"` function of the library, and nothing
//! else. Each one validates every argument (turning pointers into checked slices),
//! calls the safe API inside a panic guard, and returns a `tkr_status`. On error
//! nothing has been written.
#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

pub mod attend;
pub mod compact;
pub mod isa;
pub mod memory;
pub mod parallel;
pub mod route;
pub mod score;
pub mod select;
pub mod softmax;
pub mod status;
#[cfg(feature = "test-hooks")]
pub mod testing;
pub mod version;

pub(crate) use crate::error::ArgName;
use crate::error::{Error, ErrorKind, Result};
pub use status::*;

/// Runs `f` and maps its outcome to a status; a panic becomes `TKR_STATUS_PANIC`. An
/// error is recorded as the thread's last error message (`tkr_last_error_message`).
#[inline]
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> tkr_status {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => TKR_STATUS_OK,
        Ok(Err(e)) => {
            status::set_last_error_from(&e);
            e.kind.code()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            status::set_last_error(format_args!(
                "panic caught (a bug: please report it): {what}"
            ));
            TKR_STATUS_PANIC
        }
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
    if !(ptr as usize).is_multiple_of(core::mem::align_of::<T>()) {
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

/// Option structs of the C ABI. Each begins with `size_t struct_size` (the caller's
/// `sizeof`), and every later field means "default" when zero, so that:
/// - NULL means all defaults;
/// - an older caller's smaller struct is read as far as it goes, the rest defaulted;
/// - a newer caller's larger struct is accepted when its unknown tail is all zero,
///   and rejected with `UNSUPPORTED` otherwise;
/// - `struct_size` smaller than its own field is `INVALID_ARGUMENT`.
///
/// # Safety
/// Implementors are `#[repr(C)]`, start with a `struct_size: usize` field, and are valid
/// (and mean "defaults") when all their bytes are zero.
pub(crate) unsafe trait OptionsStruct: Copy {}

/// Reads a caller's options struct by the [`OptionsStruct`] rules; the returned copy
/// has `struct_size == size_of::<T>()`.
///
/// # Safety
/// `p` is NULL or points to at least `*(p as *const size_t)` readable bytes.
pub(crate) unsafe fn read_options<T: OptionsStruct>(p: *const T) -> Result<T> {
    let ours = core::mem::size_of::<T>();
    // SAFETY: all-zero is a valid T (OptionsStruct contract).
    let mut out: T = unsafe { core::mem::zeroed() };
    if !p.is_null() {
        if !(p as usize).is_multiple_of(core::mem::align_of::<usize>()) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "options pointer not aligned",
            ));
        }
        // SAFETY: the caller's struct starts with a size_t.
        let theirs = unsafe { *(p as *const usize) };
        if theirs < core::mem::size_of::<usize>() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "options struct_size too small",
            ));
        }
        let bytes = p as *const u8;
        if theirs > ours {
            // SAFETY: the caller promises `theirs` readable bytes.
            let tail = unsafe { core::slice::from_raw_parts(bytes.add(ours), theirs - ours) };
            if tail.iter().any(|&b| b != 0) {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "options set fields this library does not know",
                ));
            }
        }
        // SAFETY: min(theirs, ours) bytes are readable at p and writable in `out`.
        unsafe {
            core::ptr::copy_nonoverlapping(bytes, &mut out as *mut T as *mut u8, theirs.min(ours));
        }
    }
    // SAFETY: `struct_size` is the first field (OptionsStruct contract).
    unsafe { *(&mut out as *mut T as *mut usize) = ours };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Opts {
        struct_size: usize,
        a: u32,
        b: u32,
    }
    unsafe impl OptionsStruct for Opts {}

    #[test]
    fn options_struct_rules() {
        let full = core::mem::size_of::<Opts>();
        let d = unsafe { read_options::<Opts>(core::ptr::null()) }.unwrap();
        assert_eq!(
            d,
            Opts {
                struct_size: full,
                a: 0,
                b: 0
            }
        );
        // An older caller that only knew `a`.
        let old = Opts {
            struct_size: 12,
            a: 7,
            b: 99,
        };
        assert_eq!(
            unsafe { read_options(&old) }.unwrap(),
            Opts {
                struct_size: full,
                a: 7,
                b: 0
            }
        );
        // A newer caller with a zero tail, then a non-zero tail.
        #[repr(C)]
        struct Newer {
            o: Opts,
            c: u64,
        }
        let mut n = Newer {
            o: Opts {
                struct_size: core::mem::size_of::<Newer>(),
                a: 1,
                b: 2,
            },
            c: 0,
        };
        assert_eq!(
            unsafe { read_options(&n.o) }.unwrap(),
            Opts {
                struct_size: full,
                a: 1,
                b: 2
            }
        );
        n.c = 5;
        assert_eq!(
            unsafe { read_options(&n.o) }.unwrap_err().kind,
            ErrorKind::Unsupported
        );
        let bad = Opts {
            struct_size: 3,
            a: 0,
            b: 0,
        };
        assert_eq!(
            unsafe { read_options(&bad) }.unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn slices_from_c() {
        assert_eq!(
            unsafe { slice::<f32>(core::ptr::null(), 0) }.unwrap().len(),
            0
        );
        assert_eq!(
            unsafe { slice::<f32>(core::ptr::null(), 3) }
                .unwrap_err()
                .kind,
            ErrorKind::NullPointer
        );
        let v = [0u32; 4];
        let mis = (v.as_ptr() as *const u8).wrapping_add(1) as *const u32;
        assert_eq!(
            unsafe { slice::<u32>(mis, 2) }.unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            unsafe { slice::<u32>(v.as_ptr(), usize::MAX / 2) }
                .unwrap_err()
                .kind,
            ErrorKind::SizeOverflow
        );
        assert!(disjoint((0, 8), (8, 16)).is_ok());
        assert_eq!(
            disjoint((0, 9), (8, 16)).unwrap_err().kind,
            ErrorKind::Overlap
        );
        assert!(disjoint((0, 0), (0, 16)).is_ok());
    }
}
