//! tokenroute: SIMD kernels for dynamic token routing in transformer inference.
//!
//! Engines call it at each layer to score tokens (`S_i = sigmoid(w . h_i + b)`),
//! select the ones worth computing, compact them, and attend over only the selected
//! keys. This crate holds the runtime ISA dispatch, argument validation, the safe Rust
//! API and the C ABI (`include/tokenroute.h`); the kernels themselves live in
//! `tokenroute-kernels`.
//!
//! Every operation is available two ways:
//! - as a method of [`Kernels`], the table of one ISA level ([`Kernels::for_isa`] or
//!   [`Kernels::active`]): tests and benchmarks reach each level directly this way;
//! - as a free function ([`score`], [`sigmoid_f32`], [`attention`], ...) that uses the
//!   active level.
//!
//! Data flows one way: C ABI -> safe API (validation) -> dispatch table -> kernel.
#![deny(unsafe_op_in_unsafe_fn)]

mod dispatch;
mod error;
pub mod ffi;
mod isa;
mod ops;
pub mod parallel;
mod scratch;

pub use dispatch::Kernels;
pub use error::{Error, ErrorKind, Result};
pub use isa::{active_isa, set_isa, supported_isas};
pub use ops::attend::{
    attention, attention_batch, attention_merge, key_block_bound, key_block_summary, AttendBias,
    AttendElement, AttendExtras, AttendOptions, Batch, BatchStrides, BiasData, CausalAlign, Heads,
    HeadsMut, KeySubset, ListsPer, OutElement,
};
pub use ops::compact::{
    compact_rows, gather_rows, kv_compact, scatter_add_rows, scatter_rows, KvCacheMut, KvKeep,
    KvLayout,
};
pub use ops::route::{route, route_workspace_len, RouteOut, RouteSelect};
pub use ops::score::{score, sigmoid_f32, sigmoid_f32_in_place, Activation};
pub use ops::select::{
    indices_to_mask, mask_to_indices, threshold_f32, topk_f32, topk_workspace_len, Order, RowSpec,
    Tau, ThresholdOut, TopK, TopkOut,
};
pub use ops::softmax::{softmax, softmax_in_place, SoftmaxOptions};
pub use ops::{DType, Element, Matrix, MatrixMut};
pub use scratch::{
    release_thread_buffers, SPARE_CAP as SPARE_SCRATCH_CAP, THREAD_CAP as THREAD_SCRATCH_CAP,
};
pub use tokenroute_kernels::Isa;

/// Half-precision element types accepted by the kernels (re-exported from `half`).
pub use half::{bf16, f16};
