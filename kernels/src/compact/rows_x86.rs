//! Row moves shared by the avx2 and avx512 tiers, built from 256-bit moves: on the
//! development machine (AMD Zen 4) they measured as fast as 512-bit ones in cache and
//! faster out of it (a misaligned 512-bit load always splits across two lines), and
//! masked 512-bit stores for the ragged ends of streamed rows were slower than the
//! overlapping small moves used here.
//!
//! Size classes: rows under 16 bytes use the shared word moves; 16..=255 bytes one
//! block of 16/32/64/128 bytes, or the first and last such block (overlapping); 256
//! bytes and more a loop of 256-byte blocks plus the last 256 bytes again. Copies of
//! [`NT_MIN_BYTES`](super::NT_MIN_BYTES) or more (rows of at least
//! [`NT_MIN_ROW`](super::NT_MIN_ROW)) stream whole 64-byte destination lines with
//! non-temporal stores; the bytes before the first and after the last full line go
//! through ordinary stores that never touch a streamed line (a line written both ways
//! costs a round trip to memory). Large rows prefetch the head of the next source row.

use super::{rows, small_rows, use_nt, CopyRowsArgs, RowCopy};
use core::arch::x86_64::*;

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    // SAFETY: the caller gives 32 readable bytes at p.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline(always)]
unsafe fn store(p: *mut u8, v: __m256i) {
    // SAFETY: the caller gives 32 writable bytes at p.
    unsafe { _mm256_storeu_si256(p as *mut __m256i, v) }
}

/// `N` consecutive 32-byte moves from `s` to `d` (all loads first).
#[inline(always)]
unsafe fn block<const N: usize>(d: *mut u8, s: *const u8) {
    // SAFETY: the caller gives N * 32 bytes at both.
    unsafe {
        let v: [__m256i; N] = core::array::from_fn(|k| load(s.add(32 * k)));
        for (k, v) in v.into_iter().enumerate() {
            store(d.add(32 * k), v);
        }
    }
}

/// Copies exactly `n < 64` bytes: the first and last power-of-two-sized chunk
/// (overlapping), nothing outside `[0, n)`.
#[inline(always)]
unsafe fn under_64(d: *mut u8, s: *const u8, n: usize) {
    // SAFETY: every access lies in [0, n) of both ranges.
    unsafe {
        if n >= 32 {
            let (a, b) = (load(s), load(s.add(n - 32)));
            store(d, a);
            store(d.add(n - 32), b);
        } else if n >= 16 {
            let a = _mm_loadu_si128(s as *const __m128i);
            let b = _mm_loadu_si128(s.add(n - 16) as *const __m128i);
            _mm_storeu_si128(d as *mut __m128i, a);
            _mm_storeu_si128(d.add(n - 16) as *mut __m128i, b);
        } else if n >= 8 {
            let a = (s as *const u64).read_unaligned();
            let b = (s.add(n - 8) as *const u64).read_unaligned();
            (d as *mut u64).write_unaligned(a);
            (d.add(n - 8) as *mut u64).write_unaligned(b);
        } else if n >= 4 {
            let a = (s as *const u32).read_unaligned();
            let b = (s.add(n - 4) as *const u32).read_unaligned();
            (d as *mut u32).write_unaligned(a);
            (d.add(n - 4) as *mut u32).write_unaligned(b);
        } else if n >= 2 {
            let a = (s as *const u16).read_unaligned();
            let b = (s.add(n - 2) as *const u16).read_unaligned();
            (d as *mut u16).write_unaligned(a);
            (d.add(n - 2) as *mut u16).write_unaligned(b);
        } else if n == 1 {
            *d = *s;
        }
    }
}

/// Rows of exactly 16 bytes.
struct Xmm;
impl RowCopy for Xmm {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, _rb: usize) {
        // SAFETY: the row is 16 bytes.
        unsafe { _mm_storeu_si128(d as *mut __m128i, _mm_loadu_si128(s as *const __m128i)) }
    }
}

