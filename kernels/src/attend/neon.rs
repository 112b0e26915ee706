//! NEON attention: the 16 canonical lanes of a dot product live in four q registers
//! (lanes 0..4, 4..8, 8..12, 12..16).
//!
//! Scores: register tiles of 2 rows x 2 keys (1 x 4 for a single row), each accumulator
//! reduced by the canonical tree. P.V: tiles of 2 rows x 32 output elements, selects
//! where a row has a zero probability. Maxima and minima by compare-and-select, with the
//! x86 `maxps` semantics (`a > b ? a : b`), so NaNs behave as on the other tiers.

use super::{
    bound, merge, summary, AttendArgs, Axpy, Backend, BoundArgs, Elem, MergeArgs, QuestBackend,
    SummaryArgs, BK, EXP2_MIN, EXP2_POLY, SHIFTER, TILE_ROWS,
};
use core::arch::aarch64::*;
use half::{bf16, f16};

/// The neon tier.
pub(crate) struct Neon;

/// 16 canonical lanes.
type V = [float32x4_t; 4];

/// Exact f16 -> f32 of four lanes (see the score module).
#[inline(always)]
unsafe fn f16x4_to_f32(x: uint16x4_t) -> float32x4_t {
    unsafe {
        let x = vmovl_u16(x);
        let em = vshlq_n_u32::<13>(vandq_u32(x, vdupq_n_u32(0x7fff)));
        let scaled = vreinterpretq_u32_f32(vmulq_f32(
            vreinterpretq_f32_u32(em),
            vdupq_n_f32(f32::from_bits(0x7780_0000)), // 2^112
        ));
        let special = vceqq_u32(vandq_u32(x, vdupq_n_u32(0x7c00)), vdupq_n_u32(0x7c00));
        let infnan = vorrq_u32(em, vdupq_n_u32(0x7f80_0000));
        let mag = vbslq_u32(special, infnan, scaled);
        let sign = vshlq_n_u32::<16>(vandq_u32(x, vdupq_n_u32(0x8000)));
        vreinterpretq_f32_u32(vorrq_u32(mag, sign))
    }
}

/// Copies the first `k` elements at `p` into a zero-padded buffer of `N`.
#[inline(always)]
unsafe fn padded<T: Copy + Default, const N: usize>(p: *const T, k: usize) -> [T; N] {
    let mut b = [T::default(); N];
    // SAFETY: k < N elements are valid at p.
    unsafe { core::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), k) };
    b
}

/// Loads of 16 canonical lanes.
pub(crate) trait LNeon: Elem {
    /// Half `h` of the 32-element chunk at `p` whose first `k` elements are valid
    /// (`k >= 32`: all); zeros past them.
    /// # Safety
    /// `p` valid for `min(k, 32)` elements.
    unsafe fn half(p: *const Self, h: usize, k: usize) -> V;
    /// Elements `0..4` in order (summaries).
    /// # Safety
    /// `p` valid for 4 elements.
    unsafe fn seq4(p: *const Self) -> float32x4_t;
}

