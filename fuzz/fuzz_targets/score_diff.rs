//! Differential target for the scoring family (`tkr_sigmoid_f32`, `tkr_score`): decodes
//! shapes, strides, offsets, dtype, activation, bias and values (NaN of any sign and
//! payload, infinities, signed zeros, subnormals, ties) from the input, runs every ISA
//! level this CPU has (`Kernels::all_supported`), and requires:
//! - bit-identical results on every level (sigmoid: NaN results compared as NaN, their
//!   sign and payload being unspecified; scores: a NaN score is exactly 0x7fc00000);
//! - the documented accuracy against an f64 oracle (sigmoid within 2.41 ulp of the
//!   exact value; logits within (ceil(d/16) + 5) * 2^-24 * (sum |h w| + |b|), plus
//!   d * 2^-149 for underflow, which the relative bound cannot cover);
//! - nothing written outside the described output elements (stride gaps, margins);
//! - a token's score independent of the batch: scoring a split batch gives the same
//!   bits as one call.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use tokenroute::{Activation, Element, Kernels, Matrix, MatrixMut};
use tokenroute_fuzz::{canon, sigmoid64, ulp32, Input};

const MARK: u32 = 0x7fa5_a5a5;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 4 {
        0 => sigmoid_case(&mut inp),
        1 => score_case::<f32>(&mut inp, |i| i.f32()),
        2 => score_case::<f16>(&mut inp, |i| f16::from_bits(i.f16_bits())),
        _ => score_case::<bf16>(&mut inp, |i| bf16::from_bits(i.bf16_bits())),
    }
});

fn sigmoid_case(inp: &mut Input) {
    let n = inp.len(300);
    let xoff = inp.below(15);
    let yoff = inp.below(15);
    let mut xs = vec![0f32; xoff + n];
    for v in &mut xs[xoff..] {
        *v = inp.f32();
    }
    let x = &xs[xoff..];
    let mut reference: Option<Vec<u32>> = None;
    for k in Kernels::all_supported() {
        let mut ys = vec![f32::from_bits(MARK); yoff + n + 16];
        k.sigmoid_f32(x, &mut ys[yoff..yoff + n]).unwrap();
        assert!(
            ys[..yoff]
                .iter()
                .chain(&ys[yoff + n..])
                .all(|v| v.to_bits() == MARK),
            "{:?}: sigmoid wrote outside y",
            k.isa()
        );
        let y = &ys[yoff..yoff + n];
        // In place gives the same bits.
        let mut z = x.to_vec();
        k.sigmoid_f32_in_place(&mut z).unwrap();
        for i in 0..n {
            assert_eq!(
                canon(z[i]),
                canon(y[i]),
                "{:?}: in place differs at x={:e}",
                k.isa(),
                x[i]
            );
            let xi = x[i];
            if xi.is_nan() {
                assert!(y[i].is_nan(), "{:?}: sigmoid(NaN) = {}", k.isa(), y[i]);
            } else {
                let exact = sigmoid64(xi as f64);
                let err = (y[i] as f64 - exact).abs();
                assert!(
                    err <= 2.41 * ulp32(exact),
                    "{:?}: sigmoid({:e} = {:#x}) = {:e}, exact {:e}",
                    k.isa(),
                    xi,
                    xi.to_bits(),
                    y[i],
                    exact
                );
            }
        }
        let bits: Vec<u32> = y.iter().map(|&v| canon(v)).collect();
        match &reference {
            None => reference = Some(bits),
            Some(r) => {
                for i in 0..n {
                    assert_eq!(
                        r[i],
                        bits[i],
                        "{:?} differs from scalar at x={:e} ({:#x})",
                        k.isa(),
                        x[i],
                        x[i].to_bits()
                    );
                }
            }
        }
    }
}

/// f32/f16/bf16 to f64, exactly.
trait ToF64: Element {
    fn f64(self) -> f64;
}
impl ToF64 for f32 {
    fn f64(self) -> f64 {
        self as f64
    }
}
impl ToF64 for f16 {
    fn f64(self) -> f64 {
        self.to_f64()
    }
}
impl ToF64 for bf16 {
    fn f64(self) -> f64 {
        self.to_f64()
    }
}

