//! Sparse attention benchmarks on the shapes of issue 5, every level this CPU has, with
//! the machine's own ceilings measured in the same run:
//!
//! - `attend/ceiling/fma_peak`: a single-core chain-free f32 FMA loop (throughput in
//!   flops), the denominator of the prefill efficiency;
//! - `attend/ceiling/read_*`: a plain SIMD read of exactly the K/V bytes a decode step
//!   touches, in the same order (warm, and cold after evicting the caches);
//! - `attend/prefill/*`: 512 queries x 1024 selected keys (of 2048 cached tokens), 32
//!   query heads over 8 KV heads, head dim 128, causal (queries are the last 512 selected
//!   keys) and not; throughput counts `4 * n_q * n_k_visible * d * H_q` flops;
//! - `attend/decode/*`: 1 query per head, 32 heads over 8 (and 32) KV heads, 2048 selected
//!   of 8192 cached keys, f32 and bf16 K/V (throughput in bytes of K/V touched), and dense
//!   attention over all 8192 keys against the 25% subset;
//! - merge, Quest summary and bound at decode sizes.
//!
//! Run: `taskset -c 1 cargo bench --bench attend` (add a filter, e.g. `-- prefill`).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use tokenroute::{
    bf16, AttendElement, AttendExtras, AttendOptions, Heads, HeadsMut, Isa, Kernels, KeySubset,
    MatrixMut,
};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Queries, keys, values and positions of one shape.
struct Data<T> {
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    sel: Vec<u32>,
}

fn data<T: Copy>(
    conv: fn(f32) -> T,
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    sel: Vec<u32>,
) -> Data<T> {
    let mut r = Rng(42);
    let q = (0..n_q * h_q * d).map(|_| conv(r.f())).collect();
    let k = (0..n_k * h_kv * d).map(|_| conv(r.f())).collect();
    let v = (0..n_k * h_kv * d).map(|_| conv(r.f())).collect();
    let k_pos: Vec<u32> = (0..n_k as u32).collect();
    // Queries are the last n_q selected keys (a prefill chunk), or follow every key.
    let q_pos = if n_q == 1 {
        vec![n_k as u32]
    } else {
        sel[sel.len() - n_q..].to_vec()
    };
    Data {
        n_q,
        h_q,
        h_kv,
        d,
        n_k,
        q,
        k,
        v,
        q_pos,
        k_pos,
        sel,
    }
}

impl<T: AttendElement> Data<T> {
    fn visible(&self, causal: bool) -> usize {
        self.q_pos
            .iter()
            .map(|&qp| {
                self.sel
                    .iter()
                    .filter(|&&t| !causal || self.k_pos[t as usize] <= qp)
                    .count()
            })
            .sum()
    }

