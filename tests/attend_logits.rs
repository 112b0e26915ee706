//! The logit options: softcap (`c * tanh(scale * q.k / c)`, Gemma 2) and ALiBi slopes
//! (`-slope_h * |q_pos - k_pos|`, BLOOM / MPT), alone and together: against the float64
//! reference on every level (prefill, split-K decoding, index lists, GQA, causal
//! windows, f32 / f16 / bf16 inputs, the attention mass), bit-identical on every level;
//! special values; bad values refused with nothing written; batches equal separate
//! calls. (The C ABI: ffi-tests/c/attend.c; Python: python/tests/test_attend.py.)

mod attn_ref;

use attn_ref::{bound, lse_bound, row, Check, Rng, Spec};
use half::{bf16, f16};
use tokenroute::{
    AttendBias, AttendExtras, AttendOptions, BiasData, Heads, HeadsMut, Kernels, KeySubset,
};

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// The documented extra term of a softcap: `2^-20 c vmax`.
fn cap_term(c: f64, vmax: f64) -> f64 {
    2f64.powi(-20) * c * vmax
}

struct Shape {
    n_q: usize,
    n_k: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    causal: bool,
    window: u32,
    /// Every third key dropped (an index list) instead of every key.
    indices: bool,
}

/// ALiBi slopes of `h` heads (BLOOM's geometric sequence 2^(-8 (i + 1) / h)).
fn slopes(h: usize) -> Vec<f32> {
    (0..h)
        .map(|i| 2f32.powf(-8.0 * (i + 1) as f32 / h as f32))
        .collect()
}

