//! Batched attention (dense and ragged batches) and implicit causal alignment, on every
//! level: every sequence bit-identical to a separate call over it, and within the
//! documented bound of a float64 reference; bad input gets a clear status and nothing
//! is written.

mod attn_ref;

use attn_ref::{bound, lse_bound, row, Check, Rng, Spec};
use tokenroute::{
    AttendExtras, AttendOptions, Batch, BatchStrides, CausalAlign, ErrorKind, Heads, HeadsMut,
    Kernels, KeySubset, ListsPer,
};

const CANARY: f32 = 12345.5;

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// Dense [B, H, T, d] queries and outputs (head-major), [B, T, H, d] keys and values,
/// per-sequence positions, lse and per-KV-head mass: every sequence equals a separate
/// call bit for bit and the reference within the bound.
#[test]
fn dense_batch_equals_separate_calls_and_the_reference() {
    let (nb, n_q, n_k, h_q, h_kv, d) = (3, 9, 150, 4, 2, 40);
    let mut r = Rng(7);
    let q = r.vec(nb * h_q * n_q * d);
    let k = r.vec(nb * n_k * h_kv * d);
    let v = r.vec(nb * n_k * h_kv * d);
    // Each sequence its own positions: keys 0, 2, 4, ..., queries late in the sequence.
    let k_pos: Vec<u32> = (0..nb * n_k)
        .map(|x| 2 * (x % n_k) as u32 + x as u32 / 7)
        .collect();
    let q_pos: Vec<u32> = (0..nb * n_q)
        .map(|x| 150 + 17 * (x % n_q) as u32 + (x / n_q) as u32)
        .collect();
    let strides = BatchStrides {
        q: h_q * n_q * d,
        k: n_k * h_kv * d,
        v: n_k * h_kv * d,
        out: h_q * n_q * d,
        lse: 0,
        mass: h_kv * n_k,
        q_positions: n_q,
        k_positions: n_k,
    };
    let sel: Vec<u32> = (0..n_k as u32).filter(|t| t % 5 != 3).collect();
    for keys in [KeySubset::Dense, KeySubset::Indices(&sel)] {
        for kern in Kernels::all_supported() {
            let opts = AttendOptions {
                causal: true,
                window: 120,
                q_positions: Some(&q_pos),
                k_positions: Some(&k_pos),
                ..Default::default()
            };
            let mut out = vec![CANARY; nb * h_q * n_q * d];
            let mut lse = vec![CANARY; nb * n_q * h_q];
            let mut mass = vec![0f32; nb * h_kv * n_k];
            kern.attention_batch(
                Heads::new(&q, n_q, h_q, d, d, n_q * d).unwrap(),
                Heads::dense(&k, n_k, h_kv, d).unwrap(),
                Heads::dense(&v, n_k, h_kv, d).unwrap(),
                keys,
                &opts,
                &Batch::Dense { n: nb, strides },
                HeadsMut::new(&mut out, n_q, h_q, d, d, n_q * d).unwrap(),
                AttendExtras {
                    lse: Some((&mut lse, 0)),
                    mass: Some((&mut mass, n_k)),
                },
            )
            .unwrap();
            let mut check = Check::new();
            for b in 0..nb {
                let (qs, ks) = (&q[b * strides.q..], &k[b * strides.k..]);
                let vs = &v[b * strides.v..];
                let mut o1 = vec![CANARY; h_q * n_q * d];
                let mut l1 = vec![CANARY; n_q * h_q];
                let mut m1 = vec![0f32; h_kv * n_k];
                let o = AttendOptions {
                    q_positions: Some(&q_pos[b * n_q..(b + 1) * n_q]),
                    k_positions: Some(&k_pos[b * n_k..(b + 1) * n_k]),
                    ..opts
                };
                kern.attention(
                    Heads::new(&qs[..strides.q], n_q, h_q, d, d, n_q * d).unwrap(),
                    Heads::dense(&ks[..strides.k], n_k, h_kv, d).unwrap(),
                    Heads::dense(&vs[..strides.v], n_k, h_kv, d).unwrap(),
                    keys,
                    &o,
                    HeadsMut::new(&mut o1, n_q, h_q, d, d, n_q * d).unwrap(),
                    AttendExtras {
                        lse: Some((&mut l1, 0)),
                        mass: Some((&mut m1, n_k)),
                    },
                )
                .unwrap();
                let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&out[b * strides.out..][..o1.len()]), bits(&o1));
                assert_eq!(bits(&lse[b * n_q * h_q..][..l1.len()]), bits(&l1));
                assert_eq!(bits(&mass[b * strides.mass..][..m1.len()]), bits(&m1));
                // Against the reference ([T, H, d] copies of the sequence).
                let qd: Vec<f64> = (0..n_q * h_q * d)
                    .map(|x| {
                        let (i, h, e) = (x / (h_q * d), x / d % h_q, x % d);
                        qs[h * n_q * d + i * d + e] as f64
                    })
                    .collect();
                let (kd, vd) = (f64s(&ks[..strides.k]), f64s(&vs[..strides.v]));
                let key_list = |_: usize, _: usize| match keys {
                    KeySubset::Dense => (0..n_k).collect(),
                    _ => sel.iter().map(|&t| t as usize).collect::<Vec<usize>>(),
                };
                let (qpb, kpb) = (&q_pos[b * n_q..], &k_pos[b * n_k..]);
                let spec = Spec {
                    n_q,
                    n_k,
                    h_q,
                    h_kv,
                    d,
                    dv: d,
                    q: &qd,
                    k: &kd,
                    v: &vd,
                    keys: &key_list,
                    scale: (1.0 / (d as f64).sqrt()) as f32 as f64,
                    softcap: None,
                    bias: None,
                    alibi: None,
                    sinks: None,
                    q_pos: &|i| qpb[i] as i64,
                    k_pos: &|j| kpb[j] as i64,
                    causal: true,
                    left: Some(119),
                    right: None,
                };
                for i in 0..n_q {
                    for h in 0..h_q {
                        let want = row(&spec, i, h);
                        for e in 0..d {
                            let got = o1[h * n_q * d + i * d + e] as f64;
                            let b = bound(&want, 2f64.powi(-24), want.out[e]);
                            check.add(got, want.out[e], b, &|| format!("({i}, {h}, {e})"));
                        }
                        check.add(l1[i * h_q + h] as f64, want.lse, lse_bound(&want), &|| {
                            format!("lse ({i}, {h})")
                        });
                    }
                }
            }
        }
    }
}

