//! A V head size `dv` different from the Q/K head size `d` (multi-head latent attention,
//! DeepSeek: d = 192, dv = 128; and smaller, larger, odd and tail sizes either way):
//! against the float64 reference on every level (prefill with causal masks and windows,
//! split-K decoding over many keys, index lists, block lists, GQA, f32 / f16 / bf16
//! inputs, sinks, softcap, ALiBi, bias, the attention mass), bit-identical on every
//! level and for every thread count; ragged and dense batches equal separate calls; bad
//! shapes refused with nothing written. (dv = d keeps today's bits: tests/golden.rs. The
//! C ABI: ffi-tests/c/attend.c; Python: python/tests/test_attend.py.)

mod attn_ref;

use attn_ref::{bound, lse_bound, row, Check, Rng, Spec};
use half::{bf16, f16};
use std::sync::Arc;
use tokenroute::parallel::{self, Executor, ParallelFor};
use tokenroute::{
    AttendBias, AttendElement, AttendExtras, AttendOptions, Batch, BatchStrides, BiasData,
    CausalAlign, ErrorKind, Heads, HeadsMut, Kernels, KeySubset, ListsPer,
};

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Keys {
    Dense,
    /// Every third key dropped.
    Indices,
    /// Blocks of 16 keys, lists per query block of 4 queries (shared by the heads).
    Blocks,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    n_q: usize,
    n_k: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    dv: usize,
    causal: bool,
    window: u32,
    keys: Keys,
    softcap: f32,
    alibi: bool,
    bias: bool,
    sinks: bool,
}

const BLOCK: usize = 16;
const QBLOCK: usize = 4;

fn base(n_q: usize, n_k: usize, h_q: usize, h_kv: usize, d: usize, dv: usize) -> Case {
    Case {
        n_q,
        n_k,
        h_q,
        h_kv,
        d,
        dv,
        causal: false,
        window: 0,
        keys: Keys::Dense,
        softcap: 0.0,
        alibi: false,
        bias: false,
        sinks: false,
    }
}

fn cases() -> Vec<Case> {
    let mut v = vec![];
    // Prefill, causal, GQA: MLA sizes, smaller and larger V, odd and tail sizes.
    for (d, dv) in [(192, 128), (64, 128), (1, 3), (3, 1), (33, 17), (40, 70)] {
        v.push(Case {
            causal: true,
            ..base(20, 90, 4, 2, d, dv)
        });
    }
    // Decoding over many keys: split-K chunks and their merge (MQA and per-head KV).
    v.push(base(1, 1300, 16, 1, 192, 128));
    v.push(base(2, 1100, 4, 4, 48, 100));
    v.push(Case {
        keys: Keys::Indices,
        ..base(1, 1700, 8, 2, 192, 128)
    });
    // Index lists and block lists, with a window.
    v.push(Case {
        keys: Keys::Indices,
        causal: true,
        window: 40,
        ..base(9, 200, 3, 3, 40, 24)
    });
    v.push(Case {
        keys: Keys::Blocks,
        causal: true,
        ..base(10, 120, 4, 1, 192, 128)
    });
    v.push(Case {
        keys: Keys::Blocks,
        ..base(7, 75, 2, 2, 17, 33)
    });
    // Sinks with a softcap, prefill and split-K; ALiBi and a bias.
    v.push(Case {
        sinks: true,
        softcap: 5.0,
        causal: true,
        ..base(12, 80, 4, 2, 192, 128)
    });
    v.push(Case {
        sinks: true,
        softcap: 2.0,
        ..base(1, 1200, 8, 1, 64, 32)
    });
    v.push(Case {
        alibi: true,
        bias: true,
        softcap: 3.0,
        causal: true,
        ..base(8, 70, 2, 1, 24, 56)
    });
    v
}

