//! Every scoring variant: bit-exact against a naive canonical-order oracle (which uses
//! std's fused multiply-add), within the documented bound of an f64 reference, equal
//! across tiers, independent of batch size and row position, over awkward shapes,
//! strides and special values.

mod common;
use common::*;
use half::{bf16, f16};
use proptest::prelude::{any, prop_oneof, proptest, Just, ProptestConfig};
use tokenroute_kernels::numerics::fma_f32;
use tokenroute_kernels::score::{Activation, ScoreArgs, ScoreFn, SCORE_BF16, SCORE_F16, SCORE_F32};
use tokenroute_kernels::sigmoid::sigmoid_f32;
use tokenroute_kernels::KernelInfo;

trait Elem: Copy + Default + std::fmt::Debug + 'static {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn registry() -> &'static [KernelInfo<ScoreFn<Self>>];
}
impl Elem for f32 {
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn registry() -> &'static [KernelInfo<ScoreFn<f32>>] {
        SCORE_F32
    }
}
impl Elem for f16 {
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn registry() -> &'static [KernelInfo<ScoreFn<f16>>] {
        SCORE_F16
    }
}
impl Elem for bf16 {
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn registry() -> &'static [KernelInfo<ScoreFn<bf16>>] {
        SCORE_BF16
    }
}

#[derive(Clone, Debug)]
struct Case<T> {
    n: usize,
    d: usize,
    e: usize,
    hs: usize,
    ws: usize,
    os: usize,
    h: Vec<T>,
    w: Vec<T>,
    bias: Option<Vec<f32>>,
    act: Activation,
}

const CANARY: u32 = 0x7fa5_a5a5;

impl<T: Elem> Case<T> {
    fn random(
        rng: &mut Rng,
        n: usize,
        d: usize,
        e: usize,
        pad: usize,
        gen: &mut dyn FnMut(&mut Rng) -> f32,
    ) -> Case<T> {
        let (hs, ws, os) = (d + pad, d + pad / 2, e + pad % 3);
        let h = (0..n * hs).map(|_| T::from_f32(gen(rng))).collect();
        let w = (0..e * ws).map(|_| T::from_f32(gen(rng))).collect();
        let bias = if rng.below(2) == 0 {
            Some((0..e).map(|_| rng.uniform(-2.0, 2.0)).collect())
        } else {
            None
        };
        let act = if rng.below(2) == 0 {
            Activation::Sigmoid
        } else {
            Activation::None
        };
        Case {
            n,
            d,
            e,
            hs,
            ws,
            os,
            h,
            w,
            bias,
            act,
        }
    }

    /// Runs rows `r0..r1` of the case, writing into a fresh canary-filled output.
    fn run_rows(&self, f: ScoreFn<T>, r0: usize, r1: usize) -> Vec<f32> {
        let mut out = vec![f32::from_bits(CANARY); self.n * self.os + 8];
        let args = ScoreArgs {
            h: self.h[r0 * self.hs..].as_ptr(),
            n: r1 - r0,
            d: self.d,
            h_stride: self.hs,
            w: self.w.as_ptr(),
            e: self.e,
            w_stride: self.ws,
            bias: self.bias.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
            act: self.act,
            out: out[r0 * self.os..].as_mut_ptr(),
            out_stride: self.os,
        };
        // SAFETY: the case's buffers satisfy the contract for rows r0..r1.
        unsafe { f(&args) };
        out
    }

    fn run(&self, f: ScoreFn<T>) -> Vec<f32> {
        self.run_rows(f, 0, self.n)
    }

    /// The canonical order spelled out naively, with std's fused multiply-add (elements
    /// past `d`, up to a multiple of 16, count as `0 * 0`).
    fn oracle(&self, i: usize, e: usize) -> f32 {
        let mut lanes = [0f32; 16];
        for j in 0..self.d.div_ceil(16) * 16 {
            let (x, y) = if j < self.d {
                (
                    self.h[i * self.hs + j].to_f32(),
                    self.w[e * self.ws + j].to_f32(),
                )
            } else {
                (0.0, 0.0)
            };
            lanes[j % 16] = x.mul_add(y, lanes[j % 16]);
        }
        let mut width = 8;
        while width >= 1 {
            for l in 0..width {
                lanes[l] += lanes[l + width];
            }
            width /= 2;
        }
        let mut s = lanes[0];
        if let Some(b) = &self.bias {
            s += b[e];
        }
        if s.is_nan() {
            return f32::NAN;
        }
        match self.act {
            Activation::None => s,
            Activation::Sigmoid => sigmoid_f32(s),
        }
    }