impl LNeon for f32 {
    #[inline(always)]
    unsafe fn half(p: *const f32, h: usize, k: usize) -> V {
        unsafe {
            let mut out = [vdupq_n_f32(0.0); 4];
            let at = 16 * h;
            if k >= at + 16 {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = vld1q_f32(p.add(at + 4 * i));
                }
            } else if k > at {
                let b = padded::<f32, 16>(p.add(at), k - at);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = vld1q_f32(b.as_ptr().add(4 * i));
                }
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn seq4(p: *const f32) -> float32x4_t {
        unsafe { vld1q_f32(p) }
    }
}

impl LNeon for f16 {
    #[inline(always)]
    unsafe fn half(p: *const f16, h: usize, k: usize) -> V {
        unsafe {
            let at = 16 * h;
            let b;
            let src = if k >= at + 16 {
                p.add(at) as *const u16
            } else if k > at {
                b = padded::<f16, 16>(p.add(at), k - at);
                b.as_ptr() as *const u16
            } else {
                return [vdupq_n_f32(0.0); 4];
            };
            let x = vld1q_u16(src);
            let y = vld1q_u16(src.add(8));
            [
                f16x4_to_f32(vget_low_u16(x)),
                f16x4_to_f32(vget_high_u16(x)),
                f16x4_to_f32(vget_low_u16(y)),
                f16x4_to_f32(vget_high_u16(y)),
            ]
        }
    }
    #[inline(always)]
    unsafe fn seq4(p: *const f16) -> float32x4_t {
        unsafe { f16x4_to_f32(vld1_u16(p as *const u16)) }
    }
}

impl LNeon for bf16 {
    #[inline(always)]
    unsafe fn half(p: *const bf16, h: usize, k: usize) -> V {
        unsafe {
            let b;
            let src = if k >= 32 {
                p as *const u16
            } else {
                b = padded::<bf16, 32>(p, k);
                b.as_ptr() as *const u16
            };
            let mut out = [vdupq_n_f32(0.0); 4];
            for (i, o) in out.iter_mut().enumerate() {
                let x = vreinterpretq_u32_u16(vld1q_u16(src.add(8 * i)));
                *o = vreinterpretq_f32_u32(if h == 0 {
                    vandq_u32(x, vdupq_n_u32(0xffff_0000))
                } else {
                    vshlq_n_u32::<16>(x)
                });
            }
            out
        }
    }
    #[inline(always)]
    unsafe fn seq4(p: *const bf16) -> float32x4_t {
        unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16))) }
    }
}

#[inline(always)]
unsafe fn fma(a: V, b: V, c: V) -> V {
    unsafe {
        [
            vfmaq_f32(c[0], a[0], b[0]),
            vfmaq_f32(c[1], a[1], b[1]),
            vfmaq_f32(c[2], a[2], b[2]),
            vfmaq_f32(c[3], a[3], b[3]),
        ]
    }
}

#[inline(always)]
unsafe fn loadv(p: *const f32) -> V {
    unsafe {
        [
            vld1q_f32(p),
            vld1q_f32(p.add(4)),
            vld1q_f32(p.add(8)),
            vld1q_f32(p.add(12)),
        ]
    }
}

#[inline(always)]
unsafe fn storev(p: *mut f32, v: V) {
    unsafe {
        for (i, x) in v.iter().enumerate() {
            vst1q_f32(p.add(4 * i), *x);
        }
    }
}

/// The canonical tree of 16 lanes.
#[inline(always)]
unsafe fn hsum(v: V) -> f32 {
    unsafe {
        let s8lo = vaddq_f32(v[0], v[2]);
        let s8hi = vaddq_f32(v[1], v[3]);
        let s4 = vaddq_f32(s8lo, s8hi);
        let s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
        vget_lane_f32::<0>(s2) + vget_lane_f32::<1>(s2)
    }
}

/// `a > b ? a : b` lanewise (the x86 `maxps`).
#[inline(always)]
unsafe fn maxx(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    unsafe { vbslq_f32(vcgtq_f32(a, b), a, b) }
}

/// `a < b ? a : b` lanewise (the x86 `minps`).
#[inline(always)]
unsafe fn minx(a: float32x4_t, b: float32x4_t) -> float32x4_t {
    unsafe { vbslq_f32(vcltq_f32(a, b), a, b) }
}

/// The canonical exp2 of 4 lanes.
#[inline(always)]
unsafe fn exp2v(t: float32x4_t) -> float32x4_t {
    unsafe {
        let sh = vdupq_n_f32(SHIFTER);
        let r = vaddq_f32(t, sh);
        let n = vsubq_f32(r, sh);
        let f = vsubq_f32(t, n);
        let mut y = vdupq_n_f32(EXP2_POLY[0]);
        for &c in &EXP2_POLY[1..] {
            y = vfmaq_f32(vdupq_n_f32(c), y, f);
        }
        let ni = vshlq_n_s32::<23>(vsubq_s32(
            vreinterpretq_s32_f32(r),
            vreinterpretq_s32_f32(sh),
        ));
        let res = vreinterpretq_f32_s32(vaddq_s32(vreinterpretq_s32_f32(y), ni));
        let under = vcltq_f32(t, vdupq_n_f32(EXP2_MIN));
        let res = vbslq_f32(under, vdupq_n_f32(0.0), res);
        let ord = vceqq_f32(t, t);
        vbslq_f32(ord, res, t)
    }
}

