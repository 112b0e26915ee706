//! Many threads call every kernel family through the C entry points while another
//! thread keeps switching the ISA level (`tkr_set_isa`, every supported level and
//! AUTO); every result must equal, bit for bit, the single-threaded reference computed
//! first (the families here are bit-identical across levels; sigmoid inputs hold no
//! NaN, whose result's sign and payload are unspecified).
//!
//! Its own test binary, because it switches the process-wide level. The C twin,
//! ffi-tests/c/concurrency.c, runs the same check through the shared and static
//! library; this one also runs under `-Zsanitizer=address` (.ci/test).
//!
//! A family adds one job to `jobs()`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokenroute::ffi::attend::*;
use tokenroute::ffi::compact::*;
use tokenroute::ffi::isa::*;
use tokenroute::ffi::route::*;
use tokenroute::ffi::score::*;
use tokenroute::ffi::select::*;
use tokenroute::ffi::*;

type Job = Box<dyn Fn(&mut Vec<f32>) -> tkr_status + Send + Sync>;

/// A deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 2500.0 - 4.0
    }
}

fn jobs() -> Vec<(&'static str, Job)> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut x: Vec<f32> = (0..1500).map(|_| r.f32() * 6.0).collect();
    x[..4].copy_from_slice(&[f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e-45]);
    let (n, d, e, hs) = (61usize, 131usize, 6usize, 133usize);
    let h32: Vec<f32> = (0..n * hs).map(|_| r.f32()).collect();
    let w32: Vec<f32> = (0..e * d).map(|_| r.f32() * 0.1).collect();
    let bias: Vec<f32> = (0..e).map(|_| r.f32()).collect();
    let h16: Vec<u16> = h32
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let w16: Vec<u16> = w32
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let hb: Vec<u16> = h32
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let wb: Vec<u16> = w32
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let (h32, w32, bias) = (Arc::new(h32), Arc::new(w32), Arc::new(bias));
    let score = move |dtype: u32, h: Arc<dyn AsPtr>, w: Arc<dyn AsPtr>, b: bool, act: u32| -> Job {
        let bias = bias.clone();
        Box::new(move |out: &mut Vec<f32>| {
            out.resize(n * e, 0.0);
            let bp = if b { bias.as_ptr() } else { core::ptr::null() };
            // SAFETY: buffers of the documented sizes.
            unsafe {
                tkr_score(
                    dtype,
                    h.ptr(),
                    n,
                    d,
                    hs,
                    w.ptr(),
                    e,
                    d,
                    bp,
                    act,
                    out.as_mut_ptr(),
                    e,
                )
            }
        })
    };
    let sig: Job = Box::new(move |out: &mut Vec<f32>| {
        out.resize(x.len(), 0.0);
        // SAFETY: both hold x.len() floats.
        unsafe { tkr_sigmoid_f32(x.as_ptr(), x.len(), out.as_mut_ptr()) }
    });
    // Selection over the f32 rows of h32 (d valid tokens, hs apart); indices and counts
    // are returned as raw 32-bit words.
    let (h_sel, batch, k) = (h32.clone(), 9usize, 17usize);
    let topk: Job = Box::new(move |out: &mut Vec<f32>| {
        let mut idx = vec![0u32; batch * k];
        // SAFETY: all-zero then init: a valid options struct.
        let mut o: tkr_topk_options = unsafe { core::mem::zeroed() };
        // SAFETY: o is one options struct; buffers of the documented sizes.
        let st = unsafe {
            tkr_topk_options_init(&mut o);
            o.flags = TKR_TOPK_ORDER_SCORE;
            o.keep_first = 2;
            tkr_topk_f32(
                h_sel.as_ptr(),
                batch,
                d,
                hs,
                k,
                &o,
                idx.as_mut_ptr(),
                k,
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                0,
            )
        };
        out.extend(idx.iter().map(|&i| f32::from_bits(i)));
        st
    });
    let h_thr = h32.clone();
    let threshold: Job = Box::new(move |out: &mut Vec<f32>| {
        let mut idx = vec![0u32; batch * d];
        let mut counts = vec![0usize; batch];
        // SAFETY: buffers of the documented sizes.
        let st = unsafe {
            tkr_threshold_f32(
                h_thr.as_ptr(),
                batch,
                d,
                hs,
                0.25,
                core::ptr::null(),
                idx.as_mut_ptr(),
                d,
                counts.as_mut_ptr(),
            )
        };
        for r in 0..batch {
            out.extend(
                idx[r * d..r * d + counts[r]]
                    .iter()
                    .map(|&i| f32::from_bits(i)),
            );
            out.push(f32::from_bits(counts[r] as u32));
        }
        st
    });
    let mut v: Vec<(&'static str, Job)> = vec![
        ("sigmoid_f32", sig),
        ("topk f32 by score, keep_first", topk),
        ("threshold f32", threshold),
        (
            "score f32 sigmoid",
            score(
                TKR_DTYPE_F32,
                h32.clone(),
                w32.clone(),
                true,
                TKR_ACT_SIGMOID,
            ),
        ),
        (
            "score f16 none",
            score(
                TKR_DTYPE_F16,
                Arc::new(h16),
                Arc::new(w16),
                true,
                TKR_ACT_NONE,
            ),
        ),
        (
            "score bf16 sigmoid",
            score(
                TKR_DTYPE_BF16,
                Arc::new(hb),
                Arc::new(wb),
                false,
                TKR_ACT_SIGMOID,
            ),
        ),
    ];
    v.extend(compaction_jobs(&h32, &mut r));
    v.extend(attention_jobs(&mut r));
    v
}

