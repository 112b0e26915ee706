//! Differential target for the attention family: decodes small shapes (queries, heads
//! with GQA groups, head dims of every tail length, keys), strides of either layout,
//! the key set (dense, an index list with repeats and any order, block-sparse lists
//! shared / per KV head / per query head), causal masking by positions, windows, the
//! scale, the output type and the optional outputs (log-sum-exp with a token stride,
//! attention mass shared or per KV head) from the input, runs every ISA level and
//! requires:
//! - bit-identical results on every level (outputs, log-sum-exps, masses, and every
//!   byte around them), as the docs promise;
//! - V head sizes different from the Q/K head size (multi-head latent attention):
//!   sometimes `dv != d`, smaller or larger, V and the output `[.., dv]`;
//! - with finite moderate inputs, agreement with an f64 evaluation within the
//!   documented bound `2^-17 (1 + A + n/64) vmax + u_out |ref|` (lse within
//!   `2^-17 (1 + A + |lse|)`), zeros and `-inf` for a row that sees no key;
//! - the documented error for an out-of-range key index or block id, with nothing
//!   written;
//! - merge: bit-identical on every level, within rounding of the f64 combination, zeros
//!   and `-inf` for an all-empty row;
//! - key-block summaries: exactly the elementwise min / max; bounds: bit-identical on
//!   every level and never below the exact block maximum of `q . k` (also with products
//!   below the normal range);
//! - batches (dense with batch strides, ragged by cu_seqlens, with every key-set form,
//!   explicit positions or an implicit causal alignment): bit-identical on every level
//!   and every sequence bit-identical to a separate call over it (whose own results
//!   the modes above check against the oracle); rows outside every sequence untouched;
//!   bad cu_seqlens and out-of-range keys of any sequence: the documented error with
//!   nothing written.
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use tokenroute::{
    AttendBias, AttendElement, AttendExtras, AttendOptions, Batch, BatchStrides, BiasData,
    CausalAlign, ErrorKind, Heads, HeadsMut, Kernels, KeySubset, ListsPer, MatrixMut, OutElement,
};
use tokenroute_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 14 {
        12 => batch::<f32, f32>(&mut inp),
        13 => batch::<bf16, f16>(&mut inp),
        0 | 1 => attention::<f32, f32>(&mut inp),
        2 => attention::<f16, f16>(&mut inp),
        3 => attention::<bf16, bf16>(&mut inp),
        4 => attention::<f16, f32>(&mut inp),
        5 => attention::<bf16, f32>(&mut inp),
        6 => attention::<f32, bf16>(&mut inp),
        7 => attention::<f32, f16>(&mut inp),
        8 => merge(&mut inp),
        9 => summary_bound::<f32>(&mut inp),
        10 => summary_bound::<f16>(&mut inp),
        _ => summary_bound::<bf16>(&mut inp),
    }
});

