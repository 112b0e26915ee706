//! One attention call per layer for each model family of issue 18, in the configuration
//! the family runs (head counts, head sizes, scales and options scaled down in length
//! only), against the float64 reference (`tests/attn_ref`) within the documented error
//! bound on every level, with the same bits on every level:
//! Llama / Mistral (GQA, sliding window, decoding over a long cache), Gemma 2 (softcap,
//! local and global layers), BLOOM / MPT (ALiBi), gpt-oss (sinks, local and global
//! layers), DeepSeek-style MLA (q.k over 192, V 128), T5-style relative-position biases, BERT-style encoders (a ragged batch;
//! a dense batch with an ONNX float padding mask).
//! `cargo test --release --test attend_families -- --nocapture --test-threads 1` prints
//! the worst error of each family in units of the bound and the largest absolute error.

mod attn_ref;

use attn_ref::{bound, row, Check, Rng, Row, Spec};
use half::{bf16, f16};
use tokenroute::{
    AttendBias, AttendElement, AttendExtras, AttendOptions, Batch, BatchStrides, BiasData,
    CausalAlign, Heads, HeadsMut, Kernels, KeySubset,
};

/// A tensor rounded to the element type, with the f64 values the reference reads.
struct Tensor<T> {
    data: Vec<T>,
    f64s: Vec<f64>,
}

fn tensor<T: Copy>(
    r: &mut Rng,
    n: usize,
    amp: f32,
    to: fn(f32) -> T,
    from: fn(T) -> f32,
) -> Tensor<T> {
    let data: Vec<T> = (0..n).map(|_| to(amp * r.f())).collect();
    let f64s = data.iter().map(|&x| from(x) as f64).collect();
    Tensor { data, f64s }
}

fn bf16s(r: &mut Rng, n: usize, amp: f32) -> Tensor<bf16> {
    tensor(r, n, amp, bf16::from_f32, bf16::to_f32)
}

fn f16s(r: &mut Rng, n: usize, amp: f32) -> Tensor<f16> {
    tensor(r, n, amp, f16::from_f32, f16::to_f32)
}

fn f32s(r: &mut Rng, n: usize, amp: f32) -> Tensor<f32> {
    tensor(r, n, amp, |x| x, |x| x)
}

/// Q `[n_q, h_q, d]`, K `[n_k, h_kv, d]`, V `[n_k, h_kv, dv]`, dense.
struct Qkv<T> {
    q: Tensor<T>,
    k: Tensor<T>,
    v: Tensor<T>,
}

fn position(i: usize) -> i64 {
    i as i64
}

/// The reference spec of a single dense sequence with default positions `i`, `j` and
/// every key; callers override the options with struct update syntax.
fn spec<'a, T>(
    x: &'a Qkv<T>,
    dims: (usize, usize, usize, usize, usize, usize),
    keys: &'a dyn Fn(usize, usize) -> Vec<usize>,
) -> Spec<'a> {
    let (n_q, n_k, h_q, h_kv, d, dv) = dims;
    Spec {
        n_q,
        n_k,
        h_q,
        h_kv,
        d,
        dv,
        q: &x.q.f64s,
        k: &x.k.f64s,
        v: &x.v.f64s,
        keys,
        scale: 1.0 / (d as f64).sqrt(),
        softcap: None,
        bias: None,
        alibi: None,
        sinks: None,
        q_pos: &position,
        k_pos: &position,
        causal: false,
        left: None,
        right: None,
    }
}

/// One plain call (a single sequence, every key) on level `kern` with f32 output.
fn call<T: AttendElement + Copy>(
    kern: &Kernels,
    x: &Qkv<T>,
    dims: (usize, usize, usize, usize, usize, usize),
    opts: &AttendOptions<'_>,
) -> Vec<f32> {
    let (n_q, n_k, h_q, h_kv, d, dv) = dims;
    let mut out = vec![f32::NAN; n_q * h_q * dv];
    kern.attention(
        Heads::dense(&x.q.data, n_q, h_q, d).unwrap(),
        Heads::dense(&x.k.data, n_k, h_kv, d).unwrap(),
        Heads::dense(&x.v.data, n_k, h_kv, dv).unwrap(),
        KeySubset::Dense,
        opts,
        HeadsMut::dense(&mut out, n_q, h_q, dv).unwrap(),
        AttendExtras::default(),
    )
    .unwrap();
    out
}