/// Rows of 17..=31 bytes: the first and last 16.
struct XmmPair;
impl RowCopy for XmmPair {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: 16 <= rb < 32.
        unsafe { under_64(d, s, rb) }
    }
}

/// Rows of exactly `32 * N` bytes.
struct Blocks<const N: usize>;
impl<const N: usize> RowCopy for Blocks<N> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, _rb: usize) {
        // SAFETY: the row is 32 * N bytes.
        unsafe { block::<N>(d, s) }
    }
}

/// Rows of `32 * N < rb < 64 * N` bytes: the first and the last `32 * N` (overlapping).
struct BlockPair<const N: usize>;
impl<const N: usize> RowCopy for BlockPair<N> {
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: 32 * N <= rb; the rows are disjoint, so the order is free.
        unsafe {
            block::<N>(d, s);
            block::<N>(d.add(rb - 32 * N), s.add(rb - 32 * N));
        }
    }
}

/// Rows of 256 bytes or more: 256-byte blocks, then the last 256 bytes again.
struct Long;
impl RowCopy for Long {
    const PF: usize = 256;
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 256; every access lies in [0, rb).
        unsafe {
            let mut i = 0;
            while i + 256 <= rb {
                block::<8>(d.add(i), s.add(i));
                i += 256;
            }
            if i < rb {
                block::<8>(d.add(rb - 256), s.add(rb - 256));
            }
        }
    }
}

/// Large copies: ordinary stores before the first and after the last whole 64-byte
/// destination line, non-temporal stores for every whole line (the caller fences).
struct LongNt;
impl RowCopy for LongNt {
    const PF: usize = 512;
    const NT: bool = true;
    #[inline(always)]
    unsafe fn copy(d: *mut u8, s: *const u8, rb: usize) {
        // SAFETY: rb >= 256 > 63, so the head lies in the row; `i` starts at the first
        // 64-byte boundary of the destination, so every stream store is aligned and
        // covers a line that only stream stores touch.
        unsafe {
            let head = (64 - (d as usize & 63)) & 63;
            under_64(d, s, head);
            let mut i = head;
            while i + 128 <= rb {
                let v: [__m256i; 4] = core::array::from_fn(|k| load(s.add(i + 32 * k)));
                for (k, v) in v.into_iter().enumerate() {
                    _mm256_stream_si256(d.add(i + 32 * k) as *mut __m256i, v);
                }
                i += 128;
            }
            if i + 64 <= rb {
                let (a, b) = (load(s.add(i)), load(s.add(i + 32)));
                _mm256_stream_si256(d.add(i) as *mut __m256i, a);
                _mm256_stream_si256(d.add(i + 32) as *mut __m256i, b);
                i += 64;
            }
            under_64(d.add(i), s.add(i), rb - i);
        }
    }
}

/// The row copy of the x86 tiers; expanded inside each tier's `#[target_feature]`
/// function (needs AVX2).
///
/// # Safety
/// See the module contract; the CPU supports AVX2.
#[inline(always)]
pub(super) unsafe fn copy_rows(a: &CopyRowsArgs) {
    // SAFETY: passed on from the caller; each strategy gets rows of its size class.
    unsafe {
        if small_rows(a) {
            return;
        }
        match a.row_bytes {
            16 => rows::<Xmm>(a),
            17..=31 => rows::<XmmPair>(a),
            32 => rows::<Blocks<1>>(a),
            33..=63 => rows::<BlockPair<1>>(a),
            64 => rows::<Blocks<2>>(a),
            65..=127 => rows::<BlockPair<2>>(a),
            128 => rows::<Blocks<4>>(a),
            129..=255 => rows::<BlockPair<4>>(a),
            _ if use_nt(a) => {
                rows::<LongNt>(a);
                _mm_sfence();
            }
            _ => rows::<Long>(a),
        }
    }
}
