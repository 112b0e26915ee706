//! The cases of the `ffi_args` target: each drives one C entry point with decoded
//! sizes, strides, pointers (NULL, misaligned, overlapping, or pointing at too little
//! memory) and codes, and requires:
//!
//! - a status, never a crash: inputs live in read-only guard-page memory and outputs
//!   flush against a guard page, so a read or write outside the buffers faults;
//! - the status the documentation implies: `OK` when the model of the documented rules
//!   finds no error, otherwise one of the errors the model finds (the documentation
//!   does not order its checks), never `TKR_STATUS_PANIC`;
//! - on error, no output byte changed; on success, exactly the described output
//!   elements written, equal to the scalar level's result through the safe API.
//!
//! A buffer whose documented extent is too large to allocate is only passed (as a
//! pointer to a small guarded region) when the model finds some other error, so every
//! call that may succeed is truthful about its memory; a failing call must touch
//! nothing.
//!
//! Adding a family: a module here with its cases, and its lines in [`CASES`].

pub mod attend;
pub mod compact;
pub mod foundation;
pub mod score;
pub mod select;

use crate::{Guarded, Input, Place};
use std::collections::BTreeSet;
use tokenroute::ffi::*;

/// One argument case.
pub type Case = fn(&mut Input);

/// Every case, selected by the input's first byte.
pub static CASES: &[(&str, Case)] = &[
    ("tkr_status_string", foundation::status_string),
    ("tkr_isa_name", foundation::isa_name),
    ("tkr_set_isa", foundation::set_isa),
    ("tkr_sigmoid_f32", score::sigmoid),
    ("tkr_score", score::score),
    ("tkr_score", score::score),
    ("tkr_mask_to_indices", select::mask_to_indices),
    ("tkr_indices_to_mask", select::indices_to_mask),
    ("tkr_topk_workspace_size", select::workspace_size),
    ("tkr_gather_rows", compact::gather),
    ("tkr_scatter_rows", compact::scatter),
    ("tkr_scatter_add_rows", compact::scatter_add),
    ("tkr_compact_rows", compact::compact_rows),
    ("tkr_kv_compact", compact::kv_compact),
    ("tkr_kv_compact", compact::kv_compact),
    ("tkr_attention", attend::attention),
    ("tkr_attention", attend::attention),
    ("tkr_attention", attend::attention),
    ("tkr_attention_merge", attend::merge),
    ("tkr_key_block_summary", attend::summary),
];

/// Runs the case chosen by the first byte.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let (_, case) = CASES[inp.u8() as usize % CASES.len()];
    case(&mut inp);
}

/// With `TKR_FUZZ_STATS=1`, a histogram of (call, status) printed every 2^16 checked
/// calls, to see that both the success and every error path are reached.
pub mod stats {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    static CALLS: AtomicU64 = AtomicU64::new(0);
    static HIST: Mutex<Vec<(String, u32, u64)>> = Mutex::new(Vec::new());

    pub fn record(call: &str, status: u32) {
        if std::env::var_os("TKR_FUZZ_STATS").is_none() {
            return;
        }
        let mut h = HIST.lock().unwrap();
        match h.iter_mut().find(|(c, s, _)| c == call && *s == status) {
            Some(e) => e.2 += 1,
            None => h.push((call.to_string(), status, 1)),
        }
        if CALLS.fetch_add(1, Ordering::Relaxed) % (1 << 16) == 0 {
            h.sort();
            eprintln!("ffi_args statuses: {h:?}");
        }
    }
}

/// Largest buffer (bytes) allocated for real; larger documented extents are "lies".
pub const CAP: usize = 1 << 18;

/// How a pointer argument is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Null,
    Misaligned,
    Valid,
}

impl Mode {
    pub fn pick(inp: &mut Input) -> Mode {
        match inp.u8() % 16 {
            0 => Mode::Null,
            1 => Mode::Misaligned,
            _ => Mode::Valid,
        }
    }
}

/// The expected outcome: the set of statuses the documented rules allow (empty: the
/// call must succeed), and whether some buffer's memory is less than documented.
#[derive(Default, Debug)]
pub struct Model {
    pub errors: BTreeSet<tkr_status>,
    pub lied: bool,
}

impl Model {
    pub fn err(&mut self, s: tkr_status) {
        self.errors.insert(s);
    }

    /// Whether the call may be made: it must fail, or every buffer is truthful.
    pub fn runnable(&self) -> bool {
        !self.lied || !self.errors.is_empty()
    }

