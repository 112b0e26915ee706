//! The error type of the safe API; each kind is one C status code.

use core::fmt;

/// What went wrong. The discriminant is the C status code (`TKR_STATUS_*`), which is
/// never renumbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A null pointer where data was required (the C ABI only).
    NullPointer = 1,
    /// An argument outside its domain: unknown enum code, mismatched shapes, k > n, ...
    InvalidArgument = 2,
    /// An index outside the range it must address.
    OutOfRange = 3,
    /// A buffer or workspace smaller than the operation needs.
    BufferTooSmall = 4,
    /// The requested (or forced) ISA level is not available on this CPU.
    IsaUnavailable = 5,
    /// A valid request this build does not support (e.g. unknown option fields set).
    Unsupported = 6,
    /// A panic was caught at the C boundary (a bug: please report it).
    Panic = 7,
    /// A size computation overflowed.
    SizeOverflow = 8,
    /// A row stride smaller than the row.
    BadStride = 9,
    /// Buffers that must be disjoint (or identical) overlap.
    Overlap = 10,
    /// An index list holds a duplicate where duplicates are forbidden.
    DuplicateIndex = 11,
    /// An index list is not ascending where ascending order is required.
    UnsortedIndex = 12,
    /// The engine's parallel-for callback reported failure or broke its contract (the
    /// call then completed its outputs on the calling thread), or the system refused
    /// to start a pool thread.
    ParallelFailed = 13,
}

impl ErrorKind {
    /// The C status code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The status name as it appears in the C header, without the `TKR_STATUS_` prefix.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::NullPointer => "NULL_POINTER",
            ErrorKind::InvalidArgument => "INVALID_ARGUMENT",
            ErrorKind::OutOfRange => "OUT_OF_RANGE",
            ErrorKind::BufferTooSmall => "BUFFER_TOO_SMALL",
            ErrorKind::IsaUnavailable => "ISA_UNAVAILABLE",
            ErrorKind::Unsupported => "UNSUPPORTED",
            ErrorKind::Panic => "PANIC",
            ErrorKind::SizeOverflow => "SIZE_OVERFLOW",
            ErrorKind::BadStride => "BAD_STRIDE",
            ErrorKind::Overlap => "OVERLAP",
            ErrorKind::DuplicateIndex => "DUPLICATE_INDEX",
            ErrorKind::UnsortedIndex => "UNSORTED_INDEX",
            ErrorKind::ParallelFailed => "PARALLEL_FAILED",
        }
    }

    /// Every kind, in code order.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::NullPointer,
        ErrorKind::InvalidArgument,
        ErrorKind::OutOfRange,
        ErrorKind::BufferTooSmall,
        ErrorKind::IsaUnavailable,
        ErrorKind::Unsupported,
        ErrorKind::Panic,
        ErrorKind::SizeOverflow,
        ErrorKind::BadStride,
        ErrorKind::Overlap,
        ErrorKind::DuplicateIndex,
        ErrorKind::UnsortedIndex,
        ErrorKind::ParallelFailed,
    ];
}

/// An error of the safe API: its kind (the C status), which check failed and, where
/// known, which argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// A short description of the failed check, e.g. `"k > n"`.
    pub what: &'static str,
    /// The argument the check concerns, as the C API names it (e.g. `"h_row_stride"`),
    /// or `""` when `what` already says it.
    pub arg: &'static str,
}

impl Error {
    pub const fn new(kind: ErrorKind, what: &'static str) -> Error {
        Error {
            kind,
            what,
            arg: "",
        }
    }

    /// The same error, naming `arg` unless an argument is already named (the
    /// innermost name wins).
    pub const fn with_arg(self, arg: &'static str) -> Error {
        if self.arg.is_empty() {
            Error { arg, ..self }
        } else {
            self
        }
    }
}

/// Names the argument of an error: `slice(p, n).arg("scores")?`.
pub(crate) trait ArgName<T> {
    fn arg(self, name: &'static str) -> Result<T>;
}

impl<T> ArgName<T> for Result<T> {
    #[inline(always)]
    fn arg(self, name: &'static str) -> Result<T> {
        self.map_err(|e| e.with_arg(name))
    }
}

impl fmt::Display for Error {
    /// `"BAD_STRIDE: h_row_stride: row stride smaller than the row"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.arg.is_empty() {
            write!(f, "{}: {}", self.kind.name(), self.what)
        } else {
            write!(f, "{}: {}: {}", self.kind.name(), self.arg, self.what)
        }
    }
}

impl std::error::Error for Error {}

/// The safe API's result type.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Returns `Err(Error::new(kind, what))` when `cond` is false; the form
/// `ensure!(cond, Kind, "arg": "what")` also names the C argument concerned.
macro_rules! ensure {
    ($cond:expr, $kind:ident, $arg:tt : $what:expr) => {
        if !$cond {
            return Err($crate::Error::new($crate::ErrorKind::$kind, $what).with_arg($arg));
        }
    };
    ($cond:expr, $kind:ident, $what:expr) => {
        if !$cond {
            return Err($crate::Error::new($crate::ErrorKind::$kind, $what));
        }
    };
}
pub(crate) use ensure;
