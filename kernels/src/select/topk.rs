//! The drivers shared by every tier: threshold selection of a row and exact top-k
//! (sampled pivots or group maxima, band passes, radix selection).

use super::keys::*;
use super::passes::*;
use super::radix::select_kth;
use super::{forced_ranges, Order, ThresholdArgs, TopkArgs};

// ---------------------------------------------------------------------------------
// Drivers shared by every tier.
// ---------------------------------------------------------------------------------

/// Writes `start..start + len` as indices to `out`.
#[inline(always)]
unsafe fn write_range(out: *mut u32, start: usize, len: usize) {
    for j in 0..len {
        // SAFETY: the caller gives room for len indices.
        unsafe { *out.add(j) = (start + j) as u32 };
    }
}

/// Threshold selection of one row (see the module contract).
#[inline(always)]
pub(crate) unsafe fn threshold<L: Lanes>(a: &ThresholdArgs) -> usize {
    let n = a.n;
    let (kf, kl) = forced_ranges(n, a.keep_first, a.keep_last);
    let mid = n - kf - kl;
    let s = a.scores as *const u32;
    let pred = Pred::above(a.tau);
    let mut cnt = 0;
    // SAFETY (whole body): every range below lies in [0, n) of the caller's buffers.
    unsafe {
        if !a.out_idx.is_null() {
            write_range(a.out_idx, 0, kf);
        }
        if !a.out_mask.is_null() {
            core::ptr::write_bytes(a.out_mask, 1, kf);
        }
        cnt += kf;
        let keep = if a.keep.is_null() {
            a.keep
        } else {
            a.keep.add(kf)
        };
        let (sm, out, mask) = (
            s.add(kf),
            if a.out_idx.is_null() {
                a.out_idx
            } else {
                a.out_idx.add(kf)
            },
            if a.out_mask.is_null() {
                a.out_mask
            } else {
                a.out_mask.add(kf)
            },
        );
        cnt += with_mode!(pred, MODE, c => with_keep!(keep, KEEP_INCL, K => {
            match (a.out_idx.is_null(), a.out_mask.is_null()) {
                (false, false) => threshold_pass::<L, MODE, K, true, true>(sm, mid, kf as u32, c, keep, out, mask),
                (false, true) => threshold_pass::<L, MODE, K, true, false>(sm, mid, kf as u32, c, keep, out, mask),
                (true, false) => threshold_pass::<L, MODE, K, false, true>(sm, mid, kf as u32, c, keep, out, mask),
                (true, true) => threshold_pass::<L, MODE, K, false, false>(sm, mid, kf as u32, c, keep, out, mask),
            }
        }));
        if !a.out_idx.is_null() {
            write_range(a.out_idx.add(cnt), n - kl, kl);
        }
        if !a.out_mask.is_null() {
            core::ptr::write_bytes(a.out_mask.add(n - kl), 1, kl);
            core::ptr::write_bytes(a.out_mask.add(n), 0, a.mask_len - n);
        }
    }
    cnt + kl
}

/// Indices -> mask (a scatter; the same on every tier).
#[inline(always)]
pub(crate) unsafe fn indices_to_mask(idx: *const u32, count: usize, mask: *mut u8, n: usize) {
    // SAFETY: mask has n bytes, idx has count entries, each < n (contract).
    unsafe {
        core::ptr::write_bytes(mask, 0, n);
        for j in 0..count {
            *mask.add(*idx.add(j) as usize) = 1;
        }
    }
}

/// What the search for the k-th key found.
enum Found {
    /// The k-th key is `t`; take every candidate with key > t and the first `need`
    /// with key == t.
    Threshold { t: i32, need: usize },
    /// The selection (exactly `kk` indices, ascending) was already written.
    Written,
}

/// Candidates of a row region: `s[..m]` are the scores of indices `base..base + m`;
/// lanes whose keep byte is non-zero are not candidates.
#[derive(Clone, Copy)]
struct Region {
    s: *const u32,
    m: usize,
    base: u32,
    keep: *const u8,
}

