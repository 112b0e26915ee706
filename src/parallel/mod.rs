//! Parallel execution whose results do not depend on the thread count.
//!
//! Every operation splits its work into **units** fixed by the problem's shape alone
//! (row ranges, key chunks, ...), never by the number of threads, and combines units
//! that contribute to the same output in a fixed order. Units then run on whatever
//! executes them, in any order, on any thread, with bit-identical results.
//!
//! Who runs the units, for a call made by some thread (first match):
//! 1. inside a unit of another call (a nested call): inline, on that thread;
//! 2. a call below a fixed amount of work ([`MIN_PARALLEL_WORK`]): inline (small calls
//!    never pay for threads);
//! 3. the calling thread's own setting ([`set_thread_executor`], [`with_executor`]);
//! 4. the process-wide parallel-for callback ([`set_parallel_for`]), when set;
//! 5. the built-in pool with [`num_threads`] threads (the caller included; default 1,
//!    i.e. inline: the library starts no thread nobody asked for). The environment
//!    variable `TOKENROUTE_NUM_THREADS` (a count, or `auto` for every core) sets the
//!    initial count; [`set_num_threads`] changes it at any time.
//!
//! # The parallel-for contract
//! A [`ParallelFor`] runs `task(i)` exactly once for every `i < n_tasks`, in any order,
//! on any threads (the caller's included), and returns after every task has finished:
//! `true` when it ran them all, `false` when it could not. It must not call a task after
//! returning. When it returns `false`, skips a task, runs one twice or passes an index
//! `>= n_tasks`, the library runs every task that did not run on the calling thread
//! (a repeated or out-of-range index runs nothing), so the outputs are complete and
//! exactly those of a successful call, and the call returns [`ErrorKind::ParallelFailed`].
//! A panic inside a task is caught on the thread that ran it and resumed on the calling
//! thread (`PANIC` at the C boundary) after every task has finished.

mod pool;
mod scratch;

pub(crate) use scratch::{with_call_scratch, Aligned, MoveWaves, MAX_PIECES};

use crate::error::{Error, ErrorKind, Result};
use core::cell::{Cell, RefCell};
use std::panic::resume_unwind;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, RwLock};

/// An engine's thread pool, as a parallel-for (see the module doc for the contract).
pub trait ParallelFor: Send + Sync {
    /// Runs `task(i)` once for every `i < n_tasks` and returns `true`, or `false` when
    /// it could not run them all.
    fn parallel_for(&self, n_tasks: usize, task: &(dyn Fn(usize) + Sync)) -> bool;
}

/// What runs the units of the calls.
#[derive(Clone)]
pub enum Executor {
    /// Every unit on the calling thread.
    Inline,
    /// The built-in pool, with at most this many threads (the caller included; 1 is
    /// inline). The pool has [`num_threads`] threads: a larger count is capped to it.
    Threads(usize),
    /// An engine's parallel-for.
    Callback(Arc<dyn ParallelFor>),
}

impl core::fmt::Debug for Executor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Executor::Inline => f.write_str("Inline"),
            Executor::Threads(n) => write!(f, "Threads({n})"),
            Executor::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// The largest thread count accepted.
pub const MAX_THREADS: usize = 1024;

/// Calls whose work (bytes read and written, plus a quarter of their flops) is below
/// this run inline: waking threads would cost more than it saves.
pub const MIN_PARALLEL_WORK: usize = 1 << 20;

/// The work of one unit of the row-split operations (same measure): small enough that
/// a large call has many units for many cores, large enough that claiming one is
/// negligible. Operations derive their unit sizes from it and the shape only.
pub const UNIT_WORK: usize = 128 << 10;

/// Parallel-for calls hand out at most this many tasks (a task then runs several
/// consecutive units, which changes nothing in the results).
const MAX_TASKS: usize = 1024;

static ENV: Once = Once::new();
/// The built-in pool's thread count (the caller included), after `ENV`.
static THREADS: AtomicUsize = AtomicUsize::new(1);
static CALLBACK: RwLock<Option<Arc<dyn ParallelFor>>> = RwLock::new(None);

