//! Windows with a left and a right extent, causality a separate option: against the
//! float64 reference on every level (prefill, split-K decoding, explicit and implicit
//! positions, a ragged batch), bit-identical on every level; the legacy window (implies
//! causal masking) unchanged; through the C ABI.

mod attn_ref;

use attn_ref::{bound, lse_bound, row, Check, Rng, Spec};
use tokenroute::{
    AttendExtras, AttendOptions, Batch, CausalAlign, Heads, HeadsMut, Kernels, KeySubset,
};

const H_Q: usize = 2;
const H_KV: usize = 1;
const D: usize = 16;

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// (causal, window, window_right)
const MODES: [(bool, u32, Option<u32>); 7] = [
    (false, 5, Some(3)),        // two-sided local window
    (false, 4, Some(3)),        // symmetric radius 3
    (false, 0, Some(2)),        // right limit only
    (false, 6, Some(u32::MAX)), // left limit only
    (true, 4, Some(7)),         // causal wins on the right
    (false, 7, None),           // legacy: the window implies causal
    (false, 0, Some(0)),        // right extent 0: causal
];

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn windows_match_the_reference_on_every_level() {
    let mut r = Rng(29);
    // (n_q, n_k, query positions: explicit ones, or None for implicit top-left)
    for (n_q, n_k, explicit) in [(30usize, 50usize, false), (1, 1200, true), (3, 80, true)] {
        let q = r.vec(n_q * H_Q * D);
        let k = r.vec(n_k * H_KV * D);
        let v = r.vec(n_k * H_KV * D);
        // Explicit: keys at 2j (gaps), queries in the middle of them.
        let k_pos: Vec<u32> = (0..n_k as u32).map(|j| 2 * j).collect();
        let q_pos: Vec<u32> = (0..n_q as u32).map(|i| n_k as u32 + 3 * i).collect();
        let (qf, kf, vf) = (f64s(&q), f64s(&k), f64s(&v));
        for (causal, window, window_right) in MODES {
            let spec = Spec {
                n_q,
                n_k,
                h_q: H_Q,
                h_kv: H_KV,
                d: D,
                dv: D,
                q: &qf,
                k: &kf,
                v: &vf,
                keys: &|_, _| (0..n_k).collect(),
                scale: (1.0 / (D as f64).sqrt()) as f32 as f64,
                softcap: None,
                bias: None,
                alibi: None,
                sinks: None,
                q_pos: &|i| if explicit { q_pos[i] as i64 } else { i as i64 },
                k_pos: &|j| if explicit { k_pos[j] as i64 } else { j as i64 },
                causal: causal || (window > 0 && window_right.is_none()),
                left: (window > 0).then(|| window as i64 - 1),
                right: window_right.filter(|&r| r != u32::MAX).map(|r| r as i64),
            };
            let opts = AttendOptions {
                causal,
                window,
                window_right,
                align: if explicit {
                    CausalAlign::Positions
                } else {
                    CausalAlign::TopLeft
                },
                q_positions: explicit.then_some(&q_pos[..]),
                k_positions: explicit.then_some(&k_pos[..]),
                ..Default::default()
            };
            let mut first: Option<(Vec<f32>, Vec<f32>)> = None;
            for kern in Kernels::all_supported() {
                let mut out = vec![0f32; n_q * H_Q * D];
                let mut lse = vec![0f32; n_q * H_Q];
                kern.attention(
                    Heads::dense(&q, n_q, H_Q, D).unwrap(),
                    Heads::dense(&k, n_k, H_KV, D).unwrap(),
                    Heads::dense(&v, n_k, H_KV, D).unwrap(),
                    KeySubset::Dense,
                    &opts,
                    HeadsMut::dense(&mut out, n_q, H_Q, D).unwrap(),
                    AttendExtras {
                        lse: Some((&mut lse, 0)),
                        mass: None,
                    },
                )
                .unwrap();
                let mut check = Check::new();
                for i in 0..n_q {
                    for h in 0..H_Q {
                        let want = row(&spec, i, h);
                        for e in 0..D {
                            let b = bound(&want, 2f64.powi(-24), want.out[e]);
                            check.add(out[(i * H_Q + h) * D + e] as f64, want.out[e], b, &|| {
                                format!("{n_q}x{n_k} {causal} {window} {window_right:?} ({i}, {h}, {e})")
                            });
                        }
                        check.add(lse[i * H_Q + h] as f64, want.lse, lse_bound(&want), &|| {
                            format!("{n_q}x{n_k} {causal} {window} {window_right:?} lse ({i}, {h})")
                        });
                    }
                }
                match &first {
                    None => first = Some((out, lse)),
                    Some((o, l)) => {
                        assert_eq!(bits(o), bits(&out), "{:?}", kern.isa());
                        assert_eq!(bits(l), bits(&lse), "{:?}", kern.isa());
                    }
                }
            }
        }
    }
}

