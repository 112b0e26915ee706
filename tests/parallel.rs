//! Every core, same bits: every family on every ISA level gives bit-identical outputs
//! inline, on the built-in pool at 1, 2, 3 and 7 threads, and through parallel-for
//! callbacks that run the tasks in reverse order, in a random order, or on scoped
//! threads; with the default unit sizes and with tiny ones (so odd small shapes split
//! into many units); attention batches included. Plus: the fixed decompositions that
//! change numerics (split-K decoding, mass partials) against an f64 oracle, the long-row
//! selection chunks against sort oracles, the parallel-for contract (failures, skipped, repeated and
//! out-of-range tasks, a panicking callback), nested calls, small calls, and calls while
//! the thread count changes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use tokenroute::parallel::{self, Executor, ParallelFor};
use tokenroute::{
    bf16, f16, Activation, AttendExtras, AttendOptions, Batch, BatchStrides, CausalAlign,
    ErrorKind, Heads, HeadsMut, Kernels, KeySubset, KvCacheMut, KvKeep, KvLayout, ListsPer, Matrix,
    MatrixMut, Order, RouteOut, RouteSelect, RowSpec, Tau, ThresholdOut, TopK, TopkOut,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

// ---------------------------------------------------------------------------------------
// Executors.

/// Runs the tasks in reverse order on the calling thread.
struct Reverse;
impl ParallelFor for Reverse {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n).rev().for_each(task);
        true
    }
}

/// Runs the tasks in a pseudo-random order on the calling thread.
struct Shuffled(u64);
impl ParallelFor for Shuffled {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        let mut order: Vec<usize> = (0..n).collect();
        let mut r = Rng(self.0 ^ n as u64 | 1);
        for i in (1..n).rev() {
            order.swap(i, r.below(i + 1));
        }
        order.into_iter().for_each(task);
        true
    }
}

/// Runs the tasks on `0` scoped threads (plus none on the caller), claiming them from a
/// counter: a real concurrent engine pool.
struct Scoped(usize);
impl ParallelFor for Scoped {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..self.0 {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    task(i);
                });
            }
        });
        true
    }
}

/// Counts its calls, then runs the tasks in order.
#[derive(Default)]
struct Counting(AtomicUsize);
impl ParallelFor for Counting {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed);
        (0..n).for_each(task);
        true
    }
}

/// The pool has at least 7 threads (set once; other tests may change it meanwhile:
/// `Threads(t)` is capped by the pool, which changes nothing in the results).
fn pool() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| parallel::set_num_threads(7).unwrap());
}

fn executors() -> Vec<(&'static str, Executor)> {
    pool();
    vec![
        ("threads=1", Executor::Threads(1)),
        ("threads=2", Executor::Threads(2)),
        ("threads=3", Executor::Threads(3)),
        ("threads=7", Executor::Threads(7)),
        ("reverse", Executor::Callback(Arc::new(Reverse))),
        ("random", Executor::Callback(Arc::new(Shuffled(7)))),
        ("scoped-3", Executor::Callback(Arc::new(Scoped(3)))),
    ]
}

