//! Every registry entry of the scoring family (not just each level's default) on the
//! issue's shapes, each timed interleaved with a plain SIMD read of the same bytes so
//! that variants can be compared by their fraction of the read ceiling even on a
//! noisy machine. `cargo bench --bench variants [-- FILTER]`.

use std::hint::black_box;
use std::time::Instant;
use tokenroute_kernels::score::{Activation, ScoreArgs, ScoreFn, SCORE_BF16, SCORE_F16, SCORE_F32};
use tokenroute_kernels::KernelInfo;

#[path = "bench/ceiling.rs"]
#[allow(dead_code)]
mod ceiling;

fn run_case<T: Copy>(
    reg: &[KernelInfo<ScoreFn<T>>],
    conv: fn(f32) -> T,
    dtype: &str,
    n: usize,
    d: usize,
    e: usize,
    filter: &str,
) {
    let h: Vec<T> = (0..n * d)
        .map(|i| conv(((i * 7919) % 1999) as f32 * 1e-3 - 1.0))
        .collect();
    let w: Vec<T> = (0..e * d)
        .map(|i| conv(((i * 104729) % 997) as f32 * 1e-4 - 0.05))
        .collect();
    let mut out = vec![0f32; n * e];
    let bytes = n * d * std::mem::size_of::<T>();
    let ceil_buf = vec![1f32; bytes / 4];
    for k in reg
        .iter()
        .filter(|k| k.isa.is_supported() && k.isa != tokenroute_kernels::Isa::Scalar)
    {
        let id = k.id().to_string();
        let name = format!("{id} {dtype} e{e} {n}x{d}");
        if !name.contains(filter) {
            continue;
        }
        let args = ScoreArgs {
            h: h.as_ptr(),
            n,
            d,
            h_stride: d,
            w: w.as_ptr(),
            e,
            w_stride: d,
            bias: std::ptr::null(),
            act: Activation::Sigmoid,
            out: out.as_mut_ptr(),
            out_stride: e,
        };
        let (mut ts, mut cs) = (Vec::new(), Vec::new());
        // SAFETY: the buffers match the arguments; the CPU supports the entry's tier.
        unsafe { (k.f)(&args) };
        let start = Instant::now();
        while ts.len() < 15 || (start.elapsed().as_secs_f64() < 1.0 && ts.len() < 400) {
            let t = Instant::now();
            black_box(ceiling::read_sum(&ceil_buf));
            cs.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            unsafe { (k.f)(&args) };
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(|a, b| a.total_cmp(b));
        cs.sort_by(|a, b| a.total_cmp(b));
        let (t, c) = (ts[ts.len() / 2], cs[cs.len() / 2]);
        println!(
            "{name:<60} {:>9.3} ms {:>7.2} GB/s  {:>4.0}% of read ({:.2} GB/s)  {:>6.1} GFLOP/s",
            t * 1e3,
            bytes as f64 / t / 1e9,
            100.0 * c / t,
            bytes as f64 / c / 1e9,
            2.0 * (n * d * e) as f64 / t / 1e9
        );
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    for &(n, d) in &[(512usize, 768usize), (4096, 4096), (32768, 4096)] {
        for e in [1usize, 8] {
            run_case(SCORE_F32, |x| x, "f32", n, d, e, &filter);
            run_case(SCORE_F16, half::f16::from_f32, "f16", n, d, e, &filter);
            run_case(SCORE_BF16, half::bf16::from_f32, "bf16", n, d, e, &filter);
        }
    }
}
