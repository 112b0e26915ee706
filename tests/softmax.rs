//! The row softmax through the safe API: the options and their validation, in place,
//! every output type, and the same bits on every level and thread count.

use tokenroute::parallel::{self, Executor};
use tokenroute::{bf16, f16, softmax, ErrorKind, Kernels, Matrix, MatrixMut, SoftmaxOptions};

fn data(rows: usize, n: usize, stride: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..rows * stride)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 9) % 4001) as f32 / 100.0 - 20.0
        })
        .collect::<Vec<_>>()
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % stride < n { v } else { f32::NAN })
        .collect()
}

/// f64 reference of one row.
fn reference(t: &[f64]) -> Vec<f64> {
    let m = t.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = t.iter().map(|v| (v - m).exp()).sum();
    t.iter().map(|v| (v - m).exp() / s).collect()
}

#[test]
fn options_bias_shapes_and_in_place() {
    let (rows, n, stride) = (4, 100, 103);
    let x = data(rows, n, stride, 1);
    let bias_row: Vec<f32> = (0..n).map(|j| (j % 7) as f32 * 0.5 - 1.0).collect();
    let bias_rows: Vec<f32> = (0..rows * n).map(|j| (j % 5) as f32 * -0.25).collect();
    for (bias, per_row) in [(&bias_row, false), (&bias_rows, true)] {
        let b = Matrix::dense(bias, if per_row { rows } else { 1 }, n).unwrap();
        let opts = SoftmaxOptions {
            scale: 0.8,
            bias: Some(b),
        };
        let mut out = vec![0f32; rows * n];
        softmax(
            Matrix::new(&x, rows, n, stride).unwrap(),
            MatrixMut::dense(&mut out, rows, n).unwrap(),
            &opts,
        )
        .unwrap();
        for r in 0..rows {
            let t: Vec<f64> = (0..n)
                .map(|j| {
                    let bj = if per_row { bias[r * n + j] } else { bias[j] };
                    0.8 * x[r * stride + j] as f64 + bj as f64
                })
                .collect();
            for (j, want) in reference(&t).into_iter().enumerate() {
                let got = out[r * n + j] as f64;
                assert!((got - want).abs() <= 2f64.powi(-19) * (2.0 + 20.0 + 1.0) * want + 1e-37);
            }
        }
        // In place: the same bits, the gaps between rows untouched.
        let mut y = x.clone();
        tokenroute::softmax_in_place(MatrixMut::new(&mut y, rows, n, stride).unwrap(), &opts)
            .unwrap();
        for r in 0..rows {
            for j in 0..stride {
                if j < n {
                    assert_eq!(y[r * stride + j].to_bits(), out[r * n + j].to_bits());
                } else {
                    assert!(y[r * stride + j].is_nan());
                }
            }
        }
    }
}

#[test]
fn bad_arguments_are_refused_and_write_nothing() {
    let x = data(3, 8, 8, 2);
    let mut out = vec![5f32; 24];
    let kind = |opts: &SoftmaxOptions, out: &mut [f32], rows: usize| {
        softmax(
            Matrix::dense(&x, 3, 8).unwrap(),
            MatrixMut::dense(out, rows, 8).unwrap(),
            opts,
        )
        .unwrap_err()
        .kind
    };
    let nan = SoftmaxOptions {
        scale: f32::NAN,
        bias: None,
    };
    assert_eq!(kind(&nan, &mut out, 3), ErrorKind::InvalidArgument);
    let inf = SoftmaxOptions {
        scale: f32::INFINITY,
        bias: None,
    };
    assert_eq!(kind(&inf, &mut out, 3), ErrorKind::InvalidArgument);
    assert_eq!(
        kind(&SoftmaxOptions::default(), &mut out[..16], 2),
        ErrorKind::InvalidArgument
    );
    let short = vec![0f32; 7];
    let b = SoftmaxOptions {
        scale: 1.0,
        bias: Some(Matrix::dense(&short, 1, 7).unwrap()),
    };
    assert_eq!(kind(&b, &mut out, 3), ErrorKind::InvalidArgument);
    let two = vec![0f32; 16];
    let b = SoftmaxOptions {
        scale: 1.0,
        bias: Some(Matrix::dense(&two, 2, 8).unwrap()),
    };
    assert_eq!(kind(&b, &mut out, 3), ErrorKind::InvalidArgument);
    assert!(out.iter().all(|&v| v == 5.0));
}

/// f32 / f16 / bf16 in and out: the same bits on every level and for every executor.
#[test]
fn same_bits_on_every_level_and_thread_count() {
    parallel::set_num_threads(4).unwrap();
    let (rows, n, stride) = (37, 300, 301);
    let x = data(rows, n, stride, 3);
    let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let run = |k: &Kernels| -> Vec<u32> {
        let mut bits = vec![];
        let opts = SoftmaxOptions {
            scale: 1.3,
            bias: None,
        };
        let mut o32 = vec![0f32; rows * n];
        k.softmax(
            Matrix::new(&x, rows, n, stride).unwrap(),
            MatrixMut::dense(&mut o32, rows, n).unwrap(),
            &opts,
        )
        .unwrap();
        bits.extend(o32.iter().map(|v| v.to_bits()));
        let mut o16 = vec![f16::ZERO; rows * n];
        k.softmax(
            Matrix::new(&xh, rows, n, stride).unwrap(),
            MatrixMut::dense(&mut o16, rows, n).unwrap(),
            &opts,
        )
        .unwrap();
        bits.extend(o16.iter().map(|v| v.to_bits() as u32));
        let mut ob = vec![bf16::ZERO; rows * n];
        k.softmax(
            Matrix::new(&xb, rows, n, stride).unwrap(),
            MatrixMut::dense(&mut ob, rows, n).unwrap(),
            &opts,
        )
        .unwrap();
        bits.extend(ob.iter().map(|v| v.to_bits() as u32));
        bits
    };
    let mut first: Option<Vec<u32>> = None;
    for k in Kernels::all_supported() {
        let want = parallel::with_executor(Executor::Inline, || run(k));
        match &first {
            None => first = Some(want.clone()),
            Some(f) => assert!(f == &want, "{:?} differs from scalar", k.isa()),
        }
        for e in [Executor::Threads(2), Executor::Threads(4)] {
            for unit in [1usize, 5000] {
                let got = parallel::with_executor(e.clone(), || {
                    parallel::with_granularity(unit, 0, || run(k))
                });
                assert!(got == want, "{:?} on {e:?} with unit {unit}", k.isa());
            }
        }
    }
}
