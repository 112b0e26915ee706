//! Token selection: exact top-k and threshold selection on the shapes. Indices
//! are identical on every level, so each level is checked exactly against scalar.

use super::values;
use crate::{Bound, Case};
use tokenroute::{Kernels, Matrix, MatrixMut, Order, RowSpec, Tau, ThresholdOut, TopK, TopkOut};

/// Score distributions: the all-equal and few-distinct rows must stay within 2x of
/// random ones.
#[derive(Clone, Copy)]
enum Dist {
    Random,
    AllEqual,
    FewDistinct,
}

impl Dist {
    fn name(self) -> &'static str {
        match self {
            Dist::Random => "random",
            Dist::AllEqual => "equal",
            Dist::FewDistinct => "few",
        }
    }
    fn gen(self, len: usize, seed: u64) -> Vec<f32> {
        match self {
            Dist::Random => values(len, seed),
            Dist::AllEqual => vec![0.5; len],
            Dist::FewDistinct => values(len, seed)
                .into_iter()
                .map(|v| (v * 2.0).floor() * 0.25)
                .collect(),
        }
    }
}

struct Topk {
    rows: usize,
    n: usize,
    k: usize,
    dist: Dist,
    scores: Vec<f32>,
    out: Vec<u32>,
    ws: Vec<u64>,
}

impl Case for Topk {
    fn family(&self) -> &'static str {
        "select"
    }
    fn name(&self) -> String {
        format!("topk_f32_{}", self.dist.name())
    }
    fn shape(&self) -> String {
        let k = match self.k {
            k if k == self.n / 2 => "n/2".to_string(),
            k if k == self.n / 10 => "n/10".to_string(),
            k => k.to_string(),
        };
        if self.rows == 1 {
            format!("n={} k={k}", self.n)
        } else {
            format!("{}x n={} k={k}", self.rows, self.n)
        }
    }
    fn bytes(&self) -> u64 {
        (self.rows * (self.n + self.k) * 4) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Read((self.rows * self.n * 4) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        k.topk_f32(
            Matrix::dense(&self.scores, self.rows, self.n).unwrap(),
            TopK::Fixed(self.k),
            Order::Position,
            &RowSpec::default(),
            TopkOut {
                indices: MatrixMut::dense(&mut self.out, self.rows, self.k).unwrap(),
                scores: None,
                counts: None,
            },
            Some(&mut self.ws),
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        self.out.clone()
    }
}

fn topk(rows: usize, n: usize, k: usize, dist: Dist) -> Box<dyn Case> {
    Box::new(Topk {
        rows,
        n,
        k,
        dist,
        scores: dist.gen(rows * n, 11),
        out: vec![0; rows * k],
        ws: vec![0; tokenroute::topk_workspace_len(n)],
    })
}

struct Threshold {
    tau: f32,
    percent: u32,
    scores: Vec<f32>,
    out: Vec<u32>,
    count: [usize; 1],
}

impl Case for Threshold {
    fn family(&self) -> &'static str {
        "select"
    }
    fn name(&self) -> String {
        format!("threshold_f32_{}pct", self.percent)
    }
    fn shape(&self) -> String {
        format!("n={}M", self.scores.len() >> 20)
    }
    fn bytes(&self) -> u64 {
        ((self.scores.len() + self.count[0]) * 4) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Read((self.scores.len() * 4) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        let n = self.scores.len();
        k.threshold_f32(
            Matrix::dense(&self.scores, 1, n).unwrap(),
            Tau::Fixed(self.tau),
            &RowSpec::default(),
            ThresholdOut {
                indices: Some(MatrixMut::dense(&mut self.out, 1, n).unwrap()),
                mask: None,
                counts: Some(&mut self.count),
            },
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        self.out[..self.count[0]].to_vec()
    }
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    // The vocabulary-sized row (n = 50257, k = 50): one row and a batch of 32.
    v.push(topk(1, 50257, 50, Dist::Random));
    v.push(topk(32, 50257, 50, Dist::Random));
    let sizes: &[usize] = if quick {
        &[131072]
    } else {
        &[4096, 131072, 1 << 20]
    };
    for &n in sizes {
        for k in [64, n / 10, n / 2] {
            v.push(topk(1, n, k, Dist::Random));
        }
    }
    // Degenerate distributions against random ones.
    let n = if quick { 131072 } else { 1 << 20 };
    for dist in [Dist::AllEqual, Dist::FewDistinct] {
        for k in [64, n / 10, n / 2] {
            v.push(topk(1, n, k, dist));
        }
    }
    v.push(topk(1, 50257, 50, Dist::AllEqual));
    v.push(topk(1, 50257, 50, Dist::FewDistinct));
    // A small call (n = 64): what threads must not cost.
    v.push(topk(1, 64, 8, Dist::Random));
    // Threshold selection over 1M scores uniform in [-1, 1): 10% and 50% selected; and
    // (full run) 16M, from memory.
    let big: &[(f32, u32, usize)] = if quick { &[] } else { &[(0.8, 10, 16 << 20)] };
    for &(tau, percent, n) in [(0.8f32, 10, 1 << 20), (0.0, 50, 1 << 20)]
        .iter()
        .chain(big)
    {
        v.push(Box::new(Threshold {
            tau,
            percent,
            scores: values(n, 5),
            out: vec![0; n],
            count: [0],
        }));
    }
    v
}