/// `run(level)` gives the same bits on every executor and unit size as inline with the
/// default unit sizes, and (`same_on_levels`) the same on every level.
fn check(name: &str, same_on_levels: bool, run: &(dyn Fn(&'static Kernels) -> Vec<u32> + Sync)) {
    check_with(name, same_on_levels, &[], run)
}

/// [`check`] with more (unit work, minimum parallel work) pairs.
fn check_with(
    name: &str,
    same_on_levels: bool,
    more: &[(usize, usize)],
    run: &(dyn Fn(&'static Kernels) -> Vec<u32> + Sync),
) {
    let mut first: Option<Vec<u32>> = None;
    for k in Kernels::all_supported() {
        let want = parallel::with_executor(Executor::Inline, || run(k));
        if same_on_levels {
            match &first {
                None => first = Some(want.clone()),
                Some(f) => assert_eq!(&want, f, "{name}: {:?} differs from scalar", k.isa()),
            }
        }
        for (en, e) in executors() {
            for &(unit, min) in [
                (parallel::UNIT_WORK, parallel::MIN_PARALLEL_WORK),
                (1, 0),
                (3000, 0),
            ]
            .iter()
            .chain(more)
            {
                let got = parallel::with_executor(e.clone(), || {
                    parallel::with_granularity(unit, min, || run(k))
                });
                assert!(
                    got == want,
                    "{name}: {:?} on {en} with unit work {unit} differs from inline",
                    k.isa()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Families.

#[test]
fn score_and_sigmoid() {
    let mut r = Rng(11);
    let x: Vec<f32> = (0..20_011).map(|_| r.f() * 30.0).collect();
    check("sigmoid", true, &|k| {
        let mut y = vec![0f32; x.len()];
        k.sigmoid_f32(&x, &mut y).unwrap();
        let mut z = x.clone();
        k.sigmoid_f32_in_place(&mut z).unwrap();
        assert_eq!(bits(&y), bits(&z));
        bits(&y)
    });
    for &(n, d, e, hs) in &[
        (333usize, 77usize, 1usize, 80usize),
        (129, 200, 8, 200),
        (7, 3, 3, 5),
    ] {
        let h = r.vec(n * hs);
        let w: Vec<f32> = r.vec(e * d).iter().map(|x| x * 0.1).collect();
        let b = r.vec(e);
        let h16: Vec<f16> = h.iter().map(|&x| f16::from_f32(x)).collect();
        let w16: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
        let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
        let wb: Vec<bf16> = w.iter().map(|&x| bf16::from_f32(x)).collect();
        check(&format!("score {n}x{d} e{e}"), true, &|k| {
            let mut out = score_bits(k, &h, &w, Some(&b), Activation::Sigmoid, (n, d, e, hs));
            out.extend(score_bits(
                k,
                &h16,
                &w16,
                None,
                Activation::None,
                (n, d, e, hs),
            ));
            out.extend(score_bits(
                k,
                &hb,
                &wb,
                Some(&b),
                Activation::Sigmoid,
                (n, d, e, hs),
            ));
            out
        });
    }
}

/// The scores of `h` `[n, d]` at row stride `hs` against `w` `[e, d]`, as bits.
fn score_bits<T: tokenroute::Element>(
    k: &Kernels,
    h: &[T],
    w: &[T],
    bias: Option<&[f32]>,
    act: Activation,
    (n, d, e, hs): (usize, usize, usize, usize),
) -> Vec<u32> {
    let mut s = vec![0f32; n * (e + 1)];
    k.score(
        Matrix::new(h, n, d, hs).unwrap(),
        Matrix::dense(w, e, d).unwrap(),
        bias,
        act,
        MatrixMut::new(&mut s, n, e, e + 1).unwrap(),
    )
    .unwrap();
    bits(&s)
}

/// Scores with ties, NaNs, signed zeros, infinities.
fn scores(r: &mut Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match r.below(40) {
            0 => f32::NAN,
            1 => -0.0,
            2 => 0.0,
            3 => f32::INFINITY,
            4 => f32::NEG_INFINITY,
            5..=12 => (r.below(8) as f32) * 0.125,
            _ => r.f(),
        })
        .collect()
}

fn score_cmp(a: f32, b: f32) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

fn oracle_topk(s: &[f32], k: usize, forced: &[bool], order: Order) -> Vec<u32> {
    let nf = forced.iter().filter(|&&x| x).count();
    let mut others: Vec<usize> = (0..s.len()).filter(|&i| !forced[i]).collect();
    others.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = (0..s.len()).filter(|&i| forced[i]).collect();
    chosen.extend_from_slice(&others[..k - nf]);
    match order {
        Order::Position => chosen.sort(),
        Order::Score => chosen.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b))),
    }
    chosen.into_iter().map(|i| i as u32).collect()
}

#[test]
fn selection_batched_and_long_rows() {
    let mut r = Rng(5);
    // Batched rows, with valid lengths, forced keeps and a keep mask.
    let (rows, n, stride) = (37usize, 301usize, 310usize);
    let s = scores(&mut r, rows * stride);
    let valid: Vec<usize> = (0..rows)
        .map(|i| if i % 5 == 0 { n } else { 40 + r.below(n - 40) })
        .collect();
    let keep: Vec<u8> = (0..rows * n).map(|_| (r.below(50) == 0) as u8).collect();
    let tau: Vec<f32> = (0..rows).map(|_| r.f() * 0.5).collect();
    check("batched top-k and threshold", true, &|k| {
        let spec = RowSpec {
            valid_lens: Some(&valid),
            keep_first: 2,
            keep_last: 3,
            keep_mask: Some(Matrix::dense(&keep, rows, n).unwrap()),
        };
        let mut out = Vec::new();
        let kk = 30;
        let mut idx = vec![0u32; rows * kk];
        let mut sc = vec![0f32; rows * kk];
        let mut counts = vec![0usize; rows];
        k.topk_f32(
            Matrix::new(&s, rows, n, stride).unwrap(),
            TopK::Fixed(kk),
            Order::Score,
            &spec,
            TopkOut {
                indices: MatrixMut::dense(&mut idx, rows, kk).unwrap(),
                scores: Some(MatrixMut::dense(&mut sc, rows, kk).unwrap()),
                counts: Some(&mut counts),
            },
            None,
        )
        .unwrap();
        out.extend(idx.iter().copied());
        out.extend(bits(&sc));
        out.extend(counts.iter().map(|&c| c as u32));
        let mut idx = vec![u32::MAX; rows * n];
        let mut mask = vec![7u8; rows * n];
        k.threshold_f32(
            Matrix::new(&s, rows, n, stride).unwrap(),
            Tau::PerRow(&tau),
            &spec,
            ThresholdOut {
                indices: Some(MatrixMut::dense(&mut idx, rows, n).unwrap()),
                mask: Some(MatrixMut::dense(&mut mask, rows, n).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap();
        for row in 0..rows {
            out.extend(&idx[row * n..row * n + counts[row]]);
        }
        out.extend(mask.iter().map(|&m| m as u32));
        out.extend(counts.iter().map(|&c| c as u32));
        out
    });

    // Long rows: chunked top-k (small k) and threshold, against sort oracles.
    for &(n, kk, kf, kl, masked) in &[
        (400_003usize, 64usize, 0usize, 0usize, false),
        (131_072, 1, 0, 0, false),
        (300_001, 700, 5, 70_000, true),
        (262_144, 8192, 3, 2, true),
    ] {
        let s = scores(&mut r, n);
        let keep: Vec<u8> = (0..n).map(|_| (r.below(40_000) == 0) as u8).collect();
        let keep_mask = masked.then(|| Matrix::dense(&keep, 1, n).unwrap());
        let spec = RowSpec {
            valid_lens: None,
            keep_first: kf,
            keep_last: kl,
            keep_mask,
        };
        let kfe = kf.min(n);
        let kle = kl.min(n - kfe);
        let forced: Vec<bool> = (0..n)
            .map(|i| i < kfe || i >= n - kle || (masked && keep[i] != 0))
            .collect();
        let nf = forced.iter().filter(|&&x| x).count();
        let kk = kk.max(nf);
        for order in [Order::Position, Order::Score] {
            let want = oracle_topk(&s, kk, &forced, order);
            let want_s: Vec<u32> = want.iter().map(|&i| s[i as usize].to_bits()).collect();
            check(&format!("long top-k n={n} k={kk} {order:?}"), true, &|k| {
                let mut idx = vec![0u32; kk];
                let mut sc = vec![0f32; kk];
                let mut ws = vec![0u64; tokenroute::topk_workspace_len(n)];
                k.topk_f32(
                    Matrix::dense(&s, 1, n).unwrap(),
                    TopK::Fixed(kk),
                    order,
                    &spec,
                    TopkOut {
                        indices: MatrixMut::dense(&mut idx, 1, kk).unwrap(),
                        scores: Some(MatrixMut::dense(&mut sc, 1, kk).unwrap()),
                        counts: None,
                    },
                    Some(&mut ws),
                )
                .unwrap();
                assert_eq!(idx, want, "top-k n={n} k={kk} {order:?}");
                assert_eq!(bits(&sc), want_s);
                idx
            });
        }
        let tau = 0.3;
        let want: Vec<u32> = (0..n as u32)
            .filter(|&i| forced[i as usize] || s[i as usize] > tau)
            .collect();
        check(&format!("long threshold n={n}"), true, &|k| {
            let mut idx = vec![u32::MAX; n];
            let mut mask = vec![9u8; n + 5];
            let mut c = [0usize];
            k.threshold_f32(
                Matrix::dense(&s, 1, n).unwrap(),
                Tau::Fixed(tau),
                &spec,
                ThresholdOut {
                    indices: Some(MatrixMut::dense(&mut idx, 1, n).unwrap()),
                    mask: Some(MatrixMut::dense(&mut mask[..n], 1, n).unwrap()),
                    counts: Some(&mut c),
                },
            )
            .unwrap();
            assert_eq!(&idx[..c[0]], &want[..], "threshold n={n}");
            assert!(mask[..n]
                .iter()
                .zip(&s)
                .enumerate()
                .all(|(i, (&m, &x))| m == (forced[i] || x > tau) as u8));
            assert_eq!(&mask[n..], &[9; 5]);
            idx[..c[0]].to_vec()
        });
    }
    // Every density, incl. all and none selected, and a row long enough for more than
    // 1024 chunks' worth of moves.
    for &(n, tau) in &[
        (200_000usize, -2.0f32),
        (200_000, 2.0),
        (1_500_000, 0.9),
        (140_000, -0.9),
    ] {
        let s: Vec<f32> = r.vec(n);
        let want: Vec<u32> = (0..n as u32).filter(|&i| s[i as usize] > tau).collect();
        check(&format!("long threshold n={n} tau={tau}"), true, &|k| {
            let mut idx = vec![0u32; n];
            let c = k.threshold_row_f32(&s, tau, &mut idx).unwrap();
            assert_eq!(&idx[..c], &want[..]);
            idx[..c].to_vec()
        });
    }
}

#[test]
fn compaction() {
    let mut r = Rng(3);
    let (n, d, stride) = (1001usize, 37usize, 40usize);
    let src: Vec<f32> = r.vec(n * stride);
    let gather_idx: Vec<u32> = (0..777).map(|_| r.below(n) as u32).collect();
    let mut perm: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        perm.swap(i, r.below(i + 1));
    }
    let scat = &perm[..613];
    let keep: Vec<u32> = (0..n as u32).filter(|_| r.below(3) != 0).collect();
    let gate = r.vec(scat.len());
    check("gather, scatter, scatter-add, compact", true, &|k| {
        let mut out = Vec::new();
        let mut dst = vec![0f32; gather_idx.len() * d];
        k.gather_rows(
            Matrix::new(&src, n, d, stride).unwrap(),
            &gather_idx,
            MatrixMut::dense(&mut dst, gather_idx.len(), d).unwrap(),
        )
        .unwrap();
        out.extend(bits(&dst));
        let mut h = src.clone();
        k.scatter_rows(
            Matrix::new(&src[..scat.len() * stride], scat.len(), d, stride).unwrap(),
            scat,
            MatrixMut::new(&mut h, n, d, stride).unwrap(),
        )
        .unwrap();
        out.extend(bits(&h));
        let y = &src[3 * stride..];
        k.scatter_add_rows(
            MatrixMut::new(&mut h, n, d, stride).unwrap(),
            scat,
            Matrix::new(y, scat.len(), d, stride).unwrap(),
            Some(&gate),
        )
        .unwrap();
        out.extend(bits(&h));
        let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
        let mut hb2 = hb.clone();
        let yb = &hb[5 * stride..];
        k.scatter_add_rows(
            MatrixMut::new(&mut hb2, n, d, stride).unwrap(),
            scat,
            Matrix::new(yb, scat.len(), d, stride).unwrap(),
            None,
        )
        .unwrap();
        out.extend(hb2.iter().map(|x| x.to_bits() as u32));
        let m = k
            .compact_rows(MatrixMut::new(&mut h, n, d, stride).unwrap(), &keep)
            .unwrap();
        assert_eq!(m, keep.len());
        out.extend(bits(&h));
        out
    });
    // KV caches, both layouts, shared and per-head lists.
    let (t, heads, hd) = (503usize, 3usize, 20usize);
    let cache: Vec<f32> = r.vec(t * (heads * hd + 3) + 7);
    let shared: Vec<u32> = (0..t as u32).filter(|i| i % 4 != 1).collect();
    let nk = 300;
    let mut per_head = Vec::new();
    for _ in 0..heads {
        let mut l: Vec<u32> = (0..t as u32).collect();
        for i in (1..t).rev() {
            l.swap(i, r.below(i + 1));
        }
        let mut l = l[..nk].to_vec();
        l.sort();
        per_head.extend(l);
    }
    check("kv_compact", true, &|k| {
        let mut out = Vec::new();
        for layout in [KvLayout::TokenMajor, KvLayout::HeadMajor] {
            for (keep, pad) in [
                (KvKeep::Shared(&shared), 0usize),
                (KvKeep::Shared(&shared), 3),
                (KvKeep::PerHead(&per_head), 0),
            ] {
                let mut c = cache.clone();
                let (ts, hs) = match layout {
                    KvLayout::TokenMajor => (heads * hd + pad, hd),
                    KvLayout::HeadMajor => (hd, t * hd + pad),
                };
                let len = match layout {
                    KvLayout::TokenMajor => (t - 1) * ts + heads * hd,
                    KvLayout::HeadMajor => (heads - 1) * hs + t * hd,
                };
                k.kv_compact(
                    KvCacheMut::new(&mut c[..len], layout, t, heads, hd, ts, hs).unwrap(),
                    keep,
                )
                .unwrap();
                out.extend(bits(&c));
            }
        }
        out
    });
}

/// Naive f64 attention of one (query, head) row over `keys`, `[n, h, d]` dense tensors:
/// (output, log-sum-exp), or `None` when no key is visible.
#[allow(clippy::too_many_arguments)]
fn oracle_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (h_q, h_kv, d): (usize, usize, usize),
    i: usize,
    h: usize,
    keys: &[usize],
) -> Option<(Vec<f64>, f64, f64)> {
    let g = h / (h_q / h_kv);
    let scale = 1.0 / (d as f64).sqrt();
    if keys.is_empty() {
        return None;
    }
    let xs: Vec<f64> = keys
        .iter()
        .map(|&t| {
            (0..d)
                .map(|e| q[(i * h_q + h) * d + e] as f64 * k[(t * h_kv + g) * d + e] as f64)
                .sum::<f64>()
                * scale
        })
        .collect();
    let a = keys
        .iter()
        .map(|&t| {
            (0..d)
                .map(|e| (q[(i * h_q + h) * d + e] as f64 * k[(t * h_kv + g) * d + e] as f64).abs())
                .sum::<f64>()
                * scale
        })
        .fold(0.0, f64::max);
    let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let ps: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
    let l: f64 = ps.iter().sum();
    let out = (0..d)
        .map(|e| {
            keys.iter()
                .zip(&ps)
                .map(|(&t, p)| p * v[(t * h_kv + g) * d + e] as f64)
                .sum::<f64>()
                / l
        })
        .collect();
    Some((out, m + l.ln(), a))
}

#[test]
fn split_k_decoding_is_within_the_documented_bound() {
    let mut r = Rng(17);
    // One query (and four), 8 query heads over 2 KV heads, keys: dense causal with the
    // query seeing all but the last 100, and an index list; chunked by 512 keys.
    for &(n_q, n_k, d) in &[(1usize, 3001usize, 64usize), (4, 2048, 40), (1, 1100, 130)] {
        let (h_q, h_kv) = (8, 2);
        let q = r.vec(n_q * h_q * d);
        let k: Vec<f32> = r.vec(n_k * h_kv * d).iter().map(|x| x * 2.0).collect();
        let v = r.vec(n_k * h_kv * d);
        let k_pos: Vec<u32> = (0..n_k as u32).collect();
        let q_pos: Vec<u32> = (0..n_q as u32).map(|i| n_k as u32 - 100 + 7 * i).collect();
        let idx: Vec<u32> = (0..n_k as u32).filter(|t| t % 7 != 3).collect();
        for indexed in [false, true] {
            let opts = AttendOptions {
                causal: !indexed,
                q_positions: Some(&q_pos),
                k_positions: Some(&k_pos),
                ..Default::default()
            };
            let keys = if indexed {
                KeySubset::Indices(&idx)
            } else {
                KeySubset::Dense
            };
            let run = |kern: &'static Kernels| -> Vec<u32> {
                let mut out = vec![0f32; n_q * h_q * d];
                let mut lse = vec![0f32; n_q * h_q];
                kern.attention(
                    Heads::dense(&q, n_q, h_q, d).unwrap(),
                    Heads::dense(&k, n_k, h_kv, d).unwrap(),
                    Heads::dense(&v, n_k, h_kv, d).unwrap(),
                    keys,
                    &opts,
                    HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
                    AttendExtras {
                        lse: Some((&mut lse, 0)),
                        mass: None,
                    },
                )
                .unwrap();
                for i in 0..n_q {
                    for h in 0..h_q {
                        let ks: Vec<usize> = if indexed {
                            idx.iter().map(|&t| t as usize).collect()
                        } else {
                            (0..n_k).filter(|&t| k_pos[t] <= q_pos[i]).collect()
                        };
                        let (want, want_lse, a) =
                            oracle_row(&q, &k, &v, (h_q, h_kv, d), i, h, &ks).unwrap();
                        let vmax = v.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
                        let bound = 2f64.powi(-17) * (1.0 + a + ks.len() as f64 / 64.0) * vmax;
                        for e in 0..d {
                            let got = out[(i * h_q + h) * d + e] as f64;
                            let tol = bound + 2f64.powi(-24) * want[e].abs();
                            assert!(
                                (got - want[e]).abs() <= tol,
                                "n_k {n_k} row ({i},{h}) e {e}: {got} vs {} (bound {tol:e})",
                                want[e]
                            );
                        }
                        let got = lse[i * h_q + h] as f64;
                        let tol = 2f64.powi(-17) * (1.0 + a + want_lse.abs());
                        assert!((got - want_lse).abs() <= tol, "lse {got} vs {want_lse}");
                    }
                }
                let mut b = bits(&out);
                b.extend(bits(&lse));
                b
            };
            check(
                &format!("split-K n_q={n_q} n_k={n_k} indexed={indexed}"),
                true,
                &run,
            );
        }
    }
}

#[test]
fn attention_units_mass_and_block_lists() {
    let mut r = Rng(23);
    // Prefill-like GQA, causal, dense; small and larger-than-a-mass-unit row counts.
    for &(n_q, h_q, h_kv, d, n_k) in &[
        (50usize, 8usize, 2usize, 24usize, 70usize),
        (260, 8, 2, 5, 23),
        (3, 4, 4, 9, 300),
    ] {
        let q = r.vec(n_q * h_q * d);
        let k = r.vec(n_k * h_kv * d);
        let v = r.vec(n_k * h_kv * d);
        let kb: Vec<bf16> = k.iter().map(|&x| bf16::from_f32(x)).collect();
        let vb: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
        let qb: Vec<bf16> = q.iter().map(|&x| bf16::from_f32(x)).collect();
        let k_pos: Vec<u32> = (0..n_k as u32).map(|t| 3 * t).collect();
        let q_pos: Vec<u32> = (0..n_q as u32)
            .map(|i| 3 * (n_k as u32) * i / n_q as u32 + 1)
            .collect();
        let sel: Vec<u32> = (0..n_k as u32).filter(|t| t % 5 != 2).collect();
        let qblk = 3;
        let n_qb = n_q.div_ceil(qblk);
        let bs = 16;
        let nb = n_k.div_ceil(bs);
        let lists = |groups: usize, r: &mut Rng| -> (Vec<usize>, Vec<u32>) {
            let mut offs = vec![0];
            let mut ids = Vec::new();
            for _ in 0..groups * n_qb {
                for b in 0..nb {
                    if r.below(3) != 0 {
                        ids.push(b as u32);
                    }
                }
                offs.push(ids.len());
            }
            (offs, ids)
        };
        let shared = lists(1, &mut r);
        let per_kv = lists(h_kv, &mut r);
        let per_q = lists(h_q, &mut r);
        let rows = n_q * h_q;
        check(
            &format!("attention {n_q}x{h_q}/{h_kv} d{d} n_k{n_k}"),
            true,
            &|kern| {
                let mut all = Vec::new();
                let cases: Vec<(KeySubset, bool)> = vec![
                    (KeySubset::Dense, true),
                    (KeySubset::Indices(&sel), false),
                    (
                        KeySubset::Blocks {
                            block_size: bs,
                            query_block: qblk,
                            offsets: &shared.0,
                            ids: &shared.1,
                            per: ListsPer::Shared,
                        },
                        true,
                    ),
                    (
                        KeySubset::Blocks {
                            block_size: bs,
                            query_block: qblk,
                            offsets: &per_kv.0,
                            ids: &per_kv.1,
                            per: ListsPer::KvHead,
                        },
                        false,
                    ),
                    (
                        KeySubset::Blocks {
                            block_size: bs,
                            query_block: qblk,
                            offsets: &per_q.0,
                            ids: &per_q.1,
                            per: ListsPer::QHead,
                        },
                        true,
                    ),
                ];
                for (keys, causal) in cases {
                    for mass_stride in [0usize, n_k + 1] {
                        let opts = AttendOptions {
                            causal,
                            q_positions: Some(&q_pos),
                            k_positions: Some(&k_pos),
                            ..Default::default()
                        };
                        let mut out = vec![0f32; rows * d];
                        let mut lse = vec![0f32; rows];
                        // Mass accumulates onto what is there.
                        let mut mass = vec![0.25f32; (n_k + 1) * h_kv];
                        kern.attention(
                            Heads::dense(&q, n_q, h_q, d).unwrap(),
                            Heads::dense(&k, n_k, h_kv, d).unwrap(),
                            Heads::dense(&v, n_k, h_kv, d).unwrap(),
                            keys,
                            &opts,
                            HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
                            AttendExtras {
                                lse: Some((&mut lse, 0)),
                                mass: Some((&mut mass, mass_stride)),
                            },
                        )
                        .unwrap();
                        all.extend(bits(&out));
                        all.extend(bits(&lse));
                        all.extend(bits(&mass));
                        // Without the mass: the same outputs (row units, or split-K).
                        let mut out2 = vec![0f32; rows * d];
                        kern.attention(
                            Heads::dense(&q, n_q, h_q, d).unwrap(),
                            Heads::dense(&k, n_k, h_kv, d).unwrap(),
                            Heads::dense(&v, n_k, h_kv, d).unwrap(),
                            keys,
                            &opts,
                            HeadsMut::dense(&mut out2, n_q, h_q, d).unwrap(),
                            AttendExtras::default(),
                        )
                        .unwrap();
                        all.extend(bits(&out2));
                    }
                    // bf16 in, bf16 out.
                    let mut ob = vec![bf16::ZERO; rows * d];
                    kern.attention(
                        Heads::dense(&qb, n_q, h_q, d).unwrap(),
                        Heads::dense(&kb, n_k, h_kv, d).unwrap(),
                        Heads::dense(&vb, n_k, h_kv, d).unwrap(),
                        keys,
                        &AttendOptions {
                            causal,
                            q_positions: Some(&q_pos),
                            k_positions: Some(&k_pos),
                            ..Default::default()
                        },
                        HeadsMut::dense(&mut ob, n_q, h_q, d).unwrap(),
                        AttendExtras::default(),
                    )
                    .unwrap();
                    all.extend(ob.iter().map(|x| x.to_bits() as u32));
                }
                all
            },
        );
    }
}

#[test]
fn attention_batches() {
    // A dense decoding batch (split-K per sequence: 1 query over 1100 keys, and over
    // indexed keys per sequence) and a ragged causal prefill batch with lse and mass
    // (sequences sharing one mass array with a stride, and a sequence with no keys).
    let mut r = Rng(41);
    let (nb, h_q, h_kv, d, n_k) = (3usize, 4usize, 2usize, 16usize, 1100usize);
    let q = r.vec(nb * h_q * d);
    let k = r.vec(nb * n_k * h_kv * d);
    let v = r.vec(nb * n_k * h_kv * d);
    let strides = BatchStrides {
        q: h_q * d,
        k: n_k * h_kv * d,
        v: n_k * h_kv * d,
        out: h_q * d,
        ..Default::default()
    };
    let sel: Vec<u32> = (0..nb)
        .flat_map(|b| (0..n_k as u32).filter(move |t| !(t + b as u32).is_multiple_of(3)))
        .collect();
    let per_seq = sel.len() / nb;
    let offs: Vec<usize> = (0..=nb).map(|b| b * per_seq).collect();
    // Sequences of 70400 work units (1 x 4 heads x 1100 keys x 16): with a minimum of
    // 80000 each is small and the batch runs them as units of one parallel loop.
    let small_seqs = [(3000, 80_000)];
    check_with(
        "attention dense decoding batch",
        true,
        &small_seqs,
        &|kern| {
            let mut all = Vec::new();
            for keys in [
                KeySubset::Dense,
                KeySubset::SeqIndices {
                    indices: &sel,
                    offsets: &offs,
                },
            ] {
                let mut out = vec![0f32; nb * h_q * d];
                let mut lse = vec![0f32; nb * h_q];
                kern.attention_batch(
                    Heads::dense(&q, 1, h_q, d).unwrap(),
                    Heads::dense(&k, n_k, h_kv, d).unwrap(),
                    Heads::dense(&v, n_k, h_kv, d).unwrap(),
                    keys,
                    &AttendOptions::default(),
                    &Batch::Dense { n: nb, strides },
                    HeadsMut::dense(&mut out, 1, h_q, d).unwrap(),
                    AttendExtras {
                        lse: Some((&mut lse, 0)),
                        mass: None,
                    },
                )
                .unwrap();
                all.extend(bits(&out));
                all.extend(bits(&lse));
            }
            all
        },
    );
    // Big and small sequences, mixed (1 x 4 x 1220 x 16 and 1 x 4 x 100 x 16 are below
    // 80000, together above).
    let (cu_q, cu_k) = (
        [0usize, 70, 71, 71, 190, 191],
        [0usize, 80, 1300, 1300, 1400, 1500],
    );
    let (tq, tk) = (191, 1500);
    let q = r.vec(tq * h_q * d);
    check_with(
        "attention ragged prefill batch",
        true,
        &small_seqs,
        &|kern| {
            let mut out = vec![0f32; tq * h_q * d];
            let mut lse = vec![0f32; tq * h_q];
            let mut mass = vec![0.5f32; h_kv * tk];
            kern.attention_batch(
                Heads::dense(&q, tq, h_q, d).unwrap(),
                Heads::dense(&k[..tk * h_kv * d], tk, h_kv, d).unwrap(),
                Heads::dense(&v[..tk * h_kv * d], tk, h_kv, d).unwrap(),
                KeySubset::Dense,
                &AttendOptions {
                    causal: true,
                    align: CausalAlign::BottomRight,
                    ..Default::default()
                },
                &Batch::Ragged {
                    cu_seqlens_q: &cu_q,
                    cu_seqlens_k: &cu_k,
                },
                HeadsMut::dense(&mut out, tq, h_q, d).unwrap(),
                AttendExtras {
                    lse: Some((&mut lse, 0)),
                    mass: Some((&mut mass, tk)),
                },
            )
            .unwrap();
            [bits(&out), bits(&lse), bits(&mass)].concat()
        },
    );
}

#[test]
fn mass_partials_are_close_to_the_exact_mass() {
    // More than 1024 rows adding into one array: unit partials summed in unit order.
    let mut r = Rng(31);
    let (n_q, h_q, h_kv, d, n_k) = (700usize, 2usize, 1usize, 8usize, 40usize);
    let q = r.vec(n_q * h_q * d);
    let k = r.vec(n_k * h_kv * d);
    let v = r.vec(n_k * h_kv * d);
    let mut want = vec![0f64; n_k];
    let keys: Vec<usize> = (0..n_k).collect();
    for i in 0..n_q {
        for h in 0..h_q {
            let (_, lse, _) = oracle_row(&q, &k, &v, (h_q, h_kv, d), i, h, &keys).unwrap();
            for (t, w) in want.iter_mut().enumerate() {
                let x: f64 = (0..d)
                    .map(|e| q[(i * h_q + h) * d + e] as f64 * k[t * d + e] as f64)
                    .sum::<f64>()
                    / (d as f64).sqrt();
                *w += (x - lse).exp();
            }
        }
    }
    check("mass over 1400 rows", true, &|kern| {
        let mut out = vec![0f32; n_q * h_q * d];
        let mut mass = vec![0f32; n_k];
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, h_kv, d).unwrap(),
            Heads::dense(&v, n_k, h_kv, d).unwrap(),
            KeySubset::Dense,
            &AttendOptions::default(),
            HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
            AttendExtras {
                lse: None,
                mass: Some((&mut mass, 0)),
            },
        )
        .unwrap();
        for (t, (&m, &w)) in mass.iter().zip(&want).enumerate() {
            assert!(((m as f64) - w).abs() <= 1e-5 * w, "key {t}: {m} vs {w}");
        }
        bits(&mass)
    });
}

#[test]
fn merge_summary_bound_quest_route() {
    let mut r = Rng(41);
    let (parts, rows, d) = (5usize, 301usize, 24usize);
    let o = r.vec(parts * rows * d);
    let lse: Vec<f32> = (0..parts * rows)
        .map(|i| {
            if i % 97 == 0 {
                f32::NEG_INFINITY
            } else {
                r.f() * 3.0
            }
        })
        .collect();
    check("merge", true, &|k| {
        let mut out = vec![0f32; rows * d];
        let mut ol = vec![0f32; rows];
        k.attention_merge(
            parts,
            &o,
            rows * d,
            d,
            &lse,
            rows,
            MatrixMut::dense(&mut out, rows, d).unwrap(),
            Some(&mut ol),
        )
        .unwrap();
        let mut b = bits(&out);
        b.extend(bits(&ol));
        b
    });
    let (n_k, h_kv, dk, bs) = (1003usize, 2usize, 20usize, 16usize);
    let keys = r.vec(n_k * h_kv * dk);
    let nb = n_k.div_ceil(bs);
    let (n_q, h_q) = (37usize, 4usize);
    let q = r.vec(n_q * h_q * dk);
    check("summary, bound, quest", true, &|k| {
        let mut out = Vec::new();
        let mut kmin = vec![0f32; nb * h_kv * dk];
        let mut kmax = vec![0f32; nb * h_kv * dk];
        k.key_block_summary(
            Heads::dense(&keys, n_k, h_kv, dk).unwrap(),
            bs,
            0..nb,
            &mut kmin,
            &mut kmax,
        )
        .unwrap();
        out.extend(bits(&kmin));
        out.extend(bits(&kmax));
        let mut bound = vec![0f32; n_q * h_q * (nb + 1)];
        k.key_block_bound(
            Heads::dense(&q, n_q, h_q, dk).unwrap(),
            &kmin,
            &kmax,
            nb,
            h_kv,
            &mut bound,
            nb + 1,
        )
        .unwrap();
        out.extend(bits(&bound));
        let kk = 9;
        let mut ids = vec![0u32; n_q * h_q * kk];
        let mut offs = vec![0usize; n_q * h_q + 1];
        k.quest_select_blocks(
            Heads::dense(&q, n_q, h_q, dk).unwrap(),
            &kmin,
            &kmax,
            nb,
            h_kv,
            kk,
            1,
            1,
            &mut ids,
            &mut offs,
        )
        .unwrap();
        out.extend(ids);
        out
    });
    let (n, d) = (3001usize, 96usize);
    let h = r.vec(n * d);
    let w: Vec<f32> = r.vec(d).iter().map(|x| x * 0.2).collect();
    check("route", true, &|k| {
        let mut out = Vec::new();
        for select in [
            RouteSelect::TopK(TopK::Fixed(300), Order::Score),
            RouteSelect::Threshold(0.5),
        ] {
            let mut idx = vec![0u32; n];
            let mut sc = vec![0f32; n];
            let mut rows = vec![0f32; n * d];
            let c = k
                .route(
                    Matrix::dense(&h, n, d).unwrap(),
                    &w,
                    Some(0.1),
                    Activation::Sigmoid,
                    select,
                    &RowSpec {
                        keep_first: 1,
                        ..Default::default()
                    },
                    RouteOut {
                        indices: &mut idx,
                        scores: Some(&mut sc),
                        rows: MatrixMut::dense(&mut rows, n, d).unwrap(),
                    },
                    None,
                )
                .unwrap();
            out.extend(&idx[..c]);
            out.extend(bits(&sc[..c]));
            out.extend(bits(&rows[..c * d]));
        }
        out
    });
}

// ---------------------------------------------------------------------------------------
// The runtime: contract violations, nesting, small calls, changing counts.

/// Fails after running the first half of the tasks.
struct FailsHalfway;
impl ParallelFor for FailsHalfway {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n / 2).for_each(task);
        false
    }
}
/// Skips the last task but claims success.
struct Skips;
impl ParallelFor for Skips {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n.saturating_sub(1)).for_each(task);
        true
    }
}
/// Runs every task twice.
struct Twice;
impl ParallelFor for Twice {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n).for_each(task);
        (0..n).for_each(task);
        true
    }
}
/// Passes an index past the end as well.
struct OutOfRange;
impl ParallelFor for OutOfRange {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        task(n);
        (0..n).for_each(task);
        task(usize::MAX);
        true
    }
}
/// Panics after one task.
struct Panics;
impl ParallelFor for Panics {
    fn parallel_for(&self, _n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        task(0);
        panic!("engine pool failure");
    }
}