/// Lane masks of 4 bits.
#[inline(always)]
unsafe fn bits4(b: u64) -> uint32x4_t {
    unsafe {
        let sel: [u32; 4] = [1, 2, 4, 8];
        vtstq_u32(vdupq_n_u32((b & 0xf) as u32), vld1q_u32(sel.as_ptr()))
    }
}

/// The 4 bits of a lane mask.
#[inline(always)]
unsafe fn movemask(m: uint32x4_t) -> u64 {
    unsafe {
        let sel: [u32; 4] = [1, 2, 4, 8];
        vaddvq_u32(vandq_u32(m, vld1q_u32(sel.as_ptr()))) as u64
    }
}

/// Scores of `R` rows x `4 / R` keys from key `j0` into the key-major score buffer.
#[inline(always)]
unsafe fn s_tile<T: LNeon, const R: usize>(
    q: *const f32,
    dp: usize,
    d: usize,
    kbase: *const T,
    koff: &[usize; BK],
    j0: usize,
    s: *mut f32,
) {
    unsafe {
        let nk = 4 / R;
        let kp: [*const T; 4] = core::array::from_fn(|c| kbase.add(koff[j0 + c % nk]));
        let z = [vdupq_n_f32(0.0); 4];
        let mut acc = [z; 4];
        let mut ch = 0;
        while ch < d {
            let k = d - ch;
            for h in 0..2 {
                let mut qv = [z; R];
                for (r, x) in qv.iter_mut().enumerate() {
                    *x = loadv(q.add(r * dp + ch + 16 * h));
                }
                for c in 0..nk {
                    let kv = T::half(kp[c].add(ch), h, k);
                    for r in 0..R {
                        acc[c * R + r] = fma(qv[r], kv, acc[c * R + r]);
                    }
                }
            }
            ch += 32;
        }
        for c in 0..nk {
            for r in 0..R {
                *s.add((j0 + c) * TILE_ROWS + r) = hsum(acc[c * R + r]);
            }
        }
    }
}

/// `((p_i + p_(16+i)) + p_(32+i)) + p_(48+i)` over the keys `< nb` of 4 rows.
#[inline(always)]
unsafe fn lane_sum(s: *const f32, i: usize, nb: usize) -> float32x4_t {
    unsafe {
        let mut acc = vdupq_n_f32(0.0);
        let mut j = i;
        while j < nb {
            let pj = vld1q_f32(s.add(j * TILE_ROWS));
            acc = if j == i { pj } else { vaddq_f32(acc, pj) };
            j += 16;
        }
        acc
    }
}

