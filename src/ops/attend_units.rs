//! How an attention call splits into units (see the README, "Threads").
//!
//! - **Rows.** The (query, head) rows of one KV head (Dense and index keys, and block
//!   lists shared or per KV head) or of one query head (block lists per query head) are
//!   cut into ranges of consecutive queries, [`UNIT_ROWS`] rows each (whole query blocks
//!   for block lists). A row's output and log-sum-exp do not depend on the other rows of
//!   its kernel call, so any such split gives the same bits.
//! - **Mass.** The attention mass of a key is a sum over rows. The rows adding into one
//!   mass array (one KV head's when `mass_head_stride > 0`, all rows otherwise) form a
//!   group. A group of at most [`MASS_UNIT_ROWS`] rows is one unit, which adds its rows'
//!   probabilities in row order onto the caller's array. A larger group is cut into units
//!   of [`MASS_UNIT_ROWS`] rows; each sums its rows in row order from +0 into its own
//!   buffer, and the buffers are then added up in unit order and the total added once to
//!   the caller's array.
//! - **Split-K decoding.** A call without a mass output, over every key or an index list,
//!   with at most [`SPLIT_K_MAX_ROWS`] rows per KV head and at least
//!   `2 * SPLIT_K_CHUNK` keys in its key sequence, cuts the key sequence into chunks of
//!   [`SPLIT_K_CHUNK`] keys: each (KV head, chunk) is a unit giving f32 partial outputs
//!   and log-sum-exps, which `attention_merge`'s canonical merge then combines in chunk
//!   order. So one query over 8192 keys uses every core.
//!
//! - **Sinks.** With per-head sink logits, the kernel writes f32 rows and log-sum-exps
//!   (in the units above, or the split-K chunks), and `attention_merge`'s canonical merge
//!   combines them with one more part per row: zeros with the head's sink as its
//!   log-sum-exp (a logit in the denominator without a value), one unit per query.
//!
//! Every choice depends on the shape only, never on the number of threads.

use super::attend::with_workspace;
use crate::error::{Error, ErrorKind, Result};
use crate::parallel::{self, Phases, Shared};
use tokenroute_kernels::attend::{
    AttendArgs, AttendFn, KeySet, ListsPer, MergeArgs, MergeFn, OutType,
};

/// Rows per unit of a call without a mass output (four tiles of the kernel).
pub const UNIT_ROWS: usize = 64;
/// Rows per mass unit (see the module doc).
pub const MASS_UNIT_ROWS: usize = 1024;
/// Split-K applies to calls with at most this many rows per KV head.
pub const SPLIT_K_MAX_ROWS: usize = 64;
/// Keys per split-K chunk (a multiple of the kernel's 64-key blocks).
pub const SPLIT_K_CHUNK: usize = 512;

/// `p + n` for a pointer that may be null (which stays null).
fn off<P>(p: *const P, n: usize) -> *const P {
    if p.is_null() {
        p
    } else {
        p.wrapping_add(n)
    }
}

fn off_mut<P>(p: *mut P, n: usize) -> *mut P {
    if p.is_null() {
        p
    } else {
        p.wrapping_add(n)
    }
}

fn overflow() -> Error {
    Error::new(ErrorKind::SizeOverflow, "attention scratch size overflows")
}

/// The row units of a call: `groups` groups (KV heads, or query heads for block lists per
/// query head) of `ranges` query ranges of `qstep` queries.
#[derive(Clone, Copy)]
struct Rows {
    groups: usize,
    ranges: usize,
    qstep: usize,
    /// Query heads per group.
    heads: usize,
    /// Query heads per KV head.
    g: usize,
    n_qb: usize,
}

