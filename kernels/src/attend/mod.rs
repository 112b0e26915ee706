//! Sparse attention: flash-style attention of queries over a subset of keys, merging of
//! partial results by log-sum-exp, per-key attention mass, and the key-block summaries
//! and bounds of query-aware block selection (Quest).
//!
//! # Tensors
//! Q is `[n_q, H_q, d]`, K and V are `[n_k, H_kv, d]`, the output is `[n_q, H_q, d]`;
//! element `(t, h, e)` of a tensor lives at `base + t * tok_stride + h * head_stride + e`
//! (strides in elements, each tensor its own). Query head `h` reads KV head
//! `h / (H_q / H_kv)` (GQA; MQA when `H_kv == 1`). Q, K and V share one element type
//! (f32, f16 or bf16), converted exactly to f32; the output is f32, f16 or bf16
//! (rounded to nearest even).
//!
//! # Key sequences
//! Every (query, head) row attends over a *key sequence*, a list of K rows:
//! - [`KeySet::Dense`]: `0, 1, ..., n_k - 1`;
//! - [`KeySet::Indices`]: a list of K rows shared by every query and head (the keys
//!   kept by token selection), read in place: nothing is gathered;
//! - [`KeySet::Blocks`]: per query block of `q_block` consecutive queries (and per list
//!   group, see [`ListsPer`]), a list of key blocks of `block` keys; key block `b`
//!   stands for K rows `b * block .. min((b + 1) * block, n_k)`.
//!
//! Masking (optional) is by original positions: with `causal`, key row `k` is visible
//! to query `i` when `k_pos[k] <= q_pos[i]`, and with a window `w > 0` also when
//! `q_pos[i] - w < k_pos[k]`. Positions are `u32` token positions of the original
//! sequence, so pruned and compacted sequences mask correctly.
//!
//! # Canonical arithmetic (identical on every tier, bit for bit)
//! `c = (scale as f64 * log2(e)) as f32`. For one row:
//! 1. **dot**: `d` is padded with zeros to `dp`, a multiple of 32. Each chunk of 32
//!    elements feeds 16 lanes, two fused multiply-adds per lane, in this order: for f32
//!    and f16, lane `l` takes element `32c + l`, then `32c + 16 + l`; for bf16, element
//!    `32c + 2l + 1`, then `32c + 2l` (the order of `vdpbf16ps`). Lanes start at +0;
//!    the dot is the fixed 16-lane tree of [`crate::numerics::reduce16`].
//! 2. `x = dot * c`; `x = -inf` for a key the row may not see.
//! 3. The key sequence is cut into blocks of [`BK`] = 64 consecutive entries (fixed:
//!    never derived from `n_k`, the number of queries or threads). Per block, with
//!    state `(m, l, O)` starting at `(-inf, 0, 0)`: `mb` = the largest `x` (`-inf` when
//!    none is visible); `m' = max(m, mb)`, NaN when `m` or a visible `x` is NaN. When
//!    `m' = -inf` the block changes nothing.
//!    Otherwise `alpha = exp2(m - m')`, `p_j = exp2(x_j - m')`,
//!    `psum = tree16(((p[0..16] + p[16..32]) + p[32..48]) + p[48..64])` (lanewise, `p = 0`
//!    past the block's end), `l = alpha * l + psum` (two roundings), and each output
//!    element `O_e = alpha * O_e`, then `O_e = fma(p_j, v_je, O_e)` for every `j` of the
//!    block in order **whose `p_j != 0`** (a masked or underflowed key contributes
//!    nothing, even when its value is infinite or NaN); then `m = m'`.
//! 4. `out_e = O_e / l`, rounded to the output type; the log-sum-exp is
//!    `(ln 2 * (m + log2 l))` evaluated in f64 and rounded to f32. A row with no visible
//!    key (`l = 0`) gets zeros and a log-sum-exp of `-inf`, never NaN.
//!
//! `exp2(t)` (used only for `t <= 0` or NaN) is: NaN for NaN, `+0` for `t < -125`,
//! otherwise `n = round_half_even(t)` (by the `1.5 * 2^23` shifter), `f = t - n`, the
//! degree-6 polynomial [`EXP2_POLY`] in `f` by fused Horner steps, times `2^n` (exponent
//! add). Its relative error is below 2^-22. A NaN logit makes its row NaN (output and
//! log-sum-exp).
//!
//! The attention mass of key row `k` adds, for every row that sees it (in row order),
//! `exp2(x - m) * (1 / l)` with the row's final `m` and `l` (one more pass over the keys).
//!
//! # Contract (every variant)
//! The caller (the `tokenroute` crate) has validated every shape, stride, index and
//! pointer: `H_kv >= 1`, `H_q % H_kv == 0`, `d >= 1`, every key index and block id in
//! range, positions present when masking, the workspace at least
//! [`workspace_bytes`]`(d)` bytes and 64-byte aligned, outputs disjoint from inputs.
//! Kernels read only the described elements, write only the described outputs (the
//! `d` elements of each output row, the log-sum-exp and mass entries), never allocate.