/// Checks `run`'s f32 output `[n_q][h_q][dv]` on every level against the reference rows
/// of `s` within the documented bound plus `extra(row)` (the option's documented term),
/// requires the same bits on every level and that some row sees keys; prints and
/// returns the worst error in units of the bound.
fn check(
    name: &str,
    s: &Spec<'_>,
    extra: &dyn Fn(&Row) -> f64,
    run: &dyn Fn(&Kernels) -> Vec<f32>,
) -> f64 {
    let rows: Vec<Row> = (0..s.n_q)
        .flat_map(|i| (0..s.h_q).map(move |h| row(s, i, h)))
        .collect();
    assert!(rows.iter().any(|w| w.n > 1), "{name}: no row sees two keys");
    let mut first: Option<Vec<u32>> = None;
    let mut check = Check::new();
    let mut levels = vec![];
    for kern in Kernels::all_supported() {
        let out = run(kern);
        assert_eq!(out.len(), rows.len() * s.dv);
        for (r, w) in rows.iter().enumerate() {
            for e in 0..s.dv {
                let b = bound(w, 2f64.powi(-24), w.out[e]) + extra(w);
                check.add(out[r * s.dv + e] as f64, w.out[e], b, &|| {
                    format!(
                        "{name}: {:?} row {r} (token {}, head {}) element {e}",
                        kern.isa(),
                        r / s.h_q,
                        r % s.h_q
                    )
                });
            }
        }
        let bits: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
        match &first {
            None => first = Some(bits),
            Some(f) => assert!(f == &bits, "{name}: {:?} differs from scalar", kern.isa()),
        }
        levels.push(format!("{:?}", kern.isa()));
    }
    println!(
        "{name:<52} worst {:.1e} of the bound, max |error| {:.2e} [{}]",
        check.worst,
        check.max_abs,
        levels.join(" ")
    );
    check.worst
}

fn all_keys(n_k: usize) -> impl Fn(usize, usize) -> Vec<usize> {
    move |_, _| (0..n_k).collect()
}

/// Llama 3 / Mistral: GQA 8/2, head size 64, bf16; a causal sliding-window prefill
/// (Mistral's window, scaled down) and one decoding step over a long f16 cache
/// (split-K over the keys).
#[test]
fn llama_mistral() {
    let mut r = Rng(11);
    let (n, h_q, h_kv, d, w) = (150, 8, 2, 64, 48u32);
    let dims = (n, n, h_q, h_kv, d, d);
    let x = Qkv {
        q: bf16s(&mut r, n * h_q * d, 1.0),
        k: bf16s(&mut r, n * h_kv * d, 1.0),
        v: bf16s(&mut r, n * h_kv * d, 1.0),
    };
    let keys = all_keys(n);
    let s = Spec {
        causal: true,
        left: Some(w as i64 - 1),
        ..spec(&x, dims, &keys)
    };
    let opts = AttendOptions {
        causal: true,
        window: w,
        align: CausalAlign::BottomRight,
        ..Default::default()
    };
    check(
        "Llama/Mistral prefill: causal, window 48, GQA 8/2",
        &s,
        &|_| 0.0,
        &|k| call(k, &x, dims, &opts),
    );

    let n_k = 3000;
    let dims = (1, n_k, h_q, h_kv, d, d);
    let x = Qkv {
        q: f16s(&mut r, h_q * d, 1.0),
        k: f16s(&mut r, n_k * h_kv * d, 1.0),
        v: f16s(&mut r, n_k * h_kv * d, 1.0),
    };
    let keys = all_keys(n_k);
    let s = Spec {
        causal: true,
        q_pos: &|_| n_k as i64 - 1,
        ..spec(&x, dims, &keys)
    };
    let opts = AttendOptions {
        causal: true,
        align: CausalAlign::BottomRight,
        ..Default::default()
    };
    check(
        "Llama decode: 1 query over 3000 keys (f16 cache)",
        &s,
        &|_| 0.0,
        &|k| call(k, &x, dims, &opts),
    );
}

