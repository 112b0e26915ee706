//! Attention sinks (one logit per query head in the softmax denominator, without a
//! value): against the float64 reference on every level (prefill, split-K decoding over
//! every key and over an index list, rows that see no key), bit-identical on every
//! level, for every thread count, in batches and through the C ABI; bad sinks refused.

mod attn_ref;

use attn_ref::{bound, lse_bound, row, Check, Rng, Spec};
use std::sync::Arc;
use tokenroute::parallel::{self, Executor, ParallelFor};
use tokenroute::{
    AttendExtras, AttendOptions, Batch, CausalAlign, ErrorKind, Heads, HeadsMut, Kernels, KeySubset,
};

const H_Q: usize = 4;
const H_KV: usize = 2;
const D: usize = 16;
const SINKS: [f32; H_Q] = [f32::NEG_INFINITY, 0.5, 3.0, 9.0];

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

struct Case {
    n_q: usize,
    n_k: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    idx: Option<Vec<u32>>,
}

fn case(r: &mut Rng, n_q: usize, n_k: usize, idx: bool) -> Case {
    Case {
        n_q,
        n_k,
        q: r.vec(n_q * H_Q * D).iter().map(|x| 2.0 * x).collect(),
        k: r.vec(n_k * H_KV * D),
        v: r.vec(n_k * H_KV * D),
        idx: idx.then(|| (0..n_k as u32).filter(|j| j % 7 != 3).collect()),
    }
}

/// (out, lse) of a call on level `kern` with the sinks, causal bottom-right.
fn run(kern: &Kernels, c: &Case, sinks: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut out = vec![0f32; c.n_q * H_Q * D];
    let mut lse = vec![0f32; c.n_q * H_Q];
    kern.attention(
        Heads::dense(&c.q, c.n_q, H_Q, D).unwrap(),
        Heads::dense(&c.k, c.n_k, H_KV, D).unwrap(),
        Heads::dense(&c.v, c.n_k, H_KV, D).unwrap(),
        c.idx
            .as_ref()
            .map_or(KeySubset::Dense, |i| KeySubset::Indices(i)),
        &AttendOptions {
            causal: true,
            align: CausalAlign::BottomRight,
            sinks: Some(sinks),
            ..Default::default()
        },
        HeadsMut::dense(&mut out, c.n_q, H_Q, D).unwrap(),
        AttendExtras {
            lse: Some((&mut lse, 0)),
            mass: None,
        },
    )
    .unwrap();
    (out, lse)
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn cases() -> Vec<Case> {
    let mut r = Rng(17);
    vec![
        // Prefill (more queries than keys: the first ones see no key), decoding over every
        // key (split-K: 1500 keys) and over an index list (split-K), a short decode.
        case(&mut r, 40, 30, false),
        case(&mut r, 70, 300, false),
        case(&mut r, 1, 1500, false),
        case(&mut r, 2, 1400, true),
        case(&mut r, 1, 20, false),
    ]
}

#[test]
fn sinks_match_the_reference_on_every_level() {
    for c in cases() {
        let (q, k, v) = (f64s(&c.q), f64s(&c.k), f64s(&c.v));
        let sinks64: Vec<f64> = SINKS.iter().map(|&x| x as f64).collect();
        let idx = c.idx.clone();
        let keys = move |_: usize, _: usize| -> Vec<usize> {
            match &idx {
                Some(l) => l.iter().map(|&j| j as usize).collect(),
                None => (0..c.n_k).collect(),
            }
        };
        let off = c.n_k as i64 - c.n_q as i64;
        let spec = Spec {
            n_q: c.n_q,
            n_k: c.n_k,
            h_q: H_Q,
            h_kv: H_KV,
            d: D,
            dv: D,
            q: &q,
            k: &k,
            v: &v,
            keys: &keys,
            scale: (1.0 / (D as f64).sqrt()) as f32 as f64,
            softcap: None,
            bias: None,
            alibi: None,
            sinks: Some(&sinks64),
            q_pos: &|i| i as i64 + off,
            k_pos: &|j| j as i64,
            causal: true,
            left: None,
            right: None,
        };
        let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
        for kern in Kernels::all_supported() {
            let (out, lse) = run(kern, &c, &SINKS);
            let mut check = Check::new();
            for i in 0..c.n_q {
                for h in 0..H_Q {
                    let want = row(&spec, i, h);
                    for e in 0..D {
                        // The merge with the sink adds 2^-22 vmax.
                        let b =
                            bound(&want, 2f64.powi(-24), want.out[e]) + 2f64.powi(-22) * want.vmax;
                        check.add(out[(i * H_Q + h) * D + e] as f64, want.out[e], b, &|| {
                            format!("{}x{} {:?} ({i}, {h}, {e})", c.n_q, c.n_k, kern.isa())
                        });
                    }
                    check.add(lse[i * H_Q + h] as f64, want.lse, lse_bound(&want), &|| {
                        format!("{}x{} lse ({i}, {h})", c.n_q, c.n_k)
                    });
                }
            }
            match &first {
                None => first = Some((out, lse)),
                Some((o, l)) => {
                    assert_eq!(bits(o), bits(&out), "{:?} differs from scalar", kern.isa());
                    assert_eq!(bits(l), bits(&lse), "{:?} differs from scalar", kern.isa());
                }
            }
        }
    }
    // A NaN sink makes its head's rows NaN (the canonical NaN); -inf sinks are no sinks.
    let c = &cases()[1];
    let kern = Kernels::active().unwrap();
    let (out, _) = run(kern, c, &[f32::NAN, 0.0, 0.0, 0.0]);
    assert!((0..c.n_q).all(|i| out[i * H_Q * D..i * H_Q * D + D]
        .iter()
        .all(|x| x.to_bits() == 0x7fc0_0000)));
    let (a, la) = run(kern, c, &[f32::NEG_INFINITY; H_Q]);
    let mut plain = vec![0f32; c.n_q * H_Q * D];
    let mut lp = vec![0f32; c.n_q * H_Q];
    kern.attention(
        Heads::dense(&c.q, c.n_q, H_Q, D).unwrap(),
        Heads::dense(&c.k, c.n_k, H_KV, D).unwrap(),
        Heads::dense(&c.v, c.n_k, H_KV, D).unwrap(),
        KeySubset::Dense,
        &AttendOptions {
            causal: true,
            align: CausalAlign::BottomRight,
            ..Default::default()
        },
        HeadsMut::dense(&mut plain, c.n_q, H_Q, D).unwrap(),
        AttendExtras {
            lse: Some((&mut lp, 0)),
            mass: None,
        },
    )
    .unwrap();
    assert_eq!(bits(&la), bits(&lp), "-inf sinks change the lse");
    let worst = a
        .iter()
        .zip(&plain)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 2f32.powi(-22), "-inf sinks: {worst}");
}

