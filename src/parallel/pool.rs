//! The built-in thread pool: `threads - 1` workers plus the calling thread.
//!
//! A call posts one job (a task counter over `n` tasks) to a queue, wakes up to
//! `helpers` workers, and claims tasks itself until none is left; then it withdraws the
//! job from the queue and waits for the workers still running one of its tasks. The
//! caller always works on its own job, so a call completes even when every worker is
//! busy with other callers' jobs (no deadlock), and jobs of concurrent callers share the
//! workers. Workers run tasks with the "inside a task" mark set, so calls made from a
//! task run inline.
//!
//! The job lives on the caller's stack: a worker registers as a user of it under the
//! queue lock while the job is queued, and the caller returns only when it has removed
//! the job from the queue and every registered user has left (no allocation per call).
//!
//! Resizing ([`set_workers`]) only changes the target count: new workers start at once,
//! surplus ones exit when idle; calls running meanwhile finish on whoever is there.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A posted job. Only ever accessed through `&Job` while the caller keeps it alive.
struct Job {
    /// Runs task `i` (catches panics itself).
    task: *const (dyn Fn(usize) + Sync),
    n: usize,
    next: AtomicUsize,
    /// Workers that may still touch the job (registered under the queue lock).
    users: AtomicUsize,
    /// Workers allowed to join (the caller is not counted).
    max_helpers: usize,
    helpers: AtomicUsize,
    owner: Thread,
}

/// A pointer to a queued job (the queue only holds jobs whose caller is waiting).
#[derive(Clone, Copy, PartialEq, Eq)]
struct JobRef(*const Job);
// SAFETY: a JobRef is dereferenced only while the job's caller keeps it alive (see the
// module doc); the job's own fields are thread-safe.
unsafe impl Send for JobRef {}

struct State {
    jobs: VecDeque<JobRef>,
    /// Workers wanted and alive.
    target: usize,
    alive: usize,
    /// Workers blocked on the condition variable.
    sleeping: usize,
}

struct Pool {
    state: Mutex<State>,
    wake: Condvar,
}

static POOL: Pool = Pool {
    state: Mutex::new(State {
        jobs: VecDeque::new(),
        target: 0,
        alive: 0,
        sleeping: 0,
    }),
    wake: Condvar::new(),
};

/// How long an idle worker keeps looking for work before it sleeps: calls that come in
/// a quick succession (a model's layers) then find it awake.
const SPIN: Duration = Duration::from_micros(50);

/// Jobs in the queue (a hint read without the lock by idle workers).
static QUEUED: AtomicUsize = AtomicUsize::new(0);

fn lock() -> MutexGuard<'static, State> {
    // A panic never happens while the lock is held (tasks run outside it), but be
    // robust anyway: the state stays consistent between statements.
    POOL.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the number of workers (threads besides the callers). Returns how many are alive
/// afterwards; fewer than asked when the system refused to start a thread.
pub(crate) fn set_workers(n: usize) -> usize {
    let mut st = lock();
    st.target = n;
    while st.alive < st.target {
        let spawned = std::thread::Builder::new()
            .name(format!("tokenroute-{}", st.alive))
            .spawn(worker);
        match spawned {
            Ok(_) => st.alive += 1,
            Err(_) => {
                st.target = st.alive;
                break;
            }
        }
    }
    // Surplus workers notice the lower target and exit.
    POOL.wake.notify_all();
    st.target
}

/// Takes the first queued job that still has tasks and room for a helper; drops
/// exhausted jobs from the front.
fn take_job(st: &mut State) -> Option<JobRef> {
    let mut i = 0;
    while i < st.jobs.len() {
        let r = st.jobs[i];
        // SAFETY: queued jobs are alive (their callers wait until they are removed).
        let job = unsafe { &*r.0 };
        if job.next.load(Ordering::Relaxed) >= job.n {
            // Nothing left to claim; its caller removes it too (either is fine).
            st.jobs.remove(i);
            QUEUED.store(st.jobs.len(), Ordering::Relaxed);
            continue;
        }
        if job.helpers.load(Ordering::Relaxed) < job.max_helpers {
            job.helpers.fetch_add(1, Ordering::Relaxed);
            job.users.fetch_add(1, Ordering::Acquire);
            return Some(r);
        }
        i += 1;
    }
    None
}

/// Claims and runs tasks of `job` until none is left.
fn work_on(job: &Job) {
    // SAFETY: the task closure lives as long as the job.
    let task = unsafe { &*job.task };
    loop {
        let i = job.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.n {
            break;
        }
        task(i);
    }
}

fn worker() {
    let mut st = lock();
    loop {
        if st.alive > st.target {
            st.alive -= 1;
            return;
        }
        if let Some(r) = take_job(&mut st) {
            drop(st);
            // SAFETY: registered as a user under the lock while queued: alive until we
            // leave.
            let job = unsafe { &*r.0 };
            let owner = job.owner.clone();
            work_on(job);
            // The last access to the job: afterwards its caller may return.
            if job.users.fetch_sub(1, Ordering::Release) == 1 {
                owner.unpark();
            }
            st = idle_spin();
            continue;
        }
        st.sleeping += 1;
        st = POOL.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        st.sleeping -= 1;
    }
}

/// After a job: looks for more work for a short while before going back to sleep.
fn idle_spin() -> MutexGuard<'static, State> {
    let start = Instant::now();
    while QUEUED.load(Ordering::Relaxed) == 0 && start.elapsed() < SPIN {
        for _ in 0..64 {
            std::hint::spin_loop();
        }
    }
    lock()
}

/// Runs `task(i)` for every `i < n` on the calling thread and up to `helpers` workers.
/// `task` must catch its own panics. Returns when every task has finished.
pub(crate) fn run(n: usize, helpers: usize, task: &(dyn Fn(usize) + Sync)) {
    // SAFETY (lifetime erasure): the job, and with it this pointer, is withdrawn and
    // waited for before this function returns.
    let task: *const (dyn Fn(usize) + Sync) = unsafe {
        core::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(task)
    };
    let job = Job {
        task,
        n,
        next: AtomicUsize::new(0),
        users: AtomicUsize::new(0),
        max_helpers: helpers,
        helpers: AtomicUsize::new(0),
        owner: std::thread::current(),
    };
    let r = JobRef(&job);
    {
        let mut st = lock();
        st.jobs.push_back(r);
        QUEUED.store(st.jobs.len(), Ordering::Relaxed);
        let wake = helpers.min(st.sleeping);
        if wake >= st.sleeping {
            POOL.wake.notify_all();
        } else {
            for _ in 0..wake {
                POOL.wake.notify_one();
            }
        }
    }
    work_on(&job);
    {
        let mut st = lock();
        if let Some(pos) = st.jobs.iter().position(|&j| j == r) {
            st.jobs.remove(pos);
            QUEUED.store(st.jobs.len(), Ordering::Relaxed);
        }
    }
    // No new user can register now; wait for the registered ones to leave.
    let start = Instant::now();
    while job.users.load(Ordering::Acquire) != 0 {
        if start.elapsed() < Duration::from_micros(20) {
            std::hint::spin_loop();
        } else {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// Runs `f` catching a panic; returns the payload instead of unwinding.
pub(crate) fn catch(f: impl FnOnce()) -> Option<Box<dyn std::any::Any + Send>> {
    catch_unwind(AssertUnwindSafe(f)).err()
}
