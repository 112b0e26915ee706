//! The safe selection API (`Kernels::topk_f32`, `Kernels::threshold_f32`, the mask
//! conversions) on every ISA level this CPU has, against sort-based oracles that live
//! here: batched rows with strides, per-row k / capacity / tau, valid lengths, forced
//! keeps, both output orders and the selected scores; every error leaves the outputs
//! untouched.

use proptest::prelude::*;
use std::cmp::Ordering;
use tokenroute::{
    ErrorKind, Kernels, Matrix, MatrixMut, Order, RowSpec, Tau, ThresholdOut, TopK, TopkOut,
};

const CANARY: u32 = 0xdead_beef;

fn score_cmp(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

fn forced(len: usize, kf: usize, kl: usize, keep: Option<&[u8]>) -> Vec<bool> {
    let kf = kf.min(len);
    let kl = kl.min(len - kf);
    (0..len)
        .map(|i| i < kf || i >= len - kl || keep.is_some_and(|k| k[i] != 0))
        .collect()
}

fn oracle_topk(s: &[f32], k: usize, f: &[bool], order: Order) -> Vec<u32> {
    let nf = f.iter().filter(|&&x| x).count();
    let mut others: Vec<usize> = (0..s.len()).filter(|&i| !f[i]).collect();
    others.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = (0..s.len()).filter(|&i| f[i]).collect();
    chosen.extend_from_slice(&others[..k - nf]);
    match order {
        Order::Position => chosen.sort(),
        Order::Score => chosen.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b))),
    }
    chosen.into_iter().map(|i| i as u32).collect()
}

fn oracle_threshold(s: &[f32], tau: f32, f: &[bool]) -> Vec<u32> {
    (0..s.len())
        .filter(|&i| f[i] || s[i] > tau)
        .map(|i| i as u32)
        .collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn score(&mut self, kind: u8) -> f32 {
        match kind {
            0 => (self.next() >> 40) as f32 / (1u64 << 24) as f32,
            1 => (self.below(4) as f32) * 0.25,
            2 => match self.below(6) {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -0.0,
                3 => 0.0,
                4 => f32::from_bits(1),
                _ => (self.next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5,
            },
            _ => 0.5,
        }
    }
}

/// One batched case: rows x n scores at a stride, with valid lengths and keeps.
struct Case {
    rows: usize,
    n: usize,
    stride: usize,
    scores: Vec<f32>,
    valid: Option<Vec<usize>>,
    keep_first: usize,
    keep_last: usize,
    keep: Option<(Vec<u8>, usize)>,
}

impl Case {
    fn gen(seed: u64, rows: usize, n: usize, kind: u8, with_valid: bool, with_keep: bool) -> Case {
        let mut rng = Rng(seed | 1);
        let stride = n + rng.below(5);
        let scores = (0..rows.saturating_sub(1) * stride + n)
            .map(|_| rng.score(kind))
            .collect();
        let valid = with_valid.then(|| (0..rows).map(|_| rng.below(n + 1)).collect());
        let keep = with_keep.then(|| {
            let ks = n + rng.below(3);
            let m = (0..rows.saturating_sub(1) * ks + n)
                .map(|_| (rng.below(9) == 0) as u8 * (1 + rng.below(200) as u8))
                .collect();
            (m, ks)
        });
        Case {
            rows,
            n,
            stride,
            scores,
            valid,
            keep_first: rng.below(3),
            keep_last: rng.below(3),
            keep,
        }
    }
    fn spec(&self) -> RowSpec<'_> {
        RowSpec {
            valid_lens: self.valid.as_deref(),
            keep_first: self.keep_first,
            keep_last: self.keep_last,
            keep_mask: self
                .keep
                .as_ref()
                .map(|(m, s)| Matrix::new(m, self.rows, self.n, *s).unwrap()),
        }
    }
    fn valid(&self, r: usize) -> usize {
        self.valid.as_ref().map_or(self.n, |v| v[r])
    }
    fn row(&self, r: usize) -> &[f32] {
        &self.scores[r * self.stride..r * self.stride + self.valid(r)]
    }
    fn forced(&self, r: usize) -> Vec<bool> {
        let keep = self
            .keep
            .as_ref()
            .map(|(m, s)| &m[r * s..r * s + self.valid(r)]);
        forced(self.valid(r), self.keep_first, self.keep_last, keep)
    }
    fn matrix(&self) -> Matrix<'_, f32> {
        Matrix::new(&self.scores, self.rows, self.n, self.stride).unwrap()
    }
}

