//! The fused route call against the three separate calls it replaces (score with one
//! router, top-k or threshold selection on one row, gather), on every ISA level: the
//! indices, their scores and the rows must be identical, and nothing past the count may
//! be written. Bad input writes nothing.

use proptest::prelude::{any, proptest, ProptestConfig};
use tokenroute::{
    bf16, f16, Activation, Element, ErrorKind, Kernels, Matrix, MatrixMut, Order, RouteOut,
    RouteSelect, RowSpec, Tau, ThresholdOut, TopK, TopkOut,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn levels() -> Vec<&'static Kernels> {
    let v: Vec<_> = Kernels::all_supported().collect();
    if let Ok(req) = std::env::var("TOKENROUTE_REQUIRE_ISAS") {
        for name in req.split(',').filter(|s| !s.is_empty()) {
            assert!(
                v.iter().any(|k| k.isa().name() == name.trim()),
                "required level {name} unavailable"
            );
        }
    }
    v
}

trait E: Element + PartialEq + std::fmt::Debug {
    fn of(x: f32) -> Self;
    fn bits(self) -> u32;
}
impl E for f32 {
    fn of(x: f32) -> f32 {
        x
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl E for f16 {
    fn of(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}
impl E for bf16 {
    fn of(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}

#[derive(Clone, Debug)]
struct Case<T> {
    n: usize,
    d: usize,
    hs: usize,
    h: Vec<T>,
    w: Vec<T>,
    bias: Option<f32>,
    act: Activation,
    keep_first: usize,
    keep_last: usize,
    mask: Option<Vec<u8>>,
}

const CANARY: u32 = 0xdead_beef;

impl<T: E> Case<T> {
    fn random(rng: &mut Rng, n: usize, d: usize, special: bool) -> Case<T> {
        let hs = d + rng.below(3);
        let mut h: Vec<T> = (0..n * hs).map(|_| T::of(rng.uniform() * 2.0)).collect();
        if special && n > 2 {
            // Ties (identical rows) and NaN scores.
            let (a, b) = (rng.below(n), rng.below(n));
            for c in 0..d {
                h[b * hs + c] = h[a * hs + c];
            }
            let z = rng.below(n);
            h[z * hs] = T::of(f32::NAN);
        }
        let w = (0..d).map(|_| T::of(rng.uniform() * 0.5)).collect();
        Case {
            n,
            d,
            hs,
            h,
            w,
            bias: (rng.below(2) == 0).then(|| rng.uniform()),
            act: if rng.below(3) == 0 {
                Activation::None
            } else {
                Activation::Sigmoid
            },
            keep_first: if rng.below(3) == 0 { rng.below(4) } else { 0 },
            keep_last: if rng.below(3) == 0 { rng.below(4) } else { 0 },
            mask: (rng.below(3) == 0).then(|| (0..n).map(|_| (rng.below(9) == 0) as u8).collect()),
        }
    }

    fn spec(&self) -> RowSpec<'_> {
        RowSpec {
            valid_lens: None,
            keep_first: self.keep_first,
            keep_last: self.keep_last,
            keep_mask: self
                .mask
                .as_ref()
                .map(|m| Matrix::new(m, 1, self.n, self.n).unwrap()),
        }
    }

    /// The three separate calls: (indices, scores bits, rows bits).
    fn separate(
        &self,
        k: &'static Kernels,
        how: RouteSelect<'_>,
    ) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>), ErrorKind> {
        let (n, d) = (self.n, self.d);
        let mut s = vec![0f32; n];
        let bias = self.bias.map(|b| vec![b]);
        k.score(
            Matrix::new(&self.h, n, d, self.hs).unwrap(),
            Matrix::new(&self.w, 1, d, d).unwrap(),
            bias.as_deref(),
            self.act,
            MatrixMut::new(&mut s, n, 1, 1).unwrap(),
        )
        .map_err(|e| e.kind)?;
        let mut idx = vec![0u32; n];
        let mut sel = vec![0f32; n];
        let count = match how {
            RouteSelect::TopK(kk, order) => {
                let kr = match kk {
                    TopK::Fixed(x) => x,
                    TopK::Capacity(c) => (c * n as f64).ceil() as usize,
                    TopK::PerRow(v) => v[0],
                };
                if kr > n {
                    return Err(ErrorKind::InvalidArgument);
                }
                k.topk_f32(
                    Matrix::new(&s, 1, n, n).unwrap(),
                    kk,
                    order,
                    &self.spec(),
                    TopkOut {
                        indices: MatrixMut::new(&mut idx[..kr], 1, kr, kr).unwrap(),
                        scores: Some(MatrixMut::new(&mut sel[..kr], 1, kr, kr).unwrap()),
                        counts: None,
                    },
                    None,
                )
                .map_err(|e| e.kind)?;
                kr
            }
            RouteSelect::Threshold(tau) => {
                let mut c = [0usize];
                k.threshold_f32(
                    Matrix::new(&s, 1, n, n).unwrap(),
                    Tau::Fixed(tau),
                    &self.spec(),
                    ThresholdOut {
                        indices: Some(MatrixMut::new(&mut idx, 1, n, n).unwrap()),
                        mask: None,
                        counts: Some(&mut c),
                    },
                )
                .map_err(|e| e.kind)?;
                for j in 0..c[0] {
                    sel[j] = s[idx[j] as usize];
                }
                c[0]
            }
        };
        let mut rows = vec![T::default(); count * d];
        k.gather_rows(
            Matrix::new(&self.h, n, d, self.hs).unwrap(),
            &idx[..count],
            MatrixMut::new(&mut rows, count, d, d).unwrap(),
        )
        .map_err(|e| e.kind)?;
        Ok((
            idx[..count].to_vec(),
            sel[..count].iter().map(|x| x.to_bits()).collect(),
            rows.iter().map(|x| x.bits()).collect(),
        ))
    }

    /// The fused call into canary-filled outputs with room for `cap` tokens; checks
    /// that nothing past the count is written and returns what the separate calls do.
    /// Without `with_idx` the call gets no index output (`indices: None`) and the
    /// returned indices are empty.
    fn fused(
        &self,
        k: &'static Kernels,
        how: RouteSelect<'_>,
        cap: usize,
        with_ws: bool,
        with_idx: bool,
    ) -> Result<(Vec<u32>, Vec<u32>, Vec<u32>), ErrorKind> {
        let (n, d) = (self.n, self.d);
        let rs = d + 1;
        let mut idx = vec![CANARY; cap];
        let mut sel = vec![f32::from_bits(CANARY); cap];
        let canary_t = T::of(f32::from_bits(0x7f81_2345));
        let mut rows = vec![canary_t; cap * rs];
        let mut ws = vec![0u64; tokenroute::route_workspace_len(n)];
        let r = k.route(
            Matrix::new(&self.h, n, d, self.hs).unwrap(),
            &self.w,
            self.bias,
            self.act,
            how,
            &self.spec(),
            RouteOut {
                indices: with_idx.then_some(&mut idx[..]),
                scores: Some(&mut sel),
                rows: MatrixMut::new(&mut rows, cap, d, rs).unwrap(),
            },
            with_ws.then_some(&mut ws[..]),
        );
        let c = match r {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    idx.iter().all(|&x| x == CANARY),
                    "error but indices written"
                );
                assert!(
                    sel.iter().all(|x| x.to_bits() == CANARY),
                    "error but scores written"
                );
                assert!(
                    rows.iter().all(|&x| x.bits() == canary_t.bits()),
                    "error but rows written"
                );
                return Err(e.kind);
            }
        };
        assert!(
            idx[c..].iter().all(|&x| x == CANARY),
            "indices past the count written"
        );
        assert!(
            sel[c..].iter().all(|x| x.to_bits() == CANARY),
            "scores past the count written"
        );
        for j in 0..cap {
            for col in 0..rs {
                if j >= c || col >= d {
                    assert!(
                        rows[j * rs + col].bits() == canary_t.bits(),
                        "row {j} col {col} written outside"
                    );
                }
            }
        }
        let mut out_rows = Vec::new();
        for j in 0..c {
            out_rows.extend(rows[j * rs..j * rs + d].iter().map(|x| x.bits()));
        }
        if !with_idx {
            assert!(idx.iter().all(|&x| x == CANARY), "indices written");
        }
        Ok((
            if with_idx {
                idx[..c].to_vec()
            } else {
                Vec::new()
            },
            sel[..c].iter().map(|x| x.to_bits()).collect(),
            out_rows,
        ))
    }