impl<T: LNeon> Backend<T> for Neon {
    #[inline(always)]
    unsafe fn scores(
        nrows: usize,
        _r0: usize,
        q: *const f32,
        dp: usize,
        d: usize,
        kbase: *const T,
        koff: &[usize; BK],
        nb: usize,
        s: *mut f32,
        _scratch: *mut u8,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of q and columns of s exist; keys j0 + 4 <= BK.
        unsafe {
            while r + 4 <= nrows {
                for j in 0..nb {
                    s_tile::<T, 4>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                }
                r += 4;
            }
            if r + 2 <= nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 2>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 2;
                }
                r += 2;
            }
            if r < nrows {
                let mut j = 0;
                while j < nb {
                    s_tile::<T, 1>(q.add(r * dp), dp, d, kbase, koff, j, s.add(r));
                    j += 4;
                }
            }
        }
    }

    #[inline(always)]
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
        _scratch: *mut u8,
    ) {
        // SAFETY (block): BK x TILE_ROWS floats at s; the arrays hold TILE_ROWS.
        unsafe {
            let cv = vdupq_n_f32(c);
            let ninf = vdupq_n_f32(f32::NEG_INFINITY);
            let zero = vdupq_n_f32(0.0);
            let lanes: [u32; 4] = [0, 1, 2, 3];
            pm.iter_mut().for_each(|b| *b = 0);
            for quarter in 0..4 {
                let h4 = 4 * quarter;
                if h4 >= nrows {
                    break;
                }
                let sh = s.add(h4);
                let rows = vcltq_u32(vld1q_u32(lanes.as_ptr()), vdupq_n_u32((nrows - h4) as u32));
                let mut mx = ninf;
                let mut nan = vdupq_n_u32(0);
                for j in 0..nb {
                    let k = bits4((vis[j] >> h4) as u64);
                    let x = vbslq_f32(k, vmulq_f32(vld1q_f32(sh.add(j * TILE_ROWS)), cv), ninf);
                    vst1q_f32(sh.add(j * TILE_ROWS), x);
                    let ord = vceqq_f32(x, x);
                    nan = vorrq_u32(nan, vmvnq_u32(ord));
                    mx = vbslq_f32(ord, maxx(x, mx), mx);
                }
                let mbv = vbslq_f32(nan, vdupq_n_f32(f32::NAN), mx);
                let mo = vld1q_f32(m.as_ptr().add(h4));
                let mn = maxx(mbv, mo);
                let mn = vbslq_f32(vceqq_f32(mbv, mbv), mn, mbv);
                let mn = vbslq_f32(vceqq_f32(mo, mo), mn, mo);
                let act = vandq_u32(vmvnq_u32(vceqq_f32(mn, ninf)), rows);
                let al = vbslq_f32(act, exp2v(vsubq_f32(mo, mn)), vdupq_n_f32(1.0));
                vst1q_f32(alpha.as_mut_ptr().add(h4), al);
                vst1q_f32(m.as_mut_ptr().add(h4), vbslq_f32(act, mn, mo));
                for j in 0..nb {
                    let x = vld1q_f32(sh.add(j * TILE_ROWS));
                    let p = vbslq_f32(act, exp2v(vsubq_f32(x, mn)), zero);
                    vst1q_f32(sh.add(j * TILE_ROWS), p);
                    let nz = vandq_u32(vmvnq_u32(vceqq_f32(p, zero)), act);
                    pm[j] |= (movemask(nz) as u16) << h4;
                }
                let mut s8 = [zero; 8];
                for (i, x) in s8.iter_mut().enumerate() {
                    *x = vaddq_f32(lane_sum(sh, i, nb), lane_sum(sh, i + 8, nb));
                }
                let mut s4 = [zero; 4];
                for (i, x) in s4.iter_mut().enumerate() {
                    *x = vaddq_f32(s8[i], s8[i + 4]);
                }
                let s2 = [vaddq_f32(s4[0], s4[2]), vaddq_f32(s4[1], s4[3])];
                let psum = vaddq_f32(s2[0], s2[1]);
                let lo = vld1q_f32(l.as_ptr().add(h4));
                let lv = vaddq_f32(vmulq_f32(al, lo), psum);
                vst1q_f32(l.as_mut_ptr().add(h4), vbslq_f32(act, lv, lo));
            }
        }
    }

    #[inline(always)]
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
        _scratch: *mut u8,
    ) {
        let mut r = 0;
        // SAFETY (all calls): rows r.. of every buffer exist.
        unsafe {
            while r + 2 <= nrows {
                pv_rows::<T, 2>(
                    r0 + r,
                    p.add(r),
                    alpha.add(r),
                    pm,
                    o.add(r * dp),
                    dp,
                    d,
                    vbase,
                    voff,
                    nb,
                );
                r += 2;
            }
            if r < nrows {
                pv_rows::<T, 1>(
                    r0 + r,
                    p.add(r),
                    alpha.add(r),
                    pm,
                    o.add(r * dp),
                    dp,
                    d,
                    vbase,
                    voff,
                    nb,
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn probs(
        nrows: usize,
        s: *mut f32,
        vis: &[u16; BK],
        nb: usize,
        c: f32,
        m: &[f32; TILE_ROWS],
        inv_l: &[f32; TILE_ROWS],
    ) {
        // SAFETY: BK x TILE_ROWS floats.
        unsafe {
            let cv = vdupq_n_f32(c);
            for quarter in 0..4 {
                let h4 = 4 * quarter;
                if h4 >= nrows {
                    break;
                }
                let (mv, iv) = (
                    vld1q_f32(m.as_ptr().add(h4)),
                    vld1q_f32(inv_l.as_ptr().add(h4)),
                );
                for j in 0..nb {
                    let k = bits4((vis[j] >> h4) as u64);
                    let at = s.add(j * TILE_ROWS + h4);
                    let x = vmulq_f32(vld1q_f32(at), cv);
                    let p = vmulq_f32(exp2v(vsubq_f32(x, mv)), iv);
                    vst1q_f32(at, vbslq_f32(k, p, vdupq_n_f32(0.0)));
                }
            }
        }
    }
}

/// `O = alpha O + sum p v` for `R` rows, one chunk of 32 output elements at a time.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pv_rows<T: LNeon, const R: usize>(
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
) {
    unsafe {
        let rows = ((1u32 << R) - 1) as u16;
        let masked = pm[..nb].iter().any(|&b| (b >> r0) & rows != rows);
        let mut ch = 0;
        while ch < d {
            let k = d - ch;
            let z = [vdupq_n_f32(0.0); 4];
            let mut acc = [[z; 2]; R];
            for r in 0..R {
                let a = vdupq_n_f32(*alpha.add(r));
                for h in 0..2 {
                    let x = loadv(o.add(r * dp + ch + 16 * h));
                    for i in 0..4 {
                        acc[r][h][i] = vmulq_f32(a, x[i]);
                    }
                }
            }
            for j in 0..nb {
                let vp = vbase.add(voff[j] + ch);
                let vv = [T::half(vp, 0, k), T::half(vp, 1, k)];
                let pr = p.add(j * TILE_ROWS);
                for r in 0..R {
                    let pb = [vdupq_n_f32(*pr.add(r)); 4];
                    if masked {
                        let bit = ((pm[j] >> (r0 + r)) & 1) as u32;
                        let mk = vdupq_n_u32(bit.wrapping_neg());
                        for h in 0..2 {
                            let f = fma(pb, vv[h], acc[r][h]);
                            for i in 0..4 {
                                acc[r][h][i] = vbslq_f32(mk, f[i], acc[r][h][i]);
                            }
                        }
                    } else {
                        for h in 0..2 {
                            acc[r][h] = fma(pb, vv[h], acc[r][h]);
                        }
                    }
                }
            }
            for r in 0..R {
                for h in 0..2 {
                    storev(o.add(r * dp + ch + 16 * h), acc[r][h]);
                }
            }
            ch += 32;
        }
    }
}

impl Axpy for Neon {
    #[inline(always)]
    unsafe fn axpy(n: usize, a: f32, x: *const f32, y: *mut f32) {
        // SAFETY: n elements at x and y.
        unsafe {
            let av = vdupq_n_f32(a);
            let mut e = 0;
            while e + 4 <= n {
                vst1q_f32(
                    y.add(e),
                    vfmaq_f32(vld1q_f32(y.add(e)), av, vld1q_f32(x.add(e))),
                );
                e += 4;
            }
            while e < n {
                let r = vfma_f32(vdup_n_f32(*y.add(e)), vdup_n_f32(a), vdup_n_f32(*x.add(e)));
                *y.add(e) = vget_lane_f32::<0>(r);
                e += 1;
            }
        }
    }
}

impl<T: LNeon> QuestBackend<T> for Neon {
    #[inline(always)]
    unsafe fn minmax(p: *const T, stride: usize, n: usize, d: usize, mn: *mut f32, mx: *mut f32) {
        // SAFETY: n rows of d elements; d outputs.
        unsafe {
            let mut e = 0;
            while e + 4 <= d {
                let mut lo = vdupq_n_f32(f32::INFINITY);
                let mut hi = vdupq_n_f32(f32::NEG_INFINITY);
                let mut nan = vdupq_n_u32(0);
                for j in 0..n {
                    let x = T::seq4(p.add(j * stride + e));
                    nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(x, x)));
                    lo = minx(x, lo);
                    hi = maxx(x, hi);
                }
                let qn = vdupq_n_f32(f32::NAN);
                vst1q_f32(mn.add(e), vbslq_f32(nan, qn, lo));
                vst1q_f32(mx.add(e), vbslq_f32(nan, qn, hi));
                e += 4;
            }
            if e < d {
                <super::scalar::Scalar as QuestBackend<T>>::minmax(
                    p.add(e),
                    stride,
                    n,
                    d - e,
                    mn.add(e),
                    mx.add(e),
                );
            }
        }
    }

    #[inline(always)]
    unsafe fn bound_row(
        q: *const f32,
        d: usize,
        mn: *const f32,
        mx: *const f32,
        stride: usize,
        n_blocks: usize,
        out: *mut f32,
    ) {
        let cm = super::bound_margin(d);
        // SAFETY: q holds pad16(d) floats; summaries d floats each; n_blocks outputs.
        unsafe {
            for b in 0..n_blocks {
                let z = vdupq_n_f32(0.0);
                let (mut s, mut a) = ([z; 4], [z; 4]);
                let mut e = 0;
                while e < d {
                    for i in 0..4 {
                        let at = e + 4 * i;
                        let (lo, hi) = if at + 4 <= d {
                            (
                                vld1q_f32(mn.add(b * stride + at)),
                                vld1q_f32(mx.add(b * stride + at)),
                            )
                        } else if at < d {
                            let bl = padded::<f32, 4>(mn.add(b * stride + at), d - at);
                            let bh = padded::<f32, 4>(mx.add(b * stride + at), d - at);
                            (vld1q_f32(bl.as_ptr()), vld1q_f32(bh.as_ptr()))
                        } else {
                            (z, z)
                        };
                        let qv = vld1q_f32(q.add(at));
                        let t = maxx(vmulq_f32(qv, lo), vmulq_f32(qv, hi));
                        s[i] = vaddq_f32(s[i], t);
                        a[i] = vaddq_f32(a[i], vabsq_f32(t));
                    }
                    e += 16;
                }
                *out.add(b) = hsum(s) + cm * hsum(a);
            }
        }
    }
}

