//! Every row-softmax variant against a float64 oracle and against the scalar tier (bit
//! for bit), over awkward shapes (n = 0, 1, every tail up to 2 * 16 + 1, block edges,
//! unaligned starts, strides, bias broadcast and per row, in place), special values, and
//! against attention's probabilities (the attention mass of one query).

mod common;
use common::*;
use half::{bf16, f16};
use tokenroute_kernels::attend::{
    workspace_bytes, AttendArgs, AttendFn, KeySet, OutType, ATTEND_BF16, ATTEND_F16, ATTEND_F32,
};
use tokenroute_kernels::softmax::{SoftmaxArgs, SoftmaxFn, SOFTMAX_BF16, SOFTMAX_F16, SOFTMAX_F32};
use tokenroute_kernels::KernelInfo;

trait In: Copy + Default + 'static {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn softmax() -> &'static [KernelInfo<SoftmaxFn<Self>>];
    fn attend() -> &'static [KernelInfo<AttendFn<Self>>];
    const NAME: &'static str;
}
impl In for f32 {
    fn from_f32(x: f32) -> Self {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn softmax() -> &'static [KernelInfo<SoftmaxFn<f32>>] {
        SOFTMAX_F32
    }
    fn attend() -> &'static [KernelInfo<AttendFn<f32>>] {
        ATTEND_F32
    }
    const NAME: &'static str = "f32";
}
impl In for f16 {
    fn from_f32(x: f32) -> Self {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn softmax() -> &'static [KernelInfo<SoftmaxFn<f16>>] {
        SOFTMAX_F16
    }
    fn attend() -> &'static [KernelInfo<AttendFn<f16>>] {
        ATTEND_F16
    }
    const NAME: &'static str = "f16";
}
impl In for bf16 {
    fn from_f32(x: f32) -> Self {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn softmax() -> &'static [KernelInfo<SoftmaxFn<bf16>>] {
        SOFTMAX_BF16
    }
    fn attend() -> &'static [KernelInfo<AttendFn<bf16>>] {
        ATTEND_BF16
    }
    const NAME: &'static str = "bf16";
}

const OUTS: [OutType; 3] = [OutType::F32, OutType::F16, OutType::BF16];
const SENTINEL: u8 = 0xa5;

/// One call's shape and data.
#[derive(Clone)]
struct Case {
    rows: usize,
    n: usize,
    x_stride: usize,
    /// Elements before row 0 (unaligned starts).
    x_off: usize,
    x: Vec<f32>,
    scale: f32,
    /// (bias values, stride; 0 = broadcast)
    bias: Option<(Vec<f32>, usize)>,
    out_type: OutType,
    out_stride: usize,
    out_off: usize,
}

impl Case {
    fn xv(&self, r: usize, j: usize) -> f32 {
        self.x[self.x_off + r * self.x_stride + j]
    }
    fn bv(&self, r: usize, j: usize) -> f32 {
        self.bias.as_ref().map_or(0.0, |(b, s)| b[r * s + j])
    }
}

/// The raw bits of output element `at`.
fn out_bits(bytes: &[u8], t: OutType, at: usize) -> u32 {
    let e = t.size();
    bytes[at * e..at * e + e]
        .iter()
        .rev()
        .fold(0u32, |a, &b| (a << 8) | b as u32)
}

/// Runs `k` on the case (x rounded to `T`); returns the output bytes (rows only) after
/// checking that nothing else of the output buffer was written.
fn run<T: In>(k: &KernelInfo<SoftmaxFn<T>>, c: &Case) -> Vec<u32> {
    let xs: Vec<T> = c.x.iter().map(|&v| T::from_f32(v)).collect();
    let esz = c.out_type.size();
    let o_len = c.out_off
        + if c.rows == 0 {
            0
        } else {
            (c.rows - 1) * c.out_stride + c.n
        }
        + 3;
    let mut out = vec![SENTINEL; o_len * esz];
    let (bias, bias_stride) = match &c.bias {
        Some((b, s)) => (b.as_ptr(), *s),
        None => (std::ptr::null(), 0),
    };
    let args = SoftmaxArgs {
        x: xs[c.x_off..].as_ptr(),
        rows: c.rows,
        n: c.n,
        x_stride: c.x_stride,
        scale: c.scale,
        bias,
        bias_stride,
        out: out[c.out_off * esz..].as_mut_ptr(),
        out_type: c.out_type,
        out_stride: c.out_stride,
    };
    // SAFETY: every buffer holds the rows the arguments describe.
    unsafe { (k.f)(&args) };
    let mut bits = vec![];
    let mut written = vec![false; o_len];
    for r in 0..c.rows {
        for j in 0..c.n {
            let at = c.out_off + r * c.out_stride + j;
            written[at] = true;
            bits.push(out_bits(&out, c.out_type, at));
        }
    }
    for (at, w) in written.iter().enumerate() {
        if !w {
            assert!(
                out[at * esz..at * esz + esz].iter().all(|&b| b == SENTINEL),
                "{}: output element {at} outside the rows was written",
                k.id()
            );
        }
    }
    bits
}