impl Rows {
    fn new<T>(a: &AttendArgs<T>, rows_per_unit: usize) -> Rows {
        let g = a.h_q / a.h_kv;
        let (groups, heads, q_block) = match a.keys {
            KeySet::Blocks {
                per: ListsPer::QHead,
                q_block,
                ..
            } => (a.h_q, 1, q_block),
            KeySet::Blocks { q_block, .. } => (a.h_kv, g, q_block),
            _ => (a.h_kv, g, 1),
        };
        let qstep = rows_per_unit.div_ceil(heads).div_ceil(q_block) * q_block;
        Rows {
            groups,
            ranges: a.n_q.div_ceil(qstep),
            qstep,
            heads,
            g,
            n_qb: a.n_q.div_ceil(q_block),
        }
    }

    fn units(&self) -> usize {
        self.groups * self.ranges
    }

    /// The kernel call of unit `u`: its group's heads, its queries (and block lists).
    fn sub<T: Copy>(&self, a: &AttendArgs<T>, u: usize) -> AttendArgs<T> {
        let (grp, rng) = (u / self.ranges, u % self.ranges);
        let (i0, i1) = (rng * self.qstep, a.n_q.min((rng + 1) * self.qstep));
        let hq0 = grp * self.heads;
        let kv = hq0 / self.g;
        let esz = a.out_type.size();
        let mut s = *a;
        s.q = a.q.wrapping_add(i0 * a.q_tok + hq0 * a.q_head);
        s.n_q = i1 - i0;
        s.h_q = self.heads;
        s.k = a.k.wrapping_add(kv * a.k_head);
        s.v = a.v.wrapping_add(kv * a.v_head);
        s.h_kv = 1;
        s.q_pos = off(a.q_pos, i0);
        s.alibi = off(a.alibi, hq0);
        s.bias = off(
            a.bias,
            (hq0 * a.bias_head + i0 * a.bias_query) * a.bias_type.size(),
        );
        s.out = a.out.wrapping_add((i0 * a.o_tok + hq0 * a.o_head) * esz);
        s.lse = off_mut(a.lse, i0 * a.lse_tok + hq0);
        s.mass = off_mut(a.mass, kv * a.mass_head);
        if let KeySet::Blocks {
            block,
            q_block,
            offsets,
            ids,
            per,
        } = a.keys
        {
            let qb0 = i0 / q_block;
            let first = match per {
                ListsPer::Shared => qb0,
                ListsPer::KvHead => kv * self.n_qb + qb0,
                ListsPer::QHead => hq0 * self.n_qb + qb0,
            };
            s.keys = KeySet::Blocks {
                block,
                q_block,
                offsets: offsets.wrapping_add(first),
                ids,
                per,
            };
        }
        s
    }
}

/// Keys in every row's key sequence (Dense, Indices), or `None` for block lists.
fn key_count<T>(a: &AttendArgs<T>) -> Option<usize> {
    match a.keys {
        KeySet::Dense => Some(a.n_k),
        KeySet::Indices { n, .. } => Some(n),
        KeySet::Blocks { .. } => None,
    }
}

/// The kernel on `a` with the running thread's workspace.
fn run_kernel<T: Copy>(f: AttendFn<T>, mut a: AttendArgs<T>, ws: usize) -> Result<()> {
    with_workspace(ws, |w| {
        a.workspace = w;
        // SAFETY: `a` is the validated call or one of its units (the same tensors at
        // offsets inside them, disjoint output rows); the workspace is large enough.
        unsafe { f(&a) }
    })
}