/// Runs one shape, softcap (0: none) and ALiBi choice on every level for element type
/// `T`, checks the reference bound and bit-identity, returns the worst error in units of
/// the bound.
#[allow(clippy::too_many_arguments)]
fn run<T: tokenroute::AttendElement + Copy>(
    s: &Shape,
    cap: f32,
    alibi: bool,
    bias_mode: u8,
    scale: f32,
    r: &mut Rng,
    to: impl Fn(f32) -> T,
    from: impl Fn(T) -> f32,
) -> f64 {
    let (n_q, n_k, h_q, h_kv, d) = (s.n_q, s.n_k, s.h_q, s.h_kv, s.d);
    // Inputs rounded to T, the reference reads the rounded values.
    let q: Vec<T> = r.vec(n_q * h_q * d).into_iter().map(&to).collect();
    let k: Vec<T> = r.vec(n_k * h_kv * d).into_iter().map(&to).collect();
    let v: Vec<T> = r.vec(n_k * h_kv * d).into_iter().map(&to).collect();
    let f = |x: &[T]| -> Vec<f64> { x.iter().map(|&y| from(y) as f64).collect() };
    let (qf, kf, vf) = (f(&q), f(&k), f(&v));
    let sel: Vec<u32> = (0..n_k as u32).filter(|t| t % 3 != 1).collect();
    let key_list: Vec<usize> = if s.indices {
        sel.iter().map(|&t| t as usize).collect()
    } else {
        (0..n_k).collect()
    };
    // Keys at 0, 2, 4, ...; queries among them (ALiBi sees distances on both sides).
    let k_pos: Vec<u32> = (0..n_k as u32).map(|j| 2 * j).collect();
    let q_pos: Vec<u32> = (0..n_q as u32)
        .map(|i| (n_k - n_q) as u32 + 2 * i)
        .collect();
    let sl = slopes(h_q);
    let sl64: Vec<f64> = sl.iter().map(|&x| x as f64).collect();
    let capped = cap != 0.0;
    // Bias tensor: 0 none; 1 every (head, query, key); 2 shared by the heads, with -inf
    // on every 7th key (a padding mask); 3 per head, shared by the queries.
    let (bh, bq) = match bias_mode {
        1 => (n_q * n_k + 3, n_k + 1),
        2 => (0, n_k),
        _ => (n_k, 0),
    };
    let bias_data: Vec<f32> = (0..(h_q - 1) * bh + (n_q - 1) * bq + n_k)
        .map(|j| {
            if bias_mode == 2 && j % n_k % 7 == 3 {
                f32::NEG_INFINITY
            } else {
                1.5 * r.f()
            }
        })
        .collect();
    let bias_fn = |h: usize, i: usize, j: usize| bias_data[h * bh + i * bq + j] as f64;
    let positioned = s.causal || s.window > 0 || alibi;
    let spec = Spec {
        n_q,
        n_k,
        h_q,
        h_kv,
        d,
        dv: d,
        q: &qf,
        k: &kf,
        v: &vf,
        keys: &|_, _| key_list.clone(),
        scale: scale as f64,
        softcap: capped.then_some(cap as f64),
        bias: (bias_mode > 0).then_some(&bias_fn as &dyn Fn(usize, usize, usize) -> f64),
        alibi: alibi.then_some(&sl64[..]),
        sinks: None,
        q_pos: &|i| q_pos[i] as i64,
        k_pos: &|j| k_pos[j] as i64,
        causal: s.causal || s.window > 0,
        left: (s.window > 0).then(|| s.window as i64 - 1),
        right: None,
    };
    let opts = AttendOptions {
        scale: Some(scale),
        softcap: capped.then_some(cap),
        alibi_slopes: alibi.then_some(&sl[..]),
        bias: (bias_mode > 0).then_some(AttendBias {
            data: BiasData::F32(&bias_data),
            head_stride: bh,
            query_stride: bq,
            batch_stride: 0,
        }),
        causal: s.causal,
        window: s.window,
        q_positions: positioned.then_some(&q_pos[..]),
        k_positions: positioned.then_some(&k_pos[..]),
        ..Default::default()
    };
    // The exact mass: every row's probabilities, summed over rows and heads.
    let mut mass_want = vec![0f64; n_k];
    let mut rows = vec![];
    for i in 0..n_q {
        for h in 0..h_q {
            let want = row(&spec, i, h);
            if want.lse > f64::NEG_INFINITY {
                for (j, x, _) in spec.logits(i, h) {
                    mass_want[j] += (x - want.lse).exp();
                }
            }
            rows.push(want);
        }
    }
    let mut worst = 0f64;
    let mut first: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; n_q * h_q * d];
        let mut lse = vec![0f32; n_q * h_q];
        // The mass forces the unsplit path, so run it separately for decoding shapes.
        let mut mass = vec![0f32; n_k];
        let keys = if s.indices {
            KeySubset::Indices(&sel)
        } else {
            KeySubset::Dense
        };
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
        let mut out2 = vec![0f32; n_q * h_q * d];
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, h_kv, d).unwrap(),
            Heads::dense(&v, n_k, h_kv, d).unwrap(),
            keys,
            &opts,
            HeadsMut::dense(&mut out2, n_q, h_q, d).unwrap(),
            AttendExtras {
                lse: None,
                mass: Some((&mut mass, 0)),
            },
        )
        .unwrap();
        let mut check = Check::new();
        let what =
            |i: usize, h: usize| format!("{:?} {n_q}x{n_k} cap {cap} ({i}, {h})", kern.isa());
        for i in 0..n_q {
            for h in 0..h_q {
                let want = &rows[i * h_q + h];
                let extra = cap_term(cap as f64, want.vmax);
                for e in 0..d {
                    let b = bound(want, 2f64.powi(-24), want.out[e]) + extra;
                    let at = (i * h_q + h) * d + e;
                    check.add(out[at] as f64, want.out[e], b, &|| what(i, h));
                    check.add(out2[at] as f64, want.out[e], b, &|| what(i, h));
                }
                let lb = lse_bound(want) + 2f64.powi(-20) * cap as f64;
                check.add(lse[i * h_q + h] as f64, want.lse, lb, &|| what(i, h));
            }
        }
        // The header's mass bound plus the softcap's 2^-20 c (1 + R/64) (1 + S).
        let a = rows.iter().map(|w| w.a).fold(0.0, f64::max);
        for (j, (&x, &want)) in mass.iter().zip(&mass_want).enumerate() {
            let n = (n_q * h_q) as f64;
            let b = 2f64.powi(-17) * (1.0 + a + cap as f64 / 8.0) * (1.0 + n / 64.0) * (1.0 + want)
                + 2f64.powi(-24) * n * want
                + 2f64.powi(-22);
            check.add(x as f64, want, b, &|| format!("{:?} mass {j}", kern.isa()));
        }
        worst = worst.max(check.worst);
        match &first {
            None => first = Some((out, lse, mass)),
            Some((o, l, m)) => {
                assert_eq!(bits(o), bits(&out), "{:?}", kern.isa());
                assert_eq!(bits(l), bits(&lse), "{:?}", kern.isa());
                assert_eq!(bits(m), bits(&mass), "{:?}", kern.isa());
            }
        }
    }
    worst
}