/// A scatter-add (not idempotent: a task run twice would show) and a compaction, with
/// tiny units.
fn non_idempotent(k: &'static Kernels) -> (tokenroute::Result<()>, Vec<u32>) {
    let mut r = Rng(77);
    let (n, d) = (2000usize, 33usize);
    let mut h = r.vec(n * d);
    let y = r.vec(n * d);
    let idx: Vec<u32> = (0..n as u32).rev().step_by(2).collect();
    let res = parallel::with_granularity(1, 0, || {
        k.scatter_add_rows(
            MatrixMut::dense(&mut h, n, d).unwrap(),
            &idx,
            Matrix::dense(&y[..idx.len() * d], idx.len(), d).unwrap(),
            None,
        )
    });
    (res, bits(&h))
}

#[test]
fn parallel_for_contract_violations_complete_the_call() {
    let k = Kernels::active().unwrap();
    let (ok, want) = parallel::with_executor(Executor::Inline, || non_idempotent(k));
    ok.unwrap();
    let bad: Vec<(&str, Arc<dyn ParallelFor>)> = vec![
        ("fails halfway", Arc::new(FailsHalfway)),
        ("skips", Arc::new(Skips)),
        ("twice", Arc::new(Twice)),
        ("out of range", Arc::new(OutOfRange)),
        ("panics", Arc::new(Panics)),
    ];
    for (name, cb) in bad {
        let (res, got) = parallel::with_executor(Executor::Callback(cb), || non_idempotent(k));
        assert_eq!(res.unwrap_err().kind, ErrorKind::ParallelFailed, "{name}");
        assert_eq!(got, want, "{name}: outputs incomplete or a task ran twice");
    }
    // A good callback: Ok and the same.
    let (res, got) = parallel::with_executor(Executor::Callback(Arc::new(Scoped(2))), || {
        non_idempotent(k)
    });
    res.unwrap();
    assert_eq!(got, want);
}

