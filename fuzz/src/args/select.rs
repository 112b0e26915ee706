//! Argument cases of the selection family: `tkr_mask_to_indices`,
//! `tkr_indices_to_mask`, `tkr_topk_workspace_size`. (`tkr_topk_f32` and
//! `tkr_threshold_f32`, whose option structs carry further pointers, are covered by
//! select_diff through the safe API and by the C and Python error-path tests.)

use super::*;
use tokenroute::ffi::select::*;

const MAX_ROW: usize = u32::MAX as usize;

fn n_of(inp: &mut Input) -> usize {
    match inp.u8() % 8 {
        0 => inp.size(),
        1 => MAX_ROW + inp.below(1),
        _ => inp.len(300),
    }
}

pub fn mask_to_indices(inp: &mut Input) {
    let n = n_of(inp);
    let mm = Mode::pick(inp);
    let mask = Buf::new(inp, Some(n), 1, mm, &mut fill_random);
    let om = Mode::pick(inp);
    let out = Buf::new(inp, Some(n), 4, om, &mut fill_random);
    let cm = Mode::pick(inp);
    let count = Buf::new(inp, Some(1), 8, cm, &mut fill_random);
    let mut m = Model::default();
    if n > MAX_ROW {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    mask.errors(&mut m);
    out.errors(&mut m);
    count.errors(&mut m);
    m.lied = mask.lied() || out.lied();
    if !m.runnable() {
        return;
    }
    mask.freeze();
    let (ob, cb) = (out.snapshot(), count.snapshot());
    // SAFETY: truthful buffers, or a call the model says must fail untouched.
    let st = unsafe {
        tkr_mask_to_indices(
            mask.ptr as *const u8,
            n,
            out.ptr as *mut u32,
            count.ptr as *mut usize,
        )
    };
    let ok = m.check("tkr_mask_to_indices", st);
    assert!(out.slack_intact() && count.slack_intact() && mask.slack_intact());
    if !ok {
        assert!(
            out.snapshot() == ob && count.snapshot() == cb,
            "written on error"
        );
        return;
    }
    let bytes = mask.snapshot();
    let want: Vec<u32> = (0..n as u32).filter(|&i| bytes[i as usize] != 0).collect();
    // SAFETY: one size_t written by the call.
    let c = unsafe { *(count.ptr as *const usize) };
    assert_eq!(c, want.len());
    if c > 0 {
        // SAFETY: n >= c u32 of real memory.
        let got = unsafe { core::slice::from_raw_parts(out.ptr as *const u32, c) };
        assert_eq!(got, &want[..]);
    }
}

pub fn indices_to_mask(inp: &mut Input) {
    let n = n_of(inp);
    let count = if inp.u8() % 8 == 0 {
        inp.size()
    } else {
        inp.below(50)
    };
    let im = Mode::pick(inp);
    let limit = n.saturating_add(n / 8).saturating_add(1).min(1 << 20);
    let idx = Buf::new(inp, Some(count), 4, im, &mut |inp, s| {
        for c in s.chunks_exact_mut(4) {
            let v = if inp.u8() % 16 == 0 {
                inp.u32()
            } else {
                inp.below(limit) as u32
            };
            c.copy_from_slice(&v.to_ne_bytes());
        }
    });
    let inside = inp.u8() % 10 == 0 && idx.mem.is_some();
    let out = if inside {
        let off = inp.below(idx.mem.as_ref().unwrap().len().max(1) - 1);
        Buf {
            mem: None,
            ptr: unsafe { idx.ptr.add(off) },
            elems: Some(n),
            elem_size: 1,
            mode: Mode::Valid,
        }
    } else {
        let om = Mode::pick(inp);
        Buf::new(inp, Some(n), 1, om, &mut fill_random)
    };
    let mut m = Model::default();
    idx.errors(&mut m);
    out.errors(&mut m);
    if overlaps(out.range(), idx.range()) {
        m.err(TKR_STATUS_OVERLAP);
    }
    let values: Vec<u32> = if idx.lied() || idx.mem.is_none() {
        Vec::new()
    } else {
        idx.snapshot()
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    if values.iter().any(|&v| v as usize >= n) {
        m.err(TKR_STATUS_OUT_OF_RANGE);
    }
    m.lied = idx.lied() || out.lied();
    if inside {
        let end = idx.ptr as usize + idx.mem.as_ref().unwrap().len();
        m.lied |= out.range().1 > end;
    }
    if !m.runnable() {
        return;
    }
    idx.freeze();
    let before = out.snapshot();
    let host = idx.snapshot();
    // SAFETY: as above.
    let st = unsafe { tkr_indices_to_mask(idx.ptr as *const u32, count, out.ptr as *mut u8, n) };
    let ok = m.check("tkr_indices_to_mask", st);
    assert!(out.slack_intact() && idx.slack_intact());
    assert!(idx.snapshot() == host, "an input changed");
    if !ok {
        assert!(out.snapshot() == before, "written on error");
        return;
    }
    let after = out.snapshot();
    for i in 0..n {
        assert_eq!(after[i], values.contains(&(i as u32)) as u8, "mask at {i}");
    }
}

pub fn workspace_size(inp: &mut Input) {
    let n = inp.size();
    let om = Mode::pick(inp);
    let out = Buf::new(inp, Some(1), 8, om, &mut fill_random);
    let mut m = Model::default();
    out.errors(&mut m);
    let want = n.checked_mul(8);
    if want.is_none() {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
    }
    let before = out.snapshot();
    // SAFETY: one size_t of real memory, or NULL / misaligned (refused).
    let st = unsafe { tkr_topk_workspace_size(n, out.ptr as *mut usize) };
    if m.check("tkr_topk_workspace_size", st) {
        // SAFETY: written by the call.
        assert_eq!(unsafe { *(out.ptr as *const usize) }, want.unwrap());
    } else {
        assert!(out.snapshot() == before, "written on error");
    }
    assert!(out.slack_intact());
}
