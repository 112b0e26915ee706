//! The vector primitives of a tier ([`Lanes`]) and the passes over a row built from
//! them once: threshold, counting, band and output passes, mask to indices.

// ---------------------------------------------------------------------------------
// The per-tier vector primitives and the loops built from them.
// ---------------------------------------------------------------------------------

/// How a pass combines the keep bytes with its predicate.
pub(crate) const KEEP_NONE: u8 = 0;
/// `pred | keep` (threshold, top-k output).
pub(crate) const KEEP_INCL: u8 = 1;
/// `pred & !keep` (top-k candidate passes: forced tokens are not candidates).
pub(crate) const KEEP_EXCL: u8 = 2;

/// The vector primitives of one tier: `W` lanes of u32 per block and a `W`-bit lane
/// mask. Every method is `#[inline(always)]` in the implementations, so the loops below
/// compile inside each tier's `#[target_feature]` entry points.
pub(crate) trait Lanes: Copy {
    const W: usize;
    type V: Copy;
    type M: Copy;
    /// What the predicates share per block (the "not a positive NaN" lanes, ...).
    type N: Copy;
    /// Per-loop form of a predicate constant.
    type C: Copy;

    unsafe fn load(p: *const u32) -> Self::V;
    /// The first `n < W` elements (reads only those), the rest 0.
    unsafe fn load_part(p: *const u32, n: usize) -> Self::V;
    fn iota(base: u32) -> Self::V;
    fn step(v: Self::V) -> Self::V;
    fn konst<const MODE: u8>(c: u32) -> Self::C;
    fn npn(b: Self::V) -> Self::N;
    fn pred<const MODE: u8>(b: Self::V, c: Self::C, n: Self::N) -> Self::M;
    /// Lanes `< n`.
    fn first(n: usize) -> Self::M;
    fn and(a: Self::M, b: Self::M) -> Self::M;
    fn or(a: Self::M, b: Self::M) -> Self::M;
    /// `a & !b`
    fn andnot(a: Self::M, b: Self::M) -> Self::M;
    fn count(m: Self::M) -> usize;
    /// The lane masks of 4 consecutive blocks as one integer: block `j` in bits
    /// `[j W, (j + 1) W)` (one mask-register move on AVX-512 instead of four).
    fn group(m: [Self::M; 4]) -> u64;
    /// The `k` lowest set lanes of `m` (`k < count(m)`).
    fn lowest(m: Self::M, k: usize) -> Self::M;
    /// Lane-wise maximum of `acc` and the [`max_key`] of the bits `b` (signed compare).
    fn max_key(acc: Self::V, b: Self::V) -> Self::V;
    /// Every lane `i32::MIN` (below every [`max_key`]).
    fn key_floor() -> Self::V;
    /// Stores all `W` lanes of `v`.
    unsafe fn store(out: *mut u32, v: Self::V);
    /// Lanes whose byte is non-zero (`W` bytes).
    unsafe fn keep(p: *const u8) -> Self::M;
    /// As `keep` for the first `n < W` bytes (reads only those).
    unsafe fn keep_part(p: *const u8, n: usize) -> Self::M;
    /// Stores the selected lanes of `v`, in lane order, at `out`; may write all `W`.
    unsafe fn compress(out: *mut u32, m: Self::M, v: Self::V);
    /// As `compress`, writing only `count(m)` elements.
    unsafe fn compress_exact(out: *mut u32, m: Self::M, v: Self::V);
    /// `W` bytes: 1 for selected lanes, 0 otherwise.
    unsafe fn store_mask(out: *mut u8, m: Self::M);
    /// The first `n < W` bytes of `store_mask`.
    unsafe fn store_mask_part(out: *mut u8, m: Self::M, n: usize);
}

/// Dispatches a runtime [`Pred`] to a const mode: `with_mode!(p, M, c => body)`.
macro_rules! with_mode {
    ($p:expr, $m:ident, $c:ident => $body:expr) => {{
        match $p.parts() {
            (crate::select::M_SGT, $c) => {
                const $m: u8 = crate::select::M_SGT;
                $body
            }
            (crate::select::M_ULT, $c) => {
                const $m: u8 = crate::select::M_ULT;
                $body
            }
            (_, $c) => {
                const $m: u8 = crate::select::M_ALL;
                $body
            }
        }
    }};
}
pub(crate) use with_mode;