/// A ragged batch (empty query and key sequences included) with every key-set form,
/// explicit positions and implicit alignments: every sequence equals a separate call
/// bit for bit; rows outside every sequence stay untouched.
#[test]
fn ragged_batch_equals_separate_calls() {
    let cu_q = [0usize, 3, 3, 20, 21, 40];
    let cu_k = [2usize, 102, 132, 132, 201, 231];
    let (tq, tk, h_q, h_kv, d) = (42, 240, 6, 2, 33);
    let mut r = Rng(11);
    let q = r.vec(tq * h_q * d);
    let k = r.vec(tk * h_kv * d);
    let v = r.vec(tk * h_kv * d);
    let q_pos: Vec<u32> = (0..tq as u32).map(|i| 60 + 5 * i).collect();
    let k_pos: Vec<u32> = (0..tk as u32).map(|j| j + j / 3).collect();
    let n_seqs = cu_q.len() - 1;
    // Per-sequence index lists (local rows) and block lists (per query head).
    let mut indices = Vec::new();
    let mut ioff = vec![0usize];
    for b in 0..n_seqs {
        let nk = cu_k[b + 1] - cu_k[b];
        indices.extend((0..nk as u32).filter(|t| !(t * 7 + b as u32).is_multiple_of(4)));
        ioff.push(indices.len());
    }
    let (bs, qbs) = (16usize, 4usize);
    let mut boff = vec![0usize];
    let mut bids = Vec::new();
    for b in 0..n_seqs {
        let (nq, nk) = (cu_q[b + 1] - cu_q[b], cu_k[b + 1] - cu_k[b]);
        let nblk = nk.div_ceil(bs);
        for h in 0..h_q {
            for qb in 0..nq.div_ceil(qbs) {
                for blk in 0..nblk {
                    if (blk + h + qb) % 3 != 1 {
                        bids.push(blk as u32);
                    }
                }
                boff.push(bids.len());
                let _ = h;
            }
        }
    }
    let blocks = KeySubset::Blocks {
        block_size: bs,
        query_block: qbs,
        offsets: &boff,
        ids: &bids,
        per: ListsPer::QHead,
    };
    let seq_idx = KeySubset::SeqIndices {
        indices: &indices,
        offsets: &ioff,
    };
    let modes: [(CausalAlign, bool); 4] = [
        (CausalAlign::Positions, false),
        (CausalAlign::Positions, true),
        (CausalAlign::TopLeft, true),
        (CausalAlign::BottomRight, true),
    ];
    for keys in [KeySubset::Dense, seq_idx, blocks] {
        for (align, causal) in modes {
            let explicit = align == CausalAlign::Positions;
            let opts = AttendOptions {
                causal,
                align,
                q_positions: explicit.then_some(&q_pos[..]),
                k_positions: explicit.then_some(&k_pos[..]),
                ..Default::default()
            };
            for kern in Kernels::all_supported() {
                let mut out = vec![CANARY; tq * h_q * d];
                let mut lse = vec![CANARY; tq * h_q];
                let mut mass = vec![0f32; tk];
                kern.attention_batch(
                    Heads::dense(&q, tq, h_q, d).unwrap(),
                    Heads::dense(&k, tk, h_kv, d).unwrap(),
                    Heads::dense(&v, tk, h_kv, d).unwrap(),
                    keys,
                    &opts,
                    &Batch::Ragged {
                        cu_seqlens_q: &cu_q,
                        cu_seqlens_k: &cu_k,
                    },
                    HeadsMut::dense(&mut out, tq, h_q, d).unwrap(),
                    AttendExtras {
                        lse: Some((&mut lse, 0)),
                        mass: Some((&mut mass, 0)),
                    },
                )
                .unwrap();
                // Rows outside every sequence: untouched.
                for i in (0..tq).filter(|&i| i >= cu_q[n_seqs]) {
                    assert!(out[i * h_q * d..(i + 1) * h_q * d]
                        .iter()
                        .all(|&x| x == CANARY));
                    assert!(lse[i * h_q..(i + 1) * h_q].iter().all(|&x| x == CANARY));
                }
                let mut list0 = 0;
                for b in 0..n_seqs {
                    let (q0, q1, k0, k1) = (cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]);
                    let (nq, nk) = (q1 - q0, k1 - k0);
                    let n_lists = h_q * nq.div_ceil(qbs);
                    let keys1 = match keys {
                        KeySubset::SeqIndices { indices, offsets } => {
                            KeySubset::Indices(&indices[offsets[b]..offsets[b + 1]])
                        }
                        KeySubset::Blocks { .. } => KeySubset::Blocks {
                            block_size: bs,
                            query_block: qbs,
                            offsets: &boff[list0..list0 + n_lists + 1],
                            ids: &bids,
                            per: ListsPer::QHead,
                        },
                        k => k,
                    };
                    list0 += n_lists;
                    let o = AttendOptions {
                        q_positions: explicit.then_some(&q_pos[q0..q1]),
                        k_positions: explicit.then_some(&k_pos[k0..k1]),
                        ..opts
                    };
                    let mut o1 = vec![CANARY; nq * h_q * d];
                    let mut l1 = vec![CANARY; nq * h_q];
                    let mut m1 = vec![0f32; nk];
                    kern.attention(
                        Heads::dense(&q[q0 * h_q * d..q1 * h_q * d], nq, h_q, d).unwrap(),
                        Heads::dense(&k[k0 * h_kv * d..k1 * h_kv * d], nk, h_kv, d).unwrap(),
                        Heads::dense(&v[k0 * h_kv * d..k1 * h_kv * d], nk, h_kv, d).unwrap(),
                        keys1,
                        &o,
                        HeadsMut::dense(&mut o1, nq, h_q, d).unwrap(),
                        AttendExtras {
                            lse: Some((&mut l1, 0)),
                            mass: Some((&mut m1, 0)),
                        },
                    )
                    .unwrap();
                    let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&out[q0 * h_q * d..q1 * h_q * d]), bits(&o1), "seq {b}");
                    assert_eq!(bits(&lse[q0 * h_q..q1 * h_q]), bits(&l1), "seq {b}");
                    assert_eq!(bits(&mass[k0..k1]), bits(&m1), "seq {b}");
                }
            }
        }
    }
}

