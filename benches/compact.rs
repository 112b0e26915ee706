//! Compaction benchmarks: gather / scatter / in-place compaction / gated scatter-add /
//! KV-cache compaction on every ISA level, next to the copy ceilings measured in the
//! same run (a plain `memcpy` of the same bytes, and our own streaming copy of them).
//!
//! Throughput is the bytes moved once (rows x row bytes), as a memcpy counts them.
//! Run: `taskset -c 1 cargo bench --bench compact` (a filter after `--` selects
//! groups); `python3 benches/peers/criterion_ratios.py compact` prints the ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tokenroute::{
    bf16, Activation, Isa, Kernels, KvCacheMut, KvKeep, KvLayout, Matrix, MatrixMut, Order,
    RouteOut, RouteSelect, RowSpec, Tau, ThresholdOut, TopK, TopkOut,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A sorted random half of `0..n` (exactly n / 2 rows).
fn half_sorted(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        v.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    v.truncate(n / 2);
    v.sort();
    v
}

/// A vector of `n` elements whose every byte is non-zero, so that every page is really
/// mapped (an untouched zeroed allocation reads from the shared zero page).
fn filled<T: Copy + Default>(n: usize, byte: u8) -> Vec<T> {
    let mut v = vec![T::default(); n];
    // SAFETY: the benchmarks only use plain-data element types (integers, floats),
    // for which every bit pattern is valid.
    unsafe {
        std::ptr::write_bytes(
            v.as_mut_ptr() as *mut u8,
            byte,
            n * core::mem::size_of::<T>(),
        )
    };
    v
}

fn levels() -> Vec<&'static Kernels> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon]
        .into_iter()
        .filter_map(Kernels::for_isa)
        .collect()
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// The copy ceilings of `bytes` bytes between the same two buffers the kernel uses
/// (`src` to `dst`, both at least `bytes` long), so that both see the same cache state:
/// libc `memcpy`, and the best level's row-copy kernel as one contiguous row (which
/// streams its stores past the cache above the NT threshold).
fn ceilings(g: &mut Group<'_>, src: &[u8], dst: &mut [u8], bytes: usize) {
    g.bench_function("ceiling_memcpy", |b| {
        b.iter(|| dst[..bytes].copy_from_slice(black_box(&src[..bytes])))
    });
    let best = *levels().last().unwrap();
    let idx = [0u32];
    g.bench_function("ceiling_stream_copy", |b| {
        b.iter(|| {
            best.gather_rows(
                Matrix::dense(black_box(&src[..bytes]), 1, bytes).unwrap(),
                &idx,
                MatrixMut::dense(&mut dst[..bytes], 1, bytes).unwrap(),
            )
            .unwrap()
        })
    });
}

/// Reading the selected rows only (no stores): the bound the access pattern itself sets.
fn read_rows(g: &mut Group<'_>, src: &[u8], row_bytes: usize, idx: &[u32]) {
    g.bench_function("ceiling_read_rows", |b| {
        b.iter(|| {
            let mut acc = [0u64; 8];
            for &i in idx {
                let row = &black_box(src)[i as usize * row_bytes..][..row_bytes];
                let mut chunks = row.chunks_exact(64);
                for c in &mut chunks {
                    for (k, a) in acc.iter_mut().enumerate() {
                        *a ^= u64::from_ne_bytes(c[8 * k..8 * k + 8].try_into().unwrap());
                    }
                }
                for (k, &x) in chunks.remainder().iter().enumerate() {
                    acc[k % 8] ^= x as u64;
                }
            }
            acc
        })
    });
}

/// The bytes of a vector of plain data.
fn bytes_of<T>(v: &[T]) -> &[u8] {
    // SAFETY: plain-data element types only (see `filled`).
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn bytes_of_mut<T>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as in bytes_of; every bit pattern is valid for these types.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, std::mem::size_of_val(v)) }
}

