//! Key sequences: walking a row's keys one block at a time, and the per-key visibility
//! masks of a block (causal and window masking by original positions).

use super::driver::Tile;
use super::{AttendArgs, KeySet, BK, TILE_ROWS};

/// Walks a row's key sequence one block of up to `BK` K rows at a time.
pub(super) struct KeyIter {
    kind: u8,
    /// Dense: next row; Indices: next list position; Blocks: next id position.
    pos: usize,
    end: usize,
    ptr: *const u32,
    /// Blocks: rows left in the current block, the next row, the block size, n_k.
    left: usize,
    next: usize,
    block: usize,
    n_k: usize,
}

impl KeyIter {
    #[inline(always)]
    fn dense(n_k: usize) -> KeyIter {
        KeyIter {
            kind: 0,
            pos: 0,
            end: n_k,
            ptr: core::ptr::null(),
            left: 0,
            next: 0,
            block: 0,
            n_k,
        }
    }
    #[inline(always)]
    fn list(idx: *const u32, n: usize) -> KeyIter {
        KeyIter {
            kind: 1,
            pos: 0,
            end: n,
            ptr: idx,
            left: 0,
            next: 0,
            block: 0,
            n_k: 0,
        }
    }
    #[inline(always)]
    fn blocks(ids: *const u32, from: usize, to: usize, block: usize, n_k: usize) -> KeyIter {
        KeyIter {
            kind: 2,
            pos: from,
            end: to,
            ptr: ids,
            left: 0,
            next: 0,
            block,
            n_k,
        }
    }

    /// Fills `kidx` with the next block; returns its length (0 at the end) and whether
    /// the rows are consecutive (`kidx[j] = kidx[0] + j`).
    ///
    /// # Safety
    /// The pointers hold what the contract says.
    #[inline(always)]
    pub(super) unsafe fn next(&mut self, kidx: &mut [u32; BK]) -> (usize, bool) {
        match self.kind {
            0 => {
                let nb = core::cmp::min(BK, self.end - self.pos);
                for (j, k) in kidx.iter_mut().enumerate().take(nb) {
                    *k = (self.pos + j) as u32;
                }
                self.pos += nb;
                (nb, true)
            }
            1 => {
                let nb = core::cmp::min(BK, self.end - self.pos);
                for (j, k) in kidx.iter_mut().enumerate().take(nb) {
                    // SAFETY: pos + j < n entries of the list.
                    *k = unsafe { *self.ptr.add(self.pos + j) };
                }
                self.pos += nb;
                let contiguous =
                    nb > 0 && (1..nb).all(|j| kidx[j] == kidx[0].wrapping_add(j as u32));
                (nb, contiguous)
            }
            _ => {
                let mut nb = 0;
                while nb < BK {
                    if self.left == 0 {
                        if self.pos == self.end {
                            break;
                        }
                        // SAFETY: pos < end <= number of ids.
                        let b = unsafe { *self.ptr.add(self.pos) } as usize;
                        self.pos += 1;
                        self.next = b * self.block;
                        self.left = core::cmp::min(self.block, self.n_k - self.next);
                        continue;
                    }
                    let take = core::cmp::min(self.left, BK - nb);
                    for j in 0..take {
                        kidx[nb + j] = (self.next + j) as u32;
                    }
                    nb += take;
                    self.next += take;
                    self.left -= take;
                }
                let contiguous =
                    nb > 0 && (1..nb).all(|j| kidx[j] == kidx[0].wrapping_add(j as u32));
                (nb, contiguous)
            }
        }
    }
}

/// The key iterator of the shared set, or of block list `list`.
#[inline(always)]
pub(super) unsafe fn key_iter<T>(a: &AttendArgs<T>, list: usize) -> KeyIter {
    match a.keys {
        KeySet::Dense => KeyIter::dense(a.n_k),
        KeySet::Indices { idx, n } => KeyIter::list(idx, n),
        KeySet::Blocks {
            block,
            offsets,
            ids,
            ..
        } => {
            // SAFETY: list < n_lists, so offsets[list + 1] exists.
            let (from, to) = unsafe { (*offsets.add(list), *offsets.add(list + 1)) };
            KeyIter::blocks(ids, from, to, block, a.n_k)
        }
    }
}

/// Visibility bits of a block of `nb` keys for a row seeing positions `lo ..= hi`.
#[inline(always)]
fn visibility(lo: u64, hi: u64, kpos: &[u32; BK], kmin: u64, kmax: u64, nb: usize) -> u64 {
    let all = if nb == 64 { u64::MAX } else { (1u64 << nb) - 1 };
    if kmin >= lo && kmax <= hi {
        return all;
    }
    if kmax < lo || kmin > hi {
        return 0;
    }
    let mut v = 0u64;
    for (j, &p) in kpos.iter().enumerate().take(nb) {
        let p = p as u64;
        v |= ((p >= lo && p <= hi) as u64) << j;
    }
    v
}

/// The K rows of one block of a key sequence.
#[derive(Clone, Copy)]
pub(super) struct Block {
    pub(super) kidx: [u32; BK],
    pub(super) nb: usize,
    pub(super) contiguous: bool,
}

/// Offsets and per-key visibility masks of one block; false when no row sees any key.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn block_setup<T>(
    a: &AttendArgs<T>,
    t: &Tile,
    lo: &[u64; TILE_ROWS],
    hi: &[u64; TILE_ROWS],
    kidx: &[u32; BK],
    nb: usize,
    koff: &mut [usize; BK],
    voff: &mut [usize; BK],
    vis: &mut [u16; BK],
) -> bool {
    let all = if nb == 64 { u64::MAX } else { (1u64 << nb) - 1 };
    let rows = if t.n == 16 {
        u16::MAX
    } else {
        ((1u32 << t.n) - 1) as u16
    };
    if !a.causal {
        for (j, v) in vis.iter_mut().enumerate() {
            *v = if j < nb { rows } else { 0 };
        }
    } else {
        let mut kpos = [0u32; BK];
        let (mut kmin, mut kmax) = (u64::MAX, 0u64);
        for j in 0..nb {
            // SAFETY: kidx[j] < n_k positions.
            let p = unsafe { *a.k_pos.add(kidx[j] as usize) };
            kpos[j] = p;
            kmin = kmin.min(p as u64);
            kmax = kmax.max(p as u64);
        }
        // Rows that see the whole block, and the partially visible ones bit by bit.
        let mut full = 0u16;
        let mut partial = [0u64; TILE_ROWS];
        let mut any = false;
        let mut last_q = usize::MAX;
        let mut last_v = 0u64;
        for r in 0..t.n {
            if t.qi[r] != last_q {
                last_q = t.qi[r];
                last_v = visibility(lo[r], hi[r], &kpos, kmin, kmax, nb);
            }
            if last_v == all {
                full |= 1 << r;
            } else {
                partial[r] = last_v;
            }
            any |= last_v != 0;
        }
        if !any {
            return false;
        }
        for (j, v) in vis.iter_mut().enumerate() {
            *v = if j < nb { full } else { 0 };
        }
        for (r, &bits) in partial.iter().enumerate().take(t.n) {
            let mut b = bits;
            while b != 0 {
                let j = b.trailing_zeros() as usize;
                vis[j] |= 1 << r;
                b &= b - 1;
            }
        }
    }
    for j in 0..BK {
        let k = if j < nb { kidx[j] } else { kidx[0] } as usize;
        koff[j] = k * a.k_tok;
        voff[j] = k * a.v_tok;
    }
    true
}
