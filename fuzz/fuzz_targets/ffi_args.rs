//! C-ABI argument target: drives every C entry point (tokenroute::ffi, the functions
//! the shared library exports) with decoded sizes, strides, NULL / misaligned /
//! overlapping / undersized pointers and out-of-range codes, and requires a status
//! (never a crash or PANIC), the status the documented rules imply, and no write
//! outside the output buffers (guard pages, canaries, read-only inputs). The cases
//! live in src/args/, one module per family.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tokenroute_fuzz::args::run(data);
});