    fn run(&self, kern: &Kernels, keys: KeySubset<'_>, causal: bool, dot: bool, out: &mut [f32]) {
        let opts = AttendOptions {
            causal,
            q_positions: Some(&self.q_pos),
            k_positions: Some(&self.k_pos),
            bf16_dot: dot,
            ..Default::default()
        };
        kern.attention(
            Heads::dense(&self.q, self.n_q, self.h_q, self.d).unwrap(),
            Heads::dense(&self.k, self.n_k, self.h_kv, self.d).unwrap(),
            Heads::dense(&self.v, self.n_k, self.h_kv, self.d).unwrap(),
            keys,
            &opts,
            HeadsMut::dense(out, self.n_q, self.h_q, self.d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
    }
}

#[cfg(target_arch = "x86_64")]
mod ceilings {
    use std::arch::x86_64::*;

    /// 12 independent FMA chains of 16 lanes: the single-core f32 FMA peak.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn fma_peak(iters: usize) -> f32 {
        let mut a = [_mm512_set1_ps(0.0); 12];
        let x = _mm512_set1_ps(1.000_000_1);
        let y = _mm512_set1_ps(0.999_999_9);
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = _mm512_fmadd_ps(*v, x, y);
            }
        }
        let mut s = _mm512_setzero_ps();
        for v in a {
            s = _mm512_add_ps(s, v);
        }
        _mm512_reduce_add_ps(s)
    }

    /// Reads `bytes` bytes at each row start (64-byte vectors, 4 accumulators), with
    /// software prefetches 16 rows ahead (scattered rows defeat the hardware
    /// prefetchers; without them the plain loop is latency-bound and slower than the
    /// attention kernel itself, which prefetches).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn read_rows(rows: &[*const u8], bytes: usize) -> f32 {
        unsafe {
            let mut acc = [_mm512_setzero_ps(); 4];
            for (i, &p) in rows.iter().enumerate() {
                if let Some(&ahead) = rows.get(i + 16) {
                    let mut o = 0;
                    while o < bytes {
                        _mm_prefetch::<_MM_HINT_T0>(ahead.add(o) as *const i8);
                        o += 64;
                    }
                }
                let mut o = 0;
                while o + 256 <= bytes {
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = _mm512_add_ps(*a, _mm512_loadu_ps(p.add(o + 64 * i) as *const f32));
                    }
                    o += 256;
                }
                while o < bytes {
                    acc[0] = _mm512_add_ps(acc[0], _mm512_loadu_ps(p.add(o) as *const f32));
                    o += 64;
                }
            }
            _mm512_reduce_add_ps(_mm512_add_ps(
                _mm512_add_ps(acc[0], acc[1]),
                _mm512_add_ps(acc[2], acc[3]),
            ))
        }
    }
}

/// Evicts the caches (a 96 MiB write), so the next call reads from memory.
fn evict(buf: &mut [u8]) {
    for i in (0..buf.len()).step_by(64) {
        buf[i] = buf[i].wrapping_add(1);
    }
    black_box(&buf);
}