/// The positions top-k samples in a region of `m > DIRECT_MAX` tokens: one pseudo-random
/// position in each of `sample_size(m)` equal strata, ascending. Each position is a hash
/// of its stratum number alone (no serial generator state), so the loads of the sample
/// overlap. Deterministic, so tests can build inputs that defeat the sample on purpose.
pub fn sample_positions(m: usize) -> impl Iterator<Item = usize> {
    let want = sample_size(m);
    let stride = m / want;
    (0..want).map(move |j| {
        let mut h = (j as u32 ^ 0x9e37_79b9).wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^= h >> 16;
        // h * stride / 2^32 < stride: a multiply instead of a division.
        j * stride + ((h as u64 * stride as u64) >> 32) as usize
    })
}

/// Rows up to this length are selected directly on all their keys (no sampling).
pub const DIRECT_MAX: usize = 512;

/// Sample size for a region of `m` candidates.
pub fn sample_size(m: usize) -> usize {
    // ~ 4 sqrt(m), a power of two in [64, 4096].
    let target = 4 * isqrt(m);
    target.next_power_of_two().clamp(64, 4096).min(m)
}

fn isqrt(x: usize) -> usize {
    if x < 2 {
        return x;
    }
    let mut r = (x as f64).sqrt() as usize;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

/// Top-k of one row (see the module contract).
#[inline(always)]
pub(crate) unsafe fn topk<L: Lanes>(a: &TopkArgs) {
    let n = a.n;
    let k = a.k;
    let s = a.scores as *const u32;
    let (kf, kl) = forced_ranges(n, a.keep_first, a.keep_last);
    let m = n - kf - kl;
    // SAFETY (whole body): all ranges lie within the caller's buffers as the contract
    // describes; the scratch holds 2n words.
    unsafe {
        let keep = if a.keep.is_null() {
            a.keep
        } else {
            a.keep.add(kf)
        };
        let kept = if keep.is_null() {
            0
        } else {
            count_nonzero::<L>(keep, m)
        };
        let kk = k - kf - kl - kept; // candidates to choose
        let cands = m - kept;
        let cap = kk + kept; // indices written for the middle region
        write_range(a.out_idx, 0, kf);
        let out = a.out_idx.add(kf);
        let region = Region {
            s: s.add(kf),
            m,
            base: kf as u32,
            keep,
        };
        let found = if kk == 0 {
            Found::Threshold {
                t: i32::MAX,
                need: 0,
            }
        } else if kk == cands {
            Found::Threshold {
                t: i32::MIN,
                need: cands,
            }
        } else {
            find_kth::<L>(region, cands, kk, a.scratch, out)
        };
        if let Found::Threshold { t, need } = found {
            let ge = if t == i32::MAX {
                Pred::NEVER
            } else {
                Pred::ge(t)
            };
            let gt = Pred::gt(t);
            with_mode!(ge, MGE, cge => with_mode!(gt, MGT, cgt => with_keep!(keep, KEEP_INCL, K => {
                output_pass::<L, MGE, MGT, K>(region.s, m, region.base, cge, cgt, need, keep, out, cap)
            })));
        }
        write_range(a.out_idx.add(kf + cap), n - kl, kl);
        if a.order == Order::Score && k > 1 {
            sort_by_score(s, a.out_idx, k, a.scratch as *mut u64);
        }
        if !a.out_scores.is_null() {
            for j in 0..k {
                *a.out_scores.add(j) = *a.scores.add(*a.out_idx.add(j) as usize);
            }
        }
    }
}

/// Reorders `idx[..k]` by descending key, ties by ascending index (`pairs`: k u64).
#[inline(always)]
unsafe fn sort_by_score(s: *const u32, idx: *mut u32, k: usize, pairs: *mut u64) {
    // SAFETY: idx has k entries, pairs has room for k u64 (scratch >= 2n words, k <= n).
    unsafe {
        let p = core::slice::from_raw_parts_mut(pairs, k);
        for (j, e) in p.iter_mut().enumerate() {
            let i = *idx.add(j);
            *e = (((!ukey(*s.add(i as usize))) as u64) << 32) | i as u64;
        }
        p.sort_unstable();
        for (j, e) in p.iter().enumerate() {
            *idx.add(j) = *e as u32;
        }
    }
}

/// Finds the `kk`-th largest candidate key of the region (`0 < kk < cands`).
#[inline(always)]
unsafe fn find_kth<L: Lanes>(
    r: Region,
    cands: usize,
    kk: usize,
    scratch: *mut u32,
    out: *mut u32,
) -> Found {
    let m = r.m;
    // SAFETY: scratch holds 2m words: region 1 = scratch[..m], region 2 = scratch[m..].
    unsafe {
        let reg1 = scratch;
        let reg2 = scratch.add(m);
        if m <= DIRECT_MAX {
            // Every candidate key, then exact selection.
            let mut c = 0;
            for i in 0..m {
                if r.keep.is_null() || *r.keep.add(i) == 0 {
                    *reg2.add(c) = ukey(*r.s.add(i));
                    c += 1;
                }
            }
            return threshold_from_keys(reg2, c, kk);
        }
        if r.keep.is_null()
            && kk <= m / GROUP_FILTER_DIV
            && m <= GROUP_FILTER_MAX_ROW
            && m / group_vectors(m, kk) <= GROUP_MAX_REPS
        {
            return by_group_max::<L>(r, kk, reg1, reg2, out);
        }

        // Stratified deterministic sample of candidate keys (in region 2).
        let smp = reg2 as *mut i32;
        let mut ns = 0;
        for i in sample_positions(m) {
            if r.keep.is_null() || *r.keep.add(i) == 0 {
                *smp.add(ns) = skey(*r.s.add(i));
                ns += 1;
            }
        }
        if ns < 16 {
            // The keep mask hides almost every sampled token: band everything.
            return band_all::<L>(r, kk, reg2);
        }
        let sample = core::slice::from_raw_parts_mut(smp, ns);
        // Expected rank of the k-th key in the sample (0-based, descending), and a
        // margin of ~2.5 standard deviations.
        let p = kk as f64 / cands as f64;
        let mid = p * ns as f64;
        let dev = 2.5 * (ns as f64 * p * (1.0 - p)).sqrt() + 1.5;
        let hi_rank = (mid - dev).floor();
        let lo_rank = (mid + dev).ceil();
        // Descending order statistics of the sample.
        let (hi, lo, smax) = if hi_rank < 0.0 && lo_rank < SMALL_RANK as f64 {
            // Small k: only the lower pivot, from a short sorted list of the largest.
            let (lo, smax) = small_rank(sample, lo_rank as usize);
            (None, lo, smax)
        } else {
            let mut rest: &mut [i32] = sample;
            let mut skipped = 0;
            let hi = if hi_rank >= 0.0 {
                let j = hi_rank as usize;
                let h = *rest.select_nth_unstable_by(j, |x, y| y.cmp(x)).1;
                // Everything after j ranks at or below it: the lower pivot is there.
                rest = &mut rest[j + 1..];
                skipped = j + 1;
                Some(h)
            } else {
                None
            };
            let lo = if (lo_rank as usize) < ns {
                let j = lo_rank as usize - skipped;
                Some(*rest.select_nth_unstable_by(j, |x, y| y.cmp(x)).1)
            } else {
                None
            };
            (hi, lo, *sample.iter().max().unwrap_or(&i32::MIN))
        };
        // Expected band lanes per group of 4 blocks.
        let per_group = |ranks: f64| ranks / ns as f64 * (4 * L::W) as f64;

        match (hi, lo) {
            (None, Some(lo)) if lo != smax => {
                // Small k: the band (lo, +inf) holds the answer; keep its indices.
                let sparse = per_group(lo_rank + 1.0) < SPARSE_LANES_PER_GROUP;
                let band = with_mode!(Pred::gt(lo), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => with_bool!(sparse, S => {
                    band_pass::<L, MLO, MLO, false, true, K, S>(r.s, m, r.base, 0, clo, r.keep, reg1).1
                })));
                if band >= kk {
                    return from_band_indices(r, kk, band, reg1, reg2, out);
                }
                below_pivot::<L>(r, kk, lo, band, reg2)
            }
            (None, Some(lo)) => {
                // The pivot is the sample's maximum: ties at the top are likely.
                pivot_tie::<L>(r, kk, lo, reg2)
            }
            (Some(hi), Some(lo)) if hi == lo => pivot_tie::<L>(r, kk, hi, reg2),
            (Some(hi), lo) => {
                // Two pivots: count above hi, band (lo, hi] as raw bits in region 2.
                let lo_pred = match lo {
                    Some(lo) => Pred::gt(lo),
                    None => Pred::All,
                };
                let sparse = per_group(lo_rank - hi_rank) < SPARSE_LANES_PER_GROUP;
                let (above, band) = with_mode!(Pred::gt(hi), MHI, chi => with_mode!(lo_pred, MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => with_bool!(sparse, S => {
                    band_pass::<L, MHI, MLO, true, false, K, S>(r.s, m, r.base, chi, clo, r.keep, reg2)
                }))));
                if above >= kk {
                    // Missed high: band (hi, +inf).
                    let band = with_mode!(Pred::gt(hi), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => {
                        band_pass::<L, MLO, MLO, false, false, K, false>(r.s, m, r.base, 0, clo, r.keep, reg2).1
                    }));
                    keys_in_place(reg2, band);
                    threshold_from_keys(reg2, band, kk)
                } else if above + band >= kk {
                    keys_in_place(reg2, band);
                    threshold_from_keys(reg2, band, kk - above)
                } else {
                    // lo is Some here: with lo = -inf the band holds every candidate.
                    below_pivot::<L>(r, kk, lo.unwrap_or(i32::MIN), above + band, reg2)
                }
            }
            (None, None) => band_all::<L>(r, kk, reg2),
        }
    }
}