/// Dispatches a runtime keep mode to a const: `with_keep!(keep_ptr, KIND, K => body)`.
macro_rules! with_keep {
    ($keep:expr, $kind:expr, $k:ident => $body:expr) => {{
        if $keep.is_null() {
            const $k: u8 = KEEP_NONE;
            $body
        } else if $kind == KEEP_INCL {
            const $k: u8 = KEEP_INCL;
            $body
        } else {
            const $k: u8 = KEEP_EXCL;
            $body
        }
    }};
}
pub(crate) use with_keep;

/// Dispatches a runtime bool to a const: `with_bool!(cond, B => body)`.
macro_rules! with_bool {
    ($cond:expr, $b:ident => $body:expr) => {{
        if $cond {
            const $b: bool = true;
            $body
        } else {
            const $b: bool = false;
            $body
        }
    }};
}
pub(crate) use with_bool;

/// A band pass skips empty groups (see [`band_pass`]) when it expects fewer band lanes
/// per group of 4 blocks than this.
pub const SPARSE_LANES_PER_GROUP: f64 = 1.0;

/// Applies the keep bytes of a full block to a predicate mask.
#[inline(always)]
unsafe fn apply_keep<L: Lanes, const K: u8>(m: L::M, keep: *const u8) -> L::M {
    match K {
        KEEP_INCL => L::or(m, unsafe { L::keep(keep) }),
        KEEP_EXCL => L::andnot(m, unsafe { L::keep(keep) }),
        _ => m,
    }
}

/// As [`apply_keep`] for a tail of `r < W` lanes.
#[inline(always)]
unsafe fn apply_keep_part<L: Lanes, const K: u8>(m: L::M, keep: *const u8, r: usize) -> L::M {
    match K {
        KEEP_INCL => L::or(m, unsafe { L::keep_part(keep, r) }),
        KEEP_EXCL => L::andnot(m, unsafe { L::keep_part(keep, r) }),
        _ => m,
    }
}

/// `(offsets of blocks 1, 2, 3 within a group, total)` from a group mask of `W`-lane
/// blocks (see [`Lanes::group`]).
#[inline(always)]
fn group_offsets<L: Lanes>(q: u64) -> ([usize; 4], usize) {
    let w = L::W as u32;
    let below = |j: u32| (q & ((1u64 << (j * w)) - 1)).count_ones() as usize;
    ([0, below(1), below(2), below(3)], q.count_ones() as usize)
}

/// Threshold pass over `s[..n]`: lanes with `pred` (combined with keep per `K`).
/// Indices `base + i` go to `out` (room for `n`, when `IDX`), 0/1 bytes to `mask`
/// (`n` bytes, when `MASK`). Returns the count. Works on groups of 4 blocks: one
/// mask move and four independent prefix counts per group, so the compress-stores of
/// a group do not wait on each other.
#[inline(always)]
pub(crate) unsafe fn threshold_pass<
    L: Lanes,
    const MODE: u8,
    const K: u8,
    const IDX: bool,
    const MASK: bool,
