//! Token compaction through the C ABI: gather, scatter, gated scatter-add, in-place
//! compaction and KV-cache compaction.

use super::{byte_range, disjoint, guard, range, slice, slice_mut, tkr_status, ArgName};
use crate::error::{ensure, Error, ErrorKind, Result};
use crate::ops::compact::{KvCacheMut, KvKeep, KvLayout};
use crate::ops::{span, DType, Element, Matrix, MatrixMut};
use crate::Kernels;
use core::ffi::c_void;
use half::{bf16, f16};

/// KV-cache layout code: `[n_tokens, n_heads, head_dim]` (token-major).
pub const TKR_KV_TOKEN_MAJOR: u32 = 1;
/// KV-cache layout code: `[n_heads, n_tokens, head_dim]` (head-major).
pub const TKR_KV_HEAD_MAJOR: u32 = 2;

/// KV-cache keep mode: one index list for every head.
pub const TKR_KV_KEEP_SHARED: u32 = 0;
/// KV-cache keep mode: one index list per head, `n_heads` lists of `n_keep` indices,
/// head after head.
pub const TKR_KV_KEEP_PER_HEAD: u32 = 1;

/// Byte geometry of `rows` rows of `row_len` elements of `elem_size` bytes, `stride`
/// elements apart: `(row_bytes, stride_bytes, span_bytes)`. A stride that is never used
/// (at most one row) is not scaled, so it cannot overflow. Errors name `stride_arg`.
fn byte_rows(
    elem_size: usize,
    rows: usize,
    row_len: usize,
    stride: usize,
    stride_arg: &'static str,
) -> Result<(usize, usize, usize)> {
    ensure!(elem_size > 0, InvalidArgument, "elem_size": "must be > 0");
    ensure!(
        stride >= row_len,
        BadStride,
        stride_arg: "row stride smaller than the row"
    );
    let overflow = || Error::new(ErrorKind::SizeOverflow, "row_len * elem_size overflows");
    let rb = row_len.checked_mul(elem_size).ok_or_else(overflow)?;
    let sb = if rows <= 1 {
        rb
    } else {
        stride
            .checked_mul(elem_size)
            .ok_or_else(overflow)
            .arg(stride_arg)?
    };
    Ok((rb, sb, span(rows, rb, sb).arg(stride_arg)?))
}

/// Writes `value` to an optional `size_t` output that must not overlap `data`.
///
/// # Safety
/// `out` is NULL or valid for a write of one `size_t`.
unsafe fn write_count(out: *mut usize, value: usize) {
    if !out.is_null() {
        // SAFETY: checked non-null, alignment checked by `check_count`.
        unsafe { *out = value };
    }
}

/// Checks an optional `size_t` output (argument `name`) before anything is written.
fn check_count(out: *mut usize, data: (usize, usize), name: &'static str) -> Result<()> {
    if out.is_null() {
        return Ok(());
    }
    disjoint(range(out as *const usize, 1).arg(name)?, data).arg(name)
}

/// The buffers of a gather or scatter: `src` (`sn` bytes), `idx`, and `dst` (`dn` bytes),
/// which must not overlap `src` or `idx`.
///
/// # Safety
/// The pointers hold what the tkr_gather_rows / tkr_scatter_rows documentation says.
unsafe fn row_move_buffers<'a>(
    src: *const c_void,
    sn: usize,
    idx: *const u32,
    n_idx: usize,
    dst: *mut c_void,
    dn: usize,
) -> Result<(&'a [u8], &'a [u32], &'a mut [u8])> {
    // SAFETY: sizes from the documented shapes; validity is the caller's promise.
    let (s, ix) = unsafe {
        (
            slice(src as *const u8, sn).arg("src")?,
            slice(idx, n_idx).arg("idx")?,
        )
    };
    let d = range(dst as *const u8, dn).arg("dst")?;
    disjoint(d, byte_range(s)).arg("dst")?;
    disjoint(d, byte_range(ix)).arg("dst")?;
    // SAFETY: checked above: dst is disjoint from every input.
    let ds = unsafe { slice_mut(dst as *mut u8, dn)? };
    Ok((s, ix, ds))
}

