//! Every NaN that arithmetic writes is the canonical quiet NaN (f32 0x7fc00000), on
//! every tier, whatever the sign and payload of the NaN that caused it: exhaustive over
//! all 2 * (2^23 - 1) f32 NaN patterns for `sigmoid` and for the fused scoring (as h,
//! as w, as the bias, with and without the sigmoid), and over every f16 / bf16 NaN
//! pattern for the 16-bit scoring inputs. Also the Quest bound fed NaN queries.

mod common;
use common::*;
use half::{bf16, f16};
use tokenroute_kernels::attend::{BoundArgs, BOUND_F32};
use tokenroute_kernels::score::{Activation, ScoreArgs, SCORE_BF16, SCORE_F16, SCORE_F32};
use tokenroute_kernels::sigmoid::SIGMOID_F32;

const CANON: u32 = 0x7fc0_0000;

/// Every f32 NaN bit pattern: both signs, every non-zero payload (quiet and signalling).
fn all_f32_nans() -> Vec<f32> {
    let mut v = Vec::with_capacity(2 << 23);
    for sign in [0u32, 0x8000_0000] {
        for payload in 1..1u32 << 23 {
            v.push(f32::from_bits(sign | 0x7f80_0000 | payload));
        }
    }
    v
}

/// Every NaN pattern of a 16-bit float with `mant` mantissa bits.
fn all_16bit_nans(mant: u32) -> Vec<u16> {
    let exp = ((1u32 << (15 - mant)) - 1) << mant;
    let mut v = Vec::new();
    for sign in [0u32, 0x8000] {
        for payload in 1..1u32 << mant {
            v.push((sign | exp | payload) as u16);
        }
    }
    v
}

/// The first pattern in `y` that is not the canonical NaN, as (index, bits).
fn first_not_canonical(y: &[f32]) -> Option<(usize, u32)> {
    y.iter()
        .position(|v| v.to_bits() != CANON)
        .map(|i| (i, y[i].to_bits()))
}

#[test]
fn sigmoid_of_every_nan_is_the_canonical_nan() {
    let x = all_f32_nans();
    for k in runnable(SIGMOID_F32) {
        let mut y = vec![0f32; x.len()];
        // SAFETY: both buffers hold x.len() floats.
        unsafe { (k.f)(x.as_ptr(), y.as_mut_ptr(), x.len()) };
        if let Some((i, bits)) = first_not_canonical(&y) {
            panic!(
                "{}: sigmoid({:#010x}) = {bits:#010x}",
                k.id(),
                x[i].to_bits()
            );
        }
        // In place too (a sample of the patterns, every tail length).
        let mut z: Vec<f32> = x.iter().copied().step_by(61).collect();
        // SAFETY: in place is allowed.
        unsafe { (k.f)(z.as_ptr(), z.as_mut_ptr(), z.len()) };
        assert!(first_not_canonical(&z).is_none(), "{} in place", k.id());
    }
}

/// Scores of `n` one-element rows `h[i]` against one router `w` with `bias`.
///
/// # Safety
/// `T` matches the kernel's element type.
unsafe fn score1<T: Copy>(
    f: unsafe fn(&ScoreArgs<T>),
    h: &[T],
    hs: usize,
    w: &[T],
    bias: Option<f32>,
    act: Activation,
) -> Vec<f32> {
    let n = h.len() / hs;
    let mut out = vec![0f32; n];
    let b = bias.map(|b| [b]);
    let a = ScoreArgs {
        h: h.as_ptr(),
        n,
        d: w.len(),
        h_stride: hs,
        w: w.as_ptr(),
        e: 1,
        w_stride: w.len(),
        bias: b.as_ref().map_or(std::ptr::null(), |b| b.as_ptr()),
        act,
        out: out.as_mut_ptr(),
        out_stride: 1,
    };
    // SAFETY: n rows of hs >= d elements, one router of d, n outputs.
    unsafe { f(&a) };
    out
}

