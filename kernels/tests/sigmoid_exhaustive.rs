//! Every one of the 2^32 f32 inputs, on every tier, against an f64 oracle: at most
//! 1 ulp from the oracle's f32 rounding, and bit-identical across tiers.
//! Takes a minute or two on two cores in release mode (the README's test command);
//! an unoptimized build checks every 251st pattern instead.

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenroute_kernels::sigmoid::SIGMOID_F32;

fn oracle(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x as f64;
    (1.0 / (1.0 + (-x).exp())) as f32
}

#[test]
fn all_f32_inputs() {
    let kernels = runnable(SIGMOID_F32);
    let step: u64 = if cfg!(debug_assertions) { 251 } else { 1 };
    const CHUNK: u64 = 1 << 16;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let next = AtomicU64::new(0);
    let max_ulp = AtomicU64::new(0);
    let checked = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut x = Vec::with_capacity(CHUNK as usize);
                let mut want = vec![0f32; CHUNK as usize];
                let mut got = vec![0f32; CHUNK as usize];
                let mut local_max = 0;
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    let start = c * CHUNK;
                    if start >= 1 << 32 {
                        break;
                    }
                    x.clear();
                    let mut b = start;
                    while b < start + CHUNK {
                        x.push(f32::from_bits(b as u32));
                        b += step;
                    }
                    let n = x.len();
                    // SAFETY: x, want and got hold at least n elements.
                    unsafe { (kernels[0].f)(x.as_ptr(), want.as_mut_ptr(), n) };
                    for i in 0..n {
                        let o = oracle(x[i]);
                        let u = ulp_diff(want[i], o);
                        assert!(
                            u <= 1,
                            "scalar: x = {:#010x}: got {:e}, oracle {o:e}",
                            x[i].to_bits(),
                            want[i]
                        );
                        local_max = local_max.max(u);
                    }
                    for k in &kernels[1..] {
                        // SAFETY: as above.
                        unsafe { (k.f)(x.as_ptr(), got.as_mut_ptr(), n) };
                        for i in 0..n {
                            assert!(
                                want[i].to_bits() == got[i].to_bits(),
                                "{}: x = {:#010x}: {:#010x} vs scalar {:#010x}",
                                k.id(),
                                x[i].to_bits(),
                                got[i].to_bits(),
                                want[i].to_bits()
                            );
                        }
                    }
                    checked.fetch_add(n as u64, Ordering::Relaxed);
                }
                max_ulp.fetch_max(local_max, Ordering::Relaxed);
            });
        }
    });
    let ids: Vec<String> = kernels.iter().map(|k| k.id().to_string()).collect();
    eprintln!(
        "sigmoid: {} inputs checked on {:?}; max distance from the f64 oracle's rounding: {} ulp",
        checked.load(Ordering::Relaxed),
        ids,
        max_ulp.load(Ordering::Relaxed)
    );
}