/// Gemma 2 (2B's shape): 8 query heads over 4 KV heads of size 256, scale
/// 1/sqrt(query_pre_attn_scalar = 256), logit softcap 50; local (sliding window) and
/// global layers alternate. Inputs large enough for the cap to bend the logits.
#[test]
fn gemma2() {
    let mut r = Rng(12);
    let (n, h_q, h_kv, d, cap, w) = (96, 8, 4, 256, 50f32, 32u32);
    let dims = (n, n, h_q, h_kv, d, d);
    let x = Qkv {
        q: bf16s(&mut r, n * h_q * d, 6.0),
        k: bf16s(&mut r, n * h_kv * d, 6.0),
        v: bf16s(&mut r, n * h_kv * d, 1.0),
    };
    let keys = all_keys(n);
    let cap_term = |w: &Row| 2f64.powi(-20) * cap as f64 * w.vmax;
    for (name, window) in [
        ("Gemma 2 local layer: softcap 50, window 32, GQA 8/4", w),
        ("Gemma 2 global layer: softcap 50, causal, GQA 8/4", 0),
    ] {
        let s = Spec {
            causal: true,
            softcap: Some(cap as f64),
            scale: 1.0 / 16.0,
            left: (window > 0).then(|| window as i64 - 1),
            ..spec(&x, dims, &keys)
        };
        let opts = AttendOptions {
            scale: Some(1.0 / 16.0),
            softcap: Some(cap),
            causal: true,
            window,
            align: CausalAlign::BottomRight,
            ..Default::default()
        };
        check(name, &s, &cap_term, &|k| call(k, &x, dims, &opts));
    }
    // The cap matters here: some logit is past where tanh bends (|s| > c / 2).
    let s = Spec {
        scale: 1.0 / 16.0,
        ..spec(&x, dims, &keys)
    };
    let big = (0..n)
        .flat_map(|i| s.logits(i, 0))
        .filter(|l| l.1.abs() > cap as f64 / 2.0)
        .count();
    assert!(big > 0, "no logit reaches the softcap's bend");
}

/// BLOOM / MPT: multi-head attention with ALiBi slopes 2^(-8 (h + 1) / H), causal,
/// implicit positions.
#[test]
fn bloom_alibi() {
    let mut r = Rng(13);
    let (n, h, d) = (130, 8, 64);
    let dims = (n, n, h, h, d, d);
    let x = Qkv {
        q: bf16s(&mut r, n * h * d, 1.0),
        k: bf16s(&mut r, n * h * d, 1.0),
        v: bf16s(&mut r, n * h * d, 1.0),
    };
    let slopes: Vec<f32> = (0..h)
        .map(|i| 2f32.powf(-8.0 * (i + 1) as f32 / h as f32))
        .collect();
    let sl64: Vec<f64> = slopes.iter().map(|&x| x as f64).collect();
    let keys = all_keys(n);
    let s = Spec {
        causal: true,
        alibi: Some(&sl64),
        ..spec(&x, dims, &keys)
    };
    let opts = AttendOptions {
        causal: true,
        alibi_slopes: Some(&slopes),
        align: CausalAlign::TopLeft,
        ..Default::default()
    };
    check("BLOOM/MPT: ALiBi, causal, MHA 8", &s, &|_| 0.0, &|k| {
        call(k, &x, dims, &opts)
    });
}

