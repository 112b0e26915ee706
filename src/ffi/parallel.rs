//! Thread control through the C ABI: the built-in pool's size and an engine's
//! parallel-for callback.

use super::{guard, tkr_status};
use crate::error::{ensure, Result};
use crate::parallel::{self, Executor, ParallelFor};
use core::ffi::c_void;
use std::sync::Arc;

/// A task of a parallel-for: `task(task_ctx, i)` runs task `i`. Never unwinds; returns
/// when the task has finished.
pub type tkr_task_fn = Option<unsafe extern "C" fn(task_ctx: *mut c_void, task_index: usize)>;

/// An engine's parallel-for: it must call `task(task_ctx, i)` exactly once for every
/// `i < n_tasks`, in any order, on any of its threads (the calling one included), and
/// return 0 once every task has finished; non-zero when it could not run them all. It
/// must not call `task` after returning, and must be callable from several threads at
/// once (concurrent library calls each call it). `ctx` is the pointer given with it.
/// Tasks never block on one another, so running them one after the other on one thread
/// is always correct.
///
/// Wrapping a pool takes a few lines, e.g. with OpenMP:
/// `#pragma omp parallel for` over `i < n_tasks` calling `task(task_ctx, i)`, then
/// `return 0;`.
pub type tkr_parallel_for_fn = Option<
    unsafe extern "C" fn(
        ctx: *mut c_void,
        n_tasks: usize,
        task: tkr_task_fn,
        task_ctx: *mut c_void,
    ) -> i32,
>;

/// A C callback as a [`ParallelFor`].
struct CParallelFor {
    f: unsafe extern "C" fn(*mut c_void, usize, tkr_task_fn, *mut c_void) -> i32,
    ctx: *mut c_void,
}

// SAFETY: the tkr_parallel_for_fn contract: callable from any thread, with its context.
unsafe impl Send for CParallelFor {}
// SAFETY: as above.
unsafe impl Sync for CParallelFor {}

/// Calls the task behind `task_ctx` (a `&&(dyn Fn(usize) + Sync)`); the library's tasks
/// catch their own panics, so this never unwinds into C.
unsafe extern "C" fn trampoline(task_ctx: *mut c_void, i: usize) {
    // SAFETY: task_ctx is the pointer parallel_for passed, valid while it runs.
    let task = unsafe { *(task_ctx as *const &(dyn Fn(usize) + Sync)) };
    task(i);
}

impl ParallelFor for CParallelFor {
    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        let task_ref: &(dyn Fn(usize) + Sync) = task;
        let ctx = &task_ref as *const &(dyn Fn(usize) + Sync) as *mut c_void;
        // SAFETY: the engine's promise (tkr_parallel_for_fn); `ctx` outlives the call.
        unsafe { (self.f)(self.ctx, n_tasks, Some(trampoline), ctx) == 0 }
    }
}

/// The callback as an executor; `None` for (NULL, NULL); NULL with a context is an error.
fn callback(f: tkr_parallel_for_fn, ctx: *mut c_void) -> Result<Option<Arc<dyn ParallelFor>>> {
    match f {
        Some(f) => Ok(Some(Arc::new(CParallelFor { f, ctx }))),
        None => {
            ensure!(
                ctx.is_null(),
                NullPointer,
                "a NULL parallel-for with a non-NULL context"
            );
            Ok(None)
        }
    }
}

/// Sets the built-in pool's thread count, the calling thread included (default: 1, or
/// TOKENROUTE_NUM_THREADS read at first use: a count, or `auto` for every core the
/// process may use). 1 runs every call on its calling thread and stops the pool's
/// threads; n > 1 starts n - 1 threads now.
///
/// Calls that start afterwards use the new count; calls already running finish
/// correctly. Results never depend on the thread count: every call splits its work into
/// units fixed by its shape (see the README, "Threads").
///
/// - Returns TKR_STATUS_OK, TKR_STATUS_INVALID_ARGUMENT (n = 0 or n > 1024; nothing
///   changes), TKR_STATUS_PARALLEL_FAILED (the system refused to start a thread: the
///   pool keeps those it has; tkr_get_num_threads() tells how many).
/// - Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_set_num_threads(n: usize) -> tkr_status {
    guard(|| parallel::set_num_threads(n))
}

/// The built-in pool's thread count (the calling thread included); at least 1.
#[no_mangle]
pub extern "C" fn tkr_get_num_threads() -> usize {
    std::panic::catch_unwind(parallel::num_threads).unwrap_or(1)
}

/// Sets the process-wide parallel-for: calls (from threads without their own setting,
/// see tkr_set_thread_parallel_for) then hand their units to `parallel_for` instead of
/// the built-in pool. `parallel_for = NULL` with `ctx = NULL` removes it.
///
/// The callback's contract is that of tkr_parallel_for_fn. A call whose work is too
/// small to gain from threads, or made from inside a task, runs inline without calling
/// it. When it returns non-zero, skips a task, runs one twice or passes an index not
/// below n_tasks, the library runs every task that did not run on the calling thread
/// and the call returns TKR_STATUS_PARALLEL_FAILED with its outputs complete.
///
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER (NULL `parallel_for` with a
///   non-NULL `ctx`; nothing changes).
/// - Thread-safe; calls running meanwhile use either the old or the new setting.
#[no_mangle]
pub unsafe extern "C" fn tkr_set_parallel_for(
    parallel_for: tkr_parallel_for_fn,
    ctx: *mut c_void,
) -> tkr_status {
    guard(|| {
        parallel::set_parallel_for(callback(parallel_for, ctx)?);
        Ok(())
    })
}

/// Sets the parallel-for of the calling thread only: the calls this thread makes hand
/// their units to `parallel_for` (taking precedence over tkr_set_parallel_for and the
/// built-in pool), e.g. one engine session per thread with its own pool.
/// `parallel_for = NULL` with `ctx = NULL` removes the thread's setting (also one made
/// by tkr_set_thread_num_threads). Contract and failures as for tkr_set_parallel_for.
///
/// - Returns TKR_STATUS_OK, TKR_STATUS_NULL_POINTER (NULL `parallel_for` with a
///   non-NULL `ctx`; nothing changes).
#[no_mangle]
pub unsafe extern "C" fn tkr_set_thread_parallel_for(
    parallel_for: tkr_parallel_for_fn,
    ctx: *mut c_void,
) -> tkr_status {
    guard(|| parallel::set_thread_executor(callback(parallel_for, ctx)?.map(Executor::Callback)))
}

/// Caps the built-in pool threads used by the calls of the calling thread at `n`
/// (the thread included; 1: every call runs inline on it), taking precedence over
/// tkr_set_parallel_for; it does not grow the pool beyond tkr_set_num_threads. `n = 0`
/// removes the thread's setting (also one made by tkr_set_thread_parallel_for).
///
/// - Returns TKR_STATUS_OK, TKR_STATUS_INVALID_ARGUMENT (n > 1024; nothing changes).
#[no_mangle]
pub extern "C" fn tkr_set_thread_num_threads(n: usize) -> tkr_status {
    guard(|| match n {
        0 => parallel::set_thread_executor(None),
        n => parallel::set_thread_executor(Some(Executor::Threads(n))),
    })
}
