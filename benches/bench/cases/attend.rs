//! Sparse attention (bit-identical on every level, so checked bit-exact against scalar;
//! the opt-in AVX512-BF16 path within its documented bound): decode over 2048 selected
//! of 8192 cached keys (32 query heads over 8 and 32 KV heads, bound: reading the touched
//! K/V bytes) and prefill of 512 queries over 1024 selected keys, causal by position and
//! (full run) not, f32, bf16 and bf16 with the AVX512-BF16 dot products (8 query heads
//! over 2 KV heads here, so that the scalar check stays short; `cargo bench --bench
//! attend` has the full 32-head shape; bound: the FMA peak); and dense decode over all
//! 8192 keys (full run), against which the 25% subset's time gives the speedup routing
//! buys; a ragged-batch causal prefill (8 sequences of 64 .. 1024 tokens packed back to
//! back, one call, implicit bottom-right alignment) beside one causal sequence of the
//! same work (1474 tokens: the same number of visible (query, key) pairs within 0.01%),
//! whose FLOP rates (and % of the FMA peak) compare the batch driver with one long
//! sequence. Long-context LLM decode (issue 13) over 16-bit caches at 8192 keys: f16 and
//! bf16, SmolLM2's 9/3 heads with head_dim 64 and 32/8 heads with head_dim 128, dense
//! and block-sparse at Quest budgets (per-query-head lists of 16-key blocks, the first
//! and newest blocks among them, the heads of a KV group sharing their list); bound:
//! reading the K/V bytes touched. Multi-head latent attention (DeepSeek: Q/K head size
//! 192, V head size 128): `decode_mla` (16 query heads, each its own KV head, over
//! 2048 of 8192 keys) and `prefill_causal_mla`, each beside its `_padded` twin, the
//! workaround without a separate V head size (V zero-padded to 192, the output sliced
//! back to 128): the ratio of the two times is what the option saves.

use super::{bits, values};
use crate::{Bound, Case};
use tokenroute::{
    bf16, f16, AttendBias, AttendElement, AttendExtras, AttendOptions, Batch, BiasData,
    CausalAlign, Heads, HeadsMut, Isa, Kernels, KeySubset, ListsPer,
};

struct Attend<T> {
    name: &'static str,
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    /// V's (and the output's) head size; `d` unless a `_mla` case.
    dv: usize,
    n_k: usize,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    sel: Vec<u32>,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    out: Vec<f32>,
    visible: usize,
    mode: Mode,
    /// Block-sparse keys (per query head lists) instead of `sel` / dense.
    blocks: Option<Blocks>,
    /// Upper bounds of |q|, |k|, |v| (for the bf16-dot check).
    amax: [f32; 3],
    /// The `*_bias` cases' bias tensor: `[n_q][n_k]`, shared by the heads.
    bias: Vec<f32>,
}

/// Per-query-head block lists of one decode query.
struct Blocks {
    size: usize,
    offsets: Vec<usize>,
    ids: Vec<u32>,
    /// Keys per list, and distinct keys read per KV head (the heads of a group share).
    keys: usize,
}

/// How a case attends.
#[derive(Clone, Copy, Default)]
struct Mode {
    /// All `n_k` keys (`KeySubset::Dense`) instead of the index list.
    dense: bool,
    /// Causal by position (the decode query follows every key, so it sees them all).
    causal: bool,
    /// The opt-in AVX512-BF16 dot-product path (bf16; other levels ignore it).
    bf16_dot: bool,
    /// A ragged batch of self-attention sequences (`cu_seqlens` for queries and keys),
    /// causal by implicit bottom-right alignment.
    ragged: Option<&'static [usize]>,
    /// Per-head sink logits ([`SINKS`]).
    sinks: bool,
    /// A logit softcap (Gemma 2's 50).
    softcap: bool,
    /// ALiBi slopes ([`SLOPES`]).
    alibi: bool,
    /// An additive bias tensor `[n_q][n_k]` broadcast over the heads.
    bias: bool,
}

