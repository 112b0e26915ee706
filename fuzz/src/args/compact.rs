//! Argument cases of the compaction family: `tkr_gather_rows`, `tkr_scatter_rows`,
//! `tkr_scatter_add_rows`, `tkr_compact_rows`, `tkr_kv_compact`: random sizes and
//! strides (small, huge, at overflow boundaries, smaller than the row), element sizes
//! (0 included), NULL / misaligned / overlapping pointers, and index lists that are out
//! of range, duplicated or unsorted. Every call must return a status the documented
//! rules allow; on error no output byte changes, on success exactly the documented
//! rows change, to the plain-loop result.

use super::*;
use tokenroute::ffi::compact::*;
use tokenroute::ffi::score::{TKR_DTYPE_BF16, TKR_DTYPE_F16, TKR_DTYPE_F32};

fn wild(inp: &mut Input) -> bool {
    inp.u8() % 6 == 0
}

fn size(inp: &mut Input, wild: bool, small: usize) -> usize {
    if wild && inp.bool() {
        inp.size()
    } else {
        inp.len(small.min(1 << 16))
    }
}

fn stride(inp: &mut Input, cols: usize, wild: bool) -> usize {
    match inp.u8() % 10 {
        0 => cols.wrapping_sub(1 + inp.below(2)),
        1 if wild => inp.size(),
        2..=4 => cols.saturating_add(inp.below(3)),
        _ => cols,
    }
}

fn elem_size(inp: &mut Input) -> usize {
    match inp.u8() % 16 {
        0 => 0,
        1 => inp.size(),
        2 => 3,
        3 => 8,
        4 | 5 => 1,
        6 | 7 => 2,
        _ => 4,
    }
}

/// The byte geometry rules of the copy calls (`byte_rows`): adds the errors, returns
/// (row bytes, stride bytes, span bytes) when computable.
fn geom(
    m: &mut Model,
    es: usize,
    rows: usize,
    row_len: usize,
    stride: usize,
) -> Option<(usize, usize, usize)> {
    if es == 0 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
        return None;
    }
    if stride < row_len {
        m.err(TKR_STATUS_BAD_STRIDE);
        return None;
    }
    let Some(rb) = row_len.checked_mul(es) else {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
        return None;
    };
    let sb = if rows <= 1 {
        Some(rb)
    } else {
        stride.checked_mul(es)
    };
    let Some(sb) = sb else {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
        return None;
    };
    match crate::span(rows, rb, sb) {
        Ok(Some(s)) => Some((rb, sb, s)),
        _ => {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
            None
        }
    }
}

/// An index buffer of `n` u32 with values mostly below `limit`.
fn index_buf(inp: &mut Input, n: usize, limit: usize, ascending: bool) -> Buf {
    let mode = Mode::pick(inp);
    let sorted = ascending && inp.u8() % 4 != 0;
    let mut next = 0u32;
    Buf::new(inp, Some(n), 4, mode, &mut |inp, s| {
        for c in s.chunks_exact_mut(4) {
            let v = match inp.u8() % 16 {
                0 => inp.u32(),
                1 => limit as u32,
                _ if sorted => {
                    next =
                        next.saturating_add(1 + inp.below(2) as u32 - (inp.u8() % 32 == 0) as u32);
                    next.wrapping_sub(1)
                }
                _ => inp.below(limit.max(1).min(1 << 20) - 1) as u32,
            };
            c.copy_from_slice(&v.to_ne_bytes());
        }
    })
}