/// Runs the validated call `a` (n_q > 0) with kernel `f` and `ws` bytes of workspace per
/// kernel call, in units (see the module doc); `sinks`: null, or `h_q` sink logits (then
/// `a` has no mass output).
pub(crate) fn attend<T: Copy>(
    f: AttendFn<T>,
    merge: MergeFn,
    a: AttendArgs<T>,
    ws: usize,
    sinks: *const f32,
) -> Result<()> {
    let g = a.h_q / a.h_kv;
    let rows_per_kv = a.n_q.saturating_mul(g);
    if a.mass.is_null() {
        if let Some(n) = key_count(&a) {
            if rows_per_kv <= SPLIT_K_MAX_ROWS && n >= 2 * SPLIT_K_CHUNK {
                return split_k(f, merge, a, ws, n, sinks);
            }
        }
    }
    if !sinks.is_null() {
        return with_sinks(f, merge, a, ws, sinks);
    }
    let d = a.d.max(a.dv);
    let keys = key_count(&a).unwrap_or(a.n_k);
    let row_work = keys.saturating_mul(d).max(1);
    let work = a.n_q.saturating_mul(a.h_q).saturating_mul(row_work);
    if a.mass.is_null() {
        let rows = Rows::new(&a, UNIT_ROWS);
        let sh = Shared(a);
        return parallel::for_each(rows.units(), work, &|u| {
            run_kernel(f, rows.sub(&sh.get(), u), ws)
        });
    }
    let rows = Rows::new(&a, MASS_UNIT_ROWS);
    // The mass groups: one per KV head (its units are consecutive), or the whole call.
    let (n_groups, group_rows) = if a.mass_head != 0 {
        (a.h_kv, rows_per_kv)
    } else {
        (1, a.n_q.saturating_mul(a.h_q))
    };
    let per_group = rows.units() / n_groups;
    let sh = Shared(a);
    if group_rows <= MASS_UNIT_ROWS {
        // One unit per group, its kernel calls in row order onto the caller's array.
        return parallel::for_each(n_groups, work, &|grp| {
            (grp * per_group..(grp + 1) * per_group)
                .try_for_each(|u| run_kernel(f, rows.sub(&sh.get(), u), ws))
        });
    }
    // Partial sums: one n_k buffer per unit, then added in unit order.
    let n_k = a.n_k;
    let bytes = rows
        .units()
        .checked_mul(n_k)
        .and_then(|x| x.checked_mul(4))
        .ok_or_else(overflow)?;
    parallel::with_call_scratch(bytes, |p| -> Result<()> {
        let parts = Shared(p as *mut f32);
        let mut phases = Phases::default();
        phases.run(parallel::for_each(rows.units(), work, &|u| {
            let part = parts.get().wrapping_add(u * n_k);
            // SAFETY: unit u owns n_k floats of the scratch.
            unsafe { core::ptr::write_bytes(part, 0, n_k) };
            let mut s = rows.sub(&sh.get(), u);
            (s.mass, s.mass_head) = (part, 0);
            run_kernel(f, s, ws)
        }))?;
        let key_work = per_group.saturating_mul(8).max(1);
        phases.run(parallel::for_each_range(
            n_groups * n_k,
            parallel::items_per_unit(key_work),
            (n_groups * n_k).saturating_mul(key_work),
            &|r| {
                let a = sh.get();
                for x in r {
                    let (grp, k) = (x / n_k, x % n_k);
                    let units = grp * per_group..(grp + 1) * per_group;
                    // SAFETY: every unit's buffer holds n_k floats; the caller's array of
                    // group grp holds n_k floats; each (group, key) is one unit's.
                    unsafe {
                        let mut sum = *parts.get().add(units.start * n_k + k);
                        for u in units.start + 1..units.end {
                            sum += *parts.get().add(u * n_k + k);
                        }
                        let m = a.mass.add(grp * a.mass_head + k);
                        *m += sum;
                    }
                }
                Ok(())
            },
        ))?;
        phases.finish()
    })?
}

/// Sets the sink part of `n` rows of heads `h0..` in a merge: zero outputs (`d` floats at
/// `o + r * row_stride`) and the heads' sinks as log-sum-exps (`lse[r]`).
///
/// # Safety
/// The part's rows and log-sum-exps are writable; `sinks` holds `h0 + n` floats.
unsafe fn sink_part(
    o: *mut f32,
    row_stride: usize,
    d: usize,
    lse: *mut f32,
    sinks: *const f32,
    h0: usize,
    n: usize,
) {
    for r in 0..n {
        // SAFETY: the caller's promise.
        unsafe {
            core::ptr::write_bytes(o.add(r * row_stride), 0, d);
            *lse.add(r) = *sinks.add(h0 + r);
        }
    }
}

