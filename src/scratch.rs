//! The library's own scratch memory, for every family (and every thread that runs its
//! work, pool workers included): one mechanism, so that what a thread keeps between
//! calls is bounded the same way everywhere.
//!
//! - Each thread holds one buffer per [`Kind`], reused from call to call, so calls whose
//!   scratch fits never allocate.
//! - After a call, a thread keeps at most [`THREAD_CAP`] bytes per kind: a call that
//!   needs more takes the process-wide spare buffer (one, at most [`SPARE_CAP`] bytes,
//!   reused by the next large call on any thread) or allocates, and hands the memory
//!   back when it returns (to the spare when it fits under its cap, else freed).
//! - [`release_thread_buffers`] frees the calling thread's buffers and the spare.
//! - Re-entered (a kind already in use on this thread) or during thread teardown, a call
//!   uses a temporary buffer.
//!
//! Callers that want no allocation at all for large calls pass their own workspace.

use crate::error::{Error, ErrorKind, Result};
use core::cell::RefCell;
use std::alloc::{alloc_zeroed, Layout};
use std::sync::Mutex;

/// Most bytes a thread keeps per buffer kind after a call: 1 MiB.
pub const THREAD_CAP: usize = crate::ffi::memory::TKR_THREAD_SCRATCH_CAP;
/// Most bytes of the process-wide spare buffer for larger calls: 64 MiB.
pub const SPARE_CAP: usize = crate::ffi::memory::TKR_SPARE_SCRATCH_CAP;

/// A 64-byte aligned unit of scratch.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct Line([u8; 64]);

/// The kinds of per-thread scratch: each has its own buffer, so that nested use of two
/// kinds within one call never falls back to a temporary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Top-k workspaces (selection, route, Quest block selection).
    Select = 0,
    /// Duplicate checks of unsorted index lists (compaction).
    Compact = 1,
    /// Attention's packed rows and accumulators.
    Attend = 2,
    /// Call-level partials of calls split into units ([`crate::parallel`]).
    Call = 3,
    /// Implicit positions of batched attention sequences.
    Positions = 4,
}

const KINDS: usize = 5;

thread_local! {
    static BUFFERS: [RefCell<Vec<Line>>; KINDS] = const {
        [
            RefCell::new(Vec::new()),
            RefCell::new(Vec::new()),
            RefCell::new(Vec::new()),
            RefCell::new(Vec::new()),
            RefCell::new(Vec::new()),
        ]
    };
}

static SPARE: Mutex<Vec<Line>> = Mutex::new(Vec::new());

/// `v` with room for at least `lines >= 1` lines (contents unspecified).
fn grow(v: &mut Vec<Line>, lines: usize) -> Result<()> {
    if v.len() < lines {
        // Free the old buffer first: never both at once.
        *v = Vec::new();
        let failed = || Error::new(ErrorKind::SizeOverflow, "scratch allocation failed");
        let layout = Layout::array::<Line>(lines).map_err(|_| failed())?;
        // Zeroed memory from the allocator (fresh pages for large sizes: no pass over
        // them here), so the lines are initialised without a fill.
        // SAFETY: the layout has a nonzero size (lines >= 1).
        let p = unsafe { alloc_zeroed(layout) } as *mut Line;
        if p.is_null() {
            return Err(failed());
        }
        // SAFETY: allocated by the global allocator with the layout of `lines` Lines
        // (what the Vec frees with), all zero bytes: valid Lines.
        *v = unsafe { Vec::from_raw_parts(p, lines, lines) };
    }
    Ok(())
}

/// A buffer of at least `lines` lines for a large call: the spare when it is large
/// enough (or can grow within its cap), else a new allocation.
fn take_large(lines: usize) -> Result<Vec<Line>> {
    let mut v = match SPARE.lock() {
        Ok(mut s) if lines * 64 <= SPARE_CAP => core::mem::take(&mut *s),
        _ => Vec::new(),
    };
    grow(&mut v, lines)?;
    Ok(v)
}

/// Gives a large call's buffer back: to the spare when it fits and beats the spare's
/// current size, else it is freed.
fn give_back(v: Vec<Line>) {
    if v.len() * 64 <= SPARE_CAP {
        if let Ok(mut s) = SPARE.lock() {
            if s.len() < v.len() {
                *s = v;
            }
        }
    }
}

/// Runs `f` on at least `bytes` bytes (a whole number of 64-byte lines, contents
/// unspecified) of the calling thread's scratch of `kind`; see the module rules.
pub(crate) fn with_scratch<R>(
    kind: Kind,
    bytes: usize,
    f: impl FnOnce(&mut [Line]) -> R,
) -> Result<R> {
    let lines = bytes.div_ceil(64).max(1);
    if lines
        .checked_mul(64)
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(Error::new(
            ErrorKind::SizeOverflow,
            "scratch size overflows",
        ));
    }
    if lines * 64 > THREAD_CAP {
        let mut v = take_large(lines)?;
        let r = f(&mut v[..lines]);
        give_back(v);
        return Ok(r);
    }
    let mut f = Some(f);
    let mut out = None;
    let _ = BUFFERS.try_with(|b| -> Result<()> {
        if let Ok(mut v) = b[kind as usize].try_borrow_mut() {
            grow(&mut v, lines)?;
            out = Some((f.take().expect("called once"))(&mut v[..lines]));
        }
        Ok(())
    });
    match out {
        Some(r) => Ok(r),
        None => {
            let mut v = Vec::new();
            grow(&mut v, lines)?;
            Ok((f.take().expect("not called yet"))(&mut v[..lines]))
        }
    }
}

/// [`with_scratch`] viewed as `len` values of a plain-data type `T` (alignment at most
/// 64; every bit pattern valid).
pub(crate) fn with_scratch_of<T: Plain, R>(
    kind: Kind,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> Result<R> {
    let bytes = len
        .checked_mul(core::mem::size_of::<T>())
        .ok_or(Error::new(
            ErrorKind::SizeOverflow,
            "scratch size overflows",
        ))?;
    with_scratch(kind, bytes, |lines| {
        // SAFETY: the lines hold at least len * size_of::<T>() bytes, 64-byte aligned
        // (>= align_of::<T>()), and every bit pattern is a valid T.
        let s = unsafe { core::slice::from_raw_parts_mut(lines.as_mut_ptr() as *mut T, len) };
        f(s)
    })
}

/// Plain-data element types of scratch.
///
/// # Safety
/// Every bit pattern is a valid value, and the alignment is at most 64.
pub(crate) unsafe trait Plain: Copy {}
// SAFETY (all four): integers and floats, every bit pattern valid, alignment <= 8.
unsafe impl Plain for u8 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for u64 {}
unsafe impl Plain for f32 {}

/// Frees the calling thread's scratch buffers and the process-wide spare. The next call
/// that needs scratch allocates again.
pub fn release_thread_buffers() {
    let _ = BUFFERS.try_with(|b| {
        for cell in b {
            if let Ok(mut v) = cell.try_borrow_mut() {
                *v = Vec::new();
            }
        }
    });
    if let Ok(mut s) = SPARE.lock() {
        *s = Vec::new();
    }
}
