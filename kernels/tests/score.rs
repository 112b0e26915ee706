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
    /// past `d`, up to a multiple of 16, count as `0 * 0`); a non-finite result
    /// recomputed in f64 (exact products summed in order, then the bias, rounded once).
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
        if !s.is_finite() {
            let mut t = 0f64;
            for j in 0..self.d {
                t += self.h[i * self.hs + j].to_f32() as f64
                    * self.w[e * self.ws + j].to_f32() as f64;
            }
            if let Some(b) = &self.bias {
                t += b[e] as f64;
            }
            s = t as f32;
        }
        if s.is_nan() {
            return f32::NAN;
        }
        match self.act {
            Activation::None => s,
            Activation::Sigmoid => sigmoid_f32(s),
        }
    }

    /// The exact logit as an f64 pair `(hi, lo)` (every product is exact in f64, the
    /// sum is compensated: Neumaier's two-sum, exact to far below the bound for the
    /// sums checked here), and the documented error bound of the f32 logit.
    fn reference(&self, i: usize, e: usize) -> ((f64, f64), f64) {
        let mut terms: Vec<f64> = (0..self.d)
            .map(|j| {
                self.h[i * self.hs + j].to_f32() as f64 * self.w[e * self.ws + j].to_f32() as f64
            })
            .collect();
        if let Some(b) = &self.bias {
            terms.push(b[e] as f64);
        }
        let (mut s, mut c) = (0f64, 0f64);
        for &t in &terms {
            let u = s + t;
            c += if s.abs() >= t.abs() {
                (s - u) + t
            } else {
                (t - u) + s
            };
            s = u;
        }
        let mag: f64 = terms.iter().map(|t| t.abs()).sum();
        ((s, c), documented_bound(self.d, mag))
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
                let ((s, lo), bound) = case.reference(i, c);
                let got = out[i * case.os + c] as f64;
                assert!(
                    ((got - s) - lo).abs() <= bound,
                    "d={d}: {got} vs {s}, bound {bound}"
                );
            }
        }
    }
}