fn configure(g: &mut Group<'_>) {
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

fn gather_scatter_case<T: Copy + Default>(c: &mut Criterion, name: &str, rows: usize, cols: usize) {
    let idx = half_sorted(rows, 42);
    let k = idx.len();
    let bytes = k * cols * core::mem::size_of::<T>();
    let mut full: Vec<T> = filled(rows * cols, 0x3c);
    let mut half: Vec<T> = filled(k * cols, 0x3d);

    let mut g = c.benchmark_group(format!("gather/{name}"));
    configure(&mut g);
    g.throughput(Throughput::Bytes(bytes as u64));
    ceilings(&mut g, bytes_of(&full), bytes_of_mut(&mut half), bytes);
    read_rows(
        &mut g,
        bytes_of(&full),
        cols * core::mem::size_of::<T>(),
        &idx,
    );
    for lv in levels() {
        g.bench_function(BenchmarkId::from_parameter(lv.isa().name()), |b| {
            b.iter(|| {
                lv.gather_rows(
                    Matrix::dense(black_box(&full), rows, cols).unwrap(),
                    &idx,
                    MatrixMut::dense(&mut half, k, cols).unwrap(),
                )
                .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("scatter/{name}"));
    configure(&mut g);
    g.throughput(Throughput::Bytes(bytes as u64));
    ceilings(&mut g, bytes_of(&half), bytes_of_mut(&mut full), bytes);
    for lv in levels() {
        g.bench_function(BenchmarkId::from_parameter(lv.isa().name()), |b| {
            b.iter(|| {
                lv.scatter_rows(
                    Matrix::dense(black_box(&half), k, cols).unwrap(),
                    &idx,
                    MatrixMut::dense(&mut full, rows, cols).unwrap(),
                )
                .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("compact_in_place/{name}"));
    configure(&mut g);
    g.throughput(Throughput::Bytes(bytes as u64));
    for lv in levels() {
        g.bench_function(BenchmarkId::from_parameter(lv.isa().name()), |b| {
            b.iter(|| {
                lv.compact_rows(MatrixMut::dense(&mut full, rows, cols).unwrap(), &idx)
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_gather_scatter(c: &mut Criterion) {
    gather_scatter_case::<f32>(c, "4096x4096_f32", 4096, 4096);
    gather_scatter_case::<bf16>(c, "4096x4096_bf16", 4096, 4096);
    gather_scatter_case::<f32>(c, "4096x768_f32", 4096, 768);
    gather_scatter_case::<bf16>(c, "4096x768_bf16", 4096, 768);
}

/// Small rows: position ids (i32, i64), a byte mask, 16-element f32 and bf16 rows.
fn bench_small_rows(c: &mut Criterion) {
    fn case<T: Copy + Default>(c: &mut Criterion, name: &str, cols: usize) {
        let rows = 4096;
        gather_scatter_case::<T>(c, &format!("small_{name}"), rows, cols);
    }
    case::<u8>(c, "mask_u8", 1);
    case::<i32>(c, "pos_i32", 1);
    case::<i64>(c, "pos_i64", 1);
    case::<bf16>(c, "16xbf16", 16);
    case::<f32>(c, "16xf32", 16);
}

fn bench_scatter_add(c: &mut Criterion) {
    fn case<T: tokenroute::Element>(c: &mut Criterion, name: &str, rows: usize, cols: usize) {
        let idx = half_sorted(rows, 7);
        let k = idx.len();
        let mut h: Vec<T> = filled(rows * cols, 0x3c);
        let y: Vec<T> = filled(k * cols, 0x3b);
        let gate: Vec<f32> = (0..k).map(|j| j as f32 / k as f32).collect();
        // Bytes moved: read h and y rows, write h rows.
        let bytes = 3 * k * cols * core::mem::size_of::<T>();
        let mut g = c.benchmark_group(format!("scatter_add/{name}"));
        configure(&mut g);
        g.throughput(Throughput::Bytes(bytes as u64));
        for lv in levels() {
            for gated in [false, true] {
                let id = format!("{}{}", lv.isa().name(), if gated { "_gated" } else { "" });
                g.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| {
                        lv.scatter_add_rows(
                            MatrixMut::dense(&mut h, rows, cols).unwrap(),
                            &idx,
                            Matrix::dense(black_box(&y), k, cols).unwrap(),
                            gated.then_some(&gate[..]),
                        )
                        .unwrap()
                    })
                });
            }
        }
        g.finish();
    }
    case::<f32>(c, "4096x4096_f32", 4096, 4096);
    case::<bf16>(c, "4096x4096_bf16", 4096, 4096);
    case::<f32>(c, "4096x768_f32", 4096, 768);
    case::<bf16>(c, "4096x768_bf16", 4096, 768);
}

fn bench_kv(c: &mut Criterion) {
    let (t, h, d) = (4096usize, 8usize, 128usize);
    let mut cache: Vec<bf16> = filled(t * h * d, 0x3c);
    let shared = half_sorted(t, 3);
    let per_head: Vec<u32> = (0..h)
        .flat_map(|i| half_sorted(t, 100 + i as u64))
        .collect();
    let bytes = shared.len() * h * d * 2;
    let mut g = c.benchmark_group("kv_compact/4096x8x128_bf16");
    configure(&mut g);
    g.throughput(Throughput::Bytes(bytes as u64));
    for lv in levels() {
        for layout in [KvLayout::TokenMajor, KvLayout::HeadMajor] {
            for per in [false, true] {
                let id = format!(
                    "{}_{}_{}",
                    lv.isa().name(),
                    if layout == KvLayout::TokenMajor {
                        "thd"
                    } else {
                        "htd"
                    },
                    if per { "per_head" } else { "shared" }
                );
                g.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.iter(|| {
                        let view = KvCacheMut::dense(&mut cache, layout, t, h, d).unwrap();
                        let keep = if per {
                            KvKeep::PerHead(&per_head)
                        } else {
                            KvKeep::Shared(&shared)
                        };
                        lv.kv_compact(view, keep).unwrap()
                    })
                });
            }
        }
    }
    g.finish();
}

/// The reference ceiling: a 1 GiB single-core copy.
fn bench_copy_1gib(c: &mut Criterion) {
    let bytes = 1usize << 30;
    let src: Vec<u8> = filled(bytes, 1);
    let mut dst: Vec<u8> = filled(bytes, 2);
    let mut g = c.benchmark_group("copy_1GiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(bytes as u64));
    ceilings(&mut g, &src, &mut dst, bytes);
    g.finish();
}

/// The fused route call against the three calls it replaces (score, select, gather),
/// top-k of half the tokens and a threshold at the median score, on the best level and
/// on scalar.
fn bench_route(c: &mut Criterion) {
    fn case<T: tokenroute::Element>(
        c: &mut Criterion,
        name: &str,
        n: usize,
        d: usize,
        conv: fn(f32) -> T,
    ) {
        let mut rng = Rng(5);
        let h: Vec<T> = (0..n * d)
            .map(|_| conv(((rng.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0))
            .collect();
        let w: Vec<T> = (0..d)
            .map(|_| conv(((rng.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1))
            .collect();
        let k = n / 2;
        let best = *levels().last().unwrap();
        // The threshold that selects about half: the median score.
        let mut s = vec![0f32; n];
        best.score(
            Matrix::dense(&h, n, d).unwrap(),
            Matrix::dense(&w, 1, d).unwrap(),
            None,
            Activation::Sigmoid,
            MatrixMut::dense(&mut s, n, 1).unwrap(),
        )
        .unwrap();
        let mut sorted = s.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let tau = sorted[n / 2];
        let mut idx = vec![0u32; n];
        let mut sel = vec![0f32; n];
        let mut rows = vec![T::default(); n * d];
        let mut ws = vec![0u64; tokenroute::route_workspace_len(n)];
        let mut tws = vec![0u64; tokenroute::topk_workspace_len(n)];
        let spec = RowSpec::default();
        let mut g = c.benchmark_group(format!("route/{name}"));
        configure(&mut g);
        g.throughput(Throughput::Bytes((n * d * std::mem::size_of::<T>()) as u64));
        for lv in [Kernels::for_isa(Isa::Scalar).unwrap(), best] {
            let l = lv.isa().name();
            g.bench_function(format!("{l}_topk_fused"), |b| {
                b.iter(|| {
                    lv.route(
                        Matrix::dense(black_box(&h), n, d).unwrap(),
                        &w,
                        None,
                        Activation::Sigmoid,
                        RouteSelect::TopK(TopK::Fixed(k), Order::Position),
                        &spec,
                        RouteOut {
                            indices: Some(&mut idx),
                            scores: Some(&mut sel),
                            rows: MatrixMut::dense(&mut rows, n, d).unwrap(),
                        },
                        Some(&mut ws),
                    )
                    .unwrap()
                })
            });
            g.bench_function(format!("{l}_topk_three_calls"), |b| {
                b.iter(|| {
                    lv.score(
                        Matrix::dense(black_box(&h), n, d).unwrap(),
                        Matrix::dense(&w, 1, d).unwrap(),
                        None,
                        Activation::Sigmoid,
                        MatrixMut::dense(&mut s, n, 1).unwrap(),
                    )
                    .unwrap();
                    lv.topk_f32(
                        Matrix::dense(&s, 1, n).unwrap(),
                        TopK::Fixed(k),
                        Order::Position,
                        &spec,
                        TopkOut {
                            indices: MatrixMut::dense(&mut idx[..k], 1, k).unwrap(),
                            scores: Some(MatrixMut::dense(&mut sel[..k], 1, k).unwrap()),
                            counts: None,
                        },
                        Some(&mut tws),
                    )
                    .unwrap();
                    lv.gather_rows(
                        Matrix::dense(&h, n, d).unwrap(),
                        &idx[..k],
                        MatrixMut::dense(&mut rows[..k * d], k, d).unwrap(),
                    )
                    .unwrap()
                })
            });
            g.bench_function(format!("{l}_threshold_fused"), |b| {
                b.iter(|| {
                    lv.route(
                        Matrix::dense(black_box(&h), n, d).unwrap(),
                        &w,
                        None,
                        Activation::Sigmoid,
                        RouteSelect::Threshold(tau),
                        &spec,
                        RouteOut {
                            indices: Some(&mut idx),
                            scores: Some(&mut sel),
                            rows: MatrixMut::dense(&mut rows, n, d).unwrap(),
                        },
                        None,
                    )
                    .unwrap()
                })
            });
            g.bench_function(format!("{l}_threshold_three_calls"), |b| {
                b.iter(|| {
                    lv.score(
                        Matrix::dense(black_box(&h), n, d).unwrap(),
                        Matrix::dense(&w, 1, d).unwrap(),
                        None,
                        Activation::Sigmoid,
                        MatrixMut::dense(&mut s, n, 1).unwrap(),
                    )
                    .unwrap();
                    let mut cnt = [0usize];
                    lv.threshold_f32(
                        Matrix::dense(&s, 1, n).unwrap(),
                        Tau::Fixed(tau),
                        &spec,
                        ThresholdOut {
                            indices: Some(MatrixMut::dense(&mut idx, 1, n).unwrap()),
                            mask: None,
                            counts: Some(&mut cnt),
                        },
                    )
                    .unwrap();
                    let c = cnt[0];
                    for j in 0..c {
                        sel[j] = s[idx[j] as usize];
                    }
                    lv.gather_rows(
                        Matrix::dense(&h, n, d).unwrap(),
                        &idx[..c],
                        MatrixMut::dense(&mut rows[..c * d], c, d).unwrap(),
                    )
                    .unwrap()
                })
            });
        }
        g.finish();
    }
    case::<f32>(c, "4096x4096_f32", 4096, 4096, |x| x);
    case::<bf16>(c, "4096x4096_bf16", 4096, 4096, bf16::from_f32);
    case::<bf16>(c, "4096x768_bf16", 4096, 768, bf16::from_f32);
}

criterion_group!(
    benches,
    bench_route,
    bench_gather_scatter,
    bench_small_rows,
    bench_scatter_add,
    bench_kv,
    bench_copy_1gib
);
criterion_main!(benches);