/// gpt-oss: GQA with learned sink logits per query head (merged without a value), on
/// alternating sliding-window and global layers (head size 64).
#[test]
fn gpt_oss_sinks() {
    let mut r = Rng(14);
    let (n, h_q, h_kv, d, w) = (140, 8, 2, 64, 32u32);
    let dims = (n, n, h_q, h_kv, d, d);
    let x = Qkv {
        q: bf16s(&mut r, n * h_q * d, 1.0),
        k: bf16s(&mut r, n * h_kv * d, 1.0),
        v: bf16s(&mut r, n * h_kv * d, 1.0),
    };
    let sinks: Vec<f32> = (0..h_q).map(|_| 1.0 + 2.0 * r.f()).collect();
    let sinks64: Vec<f64> = sinks.iter().map(|&x| x as f64).collect();
    let keys = all_keys(n);
    // The merge with the sink adds 2^-22 vmax.
    let sink_term = |w: &Row| 2f64.powi(-22) * w.vmax;
    for (name, window) in [
        ("gpt-oss local layer: sinks, window 32, GQA 8/2", w),
        ("gpt-oss global layer: sinks, causal, GQA 8/2", 0),
    ] {
        let s = Spec {
            causal: true,
            sinks: Some(&sinks64),
            left: (window > 0).then(|| window as i64 - 1),
            ..spec(&x, dims, &keys)
        };
        let opts = AttendOptions {
            causal: true,
            window,
            sinks: Some(&sinks),
            align: CausalAlign::BottomRight,
            ..Default::default()
        };
        check(name, &s, &sink_term, &|k| call(k, &x, dims, &opts));
    }
}

/// DeepSeek V2/V3 multi-head latent attention, decompressed: per head, q and k of 192
/// (128 no-RoPE + 64 RoPE), V of 128, scale 1/sqrt(192), causal prefill and one decoding
/// step, without zero-padding V.
#[test]
fn deepseek_mla() {
    let mut r = Rng(17);
    let (n, h, d, dv) = (80, 4, 192, 128);
    let dims = (n, n, h, h, d, dv);
    let x = Qkv {
        q: bf16s(&mut r, n * h * d, 1.0),
        k: bf16s(&mut r, n * h * d, 1.0),
        v: bf16s(&mut r, n * h * dv, 1.0),
    };
    let keys = all_keys(n);
    let s = Spec {
        causal: true,
        ..spec(&x, dims, &keys)
    };
    let opts = AttendOptions {
        causal: true,
        align: CausalAlign::BottomRight,
        ..Default::default()
    };
    check(
        "DeepSeek MLA prefill: d 192, dv 128, causal, MHA 4",
        &s,
        &|_| 0.0,
        &|k| call(k, &x, dims, &opts),
    );
    let n_k = 1500;
    let dims = (1, n_k, h, h, d, dv);
    let x = Qkv {
        q: bf16s(&mut r, h * d, 1.0),
        k: bf16s(&mut r, n_k * h * d, 1.0),
        v: bf16s(&mut r, n_k * h * dv, 1.0),
    };
    let keys = all_keys(n_k);
    let s = spec(&x, dims, &keys);
    check(
        "DeepSeek MLA decode: 1 query over 1500 keys",
        &s,
        &|_| 0.0,
        &|k| call(k, &x, dims, &AttendOptions::default()),
    );
}

/// T5-style relative-position bias: a full `[H, n_q, n_k]` f32 tensor from a bucketed
/// table per head, bidirectional (an encoder).
#[test]
fn t5_relative_bias() {
    let mut r = Rng(15);
    let (n, h, d) = (100, 6, 64);
    let dims = (n, n, h, h, d, d);
    let x = Qkv {
        q: f32s(&mut r, n * h * d, 1.0),
        k: f32s(&mut r, n * h * d, 1.0),
        v: f32s(&mut r, n * h * d, 1.0),
    };
    // 32 buckets of the signed distance, exact below 8, logarithmic above.
    let bucket = |rel: i64| -> usize {
        let (side, a) = (if rel > 0 { 16 } else { 0 }, rel.unsigned_abs() as f64);
        side + if a < 8.0 {
            a as usize
        } else {
            (8.0 + (a / 8.0).ln() / (16f64).ln() * 8.0).min(15.0) as usize
        }
    };
    let table: Vec<f32> = (0..h * 32).map(|_| 3.0 * r.f()).collect();
    let bias: Vec<f32> = (0..h * n * n)
        .map(|x| table[x / (n * n) * 32 + bucket((x % n) as i64 - (x / n % n) as i64)])
        .collect();
    let bias_fn = |hh: usize, i: usize, j: usize| bias[(hh * n + i) * n + j] as f64;
    let keys = all_keys(n);
    let s = Spec {
        scale: 1.0,
        bias: Some(&bias_fn),
        ..spec(&x, dims, &keys)
    };
    let opts = AttendOptions {
        scale: Some(1.0),
        bias: Some(AttendBias {
            data: BiasData::F32(&bias),
            head_stride: n * n,
            query_stride: n,
            batch_stride: 0,
        }),
        ..Default::default()
    };
    check(
        "T5: relative-position bias [H, n, n], bidirectional",
        &s,
        &|_| 0.0,
        &|k| call(k, &x, dims, &opts),
    );
}