/// Implicit positions: top-left (query i at i) and bottom-right (query i at
/// i + n_k - n_q), for n_q < n_k, n_q = n_k and n_q > n_k, with windows: equal to the
/// reference with those positions (and to explicit positions bit for bit).
#[test]
fn implicit_alignment_matches_the_reference() {
    let (h_q, h_kv, d) = (2, 1, 24);
    let mut r = Rng(3);
    for (n_q, n_k) in [(5, 90), (70, 70), (90, 20), (1, 200)] {
        let q = r.vec(n_q * h_q * d);
        let k = r.vec(n_k * h_kv * d);
        let v = r.vec(n_k * h_kv * d);
        for align in [CausalAlign::TopLeft, CausalAlign::BottomRight] {
            for window in [0u32, 7] {
                let off = match align {
                    CausalAlign::BottomRight => n_k as i64 - n_q as i64,
                    _ => 0,
                };
                let spec = Spec {
                    n_q,
                    n_k,
                    h_q,
                    h_kv,
                    d,
                    dv: d,
                    q: &f64s(&q),
                    k: &f64s(&k),
                    v: &f64s(&v),
                    keys: &|_, _| (0..n_k).collect(),
                    scale: (1.0 / (d as f64).sqrt()) as f32 as f64,
                    softcap: None,
                    bias: None,
                    alibi: None,
                    sinks: None,
                    q_pos: &|i| i as i64 + off,
                    k_pos: &|j| j as i64,
                    causal: true,
                    left: (window > 0).then(|| window as i64 - 1),
                    right: None,
                };
                // Explicit positions with the same differences (shifted to be >= 0).
                let shift = (-off).max(0);
                let qp: Vec<u32> = (0..n_q).map(|i| (i as i64 + off + shift) as u32).collect();
                let kp: Vec<u32> = (0..n_k).map(|j| (j as i64 + shift) as u32).collect();
                for kern in Kernels::all_supported() {
                    let mut res = Vec::new();
                    for explicit in [false, true] {
                        let opts = AttendOptions {
                            causal: true,
                            window,
                            align: if explicit {
                                CausalAlign::Positions
                            } else {
                                align
                            },
                            q_positions: explicit.then_some(&qp[..]),
                            k_positions: explicit.then_some(&kp[..]),
                            ..Default::default()
                        };
                        let mut out = vec![CANARY; n_q * h_q * d];
                        let mut lse = vec![CANARY; n_q * h_q];
                        kern.attention(
                            Heads::dense(&q, n_q, h_q, d).unwrap(),
                            Heads::dense(&k, n_k, h_kv, d).unwrap(),
                            Heads::dense(&v, n_k, h_kv, d).unwrap(),
                            KeySubset::Dense,
                            &opts,
                            HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
                            AttendExtras {
                                lse: Some((&mut lse, 0)),
                                mass: None,
                            },
                        )
                        .unwrap();
                        res.push((out, lse));
                    }
                    assert_eq!(res[0], res[1], "{align:?} {n_q}x{n_k} w{window}");
                    let (out, lse) = &res[0];
                    let mut check = Check::new();
                    for i in 0..n_q {
                        for h in 0..h_q {
                            let want = row(&spec, i, h);
                            for e in 0..d {
                                let got = out[(i * h_q + h) * d + e] as f64;
                                let b = bound(&want, 2f64.powi(-24), want.out[e]);
                                check.add(got, want.out[e], b, &|| {
                                    format!("{align:?} {n_q}x{n_k} ({i}, {h}, {e})")
                                });
                            }
                            check.add(lse[i * h_q + h] as f64, want.lse, lse_bound(&want), &|| {
                                format!("{align:?} lse ({i}, {h})")
                            });
                        }
                    }
                }
            }
        }
    }
}

fn err(r: tokenroute::Result<()>) -> ErrorKind {
    r.expect_err("expected an error").kind
}