trait Num: Copy + core::fmt::Debug + Default {
    fn of32(x: f32) -> Self;
    fn to32(self) -> f32;
    fn bits(self) -> u32;
    /// Output rounding unit.
    const U: f64;
    /// Half the smallest positive subnormal (rounding error of a subnormal result).
    const E: f64;
}
impl Num for f32 {
    fn of32(x: f32) -> f32 {
        x
    }
    fn to32(self) -> f32 {
        self
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
    const U: f64 = 5.960464477539063e-8; // 2^-24
    const E: f64 = 7.006492321624085e-46; // 2^-150
}
impl Num for f16 {
    fn of32(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn to32(self) -> f32 {
        self.to_f32()
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
    const U: f64 = 4.8828125e-4; // 2^-11
    const E: f64 = 2.9802322387695312e-8; // 2^-25
}
impl Num for bf16 {
    fn of32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn to32(self) -> f32 {
        self.to_f32()
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
    const U: f64 = 3.90625e-3; // 2^-8
    const E: f64 = 4.591774807899561e-41; // 2^-134
}

/// A value: moderate (exact small multiples, values in about [-4, 4]) or, in special
/// mode, anything of the palette (NaN, infinities, subnormals, huge values).
fn value(inp: &mut Input, special: bool) -> f32 {
    if special {
        inp.f32()
    } else {
        match inp.u8() % 4 {
            0 => (inp.u8() as i8) as f32 / 32.0,
            _ => (inp.u16() as i16) as f32 / 8192.0,
        }
    }
}

/// A `[n, h, d]` tensor of either layout with padding.
struct T3<T> {
    n: usize,
    h: usize,
    d: usize,
    ts: usize,
    hs: usize,
    data: Vec<T>,
}

impl<T: Copy> T3<T> {
    fn layout(inp: &mut Input, n: usize, h: usize, d: usize) -> (usize, usize, usize) {
        let pad = if inp.bool() { 0 } else { inp.below(3) };
        let pad2 = if inp.bool() { 0 } else { inp.below(3) };
        let (ts, hs) = if inp.u8() % 4 == 0 {
            // Head-major.
            let ts = d + pad;
            (ts, n.max(1) * ts + pad2)
        } else {
            let hs = d + pad;
            (h * hs + pad2, hs)
        };
        let span = if n == 0 || h == 0 {
            0
        } else {
            (n - 1) * ts + (h - 1) * hs + d
        };
        (ts, hs, span)
    }

    fn new(
        inp: &mut Input,
        n: usize,
        h: usize,
        d: usize,
        mut gen: impl FnMut(&mut Input) -> T,
    ) -> T3<T> {
        let (ts, hs, span) = Self::layout(inp, n, h, d);
        let data = (0..span).map(|_| gen(inp)).collect();
        T3 {
            n,
            h,
            d,
            ts,
            hs,
            data,
        }
    }

    fn at(&self, t: usize, h: usize, e: usize) -> usize {
        t * self.ts + h * self.hs + e
    }

    fn view(&self) -> Heads<'_, T> {
        Heads::new(&self.data, self.n, self.h, self.d, self.ts, self.hs).unwrap()
    }

    /// The tensor with head size `dv` (token-major, one element of padding per head),
    /// element `(t, h, e)` taken from element `(t, h, e % d)` (no further input read).
    fn with_dim(&self, dv: usize) -> T3<T> {
        let (hs, ts) = (dv + 1, self.h * (dv + 1) + 1);
        let span = if self.n == 0 || self.h == 0 {
            0
        } else {
            (self.n - 1) * ts + (self.h - 1) * hs + dv
        };
        // (span > 0: the source holds at least one element.)
        let mut data = if span == 0 {
            Vec::new()
        } else {
            vec![self.data[0]; span]
        };
        for t in 0..self.n {
            for h in 0..self.h {
                for e in 0..dv {
                    data[t * ts + h * hs + e] = self.data[self.at(t, h, e % self.d)];
                }
            }
        }
        T3 {
            n: self.n,
            h: self.h,
            d: dv,
            ts,
            hs,
            data,
        }
    }
}

const CANARY: f32 = 12345.5;

fn attention<T: AttendElement + Num, O: OutElement + Num>(inp: &mut Input) {
    let special = inp.u8() % 8 == 0;
    let n_q = inp.below(5);
    let h_kv = 1 + inp.below(2);
    let h_q = h_kv * (1 + inp.below(2));
    let d = 1 + inp.len(69);
    let n_k = inp.len(150);
    let q = T3::new(inp, n_q, h_q, d, |i| T::of32(value(i, special)));
    let k = T3::new(inp, n_k, h_kv, d, |i| T::of32(value(i, special)));
    let v = T3::new(inp, n_k, h_kv, d, |i| T::of32(value(i, special)));
    // Key set.
    let mut want_err = None;
    let (idx, offsets, ids, bs, qb, per);
    let kind = inp.u8() % 3;
    match kind {
        1 => {
            let c = inp.len(200);
            let mut l: Vec<u32> = (0..c).map(|_| inp.below(n_k.max(1) - 1) as u32).collect();
            if n_k == 0 {
                l.clear();
            }
            if inp.u8() % 16 == 0 {
                let at = inp.below(l.len());
                l.insert(at, (n_k + inp.below(2)) as u32);
                want_err = Some(ErrorKind::OutOfRange);
            }
            idx = l;
            (offsets, ids, bs, qb, per) = (vec![], vec![], 0, 0, ListsPer::Shared);
        }
        2 => {
            bs = 1 + inp.below(20);
            qb = 1 + inp.below(3);
            per = [ListsPer::Shared, ListsPer::KvHead, ListsPer::QHead][inp.below(2)];
            let n_blocks = n_k.div_ceil(bs);
            let groups = match per {
                ListsPer::Shared => 1,
                ListsPer::KvHead => h_kv,
                ListsPer::QHead => h_q,
            };
            let n_lists = n_q.div_ceil(qb) * groups;
            let mut o = vec![0usize];
            let mut b = vec![];
            for _ in 0..n_lists {
                let c = if n_blocks == 0 {
                    0
                } else {
                    inp.below(n_blocks.min(12))
                };
                for _ in 0..c {
                    b.push(inp.below(n_blocks - 1) as u32);
                }
                o.push(b.len());
            }
            if inp.u8() % 16 == 0 && !b.is_empty() {
                let at = inp.below(b.len() - 1);
                b[at] = (n_blocks + inp.below(2)) as u32;
                want_err = Some(ErrorKind::OutOfRange);
            }
            (offsets, ids, idx) = (o, b, vec![]);
        }
        _ => {
            (idx, offsets, ids, bs, qb, per) = (vec![], vec![], vec![], 0, 0, ListsPer::Shared);
        }
    }
    let keys = match kind {
        1 => KeySubset::Indices(&idx),
        2 => KeySubset::Blocks {
            block_size: bs,
            query_block: qb,
            offsets: &offsets,
            ids: &ids,
            per,
        },
        _ => KeySubset::Dense,
    };
    // Masking and scale.
    let causal = inp.bool();
    let window = if inp.u8() % 4 == 0 {
        inp.below(40) as u32
    } else {
        0
    };
    let masked = causal || window > 0;
    let q_pos: Vec<u32> = (0..n_q).map(|_| inp.below(200) as u32).collect();
    let k_pos: Vec<u32> = if inp.bool() {
        (0..n_k as u32).collect()
    } else {
        (0..n_k).map(|_| inp.below(200) as u32).collect()
    };
    let scale = if inp.bool() {
        None
    } else {
        Some(value(inp, false) * 0.5)
    };
    let sc = scale.unwrap_or((1.0 / (d as f64).sqrt()) as f32) as f64;
    let opts = AttendOptions {
        scale,
        causal,
        window,
        q_positions: masked.then_some(&q_pos[..]),
        k_positions: masked.then_some(&k_pos[..]),
        ..Default::default()
    };
    // Outputs.
    let (ots, ohs, ospan) = T3::<O>::layout(inp, n_q, h_q, d);
    let olen = ospan + 2;
    let want_lse = inp.bool();
    let lse_tok = if inp.bool() { 0 } else { h_q + inp.below(2) };
    let lse_eff = if lse_tok == 0 { h_q } else { lse_tok };
    let lse_len = if n_q == 0 {
        0
    } else {
        (n_q - 1) * lse_eff + h_q
    } + 1;
    let mass_mode = inp.u8() % 3; // 0: none, 1: shared, 2: per KV head
    let mass_hs = n_k + inp.below(2);
    let mass_len = match mass_mode {
        1 => n_k + 1,
        2 => (h_kv - 1) * mass_hs + n_k + 1,
        _ => 0,
    };
    let mass0: Vec<f32> = (0..mass_len)
        .map(|_| if inp.bool() { 0.0 } else { value(inp, false) })
        .collect();
    // A logit softcap (read last, so older inputs decode as before).
    let softcap = match inp.u8() % 8 {
        1 => Some(0.5f32),
        2 => Some(4.0),
        3 => Some(50.0),
        4 => Some(1.0 + inp.below(64) as f32 * 0.75),
        _ => None,
    };
    // ALiBi slopes (positions then always given).
    let slopes: Vec<f32> = (0..h_q).map(|h| 0.5f32.powi(h as i32 % 9)).collect();
    let alibi = inp.u8() % 4 == 0;
    // A finite bias tensor [h_q][n_q][n_k], sometimes broadcast over heads or queries
    // (-inf entries are checked by tests/attend_logits.rs).
    let (with_bias, bh, bq) = match inp.u8() % 8 {
        0 => (true, n_q * n_k, n_k),
        1 => (true, 0, n_k),
        2 => (true, n_k, 0),
        _ => (false, 0, 0),
    };
    let bias_data: Vec<f32> = if with_bias {
        (0..h_q * n_q * n_k)
            .map(|_| inp.below(64) as f32 * 0.25 - 8.0)
            .collect()
    } else {
        Vec::new()
    };
    // Its element type, from the shape (no input byte, so older inputs keep their
    // meaning): the values (multiples of 1/4 in [-8, 8)) are exact in f16 and bf16.
    let bias16: Vec<f16> = bias_data.iter().map(|&x| f16::from_f32(x)).collect();
    let bias_b: Vec<bf16> = bias_data.iter().map(|&x| bf16::from_f32(x)).collect();
    let bias_elems = match (n_q + n_k + h_q) % 3 {
        0 => BiasData::F32(&bias_data),
        1 => BiasData::F16(&bias16),
        _ => BiasData::BF16(&bias_b),
    };
    let opts = AttendOptions {
        softcap,
        alibi_slopes: alibi.then_some(&slopes[..]),
        bias: with_bias.then_some(AttendBias {
            data: bias_elems,
            head_stride: bh,
            query_stride: bq,
            batch_stride: 0,
        }),
        q_positions: (masked || alibi).then_some(&q_pos[..]),
        k_positions: (masked || alibi).then_some(&k_pos[..]),
        ..opts
    };
    let cap = softcap.map_or(0.0, |c| c as f64);
    // A V head size dv different from d (multi-head latent attention), read last: V
    // becomes [n_k, h_kv, dv] (derived from the V drawn above), the output [n_q, h_q, dv]
    // (token-major, padded).
    let dv = match inp.u8() % 8 {
        1 => 1 + inp.len(69),
        2 => d + 1 + inp.below(40),
        3 => (d / 2).max(1),
        _ => d,
    };
    let v = if dv == d { v } else { v.with_dim(dv) };
    let (ots, ohs, olen) = if dv == d {
        (ots, ohs, olen)
    } else {
        let (ts, hs) = (h_q * (dv + 1) + 2, dv + 1);
        let span = if n_q == 0 {
            0
        } else {
            (n_q - 1) * ts + (h_q - 1) * hs + dv
        };
        (ts, hs, span + 2)
    };

    type Got = (Vec<u32>, Vec<u32>, Vec<u32>);
    let mut first: Option<Got> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![O::of32(CANARY); olen];
        let mut lse = vec![CANARY; lse_len];
        let mut mass = mass0.clone();
        let r = kern.attention(
            q.view(),
            k.view(),
            v.view(),
            keys,
            &opts,
            HeadsMut::new(&mut out, n_q, h_q, dv, ots, ohs).unwrap(),
            AttendExtras {
                lse: want_lse.then_some((&mut lse[..], lse_tok)),
                mass: match mass_mode {
                    1 => Some((&mut mass[..], 0)),
                    2 => Some((&mut mass[..], mass_hs)),
                    _ => None,
                },
            },
        );
        assert_eq!(
            r.as_ref().err().map(|e| e.kind),
            want_err,
            "{:?}: attention {r:?}",
            kern.isa()
        );
        let got: Got = (
            out.iter().map(|x| x.bits()).collect(),
            lse.iter().map(|x| x.to_bits()).collect(),
            mass.iter().map(|x| x.to_bits()).collect(),
        );
        if want_err.is_some() {
            assert!(
                got.0.iter().all(|&b| b == O::of32(CANARY).bits()),
                "written on error"
            );
            assert!(
                got.1.iter().all(|&b| b == CANARY.to_bits()),
                "written on error"
            );
            assert!(
                got.2 == mass0.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "written on error"
            );
            continue;
        }
        match &first {
            Some(f) => {
                assert!(got.0 == f.0, "{:?}: out differs from scalar", kern.isa());
                assert!(got.1 == f.1, "{:?}: lse differs from scalar", kern.isa());
                assert!(got.2 == f.2, "{:?}: mass differs from scalar", kern.isa());
                continue;
            }
            None => first = Some(got),
        }
        // The first level (scalar): the layout and the f64 oracle.
        let mut written = vec![false; olen];
        let g = h_q / h_kv;
        let mut mass_ref = vec![0f64; mass_len];
        // Probabilities added into each element (a key listed twice counts twice).
        let mut mass_terms = vec![0f64; mass_len];
        let mut amax = 0f64;
        let mut rows = 0usize;
        for i in 0..n_q {
            for h in 0..h_q {
                let kv = h / g;
                let seq: Vec<usize> = match keys {
                    KeySubset::Dense => (0..n_k).collect(),
                    KeySubset::Indices(l) => l.iter().map(|&x| x as usize).collect(),
                    KeySubset::SeqIndices { .. } => unreachable!("single calls only"),
                    KeySubset::Blocks { .. } => {
                        let n_qb = n_q.div_ceil(qb);
                        let l = match per {
                            ListsPer::Shared => i / qb,
                            ListsPer::KvHead => kv * n_qb + i / qb,
                            ListsPer::QHead => h * n_qb + i / qb,
                        };
                        ids[offsets[l]..offsets[l + 1]]
                            .iter()
                            .flat_map(|&b| (b as usize * bs)..((b as usize + 1) * bs).min(n_k))
                            .collect()
                    }
                };
                let seq: Vec<usize> = seq
                    .into_iter()
                    .filter(|&t| {
                        !masked || {
                            let (qp, kp) = (q_pos[i] as i64, k_pos[t] as i64);
                            kp <= qp && (window == 0 || qp - (window as i64) < kp)
                        }
                    })
                    .collect();
                for e in 0..dv {
                    written[out_at(i, h, e, ots, ohs)] = true;
                }
                let lse_got = want_lse.then(|| lse[i * lse_eff + h]);
                if seq.is_empty() {
                    for e in 0..dv {
                        assert_eq!(
                            out[out_at(i, h, e, ots, ohs)].bits(),
                            O::of32(0.0).bits(),
                            "empty row not zero"
                        );
                    }
                    if let Some(l) = lse_got {
                        assert_eq!(l, f32::NEG_INFINITY, "lse of an empty row");
                    }
                    continue;
                }
                if special {
                    continue;
                }
                rows += 1;
                let (mut a, mut vmax) = (0f64, 0f64);
                let mut xs = vec![];
                for &t in &seq {
                    let (mut dot, mut abs) = (0f64, 0f64);
                    for e in 0..d {
                        let p = q.data[q.at(i, h, e)].to32() as f64
                            * k.data[k.at(t, kv, e)].to32() as f64;
                        dot += p;
                        abs += p.abs();
                    }
                    for e in 0..dv {
                        vmax = vmax.max((v.data[v.at(t, kv, e)].to32() as f64).abs());
                    }
                    let mut x = match softcap {
                        Some(c) => c as f64 * (dot * sc / c as f64).tanh(),
                        None => dot * sc,
                    };
                    let mut abs = abs * sc.abs();
                    if alibi {
                        let b = -(slopes[h] as f64) * (q_pos[i] as f64 - k_pos[t] as f64).abs();
                        x += b;
                        abs += b.abs();
                    }
                    if with_bias {
                        let b = bias_data[h * bh + i * bq + t] as f64;
                        x += b;
                        abs += b.abs();
                    }
                    a = a.max(abs);
                    xs.push(x);
                }
                amax = amax.max(a);
                let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let ps: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
                let l: f64 = ps.iter().sum();
                // A softcap adds 2^-20 c vmax (header, tkr_attention_options.softcap).
                let tol0 = 2f64.powi(-17) * (1.0 + a + seq.len() as f64 / 64.0) * vmax
                    + 2f64.powi(-20) * cap * vmax;
                for e in 0..dv {
                    let want = seq
                        .iter()
                        .zip(&ps)
                        .map(|(&t, p)| p * v.data[v.at(t, kv, e)].to32() as f64)
                        .sum::<f64>()
                        / l;
                    let x = out[out_at(i, h, e, ots, ohs)].to32() as f64;
                    let tol = tol0 + O::U * want.abs() + O::E + 1e-37;
                    assert!(
                        (x - want).abs() <= tol,
                        "out ({i}, {h}, {e}): got {x}, want {want}, tol {tol}"
                    );
                }
                if let Some(lg) = lse_got {
                    let want = m + l.ln();
                    let tol = 2f64.powi(-17) * (1.0 + a + want.abs()) + 2f64.powi(-20) * cap;
                    assert!(
                        (lg as f64 - want).abs() <= tol,
                        "lse ({i}, {h}): {lg} vs {want}"
                    );
                }
                if mass_mode > 0 {
                    let base = if mass_mode == 2 { kv * mass_hs } else { 0 };
                    for (&t, p) in seq.iter().zip(&ps) {
                        mass_ref[base + t] += p / l;
                        mass_terms[base + t] += 1.0;
                    }
                }
            }
        }
        for (j, w) in written.iter().enumerate() {
            if !w {
                assert_eq!(
                    out[j].bits(),
                    O::of32(CANARY).bits(),
                    "written outside the rows at {j}"
                );
            }
        }
        if want_lse {
            for (j, l) in lse.iter().enumerate() {
                let inside = n_q > 0 && j < (n_q - 1) * lse_eff + h_q && j % lse_eff < h_q;
                if !inside {
                    assert_eq!(l.to_bits(), CANARY.to_bits(), "lse written outside at {j}");
                }
            }
        }
        if mass_mode > 0 && !special {
            // The header's bound (tkr_attention_options.mass); 2^-24 N (|m| + S) is the
            // f32 summation of N probabilities (found with 150 copies of one key).
            for (j, (&x, &add)) in mass.iter().zip(&mass_ref).enumerate() {
                let want = mass0[j] as f64 + add;
                let m0 = mass0[j].abs() as f64;
                let tol = 2f64.powi(-17) * (1.0 + amax) * (1.0 + add) * (1.0 + rows as f64 / 64.0)
                    + 2f64.powi(-24) * mass_terms[j] * (m0 + add)
                    + 2f64.powi(-20) * cap * (1.0 + rows as f64 / 64.0) * (1.0 + add)
                    + 2f64.powi(-22) * (1.0 + m0);
                assert!((x as f64 - want).abs() <= tol, "mass {j}: {x} vs {want}");
            }
            assert_eq!(
                mass[mass_len - 1].to_bits(),
                mass0[mass_len - 1].to_bits(),
                "mass past the end"
            );
        }
    }
}

fn out_at(i: usize, h: usize, e: usize, ts: usize, hs: usize) -> usize {
    i * ts + h * hs + e
}

fn merge(inp: &mut Input) {
    let special = inp.u8() % 8 == 0;
    let n_parts = inp.below(4);
    let n_rows = inp.below(6);
    let d = 1 + inp.len(40);
    let rs = d + inp.below(2);
    let ps = n_rows * rs + inp.below(3);
    let parts: Vec<f32> = (0..n_parts * ps + 1).map(|_| value(inp, special)).collect();
    let lps = n_rows + inp.below(2);
    let lse: Vec<f32> = (0..n_parts * lps + 1)
        .map(|_| match inp.u8() % 6 {
            0 => f32::NEG_INFINITY,
            1 if special => inp.f32(),
            _ => value(inp, false) * 8.0,
        })
        .collect();
    let ors = d + inp.below(2);
    let olen = if n_rows == 0 {
        0
    } else {
        (n_rows - 1) * ors + d
    } + 1;
    let out_kind = inp.u8() % 3;
    let with_lse = inp.bool();
    let mut first: Option<(Vec<u32>, Vec<u32>)> = None;
    for kern in Kernels::all_supported() {
        let mut ol = vec![CANARY; n_rows + 1];
        let run = |kern: &Kernels, ol: &mut [f32]| -> Vec<u32> {
            macro_rules! go {
                ($t:ty) => {{
                    let mut out = vec![<$t as Num>::of32(CANARY); olen];
                    kern.attention_merge::<$t>(
                        n_parts,
                        &parts,
                        ps,
                        rs,
                        &lse,
                        lps,
                        MatrixMut::new(&mut out, n_rows, d, ors).unwrap(),
                        with_lse.then_some(&mut ol[..n_rows]),
                    )
                    .unwrap();
                    out.iter().map(|x| x.bits() as u32).collect::<Vec<u32>>()
                }};
            }
            match out_kind {
                0 => go!(f32),
                1 => go!(f16),
                _ => go!(bf16),
            }
        };
        let out = run(kern, &mut ol);
        let got = (out, ol.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
        if let Some(f) = &first {
            assert!(got == *f, "{:?}: merge differs from scalar", kern.isa());
            continue;
        }
        // The oracle.
        let u = [f32::U, f16::U, bf16::U][out_kind as usize];
        // Results in the output type's subnormal range round to its fixed grid.
        let e_out = [<f32 as Num>::E, <f16 as Num>::E, <bf16 as Num>::E][out_kind as usize];
        let to32 = |b: u32| match out_kind {
            0 => f32::from_bits(b),
            1 => f16::from_bits(b as u16).to_f32(),
            _ => bf16::from_bits(b as u16).to_f32(),
        };
        let canary_bits = match out_kind {
            0 => CANARY.to_bits(),
            1 => f16::of32(CANARY).bits(),
            _ => bf16::of32(CANARY).bits(),
        };
        assert_eq!(
            *got.0.last().unwrap(),
            canary_bits,
            "merge wrote past the rows"
        );
        assert_eq!(got.1[n_rows], CANARY.to_bits());
        for r in 0..n_rows {
            for e in d..ors.min(if r + 1 < n_rows { ors } else { d }) {
                assert_eq!(got.0[r * ors + e], canary_bits, "merge wrote in a row gap");
            }
            let ls: Vec<f64> = (0..n_parts).map(|i| lse[i * lps + r] as f64).collect();
            if special || ls.iter().any(|x| x.is_nan()) {
                continue;
            }
            let m = ls.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            if m == f64::NEG_INFINITY {
                for e in 0..d {
                    assert_eq!(to32(got.0[r * ors + e]), 0.0, "empty merged row");
                }
                if with_lse {
                    assert_eq!(f32::from_bits(got.1[r]), f32::NEG_INFINITY);
                }
                continue;
            }
            let ws: Vec<f64> = ls.iter().map(|l| (l - m).exp()).collect();
            let sum: f64 = ws.iter().sum();
            let omax = (0..n_parts)
                .flat_map(|i| (0..d).map(move |e| (i, e)))
                .map(|(i, e)| (parts[i * ps + r * rs + e] as f64).abs())
                .fold(0.0, f64::max);
            for e in 0..d {
                let want: f64 = (0..n_parts)
                    .map(|i| ws[i] / sum * parts[i * ps + r * rs + e] as f64)
                    .sum();
                let x = to32(got.0[r * ors + e]) as f64;
                let tol =
                    (n_parts as f64 + 1.0) * 2f64.powi(-22) * omax + u * want.abs() + e_out + 1e-37;
                assert!(
                    (x - want).abs() <= tol,
                    "merge row {r} e {e}: {x} vs {want} (tol {tol})"
                );
            }
            if with_lse {
                let want = m + sum.ln();
                let x = f32::from_bits(got.1[r]) as f64;
                assert!(
                    (x - want).abs() <= 2f64.powi(-20) * (1.0 + want.abs()),
                    "merged lse {x} vs {want}"
                );
            }
        }
        first = Some(got);
    }
}

fn summary_bound<T: AttendElement + Num>(inp: &mut Input) {
    // Special (any palette value: the bound is only checked bit for bit), tiny (moderate
    // values times 2^-72: products below the normal range, where the bound needs its
    // absolute margin) or moderate.
    let mode = inp.u8() % 8;
    let special = mode == 0;
    let scale = if mode == 1 { 2f32.powi(-72) } else { 1.0 };
    let value = |i: &mut Input, special: bool| value(i, special) * scale;
    let n_k = inp.len(120);
    let h_kv = 1 + inp.below(2);
    let d = 1 + inp.len(69);
    let bs = 1 + inp.below(20);
    let k = T3::new(inp, n_k, h_kv, d, |i| T::of32(value(i, special)));
    let n_blocks = n_k.div_ceil(bs);
    let b0 = inp.below(n_blocks);
    let b1 = b0 + inp.below(n_blocks - b0);
    let slen = n_blocks * h_kv * d + 1;
    let mut first: Option<(Vec<u32>, Vec<u32>)> = None;
    for kern in Kernels::all_supported() {
        let mut kmin = vec![CANARY; slen];
        let mut kmax = vec![CANARY; slen];
        kern.key_block_summary(k.view(), bs, b0..b1, &mut kmin, &mut kmax)
            .unwrap();
        let got = (
            kmin.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            kmax.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        );
        if let Some(f) = &first {
            assert!(got == *f, "{:?}: summary differs", kern.isa());
            continue;
        }
        for (j, (&mn, &mx)) in kmin.iter().zip(&kmax).enumerate() {
            let b = j / (h_kv * d);
            if b < b0 || b >= b1 || j == slen - 1 {
                assert_eq!(
                    mn.to_bits(),
                    CANARY.to_bits(),
                    "summary written outside at {j}"
                );
                assert_eq!(
                    mx.to_bits(),
                    CANARY.to_bits(),
                    "summary written outside at {j}"
                );
                continue;
            }
            let (g, e) = ((j / d) % h_kv, j % d);
            let vals: Vec<f32> = (b * bs..((b + 1) * bs).min(n_k))
                .map(|t| k.data[k.at(t, g, e)].to32())
                .collect();
            if vals.iter().any(|x| x.is_nan()) {
                assert!(
                    mn.is_nan() && mx.is_nan(),
                    "NaN in block {b} not propagated"
                );
            } else {
                let lo = vals.iter().cloned().fold(f32::INFINITY, f32::min);
                let hi = vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                assert!(
                    mn == lo && mx == hi,
                    "summary ({b}, {g}, {e}): {mn} {mx} vs {lo} {hi}"
                );
            }
        }
        first = Some(got);
    }
    // Bounds over the whole summary.
    let n_q = inp.below(4);
    let h_q = h_kv * (1 + inp.below(2));
    let q = T3::new(inp, n_q, h_q, d, |i| T::of32(value(i, special)));
    let scalar = Kernels::for_isa(tokenroute::Isa::Scalar).unwrap();
    let mut kmin = vec![0f32; slen];
    let mut kmax = vec![0f32; slen];
    scalar
        .key_block_summary(k.view(), bs, 0..n_blocks, &mut kmin, &mut kmax)
        .unwrap();
    let os = n_blocks + inp.below(2);
    let blen = if n_q * h_q == 0 {
        0
    } else {
        (n_q * h_q - 1) * os + n_blocks
    } + 1;
    let mut first: Option<Vec<u32>> = None;
    for kern in Kernels::all_supported() {
        let mut bound = vec![CANARY; blen];
        kern.key_block_bound(q.view(), &kmin, &kmax, n_blocks, h_kv, &mut bound, os)
            .unwrap();
        let got: Vec<u32> = bound.iter().map(|x| x.to_bits()).collect();
        if let Some(f) = &first {
            assert!(got == *f, "{:?}: bound differs", kern.isa());
            continue;
        }
        assert_eq!(
            bound[blen - 1].to_bits(),
            CANARY.to_bits(),
            "bound written past the end"
        );
        for i in 0..n_q {
            for h in 0..h_q {
                let row = i * h_q + h;
                let g = h / (h_q / h_kv);
                for b in 0..n_blocks {
                    let x = bound[row * os + b];
                    if special {
                        continue;
                    }
                    let exact = (b * bs..((b + 1) * bs).min(n_k))
                        .map(|t| {
                            (0..d)
                                .map(|e| {
                                    q.data[q.at(i, h, e)].to32() as f64
                                        * k.data[k.at(t, g, e)].to32() as f64
                                })
                                .sum::<f64>()
                        })
                        .fold(f64::NEG_INFINITY, f64::max);
                    assert!(
                        x as f64 >= exact,
                        "bound ({i}, {h}, {b}) = {x} below the block max {exact}"
                    );
                }
                for b in n_blocks..os {
                    if row + 1 < n_q * h_q {
                        assert_eq!(
                            bound[row * os + b].to_bits(),
                            CANARY.to_bits(),
                            "bound gap written"
                        );
                    }
                }
            }
        }
        first = Some(got);
    }
}

/// A batch (see the module doc): sequences of up to 6 queries and 80 keys.
fn batch<T: AttendElement + Num, O: OutElement + Num>(inp: &mut Input) {
    let n_seqs = inp.below(4);
    let h_kv = 1 + inp.below(1);
    let h_q = h_kv * (1 + inp.below(2));
    let d = 1 + inp.len(40);
    let ragged = inp.bool();
    // Per-sequence lengths; dense batches share one shape.
    let (nq0, nk0) = (inp.below(6), inp.len(80));
    let lens: Vec<(usize, usize)> = (0..n_seqs)
        .map(|_| {
            if ragged {
                (inp.below(6), inp.len(80))
            } else {
                (nq0, nk0)
            }
        })
        .collect();
    let mut want_err = None;
    // Ragged: offsets with unused rows before and after the sequences.
    let (mut cu_q, mut cu_k) = (vec![inp.below(2)], vec![inp.below(2)]);
    for &(nq, nk) in &lens {
        cu_q.push(cu_q[cu_q.len() - 1] + nq);
        cu_k.push(cu_k[cu_k.len() - 1] + nk);
    }
    let (tq, tk) = if ragged {
        (cu_q[n_seqs] + inp.below(2), cu_k[n_seqs] + inp.below(2))
    } else {
        (nq0, nk0)
    };
    if ragged && n_seqs > 0 && inp.u8() % 16 == 0 {
        // Decreasing offsets, or past the rows.
        let b = inp.below(n_seqs - 1);
        if inp.bool() && cu_q[b] > 0 {
            cu_q[b + 1] = cu_q[b] - 1;
            want_err = Some(ErrorKind::InvalidArgument);
        } else {
            cu_k[n_seqs] = tk + 1;
            want_err = Some(ErrorKind::OutOfRange);
        }
    }
    let n_b = if ragged { 1 } else { n_seqs.max(1) };
    let q = T3::new(inp, tq * n_b, h_q, d, |i| T::of32(value(i, false)));
    let k = T3::new(inp, tk * n_b, h_kv, d, |i| T::of32(value(i, false)));
    let v = T3::new(inp, tk * n_b, h_kv, d, |i| T::of32(value(i, false)));
    // Dense batches: sequence b is rows b * n .. of the tensors (stride n * ts when
    // token-major; head-major tensors are [h][n_b * n] so that works too), or shared.
    let strides = BatchStrides {
        q: tq * q.ts,
        k: if inp.u8() % 4 == 0 { 0 } else { tk * k.ts },
        v: tk * v.ts,
        out: 0,
        lse: 0,
        mass: 0,
        q_positions: tq,
        k_positions: tk,
    };
    let rows = |b: usize| -> (usize, usize, usize, usize) {
        if ragged {
            // Saturating: the bad-offsets case above makes them decrease on purpose.
            (
                cu_q[b],
                cu_q[b + 1].saturating_sub(cu_q[b]),
                cu_k[b],
                cu_k[b + 1].saturating_sub(cu_k[b]),
            )
        } else {
            (b * tq, tq, b * tk, tk)
        }
    };
    // Key sets: dense, one shared list, per-sequence lists, block lists.
    let kind = inp.u8() % 4;
    let min_k = (0..n_seqs).map(|b| rows(b).3).min().unwrap_or(0);
    let shared: Vec<u32> = (0..inp.len(30))
        .filter(|_| min_k > 0)
        .map(|_| inp.below(min_k - 1) as u32)
        .collect();
    let (mut ind, mut ioff) = (vec![], vec![0usize]);
    let (bs, qb) = (1 + inp.below(16), 1 + inp.below(3));
    let (mut boff, mut bids) = (vec![0usize], vec![]);
    for b in 0..n_seqs {
        let (_, nq, _, nk) = rows(b);
        for _ in 0..inp.len(30) {
            if nk > 0 {
                ind.push(inp.below(nk - 1) as u32);
            }
        }
        ioff.push(ind.len());
        let nblk = nk.div_ceil(bs);
        for _ in 0..nq.div_ceil(qb) * h_kv {
            for _ in 0..inp.below(nblk.min(6)) {
                bids.push(inp.below(nblk - 1) as u32);
            }
            boff.push(bids.len());
        }
    }
    if want_err.is_none() && n_seqs > 0 && inp.u8() % 16 == 0 {
        // A key index or block id past one sequence's keys.
        let b = inp.below(n_seqs - 1);
        let nk = rows(b).3;
        match kind {
            2 => {
                ind.insert(ioff[b], nk as u32);
                for o in &mut ioff[b + 1..] {
                    *o += 1;
                }
                want_err = Some(ErrorKind::OutOfRange);
            }
            3 if boff[boff.len() - 1] > 0 => {
                let at = inp.below(bids.len() - 1);
                // The sequence whose lists hold entry `at`.
                let mut l0 = 0;
                let mut owner = 0;
                for s in 0..n_seqs {
                    let n_l = rows(s).1.div_ceil(qb) * h_kv;
                    if boff[l0] <= at && at < boff[l0 + n_l] {
                        owner = s;
                    }
                    l0 += n_l;
                }
                bids[at] = rows(owner).3.div_ceil(bs) as u32;
                want_err = Some(ErrorKind::OutOfRange);
            }
            _ => {}
        }
    }
    let keys = match kind {
        1 => KeySubset::Indices(&shared),
        2 => KeySubset::SeqIndices {
            indices: &ind,
            offsets: &ioff,
        },
        3 => KeySubset::Blocks {
            block_size: bs,
            query_block: qb,
            offsets: &boff,
            ids: &bids,
            per: ListsPer::KvHead,
        },
        _ => KeySubset::Dense,
    };
    let causal = inp.bool();
    let window = if inp.u8() % 4 == 0 {
        inp.below(40) as u32
    } else {
        0
    };
    let align = [
        CausalAlign::Positions,
        CausalAlign::TopLeft,
        CausalAlign::BottomRight,
    ][inp.below(2)];
    let q_pos: Vec<u32> = (0..tq * n_b).map(|_| inp.below(100) as u32).collect();
    let k_pos: Vec<u32> = (0..tk * n_b).map(|_| inp.below(100) as u32).collect();
    let explicit = align == CausalAlign::Positions;
    // Sinks (any values, -inf and NaN included), never with a mass output.
    let with_mass = inp.bool();
    let sinks: Vec<f32> = (0..h_q)
        .map(|_| {
            let sp = inp.u8() % 8 == 0;
            value(inp, sp)
        })
        .collect();
    let with_sinks = !with_mass && inp.bool();
    let opts = AttendOptions {
        causal,
        window,
        align,
        q_positions: explicit.then_some(&q_pos[..]),
        k_positions: explicit.then_some(&k_pos[..]),
        sinks: with_sinks.then_some(&sinks[..]),
        ..Default::default()
    };
    // Outputs: token-major with padding; lse packed; mass over every key row.
    let ots = h_q * d + inp.below(2);
    let olen = tq * n_b * ots + 1;
    let mass0: Vec<f32> = (0..tk * n_b + 1).map(|_| value(inp, false)).collect();
    let batch = if ragged {
        Batch::Ragged {
            cu_seqlens_q: &cu_q,
            cu_seqlens_k: &cu_k,
        }
    } else {
        Batch::Dense {
            n: n_seqs,
            strides: BatchStrides {
                out: tq * ots,
                lse: tq * h_q,
                mass: tk,
                ..strides
            },
        }
    };
    type Got = (Vec<u32>, Vec<u32>, Vec<u32>);
    let mut first: Option<Got> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![O::of32(CANARY); olen];
        let mut lse = vec![CANARY; tq * n_b * h_q + 1];
        let mut mass = mass0.clone();
        let r = kern.attention_batch(
            Heads::new(&q.data, tq, h_q, d, q.ts, q.hs).unwrap(),
            Heads::new(&k.data, tk, h_kv, d, k.ts, k.hs).unwrap(),
            Heads::new(&v.data, tk, h_kv, d, v.ts, v.hs).unwrap(),
            keys,
            &opts,
            &batch,
            HeadsMut::new(&mut out, tq, h_q, d, ots, d).unwrap(),
            AttendExtras {
                lse: Some((&mut lse[..], 0)),
                mass: with_mass.then_some((&mut mass[..], 0)),
            },
        );
        assert_eq!(
            r.as_ref().err().map(|e| e.kind),
            want_err,
            "{:?}: batch {r:?}",
            kern.isa()
        );
        let got: Got = (
            out.iter().map(|x| x.bits()).collect(),
            lse.iter().map(|x| x.to_bits()).collect(),
            mass.iter().map(|x| x.to_bits()).collect(),
        );
        if want_err.is_some() {
            assert!(
                got.0.iter().all(|&b| b == O::of32(CANARY).bits())
                    && got.1.iter().all(|&b| b == CANARY.to_bits())
                    && got.2 == mass0.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "written on error"
            );
            continue;
        }
        if let Some(f) = &first {
            assert!(&got == f, "{:?}: batch differs from scalar", kern.isa());
            continue;
        }
        // Every sequence against a separate call; the rest untouched.
        let mut o1 = vec![O::of32(CANARY); olen];
        let mut l1 = vec![CANARY; tq * n_b * h_q + 1];
        let mut m1 = mass0.clone();
        let mut list0 = 0;
        for b in 0..n_seqs {
            let (q0, nq, k0, nk) = rows(b);
            let kb = if ragged || strides.k != 0 { k0 } else { 0 };
            let n_l = nq.div_ceil(qb) * h_kv;
            let keys1 = match keys {
                KeySubset::SeqIndices { indices, offsets } => {
                    KeySubset::Indices(&indices[offsets[b]..offsets[b + 1]])
                }
                KeySubset::Blocks { .. } => KeySubset::Blocks {
                    block_size: bs,
                    query_block: qb,
                    offsets: &boff[list0..list0 + n_l + 1],
                    ids: &bids,
                    per: ListsPer::KvHead,
                },
                k => k,
            };
            list0 += n_l;
            let o = AttendOptions {
                q_positions: explicit.then_some(&q_pos[q0..q0 + nq]),
                k_positions: explicit.then_some(&k_pos[k0..k0 + nk]),
                ..opts
            };
            // The sequence's rows: the tensor from its first row on (either layout).
            fn sub<T: AttendElement>(t: &T3<T>, r0: usize, n: usize) -> Heads<'_, T> {
                let data = t.data.get(r0 * t.ts..).unwrap_or(&[]);
                Heads::new(data, n, t.h, t.d, t.ts, t.hs).unwrap()
            }
            kern.attention(
                sub(&q, q0, nq),
                sub(&k, kb, nk),
                sub(&v, k0, nk),
                keys1,
                &o,
                HeadsMut::new(&mut o1[q0 * ots..], nq, h_q, d, ots, d).unwrap(),
                AttendExtras {
                    lse: Some((&mut l1[q0 * h_q..], 0)),
                    mass: with_mass.then_some((&mut m1[k0..], 0)),
                },
            )
            .unwrap();
        }
        assert!(
            got.0 == o1.iter().map(|x| x.bits()).collect::<Vec<_>>(),
            "out != separate calls"
        );
        assert!(
            got.1 == l1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "lse != separate calls"
        );
        assert!(
            got.2 == m1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "mass != separate calls"
        );
        first = Some(got);
    }
}