const SHAPES: [Shape; 4] = [
    // prefill, GQA, causal
    Shape {
        n_q: 40,
        n_k: 130,
        h_q: 4,
        h_kv: 2,
        d: 24,
        causal: true,
        window: 0,
        indices: false,
    },
    // decoding over 1200 keys: split-K
    Shape {
        n_q: 1,
        n_k: 1200,
        h_q: 2,
        h_kv: 1,
        d: 16,
        causal: false,
        window: 0,
        indices: false,
    },
    // index list, sliding window
    Shape {
        n_q: 9,
        n_k: 300,
        h_q: 3,
        h_kv: 3,
        d: 40,
        causal: false,
        window: 100,
        indices: true,
    },
    // one query, one key
    Shape {
        n_q: 1,
        n_k: 1,
        h_q: 1,
        h_kv: 1,
        d: 1,
        causal: false,
        window: 0,
        indices: false,
    },
];

#[test]
fn softcap_and_alibi_match_the_reference_on_every_level() {
    let mut r = Rng(41);
    let mut worst = 0f64;
    // Softcaps below, near and far above the logits; scales that push logits past them
    // (a negative scale too).
    // ALiBi alone (cap 0) and with a softcap.
    // (softcap, ALiBi, bias tensor mode, scale)
    let cases = [
        (0.5f32, false, 0u8, 1.0f32),
        (5.0, false, 0, 4.0),
        (50.0, false, 0, 0.25),
        (30.0, false, 0, 40.0),
        (2.0, false, 0, -3.0),
        (0.0, true, 0, 1.0),
        (0.0, true, 0, 0.25),
        (5.0, true, 0, 4.0),
        (0.0, false, 1, 1.0),
        (0.0, false, 2, 0.5),
        (0.0, false, 3, 2.0),
        (5.0, true, 2, 4.0),
    ];
    for s in &SHAPES {
        for (cap, alibi, bias_mode, scale) in cases {
            worst = worst.max(run(s, cap, alibi, bias_mode, scale, &mut r, |x| x, |x| x));
            worst = worst.max(run(
                s,
                cap,
                alibi,
                bias_mode,
                scale,
                &mut r,
                f16::from_f32,
                f16::to_f32,
            ));
            worst = worst.max(run(
                s,
                cap,
                alibi,
                bias_mode,
                scale,
                &mut r,
                bf16::from_f32,
                bf16::to_f32,
            ));
        }
    }
    eprintln!("softcap / ALiBi / bias: worst error {worst:.3} of the bound");
}