/// Bad batches: a clear status, nothing written.
#[test]
fn bad_batches_write_nothing() {
    let kern = Kernels::active().unwrap();
    let (tq, tk, h, d) = (10, 20, 2, 8);
    let q = vec![0.5f32; tq * h * d];
    let kv = vec![0.25f32; tk * h * d];
    let qp = vec![3u32; tq];
    let kp = vec![1u32; tk];
    let run = |batch: Batch<'_>, keys: KeySubset<'_>, opts: AttendOptions<'_>, out_len: usize| {
        let mut out = vec![CANARY; out_len];
        let mut lse = vec![CANARY; 64];
        let e = err(kern.attention_batch(
            Heads::dense(&q, tq, h, d).unwrap(),
            Heads::dense(&kv, tk, h, d).unwrap(),
            Heads::dense(&kv, tk, h, d).unwrap(),
            keys,
            &opts,
            &batch,
            HeadsMut::dense(&mut out[..], tq, h, d).unwrap(),
            AttendExtras {
                lse: Some((&mut lse[..], 0)),
                mass: None,
            },
        ));
        assert!(out.iter().all(|&x| x == CANARY), "{e:?}: out written");
        assert!(lse.iter().all(|&x| x == CANARY), "{e:?}: lse written");
        e
    };
    let ragged = |cq: &'static [usize], ck: &'static [usize]| Batch::Ragged {
        cu_seqlens_q: cq,
        cu_seqlens_k: ck,
    };
    let d0 = AttendOptions::default();
    let full = tq * h * d;
    use ErrorKind::*;
    // cu_seqlens: decreasing, past the rows, lengths differ, empty.
    assert_eq!(
        run(ragged(&[0, 5, 4], &[0, 1, 2]), KeySubset::Dense, d0, full),
        InvalidArgument
    );
    assert_eq!(
        run(ragged(&[0, 5, 6], &[0, 9, 8]), KeySubset::Dense, d0, full),
        InvalidArgument
    );
    assert_eq!(
        run(ragged(&[0, 5, 11], &[0, 1, 2]), KeySubset::Dense, d0, full),
        OutOfRange
    );
    assert_eq!(
        run(ragged(&[0, 5, 10], &[0, 1, 21]), KeySubset::Dense, d0, full),
        OutOfRange
    );
    assert_eq!(
        run(ragged(&[0, 5], &[0, 1, 2]), KeySubset::Dense, d0, full),
        InvalidArgument
    );
    assert_eq!(
        run(ragged(&[], &[]), KeySubset::Dense, d0, full),
        InvalidArgument
    );
    // A key index valid for the buffer but past a sequence's keys; a later sequence's
    // error still leaves the earlier sequences unwritten.
    let idx = [0u32, 5];
    assert_eq!(
        run(
            ragged(&[0, 5, 10], &[0, 10, 14]),
            KeySubset::Indices(&idx),
            d0,
            full
        ),
        OutOfRange
    );
    let (ii, io) = ([0u32, 1, 9], [0usize, 1, 3]);
    let si = KeySubset::SeqIndices {
        indices: &ii,
        offsets: &io,
    };
    assert_eq!(
        run(ragged(&[0, 5, 10], &[0, 10, 14]), si, d0, full),
        OutOfRange
    );
    // Per-sequence lists: without a batch, with the wrong count, past the list.
    assert_eq!(run(Batch::One, si, d0, full), InvalidArgument);
    let short = KeySubset::SeqIndices {
        indices: &ii,
        offsets: &io[..2],
    };
    assert_eq!(
        run(ragged(&[0, 5, 10], &[0, 10, 20]), short, d0, full),
        InvalidArgument
    );
    let past = KeySubset::SeqIndices {
        indices: &ii,
        offsets: &[0, 1, 4],
    };
    assert_eq!(
        run(ragged(&[0, 5, 10], &[0, 10, 20]), past, d0, full),
        OutOfRange
    );
    // Block lists: one list per query block per sequence (3 + 2 here, not 3).
    let blocks = KeySubset::Blocks {
        block_size: 4,
        query_block: 2,
        offsets: &[0, 1, 2, 3],
        ids: &[0, 0, 0],
        per: ListsPer::Shared,
    };
    assert_eq!(
        run(ragged(&[0, 5, 9], &[0, 10, 20]), blocks, d0, full),
        InvalidArgument
    );
    // A block id past a sequence's blocks (sequence 1 has 1 block of 4 keys).
    let blocks = KeySubset::Blocks {
        block_size: 4,
        query_block: 5,
        offsets: &[0, 1, 2],
        ids: &[2, 1],
        per: ListsPer::Shared,
    };
    assert_eq!(
        run(ragged(&[0, 5, 10], &[0, 16, 20]), blocks, d0, full),
        OutOfRange
    );
    // Dense batches: output sequences sharing memory or overlapping; data too short.
    let dense = |n, out, q| Batch::Dense {
        n,
        strides: BatchStrides {
            q,
            out,
            ..Default::default()
        },
    };
    assert_eq!(
        run(dense(2, 0, 0), KeySubset::Dense, d0, 2 * full),
        BadStride
    );
    assert_eq!(
        run(dense(2, full - 1, 0), KeySubset::Dense, d0, 2 * full),
        BadStride
    );
    assert_eq!(
        run(dense(2, full, 0), KeySubset::Dense, d0, 2 * full - 1),
        BufferTooSmall
    );
    assert_eq!(
        run(dense(2, full, full), KeySubset::Dense, d0, 2 * full),
        BufferTooSmall
    );
    // lse of two sequences does not fit the 64 floats given (2 x 10 x 2 fits: use 4).
    assert_eq!(
        run(dense(4, full, 0), KeySubset::Dense, d0, 4 * full),
        BufferTooSmall
    );
    // Positions together with an implicit alignment; positions missing; too few.
    let both = AttendOptions {
        causal: true,
        align: CausalAlign::TopLeft,
        q_positions: Some(&qp),
        k_positions: Some(&kp),
        ..d0
    };
    assert_eq!(
        run(Batch::One, KeySubset::Dense, both, full),
        InvalidArgument
    );
    let none = AttendOptions { causal: true, ..d0 };
    assert_eq!(
        run(ragged(&[0, 10], &[0, 20]), KeySubset::Dense, none, full),
        NullPointer
    );
    let few = AttendOptions {
        causal: true,
        q_positions: Some(&qp[..5]),
        k_positions: Some(&kp),
        ..d0
    };
    assert_eq!(
        run(dense(1, full, 0), KeySubset::Dense, few, full),
        InvalidArgument
    );
}