/// Sinks without split-K (see the module doc): the kernel's f32 rows, each followed by
/// its zero sink row, `[query][head][2][d]`; log-sum-exps `[2][query][head]`; then one
/// merge unit per query.
fn with_sinks<T: Copy>(
    f: AttendFn<T>,
    merge: MergeFn,
    a: AttendArgs<T>,
    ws: usize,
    sinks: *const f32,
) -> Result<()> {
    // Output rows (and the merge's) hold V's head dimension.
    let (d, h_q) = (a.dv, a.h_q);
    let rows = a.n_q.checked_mul(h_q).ok_or_else(overflow)?;
    let bytes = d
        .checked_mul(2)
        .and_then(|x| x.checked_add(2))
        .and_then(|x| x.checked_mul(rows))
        .and_then(|x| x.checked_mul(4))
        .ok_or_else(overflow)?;
    let keys = key_count(&a).unwrap_or(a.n_k);
    let work = rows.saturating_mul(keys.saturating_mul(a.d.max(d)).max(1));
    parallel::with_call_scratch(bytes, |p| -> Result<()> {
        let parts = p as *mut f32;
        let lses = parts.wrapping_add(rows * 2 * d);
        let mut b = a;
        b.out = parts as *mut u8;
        b.out_type = OutType::F32;
        (b.o_tok, b.o_head) = (h_q * 2 * d, 2 * d);
        (b.lse, b.lse_tok) = (lses, h_q);
        let units = Rows::new(&b, UNIT_ROWS);
        let sh = Shared((b, a, sinks, parts, lses));
        let mut phases = Phases::default();
        phases.run(parallel::for_each(units.units(), work, &|u| {
            run_kernel(f, units.sub(&sh.get().0, u), ws)
        }))?;
        let esz = a.out_type.size();
        let merge_ws = d.checked_mul(4).ok_or_else(overflow)?;
        phases.run(parallel::for_each(a.n_q, rows * 4 * d, &|i| {
            let (_, a, sinks, parts, lses) = sh.get();
            let o = parts.wrapping_add(i * h_q * 2 * d);
            let l = lses.wrapping_add(i * h_q);
            // SAFETY: query i's sink rows and log-sum-exps are this unit's; sinks holds
            // h_q floats (checked by the caller).
            unsafe { sink_part(o.add(d), 2 * d, d, l.add(rows), sinks, 0, h_q) };
            let mut m = MergeArgs {
                n_parts: 2,
                n_rows: h_q,
                d,
                o,
                part_stride: d,
                row_stride: 2 * d,
                lse: l,
                lse_part_stride: rows,
                out: a.out.wrapping_add(i * a.o_tok * esz),
                out_type: a.out_type,
                out_row_stride: a.o_head,
                out_lse: off_mut(a.lse, i * a.lse_tok),
                workspace: core::ptr::null_mut(),
            };
            with_workspace(merge_ws, |w| {
                m.workspace = w as *mut f32;
                // SAFETY: the kernel wrote query i's rows (the first phase has finished);
                // its output rows and lse are the caller's, written by this unit only.
                unsafe { merge(&m) }
            })
        }))?;
        phases.finish()
    })?
}

