//! Token compaction: gather, scatter, in-place compaction, gated scatter-add and
//! KV-cache compaction of a sorted random half of the rows (bit-exact on every level,
//! so checked bit-exact against scalar). Row moves are held to a memcpy of the bytes
//! they move; the scatter-add, which reads two row sets and writes one, to a memcpy of
//! 1.5 times its row bytes (a copy touches two row sets).
//!
//! The in-place cases and the scatter-add change their buffer on every run, so their
//! output for the check is recomputed from the pristine input by the last level run.

use super::values;
use crate::{Bound, Case};
use tokenroute::{
    bf16, Activation, Element, Kernels, KvCacheMut, KvKeep, KvLayout, Matrix, MatrixMut, Order,
    RouteOut, RouteSelect, RowSpec, TopK,
};

/// A sorted random half of `0..n`.
fn half_sorted(n: usize, seed: u64) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v.truncate(n / 2);
    v.sort();
    v
}

/// Plain-data element types: f32, bf16 (via bits), i32.
trait Pod: Copy + Default + 'static {
    const NAME: &'static str;
    fn make(x: f32) -> Self;
    fn bits(self) -> u32;
}
impl Pod for f32 {
    const NAME: &'static str = "f32";
    fn make(x: f32) -> f32 {
        x
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl Pod for bf16 {
    const NAME: &'static str = "bf16";
    fn make(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}
impl Pod for i32 {
    const NAME: &'static str = "i32";
    fn make(x: f32) -> i32 {
        (x * 1e6) as i32
    }
    fn bits(self) -> u32 {
        self as u32
    }
}

fn make<T: Pod>(n: usize, seed: u64) -> Vec<T> {
    values(n, seed).into_iter().map(T::make).collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Gather,
    Scatter,
    CompactInPlace,
}

struct Rows<T> {
    op: Op,
    rows: usize,
    cols: usize,
    idx: Vec<u32>,
    full: Vec<T>,
    pristine: Vec<T>,
    half: Vec<T>,
    last: Option<&'static Kernels>,
}

impl<T: Pod> Rows<T> {
    fn row_bytes(&self) -> usize {
        self.cols * std::mem::size_of::<T>()
    }
}

impl<T: Pod> Case for Rows<T> {
    fn family(&self) -> &'static str {
        "compact"
    }
    fn name(&self) -> String {
        let op = match self.op {
            Op::Gather => "gather",
            Op::Scatter => "scatter",
            Op::CompactInPlace => "compact_in_place",
        };
        format!("{op}_{}", T::NAME)
    }
    fn shape(&self) -> String {
        format!("{}of{}x{}", self.idx.len(), self.rows, self.cols)
    }
    fn bytes(&self) -> u64 {
        // Read and written once each.
        (2 * self.idx.len() * self.row_bytes()) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Copy((self.idx.len() * self.row_bytes()) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        let (rows, cols, n) = (self.rows, self.cols, self.idx.len());
        self.last = Some(k);
        match self.op {
            Op::Gather => k
                .gather_rows(
                    Matrix::dense(&self.full, rows, cols).unwrap(),
                    &self.idx,
                    MatrixMut::dense(&mut self.half, n, cols).unwrap(),
                )
                .unwrap(),
            Op::Scatter => k
                .scatter_rows(
                    Matrix::dense(&self.half, n, cols).unwrap(),
                    &self.idx,
                    MatrixMut::dense(&mut self.full, rows, cols).unwrap(),
                )
                .unwrap(),
            Op::CompactInPlace => {
                k.compact_rows(
                    MatrixMut::dense(&mut self.full, rows, cols).unwrap(),
                    &self.idx,
                )
                .unwrap();
            }
        }
    }
    fn output(&self) -> Vec<u32> {
        match self.op {
            Op::Gather => self.half.iter().map(|x| x.bits()).collect(),
            Op::Scatter => self.full.iter().map(|x| x.bits()).collect(),
            Op::CompactInPlace => {
                let mut work = self.pristine.clone();
                self.last
                    .unwrap()
                    .compact_rows(
                        MatrixMut::dense(&mut work, self.rows, self.cols).unwrap(),
                        &self.idx,
                    )
                    .unwrap();
                work.iter().map(|x| x.bits()).collect()
            }
        }
    }
}

fn rows<T: Pod>(op: Op, rows: usize, cols: usize) -> Box<dyn Case> {
    let idx = half_sorted(rows, 42);
    let full: Vec<T> = make(rows * cols, 11);
    Box::new(Rows::<T> {
        op,
        rows,
        cols,
        half: make(idx.len() * cols, 12),
        idx,
        pristine: full.clone(),
        full,
        last: None,
    })
}

struct ScatterAdd<T> {
    rows: usize,
    cols: usize,
    idx: Vec<u32>,
    h: Vec<T>,
    pristine: Vec<T>,
    y: Vec<T>,
    gate: Vec<f32>,
    last: Option<&'static Kernels>,
}

impl<T: Element + Pod> Case for ScatterAdd<T> {
    fn family(&self) -> &'static str {
        "compact"
    }
    fn name(&self) -> String {
        format!("scatter_add_gated_{}", T::NAME)
    }
    fn shape(&self) -> String {
        format!("{}of{}x{}", self.idx.len(), self.rows, self.cols)
    }
    fn bytes(&self) -> u64 {
        (3 * self.idx.len() * self.cols * std::mem::size_of::<T>()) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Copy((3 * self.idx.len() * self.cols * std::mem::size_of::<T>() / 2) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        self.last = Some(k);
        k.scatter_add_rows(
            MatrixMut::dense(&mut self.h, self.rows, self.cols).unwrap(),
            &self.idx,
            Matrix::dense(&self.y, self.idx.len(), self.cols).unwrap(),
            Some(&self.gate),
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        let mut h = self.pristine.clone();
        self.last
            .unwrap()
            .scatter_add_rows(
                MatrixMut::dense(&mut h, self.rows, self.cols).unwrap(),
                &self.idx,
                Matrix::dense(&self.y, self.idx.len(), self.cols).unwrap(),
                Some(&self.gate),
            )
            .unwrap();
        h.iter().map(|x| x.bits()).collect()
    }
}

fn scatter_add<T: Element + Pod>(rows: usize, cols: usize) -> Box<dyn Case> {
    let idx = half_sorted(rows, 7);
    let h: Vec<T> = make(rows * cols, 21);
    Box::new(ScatterAdd::<T> {
        rows,
        cols,
        y: make(idx.len() * cols, 22),
        gate: values(idx.len(), 23).into_iter().map(|g| g.abs()).collect(),
        idx,
        pristine: h.clone(),
        h,
        last: None,
    })
}

struct Kv {
    layout: KvLayout,
    per_head: bool,
    t: usize,
    h: usize,
    d: usize,
    keep: Vec<u32>,
    cache: Vec<bf16>,
    pristine: Vec<bf16>,
    last: Option<&'static Kernels>,
}

impl Kv {
    fn compact(&self, k: &'static Kernels, cache: &mut [bf16]) {
        let view = KvCacheMut::dense(cache, self.layout, self.t, self.h, self.d).unwrap();
        let keep = if self.per_head {
            KvKeep::PerHead(&self.keep)
        } else {
            KvKeep::Shared(&self.keep)
        };
        k.kv_compact(view, keep).unwrap();
    }
}

impl Case for Kv {
    fn family(&self) -> &'static str {
        "compact"
    }
    fn name(&self) -> String {
        format!(
            "kv_compact_{}_{}_bf16",
            match self.layout {
                KvLayout::TokenMajor => "thd",
                KvLayout::HeadMajor => "htd",
            },
            if self.per_head { "per_head" } else { "shared" }
        )
    }
    fn shape(&self) -> String {
        format!("{}x{}x{}", self.t, self.h, self.d)
    }
    fn bytes(&self) -> u64 {
        (2 * (self.t / 2) * self.h * self.d * 2) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Copy(((self.t / 2) * self.h * self.d * 2) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        self.last = Some(k);
        let mut cache = std::mem::take(&mut self.cache);
        self.compact(k, &mut cache);
        self.cache = cache;
    }
    fn output(&self) -> Vec<u32> {
        let mut cache = self.pristine.clone();
        self.compact(self.last.unwrap(), &mut cache);
        cache.iter().map(|x| x.to_bits() as u32).collect()
    }
}

fn kv(layout: KvLayout, per_head: bool, t: usize, h: usize, d: usize) -> Box<dyn Case> {
    let keep: Vec<u32> = if per_head {
        (0..h)
            .flat_map(|i| half_sorted(t, 100 + i as u64))
            .collect()
    } else {
        half_sorted(t, 3)
    };
    let cache: Vec<bf16> = make(t * h * d, 31);
    Box::new(Kv {
        layout,
        per_head,
        t,
        h,
        d,
        keep,
        pristine: cache.clone(),
        cache,
        last: None,
    })
}

/// The fused route call (score -> select -> gather) of one sequence: top-k of half the
/// tokens, or a threshold at the median score. Held to reading the hidden states once
/// (what scoring alone costs).
struct Route {
    n: usize,
    d: usize,
    threshold: bool,
    tau: f32,
    h: Vec<bf16>,
    w: Vec<bf16>,
    idx: Vec<u32>,
    sel: Vec<f32>,
    rows: Vec<bf16>,
    count: usize,
}

impl Case for Route {
    fn family(&self) -> &'static str {
        "compact"
    }
    fn name(&self) -> String {
        format!(
            "route_{}_bf16",
            if self.threshold { "threshold" } else { "topk" }
        )
    }
    fn shape(&self) -> String {
        format!("{}x{}", self.n, self.d)
    }
    fn bytes(&self) -> u64 {
        // Read once, plus the selected half read again and written.
        (2 * self.n * self.d * 2) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Read((self.n * self.d * 2) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        let how = if self.threshold {
            RouteSelect::Threshold(self.tau)
        } else {
            RouteSelect::TopK(TopK::Fixed(self.n / 2), Order::Position)
        };
        self.count = k
            .route(
                Matrix::dense(&self.h, self.n, self.d).unwrap(),
                &self.w,
                None,
                Activation::Sigmoid,
                how,
                &RowSpec::default(),
                RouteOut {
                    indices: Some(&mut self.idx),
                    scores: Some(&mut self.sel),
                    rows: MatrixMut::dense(&mut self.rows, self.n, self.d).unwrap(),
                },
                None,
            )
            .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        let c = self.count;
        let mut v: Vec<u32> = self.idx[..c].to_vec();
        v.extend(self.sel[..c].iter().map(|x| x.to_bits()));
        v.extend(self.rows[..c * self.d].iter().map(|x| x.to_bits() as u32));
        v
    }
}

fn route(n: usize, d: usize, threshold: bool) -> Box<dyn Case> {
    let h: Vec<bf16> = make(n * d, 41);
    let w: Vec<bf16> = values(d, 42)
        .into_iter()
        .map(|x| bf16::from_f32(x * 0.05))
        .collect();
    let mut s = vec![0f32; n];
    Kernels::for_isa(tokenroute::Isa::Scalar)
        .unwrap()
        .score(
            Matrix::dense(&h, n, d).unwrap(),
            Matrix::dense(&w, 1, d).unwrap(),
            None,
            Activation::Sigmoid,
            MatrixMut::dense(&mut s, n, 1).unwrap(),
        )
        .unwrap();
    s.sort_by(|a, b| a.total_cmp(b));
    Box::new(Route {
        n,
        d,
        threshold,
        tau: s[n / 2],
        h,
        w,
        idx: vec![0; n],
        sel: vec![0.0; n],
        rows: vec![bf16::default(); n * d],
        count: 0,
    })
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    let shapes: &[(usize, usize)] = if quick {
        &[(4096, 768)]
    } else {
        &[(4096, 4096), (4096, 768)]
    };
    for &(r, c) in shapes {
        for op in [Op::Gather, Op::Scatter, Op::CompactInPlace] {
            v.push(rows::<f32>(op, r, c));
            v.push(rows::<bf16>(op, r, c));
        }
        v.push(scatter_add::<f32>(r, c));
        v.push(scatter_add::<bf16>(r, c));
    }
    // Small rows: position ids and 16-element rows.
    for op in [Op::Gather, Op::Scatter, Op::CompactInPlace] {
        v.push(rows::<i32>(op, 4096, 1));
        v.push(rows::<f32>(op, 4096, 16));
    }
    for &(r, c) in shapes {
        v.push(route(r, c, false));
        v.push(route(r, c, true));
    }
    let (t, h, d) = if quick {
        (1024, 8, 128)
    } else {
        (4096, 8, 128)
    };
    for layout in [KvLayout::TokenMajor, KvLayout::HeadMajor] {
        for per_head in [false, true] {
            v.push(kv(layout, per_head, t, h, d));
        }
    }
    v
}