/// Gathers rows: `dst[j] = src[idx[j]]` for `j < n_idx` (row `r` of a buffer starts
/// `r * row_stride` elements after its first element).
///
/// Rows are copied bit for bit, so any element type works: f32, f16, bf16 (as uint16_t)
/// or anything else of `elem_size` bytes. Large copies stream their stores past the
/// cache; the result is the same bytes.
///
/// - `elem_size`: bytes per element (> 0). `row_len`: elements per row.
/// - `src`: `n_src_rows` rows of `row_len` elements, `src_row_stride` elements apart.
/// - `idx`: `n_idx` row indices, each `< n_src_rows`; any order, repeats allowed.
/// - `dst`: `n_idx` rows of `row_len` elements, `dst_row_stride` elements apart; only
///   those elements are written (never the stride padding). `dst` must not overlap
///   `src` or `idx` (their spans, first to last byte).
/// - No alignment is required of `src` or `dst`; `idx` must be 4-byte aligned.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (elem_size 0, misaligned
///   `idx`), TKR_STATUS_OUT_OF_RANGE, TKR_STATUS_BAD_STRIDE (a stride smaller than the
///   row), TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On
///   error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_gather_rows(
    elem_size: usize,
    row_len: usize,
    src: *const c_void,
    n_src_rows: usize,
    src_row_stride: usize,
    idx: *const u32,
    n_idx: usize,
    dst: *mut c_void,
    dst_row_stride: usize,
) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        let (rb, ssb, sn) = byte_rows(
            elem_size,
            n_src_rows,
            row_len,
            src_row_stride,
            "src_row_stride",
        )?;
        let (_, dsb, dn) = byte_rows(elem_size, n_idx, row_len, dst_row_stride, "dst_row_stride")?;
        // SAFETY: the caller's promises about the buffers, passed on.
        let (s, ix, ds) = unsafe { row_move_buffers(src, sn, idx, n_idx, dst, dn)? };
        k.gather_rows(
            Matrix::new(s, n_src_rows, rb, ssb)?,
            ix,
            MatrixMut::new(ds, n_idx, rb, dsb)?,
        )
        .arg("idx")
    })
}

/// Scatters rows: `dst[idx[j]] = src[j]` for `j < n_idx`; the other rows of `dst` are
/// left as they are.
///
/// Rows are copied bit for bit (any element type of `elem_size` bytes).
///
/// - `elem_size`: bytes per element (> 0). `row_len`: elements per row.
/// - `src`: `n_idx` rows of `row_len` elements, `src_row_stride` elements apart.
/// - `idx`: `n_idx` row indices, each `< n_dst_rows`, **distinct**, in any order.
/// - `dst`: `n_dst_rows` rows, `dst_row_stride` elements apart; only the `row_len`
///   elements of the indexed rows are written. `dst` must not overlap `src` or `idx`.
/// - No alignment is required of `src` or `dst`; `idx` must be 4-byte aligned.
/// - Validation: an ascending `idx` is checked in one pass; an unsorted one also goes
///   through a bitmap of `n_dst_rows` bits (a thread-local buffer that only grows).
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (elem_size 0, misaligned
///   `idx`), TKR_STATUS_OUT_OF_RANGE, TKR_STATUS_DUPLICATE_INDEX,
///   TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP,
///   TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_scatter_rows(
    elem_size: usize,
    row_len: usize,
    src: *const c_void,
    src_row_stride: usize,
    idx: *const u32,
    n_idx: usize,
    dst: *mut c_void,
    n_dst_rows: usize,
    dst_row_stride: usize,
) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        let (rb, ssb, sn) = byte_rows(elem_size, n_idx, row_len, src_row_stride, "src_row_stride")?;
        let (_, dsb, dn) = byte_rows(
            elem_size,
            n_dst_rows,
            row_len,
            dst_row_stride,
            "dst_row_stride",
        )?;
        // SAFETY: the caller's promises about the buffers, passed on.
        let (s, ix, ds) = unsafe { row_move_buffers(src, sn, idx, n_idx, dst, dn)? };
        k.scatter_rows(
            Matrix::new(s, n_idx, rb, ssb)?,
            ix,
            MatrixMut::new(ds, n_dst_rows, rb, dsb)?,
        )
        .arg("idx")
    })
}