/// ALiBi slopes of the `*_alibi` cases (BLOOM's 2^(-8 (h + 1) / 32)).
const SLOPES: [f32; 32] = {
    let mut s = [0f32; 32];
    let mut h = 0;
    let mut x = 1f32;
    // 2^(-(h + 1) / 4), BLOOM's slopes for 32 heads (products of the rounded 2^(-1/4)).
    while h < 32 {
        x *= 0.840_896_4;
        s[h] = x;
        h += 1;
    }
    s
};

/// Sink logits of the `*_sinks` cases (one per query head, at most 32 heads).
const SINKS: [f32; 32] = [2.0; 32];

impl<T> Attend<T> {
    fn n_keys(&self) -> usize {
        if let Some(b) = &self.blocks {
            b.keys
        } else if self.mode.dense {
            self.n_k
        } else {
            self.sel.len()
        }
    }
}

impl<T: AttendElement> Case for Attend<T> {
    fn family(&self) -> &'static str {
        "attend"
    }
    fn name(&self) -> String {
        format!("{}_{}", self.name, T::DTYPE.name())
    }
    fn shape(&self) -> String {
        format!(
            "{}q_{}of{}k_{}/{}h_d{}{}{}",
            self.n_q,
            self.n_keys(),
            self.n_k,
            self.h_q,
            self.h_kv,
            self.d,
            if self.dv == self.d {
                String::new()
            } else {
                format!("_dv{}", self.dv)
            },
            self.blocks
                .as_ref()
                .map_or(String::new(), |b| format!("_b{}", b.size))
        )
    }
    fn bytes(&self) -> u64 {
        (self.n_keys() * self.h_kv * (self.d + self.dv) * std::mem::size_of::<T>()) as u64
    }
    fn flops(&self) -> u64 {
        (2 * self.visible * (self.d + self.dv) * self.h_q) as u64
    }
    fn bound(&self) -> Bound {
        if self.n_q == 1 {
            Bound::Read(self.bytes())
        } else {
            Bound::Fma
        }
    }
    fn run(&mut self, k: &'static Kernels) {
        if let Some(cu) = self.mode.ragged {
            let opts = AttendOptions {
                causal: true,
                align: CausalAlign::BottomRight,
                ..Default::default()
            };
            return k
                .attention_batch(
                    Heads::dense(&self.q, self.n_q, self.h_q, self.d).unwrap(),
                    Heads::dense(&self.k, self.n_k, self.h_kv, self.d).unwrap(),
                    Heads::dense(&self.v, self.n_k, self.h_kv, self.dv).unwrap(),
                    KeySubset::Dense,
                    &opts,
                    &Batch::Ragged {
                        cu_seqlens_q: cu,
                        cu_seqlens_k: cu,
                    },
                    HeadsMut::dense(&mut self.out, self.n_q, self.h_q, self.dv).unwrap(),
                    AttendExtras::default(),
                )
                .unwrap();
        }
        let opts = AttendOptions {
            causal: self.mode.causal,
            q_positions: Some(&self.q_pos),
            k_positions: Some(&self.k_pos),
            bf16_dot: self.mode.bf16_dot,
            sinks: self.mode.sinks.then_some(&SINKS[..self.h_q]),
            softcap: self.mode.softcap.then_some(50.0),
            alibi_slopes: self.mode.alibi.then_some(&SLOPES[..self.h_q]),
            bias: self.mode.bias.then_some(AttendBias {
                data: BiasData::F32(&self.bias),
                head_stride: 0,
                query_stride: self.n_k,
                batch_stride: 0,
            }),
            ..Default::default()
        };
        k.attention(
            Heads::dense(&self.q, self.n_q, self.h_q, self.d).unwrap(),
            Heads::dense(&self.k, self.n_k, self.h_kv, self.d).unwrap(),
            Heads::dense(&self.v, self.n_k, self.h_kv, self.dv).unwrap(),
            if let Some(b) = &self.blocks {
                KeySubset::Blocks {
                    block_size: b.size,
                    query_block: 1,
                    offsets: &b.offsets,
                    ids: &b.ids,
                    per: ListsPer::QHead,
                }
            } else if self.mode.dense {
                KeySubset::Dense
            } else {
                KeySubset::Indices(&self.sel)
            },
            &opts,
            HeadsMut::dense(&mut self.out, self.n_q, self.h_q, self.dv).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
    }
    fn output(&self) -> Vec<u32> {
        bits(&self.out)
    }
    /// Bit-exact, except the opt-in AVX512-BF16 path: within its documented bound
    /// `2^-8 (1 + A) vmax` beyond the canonical path's `2^-17 (1 + A + n/64) vmax +
    /// u_out |exact|` (twice that here: scalar has its own), with `A <= scale * d *
    /// max|q| * max|k|` (a valid upper bound of the row's `scale * sum |q k|`).
    fn check(&self, scalar: &[u32], got: &[u32]) -> Result<&'static str, String> {
        if !self.mode.bf16_dot || scalar == got {
            return if scalar == got {
                Ok("bit-exact")
            } else {
                Err("outputs differ".into())
            };
        }
        let [qmax, kmax, vmax] = self.amax;
        let a = qmax * kmax * (self.d as f32).sqrt();
        let n = self.n_keys() as f32;
        let tol = 2f32.powi(-8) * (1.0 + a) * vmax
            + 2.0 * (2f32.powi(-17) * (1.0 + a + n / 64.0) * vmax + 2f32.powi(-24) * vmax);
        for (i, (&s, &g)) in scalar.iter().zip(got).enumerate() {
            let (s, g) = (f32::from_bits(s), f32::from_bits(g));
            if !((s - g).abs() <= tol) {
                return Err(format!("element {i}: {g} vs scalar {s} (bound {tol:.3e})"));
            }
        }
        Ok("within bf16-dot bound")
    }
    fn time_level(&self, isa: Isa) -> bool {
        isa != Isa::Scalar || self.n_q == 1
    }
}