pub mod scalar;

#[cfg(target_arch = "x86_64")]
pub mod avx2;
#[cfg(target_arch = "x86_64")]
pub mod avx512;
#[cfg(target_arch = "aarch64")]
pub mod neon;

use crate::numerics::{fma_f32, reduce16};
use crate::KernelInfo;
use half::{bf16, f16};

/// Keys per online-softmax block: fixed, so that results never depend on `n_k`, the
/// number of queries, or how an engine splits work.
pub const BK: usize = 64;
/// Rows (query, head pairs) processed together: fixed on every tier.
pub const TILE_ROWS: usize = 16;
/// Tiles sharing each block of keys while it is in cache.
pub const SUPER: usize = 4;

/// The exp2 polynomial on `[-0.5, 0.5]`, highest degree first (Cephes `exp2f`).
pub const EXP2_POLY: [f32; 7] = [
    1.535_336_2e-4,
    1.339_887_4e-3,
    9.618_437_4e-3,
    5.550_332_5e-2,
    2.402_264_8e-1,
    6.931_472e-1,
    1.0,
];
/// The round-to-nearest shifter `1.5 * 2^23`.
pub const SHIFTER: f32 = 12_582_912.0;
/// Below this, `exp2` returns +0 (so `2^n` never leaves the normal range).
pub const EXP2_MIN: f32 = -125.0;

/// Input element types.
pub trait Elem: Copy + Default + 'static {
    /// bf16: each chunk of 32 elements is consumed odd element first (see the module
    /// doc); f32/f16: in order.
    const PAIRED: bool;
    /// Exact conversion to f32.
    fn to_f32(self) -> f32;
}
impl Elem for f32 {
    const PAIRED: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}
impl Elem for f16 {
    const PAIRED: bool = false;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}
impl Elem for bf16 {
    const PAIRED: bool = true;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// Where element `j` of a row lives in the packed f32 layout of queries and output
/// accumulators: the identity for f32/f16; for bf16 each chunk of 32 holds its 16 odd
/// elements, then its 16 even elements (the order in which the lanes consume them).
#[inline(always)]
pub fn canon_pos<T: Elem>(j: usize) -> usize {
    if T::PAIRED {
        let c = j & !31;
        let t = j & 31;
        if t & 1 == 1 {
            c + (t >> 1)
        } else {
            c + 16 + (t >> 1)
        }
    } else {
        j
    }
}

/// `d` rounded up to a multiple of 32.
#[inline(always)]
pub const fn pad32(d: usize) -> usize {
    (d + 31) & !31
}

/// Bytes of workspace an attention call with head dimension `d` needs (`None` on
/// overflow). The workspace must be 64-byte aligned.
pub fn workspace_bytes(d: usize) -> Option<usize> {
    let dp = d.checked_add(31)? & !31;
    // Per tile: packed queries and accumulators (2 x TILE_ROWS x dp), scores
    // (TILE_ROWS x BK), scratch.
    let per_tile = TILE_ROWS
        .checked_mul(dp)?
        .checked_mul(2)?
        .checked_add(TILE_ROWS * BK)?
        .checked_mul(4)?
        .checked_add(scratch_bytes(dp)?)?;
    per_tile.checked_mul(SUPER)
}

/// Bytes of per-tile scratch for a padded head dimension `dp` (used by the
/// AVX512-BF16 path: packed query pairs, probability pairs, value pairs).
pub const fn scratch_bytes(dp: usize) -> Option<usize> {
    // 64 (flags) + BK / 2 * TILE_ROWS * 4 (probability pairs) + dp / 2 * TILE_ROWS * 4
    // (query pairs) + BK / 2 * dp * 4 (value pairs).
    match dp.checked_mul(32 + 128) {
        Some(x) => x.checked_add(64 + BK / 2 * TILE_ROWS * 4),
        None => None,
    }
}

/// Output element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    BF16,
}

impl OutType {
    pub const fn size(self) -> usize {
        match self {
            OutType::F32 => 4,
            OutType::F16 | OutType::BF16 => 2,
        }
    }
}

/// Which rows share a block list (see [`KeySet::Blocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListsPer {
    /// One list per query block, shared by every head: list `qb`.
    Shared,
    /// One list per (KV head, query block): list `g * n_qblocks + qb`.
    KvHead,
    /// One list per (query head, query block): list `h * n_qblocks + qb`.
    QHead,
}

