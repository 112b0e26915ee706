//! Many threads call every kernel family through the C entry points while another
//! thread keeps switching the ISA level (`tkr_set_isa`, every supported level and
//! AUTO); every result must equal, bit for bit, the single-threaded reference computed
//! first (the families here are bit-identical across levels; sigmoid inputs hold no
//! NaN, whose result's sign and payload are unspecified).
//!
//! Its own test binary, because it switches the process-wide level. The C twin,
//! ffi-tests/c/concurrency.c, runs the same check through the shared and static
//! library; this one also runs under `-Zsanitizer=address` (.ci/test).
//!
//! A family adds one job to `jobs()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokenroute::ffi::isa::*;
use tokenroute::ffi::score::*;
use tokenroute::ffi::select::*;
use tokenroute::ffi::*;

type Job = Box<dyn Fn(&mut Vec<f32>) -> tkr_status + Send + Sync>;

/// A deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 2500.0 - 4.0
    }
}

fn jobs() -> Vec<(&'static str, Job)> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut x: Vec<f32> = (0..1500).map(|_| r.f32() * 6.0).collect();
    x[..4].copy_from_slice(&[f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-45]);
    let (n, d, e, hs) = (61usize, 131usize, 6usize, 133usize);
    let h32: Vec<f32> = (0..n * hs).map(|_| r.f32()).collect();
    let w32: Vec<f32> = (0..e * d).map(|_| r.f32() * 0.1).collect();
    let bias: Vec<f32> = (0..e).map(|_| r.f32()).collect();
    let h16: Vec<u16> = h32
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let w16: Vec<u16> = w32
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let hb: Vec<u16> = h32
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let wb: Vec<u16> = w32
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let (h32, w32, bias) = (Arc::new(h32), Arc::new(w32), Arc::new(bias));
    let score = move |dtype: u32, h: Arc<dyn AsPtr>, w: Arc<dyn AsPtr>, b: bool, act: u32| -> Job {
        let bias = bias.clone();
        Box::new(move |out: &mut Vec<f32>| {
            out.resize(n * e, 0.0);
            let bp = if b { bias.as_ptr() } else { core::ptr::null() };
            // SAFETY: buffers of the documented sizes.
            unsafe {
                tkr_score(
                    dtype,
                    h.ptr(),
                    n,
                    d,
                    hs,
                    w.ptr(),
                    e,
                    d,
                    bp,
                    act,
                    out.as_mut_ptr(),
                    e,
                )
            }
        })
    };
    let sig: Job = Box::new(move |out: &mut Vec<f32>| {
        out.resize(x.len(), 0.0);
        // SAFETY: both hold x.len() floats.
        unsafe { tkr_sigmoid_f32(x.as_ptr(), out.as_mut_ptr(), x.len()) }
    });
    // Selection over the f32 rows of h32 (d valid tokens, hs apart); indices and counts
    // are returned as raw 32-bit words.
    let (h_sel, batch, k) = (h32.clone(), 9usize, 17usize);
    let topk: Job = Box::new(move |out: &mut Vec<f32>| {
        let mut idx = vec![0u32; batch * k];
        // SAFETY: all-zero then init: a valid options struct.
        let mut o: tkr_topk_options = unsafe { core::mem::zeroed() };
        // SAFETY: o is one options struct; buffers of the documented sizes.
        let st = unsafe {
            tkr_topk_options_init(&mut o);
            o.flags = TKR_TOPK_ORDER_SCORE;
            o.keep_first = 2;
            tkr_topk_f32(
                h_sel.as_ptr(),
                batch,
                d,
                hs,
                k,
                &o,
                idx.as_mut_ptr(),
                k,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            )
        };
        out.extend(idx.iter().map(|&i| f32::from_bits(i)));
        st
    });
    let h_thr = h32.clone();
    let threshold: Job = Box::new(move |out: &mut Vec<f32>| {
        let mut idx = vec![0u32; batch * d];
        let mut counts = vec![0usize; batch];
        // SAFETY: buffers of the documented sizes.
        let st = unsafe {
            tkr_threshold_f32(
                h_thr.as_ptr(),
                batch,
                d,
                hs,
                0.25,
                core::ptr::null(),
                idx.as_mut_ptr(),
                d,
                counts.as_mut_ptr(),
            )
        };
        for r in 0..batch {
            out.extend(
                idx[r * d..r * d + counts[r]]
                    .iter()
                    .map(|&i| f32::from_bits(i)),
            );
            out.push(f32::from_bits(counts[r] as u32));
        }
        st
    });
    vec![
        ("sigmoid_f32", sig),
        ("topk f32 by score, keep_first", topk),
        ("threshold f32", threshold),
        (
            "score f32 sigmoid",
            score(
                TKR_DTYPE_F32,
                h32.clone(),
                w32.clone(),
                true,
                TKR_ACT_SIGMOID,
            ),
        ),
        (
            "score f16 none",
            score(
                TKR_DTYPE_F16,
                Arc::new(h16),
                Arc::new(w16),
                true,
                TKR_ACT_NONE,
            ),
        ),
        (
            "score bf16 sigmoid",
            score(
                TKR_DTYPE_BF16,
                Arc::new(hb),
                Arc::new(wb),
                false,
                TKR_ACT_SIGMOID,
            ),
        ),
    ]
}

trait AsPtr: Send + Sync {
    fn ptr(&self) -> *const core::ffi::c_void;
}
impl<T: Send + Sync> AsPtr for Vec<T> {
    fn ptr(&self) -> *const core::ffi::c_void {
        self.as_ptr() as *const _
    }
}

#[test]
fn many_threads_every_family_while_the_level_switches() {
    let jobs = Arc::new(jobs());
    let reference: Vec<Vec<u32>> = jobs
        .iter()
        .map(|(name, job)| {
            let mut out = Vec::new();
            assert_eq!(job(&mut out), TKR_STATUS_OK, "{name}");
            out.iter().map(|v| v.to_bits()).collect()
        })
        .collect();
    let reference = Arc::new(reference);
    let stop = Arc::new(AtomicBool::new(false));
    let switches = Arc::new(AtomicU64::new(0));
    let switcher = {
        let (stop, switches) = (stop.clone(), switches.clone());
        std::thread::spawn(move || {
            let mask = tkr_supported_isas();
            let mut id = 0u32;
            while !stop.load(Ordering::Relaxed) {
                id = (id + 1) % 5;
                if id != TKR_ISA_AUTO && mask & (1 << id) == 0 {
                    continue;
                }
                assert_eq!(tkr_set_isa(id), TKR_STATUS_OK);
                switches.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while switches.load(Ordering::Relaxed) < 100 {
        std::thread::yield_now();
    }
    let iters: usize = std::env::var("TKR_TEST_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (jobs, reference) = (jobs.clone(), reference.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for it in 0..iters {
                    for k in 0..jobs.len() {
                        let j = (k + t + it) % jobs.len();
                        let (name, job) = &jobs[j];
                        out.clear();
                        assert_eq!(job(&mut out), TKR_STATUS_OK, "{name}");
                        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                        assert!(
                            bits == reference[j],
                            "{name}: differs from the single-threaded reference"
                        );
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    switcher.join().unwrap();
    assert!(switches.load(Ordering::Relaxed) >= 100);
    println!(
        "{} calls on 8 threads, {} level switches",
        8 * iters * jobs.len(),
        switches.load(Ordering::Relaxed)
    );
}