    fn check(&self, how: RouteSelect<'_>, seed: u64) {
        for k in levels() {
            let want = self.separate(k, how);
            let cap = match (&want, how) {
                (Ok((i, _, _)), RouteSelect::TopK(..)) => i.len() + (seed as usize % 3),
                _ => self.n + (seed as usize % 3),
            };
            let got = self.fused(k, how, cap, seed % 2 == 0, true);
            assert_eq!(got, want, "{:?} n={} d={} {how:?}", k.isa(), self.n, self.d);
            // Without the index output: the same scores and rows.
            let got = self.fused(k, how, cap, seed % 4 < 2, false);
            let want = want.map(|(_, s, r)| (Vec::new(), s, r));
            assert_eq!(
                got,
                want,
                "{:?} no indices, n={} d={} {how:?}",
                k.isa(),
                self.n,
                self.d
            );
        }
    }
}

fn sweep<T: E>(seed: u64) {
    let mut rng = Rng(seed | 1);
    for &(n, d) in &[
        (0, 3),
        (1, 1),
        (5, 7),
        (37, 16),
        (300, 130),
        (1000, 7),
        (600, 64),
        (70, 2100),
    ] {
        for special in [false, true] {
            let c = Case::<T>::random(&mut rng, n, d, special);
            let forced = c.keep_first
                + c.keep_last
                + c.mask
                    .as_ref()
                    .map_or(0, |m| m.iter().filter(|&&b| b != 0).count());
            let kmin = forced.min(n);
            for how in [
                RouteSelect::TopK(TopK::Fixed(kmin.max(n / 2).min(n)), Order::Position),
                RouteSelect::TopK(TopK::Fixed(n), Order::Score),
                RouteSelect::TopK(TopK::Capacity(0.3), Order::Score),
                RouteSelect::TopK(TopK::PerRow(&[n]), Order::Position),
                RouteSelect::Threshold(0.5),
                RouteSelect::Threshold(0.0),
                RouteSelect::Threshold(f32::NAN),
                RouteSelect::Threshold(f32::NEG_INFINITY),
            ] {
                c.check(how, rng.next());
            }
        }
    }
}

