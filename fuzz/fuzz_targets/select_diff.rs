//! Differential target for the selection family (top-k, threshold, mask <-> indices):
//! decodes a batch of scores (NaN of any payload, infinities, signed zeros, subnormals
//! and many ties), strides, valid lengths, forced keeps (first, last, mask), k (fixed,
//! per row, capacity), tau (fixed, per row) and the order from the input, runs every
//! ISA level and requires:
//! - exactly the same outcome on every level (same error, or the same bytes in every
//!   output buffer, including what lies past the written entries);
//! - agreement with a sorting oracle: numbers by value with -0 == +0, every NaN below
//!   every number, ties by lower index, forced keeps counted within k (top-k) or added
//!   (threshold); an error exactly when the forced keeps exceed k_row;
//! - nothing written past the documented parts of the outputs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenroute::{Kernels, Matrix, MatrixMut, Order, RowSpec, Tau, ThresholdOut, TopK, TopkOut};
use tokenroute_fuzz::Input;

const MARK32: u32 = 0xA5A5_A5A5;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 4 {
        0 => masks(&mut inp),
        1 => threshold(&mut inp),
        _ => topk(&mut inp),
    }
});

/// A batch of scores with its row spec.
struct Case {
    rows: usize,
    n: usize,
    stride: usize,
    scores: Vec<f32>,
    lens: Option<Vec<usize>>,
    keep_first: usize,
    keep_last: usize,
    keep: Option<Vec<u8>>,
}

impl Case {
    fn new(inp: &mut Input) -> Case {
        let rows = inp.below(5);
        let n = inp.len(260);
        let stride = n + inp.below(3);
        let ties = inp.bool();
        let span = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + n
        };
        let scores = (0..span)
            .map(|_| {
                if ties {
                    // Few distinct values: ties everywhere, with signed zeros and NaN.
                    [0.0, -0.0, 1.0, -1.0, f32::NAN, 0.5, f32::INFINITY][inp.below(6)]
                } else {
                    inp.f32()
                }
            })
            .collect();
        let lens = if inp.u8() % 3 == 0 {
            Some((0..rows).map(|_| inp.below(n)).collect())
        } else {
            None
        };
        let keep_first = if inp.bool() { inp.below(5) } else { 0 };
        let keep_last = if inp.bool() { inp.below(5) } else { 0 };
        let keep = if inp.u8() % 4 == 0 {
            Some(
                (0..rows * n)
                    .map(|_| (inp.u8() % 16 == 0) as u8 * inp.u8().max(1))
                    .collect(),
            )
        } else {
            None
        };
        Case {
            rows,
            n,
            stride,
            scores,
            lens,
            keep_first,
            keep_last,
            keep,
        }
    }

    fn valid(&self, r: usize) -> usize {
        self.lens.as_ref().map_or(self.n, |l| l[r])
    }

    fn row(&self, r: usize) -> &[f32] {
        &self.scores[r * self.stride..r * self.stride + self.valid(r)]
    }

    /// The forced tokens of row r, ascending.
    fn forced(&self, r: usize) -> Vec<usize> {
        let len = self.valid(r);
        let kf = self.keep_first.min(len);
        let kl = self.keep_last.min(len - kf);
        (0..len)
            .filter(|&i| {
                i < kf
                    || i >= len - kl
                    || self.keep.as_ref().is_some_and(|m| m[r * self.n + i] != 0)
            })
            .collect()
    }

    fn spec(&self) -> RowSpec<'_> {
        RowSpec {
            valid_lens: self.lens.as_deref(),
            keep_first: self.keep_first,
            keep_last: self.keep_last,
            keep_mask: self
                .keep
                .as_ref()
                .map(|m| Matrix::new(m, self.rows, self.n, self.n).unwrap()),
        }
    }

    fn matrix(&self) -> Matrix<'_, f32> {
        Matrix::new(&self.scores, self.rows, self.n, self.stride).unwrap()
    }
}

/// The top-k order: non-NaN first, larger first (-0 == +0), lower index first.
fn rank(s: &[f32], a: usize, b: usize) -> core::cmp::Ordering {
    let (x, y) = (s[a], s[b]);
    x.is_nan()
        .cmp(&y.is_nan())
        .then(y.partial_cmp(&x).unwrap_or(core::cmp::Ordering::Equal))
        .then(a.cmp(&b))
}