#[test]
fn nested_calls_run_inline_and_small_calls_never_use_threads() {
    let k = Kernels::active().unwrap();
    let counting = Arc::new(Counting::default());
    let mut r = Rng(9);
    let (n, d) = (64usize, 768usize);
    let h = r.vec(n * d);
    let w = r.vec(d);
    let score = |s: &mut [f32]| {
        k.score(
            Matrix::dense(&h, n, d).unwrap(),
            Matrix::dense(&w, 1, d).unwrap(),
            None,
            Activation::Sigmoid,
            MatrixMut::dense(s, n, 1).unwrap(),
        )
        .unwrap()
    };
    let mut want = vec![0f32; n];
    score(&mut want);
    // n = 64: below the work threshold, the callback is never called.
    parallel::with_executor(Executor::Callback(counting.clone()), || {
        let mut s = vec![0f32; n];
        score(&mut s);
        assert_eq!(bits(&s), bits(&want));
    });
    assert_eq!(counting.0.load(Ordering::Relaxed), 0);
    // A large call calls the callback once.
    let big = Arc::new(r.vec(4096 * 256));
    let wb = Arc::new(r.vec(256));
    let large = |big: &[f32], wb: &[f32]| {
        let mut s = vec![0f32; 4096];
        parallel::with_granularity(1 << 12, 0, || {
            k.score(
                Matrix::dense(big, 4096, 256).unwrap(),
                Matrix::dense(wb, 1, 256).unwrap(),
                None,
                Activation::None,
                MatrixMut::dense(&mut s, 4096, 1).unwrap(),
            )
        })
        .unwrap();
        bits(&s)
    };
    let want_large = parallel::with_executor(Executor::Inline, || large(&big, &wb));
    parallel::with_executor(Executor::Callback(counting.clone()), || {
        assert_eq!(large(&big, &wb), want_large)
    });
    assert_eq!(counting.0.load(Ordering::Relaxed), 1);

    // Nested: tasks run through the library's executor make large calls; those run
    // inline on the task's thread (the callback is called once, for the outer tasks; the
    // pool never waits for itself).
    pool();
    let before = counting.0.load(Ordering::Relaxed);
    for e in [
        Executor::Callback(counting.clone()),
        Executor::Threads(7),
        Executor::Callback(Arc::new(Scoped(3))),
    ] {
        let nested = AtomicUsize::new(0);
        parallel::with_executor(e, || {
            parallel::run_tasks(16, usize::MAX, &|_| {
                assert!(parallel::in_task());
                assert_eq!(large(&big, &wb), want_large);
                nested.fetch_add(1, Ordering::Relaxed);
            })
        })
        .unwrap();
        assert_eq!(nested.load(Ordering::Relaxed), 16);
    }
    assert_eq!(counting.0.load(Ordering::Relaxed), before + 1);
    assert!(!parallel::in_task());
}