macro_rules! entries {
    ($t:ty, $attend:ident, $summary:ident, $bound:ident) => {
        /// # Safety
        /// The CPU supports the neon tier; see the module contract.
        #[target_feature(enable = "neon")]
        pub unsafe fn $attend(a: &AttendArgs<$t>) {
            unsafe { super::attend::<$t, Neon>(a) }
        }
        /// # Safety
        /// The CPU supports the neon tier; see [`SummaryArgs`].
        #[target_feature(enable = "neon")]
        pub unsafe fn $summary(a: &SummaryArgs<$t>) {
            unsafe { summary::<$t, Neon>(a) }
        }
        /// # Safety
        /// The CPU supports the neon tier; see [`BoundArgs`].
        #[target_feature(enable = "neon")]
        pub unsafe fn $bound(a: &BoundArgs<$t>) {
            unsafe { bound::<$t, Neon>(a) }
        }
    };
}
entries!(f32, f32_fma16_b64, f32_summary_v16, f32_bound_v16);
entries!(f16, f16_fma16_b64, f16_summary_v16, f16_bound_v16);
entries!(bf16, bf16_fma16_b64, bf16_summary_v16, bf16_bound_v16);

/// # Safety
/// The CPU supports the neon tier; see [`MergeArgs`].
#[target_feature(enable = "neon")]
pub unsafe fn f32_merge_u4(a: &MergeArgs) {
    unsafe { merge::<Neon>(a) }
}