/// Words of a buffer as f32 bit patterns (the jobs return raw bits).
fn words<T: Copy>(v: &[T]) -> impl Iterator<Item = f32> + '_ {
    let bytes = core::mem::size_of_val(v);
    // SAFETY: plain data; read as bytes.
    let b = unsafe { core::slice::from_raw_parts(v.as_ptr() as *const u8, bytes) };
    b.chunks(4).map(|c| {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        f32::from_bits(u32::from_le_bytes(w))
    })
}

/// Gather, scatter, gated scatter-add (f32, f16, bf16), compact_rows, kv_compact (both
/// layouts, shared and per head) and the route call (top-k and threshold).
fn compaction_jobs(h32: &Arc<Vec<f32>>, r: &mut Rng) -> Vec<(&'static str, Job)> {
    let (n, d, hs) = (61usize, 131usize, 133usize);
    let idx: Arc<Vec<u32>> = Arc::new((0..40u32).map(|j| (j * 37 + 5) % n as u32).collect());
    let asc: Arc<Vec<u32>> = Arc::new((0..n as u32).filter(|i| i % 3 != 1).collect());
    let gate: Arc<Vec<f32>> = Arc::new((0..40).map(|_| r.f32()).collect());
    let y32: Arc<Vec<f32>> = Arc::new((0..40 * d).map(|_| r.f32()).collect());
    let y16: Arc<Vec<u16>> = Arc::new(
        y32.iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect(),
    );
    let h16: Arc<Vec<u16>> = Arc::new(
        h32.iter()
            .map(|&v| half::f16::from_f32(v).to_bits())
            .collect(),
    );
    let hb: Arc<Vec<u16>> = Arc::new(
        h32.iter()
            .map(|&v| half::bf16::from_f32(v).to_bits())
            .collect(),
    );
    let w32: Arc<Vec<f32>> = Arc::new((0..d).map(|_| r.f32() * 0.1).collect());
    let mut jobs: Vec<(&'static str, Job)> = Vec::new();
    {
        let (h, idx) = (h32.clone(), idx.clone());
        jobs.push((
            "gather_rows",
            Box::new(move |out: &mut Vec<f32>| {
                let mut dst = vec![0f32; idx.len() * d];
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_gather_rows(
                        4,
                        d,
                        h.as_ptr() as _,
                        n,
                        hs,
                        idx.as_ptr(),
                        idx.len(),
                        dst.as_mut_ptr() as _,
                        d,
                    )
                };
                out.extend(dst);
                st
            }),
        ));
    }
    {
        let (y, idx) = (y32.clone(), idx.clone());
        jobs.push((
            "scatter_rows",
            Box::new(move |out: &mut Vec<f32>| {
                let mut dst = vec![1.5f32; n * hs];
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_scatter_rows(
                        4,
                        d,
                        y.as_ptr() as _,
                        d,
                        idx.as_ptr(),
                        idx.len(),
                        dst.as_mut_ptr() as _,
                        n,
                        hs,
                    )
                };
                out.extend(dst);
                st
            }),
        ));
    }
    type Src = (u32, Arc<dyn AsPtr>, Arc<dyn AsPtr>, usize, bool);
    let sa: [(&'static str, Src); 3] = [
        (
            "scatter_add f32 gated",
            (TKR_DTYPE_F32, h32.clone(), y32.clone(), 4, true),
        ),
        (
            "scatter_add f16",
            (TKR_DTYPE_F16, h16.clone(), y16.clone(), 2, false),
        ),
        (
            "scatter_add bf16 gated",
            (TKR_DTYPE_BF16, hb.clone(), y16.clone(), 2, true),
        ),
    ];
    for (name, (dt, h, y, es, gated)) in sa {
        let (idx, gate) = (idx.clone(), gate.clone());
        jobs.push((
            name,
            Box::new(move |out: &mut Vec<f32>| {
                let mut hh = vec![0u8; n * hs * es];
                // SAFETY: h holds n * hs elements of es bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(h.ptr() as *const u8, hh.as_mut_ptr(), hh.len())
                };
                let g = if gated {
                    gate.as_ptr()
                } else {
                    core::ptr::null()
                };
                // SAFETY: buffers of the documented sizes (hh is 4-byte aligned enough
                // for u16; for f32 copy into a Vec<f32>).
                let mut h32v = vec![0f32; (hh.len() + 3) / 4];
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        hh.as_ptr(),
                        h32v.as_mut_ptr() as *mut u8,
                        hh.len(),
                    )
                };
                let st = unsafe {
                    tkr_scatter_add_rows(
                        dt,
                        d,
                        h32v.as_mut_ptr() as _,
                        n,
                        hs,
                        idx.as_ptr(),
                        idx.len(),
                        y.ptr(),
                        d,
                        g,
                    )
                };
                out.extend(h32v);
                st
            }),
        ));
    }
    {
        let (h, asc) = (h32.clone(), asc.clone());
        jobs.push((
            "compact_rows + side array",
            Box::new(move |out: &mut Vec<f32>| {
                let mut data = h.to_vec();
                let mut pos: Vec<u32> = (0..n as u32).map(|i| i * 7).collect();
                let mut c = 0usize;
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_compact_rows(
                        4,
                        d,
                        data.as_mut_ptr() as _,
                        n,
                        hs,
                        asc.as_ptr(),
                        asc.len(),
                        &mut c,
                    )
                };
                let st2 = unsafe {
                    tkr_compact_rows(
                        4,
                        1,
                        pos.as_mut_ptr() as _,
                        n,
                        1,
                        asc.as_ptr(),
                        asc.len(),
                        core::ptr::null_mut(),
                    )
                };
                out.extend(data);
                out.extend(words(&pos));
                out.push(f32::from_bits(c as u32));
                st | st2
            }),
        ));
    }
    for (name, layout, per_head) in [
        ("kv_compact token-major shared", TKR_KV_TOKEN_MAJOR, false),
        ("kv_compact head-major per head", TKR_KV_HEAD_MAJOR, true),
        ("kv_compact token-major per head", TKR_KV_TOKEN_MAJOR, true),
    ] {
        let h = h16.clone();
        let (heads, hd) = (4usize, 31usize);
        let toks = 60usize;
        let keep: Vec<u32> = if per_head {
            (0..heads as u32)
                .flat_map(|g| (0..toks as u32).filter(move |t| (t + g) % 3 != 0).take(35))
                .collect()
        } else {
            (0..toks as u32).filter(|t| t % 4 != 2).collect()
        };
        let n_keep = if per_head {
            keep.len() / heads
        } else {
            keep.len()
        };
        jobs.push((
            name,
            Box::new(move |out: &mut Vec<f32>| {
                let mut cache: Vec<u16> = h[..toks * heads * hd].to_vec();
                let (ts, hstr) = if layout == TKR_KV_TOKEN_MAJOR {
                    (heads * hd, hd)
                } else {
                    (hd, toks * hd)
                };
                let mut c = 0usize;
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_kv_compact(
                        layout,
                        2,
                        cache.as_mut_ptr() as _,
                        toks,
                        heads,
                        hd,
                        ts,
                        hstr,
                        keep.as_ptr(),
                        n_keep,
                        if per_head {
                            TKR_KV_KEEP_PER_HEAD
                        } else {
                            TKR_KV_KEEP_SHARED
                        },
                        &mut c,
                    )
                };
                out.extend(words(&cache));
                out.push(f32::from_bits(c as u32));
                st
            }),
        ));
    }
    for (name, select, k, tau, dt) in [
        (
            "route f32 top-k",
            TKR_ROUTE_TOPK,
            19usize,
            0.0f32,
            TKR_DTYPE_F32,
        ),
        (
            "route f16 threshold",
            TKR_ROUTE_THRESHOLD,
            0,
            0.5,
            TKR_DTYPE_F16,
        ),
        (
            "route bf16 top-k by score",
            TKR_ROUTE_TOPK,
            23,
            0.0,
            TKR_DTYPE_BF16,
        ),
    ] {
        let h: Arc<dyn AsPtr> = match dt {
            TKR_DTYPE_F32 => h32.clone(),
            TKR_DTYPE_F16 => h16.clone(),
            _ => hb.clone(),
        };
        let w: Arc<Vec<u32>> = Arc::new(match dt {
            TKR_DTYPE_F32 => w32.iter().map(|v| v.to_bits()).collect(),
            TKR_DTYPE_F16 => w32
                .chunks(2)
                .map(|c| {
                    half::f16::from_f32(c[0]).to_bits() as u32
                        | (half::f16::from_f32(*c.get(1).unwrap_or(&0.0)).to_bits() as u32) << 16
                })
                .collect(),
            _ => w32
                .chunks(2)
                .map(|c| {
                    half::bf16::from_f32(c[0]).to_bits() as u32
                        | (half::bf16::from_f32(*c.get(1).unwrap_or(&0.0)).to_bits() as u32) << 16
                })
                .collect(),
        });
        let es = if dt == TKR_DTYPE_F32 { 4 } else { 2 };
        jobs.push((
            name,
            Box::new(move |out: &mut Vec<f32>| {
                // SAFETY: all-zero then init: a valid options struct.
                let mut o: tkr_route_options = unsafe { core::mem::zeroed() };
                let cap = n;
                let mut idx = vec![0u32; cap];
                let mut sc = vec![0f32; cap];
                let mut rows = vec![0f32; cap * d * es / 4 + 1];
                let mut count = 0usize;
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_route_options_init(&mut o);
                    o.keep_first = 1;
                    o.keep_last = 2;
                    if dt == TKR_DTYPE_BF16 {
                        o.flags = TKR_TOPK_ORDER_SCORE;
                    }
                    tkr_route(
                        dt,
                        h.ptr(),
                        n,
                        d,
                        hs,
                        w.as_ptr() as _,
                        core::ptr::null(),
                        TKR_ACT_SIGMOID,
                        select,
                        k,
                        tau,
                        &o,
                        idx.as_mut_ptr(),
                        sc.as_mut_ptr(),
                        rows.as_mut_ptr() as _,
                        d,
                        cap,
                        &mut count,
                        core::ptr::null_mut(),
                        0,
                    )
                };
                out.extend(words(&idx[..count]));
                out.extend(&sc[..count]);
                out.extend(words(&rows[..count * d * es / 4]));
                out.push(f32::from_bits(count as u32));
                st
            }),
        ));
    }
    jobs
}