/// Runs batched top-k on every level and checks each row against the oracle.
fn check_topk(c: &Case, k: TopK, order: Order, with_scores: bool, caller_ws: bool) {
    let k_of = |r: usize| match k {
        TopK::Fixed(k) => k,
        TopK::PerRow(ks) => ks[r],
        TopK::Capacity(cap) => (cap * c.valid(r) as f64).ceil() as usize,
    };
    let max_k = (0..c.rows).map(k_of).max().unwrap_or(0);
    let ostride = max_k + 3;
    let len = c.rows * ostride;
    for kern in Kernels::all_supported() {
        let mut idx = vec![CANARY; len];
        let mut sc = vec![f32::from_bits(CANARY); len];
        let mut counts = vec![usize::MAX; c.rows];
        let mut ws = vec![0u64; tokenroute::topk_workspace_len(c.n)];
        kern.topk_f32(
            c.matrix(),
            k,
            order,
            &c.spec(),
            TopkOut {
                indices: MatrixMut::new(&mut idx, c.rows, max_k, ostride).unwrap(),
                scores: with_scores
                    .then(|| MatrixMut::new(&mut sc, c.rows, max_k, ostride).unwrap()),
                counts: Some(&mut counts),
            },
            caller_ws.then_some(&mut ws[..]),
        )
        .unwrap_or_else(|e| panic!("{:?}: {e}", kern.isa()));
        for r in 0..c.rows {
            let kr = k_of(r);
            let want = oracle_topk(c.row(r), kr, &c.forced(r), order);
            let row = &idx[r * ostride..(r + 1) * ostride];
            assert_eq!(&row[..kr], &want[..], "{:?} row {r} k={kr}", kern.isa());
            assert!(row[kr..].iter().all(|&x| x == CANARY), "written past k");
            assert_eq!(counts[r], kr);
            let srow = &sc[r * ostride..(r + 1) * ostride];
            for j in 0..ostride {
                if with_scores && j < kr {
                    assert_eq!(srow[j].to_bits(), c.row(r)[want[j] as usize].to_bits());
                } else {
                    assert_eq!(srow[j].to_bits(), CANARY);
                }
            }
        }
    }
}

