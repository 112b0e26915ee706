//! What a thread keeps after a call: at most THREAD_SCRATCH_CAP bytes of library scratch
//! per buffer kind (top-k, compaction, attention, call-level partials, batched
//! attention positions), plus the one process-wide spare of at
//! most SPARE_SCRATCH_CAP bytes; `release_thread_buffers` frees all of it. Measured with
//! a counting global allocator: the live heap bytes after each call, against the bytes
//! the test itself holds.
//!
//! One test function, so that nothing else allocates in this process while it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokenroute::{
    release_thread_buffers, AttendExtras, AttendOptions, Heads, HeadsMut, Kernels, KeySubset,
    Matrix, MatrixMut, Order, RowSpec, TopK, TopkOut, SPARE_SCRATCH_CAP, THREAD_SCRATCH_CAP,
};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

const KINDS: usize = 5;
/// Slack for the allocator's bookkeeping of the test harness (thread names, ...).
const SLACK: usize = 64 << 10;

/// Exact top-k of `n` scores (the library's own workspace), on `k`.
fn topk(k: &Kernels, scores: &[f32], kk: usize) -> Vec<u32> {
    let n = scores.len();
    let mut idx = vec![0u32; kk];
    k.topk_f32(
        Matrix::new(scores, 1, n, n).unwrap(),
        TopK::Fixed(kk),
        Order::Position,
        &RowSpec::default(),
        TopkOut {
            indices: MatrixMut::new(&mut idx, 1, kk, kk).unwrap(),
            scores: None,
            counts: None,
        },
        None,
    )
    .unwrap();
    idx
}

/// Scatter of `idx.len()` one-float rows into `n` rows (unsorted indices: checked for
/// duplicates in the compaction scratch).
fn scatter(k: &Kernels, idx: &[u32], n: usize) {
    let src = vec![1f32; idx.len()];
    let mut dst = vec![0f32; n];
    k.scatter_rows(
        Matrix::new(&src, idx.len(), 1, 1).unwrap(),
        idx,
        MatrixMut::new(&mut dst, n, 1, 1).unwrap(),
    )
    .unwrap();
}

/// Attention of one query over one key with head dimension `d` (scratch grows with d).
fn attend(k: &Kernels, d: usize) {
    let q = vec![0.5f32; d];
    let kv = vec![0.25f32; d];
    let mut out = vec![0f32; d];
    k.attention(
        Heads::dense(&q, 1, 1, d).unwrap(),
        Heads::dense(&kv, 1, 1, d).unwrap(),
        Heads::dense(&kv, 1, 1, d).unwrap(),
        KeySubset::Dense,
        &AttendOptions::default(),
        HeadsMut::dense(&mut out, 1, 1, d).unwrap(),
        AttendExtras::default(),
    )
    .unwrap();
}

#[test]
fn a_thread_keeps_at_most_the_documented_scratch() {
    // Every call inline on this thread (no pool workers holding scratch of their own).
    tokenroute::parallel::set_num_threads(1).unwrap();
    let k = Kernels::active().unwrap();
    release_thread_buffers();
    // The case: top-k over 16M scores. k = 64 splits the row into chunks (each
    // within the cap); k = 10,000 takes one 128 MiB workspace, above the spare's cap:
    // nothing of either stays.
    let n = 16 << 20;
    let scores: Vec<f32> = (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32)
        .collect();
    for kk in [64, 10_000] {
        let base = live();
        let idx = topk(k, &scores, kk);
        let kept = live() - base - idx.len() * 4;
        assert!(
            kept <= KINDS * THREAD_SCRATCH_CAP + SLACK,
            "top-{kk} over {n} scores left {kept} bytes"
        );
    }
    drop(scores);

    // Every kind, large calls: each keeps at most its cap, plus the spare.
    release_thread_buffers();
    let scores: Vec<f32> = (0..(2 << 20)).map(|i| (i % 1000) as f32).collect();
    // 40,000 unsorted indices into 9M rows: a 1.1 MiB duplicate bitset.
    let rows = 9 << 20;
    let idx: Vec<u32> = (0..40_000u32).rev().map(|i| i * 200).collect();
    let base = live();
    // k = 100,000: no chunks, a 16 MiB workspace (fits the spare).
    let top = topk(k, &scores, 100_000);
    drop(top);
    scatter(k, &idx, rows);
    attend(k, 1 << 13);
    let kept = live() - base;
    // The spare keeps one buffer: at most the largest of those calls' (16 MiB).
    assert!(
        kept <= KINDS * THREAD_SCRATCH_CAP + (16 << 20) + (1 << 20) + SLACK,
        "large calls left {kept} bytes"
    );
    assert!(kept <= KINDS * THREAD_SCRATCH_CAP + SPARE_SCRATCH_CAP + SLACK);
    assert!(
        kept >= 16 << 20,
        "the spare holds the top-k workspace: {kept}"
    );
    release_thread_buffers();
    let kept = live() - base;
    assert!(kept <= SLACK, "after release_thread_buffers: {kept} bytes");

    // Calls within the cap reuse the thread's buffers: no allocation once grown.
    let small: Vec<f32> = scores[..50_000].to_vec();
    let small_idx: Vec<u32> = (0..20_000u32).rev().collect();
    let src = vec![1f32; small_idx.len()];
    let mut dst = vec![0f32; small_idx.len()];
    let mut out = vec![0u32; 50];
    for round in 0..2 {
        let before = ALLOCS.load(Ordering::Relaxed);
        k.topk_f32(
            Matrix::new(&small, 1, small.len(), small.len()).unwrap(),
            TopK::Fixed(50),
            Order::Position,
            &RowSpec::default(),
            TopkOut {
                indices: MatrixMut::new(&mut out, 1, 50, 50).unwrap(),
                scores: None,
                counts: None,
            },
            None,
        )
        .unwrap();
        k.scatter_rows(
            Matrix::new(&src, small_idx.len(), 1, 1).unwrap(),
            &small_idx,
            MatrixMut::new(&mut dst, small_idx.len(), 1, 1).unwrap(),
        )
        .unwrap();
        if round == 1 {
            assert_eq!(
                ALLOCS.load(Ordering::Relaxed),
                before,
                "calls within the cap allocated"
            );
        }
    }
    drop((small, small_idx, src, dst, out));

    // Another thread's large calls: when it ends, its buffers go with it; what stays
    // in the process is at most the spare (here the 16 MiB top-k workspace).
    release_thread_buffers();
    let base = live();
    let t = std::thread::spawn(move || {
        let k = Kernels::active().unwrap();
        drop(topk(k, &scores, 100_000));
        scatter(k, &idx, rows);
        (scores, idx)
    });
    let inputs = t.join().unwrap();
    let kept = live().saturating_sub(base);
    drop(inputs);
    assert!(
        kept <= (16 << 20) + SLACK,
        "a finished thread left {kept} bytes"
    );
    release_thread_buffers();
}