/// The key sequence of every row; see the module doc.
#[derive(Clone, Copy, Debug)]
pub enum KeySet {
    Dense,
    Indices {
        idx: *const u32,
        n: usize,
    },
    Blocks {
        /// Keys per key block (>= 1).
        block: usize,
        /// Queries per query block (>= 1).
        q_block: usize,
        /// `n_lists + 1` nondecreasing offsets into `ids`; list `L` is
        /// `ids[offsets[L] .. offsets[L + 1]]`.
        offsets: *const usize,
        /// Key block ids, each `< ceil(n_k / block)`.
        ids: *const u32,
        per: ListsPer,
    },
}

/// Arguments of an attention kernel; see the module doc and contract.
#[derive(Clone, Copy, Debug)]
pub struct AttendArgs<T> {
    pub q: *const T,
    pub n_q: usize,
    pub h_q: usize,
    pub d: usize,
    pub q_tok: usize,
    pub q_head: usize,
    pub k: *const T,
    pub n_k: usize,
    pub h_kv: usize,
    pub k_tok: usize,
    pub k_head: usize,
    pub v: *const T,
    pub v_tok: usize,
    pub v_head: usize,
    pub keys: KeySet,
    /// The softmax scale (already defaulted by the caller).
    pub scale: f32,
    /// Mask keys after the query (by position).
    pub causal: bool,
    /// With `causal`: also mask keys at or before `q_pos - window` (0 = no window).
    pub window: u32,
    /// `n_q` positions (when `causal`), else may be null.
    pub q_pos: *const u32,
    /// `n_k` positions, one per K row (when `causal`), else may be null.
    pub k_pos: *const u32,
    pub out: *mut u8,
    pub out_type: OutType,
    pub o_tok: usize,
    pub o_head: usize,
    /// Null, or the log-sum-exp of row `(i, h)` at `lse[i * lse_tok + h]`.
    pub lse: *mut f32,
    pub lse_tok: usize,
    /// Null, or per-key attention mass, added to `mass[g * mass_head + k]` for KV
    /// head `g` and K row `k` (`mass_head = 0`: every head into one array).
    pub mass: *mut f32,
    pub mass_head: usize,
    /// [`workspace_bytes`]`(d)` bytes, 64-byte aligned.
    pub workspace: *mut u8,
}

/// `unsafe fn(&AttendArgs<T>)`: see the module contract.
pub type AttendFn<T> = unsafe fn(args: &AttendArgs<T>);

/// The canonical exp2 (see the module doc), one lane at a time.
#[inline(always)]
pub fn exp2_f32(t: f32) -> f32 {
    if t.is_nan() {
        return t;
    }
    if t < EXP2_MIN {
        return 0.0;
    }
    let r = t + SHIFTER;
    let n = r - SHIFTER;
    let f = t - n;
    let mut y = EXP2_POLY[0];
    for &c in &EXP2_POLY[1..] {
        y = fma_f32(y, f, c);
    }
    let ni = (r.to_bits() as i32).wrapping_sub(SHIFTER.to_bits() as i32);
    f32::from_bits((y.to_bits() as i32).wrapping_add(ni << 23) as u32)
}

/// `c = scale * log2(e)`, rounded once.
#[inline(always)]
pub fn scale_log2e(scale: f32) -> f32 {
    (scale as f64 * core::f64::consts::LOG2_E) as f32
}

/// Natural logarithm in f64 for finite `x > 0` (within 2 ulp; portable, so identical on
/// every tier). `ln(0) = -inf`, `ln(+inf) = +inf`, NaN and negatives give NaN.
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= 2f64.powi(60);
        e -= 60;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172.
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut s = 0.0;
    let mut k = 27.0;
    while k > 1.0 {
        s = (s + 1.0 / k) * z2;
        k -= 2.0;
    }
    let ln_m = 2.0 * z * (1.0 + s);
    e as f64 * core::f64::consts::LN_2 + ln_m
}

/// `exp(x)` in f64 for `x <= 0` (NaN for NaN, 0 below -745; within 2 ulp); portable.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let n = (x * core::f64::consts::LOG2_E + 6_755_399_441_055_744.0) - 6_755_399_441_055_744.0;
    // Cody-Waite: ln2 = hi + lo with hi exact in 32 bits.
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 13 on |r| <= 0.347: truncation below 1e-17.
    let mut p = 1.0;
    let mut k = 13.0;
    while k >= 1.0 {
        p = 1.0 + r * p / k;
        k -= 1.0;
    }
    let ni = n as i64;
    if ni < -1020 {
        p * f64::from_bits(((ni + 1023 + 60) as u64) << 52) * 2f64.powi(-60)
    } else {
        p * f64::from_bits(((ni + 1023) as u64) << 52)
    }
}

/// `x`, or the canonical quiet NaN (0x7fc00000) when `x` is a NaN: the tiers may reach
/// a NaN through differently ordered operations, which on x86 keep different operands'
/// payloads, so every NaN result is stored canonically to stay bit-identical.
#[inline(always)]
pub fn canon_nan(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(0x7fc0_0000)
    } else {
        x
    }
}