fn values(b: &Buf) -> Option<Vec<u32>> {
    if b.lied() || b.mem.is_none() {
        return if b.elems == Some(0) {
            Some(vec![])
        } else {
            None
        };
    }
    Some(
        b.snapshot()
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// The index errors of `idx` against `n` rows (out of range; duplicates for distinct
/// lists; order for ascending ones).
fn index_errors(m: &mut Model, idx: &[u32], n: usize, distinct: bool, ascending: bool) {
    if idx.iter().any(|&i| i as usize >= n) {
        m.err(TKR_STATUS_OUT_OF_RANGE);
        return;
    }
    if ascending {
        if let Some(w) = idx.windows(2).find(|w| w[1] <= w[0]) {
            m.err(if w[0] == w[1] {
                TKR_STATUS_DUPLICATE_INDEX
            } else {
                TKR_STATUS_UNSORTED_INDEX
            });
        }
    } else if distinct {
        let mut s = idx.to_vec();
        s.sort_unstable();
        if s.windows(2).any(|w| w[0] == w[1]) {
            m.err(TKR_STATUS_DUPLICATE_INDEX);
        }
    }
}

/// An output that is its own buffer, or (sometimes) the same pointer as `other`.
fn out_buf(inp: &mut Input, elems: Option<usize>, es: usize, other: &Buf) -> Buf {
    if inp.u8() % 12 == 0 && other.mem.is_some() {
        let len = other.mem.as_ref().unwrap().len();
        let off = inp.below(len.max(1) - 1);
        // SAFETY: off < len, inside the other buffer's mapping.
        let ptr = unsafe { other.ptr.add(off) };
        return Buf {
            mem: None,
            ptr,
            elems,
            elem_size: es,
            mode: Mode::Valid,
        };
    }
    let mode = Mode::pick(inp);
    Buf::new(inp, elems, es, mode, &mut fill_random)
}

/// Checks "inside another buffer": such an output is only truthful when it ends within
/// the other buffer's memory (the call must fail with OVERLAP anyway when non-empty).
fn aliased_lie(out: &Buf, other: &Buf) -> bool {
    out.mem.is_none() && !out.ptr.is_null() && {
        let end = other.ptr as usize + other.mem.as_ref().map_or(0, |g| g.len());
        out.range().1 > end || out.elems.is_none()
    }
}

pub fn gather(inp: &mut Input) {
    let w = wild(inp);
    let es = elem_size(inp);
    let row_len = size(inp, w, 12);
    let n_src = size(inp, w, 30);
    let ss = stride(inp, row_len, w);
    let n_idx = size(inp, w, 30);
    let ds = stride(inp, row_len, w);
    let mut m = Model::default();
    let sg = geom(&mut m, es, n_src, row_len, ss);
    let dg = geom(&mut m, es, n_idx, row_len, ds);
    let sm = Mode::pick(inp);
    let src = Buf::new(inp, sg.map(|g| g.2), 1, sm, &mut fill_random);
    let idx = index_buf(inp, n_idx, n_src.saturating_add(1), false);
    let dst = out_buf(inp, dg.map(|g| g.2), 1, &src);
    if sg.is_some() && dg.is_some() {
        src.errors(&mut m);
        idx.errors(&mut m);
        dst.errors(&mut m);
        if overlaps(dst.range(), src.range()) || overlaps(dst.range(), idx.range()) {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let iv = values(&idx);
    if let Some(v) = &iv {
        if m.errors.is_empty() {
            index_errors(&mut m, v, n_src, false, false);
        }
    }
    m.lied = src.lied() || idx.lied() || dst.lied() || aliased_lie(&dst, &src);
    if !m.runnable() || (m.errors.is_empty() && iv.is_none()) {
        return;
    }
    src.freeze();
    idx.freeze();
    let before = dst.snapshot();
    // SAFETY: truthful buffers, or a call the model says must fail untouched.
    let st = unsafe {
        tkr_gather_rows(
            es,
            row_len,
            src.ptr as _,
            n_src,
            ss,
            idx.ptr as _,
            n_idx,
            dst.ptr as _,
            ds,
        )
    };
    let ok = m.check("tkr_gather_rows", st);
    assert!(src.slack_intact() && idx.slack_intact() && dst.slack_intact());
    let after = dst.snapshot();
    if !ok {
        assert!(after == before, "written on error");
        return;
    }
    let (rb, ssb, _) = sg.unwrap();
    let (_, dsb, _) = dg.unwrap();
    let s = src.snapshot();
    let mut want = before;
    for (j, &i) in iv.unwrap().iter().enumerate() {
        let i = i as usize;
        want[j * dsb..j * dsb + rb].copy_from_slice(&s[i * ssb..i * ssb + rb]);
    }
    assert!(after == want, "gather result");
}

pub fn scatter(inp: &mut Input) {
    let w = wild(inp);
    let es = elem_size(inp);
    let row_len = size(inp, w, 12);
    let n_idx = size(inp, w, 30);
    let ss = stride(inp, row_len, w);
    let n_dst = size(inp, w, 40);
    let ds = stride(inp, row_len, w);
    let mut m = Model::default();
    let sg = geom(&mut m, es, n_idx, row_len, ss);
    let dg = geom(&mut m, es, n_dst, row_len, ds);
    let sm = Mode::pick(inp);
    let src = Buf::new(inp, sg.map(|g| g.2), 1, sm, &mut fill_random);
    let asc = inp.bool();
    let idx = index_buf(inp, n_idx, n_dst.saturating_add(1), asc);
    let dst = out_buf(inp, dg.map(|g| g.2), 1, &src);
    if sg.is_some() && dg.is_some() {
        src.errors(&mut m);
        idx.errors(&mut m);
        dst.errors(&mut m);
        if overlaps(dst.range(), src.range()) || overlaps(dst.range(), idx.range()) {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let iv = values(&idx);
    if let Some(v) = &iv {
        if m.errors.is_empty() {
            index_errors(&mut m, v, n_dst, true, false);
        }
    }
    m.lied = src.lied() || idx.lied() || dst.lied() || aliased_lie(&dst, &src);
    if !m.runnable() || (m.errors.is_empty() && iv.is_none()) {
        return;
    }
    src.freeze();
    idx.freeze();
    let before = dst.snapshot();
    // SAFETY: as in gather.
    let st = unsafe {
        tkr_scatter_rows(
            es,
            row_len,
            src.ptr as _,
            ss,
            idx.ptr as _,
            n_idx,
            dst.ptr as _,
            n_dst,
            ds,
        )
    };
    let ok = m.check("tkr_scatter_rows", st);
    assert!(src.slack_intact() && idx.slack_intact() && dst.slack_intact());
    let after = dst.snapshot();
    if !ok {
        assert!(after == before, "written on error");
        return;
    }
    let (rb, ssb, _) = sg.unwrap();
    let (_, dsb, _) = dg.unwrap();
    let s = src.snapshot();
    let mut want = before;
    for (j, &i) in iv.unwrap().iter().enumerate() {
        let i = i as usize;
        want[i * dsb..i * dsb + rb].copy_from_slice(&s[j * ssb..j * ssb + rb]);
    }
    assert!(after == want, "scatter result");
}

pub fn scatter_add(inp: &mut Input) {
    let w = wild(inp);
    let dtype = match inp.u8() % 8 {
        0 => inp.u32(),
        1 | 2 => TKR_DTYPE_F16,
        3 => TKR_DTYPE_BF16,
        _ => TKR_DTYPE_F32,
    };
    let es = if dtype == TKR_DTYPE_F32 { 4 } else { 2 };
    let d = size(inp, w, 12);
    let n_h = size(inp, w, 30);
    let hs = stride(inp, d, w);
    let n_idx = size(inp, w, 30);
    let ys = stride(inp, d, w);
    let mut m = Model::default();
    let known = [TKR_DTYPE_F32, TKR_DTYPE_F16, TKR_DTYPE_BF16].contains(&dtype);
    if !known {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    // Element geometry (tkr_scatter_add_rows uses element strides).
    let span_of = |m: &mut Model, rows: usize, stride: usize| match crate::span(rows, d, stride) {
        Err(()) => {
            m.err(TKR_STATUS_BAD_STRIDE);
            None
        }
        Ok(None) => {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
            None
        }
        Ok(Some(s)) => Some(s),
    };
    let hn = span_of(&mut m, n_h, hs);
    let yn = span_of(&mut m, n_idx, ys);
    let ym = Mode::pick(inp);
    let y = Buf::new(inp, yn, es, ym, &mut fill_random);
    let asc = inp.bool();
    let idx = index_buf(inp, n_idx, n_h.saturating_add(1), asc);
    let gm = if inp.u8() % 3 == 0 {
        Mode::Null
    } else {
        Mode::pick(inp)
    };
    let gate = Buf::new(inp, Some(n_idx), 4, gm, &mut fill_f32);
    let h = out_buf(inp, hn, es, &y);
    if known && hn.is_some() && yn.is_some() {
        y.errors(&mut m);
        idx.errors(&mut m);
        if !gate.ptr.is_null() {
            gate.errors(&mut m);
        }
        h.errors(&mut m);
        if overlaps(h.range(), y.range())
            || overlaps(h.range(), idx.range())
            || (!gate.ptr.is_null() && overlaps(h.range(), gate.range()))
        {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let iv = values(&idx);
    if let Some(v) = &iv {
        if m.errors.is_empty() {
            index_errors(&mut m, v, n_h, true, false);
        }
    }
    m.lied = y.lied() || idx.lied() || gate.lied() || h.lied() || aliased_lie(&h, &y);
    if !m.runnable() || (m.errors.is_empty() && iv.is_none()) {
        return;
    }
    y.freeze();
    idx.freeze();
    gate.freeze();
    let before = h.snapshot();
    // SAFETY: as in gather.
    let st = unsafe {
        tkr_scatter_add_rows(
            dtype,
            d,
            h.ptr as _,
            n_h,
            hs,
            idx.ptr as _,
            n_idx,
            y.ptr as _,
            ys,
            gate.ptr as _,
        )
    };
    let ok = m.check("tkr_scatter_add_rows", st);
    assert!(y.slack_intact() && idx.slack_intact() && h.slack_intact() && gate.slack_intact());
    let after = h.snapshot();
    if !ok {
        assert!(after == before, "written on error");
        return;
    }
    // Only the indexed rows changed (the values are checked by compact_diff).
    let rows: Vec<u32> = iv.unwrap();
    for (b, (x, y)) in after.iter().zip(&before).enumerate() {
        if x != y {
            let e = b / es;
            let (r, c) = (e / hs.max(1), e % hs.max(1));
            assert!(
                c < d && rows.contains(&(r as u32)),
                "scatter-add wrote element {e} outside the indexed rows"
            );
        }
    }
}

pub fn compact_rows(inp: &mut Input) {
    let w = wild(inp);
    let es = elem_size(inp);
    let row_len = size(inp, w, 12);
    let n_rows = size(inp, w, 40);
    let rs = stride(inp, row_len, w);
    let n_keep = size(inp, w, 40);
    let mut m = Model::default();
    let g = geom(&mut m, es, n_rows, row_len, rs);
    let dm = Mode::pick(inp);
    let data = Buf::new(inp, g.map(|g| g.2), 1, dm, &mut fill_random);
    let keep = index_buf(inp, n_keep, n_rows.saturating_add(1), true);
    let cm = if inp.bool() {
        Mode::Null
    } else {
        Mode::pick(inp)
    };
    let count = Buf::new(inp, Some(1), 8, cm, &mut fill_random);
    if g.is_some() {
        data.errors(&mut m);
        keep.errors(&mut m);
        if !count.ptr.is_null() {
            count.errors(&mut m);
        }
        if overlaps(data.range(), keep.range()) {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let kv = values(&keep);
    if let Some(v) = &kv {
        if m.errors.is_empty() {
            index_errors(&mut m, v, n_rows, true, true);
        }
    }
    m.lied = data.lied() || keep.lied();
    if !m.runnable() || (m.errors.is_empty() && kv.is_none()) {
        return;
    }
    keep.freeze();
    let (before, cbefore) = (data.snapshot(), count.snapshot());
    // SAFETY: as in gather.
    let st = unsafe {
        tkr_compact_rows(
            es,
            row_len,
            data.ptr as _,
            n_rows,
            rs,
            keep.ptr as _,
            n_keep,
            count.ptr as _,
        )
    };
    let ok = m.check("tkr_compact_rows", st);
    assert!(data.slack_intact() && keep.slack_intact() && count.slack_intact());
    let after = data.snapshot();
    if !ok {
        assert!(
            after == before && count.snapshot() == cbefore,
            "written on error"
        );
        return;
    }
    let (rb, sb, _) = g.unwrap();
    let mut want = before;
    for (j, &i) in kv.unwrap().iter().enumerate() {
        let i = i as usize;
        want.copy_within(i * sb..i * sb + rb, j * sb);
    }
    assert!(after == want, "compact_rows result");
    if !count.ptr.is_null() {
        // SAFETY: written by the call.
        assert_eq!(unsafe { *(count.ptr as *const usize) }, n_keep);
    }
}

pub fn kv_compact(inp: &mut Input) {
    let w = wild(inp);
    let layout = match inp.u8() % 8 {
        0 => inp.u32(),
        1..=3 => TKR_KV_HEAD_MAJOR,
        _ => TKR_KV_TOKEN_MAJOR,
    };
    let mode = match inp.u8() % 8 {
        0 => inp.u32(),
        1..=3 => TKR_KV_KEEP_PER_HEAD,
        _ => TKR_KV_KEEP_SHARED,
    };
    let es = elem_size(inp);
    let n_tokens = size(inp, w, 30);
    let n_heads = size(inp, w, 4);
    let head_dim = size(inp, w, 10);
    let head_major = layout == TKR_KV_HEAD_MAJOR;
    let (inner_n, outer_n) = if head_major {
        (n_tokens, n_heads)
    } else {
        (n_heads, n_tokens)
    };
    let inner_s = stride(inp, head_dim, w);
    let inner_span = inner_n
        .max(1)
        .wrapping_sub(1)
        .wrapping_mul(inner_s)
        .wrapping_add(head_dim);
    let outer_s = stride(inp, inner_span, w);
    let (ts, hs) = if head_major {
        (inner_s, outer_s)
    } else {
        (outer_s, inner_s)
    };
    let n_keep = size(inp, w, 30);
    let mut m = Model::default();
    let known = (layout == TKR_KV_HEAD_MAJOR || layout == TKR_KV_TOKEN_MAJOR)
        && (mode == TKR_KV_KEEP_SHARED || mode == TKR_KV_KEEP_PER_HEAD);
    if !known || es == 0 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    // The element geometry of KvCacheMut::span.
    let mut elems = None;
    if inner_s < head_dim {
        m.err(TKR_STATUS_BAD_STRIDE);
    } else {
        match (inner_n.max(1) - 1)
            .checked_mul(inner_s)
            .and_then(|x| x.checked_add(head_dim))
        {
            None => m.err(TKR_STATUS_SIZE_OVERFLOW),
            Some(isp) if outer_s < isp => m.err(TKR_STATUS_BAD_STRIDE),
            Some(isp) => {
                if n_tokens == 0 || n_heads == 0 {
                    elems = Some(0)
                } else {
                    match (outer_n - 1)
                        .checked_mul(outer_s)
                        .and_then(|x| x.checked_add(isp))
                    {
                        None => m.err(TKR_STATUS_SIZE_OVERFLOW),
                        Some(e) => elems = Some(e),
                    }
                }
            }
        }
    }
    let bytes = elems.and_then(|e| e.checked_mul(es.max(1)));
    if elems.is_some() && bytes.is_none() {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
    }
    // Byte strides: scaled after replacing unused strides (may overflow on their own).
    if es > 0 && bytes.is_some() {
        let (uts, uhs) = if head_major {
            let t = if n_tokens <= 1 { head_dim } else { ts };
            let h = if n_heads <= 1 {
                (n_tokens.max(1) - 1) * t + head_dim
            } else {
                hs
            };
            (t, h)
        } else {
            let h = if n_heads <= 1 { head_dim } else { hs };
            let t = if n_tokens <= 1 {
                (n_heads.max(1) - 1) * h + head_dim
            } else {
                ts
            };
            (t, h)
        };
        if [head_dim, uts, uhs]
            .iter()
            .any(|x| x.checked_mul(es).is_none())
        {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
        }
    }
    let per_head = mode == TKR_KV_KEEP_PER_HEAD;
    let n_idx = if per_head {
        n_keep.checked_mul(n_heads)
    } else {
        Some(n_keep)
    };
    if n_idx.is_none() {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
    }
    let cmode = Mode::pick(inp);
    let cache = Buf::new(inp, bytes, 1, cmode, &mut fill_random);
    let km = Mode::pick(inp);
    let mut next = 0u32;
    let keep = Buf::new(inp, n_idx.or(Some(0)), 4, km, &mut |inp, s| {
        let sorted = inp.u8() % 4 != 0;
        for c in s.chunks_exact_mut(4) {
            let v = match inp.u8() % 16 {
                0 => inp.u32(),
                1 => n_tokens as u32,
                _ if sorted => {
                    next = next.saturating_add(1 + inp.below(1) as u32);
                    if next as usize > n_tokens.min(1 << 20) || inp.u8() % 24 == 0 {
                        next = 1;
                    }
                    next - 1
                }
                _ => inp.below(n_tokens.clamp(1, 1 << 20) - 1) as u32,
            };
            c.copy_from_slice(&v.to_ne_bytes());
        }
    });
    let cm = if inp.bool() {
        Mode::Null
    } else {
        Mode::pick(inp)
    };
    let count = Buf::new(inp, Some(1), 8, cm, &mut fill_random);
    if m.errors.is_empty() {
        cache.errors(&mut m);
        keep.errors(&mut m);
        if !count.ptr.is_null() {
            count.errors(&mut m);
        }
        if overlaps(cache.range(), keep.range()) {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let kv = values(&keep);
    if let Some(v) = &kv {
        if m.errors.is_empty() {
            if per_head {
                // Empty per-head lists hold nothing to check (n_heads may be huge).
                if n_heads > 0 && n_keep > 0 {
                    for h in 0..n_heads {
                        let before = m.errors.len();
                        index_errors(
                            &mut m,
                            &v[h * n_keep..(h + 1) * n_keep],
                            n_tokens,
                            true,
                            true,
                        );
                        if m.errors.len() > before {
                            break;
                        }
                    }
                }
            } else {
                index_errors(&mut m, v, n_tokens, true, true);
            }
        }
    }
    m.lied = cache.lied() || keep.lied();
    if !m.runnable() || (m.errors.is_empty() && kv.is_none()) {
        return;
    }
    keep.freeze();
    let (before, cbefore) = (cache.snapshot(), count.snapshot());
    // SAFETY: as in gather.
    let st = unsafe {
        tkr_kv_compact(
            layout,
            es,
            cache.ptr as _,
            n_tokens,
            n_heads,
            head_dim,
            ts,
            hs,
            keep.ptr as _,
            n_keep,
            mode,
            count.ptr as _,
        )
    };
    let ok = m.check("tkr_kv_compact", st);
    assert!(cache.slack_intact() && keep.slack_intact() && count.slack_intact());
    let after = cache.snapshot();
    if !ok {
        assert!(
            after == before && count.snapshot() == cbefore,
            "written on error"
        );
        return;
    }
    let v = kv.unwrap();
    let mut want = before;
    let row = |t: usize, h: usize| (t * ts + h * hs) * es;
    let db = head_dim * es;
    // Empty keep lists and empty rows (head_dim 0) move nothing: skip the per-head loop
    // (n_heads may be huge: a 35-byte input took 36 s here with head_dim 0).
    let heads = if n_keep == 0 || db == 0 { 0 } else { n_heads };
    for h in 0..heads {
        let list = if per_head {
            &v[h * n_keep..(h + 1) * n_keep]
        } else {
            &v[..]
        };
        for (j, &t) in list.iter().enumerate() {
            let (s, dd) = (row(t as usize, h), row(j, h));
            want.copy_within(s..s + db, dd);
        }
    }
    assert!(after == want, "kv_compact result");
    if !count.ptr.is_null() {
        // SAFETY: written by the call.
        assert_eq!(unsafe { *(count.ptr as *const usize) }, n_keep);
    }
}
