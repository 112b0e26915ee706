//! Test hooks, compiled only with the `test-hooks` cargo feature: never part of the
//! release library, the header (cbindgen.toml excludes them) or the symbol list.
//!
//! `TKR_STATUS_PANIC` is what every entry point returns when the Rust code under its
//! `guard` panics: a bug, which correct code cannot be driven into from outside. To
//! test the path honestly through the C ABI (the panic is caught, does not unwind into
//! C, leaves the library usable, and writes nothing), this hook panics inside the very
//! same `guard` the real entry points use.

use super::{guard, slice_mut, tkr_status};

/// Panics inside `guard` (after validating `out` like any entry point) and so returns
/// TKR_STATUS_PANIC; `out` (`n` floats, (NULL, 0) allowed) is never written. A nonzero
/// `kind` panics with a formatted message (heap allocation inside the panic) instead
/// of a static one.
///
/// # Safety
/// `out` is NULL or valid for `n` floats.
#[no_mangle]
pub unsafe extern "C" fn tkr_test_panic(kind: u32, out: *mut f32, n: usize) -> tkr_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let out = unsafe { slice_mut(out, n)? };
        if kind == 0 {
            panic!("tkr_test_panic: a deliberate panic");
        }
        let msg = format!(
            "tkr_test_panic: deliberate panic {kind} over {} floats",
            out.len()
        );
        panic!("{msg}");
    })
}
