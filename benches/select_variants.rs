//! Selection: every registry entry, and the alternatives the shipped kernels were chosen
//! over, each timed interleaved with a plain SIMD read of the same bytes (medians), so
//! that they compare by their fraction of the read ceiling on a noisy machine.
//!
//! - threshold (`s > tau`, n = 50257, 1M (L3) and 16M (DRAM) f32 at 10% / 50%): the registry
//!   entries, and on AVX-512 the per-block loop the grouped one replaced (two compares,
//!   one mask move and popcount per block, compress + whole-vector store), a masked
//!   store of exactly the selected lanes, two 8-lane compresses per block, and the count
//!   alone (the work without producing indices);
//! - top-k (n = 50257 k = 50; n = 1M with k in {64, n/10, n/2}): the registry entries,
//!   and two alternatives without sampled pivots: radix selection over the keys of the
//!   whole row then an output pass, and `select_nth_unstable` over (key, index) pairs
//!   (the shape of `std::nth_element`-based peers) then a sort of the k indices.
//!
//! `cargo bench --bench select_variants [-- FILTER]`

use std::hint::black_box;
use std::time::Instant;
use tokenroute_kernels::select::{self, Order, ThresholdArgs, TopkArgs, THRESHOLD_F32, TOPK_F32};

#[path = "bench/ceiling.rs"]
#[allow(dead_code)]
mod ceiling;

