//! Argument cases of the attention family: `tkr_attention` (dense and index key sets,
//! options with causal masking and missing positions, unknown flags / dtypes / kinds,
//! non-finite scales, bad softcaps, lse outputs, a V head size `v_head_dim` different
//! from `head_dim` with v's and out's strides following it or not), `tkr_attention_merge`
//! and `tkr_key_block_summary`,
//! with random sizes and strides of either layout (bad and overflowing ones included),
//! NULL / misaligned / aliased pointers and out-of-range key indices. Every call must
//! return a status the documented rules allow; on error no output byte changes; on
//! success the outputs equal the scalar level's result through the safe API.

use super::*;
use tokenroute::ffi::attend::*;
use tokenroute::ffi::score::{TKR_DTYPE_BF16, TKR_DTYPE_F16, TKR_DTYPE_F32};
use tokenroute::{
    bf16, f16, AttendExtras, AttendOptions, Heads, HeadsMut, Isa, Kernels, KeySubset, MatrixMut,
};

fn wild(inp: &mut Input) -> bool {
    inp.u8() % 6 == 0
}

fn size(inp: &mut Input, wild: bool, small: usize) -> usize {
    if wild && inp.u8() % 3 == 0 {
        inp.size()
    } else {
        inp.below(small.min(1 << 16))
    }
}

fn dtype(inp: &mut Input) -> u32 {
    match inp.u8() % 16 {
        0 => inp.u32(),
        1..=4 => TKR_DTYPE_F16,
        5..=7 => TKR_DTYPE_BF16,
        _ => TKR_DTYPE_F32,
    }
}

fn dsize(dt: u32) -> Option<usize> {
    match dt {
        TKR_DTYPE_F32 => Some(4),
        TKR_DTYPE_F16 | TKR_DTYPE_BF16 => Some(2),
        _ => None,
    }
}

/// (token stride, head stride) of either layout, sometimes bad or wild.
fn strides(inp: &mut Input, n: usize, h: usize, d: usize, wild: bool) -> (usize, usize) {
    if wild && inp.u8() % 4 == 0 {
        return (inp.size(), inp.size());
    }
    let pad = inp.below(2);
    let (ts, hs) = if inp.u8() % 4 == 0 {
        let ts = d.saturating_add(pad);
        (ts, n.max(1).saturating_mul(ts).saturating_add(inp.below(2)))
    } else {
        let hs = d.saturating_add(pad);
        (h.saturating_mul(hs).saturating_add(inp.below(2)), hs)
    };
    match inp.u8() % 16 {
        0 => (ts.saturating_sub(1), hs),
        1 => (ts, hs.saturating_sub(1)),
        _ => (ts, hs),
    }
}

/// The span3 rules: elements spanned, BAD_STRIDE, SIZE_OVERFLOW.
fn span3(m: &mut Model, n: usize, h: usize, d: usize, ts: usize, hs: usize) -> Option<usize> {
    if n == 0 || h == 0 {
        return Some(0);
    }
    let mut dims = [(ts, n), (hs, h)];
    dims.sort();
    let mut extent = d;
    for &(stride, cnt) in &dims {
        if cnt > 1 {
            if stride < extent {
                m.err(TKR_STATUS_BAD_STRIDE);
                return None;
            }
            match crate::span(cnt, extent, stride) {
                Ok(Some(e)) => extent = e,
                _ => {
                    m.err(TKR_STATUS_SIZE_OVERFLOW);
                    return None;
                }
            }
        }
    }
    Some(extent)
}

fn fill_half(inp: &mut Input, s: &mut [u8]) {
    for c in s.chunks_exact_mut(2) {
        c.copy_from_slice(&inp.bf16_bits().to_ne_bytes());
    }
}

fn fill_for(es: usize) -> fn(&mut Input, &mut [u8]) {
    if es == 4 {
        fill_f32
    } else {
        fill_half
    }
}

fn view<T>(b: &Buf, n: usize) -> &[T] {
    if n == 0 {
        return &[];
    }
    // SAFETY: n elements of real memory (the call succeeded on it).
    unsafe { core::slice::from_raw_parts(b.ptr as *const T, n) }
}

