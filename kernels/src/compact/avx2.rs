//! AVX2 row moves and scatter-add.
//!
//! Row moves: exact or overlapping small moves below 16 bytes (shared with every tier),
//! one or two overlapping xmm/ymm moves up to 64 bytes, then a 4 x ymm loop with an
//! overlapping last vector; copies of [`NT_MIN_BYTES`](super::NT_MIN_BYTES) or more
//! stream 64-byte-aligned destination lines with non-temporal stores (the unaligned
//! head and tail go through ordinary stores) and prefetch the head of the next source
//! row. Scatter-add: 4 x 8 lanes per step, F16C for f16, a scalar tail.

use super::{add_tail, rows, small_rows, use_nt, AddElem, CopyRowsArgs, RowCopy, ScatterAddArgs};
use core::arch::x86_64::*;
use half::{bf16, f16};

/// One unaligned move of `K` bytes (16 or 32).
#[inline(always)]
unsafe fn move_vec<const K: usize>(d: *mut u8, s: *const u8) {
    // SAFETY: the caller gives K readable bytes at s and K writable bytes at d.
    unsafe {
        match K {
            16 => _mm_storeu_si128(d as *mut __m128i, _mm_loadu_si128(s as *const __m128i)),
            32 => _mm256_storeu_si256(d as *mut __m256i, _mm256_loadu_si256(s as *const __m256i)),
            _ => unreachable!(),
        }
    }
}

/// Rows of exactly `K` bytes, `K` in {16, 32}.
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

/// Rows of 64 bytes or more: 4 x ymm per step, then single ymm, then the last 32 bytes
/// again (overlapping).
struct Long;
impl RowCopy for Long {
    const PF: usize = 128;
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 64; every access lies in [0, rb).
        unsafe {
            let mut i = 0;
            while i + 128 <= rb {
                let v0 = _mm256_loadu_si256(s.add(i) as *const __m256i);
                let v1 = _mm256_loadu_si256(s.add(i + 32) as *const __m256i);
                let v2 = _mm256_loadu_si256(s.add(i + 64) as *const __m256i);
                let v3 = _mm256_loadu_si256(s.add(i + 96) as *const __m256i);
                _mm256_storeu_si256(d.add(i) as *mut __m256i, v0);
                _mm256_storeu_si256(d.add(i + 32) as *mut __m256i, v1);
                _mm256_storeu_si256(d.add(i + 64) as *mut __m256i, v2);
                _mm256_storeu_si256(d.add(i + 96) as *mut __m256i, v3);
                i += 128;
            }
            while i + 32 <= rb {
                move_vec::<32>(d.add(i), s.add(i));
                i += 32;
            }
            if i < rb {
                move_vec::<32>(d.add(rb - 32), s.add(rb - 32));
            }
        }
    }
}

/// Rows of [`NT_MIN_ROW`](super::NT_MIN_ROW) bytes or more in a large copy: ordinary
/// stores for the first and last 64 bytes, non-temporal stores for every 64-byte-aligned
/// destination line in between (the caller fences).
struct LongNt;
impl RowCopy for LongNt {
    const PF: usize = 256;
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 256; every access lies in [0, rb); `i` starts at the first
        // 64-byte-aligned destination address, so each stream store is aligned.
        unsafe {
            move_vec::<32>(d, s);
            move_vec::<32>(d.add(32), s.add(32));
            let mut i = (64 - (d as usize & 63)) & 63;
            while i + 128 <= rb {
                let v0 = _mm256_loadu_si256(s.add(i) as *const __m256i);
                let v1 = _mm256_loadu_si256(s.add(i + 32) as *const __m256i);
                let v2 = _mm256_loadu_si256(s.add(i + 64) as *const __m256i);
                let v3 = _mm256_loadu_si256(s.add(i + 96) as *const __m256i);
                _mm256_stream_si256(d.add(i) as *mut __m256i, v0);
                _mm256_stream_si256(d.add(i + 32) as *mut __m256i, v1);
                _mm256_stream_si256(d.add(i + 64) as *mut __m256i, v2);
                _mm256_stream_si256(d.add(i + 96) as *mut __m256i, v3);
                i += 128;
            }
            while i + 32 <= rb {
                _mm256_stream_si256(
                    d.add(i) as *mut __m256i,
                    _mm256_loadu_si256(s.add(i) as *const __m256i),
                );
                i += 32;
            }
            move_vec::<32>(d.add(rb - 64), s.add(rb - 64));
            move_vec::<32>(d.add(rb - 32), s.add(rb - 32));
        }
    }
}