/// Rounds and stores `x` as the output type at `p` (element offset `e`); a NaN is
/// stored as the type's canonical quiet NaN (f32 0x7fc00000, f16 0x7e00, bf16 0x7fc0).
///
/// # Safety
/// `p` valid for element `e` of `t`.
#[inline(always)]
pub unsafe fn store_out(p: *mut u8, t: OutType, e: usize, x: f32) {
    let x = canon_nan(x);
    // SAFETY: the caller guarantees element e of type t is writable at p (unaligned
    // writes, since the safe API only checks alignment of the element type).
    unsafe {
        match t {
            OutType::F32 => (p as *mut f32).add(e).write_unaligned(x),
            OutType::F16 => (p as *mut u16)
                .add(e)
                .write_unaligned(f16::from_f32(x).to_bits()),
            OutType::BF16 => (p as *mut u16)
                .add(e)
                .write_unaligned(bf16::from_f32(x).to_bits()),
        }
    }
}

/// The phases of the canonical algorithm that each tier implements.
///
/// The score buffer `s` of a tile is key-major: the value of row `r` and key `j` lives
/// at `s[j * TILE_ROWS + r]` (so the online softmax runs across rows, with no
/// horizontal reductions). Visibility and nonzero-probability masks are per key, bit
/// `r` for row `r`.
pub(crate) trait Backend<T: Elem> {
    /// `s[j * TILE_ROWS + r] = dot(q row r, K row kbase + koff[j])` for `r < nrows` and
    /// at least every `j < nb`. `q` holds `nrows` packed f32 rows `dp` apart (zero past
    /// `d`); `s` points at the column of the run's first row, tile row `r0`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn scores(
        nrows: usize,
        r0: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
        scratch: *mut u8,
    );

    /// Called once per tile after the queries are packed (`nrows` rows at `q`, `dp`
    /// apart), with the tile's scratch space ([`SCRATCH_BYTES`]`(dp)` bytes, 64-byte
    /// aligned). The canonical tiers need nothing.
    #[inline(always)]
    unsafe fn prepare(_nrows: usize, _q: *const f32, _dp: usize, _scratch: *mut u8) {}

    /// Step 3 of the canonical algorithm for rows `r < nrows` and keys `j < nb` (dots
    /// in, `p` out): bit `r` of `vis[j]` is set when key `j` is visible to row `r`.
    /// Updates `m` and `l`, writes `alpha[r]` (1 for a row the block does not change)
    /// and `pm[j]` (bit `r` set when `p_rj != 0`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn softmax(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &mut [f32; TILE_ROWS],
        l: &mut [f32; TILE_ROWS],
        alpha: &mut [f32; TILE_ROWS],
        pm: &mut [u16; BK],
        scratch: *mut u8,
    );

    /// For the run of rows `r0 .. r0 + nrows`: `O_r = alpha_r * O_r`, then `O_r += p_rj
    /// v_j` (fused, in order of `j < nb`, only where bit `r` of `pm[j]` is set). `p`
    /// points at column `r0` of the score buffer, `alpha` at `alpha[r0]`, `o` at the
    /// run's first packed output row (rows `dp` apart).
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv(
        nrows: usize,
        r0: usize,
        p: *const f32,
        alpha: *const f32,
        pm: &[u16; BK],
        o: *mut f32,
        dp: usize,
        d: usize,
        vbase: *const T,
        voff: &[usize; BK],
        nb: usize,
        scratch: *mut u8,
    );

    /// `s[j][r] = exp2(c * s[j][r] - m[r]) * inv_l[r]` where bit `r` of `vis[j]` is set,
    /// `0` elsewhere, for `r < nrows`, `j < nb`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn probs(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    );

    /// A hint that `p` will be read soon (no effect on results).
    #[inline(always)]
    unsafe fn prefetch(_p: *const u8) {}
}