fn levels() -> Vec<&'static Kernels> {
    Kernels::all_supported().collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("attend");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    #[cfg(target_arch = "x86_64")]
    if Isa::Avx512.is_supported() {
        let iters = 1_000_000;
        g.throughput(Throughput::Elements((iters * 12 * 32) as u64));
        g.bench_function("ceiling/fma_peak", |b| {
            b.iter(|| unsafe { ceilings::fma_peak(black_box(iters)) })
        });
    }

    // ---------------------------------------------------------------- prefill
    let sel_p: Vec<u32> = (0..1024u32).map(|j| 2 * j).collect();
    let pf = data(|x| x, 512, 32, 8, 128, 2048, sel_p.clone());
    let pb = data(bf16::from_f32, 512, 32, 8, 128, 2048, sel_p.clone());
    let mut out = vec![0f32; 512 * 32 * 128];
    for &causal in &[false, true] {
        let tag = if causal { "causal" } else { "full" };
        let flops = 4 * pf.visible(causal) * 128 * 32;
        g.throughput(Throughput::Elements(flops as u64));
        for kern in levels().into_iter().filter(|k| k.isa() != Isa::Scalar) {
            let name = kern.isa().name();
            g.bench_function(format!("prefill/f32/{tag}/{name}"), |b| {
                b.iter(|| pf.run(kern, KeySubset::Indices(&pf.sel), causal, false, &mut out))
            });
            g.bench_function(format!("prefill/bf16/{tag}/{name}"), |b| {
                b.iter(|| pb.run(kern, KeySubset::Indices(&pb.sel), causal, false, &mut out))
            });
            if kern.isa() == Isa::Avx512 {
                g.bench_function(format!("prefill/bf16_dot/{tag}/{name}"), |b| {
                    b.iter(|| pb.run(kern, KeySubset::Indices(&pb.sel), causal, true, &mut out))
                });
            }
        }
    }
    // The scalar reference on a reduced prefill (64 queries x 256 keys, 8/2 heads), next
    // to the best level on the same shape.
    let sel_s: Vec<u32> = (0..256u32).map(|j| 2 * j).collect();
    let ps = data(|x| x, 64, 8, 2, 128, 512, sel_s);
    let mut out_s = vec![0f32; 64 * 8 * 128];
    g.throughput(Throughput::Elements(
        (4 * ps.visible(false) * 128 * 8) as u64,
    ));
    for kern in levels() {
        g.bench_function(
            format!("prefill_small/f32/full/{}", kern.isa().name()),
            |b| b.iter(|| ps.run(kern, KeySubset::Indices(&ps.sel), false, false, &mut out_s)),
        );
    }
    drop((pf, pb, out, ps, out_s));

    // ---------------------------------------------------------------- decode
    let sel_d: Vec<u32> = (0..2048u32).map(|j| 4 * j + (j * 7919) % 4).collect();
    let mut flush = vec![0u8; 96 << 20];
    for &h_kv in &[8usize, 32] {
        let df = data(|x| x, 1, 32, h_kv, 128, 8192, sel_d.clone());
        let db = data(bf16::from_f32, 1, 32, h_kv, 128, 8192, sel_d.clone());
        let mut out = vec![0f32; 32 * 128];
        for (dt, esz) in [("f32", 4usize), ("bf16", 2)] {
            let (kp, vp, n_sel) = if dt == "f32" {
                (
                    df.k.as_ptr() as *const u8,
                    df.v.as_ptr() as *const u8,
                    df.sel.len(),
                )
            } else {
                (
                    db.k.as_ptr() as *const u8,
                    db.v.as_ptr() as *const u8,
                    db.sel.len(),
                )
            };
            let row = 128 * esz;
            let touched = 2 * n_sel * h_kv * row;
            g.throughput(Throughput::Bytes(touched as u64));
            // The same bytes in the same order as the kernel: per tile of 16 (query, head)
            // rows (16 / (32 / h_kv) KV heads) and block of 64 keys, the K rows of each KV
            // head, then their V rows.
            #[cfg(target_arch = "x86_64")]
            if Isa::Avx512.is_supported() {
                let mut rows: Vec<*const u8> = Vec::with_capacity(2 * n_sel * h_kv);
                let per_tile = 16 / (32 / h_kv);
                for g0 in (0..h_kv).step_by(per_tile) {
                    for blk in df.sel.chunks(64) {
                        for g4 in g0..g0 + per_tile {
                            for &t in blk {
                                rows.push(unsafe { kp.add((t as usize * h_kv + g4) * row) });
                            }
                        }
                        for g4 in g0..g0 + per_tile {
                            for &t in blk {
                                rows.push(unsafe { vp.add((t as usize * h_kv + g4) * row) });
                            }
                        }
                    }
                }
                // The same bytes token by token (each token's K row of all heads, then its V
                // row: the most contiguous order).
                let tok: Vec<*const u8> = df
                    .sel
                    .iter()
                    .flat_map(|&t| unsafe {
                        [
                            kp.add(t as usize * h_kv * row),
                            vp.add(t as usize * h_kv * row),
                        ]
                    })
                    .collect();
                g.bench_function(format!("ceiling/read_tokens_warm/{dt}/kv{h_kv}"), |b| {
                    b.iter(|| unsafe { ceilings::read_rows(&tok, h_kv * row) })
                });
                g.bench_function(format!("ceiling/read_tokens_cold/{dt}/kv{h_kv}"), |b| {
                    b.iter_batched(
                        || evict(&mut flush),
                        |_| unsafe { ceilings::read_rows(&tok, h_kv * row) },
                        BatchSize::PerIteration,
                    )
                });
                g.bench_function(format!("ceiling/read_warm/{dt}/kv{h_kv}"), |b| {
                    b.iter(|| unsafe { ceilings::read_rows(&rows, row) })
                });
                g.bench_function(format!("ceiling/read_cold/{dt}/kv{h_kv}"), |b| {
                    b.iter_batched(
                        || evict(&mut flush),
                        |_| unsafe { ceilings::read_rows(&rows, row) },
                        BatchSize::PerIteration,
                    )
                });
            }
            for kern in levels() {
                let name = kern.isa().name();
                if kern.isa() == Isa::Scalar && h_kv == 32 {
                    continue;
                }
                let run = |out: &mut [f32]| {
                    if dt == "f32" {
                        df.run(kern, KeySubset::Indices(&df.sel), true, false, out)
                    } else {
                        db.run(kern, KeySubset::Indices(&db.sel), true, false, out)
                    }
                };
                g.bench_function(format!("decode/{dt}/kv{h_kv}/warm/{name}"), |b| {
                    b.iter(|| run(&mut out))
                });
                if kern.isa() != Isa::Scalar {
                    g.bench_function(format!("decode/{dt}/kv{h_kv}/cold/{name}"), |b| {
                        b.iter_batched(
                            || evict(&mut flush),
                            |_| run(&mut out),
                            BatchSize::PerIteration,
                        )
                    });
                }
            }
            // Dense attention over all 8192 keys (4x the bytes) against the 25% subset.
            let kern = Kernels::active().unwrap();
            g.throughput(Throughput::Bytes((4 * touched) as u64));
            g.bench_function(
                format!("decode_dense/{dt}/kv{h_kv}/cold/{}", kern.isa().name()),
                |b| {
                    b.iter_batched(
                        || evict(&mut flush),
                        |_| {
                            if dt == "f32" {
                                df.run(kern, KeySubset::Dense, true, false, &mut out)
                            } else {
                                db.run(kern, KeySubset::Dense, true, false, &mut out)
                            }
                        },
                        BatchSize::PerIteration,
                    )
                },
            );
        }
    }

    // ---------------------------------------------------------------- merge, Quest
    let (parts, rows, d) = (8usize, 32usize, 128usize);
    let mut r = Rng(7);
    let po: Vec<f32> = (0..parts * rows * d).map(|_| r.f()).collect();
    let pl: Vec<f32> = (0..parts * rows).map(|_| r.f() * 4.0).collect();
    let mut mo = vec![0f32; rows * d];
    let mut ml = vec![0f32; rows];
    g.throughput(Throughput::Bytes((po.len() * 4) as u64));
    for kern in levels() {
        g.bench_function(format!("merge/8x32x128/{}", kern.isa().name()), |b| {
            b.iter(|| {
                kern.attention_merge(
                    parts,
                    &po,
                    rows * d,
                    d,
                    &pl,
                    rows,
                    MatrixMut::dense(&mut mo, rows, d).unwrap(),
                    Some(&mut ml),
                )
                .unwrap()
            })
        });
    }
    let kq = data(|x| x, 1, 32, 8, 128, 8192, vec![0]);
    let nb = 8192 / 16;
    let mut mn = vec![0f32; nb * 8 * 128];
    let mut mx = vec![0f32; nb * 8 * 128];
    let mut bound = vec![0f32; 32 * nb];
    for kern in levels() {
        g.throughput(Throughput::Bytes((kq.k.len() * 4) as u64));
        g.bench_function(
            format!("quest_summary/8192x8x128_b16/{}", kern.isa().name()),
            |b| {
                b.iter(|| {
                    kern.key_block_summary(
                        Heads::dense(&kq.k, 8192, 8, 128).unwrap(),
                        16,
                        0..nb,
                        &mut mn,
                        &mut mx,
                    )
                    .unwrap()
                })
            },
        );
        g.throughput(Throughput::Bytes((2 * mn.len() * 4) as u64));
        g.bench_function(
            format!("quest_bound/32q_512blocks/{}", kern.isa().name()),
            |b| {
                b.iter(|| {
                    kern.key_block_bound(
                        Heads::dense(&kq.q, 1, 32, 128).unwrap(),
                        &mn,
                        &mx,
                        nb,
                        8,
                        &mut bound,
                        nb,
                    )
                    .unwrap()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
