//! Pure SIMD kernels of tokenroute.
//!
//! Each family lives in its own module (`sigmoid`, `score`, ...) with one file per ISA
//! tier and a `REGISTRY` per operation listing every variant compiled for this target.
//! Kernels take raw pointers and element counts, never validate, never allocate and
//! never choose an ISA: the `tokenroute` crate validates arguments and owns the
//! dispatch policy. See `kernels/README.md` for the naming vocabulary and the
//! "how to add a variant" checklist.
#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![allow(clippy::missing_safety_doc)]
// SIMD kernels index fixed-size register arrays by row and router on purpose.
#![allow(clippy::needless_range_loop)]

#[cfg(feature = "std")]
extern crate std;

pub mod attend;
pub mod compact;
pub mod isa;
pub mod numerics;
pub mod registry;
pub mod score;
pub mod select;
pub mod sigmoid;
pub(crate) mod simd;
pub mod softmax;

pub use isa::Isa;
pub use registry::KernelInfo;
