//! The library's own scratch memory: its per-thread cap and the call that frees it.

/// Most bytes of scratch the library keeps per thread and per buffer kind (top-k
/// workspaces; duplicate checks of index lists; attention rows; positions of batched
/// attention; call-level partials of calls split into units) once a call returns: 1 MiB.
/// Pool workers are threads too. A call that needs more scratch (and gets no caller
/// workspace) uses the process-wide spare buffer or allocates, and gives the memory back
/// when it returns.
pub const TKR_THREAD_SCRATCH_CAP: usize = 1 << 20;
/// Most bytes of the one process-wide spare scratch buffer the library keeps for calls
/// that need more than TKR_THREAD_SCRATCH_CAP: 64 MiB (larger buffers are freed).
pub const TKR_SPARE_SCRATCH_CAP: usize = 64 << 20;

/// Frees the scratch buffers the calling thread holds (at most TKR_THREAD_SCRATCH_CAP
/// bytes per buffer kind) and the process-wide spare (at most TKR_SPARE_SCRATCH_CAP
/// bytes). Nothing else changes: the next call that needs scratch allocates it again.
/// Call it from a worker thread before it idles for long, or when memory is tight.
/// Passing a workspace (tkr_topk_workspace_size, tkr_route_workspace_size) avoids the
/// library's scratch for selection and routing altogether. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_release_thread_buffers() {
    let _ = std::panic::catch_unwind(crate::scratch::release_thread_buffers);
}
