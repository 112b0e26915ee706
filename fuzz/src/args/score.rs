//! Argument cases of the scoring family: `tkr_sigmoid_f32` and `tkr_score`.

use super::*;
use crate::{canon, span};
use core::ffi::c_void;
use half::{bf16, f16};
use tokenroute::ffi::score::*;
use tokenroute::{Activation, Element, Isa, Kernels, Matrix, MatrixMut};

/// A size: usually small (so that valid calls happen), sometimes huge or at an
/// overflow boundary.
fn size(inp: &mut Input, wild: bool) -> usize {
    if wild {
        inp.size()
    } else {
        inp.len(40)
    }
}

/// A row stride for rows of `cols`: equal, a little larger, smaller (bad), or wild.
fn stride(inp: &mut Input, cols: usize, wild: bool) -> usize {
    match inp.u8() % 8 {
        0 => cols.wrapping_sub(1 + inp.below(2)),
        1 if wild => inp.size(),
        2 | 3 => cols.saturating_add(inp.below(4)),
        _ => cols,
    }
}

pub fn sigmoid(inp: &mut Input) {
    let wild = inp.u8() % 4 == 0;
    let n = size(inp, wild);
    let xmode = Mode::pick(inp);
    let x = Buf::new(inp, Some(n), 4, xmode, &mut fill_f32);
    // y: its own buffer, the same pointer (in place), or inside x.
    let ymode = inp.u8() % 8;
    let (y, in_place) = match ymode {
        0 => (
            Buf {
                mem: None,
                ptr: x.ptr,
                elems: Some(n),
                elem_size: 4,
                mode: x.mode,
            },
            true,
        ),
        1 if x.mem.is_some() => {
            let len = x.mem.as_ref().unwrap().len();
            let off = inp.below(len.max(1) - 1);
            let ptr = unsafe { x.ptr.add(off) };
            (
                Buf {
                    mem: None,
                    ptr,
                    elems: Some(n),
                    elem_size: 4,
                    mode: Mode::Valid,
                },
                false,
            )
        }
        _ => {
            let m = Mode::pick(inp);
            (Buf::new(inp, Some(n), 4, m, &mut fill_random), false)
        }
    };
    let in_place = in_place || (n > 0 && x.ptr == y.ptr);
    let mut m = Model::default();
    if n > 0 {
        if in_place {
            y.errors(&mut m);
        } else {
            x.errors(&mut m);
            y.errors(&mut m);
            if overlaps(x.range(), y.range()) {
                m.err(TKR_STATUS_OVERLAP);
            }
        }
    }
    m.lied = x.lied() || (y.mem.is_some() && y.lied());
    // y inside x (not in place) has no memory of its own: beyond x's end it lies.
    if y.mem.is_none() && !in_place {
        let xend = x.ptr as usize + x.mem.as_ref().map_or(0, |g| g.len());
        let (_, yend) = y.range();
        m.lied |= yend > xend;
    }
    if !m.runnable() {
        return;
    }
    if !in_place {
        x.freeze();
    }
    let before = if in_place { x.snapshot() } else { y.snapshot() };
    // x's values before the call (from its bytes: x may be misaligned or written in
    // place).
    let xin: Vec<f32> = x
        .snapshot()
        .chunks_exact(4)
        .take(n)
        .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // SAFETY: every pointer is either documented truthfully or the call must fail
    // without touching it (the model found an error).
    let st = unsafe { tkr_sigmoid_f32(x.ptr as *const f32, n, y.ptr as *mut f32) };
    let ok = m.check("tkr_sigmoid_f32", st);
    let after = if in_place { x.snapshot() } else { y.snapshot() };
    assert!(
        x.slack_intact() && y.slack_intact(),
        "write outside the buffers"
    );
    if !ok {
        assert!(
            before == after,
            "tkr_sigmoid_f32 failed ({st}) but wrote its output"
        );
        return;
    }
    if n == 0 {
        assert!(before == after);
        return;
    }
    let k = Kernels::for_isa(Isa::Scalar).unwrap();
    let mut want = vec![0f32; n];
    k.sigmoid_f32(&xin, &mut want).unwrap();
    // SAFETY: n floats written by the call.
    let got = unsafe { core::slice::from_raw_parts(y.ptr as *const f32, n) };
    for i in 0..n {
        assert_eq!(
            canon(got[i]),
            canon(want[i]),
            "sigmoid({:e}) i={i} n={n} x={:?} y={:?} xmode={:?} ymode={ymode} inplace={in_place}",
            xin[i],
            x.ptr,
            y.ptr,
            x.mode
        );
    }
}

