//! NEON row moves and scatter-add.
//!
//! Row moves: exact or overlapping small moves below 16 bytes (shared with every tier),
//! one or two overlapping 16/32/64-byte moves up to 128 bytes, then a 128-byte loop
//! with an overlapping last 64 bytes. Scatter-add: 4 x 4 lanes per step, `fcvtl` /
//! `fcvtn` for f16 (exact widening; narrowing rounds to nearest even under the default
//! FPCR), a scalar tail.

use super::{add_tail, rows, small_rows, AddElem, CopyRowsArgs, RowCopy, ScatterAddArgs};
use core::arch::aarch64::*;
use core::arch::asm;
use half::{bf16, f16};

/// One unaligned move of `K` bytes (16, 32 or 64).
#[inline(always)]
unsafe fn move_vec<const K: usize>(d: *mut u8, s: *const u8) {
    // SAFETY: the caller gives K readable bytes at s and K writable bytes at d.
    unsafe {
        match K {
            16 => vst1q_u8(d, vld1q_u8(s)),
            32 => vst1q_u8_x2(d, vld1q_u8_x2(s)),
            64 => vst1q_u8_x4(d, vld1q_u8_x4(s)),
            _ => unreachable!(),
        }
    }
}

/// Rows of exactly `K` bytes, `K` in {16, 32, 64}.
struct Vector<const K: usize>;
impl<const K: usize> RowCopy for Vector<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, _rb: usize) {
        // SAFETY: the row is K bytes.
        unsafe { move_vec::<K>(d, s) }
    }
}

/// Rows of `K < rb < 2K` bytes: the first and the last `K` bytes (overlapping).
struct VectorPair<const K: usize>;
impl<const K: usize> RowCopy for VectorPair<K> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: K <= rb; the rows are disjoint, so the order of the moves is free.
        unsafe {
            move_vec::<K>(d, s);
            move_vec::<K>(d.add(rb - K), s.add(rb - K));
        }
    }
}

/// Rows of 128 bytes or more: 128 bytes per step, then 64, then the last 64 bytes again
/// (overlapping).
struct Long;
impl RowCopy for Long {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 128; every access lies in [0, rb).
        unsafe {
            let mut i = 0;
            while i + 128 <= rb {
                let v0 = vld1q_u8_x4(s.add(i));
                let v1 = vld1q_u8_x4(s.add(i + 64));
                vst1q_u8_x4(d.add(i), v0);
                vst1q_u8_x4(d.add(i + 64), v1);
                i += 128;
            }
            if i + 64 <= rb {
                move_vec::<64>(d.add(i), s.add(i));
                i += 64;
            }
            if i < rb {
                move_vec::<64>(d.add(rb - 64), s.add(rb - 64));
            }
        }
    }
}