    /// The f64 logit and the documented error bound of the f32 logit.
    fn reference(&self, i: usize, e: usize) -> (f64, f64) {
        let mut s = 0f64;
        let mut mag = 0f64;
        for j in 0..self.d {
            let p =
                self.h[i * self.hs + j].to_f32() as f64 * self.w[e * self.ws + j].to_f32() as f64;
            s += p;
            mag += p.abs();
        }
        if let Some(b) = &self.bias {
            s += b[e] as f64;
            mag += (b[e] as f64).abs();
        }
        let bound = ((self.d.div_ceil(16) + 5) as f64) * f32::EPSILON as f64 / 2.0 * mag;
        (s, bound)
    }

    fn check(&self, id: &str, out: &[f32], r0: usize, r1: usize) {
        for i in 0..self.n {
            for c in 0..self.os {
                let v = out[i * self.os + c];
                if i < r0 || i >= r1 || c >= self.e {
                    assert_eq!(
                        v.to_bits(),
                        CANARY,
                        "{id}: wrote outside the output at row {i} col {c}"
                    );
                    continue;
                }
                let want = self.oracle(i, c);
                assert!(
                    v.to_bits() == want.to_bits(),
                    "{id}: n={} d={} e={} row {i} router {c}: {v:e} ({:#x}) vs oracle {want:e} ({:#x})",
                    self.n,
                    self.d,
                    self.e,
                    v.to_bits(),
                    want.to_bits()
                );
            }
        }
        assert!(
            out[self.n * self.os..]
                .iter()
                .all(|v| v.to_bits() == CANARY),
            "{id}: wrote past the end"
        );
    }
}

fn check_case<T: Elem>(case: &Case<T>) {
    for k in runnable(T::registry()) {
        let out = case.run(k.f);
        case.check(&k.id().to_string(), &out, 0, case.n);
    }
}

fn shapes<T: Elem>(seed: u64) {
    let mut rng = Rng::new(seed);
    for d in (0..=67).chain([127, 128, 129, 255, 256, 257, 768, 1000]) {
        for (n, e) in [
            (0, 1),
            (1, 1),
            (3, 1),
            (4, 1),
            (5, 1),
            (9, 1),
            (1, 2),
            (5, 3),
            (4, 4),
            (7, 5),
            (6, 8),
            (3, 9),
        ] {
            let case: Case<T> = Case::random(&mut rng, n, d, e, (d + n) % 5, &mut |r| {
                r.uniform(-1.0, 1.0)
            });
            check_case(&case);
        }
    }
}

#[test]
fn f32_every_shape_matches_oracle_bits_on_every_tier() {
    shapes::<f32>(10);
}
#[test]
fn f16_every_shape_matches_oracle_bits_on_every_tier() {
    shapes::<f16>(11);
}
#[test]
fn bf16_every_shape_matches_oracle_bits_on_every_tier() {
    shapes::<bf16>(12);
}

fn within_bound<T: Elem>(seed: u64) {
    let mut rng = Rng::new(seed);
    for &(n, d, e) in &[(16, 768, 1), (8, 4096, 8), (5, 333, 3), (2, 10000, 2)] {
        let mut case: Case<T> = Case::random(&mut rng, n, d, e, 3, &mut |r| r.uniform(-3.0, 3.0));
        case.act = Activation::None;
        let out = case.run(runnable(T::registry())[0].f);
        for i in 0..n {
            for c in 0..e {
                let (s, bound) = case.reference(i, c);
                let got = out[i * case.os + c] as f64;
                assert!(
                    (got - s).abs() <= bound,
                    "d={d}: {got} vs {s}, bound {bound}"
                );
            }
        }
    }
}

#[test]
fn logits_within_documented_bound_of_f64_reference() {
    within_bound::<f32>(20);
    within_bound::<f16>(21);
    within_bound::<bf16>(22);
}

#[test]
fn special_values_match_oracle() {
    let mut rng = Rng::new(30);
    for d in [1, 15, 16, 17, 40] {
        for _ in 0..20 {
            let case: Case<f32> = Case::random(&mut rng, 6, d, 3, 2, &mut |r| {
                if r.below(4) == 0 {
                    SPECIAL_F32[r.below(SPECIAL_F32.len())]
                } else {
                    r.uniform(-2.0, 2.0)
                }
            });
            check_case(&case);
        }
    }
}