/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn bytes_rows_v32nt(a: &CopyRowsArgs) {
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
            _ if use_nt(a) => {
                rows::<LongNt>(a);
                _mm_sfence();
            }
            _ => rows::<Long>(a),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scatter-add.

/// 8 lanes of an element type as f32, and the rounding store.
trait Lanes: AddElem {
    /// # Safety
    /// 8 elements readable at p.
    unsafe fn load(p: *const Self) -> __m256;
    /// # Safety
    /// 8 elements writable at p; v has no NaN but the canonical one.
    unsafe fn store(p: *mut Self, v: __m256);
}

impl Lanes for f32 {
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        unsafe { _mm256_storeu_ps(p, v) }
    }
}

impl Lanes for f16 {
    #[inline(always)]
    unsafe fn load(p: *const f16) -> __m256 {
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f16, v: __m256) {
        // F16C rounds to nearest even and keeps subnormals.
        unsafe {
            _mm_storeu_si128(
                p as *mut __m128i,
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            )
        }
    }
}

impl Lanes for bf16 {
    #[inline(always)]
    unsafe fn load(p: *const bf16) -> __m256 {
        unsafe {
            let w = _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w))
        }
    }
    #[inline(always)]
    unsafe fn store(p: *mut bf16, v: __m256) {
        // Round to nearest even on the integer pattern: exact for every non-NaN value,
        // subnormals included.
        unsafe {
            let x = _mm256_castps_si256(v);
            let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(x), _mm256_set1_epi32(1));
            let r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
            let r = _mm256_srli_epi32::<16>(r);
            let packed =
                _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
            _mm_storeu_si128(p as *mut __m128i, packed);
        }
    }
}

/// `h + g * y` (or `h + y`) with NaN replaced by the canonical NaN.
#[inline(always)]
unsafe fn add8<const GATED: bool>(h: __m256, y: __m256, g: __m256) -> __m256 {
    unsafe {
        let t = if GATED { _mm256_mul_ps(g, y) } else { y };
        let s = _mm256_add_ps(h, t);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(s, s);
        _mm256_blendv_ps(
            s,
            _mm256_castsi256_ps(_mm256_set1_epi32(super::CANONICAL_NAN_F32 as i32)),
            nan,
        )
    }
}

#[inline(always)]
unsafe fn add_row<T: Lanes, const GATED: bool>(
    hr: *mut T,
    yr: *const T,
    g: __m256,
    gs: f32,
    d: usize,
) {
    // SAFETY: every access lies in [0, d) of the two rows.
    unsafe {
        let mut c = 0;
        while c + 32 <= d {
            let y0 = T::load(yr.add(c));
            let y1 = T::load(yr.add(c + 8));
            let y2 = T::load(yr.add(c + 16));
            let y3 = T::load(yr.add(c + 24));
            let h0 = T::load(hr.add(c));
            let h1 = T::load(hr.add(c + 8));
            let h2 = T::load(hr.add(c + 16));
            let h3 = T::load(hr.add(c + 24));
            T::store(hr.add(c), add8::<GATED>(h0, y0, g));
            T::store(hr.add(c + 8), add8::<GATED>(h1, y1, g));
            T::store(hr.add(c + 16), add8::<GATED>(h2, y2, g));
            T::store(hr.add(c + 24), add8::<GATED>(h3, y3, g));
            c += 32;
        }
        while c + 8 <= d {
            let v = add8::<GATED>(T::load(hr.add(c)), T::load(yr.add(c)), g);
            T::store(hr.add(c), v);
            c += 8;
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
            if j + 1 < a.n {
                let next = a.h.add(*a.idx.add(j + 1) as usize * a.h_stride);
                _mm_prefetch::<_MM_HINT_T0>(next as *const i8);
            }
            if a.g.is_null() {
                add_row::<T, false>(hr, yr, _mm256_setzero_ps(), 1.0, a.d);
            } else {
                let g = *a.g.add(j);
                add_row::<T, true>(hr, yr, _mm256_set1_ps(g), g, a.d);
            }
        }
    }
}

/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn f32_scatter_add_u4(a: &ScatterAddArgs<f32>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn f16_scatter_add_u4(a: &ScatterAddArgs<f16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
/// # Safety
/// The CPU supports the avx2 tier; see the module contract.
#[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe")]
pub unsafe fn bf16_scatter_add_u4(a: &ScatterAddArgs<bf16>) {
    // SAFETY: passed on from the caller.
    unsafe { scatter_add(a) }
}
