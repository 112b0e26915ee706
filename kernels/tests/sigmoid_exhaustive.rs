//! Every one of the 2^32 f32 inputs, on every tier: within 2.5 ulp of the exact
//! sigmoid (an f64 evaluation, ~1e-16 relative), hence at most 2 ulp from the
//! correctly rounded result; bit-identical across tiers (NaN inputs: the canonical
//! quiet NaN 0x7fc00000).
//! A few minutes on two cores in release mode (the README's test command); an
//! unoptimized build checks every 251st pattern instead, and
//! `TOKENROUTE_SIGMOID_STEP=<n>` checks every n-th (for emulated targets).

mod common;
use common::*;
use std::sync::atomic::{AtomicU64, Ordering};
use tokenroute_kernels::sigmoid::SIGMOID_F32;

/// The exact sigmoid (f64, error ~1e-16 relative).
fn exact(x: f32) -> f64 {
    1.0 / (1.0 + (-(x as f64)).exp())
}

/// |got - want| in units of the f32 ulp at `want` (2^-149 below the normal range).
fn ulps(got: f32, want: f64) -> f64 {
    let w = want.abs();
    let ulp = if w < f32::MIN_POSITIVE as f64 {
        f32::from_bits(1) as f64
    } else {
        let e = w.log2().floor() as i32;
        // The f32 grid spacing in [2^e, 2^(e+1)).
        (2f64).powi(e - 23)
    };
    (got as f64 - want).abs() / ulp
}

#[test]
fn all_f32_inputs() {
    let kernels = runnable(SIGMOID_F32);
    let step: u64 = match std::env::var("TOKENROUTE_SIGMOID_STEP") {
        Ok(v) => v
            .parse()
            .expect("TOKENROUTE_SIGMOID_STEP must be a positive integer"),
        Err(_) if cfg!(debug_assertions) => 251,
        Err(_) => 1,
    };
    assert!(step >= 1);
    const CHUNK: u64 = 1 << 16;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let next = AtomicU64::new(0);
    let max_err = AtomicU64::new(0); // in 1e-6 ulp
    let worst_input = AtomicU64::new(0);
    let checked = AtomicU64::new(0);
    let correctly_rounded = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut x = Vec::with_capacity(CHUNK as usize);
                let mut want = vec![0f32; CHUNK as usize];
                let mut got = vec![0f32; CHUNK as usize];
                let (mut local_max, mut local_x, mut local_cr) = (0f64, 0u32, 0u64);
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
                        if x[i].is_nan() {
                            assert_eq!(
                                want[i].to_bits(),
                                0x7fc0_0000,
                                "scalar: NaN input {:#010x} gave {:#010x}",
                                x[i].to_bits(),
                                want[i].to_bits()
                            );
                            continue;
                        }
                        let e = exact(x[i]);
                        let err = ulps(want[i], e);
                        assert!(
                            err < 2.5,
                            "scalar: x = {:e} ({:#010x}): got {:e}, exact {e:e}: {err:.3} ulp",
                            x[i],
                            x[i].to_bits(),
                            want[i]
                        );
                        if err > local_max {
                            local_max = err;
                            local_x = x[i].to_bits();
                        }
                        local_cr += (want[i] == e as f32) as u64;
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
                let bits = (local_max * 1e6) as u64;
                if bits > max_err.fetch_max(bits, Ordering::Relaxed) {
                    worst_input.store(local_x as u64, Ordering::Relaxed);
                }
                correctly_rounded.fetch_add(local_cr, Ordering::Relaxed);
            });
        }
    });
    let ids: Vec<String> = kernels.iter().map(|k| k.id().to_string()).collect();
    let n = checked.load(Ordering::Relaxed);
    eprintln!(
        "sigmoid: {n} inputs on {ids:?}, bit-identical across tiers; max error {:.4} ulp of the exact value \
         (at x = {:e}); {:.3}% of non-NaN results correctly rounded",
        max_err.load(Ordering::Relaxed) as f64 / 1e6,
        f32::from_bits(worst_input.load(Ordering::Relaxed) as u32),
        100.0 * correctly_rounded.load(Ordering::Relaxed) as f64 / (n as f64 * (1.0 - 1.0 / 256.0))
    );
}
