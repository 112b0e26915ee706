//! Every attention variant against an f64 oracle that lives here (dense, index-list and
//! block-sparse key sets, GQA, causal masking by positions, windows, strides, every
//! d up to 260), bit-identical across tiers, independent of the number of queries in
//! the call, with exact merging, attention mass, and the Quest summary and bound.
//!
//! Documented tolerance (the f64 oracle works on the same, exactly converted inputs,
//! so the input type does not enter it): for a row whose visible keys have logit
//! magnitudes `A = max_j scale * sum_e |q_e k_je|`, values bounded by `vmax` and `n`
//! visible keys,
//! `|out - ref| <= 2^-17 * (1 + A + n / 64) * vmax + u_out * |ref|`, with `u_out` the
//! output rounding (f32: 2^-24, f16: 2^-11, bf16: 2^-8), and
//! `|lse - ref| <= 2^-17 * (1 + A + |ref|)`.

mod common;
use common::*;
use half::{bf16, f16};
use proptest::prelude::{proptest, ProptestConfig};
use tokenroute_kernels::attend::*;
use tokenroute_kernels::{Isa, KernelInfo};

trait E: Elem + std::fmt::Debug {
    fn from_f32(x: f32) -> Self;
    fn attend() -> &'static [KernelInfo<AttendFn<Self>>];
    fn summary() -> &'static [KernelInfo<SummaryFn<Self>>];
    fn bound() -> &'static [KernelInfo<BoundFn<Self>>];
    const NAME: &'static str;
}
impl E for f32 {
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn attend() -> &'static [KernelInfo<AttendFn<f32>>] {
        ATTEND_F32
    }
    fn summary() -> &'static [KernelInfo<SummaryFn<f32>>] {
        SUMMARY_F32
    }
    fn bound() -> &'static [KernelInfo<BoundFn<f32>>] {
        BOUND_F32
    }
    const NAME: &'static str = "f32";
}
impl E for f16 {
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn attend() -> &'static [KernelInfo<AttendFn<f16>>] {
        ATTEND_F16
    }
    fn summary() -> &'static [KernelInfo<SummaryFn<f16>>] {
        SUMMARY_F16
    }
    fn bound() -> &'static [KernelInfo<BoundFn<f16>>] {
        BOUND_F16
    }
    const NAME: &'static str = "f16";
}
impl E for bf16 {
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn attend() -> &'static [KernelInfo<AttendFn<bf16>>] {
        ATTEND_BF16
    }
    fn summary() -> &'static [KernelInfo<SummaryFn<bf16>>] {
        SUMMARY_BF16
    }
    fn bound() -> &'static [KernelInfo<BoundFn<bf16>>] {
        BOUND_BF16
    }
    const NAME: &'static str = "bf16";
}

/// 64-byte aligned scratch.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);
fn workspace(d: usize) -> Vec<Line> {
    workspace_dv(d, d)
}
fn workspace_dv(d: usize, dv: usize) -> Vec<Line> {
    vec![Line([0; 64]); workspace_bytes_dv(d, dv).unwrap().div_ceil(64) + 1]
}

#[derive(Clone, Debug)]
enum Keys {
    Dense,
    Indices(Vec<u32>),
    /// block, q_block, per, lists (each a list of block ids)
    Blocks(usize, usize, ListsPer, Vec<Vec<u32>>),
}

#[derive(Clone, Debug)]
struct Case<T> {
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    /// V and output head dimension (`d` unless set by `with_dv`).
    dv: usize,
    n_k: usize,
    /// Extra elements per head and per token (strides).
    pad: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    keys: Keys,
    scale: f32,
    causal: bool,
    window: u32,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    out_type: OutType,
    want_lse: bool,
    mass_per_head: Option<bool>,
}

impl<T: E> Case<T> {
    fn q_head(&self) -> usize {
        self.d + self.pad
    }
    fn q_tok(&self) -> usize {
        self.h_q * self.q_head() + self.pad
    }
    fn k_head(&self) -> usize {
        self.d + 2 * self.pad
    }
    fn k_tok(&self) -> usize {
        self.h_kv * self.k_head() + 3 * self.pad
    }
    fn v_head(&self) -> usize {
        self.dv + self.pad
    }
    fn v_tok(&self) -> usize {
        self.h_kv * self.v_head()
    }
    fn o_head(&self) -> usize {
        self.dv + (self.pad + 1) / 2
    }
    fn o_tok(&self) -> usize {
        self.h_q * self.o_head() + self.pad
    }
    fn qe(&self, i: usize, h: usize, e: usize) -> f64 {
        self.q[i * self.q_tok() + h * self.q_head() + e].to_f32() as f64
    }
    fn ke(&self, t: usize, g: usize, e: usize) -> f64 {
        self.k[t * self.k_tok() + g * self.k_head() + e].to_f32() as f64
    }
    fn ve(&self, t: usize, g: usize, e: usize) -> f64 {
        self.v[t * self.v_tok() + g * self.v_head() + e].to_f32() as f64
    }

    #[allow(clippy::too_many_arguments)]
    fn random(
        rng: &mut Rng,
        n_q: usize,
        h_q: usize,
        h_kv: usize,
        d: usize,
        n_k: usize,
        pad: usize,
        keys: Keys,
        causal: bool,
        window: u32,
    ) -> Case<T> {
        let mut c = Case {
            n_q,
            h_q,
            h_kv,
            d,
            dv: d,
            n_k,
            pad,
            q: vec![],
            k: vec![],
            v: vec![],
            keys,
            scale: 1.0 / (d as f32).sqrt(),
            causal,
            window,
            q_pos: vec![],
            k_pos: vec![],
            out_type: OutType::F32,
            want_lse: true,
            mass_per_head: Some(false),
        };
        let gen = |rng: &mut Rng, n: usize| -> Vec<T> {
            (0..n)
                .map(|_| T::from_f32(rng.uniform(-2.0, 2.0)))
                .collect()
        };
        c.q = gen(rng, n_q * c.q_tok());
        c.k = gen(rng, n_k * c.k_tok());
        c.v = gen(rng, n_k * c.v_tok());
        // Keys at positions 0..n_k (with a few gaps); queries at the end.
        let mut p = 0u32;
        for _ in 0..n_k {
            p += 1 + (rng.below(4) == 0) as u32;
            c.k_pos.push(p);
        }
        c.q_pos = (0..n_q).map(|_| rng.below(p as usize + 3) as u32).collect();
        c
    }

    /// The case with V head dimension `dv` (new random values).
    fn with_dv(mut self, rng: &mut Rng, dv: usize) -> Case<T> {
        self.dv = dv;
        self.v = (0..self.n_k * self.v_tok())
            .map(|_| T::from_f32(rng.uniform(-2.0, 2.0)))
            .collect();
        self
    }

    fn lists_len(&self) -> usize {
        match &self.keys {
            Keys::Blocks(_, qb, per, _) => {
                let n_qb = self.n_q.div_ceil(*qb);
                n_qb * match per {
                    ListsPer::Shared => 1,
                    ListsPer::KvHead => self.h_kv,
                    ListsPer::QHead => self.h_q,
                }
            }
            _ => 0,
        }
    }