/// Empty batches and empty sequences are valid and write nothing.
#[test]
fn empty_batches_are_valid() {
    let kern = Kernels::active().unwrap();
    let (h, d) = (2, 8);
    let q = vec![0.5f32; 4 * h * d];
    let mut out = vec![CANARY; 4 * h * d];
    for batch in [
        Batch::Dense {
            n: 0,
            strides: BatchStrides::default(),
        },
        Batch::Ragged {
            cu_seqlens_q: &[0],
            cu_seqlens_k: &[0],
        },
        Batch::Ragged {
            cu_seqlens_q: &[1, 1, 1],
            cu_seqlens_k: &[0, 3, 4],
        },
    ] {
        kern.attention_batch(
            Heads::dense(&q, 4, h, d).unwrap(),
            Heads::dense(&q, 4, h, d).unwrap(),
            Heads::dense(&q, 4, h, d).unwrap(),
            KeySubset::Dense,
            &AttendOptions::default(),
            &batch,
            HeadsMut::dense(&mut out, 4, h, d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
        assert!(out.iter().all(|&x| x == CANARY));
    }
    // Dense sequences without queries: an output batch stride of 0 shares no memory
    // (found by fuzzing attend_diff), with keys or without.
    for n_k in [0, 4] {
        let empty: [f32; 0] = [];
        kern.attention_batch(
            Heads::dense(&empty, 0, h, d).unwrap(),
            Heads::dense(&q[..n_k * h * d], n_k, h, d).unwrap(),
            Heads::dense(&q[..n_k * h * d], n_k, h, d).unwrap(),
            KeySubset::Dense,
            &AttendOptions::default(),
            &Batch::Dense {
                n: 3,
                strides: BatchStrides::default(),
            },
            HeadsMut::dense(&mut out[..0], 0, h, d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
    }
    // With queries, a shared output is refused.
    let e = kern.attention_batch(
        Heads::dense(&q, 4, h, d).unwrap(),
        Heads::dense(&q, 4, h, d).unwrap(),
        Heads::dense(&q, 4, h, d).unwrap(),
        KeySubset::Dense,
        &AttendOptions::default(),
        &Batch::Dense {
            n: 2,
            strides: BatchStrides::default(),
        },
        HeadsMut::dense(&mut out, 4, h, d).unwrap(),
        AttendExtras::default(),
    );
    assert_eq!(e.expect_err("shared output").kind, ErrorKind::BadStride);
    assert!(out.iter().all(|&x| x == CANARY));
    // A sequence with queries but no keys: zeros and an lse of -inf.
    let mut lse = vec![CANARY; 4 * h];
    kern.attention_batch(
        Heads::dense(&q, 4, h, d).unwrap(),
        Heads::dense(&q, 4, h, d).unwrap(),
        Heads::dense(&q, 4, h, d).unwrap(),
        KeySubset::Dense,
        &AttendOptions::default(),
        &Batch::Ragged {
            cu_seqlens_q: &[0, 2, 4],
            cu_seqlens_k: &[0, 0, 4],
        },
        HeadsMut::dense(&mut out, 4, h, d).unwrap(),
        AttendExtras {
            lse: Some((&mut lse, 0)),
            mass: None,
        },
    )
    .unwrap();
    assert!(out[..2 * h * d].iter().all(|&x| x == 0.0));
    assert!(lse[..2 * h].iter().all(|&x| x == f32::NEG_INFINITY));
    assert!(out[2 * h * d..].iter().all(|&x| (x - 0.5).abs() < 1e-6));
}

/// Batches on threads: a ragged decoding batch (sequences long enough for split-K and
/// short ones) and a ragged prefill batch with lse and mass give, for every thread
/// count and executor and with tiny units, the bits of separate inline calls.
#[test]
fn batches_are_bit_identical_for_every_thread_count() {
    use std::sync::Arc;
    use tokenroute::parallel::{self, Executor, ParallelFor};
    struct Reverse;
    impl ParallelFor for Reverse {
        fn parallel_for(&self, n: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
            (0..n).rev().for_each(task);
            true
        }
    }
    parallel::set_num_threads(3).unwrap();
    let (h_q, h_kv, d) = (4, 2, 16);
    // (cu_seqlens_q, cu_seqlens_k): decoding (1-2 queries, 100..2100 keys), prefill.
    let cases: [(&[usize], &[usize], bool); 2] = [
        (&[0, 1, 2, 3, 5], &[0, 1500, 1600, 3700, 4900], true),
        (&[0, 70, 75, 190], &[0, 80, 85, 200], false),
    ];
    let mut r = Rng(31);
    for (cu_q, cu_k, causal) in cases {
        let (tq, tk) = (cu_q[cu_q.len() - 1], cu_k[cu_k.len() - 1]);
        let q = r.vec(tq * h_q * d);
        let k = r.vec(tk * h_kv * d);
        let v = r.vec(tk * h_kv * d);
        let opts = AttendOptions {
            causal,
            align: CausalAlign::BottomRight,
            ..Default::default()
        };
        // Decoding without mass (so split-K applies), prefill with it.
        let with_mass = !causal;
        let run = |kern: &Kernels| -> Vec<u32> {
            let mut out = vec![CANARY; tq * h_q * d];
            let mut lse = vec![CANARY; tq * h_q];
            let mut mass = vec![0f32; h_kv * tk];
            kern.attention_batch(
                Heads::dense(&q, tq, h_q, d).unwrap(),
                Heads::dense(&k, tk, h_kv, d).unwrap(),
                Heads::dense(&v, tk, h_kv, d).unwrap(),
                KeySubset::Dense,
                &opts,
                &Batch::Ragged {
                    cu_seqlens_q: cu_q,
                    cu_seqlens_k: cu_k,
                },
                HeadsMut::dense(&mut out, tq, h_q, d).unwrap(),
                AttendExtras {
                    lse: Some((&mut lse, 0)),
                    mass: with_mass.then_some((&mut mass[..], tk)),
                },
            )
            .unwrap();
            out.iter()
                .chain(&lse)
                .chain(&mass)
                .map(|x| x.to_bits())
                .collect()
        };
        for kern in Kernels::all_supported() {
            // Separate inline calls, sequence by sequence.
            let mut want_out = vec![CANARY; tq * h_q * d];
            let mut want_lse = vec![CANARY; tq * h_q];
            let mut want_mass = vec![0f32; h_kv * tk];
            parallel::with_executor(Executor::Inline, || {
                for b in 0..cu_q.len() - 1 {
                    let (q0, q1, k0, k1) = (cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]);
                    let (nq, nk) = (q1 - q0, k1 - k0);
                    let mut m1 = vec![0f32; h_kv * nk];
                    kern.attention(
                        Heads::dense(&q[q0 * h_q * d..q1 * h_q * d], nq, h_q, d).unwrap(),
                        Heads::dense(&k[k0 * h_kv * d..k1 * h_kv * d], nk, h_kv, d).unwrap(),
                        Heads::dense(&v[k0 * h_kv * d..k1 * h_kv * d], nk, h_kv, d).unwrap(),
                        KeySubset::Dense,
                        &opts,
                        HeadsMut::dense(&mut want_out[q0 * h_q * d..q1 * h_q * d], nq, h_q, d)
                            .unwrap(),
                        AttendExtras {
                            lse: Some((&mut want_lse[q0 * h_q..q1 * h_q], 0)),
                            mass: with_mass.then_some((&mut m1[..], nk)),
                        },
                    )
                    .unwrap();
                    for g in 0..h_kv {
                        want_mass[g * tk + k0..g * tk + k1]
                            .copy_from_slice(&m1[g * nk..(g + 1) * nk]);
                    }
                }
            });
            let want: Vec<u32> = want_out
                .iter()
                .chain(&want_lse)
                .chain(&want_mass)
                .map(|x| x.to_bits())
                .collect();
            for e in [
                Executor::Inline,
                Executor::Threads(1),
                Executor::Threads(3),
                Executor::Callback(Arc::new(Reverse)),
            ] {
                for (unit, min) in [(parallel::UNIT_WORK, parallel::MIN_PARALLEL_WORK), (1, 0)] {
                    let got = parallel::with_executor(e.clone(), || {
                        parallel::with_granularity(unit, min, || run(kern))
                    });
                    assert!(got == want, "{:?} {e:?} unit {unit}", kern.isa());
                }
            }
        }
    }
}

mod through_c {
    use super::{Rng, CANARY};
    use tokenroute::ffi::attend::*;
    use tokenroute::ffi::score::TKR_DTYPE_F32;
    use tokenroute::ffi::*;
    use tokenroute::{
        AttendExtras, AttendOptions, Batch, BatchStrides, CausalAlign, Heads, HeadsMut, Kernels,
        KeySubset,
    };

    const H_Q: usize = 4;
    const H_KV: usize = 2;
    const D: usize = 8;

    /// tkr_attention on dense f32 `[rows, heads, D]` tensors; out, lse (per token) and
    /// per-KV-head mass (stride `n_k`) written into the given buffers.
    #[allow(clippy::too_many_arguments)]
    fn call(
        q: &[f32],
        k: &[f32],
        n_q: usize,
        n_k: usize,
        keys: Option<&tkr_attention_keys>,
        opts: &mut tkr_attention_options,
        out: &mut [f32],
        lse: &mut [f32],
        mass: &mut [f32],
    ) -> tkr_status {
        opts.lse = lse.as_mut_ptr();
        opts.mass = mass.as_mut_ptr();
        opts.mass_head_stride = n_k;
        // SAFETY: the buffers hold what the descriptions say (the callers size them).
        unsafe {
            tkr_attention(
                TKR_DTYPE_F32,
                q.as_ptr() as *const _,
                n_q,
                H_Q,
                D,
                H_Q * D,
                D,
                k.as_ptr() as *const _,
                k.as_ptr() as *const _,
                n_k,
                H_KV,
                H_KV * D,
                D,
                H_KV * D,
                D,
                keys.map_or(std::ptr::null(), |k| k as *const _),
                opts,
                out.as_mut_ptr() as *mut _,
                H_Q * D,
                D,
            )
        }
    }

    fn defaults() -> (
        tkr_attention_options,
        tkr_attention_keys,
        tkr_attention_batch,
    ) {
        // SAFETY: zeroed structs are filled by their init functions.
        unsafe {
            let (mut o, mut k, mut b) = std::mem::zeroed();
            assert_eq!(tkr_attention_options_init(&mut o), TKR_STATUS_OK);
            assert_eq!(tkr_attention_keys_init(&mut k), TKR_STATUS_OK);
            assert_eq!(tkr_attention_batch_init(&mut b), TKR_STATUS_OK);
            assert_eq!(
                tkr_attention_batch_init(std::ptr::null_mut()),
                TKR_STATUS_NULL_POINTER
            );
            (o, k, b)
        }
    }

    fn bits(x: &[f32]) -> Vec<u32> {
        x.iter().map(|v| v.to_bits()).collect()
    }

    /// Ragged and dense batches with implicit alignment and per-sequence index lists
    /// through the C ABI give the Rust API's bits; an options struct of the size before
    /// the batch fields (garbage after it) still works as before.
    #[test]
    fn batches_through_c_equal_the_rust_api() {
        let kern = Kernels::active().unwrap();
        let mut r = Rng(5);
        let (cu_q, cu_k) = ([0usize, 5, 6, 6, 14], [0usize, 40, 41, 70, 130]);
        let (tq, tk) = (16, 133);
        let q = r.vec(24 * H_Q * D); // tq rows for the ragged batch, 18 for the dense one
        let k = r.vec(tk * H_KV * D);
        let idx: Vec<u32> = vec![0, 3, 0, 0, 9, 20, 2];
        let ioff = [0usize, 3, 4, 4, 7];
        for (seq_keys, align) in [
            (false, TKR_CAUSAL_ALIGN_BOTTOM_RIGHT),
            (true, TKR_CAUSAL_ALIGN_TOP_LEFT),
        ] {
            let (mut o, mut ks, mut b) = defaults();
            b.n_seqs = 4;
            b.cu_seqlens_q = cu_q.as_ptr();
            b.cu_seqlens_k = cu_k.as_ptr();
            o.flags = TKR_ATTENTION_CAUSAL;
            o.causal_align = align;
            o.batch = &b;
            ks.kind = TKR_KEYS_SEQ_INDICES;
            ks.indices = idx.as_ptr();
            ks.n_indices = idx.len();
            ks.index_offsets = ioff.as_ptr();
            let mut out = vec![CANARY; tq * H_Q * D];
            let mut lse = vec![CANARY; tq * H_Q];
            let mut mass = vec![0f32; H_KV * tk];
            let st = call(
                &q,
                &k,
                tq,
                tk,
                seq_keys.then_some(&ks),
                &mut o,
                &mut out,
                &mut lse,
                &mut mass,
            );
            assert_eq!(st, TKR_STATUS_OK);
            let mut o2 = vec![CANARY; tq * H_Q * D];
            let mut l2 = vec![CANARY; tq * H_Q];
            let mut m2 = vec![0f32; H_KV * tk];
            kern.attention_batch(
                Heads::dense(&q, tq, H_Q, D).unwrap(),
                Heads::dense(&k, tk, H_KV, D).unwrap(),
                Heads::dense(&k, tk, H_KV, D).unwrap(),
                if seq_keys {
                    KeySubset::SeqIndices {
                        indices: &idx,
                        offsets: &ioff,
                    }
                } else {
                    KeySubset::Dense
                },
                &AttendOptions {
                    causal: true,
                    align: if align == TKR_CAUSAL_ALIGN_TOP_LEFT {
                        CausalAlign::TopLeft
                    } else {
                        CausalAlign::BottomRight
                    },
                    ..Default::default()
                },
                &Batch::Ragged {
                    cu_seqlens_q: &cu_q,
                    cu_seqlens_k: &cu_k,
                },
                HeadsMut::dense(&mut o2, tq, H_Q, D).unwrap(),
                AttendExtras {
                    lse: Some((&mut l2, 0)),
                    mass: Some((&mut m2, tk)),
                },
            )
            .unwrap();
            assert_eq!(bits(&out), bits(&o2));
            assert_eq!(bits(&lse), bits(&l2));
            assert_eq!(bits(&mass), bits(&m2));
            assert!(out[14 * H_Q * D..].iter().all(|&x| x == CANARY));
        }
        // A dense batch of 3 sequences of 6 queries and 40 keys, packed; positions
        // explicit and per sequence.
        let (nb, nq, nk) = (3, 6, 40);
        let qp: Vec<u32> = (0..(nb * nq) as u32).map(|i| 30 + i % 6).collect();
        let kp: Vec<u32> = (0..(nb * nk) as u32).map(|j| j % 40).collect();
        let (mut o, _, mut b) = defaults();
        b.n_seqs = nb;
        b.q_batch_stride = nq * H_Q * D;
        b.k_batch_stride = nk * H_KV * D;
        b.v_batch_stride = nk * H_KV * D;
        b.out_batch_stride = nq * H_Q * D;
        b.mass_batch_stride = H_KV * nk;
        b.q_positions_batch_stride = nq;
        b.k_positions_batch_stride = nk;
        o.flags = TKR_ATTENTION_CAUSAL;
        o.window = 9;
        o.q_positions = qp.as_ptr();
        o.k_positions = kp.as_ptr();
        o.batch = &b;
        let mut out = vec![CANARY; nb * nq * H_Q * D];
        let mut lse = vec![CANARY; nb * nq * H_Q];
        let mut mass = vec![0f32; nb * H_KV * nk];
        let st = call(&q, &k, nq, nk, None, &mut o, &mut out, &mut lse, &mut mass);
        assert_eq!(st, TKR_STATUS_OK);
        let mut o2 = vec![CANARY; out.len()];
        let mut l2 = vec![CANARY; lse.len()];
        let mut m2 = vec![0f32; mass.len()];
        let view = |x, n, h| Heads::new(x, n, h, D, h * D, D).unwrap();
        kern.attention_batch(
            view(&q[..nb * nq * H_Q * D], nq, H_Q),
            view(&k[..nb * nk * H_KV * D], nk, H_KV),
            view(&k[..nb * nk * H_KV * D], nk, H_KV),
            KeySubset::Dense,
            &AttendOptions {
                causal: true,
                window: 9,
                q_positions: Some(&qp),
                k_positions: Some(&kp),
                ..Default::default()
            },
            &Batch::Dense {
                n: nb,
                strides: BatchStrides {
                    q: nq * H_Q * D,
                    k: nk * H_KV * D,
                    v: nk * H_KV * D,
                    out: nq * H_Q * D,
                    lse: 0,
                    mass: H_KV * nk,
                    q_positions: nq,
                    k_positions: nk,
                },
            },
            HeadsMut::new(&mut o2, nq, H_Q, D, H_Q * D, D).unwrap(),
            AttendExtras {
                lse: Some((&mut l2, 0)),
                mass: Some((&mut m2, nk)),
            },
        )
        .unwrap();
        assert_eq!(bits(&out), bits(&o2));
        assert_eq!(bits(&lse), bits(&l2));
        assert_eq!(bits(&mass), bits(&m2));
        // An options struct of the size before causal_align and batch: the fields after
        // it are never read (garbage there changes nothing).
        let (mut o, _, _) = defaults();
        o.flags = TKR_ATTENTION_CAUSAL;
        o.q_positions = qp.as_ptr();
        o.k_positions = kp.as_ptr();
        let mut old = o;
        old.struct_size = std::mem::offset_of!(tkr_attention_options, causal_align);
        old.causal_align = 77;
        old.batch = 16 as *const tkr_attention_batch;
        // (v_head_dim, the newest field, too: read, it would make v and out overlap.)
        old.v_head_dim = 3 * D;
        let (mut a, mut la, mut ma) = (
            vec![0f32; nq * H_Q * D],
            vec![0f32; nq * H_Q],
            vec![0f32; H_KV * nk],
        );
        let (mut b2, mut lb, mut mb) = (a.clone(), la.clone(), ma.clone());
        assert_eq!(
            call(&q, &k, nq, nk, None, &mut o, &mut a, &mut la, &mut ma),
            TKR_STATUS_OK
        );
        assert_eq!(
            call(&q, &k, nq, nk, None, &mut old, &mut b2, &mut lb, &mut mb),
            TKR_STATUS_OK
        );
        assert_eq!(bits(&a), bits(&b2));
    }

    /// Bad batches and alignments through C: the status, the argument in the last error
    /// message, nothing written.
    #[test]
    fn bad_batches_through_c_write_nothing() {
        let mut r = Rng(9);
        let (tq, tk) = (8, 50);
        let q = r.vec(tq * H_Q * D);
        let k = r.vec(tk * H_KV * D);
        let (cu_q, cu_k) = ([0usize, 4, 8], [0usize, 20, 50]);
        let idx = [0u32, 1];
        static DEC: [usize; 3] = [0, 5, 4];
        static PAST: [usize; 3] = [0, 20, 51];
        static POS: [u32; 64] = [0; 64];
        type Setup =
            fn(&mut tkr_attention_options, &mut tkr_attention_keys, &mut tkr_attention_batch);
        let cases: Vec<(&str, Setup, tkr_status, &str)> = vec![
            (
                "unknown alignment",
                |o, _, _| o.causal_align = 3,
                TKR_STATUS_INVALID_ARGUMENT,
                "options->causal_align",
            ),
            (
                "positions with an implicit alignment",
                |o, _, _| {
                    o.causal_align = TKR_CAUSAL_ALIGN_TOP_LEFT;
                    o.flags = TKR_ATTENTION_CAUSAL;
                    o.q_positions = POS.as_ptr();
                },
                TKR_STATUS_INVALID_ARGUMENT,
                "options->causal_align",
            ),
            (
                "ragged batch with a stride",
                |_, _, b| b.out_batch_stride = 1,
                TKR_STATUS_INVALID_ARGUMENT,
                "options->batch",
            ),
            (
                "one cu_seqlens missing",
                |_, _, b| b.cu_seqlens_q = std::ptr::null(),
                TKR_STATUS_NULL_POINTER,
                "options->batch->cu_seqlens_q",
            ),
            (
                "seq indices without a batch",
                |_, k, _| k.kind = TKR_KEYS_SEQ_INDICES,
                TKR_STATUS_INVALID_ARGUMENT,
                "keys->kind",
            ),
            (
                "seq index offsets missing",
                |_, k, _| k.kind = TKR_KEYS_SEQ_INDICES,
                TKR_STATUS_NULL_POINTER,
                "keys->index_offsets",
            ),
            (
                "batch struct_size too small",
                |_, _, b| b.struct_size = 3,
                TKR_STATUS_INVALID_ARGUMENT,
                "options->batch",
            ),
            (
                "decreasing cu_seqlens",
                |_, _, b| b.cu_seqlens_q = DEC.as_ptr(),
                TKR_STATUS_INVALID_ARGUMENT,
                "cu_seqlens",
            ),
            (
                "decreasing cu_seqlens with block lists",
                |_, k, b| {
                    b.cu_seqlens_q = DEC.as_ptr();
                    k.kind = TKR_KEYS_BLOCKS;
                    k.block_size = 4;
                    k.query_block_size = 2;
                },
                TKR_STATUS_INVALID_ARGUMENT,
                "keys->block_offsets",
            ),
            (
                "cu_seqlens past the rows",
                |_, _, b| b.cu_seqlens_k = PAST.as_ptr(),
                TKR_STATUS_OUT_OF_RANGE,
                "cu_seqlens",
            ),
            (
                "dense outputs sharing memory",
                |_, _, b| {
                    b.cu_seqlens_q = std::ptr::null();
                    b.cu_seqlens_k = std::ptr::null();
                },
                TKR_STATUS_BAD_STRIDE,
                "options->batch",
            ),
            (
                "dense batch overflowing",
                |_, _, b| {
                    b.cu_seqlens_q = std::ptr::null();
                    b.cu_seqlens_k = std::ptr::null();
                    b.n_seqs = 1 << 60;
                    b.out_batch_stride = 1 << 20;
                },
                TKR_STATUS_SIZE_OVERFLOW,
                "options->batch",
            ),
        ];
        for (what, setup, want, arg) in cases {
            let (mut o, mut ks, mut b) = defaults();
            b.n_seqs = 2;
            b.cu_seqlens_q = cu_q.as_ptr();
            b.cu_seqlens_k = cu_k.as_ptr();
            ks.kind = TKR_KEYS_INDICES;
            ks.indices = idx.as_ptr();
            ks.n_indices = 2;
            setup(&mut o, &mut ks, &mut b);
            if what != "seq indices without a batch" {
                o.batch = &b;
            }
            let mut out = vec![CANARY; tq * H_Q * D];
            let mut lse = vec![CANARY; tq * H_Q];
            let mut mass = vec![CANARY; H_KV * tk];
            let st = call(
                &q,
                &k,
                tq,
                tk,
                Some(&ks),
                &mut o,
                &mut out,
                &mut lse,
                &mut mass,
            );
            assert_eq!(st, want, "{what}");
            let msg = unsafe { std::ffi::CStr::from_ptr(tkr_last_error_message()) };
            let msg = msg.to_str().unwrap();
            assert!(msg.contains(arg), "{what}: {msg}");
            assert!(
                out.iter().chain(&lse).chain(&mass).all(|&x| x == CANARY),
                "{what}: written on error"
            );
        }
    }
}