>(
    s: *const u32,
    n: usize,
    base: u32,
    c: u32,
    keep: *const u8,
    out: *mut u32,
    mask: *mut u8,
) -> usize {
    let c = L::konst::<MODE>(c);
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    let w = L::W;
    // SAFETY (whole body): reads stay in s[..n] / keep[..n]; full-vector stores go to
    // out[cnt + o..cnt + o + W] with cnt + o <= i + jW (the selected lanes before
    // block j of the group) and i + (j + 1) W <= n; tails are exact.
    unsafe {
        while i + 4 * w <= n {
            let mut m = [L::first(0); 4];
            for (j, mj) in m.iter_mut().enumerate() {
                let b = L::load(s.add(i + j * w));
                *mj = apply_keep::<L, K>(L::pred::<MODE>(b, c, L::npn(b)), keep.add(i + j * w));
            }
            let (o, total) = group_offsets::<L>(L::group(m));
            for j in 0..4 {
                if IDX {
                    L::compress(out.add(cnt + o[j]), m[j], iv);
                }
                if MASK {
                    L::store_mask(mask.add(i + j * w), m[j]);
                }
                iv = L::step(iv);
            }
            cnt += total;
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let m = apply_keep::<L, K>(L::pred::<MODE>(b, c, L::npn(b)), keep.add(i));
            if IDX {
                L::compress(out.add(cnt), m, iv);
            }
            if MASK {
                L::store_mask(mask.add(i), m);
            }
            cnt += L::count(m);
            iv = L::step(iv);
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let m = L::and(L::pred::<MODE>(b, c, L::npn(b)), L::first(r));
            let m = apply_keep_part::<L, K>(m, keep.add(i), r);
            if IDX {
                L::compress_exact(out.add(cnt), m, iv);
            }
            if MASK {
                L::store_mask_part(mask.add(i), m, r);
            }
            cnt += L::count(m);
        }
    }
    cnt
}

/// Counts the lanes with `p1` and with `p2` (candidates only: keep lanes excluded).
#[inline(always)]
pub(crate) unsafe fn count2_pass<L: Lanes, const M1: u8, const M2: u8, const K: u8>(
    s: *const u32,
    n: usize,
    c1: u32,
    c2: u32,
    keep: *const u8,
) -> (usize, usize) {
    let (c1, c2) = (L::konst::<M1>(c1), L::konst::<M2>(c2));
    let (mut n1, mut n2) = (0, 0);
    let mut i = 0;
    let w = L::W;
    // SAFETY: reads stay in s[..n] / keep[..n].
    unsafe {
        while i + 4 * w <= n {
            let (mut m1, mut m2) = ([L::first(0); 4], [L::first(0); 4]);
            for j in 0..4 {
                let b = L::load(s.add(i + j * w));
                let np = L::npn(b);
                m1[j] = apply_keep::<L, K>(L::pred::<M1>(b, c1, np), keep.add(i + j * w));
                m2[j] = apply_keep::<L, K>(L::pred::<M2>(b, c2, np), keep.add(i + j * w));
            }
            n1 += L::group(m1).count_ones() as usize;
            n2 += L::group(m2).count_ones() as usize;
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            n1 += L::count(apply_keep::<L, K>(L::pred::<M1>(b, c1, np), keep.add(i)));
            n2 += L::count(apply_keep::<L, K>(L::pred::<M2>(b, c2, np), keep.add(i)));
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let m1 = L::and(L::pred::<M1>(b, c1, np), f);
            let m2 = L::and(L::pred::<M2>(b, c2, np), f);
            n1 += L::count(apply_keep_part::<L, K>(m1, keep.add(i), r));
            n2 += L::count(apply_keep_part::<L, K>(m2, keep.add(i), r));
        }
    }
    (n1, n2)
}

/// The band pass: counts the candidates with `hi` (when `HAS_HI`) and compresses the
/// candidates with `lo && !hi` to `out` (room for `n`): their indices `base + i` when
/// `IDX`, else their raw bits. Returns `(above, band)`. With `SPARSE` (the band is
/// expected to hold well under one lane per group), a group without band lanes skips
/// its compress-stores: a well-predicted branch instead of four stores.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn band_pass<
    L: Lanes,
    const MHI: u8,
    const MLO: u8,
    const HAS_HI: bool,
    const IDX: bool,
    const K: u8,
    const SPARSE: bool,
