//! Selection allocates nothing per call once the calling thread's top-k workspace has
//! grown: counted by a global allocator, per thread, through the C entry points and the
//! safe API.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tokenroute::ffi::select::{tkr_threshold_f32, tkr_topk_f32, tkr_topk_options};
use tokenroute::{Kernels, Matrix, MatrixMut, Order, RowSpec, TopK, TopkOut};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialized
// thread-local Cell (no allocation to reach it).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(|c| c.get())
}

#[test]
fn no_allocation_per_call_after_the_workspace_has_grown() {
    let (rows, n, k) = (4usize, 50257usize, 50usize);
    let s: Vec<f32> = (0..rows * n).map(|i| ((i * 7919) % 10007) as f32).collect();
    let mut idx = vec![0u32; rows * n];
    let mut counts = vec![0usize; rows];
    let mut out_scores = vec![0f32; rows * k];
    let valid = vec![n, n - 1, 1000, k];
    let mut opts: tkr_topk_options = unsafe { std::mem::zeroed() };
    opts.struct_size = std::mem::size_of::<tkr_topk_options>();
    opts.valid_lens = valid.as_ptr();
    opts.out_scores = out_scores.as_mut_ptr();
    opts.out_scores_row_stride = k;
    let topk = |idx: &mut Vec<u32>, counts: &mut Vec<usize>| unsafe {
        tkr_topk_f32(
            s.as_ptr(),
            rows,
            n,
            n,
            k,
            &opts,
            idx.as_mut_ptr(),
            k,
            counts.as_mut_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    // The first call grows this thread's workspace (and the level is detected).
    assert_eq!(topk(&mut idx, &mut counts), 0);
    let kern = Kernels::active().unwrap();
    let before = allocs();
    for _ in 0..3 {
        assert_eq!(topk(&mut idx, &mut counts), 0);
        let st = unsafe {
            tkr_threshold_f32(
                s.as_ptr(),
                rows,
                n,
                n,
                5000.0,
                std::ptr::null(),
                idx.as_mut_ptr(),
                n,
                counts.as_mut_ptr(),
            )
        };
        assert_eq!(st, 0);
        kern.topk_f32(
            Matrix::new(&s, rows, n, n).unwrap(),
            TopK::Capacity(0.0009),
            Order::Score,
            &RowSpec::default(),
            TopkOut {
                indices: MatrixMut::new(&mut idx, rows, k, k).unwrap(),
                scores: None,
                counts: Some(&mut counts),
            },
            None,
        )
        .unwrap();
    }
    assert_eq!(allocs() - before, 0, "allocations on the hot path");
}