/// Median times of `f` and of a read of `ceil_buf`, interleaved.
fn timed(ceil_buf: &[f32], mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (mut ts, mut cs) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while ts.len() < 15 || (start.elapsed().as_secs_f64() < 0.7 && ts.len() < 2000) {
        let t = Instant::now();
        black_box(ceiling::read_sum(ceil_buf));
        cs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    ts.sort_by(|a, b| a.total_cmp(b));
    cs.sort_by(|a, b| a.total_cmp(b));
    (ts[ts.len() / 2], cs[cs.len() / 2])
}

fn report(name: &str, filter: &str, ceil_buf: &[f32], f: impl FnMut()) {
    if !name.contains(filter) {
        return;
    }
    let (t, c) = timed(ceil_buf, f);
    let bytes = ceil_buf.len() * 4;
    println!(
        "{name:<64} {:>10.1} us {:>7.2} GB/s  {:>4.0}% of read ({:.1} GB/s)",
        t * 1e6,
        bytes as f64 / t / 1e9,
        100.0 * c / t,
        bytes as f64 / c / 1e9
    );
}

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

// ------------------------------------------------------------------ top-k alternatives

/// Radix selection over every key of the row, then one output pass.
fn topk_radix_whole_row(s: &[f32], k: usize, keys: &mut Vec<u32>, out: &mut [u32]) {
    keys.clear();
    keys.extend(s.iter().map(|x| select::ukey(x.to_bits())));
    if k == 0 {
        return;
    }
    let (t, greater) = select::select_kth(keys, k);
    let mut need = k - greater;
    let mut w = 0;
    for (i, x) in s.iter().enumerate() {
        let u = select::ukey(x.to_bits());
        if u > t || (u == t && need > 0) {
            need -= (u == t) as usize;
            out[w] = i as u32;
            w += 1;
        }
    }
}

/// `select_nth_unstable` over (key, index) pairs, then the k indices sorted.
fn topk_nth_element(s: &[f32], k: usize, pairs: &mut Vec<u64>, out: &mut [u32]) {
    pairs.clear();
    pairs.extend(
        s.iter()
            .enumerate()
            .map(|(i, x)| ((!select::ukey(x.to_bits()) as u64) << 32) | i as u64),
    );
    if k == 0 {
        return;
    }
    pairs.select_nth_unstable(k - 1);
    for (o, p) in out.iter_mut().zip(&pairs[..k]) {
        *o = *p as u32;
    }
    out[..k].sort_unstable();
}

// -------------------------------------------------- AVX-512 threshold loop alternatives

#[cfg(target_arch = "x86_64")]
mod avx512_alternatives {
    use std::arch::x86_64::*;

    const INF: i32 = 0x7f80_0000;

    #[inline(always)]
    unsafe fn iota() -> __m512i {
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
    }

    /// The loop before grouping: per block, `c < b <= INF` by two compares, the mask
    /// moved and counted, compress into a register, whole-vector store. `STORE`:
    /// 0 = whole vector, 1 = masked store of the selected lanes, 2 = no store (count
    /// only). Tails are not handled (n is a multiple of 16 here). tau >= 0.
    #[target_feature(enable = "avx2,bmi2,popcnt,avx512f,avx512bw,avx512dq,avx512vl")]
    pub unsafe fn per_block<const STORE: u8>(s: &[f32], tau: f32, out: &mut [u32]) -> usize {
        let c = _mm512_set1_epi32(tau.to_bits() as i32);
        let inf = _mm512_set1_epi32(INF);
        let mut iv = iota();
        let (mut cnt, mut i) = (0usize, 0usize);
        let (p, o) = (s.as_ptr() as *const i32, out.as_mut_ptr());
        while i + 16 <= s.len() {
            // SAFETY: i + 16 <= n; stores at o + cnt with cnt <= i (room for n).
            unsafe {
                let b = _mm512_loadu_si512(p.add(i) as *const _);
                let m = _mm512_mask_cmpgt_epi32_mask(_mm512_cmple_epi32_mask(b, inf), b, c);
                let v = _mm512_mask_compress_epi32(iv, m, iv);
                let pc = (m as u32).count_ones();
                match STORE {
                    0 => _mm512_storeu_si512(o.add(cnt) as *mut _, v),
                    1 => _mm512_mask_storeu_epi32(
                        o.add(cnt) as *mut _,
                        _bzhi_u32(0xffff, pc) as u16,
                        v,
                    ),
                    _ => {}
                }
                cnt += pc as usize;
                iv = _mm512_add_epi32(iv, _mm512_set1_epi32(16));
            }
            i += 16;
        }
        cnt
    }

    /// Two 8-lane compresses and stores per 16-lane block.
    #[target_feature(enable = "avx2,bmi2,popcnt,avx512f,avx512bw,avx512dq,avx512vl")]
    pub unsafe fn halves(s: &[f32], tau: f32, out: &mut [u32]) -> usize {
        let c = _mm512_set1_epi32(tau.to_bits() as i32);
        let inf = _mm512_set1_epi32(INF);
        let mut iv = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let (mut cnt, mut i) = (0usize, 0usize);
        let (p, o) = (s.as_ptr() as *const i32, out.as_mut_ptr());
        while i + 16 <= s.len() {
            // SAFETY: as in per_block.
            unsafe {
                let b = _mm512_loadu_si512(p.add(i) as *const _);
                let m = _mm512_mask_cmpgt_epi32_mask(_mm512_cmple_epi32_mask(b, inf), b, c) as u32;
                let (lo, hi) = ((m & 0xff) as u8, (m >> 8) as u8);
                _mm256_storeu_si256(o.add(cnt) as *mut _, _mm256_mask_compress_epi32(iv, lo, iv));
                cnt += lo.count_ones() as usize;
                let iv2 = _mm256_add_epi32(iv, _mm256_set1_epi32(8));
                _mm256_storeu_si256(
                    o.add(cnt) as *mut _,
                    _mm256_mask_compress_epi32(iv2, hi, iv2),
                );
                cnt += hi.count_ones() as usize;
                iv = _mm256_add_epi32(iv2, _mm256_set1_epi32(8));
            }
            i += 16;
        }
        cnt
    }
}

fn main() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();

    // Threshold.
    for n in [50257usize, 1 << 20, 1 << 24] {
        let s = uniform(n, 5);
        let mut out = vec![0u32; n];
        for (tau, pct) in [(0.8f32, 10), (0.0, 50)] {
            let want = s.iter().filter(|&&x| x > tau).count();
            for k in THRESHOLD_F32.iter().filter(|k| k.isa.is_supported()) {
                let a = ThresholdArgs {
                    scores: s.as_ptr(),
                    n,
                    tau,
                    keep_first: 0,
                    keep_last: 0,
                    keep: std::ptr::null(),
                    out_idx: out.as_mut_ptr(),
                    out_mask: std::ptr::null_mut(),
                    mask_len: 0,
                };
                // SAFETY: the buffers match the arguments; the CPU has the tier.
                assert_eq!(unsafe { (k.f)(&a) }, want);
                report(&format!("{} n={n} {pct}%", k.id()), &filter, &s, || {
                    // SAFETY: as above.
                    black_box(unsafe { (k.f)(&a) });
                });
            }
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512bw") && n % 16 == 0 {
                use avx512_alternatives::*;
                type Alt = unsafe fn(&[f32], f32, &mut [u32]) -> usize;
                let alts: [(&str, Alt); 4] = [
                    ("per-block compress + whole store", per_block::<0>),
                    ("per-block compress + masked store", per_block::<1>),
                    ("per-block two 8-lane compresses", halves),
                    ("per-block count only (no indices)", per_block::<2>),
                ];
                for (what, f) in alts {
                    // SAFETY: the CPU has AVX-512 (checked); out has room for n.
                    assert_eq!(unsafe { f(&s, tau, &mut out) }, want);
                    report(
                        &format!("alt avx512 {what} n={n} {pct}%"),
                        &filter,
                        &s,
                        || {
                            // SAFETY: as above.
                            black_box(unsafe { f(&s, tau, &mut out) });
                        },
                    );
                }
            }
        }
    }

    // Top-k.
    for (n, ks) in [
        (50257usize, vec![50usize]),
        (1 << 20, vec![64, (1 << 20) / 10, (1 << 20) / 2]),
    ] {
        let s = uniform(n, 9);
        let mut out = vec![0u32; n];
        let mut scratch = vec![0u64; n];
        let mut want = vec![0u32; n];
        for k in ks {
            let mut keys = Vec::with_capacity(n);
            topk_radix_whole_row(&s, k, &mut keys, &mut want);
            for kern in TOPK_F32.iter().filter(|k| k.isa.is_supported()) {
                let a = TopkArgs {
                    scores: s.as_ptr(),
                    n,
                    k,
                    keep_first: 0,
                    keep_last: 0,
                    keep: std::ptr::null(),
                    order: Order::Position,
                    out_idx: out.as_mut_ptr(),
                    out_scores: std::ptr::null_mut(),
                    scratch: scratch.as_mut_ptr() as *mut u32,
                };
                // SAFETY: the buffers match the arguments; the CPU has the tier.
                unsafe { (kern.f)(&a) };
                assert_eq!(out[..k], want[..k], "{}", kern.id());
                report(&format!("{} n={n} k={k}", kern.id()), &filter, &s, || {
                    // SAFETY: as above.
                    unsafe { (kern.f)(&a) }
                });
            }
            report(
                &format!("alt radix select over the whole row n={n} k={k}"),
                &filter,
                &s,
                || topk_radix_whole_row(&s, k, &mut keys, &mut out),
            );
            let mut pairs = Vec::with_capacity(n);
            topk_nth_element(&s, k, &mut pairs, &mut out);
            assert_eq!(out[..k], want[..k]);
            report(
                &format!("alt nth_element on (key, index) pairs n={n} k={k}"),
                &filter,
                &s,
                || topk_nth_element(&s, k, &mut pairs, &mut out),
            );
        }
    }
}