/// One case's inputs (rounded to the element type) and options' data.
struct Inputs<T> {
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    qf: Vec<f64>,
    kf: Vec<f64>,
    vf: Vec<f64>,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    sel: Vec<u32>,
    offsets: Vec<usize>,
    ids: Vec<u32>,
    slopes: Vec<f32>,
    bias: Vec<f32>,
    sinks: Vec<f32>,
}

fn inputs<T: Copy>(
    c: &Case,
    r: &mut Rng,
    to: &impl Fn(f32) -> T,
    from: &impl Fn(T) -> f32,
) -> Inputs<T> {
    let q: Vec<T> = r.vec(c.n_q * c.h_q * c.d).into_iter().map(to).collect();
    let k: Vec<T> = r.vec(c.n_k * c.h_kv * c.d).into_iter().map(to).collect();
    let v: Vec<T> = r
        .vec(c.n_k * c.h_kv * c.dv)
        .into_iter()
        .map(|x| to(2.0 * x))
        .collect();
    let f = |x: &[T]| -> Vec<f64> { x.iter().map(|&y| from(y) as f64).collect() };
    let n_qb = c.n_q.div_ceil(QBLOCK);
    let n_blocks = c.n_k.div_ceil(BLOCK);
    let mut offsets = vec![0];
    let mut ids = vec![];
    for qb in 0..n_qb {
        ids.extend((0..n_blocks as u32).filter(|b| (*b as usize + qb) % 3 != 1));
        offsets.push(ids.len());
    }
    Inputs {
        qf: f(&q),
        kf: f(&k),
        vf: f(&v),
        q,
        k,
        v,
        k_pos: (0..c.n_k as u32).map(|j| 2 * j).collect(),
        q_pos: (0..c.n_q as u32)
            .map(|i| 2 * (c.n_k - c.n_q) as u32 + 2 * i)
            .collect(),
        sel: (0..c.n_k as u32).filter(|t| t % 3 != 1).collect(),
        offsets,
        ids,
        slopes: (0..c.h_q)
            .map(|i| 2f32.powf(-8.0 * (i + 1) as f32 / c.h_q as f32))
            .collect(),
        bias: (0..c.h_q * c.n_q * c.n_k).map(|_| 1.5 * r.f()).collect(),
        sinks: (0..c.h_q)
            .map(|h| [f32::NEG_INFINITY, 0.5, 3.0][h % 3])
            .collect(),
    }
}

impl<T> Inputs<T> {
    fn keys(&self, c: &Case) -> KeySubset<'_> {
        match c.keys {
            Keys::Dense => KeySubset::Dense,
            Keys::Indices => KeySubset::Indices(&self.sel),
            Keys::Blocks => KeySubset::Blocks {
                block_size: BLOCK,
                query_block: QBLOCK,
                offsets: &self.offsets,
                ids: &self.ids,
                per: ListsPer::Shared,
            },
        }
    }

    fn opts(&self, c: &Case) -> AttendOptions<'_> {
        let positioned = c.causal || c.window > 0 || c.alibi;
        AttendOptions {
            softcap: (c.softcap != 0.0).then_some(c.softcap),
            alibi_slopes: c.alibi.then_some(&self.slopes[..]),
            bias: c.bias.then_some(AttendBias {
                data: BiasData::F32(&self.bias),
                head_stride: c.n_q * c.n_k,
                query_stride: c.n_k,
                batch_stride: 0,
            }),
            sinks: c.sinks.then_some(&self.sinks[..]),
            causal: c.causal,
            window: c.window,
            q_positions: positioned.then_some(&self.q_pos[..]),
            k_positions: positioned.then_some(&self.k_pos[..]),
            ..Default::default()
        }
    }

    /// The key rows of row `(i, h)` (before masking).
    fn key_rows(&self, c: &Case, i: usize) -> Vec<usize> {
        match c.keys {
            Keys::Dense => (0..c.n_k).collect(),
            Keys::Indices => self.sel.iter().map(|&t| t as usize).collect(),
            Keys::Blocks => {
                let qb = i / QBLOCK;
                self.ids[self.offsets[qb]..self.offsets[qb + 1]]
                    .iter()
                    .flat_map(|&b| b as usize * BLOCK..((b as usize + 1) * BLOCK).min(c.n_k))
                    .collect()
            }
        }
    }
}