/// Sample ranks below this use [`small_rank`] instead of a quickselect.
const SMALL_RANK: usize = 32;

/// The `r`-th largest (0-based) of `x` (`None` when `r >= x.len()`) and the maximum,
/// by one pass that keeps the `r + 1` largest sorted (`r < SMALL_RANK`, `x` non-empty).
fn small_rank(x: &[i32], r: usize) -> (Option<i32>, i32) {
    let mut top = [i32::MIN; SMALL_RANK];
    let t = r + 1;
    let mut len = 0;
    for &v in x {
        if len < t {
            len += 1;
        } else if v <= top[t - 1] {
            continue;
        }
        // Insert v into top[..len] (descending), dropping the last.
        let mut j = len - 1;
        while j > 0 && top[j - 1] < v {
            top[j] = top[j - 1];
            j -= 1;
        }
        top[j] = v;
    }
    ((len == t).then_some(top[r]), top[0])
}

/// The band `reg1[..band]` (ascending indices of every candidate with key > some
/// pivot, `band >= kk`) holds the answer: the exact threshold from its keys (in
/// `keys`), and without keep bytes the output taken from it directly.
#[inline(always)]
unsafe fn from_band_indices(
    r: Region,
    kk: usize,
    band: usize,
    reg1: *mut u32,
    keys: *mut u32,
    out: *mut u32,
) -> Found {
    // SAFETY: reg1 holds band indices of the region, keys has room for band words,
    // out for kk indices.
    unsafe {
        for j in 0..band {
            *keys.add(j) = ukey(*r.s.add((*reg1.add(j) - r.base) as usize));
        }
        let found = threshold_from_keys(keys, band, kk);
        if !r.keep.is_null() {
            return found;
        }
        // Without keep bytes the band (ascending indices) is the output.
        let Found::Threshold { t, mut need } = found else {
            return found;
        };
        let tu = (t as u32) ^ 0x8000_0000;
        let mut w = 0;
        for j in 0..band {
            let i = *reg1.add(j);
            let u = ukey(*r.s.add((i - r.base) as usize));
            if u > tu || (u == tu && need > 0) {
                if u == tu {
                    need -= 1;
                }
                *out.add(w) = i;
                w += 1;
            }
        }
        debug_assert_eq!(w, kk);
        Found::Written
    }
}