/// BERT-style encoders: bidirectional attention over a ragged batch (sequences of 17,
/// 64, 5 and 33 tokens packed back to back, `cu_seqlens`), and the same model fed as a
/// dense batch padded to 40 tokens with an ONNX-style float mask (0 / -inf per key,
/// broadcast over heads and queries).
#[test]
fn bert_encoders() {
    let mut r = Rng(16);
    let (h, d) = (4, 32);
    let cu = [0usize, 17, 81, 86, 119];
    let n = cu[4];
    let dims = (n, n, h, h, d, d);
    let x = Qkv {
        q: f32s(&mut r, n * h * d, 1.0),
        k: f32s(&mut r, n * h * d, 1.0),
        v: f32s(&mut r, n * h * d, 1.0),
    };
    let seq_keys = |i: usize, _| {
        let b = (0..4).find(|&b| i < cu[b + 1]).unwrap();
        (cu[b]..cu[b + 1]).collect()
    };
    let s = spec(&x, dims, &seq_keys);
    check(
        "BERT: ragged batch of 4 (17, 64, 5, 33), bidirectional",
        &s,
        &|_| 0.0,
        &|kern| {
            let mut out = vec![f32::NAN; n * h * d];
            kern.attention_batch(
                Heads::dense(&x.q.data, n, h, d).unwrap(),
                Heads::dense(&x.k.data, n, h, d).unwrap(),
                Heads::dense(&x.v.data, n, h, d).unwrap(),
                KeySubset::Dense,
                &AttendOptions::default(),
                &Batch::Ragged {
                    cu_seqlens_q: &cu,
                    cu_seqlens_k: &cu,
                },
                HeadsMut::dense(&mut out, n, h, d).unwrap(),
                AttendExtras::default(),
            )
            .unwrap();
            out
        },
    );

    // Dense batch of 3 sequences padded to 40 (lengths 40, 23, 9): every query row,
    // padding included, sees its sequence's unpadded keys.
    let (nb, len, lens) = (3, 40, [40usize, 23, 9]);
    let dims = (nb * len, nb * len, h, h, d, d);
    let x = Qkv {
        q: f32s(&mut r, nb * len * h * d, 1.0),
        k: f32s(&mut r, nb * len * h * d, 1.0),
        v: f32s(&mut r, nb * len * h * d, 1.0),
    };
    let mask: Vec<f32> = (0..nb * len)
        .map(|x| {
            if x % len < lens[x / len] {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    let padded_keys = |i: usize, _| {
        let b = i / len;
        (b * len..b * len + lens[b]).collect()
    };
    let s = spec(&x, dims, &padded_keys);
    let seq = len * h * d;
    check(
        "BERT (ONNX): dense batch of 3 padded to 40, float mask",
        &s,
        &|_| 0.0,
        &|kern| {
            let mut out = vec![f32::NAN; nb * seq];
            let opts = AttendOptions {
                bias: Some(AttendBias {
                    data: BiasData::F32(&mask),
                    head_stride: 0,
                    query_stride: 0,
                    batch_stride: len,
                }),
                ..Default::default()
            };
            kern.attention_batch(
                Heads::dense(&x.q.data, len, h, d).unwrap(),
                Heads::dense(&x.k.data, len, h, d).unwrap(),
                Heads::dense(&x.v.data, len, h, d).unwrap(),
                KeySubset::Dense,
                &opts,
                &Batch::Dense {
                    n: nb,
                    strides: BatchStrides {
                        q: seq,
                        k: seq,
                        v: seq,
                        out: seq,
                        ..Default::default()
                    },
                },
                HeadsMut::dense(&mut out, len, h, d).unwrap(),
                AttendExtras::default(),
            )
            .unwrap();
            out
        },
    );
}