/// One call: (out, lse) with `mass = false`, (out, mass) with `mass = true`.
fn call<T: AttendElement>(
    kern: &Kernels,
    c: &Case,
    x: &Inputs<T>,
    mass: bool,
) -> (Vec<f32>, Vec<f32>) {
    let (n_q, n_k, h_q, h_kv, d, dv) = (c.n_q, c.n_k, c.h_q, c.h_kv, c.d, c.dv);
    let mut out = vec![f32::NAN; n_q * h_q * dv];
    let mut side = vec![0f32; if mass { n_k } else { n_q * h_q }];
    let extras = if mass {
        AttendExtras {
            lse: None,
            mass: Some((&mut side, 0)),
        }
    } else {
        AttendExtras {
            lse: Some((&mut side, 0)),
            mass: None,
        }
    };
    kern.attention(
        Heads::dense(&x.q, n_q, h_q, d).unwrap(),
        Heads::dense(&x.k, n_k, h_kv, d).unwrap(),
        Heads::dense(&x.v, n_k, h_kv, dv).unwrap(),
        x.keys(c),
        &x.opts(c),
        HeadsMut::dense(&mut out, n_q, h_q, dv).unwrap(),
        extras,
    )
    .unwrap();
    (out, side)
}

/// Every level against the reference and bit-identical to the first; returns the worst
/// error in units of the bound.
fn check_case<T: AttendElement + Copy>(
    c: &Case,
    r: &mut Rng,
    to: impl Fn(f32) -> T,
    from: impl Fn(T) -> f32,
) -> f64 {
    let x = inputs(c, r, &to, &from);
    let sl64: Vec<f64> = x.slopes.iter().map(|&s| s as f64).collect();
    let sk64: Vec<f64> = x.sinks.iter().map(|&s| s as f64).collect();
    let bias_fn = |h: usize, i: usize, j: usize| x.bias[(h * c.n_q + i) * c.n_k + j] as f64;
    let key_rows = |i: usize, _h: usize| x.key_rows(c, i);
    let spec = Spec {
        n_q: c.n_q,
        n_k: c.n_k,
        h_q: c.h_q,
        h_kv: c.h_kv,
        d: c.d,
        dv: c.dv,
        q: &x.qf,
        k: &x.kf,
        v: &x.vf,
        keys: &key_rows,
        scale: (1.0 / (c.d as f64).sqrt()) as f32 as f64,
        softcap: (c.softcap != 0.0).then_some(c.softcap as f64),
        bias: c
            .bias
            .then_some(&bias_fn as &dyn Fn(usize, usize, usize) -> f64),
        alibi: c.alibi.then_some(&sl64[..]),
        sinks: c.sinks.then_some(&sk64[..]),
        q_pos: &|i| x.q_pos[i] as i64,
        k_pos: &|j| x.k_pos[j] as i64,
        causal: c.causal || c.window > 0,
        left: (c.window > 0).then(|| c.window as i64 - 1),
        right: None,
    };
    let rows: Vec<_> = (0..c.n_q)
        .flat_map(|i| (0..c.h_q).map(move |h| (i, h)))
        .map(|(i, h)| row(&spec, i, h))
        .collect();
    let mut mass_want = vec![0f64; c.n_k];
    if !c.sinks {
        for i in 0..c.n_q {
            for h in 0..c.h_q {
                let w = &rows[i * c.h_q + h];
                if w.lse > f64::NEG_INFINITY {
                    for (j, l, _) in spec.logits(i, h) {
                        mass_want[j] += (l - w.lse).exp();
                    }
                }
            }
        }
    }
    let cap = c.softcap as f64;
    let mut worst = 0f64;
    let mut first: Option<[Vec<f32>; 3]> = None;
    for kern in Kernels::all_supported() {
        let (out, lse) = call(kern, c, &x, false);
        let mut check = Check::new();
        let what = |i: usize, h: usize| format!("{:?} {c:?} ({i}, {h})", kern.isa());
        let mut outs = vec![&out];
        let with_mass = (!c.sinks).then(|| call(kern, c, &x, true));
        if let Some((o, _)) = &with_mass {
            outs.push(o);
        }
        for i in 0..c.n_q {
            for h in 0..c.h_q {
                let w = &rows[i * c.h_q + h];
                // Softcap 2^-20 c vmax; sinks' merge 2^-22 vmax.
                let extra = 2f64.powi(-20) * cap * w.vmax
                    + if c.sinks {
                        2f64.powi(-22) * w.vmax
                    } else {
                        0.0
                    };
                for o in &outs {
                    for e in 0..c.dv {
                        let b = bound(w, 2f64.powi(-24), w.out[e]) + extra;
                        let at = (i * c.h_q + h) * c.dv + e;
                        check.add(o[at] as f64, w.out[e], b, &|| what(i, h));
                    }
                }
                let lb = lse_bound(w) + 2f64.powi(-20) * cap;
                check.add(lse[i * c.h_q + h] as f64, w.lse, lb, &|| what(i, h));
            }
        }
        let mass = with_mass.map(|m| m.1).unwrap_or_default();
        let a = rows.iter().map(|w| w.a).fold(0.0, f64::max);
        let n = (c.n_q * c.h_q) as f64;
        for (j, (&m, &want)) in mass.iter().zip(&mass_want).enumerate() {
            let b = 2f64.powi(-17) * (1.0 + a + cap / 8.0) * (1.0 + n / 64.0) * (1.0 + want)
                + 2f64.powi(-24) * n * want
                + 2f64.powi(-22);
            check.add(m as f64, want, b, &|| format!("{:?} mass {j}", kern.isa()));
        }
        worst = worst.max(check.worst);
        match &first {
            None => first = Some([out, lse, mass]),
            Some([o, l, m]) => {
                assert_eq!(bits(o), bits(&out), "{:?} {c:?}", kern.isa());
                assert_eq!(bits(l), bits(&lse), "{:?} {c:?}", kern.isa());
                assert_eq!(bits(m), bits(&mass), "{:?} {c:?}", kern.isa());
            }
        }
    }
    worst
}