fn score_case<T: ToF64>(inp: &mut Input, mut gen: impl FnMut(&mut Input) -> T) {
    let n = if inp.u8() % 8 == 0 {
        inp.below(200)
    } else {
        inp.len(40)
    };
    let d = inp.len(300);
    let e = if n == 0 && inp.bool() {
        0
    } else {
        1 + inp.below(11)
    };
    let hs = d + if inp.bool() { 0 } else { inp.below(5) };
    let ws = d + if inp.bool() { 0 } else { inp.below(5) };
    let os = e + if inp.bool() { 0 } else { inp.below(3) };
    let act = if inp.bool() {
        Activation::Sigmoid
    } else {
        Activation::None
    };
    let (hoff, woff, ooff) = (inp.below(7), inp.below(7), inp.below(7));
    let span = |r: usize, c: usize, s: usize| if r == 0 { 0 } else { (r - 1) * s + c };
    let (hn, wn, on) = (span(n, d, hs), span(e, d, ws), span(n, e, os));
    let mut hv = vec![T::default(); hoff + hn];
    for v in &mut hv[hoff..] {
        *v = gen(inp);
    }
    let mut wv = vec![T::default(); woff + wn];
    for v in &mut wv[woff..] {
        *v = gen(inp);
    }
    let bias: Option<Vec<f32>> = if inp.bool() {
        Some((0..e).map(|_| inp.f32()).collect())
    } else {
        None
    };
    let split = inp.below(n);
    let split_level = inp.u8() as usize;
    let h = &hv[hoff..];
    let w = &wv[woff..];
    let run = |k: &Kernels, rows: core::ops::Range<usize>, out: &mut [f32]| {
        let r = rows.end - rows.start;
        let hpart = &h[(rows.start * hs).min(h.len())..];
        k.score(
            Matrix::new(&hpart[..span(r, d, hs)], r, d, hs).unwrap(),
            Matrix::new(w, e, d, ws).unwrap(),
            bias.as_deref(),
            act,
            MatrixMut::new(out, r, e, os).unwrap(),
        )
        .unwrap();
    };
    let levels: Vec<&Kernels> = Kernels::all_supported().collect();
    let mut reference: Option<Vec<f32>> = None;
    for (li, k) in levels.iter().enumerate() {
        let mut buf = vec![f32::from_bits(MARK); ooff + on + 8];
        run(k, 0..n, &mut buf[ooff..ooff + on]);
        // Only the n x e outputs are written.
        for (idx, v) in buf.iter().enumerate() {
            let inside = idx >= ooff && idx < ooff + on && (idx - ooff) % os < e;
            if !inside {
                assert_eq!(
                    v.to_bits(),
                    MARK,
                    "{:?}: write outside the outputs at {idx}",
                    k.isa()
                );
            } else if v.is_nan() {
                assert_eq!(
                    v.to_bits(),
                    0x7fc0_0000,
                    "{:?}: NaN score not canonical",
                    k.isa()
                );
            }
        }
        match &reference {
            None => reference = Some(buf.clone()),
            Some(r) => {
                for idx in 0..buf.len() {
                    assert_eq!(
                        r[idx].to_bits(),
                        buf[idx].to_bits(),
                        "{:?} differs from scalar at output {} (n={n} d={d} e={e} act={act:?})",
                        k.isa(),
                        idx
                    );
                }
            }
        }
        // Splitting the batch at `split` gives the same bits (one level per input).
        if n > 0 && li == split_level % levels.len() {
            let mut a = vec![0f32; span(split, e, os)];
            let mut b = vec![0f32; span(n - split, e, os)];
            run(k, 0..split, &mut a);
            run(k, split..n, &mut b);
            for i in 0..n {
                for j in 0..e {
                    let got = if i < split {
                        a[i * os + j]
                    } else {
                        b[(i - split) * os + j]
                    };
                    assert_eq!(
                        got.to_bits(),
                        buf[ooff + i * os + j].to_bits(),
                        "{:?}: row {i} scored differently in a split batch",
                        k.isa()
                    );
                }
            }
        }
    }
    // The oracle, for finite inputs of moderate magnitude.
    let out = reference.unwrap();
    let bound_k = ((d.div_ceil(16) + 5) as f64) * 2f64.powi(-24);
    for i in 0..n {
        for j in 0..e {
            let mut dot = 0f64;
            let mut mag = 0f64;
            let mut finite = true;
            for t in 0..d {
                let a = h[i * hs + t].f64();
                let b = w[j * ws + t].f64();
                finite &= a.is_finite() && b.is_finite();
                dot += a * b;
                mag += (a * b).abs();
            }
            let b = bias.as_ref().map_or(0.0, |b| b[j] as f64);
            finite &= b.is_finite();
            dot += b;
            mag += b.abs();
            if !finite || mag > 1e37 {
                continue;
            }
            let bound = bound_k * mag + (d as f64 + 2.0) * 2f64.powi(-149);
            let got = out[ooff + i * os + j] as f64;
            let (want, tol) = match act {
                Activation::None => (dot, bound),
                _ => {
                    let s = sigmoid64(dot);
                    (s, 0.25 * bound + 2.41 * ulp32(s.abs() + 0.25 * bound))
                }
            };
            assert!(
                (got - want).abs() <= tol,
                "score[{i}][{j}] = {got:e}, exact {want:e}, bound {tol:e} (d={d}, act={act:?})"
            );
        }
    }
}