struct Reverse;
impl ParallelFor for Reverse {
    fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
        (0..n).rev().for_each(task);
        true
    }
}

#[test]
fn sinks_are_bit_identical_for_every_thread_count_and_in_batches() {
    parallel::set_num_threads(3).unwrap();
    let cs = cases();
    for kern in Kernels::all_supported() {
        for c in &cs {
            let want = parallel::with_executor(Executor::Inline, || run(kern, c, &SINKS));
            for e in [Executor::Threads(3), Executor::Callback(Arc::new(Reverse))] {
                for (unit, min) in [(parallel::UNIT_WORK, parallel::MIN_PARALLEL_WORK), (1, 0)] {
                    let got = parallel::with_executor(e.clone(), || {
                        parallel::with_granularity(unit, min, || run(kern, c, &SINKS))
                    });
                    assert!(got == want, "{:?} {e:?} {}x{}", kern.isa(), c.n_q, c.n_k);
                }
            }
        }
        // A ragged batch of the dense cases: each sequence equals its own call.
        let dense: Vec<&Case> = cs.iter().filter(|c| c.idx.is_none()).collect();
        let mut cu_q = vec![0];
        let mut cu_k = vec![0];
        let (mut q, mut k, mut v) = (Vec::<f32>::new(), Vec::<f32>::new(), Vec::<f32>::new());
        for c in &dense {
            cu_q.push(cu_q.last().unwrap() + c.n_q);
            cu_k.push(cu_k.last().unwrap() + c.n_k);
            q.extend(&c.q);
            k.extend(&c.k);
            v.extend(&c.v);
        }
        let (tq, tk) = (cu_q[dense.len()], cu_k[dense.len()]);
        let batch = || {
            let mut out = vec![0f32; tq * H_Q * D];
            let mut lse = vec![0f32; tq * H_Q];
            kern.attention_batch(
                Heads::dense(&q, tq, H_Q, D).unwrap(),
                Heads::dense(&k, tk, H_KV, D).unwrap(),
                Heads::dense(&v, tk, H_KV, D).unwrap(),
                KeySubset::Dense,
                &AttendOptions {
                    causal: true,
                    align: CausalAlign::BottomRight,
                    sinks: Some(&SINKS),
                    ..Default::default()
                },
                &Batch::Ragged {
                    cu_seqlens_q: &cu_q,
                    cu_seqlens_k: &cu_k,
                },
                HeadsMut::dense(&mut out, tq, H_Q, D).unwrap(),
                AttendExtras {
                    lse: Some((&mut lse, 0)),
                    mass: None,
                },
            )
            .unwrap();
            (out, lse)
        };
        let (out, lse) = batch();
        // On threads, with every sequence small (one parallel loop over the batch) or
        // big (each split on its own): the same bits.
        for min in [0, 1 << 40] {
            let got = parallel::with_executor(Executor::Threads(3), || {
                parallel::with_granularity(parallel::UNIT_WORK, min, batch)
            });
            assert!(
                got == (out.clone(), lse.clone()),
                "{:?} batch min {min}",
                kern.isa()
            );
        }
        for (b, c) in dense.iter().enumerate() {
            let (o1, l1) = run(kern, c, &SINKS);
            assert_eq!(
                bits(&out[cu_q[b] * H_Q * D..cu_q[b + 1] * H_Q * D]),
                bits(&o1)
            );
            assert_eq!(bits(&lse[cu_q[b] * H_Q..cu_q[b + 1] * H_Q]), bits(&l1));
        }
    }
}