#[test]
fn v_head_dim_matches_the_reference_on_every_level() {
    let mut r = Rng(0x5eed_4d1a);
    let mut worst = 0f64;
    for c in cases() {
        worst = worst.max(check_case(&c, &mut r, |x| x, |x| x));
        worst = worst.max(check_case(&c, &mut r, f16::from_f32, f16::to_f32));
        worst = worst.max(check_case(&c, &mut r, bf16::from_f32, bf16::to_f32));
    }
    eprintln!("dv != d: worst error {worst:.3} of the bound");
}

struct Reverse;
impl ParallelFor for Reverse {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n).rev().for_each(task);
        true
    }
}

/// The same bits inline, on 3 threads, through a reversed callback and with tiny units.
#[test]
fn v_head_dim_is_bit_identical_for_every_thread_count() {
    parallel::set_num_threads(3).unwrap();
    let mut r = Rng(99);
    for c in cases() {
        let x = inputs(&c, &mut r, &bf16::from_f32, &bf16::to_f32);
        for kern in Kernels::all_supported() {
            let run = || {
                let (o, l) = call(kern, &c, &x, false);
                let m = if c.sinks {
                    vec![]
                } else {
                    call(kern, &c, &x, true).1
                };
                (bits(&o), bits(&l), bits(&m))
            };
            let want = parallel::with_executor(Executor::Inline, run);
            for e in [Executor::Threads(3), Executor::Callback(Arc::new(Reverse))] {
                for (unit, min) in [(parallel::UNIT_WORK, parallel::MIN_PARALLEL_WORK), (1, 0)] {
                    let got = parallel::with_executor(e.clone(), || {
                        parallel::with_granularity(unit, min, run)
                    });
                    assert!(got == want, "{:?} {e:?} {c:?}", kern.isa());
                }
            }
        }
    }
}