pub fn score(inp: &mut Input) {
    let dtype = match inp.u8() % 16 {
        0 => inp.u32(),
        c => 1 + (c as u32 % 3),
    };
    let act = match inp.u8() % 16 {
        0 => inp.u32(),
        c => (c & 1) as u32,
    };
    let wild = inp.u8() % 4 == 0;
    let n = size(inp, wild);
    let d = size(inp, wild);
    let e = match inp.u8() % 8 {
        0 => 0,
        _ => size(inp, wild),
    };
    let hs = stride(inp, d, wild);
    let ws = stride(inp, d, wild);
    let os = stride(inp, e, wild);
    let esize = if dtype == TKR_DTYPE_F16 || dtype == TKR_DTYPE_BF16 {
        2
    } else {
        4
    };
    let hspan = span(n, d, hs);
    let wspan = span(e, d, ws);
    let ospan = span(n, e, os);
    let fill_elems = |inp: &mut Input, s: &mut [u8]| {
        if esize == 4 {
            fill_f32(inp, s)
        } else {
            for c in s.chunks_exact_mut(2) {
                let v = if dtype == TKR_DTYPE_F16 {
                    inp.f16_bits()
                } else {
                    inp.bf16_bits()
                };
                c.copy_from_slice(&v.to_ne_bytes());
            }
        }
    };
    let hm = Mode::pick(inp);
    let h = Buf::new(inp, hspan.unwrap_or(Some(0)), esize, hm, &mut {
        fill_elems
    });
    let wm = Mode::pick(inp);
    let w = Buf::new(inp, wspan.unwrap_or(Some(0)), esize, wm, &mut {
        fill_elems
    });
    // The bias: none (NULL is "no bias"), or e floats.
    let bm = match inp.u8() % 4 {
        0 => Mode::Null,
        _ => Mode::pick(inp),
    };
    let bias = Buf::new(inp, Some(e), 4, bm, &mut fill_f32);
    // The output: its own buffer, or a pointer inside one of the inputs.
    let ocase = inp.u8() % 10;
    let inside = match ocase {
        0 => Some(&h),
        1 => Some(&w),
        2 => Some(&bias),
        _ => None,
    }
    .filter(|b| b.mem.is_some());
    let out = match inside {
        Some(host) => {
            let len = host.mem.as_ref().unwrap().len();
            let off = inp.below(len.max(1) - 1) & !if inp.bool() { 3 } else { 0 };
            Buf {
                mem: None,
                ptr: unsafe { host.ptr.add(off) },
                elems: ospan.unwrap_or(Some(0)),
                elem_size: 4,
                mode: Mode::Valid,
            }
        }
        None => {
            let om = Mode::pick(inp);
            Buf::new(inp, ospan.unwrap_or(Some(0)), 4, om, &mut fill_random)
        }
    };

    let mut m = Model::default();
    let known_dtype = (1..=3).contains(&dtype);
    if !known_dtype || act > 1 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    for (sp, b) in [(hspan, &h), (wspan, &w), (ospan, &out)] {
        match sp {
            Err(()) => m.err(TKR_STATUS_BAD_STRIDE),
            Ok(None) => m.err(TKR_STATUS_SIZE_OVERFLOW),
            Ok(Some(_)) => {
                b.errors(&mut m);
                if !known_dtype && !core::ptr::eq(b, &out) {
                    // Unknown element size: the rules for 2-byte elements apply too.
                    Buf {
                        mem: None,
                        elem_size: 2,
                        ..*b
                    }
                    .errors(&mut m);
                }
            }
        }
    }
    if !bias.ptr.is_null() {
        bias.errors(&mut m);
    }
    if e == 0 && n > 0 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    // An overlap is an error whatever else is wrong (the checks are not ordered).
    let o = out.range();
    if overlaps(o, h.range()) || overlaps(o, w.range()) || overlaps(o, bias.range()) {
        m.err(TKR_STATUS_OVERLAP);
    }
    m.lied = h.lied() || w.lied() || (!bias.ptr.is_null() && bias.lied()) || out.lied();
    if let Some(host) = inside {
        let end = host.ptr as usize + host.mem.as_ref().unwrap().len();
        m.lied |= out.range().1 > end;
    }
    if !m.runnable() {
        return;
    }
    h.freeze();
    w.freeze();
    bias.freeze();
    let before = out.snapshot();
    let host_before = inside.map(Buf::snapshot);
    // SAFETY: truthful buffers, or a call the model says must fail before any access.
    let st = unsafe {
        tkr_score(
            dtype,
            h.ptr as *const c_void,
            n,
            d,
            hs,
            w.ptr as *const c_void,
            e,
            ws,
            bias.ptr as *const f32,
            act,
            out.ptr as *mut f32,
            os,
        )
    };
    let ok = m.check("tkr_score", st);
    assert!(
        h.slack_intact() && w.slack_intact() && bias.slack_intact() && out.slack_intact(),
        "write outside the buffers"
    );
    if let (Some(host), Some(b)) = (inside, host_before) {
        assert!(host.snapshot() == b, "an input changed");
    }
    let after = out.snapshot();
    if !ok {
        assert!(
            before == after,
            "tkr_score failed ({st}) but wrote its output"
        );
        return;
    }
    let (hn, wn, on) = (
        hspan.unwrap().unwrap(),
        wspan.unwrap().unwrap(),
        ospan.unwrap().unwrap(),
    );
    if on == 0 {
        assert!(before == after);
        return;
    }
    let act = if act == TKR_ACT_SIGMOID {
        Activation::Sigmoid
    } else {
        Activation::None
    };
    let want = match dtype {
        TKR_DTYPE_F32 => reference::<f32>(&h, hn, &w, wn, &bias, act, n, d, hs, e, ws, os, on),
        TKR_DTYPE_F16 => reference::<f16>(&h, hn, &w, wn, &bias, act, n, d, hs, e, ws, os, on),
        _ => reference::<bf16>(&h, hn, &w, wn, &bias, act, n, d, hs, e, ws, os, on),
    };
    // SAFETY: `on` floats of the output's real memory.
    let got = unsafe { core::slice::from_raw_parts(out.ptr as *const f32, on) };
    for idx in 0..on {
        if idx % os < e {
            assert_eq!(
                got[idx].to_bits(),
                want[idx].to_bits(),
                "score output {idx}"
            );
        } else {
            let b = &after[idx * 4..idx * 4 + 4];
            assert_eq!(b, &before[idx * 4..idx * 4 + 4], "stride gap {idx} written");
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn reference<T: Element>(
    h: &Buf,
    hn: usize,
    w: &Buf,
    wn: usize,
    bias: &Buf,
    act: Activation,
    n: usize,
    d: usize,
    hs: usize,
    e: usize,
    ws: usize,
    os: usize,
    on: usize,
) -> Vec<f32> {
    let sl = |b: &Buf, len: usize| -> Vec<T> {
        if len == 0 {
            Vec::new()
        } else {
            // SAFETY: len elements of real memory (the call succeeded truthfully).
            unsafe { core::slice::from_raw_parts(b.ptr as *const T, len) }.to_vec()
        }
    };
    let hv = sl(h, hn);
    let wv = sl(w, wn);
    let bv: Option<Vec<f32>> = if bias.ptr.is_null() {
        None
    } else {
        Some(if e == 0 {
            Vec::new()
        } else {
            // SAFETY: as above.
            unsafe { core::slice::from_raw_parts(bias.ptr as *const f32, e) }.to_vec()
        })
    };
    let mut out = vec![0f32; on];
    Kernels::for_isa(Isa::Scalar)
        .unwrap()
        .score(
            Matrix::new(&hv, n, d, hs).unwrap(),
            Matrix::new(&wv, e, d, ws).unwrap(),
            bv.as_deref(),
            act,
            MatrixMut::new(&mut out, n, e, os).unwrap(),
        )
        .unwrap();
    out
}
