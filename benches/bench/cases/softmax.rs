//! Row softmax (`Kernels::softmax`): bit-identical on every level, so checked bit-exact
//! against scalar. Shapes: attention-score and router-logit rows (64 x 4096) and a
//! larger batch of them.

use super::values;
use crate::{Bound, Case};
use tokenroute::{bf16, Element, Isa, Kernels, Matrix, MatrixMut, OutElement, SoftmaxOptions};

struct Softmax<T, O> {
    rows: usize,
    n: usize,
    x: Vec<T>,
    out: Vec<O>,
    bits: fn(&O) -> u32,
}

impl<T: Element, O: OutElement> Case for Softmax<T, O> {
    fn family(&self) -> &'static str {
        "softmax"
    }
    fn name(&self) -> String {
        format!("softmax_{}_{}", T::DTYPE.name(), O::DTYPE.name())
    }
    fn shape(&self) -> String {
        format!("{}x{}", self.rows, self.n)
    }
    fn bytes(&self) -> u64 {
        (self.x.len() * (std::mem::size_of::<T>() + std::mem::size_of::<O>())) as u64
    }
    fn flops(&self) -> u64 {
        // Two passes of a logit, a subtraction and exp2 (3 adds + 6 FMAs) per element,
        // plus the sum and the scaling: 36 flops per element, nominal (f32 outputs skip the
        // second exp2 from the last growth of the row maximum on).
        (36 * self.x.len()) as u64
    }
    fn bound(&self) -> Bound {
        Bound::Roofline(self.bytes())
    }
    fn run(&mut self, k: &'static Kernels) {
        let opts = SoftmaxOptions {
            scale: 0.125,
            bias: None,
        };
        k.softmax(
            Matrix::dense(&self.x, self.rows, self.n).unwrap(),
            MatrixMut::dense(&mut self.out, self.rows, self.n).unwrap(),
            &opts,
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        self.out.iter().map(self.bits).collect()
    }
    fn time_level(&self, isa: Isa) -> bool {
        // The scalar level's software FMA is slow; time it on the small shape only.
        isa != Isa::Scalar || self.x.len() <= 64 * 4096
    }
}

fn case<T: Element, O: OutElement + Default>(
    rows: usize,
    n: usize,
    conv: fn(f32) -> T,
    bits: fn(&O) -> u32,
) -> Box<dyn Case> {
    Box::new(Softmax::<T, O> {
        rows,
        n,
        x: values(rows * n, 11)
            .into_iter()
            .map(|v| conv(v * 40.0))
            .collect(),
        out: vec![O::default(); rows * n],
        bits,
    })
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let shapes: &[(usize, usize)] = if quick {
        &[(64, 4096)]
    } else {
        &[(64, 4096), (1024, 4096)]
    };
    let mut v = Vec::new();
    for &(rows, n) in shapes {
        v.push(case::<f32, f32>(rows, n, |x| x, |y| y.to_bits()));
        v.push(case::<bf16, bf16>(rows, n, bf16::from_f32, |y| {
            y.to_bits() as u32
        }));
        v.push(case::<bf16, f32>(rows, n, bf16::from_f32, |y| y.to_bits()));
    }
    v
}
