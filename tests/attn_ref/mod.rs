//! A float64 reference of attention with every option, one sequence at a time, written
//! as directly as the definitions read (no online softmax, no blocking), and the error
//! bound the kernels document.

#![allow(dead_code)]

/// One sequence's inputs as f64 (dense `[tokens][heads][dim]`), and the options.
pub struct Spec<'a> {
    pub n_q: usize,
    pub n_k: usize,
    pub h_q: usize,
    pub h_kv: usize,
    pub d: usize,
    pub dv: usize,
    pub q: &'a [f64],
    pub k: &'a [f64],
    pub v: &'a [f64],
    /// The K rows row `(i, h)` attends over (before masking), in order.
    pub keys: &'a dyn Fn(usize, usize) -> Vec<usize>,
    pub scale: f64,
    /// `c * tanh(s / c)` of the scaled dot product.
    pub softcap: Option<f64>,
    /// Additive bias of `(h, i, j)` (added after the softcap).
    pub bias: Option<&'a dyn Fn(usize, usize, usize) -> f64>,
    /// ALiBi: `-slope_h * |q_pos - k_pos|` added after the softcap.
    pub alibi: Option<&'a [f64]>,
    /// Per query head sink logits (join the denominator without a value).
    pub sinks: Option<&'a [f64]>,
    /// Positions (any integers).
    pub q_pos: &'a dyn Fn(usize) -> i64,
    pub k_pos: &'a dyn Fn(usize) -> i64,
    pub causal: bool,
    /// Visible when `q_pos - left <= k_pos` / `k_pos <= q_pos + right`.
    pub left: Option<i64>,
    pub right: Option<i64>,
}

impl Spec<'_> {
    pub fn visible(&self, i: usize, j: usize) -> bool {
        let (qp, kp) = ((self.q_pos)(i), (self.k_pos)(j));
        (!self.causal || kp <= qp)
            && self.left.is_none_or(|l| kp >= qp - l)
            && self.right.is_none_or(|r| kp <= qp + r)
    }

    /// The row's logits over its visible keys: `(key, logit, scale * sum |q k| + |added
    /// terms|)`.
    pub fn logits(&self, i: usize, h: usize) -> Vec<(usize, f64, f64)> {
        let g = h / (self.h_q / self.h_kv);
        let (d, qr) = (self.d, (i * self.h_q + h) * self.d);
        (self.keys)(i, h)
            .into_iter()
            .filter(|&j| self.visible(i, j))
            .map(|j| {
                let kr = (j * self.h_kv + g) * d;
                let mut s = 0.0;
                let mut a = 0.0;
                for e in 0..d {
                    s += self.q[qr + e] * self.k[kr + e];
                    a += (self.q[qr + e] * self.k[kr + e]).abs();
                }
                s *= self.scale;
                a *= self.scale.abs();
                if let Some(c) = self.softcap {
                    s = c * (s / c).tanh();
                }
                if let Some(b) = self.bias {
                    let x = b(h, i, j);
                    s += x;
                    a += x.abs();
                }
                if let Some(sl) = self.alibi {
                    let x = -sl[h] * ((self.q_pos)(i) - (self.k_pos)(j)).abs() as f64;
                    s += x;
                    a += x.abs();
                }
                (j, s, a)
            })
            .collect()
    }
}

/// A row's result: output (dv values), log-sum-exp, and what its error bound needs.
pub struct Row {
    pub out: Vec<f64>,
    pub lse: f64,
    /// Largest `scale * sum |q k|` (plus added terms) over the visible keys.
    pub a: f64,
    /// Visible keys.
    pub n: usize,
    /// Largest |v| over the visible keys.
    pub vmax: f64,
}

/// The exact (f64) result of row `(i, h)`.
pub fn row(s: &Spec<'_>, i: usize, h: usize) -> Row {
    let g = h / (s.h_q / s.h_kv);
    let ls = s.logits(i, h);
    let sink = s.sinks.map_or(f64::NEG_INFINITY, |x| x[h]);
    let m = ls
        .iter()
        .map(|x| x.1)
        .fold(sink, |a, b| if b > a { b } else { a });
    let mut out = vec![0.0; s.dv];
    let a = ls.iter().map(|x| x.2).fold(0.0, f64::max);
    let vmax = ls
        .iter()
        .flat_map(|&(j, _, _)| (0..s.dv).map(move |e| (j * s.h_kv + g) * s.dv + e))
        .map(|x| s.v[x].abs())
        .fold(0.0, f64::max);
    if m == f64::NEG_INFINITY {
        return Row {
            out,
            lse: f64::NEG_INFINITY,
            a,
            n: ls.len(),
            vmax,
        };
    }
    let mut l = if sink > f64::NEG_INFINITY {
        (sink - m).exp()
    } else {
        0.0
    };
    for &(j, x, _) in &ls {
        let p = (x - m).exp();
        l += p;
        for (e, o) in out.iter_mut().enumerate() {
            *o += p * s.v[(j * s.h_kv + g) * s.dv + e];
        }
    }
    out.iter_mut().for_each(|o| *o /= l);
    Row {
        out,
        lse: m + l.ln(),
        a,
        n: ls.len(),
        vmax,
    }
}

/// The documented bound of an output element: `2^-17 (1 + A + n/64) vmax + u_out |x|`.
pub fn bound(r: &Row, u_out: f64, exact: f64) -> f64 {
    2f64.powi(-17) * (1.0 + r.a + r.n as f64 / 64.0) * r.vmax + u_out * exact.abs()
}

/// The documented bound of a log-sum-exp: `2^-17 (1 + A + |lse|)`.
pub fn lse_bound(r: &Row) -> f64 {
    2f64.powi(-17) * (1.0 + r.a + r.lse.abs())
}

/// Deterministic pseudo-random values in [-1, 1) (xorshift).
pub struct Rng(pub u64);
impl Rng {
    pub fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f()).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        ((self.f() as f64 + 1.0) * 0.5 * n as f64) as usize % n.max(1)
    }
}

/// Largest error of `got` against the reference rows, in units of the documented bound
/// (<= 1 passes); also the largest absolute error.
pub struct Check {
    pub worst: f64,
    pub max_abs: f64,
}

impl Check {
    pub fn new() -> Check {
        Check {
            worst: 0.0,
            max_abs: 0.0,
        }
    }
    pub fn add(&mut self, got: f64, want: f64, bound: f64, what: &dyn Fn() -> String) {
        let err = (got - want).abs();
        assert!(
            err <= bound || (got.is_infinite() && got == want),
            "{}: {got} vs exact {want} (error {err:.3e} > bound {bound:.3e})",
            what()
        );
        if err.is_finite() {
            self.max_abs = self.max_abs.max(err);
            if bound > 0.0 {
                self.worst = self.worst.max(err / bound);
            }
        }
    }
}