>(
    s: *const u32,
    n: usize,
    base: u32,
    chi: u32,
    clo: u32,
    keep: *const u8,
    out: *mut u32,
) -> (usize, usize) {
    let (chi, clo) = (L::konst::<MHI>(chi), L::konst::<MLO>(clo));
    let mut iv = L::iota(base);
    let (mut above, mut cnt) = (0, 0);
    let mut i = 0;
    let w = L::W;
    // SAFETY: as in threshold_pass.
    unsafe {
        while i + 4 * w <= n {
            let mut bv = [L::iota(0); 4];
            let (mut his, mut bands) = ([L::first(0); 4], [L::first(0); 4]);
            for j in 0..4 {
                let b = L::load(s.add(i + j * w));
                bv[j] = b;
                let np = L::npn(b);
                let mut band = L::pred::<MLO>(b, clo, np);
                if HAS_HI {
                    let hi = apply_keep::<L, K>(L::pred::<MHI>(b, chi, np), keep.add(i + j * w));
                    his[j] = hi;
                    band = L::andnot(band, hi);
                }
                bands[j] = apply_keep::<L, K>(band, keep.add(i + j * w));
            }
            if HAS_HI {
                above += L::group(his).count_ones() as usize;
            }
            let q = L::group(bands);
            if !SPARSE || q != 0 {
                let (o, total) = group_offsets::<L>(q);
                let mut v = iv;
                for j in 0..4 {
                    L::compress(out.add(cnt + o[j]), bands[j], if IDX { v } else { bv[j] });
                    v = L::step(v);
                }
                cnt += total;
            }
            for _ in 0..4 {
                iv = L::step(iv);
            }
            i += 4 * w;
        }
        while i + w <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            let mut band = L::pred::<MLO>(b, clo, np);
            if HAS_HI {
                let hi = apply_keep::<L, K>(L::pred::<MHI>(b, chi, np), keep.add(i));
                above += L::count(hi);
                band = L::andnot(band, hi);
            }
            let band = apply_keep::<L, K>(band, keep.add(i));
            L::compress(out.add(cnt), band, if IDX { iv } else { b });
            cnt += L::count(band);
            iv = L::step(iv);
            i += w;
        }
        if i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let mut band = L::and(L::pred::<MLO>(b, clo, np), f);
            if HAS_HI {
                let hi = L::and(L::pred::<MHI>(b, chi, np), f);
                let hi = apply_keep_part::<L, K>(hi, keep.add(i), r);
                above += L::count(hi);
                band = L::andnot(band, hi);
            }
            let band = apply_keep_part::<L, K>(band, keep.add(i), r);
            L::compress_exact(out.add(cnt), band, if IDX { iv } else { b });
            cnt += L::count(band);
        }
    }
    (above, cnt)
}

/// Stores the selected lanes at `out + cnt` without writing past `cap`.
#[inline(always)]
unsafe fn store_capped<L: Lanes>(out: *mut u32, cnt: usize, cap: usize, m: L::M, v: L::V) {
    // SAFETY: the caller guarantees cnt + count(m) <= cap.
    unsafe {
        if cnt + L::W <= cap {
            L::compress(out.add(cnt), m, v);
        } else {
            L::compress_exact(out.add(cnt), m, v);
        }
    }
}