/// A ragged batch (prefill sequences and a split-K decoding one, causal bottom-right)
/// and a dense batch: every sequence bit-identical to its own call.
#[test]
fn v_head_dim_batches_equal_separate_calls() {
    let (h_q, h_kv, d, dv) = (8usize, 2usize, 192usize, 128usize);
    let lens = [(5usize, 40usize), (1, 1100), (0, 7), (17, 17), (3, 130)];
    let mut r = Rng(5);
    let (tq, tk): (usize, usize) = (
        lens.iter().map(|l| l.0).sum(),
        lens.iter().map(|l| l.1).sum(),
    );
    let q: Vec<bf16> = r
        .vec(tq * h_q * d)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let k: Vec<bf16> = r
        .vec(tk * h_kv * d)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let v: Vec<bf16> = r
        .vec(tk * h_kv * dv)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let mut cu_q = vec![0];
    let mut cu_k = vec![0];
    for (a, b) in lens {
        cu_q.push(cu_q.last().unwrap() + a);
        cu_k.push(cu_k.last().unwrap() + b);
    }
    let opts = AttendOptions {
        causal: true,
        align: CausalAlign::BottomRight,
        ..Default::default()
    };
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; tq * h_q * dv];
        let mut lse = vec![0f32; tq * h_q];
        kern.attention_batch(
            Heads::dense(&q, tq, h_q, d).unwrap(),
            Heads::dense(&k, tk, h_kv, d).unwrap(),
            Heads::dense(&v, tk, h_kv, dv).unwrap(),
            KeySubset::Dense,
            &opts,
            &Batch::Ragged {
                cu_seqlens_q: &cu_q,
                cu_seqlens_k: &cu_k,
            },
            HeadsMut::dense(&mut out, tq, h_q, dv).unwrap(),
            AttendExtras {
                lse: Some((&mut lse, 0)),
                mass: None,
            },
        )
        .unwrap();
        for b in 0..lens.len() {
            let (q0, q1, k0, k1) = (cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]);
            let (nq, nk) = (q1 - q0, k1 - k0);
            let mut o1 = vec![0f32; nq * h_q * dv];
            let mut l1 = vec![0f32; nq * h_q];
            kern.attention(
                Heads::dense(&q[q0 * h_q * d..q1 * h_q * d], nq, h_q, d).unwrap(),
                Heads::dense(&k[k0 * h_kv * d..k1 * h_kv * d], nk, h_kv, d).unwrap(),
                Heads::dense(&v[k0 * h_kv * dv..k1 * h_kv * dv], nk, h_kv, dv).unwrap(),
                KeySubset::Dense,
                &opts,
                HeadsMut::dense(&mut o1, nq, h_q, dv).unwrap(),
                AttendExtras {
                    lse: Some((&mut l1, 0)),
                    mass: None,
                },
            )
            .unwrap();
            assert_eq!(
                bits(&o1),
                bits(&out[q0 * h_q * dv..q1 * h_q * dv]),
                "{:?} seq {b}",
                kern.isa()
            );
            assert_eq!(
                bits(&l1),
                bits(&lse[q0 * h_q..q1 * h_q]),
                "{:?}",
                kern.isa()
            );
        }
        // A dense batch of two sequences (V and out at their own batch strides).
        let (nq, nk) = (6usize, 50usize);
        let mut out = vec![0f32; 2 * nq * h_q * dv + 5];
        let strides = BatchStrides {
            q: nq * h_q * d,
            k: nk * h_kv * d,
            v: nk * h_kv * dv,
            out: nq * h_q * dv + 5,
            ..Default::default()
        };
        // Views holding one sequence only (v's batch extent counts dv): BUFFER_TOO_SMALL.
        let e = kern.attention_batch(
            Heads::new(&q, nq, h_q, d, h_q * d, d).unwrap(),
            Heads::new(&k, nk, h_kv, d, h_kv * d, d).unwrap(),
            Heads::dense(&v[..nk * h_kv * dv + 1], nk, h_kv, dv).unwrap(),
            KeySubset::Dense,
            &opts,
            &Batch::Dense { n: 2, strides },
            HeadsMut::new(&mut out, nq, h_q, dv, h_q * dv, dv).unwrap(),
            AttendExtras::default(),
        );
        assert_eq!(e.unwrap_err().kind, ErrorKind::BufferTooSmall);
        kern.attention_batch(
            Heads::new(&q, nq, h_q, d, h_q * d, d).unwrap(),
            Heads::new(&k, nk, h_kv, d, h_kv * d, d).unwrap(),
            Heads::new(&v, nk, h_kv, dv, h_kv * dv, dv).unwrap(),
            KeySubset::Dense,
            &opts,
            &Batch::Dense { n: 2, strides },
            HeadsMut::new(&mut out, nq, h_q, dv, h_q * dv, dv).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
        for b in 0..2 {
            let mut o1 = vec![0f32; nq * h_q * dv];
            kern.attention(
                Heads::dense(&q[b * strides.q..][..nq * h_q * d], nq, h_q, d).unwrap(),
                Heads::dense(&k[b * strides.k..][..nk * h_kv * d], nk, h_kv, d).unwrap(),
                Heads::dense(&v[b * strides.v..][..nk * h_kv * dv], nk, h_kv, dv).unwrap(),
                KeySubset::Dense,
                &opts,
                HeadsMut::dense(&mut o1, nq, h_q, dv).unwrap(),
                AttendExtras::default(),
            )
            .unwrap();
            assert_eq!(
                bits(&o1),
                bits(&out[b * strides.out..][..nq * h_q * dv]),
                "{:?} dense seq {b}",
                kern.isa()
            );
        }
    }
}