/// # Safety
/// The CPU supports the neon tier; see the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn bytes_rows_q64(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller; each strategy gets rows of its size class.
    unsafe {
        if small_rows(a) {
            return;
        }
        match a.row_bytes {
            16 => rows::<Vector<16>>(a),
            17..=31 => rows::<VectorPair<16>>(a),
            32 => rows::<Vector<32>>(a),
            33..=63 => rows::<VectorPair<32>>(a),
            64 => rows::<Vector<64>>(a),
            65..=127 => rows::<VectorPair<64>>(a),
            _ => rows::<Long>(a),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scatter-add.

/// 4 lanes of an element type as f32, and the rounding store.
trait Lanes: AddElem {
    /// # Safety
    /// 4 elements readable at p.
    unsafe fn load(p: *const Self) -> float32x4_t;
    /// # Safety
    /// 4 elements writable at p; v has no NaN but the canonical one.
    unsafe fn store(p: *mut Self, v: float32x4_t);
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        unsafe { vld1q_f32(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: float32x4_t) {
        unsafe { vst1q_f32(p, v) }
    }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> float32x4_t {
        unsafe {
            let h = vld1_u16(p as *const u16);
            let out: float32x4_t;
            // SAFETY: fcvtl widens four f16 lanes to f32 exactly; registers only.
            asm!("fcvtl {0:v}.4s, {1:v}.4h", out(vreg) out, in(vreg) h,
                 options(pure, nomem, nostack, preserves_flags));
            out
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, v: float32x4_t) {
        unsafe {
            let h: uint16x4_t;
            // SAFETY: fcvtn narrows four f32 lanes to f16 (round to nearest even under
            // the default FPCR, subnormals kept); registers only.
            asm!("fcvtn {0:v}.4h, {1:v}.4s", out(vreg) h, in(vreg) v,
                 options(pure, nomem, nostack, preserves_flags));
            vst1_u16(p as *mut u16, h);
        }
    }
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> float32x4_t {
        unsafe { vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16))) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, v: float32x4_t) {
        // Round to nearest even on the integer pattern: exact for every non-NaN value,
        // subnormals included.
        unsafe {
            let x = vreinterpretq_u32_f32(v);
            let lsb = vandq_u32(vshrq_n_u32::<16>(x), vdupq_n_u32(1));
            let r = vaddq_u32(vaddq_u32(x, vdupq_n_u32(0x7fff)), lsb);
            vst1_u16(p as *mut u16, vshrn_n_u32::<16>(r));
        }
    }
}

/// `h + g * y` (or `h + y`) with NaN replaced by the canonical NaN.
#[inline(always)]
unsafe fn add4<const GATED: bool>(h: float32x4_t, y: float32x4_t, g: float32x4_t) -> float32x4_t {
    unsafe {
        let t = if GATED { vmulq_f32(g, y) } else { y };
        let s = vaddq_f32(h, t);
        let ordered = vceqq_f32(s, s);
        vbslq_f32(
            ordered,
            s,
            vreinterpretq_f32_u32(vdupq_n_u32(super::CANONICAL_NAN_F32)),
        )
    }
}

#[inline(always)]
unsafe fn add_row<T: Lanes, const GATED: bool>(
    hr: *mut T,
    yr: *const T,
    g: float32x4_t,
    gs: f32,
    d: usize,
) {
    // SAFETY: every access lies in [0, d) of the two rows.
    unsafe {
        let mut c = 0;
        while c + 16 <= d {
            let y0 = T::load(yr.add(c));
            let y1 = T::load(yr.add(c + 4));
            let y2 = T::load(yr.add(c + 8));
            let y3 = T::load(yr.add(c + 12));
            let h0 = T::load(hr.add(c));
            let h1 = T::load(hr.add(c + 4));
            let h2 = T::load(hr.add(c + 8));
            let h3 = T::load(hr.add(c + 12));
            T::store(hr.add(c), add4::<GATED>(h0, y0, g));
            T::store(hr.add(c + 4), add4::<GATED>(h1, y1, g));
            T::store(hr.add(c + 8), add4::<GATED>(h2, y2, g));
            T::store(hr.add(c + 12), add4::<GATED>(h3, y3, g));
            c += 16;
        }
        while c + 4 <= d {
            let v = add4::<GATED>(T::load(hr.add(c)), T::load(yr.add(c)), g);
            T::store(hr.add(c), v);
            c += 4;
        }
        add_tail(hr, yr, if GATED { Some(gs) } else { None }, c, d);
    }
}

#[inline(always)]
unsafe fn scatter_add<T: Lanes>(a: &ScatterAddArgs<T>) {
    for j in 0..a.n {
        // SAFETY: the contract makes idx[j], row idx[j] of h, row j of y and g[j] valid.
        unsafe {
            let hr = a.h.add(*a.idx.add(j) as usize * a.h_stride);
            let yr = a.y.add(j * a.y_stride);
            if a.g.is_null() {
                add_row::<T, false>(hr, yr, vdupq_n_f32(0.0), 1.0, a.d);
            } else {
                let g = *a.g.add(j);
                add_row::<T, true>(hr, yr, vdupq_n_f32(g), g, a.d);
            }
        }
    }
}

/// # Safety
/// The CPU supports the neon tier; see the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn f32_scatter_add_u4(a: &ScatterAddArgs<f32>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the neon tier; see the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn f16_scatter_add_u4(a: &ScatterAddArgs<f16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the neon tier; see the module contract.
#[target_feature(enable = "neon")]
pub unsafe fn bf16_scatter_add_u4(a: &ScatterAddArgs<bf16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