fn bits_to_f32(t: OutType, b: u32) -> f32 {
    match t {
        OutType::F32 => f32::from_bits(b),
        OutType::F16 => f16::from_bits(b as u16).to_f32(),
        OutType::BF16 => bf16::from_bits(b as u16).to_f32(),
    }
}

/// The documented bound (kernels/src/softmax module doc, README): relative
/// `2^-19 (2 + A + n / 256) + u_out` plus absolute `2^-124 + e_out`.
fn bound(t: OutType, a: f64, n: usize, want: f64) -> f64 {
    let (u_out, e_out) = match t {
        OutType::F32 => (2f64.powi(-24), 2f64.powi(-150)),
        OutType::F16 => (2f64.powi(-11), 2f64.powi(-25)),
        OutType::BF16 => (2f64.powi(-8), 2f64.powi(-134)),
    };
    (2f64.powi(-19) * (2.0 + a + n as f64 / 256.0) + u_out) * want + 2f64.powi(-124) + e_out
}

/// Checks one call's output against the f64 oracle; returns the worst error / bound.
fn check_oracle<T: In>(id: &str, c: &Case, bits: &[u32]) -> f64 {
    let mut worst = 0f64;
    for r in 0..c.rows {
        let s: Vec<f64> = (0..c.n)
            .map(|j| {
                let x = T::from_f32(c.xv(r, j)).to_f32() as f64;
                c.scale as f64 * x + c.bv(r, j) as f64
            })
            .collect();
        let got: Vec<f32> = (0..c.n)
            .map(|j| bits_to_f32(c.out_type, bits[r * c.n + j]))
            .collect();
        // The f32 logit overflows to +inf past f32::MAX (in base 2).
        let nan_row = s
            .iter()
            .any(|v| v.is_nan() || *v * std::f64::consts::LOG2_E > f32::MAX as f64);
        if nan_row {
            for (j, &b) in bits[r * c.n..(r + 1) * c.n].iter().enumerate() {
                let canon = match c.out_type {
                    OutType::F32 => 0x7fc0_0000,
                    OutType::F16 => 0x7e00,
                    OutType::BF16 => 0x7fc0,
                };
                assert_eq!(
                    b, canon,
                    "{id}: row {r} element {j}: canonical NaN expected"
                );
            }
            continue;
        }
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if m == f64::NEG_INFINITY {
            assert!(
                bits[r * c.n..(r + 1) * c.n].iter().all(|&b| b == 0),
                "{id}: row {r} sees nothing: +0 expected"
            );
            continue;
        }
        let a = s
            .iter()
            .filter(|v| v.is_finite())
            .fold(0f64, |a, v| a.max(v.abs()));
        let sum: f64 = s.iter().map(|v| (v - m).exp()).sum();
        for j in 0..c.n {
            let want = (s[j] - m).exp() / sum;
            let err = (got[j] as f64 - want).abs();
            let b = bound(c.out_type, a, c.n, want);
            assert!(
                err <= b,
                "{id}: row {r} element {j}: got {:e}, want {want:e} (err {err:e} > bound {b:e}); \
                 x = {:e}, scale {}, n {}",
                got[j],
                c.xv(r, j),
                c.scale,
                c.n
            );
            if s[j] == f64::NEG_INFINITY {
                assert_eq!(bits[r * c.n + j], 0, "{id}: a masked element gives +0");
            }
            worst = worst.max(err / b);
        }
    }
    worst
}

/// Every runnable level on the case: within the bound and bit-identical to scalar.
fn check_levels<T: In>(c: &Case) -> f64 {
    let ks = runnable(T::softmax());
    let base = run(&ks[0], c);
    let worst = check_oracle::<T>(&ks[0].id().to_string(), c, &base);
    for k in &ks[1..] {
        let got = run(k, c);
        assert!(
            got == base,
            "{} differs from scalar (n {}, rows {}, out {:?})",
            k.id(),
            c.n,
            c.rows,
            c.out_type
        );
    }
    worst
}