#[test]
fn bad_sinks_are_refused_and_nothing_is_written() {
    let c = &cases()[4];
    let kern = Kernels::active().unwrap();
    let mut mass = vec![0f32; c.n_k];
    for (sinks, with_mass, want) in [
        (&SINKS[..3], false, ErrorKind::InvalidArgument),
        (&SINKS[..], true, ErrorKind::Unsupported),
    ] {
        let mut out = vec![7f32; c.n_q * H_Q * D];
        let e = kern
            .attention(
                Heads::dense(&c.q, c.n_q, H_Q, D).unwrap(),
                Heads::dense(&c.k, c.n_k, H_KV, D).unwrap(),
                Heads::dense(&c.v, c.n_k, H_KV, D).unwrap(),
                KeySubset::Dense,
                &AttendOptions {
                    sinks: Some(sinks),
                    ..Default::default()
                },
                HeadsMut::dense(&mut out, c.n_q, H_Q, D).unwrap(),
                AttendExtras {
                    lse: None,
                    mass: with_mass.then_some((&mut mass[..], 0)),
                },
            )
            .unwrap_err();
        assert_eq!(e.kind, want);
        assert!(out.iter().all(|&x| x == 7.0) && mass.iter().all(|&x| x == 0.0));
    }
}

/// options->sinks through the C ABI gives the Rust API's bits.
#[test]
fn sinks_through_c() {
    use tokenroute::ffi::attend::*;
    use tokenroute::ffi::score::TKR_DTYPE_F32;
    use tokenroute::ffi::*;
    let c = &cases()[2];
    let kern = Kernels::active().unwrap();
    let (want, _) = run(kern, c, &SINKS);
    // SAFETY: the structs are filled by their init functions; buffers as described.
    unsafe {
        let mut o: tkr_attention_options = std::mem::zeroed();
        assert_eq!(tkr_attention_options_init(&mut o), TKR_STATUS_OK);
        o.flags = TKR_ATTENTION_CAUSAL;
        o.causal_align = TKR_CAUSAL_ALIGN_BOTTOM_RIGHT;
        o.sinks = SINKS.as_ptr();
        let mut out = vec![0f32; c.n_q * H_Q * D];
        let st = tkr_attention(
            TKR_DTYPE_F32,
            c.q.as_ptr() as *const _,
            c.n_q,
            H_Q,
            D,
            H_Q * D,
            D,
            c.k.as_ptr() as *const _,
            c.v.as_ptr() as *const _,
            c.n_k,
            H_KV,
            H_KV * D,
            D,
            H_KV * D,
            D,
            std::ptr::null(),
            &o,
            out.as_mut_ptr() as *mut _,
            H_Q * D,
            D,
        );
        assert_eq!(st, TKR_STATUS_OK);
        assert_eq!(bits(&out), bits(&want));
    }
}
