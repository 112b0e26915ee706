//! Router scoring: elementwise sigmoid and fused `act(H W^T + b)` (bit-identical on
//! every level, so checked bit-exact against scalar).

use super::{bits, values};
use crate::{Bound, Case};
use tokenroute::{bf16, f16, Activation, Element, Isa, Kernels, Matrix, MatrixMut};

struct Sigmoid {
    x: Vec<f32>,
    y: Vec<f32>,
}

impl Case for Sigmoid {
    fn family(&self) -> &'static str {
        "score"
    }
    fn name(&self) -> String {
        "sigmoid_f32".into()
    }
    fn shape(&self) -> String {
        format!("{}M", self.x.len() >> 20)
    }
    fn bytes(&self) -> u64 {
        (self.x.len() * 8) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Copy((self.x.len() * 4) as u64)
    }
    fn run(&mut self, k: &'static Kernels) {
        k.sigmoid_f32(&self.x, &mut self.y).unwrap();
    }
    fn output(&self) -> Vec<u32> {
        bits(&self.y)
    }
}

struct Score<T> {
    n: usize,
    d: usize,
    e: usize,
    h: Vec<T>,
    w: Vec<T>,
    bias: Vec<f32>,
    out: Vec<f32>,
}

impl<T: Element> Case for Score<T> {
    fn family(&self) -> &'static str {
        "score"
    }
    fn name(&self) -> String {
        format!("score_{}_e{}", T::DTYPE.name(), self.e)
    }
    fn shape(&self) -> String {
        format!("{}x{}", self.n, self.d)
    }
    fn bytes(&self) -> u64 {
        (self.h.len() * std::mem::size_of::<T>()) as u64
    }
    fn flops(&self) -> u64 {
        (2 * self.n * self.d * self.e) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Roofline(self.bytes())
    }
    fn run(&mut self, k: &'static Kernels) {
        k.score(
            Matrix::dense(&self.h, self.n, self.d).unwrap(),
            Matrix::dense(&self.w, self.e, self.d).unwrap(),
            Some(&self.bias),
            Activation::Sigmoid,
            MatrixMut::dense(&mut self.out, self.n, self.e).unwrap(),
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        bits(&self.out)
    }
    fn time_level(&self, isa: Isa) -> bool {
        // The scalar reference runs ~20-50x slower; time it on the small shapes only.
        isa != Isa::Scalar || self.n * self.d <= 4096 * 4096
    }
}

fn score<T: Element>(n: usize, d: usize, e: usize, conv: fn(f32) -> T) -> Box<dyn Case> {
    Box::new(Score::<T> {
        n,
        d,
        e,
        h: values(n * d, 1).into_iter().map(conv).collect(),
        w: values(e * d, 2)
            .into_iter()
            .map(|x| conv(x * 0.05))
            .collect(),
        bias: values(e, 3),
        out: vec![0.0; n * e],
    })
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    let sizes: &[usize] = if quick {
        &[1 << 20]
    } else {
        &[1 << 20, 16 << 20]
    };
    for &n in sizes {
        let x = values(n, 7).into_iter().map(|v| v * 12.0).collect();
        v.push(Box::new(Sigmoid { x, y: vec![0.0; n] }));
    }
    // n = 64 is the small call threads must not slow down.
    let shapes: &[(usize, usize)] = if quick {
        &[(64, 768), (512, 768), (4096, 4096)]
    } else {
        &[(64, 768), (512, 768), (4096, 4096), (32768, 4096)]
    };
    for &(n, d) in shapes {
        for e in [1, 8] {
            v.push(score::<f32>(n, d, e, |x| x));
            v.push(score::<f16>(n, d, e, f16::from_f32));
            v.push(score::<bf16>(n, d, e, bf16::from_f32));
        }
    }
    v
}