fn random_case(rng: &mut Rng, rows: usize, n: usize, range: f32) -> Case {
    let x_stride = n + rng.below(3);
    let x_off = rng.below(3);
    let len = x_off + rows.max(1) * x_stride;
    let x = (0..len).map(|_| rng.uniform(-range, range)).collect();
    Case {
        rows,
        n,
        x_stride,
        x_off,
        x,
        scale: 1.0,
        bias: None,
        out_type: OutType::F32,
        out_stride: n + rng.below(3),
        out_off: rng.below(3),
    }
}

fn shapes_for<T: In>() {
    let mut rng = Rng::new(18);
    let mut worst = [0f64; 3];
    let mut lens: Vec<usize> = (0..=33).collect();
    lens.extend([63, 64, 65, 127, 128, 129, 191, 300, 1000, 4099]);
    for &n in &lens {
        for (ci, &range) in [1.0f32, 10.0, 80.0].iter().enumerate() {
            let rows = 1 + (n + ci) % 3;
            let mut c = random_case(&mut rng, rows, n, range);
            c.out_type = OUTS[(n + ci) % 3];
            c.scale = [1.0, 0.125, -0.7, 3.0][(n + 2 * ci) % 4];
            match (n + ci) % 3 {
                0 => {}
                1 => {
                    let b = (0..n + 1).map(|_| rng.uniform(-4.0, 4.0)).collect();
                    c.bias = Some((b, 0));
                }
                _ => {
                    let s = n + 1;
                    let mut b: Vec<f32> = (0..rows * s).map(|_| rng.uniform(-4.0, 4.0)).collect();
                    // Some masked entries (an additive -inf mask).
                    for v in b.iter_mut() {
                        if rng.below(7) == 0 {
                            *v = f32::NEG_INFINITY;
                        }
                    }
                    c.bias = Some((b, s));
                }
            }
            let w = check_levels::<T>(&c);
            worst[OUTS.iter().position(|&t| t == c.out_type).unwrap()] =
                w.max(worst[OUTS.iter().position(|&t| t == c.out_type).unwrap()]);
        }
    }
    eprintln!(
        "{} in: worst error / bound over random shapes, f32/f16/bf16 out: {worst:.3?}",
        T::NAME
    );
}

#[test]
fn random_shapes_every_level_f32() {
    shapes_for::<f32>();
}
#[test]
fn random_shapes_every_level_f16() {
    shapes_for::<f16>();
}
#[test]
fn random_shapes_every_level_bf16() {
    shapes_for::<bf16>();
}

fn one_row(x: Vec<f32>, scale: f32, out_type: OutType) -> Case {
    let n = x.len();
    Case {
        rows: 1,
        n,
        x_stride: n,
        x_off: 0,
        x,
        scale,
        bias: None,
        out_type,
        out_stride: n,
        out_off: 0,
    }
}

fn values_f32(c: &Case) -> Vec<f32> {
    let k = &runnable(SOFTMAX_F32)[0];
    run(k, c)
        .into_iter()
        .map(|b| bits_to_f32(c.out_type, b))
        .collect()
}