#[allow(clippy::too_many_arguments)]
fn attend<T: AttendElement>(
    name: &'static str,
    conv: fn(f32) -> T,
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    sel: Vec<u32>,
    mode: Mode,
) -> Attend<T> {
    let (q, k, v) = (
        values(n_q * h_q * d, 11),
        values(n_k * h_kv * d, 12),
        values(n_k * h_kv * d, 13),
    );
    let amax = |x: &[f32]| x.iter().fold(0f32, |m, y| m.max(y.abs()));
    let k_pos: Vec<u32> = (0..n_k as u32).collect();
    let q_pos: Vec<u32> = if n_q == 1 {
        vec![n_k as u32]
    } else if sel.is_empty() {
        // Every key: the queries are the last n_q tokens.
        (n_k - n_q..n_k).map(|p| p as u32).collect()
    } else {
        sel[sel.len() - n_q..].to_vec()
    };
    let visible = if let Some(cu) = mode.ragged {
        cu.windows(2)
            .map(|w| (w[1] - w[0]) * (w[1] - w[0] + 1) / 2)
            .sum()
    } else {
        q_pos
            .iter()
            .map(|&p| {
                let seen = |t: u32| !mode.causal || t <= p;
                if mode.dense {
                    k_pos.iter().filter(|&&t| seen(t)).count()
                } else {
                    sel.iter().filter(|&&t| seen(k_pos[t as usize])).count()
                }
            })
            .sum()
    };
    Attend::<T> {
        name,
        n_q,
        h_q,
        h_kv,
        d,
        dv: d,
        n_k,
        q: q.iter().copied().map(conv).collect(),
        k: k.iter().copied().map(conv).collect(),
        v: v.iter().copied().map(conv).collect(),
        sel,
        q_pos,
        k_pos,
        out: vec![0.0; n_q * h_q * d],
        visible,
        mode,
        blocks: None,
        bias: if mode.bias {
            (0..n_q * n_k)
                .map(|j| ((j * 7919) % 64) as f32 / 32.0 - 1.0)
                .collect()
        } else {
            Vec::new()
        },
        // The conversion to bf16 rounds to nearest: at most 2^-8 larger in magnitude.
        amax: [amax(&q), amax(&k), amax(&v)].map(|m| m * (1.0 + 2f32.powi(-8))),
    }
}