/// Bad shapes: out's head size must be v's, k's must be q's, none 0; V rows that
/// overlap; nothing written.
#[test]
fn v_head_dim_bad_shapes_are_refused() {
    let kern = Kernels::active().unwrap();
    let (d, dv) = (8usize, 5usize);
    let q = vec![0.5f32; 2 * 2 * d];
    let k = vec![0.25f32; 3 * 2 * d];
    let v = vec![1f32; 3 * 2 * d];
    let mut out = vec![7f32; 2 * 2 * d];
    let mut go = |kd: usize, vd: usize, od: usize| -> ErrorKind {
        kern.attention(
            Heads::dense(&q, 2, 2, d).unwrap(),
            Heads::dense(&k[..3 * 2 * kd], 3, 2, kd).unwrap(),
            Heads::dense(&v[..3 * 2 * vd], 3, 2, vd).unwrap(),
            KeySubset::Dense,
            &AttendOptions::default(),
            HeadsMut::dense(&mut out[..2 * 2 * od], 2, 2, od).unwrap(),
            AttendExtras::default(),
        )
        .unwrap_err()
        .kind
    };
    assert_eq!(
        go(d, dv, d),
        ErrorKind::InvalidArgument,
        "out head dim != v's"
    );
    assert_eq!(go(d, 0, 0), ErrorKind::InvalidArgument, "v head dim 0");
    assert_eq!(
        go(d - 1, dv, dv),
        ErrorKind::InvalidArgument,
        "k head dim != q's"
    );
    assert!(out.iter().all(|&x| x == 7.0));
    // V rows of dv elements at a head stride below dv overlap.
    assert_eq!(
        Heads::new(&v, 3, 2, dv, 2 * dv, dv - 1).unwrap_err().kind,
        ErrorKind::BadStride
    );
    // The right shapes work (and write only out).
    kern.attention(
        Heads::dense(&q, 2, 2, d).unwrap(),
        Heads::dense(&k, 3, 2, d).unwrap(),
        Heads::dense(&v[..3 * 2 * dv], 3, 2, dv).unwrap(),
        KeySubset::Dense,
        &AttendOptions::default(),
        HeadsMut::dense(&mut out[..2 * 2 * dv], 2, 2, dv).unwrap(),
        AttendExtras::default(),
    )
    .unwrap();
    assert!(out[..2 * 2 * dv].iter().all(|&x| x == 1.0));
    assert!(out[2 * 2 * dv..].iter().all(|&x| x == 7.0));
}