/// Special values: a NaN logit gives NaN outputs (canonical), infinite dot products are
/// capped to +-c (so rows stay finite), and a softcap turns no visible key into a
/// visible one (masking is unchanged).
#[test]
fn softcap_special_values() {
    let d = 4;
    let q = [1f32, 0.0, 0.0, 0.0];
    // Keys: a huge one (the dot overflows to +inf at this scale), an ordinary one, a
    // NaN one.
    let k = [
        f32::MAX,
        0.0,
        0.0,
        0.0, //
        1.0,
        0.0,
        0.0,
        0.0, //
        f32::NAN,
        0.0,
        0.0,
        0.0,
    ];
    let v = [1f32, 1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 5.0, 5.0, 5.0, 5.0];
    let c = 2.0f32;
    let opts = AttendOptions {
        scale: Some(4.0),
        softcap: Some(c),
        ..Default::default()
    };
    let mut first = None;
    for kern in Kernels::all_supported() {
        let run = |sel: &[u32]| {
            let mut out = vec![0f32; d];
            let mut lse = vec![0f32; 1];
            kern.attention(
                Heads::dense(&q, 1, 1, d).unwrap(),
                Heads::dense(&k, 3, 1, d).unwrap(),
                Heads::dense(&v, 3, 1, d).unwrap(),
                KeySubset::Indices(sel),
                &opts,
                HeadsMut::dense(&mut out, 1, 1, d).unwrap(),
                AttendExtras {
                    lse: Some((&mut lse, 0)),
                    mass: None,
                },
            )
            .unwrap();
            (out, lse[0])
        };
        // +inf dot capped to c, the other to c tanh(4 / c): weights exp(c), exp(c tanh 2).
        let (out, lse) = run(&[0, 1]);
        let (x0, x1) = (c as f64, c as f64 * (4.0 / c as f64).tanh());
        let want = (x0.exp() * 1.0 + x1.exp() * 3.0) / (x0.exp() + x1.exp());
        for &o in &out {
            assert!(
                (o as f64 - want).abs() < 1e-5,
                "{:?}: {o} vs {want}",
                kern.isa()
            );
        }
        let want_lse = (x0.exp() + x1.exp()).ln();
        assert!((lse as f64 - want_lse).abs() < 1e-5, "{lse} vs {want_lse}");
        // A NaN logit: the row is NaN (canonical quiet NaN).
        let (nan_out, _) = run(&[1, 2]);
        for &o in &nan_out {
            assert!(o.is_nan() && o.to_bits() == f32::NAN.to_bits(), "{o:?}");
        }
        let got = (bits(&out), lse.to_bits());
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(f, &got, "{:?}", kern.isa()),
        }
    }
}