thread_local! {
    static LOCAL: RefCell<Option<Executor>> = const { RefCell::new(None) };
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// Test hook: (unit work, minimum parallel work).
    static GRANULARITY: Cell<(usize, usize)> = const { Cell::new((UNIT_WORK, MIN_PARALLEL_WORK)) };
}

fn invalid_count() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "thread count must be between 1 and 1024",
    )
}

/// Reads `TOKENROUTE_NUM_THREADS` once: a count in `1..=MAX_THREADS`, or `auto` (every
/// core the process may use); anything else leaves the default, 1.
fn init_from_env() {
    ENV.call_once(|| {
        let n = match std::env::var("TOKENROUTE_NUM_THREADS") {
            Ok(v) if v.trim() == "auto" => {
                std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
            }
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_THREADS).contains(&n) => n,
                _ => 1,
            },
            Err(_) => 1,
        };
        if n > 1 {
            let alive = pool::set_workers(n - 1);
            THREADS.store(alive + 1, Ordering::Relaxed);
        }
    });
}

/// Sets the built-in pool's thread count (the calling thread included): 1 runs every
/// call inline and stops the pool's threads. Takes effect for calls that start
/// afterwards; calls already running finish correctly. Errors: `INVALID_ARGUMENT` for
/// 0 or more than [`MAX_THREADS`]; `PARALLEL_FAILED` when the system refused to start
/// a thread (the pool then keeps the threads it has, and [`num_threads`] says how many).
pub fn set_num_threads(n: usize) -> Result<()> {
    if !(1..=MAX_THREADS).contains(&n) {
        return Err(invalid_count());
    }
    init_from_env();
    let alive = pool::set_workers(n - 1);
    THREADS.store(alive + 1, Ordering::Relaxed);
    if alive + 1 < n {
        return Err(Error::new(
            ErrorKind::ParallelFailed,
            "the system refused to start a pool thread",
        ));
    }
    Ok(())
}

/// The built-in pool's thread count (the caller included).
pub fn num_threads() -> usize {
    init_from_env();
    THREADS.load(Ordering::Relaxed)
}

/// Sets (or with `None` removes) the process-wide parallel-for: calls without a
/// thread-level setting run their units through it instead of the built-in pool.
pub fn set_parallel_for(f: Option<Arc<dyn ParallelFor>>) {
    *CALLBACK.write().unwrap_or_else(|e| e.into_inner()) = f;
}

/// Sets (or with `None` removes) the calling thread's executor, which takes precedence
/// over the process-wide settings for the calls this thread makes. Errors:
/// `INVALID_ARGUMENT` for `Threads(0)` or more than [`MAX_THREADS`].
pub fn set_thread_executor(e: Option<Executor>) -> Result<()> {
    if let Some(Executor::Threads(n)) = e {
        if !(1..=MAX_THREADS).contains(&n) {
            return Err(invalid_count());
        }
    }
    LOCAL.with(|l| *l.borrow_mut() = e);
    Ok(())
}

/// Runs `f` with the calling thread's executor set to `e`, then restores the previous
/// setting (also when `f` panics).
pub fn with_executor<R>(e: Executor, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Executor>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            LOCAL.with(|l| *l.borrow_mut() = prev);
        }
    }
    let prev = LOCAL.with(|l| l.borrow_mut().replace(e));
    let _restore = Restore(prev);
    f()
}

/// The executor the calling thread's next large call would use (before the nesting
/// and small-call rules).
pub fn current_executor() -> Executor {
    if let Some(e) = LOCAL.with(|l| l.borrow().clone()) {
        return e;
    }
    if let Some(cb) = CALLBACK.read().unwrap_or_else(|e| e.into_inner()).clone() {
        return Executor::Callback(cb);
    }
    match num_threads() {
        1 => Executor::Inline,
        n => Executor::Threads(n),
    }
}

/// Test hook: runs `f` with other unit and minimum-call work sizes on this thread, so
/// that small shapes split into many units. The results must not change.
#[doc(hidden)]
pub fn with_granularity<R>(unit_work: usize, min_work: usize, f: impl FnOnce() -> R) -> R {
    struct Restore((usize, usize));
    impl Drop for Restore {
        fn drop(&mut self) {
            GRANULARITY.with(|g| g.set(self.0));
        }
    }
    let prev = GRANULARITY.with(|g| g.replace((unit_work.max(1), min_work)));
    let _restore = Restore(prev);
    f()
}