/// Top-k by group maxima is used (without keep bytes) when `kk <= m / GROUP_FILTER_DIV`,
/// `m <= GROUP_FILTER_MAX_ROW` and ...: its second pass then reads the row from L2 (512 KiB
/// of scores); beyond that one pass plus a sample is cheaper than two passes.
pub const GROUP_FILTER_DIV: usize = 32;
/// See [`GROUP_FILTER_DIV`].
pub const GROUP_FILTER_MAX_ROW: usize = 1 << 17;
/// ... and when it leaves at most this many groups (selecting among the group
/// representatives costs more than a sample beyond that).
pub const GROUP_MAX_REPS: usize = 2048;

/// Each lane's group in [`group_reps`] spans at most this many vectors.
const GROUP_VECTORS: usize = 64;

/// Vectors per group for `kk` of `m`: the largest power of two up to [`GROUP_VECTORS`]
/// leaving at least `4 kk` groups (the `kk`-th largest of them then leaves a band of
/// about `1.15 kk` scores); at least 8 when `kk <= m / GROUP_FILTER_DIV`.
#[inline(always)]
fn group_vectors(m: usize, kk: usize) -> usize {
    let g = m / (4 * kk);
    if g >= GROUP_VECTORS {
        GROUP_VECTORS
    } else {
        1 << (usize::BITS - 1 - g.max(1).leading_zeros())
    }
}