/// A ragged batch of bidirectional sequences with a two-sided window (an encoder with
/// local attention): each sequence equals its own call; through the C ABI likewise.
#[test]
fn two_sided_windows_in_batches_and_through_c() {
    use tokenroute::ffi::attend::*;
    use tokenroute::ffi::score::TKR_DTYPE_F32;
    use tokenroute::ffi::*;
    let mut r = Rng(31);
    let cu = [0usize, 7, 40, 41, 90];
    let t = cu[4];
    let q = r.vec(t * H_Q * D);
    let k = r.vec(t * H_KV * D);
    let opts = AttendOptions {
        window: 5,
        window_right: Some(4),
        align: CausalAlign::TopLeft,
        ..Default::default()
    };
    let kern = Kernels::active().unwrap();
    let mut out = vec![0f32; t * H_Q * D];
    kern.attention_batch(
        Heads::dense(&q, t, H_Q, D).unwrap(),
        Heads::dense(&k, t, H_KV, D).unwrap(),
        Heads::dense(&k, t, H_KV, D).unwrap(),
        KeySubset::Dense,
        &opts,
        &Batch::Ragged {
            cu_seqlens_q: &cu,
            cu_seqlens_k: &cu,
        },
        HeadsMut::dense(&mut out, t, H_Q, D).unwrap(),
        AttendExtras::default(),
    )
    .unwrap();
    for b in 0..4 {
        let (r0, n) = (cu[b], cu[b + 1] - cu[b]);
        let mut o1 = vec![0f32; n * H_Q * D];
        kern.attention(
            Heads::dense(&q[r0 * H_Q * D..(r0 + n) * H_Q * D], n, H_Q, D).unwrap(),
            Heads::dense(&k[r0 * H_KV * D..(r0 + n) * H_KV * D], n, H_KV, D).unwrap(),
            Heads::dense(&k[r0 * H_KV * D..(r0 + n) * H_KV * D], n, H_KV, D).unwrap(),
            KeySubset::Dense,
            &opts,
            HeadsMut::dense(&mut o1, n, H_Q, D).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
        assert_eq!(
            bits(&out[r0 * H_Q * D..(r0 + n) * H_Q * D]),
            bits(&o1),
            "seq {b}"
        );
    }
    // SAFETY: the structs are filled by their init functions; buffers as described.
    unsafe {
        let (mut o, mut b): (tkr_attention_options, tkr_attention_batch) = std::mem::zeroed();
        assert_eq!(tkr_attention_options_init(&mut o), TKR_STATUS_OK);
        assert_eq!(tkr_attention_batch_init(&mut b), TKR_STATUS_OK);
        b.n_seqs = 4;
        b.cu_seqlens_q = cu.as_ptr();
        b.cu_seqlens_k = cu.as_ptr();
        o.batch = &b;
        o.window = 5;
        o.flags = TKR_ATTENTION_WINDOW_RIGHT;
        o.window_right = 4;
        o.causal_align = TKR_CAUSAL_ALIGN_TOP_LEFT;
        let mut c_out = vec![0f32; t * H_Q * D];
        let st = tkr_attention(
            TKR_DTYPE_F32,
            q.as_ptr() as *const _,
            t,
            H_Q,
            D,
            H_Q * D,
            D,
            k.as_ptr() as *const _,
            k.as_ptr() as *const _,
            t,
            H_KV,
            H_KV * D,
            D,
            H_KV * D,
            D,
            std::ptr::null(),
            &o,
            c_out.as_mut_ptr() as *mut _,
            H_Q * D,
            D,
        );
        assert_eq!(st, TKR_STATUS_OK);
        assert_eq!(bits(&c_out), bits(&out));
        // An unknown flag bit is refused.
        o.flags = 8;
        let st = tkr_attention(
            TKR_DTYPE_F32,
            q.as_ptr() as *const _,
            t,
            H_Q,
            D,
            H_Q * D,
            D,
            k.as_ptr() as *const _,
            k.as_ptr() as *const _,
            t,
            H_KV,
            H_KV * D,
            D,
            H_KV * D,
            D,
            std::ptr::null(),
            &o,
            c_out.as_mut_ptr() as *mut _,
            H_Q * D,
            D,
        );
        assert_eq!(st, TKR_STATUS_INVALID_ARGUMENT);
    }
}