#[test]
fn special_values_every_level() {
    let nan_payloads = [
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xff80_0001),
        f32::from_bits(0x7fff_ffff),
        f32::from_bits(0xffc0_1234),
    ];
    for t in OUTS {
        // NaN of every sign and payload, at every position of rows across the tails and
        // block edges: the whole row is the canonical NaN, the other rows unaffected.
        for &n in &[1usize, 2, 7, 17, 64, 65, 130] {
            for (pi, &p) in nan_payloads.iter().enumerate() {
                let pos = (pi * 37) % n;
                let mut x: Vec<f32> = (0..2 * n).map(|j| (j % 11) as f32 - 5.0).collect();
                x[pos] = p;
                let mut c = one_row(x, 1.0, t);
                (c.rows, c.n, c.x_stride, c.out_stride) = (2, n, n, n);
                check_levels::<f32>(&c);
                check_levels::<f16>(&c);
                check_levels::<bf16>(&c);
            }
        }
        // +inf: exp(inf - inf) is NaN (as in torch), a NaN row.
        check_levels::<f32>(&one_row(vec![1.0, f32::INFINITY, 2.0], 1.0, t));
        // -inf entries are masked; an all -inf row (and a mask from the bias) gives +0.
        for n in [1usize, 5, 64, 70] {
            let c = one_row(vec![f32::NEG_INFINITY; n], 1.0, t);
            check_levels::<f32>(&c);
            assert!(values_f32(&c).iter().all(|&v| v.to_bits() == 0));
        }
        let mut x = vec![f32::NEG_INFINITY; 100];
        x[70] = 3.0;
        x[3] = -2.0;
        check_levels::<f32>(&one_row(x, 1.0, t));
        // Zeros of both signs, subnormals, huge values that overflow a naive exp.
        check_levels::<f32>(&one_row(
            vec![0.0, -0.0, 1e-45, -1e-45, f32::MIN_POSITIVE],
            1.0,
            t,
        ));
        check_levels::<f32>(&one_row(vec![88.8, 89.0, 100.0, -100.0, 95.5], 1.0, t));
        check_levels::<f32>(&one_row(vec![-1e4, -1e4 + 1.0, -1e4 - 3.0], 1.0, t));
        // Negative scale: the smallest input gets the largest probability.
        check_levels::<f32>(&one_row(vec![1.0, 2.0, 3.0, f32::NEG_INFINITY], -2.0, t));
    }
    // Exact cases: equal huge logits share the mass exactly, a far smaller one gets +0.
    let c = one_row(vec![1e30, 1e30, -1e30, -f32::MAX], 1.0, OutType::F32);
    assert_eq!(values_f32(&c), [0.5, 0.5, 0.0, 0.0]);
    // A logit whose f32 evaluation overflows to +inf (x * scale * log2(e) > f32::MAX)
    // is +inf: a NaN row (documented).
    let c = one_row(vec![0.0, f32::MAX], 1.0, OutType::F32);
    check_levels::<f32>(&c);
    assert!(values_f32(&c).iter().all(|v| v.to_bits() == 0x7fc0_0000));
    let c = one_row(vec![1e30, 1e30, -1e30], 1.0, OutType::F32);
    assert_eq!(values_f32(&c), [0.5, 0.5, 0.0]);
    let c = one_row(vec![7.0; 64], 1.0, OutType::F32);
    assert!(values_f32(&c).iter().all(|&v| v == 1.0 / 64.0));
    // inf * 0 (scale 0 at the kernel level) is NaN; scale 0 otherwise gives equal shares.
    check_levels::<f32>(&one_row(vec![1.0, f32::NEG_INFINITY], 0.0, OutType::F32));
    let c = one_row(vec![1.0, -5.0, 3.0, 1e30], 0.0, OutType::F32);
    assert_eq!(values_f32(&c), [0.25; 4]);
    // A bias of +inf on a -inf input is NaN; finite bias on -inf stays masked.
    let mut c = one_row(vec![f32::NEG_INFINITY, 1.0], 1.0, OutType::F32);
    c.bias = Some((vec![2.0, 0.0], 0));
    assert_eq!(values_f32(&c), [0.0, 1.0]);
    c.bias = Some((vec![f32::INFINITY, 0.0], 0));
    check_levels::<f32>(&c);
    assert!(values_f32(&c).iter().all(|v| v.to_bits() == 0x7fc0_0000));
}

#[test]
fn empty_calls_write_nothing() {
    for t in OUTS {
        for (rows, n) in [(0usize, 5usize), (3, 0), (0, 0)] {
            let mut c = one_row(vec![1.0; 8], 1.0, t);
            c.rows = rows;
            c.n = n;
            c.x_stride = 5;
            c.out_stride = 5;
            for k in runnable(SOFTMAX_F32) {
                assert!(run(&k, &c).is_empty());
            }
        }
    }
}

/// Rows sorted ascending rescale the online sum at every block: the worst case of the
/// bound's n term.
#[test]
fn long_ascending_rows_stay_within_the_bound() {
    let n = 8192;
    let mut worst = 0f64;
    for (scale, step) in [(1.0f32, 1e-3f32), (1.0, 2e-2), (0.25, 5e-2)] {
        let x: Vec<f32> = (0..n).map(|j| -40.0 + step * j as f32).collect();
        worst = worst.max(check_levels::<f32>(&one_row(x, scale, OutType::F32)));
    }
    eprintln!("ascending rows, f32 out: worst error / bound {worst:.3}");
}