    /// Checks a call's status against the model; returns whether it must have
    /// succeeded.
    pub fn check(&self, call: &str, status: tkr_status) -> bool {
        stats::record(call, status);
        assert_ne!(
            status, TKR_STATUS_PANIC,
            "{call}: PANIC (a bug) for {self:?}"
        );
        if self.errors.is_empty() {
            assert_eq!(status, TKR_STATUS_OK, "{call}: expected OK, got {status}");
            true
        } else {
            assert!(
                self.errors.contains(&status),
                "{call}: got status {status} ({:?}), the documented rules allow {:?}",
                // SAFETY: the library's own NUL-terminated per-thread message.
                unsafe {
                    std::ffi::CStr::from_ptr(tokenroute::ffi::status::tkr_last_error_message())
                },
                self.errors
            );
            false
        }
    }
}

/// A buffer argument: its memory (if any), the pointer passed, and its documented
/// extent.
pub struct Buf {
    pub mem: Option<Guarded>,
    pub ptr: *mut u8,
    /// Documented extent in elements (`None`: the extent computation overflows).
    pub elems: Option<usize>,
    pub elem_size: usize,
    pub mode: Mode,
}

impl Buf {
    /// Makes a buffer of `elems` elements of `elem_size` bytes in `mode`; fills it with
    /// `fill` (called per byte offset) when it is real memory.
    pub fn new(
        inp: &mut Input,
        elems: Option<usize>,
        elem_size: usize,
        mode: Mode,
        fill: &mut dyn FnMut(&mut Input, &mut [u8]),
    ) -> Buf {
        let place = if inp.bool() { Place::End } else { Place::Start };
        let bytes = elems.and_then(|e| e.checked_mul(elem_size));
        match mode {
            Mode::Null => Buf {
                mem: None,
                ptr: core::ptr::null_mut(),
                elems,
                elem_size,
                mode,
            },
            Mode::Valid | Mode::Misaligned => {
                // Misaligned: one byte off (odd addresses suit no element type).
                let mis = if mode == Mode::Misaligned { 1 } else { 0 };
                let real = bytes.filter(|&b| b <= CAP);
                let len = real.unwrap_or(64);
                let g = Guarded::new(len, place, mis);
                let ptr = g.ptr();
                let mut b = Buf {
                    mem: Some(g),
                    ptr,
                    elems,
                    elem_size,
                    mode,
                };
                if real.is_some() {
                    // SAFETY: len bytes at ptr lie inside the mapping.
                    let s = unsafe { core::slice::from_raw_parts_mut(b.ptr, len) };
                    fill(inp, s);
                }
                let _ = &mut b;
                b
            }
        }
    }

    /// Whether the memory behind the pointer is less than the documented extent.
    pub fn lied(&self) -> bool {
        match (self.mode, self.elems) {
            (Mode::Null, _) => false,
            (_, Some(0)) => false,
            (_, None) => true,
            (_, Some(e)) => e.checked_mul(self.elem_size).is_none_or(|b| b > CAP),
        }
    }

    /// The errors the documented pointer rules give for this buffer (a (NULL, 0) or
    /// (anything, 0) buffer is valid; else non-null, aligned, size within isize::MAX
    /// and the address space).
    pub fn errors(&self, m: &mut Model) {
        let Some(elems) = self.elems else {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
            return;
        };
        if elems == 0 {
            return;
        }
        if self.ptr.is_null() {
            m.err(TKR_STATUS_NULL_POINTER);
            return;
        }
        if (self.ptr as usize) % self.elem_size != 0 {
            m.err(TKR_STATUS_INVALID_ARGUMENT);
        }
        match elems.checked_mul(self.elem_size) {
            Some(b) if b <= isize::MAX as usize && (self.ptr as usize).checked_add(b).is_some() => {
            }
            _ => m.err(TKR_STATUS_SIZE_OVERFLOW),
        }
    }

    /// Byte range of the documented extent (empty when 0 or not computable).
    pub fn range(&self) -> (usize, usize) {
        match self.elems.and_then(|e| e.checked_mul(self.elem_size)) {
            Some(b) if b > 0 && !self.ptr.is_null() => {
                (self.ptr as usize, (self.ptr as usize).saturating_add(b))
            }
            _ => (0, 0),
        }
    }

    /// A snapshot of the real memory's bytes (for "nothing written" checks).
    pub fn snapshot(&self) -> Vec<u8> {
        self.mem.as_ref().map_or(Vec::new(), |g| g.bytes().to_vec())
    }

    pub fn freeze(&self) {
        if let Some(g) = &self.mem {
            g.freeze();
        }
    }

    pub fn slack_intact(&self) -> bool {
        self.mem.as_ref().is_none_or(Guarded::slack_intact)
    }
}

/// Whether two non-empty byte ranges intersect.
pub fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < a.1 && b.0 < b.1 && a.0 < b.1 && b.0 < a.1
}

/// Random bytes.
pub fn fill_random(inp: &mut Input, s: &mut [u8]) {
    for b in s {
        *b = inp.u8();
    }
}

/// f32 palette values.
pub fn fill_f32(inp: &mut Input, s: &mut [u8]) {
    for c in s.chunks_exact_mut(4) {
        c.copy_from_slice(&inp.f32().to_ne_bytes());
    }
}
