//! Portable reference attention: the canonical arithmetic one element at a time
//! (fused multiply-adds by [`fma_f32`], exact without hardware FMA).

use super::{
    bound, exp2_f32, merge, softmax_row, summary, AttendArgs, Axpy, Backend, BoundArgs, Elem,
    MergeArgs, QuestBackend, SummaryArgs, BK, TILE_ROWS,
};
use crate::numerics::{fma_f32, reduce16};
use half::{bf16, f16};

/// The scalar tier.
pub(crate) struct Scalar;

/// Original element index of packed position `pos` (inverse of [`canon_pos`]).
#[inline(always)]
fn orig<T: Elem>(pos: usize) -> usize {
    if T::PAIRED {
        let c = pos & !31;
        let t = pos & 31;
        if t < 16 {
            c + 2 * t + 1
        } else {
            c + 2 * (t - 16)
        }
    } else {
        pos
    }
}

/// Element at packed position `pos` of a row of `d` elements (0 past `d`).
///
/// # Safety
/// `p` valid for `d` elements.
#[inline(always)]
unsafe fn at<T: Elem>(p: *const T, pos: usize, d: usize) -> f32 {
    let e = orig::<T>(pos);
    if e < d {
        // SAFETY: e < d.
        unsafe { (*p.add(e)).to_f32() }
    } else {
        0.0
    }
}

impl<T: Elem> Backend<T> for Scalar {
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
        for r in 0..nrows {
            for (j, &off) in koff.iter().enumerate().take(nb) {
                let mut acc = [0f32; 16];
                // SAFETY: packed rows hold dp floats; K row j holds d elements.
                unsafe {
                    let k = kbase.add(off);
                    let qr = q.add(r * dp);
                    for c in (0..dp).step_by(32) {
                        for (l, a) in acc.iter_mut().enumerate() {
                            *a = fma_f32(*qr.add(c + l), at(k, c + l, d), *a);
                            *a = fma_f32(*qr.add(c + 16 + l), at(k, c + 16 + l, d), *a);
                        }
                    }
                    *s.add(j * TILE_ROWS + r) = reduce16(&acc);
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
        pm.iter_mut().for_each(|b| *b = 0);
        for r in 0..nrows {
            let mut row = [0f32; BK];
            let mut bits = 0u64;
            for j in 0..nb {
                // SAFETY: the score buffer holds BK x TILE_ROWS floats.
                row[j] = unsafe { *s.add(j * TILE_ROWS + r) };
                bits |= ((vis[j] >> r & 1) as u64) << j;
            }
            let (a, p) = softmax_row(&mut row, bits, c, &mut m[r], &mut l[r]);
            alpha[r] = a;
            for j in 0..nb {
                // SAFETY: as above.
                unsafe { *s.add(j * TILE_ROWS + r) = row[j] };
                pm[j] |= ((p >> j & 1) as u16) << r;
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
        for r in 0..nrows {
            // SAFETY: r < nrows rows of every buffer; V rows hold d elements.
            unsafe {
                let a = *alpha.add(r);
                let orow = o.add(r * dp);
                for pos in 0..dp {
                    if orig::<T>(pos) >= d {
                        continue;
                    }
                    let mut acc = a * *orow.add(pos);
                    for (j, &off) in voff.iter().enumerate().take(nb) {
                        if pm[j] >> (r0 + r) & 1 == 1 {
                            let pj = *p.add(j * TILE_ROWS + r);
                            acc = fma_f32(pj, at(vbase.add(off), pos, d), acc);
                        }
                    }
                    *orow.add(pos) = acc;
                }
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
        for j in 0..nb {
            for r in 0..nrows {
                // SAFETY: BK x TILE_ROWS floats.
                unsafe {
                    let x = s.add(j * TILE_ROWS + r);
                    *x = if vis[j] >> r & 1 == 1 {
                        exp2_f32(*x * c - m[r]) * inv_l[r]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

impl Axpy for Scalar {
    #[inline(always)]
    unsafe fn axpy(n: usize, a: f32, x: *const f32, y: *mut f32) {
        for e in 0..n {
            // SAFETY: n elements at x and y.
            unsafe { *y.add(e) = fma_f32(a, *x.add(e), *y.add(e)) };
        }
    }
}

impl<T: Elem> QuestBackend<T> for Scalar {
    #[inline(always)]
    unsafe fn minmax(p: *const T, stride: usize, n: usize, d: usize, mn: *mut f32, mx: *mut f32) {
        for e in 0..d {
            let (mut lo, mut hi, mut nan) = (f32::INFINITY, f32::NEG_INFINITY, false);
            for j in 0..n {
                // SAFETY: n rows of d elements.
                let x = unsafe { (*p.add(j * stride + e)).to_f32() };
                nan |= x.is_nan();
                lo = if x < lo { x } else { lo };
                hi = if x > hi { x } else { hi };
            }
            if nan {
                (lo, hi) = (f32::NAN, f32::NAN);
            }
            // SAFETY: d outputs each.
            unsafe {
                *mn.add(e) = lo;
                *mx.add(e) = hi;
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
        let d16 = (d + 15) & !15;
        for b in 0..n_blocks {
            let (mut s, mut a) = ([0f32; 16], [0f32; 16]);
            for e in 0..d16 {
                let t = if e < d {
                    // SAFETY: e < d elements of q and of summary b.
                    unsafe {
                        let qe = *q.add(e);
                        let (x, y) = (qe * *mn.add(b * stride + e), qe * *mx.add(b * stride + e));
                        if x > y {
                            x
                        } else {
                            y
                        }
                    }
                } else {
                    0.0
                };
                s[e % 16] += t;
                a[e % 16] += f32::from_bits(t.to_bits() & 0x7fff_ffff);
            }
            // SAFETY: n_blocks outputs.
            unsafe { *out.add(b) = reduce16(&s) + cm * reduce16(&a) };
        }
    }
}

macro_rules! entries {
    ($t:ty, $attend:ident, $summary:ident, $bound:ident) => {
        /// # Safety
        /// See the module contract.
        pub unsafe fn $attend(a: &AttendArgs<$t>) {
            unsafe { super::attend::<$t, Scalar>(a) }
        }
        /// # Safety
        /// See [`SummaryArgs`].
        pub unsafe fn $summary(a: &SummaryArgs<$t>) {
            unsafe { summary::<$t, Scalar>(a) }
        }
        /// # Safety
        /// See [`BoundArgs`].
        pub unsafe fn $bound(a: &BoundArgs<$t>) {
            unsafe { bound::<$t, Scalar>(a) }
        }
    };
}
entries!(f32, f32_fma16_b64, f32_summary_u1, f32_bound_u1);
entries!(f16, f16_fma16_b64, f16_summary_u1, f16_bound_u1);
entries!(bf16, bf16_fma16_b64, bf16_summary_u1, bf16_bound_u1);

/// # Safety
/// See [`MergeArgs`].
pub unsafe fn f32_merge_u1(a: &MergeArgs) {
    unsafe { merge::<Scalar>(a) }
}