fn topk(inp: &mut Input) {
    let c = Case::new(inp);
    let order = if inp.bool() {
        Order::Score
    } else {
        Order::Position
    };
    let per_row: Vec<usize>;
    let kind = inp.u8() % 3;
    let max_valid = (0..c.rows).map(|r| c.valid(r)).min().unwrap_or(0);
    let k = match kind {
        0 => TopK::Fixed(inp.below(max_valid)),
        1 => {
            per_row = (0..c.rows).map(|r| inp.below(c.valid(r))).collect();
            TopK::PerRow(&per_row)
        }
        _ => TopK::Capacity(inp.below(1000) as f64 / 1000.0),
    };
    let k_of = |r: usize| match k {
        TopK::Fixed(k) => k,
        TopK::PerRow(v) => v[r],
        TopK::Capacity(cap) => ((cap * c.valid(r) as f64).ceil() as usize).min(c.valid(r)),
    };
    let kmax = (0..c.rows).map(k_of).max().unwrap_or(0);
    let cols = kmax + inp.below(2);
    let want_err = (0..c.rows).any(|r| c.forced(r).len() > k_of(r));
    let with_ws = inp.bool();
    let mut reference: Option<(Vec<u32>, Vec<u32>, Vec<usize>)> = None;
    for kern in Kernels::all_supported() {
        let mut idx = vec![MARK32; c.rows * cols];
        let mut sc = vec![f32::from_bits(MARK32); c.rows * cols];
        let mut counts = vec![usize::MAX; c.rows];
        let mut ws = vec![0u64; tokenroute::topk_workspace_len(c.n)];
        let res = kern.topk_f32(
            c.matrix(),
            k,
            order,
            &c.spec(),
            TopkOut {
                indices: MatrixMut::new(&mut idx, c.rows, cols, cols).unwrap(),
                scores: Some(MatrixMut::new(&mut sc, c.rows, cols, cols).unwrap()),
                counts: Some(&mut counts),
            },
            if with_ws { Some(&mut ws) } else { None },
        );
        assert_eq!(res.is_err(), want_err, "{:?}: {res:?}", kern.isa());
        if want_err {
            assert!(idx.iter().all(|&v| v == MARK32), "written on error");
            assert!(counts.iter().all(|&v| v == usize::MAX), "written on error");
            continue;
        }
        let scb: Vec<u32> = sc.iter().map(|v| v.to_bits()).collect();
        match &reference {
            None => {
                // The oracle, once (all levels must then equal this one).
                for r in 0..c.rows {
                    let s = c.row(r);
                    let kr = k_of(r);
                    assert_eq!(counts[r], kr);
                    let forced = c.forced(r);
                    let mut rest: Vec<usize> = (0..s.len())
                        .filter(|i| forced.binary_search(i).is_err())
                        .collect();
                    rest.sort_by(|&a, &b| rank(s, a, b));
                    let mut sel: Vec<usize> = forced.clone();
                    sel.extend_from_slice(&rest[..kr - forced.len()]);
                    match order {
                        Order::Position => sel.sort(),
                        Order::Score => sel.sort_by(|&a, &b| rank(s, a, b)),
                    }
                    let got: Vec<usize> = idx[r * cols..r * cols + kr]
                        .iter()
                        .map(|&v| v as usize)
                        .collect();
                    assert_eq!(
                        got, sel,
                        "row {r}: k={kr} forced={forced:?} order={order:?}"
                    );
                    for j in 0..kr {
                        assert_eq!(sc[r * cols + j].to_bits(), s[sel[j]].to_bits());
                    }
                    assert!(idx[r * cols + kr..(r + 1) * cols]
                        .iter()
                        .all(|&v| v == MARK32));
                }
                reference = Some((idx, scb, counts));
            }
            Some((ri, rs, rc)) => {
                assert_eq!(&idx, ri, "{:?}: indices differ from scalar", kern.isa());
                assert_eq!(&scb, rs, "{:?}: scores differ from scalar", kern.isa());
                assert_eq!(&counts, rc, "{:?}: counts differ", kern.isa());
            }
        }
    }
}