/// A multi-head latent attention case: Q/K head size `d`, V head size `dv` (new V
/// values); with `pad_to`, V is zero-padded to that head size instead (the workaround:
/// the same attention, an output of `pad_to` per head whose first `dv` are the result).
fn mla<T: AttendElement>(
    mut c: Attend<T>,
    conv: fn(f32) -> T,
    dv: usize,
    pad_to: Option<usize>,
) -> Attend<T> {
    let vals = values(c.n_k * c.h_kv * dv, 13);
    let w = pad_to.unwrap_or(dv);
    let mut v = vec![conv(0.0); c.n_k * c.h_kv * w];
    for (row, src) in vals.chunks(dv).enumerate() {
        for (e, &x) in src.iter().enumerate() {
            v[row * w + e] = conv(x);
        }
    }
    c.v = v;
    c.dv = w;
    c.out = vec![0.0; c.n_q * c.h_q * w];
    let amax = vals.iter().fold(0f32, |m, y| m.max(y.abs()));
    c.amax[2] = amax * (1.0 + 2f32.powi(-8));
    c
}

/// Quest-like block lists for one decode query over `n_k` keys: per KV head, the first
/// and newest of `n_k / size` blocks plus pseudo-random others, `budget / size` in all,
/// ascending; the query heads of a group share their KV head's list.
fn quest_lists(n_k: usize, h_q: usize, h_kv: usize, size: usize, budget: usize) -> Blocks {
    let nb = n_k.div_ceil(size);
    let k = (budget / size).clamp(2, nb);
    let mut offsets = vec![0];
    let mut ids = Vec::new();
    for h in 0..h_q {
        // Stand-in bounds: pseudo-random block scores per KV head; the first and newest
        // blocks are forced, the k - 2 best of the others taken.
        let score = values(nb, 100 + (h / (h_q / h_kv)) as u64);
        let mut mid: Vec<u32> = (1..nb as u32 - 1).collect();
        mid.sort_by(|&a, &b| score[b as usize].total_cmp(&score[a as usize]));
        let mut list: Vec<u32> = mid[..k - 2].to_vec();
        list.extend([0, nb as u32 - 1]);
        list.sort_unstable();
        ids.extend(list);
        offsets.push(ids.len());
    }
    let keys = k * size - (nb * size - n_k);
    Blocks {
        size,
        offsets,
        ids,
        keys,
    }
}

/// LLM decode over a 16-bit cache of 8192 keys: dense, or block-sparse at `budget`.
fn decode_llm<T: AttendElement>(
    conv: fn(f32) -> T,
    h_q: usize,
    h_kv: usize,
    d: usize,
    budget: Option<(usize, usize)>,
) -> Box<dyn Case> {
    let n_k = 8192;
    let causal = Mode {
        causal: true,
        dense: budget.is_none(),
        ..Mode::default()
    };
    let name = if budget.is_some() {
        "decode8k_quest"
    } else {
        "decode8k_dense"
    };
    let mut c = attend::<T>(name, conv, 1, h_q, h_kv, d, n_k, Vec::new(), causal);
    if let Some((size, keys)) = budget {
        let b = quest_lists(n_k, h_q, h_kv, size, keys);
        c.visible = b.keys; // every key of a list is before the query
        c.blocks = Some(b);
    }
    Box::new(c)
}

/// The ragged batch: sequences of 64, 128, 192, 256, 384, 512, 768 and 1024 tokens
/// (sum of n (n + 1) / 2: 1 087 104 visible pairs).
const CU_RAGGED: &[usize] = &[0, 64, 192, 384, 640, 1024, 1536, 2304, 3328];
/// One sequence of the same work: 1474 * 1475 / 2 = 1 087 075 pairs (-0.003%).
const LONG: usize = 1474;
/// Quick run: 16 .. 256 tokens (68 256 pairs) against 369 tokens (68 265 pairs).
const CU_RAGGED_QUICK: &[usize] = &[0, 16, 48, 96, 160, 256, 384, 576, 832];
const LONG_QUICK: usize = 369;

