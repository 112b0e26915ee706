//! Every selection variant against naive oracles that live here: threshold selection by
//! IEEE `s > tau`, top-k by sorting `(score desc with NaN lowest and -0 == +0, index
//! asc)`. Exact equality on every tier (so every tier also equals every other), over
//! every small shape and k, forced keeps, special values, distributions that defeat the
//! sampled pivots on purpose, and huge rows. Outputs are surrounded by canaries: nothing
//! outside the documented ranges may be written.

mod common;
use common::*;
use proptest::prelude::{any, prop, prop_oneof, proptest, Just, ProptestConfig, Strategy};
use std::cmp::Ordering;
use tokenroute_kernels::select::{
    self, Order, ThresholdArgs, TopkArgs, COUNT_NONZERO_U8, INDICES_TO_MASK, MASK_TO_INDICES,
    THRESHOLD_F32, TOPK_F32,
};

const CANARY: u32 = 0xdead_beef;

// ----------------------------------------------------------------------------- oracles

/// Score order: NaN below every number, all NaNs equal, -0 == +0.
fn score_cmp(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap(),
    }
}

/// Forced set of a row as a bool per token.
fn forced(n: usize, kf: usize, kl: usize, keep: Option<&[u8]>) -> Vec<bool> {
    let kf = kf.min(n);
    let kl = kl.min(n - kf);
    (0..n)
        .map(|i| i < kf || i >= n - kl || keep.is_some_and(|k| k[i] != 0))
        .collect()
}

fn oracle_threshold(s: &[f32], tau: f32, kf: usize, kl: usize, keep: Option<&[u8]>) -> Vec<u32> {
    let f = forced(s.len(), kf, kl, keep);
    (0..s.len())
        .filter(|&i| f[i] || s[i] > tau)
        .map(|i| i as u32)
        .collect()
}

fn oracle_topk(
    s: &[f32],
    k: usize,
    kf: usize,
    kl: usize,
    keep: Option<&[u8]>,
    order: Order,
) -> Vec<u32> {
    let f = forced(s.len(), kf, kl, keep);
    let nf = f.iter().filter(|&&x| x).count();
    assert!(k >= nf);
    let mut others: Vec<usize> = (0..s.len()).filter(|&i| !f[i]).collect();
    others.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = (0..s.len()).filter(|&i| f[i]).collect();
    chosen.extend_from_slice(&others[..k - nf]);
    match order {
        Order::Position => chosen.sort(),
        Order::Score => chosen.sort_by(|&a, &b| score_cmp(s[b], s[a]).then(a.cmp(&b))),
    }
    chosen.into_iter().map(|i| i as u32).collect()
}

// ----------------------------------------------------------------------------- runners

#[derive(Clone, Copy, Debug)]
struct Keeps<'a> {
    first: usize,
    last: usize,
    mask: Option<&'a [u8]>,
}

const NO_KEEPS: Keeps<'static> = Keeps {
    first: 0,
    last: 0,
    mask: None,
};

fn forced_count(n: usize, keeps: Keeps) -> usize {
    forced(n, keeps.first, keeps.last, keeps.mask)
        .iter()
        .filter(|&&x| x)
        .count()
}

/// Runs one top-k kernel and checks canaries; returns (indices, scores).
fn run_topk(
    f: select::TopkFn,
    s: &[f32],
    k: usize,
    keeps: Keeps,
    order: Order,
    with_scores: bool,
) -> Vec<u32> {
    let n = s.len();
    let mut out = vec![CANARY; k + 9];
    let mut sc = vec![f32::from_bits(CANARY); k + 9];
    let mut scratch = vec![0u64; select::topk_scratch_words(n).div_ceil(2)];
    let args = TopkArgs {
        scores: s.as_ptr(),
        n,
        k,
        keep_first: keeps.first,
        keep_last: keeps.last,
        keep: keeps.mask.map_or(std::ptr::null(), |m| m.as_ptr()),
        order,
        out_idx: out.as_mut_ptr(),
        out_scores: if with_scores {
            sc.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        },
        scratch: scratch.as_mut_ptr() as *mut u32,
    };
    unsafe { f(&args) };
    assert!(out[k..].iter().all(|&x| x == CANARY), "wrote past k");
    assert!(
        sc[k..].iter().all(|&x| x.to_bits() == CANARY),
        "scores past k"
    );
    if with_scores {
        for j in 0..k {
            assert_eq!(
                sc[j].to_bits(),
                s[out[j] as usize].to_bits(),
                "score of out[{j}]"
            );
        }
    } else {
        assert!(sc.iter().all(|&x| x.to_bits() == CANARY));
    }
    out.truncate(k);
    out
}