/// DeepSeek's absorbed MLA decoding: q.k over 576 elements (512 latent + 64 rotary), V
/// the 512 latent elements of the same cache rows, read in place as a view of K (token
/// stride 576), one KV head for 16 query heads, split-K over 1100 keys: against the
/// reference on every level, bit-identical across levels.
#[test]
fn absorbed_mla_decode_reads_v_inside_k() {
    let (n_q, n_k, h_q, d, dv) = (1usize, 1100usize, 16usize, 576usize, 512usize);
    let mut r = Rng(576);
    let q: Vec<bf16> = r
        .vec(n_q * h_q * d)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let k: Vec<bf16> = r.vec(n_k * d).into_iter().map(bf16::from_f32).collect();
    let f = |x: &[bf16]| -> Vec<f64> { x.iter().map(|y| y.to_f32() as f64).collect() };
    let (qf, kf) = (f(&q), f(&k));
    let vf: Vec<f64> = (0..n_k)
        .flat_map(|t| kf[t * d..t * d + dv].to_vec())
        .collect();
    let all = |_: usize, _: usize| (0..n_k).collect::<Vec<_>>();
    let spec = Spec {
        n_q,
        n_k,
        h_q,
        h_kv: 1,
        d,
        dv,
        q: &qf,
        k: &kf,
        v: &vf,
        keys: &all,
        scale: (1.0 / (d as f64).sqrt()) as f32 as f64,
        softcap: None,
        bias: None,
        alibi: None,
        sinks: None,
        q_pos: &|_| 0,
        k_pos: &|_| 0,
        causal: false,
        left: None,
        right: None,
    };
    let mut first: Option<Vec<u32>> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; n_q * h_q * dv];
        let mut lse = vec![0f32; n_q * h_q];
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, 1, d).unwrap(),
            // V: the first dv elements of every K row, in place.
            Heads::new(&k, n_k, 1, dv, d, d).unwrap(),
            KeySubset::Dense,
            &AttendOptions::default(),
            HeadsMut::dense(&mut out, n_q, h_q, dv).unwrap(),
            AttendExtras {
                lse: Some((&mut lse, 0)),
                mass: None,
            },
        )
        .unwrap();
        let mut check = Check::new();
        for h in 0..h_q {
            let w = row(&spec, 0, h);
            for e in 0..dv {
                let b = bound(&w, 2f64.powi(-24), w.out[e]);
                check.add(out[h * dv + e] as f64, w.out[e], b, &|| {
                    format!("{:?} head {h} e {e}", kern.isa())
                });
            }
            check.add(lse[h] as f64, w.lse, lse_bound(&w), &|| {
                format!("{:?} lse {h}", kern.isa())
            });
        }
        match &first {
            None => first = Some(bits(&out)),
            Some(b) => assert_eq!(b, &bits(&out), "{:?}", kern.isa()),
        }
    }
}