/// Gated residual scatter-add (Mixture-of-Depths, layer skipping):
/// `h[idx[j]] = h[idx[j]] + gate[j] * y[j]` for `j < n_idx`, elementwise over the
/// `d` elements of the rows (or `h[idx[j]] + y[j]` when `gate` is NULL). Rows of `h` not
/// in `idx` keep their state.
///
/// `y` is the block's output delta: the gate scales only the delta, never the residual
/// stream itself.
///
/// - `dtype`: TKR_DTYPE_F32, TKR_DTYPE_F16 or TKR_DTYPE_BF16, the element type of `h`
///   and `y` (f16/bf16 as uint16_t bit patterns).
/// - Numerics: f32 arithmetic, the product rounded to f32, then the sum rounded to f32
///   (no fused multiply-add: in f32 this equals PyTorch's
///   `h.index_add_(0, idx, gate[:, None] * y)`), then rounded to the dtype to nearest
///   even, subnormals kept. A NaN result is stored as the canonical quiet NaN
///   (f32 0x7fc00000, f16 0x7e00, bf16 0x7fc0). Results are bit-identical on every ISA
///   level (default floating-point environment: no flush-to-zero).
/// - `h`: `n_h_rows` rows of `d` elements, `h_row_stride` elements apart; only the `d`
///   elements of the indexed rows are written.
/// - `idx`: `n_idx` row indices, each `< n_h_rows`, **distinct**, in any order (an
///   ascending list is checked in one pass; an unsorted one also through a bitmap of
///   `n_h_rows` bits in a thread-local buffer that only grows).
/// - `y`: `n_idx` rows of `d` elements, `y_row_stride` elements apart.
/// - `gate`: `n_idx` floats, or NULL for a gate of 1.
/// - `h` must not overlap `y`, `gate` or `idx`. Pointers must be aligned for their
///   element type.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown dtype, misaligned
///   pointer), TKR_STATUS_OUT_OF_RANGE, TKR_STATUS_DUPLICATE_INDEX,
///   TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP,
///   TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn tkr_scatter_add_rows(
    dtype: u32,
    d: usize,
    h: *mut c_void,
    n_h_rows: usize,
    h_row_stride: usize,
    idx: *const u32,
    n_idx: usize,
    y: *const c_void,
    y_row_stride: usize,
    gate: *const f32,
) -> tkr_status {
    guard(|| {
        let raw = RawScatterAdd {
            d,
            h,
            n_h_rows,
            h_row_stride,
            idx,
            n_idx,
            y,
            y_row_stride,
            gate,
        };
        // SAFETY: the caller's promises about the buffers, passed on.
        unsafe {
            match DType::from_code(dtype) {
                Some(DType::F32) => raw.run::<f32>(),
                Some(DType::F16) => raw.run::<f16>(),
                Some(DType::BF16) => raw.run::<bf16>(),
                None => {
                    Err(Error::new(ErrorKind::InvalidArgument, "unknown dtype code")
                        .with_arg("dtype"))
                }
            }
        }
    })
}

struct RawScatterAdd {
    d: usize,
    h: *mut c_void,
    n_h_rows: usize,
    h_row_stride: usize,
    idx: *const u32,
    n_idx: usize,
    y: *const c_void,
    y_row_stride: usize,
    gate: *const f32,
}

impl RawScatterAdd {
    /// # Safety
    /// The buffers hold what the tkr_scatter_add_rows documentation says.
    unsafe fn run<T: Element>(&self) -> Result<()> {
        let k = Kernels::active()?;
        let hn = span(self.n_h_rows, self.d, self.h_row_stride).arg("h_row_stride")?;
        let yn = span(self.n_idx, self.d, self.y_row_stride).arg("y_row_stride")?;
        // SAFETY: sizes from the documented shapes; validity is the caller's promise.
        let (ys, ix) = unsafe {
            (
                slice(self.y as *const T, yn).arg("y")?,
                slice(self.idx, self.n_idx).arg("idx")?,
            )
        };
        let gate = if self.gate.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { slice(self.gate, self.n_idx).arg("gate")? })
        };
        let hr = range(self.h as *const T, hn).arg("h")?;
        disjoint(hr, byte_range(ys)).arg("h")?;
        disjoint(hr, byte_range(ix)).arg("h")?;
        if let Some(g) = gate {
            disjoint(hr, byte_range(g)).arg("h")?;
        }
        // SAFETY: checked above: h is disjoint from every input.
        let hs = unsafe { slice_mut(self.h as *mut T, hn)? };
        k.scatter_add_rows(
            MatrixMut::new(hs, self.n_h_rows, self.d, self.h_row_stride)?,
            ix,
            Matrix::new(ys, self.n_idx, self.d, self.y_row_stride)?,
            gate,
        )
        .arg("idx")
    }
}