/// Whether the calling thread is running a unit (of any call).
pub fn in_task() -> bool {
    IN_TASK.with(Cell::get)
}

/// The work of one unit (see [`UNIT_WORK`]) on this thread.
pub(crate) fn unit_work() -> usize {
    GRANULARITY.with(|g| g.get().0)
}

/// The work below which a call runs inline (see [`MIN_PARALLEL_WORK`]) on this thread.
pub(crate) fn min_parallel_work() -> usize {
    GRANULARITY.with(|g| g.get().1)
}

/// Items per unit when each item costs `item_work`: at least one.
pub(crate) fn items_per_unit(item_work: usize) -> usize {
    (unit_work() / item_work.max(1)).max(1)
}

/// Runs `task(i)` with the "inside a task" mark set (nested calls run inline).
fn marked(task: &(dyn Fn(usize) + Sync), i: usize) {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_TASK.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(IN_TASK.with(|t| t.replace(true)));
    task(i);
}

/// A unit of a call: `Err` stops nothing (the other units still run) but is reported.
pub(crate) type Unit<'a> = &'a (dyn Fn(usize) -> Result<()> + Sync);

/// The error of the lowest-numbered failing unit (deterministic whatever ran first).
struct FirstError(Mutex<Option<(usize, Error)>>);

