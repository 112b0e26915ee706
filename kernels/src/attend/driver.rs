//! The attention driver shared by every tier: tiles of rows, blocks of keys, masks, the
//! mass pass and the final normalization. The arithmetic phases of a tile come from a
//! [`Backend`]: the canonical one written once over the SIMD tiers (`canon.rs`), or the
//! opt-in AVX512-BF16 one.

use super::canon::Backend;
use super::keys::{block_setup, key_iter, Block};
use super::numerics::{alibi_log2, canon_nan, canon_pos, lse_of, pad32, store_out, Logit};
use super::{AttendArgs, KeySet, ListsPer, OutType, BK, SUPER, TILE_ROWS};
use crate::simd::Elem;

/// One tile: up to `TILE_ROWS` rows (query `qi[r]`, query head `hq[r]`).
#[derive(Clone, Copy)]
pub(super) struct Tile {
    pub(super) n: usize,
    pub(super) qi: [usize; TILE_ROWS],
    pub(super) hq: [usize; TILE_ROWS],
}

/// The attention driver shared by every tier: tiles of rows, blocks of keys, masks,
/// the mass pass and the final normalization; the arithmetic phases come from `B`.
///
/// # Safety
/// The module contract.
#[inline(always)]
pub(crate) unsafe fn attend<T: Elem, B: Backend<T>>(a: &AttendArgs<T>) {
    let g = a.h_q / a.h_kv;
    let rows_per_kv = a.n_q * g;
    let mut group = [Tile {
        n: 0,
        qi: [0; TILE_ROWS],
        hq: [0; TILE_ROWS],
    }; SUPER];
    let mut ng = 0;
    match a.keys {
        KeySet::Dense | KeySet::Indices { .. } => {
            // Rows in order (kv head, query, head within the group); tiles may span
            // KV heads; every tile shares the key sequence.
            let total = a.h_kv * rows_per_kv;
            let mut r0 = 0;
            while r0 < total {
                let n = core::cmp::min(TILE_ROWS, total - r0);
                let t = &mut group[ng];
                for r in 0..n {
                    let row = r0 + r;
                    let kv = row / rows_per_kv;
                    let rem = row % rows_per_kv;
                    t.qi[r] = rem / g;
                    t.hq[r] = kv * g + rem % g;
                }
                t.n = n;
                ng += 1;
                r0 += n;
                if ng == SUPER || r0 == total {
                    // SAFETY: the contract.
                    unsafe { tiles::<T, B>(a, &group[..ng], 0) };
                    ng = 0;
                }
            }
        }
        KeySet::Blocks { q_block, per, .. } => {
            let n_qb = a.n_q.div_ceil(q_block);
            for kv in 0..a.h_kv {
                let (outer, inner_heads) = match per {
                    ListsPer::QHead => (g, 1),
                    _ => (1, g),
                };
                for ho in 0..outer {
                    for qb in 0..n_qb {
                        let list = match per {
                            ListsPer::Shared => qb,
                            ListsPer::KvHead => kv * n_qb + qb,
                            ListsPer::QHead => (kv * g + ho) * n_qb + qb,
                        };
                        let q0 = qb * q_block;
                        let q1 = core::cmp::min(a.n_q, q0 + q_block);
                        let total = (q1 - q0) * inner_heads;
                        let mut r0 = 0;
                        while r0 < total {
                            let n = core::cmp::min(TILE_ROWS, total - r0);
                            let t = &mut group[ng];
                            for r in 0..n {
                                let row = r0 + r;
                                t.qi[r] = q0 + row / inner_heads;
                                t.hq[r] = kv * g + ho + row % inner_heads;
                            }
                            t.n = n;
                            ng += 1;
                            r0 += n;
                            if ng == SUPER || r0 == total {
                                // SAFETY: the contract.
                                unsafe { tiles::<T, B>(a, &group[..ng], list) };
                                ng = 0;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Prefetches the K and V rows of a block for every run of the tile (into L2).
#[inline(always)]
unsafe fn prefetch_block<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, kvs: &[usize], b: &Block) {
    let kbytes = a.d * core::mem::size_of::<T>();
    let vbytes = a.dv * core::mem::size_of::<T>();
    for &kv in kvs {
        for &k in &b.kidx[..b.nb] {
            let k = k as usize;
            // SAFETY: K and V row k of head kv exist (the contract); prefetches of valid
            // addresses have no effect on memory.
            unsafe {
                let kp = a.k.add(k * a.k_tok + kv * a.k_head) as *const u8;
                let vp = a.v.add(k * a.v_tok + kv * a.v_head) as *const u8;
                let mut o = 0;
                while o < kbytes {
                    B::prefetch(kp.add(o));
                    o += 64;
                }
                o = 0;
                while o < vbytes {
                    B::prefetch(vp.add(o));
                    o += 64;
                }
            }
        }
    }
}

/// The scores of one run of rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn scores_run<T: Elem, B: Backend<T>>(
    a: &AttendArgs<T>,
    nrows: usize,
    r0: usize,
    qpack: *const f32,
    dp: usize,
    kv: usize,
    koff: &[usize; BK],
    nb: usize,
    s: *mut f32,
    scratch: *mut u8,
) {
    // SAFETY: as the caller's (the tile's buffers and K rows are valid).
    unsafe {
        let kbase = a.k.add(kv * a.k_head);
        B::scores(
            nrows,
            r0,
            qpack.add(r0 * dp),
            dp,
            a.d,
            kbase,
            koff,
            nb,
            s.add(r0),
            scratch,
        );
    }
}

/// One tile's state during a call: its rows, runs of rows sharing a KV head, masks,
/// online-softmax state and workspace region.
struct Sub {
    t: Tile,
    qpack: *mut f32,
    o: *mut f32,
    s: *mut f32,
    scratch: *mut u8,
    run_start: [usize; TILE_ROWS + 1],
    run_kv: [usize; TILE_ROWS],
    nruns: usize,
    few: bool,
    lo: [u64; TILE_ROWS],
    hi: [u64; TILE_ROWS],
    m: [f32; TILE_ROWS],
    l: [f32; TILE_ROWS],
    alpha: [f32; TILE_ROWS],
    pm: [u16; BK],
    vis: [u16; BK],
}

/// Floats of workspace per tile (padded head dimensions `dp` of Q/K and `dvp` of V):
/// packed queries, output accumulators, scores, scratch (`super::scratch_bytes_dv`).
#[inline(always)]
const fn tile_floats(dp: usize, dvp: usize) -> usize {
    TILE_ROWS * (dp + dvp)
        + TILE_ROWS * BK
        + (64 + BK / 2 * TILE_ROWS * 4 + 32 * dp + 128 * dvp) / 4
}

/// The additive terms of a block in the log2 domain, laid out like the scores: `b[j *
/// TILE_ROWS + r]` for row `r` of the tile and key `j < nb` (0 elsewhere): the ALiBi term
/// ([`alibi_log2`]), the bias tensor's `f32(bias * log2(e))` (rounded once), or their
/// f32 sum (ALiBi first). Scalar code, the same on every tier.
///
/// # Safety
/// With ALiBi, `a.alibi` holds `h_q` slopes and `a.q_pos` / `a.k_pos` the positions of the
/// tile's queries and of the keys `kidx[..nb]`; with a bias, `a.bias` holds the terms of
/// every (head, query, key) of the call.
#[inline(always)]
unsafe fn bias_block<T>(
    a: &AttendArgs<T>,
    t: &Tile,
    kidx: &[u32; BK],
    nb: usize,
    b: &mut [f32; BK * TILE_ROWS],
) {
    let (alibi, tensor) = (!a.alibi.is_null(), !a.bias.is_null());
    for r in 0..t.n {
        let (h, i) = (t.hq[r], t.qi[r]);
        // SAFETY (block): the function's contract.
        unsafe {
            let (slope, qp) = if alibi {
                (*a.alibi.add(h), *a.q_pos.add(i))
            } else {
                (0.0, 0)
            };
            let row = a
                .bias
                .wrapping_add((h * a.bias_head + i * a.bias_query) * a.bias_type.size());
            for (j, &k) in kidx.iter().enumerate().take(nb) {
                let k = k as usize;
                let x = if tensor {
                    let x =
                        (bias_at(row, a.bias_type, k) as f64 * core::f64::consts::LOG2_E) as f32;
                    if alibi {
                        alibi_log2(slope, qp, *a.k_pos.add(k)) + x
                    } else {
                        x
                    }
                } else {
                    alibi_log2(slope, qp, *a.k_pos.add(k))
                };
                b[j * TILE_ROWS + r] = x;
            }
        }
    }
}

/// Element `k` of a bias row of type `ty`, converted to f32 exactly.
///
/// # Safety
/// `p` points to at least `k + 1` aligned elements of type `ty`.
#[inline(always)]
unsafe fn bias_at(p: *const u8, ty: OutType, k: usize) -> f32 {
    // SAFETY: the function's contract.
    unsafe {
        match ty {
            OutType::F32 => *(p as *const f32).add(k),
            OutType::F16 => half::f16::from_bits(*(p as *const u16).add(k)).to_f32(),
            OutType::BF16 => f32::from_bits((*(p as *const u16).add(k) as u32) << 16),
        }
    }
}

/// Sets up a tile: runs, packed queries, cleared output, positions.
#[inline(always)]
unsafe fn sub_init<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, t: &Tile, ws: *mut f32) -> Sub {
    let d = a.d;
    let dp = pad32(d);
    let dvp = pad32(a.dv);
    let g = a.h_q / a.h_kv;
    let n = t.n;
    // SAFETY: each tile owns tile_floats(dp, dvp) floats of the workspace.
    let (qpack, o, s, scratch) = unsafe {
        (
            ws,
            ws.add(TILE_ROWS * dp),
            ws.add(TILE_ROWS * (dp + dvp)),
            ws.add(TILE_ROWS * (dp + dvp) + TILE_ROWS * BK) as *mut u8,
        )
    };
    let mut sub = Sub {
        t: Tile {
            n,
            qi: t.qi,
            hq: t.hq,
        },
        qpack,
        o,
        s,
        scratch,
        run_start: [0; TILE_ROWS + 1],
        run_kv: [0; TILE_ROWS],
        nruns: 0,
        few: false,
        lo: [0; TILE_ROWS],
        hi: [0; TILE_ROWS],
        m: [f32::NEG_INFINITY; TILE_ROWS],
        l: [0.0; TILE_ROWS],
        alpha: [1.0; TILE_ROWS],
        pm: [0; BK],
        vis: [0; BK],
    };
    for r in 0..n {
        let kv = t.hq[r] / g;
        if r == 0 || kv != sub.run_kv[sub.nruns - 1] {
            sub.run_start[sub.nruns] = r;
            sub.run_kv[sub.nruns] = kv;
            sub.nruns += 1;
        }
    }
    sub.run_start[sub.nruns] = n;
    // Prefetching pays where the tile does little arithmetic per byte of K/V (few rows
    // per KV head: decoding); with many, the block is reused from cache by the
    // SUPER tiles of the group.
    sub.few = n < 8 * sub.nruns;

    // Pack the queries (exact conversion, canonical layout, zero padding) and clear O.
    for r in 0..n {
        // SAFETY: row (qi, hq) of Q holds d elements; the tile's packed query rows hold
        // dp floats, its output rows dvp.
        unsafe {
            let src = a.q.add(t.qi[r] * a.q_tok + t.hq[r] * a.q_head);
            let dst = qpack.add(r * dp);
            for e in d..dp {
                *dst.add(canon_pos::<T>(e)) = 0.0;
            }
            for e in 0..d {
                *dst.add(canon_pos::<T>(e)) = (*src.add(e)).to_f32();
            }
            core::ptr::write_bytes(o.add(r * dvp), 0, dvp);
        }
    }
    // SAFETY: the packed rows and the scratch are in place.
    unsafe { B::prepare(n, qpack, dp, dvp, scratch) };

    // Position bounds per row: visible when lo <= k_pos <= hi.
    if a.causal {
        for r in 0..n {
            // SAFETY: qi < n_q positions.
            let qp = unsafe { *a.q_pos.add(t.qi[r]) } as u64;
            sub.hi[r] = qp + a.right as u64;
            sub.lo[r] = if a.window > 0 {
                (qp + 1).saturating_sub(a.window as u64)
            } else {
                0
            };
        }
    }
    sub
}

/// One block of keys for one tile: scores, online softmax, P.V.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn sub_block<T: Elem, B: Backend<T>>(
    a: &AttendArgs<T>,
    sub: &mut Sub,
    kidx: &[u32; BK],
    nb: usize,
    koff: &mut [usize; BK],
    voff: &mut [usize; BK],
) {
    let dp = pad32(a.d);
    let (dv, dvp) = (a.dv, pad32(a.dv));
    let c = Logit::new(a.scale, a.softcap);
    // SAFETY (whole function): indices and rows are in range by the contract; the
    // tile's buffers are its own.
    if !unsafe {
        block_setup(
            a,
            &sub.t,
            &sub.lo,
            &sub.hi,
            kidx,
            nb,
            koff,
            voff,
            &mut sub.vis,
        )
    } {
        return;
    }
    let (s, scratch) = (sub.s, sub.scratch);
    // Per run, the keys past the last one any of its rows sees (the causal diagonal)
    // are neither scored nor summed: their scores are masked and their probabilities
    // are zero, so skipping them changes nothing.
    let mut nb_run = [0usize; TILE_ROWS];
    for run in 0..sub.nruns {
        let (r0, r1) = (sub.run_start[run], sub.run_start[run + 1]);
        let rows = (((1u32 << (r1 - r0)) - 1) << r0) as u16;
        nb_run[run] = sub.vis[..nb]
            .iter()
            .rposition(|&v| v & rows != 0)
            .map_or(0, |j| j + 1);
        if nb_run[run] == 0 {
            continue;
        }
        unsafe {
            scores_run::<T, B>(
                a,
                r1 - r0,
                r0,
                sub.qpack,
                dp,
                sub.run_kv[run],
                koff,
                nb_run[run],
                s,
                scratch,
            )
        };
    }
    // The additive terms (only with ALiBi or a bias: no 4 KiB to clear otherwise).
    let mut bias = (!a.alibi.is_null() || !a.bias.is_null()).then_some([0f32; BK * TILE_ROWS]);
    let bias_ptr = bias.as_mut().map_or(core::ptr::null(), |b| {
        unsafe { bias_block(a, &sub.t, kidx, nb, b) };
        b.as_ptr()
    });
    unsafe {
        B::softmax(
            sub.t.n,
            s,
            &sub.vis,
            nb,
            c,
            bias_ptr,
            &mut sub.m,
            &mut sub.l,
            &mut sub.alpha,
            &mut sub.pm,
            scratch,
        )
    };
    for run in 0..sub.nruns {
        if nb_run[run] == 0 {
            continue;
        }
        let (r0, r1) = (sub.run_start[run], sub.run_start[run + 1]);
        let vbase = unsafe { a.v.add(sub.run_kv[run] * a.v_head) };
        let (pp, ap, op) = unsafe { (s.add(r0), sub.alpha.as_ptr().add(r0), sub.o.add(r0 * dvp)) };
        unsafe {
            B::pv(
                r1 - r0,
                r0,
                pp,
                ap,
                &sub.pm,
                op,
                dvp,
                dv,
                vbase,
                voff,
                nb_run[run],
                scratch,
            );
        }
    }
}

/// The mass pass of one tile (after its last block): every key's probability for every
/// row, added to the mass in row order.
#[inline(always)]
unsafe fn sub_mass<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, sub: &mut Sub, list: usize) {
    let dp = pad32(a.d);
    let c = Logit::new(a.scale, a.softcap);
    let n = sub.t.n;
    let mut inv_l = [0f32; TILE_ROWS];
    let mut live = 0u16;
    for r in 0..n {
        if sub.l[r] != 0.0 && sub.m[r] != f32::NEG_INFINITY {
            live |= 1 << r;
            inv_l[r] = 1.0 / sub.l[r];
        }
    }
    let mut kidx = [0u32; BK];
    let mut koff = [0usize; BK];
    let mut voff = [0usize; BK];
    let mut bias = (!a.alibi.is_null() || !a.bias.is_null()).then_some([0f32; BK * TILE_ROWS]);
    let s = sub.s;
    // SAFETY (whole function): as sub_block's; mass holds n_k floats per array.
    let mut keys = unsafe { key_iter(a, list) };
    loop {
        let (nb, contiguous) = unsafe { keys.next(&mut kidx) };
        if nb == 0 {
            break;
        }
        if !unsafe {
            block_setup(
                a,
                &sub.t,
                &sub.lo,
                &sub.hi,
                &kidx,
                nb,
                &mut koff,
                &mut voff,
                &mut sub.vis,
            )
        } {
            continue;
        }
        for v in sub.vis.iter_mut() {
            *v &= live;
        }
        for run in 0..sub.nruns {
            let (r0, r1) = (sub.run_start[run], sub.run_start[run + 1]);
            unsafe {
                scores_run::<T, B>(
                    a,
                    r1 - r0,
                    r0,
                    sub.qpack,
                    dp,
                    sub.run_kv[run],
                    &koff,
                    nb,
                    s,
                    sub.scratch,
                )
            };
        }
        let bias_ptr = bias.as_mut().map_or(core::ptr::null(), |b| {
            unsafe { bias_block(a, &sub.t, &kidx, nb, b) };
            b.as_ptr()
        });
        unsafe { B::probs(n, s, &sub.vis, nb, c, bias_ptr, &sub.m, &inv_l) };
        for run in 0..sub.nruns {
            let (r0, r1) = (sub.run_start[run], sub.run_start[run + 1]);
            let mass = unsafe { a.mass.add(sub.run_kv[run] * a.mass_head) };
            for (j, &kj) in kidx.iter().enumerate().take(nb) {
                let k = if contiguous {
                    kidx[0] as usize + j
                } else {
                    kj as usize
                };
                unsafe {
                    let mut acc = *mass.add(k);
                    for r in r0..r1 {
                        acc += *s.add(j * TILE_ROWS + r);
                    }
                    *mass.add(k) = canon_nan(acc);
                }
            }
        }
    }
}

/// Normalizes and stores a tile's rows (and log-sum-exps).
#[inline(always)]
unsafe fn sub_finish<T: Elem>(a: &AttendArgs<T>, sub: &Sub) {
    let d = a.dv;
    let dp = pad32(d);
    let esz = a.out_type.size();
    for r in 0..sub.t.n {
        let (i, h) = (sub.t.qi[r], sub.t.hq[r]);
        let (m, l) = (sub.m[r], sub.l[r]);
        let empty = l == 0.0;
        // SAFETY: output row (i, h) holds dv elements; lse (i, h) is in range.
        unsafe {
            let dst = a.out.add((i * a.o_tok + h * a.o_head) * esz);
            let orow = sub.o.add(r * dp);
            for e in 0..d {
                let x = if empty {
                    0.0
                } else {
                    *orow.add(canon_pos::<T>(e)) / l
                };
                store_out(dst, a.out_type, e, x);
            }
            if !a.lse.is_null() {
                *a.lse.add(i * a.lse_tok + h) = if empty {
                    f32::NEG_INFINITY
                } else {
                    canon_nan(lse_of(m, l))
                };
            }
        }
    }
}

/// Up to [`SUPER`] tiles against their common key sequence: every block of keys is
/// loaded once (into cache) for all of them. Per-row arithmetic does not depend on how
/// tiles are grouped.
#[inline(always)]
unsafe fn tiles<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, ts: &[Tile], list: usize) {
    let (dp, dvp) = (pad32(a.d), pad32(a.dv));
    let ws = a.workspace as *mut f32;
    let mut subs: [core::mem::MaybeUninit<Sub>; SUPER] =
        [const { core::mem::MaybeUninit::uninit() }; SUPER];
    for (i, t) in ts.iter().enumerate() {
        subs[i].write(unsafe { sub_init::<T, B>(a, t, ws.add(i * tile_floats(dp, dvp))) });
    }
    // SAFETY: the first ts.len() entries were written just above.
    let subs = unsafe { core::slice::from_raw_parts_mut(subs.as_mut_ptr() as *mut Sub, ts.len()) };
    // KV heads to prefetch: those of tiles with few rows per head.
    let mut kvs = [0usize; SUPER * TILE_ROWS];
    let mut nkv = 0;
    for sub in subs.iter() {
        if sub.few {
            for &kv in &sub.run_kv[..sub.nruns] {
                if nkv == 0 || kvs[nkv - 1] != kv {
                    kvs[nkv] = kv;
                    nkv += 1;
                }
            }
        }
    }
    let kvs = &kvs[..nkv];
    let mut koff = [0usize; BK];
    let mut voff = [0usize; BK];
    let empty = Block {
        kidx: [0; BK],
        nb: 0,
        contiguous: false,
    };
    let (mut cur, mut next) = (empty, Block { ..empty });
    // SAFETY (below): indices, positions and rows are in range by the contract.
    let mut keys = unsafe { key_iter(a, list) };
    (cur.nb, cur.contiguous) = unsafe { keys.next(&mut cur.kidx) };
    unsafe { prefetch_block::<T, B>(a, kvs, &cur) };
    while cur.nb > 0 {
        (next.nb, next.contiguous) = unsafe { keys.next(&mut next.kidx) };
        unsafe { prefetch_block::<T, B>(a, kvs, &next) };
        for sub in subs.iter_mut() {
            unsafe { sub_block::<T, B>(a, sub, &cur.kidx, cur.nb, &mut koff, &mut voff) };
        }
        core::mem::swap(&mut cur, &mut next);
    }
    for sub in subs.iter_mut() {
        if !a.mass.is_null() {
            unsafe { sub_mass::<T, B>(a, sub, list) };
        }
        unsafe { sub_finish(a, sub) };
    }
}