    /// The key sequence of row (i, h).
    fn sequence(&self, i: usize, h: usize) -> Vec<usize> {
        match &self.keys {
            Keys::Dense => (0..self.n_k).collect(),
            Keys::Indices(v) => v.iter().map(|&x| x as usize).collect(),
            Keys::Blocks(b, qb, per, lists) => {
                let n_qb = self.n_q.div_ceil(*qb);
                let g = h / (self.h_q / self.h_kv);
                let l = match per {
                    ListsPer::Shared => i / qb,
                    ListsPer::KvHead => g * n_qb + i / qb,
                    ListsPer::QHead => h * n_qb + i / qb,
                };
                lists[l]
                    .iter()
                    .flat_map(|&id| (id as usize * b)..((id as usize + 1) * b).min(self.n_k))
                    .collect()
            }
        }
    }

    fn visible(&self, i: usize, t: usize) -> bool {
        if !self.causal {
            return true;
        }
        let (qp, kp) = (self.q_pos[i] as i64, self.k_pos[t] as i64);
        kp <= qp && (self.window == 0 || qp - (self.window as i64) < kp)
    }
}

struct Ref {
    out: Vec<f64>,
    lse: Vec<f64>,
    /// per row: (A, vmax, n visible)
    scale_info: Vec<(f64, f64, usize)>,
    mass: Vec<f64>,
}

fn oracle<T: E>(c: &Case<T>) -> Ref {
    let g = c.h_q / c.h_kv;
    let heads = if c.mass_per_head == Some(true) {
        c.h_kv
    } else {
        1
    };
    let mut r = Ref {
        out: vec![0.0; c.n_q * c.h_q * c.dv],
        lse: vec![f64::NEG_INFINITY; c.n_q * c.h_q],
        scale_info: vec![(0.0, 0.0, 0); c.n_q * c.h_q],
        mass: vec![0.0; heads * c.n_k],
    };
    for i in 0..c.n_q {
        for h in 0..c.h_q {
            let kv = h / g;
            let seq: Vec<usize> = c
                .sequence(i, h)
                .into_iter()
                .filter(|&t| c.visible(i, t))
                .collect();
            let row = i * c.h_q + h;
            if seq.is_empty() {
                continue;
            }
            let mut xs = vec![];
            let (mut a, mut vmax) = (0f64, 0f64);
            for &t in &seq {
                let (mut dot, mut abs) = (0f64, 0f64);
                for e in 0..c.d {
                    dot += c.qe(i, h, e) * c.ke(t, kv, e);
                    abs += (c.qe(i, h, e) * c.ke(t, kv, e)).abs();
                }
                for e in 0..c.dv {
                    vmax = vmax.max(c.ve(t, kv, e).abs());
                }
                a = a.max(abs * c.scale as f64);
                xs.push(dot * c.scale as f64);
            }
            let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ps: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
            let l: f64 = ps.iter().sum();
            for e in 0..c.dv {
                let s: f64 = seq.iter().zip(&ps).map(|(&t, p)| p * c.ve(t, kv, e)).sum();
                r.out[row * c.dv + e] = s / l;
            }
            r.lse[row] = m + l.ln();
            r.scale_info[row] = (a, vmax, seq.len());
            let mh = if heads > 1 { kv } else { 0 };
            for (&t, p) in seq.iter().zip(&ps) {
                r.mass[mh * c.n_k + t] += p / l;
            }
        }
    }
    r
}

const CANARY: u32 = 0x7fa5_a5a5;

struct Got {
    out: Vec<u32>,
    lse: Vec<f32>,
    mass: Vec<f32>,
}