/// Attention (dense, index and block-sparse keys, GQA, causal with positions and a
/// window, lse and mass outputs), merge, key-block summaries and bounds.
fn attention_jobs(r: &mut Rng) -> Vec<(&'static str, Job)> {
    let (n_q, h_q, h_kv, d, n_k) = (5usize, 4usize, 2usize, 67usize, 150usize);
    let q: Arc<Vec<f32>> = Arc::new((0..n_q * h_q * d).map(|_| r.f32() * 0.3).collect());
    let k: Arc<Vec<f32>> = Arc::new((0..n_k * h_kv * d).map(|_| r.f32() * 0.3).collect());
    let v: Arc<Vec<f32>> = Arc::new((0..n_k * h_kv * d).map(|_| r.f32()).collect());
    let kb: Arc<Vec<u16>> = Arc::new(
        k.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect(),
    );
    let vb: Arc<Vec<u16>> = Arc::new(
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect(),
    );
    let qb: Arc<Vec<u16>> = Arc::new(
        q.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect(),
    );
    let idx: Arc<Vec<u32>> = Arc::new((0..90u32).map(|j| (j * 13 + 1) % n_k as u32).collect());
    let q_pos: Arc<Vec<u32>> = Arc::new((0..n_q as u32).map(|i| 100 + 10 * i).collect());
    let k_pos: Arc<Vec<u32>> = Arc::new((0..n_k as u32).collect());
    let mut jobs: Vec<(&'static str, Job)> = Vec::new();
    for (name, kind, causal, dt) in [
        (
            "attention f32 dense causal window, lse, mass",
            TKR_KEYS_DENSE,
            true,
            TKR_DTYPE_F32,
        ),
        (
            "attention bf16 indices",
            TKR_KEYS_INDICES,
            false,
            TKR_DTYPE_BF16,
        ),
        (
            "attention f32 blocks per KV head, causal",
            TKR_KEYS_BLOCKS,
            true,
            TKR_DTYPE_F32,
        ),
    ] {
        let (q, k, v, qb, kb, vb, idx, q_pos, k_pos) = (
            q.clone(),
            k.clone(),
            v.clone(),
            qb.clone(),
            kb.clone(),
            vb.clone(),
            idx.clone(),
            q_pos.clone(),
            k_pos.clone(),
        );
        jobs.push((
            name,
            Box::new(move |out: &mut Vec<f32>| {
                let mut o = vec![0f32; n_q * h_q * d];
                let mut lse = vec![0f32; n_q * h_q];
                let mut mass = vec![0f32; h_kv * n_k];
                // Block lists: per KV head, query blocks of 2, blocks of 16 keys.
                let n_lists = n_q.div_ceil(2) * h_kv;
                let offsets: Vec<usize> = (0..=n_lists).map(|l| l * 3).collect();
                let ids: Vec<u32> = (0..n_lists * 3).map(|j| (j % 10) as u32).collect();
                // SAFETY: all-zero then init: valid structs; buffers of the documented
                // sizes.
                let st = unsafe {
                    let mut opt: tkr_attention_options = core::mem::zeroed();
                    let mut keys: tkr_attention_keys = core::mem::zeroed();
                    tkr_attention_options_init(&mut opt);
                    tkr_attention_keys_init(&mut keys);
                    keys.kind = kind;
                    keys.indices = idx.as_ptr();
                    keys.n_indices = idx.len();
                    keys.block_lists = TKR_BLOCK_LISTS_PER_KV_HEAD;
                    keys.block_size = 16;
                    keys.query_block_size = 2;
                    keys.block_offsets = offsets.as_ptr();
                    keys.block_ids = ids.as_ptr();
                    keys.n_block_ids = ids.len();
                    if causal {
                        opt.flags = TKR_ATTENTION_CAUSAL;
                        opt.window = if kind == TKR_KEYS_DENSE { 60 } else { 0 };
                        opt.q_positions = q_pos.as_ptr();
                        opt.k_positions = k_pos.as_ptr();
                    }
                    opt.out_dtype = TKR_DTYPE_F32;
                    opt.lse = lse.as_mut_ptr();
                    opt.mass = mass.as_mut_ptr();
                    opt.mass_head_stride = n_k;
                    let (qp, kp, vp) = if dt == TKR_DTYPE_F32 {
                        (
                            q.as_ptr() as *const core::ffi::c_void,
                            k.as_ptr() as _,
                            v.as_ptr() as _,
                        )
                    } else {
                        (qb.as_ptr() as _, kb.as_ptr() as _, vb.as_ptr() as _)
                    };
                    tkr_attention(
                        dt,
                        qp,
                        n_q,
                        h_q,
                        d,
                        h_q * d,
                        d,
                        kp,
                        vp,
                        n_k,
                        h_kv,
                        h_kv * d,
                        d,
                        h_kv * d,
                        d,
                        &keys,
                        &opt,
                        o.as_mut_ptr() as _,
                        h_q * d,
                        d,
                    )
                };
                out.extend(o);
                out.extend(lse);
                out.extend(mass);
                st
            }),
        ));
    }
    {
        let parts: Arc<Vec<f32>> = Arc::new((0..3 * 7 * d).map(|_| r.f32()).collect());
        let lse: Arc<Vec<f32>> = Arc::new(
            (0..3 * 7)
                .map(|i| if i == 4 { f32::NEG_INFINITY } else { r.f32() })
                .collect(),
        );
        jobs.push((
            "attention_merge bf16 out",
            Box::new(move |out: &mut Vec<f32>| {
                let mut o = vec![0u16; 7 * d];
                let mut ol = vec![0f32; 7];
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_attention_merge(
                        TKR_DTYPE_BF16,
                        parts.as_ptr(),
                        3,
                        7,
                        d,
                        7 * d,
                        d,
                        lse.as_ptr(),
                        7,
                        o.as_mut_ptr() as _,
                        d,
                        ol.as_mut_ptr(),
                    )
                };
                out.extend(words(&o));
                out.extend(ol);
                st
            }),
        ));
    }
    {
        let (q, kb) = (q.clone(), kb.clone());
        jobs.push((
            "key_block_summary bf16 + bound f32",
            Box::new(move |out: &mut Vec<f32>| {
                let nb = n_k.div_ceil(16);
                let mut kmin = vec![0f32; nb * h_kv * d];
                let mut kmax = vec![0f32; nb * h_kv * d];
                let mut bound = vec![0f32; n_q * h_q * nb];
                // SAFETY: buffers of the documented sizes.
                let st = unsafe {
                    tkr_key_block_summary(
                        TKR_DTYPE_BF16,
                        kb.as_ptr() as _,
                        n_k,
                        h_kv,
                        d,
                        h_kv * d,
                        d,
                        16,
                        0,
                        nb,
                        kmin.as_mut_ptr(),
                        kmax.as_mut_ptr(),
                    )
                };
                let st2 = unsafe {
                    tkr_key_block_bound(
                        TKR_DTYPE_F32,
                        q.as_ptr() as _,
                        n_q,
                        h_q,
                        d,
                        h_q * d,
                        d,
                        kmin.as_ptr(),
                        kmax.as_ptr(),
                        nb,
                        h_kv,
                        bound.as_mut_ptr(),
                        nb,
                    )
                };
                out.extend(kmin);
                out.extend(kmax);
                out.extend(bound);
                st | st2
            }),
        ));
    }
    jobs
}

