//! Criterion benchmarks of the scoring family on every ISA level, with the machine's
//! ceilings measured in the same run:
//! - `ceiling/read/<bytes>`: a plain SIMD sum over the same number of bytes (the
//!   single-core read ceiling the fused scoring is held to);
//! - `ceiling/copy/<bytes>`: `copy_from_slice` of the same bytes (the bound of the
//!   elementwise sigmoid at sizes beyond the caches).
//!
//! Names: `<op>/<level>/<shape>`. Throughput is bytes of input read (H for scoring,
//! x for sigmoid), so the ratio to the read ceiling can be read off directly.
//!
//! `cargo bench --bench kernels -- <filter>`; TKR_BENCH_QUICK=1 shortens every group.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tokenroute::{bf16, f16, Activation, Element, Kernels, Matrix, MatrixMut};

fn quick() -> bool {
    std::env::var_os("TKR_BENCH_QUICK").is_some()
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(if quick() { 100 } else { 500 }));
    g.measurement_time(Duration::from_millis(if quick() { 300 } else { 2000 }));
    g
}

/// Sum of `x` with 8 independent AVX-512 (or AVX2, or scalar) accumulators: reads
/// every byte once, as fast as this core can stream them.
fn read_sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { read_sum_avx512(x) };
        }
    }
    x.chunks(64).map(|c| c.iter().sum::<f32>()).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn read_sum_avx512(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 8];
    let chunks = x.chunks_exact(128);
    let rest = chunks.remainder();
    for c in chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: c has 128 floats; k * 16 + 16 <= 128.
            *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(c.as_ptr().add(k * 16)) });
        }
    }
    let mut s = 0.0;
    for a in acc {
        s += _mm512_reduce_add_ps(a);
    }
    s + rest.iter().sum::<f32>()
}

fn ceilings(c: &mut Criterion) {
    let mut g = configure(c, "ceiling");
    // The H sizes of the scoring shapes (f32 and 16-bit), and the sigmoid sizes.
    for bytes in [
        768usize << 10,
        1536 << 10,
        4 << 20,
        32 << 20,
        64 << 20,
        256 << 20,
        512 << 20,
    ] {
        let x = vec![1.0f32; bytes / 4];
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function(BenchmarkId::new("read", bytes), |b| {
            b.iter(|| black_box(read_sum(black_box(&x))))
        });
        if bytes <= 64 << 20 {
            let mut y = vec![0.0f32; bytes / 4];
            g.bench_function(BenchmarkId::new("copy", bytes), |b| {
                b.iter(|| {
                    y.copy_from_slice(black_box(&x));
                    black_box(&y);
                })
            });
        }
    }
}

fn sigmoid(c: &mut Criterion) {
    let mut g = configure(c, "sigmoid_f32");
    for n in [1usize << 20, 16 << 20] {
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 2001) as f32 * 0.01 - 10.0)
            .collect();
        let mut y = vec![0.0f32; n];
        g.throughput(Throughput::Bytes((n * 4) as u64));
        for k in Kernels::all_supported() {
            g.bench_function(BenchmarkId::new(k.isa().name(), n), |b| {
                b.iter(|| k.sigmoid_f32(black_box(&x), &mut y).unwrap())
            });
        }
    }
}

fn score_shape<T: Element>(c: &mut Criterion, conv: fn(f32) -> T, n: usize, d: usize, e: usize) {
    let name = format!("score_{}_e{e}", T::DTYPE.name());
    let mut g = configure(c, &name);
    let h: Vec<T> = (0..n * d)
        .map(|i| conv(((i * 7919) % 1999) as f32 * 1e-3 - 1.0))
        .collect();
    let w: Vec<T> = (0..e * d)
        .map(|i| conv(((i * 104729) % 997) as f32 * 1e-3 - 0.5))
        .collect();
    let bias = vec![0.1f32; e];
    let mut out = vec![0.0f32; n * e];
    g.throughput(Throughput::Bytes((n * d * std::mem::size_of::<T>()) as u64));
    for k in Kernels::all_supported() {
        // The scalar reference is ~50x slower; one shape is enough to show the ratio.
        if k.isa() == tokenroute::Isa::Scalar && n * d > 4096 * 4096 {
            continue;
        }
        g.bench_function(BenchmarkId::new(k.isa().name(), format!("{n}x{d}")), |b| {
            b.iter(|| {
                k.score(
                    Matrix::dense(&h, n, d).unwrap(),
                    Matrix::dense(&w, e, d).unwrap(),
                    Some(&bias),
                    Activation::Sigmoid,
                    MatrixMut::dense(&mut out, n, e).unwrap(),
                )
                .unwrap()
            })
        });
    }
}

fn score(c: &mut Criterion) {
    for (n, d) in [(512usize, 768usize), (4096, 4096), (32768, 4096)] {
        for e in [1usize, 8] {
            score_shape::<f32>(c, |x| x, n, d, e);
            score_shape::<f16>(c, f16::from_f32, n, d, e);
            score_shape::<bf16>(c, bf16::from_f32, n, d, e);
        }
    }
}

criterion_group!(benches, ceilings, sigmoid, score);
criterion_main!(benches);