/// One representative per group of the region's candidates, as unsigned order keys, into
/// `reps`; returns their number. A group is one lane of `gv` consecutive vectors (the last block may be shorter; the scalar tail is one more group), and its
/// representative is one of its own scores (the largest in [`max_key`] order, so the
/// largest score unless the group holds a positive NaN).
#[inline(always)]
unsafe fn group_reps<L: Lanes>(s: *const u32, m: usize, gv: usize, reps: *mut u32) -> usize {
    let w = L::W;
    let (mut i, mut nr) = (0, 0);
    // SAFETY: reads stay in s[..m]; reps has room for m words and nr + W <= m / gv + W
    // + 1 <= m (gv >= 2, m > DIRECT_MAX).
    unsafe {
        while i + w <= m {
            let end = i + ((m - i) / w).min(gv) * w;
            let mut acc = L::key_floor();
            while i < end {
                acc = L::max_key(acc, L::load(s.add(i)));
                i += w;
            }
            L::store(reps.add(nr), acc);
            nr += w;
        }
        if i < m {
            let mut acc = i32::MIN;
            while i < m {
                acc = acc.max(max_key(*s.add(i)));
                i += 1;
            }
            *reps.add(nr) = acc as u32;
            nr += 1;
        }
        for j in 0..nr {
            *reps.add(j) = ukey(max_key(*reps.add(j)) as u32);
        }
    }
    nr
}

/// Small k without keep bytes: the `kk`-th largest group representative `lo` is a lower
/// bound of the `kk`-th largest key (the `kk` groups it ranks among each hold a score
/// of at least lo), and a tight one with at least `4 kk` groups. One pass finds the
/// representatives, one sparse band pass keeps the indices with key > lo (about `kk` of
/// them); fewer than `kk` means the `kk`-th key is lo itself. No sampling, no misses.
#[inline(always)]
unsafe fn by_group_max<L: Lanes>(
    r: Region,
    kk: usize,
    reg1: *mut u32,
    reg2: *mut u32,
    out: *mut u32,
) -> Found {
    // SAFETY: reg1 and reg2 hold m words each.
    unsafe {
        let nr = group_reps::<L>(r.s, r.m, group_vectors(r.m, kk), reg2);
        let reps = core::slice::from_raw_parts_mut(reg2, nr);
        let t = *reps.select_nth_unstable_by(kk - 1, |a, b| b.cmp(a)).1;
        let lo = (t ^ 0x8000_0000) as i32;
        let band = with_mode!(Pred::gt(lo), MLO, clo => {
            band_pass::<L, MLO, MLO, false, true, KEEP_NONE, true>(r.s, r.m, r.base, 0, clo, r.keep, reg1).1
        });
        if band < kk {
            return Found::Threshold {
                t: lo,
                need: kk - band,
            };
        }
        from_band_indices(r, kk, band, reg1, reg2, out)
    }
}