trait AsPtr: Send + Sync {
    fn ptr(&self) -> *const core::ffi::c_void;
}
impl<T: Send + Sync> AsPtr for Vec<T> {
    fn ptr(&self) -> *const core::ffi::c_void {
        self.as_ptr() as *const _
    }
}

#[test]
fn many_threads_every_family_while_the_level_switches() {
    let jobs = Arc::new(jobs());
    let reference: Vec<Vec<u32>> = jobs
        .iter()
        .map(|(name, job)| {
            let mut out = Vec::new();
            assert_eq!(job(&mut out), TKR_STATUS_OK, "{name}");
            out.iter().map(|v| v.to_bits()).collect()
        })
        .collect();
    let reference = Arc::new(reference);
    let stop = Arc::new(AtomicBool::new(false));
    let switches = Arc::new(AtomicU64::new(0));
    let switcher = {
        let (stop, switches) = (stop.clone(), switches.clone());
        std::thread::spawn(move || {
            let mask = tkr_supported_isas();
            let mut id = 0u32;
            while !stop.load(Ordering::Relaxed) {
                id = (id + 1) % 5;
                if id != TKR_ISA_AUTO && mask & (1 << id) == 0 {
                    continue;
                }
                assert_eq!(tkr_set_isa(id), TKR_STATUS_OK);
                switches.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while switches.load(Ordering::Relaxed) < 100 {
        std::thread::yield_now();
    }
    let iters: usize = std::env::var("TKR_TEST_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let (jobs, reference) = (jobs.clone(), reference.clone());
            std::thread::spawn(move || {
                let mut out = Vec::new();
                for it in 0..iters {
                    for k in 0..jobs.len() {
                        let j = (k + t + it) % jobs.len();
                        let (name, job) = &jobs[j];
                        out.clear();
                        assert_eq!(job(&mut out), TKR_STATUS_OK, "{name}");
                        let bits: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                        assert!(
                            bits == reference[j],
                            "{name}: differs from the single-threaded reference"
                        );
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    switcher.join().unwrap();
    assert!(switches.load(Ordering::Relaxed) >= 100);
    println!(
        "{} calls on 8 threads, {} level switches",
        8 * iters * jobs.len(),
        switches.load(Ordering::Relaxed)
    );
}