/// In place (`out == x`, same type and stride) equals a separate output.
#[test]
fn in_place_equals_out_of_place() {
    let mut rng = Rng::new(5);
    for k in runnable(SOFTMAX_F32) {
        for n in [1usize, 9, 64, 77] {
            let rows = 3;
            let stride = n + 2;
            let x: Vec<f32> = (0..rows * stride).map(|_| rng.uniform(-9.0, 9.0)).collect();
            let mut c = one_row(x.clone(), 0.5, OutType::F32);
            c.rows = rows;
            c.n = n;
            c.x_stride = stride;
            c.out_stride = stride;
            let want = run(&k, &c);
            let mut xy = x.clone();
            let args = SoftmaxArgs {
                x: xy.as_ptr(),
                rows,
                n,
                x_stride: stride,
                scale: 0.5,
                bias: std::ptr::null(),
                bias_stride: 0,
                out: xy.as_mut_ptr() as *mut u8,
                out_type: OutType::F32,
                out_stride: stride,
            };
            // SAFETY: in place over the rows of xy.
            unsafe { (k.f)(&args) };
            for r in 0..rows {
                for j in 0..n {
                    assert_eq!(xy[r * stride + j].to_bits(), want[r * n + j], "{}", k.id());
                }
                for j in n..stride {
                    assert_eq!(xy[r * stride + j].to_bits(), x[r * stride + j].to_bits());
                }
            }
        }
    }
}

/// A row's softmax is, bit for bit, the attention mass that one query (d = 1, q = 1)
/// gives keys whose scores are the row, on every level and element type.
fn agrees_with_attention<T: In>() {
    let mut rng = Rng::new(77);
    let ws_len = workspace_bytes(1).unwrap().div_ceil(64) + 1;
    #[repr(C, align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);
    let sks = runnable(T::softmax());
    let aks = runnable(T::attend());
    assert_eq!(sks.len(), aks.len());
    for n in [1usize, 3, 16, 63, 64, 65, 200, 1000] {
        for scale in [1.0f32, 0.3, 2.5] {
            let mut x: Vec<f32> = (0..n).map(|_| rng.uniform(-30.0, 30.0)).collect();
            if n > 3 {
                x[2] = f32::NEG_INFINITY;
            }
            let c = one_row(x.clone(), scale, OutType::F32);
            let keys: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
            let q = [T::from_f32(1.0)];
            let v = vec![T::from_f32(0.0); n];
            for (sk, ak) in sks.iter().zip(&aks) {
                let y = run(sk, &c);
                let mut mass = vec![0f32; n];
                let mut out = [0u8; 4];
                let mut ws = vec![Line([0; 64]); ws_len];
                let args = AttendArgs {
                    q: q.as_ptr(),
                    n_q: 1,
                    h_q: 1,
                    d: 1,
                    dv: 1,
                    q_tok: 1,
                    q_head: 1,
                    k: keys.as_ptr(),
                    n_k: n,
                    h_kv: 1,
                    k_tok: 1,
                    k_head: 1,
                    v: v.as_ptr(),
                    v_tok: 1,
                    v_head: 1,
                    keys: KeySet::Dense,
                    scale,
                    softcap: 0.0,
                    alibi: std::ptr::null(),
                    bias: std::ptr::null(),
                    bias_head: 0,
                    bias_query: 0,
                    bias_type: OutType::F32,
                    causal: false,
                    window: 0,
                    right: 0,
                    q_pos: std::ptr::null(),
                    k_pos: std::ptr::null(),
                    out: out.as_mut_ptr(),
                    out_type: OutType::F32,
                    o_tok: 1,
                    o_head: 1,
                    lse: std::ptr::null_mut(),
                    lse_tok: 1,
                    mass: mass.as_mut_ptr(),
                    mass_head: 0,
                    workspace: ws.as_mut_ptr() as *mut u8,
                };
                // SAFETY: every buffer holds what the arguments describe.
                unsafe { (ak.f)(&args) };
                for j in 0..n {
                    assert_eq!(
                        y[j],
                        mass[j].to_bits(),
                        "{} vs {}: n {n}, key {j}",
                        sk.id(),
                        ak.id()
                    );
                }
            }
        }
    }
}

#[test]
fn equals_attention_probabilities_f32() {
    agrees_with_attention::<f32>();
}
#[test]
fn equals_attention_probabilities_f16() {
    agrees_with_attention::<f16>();
}
#[test]
fn equals_attention_probabilities_bf16() {
    agrees_with_attention::<bf16>();
}