pub fn attention(inp: &mut Input) {
    let w = wild(inp);
    let dt = dtype(inp);
    let n_q = size(inp, w, 5);
    let h_kv = size(inp, w, 3).max(inp.below(1));
    let h_q = if inp.u8() % 8 == 0 {
        size(inp, w, 5)
    } else {
        h_kv.saturating_mul(1 + inp.below(1))
    };
    let d = if inp.u8() % 12 == 0 {
        0
    } else {
        size(inp, w, 20).saturating_add(1)
    };
    let n_k = size(inp, w, 40);
    // options->v_head_dim (0: head_dim), drawn before the strides of v and out, which
    // are drawn for it; it applies only with an options struct (else dv = d, and the
    // strides may not hold d).
    let v_head_dim = match inp.u8() % 8 {
        1 => size(inp, w, 20).saturating_add(1),
        2 => d.saturating_add(1 + inp.below(8)),
        _ => 0,
    };
    let dv_drawn = if v_head_dim == 0 { d } else { v_head_dim };
    let (qts, qhs) = strides(inp, n_q, h_q, d, w);
    let (kts, khs) = strides(inp, n_k, h_kv, d, w);
    let (vts, vhs) = strides(inp, n_k, h_kv, dv_drawn, w);
    let (ots, ohs) = strides(inp, n_q, h_q, dv_drawn, w);
    let with_opts = inp.bool();
    let dv = if with_opts { dv_drawn } else { d };
    let out_dt = if with_opts && inp.bool() {
        dtype(inp)
    } else {
        0
    };
    let flags = if with_opts {
        match inp.u8() % 8 {
            0 => inp.u32(),
            1..=3 => TKR_ATTENTION_CAUSAL,
            _ => 0,
        }
    } else {
        0
    };
    let window = if with_opts && inp.u8() % 4 == 0 {
        inp.below(10) as u32
    } else {
        0
    };
    let scale = if with_opts {
        match inp.u8() % 8 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => 0.5,
            _ => 0.0,
        }
    } else {
        0.0
    };
    // A right window (flag WINDOW_RIGHT, options->window_right = 0 from the init) masks
    // too.
    let right = flags & TKR_ATTENTION_WINDOW_RIGHT != 0;
    let masked = flags & TKR_ATTENTION_CAUSAL != 0 || window > 0 || right;
    let kind = match inp.u8() % 8 {
        0 => 5,
        1..=3 => TKR_KEYS_INDICES,
        _ => TKR_KEYS_DENSE,
    };
    let with_keys = kind != TKR_KEYS_DENSE || inp.bool();
    let n_idx = size(inp, w, 30);

    let mut m = Model::default();
    let es = dsize(dt);
    let out_eff = if out_dt == 0 { dt } else { out_dt };
    let oes = dsize(out_eff);
    if es.is_none() || oes.is_none() {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    let known = TKR_ATTENTION_CAUSAL | TKR_ATTENTION_BF16_DOT | TKR_ATTENTION_WINDOW_RIGHT;
    if flags & !known != 0 || kind > TKR_KEYS_BLOCKS {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    if d == 0 || h_q == 0 || h_kv == 0 || h_q % h_kv != 0 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    let qn = span3(&mut m, n_q, h_q, d, qts, qhs);
    let kn = span3(&mut m, n_k, h_kv, d, kts, khs);
    let vn = span3(&mut m, n_k, h_kv, dv, vts, vhs);
    let on = span3(&mut m, n_q, h_q, dv, ots, ohs);
    let es_ = es.unwrap_or(4);
    let oes_ = oes.unwrap_or(4);
    let fq = fill_for(es_);
    let mq = Mode::pick(inp);
    let q = Buf::new(inp, qn, es_, mq, &mut |i, s| fq(i, s));
    let mk = Mode::pick(inp);
    let k = Buf::new(inp, kn, es_, mk, &mut |i, s| fq(i, s));
    let mv = Mode::pick(inp);
    let v = Buf::new(inp, vn, es_, mv, &mut |i, s| fq(i, s));
    let qpm = if inp.u8() % 4 == 0 {
        Mode::Null
    } else {
        Mode::pick(inp)
    };
    let qp = Buf::new(inp, Some(n_q), 4, qpm, &mut fill_random);
    let kpm = if inp.u8() % 4 == 0 {
        Mode::Null
    } else {
        Mode::pick(inp)
    };
    let kp = Buf::new(inp, Some(n_k), 4, kpm, &mut fill_random);
    let im = Mode::pick(inp);
    let idx = Buf::new(inp, Some(n_idx), 4, im, &mut |inp, s| {
        for c in s.chunks_exact_mut(4) {
            let x = if inp.u8() % 16 == 0 {
                (n_k as u32).wrapping_add(inp.below(2) as u32)
            } else {
                inp.below(n_k.saturating_sub(1).min(1 << 20)) as u32
            };
            c.copy_from_slice(&x.to_ne_bytes());
        }
    });
    // out: its own buffer or aliasing q.
    let out = if inp.u8() % 12 == 0 && q.mem.is_some() {
        Buf {
            mem: None,
            ptr: q.ptr,
            elems: on,
            elem_size: oes_,
            mode: Mode::Valid,
        }
    } else {
        let mo = Mode::pick(inp);
        Buf::new(inp, on, oes_, mo, &mut fill_random)
    };
    let with_lse = with_opts && inp.bool();
    let lse_tok = if inp.bool() {
        0
    } else {
        size(inp, w, h_q.saturating_add(2))
    };
    let lse_stride = if lse_tok == 0 { h_q } else { lse_tok };
    let mut late = Model::default();
    let mut lse_err = None;
    let lse_n = match crate::span(n_q, h_q, lse_stride) {
        Err(()) => {
            lse_err = Some(TKR_STATUS_BAD_STRIDE);
            None
        }
        Ok(None) => {
            lse_err = Some(TKR_STATUS_SIZE_OVERFLOW);
            None
        }
        Ok(s) => s,
    };
    let lm = if with_lse {
        Mode::pick(inp)
    } else {
        Mode::Null
    };
    let lse = Buf::new(inp, lse_n, 4, lm, &mut fill_random);
    // A NULL lse means no lse output (its layout is then not checked either).
    let with_lse = with_lse && !lse.ptr.is_null();
    if let (true, Some(e)) = (with_lse, lse_err) {
        late.err(e);
    }
    let shapes_ok = m.errors.is_empty();
    if shapes_ok {
        for b in [&q, &k, &v, &out] {
            b.errors(&mut m);
        }
        if masked {
            qp.errors(&mut m);
            kp.errors(&mut m);
        }
        if kind == TKR_KEYS_INDICES {
            idx.errors(&mut m);
        }
        if with_lse {
            lse.errors(&mut m);
        }
        // Outputs against every input the call reads (positions only when masking, the
        // index list only for index keys) and each other: a documented extent larger
        // than its memory may reach a neighbouring buffer (found by fuzzing: out's
        // extent over the index list, OVERLAP before the index's OUT_OF_RANGE).
        let mut inputs = vec![q.range(), k.range(), v.range()];
        if masked {
            inputs.extend([qp.range(), kp.range()]);
        }
        if kind == TKR_KEYS_INDICES {
            inputs.push(idx.range());
        }
        let mut outputs = vec![out.range()];
        if with_lse {
            outputs.push(lse.range());
        }
        for (i, &o) in outputs.iter().enumerate() {
            if inputs
                .iter()
                .chain(&outputs[i + 1..])
                .any(|&b| overlaps(o, b))
            {
                m.err(TKR_STATUS_OVERLAP);
            }
        }
    }
    // A logit softcap (read after the buffers, so older inputs decode as before):
    // 0 none, else finite and > 0.
    let softcap = if with_opts {
        match inp.u8() % 8 {
            0 => f32::NAN,
            1 => -1.0,
            2 => f32::INFINITY,
            3 => 2.0,
            _ => 0.0,
        }
    } else {
        0.0
    };
    let softcap_ok = softcap == 0.0 || (softcap.is_finite() && softcap > 0.0);
    // Checked after the buffers: the lse layout, the scale, the softcap, n_k.
    if !scale.is_finite() || !softcap_ok || n_k > u32::MAX as usize {
        late.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    m.errors.extend(late.errors);
    let idx_vals: Option<Vec<u32>> = if idx.lied() || idx.mem.is_none() {
        None
    } else {
        Some(
            idx.snapshot()
                .chunks_exact(4)
                .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    };
    if kind == TKR_KEYS_INDICES && m.errors.is_empty() {
        match &idx_vals {
            Some(v) if v.iter().any(|&i| i as usize >= n_k) => m.err(TKR_STATUS_OUT_OF_RANGE),
            Some(_) => {}
            None if n_idx == 0 => {}
            None => return,
        }
    }
    let aliased = out.mem.is_none() && !out.ptr.is_null() && out.range().1 > q.range().1;
    m.lied = [&q, &k, &v, &out].iter().any(|b| b.lied())
        || (masked && (qp.lied() || kp.lied()))
        || (kind == TKR_KEYS_INDICES && idx.lied())
        || (with_lse && lse.lied())
        || aliased;
    if !m.runnable() {
        return;
    }
    for b in [&q, &k, &v, &qp, &kp, &idx] {
        b.freeze();
    }
    // SAFETY: all-zero then init: valid structs.
    let mut o: tkr_attention_options = unsafe { core::mem::zeroed() };
    let mut ks: tkr_attention_keys = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointers to the structs.
    unsafe {
        tkr_attention_options_init(&mut o);
        tkr_attention_keys_init(&mut ks);
    }
    o.scale = scale;
    o.softcap = softcap;
    o.v_head_dim = v_head_dim;
    o.flags = flags;
    o.window = window;
    o.out_dtype = out_dt;
    o.q_positions = qp.ptr as _;
    o.k_positions = kp.ptr as _;
    o.lse = if with_lse {
        lse.ptr as _
    } else {
        core::ptr::null_mut()
    };
    o.lse_token_stride = lse_tok;
    ks.kind = kind;
    ks.indices = idx.ptr as _;
    ks.n_indices = n_idx;
    let (ob, lb) = (out.snapshot(), lse.snapshot());
    // SAFETY: truthful buffers, or a call the model says must fail untouched.
    let st = unsafe {
        tkr_attention(
            dt,
            q.ptr as _,
            n_q,
            h_q,
            d,
            qts,
            qhs,
            k.ptr as _,
            v.ptr as _,
            n_k,
            h_kv,
            kts,
            khs,
            vts,
            vhs,
            if with_keys { &ks } else { core::ptr::null() },
            if with_opts { &o } else { core::ptr::null() },
            out.ptr as _,
            ots,
            ohs,
        )
    };
    let ok = m.check("tkr_attention", st);
    for b in [&q, &k, &v, &qp, &kp, &idx, &out, &lse] {
        assert!(b.slack_intact(), "tkr_attention wrote outside a buffer");
    }
    if !ok {
        assert!(
            out.snapshot() == ob && lse.snapshot() == lb,
            "written on error"
        );
        return;
    }
    // The scalar level through the safe API on copies of the same inputs.
    let (qn, kn, vn, on) = (qn.unwrap(), kn.unwrap(), vn.unwrap(), on.unwrap());
    // The scalar level, or with TKR_ATTENTION_BF16_DOT (not bit-identical across
    // levels) the active one, with the same options.
    let bf16_dot = flags & TKR_ATTENTION_BF16_DOT != 0;
    let scalar = if bf16_dot {
        Kernels::active().unwrap()
    } else {
        Kernels::for_isa(Isa::Scalar).unwrap()
    };
    let subset = if kind == TKR_KEYS_INDICES {
        KeySubset::Indices(view::<u32>(&idx, n_idx))
    } else {
        KeySubset::Dense
    };
    let opts = AttendOptions {
        scale: (scale != 0.0).then_some(scale),
        softcap: (softcap != 0.0).then_some(softcap),
        causal: flags & TKR_ATTENTION_CAUSAL != 0,
        window,
        window_right: right.then_some(0),
        q_positions: masked.then(|| view::<u32>(&qp, n_q)),
        k_positions: masked.then(|| view::<u32>(&kp, n_k)),
        bf16_dot,
        ..Default::default()
    };
    let lb_len = lb.len() / 4;
    macro_rules! go {
        ($t:ty, $o:ty) => {{
            let mut ow = vec![<$o>::default(); on];
            let mut lw = vec![0f32; lb_len];
            // SAFETY: byte copies of the pre-call outputs into typed storage.
            unsafe {
                core::ptr::copy_nonoverlapping(ob.as_ptr(), ow.as_mut_ptr() as *mut u8, ob.len());
                core::ptr::copy_nonoverlapping(lb.as_ptr(), lw.as_mut_ptr() as *mut u8, lb_len * 4);
            }
            scalar
                .attention::<$t, $o>(
                    Heads::new(view(&q, qn), n_q, h_q, d, qts, qhs).unwrap(),
                    Heads::new(view(&k, kn), n_k, h_kv, d, kts, khs).unwrap(),
                    Heads::new(view(&v, vn), n_k, h_kv, dv, vts, vhs).unwrap(),
                    subset,
                    &opts,
                    HeadsMut::new(&mut ow, n_q, h_q, dv, ots, ohs).unwrap(),
                    AttendExtras {
                        lse: with_lse.then_some((&mut lw[..], lse_tok)),
                        mass: None,
                    },
                )
                .unwrap();
            // SAFETY: plain-data bytes of the vectors.
            let ob = unsafe {
                core::slice::from_raw_parts(
                    ow.as_ptr() as *const u8,
                    on * core::mem::size_of::<$o>(),
                )
            }
            .to_vec();
            let lb: Vec<u8> = lw.iter().flat_map(|x| x.to_ne_bytes()).collect();
            (ob, lb)
        }};
    }
    let (want, want_lse) = match (dt, out_eff) {
        (TKR_DTYPE_F32, TKR_DTYPE_F32) => go!(f32, f32),
        (TKR_DTYPE_F32, TKR_DTYPE_F16) => go!(f32, f16),
        (TKR_DTYPE_F32, _) => go!(f32, bf16),
        (TKR_DTYPE_F16, TKR_DTYPE_F32) => go!(f16, f32),
        (TKR_DTYPE_F16, TKR_DTYPE_F16) => go!(f16, f16),
        (TKR_DTYPE_F16, _) => go!(f16, bf16),
        (_, TKR_DTYPE_F32) => go!(bf16, f32),
        (_, TKR_DTYPE_F16) => go!(bf16, f16),
        _ => go!(bf16, bf16),
    };
    let got = out.snapshot();
    if got != want {
        let p = got.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "tkr_attention differs from the scalar safe API at byte {p:?} of {}: dt {dt} out {out_eff} n_q {n_q} h_q {h_q} h_kv {h_kv} d {d} dv {dv} n_k {n_k} q ({qts}, {qhs}) k ({kts}, {khs}) v ({vts}, {vhs}) o ({ots}, {ohs}) flags {flags:#x} window {window} scale {scale} kind {kind} lse {with_lse}\n got {:02x?}\nwant {:02x?}\n q {:02x?}\n k {:02x?}\n v {:02x?}",
            got.len(), got, want, q.snapshot(), k.snapshot(), v.snapshot()
        );
    }
    assert!(lse.snapshot() == want_lse, "tkr_attention lse differs");
}

pub fn summary(inp: &mut Input) {
    let w = wild(inp);
    let dt = dtype(inp);
    let n_k = size(inp, w, 40);
    let h = size(inp, w, 3);
    let d = size(inp, w, 12);
    let (ts, hs) = strides(inp, n_k, h, d, w);
    let bs = size(inp, w, 10);
    let b0 = size(inp, w, 8);
    let b1 = if inp.bool() { b0 } else { size(inp, w, 8) };
    let mut m = Model::default();
    let es = dsize(dt);
    if es.is_none() || d == 0 || h == 0 || bs == 0 || b0 > b1 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    if bs > 0 && b1 > n_k.div_ceil(bs) {
        m.err(TKR_STATUS_OUT_OF_RANGE);
    }
    let kn = span3(&mut m, n_k, h, d, ts, hs);
    let sn = b1.checked_mul(h).and_then(|x| x.checked_mul(d));
    if sn.is_none() {
        m.err(TKR_STATUS_SIZE_OVERFLOW);
    }
    let es_ = es.unwrap_or(4);
    let fk = fill_for(es_);
    let mk = Mode::pick(inp);
    let k = Buf::new(inp, kn, es_, mk, &mut |i, s| fk(i, s));
    let m1 = Mode::pick(inp);
    let kmin = Buf::new(inp, sn, 4, m1, &mut fill_random);
    // kmax: its own buffer or the same as kmin.
    let kmax = if inp.u8() % 10 == 0 && kmin.mem.is_some() {
        Buf {
            mem: None,
            ptr: kmin.ptr,
            elems: sn,
            elem_size: 4,
            mode: Mode::Valid,
        }
    } else {
        let m2 = Mode::pick(inp);
        Buf::new(inp, sn, 4, m2, &mut fill_random)
    };
    if m.errors.is_empty() {
        k.errors(&mut m);
        kmin.errors(&mut m);
        kmax.errors(&mut m);
        if overlaps(kmin.range(), kmax.range())
            || overlaps(kmin.range(), k.range())
            || overlaps(kmax.range(), k.range())
        {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    m.lied = k.lied() || kmin.lied() || kmax.lied();
    if !m.runnable() {
        return;
    }
    k.freeze();
    let (a, b) = (kmin.snapshot(), kmax.snapshot());
    // SAFETY: as in attention.
    let st = unsafe {
        tkr_key_block_summary(
            dt,
            k.ptr as _,
            n_k,
            h,
            d,
            ts,
            hs,
            bs,
            b0,
            b1,
            kmin.ptr as _,
            kmax.ptr as _,
        )
    };
    let ok = m.check("tkr_key_block_summary", st);
    assert!(k.slack_intact() && kmin.slack_intact() && kmax.slack_intact());
    if !ok {
        assert!(
            kmin.snapshot() == a && kmax.snapshot() == b,
            "written on error"
        );
        return;
    }
    let sn = sn.unwrap();
    let mut wmin = vec![f32::from_bits(0x7fa5_a5a5); sn];
    let mut wmax = wmin.clone();
    // Restore the pre-call bytes so that unwritten blocks compare equal.
    // SAFETY: byte copies of sn floats.
    unsafe {
        core::ptr::copy_nonoverlapping(a.as_ptr(), wmin.as_mut_ptr() as *mut u8, sn * 4);
        core::ptr::copy_nonoverlapping(b.as_ptr(), wmax.as_mut_ptr() as *mut u8, sn * 4);
    }
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    let kn = kn.unwrap();
    match dt {
        TKR_DTYPE_F32 => scalar.key_block_summary(
            Heads::new(view::<f32>(&k, kn), n_k, h, d, ts, hs).unwrap(),
            bs,
            b0..b1,
            &mut wmin,
            &mut wmax,
        ),
        TKR_DTYPE_F16 => scalar.key_block_summary(
            Heads::new(view::<f16>(&k, kn), n_k, h, d, ts, hs).unwrap(),
            bs,
            b0..b1,
            &mut wmin,
            &mut wmax,
        ),
        _ => scalar.key_block_summary(
            Heads::new(view::<bf16>(&k, kn), n_k, h, d, ts, hs).unwrap(),
            bs,
            b0..b1,
            &mut wmin,
            &mut wmax,
        ),
    }
    .unwrap();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
    assert!(
        kmin.snapshot() == bytes(&wmin) && kmax.snapshot() == bytes(&wmax),
        "summary differs from the scalar safe API"
    );
}

pub fn merge(inp: &mut Input) {
    let w = wild(inp);
    let n_parts = size(inp, w, 4);
    let n_rows = size(inp, w, 5);
    let d = size(inp, w, 12);
    let (ps, rs) = strides(inp, n_parts, n_rows, d, w);
    let lps = if inp.bool() { n_rows } else { size(inp, w, 8) };
    let odt = dtype(inp);
    let ors = if inp.u8() % 8 == 0 {
        d.saturating_sub(1)
    } else {
        d.saturating_add(inp.below(1))
    };
    let with_lse = inp.bool();
    let mut m = Model::default();
    let oes = dsize(odt);
    if oes.is_none() || d == 0 {
        m.err(TKR_STATUS_INVALID_ARGUMENT);
    }
    let pn = span3(&mut m, n_parts, n_rows, d, ps, rs);
    let ln = match crate::span(n_parts, n_rows, lps) {
        Err(()) => {
            m.err(TKR_STATUS_BAD_STRIDE);
            None
        }
        Ok(None) => {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
            None
        }
        Ok(s) => s,
    };
    let on = match crate::span(n_rows, d, ors) {
        Err(()) => {
            m.err(TKR_STATUS_BAD_STRIDE);
            None
        }
        Ok(None) => {
            m.err(TKR_STATUS_SIZE_OVERFLOW);
            None
        }
        Ok(s) => s,
    };
    let oes_ = oes.unwrap_or(4);
    let mp = Mode::pick(inp);
    let parts = Buf::new(inp, pn, 4, mp, &mut fill_f32);
    let ml = Mode::pick(inp);
    let lse = Buf::new(inp, ln, 4, ml, &mut fill_f32);
    let out = if inp.u8() % 12 == 0 && parts.mem.is_some() {
        Buf {
            mem: None,
            ptr: parts.ptr,
            elems: on,
            elem_size: oes_,
            mode: Mode::Valid,
        }
    } else {
        let mo = Mode::pick(inp);
        Buf::new(inp, on, oes_, mo, &mut fill_random)
    };
    let mol = if with_lse {
        Mode::pick(inp)
    } else {
        Mode::Null
    };
    let olse = Buf::new(inp, Some(n_rows), 4, mol, &mut fill_random);
    let with_lse = !olse.ptr.is_null();
    if m.errors.is_empty() {
        parts.errors(&mut m);
        lse.errors(&mut m);
        out.errors(&mut m);
        // A NULL out_lse means no lse output.
        if !olse.ptr.is_null() {
            olse.errors(&mut m);
        }
        let r = [parts.range(), lse.range(), out.range(), olse.range()];
        if overlaps(r[2], r[0])
            || overlaps(r[2], r[1])
            || overlaps(r[3], r[0])
            || overlaps(r[3], r[1])
            || overlaps(r[2], r[3])
        {
            m.err(TKR_STATUS_OVERLAP);
        }
    }
    let aliased = out.mem.is_none() && !out.ptr.is_null() && out.range().1 > parts.range().1;
    m.lied = parts.lied() || lse.lied() || out.lied() || olse.lied() || aliased;
    if !m.runnable() {
        return;
    }
    parts.freeze();
    lse.freeze();
    let (ob, lb) = (out.snapshot(), olse.snapshot());
    // SAFETY: as in attention.
    let st = unsafe {
        tkr_attention_merge(
            odt,
            parts.ptr as _,
            n_parts,
            n_rows,
            d,
            ps,
            rs,
            lse.ptr as _,
            lps,
            out.ptr as _,
            ors,
            olse.ptr as _,
        )
    };
    let ok = m.check("tkr_attention_merge", st);
    assert!(
        parts.slack_intact() && lse.slack_intact() && out.slack_intact() && olse.slack_intact()
    );
    if !ok {
        assert!(
            out.snapshot() == ob && olse.snapshot() == lb,
            "written on error"
        );
        return;
    }
    let (pn, ln, on) = (pn.unwrap(), ln.unwrap(), on.unwrap());
    let mut wl = vec![0f32; n_rows];
    // SAFETY: byte copy of the pre-call out_lse (n_rows floats when given).
    if with_lse && n_rows > 0 {
        unsafe {
            core::ptr::copy_nonoverlapping(lb.as_ptr(), wl.as_mut_ptr() as *mut u8, n_rows * 4)
        };
    }
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    macro_rules! go {
        ($o:ty) => {{
            let mut wo = vec![<$o>::default(); on];
            // SAFETY: byte copy of the pre-call output.
            unsafe {
                core::ptr::copy_nonoverlapping(ob.as_ptr(), wo.as_mut_ptr() as *mut u8, ob.len())
            };
            scalar
                .attention_merge::<$o>(
                    n_parts,
                    view(&parts, pn),
                    ps,
                    rs,
                    view(&lse, ln),
                    lps,
                    MatrixMut::new(&mut wo, n_rows, d, ors).unwrap(),
                    with_lse.then_some(&mut wl[..]),
                )
                .unwrap();
            // SAFETY: plain-data bytes of the vector.
            unsafe {
                core::slice::from_raw_parts(
                    wo.as_ptr() as *const u8,
                    on * core::mem::size_of::<$o>(),
                )
            }
            .to_vec()
        }};
    }
    let want = match odt {
        TKR_DTYPE_F32 => go!(f32),
        TKR_DTYPE_F16 => go!(f16),
        _ => go!(bf16),
    };
    assert!(
        out.snapshot() == want,
        "merge differs from the scalar safe API"
    );
    if with_lse {
        let got: Vec<u8> = olse.snapshot();
        let want: Vec<u8> = wl.iter().flat_map(|x| x.to_ne_bytes()).collect();
        assert!(got == want, "merged lse differs");
    }
}