/// The output pass of top-k: the indices `base + i` of the candidates with key > T
/// (`gt`) plus the first `need` with key == T (`ge && !gt`), and with `K == KEEP_INCL`
/// every keep lane; exactly `cap` of them in total (the caller's count), written to
/// `out[..cap]` in ascending order. Stops once `cap` are written.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn output_pass<L: Lanes, const MGE: u8, const MGT: u8, const K: u8>(
    s: *const u32,
    n: usize,
    base: u32,
    cge: u32,
    cgt: u32,
    mut need: usize,
    keep: *const u8,
    out: *mut u32,
    cap: usize,
) -> usize {
    let (cge, cgt) = (L::konst::<MGE>(cge), L::konst::<MGT>(cgt));
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads stay in s[..n] / keep[..n]; stores stay in out[..cap] because the
    // total selected is exactly cap (store_capped never writes past it).
    unsafe {
        // Phase 1: ties at T still wanted.
        while need > 0 && i + L::W <= n {
            let b = L::load(s.add(i));
            let np = L::npn(b);
            let mut ge = L::pred::<MGE>(b, cge, np);
            let mut gt = L::pred::<MGT>(b, cgt, np);
            let mut kp = L::first(0);
            if K == KEEP_INCL {
                kp = L::keep(keep.add(i));
                ge = L::andnot(ge, kp);
                gt = L::andnot(gt, kp);
            }
            let eq = L::andnot(ge, gt);
            let e = L::count(eq);
            let mut take = if e <= need {
                need -= e;
                ge
            } else {
                let t = L::or(gt, L::lowest(eq, need));
                need = 0;
                t
            };
            if K == KEEP_INCL {
                take = L::or(take, kp);
            }
            store_capped::<L>(out, cnt, cap, take, iv);
            cnt += L::count(take);
            iv = L::step(iv);
            i += L::W;
        }
        // Phase 2: only key > T (and keeps), in groups of 4 blocks while whole-vector
        // stores cannot pass `cap`.
        let w = L::W;
        while cnt < cap && i + 4 * w <= n {
            let mut m = [L::first(0); 4];
            for (j, mj) in m.iter_mut().enumerate() {
                let b = L::load(s.add(i + j * w));
                *mj = apply_keep::<L, K>(L::pred::<MGT>(b, cgt, L::npn(b)), keep.add(i + j * w));
            }
            let (o, total) = group_offsets::<L>(L::group(m));
            if cnt + o[3] + w > cap {
                break;
            }
            for (j, &mj) in m.iter().enumerate() {
                L::compress(out.add(cnt + o[j]), mj, iv);
                iv = L::step(iv);
            }
            cnt += total;
            i += 4 * w;
        }
        while cnt < cap && i + L::W <= n {
            let b = L::load(s.add(i));
            let take = L::pred::<MGT>(b, cgt, L::npn(b));
            let take = apply_keep::<L, K>(take, keep.add(i));
            store_capped::<L>(out, cnt, cap, take, iv);
            cnt += L::count(take);
            iv = L::step(iv);
            i += L::W;
        }
        if cnt < cap && i < n {
            let r = n - i;
            let b = L::load_part(s.add(i), r);
            let np = L::npn(b);
            let f = L::first(r);
            let mut ge = L::and(L::pred::<MGE>(b, cge, np), f);
            let mut gt = L::and(L::pred::<MGT>(b, cgt, np), f);
            let mut kp = L::first(0);
            if K == KEEP_INCL {
                kp = L::keep_part(keep.add(i), r);
                ge = L::andnot(ge, kp);
                gt = L::andnot(gt, kp);
            }
            let eq = L::andnot(ge, gt);
            let e = L::count(eq);
            let take = if need == 0 {
                gt
            } else if e <= need {
                ge
            } else {
                L::or(gt, L::lowest(eq, need))
            };
            let take = if K == KEEP_INCL {
                L::or(take, kp)
            } else {
                take
            };
            L::compress_exact(out.add(cnt), take, iv);
            cnt += L::count(take);
        }
    }
    cnt
}

/// Mask -> indices: `base + i` for the non-zero bytes of `mask[..n]`.
#[inline(always)]
pub(crate) unsafe fn mask_pass<L: Lanes>(
    mask: *const u8,
    n: usize,
    base: u32,
    out: *mut u32,
) -> usize {
    let mut iv = L::iota(base);
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads in mask[..n]; stores as in threshold_pass.
    unsafe {
        while i + L::W <= n {
            let m = L::keep(mask.add(i));
            L::compress(out.add(cnt), m, iv);
            cnt += L::count(m);
            iv = L::step(iv);
            i += L::W;
        }
        if i < n {
            let m = L::keep_part(mask.add(i), n - i);
            L::compress_exact(out.add(cnt), m, iv);
            cnt += L::count(m);
        }
    }
    cnt
}

/// The number of non-zero bytes of `p[..n]`.
#[inline(always)]
pub(crate) unsafe fn count_nonzero<L: Lanes>(p: *const u8, n: usize) -> usize {
    let mut cnt = 0;
    let mut i = 0;
    // SAFETY: reads in p[..n].
    unsafe {
        while i + L::W <= n {
            cnt += L::count(L::keep(p.add(i)));
            i += L::W;
        }
        if i < n {
            cnt += L::count(L::keep_part(p.add(i), n - i));
        }
    }
    cnt
}