/// Queries of the MLA prefill cases.
fn n_q_mla(quick: bool) -> usize {
    if quick {
        128
    } else {
        512
    }
}

pub fn cases(quick: bool) -> Vec<Box<dyn Case>> {
    let mut v: Vec<Box<dyn Case>> = Vec::new();
    let causal = Mode {
        causal: true,
        ..Mode::default()
    };
    let sel_d: Vec<u32> = (0..2048u32).map(|j| 4 * j + (j * 7919) % 4).collect();
    let kvs: &[usize] = if quick { &[8] } else { &[8, 32] };
    for &h_kv in kvs {
        v.push(Box::new(attend::<f32>(
            "decode",
            |x| x,
            1,
            32,
            h_kv,
            128,
            8192,
            sel_d.clone(),
            causal,
        )));
        v.push(Box::new(attend::<bf16>(
            "decode",
            bf16::from_f32,
            1,
            32,
            h_kv,
            128,
            8192,
            sel_d.clone(),
            causal,
        )));
    }
    // Dense attention over all 8192 keys (4x the bytes of the 25% subset above): the
    // speedup routing buys is the ratio of the two times. With sinks: their cost.
    v.push(Box::new(attend::<f32>(
        "decode_sinks",
        |x| x,
        1,
        32,
        8,
        128,
        8192,
        sel_d.clone(),
        Mode {
            sinks: true,
            ..causal
        },
    )));
    if !quick {
        v.push(Box::new(attend::<f32>(
            "decode_dense",
            |x| x,
            1,
            32,
            8,
            128,
            8192,
            Vec::new(),
            Mode {
                dense: true,
                ..causal
            },
        )));
        v.push(Box::new(attend::<bf16>(
            "decode_dense",
            bf16::from_f32,
            1,
            32,
            8,
            128,
            8192,
            Vec::new(),
            Mode {
                dense: true,
                ..causal
            },
        )));
    }
    let n_q = if quick { 128 } else { 512 };
    let sel_p: Vec<u32> = (0..1024u32).map(|j| 2 * j).collect();
    let dot = Mode {
        bf16_dot: true,
        ..causal
    };
    let full = Mode::default();
    let sinks = Mode {
        sinks: true,
        ..causal
    };
    let softcap = Mode {
        softcap: true,
        ..causal
    };
    let alibi = Mode {
        alibi: true,
        ..causal
    };
    let bias = Mode {
        bias: true,
        ..causal
    };
    // With sinks, a softcap, ALiBi or a bias: the cost of each option against
    // prefill_causal.
    let mut prefill: Vec<(&'static str, Mode, bool)> = vec![
        ("prefill_causal", causal, true),
        ("prefill_causal_sinks", sinks, true),
        ("prefill_causal_softcap", softcap, true),
        ("prefill_causal_alibi", alibi, true),
        ("prefill_causal_bias", bias, true),
        ("prefill_causal", causal, false),
        ("prefill_causal_sinks", sinks, false),
        ("prefill_causal_softcap", softcap, false),
        ("prefill_causal_alibi", alibi, false),
        ("prefill_causal_bias", bias, false),
        ("prefill_causal_dot", dot, false),
    ];
    if !quick {
        prefill.extend([
            ("prefill_full", full, true),
            ("prefill_full", full, false),
            (
                "prefill_full_dot",
                Mode {
                    bf16_dot: true,
                    ..full
                },
                false,
            ),
        ]);
    }
    // Ragged prefill: 8 sequences in one call, and one sequence of the same work.
    let ragged = Mode {
        dense: true,
        ragged: Some(if quick { CU_RAGGED_QUICK } else { CU_RAGGED }),
        ..causal
    };
    let n_long = if quick { LONG_QUICK } else { LONG };
    let n_tot = ragged.ragged.map_or(0, |cu| cu[cu.len() - 1]);
    let long = Mode {
        dense: true,
        ..causal
    };
    v.push(Box::new(attend::<f32>(
        "prefill_ragged8",
        |x| x,
        n_tot,
        8,
        2,
        128,
        n_tot,
        Vec::new(),
        ragged,
    )));
    v.push(Box::new(attend::<f32>(
        "prefill_long",
        |x| x,
        n_long,
        8,
        2,
        128,
        n_long,
        Vec::new(),
        long,
    )));
    v.push(Box::new(attend::<bf16>(
        "prefill_ragged8",
        bf16::from_f32,
        n_tot,
        8,
        2,
        128,
        n_tot,
        Vec::new(),
        ragged,
    )));
    v.push(Box::new(attend::<bf16>(
        "prefill_long",
        bf16::from_f32,
        n_long,
        8,
        2,
        128,
        n_long,
        Vec::new(),
        long,
    )));
    // Multi-head latent attention (DeepSeek V2/V3 head sizes: q.k over 192, V 128), and
    // the same with V zero-padded to 192 (what a caller does without v_head_dim).
    for pad in [None, Some(192)] {
        let (dn, pn) = match pad {
            None => ("decode_mla", "prefill_causal_mla"),
            Some(_) => ("decode_mla_padded", "prefill_causal_mla_padded"),
        };
        v.push(Box::new(mla(
            attend::<f32>(dn, |x| x, 1, 16, 16, 192, 8192, sel_d.clone(), causal),
            |x| x,
            128,
            pad,
        )));
        v.push(Box::new(mla(
            attend::<bf16>(
                dn,
                bf16::from_f32,
                1,
                16,
                16,
                192,
                8192,
                sel_d.clone(),
                causal,
            ),
            bf16::from_f32,
            128,
            pad,
        )));
        let sel_m: Vec<u32> = (0..1024u32).map(|j| 2 * j).collect();
        v.push(Box::new(mla(
            attend::<f32>(
                pn,
                |x| x,
                n_q_mla(quick),
                8,
                8,
                192,
                2048,
                sel_m.clone(),
                causal,
            ),
            |x| x,
            128,
            pad,
        )));
        v.push(Box::new(mla(
            attend::<bf16>(
                pn,
                bf16::from_f32,
                n_q_mla(quick),
                8,
                8,
                192,
                2048,
                sel_m,
                causal,
            ),
            bf16::from_f32,
            128,
            pad,
        )));
    }
    // LLM decode over 16-bit caches at 8192 keys (issue 13): SmolLM2's 9/3 heads with
    // head_dim 64 and 32/8 heads with head_dim 128, dense and at Quest budgets of 16-key
    // blocks (1024 keys in the quick run; 256, 1024, 2048, and 1024 in 64-key blocks).
    let llm_shapes: &[(usize, usize, usize)] = if quick {
        &[(9, 3, 64)]
    } else {
        &[(9, 3, 64), (32, 8, 128)]
    };
    let budgets: &[(usize, usize)] = if quick {
        &[(16, 1024)]
    } else {
        &[(16, 256), (16, 1024), (16, 2048), (64, 1024)]
    };
    for &(h_q, h_kv, d) in llm_shapes {
        for budget in std::iter::once(None).chain(budgets.iter().copied().map(Some)) {
            v.push(decode_llm::<f16>(f16::from_f32, h_q, h_kv, d, budget));
            if !quick {
                v.push(decode_llm::<bf16>(bf16::from_f32, h_q, h_kv, d, budget));
            }
        }
    }
    for (name, mode, is_f32) in prefill {
        v.push(if is_f32 {
            Box::new(attend::<f32>(
                name,
                |x| x,
                n_q,
                8,
                2,
                128,
                2048,
                sel_p.clone(),
                mode,
            ))
        } else {
            Box::new(attend::<bf16>(
                name,
                bf16::from_f32,
                n_q,
                8,
                2,
                128,
                2048,
                sel_p.clone(),
                mode,
            ))
        });
    }
    v
}