#[test]
fn f32_route_equals_the_three_calls_on_every_level() {
    sweep::<f32>(1);
}
#[test]
fn f16_route_equals_the_three_calls_on_every_level() {
    sweep::<f16>(2);
}
#[test]
fn bf16_route_equals_the_three_calls_on_every_level() {
    sweep::<bf16>(3);
}

#[test]
fn bad_input_writes_nothing() {
    let mut rng = Rng(77);
    let mut c = Case::<f32>::random(&mut rng, 40, 9, false);
    c.keep_first = 5;
    c.keep_last = 0;
    c.mask = None;
    let k = Kernels::active().unwrap();
    // k > n, forced keeps > k, capacity out of range, outputs too small.
    assert_eq!(
        c.fused(
            k,
            RouteSelect::TopK(TopK::Fixed(41), Order::Position),
            50,
            true,
            true
        ),
        Err(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        c.fused(
            k,
            RouteSelect::TopK(TopK::Fixed(3), Order::Position),
            50,
            true,
            true
        ),
        Err(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        c.fused(
            k,
            RouteSelect::TopK(TopK::Capacity(1.5), Order::Position),
            50,
            false,
            true
        ),
        Err(ErrorKind::InvalidArgument)
    );
    assert_eq!(
        c.fused(
            k,
            RouteSelect::TopK(TopK::Fixed(10), Order::Position),
            9,
            true,
            true
        ),
        Err(ErrorKind::BufferTooSmall)
    );
    assert_eq!(
        c.fused(k, RouteSelect::Threshold(0.5), 39, true, false),
        Err(ErrorKind::BufferTooSmall)
    );
    assert_eq!(
        c.fused(
            k,
            RouteSelect::TopK(TopK::PerRow(&[3, 4]), Order::Position),
            50,
            true,
            true
        ),
        Err(ErrorKind::InvalidArgument)
    );
    // A wrong router length, a short workspace.
    let mut idx = vec![CANARY; 40];
    let mut rows = vec![0f32; 40 * 9];
    let r = k.route(
        Matrix::new(&c.h, 40, 9, c.hs).unwrap(),
        &c.w[..8],
        None,
        Activation::Sigmoid,
        RouteSelect::Threshold(0.5),
        &RowSpec::default(),
        RouteOut {
            indices: Some(&mut idx),
            scores: None,
            rows: MatrixMut::dense(&mut rows, 40, 9).unwrap(),
        },
        None,
    );
    assert_eq!(r.unwrap_err().kind, ErrorKind::InvalidArgument);
    let mut ws = vec![0u64; 10];
    let r = k.route(
        Matrix::new(&c.h, 40, 9, c.hs).unwrap(),
        &c.w,
        None,
        Activation::Sigmoid,
        RouteSelect::TopK(TopK::Fixed(10), Order::Position),
        &RowSpec::default(),
        RouteOut {
            indices: Some(&mut idx),
            scores: None,
            rows: MatrixMut::dense(&mut rows, 40, 9).unwrap(),
        },
        Some(&mut ws),
    );
    assert_eq!(r.unwrap_err().kind, ErrorKind::BufferTooSmall);
    assert!(idx.iter().all(|&x| x == CANARY));
    assert!(rows.iter().all(|&x| x == 0.0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn proptest_route(n in 0usize..400, d in 1usize..40, frac in 0usize..=8, tau in -1.0f32..1.5, threshold in any::<bool>(), order_score in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed | 1);
        let c = Case::<bf16>::random(&mut rng, n, d, seed % 3 == 0);
        let forced = (c.keep_first + c.keep_last + c.mask.as_ref().map_or(0, |m| m.iter().filter(|&&b| b != 0).count())).min(n);
        let how = if threshold {
            RouteSelect::Threshold(tau)
        } else {
            let order = if order_score { Order::Score } else { Order::Position };
            RouteSelect::TopK(TopK::Fixed((n * frac / 8).max(forced)), order)
        };
        c.check(how, seed);
    }
}

/// Threshold routing walks the sequence in blocks: forced keeps that span several
/// blocks, and blocks with nothing selected, must give the separate calls' result.
#[test]
fn threshold_blocks_with_forced_keeps_across_them() {
    let mut rng = Rng(91);
    for (n, d, kf, kl) in [
        (2500, 7, 1100, 1200),
        (2600, 3, 0, 1500),
        (3000, 5, 2100, 0),
        (700, 2100, 40, 17),
        (1100, 9, 1, 1),
    ] {
        let mut c = Case::<f32>::random(&mut rng, n, d, true);
        c.keep_first = kf;
        c.keep_last = kl;
        c.mask = Some((0..n).map(|i| (i % 97 == 5) as u8).collect());
        for tau in [0.9f32, 2.0, -2.0, f32::NAN] {
            for act in [Activation::Sigmoid, Activation::None] {
                c.act = act;
                c.check(RouteSelect::Threshold(tau), rng.next());
            }
        }
    }
}