fn run<T: E>(k: &KernelInfo<AttendFn<T>>, c: &Case<T>) -> Got {
    let o_len = (c.n_q * c.o_tok() + 8) * c.out_type.size();
    let mut out_bytes = vec![0xa5u8; o_len];
    let lse_tok = c.h_q + 1;
    let mut lse = vec![f32::from_bits(CANARY); c.n_q * lse_tok + 1];
    let heads = if c.mass_per_head == Some(true) {
        c.h_kv
    } else {
        1
    };
    let mass_head = c.n_k + 3;
    let mut mass = vec![0.0f32; heads * mass_head + 1];
    // Pre-existing mass is added to.
    for (i, m) in mass.iter_mut().enumerate() {
        *m = (i % 3) as f32 * 0.25;
    }
    let mut ws = workspace_dv(c.d, c.dv);
    let mut offsets: Vec<usize> = vec![0];
    let mut ids: Vec<u32> = vec![];
    let keys = match &c.keys {
        Keys::Dense => KeySet::Dense,
        Keys::Indices(v) => KeySet::Indices {
            idx: v.as_ptr(),
            n: v.len(),
        },
        Keys::Blocks(b, qb, per, lists) => {
            assert_eq!(lists.len(), c.lists_len());
            for l in lists {
                ids.extend_from_slice(l);
                offsets.push(ids.len());
            }
            KeySet::Blocks {
                block: *b,
                q_block: *qb,
                offsets: offsets.as_ptr(),
                ids: ids.as_ptr(),
                per: *per,
            }
        }
    };
    let args = AttendArgs {
        q: c.q.as_ptr(),
        n_q: c.n_q,
        h_q: c.h_q,
        d: c.d,
        dv: c.dv,
        q_tok: c.q_tok(),
        q_head: c.q_head(),
        k: c.k.as_ptr(),
        n_k: c.n_k,
        h_kv: c.h_kv,
        k_tok: c.k_tok(),
        k_head: c.k_head(),
        v: c.v.as_ptr(),
        v_tok: c.v_tok(),
        v_head: c.v_head(),
        keys,
        scale: c.scale,
        softcap: 0.0,
        alibi: std::ptr::null(),
        bias: std::ptr::null(),
        bias_head: 0,
        bias_query: 0,
        bias_type: OutType::F32,
        causal: c.causal,
        window: c.window,
        right: 0,
        q_pos: if c.causal {
            c.q_pos.as_ptr()
        } else {
            std::ptr::null()
        },
        k_pos: if c.causal {
            c.k_pos.as_ptr()
        } else {
            std::ptr::null()
        },
        out: out_bytes.as_mut_ptr(),
        out_type: c.out_type,
        o_tok: c.o_tok(),
        o_head: c.o_head(),
        lse: if c.want_lse {
            lse.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        lse_tok,
        mass: if c.mass_per_head.is_some() {
            mass.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        mass_head: if heads > 1 { mass_head } else { 0 },
        workspace: ws.as_mut_ptr() as *mut u8,
    };
    unsafe { (k.f)(&args) };
    // Read back and check that nothing outside the described elements was written.
    let esz = c.out_type.size();
    let mut out = vec![];
    let mut written = vec![false; o_len / esz];
    for i in 0..c.n_q {
        for h in 0..c.h_q {
            for e in 0..c.dv {
                let at = i * c.o_tok() + h * c.o_head() + e;
                written[at] = true;
                out.push(read_out(&out_bytes, c.out_type, at));
            }
        }
    }
    for (at, w) in written.iter().enumerate() {
        if !w {
            for b in 0..esz {
                assert_eq!(
                    out_bytes[at * esz + b],
                    0xa5,
                    "{}: wrote output padding {at}",
                    k.id()
                );
            }
        }
    }
    let mut lse_out = vec![];
    for (at, x) in lse.iter().enumerate() {
        let (i, h) = (at / lse_tok, at % lse_tok);
        if c.want_lse && i < c.n_q && h < c.h_q {
            lse_out.push(*x);
        } else {
            assert_eq!(x.to_bits(), CANARY, "{}: wrote lse padding {at}", k.id());
        }
    }
    let mut mass_out = vec![];
    for (at, x) in mass.iter().enumerate() {
        let base = (at % 3) as f32 * 0.25;
        let (hh, t) = (at / mass_head, at % mass_head);
        if c.mass_per_head.is_some() && hh < heads && t < c.n_k {
            mass_out.push(x - base);
        } else {
            assert_eq!(*x, base, "{}: wrote mass padding {at}", k.id());
        }
    }
    Got {
        out,
        lse: lse_out,
        mass: mass_out,
    }
}

fn read_out(b: &[u8], t: OutType, at: usize) -> u32 {
    match t {
        OutType::F32 => u32::from_le_bytes(b[at * 4..at * 4 + 4].try_into().unwrap()),
        _ => u16::from_le_bytes(b[at * 2..at * 2 + 2].try_into().unwrap()) as u32,
    }
}

fn out_f32(t: OutType, bits: u32) -> f32 {
    match t {
        OutType::F32 => f32::from_bits(bits),
        OutType::F16 => f16::from_bits(bits as u16).to_f32(),
        OutType::BF16 => bf16::from_bits(bits as u16).to_f32(),
    }
}

/// Checks one kernel's result against the oracle; returns the worst error / tolerance.
fn check_against<T: E>(id: &str, c: &Case<T>, got: &Got, r: &Ref) -> f64 {
    let u_out = match c.out_type {
        OutType::F32 => 2f64.powi(-24),
        OutType::F16 => 2f64.powi(-11),
        OutType::BF16 => 2f64.powi(-8),
    };
    let mut worst = 0f64;
    let t = 2f64.powi(-17);
    for row in 0..c.n_q * c.h_q {
        let (a, vmax, n) = r.scale_info[row];
        for e in 0..c.dv {
            let want = r.out[row * c.dv + e];
            let x = out_f32(c.out_type, got.out[row * c.dv + e]) as f64;
            let tol = t * (1.0 + a + n as f64 / 64.0) * vmax + u_out * want.abs() + 1e-37;
            assert!(
                (x - want).abs() <= tol,
                "{id} {}: row {row} e {e}: got {x}, want {want} (tol {tol}) in {c:?}",
                T::NAME
            );
            worst = worst.max((x - want).abs() / tol);
        }
        if c.want_lse {
            let (x, want) = (got.lse[row] as f64, r.lse[row]);
            if want == f64::NEG_INFINITY {
                assert_eq!(x, f64::NEG_INFINITY, "{id}: lse of an empty row {row}");
            } else {
                let tol = t * (1.0 + a + want.abs());
                assert!(
                    (x - want).abs() <= tol,
                    "{id}: lse row {row}: {x} vs {want}"
                );
                worst = worst.max((x - want).abs() / tol);
            }
        }
    }
    if c.mass_per_head.is_some() {
        let rows = (c.n_q * c.h_q) as f64;
        let amax = r.scale_info.iter().map(|s| s.0).fold(0.0, f64::max);
        for (i, (&x, &want)) in got.mass.iter().zip(&r.mass).enumerate() {
            // The harness subtracted the pre-existing value (exact to a few ulps of it).
            let tol = t * (1.0 + amax) * (1.0 + want) * (1.0 + rows / 64.0) + 2f64.powi(-22);
            assert!(
                (x as f64 - want).abs() <= tol,
                "{id}: mass {i}: {x} vs {want} in {c:?}"
            );
        }
    }
    worst
}

/// Runs every tier on the case: each within tolerance of the oracle, all bit-identical
/// to the scalar tier.
fn check_all<T: E>(c: &Case<T>) -> f64 {
    let r = oracle(c);
    let ks = runnable(T::attend());
    let base = run(&ks[0], c);
    let mut worst = check_against(&ks[0].id().to_string(), c, &base, &r);
    for k in &ks[1..] {
        let got = run(k, c);
        let id = k.id().to_string();
        worst = worst.max(check_against(&id, c, &got, &r));
        for (i, (a, b)) in got.out.iter().zip(&base.out).enumerate() {
            assert!(
                a == b || (out_f32(c.out_type, *a).is_nan() && out_f32(c.out_type, *b).is_nan()),
                "{id} differs from scalar at output {i}: {a:#x} vs {b:#x}"
            );
        }
        for (i, (a, b)) in got.lse.iter().zip(&base.lse).enumerate() {
            assert!(
                same_f32(*a, *b),
                "{id} lse {i} differs from scalar: {a} vs {b}"
            );
        }
        for (i, (a, b)) in got.mass.iter().zip(&base.mass).enumerate() {
            assert!(
                same_f32(*a, *b),
                "{id} mass {i} differs from scalar: {a} vs {b}"
            );
        }
    }
    worst
}

/// Random cases of every key form (dense, index lists, block lists of every grouping),
/// masks, strides, output types and mass, for each (d, dv) and head pair, checked on
/// every tier against the oracle; returns the worst error / tolerance.
fn sweep_cases<T: E>(
    rng: &mut Rng,
    dims: &[(usize, usize)],
    heads: &[(usize, usize)],
    max_k: usize,
) -> f64 {
    let mut worst = 0f64;
    for &(d, dv) in dims {
        for &(h_q, h_kv) in heads {
            let n_k = 1 + rng.below(max_k);
            let n_q = 1 + rng.below(9);
            let pad = rng.below(3);
            let causal = rng.below(2) == 0;
            let window = if causal && rng.below(2) == 0 {
                1 + rng.below(40) as u32
            } else {
                0
            };
            let keys = match rng.below(3) {
                0 => Keys::Dense,
                1 => {
                    let n = rng.below(n_k + 5);
                    Keys::Indices((0..n).map(|_| rng.below(n_k) as u32).collect())
                }
                _ => {
                    let b = 1 + rng.below(20);
                    let qb = 1 + rng.below(4);
                    let per = [ListsPer::Shared, ListsPer::KvHead, ListsPer::QHead][rng.below(3)];
                    let nb = n_k.div_ceil(b);
                    let n_lists = n_q.div_ceil(qb)
                        * match per {
                            ListsPer::Shared => 1,
                            ListsPer::KvHead => h_kv,
                            ListsPer::QHead => h_q,
                        };
                    let lists = (0..n_lists)
                        .map(|_| {
                            (0..rng.below(nb + 2))
                                .map(|_| rng.below(nb) as u32)
                                .collect()
                        })
                        .collect();
                    Keys::Blocks(b, qb, per, lists)
                }
            };
            let c: Case<T> = Case::random(rng, n_q, h_q, h_kv, d, n_k, pad, keys, causal, window);
            // dv = d draws nothing more (the cases of the d-only sweep).
            let mut c = if dv == d { c } else { c.with_dv(rng, dv) };
            c.out_type = [OutType::F32, OutType::F16, OutType::BF16][rng.below(3)];
            c.mass_per_head = [None, Some(false), Some(true)][rng.below(3)];
            c.want_lse = rng.below(4) != 0;
            worst = worst.max(check_all(&c));
        }
    }
    worst
}

fn sweep<T: E>() {
    let mut rng = Rng::new(7);
    // Head dims around every vector width and tail, GQA shapes, strides.
    let dims: Vec<(usize, usize)> = [
        1usize, 3, 8, 15, 16, 17, 31, 32, 33, 48, 64, 80, 96, 100, 128,
    ]
    .iter()
    .map(|&d| (d, d))
    .collect();
    let worst = sweep_cases::<T>(&mut rng, &dims, &[(1, 1), (4, 2), (6, 1), (3, 3)], 150);
    eprintln!("{}: worst error / tolerance {worst:.3}", T::NAME);
}

#[test]
fn f32_matches_the_oracle_and_tiers_are_identical() {
    sweep::<f32>();
}
#[test]
fn f16_matches_the_oracle_and_tiers_are_identical() {
    sweep::<f16>();
}
#[test]
fn bf16_matches_the_oracle_and_tiers_are_identical() {
    sweep::<bf16>();
}

#[test]
fn large_head_dims() {
    let mut rng = Rng::new(11);
    for &d in &[192usize, 256, 260] {
        let c: Case<f32> = Case::random(&mut rng, 3, 4, 2, d, 70, 1, Keys::Dense, true, 0);
        check_all(&c);
        let c: Case<bf16> = Case::random(&mut rng, 2, 2, 1, d, 65, 0, Keys::Dense, false, 0);
        check_all(&c);
    }
}

/// A V head dimension different from Q/K's (multi-head latent attention: d = 192,
/// dv = 128; and smaller, larger, odd and tail sizes on both sides): every key form,
/// GQA, masks, strides, output types and mass, against the oracle and bit-identical on
/// every tier.
fn sweep_dv<T: E>(seed: u64) {
    let mut rng = Rng::new(seed);
    let dims = [
        (192usize, 128usize),
        (64, 128),
        (128, 64),
        (1, 3),
        (3, 1),
        (17, 40),
        (40, 17),
        (33, 31),
        (96, 257),
        (257, 96),
        (16, 1),
    ];
    let worst = sweep_cases::<T>(&mut rng, &dims, &[(1, 1), (4, 2), (6, 1), (16, 1)], 200);
    eprintln!("{} (dv != d): worst error / tolerance {worst:.3}", T::NAME);
}

#[test]
fn v_head_dim_differs_f32() {
    sweep_dv::<f32>(71);
}
#[test]
fn v_head_dim_differs_f16() {
    sweep_dv::<f16>(72);
}
#[test]
fn v_head_dim_differs_bf16() {
    sweep_dv::<bf16>(73);
}

/// dv != d: a row's result does not depend on the other queries of the call, and a
/// single visible key returns its V row exactly (no element of K leaks into the
/// output, nothing past dv is written: `run` checks the padding).
#[test]
fn v_head_dim_rows_and_single_key() {
    let mut rng = Rng::new(74);
    for &(d, dv) in &[(192usize, 128usize), (24, 100)] {
        let c: Case<f32> = Case::random(&mut rng, 20, 8, 1, d, 150, 1, Keys::Dense, true, 0);
        let c = c.with_dv(&mut rng, dv);
        for k in runnable(ATTEND_F32) {
            let full = run(&k, &c);
            for i in [0usize, 7, 19] {
                let mut one = c.clone();
                one.n_q = 1;
                let qt = c.q_tok();
                one.q = c.q[i * qt..(i + 1) * qt].to_vec();
                one.q_pos = vec![c.q_pos[i]];
                one.mass_per_head = None;
                let g = run(&k, &one);
                let w = c.h_q * dv;
                assert_eq!(
                    g.out[..],
                    full.out[i * w..(i + 1) * w],
                    "{} query {i}",
                    k.id()
                );
            }
        }
        let mut one: Case<f32> = Case::random(&mut rng, 3, 2, 1, d, 1, 0, Keys::Dense, false, 0);
        one = one.with_dv(&mut rng, dv);
        for k in runnable(ATTEND_F32) {
            let g = run(&k, &one);
            for row in 0..one.n_q * one.h_q {
                for e in 0..dv {
                    assert_eq!(f32::from_bits(g.out[row * dv + e]), one.v[e], "{}", k.id());
                }
            }
        }
    }
}

#[test]
fn empty_subsets_and_fully_masked_rows_give_zeros_and_neg_inf() {
    let mut rng = Rng::new(3);
    // No keys selected.
    let c: Case<f32> = Case::random(
        &mut rng,
        3,
        2,
        1,
        20,
        10,
        0,
        Keys::Indices(vec![]),
        false,
        0,
    );
    for k in runnable(ATTEND_F32) {
        let g = run(&k, &c);
        assert!(g.out.iter().all(|&b| b == 0), "{}", k.id());
        assert!(g.lse.iter().all(|&x| x == f32::NEG_INFINITY), "{}", k.id());
        assert!(g.mass.iter().all(|&x| x == 0.0), "{}", k.id());
    }
    // Every key in the future of every query; and a window that excludes everything.
    let mut c: Case<f32> = Case::random(&mut rng, 4, 2, 2, 33, 90, 1, Keys::Dense, true, 0);
    c.k_pos = (0..90).map(|t| 100 + t as u32).collect();
    c.q_pos = vec![5, 99, 0, 50];
    for k in runnable(ATTEND_F32) {
        let g = run(&k, &c);
        assert!(g.out.iter().all(|&b| b == 0), "{}", k.id());
        assert!(g.lse.iter().all(|&x| x == f32::NEG_INFINITY), "{}", k.id());
    }
    c.k_pos = (0..90).map(|t| t as u32).collect();
    c.q_pos = vec![200, 300, 150, 189];
    c.window = 10;
    check_all(&c);
    for k in runnable(ATTEND_F32) {
        let g = run(&k, &c);
        assert!(g.out.iter().all(|&b| b == 0), "{}", k.id());
    }
    // Some rows empty, others not, in one tile.
    c.q_pos = vec![200, 40, 150, 95];
    check_all(&c);
}

#[test]
fn a_single_visible_key_returns_its_value_exactly() {
    let mut rng = Rng::new(5);
    for &d in &[1usize, 19, 64, 80] {
        let c: Case<f32> = Case::random(
            &mut rng,
            2,
            4,
            2,
            d,
            40,
            2,
            Keys::Indices(vec![17]),
            false,
            0,
        );
        for k in runnable(ATTEND_F32) {
            let g = run(&k, &c);
            for i in 0..2 {
                for h in 0..4 {
                    for e in 0..d {
                        let want = c.ve(17, h / 2, e) as f32;
                        assert_eq!(
                            f32::from_bits(g.out[(i * 4 + h) * d + e]),
                            want,
                            "{}",
                            k.id()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn large_logits_are_stable() {
    let mut rng = Rng::new(9);
    for &scale in &[30.0f32, 1e3, 1e6] {
        let mut c: Case<f32> = Case::random(&mut rng, 5, 2, 1, 40, 130, 0, Keys::Dense, true, 0);
        c.scale = scale;
        c.q_pos = vec![200, 10, 130, 60, 1];
        for k in runnable(ATTEND_F32) {
            let g = run(&k, &c);
            assert!(
                g.out.iter().all(|&b| !f32::from_bits(b).is_nan()),
                "{}",
                k.id()
            );
            assert!(g.lse.iter().all(|x| !x.is_nan()), "{}", k.id());
        }
        // The reference comparison holds with A in the tolerance (the logits' size).
        check_all(&c);
    }
}

#[test]
fn masked_keys_with_non_finite_values_contribute_nothing() {
    let mut rng = Rng::new(13);
    let mut c: Case<f32> = Case::random(&mut rng, 4, 2, 1, 24, 100, 0, Keys::Dense, true, 0);
    c.k_pos = (0..100).map(|t| t as u32).collect();
    c.q_pos = vec![30, 50, 99, 64];
    // Keys 70.. are in the future of queries 0, 1 and 3; poison their K and V.
    let r = oracle(&c);
    let (kt, vt) = (c.k_tok(), c.v_tok());
    for t in [70usize, 80, 97] {
        c.v[t * vt] = f32::NAN;
        c.v[t * vt + 1] = f32::INFINITY;
        c.k[t * kt + 2] = f32::NAN;
    }
    for k in runnable(ATTEND_F32) {
        let g = run(&k, &c);
        for row in [0usize, 1, 2, 3, 6, 7] {
            for e in 0..24 {
                let x = f32::from_bits(g.out[row * 24 + e]) as f64;
                assert!(
                    (x - r.out[row * 24 + e]).abs() < 1e-5,
                    "{} row {row}",
                    k.id()
                );
            }
        }
        // Query 2 sees the poisoned keys: NaN there.
        assert!(f32::from_bits(g.out[4 * 24]).is_nan(), "{}", k.id());
    }
}

#[test]
fn a_nan_query_makes_its_row_nan_only() {
    let mut rng = Rng::new(17);
    let mut c: Case<f32> = Case::random(&mut rng, 3, 2, 2, 20, 50, 0, Keys::Dense, false, 0);
    let qt = c.q_tok();
    c.q[qt + 5] = f32::NAN; // query 1, head 0
    check_all_nan_rows(&c, &[2]);
}

fn check_all_nan_rows(c: &Case<f32>, nan_rows: &[usize]) {
    for k in runnable(ATTEND_F32) {
        let g = run(&k, c);
        for row in 0..c.n_q * c.h_q {
            let nan = (0..c.dv).all(|e| f32::from_bits(g.out[row * c.dv + e]).is_nan());
            assert_eq!(nan, nan_rows.contains(&row), "{} row {row}", k.id());
            assert_eq!(
                g.lse[row].is_nan(),
                nan_rows.contains(&row),
                "{} row {row}",
                k.id()
            );
        }
    }
}

/// NaN inputs of every payload and sign give the canonical quiet NaN wherever a NaN
/// reaches a result (output row, log-sum-exp, attention mass), on every level: the
/// payload a NaN keeps depends on the order of operations, which differs between levels.
#[test]
fn nan_results_are_canonical_on_every_level() {
    let mut rng = Rng::new(23);
    let payloads = [
        0xffc0_0001u32,
        0x7fa0_1234,
        0x7f80_0001,
        0xffff_ffff,
        0x7fc0_0000,
    ];
    for (ci, mass_per_head) in [Some(false), Some(true)].into_iter().enumerate() {
        let mut c: Case<f32> =
            Case::random(&mut rng, 5, 4, 2, 40, 150, ci, Keys::Dense, ci == 1, 0);
        c.mass_per_head = mass_per_head;
        let (qt, kt, vt) = (c.q_tok(), c.k_tok(), c.v_tok());
        for (i, &p) in payloads.iter().enumerate() {
            c.q[(i % c.n_q) * qt + 3 + i] = f32::from_bits(p);
            c.k[(7 + 29 * i) * kt + i] = f32::from_bits(payloads[(i + 1) % 5]);
            c.v[(11 + 31 * i) * vt + 2 * i] = f32::from_bits(payloads[(i + 2) % 5]);
        }
        for k in runnable(ATTEND_F32) {
            let g = run(&k, &c);
            let mut nans = 0;
            let bits = (g.out.iter().copied())
                .chain(g.lse.iter().map(|x| x.to_bits()))
                .chain(g.mass.iter().map(|x| x.to_bits()));
            for x in bits.filter(|&x| f32::from_bits(x).is_nan()) {
                nans += 1;
                assert_eq!(x, 0x7fc0_0000, "{}: a NaN result {x:#x}", k.id());
            }
            assert!(nans > 0, "{}: the case makes NaN results", k.id());
        }
    }
}

/// A row's result does not depend on the other queries of the call (prefill tiles vs
/// decode tiles), bit for bit.
#[test]
fn rows_are_independent_of_the_batch() {
    let mut rng = Rng::new(19);
    for (h_q, h_kv) in [(8, 2), (4, 4), (3, 1)] {
        let c: Case<bf16> = Case::random(&mut rng, 13, h_q, h_kv, 72, 140, 1, Keys::Dense, true, 9);
        for k in runnable(ATTEND_BF16) {
            let full = run(&k, &c);
            for i in [0usize, 5, 12] {
                let mut one = c.clone();
                one.n_q = 1;
                let qt = c.q_tok();
                one.q = c.q[i * qt..(i + 1) * qt].to_vec();
                one.q_pos = vec![c.q_pos[i]];
                one.mass_per_head = None;
                let g = run(&k, &one);
                let w = h_q * c.d;
                assert_eq!(
                    g.out[..],
                    full.out[i * w..(i + 1) * w],
                    "{} query {i}",
                    k.id()
                );
                assert_eq!(g.lse[..], full.lse[i * h_q..(i + 1) * h_q], "{}", k.id());
            }
        }
    }
}

/// Partial results over disjoint key chunks merge into one call's result (within
/// rounding); merge tiers are bit-identical.
#[test]
fn merged_chunks_equal_one_call() {
    let mut rng = Rng::new(23);
    for &(n_k, cuts) in &[
        (300usize, &[64usize, 128, 250][..]),
        (100, &[1, 99][..]),
        (90, &[][..]),
        (50, &[0, 50][..]),
    ] {
        let d = 40;
        let mut whole: Case<f32> = Case::random(&mut rng, 5, 4, 2, d, n_k, 0, Keys::Dense, true, 0);
        whole.mass_per_head = None;
        let r = oracle(&whole);
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(n_k);
        let rows = whole.n_q * whole.h_q;
        let k0 = &runnable(ATTEND_F32)[0];
        let mut parts_o = vec![];
        let mut parts_l = vec![];
        for w in bounds.windows(2) {
            let mut c = whole.clone();
            c.keys = Keys::Indices((w[0] as u32..w[1] as u32).collect());
            let g = run(k0, &c);
            parts_o.extend(g.out.iter().map(|&b| f32::from_bits(b)));
            parts_l.extend(g.lse.iter().cloned());
        }
        let n_parts = bounds.len() - 1;
        let mut results = vec![];
        for mk in runnable(MERGE_F32) {
            let mut out = vec![f32::from_bits(CANARY); rows * (d + 1)];
            let mut lse = vec![0f32; rows];
            let mut ws = vec![0f32; d];
            let a = MergeArgs {
                n_parts,
                n_rows: rows,
                d,
                o: parts_o.as_ptr(),
                part_stride: rows * d,
                row_stride: d,
                lse: parts_l.as_ptr(),
                lse_part_stride: rows,
                out: out.as_mut_ptr() as *mut u8,
                out_type: OutType::F32,
                out_row_stride: d + 1,
                out_lse: lse.as_mut_ptr(),
                workspace: ws.as_mut_ptr(),
            };
            unsafe { (mk.f)(&a) };
            for row in 0..rows {
                assert_eq!(out[row * (d + 1) + d].to_bits(), CANARY);
                let (am, vmax, n) = r.scale_info[row];
                for e in 0..d {
                    let want = r.out[row * d + e];
                    let tol = 2f64.powi(-16) * (1.0 + am + n as f64 / 64.0) * vmax;
                    assert!(
                        ((out[row * (d + 1) + e] as f64) - want).abs() <= tol,
                        "{} row {row}",
                        mk.id()
                    );
                }
                if r.lse[row] == f64::NEG_INFINITY {
                    assert_eq!(lse[row], f32::NEG_INFINITY);
                } else {
                    assert!(
                        (lse[row] as f64 - r.lse[row]).abs() <= 1e-5 * (1.0 + r.lse[row].abs())
                    );
                }
            }
            results.push((mk.id().to_string(), out, lse));
        }
        for (id, o, l) in &results[1..] {
            assert!(
                o.iter().zip(&results[0].1).all(|(a, b)| same_f32(*a, *b)),
                "{id} merge differs"
            );
            assert!(
                l.iter().zip(&results[0].2).all(|(a, b)| same_f32(*a, *b)),
                "{id} merge lse differs"
            );
        }
    }
}

#[test]
fn merge_edge_cases() {
    // All parts empty; a NaN part; a single part is returned as is.
    for mk in runnable(MERGE_F32) {
        let d = 5;
        let o = [1.0f32, 2.0, 3.0, 4.0, 5.0, 9.0, 9.0, 9.0, 9.0, 9.0];
        let run = |lse: [f32; 2], n_parts: usize| {
            let mut out = [0f32; 5];
            let mut ol = [0f32; 1];
            let mut ws = [0f32; 5];
            let a = MergeArgs {
                n_parts,
                n_rows: 1,
                d,
                o: o.as_ptr(),
                part_stride: 5,
                row_stride: 5,
                lse: lse.as_ptr(),
                lse_part_stride: 1,
                out: out.as_mut_ptr() as *mut u8,
                out_type: OutType::F32,
                out_row_stride: 5,
                out_lse: ol.as_mut_ptr(),
                workspace: ws.as_mut_ptr(),
            };
            unsafe { (mk.f)(&a) };
            (out, ol[0])
        };
        let (out, l) = run([f32::NEG_INFINITY; 2], 2);
        assert_eq!(out, [0.0; 5]);
        assert_eq!(l, f32::NEG_INFINITY);
        let (out, l) = run([1.5, f32::NEG_INFINITY], 2);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0], "{}", mk.id());
        assert_eq!(l, 1.5);
        let (out, l) = run([0.0, f32::NAN], 2);
        assert!(out.iter().all(|x| x.is_nan()) && l.is_nan());
        let (out, _) = run([2.0, 0.0], 1);
        assert_eq!(out, [1.0, 2.0, 3.0, 4.0, 5.0]);
    }
}

/// Canonical exp2 against the true value.
#[test]
fn exp2_is_accurate() {
    let mut t = -125.0f32;
    let mut worst = 0f64;
    while t <= 0.0 {
        let got = exp2_f32(t) as f64;
        let want = (t as f64).exp2();
        worst = worst.max((got - want).abs() / want);
        t += 0.0009765625 * 1.37;
    }
    assert!(worst < 2f64.powi(-22), "exp2 relative error {worst}");
    assert_eq!(exp2_f32(0.0), 1.0);
    assert_eq!(exp2_f32(-126.0), 0.0);
    assert_eq!(exp2_f32(f32::NEG_INFINITY), 0.0);
    assert!(exp2_f32(f32::NAN).is_nan());
    assert_eq!(exp2_f32(-1.0), 0.5);
}

#[test]
fn ln_and_exp_f64() {
    for &x in &[1e-300f64, 1e-310, 0.5, 1.0, 1.5, 2.0, 10.0, 1e300] {
        assert!(
            (ln_f64(x) - x.ln()).abs() <= 4.0 * f64::EPSILON * x.ln().abs().max(1.0),
            "{x}"
        );
    }
    for &x in &[-744.0f64, -700.0, -30.0, -1.0, -1e-9, 0.0] {
        let (g, w) = (exp_f64(x), x.exp());
        assert!(
            (g - w).abs() <= 4.0 * f64::EPSILON * w + 1e-320,
            "{x}: {g} vs {w}"
        );
    }
}

fn summary_and_bound<T: E>(rng: &mut Rng) {
    summary_and_bound_of::<T>(rng, &mut |r| r.uniform(-3.0, 3.0));
}

/// [`summary_and_bound`] over q and k drawn by `gen`.
fn summary_and_bound_of<T: E>(rng: &mut Rng, gen: &mut dyn FnMut(&mut Rng) -> f32) {
    for &(d, block, n_k) in &[
        (1usize, 1usize, 5usize),
        (7, 3, 20),
        (16, 16, 64),
        (33, 5, 61),
        (128, 16, 200),
        (80, 32, 33),
    ] {
        let (h_kv, h_q, n_q) = (2, 4, 3);
        let k_tok = h_kv * d + 1;
        let k: Vec<T> = (0..n_k * k_tok).map(|_| T::from_f32(gen(rng))).collect();
        let q_tok = h_q * d + 2;
        let q: Vec<T> = (0..n_q * q_tok).map(|_| T::from_f32(gen(rng))).collect();
        let n_b = n_k.div_ceil(block);
        let mut base: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
        let sks = runnable(T::summary());
        let bks = runnable(T::bound());
        assert_eq!(sks.len(), bks.len());
        for (sk, bk) in sks.iter().zip(&bks) {
            let mut mn = vec![f32::from_bits(CANARY); n_b * h_kv * d + 1];
            let mut mx = mn.clone();
            // Two calls over block ranges, as an engine would update incrementally.
            for (b0, b1) in [(0, n_b / 2), (n_b / 2, n_b)] {
                let a = SummaryArgs {
                    k: k.as_ptr(),
                    n_k,
                    h_kv,
                    d,
                    k_tok,
                    k_head: d,
                    block,
                    b0,
                    b1,
                    kmin: mn.as_mut_ptr(),
                    kmax: mx.as_mut_ptr(),
                };
                unsafe { (sk.f)(&a) };
            }
            assert_eq!(mn[n_b * h_kv * d].to_bits(), CANARY);
            for b in 0..n_b {
                for g in 0..h_kv {
                    for e in 0..d {
                        let vals: Vec<f32> = (b * block..((b + 1) * block).min(n_k))
                            .map(|t| k[t * k_tok + g * d + e].to_f32())
                            .collect();
                        let lo = vals.iter().cloned().fold(f32::INFINITY, f32::min);
                        let hi = vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                        assert_eq!(mn[(b * h_kv + g) * d + e], lo, "{}", sk.id());
                        assert_eq!(mx[(b * h_kv + g) * d + e], hi, "{}", sk.id());
                    }
                }
            }
            let stride = n_b + 2;
            let mut out = vec![f32::from_bits(CANARY); n_q * h_q * stride];
            let mut ws = workspace(d);
            let a = BoundArgs {
                q: q.as_ptr(),
                n_q,
                h_q,
                d,
                q_tok,
                q_head: d,
                kmin: mn.as_ptr(),
                kmax: mx.as_ptr(),
                n_blocks: n_b,
                h_kv,
                out: out.as_mut_ptr(),
                out_stride: stride,
                workspace: ws.as_mut_ptr() as *mut f32,
            };
            unsafe { (bk.f)(&a) };
            for i in 0..n_q {
                for h in 0..h_q {
                    let g = h / 2;
                    for b in 0..n_b {
                        let bound = out[(i * h_q + h) * stride + b] as f64;
                        let true_max = (b * block..((b + 1) * block).min(n_k))
                            .map(|t| {
                                (0..d)
                                    .map(|e| {
                                        q[i * q_tok + h * d + e].to_f32() as f64
                                            * k[t * k_tok + g * d + e].to_f32() as f64
                                    })
                                    .sum::<f64>()
                            })
                            .fold(f64::NEG_INFINITY, f64::max);
                        assert!(
                            bound >= true_max,
                            "{}: bound {bound} < block max {true_max}",
                            bk.id()
                        );
                        // And it is the Quest bound, up to the rounding margin.
                        let quest: f64 = (0..d)
                            .map(|e| {
                                let qe = q[i * q_tok + h * d + e].to_f32() as f64;
                                (qe * mn[(b * h_kv + g) * d + e] as f64)
                                    .max(qe * mx[(b * h_kv + g) * d + e] as f64)
                            })
                            .sum();
                        let abs: f64 = (0..d)
                            .map(|e| {
                                let qe = (q[i * q_tok + h * d + e].to_f32() as f64).abs();
                                qe * (mn[(b * h_kv + g) * d + e]
                                    .abs()
                                    .max(mx[(b * h_kv + g) * d + e].abs()))
                                    as f64
                            })
                            .sum();
                        assert!(
                            bound >= quest && bound <= quest + 1e-5 * (abs + 1.0),
                            "{}",
                            bk.id()
                        );
                    }
                    for b in n_b..stride {
                        assert_eq!(out[(i * h_q + h) * stride + b].to_bits(), CANARY);
                    }
                }
            }
            match &base {
                None => base = Some((mn, mx, out)),
                Some((m0, x0, o0)) => {
                    assert!(
                        mn.iter().zip(m0).all(|(a, b)| same_f32(*a, *b)),
                        "{}",
                        sk.id()
                    );
                    assert!(
                        mx.iter().zip(x0).all(|(a, b)| same_f32(*a, *b)),
                        "{}",
                        sk.id()
                    );
                    assert!(
                        out.iter().zip(o0).all(|(a, b)| same_f32(*a, *b)),
                        "{} differs from scalar",
                        bk.id()
                    );
                }
            }
        }
    }
}

#[test]
fn quest_summary_is_exact_and_the_bound_is_never_below_the_block_max() {
    let mut rng = Rng::new(29);
    summary_and_bound::<f32>(&mut rng);
    summary_and_bound::<f16>(&mut rng);
    summary_and_bound::<bf16>(&mut rng);
}

#[test]
fn quest_bound_holds_for_products_below_the_normal_range() {
    // q and k near 2^-75: most products q_e * k_e round below 2^-126, where the
    // relative margin alone does not cover their rounding.
    let mut rng = Rng::new(30);
    summary_and_bound_of::<f32>(&mut rng, &mut |r| {
        let x = r.uniform(1.0, 2.0) * 2f32.powi(-76 + r.below(4) as i32);
        if r.below(2) == 0 {
            x
        } else {
            -x
        }
    });
    // The tightest case (issue 17): one key, one dimension, a product that rounds down
    // (1e-20 * 3.1e-21 in f32 is 0.34 x 2^-149 below the exact product).
    let (q, k) = (1e-20f32, 3.1e-21f32);
    assert!(((q * k) as f64) < q as f64 * k as f64);
    let (sks, bks) = (runnable(SUMMARY_F32), runnable(BOUND_F32));
    assert_eq!(sks.len(), bks.len());
    for (sk, bk) in sks.iter().zip(&bks) {
        let (mut mn, mut mx) = ([0f32], [0f32]);
        let a = SummaryArgs {
            k: &k,
            n_k: 1,
            h_kv: 1,
            d: 1,
            k_tok: 1,
            k_head: 1,
            block: 1,
            b0: 0,
            b1: 1,
            kmin: mn.as_mut_ptr(),
            kmax: mx.as_mut_ptr(),
        };
        unsafe { (sk.f)(&a) };
        let mut out = [0f32];
        let mut ws = workspace(1);
        let a = BoundArgs {
            q: &q,
            n_q: 1,
            h_q: 1,
            d: 1,
            q_tok: 1,
            q_head: 1,
            kmin: mn.as_ptr(),
            kmax: mx.as_ptr(),
            n_blocks: 1,
            h_kv: 1,
            out: out.as_mut_ptr(),
            out_stride: 1,
            workspace: ws.as_mut_ptr() as *mut f32,
        };
        unsafe { (bk.f)(&a) };
        assert!(
            out[0] as f64 >= q as f64 * k as f64,
            "{}: {:e} < {:e}",
            bk.id(),
            out[0],
            q as f64 * k as f64
        );
    }
}

#[test]
fn quest_bound_holds_when_the_block_max_is_tight() {
    // One key per block: the exact block max is the dot product itself, so any
    // downward rounding would show. Values with long mantissas and cancellation.
    let mut rng = Rng::new(31);
    let d = 96;
    for _ in 0..200 {
        let k: Vec<f32> = (0..d).map(|_| rng.uniform(-1.0, 1.0) * 1e3).collect();
        let q: Vec<f32> = (0..d)
            .map(|e| -k[(e + 1) % d] + rng.uniform(-1e-3, 1e-3))
            .collect();
        for bk in runnable(BOUND_F32) {
            let mut out = [0f32; 1];
            let mut ws = workspace(d);
            let a = BoundArgs {
                q: q.as_ptr(),
                n_q: 1,
                h_q: 1,
                d,
                q_tok: d,
                q_head: d,
                kmin: k.as_ptr(),
                kmax: k.as_ptr(),
                n_blocks: 1,
                h_kv: 1,
                out: out.as_mut_ptr(),
                out_stride: 1,
                workspace: ws.as_mut_ptr() as *mut f32,
            };
            unsafe { (bk.f)(&a) };
            let exact: f64 = (0..d).map(|e| q[e] as f64 * k[e] as f64).sum();
            assert!(out[0] as f64 >= exact, "{}", bk.id());
        }
    }
}

#[test]
fn summary_propagates_nan() {
    let k = [1.0f32, f32::NAN, -2.0, 5.0];
    for sk in runnable(SUMMARY_F32) {
        let (mut mn, mut mx) = ([0f32; 2], [0f32; 2]);
        let a = SummaryArgs {
            k: k.as_ptr(),
            n_k: 2,
            h_kv: 1,
            d: 2,
            k_tok: 2,
            k_head: 2,
            block: 2,
            b0: 0,
            b1: 1,
            kmin: mn.as_mut_ptr(),
            kmax: mx.as_mut_ptr(),
        };
        unsafe { (sk.f)(&a) };
        assert_eq!(mn[0], -2.0);
        assert_eq!(mx[0], 1.0);
        assert!(mn[1].is_nan() && mx[1].is_nan(), "{}", sk.id());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_shapes(seed in 0u64..u64::MAX, d in 1usize..70, n_k in 0usize..140, n_q in 1usize..6,
                     grp in 1usize..4, h_kv in 1usize..3, causal: bool, window in 0u32..30) {
        let mut rng = Rng::new(seed);
        let keys = if n_k > 0 && rng.below(2) == 0 {
            Keys::Indices((0..rng.below(2 * n_k)).map(|_| rng.below(n_k) as u32).collect())
        } else {
            Keys::Dense
        };
        let pad = rng.below(2);
        let mut c: Case<f32> = Case::random(&mut rng, n_q, grp * h_kv, h_kv, d, n_k, pad, keys, causal, if causal { window } else { 0 });
        c.mass_per_head = Some(rng.below(2) == 0);
        check_all(&c);
    }
}

/// The opt-in AVX512-BF16 kernel: within `2^-8 (1 + A) vmax` of the oracle (plus the
/// canonical bound), masked keys still contribute nothing, and where every probability
/// of a block is nonzero it really takes the dot-product path (it differs from the
/// canonical kernel). Runs where the CPU has AVX512-BF16; `TOKENROUTE_REQUIRE_BF16DOT=1`
/// turns a skip into a failure.
#[cfg(target_arch = "x86_64")]
#[test]
fn bf16_dot_product_kernel() {
    if !std::arch::is_x86_feature_detected!("avx512bf16") || !Isa::Avx512.is_supported() {
        assert!(
            std::env::var("TOKENROUTE_REQUIRE_BF16DOT").is_err(),
            "TOKENROUTE_REQUIRE_BF16DOT is set but this CPU lacks AVX512-BF16"
        );
        eprintln!("skipped {}: no AVX512-BF16", ATTEND_BF16_DPBF16[0].id());
        return;
    }
    let k = &ATTEND_BF16_DPBF16[0];
    let mut rng = Rng::new(41);
    let mut differs = false;
    for &(n_q, h_q, h_kv, d, dv, n_k, causal) in &[
        (8usize, 8usize, 2usize, 128usize, 128usize, 300usize, true),
        (16, 1, 1, 64, 64, 130, false),
        (5, 4, 4, 80, 80, 77, true),
        (20, 2, 1, 33, 33, 64, false),
        (3, 4, 1, 257, 257, 150, true),
        // V head dimension different from Q/K's (MLA and tails).
        (8, 16, 1, 192, 128, 200, true),
        (16, 2, 1, 64, 200, 100, false),
        (5, 4, 2, 40, 17, 90, true),
        (20, 1, 1, 3, 1, 70, false),
    ] {
        for keys in [
            Keys::Dense,
            Keys::Indices((0..n_k as u32).filter(|t| t % 3 != 0).collect()),
        ] {
            let c: Case<bf16> = Case::random(&mut rng, n_q, h_q, h_kv, d, n_k, 1, keys, causal, 0);
            let mut c = c.with_dv(&mut rng, dv);
            c.mass_per_head = Some(false);
            let r = oracle(&c);
            let got = run(k, &c);
            let canon = run(&runnable(ATTEND_BF16)[0], &c);
            differs |= got.out != canon.out;
            for row in 0..c.n_q * c.h_q {
                let (a, vmax, n) = r.scale_info[row];
                for e in 0..c.dv {
                    let want = r.out[row * c.dv + e];
                    let x = f32::from_bits(got.out[row * c.dv + e]) as f64;
                    let tol = 2f64.powi(-8) * (1.0 + a) * vmax
                        + 2f64.powi(-17) * (1.0 + a + n as f64 / 64.0) * vmax;
                    assert!(
                        (x - want).abs() <= tol,
                        "{}: row {row} e {e}: {x} vs {want}",
                        k.id()
                    );
                }
            }
        }
    }
    assert!(differs, "the dot-product path never ran");
    // Masked keys with non-finite values contribute nothing on this path too.
    let mut c: Case<bf16> = Case::random(&mut rng, 16, 4, 1, 64, 100, 0, Keys::Dense, true, 0);
    c.k_pos = (0..100).map(|t| t as u32).collect();
    c.q_pos = (0..16).map(|i| 30 + 4 * i as u32).collect();
    let r = oracle(&c);
    let vt = c.v_tok();
    for t in [95usize, 99] {
        c.v[t * vt] = bf16::NAN;
        c.v[t * vt + 3] = bf16::INFINITY;
    }
    let got = run(k, &c);
    for row in 0..c.n_q * c.h_q {
        for e in 0..c.dv {
            let x = f32::from_bits(got.out[row * c.dv + e]) as f64;
            assert!((x - r.out[row * c.dv + e]).abs() < 0.02, "row {row}: {x}");
        }
    }
}
