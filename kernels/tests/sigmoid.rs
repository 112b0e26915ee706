//! Every sigmoid variant against an f64 oracle and against each other, over awkward
//! lengths, offsets, in place, and special values.

mod common;
use common::*;
use tokenroute_kernels::sigmoid::{SigmoidF32, SIGMOID_F32};

/// f64 oracle, rounded once to f32.
fn oracle(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x as f64;
    (1.0 / (1.0 + (-x).exp())) as f32
}

fn run(f: SigmoidF32, x: &[f32]) -> Vec<f32> {
    let mut y = vec![f32::from_bits(0xdead_beef); x.len()];
    // SAFETY: both slices hold x.len() elements.
    unsafe { f(x.as_ptr(), y.as_mut_ptr(), x.len()) };
    y
}

fn check_against_oracle(id: &str, x: &[f32], y: &[f32]) {
    for (i, (&xi, &yi)) in x.iter().zip(y).enumerate() {
        let want = oracle(xi);
        assert!(
            ulp_diff(yi, want) <= 2,
            "{id}: x[{i}] = {xi:e} ({:#010x}): got {yi:e}, oracle {want:e}",
            xi.to_bits()
        );
    }
}

#[test]
fn specials() {
    for k in runnable(SIGMOID_F32) {
        let y = run(k.f, SPECIAL_F32);
        check_against_oracle(&k.id().to_string(), SPECIAL_F32, &y);
        let y = run(
            k.f,
            &[
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                f32::NAN,
                -f32::NAN,
            ],
        );
        assert_eq!(y[0], 1.0);
        assert_eq!(y[1].to_bits(), 0);
        assert_eq!(y[2], 0.5);
        assert_eq!(y[3], 0.5);
        assert!(y[4].is_nan() && y[5].is_nan());
        // Signalling NaNs and NaNs of either sign come back as the canonical quiet NaN
        // (every pattern: tests/nan_canonical.rs).
        let y = run(
            k.f,
            &[
                f32::from_bits(0x7f80_0001),
                f32::from_bits(0xff80_0001),
                f32::from_bits(0xffc0_0000),
            ],
        );
        assert!(
            y.iter().all(|v| v.to_bits() == 0x7fc0_0000),
            "{}: {y:?}",
            k.id()
        );
    }
}

#[test]
fn every_length_and_offset_matches_scalar_bits() {
    let kernels = runnable(SIGMOID_F32);
    let mut rng = Rng::new(1);
    let buf: Vec<f32> = (0..200).map(|_| rng.uniform(-40.0, 40.0)).collect();
    for off in 0..16 {
        for n in 0..=(4 * 16 + 3) {
            let x = &buf[off..off + n];
            let want = run(kernels[0].f, x);
            check_against_oracle("scalar", x, &want);
            for k in &kernels[1..] {
                let got = run(k.f, x);
                for i in 0..n {
                    assert!(
                        same_f32(got[i], want[i]),
                        "{} n={n} off={off} i={i}",
                        k.id()
                    );
                }
            }
        }
    }
}

#[test]
fn writes_nothing_outside_the_output() {
    for k in runnable(SIGMOID_F32) {
        for n in 0..40 {
            let x: Vec<f32> = (0..n).map(|i| i as f32 - 20.0).collect();
            let canary = f32::from_bits(0x7f80_dead);
            let mut y = vec![canary; n + 32];
            // SAFETY: y has room for n elements after the 16-element front guard.
            unsafe { (k.f)(x.as_ptr(), y.as_mut_ptr().add(16), n) };
            assert!(
                y[..16]
                    .iter()
                    .chain(&y[16 + n..])
                    .all(|v| v.to_bits() == canary.to_bits()),
                "{} n={n}",
                k.id()
            );
        }
    }
}

#[test]
fn in_place_equals_out_of_place() {
    let mut rng = Rng::new(2);
    for k in runnable(SIGMOID_F32) {
        for n in [0usize, 1, 7, 15, 16, 17, 33, 1000] {
            let x: Vec<f32> = (0..n).map(|_| rng.uniform(-30.0, 30.0)).collect();
            let want = run(k.f, &x);
            let mut y = x.clone();
            // SAFETY: in place is allowed by the contract.
            unsafe { (k.f)(y.as_ptr(), y.as_mut_ptr(), n) };
            assert_eq!(
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{}",
                k.id()
            );
        }
    }
}

#[test]
fn random_bit_patterns_agree_across_tiers_and_with_oracle() {
    let kernels = runnable(SIGMOID_F32);
    let mut rng = Rng::new(3);
    let x: Vec<f32> = (0..1 << 18)
        .map(|_| f32::from_bits(rng.next_u32()))
        .collect();
    let want = run(kernels[0].f, &x);
    check_against_oracle("scalar", &x, &want);
    for k in &kernels[1..] {
        let got = run(k.f, &x);
        for i in 0..x.len() {
            assert!(
                got[i].to_bits() == want[i].to_bits(),
                "{}: x = {:#010x}",
                k.id(),
                x[i].to_bits()
            );
        }
    }
}

#[test]
fn subnormal_outputs_are_rounded_not_flushed() {
    for k in runnable(SIGMOID_F32) {
        let x: Vec<f32> = (0..400).map(|i| -87.0 - i as f32 * 0.05).collect();
        let y = run(k.f, &x);
        check_against_oracle(&k.id().to_string(), &x, &y);
        assert!(y.iter().any(|v| v.is_subnormal()), "{}", k.id());
    }
}