fn check_threshold(c: &Case, tau: Tau, with_idx: bool, with_mask: bool) {
    let tau_of = |r: usize| match tau {
        Tau::Fixed(t) => t,
        Tau::PerRow(t) => t[r],
    };
    let ostride = c.n + 2;
    let mstride = c.n + 1;
    for kern in Kernels::all_supported() {
        let mut idx = vec![CANARY; c.rows * ostride];
        let mut mask = vec![0xaau8; c.rows * mstride];
        let mut counts = vec![usize::MAX; c.rows];
        kern.threshold_f32(
            c.matrix(),
            tau,
            &c.spec(),
            ThresholdOut {
                indices: with_idx.then(|| MatrixMut::new(&mut idx, c.rows, c.n, ostride).unwrap()),
                mask: with_mask.then(|| MatrixMut::new(&mut mask, c.rows, c.n, mstride).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap();
        for r in 0..c.rows {
            let want = oracle_threshold(c.row(r), tau_of(r), &c.forced(r));
            assert_eq!(counts[r], want.len(), "{:?} row {r}", kern.isa());
            let row = &idx[r * ostride..(r + 1) * ostride];
            if with_idx {
                assert_eq!(&row[..want.len()], &want[..], "{:?} row {r}", kern.isa());
                assert!(row[c.valid(r)..].iter().all(|&x| x == CANARY));
            } else {
                assert!(row.iter().all(|&x| x == CANARY));
            }
            let mrow = &mask[r * mstride..(r + 1) * mstride];
            if with_mask {
                let mut m = vec![0u8; c.n];
                for &i in &want {
                    m[i as usize] = 1;
                }
                assert_eq!(&mrow[..c.n], &m[..]);
                assert_eq!(mrow[c.n], 0xaa);
            } else {
                assert!(mrow.iter().all(|&b| b == 0xaa));
            }
        }
    }
}

#[test]
fn topk_batched_every_form_of_k() {
    for (seed, rows, n) in [(1, 1, 1), (2, 3, 40), (3, 5, 700), (4, 2, 3000), (5, 4, 0)] {
        for kind in 0..4u8 {
            for (with_valid, with_keep) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let c = Case::gen(
                    seed * 31 + kind as u64,
                    rows,
                    n,
                    kind,
                    with_valid,
                    with_keep,
                );
                // The largest forced count bounds k from below.
                let fmax = (0..rows)
                    .map(|r| c.forced(r).iter().filter(|&&x| x).count())
                    .max()
                    .unwrap_or(0);
                let vmin = (0..rows).map(|r| c.valid(r)).min().unwrap_or(0);
                if fmax <= vmin {
                    for k in [fmax, (fmax + vmin) / 2, vmin] {
                        check_topk(&c, TopK::Fixed(k), Order::Position, false, false);
                    }
                }
                let per_row: Vec<usize> = (0..rows)
                    .map(|r| {
                        let f = c.forced(r).iter().filter(|&&x| x).count();
                        f + (c.valid(r) - f) / 3
                    })
                    .collect();
                check_topk(&c, TopK::PerRow(&per_row), Order::Score, true, true);
                check_topk(&c, TopK::PerRow(&per_row), Order::Position, true, false);
                if !with_keep && c.keep_first + c.keep_last == 0 {
                    for cap in [0.0, 0.1, 0.5, 1.0] {
                        check_topk(&c, TopK::Capacity(cap), Order::Position, false, true);
                    }
                }
            }
        }
    }
}

#[test]
fn threshold_batched_every_output() {
    for (seed, rows, n) in [(1, 1, 1), (2, 3, 40), (3, 5, 700), (4, 2, 3000), (5, 3, 0)] {
        for kind in 0..4u8 {
            for (with_valid, with_keep) in [(false, false), (true, true)] {
                let c = Case::gen(
                    seed * 17 + kind as u64,
                    rows,
                    n,
                    kind,
                    with_valid,
                    with_keep,
                );
                let taus: Vec<f32> = (0..rows).map(|r| [0.5, -0.0, f32::NAN][r % 3]).collect();
                for (i, m) in [(true, true), (true, false), (false, true), (false, false)] {
                    check_threshold(&c, Tau::Fixed(0.25), i, m);
                    check_threshold(&c, Tau::PerRow(&taus), i, m);
                }
            }
        }
    }
}

#[test]
fn single_row_helpers_and_mask_conversions() {
    let s: Vec<f32> = (0..100).map(|i| ((i * 37) % 11) as f32).collect();
    let f = vec![false; 100];
    for kern in Kernels::all_supported() {
        let mut out = vec![CANARY; 12];
        kern.topk_row_f32(&s, 10, Order::Score, &mut out).unwrap();
        assert_eq!(&out[..10], &oracle_topk(&s, 10, &f, Order::Score)[..]);
        assert_eq!(out[10..], [CANARY, CANARY]);
        let mut out = vec![0u32; 100];
        let c = kern.threshold_row_f32(&s, 7.0, &mut out).unwrap();
        assert_eq!(&out[..c], &oracle_threshold(&s, 7.0, &f)[..]);
        let mask: Vec<u8> = s.iter().map(|&x| (x > 7.0) as u8 * 3).collect();
        let mut idx = vec![0u32; 100];
        let c2 = kern.mask_to_indices(&mask, &mut idx).unwrap();
        assert_eq!(&idx[..c2], &out[..c]);
        let mut back = vec![9u8; 100];
        kern.indices_to_mask(&idx[..c2], &mut back).unwrap();
        assert!(back.iter().zip(&mask).all(|(&b, &m)| b == (m != 0) as u8));
        // Errors leave the outputs untouched.
        let mut m = vec![7u8; 10];
        let e = kern.indices_to_mask(&[3, 10], &mut m).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfRange);
        assert!(m.iter().all(|&b| b == 7));
        let mut short = vec![CANARY; 99];
        assert_eq!(
            kern.mask_to_indices(&mask, &mut short).unwrap_err().kind,
            ErrorKind::BufferTooSmall
        );
        assert_eq!(
            kern.threshold_row_f32(&s, 0.0, &mut short)
                .unwrap_err()
                .kind,
            ErrorKind::BufferTooSmall
        );
        assert!(short.iter().all(|&x| x == CANARY));
        assert_eq!(
            kern.topk_row_f32(&s, 101, Order::Position, &mut short)
                .unwrap_err()
                .kind,
            ErrorKind::InvalidArgument
        );
        assert!(short.iter().all(|&x| x == CANARY));
    }
}

#[test]
fn topk_errors_write_nothing() {
    let rows = 3;
    let n = 50;
    let s: Vec<f32> = (0..rows * n).map(|i| (i % 17) as f32).collect();
    let sm = || Matrix::new(&s, rows, n, n).unwrap();
    let kern = Kernels::for_isa(tokenroute::Isa::Scalar).unwrap();
    let valid = [50usize, 10, 0];
    let keep = vec![1u8; rows * n];
    type Setup<'a> = (TopK<'a>, RowSpec<'a>, usize, usize, ErrorKind);
    let cases: Vec<(&str, Setup)> = vec![
        (
            "k > n",
            (
                TopK::Fixed(51),
                RowSpec::default(),
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "k > valid length",
            (
                TopK::Fixed(11),
                RowSpec {
                    valid_lens: Some(&valid),
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "forced keeps exceed k",
            (
                TopK::Fixed(4),
                RowSpec {
                    keep_first: 3,
                    keep_last: 2,
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "keep mask forces more than k",
            (
                TopK::Fixed(5),
                RowSpec {
                    keep_mask: Some(Matrix::new(&keep, rows, n, n).unwrap()),
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "per-row k of the wrong length",
            (
                TopK::PerRow(&[1, 2]),
                RowSpec::default(),
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "capacity > 1",
            (
                TopK::Capacity(1.5),
                RowSpec::default(),
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "capacity NaN",
            (
                TopK::Capacity(f64::NAN),
                RowSpec::default(),
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "capacity < 0",
            (
                TopK::Capacity(-0.1),
                RowSpec::default(),
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "valid length > n",
            (
                TopK::Fixed(1),
                RowSpec {
                    valid_lens: Some(&[1, 51, 1]),
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "valid_lens of the wrong length",
            (
                TopK::Fixed(0),
                RowSpec {
                    valid_lens: Some(&[1, 1]),
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "keep mask of the wrong shape",
            (
                TopK::Fixed(5),
                RowSpec {
                    keep_mask: Some(Matrix::new(&keep, rows, n - 1, n).unwrap()),
                    ..Default::default()
                },
                60,
                60,
                ErrorKind::InvalidArgument,
            ),
        ),
        (
            "indices row shorter than k",
            (
                TopK::Fixed(20),
                RowSpec::default(),
                19,
                60,
                ErrorKind::BufferTooSmall,
            ),
        ),
        (
            "workspace too small",
            (
                TopK::Fixed(20),
                RowSpec::default(),
                60,
                49,
                ErrorKind::BufferTooSmall,
            ),
        ),
    ];
    for (what, (k, spec, cols, ws_len, want)) in cases {
        let mut idx = vec![CANARY; rows * 60];
        let mut counts = vec![7usize; rows];
        let mut ws = vec![0u64; ws_len];
        let e = kern
            .topk_f32(
                sm(),
                k,
                Order::Position,
                &spec,
                TopkOut {
                    indices: MatrixMut::new(&mut idx, rows, cols, 60).unwrap(),
                    scores: None,
                    counts: Some(&mut counts),
                },
                (ws_len != 60).then_some(&mut ws[..]),
            )
            .unwrap_err();
        assert_eq!(e.kind, want, "{what}: {e}");
        assert!(idx.iter().all(|&x| x == CANARY), "{what}: indices written");
        assert!(counts.iter().all(|&x| x == 7), "{what}: counts written");
    }
}

#[test]
fn threshold_errors_write_nothing() {
    let rows = 2;
    let n = 30;
    let s = vec![1.0f32; rows * n];
    let kern = Kernels::active().unwrap();
    let mut idx = vec![CANARY; rows * n];
    let mut counts = vec![7usize; rows];
    let mut mask = vec![5u8; rows * n];
    let e = kern
        .threshold_f32(
            Matrix::new(&s, rows, n, n).unwrap(),
            Tau::PerRow(&[0.0]),
            &RowSpec::default(),
            ThresholdOut {
                indices: Some(MatrixMut::new(&mut idx, rows, n, n).unwrap()),
                mask: Some(MatrixMut::new(&mut mask, rows, n, n).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    let e = kern
        .threshold_f32(
            Matrix::new(&s, rows, n, n).unwrap(),
            Tau::Fixed(0.0),
            &RowSpec::default(),
            ThresholdOut {
                indices: Some(MatrixMut::new(&mut idx, rows, n - 1, n).unwrap()),
                mask: Some(MatrixMut::new(&mut mask, rows, n, n).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BufferTooSmall);
    let e = kern
        .threshold_f32(
            Matrix::new(&s, rows, n, n).unwrap(),
            Tau::Fixed(0.0),
            &RowSpec::default(),
            ThresholdOut {
                indices: None,
                mask: Some(MatrixMut::new(&mut mask, rows, n - 1, n).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert!(idx.iter().all(|&x| x == CANARY));
    assert!(mask.iter().all(|&x| x == 5));
    assert!(counts.iter().all(|&x| x == 7));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn batched_topk_and_threshold_match_the_oracles(
        seed in any::<u64>(), rows in 1usize..4, n in 0usize..2500, kind in 0u8..4,
        with_valid in any::<bool>(), with_keep in any::<bool>(), frac in 0.0f64..=1.0,
        order_score in any::<bool>(), tau in -0.5f32..1.5,
    ) {
        let c = Case::gen(seed, rows, n, kind, with_valid, with_keep);
        let per_row: Vec<usize> = (0..rows)
            .map(|r| {
                let f = c.forced(r).iter().filter(|&&x| x).count();
                f + ((c.valid(r) - f) as f64 * frac) as usize
            })
            .collect();
        let order = if order_score { Order::Score } else { Order::Position };
        check_topk(&c, TopK::PerRow(&per_row), order, order_score, seed % 2 == 0);
        check_threshold(&c, Tau::Fixed(tau), true, with_keep);
    }
}