fn threshold(inp: &mut Input) {
    let c = Case::new(inp);
    let taus: Vec<f32> = (0..c.rows).map(|_| inp.f32()).collect();
    let tau = if inp.bool() {
        Tau::PerRow(&taus)
    } else {
        Tau::Fixed(taus.first().copied().unwrap_or(0.0))
    };
    let tau_of = |r: usize| match tau {
        Tau::Fixed(t) => t,
        Tau::PerRow(t) => t[r],
    };
    let cols = c.n + inp.below(2);
    let mut reference: Option<(Vec<u32>, Vec<u8>, Vec<usize>)> = None;
    for kern in Kernels::all_supported() {
        let mut idx = vec![MARK32; c.rows * cols];
        let mut mask = vec![0xA5u8; c.rows * c.n];
        let mut counts = vec![usize::MAX; c.rows];
        kern.threshold_f32(
            c.matrix(),
            tau,
            &c.spec(),
            ThresholdOut {
                indices: Some(MatrixMut::new(&mut idx, c.rows, cols, cols).unwrap()),
                mask: Some(MatrixMut::new(&mut mask, c.rows, c.n, c.n).unwrap()),
                counts: Some(&mut counts),
            },
        )
        .unwrap();
        // Compare the defined parts: indices[..count], nothing past the valid length.
        let mut defined = Vec::new();
        for r in 0..c.rows {
            let (cnt, len) = (counts[r], c.valid(r));
            defined.extend_from_slice(&idx[r * cols..r * cols + cnt]);
            assert!(
                idx[r * cols + len..(r + 1) * cols]
                    .iter()
                    .all(|&v| v == MARK32),
                "{:?}: written past the valid length",
                kern.isa()
            );
        }
        match &reference {
            None => {
                for r in 0..c.rows {
                    let s = c.row(r);
                    let t = tau_of(r);
                    let forced = c.forced(r);
                    let want: Vec<u32> = (0..s.len())
                        .filter(|&i| s[i] > t || forced.binary_search(&i).is_ok())
                        .map(|i| i as u32)
                        .collect();
                    assert_eq!(
                        &idx[r * cols..r * cols + counts[r]],
                        &want[..],
                        "row {r} tau {t:e}"
                    );
                    for i in 0..c.n {
                        let m = mask[r * c.n + i];
                        assert_eq!(
                            m,
                            want.binary_search(&(i as u32)).is_ok() as u8,
                            "mask row {r} at {i}"
                        );
                    }
                }
                reference = Some((defined, mask, counts));
            }
            Some((ri, rm, rc)) => {
                assert_eq!(&defined, ri, "{:?}: indices differ from scalar", kern.isa());
                assert_eq!(&mask, rm, "{:?}: mask differs", kern.isa());
                assert_eq!(&counts, rc, "{:?}: counts differ", kern.isa());
            }
        }
    }
}

fn masks(inp: &mut Input) {
    let n = inp.len(600);
    let density = inp.u8();
    let mask: Vec<u8> = (0..n)
        .map(|_| {
            if inp.u8() < density {
                inp.u8().max(1)
            } else {
                0
            }
        })
        .collect();
    let want: Vec<u32> = (0..n as u32).filter(|&i| mask[i as usize] != 0).collect();
    let count = inp.below(40);
    let idx: Vec<u32> = (0..count).map(|_| inp.below(n + 1) as u32).collect();
    let all_in = idx.iter().all(|&i| (i as usize) < n);
    for kern in Kernels::all_supported() {
        let mut out = vec![MARK32; n + 4];
        let c = kern.mask_to_indices(&mask, &mut out[..n]).unwrap();
        assert_eq!(&out[..c], &want[..], "{:?}: mask_to_indices", kern.isa());
        assert!(out[n..].iter().all(|&v| v == MARK32));
        let mut m = vec![0xA5u8; n];
        let r = kern.indices_to_mask(&idx, &mut m);
        assert_eq!(r.is_ok(), all_in, "{:?}: indices_to_mask {r:?}", kern.isa());
        if all_in {
            for i in 0..n {
                assert_eq!(
                    m[i],
                    idx.contains(&(i as u32)) as u8,
                    "{:?}: mask at {i}",
                    kern.isa()
                );
            }
        } else {
            assert!(m.iter().all(|&b| b == 0xA5), "written on error");
        }
    }
}