/// The documented bound of the logit: `(ceil(d/16) + 5) * 2^-24 * (sum |h_j w_j| + |b|)
/// + (d + 16) * 2^-149`.
fn documented_bound(d: usize, mag: f64) -> f64 {
    (d.div_ceil(16) + 5) as f64 * 2f64.powi(-24) * mag + (d + 16) as f64 * 2f64.powi(-149)
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

/// Runs `case` (activation none) on every tier: the oracle's bits, then against the exact
/// logit: a finite result within [`documented_bound`], an infinite one only for an exact
/// logit beyond the f32 range (same sign). Returns the scalar tier's output.
fn check_against_exact<T: Elem>(case: &Case<T>) -> Vec<f32> {
    assert_eq!(case.act, Activation::None);
    let mut first = None;
    for k in runnable(T::registry()) {
        let out = case.run(k.f);
        case.check(&k.id().to_string(), &out, 0, case.n);
        for i in 0..case.n {
            for c in 0..case.e {
                let ((s, lo), bound) = case.reference(i, c);
                let got = out[i * case.os + c];
                if got.is_finite() {
                    let err = ((got as f64 - s) - lo).abs();
                    assert!(
                        err <= bound,
                        "{} d={}: got {got:e}, exact {s:e} + {lo:e}: error {err:e} > bound {bound:e} \
                         ({:.2} x 2^-149)",
                        k.id(),
                        case.d,
                        err / 2f64.powi(-149)
                    );
                } else {
                    assert!(
                        got.is_infinite()
                            && (s + lo).abs() > f32::MAX as f64
                            && (got > 0.0) == (s > 0.0),
                        "{} d={}: got {got:e} for the exact logit {s:e}",
                        k.id(),
                        case.d
                    );
                }
            }
        }
        first.get_or_insert(out);
    }
    first.unwrap()
}

/// A case of `n` tokens, one router, no bias, activation none, from explicit data.
fn explicit<T: Elem>(n: usize, d: usize, h: &[f32], w: &[f32]) -> Case<T> {
    Case {
        n,
        d,
        e: 1,
        hs: d,
        ws: d,
        os: 1,
        h: h.iter().map(|&x| T::from_f32(x)).collect(),
        w: w.iter().map(|&x| T::from_f32(x)).collect(),
        bias: None,
        act: Activation::None,
    }
}

/// `m * 2^e` with a random sign and `m` in [1, 2).
fn signed_pow2(r: &mut Rng, e: i32) -> f32 {
    let x = r.uniform(1.0, 2.0) * 2f32.powi(e);
    if r.below(2) == 0 {
        x
    } else {
        -x
    }
}

#[test]
fn subnormal_products_within_the_absolute_term() {
    // The reproduction: one product below the normal range.
    let case: Case<f32> = explicit(1, 1, &[1e-20], &[3e-21]);
    let out = check_against_exact(&case);
    assert!(out[0] != 0.0 && out[0].abs() < f32::MIN_POSITIVE);
    let mut rng = Rng::new(60);
    for d in [1, 2, 3, 15, 16, 17, 31, 100, 333, 1000] {
        for round in 0..6 {
            // Products from 2^-160 to 2^-110: many subnormal, the rest just above; lanes
            // and tree sums cancel (random signs) and cross the normal boundary.
            let mut case: Case<f32> = Case::random(&mut rng, 5, d, 3, round % 3, &mut |r| {
                let e = -80 + r.below(25) as i32;
                signed_pow2(r, e)
            });
            case.act = Activation::None;
            if round % 2 == 1 {
                case.bias = Some((0..3).map(|_| signed_pow2(&mut rng, -140)).collect());
            }
            check_against_exact(&case);
        }
    }
}

#[test]
fn cancellation_near_the_overflow_threshold_stays_finite() {
    // The reproduction: three products of 2.25e38, alternating signs; the lanes'
    // tree adds the two positive ones first (4.5e38 overflows f32).
    let mut case: Case<f32> = explicit(1, 3, &[1.5e38; 3], &[1.5, -1.5, 1.5]);
    let out = check_against_exact(&case);
    assert_eq!(out[0], 2.25e38);
    case.act = Activation::Sigmoid;
    for k in runnable(SCORE_F32) {
        assert_eq!(case.run(k.f)[0], 1.0, "{}", k.id());
    }
    let mut rng = Rng::new(61);
    for d in [2, 3, 9, 16, 17, 18, 40, 100] {
        for _ in 0..20 {
            // Products near 2^127 with random signs, kept only when the exact sum is
            // representable with room for the bound: partial sums overflow in f32 often.
            let h: Vec<f32> = (0..d).map(|_| signed_pow2(&mut rng, 126)).collect();
            let w: Vec<f32> = (0..d).map(|_| rng.uniform(0.5, 1.5)).collect();
            let case: Case<f32> = explicit(1, d, &h, &w);
            let ((s, _), bound) = case.reference(0, 0);
            if s.abs() + bound < f32::MAX as f64 {
                let out = check_against_exact(&case);
                assert!(out[0].is_finite(), "d={d}: {} for {s:e}", out[0]);
            }
        }
    }
    // bf16 has the f32 exponent range: the same overflow and the same rescue.
    let case: Case<bf16> = explicit(1, 3, &[1.5e38; 3], &[1.5, -1.5, 1.5]);
    let out = check_against_exact(&case);
    assert!(out[0].is_finite());
}

#[test]
fn sums_crossing_flt_max() {
    let max = f32::MAX;
    let ulp_top = 2f32.powi(104); // the spacing of f32 just below 2^128
    let cases: &[(&[f32], &[f32], bool)] = &[
        // Exact sums beyond the range: +-inf.
        (&[3e38, 3e38], &[1.0, 1.0], false),
        (&[-3e38, -3e38], &[1.0, 1.0], false),
        (&[max, max, -max], &[1.0, 1.0, 0.25], false),
        (&[max, 1e38, 1e38, 1e38], &[1.0, 1.0, 1.0, 1.0], false),
        // Exactly FLT_MAX reached through partial sums that overflow: finite.
        (&[max, max, -max], &[1.0, 1.0, 1.0], true),
        (&[3e38, 3e38, -3e38], &[1.0, 1.0, 1.0], true),
        // Just below FLT_MAX: FLT_MAX - ulp + a quarter ulp rounds to FLT_MAX - ulp.
        (&[max, -ulp_top, ulp_top], &[1.0, 1.0, 0.25], true),
    ];
    for &(h, w, finite) in cases {
        let case: Case<f32> = explicit(1, h.len(), h, w);
        let out = check_against_exact(&case);
        assert_eq!(out[0].is_finite(), finite, "{h:?} . {w:?} = {}", out[0]);
    }
    // A bias that carries a finite dot product over the edge, and one that brings an
    // overflowing tree back.
    for (b, finite) in [(3e38f32, false), (-3e38, true)] {
        let mut case: Case<f32> = explicit(1, 2, &[3e38, 1.0], &[1.0, 0.5]);
        case.bias = Some(vec![b]);
        let mut case2: Case<f32> = explicit(1, 3, &[3e38, 3e38, 1.0], &[1.0, 1.0, 1.0]);
        case2.bias = Some(vec![b]);
        let out = check_against_exact(&case);
        assert_eq!(out[0].is_finite(), finite);
        let out2 = check_against_exact(&case2);
        assert_eq!(out2[0].is_finite(), b < 0.0);
    }
}