#[test]
fn saturating_logits_and_denormal_inputs() {
    let mut rng = Rng::new(31);
    let case: Case<f32> = Case::random(&mut rng, 9, 48, 2, 0, &mut |r| r.uniform(-1e-39, 1e-39));
    check_case(&case);
    let mut case: Case<f32> =
        Case::random(&mut rng, 9, 48, 2, 0, &mut |r| r.uniform(-100.0, 100.0));
    case.act = Activation::Sigmoid;
    check_case(&case);
}

/// Products that underflow to -0 in every lane: the lanes past `d` add `0 * 0` (and
/// `-0 + +0 = +0`), so the dot is +0 on every tier. (The scalar tier once skipped those
/// lanes and returned -0 where the vector tiers returned +0.)
#[test]
fn underflowing_dots_have_the_same_zero_on_every_tier() {
    let mut case: Case<f32> = Case::random(&mut Rng::new(60), 3, 17, 2, 1, &mut |_| 1e-30);
    for x in case.h.iter_mut() {
        *x = -1e-30;
    }
    case.bias = None;
    case.act = Activation::None;
    check_case(&case);
    for k in runnable(SCORE_F32) {
        let out = case.run(k.f);
        assert_eq!(out[0].to_bits(), 0, "{}: the dot is not +0", k.id());
    }
}

#[test]
fn sub_blocks_give_the_rows_of_one_call() {
    let mut rng = Rng::new(40);
    let case: Case<bf16> = Case::random(&mut rng, 37, 300, 3, 4, &mut |r| r.uniform(-1.0, 1.0));
    for k in runnable(SCORE_BF16) {
        let whole = case.run(k.f);
        for (r0, r1) in [(0, 1), (1, 5), (5, 6), (6, 37), (13, 29), (36, 37)] {
            let part = case.run_rows(k.f, r0, r1);
            case.check(&k.id().to_string(), &part, r0, r1);
            for i in r0..r1 {
                for c in 0..case.e {
                    assert_eq!(
                        part[i * case.os + c].to_bits(),
                        whole[i * case.os + c].to_bits()
                    );
                }
            }
        }
    }
}

#[test]
fn fma_f32_is_correctly_rounded() {
    let mut rng = Rng::new(50);
    let check = |a: f32, b: f32, c: f32| {
        let want = a.mul_add(b, c);
        let got = fma_f32(a, b, c);
        assert!(
            same_f32(got, want),
            "fma({a:e}, {b:e}, {c:e}) = {got:e}, want {want:e}"
        );
    };
    for &a in SPECIAL_F32 {
        for &b in SPECIAL_F32 {
            for &c in SPECIAL_F32 {
                check(a, b, c);
            }
        }
    }
    for _ in 0..2_000_000 {
        check(
            f32::from_bits(rng.next_u32()),
            f32::from_bits(rng.next_u32()),
            f32::from_bits(rng.next_u32()),
        );
        // Near-cancelling and near-halfway cases: c close to -a*b.
        let a = rng.uniform(-4.0, 4.0);
        let b = rng.uniform(-4.0, 4.0);
        let c = -(a * b) * (1.0 + rng.uniform(-1e-6, 1e-6));
        check(a, b, c);
        let c = f32::from_bits((a * b).to_bits() ^ (rng.next_u32() & 0xff));
        check(a, b, c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn proptest_f32_cases(n in 0usize..12, d in 0usize..200, e in 1usize..10, pad in 0usize..5, seed in any::<u64>(), scale in prop_oneof![Just(1e-3f32), Just(1.0f32), Just(1e3f32)]) {
        let mut rng = Rng::new(seed);
        let case: Case<f32> = Case::random(&mut rng, n, d, e, pad, &mut |r| r.uniform(-scale, scale));
        check_case(&case);
    }

    #[test]
    fn proptest_half_cases(n in 0usize..12, d in 0usize..200, e in 1usize..10, pad in 0usize..5, seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let case: Case<f16> = Case::random(&mut rng, n, d, e, pad, &mut |r| r.uniform(-8.0, 8.0));
        check_case(&case);
        let case: Case<bf16> = Case::random(&mut rng, n, d, e, pad, &mut |r| r.uniform(-8.0, 8.0));
        check_case(&case);
    }
}