#[test]
fn f32_score_of_every_nan_is_the_canonical_nan() {
    let nans = all_f32_nans();
    // Each NaN as h[0] of a 2-element row (with a finite partner), against a finite w.
    let mut h = Vec::with_capacity(nans.len() * 2);
    for &x in &nans {
        h.extend([x, 1.5]);
    }
    for k in runnable(SCORE_F32) {
        // The raw logit without a bias, and the sigmoid of logit + bias (two full passes:
        // this test also runs under emulation).
        for (act, bias) in [(Activation::None, None), (Activation::Sigmoid, Some(0.25))] {
            // SAFETY: f32 kernels on f32 data.
            let y = unsafe { score1(k.f, &h, 2, &[2.0, -3.0], bias, act) };
            if let Some((i, bits)) = first_not_canonical(&y) {
                panic!(
                    "{} {act:?} bias {bias:?}: h = {:#010x} gives {bits:#010x}",
                    k.id(),
                    nans[i].to_bits()
                );
            }
        }
        // Each NaN as the bias, and as w (one call per pattern would be slow: sample).
        let h = [1.0f32, -2.0];
        for (i, &b) in nans.iter().enumerate().step_by(4099) {
            for act in [Activation::None, Activation::Sigmoid] {
                // SAFETY: f32 kernels on f32 data.
                let y = unsafe { score1(k.f, &h, 2, &[0.5, 0.5], Some(b), act) };
                assert_eq!(
                    y[0].to_bits(),
                    CANON,
                    "{} bias {:#x}",
                    k.id(),
                    nans[i].to_bits()
                );
                let y = unsafe { score1(k.f, &h, 2, &[b, 0.5], None, act) };
                assert_eq!(
                    y[0].to_bits(),
                    CANON,
                    "{} w {:#x}",
                    k.id(),
                    nans[i].to_bits()
                );
            }
        }
    }
}

#[test]
fn f16_and_bf16_score_of_every_nan_is_the_canonical_nan() {
    for k in runnable(SCORE_F16) {
        let nans = all_16bit_nans(10);
        let h: Vec<f16> = nans
            .iter()
            .flat_map(|&b| [f16::from_bits(b), f16::ONE])
            .collect();
        let w = [f16::from_f32(0.5), f16::from_f32(-1.0)];
        for act in [Activation::None, Activation::Sigmoid] {
            // SAFETY: f16 kernels on f16 data.
            let y = unsafe { score1(k.f, &h, 2, &w, Some(1.0), act) };
            assert!(first_not_canonical(&y).is_none(), "{} {act:?}", k.id());
        }
    }
    for k in runnable(SCORE_BF16) {
        let nans = all_16bit_nans(7);
        let h: Vec<bf16> = nans
            .iter()
            .flat_map(|&b| [bf16::from_bits(b), bf16::ONE])
            .collect();
        let w = [bf16::from_f32(0.5), bf16::from_f32(-1.0)];
        for act in [Activation::None, Activation::Sigmoid] {
            // SAFETY: bf16 kernels on bf16 data.
            let y = unsafe { score1(k.f, &h, 2, &w, Some(1.0), act) };
            assert!(first_not_canonical(&y).is_none(), "{} {act:?}", k.id());
        }
    }
}

/// 64-byte aligned scratch of 16 floats (the bound's workspace for d <= 16).
#[repr(C, align(64))]
struct Line([f32; 16]);

#[test]
fn quest_bound_of_nan_queries_is_the_canonical_nan() {
    // d = 3: one query row per NaN pattern (sampled), against one block summary.
    let d = 3;
    let nans = all_f32_nans();
    let picked: Vec<f32> = nans.iter().copied().step_by(997).collect();
    let mut q = Vec::with_capacity(picked.len() * d);
    for &x in &picked {
        q.extend([0.5, x, -1.0]);
    }
    let kmin = [-1.0f32, -2.0, 0.5];
    let kmax = [1.0f32, 2.0, 0.75];
    for k in runnable(BOUND_F32) {
        let mut out = vec![0f32; picked.len()];
        let mut ws = [Line([0.0; 16])];
        let a = BoundArgs {
            q: q.as_ptr(),
            n_q: picked.len(),
            h_q: 1,
            d,
            q_tok: d,
            q_head: d,
            kmin: kmin.as_ptr(),
            kmax: kmax.as_ptr(),
            n_blocks: 1,
            h_kv: 1,
            out: out.as_mut_ptr(),
            out_stride: 1,
            workspace: ws.as_mut_ptr().cast(),
        };
        // SAFETY: the buffers match the arguments.
        unsafe { (k.f)(&a) };
        if let Some((i, bits)) = first_not_canonical(&out) {
            panic!(
                "{}: q = {:#010x} gives {bits:#010x}",
                k.id(),
                picked[i].to_bits()
            );
        }
    }
}