#[test]
fn thread_counts_are_validated_and_change_safely_under_load() {
    assert_eq!(
        parallel::set_num_threads(0).unwrap_err().kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        parallel::set_num_threads(parallel::MAX_THREADS + 1)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        parallel::set_thread_executor(Some(Executor::Threads(0)))
            .unwrap_err()
            .kind,
        ErrorKind::InvalidArgument
    );
    assert!(parallel::num_threads() >= 1);
    let k = Kernels::active().unwrap();
    let mut r = Rng(1);
    let (n, d) = (2048usize, 200usize);
    let h = r.vec(n * d);
    let w = r.vec(8 * d);
    let run = || {
        let mut s = vec![0f32; n * 8];
        k.score(
            Matrix::dense(&h, n, d).unwrap(),
            Matrix::dense(&w, 8, d).unwrap(),
            None,
            Activation::Sigmoid,
            MatrixMut::dense(&mut s, n, 8).unwrap(),
        )
        .unwrap();
        bits(&s)
    };
    let want = parallel::with_executor(Executor::Inline, run);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let calls = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    parallel::with_executor(Executor::Threads(parallel::MAX_THREADS), || {
                        parallel::with_granularity(1 << 13, 0, || assert_eq!(run(), want))
                    });
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..60 {
            parallel::set_num_threads([1, 2, 3, 7, 5][i % 5]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 0);
    parallel::set_num_threads(7).unwrap();
    assert_eq!(parallel::num_threads(), 7);
}