/// In-place stable compaction (token pruning): moves rows `keep[0], keep[1], ...` of
/// `data` to rows `0, 1, ...`, in order, and reports the new row count (`n_keep`).
///
/// Rows are moved bit for bit (any element type of `elem_size` bytes). Use it for the
/// hidden states and, with `row_len = 1`, for every per-token side array (position ids,
/// attention masks) with the same `keep` list.
///
/// - `elem_size`: bytes per element (> 0). `row_len`: elements per row.
/// - `data`: `n_rows` rows of `row_len` elements, `row_stride` elements apart. Rows
///   from `n_keep` on keep their previous contents; a kept prefix already in place is
///   not touched.
/// - `keep`: `n_keep` row indices, **strictly ascending** (TKR_STATUS_UNSORTED_INDEX,
///   or TKR_STATUS_DUPLICATE_INDEX for equal neighbours; the first offending position
///   decides), each `< n_rows`. Checked in one pass. It must not overlap `data`.
/// - `out_n_rows`: receives `n_keep` on success; may be NULL. It must not overlap
///   `data`.
/// - No alignment is required of `data`; `keep` and `out_n_rows` must be aligned.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (elem_size 0, misaligned
///   pointer), TKR_STATUS_OUT_OF_RANGE, TKR_STATUS_UNSORTED_INDEX,
///   TKR_STATUS_DUPLICATE_INDEX, TKR_STATUS_BAD_STRIDE, TKR_STATUS_SIZE_OVERFLOW,
///   TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On error nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_compact_rows(
    elem_size: usize,
    row_len: usize,
    data: *mut c_void,
    n_rows: usize,
    row_stride: usize,
    keep: *const u32,
    n_keep: usize,
    out_n_rows: *mut usize,
) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        let (rb, sb, n) = byte_rows(elem_size, n_rows, row_len, row_stride, "row_stride")?;
        // SAFETY: sizes from the documented shapes; validity is the caller's promise.
        let ks = unsafe { slice(keep, n_keep).arg("keep")? };
        let dr = range(data as *const u8, n).arg("data")?;
        disjoint(dr, byte_range(ks)).arg("keep")?;
        check_count(out_n_rows, dr, "out_n_rows")?;
        // SAFETY: checked above: data is disjoint from the other buffers.
        let ds = unsafe { slice_mut(data as *mut u8, n)? };
        let new_len = k
            .compact_rows(MatrixMut::new(ds, n_rows, rb, sb)?, ks)
            .arg("keep")?;
        // SAFETY: checked above (aligned, disjoint from data) or NULL.
        unsafe { write_count(out_n_rows, new_len) };
        Ok(())
    })
}