/// Every candidate's key into `keys`, then exact selection.
#[inline(always)]
unsafe fn band_all<L: Lanes>(r: Region, kk: usize, keys: *mut u32) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        let band = with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, M_ALL, M_ALL, false, false, K, false>(r.s, r.m, r.base, 0, 0, r.keep, keys).1
        });
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk)
    }
}

/// The k-th key is at most `lo`; `above` candidates have key > lo.
#[inline(always)]
unsafe fn below_pivot<L: Lanes>(
    r: Region,
    kk: usize,
    lo: i32,
    above: usize,
    keys: *mut u32,
) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        // How many equal lo?
        let (_, ge) = with_mode!(Pred::gt(lo), M1, c1 => with_mode!(Pred::ge(lo), M2, c2 => with_keep!(r.keep, KEEP_EXCL, K => {
            count2_pass::<L, M1, M2, K>(r.s, r.m, c1, c2, r.keep)
        })));
        if ge >= kk {
            return Found::Threshold {
                t: lo,
                need: kk - above,
            };
        }
        // Band (-inf, lo) including NaN.
        let band = with_mode!(Pred::ge(lo), MHI, chi => with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, MHI, M_ALL, true, false, K, false>(r.s, r.m, r.base, chi, 0, r.keep, keys).1
        }));
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk - ge)
    }
}

/// The sample's pivot `v` is probably tied with many candidates: count > v and >= v.
#[inline(always)]
unsafe fn pivot_tie<L: Lanes>(r: Region, kk: usize, v: i32, keys: *mut u32) -> Found {
    // SAFETY: keys has room for m words.
    unsafe {
        let (gt, ge) = with_mode!(Pred::gt(v), M1, c1 => with_mode!(Pred::ge(v), M2, c2 => with_keep!(r.keep, KEEP_EXCL, K => {
            count2_pass::<L, M1, M2, K>(r.s, r.m, c1, c2, r.keep)
        })));
        if gt < kk && kk <= ge {
            return Found::Threshold {
                t: v,
                need: kk - gt,
            };
        }
        if gt >= kk {
            let band = with_mode!(Pred::gt(v), MLO, clo => with_keep!(r.keep, KEEP_EXCL, K => {
                band_pass::<L, MLO, MLO, false, false, K, false>(r.s, r.m, r.base, 0, clo, r.keep, keys).1
            }));
            keys_in_place(keys, band);
            return threshold_from_keys(keys, band, kk);
        }
        let band = with_mode!(Pred::ge(v), MHI, chi => with_keep!(r.keep, KEEP_EXCL, K => {
            band_pass::<L, MHI, M_ALL, true, false, K, false>(r.s, r.m, r.base, chi, 0, r.keep, keys).1
        }));
        keys_in_place(keys, band);
        threshold_from_keys(keys, band, kk - ge)
    }
}

/// Raw bits -> unsigned keys, in place.
#[inline(always)]
unsafe fn keys_in_place(p: *mut u32, len: usize) {
    // SAFETY: p holds len words.
    let keys = unsafe { core::slice::from_raw_parts_mut(p, len) };
    for x in keys {
        *x = ukey(*x);
    }
}

/// The `r`-th largest of `keys[..len]` (unsigned keys, `1 <= r <= len`) as a threshold:
/// the candidates outside `keys` that rank above it are all greater than every key in
/// it, so the ties still needed are `r - (keys greater than it)`.
#[inline(always)]
unsafe fn threshold_from_keys(keys: *mut u32, len: usize, r: usize) -> Found {
    // SAFETY: keys holds len words.
    let keys = unsafe { core::slice::from_raw_parts_mut(keys, len) };
    let (t, greater) = select_kth(keys, r);
    Found::Threshold {
        t: (t ^ 0x8000_0000) as i32,
        need: r - greater,
    }
}