/// Split-K decoding (see the module doc): `n` keys in the key sequence; `sinks`: null or
/// `h_q` sink logits, merged as one more part.
fn split_k<T: Copy>(
    f: AttendFn<T>,
    merge: MergeFn,
    a: AttendArgs<T>,
    ws: usize,
    n: usize,
    sinks: *const f32,
) -> Result<()> {
    // Partial and merged rows hold V's head dimension.
    let d = a.dv;
    let g = a.h_q / a.h_kv;
    let n_ch = n.div_ceil(SPLIT_K_CHUNK);
    let n_parts = n_ch + usize::from(!sinks.is_null());
    let rows = a.n_q * a.h_q;
    let part_floats = rows.checked_mul(d).ok_or_else(overflow)?;
    let bytes = part_floats
        .checked_add(rows)
        .and_then(|x| x.checked_mul(n_parts))
        .and_then(|x| x.checked_mul(4))
        .ok_or_else(overflow)?;
    let merge_ws = d.checked_mul(4).ok_or_else(overflow)?;
    let work = rows.saturating_mul(n).saturating_mul(a.d.max(d));
    parallel::with_call_scratch(bytes, |p| -> Result<()> {
        let parts = p as *mut f32;
        let lses = parts.wrapping_add(n_parts * part_floats);
        let sh = Shared((a, parts, lses, sinks));
        let mut phases = Phases::default();
        phases.run(parallel::for_each(a.h_kv * n_ch, work, &|u| {
            let (a, parts, lses, _) = sh.get();
            let (kv, c) = (u / n_ch, u % n_ch);
            let (c0, c1) = (c * SPLIT_K_CHUNK, n.min((c + 1) * SPLIT_K_CHUNK));
            let mut s = a;
            s.q = a.q.wrapping_add(kv * g * a.q_head);
            s.alibi = off(a.alibi, kv * g);
            s.bias = off(a.bias, kv * g * a.bias_head * a.bias_type.size());
            s.h_q = g;
            s.k = a.k.wrapping_add(kv * a.k_head);
            s.v = a.v.wrapping_add(kv * a.v_head);
            s.h_kv = 1;
            match a.keys {
                KeySet::Dense => {
                    s.k = s.k.wrapping_add(c0 * a.k_tok);
                    s.v = s.v.wrapping_add(c0 * a.v_tok);
                    s.n_k = c1 - c0;
                    s.k_pos = off(a.k_pos, c0);
                    s.bias = off(s.bias, c0 * a.bias_type.size());
                }
                KeySet::Indices { idx, .. } => {
                    s.keys = KeySet::Indices {
                        idx: idx.wrapping_add(c0),
                        n: c1 - c0,
                    }
                }
                KeySet::Blocks { .. } => unreachable!("split-K takes no block lists"),
            }
            // Partials: [chunk][query][head][d] outputs and [chunk][query][head] lse.
            s.out = parts.wrapping_add(c * part_floats + kv * g * d) as *mut u8;
            s.out_type = OutType::F32;
            (s.o_tok, s.o_head) = (a.h_q * d, d);
            s.lse = lses.wrapping_add(c * rows + kv * g);
            s.lse_tok = a.h_q;
            run_kernel(f, s, ws)
        }))?;
        let esz = a.out_type.size();
        phases.run(parallel::for_each(
            a.n_q * a.h_kv,
            n_parts * rows * d,
            &|u| {
                let (a, parts, lses, sinks) = sh.get();
                let (i, kv) = (u / a.h_kv, u % a.h_kv);
                let r0 = i * a.h_q + kv * g;
                if !sinks.is_null() {
                    // SAFETY: the sink part's rows r0..r0 + g are this unit's; sinks holds
                    // h_q floats (checked by the caller).
                    unsafe {
                        sink_part(
                            parts.add(n_ch * part_floats + r0 * d),
                            d,
                            d,
                            lses.add(n_ch * rows + r0),
                            sinks,
                            kv * g,
                            g,
                        )
                    };
                }
                let mut m = MergeArgs {
                    n_parts,
                    n_rows: g,
                    d,
                    o: parts.wrapping_add(r0 * d),
                    part_stride: part_floats,
                    row_stride: d,
                    lse: lses.wrapping_add(r0),
                    lse_part_stride: rows,
                    out: a.out.wrapping_add((i * a.o_tok + kv * g * a.o_head) * esz),
                    out_type: a.out_type,
                    out_row_stride: a.o_head,
                    out_lse: off_mut(a.lse, i * a.lse_tok + kv * g),
                    workspace: core::ptr::null_mut(),
                };
                with_workspace(merge_ws, |w| {
                    m.workspace = w as *mut f32;
                    // SAFETY: every chunk wrote its partial rows (the first phase has
                    // finished); the output rows (i, kv's heads) and their lse are the
                    // caller's, written by this unit only.
                    unsafe { merge(&m) }
                })
            },
        ))?;
        phases.finish()
    })?
}