/// KV-cache compaction in place (H2O / SnapKV-style eviction): keeps the tokens listed
/// in `keep`, stable, moving them to token positions `0, 1, ...` of every head, and
/// reports the new token count (`n_keep`). Call it once for the keys and once for the
/// values.
///
/// - `layout`: TKR_KV_TOKEN_MAJOR (`[n_tokens, n_heads, head_dim]`: row (t, h) at
///   `t * token_stride + h * head_stride`, requiring `head_stride >= head_dim` and
///   `token_stride >= (n_heads - 1) * head_stride + head_dim`) or TKR_KV_HEAD_MAJOR
///   (`[n_heads, n_tokens, head_dim]`: row (t, h) at `h * head_stride + t *
///   token_stride`, requiring `token_stride >= head_dim` and `head_stride >= (n_tokens -
///   1) * token_stride + head_dim`; a head stride sized for a larger capacity is fine).
///   Strides are in elements. These rules make all rows disjoint (TKR_STATUS_BAD_STRIDE
///   otherwise).
/// - `elem_size`: bytes per element (> 0); rows are moved bit for bit.
/// - `cache`: the tensor. Token positions from `n_keep` on keep their previous
///   contents; no alignment is required.
/// - `keep_mode`: TKR_KV_KEEP_SHARED (`keep` holds `n_keep` indices for every head) or
///   TKR_KV_KEEP_PER_HEAD (`keep` holds `n_heads` lists of `n_keep` indices, head after
///   head). Every list is **strictly ascending** with indices `< n_tokens`; all lists
///   are checked before anything moves. `keep` must be 4-byte aligned and must not
///   overlap `cache`.
/// - `out_n_tokens`: receives `n_keep` on success; may be NULL. It must not overlap
///   `cache`.
/// - (NULL, 0) is a valid empty buffer. Returns TKR_STATUS_OK,
///   TKR_STATUS_NULL_POINTER, TKR_STATUS_INVALID_ARGUMENT (unknown layout or keep mode,
///   elem_size 0, misaligned pointer), TKR_STATUS_OUT_OF_RANGE,
///   TKR_STATUS_UNSORTED_INDEX, TKR_STATUS_DUPLICATE_INDEX, TKR_STATUS_BAD_STRIDE,
///   TKR_STATUS_SIZE_OVERFLOW, TKR_STATUS_OVERLAP, TKR_STATUS_ISA_UNAVAILABLE. On error
///   nothing is written.
/// - Thread-safe; no allocation.
#[no_mangle]
pub unsafe extern "C" fn tkr_kv_compact(
    layout: u32,
    elem_size: usize,
    cache: *mut c_void,
    n_tokens: usize,
    n_heads: usize,
    head_dim: usize,
    token_stride: usize,
    head_stride: usize,
    keep: *const u32,
    n_keep: usize,
    keep_mode: u32,
    out_n_tokens: *mut usize,
) -> tkr_status {
    guard(|| {
        let k = Kernels::active()?;
        let layout = match layout {
            TKR_KV_TOKEN_MAJOR => KvLayout::TokenMajor,
            TKR_KV_HEAD_MAJOR => KvLayout::HeadMajor,
            _ => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "unknown KV layout code")
                        .with_arg("layout"),
                )
            }
        };
        let per_head = match keep_mode {
            TKR_KV_KEEP_SHARED => false,
            TKR_KV_KEEP_PER_HEAD => true,
            _ => {
                return Err(
                    Error::new(ErrorKind::InvalidArgument, "unknown keep mode code")
                        .with_arg("keep_mode"),
                )
            }
        };
        ensure!(elem_size > 0, InvalidArgument, "elem_size": "must be > 0");
        let overflow = || Error::new(ErrorKind::SizeOverflow, "KV-cache size overflows");
        // The stride rules in elements, then the same geometry in bytes (strides that
        // are never used are replaced by their smallest valid value before scaling).
        let elems = KvCacheMut::<u8>::span(
            layout,
            n_tokens,
            n_heads,
            head_dim,
            token_stride,
            head_stride,
        )
        .arg("token_stride, head_stride")?;
        let bytes = elems.checked_mul(elem_size).ok_or_else(overflow)?;
        let (ts, hs) = match layout {
            KvLayout::TokenMajor => {
                let hs = if n_heads <= 1 { head_dim } else { head_stride };
                let ts = if n_tokens <= 1 {
                    (n_heads.max(1) - 1) * hs + head_dim
                } else {
                    token_stride
                };
                (ts, hs)
            }
            KvLayout::HeadMajor => {
                let ts = if n_tokens <= 1 {
                    head_dim
                } else {
                    token_stride
                };
                let hs = if n_heads <= 1 {
                    (n_tokens.max(1) - 1) * ts + head_dim
                } else {
                    head_stride
                };
                (ts, hs)
            }
        };
        let scale = |x: usize| x.checked_mul(elem_size).ok_or_else(overflow);
        let (db, tsb, hsb) = (scale(head_dim)?, scale(ts)?, scale(hs)?);
        let n_lists = if per_head { n_heads } else { 1 };
        let n_idx = n_keep.checked_mul(n_lists).ok_or_else(overflow)?;
        // SAFETY: sizes from the documented shapes; validity is the caller's promise.
        let ks = unsafe { slice(keep, n_idx).arg("keep")? };
        let cr = range(cache as *const u8, bytes).arg("cache")?;
        disjoint(cr, byte_range(ks)).arg("keep")?;
        check_count(out_n_tokens, cr, "out_n_tokens")?;
        // SAFETY: checked above: the cache is disjoint from the other buffers.
        let cs = unsafe { slice_mut(cache as *mut u8, bytes)? };
        let view = KvCacheMut::new(cs, layout, n_tokens, n_heads, db, tsb, hsb)?;
        let keep = if per_head {
            KvKeep::PerHead(ks)
        } else {
            KvKeep::Shared(ks)
        };
        k.kv_compact(view, keep).arg("keep")?;
        // SAFETY: checked above (aligned, disjoint from the cache) or NULL.
        unsafe { write_count(out_n_tokens, n_keep) };
        Ok(())
    })
}