#[test]
fn bad_softcaps_are_refused_and_nothing_is_written() {
    let d = 4;
    let x = [0.5f32; 8];
    for cap in [0.0f32, -1.0, f32::NAN, f32::INFINITY, -0.0] {
        let mut out = [7f32; 8];
        let err = tokenroute::attention(
            Heads::dense(&x, 2, 1, d).unwrap(),
            Heads::dense(&x, 2, 1, d).unwrap(),
            Heads::dense(&x, 2, 1, d).unwrap(),
            KeySubset::Dense,
            &AttendOptions {
                softcap: Some(cap),
                ..Default::default()
            },
            HeadsMut::dense(&mut out, 2, 1, d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, tokenroute::ErrorKind::InvalidArgument, "{cap}");
        assert_eq!(out, [7f32; 8]);
    }
}

/// ALiBi with implicit positions (bidirectional: no causal masking; and bottom-right
/// causal) in a ragged batch equals separate calls over each sequence; bad slopes and
/// missing positions are refused with nothing written.
#[test]
fn alibi_in_batches_and_bad_input() {
    use tokenroute::{attention_batch, Batch, CausalAlign, ErrorKind};
    let (h_q, h_kv, d) = (4, 2, 8);
    let cu = [0usize, 5, 5, 37, 40];
    let t = cu[4];
    let mut r = Rng(53);
    let q = r.vec(t * h_q * d);
    let k = r.vec(t * h_kv * d);
    let v = r.vec(t * h_kv * d);
    let sl = slopes(h_q);
    for (causal, align) in [
        (false, CausalAlign::TopLeft),
        (true, CausalAlign::BottomRight),
    ] {
        let opts = AttendOptions {
            causal,
            align,
            alibi_slopes: Some(&sl),
            ..Default::default()
        };
        for kern in Kernels::all_supported() {
            let mut out = vec![0f32; t * h_q * d];
            kern.attention_batch(
                Heads::dense(&q, t, h_q, d).unwrap(),
                Heads::dense(&k, t, h_kv, d).unwrap(),
                Heads::dense(&v, t, h_kv, d).unwrap(),
                KeySubset::Dense,
                &opts,
                &Batch::Ragged {
                    cu_seqlens_q: &cu,
                    cu_seqlens_k: &cu,
                },
                HeadsMut::dense(&mut out, t, h_q, d).unwrap(),
                AttendExtras::default(),
            )
            .unwrap();
            for w in cu.windows(2) {
                let (a, b) = (w[0], w[1]);
                let n = b - a;
                let mut one = vec![0f32; n * h_q * d];
                kern.attention(
                    Heads::dense(&q[a * h_q * d..b * h_q * d], n, h_q, d).unwrap(),
                    Heads::dense(&k[a * h_kv * d..b * h_kv * d], n, h_kv, d).unwrap(),
                    Heads::dense(&v[a * h_kv * d..b * h_kv * d], n, h_kv, d).unwrap(),
                    KeySubset::Dense,
                    &opts,
                    HeadsMut::dense(&mut one, n, h_q, d).unwrap(),
                    AttendExtras::default(),
                )
                .unwrap();
                assert_eq!(
                    bits(&one),
                    bits(&out[a * h_q * d..b * h_q * d]),
                    "{:?}",
                    kern.isa()
                );
            }
        }
    }
    let x = [0.5f32; 16];
    let bad: [(&[f32], Option<&[u32]>, ErrorKind); 3] = [
        (&[0.5, 0.25], Some(&[0, 1]), ErrorKind::InvalidArgument), // one slope, two heads
        (&[f32::NAN], Some(&[0, 1]), ErrorKind::InvalidArgument),
        (&[0.5], None, ErrorKind::NullPointer), // no positions
    ];
    for (slopes, pos, kind) in bad {
        let mut out = [7f32; 8];
        let err = attention_batch(
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            KeySubset::Dense,
            &AttendOptions {
                alibi_slopes: Some(slopes),
                q_positions: pos,
                k_positions: pos,
                ..Default::default()
            },
            &Batch::One,
            HeadsMut::dense(&mut out, 2, 1, 4).unwrap(),
            AttendExtras::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, kind, "{slopes:?}");
        assert_eq!(out, [7f32; 8]);
    }
}

/// A bias tensor: a row whose keys all get -inf is an empty row (zeros, lse -inf), +inf
/// makes the row NaN; a dense batch with a bias batch stride equals separate calls;
/// a ragged batch is UNSUPPORTED, a short tensor BUFFER_TOO_SMALL, nothing written.
#[test]
fn bias_rows_batches_and_bad_input() {
    use tokenroute::{attention_batch, Batch, BatchStrides, ErrorKind};
    let (n_q, n_k, h, d, n_b) = (3, 20, 2, 8, 3);
    let mut r = Rng(61);
    let q = r.vec(n_b * n_q * h * d);
    let k = r.vec(n_b * n_k * h * d);
    let v = r.vec(n_b * n_k * h * d);
    // Per sequence: [h][n_q][n_k]; query 1 of head 0 masks every key, query 2 of head 1
    // has a +inf.
    let per = h * n_q * n_k;
    let mut bias = r.vec(n_b * per);
    for b in 0..n_b {
        for j in 0..n_k {
            bias[b * per + n_k + j] = f32::NEG_INFINITY;
        }
        bias[b * per + (n_q + 2) * n_k + 5] = f32::INFINITY;
    }
    for kern in Kernels::all_supported() {
        let strides = BatchStrides {
            q: n_q * h * d,
            k: n_k * h * d,
            v: n_k * h * d,
            out: n_q * h * d,
            ..Default::default()
        };
        let mut out = vec![0f32; n_b * n_q * h * d];
        let mut lse = vec![0f32; n_b * n_q * h];
        let opts = AttendOptions {
            bias: Some(AttendBias {
                data: BiasData::F32(&bias),
                head_stride: n_q * n_k,
                query_stride: n_k,
                batch_stride: per,
            }),
            ..Default::default()
        };
        kern.attention_batch(
            Heads::new(&q, n_q, h, d, h * d, d).unwrap(),
            Heads::new(&k, n_k, h, d, h * d, d).unwrap(),
            Heads::new(&v, n_k, h, d, h * d, d).unwrap(),
            KeySubset::Dense,
            &opts,
            &Batch::Dense { n: n_b, strides },
            HeadsMut::new(&mut out, n_q, h, d, h * d, d).unwrap(),
            AttendExtras {
                lse: Some((&mut lse, 0)),
                mass: None,
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        for b in 0..n_b {
            let mut one = vec![0f32; n_q * h * d];
            let mut one_lse = vec![0f32; n_q * h];
            let o = |x: &[f32], n| x[b * n..(b + 1) * n].to_vec();
            let (qb, kb, vb) = (o(&q, n_q * h * d), o(&k, n_k * h * d), o(&v, n_k * h * d));
            kern.attention(
                Heads::dense(&qb, n_q, h, d).unwrap(),
                Heads::dense(&kb, n_k, h, d).unwrap(),
                Heads::dense(&vb, n_k, h, d).unwrap(),
                KeySubset::Dense,
                &AttendOptions {
                    bias: Some(AttendBias {
                        data: BiasData::F32(&bias[b * per..]),
                        head_stride: n_q * n_k,
                        query_stride: n_k,
                        batch_stride: 0,
                    }),
                    ..Default::default()
                },
                HeadsMut::dense(&mut one, n_q, h, d).unwrap(),
                AttendExtras {
                    lse: Some((&mut one_lse, 0)),
                    mass: None,
                },
            )
            .unwrap();
            assert_eq!(
                bits(&one),
                bits(&o(&out, n_q * h * d)),
                "{:?} seq {b}",
                kern.isa()
            );
            assert_eq!(bits(&one_lse), bits(&o(&lse, n_q * h)));
            // Row (query 1, head 0): every key -inf -> zeros and lse -inf.
            let row = (n_q * h) * b + h;
            assert!(out[row * d..(row + 1) * d].iter().all(|&x| x == 0.0));
            assert_eq!(lse[row], f32::NEG_INFINITY);
            // Row (query 2, head 1): +inf -> NaN.
            let row = (n_q * h) * b + 2 * h + 1;
            assert!(out[row * d..(row + 1) * d].iter().all(|x| x.is_nan()));
        }
    }
    let x = [0.5f32; 16];
    let cu = [0usize, 2];
    let cases: [(Batch, usize, ErrorKind); 2] = [
        (
            Batch::Ragged {
                cu_seqlens_q: &cu,
                cu_seqlens_k: &cu,
            },
            4,
            ErrorKind::Unsupported,
        ),
        (Batch::One, 3, ErrorKind::BufferTooSmall),
    ];
    for (batch, len, kind) in cases {
        let mut out = [7f32; 8];
        let err = attention_batch(
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            Heads::dense(&x[..8], 2, 1, 4).unwrap(),
            KeySubset::Dense,
            &AttendOptions {
                bias: Some(AttendBias {
                    data: BiasData::F32(&x[..len]),
                    head_stride: 0,
                    query_stride: 2,
                    batch_stride: 0,
                }),
                ..Default::default()
            },
            &batch,
            HeadsMut::dense(&mut out, 2, 1, 4).unwrap(),
            AttendExtras::default(),
        )
        .unwrap_err();
        assert_eq!(err.kind, kind);
        assert_eq!(out, [7f32; 8]);
    }
}

/// An f16 or bf16 bias gives, on every level, the bits of the f32 bias holding the same
/// values (converted exactly): in prefill units with head and query strides, split-K
/// decoding (chunks shift the bias by keys), a dense batch (sequences shift it by
/// `batch_stride`), with -inf masks and ALiBi beside it.
#[test]
fn bias_of_every_element_type_gives_the_bits_of_the_f32_bias() {
    use tokenroute::{Batch, BatchStrides};
    let mut r = Rng(71);
    // (n_q, n_k, h_q, h_kv, d, dense batch of)
    for (n_q, n_k, h_q, h_kv, d, n_b) in [
        (37, 90, 4, 2, 24, 1),
        (1, 1500, 6, 2, 16, 1),
        (5, 33, 2, 1, 8, 3),
    ] {
        let q = r.vec(n_b * n_q * h_q * d);
        let k = r.vec(n_b * n_k * h_kv * d);
        let v = r.vec(n_b * n_k * h_kv * d);
        // [b][h][i][k] with padding between rows, heads and sequences; every 11th -inf.
        let (qs, hs) = (n_k + 3, n_q * (n_k + 3) + 5);
        let bs = h_q * hs + 7;
        let b32: Vec<f32> = (0..n_b * bs)
            .map(|j| {
                if j % 11 == 4 {
                    f32::NEG_INFINITY
                } else {
                    4.0 * r.f()
                }
            })
            .collect();
        let b16: Vec<f16> = b32.iter().map(|&x| f16::from_f32(x)).collect();
        let bb: Vec<bf16> = b32.iter().map(|&x| bf16::from_f32(x)).collect();
        let from16: Vec<f32> = b16.iter().map(|x| x.to_f32()).collect();
        let fromb: Vec<f32> = bb.iter().map(|x| x.to_f32()).collect();
        let sl = slopes(h_q);
        let run = |kern: &Kernels, data: BiasData| -> Vec<f32> {
            let mut out = vec![0f32; n_b * n_q * h_q * d];
            let strides = BatchStrides {
                q: n_q * h_q * d,
                k: n_k * h_kv * d,
                v: n_k * h_kv * d,
                out: n_q * h_q * d,
                ..Default::default()
            };
            let opts = AttendOptions {
                bias: Some(AttendBias {
                    data,
                    head_stride: hs,
                    query_stride: qs,
                    batch_stride: bs,
                }),
                alibi_slopes: Some(&sl),
                causal: true,
                align: tokenroute::CausalAlign::BottomRight,
                ..Default::default()
            };
            kern.attention_batch(
                Heads::new(&q, n_q, h_q, d, h_q * d, d).unwrap(),
                Heads::new(&k, n_k, h_kv, d, h_kv * d, d).unwrap(),
                Heads::new(&v, n_k, h_kv, d, h_kv * d, d).unwrap(),
                KeySubset::Dense,
                &opts,
                &Batch::Dense { n: n_b, strides },
                HeadsMut::new(&mut out, n_q, h_q, d, h_q * d, d).unwrap(),
                AttendExtras::default(),
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
            out
        };
        let mut first: Option<Vec<u32>> = None;
        for kern in Kernels::all_supported() {
            let what = |t| format!("{:?} {n_q}x{n_k} batch {n_b}: {t}", kern.isa());
            let want16 = run(kern, BiasData::F32(&from16));
            let got16 = run(kern, BiasData::F16(&b16));
            assert_eq!(bits(&got16), bits(&want16), "{}", what("f16"));
            let wantb = run(kern, BiasData::F32(&fromb));
            let gotb = run(kern, BiasData::BF16(&bb));
            assert_eq!(bits(&gotb), bits(&wantb), "{}", what("bf16"));
            // The 16-bit values differ from the f32 ones, and so do the outputs (the
            // comparison above would notice a bias read at the wrong element).
            assert_ne!(
                bits(&run(kern, BiasData::F32(&b32))),
                bits(&wantb),
                "{}",
                what("f32")
            );
            assert!(got16.iter().all(|x| x.is_finite()), "{}", what("finite"));
            match &first {
                None => first = Some(bits(&got16)),
                Some(f) => assert_eq!(f, &bits(&got16), "{}", what("levels")),
            }
        }
    }
}