/// Walks a row's key sequence one block of up to `BK` K rows at a time.
struct KeyIter {
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
    unsafe fn next(&mut self, kidx: &mut [u32; BK]) -> (usize, bool) {
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

/// One tile: up to `TILE_ROWS` rows (query `qi[r]`, query head `hq[r]`).
#[derive(Clone, Copy)]
struct Tile {
    n: usize,
    qi: [usize; TILE_ROWS],
    hq: [usize; TILE_ROWS],
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

/// The key iterator of the shared set, or of block list `list`.
#[inline(always)]
unsafe fn key_iter<T>(a: &AttendArgs<T>, list: usize) -> KeyIter {
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
struct Block {
    kidx: [u32; BK],
    nb: usize,
    contiguous: bool,
}

/// Prefetches the K and V rows of a block for every run of the tile (into L2).
#[inline(always)]
unsafe fn prefetch_block<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, kvs: &[usize], b: &Block) {
    let bytes = a.d * core::mem::size_of::<T>();
    for &kv in kvs {
        for &k in &b.kidx[..b.nb] {
            let k = k as usize;
            // SAFETY: K and V row k of head kv exist (the contract); prefetches of valid
            // addresses have no effect on memory.
            unsafe {
                let kp = a.k.add(k * a.k_tok + kv * a.k_head) as *const u8;
                let vp = a.v.add(k * a.v_tok + kv * a.v_head) as *const u8;
                let mut o = 0;
                while o < bytes {
                    B::prefetch(kp.add(o));
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

/// Floats of workspace per tile: packed queries, output accumulators, scores, scratch.
#[inline(always)]
const fn tile_floats(dp: usize) -> usize {
    2 * TILE_ROWS * dp + TILE_ROWS * BK + (64 + BK / 2 * TILE_ROWS * 4 + 160 * dp) / 4
}

/// Sets up a tile: runs, packed queries, cleared output, positions.
#[inline(always)]
unsafe fn sub_init<T: Elem, B: Backend<T>>(a: &AttendArgs<T>, t: &Tile, ws: *mut f32) -> Sub {
    let d = a.d;
    let dp = pad32(d);
    let g = a.h_q / a.h_kv;
    let n = t.n;
    // SAFETY: each tile owns tile_floats(dp) floats of the workspace.
    let (qpack, o, s, scratch) = unsafe {
        (
            ws,
            ws.add(TILE_ROWS * dp),
            ws.add(2 * TILE_ROWS * dp),
            ws.add(2 * TILE_ROWS * dp + TILE_ROWS * BK) as *mut u8,
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
        // SAFETY: row (qi, hq) of Q holds d elements; the tile's rows hold dp floats.
        unsafe {
            let src = a.q.add(t.qi[r] * a.q_tok + t.hq[r] * a.q_head);
            let dst = qpack.add(r * dp);
            for e in d..dp {
                *dst.add(canon_pos::<T>(e)) = 0.0;
            }
            for e in 0..d {
                *dst.add(canon_pos::<T>(e)) = (*src.add(e)).to_f32();
            }
            core::ptr::write_bytes(o.add(r * dp), 0, dp);
        }
    }
    // SAFETY: the packed rows and the scratch are in place.
    unsafe { B::prepare(n, qpack, dp, scratch) };

    // Position bounds per row: visible when lo <= k_pos <= hi.
    if a.causal {
        for r in 0..n {
            // SAFETY: qi < n_q positions.
            let qp = unsafe { *a.q_pos.add(t.qi[r]) } as u64;
            sub.hi[r] = qp;
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
    let d = a.d;
    let dp = pad32(d);
    let c = scale_log2e(a.scale);
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
    unsafe {
        B::softmax(
            sub.t.n,
            s,
            &sub.vis,
            nb,
            c,
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
        let (pp, ap, op) = unsafe { (s.add(r0), sub.alpha.as_ptr().add(r0), sub.o.add(r0 * dp)) };
        unsafe {
            B::pv(
                r1 - r0,
                r0,
                pp,
                ap,
                &sub.pm,
                op,
                dp,
                d,
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
    let c = scale_log2e(a.scale);
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
        unsafe { B::probs(n, s, &sub.vis, nb, c, &sub.m, &inv_l) };
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
                    *mass.add(k) = acc;
                }
            }
        }
    }
}

/// Normalizes and stores a tile's rows (and log-sum-exps).
#[inline(always)]
unsafe fn sub_finish<T: Elem>(a: &AttendArgs<T>, sub: &Sub) {
    let d = a.d;
    let dp = pad32(d);
    let esz = a.out_type.size();
    for r in 0..sub.t.n {
        let (i, h) = (sub.t.qi[r], sub.t.hq[r]);
        let (m, l) = (sub.m[r], sub.l[r]);
        let empty = l == 0.0;
        // SAFETY: output row (i, h) holds d elements; lse (i, h) is in range.
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
    let dp = pad32(a.d);
    let ws = a.workspace as *mut f32;
    let mut subs: [core::mem::MaybeUninit<Sub>; SUPER] =
        [const { core::mem::MaybeUninit::uninit() }; SUPER];
    for (i, t) in ts.iter().enumerate() {
        subs[i].write(unsafe { sub_init::<T, B>(a, t, ws.add(i * tile_floats(dp))) });
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

/// `ln(2) * (m + log2(l))` in f64, rounded once.
#[inline(always)]
pub fn lse_of(m: f32, l: f32) -> f32 {
    (m as f64 * core::f64::consts::LN_2 + ln_f64(l as f64)) as f32
}

/// Offsets and per-key visibility masks of one block; false when no row sees any key.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn block_setup<T>(
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

/// The canonical online-softmax step for one row: `s` holds the row's dots for the
/// block's keys (`BK`, `-inf`-masked by `vis` bits), returns `(alpha, nonzero bits)`.
#[inline(always)]
pub(crate) fn softmax_row(
    s: &mut [f32; BK],
    vis: u64,
    c: f32,
    m: &mut f32,
    l: &mut f32,
) -> (f32, u64) {
    let mut mb = f32::NEG_INFINITY;
    let mut nan = false;
    for (j, x) in s.iter_mut().enumerate() {
        *x = if vis >> j & 1 == 1 {
            *x * c
        } else {
            f32::NEG_INFINITY
        };
        nan |= x.is_nan();
        if *x > mb {
            mb = *x;
        }
    }
    let mn = if nan || m.is_nan() {
        f32::NAN
    } else if mb > *m {
        mb
    } else {
        *m
    };
    if mn == f32::NEG_INFINITY {
        s.iter_mut().for_each(|x| *x = 0.0);
        return (1.0, 0);
    }
    let alpha = exp2_f32(*m - mn);
    let mut pm = 0u64;
    for (j, x) in s.iter_mut().enumerate() {
        *x = exp2_f32(*x - mn);
        pm |= ((*x != 0.0) as u64) << j;
    }
    let mut lanes = [0f32; 16];
    for (i, lane) in lanes.iter_mut().enumerate() {
        *lane = ((s[i] + s[16 + i]) + s[32 + i]) + s[48 + i];
    }
    *l = alpha * *l + reduce16(&lanes);
    *m = mn;
    (alpha, pm)
}

// ------------------------------------------------------------------------------------
// Merge of partial results.

/// Arguments of the merge kernel: `n_parts` partial results of the same rows over
/// disjoint key chunks, each normalized (`O_i`) with its log-sum-exp (`lse_i`).
///
/// Canonical: `M = max_i lse_i`. A NaN `lse_i` makes the row NaN; `M = -inf` gives
/// zeros and `-inf`. Else `w_i = exp(lse_i - M)` and `W = sum_i w_i` in f64 (in part
/// order), `omega_i = (w_i / W) as f32`, `out_e = fma(omega_i, O_ie, out_e)` over the parts
/// in order with `omega_i != 0`, from +0; `lse = (M + ln W) as f32`.
#[derive(Clone, Copy, Debug)]
pub struct MergeArgs {
    pub n_parts: usize,
    pub n_rows: usize,
    pub d: usize,
    /// Element `e` of row `r` of part `i` at `o[i * part_stride + r * row_stride + e]`.
    pub o: *const f32,
    pub part_stride: usize,
    pub row_stride: usize,
    /// `lse[i * lse_part_stride + r]`.
    pub lse: *const f32,
    pub lse_part_stride: usize,
    pub out: *mut u8,
    pub out_type: OutType,
    pub out_row_stride: usize,
    /// Null, or `n_rows` floats.
    pub out_lse: *mut f32,
    /// `d` floats of scratch (any alignment).
    pub workspace: *mut f32,
}

/// `unsafe fn(&MergeArgs)`: see [`MergeArgs`].
pub type MergeFn = unsafe fn(args: &MergeArgs);

/// `y[e] = fma(a, x[e], y[e])` for `e < n` (the only tier-specific part of the merge).
pub(crate) trait Axpy {
    unsafe fn axpy(n: usize, a: f32, x: *const f32, y: *mut f32);
}

/// The merge driver shared by every tier.
///
/// # Safety
/// See [`MergeArgs`]: every described element is valid; outputs disjoint from inputs.
#[inline(always)]
pub(crate) unsafe fn merge<B: Axpy>(a: &MergeArgs) {
    let esz = a.out_type.size();
    for r in 0..a.n_rows {
        // SAFETY (block): the contract makes every described element valid.
        unsafe {
            let mut mx = f32::NEG_INFINITY;
            let mut nan = false;
            for i in 0..a.n_parts {
                let x = *a.lse.add(i * a.lse_part_stride + r);
                nan |= x.is_nan();
                if x > mx {
                    mx = x;
                }
            }
            let acc = a.workspace;
            core::ptr::write_bytes(acc, 0, a.d);
            let lse = if nan {
                for e in 0..a.d {
                    *acc.add(e) = f32::NAN;
                }
                f32::NAN
            } else if mx == f32::NEG_INFINITY {
                f32::NEG_INFINITY
            } else {
                let mut w_sum = 0f64;
                for i in 0..a.n_parts {
                    w_sum += exp_f64(*a.lse.add(i * a.lse_part_stride + r) as f64 - mx as f64);
                }
                for i in 0..a.n_parts {
                    let w = exp_f64(*a.lse.add(i * a.lse_part_stride + r) as f64 - mx as f64);
                    let omega = (w / w_sum) as f32;
                    if omega != 0.0 {
                        B::axpy(
                            a.d,
                            omega,
                            a.o.add(i * a.part_stride + r * a.row_stride),
                            acc,
                        );
                    }
                }
                (mx as f64 + ln_f64(w_sum)) as f32
            };
            let dst = a.out.add(r * a.out_row_stride * esz);
            for e in 0..a.d {
                store_out(dst, a.out_type, e, *acc.add(e));
            }
            if !a.out_lse.is_null() {
                *a.out_lse.add(r) = canon_nan(lse);
            }
        }
    }
}

// ------------------------------------------------------------------------------------
// Quest: key-block summaries and query bounds.

/// Arguments of the key-block summary: for key blocks `b0 .. b1` of `block` keys of K
/// `[n_k, H_kv, d]` and every KV head `g`, the elementwise minimum and maximum over the
/// block's keys (`b * block .. min((b + 1) * block, n_k)`, never empty), written as f32
/// to `kmin/kmax[(b * h_kv + g) * d + e]` (layout `[n_blocks, H_kv, d]`, like K). A
/// NaN element makes both NaN. Exact, so identical on every tier.
#[derive(Clone, Copy, Debug)]
pub struct SummaryArgs<T> {
    pub k: *const T,
    pub n_k: usize,
    pub h_kv: usize,
    pub d: usize,
    pub k_tok: usize,
    pub k_head: usize,
    pub block: usize,
    pub b0: usize,
    pub b1: usize,
    pub kmin: *mut f32,
    pub kmax: *mut f32,
}

/// `unsafe fn(&SummaryArgs<T>)`: see [`SummaryArgs`].
pub type SummaryFn<T> = unsafe fn(args: &SummaryArgs<T>);

/// Arguments of the Quest bound: for every query row `(i, h)` and key block `b <
/// n_blocks` of its KV head `g = h / (H_q / H_kv)`, an upper bound of `q . k` over the
/// block's keys, written to `out[(i * h_q + h) * out_stride + b]`.
///
/// Canonical: `t_e = max(q_e * mn_e, q_e * mx_e)` (products rounded; `max(a, b) = a > b ?
/// a : b`), summed in 16 lanes (lane `e % 16`, in order, from +0) and by the fixed tree,
/// giving `s`; likewise `a` from `|t_e|`; the bound is `s + cm * a` (product, then sum,
/// each rounded) with `cm = (ceil(d / 16) + 6) * 2^-23`, which covers every rounding
/// error: the bound is never below the exact maximum of `q . k` over the block. A NaN
/// bound is the canonical quiet NaN.
#[derive(Clone, Copy, Debug)]
pub struct BoundArgs<T> {
    pub q: *const T,
    pub n_q: usize,
    pub h_q: usize,
    pub d: usize,
    pub q_tok: usize,
    pub q_head: usize,
    /// `[n_blocks, H_kv, d]` as written by the summary.
    pub kmin: *const f32,
    pub kmax: *const f32,
    pub n_blocks: usize,
    pub h_kv: usize,
    pub out: *mut f32,
    pub out_stride: usize,
    /// `pad16(d)` floats of scratch, 64-byte aligned.
    pub workspace: *mut f32,
}

/// `unsafe fn(&BoundArgs<T>)`: see [`BoundArgs`].
pub type BoundFn<T> = unsafe fn(args: &BoundArgs<T>);

/// The margin factor of the bound for head dimension `d`.
#[inline(always)]
pub fn bound_margin(d: usize) -> f32 {
    (d.div_ceil(16) + 6) as f32 * f32::from_bits(0x3400_0000) // 2^-23
}

/// Per-tier parts of the summary and the bound.
pub(crate) trait QuestBackend<T: Elem> {
    /// Min/max of `n` rows (`ptr + j * stride`, `j < n >= 1`) of `d` elements.
    unsafe fn minmax(p: *const T, stride: usize, n: usize, d: usize, mn: *mut f32, mx: *mut f32);
    /// Bounds of one packed query row `q` (`pad16(d)` floats, zero past `d`) against
    /// `n_blocks` summaries `stride` floats apart, to `out[b]`.
    unsafe fn bound_row(
        q: *const f32,
        d: usize,
        mn: *const f32,
        mx: *const f32,
        stride: usize,
        n_blocks: usize,
        out: *mut f32,
    );
}

/// The summary driver.
///
/// # Safety
/// See [`SummaryArgs`].
#[inline(always)]
pub(crate) unsafe fn summary<T: Elem, B: QuestBackend<T>>(a: &SummaryArgs<T>) {
    for b in a.b0..a.b1 {
        let k0 = b * a.block;
        let n = core::cmp::min(a.block, a.n_k - k0);
        for g in 0..a.h_kv {
            // SAFETY: rows k0 .. k0 + n of head g exist; output (b, g) holds d floats.
            unsafe {
                B::minmax(
                    a.k.add(k0 * a.k_tok + g * a.k_head),
                    a.k_tok,
                    n,
                    a.d,
                    a.kmin.add((b * a.h_kv + g) * a.d),
                    a.kmax.add((b * a.h_kv + g) * a.d),
                );
            }
        }
    }
}

/// The bound driver.
///
/// # Safety
/// See [`BoundArgs`].
#[inline(always)]
pub(crate) unsafe fn bound<T: Elem, B: QuestBackend<T>>(a: &BoundArgs<T>) {
    let grp = a.h_q / a.h_kv;
    let d16 = (a.d + 15) & !15;
    for i in 0..a.n_q {
        for h in 0..a.h_q {
            let g = h / grp;
            // SAFETY: row (i, h) holds d elements; the workspace d16 floats; the
            // summaries n_blocks * h_kv * d floats; the output row n_blocks floats.
            unsafe {
                let src = a.q.add(i * a.q_tok + h * a.q_head);
                for e in 0..d16 {
                    *a.workspace.add(e) = if e < a.d { (*src.add(e)).to_f32() } else { 0.0 };
                }
                let out = a.out.add((i * a.h_q + h) * a.out_stride);
                B::bound_row(
                    a.workspace,
                    a.d,
                    a.kmin.add(g * a.d),
                    a.kmax.add(g * a.d),
                    a.h_kv * a.d,
                    a.n_blocks,
                    out,
                );
                // A NaN bound would carry an operand's payload: canonical.
                for b in 0..a.n_blocks {
                    *out.add(b) = canon_nan(*out.add(b));
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------
// Registries.

/// Every f32 attention variant compiled for this target, scalar first.
pub static ATTEND_F32: &[KernelInfo<AttendFn<f32>>] = &[
    crate::kernel!(attend::scalar::f32_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f32_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f32_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f32_fma16_b64),
];

/// Every f16 attention variant compiled for this target, scalar first.
pub static ATTEND_F16: &[KernelInfo<AttendFn<f16>>] = &[
    crate::kernel!(attend::scalar::f16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f16_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f16_fma16_b64),
];

/// Every bf16 attention variant compiled for this target, scalar first.
pub static ATTEND_BF16: &[KernelInfo<AttendFn<bf16>>] = &[
    crate::kernel!(attend::scalar::bf16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::bf16_fma16_b64),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::bf16_fma16_b64),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::bf16_fma16_b64),
];

/// The opt-in bf16 attention built on AVX512-BF16 dot products (`vdpbf16ps`): an
/// avx512-level kernel that also needs the `avx512bf16` feature (check it at run time,
/// e.g. `is_x86_feature_detected!("avx512bf16")`, before calling). Not bit-identical to
/// [`ATTEND_BF16`]: scores are summed in pairs of dimensions in order, and on blocks
/// where every row has a nonzero probability for every key, probabilities are rounded
/// to bf16 for P.V (elsewhere the canonical f32 P.V runs, so masked keys still
/// contribute nothing).
#[cfg(target_arch = "x86_64")]
pub static ATTEND_BF16_DPBF16: &[KernelInfo<AttendFn<bf16>>] =
    &[crate::kernel!(attend::avx512::bf16_dpbf16_b64)];

/// Every merge variant compiled for this target, scalar first.
pub static MERGE_F32: &[KernelInfo<MergeFn>] = &[
    crate::kernel!(attend::scalar::f32_merge_u1),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx2::f32_merge_u8),
    #[cfg(target_arch = "x86_64")]
    crate::kernel!(attend::avx512::f32_merge_u16),
    #[cfg(target_arch = "aarch64")]
    crate::kernel!(attend::neon::f32_merge_u4),
];

macro_rules! quest_registries {
    ($sum:ident, $bnd:ident, $t:ty, $s_scalar:ident, $b_scalar:ident, $s:ident, $b:ident) => {
        /// Every key-block summary variant of this element type, scalar first.
        pub static $sum: &[KernelInfo<SummaryFn<$t>>] = &[
            crate::kernel!(attend::scalar::$s_scalar),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx2::$s),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx512::$s),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(attend::neon::$s),
        ];
        /// Every Quest bound variant of this element type, scalar first.
        pub static $bnd: &[KernelInfo<BoundFn<$t>>] = &[
            crate::kernel!(attend::scalar::$b_scalar),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx2::$b),
            #[cfg(target_arch = "x86_64")]
            crate::kernel!(attend::avx512::$b),
            #[cfg(target_arch = "aarch64")]
            crate::kernel!(attend::neon::$b),
        ];
    };
}
quest_registries!(
    SUMMARY_F32,
    BOUND_F32,
    f32,
    f32_summary_u1,
    f32_bound_u1,
    f32_summary_v16,
    f32_bound_v16
);
quest_registries!(
    SUMMARY_F16,
    BOUND_F16,
    f16,
    f16_summary_u1,
    f16_bound_u1,
    f16_summary_v16,
    f16_bound_v16
);
quest_registries!(
    SUMMARY_BF16,
    BOUND_BF16,
    bf16,
    bf16_summary_u1,
    bf16_bound_u1,
    bf16_summary_v16,
    bf16_bound_v16
);