impl FirstError {
    fn new() -> FirstError {
        FirstError(Mutex::new(None))
    }
    fn note(&self, i: usize, r: Result<()>) {
        if let Err(e) = r {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if g.is_none_or(|(j, _)| i < j) {
                *g = Some((i, e));
            }
        }
    }
    fn into_result(self) -> Result<()> {
        match self.0.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs `unit(u)` for every `u < n_units`, each exactly once, on the executor of the
/// calling thread (see the module doc); `work` is the whole call's work, for the
/// small-call rule. Units must be independent of one another (no unit reads what
/// another writes). Returns when every unit has finished: the error of the
/// lowest-numbered unit that failed, else `PARALLEL_FAILED` when a parallel-for broke
/// its contract (every unit still ran exactly once). A panic in a unit is resumed here.
pub(crate) fn for_each(n_units: usize, work: usize, unit: Unit<'_>) -> Result<()> {
    let min_work = min_parallel_work();
    if n_units == 0 {
        return Ok(());
    }
    let errors = FirstError::new();
    let run = |i: usize| errors.note(i, unit(i));
    let inline = |run: &dyn Fn(usize)| (0..n_units).for_each(run);
    let mut contract = Ok(());
    if n_units == 1 || work < min_work || in_task() {
        inline(&run);
    } else {
        match current_executor() {
            Executor::Inline | Executor::Threads(1) => inline(&run),
            Executor::Threads(t) => run_pool(n_units, t, &run),
            Executor::Callback(cb) => contract = run_callback(&*cb, n_units, &run),
        }
    }
    errors.into_result().and(contract)
}

/// Runs `task(i)` for every `i < n_tasks` on the calling thread's executor, by the same
/// rules as the library's own calls (`work`: the whole job's work in the measure of
/// [`MIN_PARALLEL_WORK`]; `usize::MAX` always splits), so that an engine's own loops can
/// share the threads. Library calls made from inside `task` run inline. Returns when
/// every task has finished; `PARALLEL_FAILED` as for the library's calls (every task
/// still ran exactly once); a panic in a task is resumed here.
pub fn run_tasks(n_tasks: usize, work: usize, task: &(dyn Fn(usize) + Sync)) -> Result<()> {
    for_each(n_tasks, work, &|i| {
        task(i);
        Ok(())
    })
}

/// [`for_each`] over `0..n_items` in ranges of `per` consecutive items.
pub(crate) fn for_each_range(
    n_items: usize,
    per: usize,
    work: usize,
    f: &(dyn Fn(core::ops::Range<usize>) -> Result<()> + Sync),
) -> Result<()> {
    let per = per.max(1);
    for_each(n_items.div_ceil(per), work, &|u| {
        f(u * per..n_items.min((u + 1) * per))
    })
}

/// Raw pointers (or structs of them) shared with the units of a call, each of which
/// uses them on its own disjoint part: the call's validation vouches for that.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shared<T>(pub T);
// SAFETY: see the type doc: units touch disjoint memory through it.
unsafe impl<T> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Shared<T> {}

impl<T: Copy> Shared<T> {
    /// The value (a method, so that closures capture the whole `Shared`, not the field).
    #[inline(always)]
    pub(crate) fn get(&self) -> T {
        self.0
    }
}

/// Holds the first panic of a call's units.
struct Panics(Mutex<Option<Box<dyn std::any::Any + Send>>>);

impl Panics {
    fn new() -> Panics {
        Panics(Mutex::new(None))
    }
    fn run(&self, task: &(dyn Fn(usize) + Sync), i: usize) {
        if let Some(p) = pool::catch(|| marked(task, i)) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(p);
        }
    }
    fn resume(self) {
        if let Some(p) = self.0.into_inner().unwrap_or_else(|e| e.into_inner()) {
            resume_unwind(p);
        }
    }
}

fn run_pool(n: usize, threads: usize, unit: &(dyn Fn(usize) + Sync)) {
    let helpers = (threads.min(num_threads()) - 1).min(n - 1);
    if helpers == 0 {
        (0..n).for_each(unit);
        return;
    }
    let panics = Panics::new();
    pool::run(n, helpers, &|i| panics.run(unit, i));
    panics.resume();
}

/// Runs the units through an engine's parallel-for, checking its contract: every task
/// index once. Tasks that did not run are run here.
fn run_callback(cb: &dyn ParallelFor, n_units: usize, unit: &(dyn Fn(usize) + Sync)) -> Result<()> {
    let per = n_units.div_ceil(MAX_TASKS);
    let n_tasks = n_units.div_ceil(per);
    let task = |t: usize| (t * per..n_units.min((t + 1) * per)).for_each(unit);
    const W: usize = MAX_TASKS / 64;
    let started: [AtomicU64; W] = [const { AtomicU64::new(0) }; W];
    let done: [AtomicU64; W] = [const { AtomicU64::new(0) }; W];
    let broken = AtomicBool::new(false);
    let panics = Panics::new();
    let checked = |t: usize| {
        if t >= n_tasks {
            broken.store(true, Ordering::Relaxed);
            return;
        }
        let (w, b) = (t / 64, 1u64 << (t % 64));
        if started[w].fetch_or(b, Ordering::AcqRel) & b != 0 {
            broken.store(true, Ordering::Relaxed);
            return;
        }
        panics.run(&task, t);
        done[w].fetch_or(b, Ordering::Release);
    };
    let ok = match pool::catch(|| {
        let ran_all = cb.parallel_for(n_tasks, &checked);
        broken.fetch_or(!ran_all, Ordering::Relaxed);
    }) {
        // A panicking parallel-for (a Rust one) broke the contract too.
        Some(_) => false,
        None => !broken.load(Ordering::Relaxed),
    };
    let mut complete = true;
    for t in 0..n_tasks {
        let (w, b) = (t / 64, 1u64 << (t % 64));
        if started[w].fetch_or(b, Ordering::AcqRel) & b == 0 {
            // Never started: run it here.
            complete = false;
            panics.run(&task, t);
            done[w].fetch_or(b, Ordering::Release);
        } else {
            // Started: it may still be running if the callback returned early.
            while done[w].load(Ordering::Acquire) & b == 0 {
                complete = false;
                std::thread::yield_now();
            }
        }
    }
    panics.resume();
    if ok && complete {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::ParallelFailed,
            "the parallel-for callback failed or broke its contract (the call completed on the calling thread)",
        ))
    }
}

/// Runs phases that are each a [`for_each`]: a parallel-for failure in one phase is
/// remembered and reported at the end, while the later phases still run (the outputs
/// are complete, as the contract promises).
#[derive(Default)]
pub(crate) struct Phases(Option<Error>);

impl Phases {
    pub(crate) fn run(&mut self, r: Result<()>) -> Result<()> {
        match r {
            Err(e) if e.kind == ErrorKind::ParallelFailed => {
                self.0.get_or_insert(e);
                Ok(())
            }
            other => other,
        }
    }
    pub(crate) fn finish(self) -> Result<()> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