fn check_topk(s: &[f32], k: usize, keeps: Keeps, what: &str) {
    for order in [Order::Position, Order::Score] {
        let want = oracle_topk(s, k, keeps.first, keeps.last, keeps.mask, order);
        for kern in runnable(TOPK_F32) {
            let got = run_topk(kern.f, s, k, keeps, order, order == Order::Score);
            assert_eq!(
                got,
                want,
                "{} {what}: n={} k={k} {keeps:?} {order:?}",
                kern.id(),
                s.len()
            );
        }
    }
}

/// Runs one threshold kernel with every output combination and checks canaries.
fn check_threshold(s: &[f32], tau: f32, keeps: Keeps, what: &str) {
    let n = s.len();
    let want = oracle_threshold(s, tau, keeps.first, keeps.last, keeps.mask);
    for kern in runnable(THRESHOLD_F32) {
        for (with_idx, with_mask) in [(true, true), (true, false), (false, true), (false, false)] {
            let mut out = vec![CANARY; n + 9];
            let pad = 5;
            let mut mask = vec![0xaau8; n + pad + 7];
            let args = ThresholdArgs {
                scores: s.as_ptr(),
                n,
                tau,
                keep_first: keeps.first,
                keep_last: keeps.last,
                keep: keeps.mask.map_or(std::ptr::null(), |m| m.as_ptr()),
                out_idx: if with_idx {
                    out.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
                out_mask: if with_mask {
                    mask.as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                },
                mask_len: n + pad,
            };
            let c = unsafe { (kern.f)(&args) };
            let ctx = format!("{} {what}: n={n} tau={tau:?} {keeps:?}", kern.id());
            assert_eq!(c, want.len(), "{ctx}: count");
            assert!(out[n..].iter().all(|&x| x == CANARY), "{ctx}: idx past n");
            if with_idx {
                assert_eq!(&out[..c], &want[..], "{ctx}: indices");
            } else {
                assert!(out.iter().all(|&x| x == CANARY), "{ctx}: idx written");
            }
            if with_mask {
                let mut w = vec![0u8; n];
                for &i in &want {
                    w[i as usize] = 1;
                }
                assert_eq!(&mask[..n], &w[..], "{ctx}: mask");
                assert!(mask[n..n + pad].iter().all(|&b| b == 0), "{ctx}: pad");
                assert!(mask[n + pad..].iter().all(|&b| b == 0xaa), "{ctx}: past");
            } else {
                assert!(mask.iter().all(|&b| b == 0xaa), "{ctx}: mask written");
            }
        }
    }
}

// ------------------------------------------------------------------------- generators

const NANS: [u32; 4] = [0x7fc0_0000, 0xffc0_0000, 0x7f80_0001, 0xffff_ffff];

#[derive(Clone, Copy, Debug)]
enum Dist {
    Random,
    AllEqual,
    FewDistinct,
    Sorted,
    Reversed,
    Specials,
    Denormals,
    SmallInts,
    ZerosSigned,
}

const DISTS: [Dist; 9] = [
    Dist::Random,
    Dist::AllEqual,
    Dist::FewDistinct,
    Dist::Sorted,
    Dist::Reversed,
    Dist::Specials,
    Dist::Denormals,
    Dist::SmallInts,
    Dist::ZerosSigned,
];

fn special(rng: &mut Rng) -> f32 {
    match rng.below(8) {
        0 => f32::from_bits(NANS[rng.below(4)]),
        1 => f32::INFINITY,
        2 => f32::NEG_INFINITY,
        3 => 0.0,
        4 => -0.0,
        5 => f32::from_bits(1 + rng.below(1000) as u32),
        6 => -f32::from_bits(1 + rng.below(1000) as u32),
        _ => SPECIAL_F32[rng.below(SPECIAL_F32.len())],
    }
}

fn gen(dist: Dist, n: usize, rng: &mut Rng) -> Vec<f32> {
    match dist {
        Dist::Random => (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect(),
        Dist::AllEqual => {
            let v = if rng.below(3) == 0 {
                special(rng)
            } else {
                rng.uniform(-3.0, 3.0)
            };
            vec![v; n]
        }
        Dist::FewDistinct => {
            let vals: Vec<f32> = (0..1 + rng.below(4))
                .map(|_| rng.uniform(-2.0, 2.0))
                .collect();
            (0..n).map(|_| vals[rng.below(vals.len())]).collect()
        }
        Dist::Sorted | Dist::Reversed => {
            let mut v: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            if matches!(dist, Dist::Reversed) {
                v.reverse();
            }
            v
        }
        Dist::Specials => (0..n)
            .map(|_| {
                if rng.below(4) == 0 {
                    special(rng)
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
            .collect(),
        Dist::Denormals => (0..n)
            .map(|_| {
                let b = rng.below(0x80_0000) as u32;
                if rng.below(2) == 0 {
                    f32::from_bits(b)
                } else {
                    -f32::from_bits(b)
                }
            })
            .collect(),
        Dist::SmallInts => (0..n).map(|_| rng.below(7) as f32 - 3.0).collect(),
        Dist::ZerosSigned => (0..n)
            .map(|_| match rng.below(3) {
                0 => 0.0,
                1 => -0.0,
                _ => f32::from_bits(NANS[rng.below(4)]),
            })
            .collect(),
    }
}

fn keeps_for<'a>(n: usize, rng: &mut Rng, mask: &'a mut Vec<u8>, k_max: usize) -> Keeps<'a> {
    // A random forced set whose size fits in k_max.
    let first = rng.below(3.min(k_max + 1));
    let last = rng.below(3.min(k_max + 1 - first));
    let with_mask = rng.below(2) == 0;
    *mask = (0..n)
        .map(|_| {
            if rng.below(8) == 0 {
                1 + rng.below(255) as u8
            } else {
                0
            }
        })
        .collect();
    let mut keeps = Keeps {
        first,
        last,
        mask: None,
    };
    if with_mask {
        // Thin the mask until the forced count fits.
        loop {
            let c = forced_count(
                n,
                Keeps {
                    first,
                    last,
                    mask: Some(mask),
                },
            );
            if c <= k_max {
                break;
            }
            let on: Vec<usize> = (0..n).filter(|&i| mask[i] != 0).collect();
            mask[on[rng.below(on.len())]] = 0;
        }
        keeps.mask = Some(mask);
    }
    keeps
}

// ------------------------------------------------------------------------------ tests

/// Every n up to 4 vectors of the widest tier + 3, every k, every distribution.
#[test]
fn topk_every_small_n_and_k() {
    let mut rng = Rng::new(1);
    for n in 0..=4 * 16 + 3 {
        for dist in DISTS {
            let s = gen(dist, n, &mut rng);
            for k in 0..=n {
                check_topk(&s, k, NO_KEEPS, &format!("{dist:?}"));
            }
        }
    }
}

#[test]
fn topk_small_n_with_forced_keeps() {
    let mut rng = Rng::new(2);
    for n in 0..=4 * 16 + 3 {
        for dist in [Dist::Random, Dist::Specials, Dist::SmallInts] {
            let s = gen(dist, n, &mut rng);
            for k in 0..=n {
                let mut mask = Vec::new();
                let keeps = keeps_for(n, &mut rng, &mut mask, k);
                check_topk(&s, k, keeps, &format!("{dist:?}"));
            }
            // Forced sets that cover everything, or overlap.
            if n > 0 {
                check_topk(
                    &s,
                    n,
                    Keeps {
                        first: n + 5,
                        last: 0,
                        mask: None,
                    },
                    "all first",
                );
                check_topk(
                    &s,
                    n,
                    Keeps {
                        first: n / 2 + 1,
                        last: n,
                        mask: None,
                    },
                    "overlap",
                );
            }
        }
    }
}

/// Row lengths on both sides of the direct/sampled switch and of vector multiples.
#[test]
fn topk_medium_rows_every_path() {
    let mut rng = Rng::new(3);
    let ns = [
        select::DIRECT_MAX - 1,
        select::DIRECT_MAX,
        select::DIRECT_MAX + 1,
        select::DIRECT_MAX + 15,
        1000,
        1023,
        1024,
        1025,
        4096 + 7,
    ];
    for n in ns {
        for dist in DISTS {
            let s = gen(dist, n, &mut rng);
            let ks = [0, 1, 2, 7, 50, 64, n / 10, n / 3, n / 2, n - 64, n - 1, n];
            for k in ks {
                check_topk(&s, k, NO_KEEPS, &format!("{dist:?}"));
                let mut mask = Vec::new();
                let keeps = keeps_for(n, &mut rng, &mut mask, k);
                check_topk(&s, k, keeps, &format!("{dist:?} keeps"));
            }
        }
    }
}

/// Inputs built against the deterministic sample: the sampled positions see one
/// distribution and the others another, so the bracket misses high, misses low, or
/// lands on heavily tied pivots; also keep masks that hide the whole sample.
#[test]
fn topk_defeats_the_sample_and_stays_exact() {
    let mut rng = Rng::new(4);
    for n in [600, 2000, 10_000, 70_001] {
        let sampled: Vec<usize> = select::sample_positions(n).collect();
        let mut is_sampled = vec![false; n];
        for &i in &sampled {
            is_sampled[i] = true;
        }
        let mut cases: Vec<(&str, Vec<f32>)> = Vec::new();
        // Sampled low, others high: the k-th key is far above the upper pivot.
        cases.push((
            "miss high",
            (0..n)
                .map(|i| {
                    if is_sampled[i] {
                        rng.uniform(0.0, 1.0)
                    } else {
                        rng.uniform(2.0, 3.0)
                    }
                })
                .collect(),
        ));
        // Sampled high, others low: far below the lower pivot.
        cases.push((
            "miss low",
            (0..n)
                .map(|i| {
                    if is_sampled[i] {
                        rng.uniform(2.0, 3.0)
                    } else {
                        rng.uniform(0.0, 1.0)
                    }
                })
                .collect(),
        ));
        // Sampled all equal to a value that others straddle.
        cases.push((
            "tied pivot",
            (0..n)
                .map(|i| {
                    if is_sampled[i] {
                        0.5
                    } else {
                        rng.uniform(0.0, 1.0)
                    }
                })
                .collect(),
        ));
        // Sampled all equal; others all equal to it except a few above and below.
        cases.push((
            "tied pivot, few others",
            (0..n)
                .map(|i| match (is_sampled[i], rng.below(50)) {
                    (true, _) => 0.5,
                    (false, 0) => 0.75,
                    (false, 1) => 0.25,
                    _ => 0.5,
                })
                .collect(),
        ));
        // Sampled NaN, others numbers; and the reverse.
        cases.push((
            "sample nan",
            (0..n)
                .map(|i| {
                    if is_sampled[i] {
                        f32::NAN
                    } else {
                        rng.uniform(-1.0, 1.0)
                    }
                })
                .collect(),
        ));
        cases.push((
            "others nan",
            (0..n)
                .map(|i| {
                    if is_sampled[i] {
                        rng.uniform(-1.0, 1.0)
                    } else {
                        -f32::NAN
                    }
                })
                .collect(),
        ));
        for (what, s) in &cases {
            for k in [1, 3, 50, n / 100, n / 10, n / 2, n - n / 10, n - 2] {
                check_topk(s, k, NO_KEEPS, what);
            }
        }
        // A keep mask on every sampled position (they are forced, not candidates).
        let mask: Vec<u8> = is_sampled.iter().map(|&b| b as u8).collect();
        let s = gen(Dist::Random, n, &mut rng);
        let nf = sampled.len();
        for k in [nf, nf + 1, nf + 40, n / 2, n - 1] {
            let keeps = Keeps {
                first: 0,
                last: 0,
                mask: Some(&mask),
            };
            check_topk(&s, k, keeps, "sample hidden by keep mask");
        }
    }
}

#[test]
fn topk_huge_rows() {
    let mut rng = Rng::new(5);
    let n = 1 << 20;
    for dist in [
        Dist::Random,
        Dist::FewDistinct,
        Dist::Sorted,
        Dist::Specials,
    ] {
        let s = gen(dist, n, &mut rng);
        for k in [1, 64, n / 10, n / 2, n - 3] {
            let want = oracle_topk(&s, k, 0, 0, None, Order::Position);
            for kern in runnable(TOPK_F32) {
                let got = run_topk(kern.f, &s, k, NO_KEEPS, Order::Position, false);
                assert!(got == want, "{} {dist:?} n={n} k={k}", kern.id());
            }
        }
    }
}

#[test]
fn threshold_every_small_n() {
    let mut rng = Rng::new(6);
    for n in 0..=4 * 16 + 3 {
        for dist in DISTS {
            let s = gen(dist, n, &mut rng);
            let mut taus = vec![
                0.0,
                -0.0,
                f32::NAN,
                -f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
                -1.0e-45,
                1.0e-45,
                0.5,
                -0.5,
            ];
            for _ in 0..3 {
                if n > 0 {
                    taus.push(s[rng.below(n)]);
                }
            }
            for tau in taus {
                check_threshold(&s, tau, NO_KEEPS, &format!("{dist:?}"));
                let mut mask = Vec::new();
                let keeps = keeps_for(n, &mut rng, &mut mask, n);
                check_threshold(&s, tau, keeps, &format!("{dist:?} keeps"));
            }
        }
    }
}

#[test]
fn threshold_large_rows_and_offsets() {
    let mut rng = Rng::new(7);
    for n in [1000, 4099, 65_536 + 5] {
        let s = gen(Dist::Specials, n + 3, &mut rng);
        for off in 0..3 {
            // Unaligned starts.
            let row = &s[off..off + n];
            for tau in [0.0, 0.9, -0.5, f32::NEG_INFINITY, row[7]] {
                check_threshold(row, tau, NO_KEEPS, "large");
                let mut mask = Vec::new();
                let keeps = keeps_for(n, &mut rng, &mut mask, n);
                check_threshold(row, tau, keeps, "large keeps");
            }
        }
    }
}

#[test]
fn mask_conversions_and_counts() {
    let mut rng = Rng::new(8);
    for n in (0..=4 * 16 + 3).chain([1000, 4097]) {
        for density in [0, 1, 2, 8] {
            let mask: Vec<u8> = (0..n)
                .map(|_| {
                    if density > 0 && rng.below(density) == 0 {
                        1 + rng.below(255) as u8
                    } else {
                        0
                    }
                })
                .collect();
            let want: Vec<u32> = (0..n).filter(|&i| mask[i] != 0).map(|i| i as u32).collect();
            for kern in runnable(MASK_TO_INDICES) {
                let mut out = vec![CANARY; n + 9];
                let c = unsafe { (kern.f)(mask.as_ptr(), n, out.as_mut_ptr()) };
                assert_eq!(&out[..c], &want[..], "{} n={n}", kern.id());
                assert!(out[n..].iter().all(|&x| x == CANARY));
            }
            for kern in runnable(COUNT_NONZERO_U8) {
                assert_eq!(
                    unsafe { (kern.f)(mask.as_ptr(), n) },
                    want.len(),
                    "{}",
                    kern.id()
                );
            }
            for kern in runnable(INDICES_TO_MASK) {
                let mut back = vec![0x55u8; n + 4];
                // Duplicates are allowed.
                let mut idx = want.clone();
                if let Some(&x) = want.first() {
                    idx.push(x);
                }
                unsafe { (kern.f)(idx.as_ptr(), idx.len(), back.as_mut_ptr(), n) };
                let norm: Vec<u8> = mask.iter().map(|&b| (b != 0) as u8).collect();
                assert_eq!(&back[..n], &norm[..], "{}", kern.id());
                assert!(back[n..].iter().all(|&b| b == 0x55));
            }
        }
    }
}

#[test]
fn predicates_match_the_ieee_comparison() {
    // Pred::above(tau).eval(x) == (x > tau) over special and random bit patterns.
    let mut rng = Rng::new(9);
    let mut vals: Vec<f32> = SPECIAL_F32.to_vec();
    vals.extend(NANS.iter().map(|&b| f32::from_bits(b)));
    vals.extend([
        1.0e-45,
        -1.0e-45,
        f32::from_bits(0x007f_ffff),
        -f32::from_bits(0x007f_ffff),
    ]);
    for _ in 0..2000 {
        vals.push(f32::from_bits(rng.next_u32()));
    }
    for &tau in &vals {
        let p = select::Pred::above(tau);
        for &x in &vals {
            assert_eq!(p.eval(x.to_bits()), x > tau, "x={x:?} tau={tau:?}");
        }
    }
    // gt / ge agree with skey on every key boundary.
    let keys: Vec<i32> = vals.iter().map(|x| select::skey(x.to_bits())).collect();
    for &t in keys.iter().chain(&[
        i32::MIN,
        i32::MIN + 1,
        -0x7f80_0001,
        0x7f80_0000,
        i32::MAX - 1,
    ]) {
        for (&x, &kx) in vals.iter().zip(&keys) {
            assert_eq!(
                select::Pred::gt(t).eval(x.to_bits()),
                kx > t,
                "gt {t} {x:?}"
            );
            assert_eq!(
                select::Pred::ge(t).eval(x.to_bits()),
                kx >= t,
                "ge {t} {x:?}"
            );
        }
    }
}

#[test]
fn select_kth_matches_sorting() {
    let mut rng = Rng::new(10);
    for len in [1, 2, 47, 48, 49, 100, 1000, 5000] {
        for spread in [1u32, 3, 1 << 8, 1 << 20, u32::MAX] {
            let keys: Vec<u32> = (0..len)
                .map(|_| {
                    if spread == u32::MAX {
                        rng.next_u32()
                    } else {
                        rng.next_u32() % spread
                    }
                })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort_by(|a, b| b.cmp(a));
            for r in [1, 2, len / 2 + 1, len - 1, len]
                .into_iter()
                .filter(|&r| r >= 1 && r <= len)
            {
                let mut k = keys.clone();
                let (t, g) = select::select_kth(&mut k, r);
                assert_eq!(t, sorted[r - 1]);
                assert_eq!(g, sorted.iter().filter(|&&x| x > t).count());
            }
        }
    }
}

#[derive(Clone, Debug)]
enum PDist {
    Random,
    AllEqual(f32),
    FewDistinct(u8),
    Sorted,
    Reversed,
    Sprinkled(u8),
    Denormals,
}

fn pdist() -> impl Strategy<Value = PDist> {
    prop_oneof![
        Just(PDist::Random),
        any::<f32>().prop_map(PDist::AllEqual),
        (1u8..6).prop_map(PDist::FewDistinct),
        Just(PDist::Sorted),
        Just(PDist::Reversed),
        (1u8..5).prop_map(PDist::Sprinkled),
        Just(PDist::Denormals),
    ]
}

fn pgen(d: &PDist, n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    match d {
        PDist::Random => gen(Dist::Random, n, &mut rng),
        PDist::AllEqual(v) => vec![*v; n],
        PDist::FewDistinct(c) => {
            let vals: Vec<f32> = (0..*c).map(|_| rng.uniform(-1.0, 1.0)).collect();
            (0..n).map(|_| vals[rng.below(vals.len())]).collect()
        }
        PDist::Sorted => gen(Dist::Sorted, n, &mut rng),
        PDist::Reversed => gen(Dist::Reversed, n, &mut rng),
        PDist::Sprinkled(every) => (0..n)
            .map(|_| {
                if rng.below(*every as usize + 1) == 0 {
                    special(&mut rng)
                } else {
                    rng.uniform(-1.0, 1.0)
                }
            })
            .collect(),
        PDist::Denormals => gen(Dist::Denormals, n, &mut rng),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn topk_distributions(d in pdist(), n in 0usize..6000, kfrac in 0.0f64..=1.0, seed in any::<u64>(),
                          kf in 0usize..4, kl in 0usize..4, with_mask in any::<bool>()) {
        let s = pgen(&d, n, seed);
        let k = ((n as f64) * kfrac) as usize;
        let mut rng = Rng::new(seed ^ 0x55);
        let mut mask = Vec::new();
        let keeps = if with_mask || kf + kl > 0 {
            let mut kp = keeps_for(n, &mut rng, &mut mask, k);
            if kf + kl <= k && forced_count(n, Keeps { first: kf, last: kl, mask: kp.mask }) <= k {
                kp.first = kf;
                kp.last = kl;
            }
            if !with_mask { kp.mask = None; }
            kp
        } else {
            NO_KEEPS
        };
        check_topk(&s, k, keeps, &format!("{d:?}"));
    }

    #[test]
    fn threshold_distributions(d in pdist(), n in 0usize..3000, seed in any::<u64>(), pick in any::<prop::sample::Index>(),
                               tau_special in any::<f32>(), use_special in any::<bool>()) {
        let s = pgen(&d, n, seed);
        let tau = if use_special || n == 0 { tau_special } else { s[pick.index(n)] };
        check_threshold(&s, tau, NO_KEEPS, &format!("{d:?}"));
    }
}
