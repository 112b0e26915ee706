//! Differential target for the compaction family and the fused route call: decodes
//! shapes, strides, element types and index lists (in range or not, duplicates,
//! unsorted, ascending) from the input, runs every ISA level and requires:
//! - gather / scatter / compact_rows / kv_compact (token-major and head-major, shared
//!   and per-head lists): the bytes a plain loop produces, on every level; the error
//!   the index rules imply (out of range first, then duplicates / order at the first
//!   offending position), with nothing written;
//! - the gated scatter-add (f32, f16, bf16, with and without gate): bit for bit the
//!   documented arithmetic (product rounded to f32, sum rounded to f32, rounded to the
//!   element type to nearest even, NaN as the type's canonical quiet NaN);
//! - the route call (top-k by position or score, fixed / capacity / per-row k, and
//!   threshold, with forced keeps, valid length, keep mask): equal on every level to
//!   the scalar level's score followed by a sorting oracle and a plain-loop gather;
//! - nothing written outside the described output elements (stride gaps, margins).
#![no_main]

use half::{bf16, f16};
use libfuzzer_sys::fuzz_target;
use tokenroute::{
    Activation, Element, ErrorKind, Kernels, KvCacheMut, KvKeep, KvLayout, Matrix, MatrixMut,
    Order, RouteOut, RouteSelect, RowSpec, TopK,
};
use tokenroute_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    match inp.u8() % 16 {
        0 => copy_ops::<u8>(&mut inp, |i| i.u8()),
        1 => copy_ops::<u16>(&mut inp, |i| i.u16()),
        2 | 3 => copy_ops::<u32>(&mut inp, |i| i.u32()),
        4 => copy_ops::<u64>(&mut inp, |i| i.u64()),
        5 => copy_ops::<[u8; 3]>(&mut inp, |i| [i.u8(), i.u8(), i.u8()]),
        6 => scatter_add::<f32>(&mut inp),
        7 => scatter_add::<f16>(&mut inp),
        8 => scatter_add::<bf16>(&mut inp),
        9 => kv::<u16>(&mut inp, |i| i.u16()),
        10 => kv::<u32>(&mut inp, |i| i.u32()),
        11 => kv::<u8>(&mut inp, |i| i.u8()),
        12 => route::<f32>(&mut inp),
        13 => route::<f16>(&mut inp),
        _ => route::<bf16>(&mut inp),
    }
});

/// What an index list must satisfy (the module docs of `ops::compact`).
#[derive(Clone, Copy, PartialEq)]
enum Rule {
    InRange,
    Distinct,
    Ascending,
}

/// The error the index rules imply: out of range first, then the first offending
/// position (ascending), or any duplicate (distinct).
fn index_error(idx: &[u32], n: usize, rule: Rule) -> Option<ErrorKind> {
    if idx.iter().any(|&i| i as usize >= n) {
        return Some(ErrorKind::OutOfRange);
    }
    match rule {
        Rule::InRange => None,
        Rule::Distinct => {
            let mut s = idx.to_vec();
            s.sort_unstable();
            s.windows(2)
                .any(|w| w[0] == w[1])
                .then_some(ErrorKind::DuplicateIndex)
        }
        Rule::Ascending => idx.windows(2).find(|w| w[1] <= w[0]).map(|w| {
            if w[0] == w[1] {
                ErrorKind::DuplicateIndex
            } else {
                ErrorKind::UnsortedIndex
            }
        }),
    }
}

/// An index list over `n` rows in the given style, sometimes corrupted (an index out of
/// range, a duplicate, a swap).
fn index_list(inp: &mut Input, n: usize, rule: Rule, max: usize) -> Vec<u32> {
    let mut v: Vec<u32> = match rule {
        Rule::InRange => {
            let c = inp.len(max);
            (0..c).map(|_| inp.below(n.max(1) - 1) as u32).collect()
        }
        Rule::Distinct => {
            // A shuffled subset (Fisher-Yates driven by the input).
            let mut all: Vec<u32> = (0..n as u32).collect();
            let c = inp.below(n.min(max));
            for j in 0..c {
                let r = j + inp.below(n - j - 1);
                all.swap(j, r);
            }
            all.truncate(c);
            if inp.bool() {
                all.sort_unstable();
            }
            all
        }
        Rule::Ascending => {
            let density = inp.u8();
            (0..n as u32)
                .filter(|_| inp.u8() <= density)
                .take(max)
                .collect()
        }
    };
    if n == 0 {
        v.clear();
    }
    // Corruptions: each rare, so that most lists are valid.
    if inp.u8() % 8 == 0 {
        let v_len = v.len();
        let at = inp.below(v_len);
        let bad = match inp.u8() % 4 {
            0 => u32::MAX,
            1 => n as u32,
            _ => n as u32 + inp.below(3) as u32,
        };
        v.insert(at, bad);
    }
    if inp.u8() % 8 == 0 && !v.is_empty() {
        let at = inp.below(v.len() - 1);
        let x = v[at];
        v.insert(at, x);
    }
    if inp.u8() % 8 == 0 && v.len() >= 2 {
        let at = inp.below(v.len() - 2);
        v.swap(at, at + 1);
    }
    v
}

/// Rows of `cols` elements, `stride` apart, with `stride - cols` gap elements.
fn rows_of<T: Copy>(
    inp: &mut Input,
    rows: usize,
    cols: usize,
    stride: usize,
    gen: fn(&mut Input) -> T,
) -> Vec<T> {
    let span = if rows == 0 {
        0
    } else {
        (rows - 1) * stride + cols
    };
    (0..span + inp.below(2)).map(|_| gen(inp)).collect()
}

fn copy_ops<T: Copy + PartialEq + core::fmt::Debug>(inp: &mut Input, gen: fn(&mut Input) -> T) {
    let cols = inp.len(70);
    let n = inp.len(150);
    let stride = cols + inp.below(3);
    let src = rows_of(inp, n, cols, stride, gen);
    let mark = gen(inp);
    match inp.u8() % 4 {
        0 => {
            // Gather (duplicates, any order).
            let idx = index_list(inp, n, Rule::InRange, 200);
            let ds = cols + inp.below(2);
            let dlen = if idx.is_empty() {
                0
            } else {
                (idx.len() - 1) * ds + cols
            } + 2;
            let want_err = index_error(&idx, n, Rule::InRange);
            for k in Kernels::all_supported() {
                let mut dst = vec![mark; dlen];
                let r = k.gather_rows(
                    Matrix::new(&src, n, cols, stride).unwrap(),
                    &idx,
                    MatrixMut::new(&mut dst, idx.len(), cols, ds).unwrap(),
                );
                assert_eq!(r.err().map(|e| e.kind), want_err, "{:?} gather", k.isa());
                let mut want = vec![mark; dlen];
                if want_err.is_none() {
                    for (j, &i) in idx.iter().enumerate() {
                        let i = i as usize;
                        want[j * ds..j * ds + cols]
                            .copy_from_slice(&src[i * stride..i * stride + cols]);
                    }
                }
                assert!(dst == want, "{:?}: gather differs", k.isa());
            }
        }
        1 => {
            // Scatter (distinct, any order) from `src` rows into a larger destination.
            let dn = inp.len(200);
            let idx = index_list(inp, dn, Rule::Distinct, n);
            let idx = &idx[..idx.len().min(n)];
            let ds = cols + inp.below(2);
            let dst0 = rows_of(inp, dn, cols, ds, gen);
            let want_err = index_error(idx, dn, Rule::Distinct);
            let mut want = dst0.clone();
            if want_err.is_none() {
                for (j, &i) in idx.iter().enumerate() {
                    let i = i as usize;
                    want[i * ds..i * ds + cols]
                        .copy_from_slice(&src[j * stride..j * stride + cols]);
                }
            }
            for k in Kernels::all_supported() {
                let mut dst = dst0.clone();
                let r = k.scatter_rows(
                    Matrix::new(&src, idx.len(), cols, stride).unwrap(),
                    idx,
                    MatrixMut::new(&mut dst, dn, cols, ds).unwrap(),
                );
                assert_eq!(r.err().map(|e| e.kind), want_err, "{:?} scatter", k.isa());
                assert!(dst == want, "{:?}: scatter differs", k.isa());
            }
        }
        _ => {
            // In-place compaction of the rows, and of two side arrays (cols = 1).
            let keep = index_list(inp, n, Rule::Ascending, 1000);
            let want_err = index_error(&keep, n, Rule::Ascending);
            let pos: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2654435761)).collect();
            let mut want = src.clone();
            let mut want_pos = pos.clone();
            if want_err.is_none() {
                for (j, &i) in keep.iter().enumerate() {
                    let i = i as usize;
                    want.copy_within(i * stride..i * stride + cols, j * stride);
                    want_pos[j] = pos[i];
                }
            }
            for k in Kernels::all_supported() {
                let mut data = src.clone();
                let r = k.compact_rows(MatrixMut::new(&mut data, n, cols, stride).unwrap(), &keep);
                assert_eq!(
                    r.as_ref().err().map(|e| e.kind),
                    want_err,
                    "{:?} compact",
                    k.isa()
                );
                if want_err.is_none() {
                    assert_eq!(r.unwrap(), keep.len());
                }
                assert!(data == want, "{:?}: compact_rows differs", k.isa());
                let mut p = pos.clone();
                let r = k.compact_rows(MatrixMut::new(&mut p, n, 1, 1).unwrap(), &keep);
                assert_eq!(r.err().map(|e| e.kind), want_err);
                assert_eq!(p, want_pos, "{:?}: side array differs", k.isa());
            }
        }
    }
}

/// The element types of the scatter-add, with the documented rounding.
trait Num: Element + core::fmt::Debug {
    fn gen(inp: &mut Input) -> Self;
    fn to32(self) -> f32;
    /// Round to nearest even (subnormals kept), NaN as the canonical quiet NaN.
    fn of32(x: f32) -> Self;
    fn bits(self) -> u32;
}

impl Num for f32 {
    fn gen(inp: &mut Input) -> f32 {
        inp.f32()
    }
    fn to32(self) -> f32 {
        self
    }
    fn of32(x: f32) -> f32 {
        if x.is_nan() {
            f32::from_bits(0x7fc0_0000)
        } else {
            x
        }
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl Num for f16 {
    fn gen(inp: &mut Input) -> f16 {
        f16::from_bits(inp.f16_bits())
    }
    fn to32(self) -> f32 {
        self.to_f32()
    }
    fn of32(x: f32) -> f16 {
        if x.is_nan() {
            f16::from_bits(0x7e00)
        } else {
            f16::from_f32(x)
        }
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}
impl Num for bf16 {
    fn gen(inp: &mut Input) -> bf16 {
        bf16::from_bits(inp.bf16_bits())
    }
    fn to32(self) -> f32 {
        self.to_f32()
    }
    fn of32(x: f32) -> bf16 {
        if x.is_nan() {
            bf16::from_bits(0x7fc0)
        } else {
            bf16::from_f32(x)
        }
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
}

fn bits<T: Num>(v: &[T]) -> Vec<u32> {
    v.iter().map(|x| x.bits()).collect()
}

fn scatter_add<T: Num>(inp: &mut Input) {
    let d = inp.len(80);
    let n = inp.len(120);
    let hs = d + inp.below(3);
    let h0 = rows_of(inp, n, d, hs, T::gen);
    let idx = index_list(inp, n, Rule::Distinct, 150);
    let ys = d + inp.below(3);
    let y = rows_of(inp, idx.len(), d, ys, T::gen);
    let gate: Option<Vec<f32>> = inp
        .bool()
        .then(|| (0..idx.len()).map(|_| inp.f32()).collect());
    let want_err = index_error(&idx, n, Rule::Distinct);
    let mut want = h0.clone();
    if want_err.is_none() {
        for (j, &i) in idx.iter().enumerate() {
            let i = i as usize;
            for e in 0..d {
                let yv = y[j * ys + e].to32();
                let p = match &gate {
                    Some(g) => g[j] * yv,
                    None => yv,
                };
                want[i * hs + e] = T::of32(want[i * hs + e].to32() + p);
            }
        }
    }
    let want = bits(&want);
    for k in Kernels::all_supported() {
        let mut h = h0.clone();
        let r = k.scatter_add_rows(
            MatrixMut::new(&mut h, n, d, hs).unwrap(),
            &idx,
            Matrix::new(&y, idx.len(), d, ys).unwrap(),
            gate.as_deref(),
        );
        assert_eq!(
            r.err().map(|e| e.kind),
            want_err,
            "{:?} scatter_add",
            k.isa()
        );
        let got = bits(&h);
        if got != want {
            let p = got.iter().zip(&want).position(|(a, b)| a != b).unwrap();
            panic!(
                "{:?}: scatter_add_{:?} differs at element {p}: got {:#x} want {:#x}",
                k.isa(),
                T::DTYPE,
                got[p],
                want[p]
            );
        }
    }
}

fn kv<T: Copy + PartialEq + core::fmt::Debug>(inp: &mut Input, gen: fn(&mut Input) -> T) {
    let layout = if inp.bool() {
        KvLayout::TokenMajor
    } else {
        KvLayout::HeadMajor
    };
    let n_tokens = inp.len(100);
    let n_heads = inp.below(4);
    let head_dim = inp.len(40);
    let (inner_n, outer_n) = match layout {
        KvLayout::TokenMajor => (n_heads, n_tokens),
        KvLayout::HeadMajor => (n_tokens, n_heads),
    };
    // Dense, or padded strides (a head-major cache sized for a larger capacity).
    let inner_s = head_dim + if inp.bool() { 0 } else { inp.below(3) };
    let inner_span = inner_n.max(1).saturating_sub(1) * inner_s + head_dim;
    let outer_s = inner_span
        + if inp.bool() {
            0
        } else {
            inp.below(2 * head_dim + 2)
        };
    let (ts, hs) = match layout {
        KvLayout::TokenMajor => (outer_s, inner_s),
        KvLayout::HeadMajor => (inner_s, outer_s),
    };
    let span = if outer_n == 0 || inner_n == 0 {
        0
    } else {
        (outer_n - 1) * outer_s + inner_span
    };
    let cache0: Vec<T> = (0..span + inp.below(2)).map(|_| gen(inp)).collect();
    let per_head = inp.bool();
    let lists: Vec<Vec<u32>> = if per_head {
        let first = index_list(inp, n_tokens, Rule::Ascending, 1000);
        let mut l = vec![first];
        for _ in 1..n_heads {
            let mut v = index_list(inp, n_tokens, Rule::Ascending, l[0].len());
            // The same length in every head (usually).
            if inp.u8() % 16 != 0 {
                v.resize(l[0].len(), 0);
                if v.len() > 1 {
                    // Keep it ascending where resize padded zeros.
                    for j in 1..v.len() {
                        if v[j] <= v[j - 1] && v[j] == 0 {
                            v[j] = v[j - 1].saturating_add(1);
                        }
                    }
                }
            }
            l.push(v);
        }
        if n_heads == 0 {
            l.clear();
        }
        l
    } else {
        vec![index_list(inp, n_tokens, Rule::Ascending, 1000)]
    };
    let flat: Vec<u32> = lists.concat();
    let row = |t: usize, h: usize| t * ts + h * hs;
    // The documented outcome.
    let (want_err, n_keep) = if per_head {
        if n_heads == 0 {
            (None, 0)
        } else if flat.len() % n_heads != 0 {
            (Some(ErrorKind::InvalidArgument), 0)
        } else {
            let nk = flat.len() / n_heads;
            let e = (0..n_heads)
                .find_map(|h| index_error(&flat[h * nk..(h + 1) * nk], n_tokens, Rule::Ascending));
            (e, nk)
        }
    } else {
        (index_error(&flat, n_tokens, Rule::Ascending), flat.len())
    };
    let mut want = cache0.clone();
    if want_err.is_none() {
        for h in 0..n_heads {
            let list = if per_head {
                &flat[h * n_keep..(h + 1) * n_keep]
            } else {
                &flat[..]
            };
            for (j, &t) in list.iter().enumerate() {
                let (s, dd) = (row(t as usize, h), row(j, h));
                want.copy_within(s..s + head_dim, dd);
            }
        }
    }
    for k in Kernels::all_supported() {
        let mut c = cache0.clone();
        let cache = KvCacheMut::new(&mut c, layout, n_tokens, n_heads, head_dim, ts, hs).unwrap();
        let keep = if per_head {
            KvKeep::PerHead(&flat)
        } else {
            KvKeep::Shared(&flat)
        };
        let r = k.kv_compact(cache, keep);
        assert_eq!(
            r.as_ref().err().map(|e| e.kind),
            want_err,
            "{:?} kv_compact {layout:?}",
            k.isa()
        );
        if want_err.is_none() {
            assert_eq!(r.unwrap(), n_keep);
        }
        assert!(
            c == want,
            "{:?}: kv_compact {layout:?} per_head={per_head} differs",
            k.isa()
        );
    }
}

/// The top-k order: non-NaN first, larger first (-0 == +0), lower index first.
fn rank(s: &[f32], a: usize, b: usize) -> core::cmp::Ordering {
    let (x, y) = (s[a], s[b]);
    x.is_nan()
        .cmp(&y.is_nan())
        .then(y.partial_cmp(&x).unwrap_or(core::cmp::Ordering::Equal))
        .then(a.cmp(&b))
}

fn route<T: Num>(inp: &mut Input) {
    let n = inp.len(300);
    let d = inp.len(48);
    let hs = d + inp.below(3);
    let h = rows_of(inp, n, d, hs, T::gen);
    let w: Vec<T> = (0..d).map(|_| T::gen(inp)).collect();
    let bias = inp.bool().then(|| inp.f32());
    let act = if inp.bool() {
        Activation::Sigmoid
    } else {
        Activation::None
    };
    let valid_l = [inp.below(n)];
    let with_valid = inp.u8() % 4 == 0;
    let valid = if with_valid { valid_l[0] } else { n };
    let keep_first = if inp.bool() { inp.below(4) } else { 0 };
    let keep_last = if inp.bool() { inp.below(4) } else { 0 };
    let mask: Option<Vec<u8>> =
        (inp.u8() % 4 == 0).then(|| (0..n).map(|_| (inp.u8() % 16 == 0) as u8).collect());
    let spec = RowSpec {
        valid_lens: with_valid.then_some(&valid_l[..]),
        keep_first,
        keep_last,
        keep_mask: mask.as_ref().map(|m| Matrix::new(m, 1, n, n).unwrap()),
    };
    let kf = keep_first.min(valid);
    let kl = keep_last.min(valid - kf);
    let forced: Vec<usize> = (0..valid)
        .filter(|&i| i < kf || i >= valid - kl || mask.as_ref().is_some_and(|m| m[i] != 0))
        .collect();
    // The scores, from the scalar level (score_diff checks the scoring itself).
    let scalar = Kernels::for_isa(tokenroute::Isa::Scalar).unwrap();
    let mut s = vec![0f32; valid];
    scalar
        .score(
            Matrix::new(&h, valid, d, hs).unwrap(),
            Matrix::new(&w, 1, d, d).unwrap(),
            bias.as_ref().map(core::slice::from_ref),
            act,
            MatrixMut::new(&mut s, valid, 1, 1).unwrap(),
        )
        .unwrap();
    let per_row = [inp.below(valid)];
    let threshold = inp.u8() % 3 == 0;
    let tau = inp.f32();
    let order = if inp.bool() {
        Order::Score
    } else {
        Order::Position
    };
    let topk = match inp.u8() % 3 {
        0 => TopK::Fixed(inp.below(valid)),
        1 => TopK::PerRow(&per_row),
        _ => TopK::Capacity(inp.below(1000) as f64 / 1000.0),
    };
    let select = if threshold {
        RouteSelect::Threshold(tau)
    } else {
        RouteSelect::TopK(topk, order)
    };
    // The oracle's selection.
    let (want_sel, needed): (Option<Vec<usize>>, usize) = if threshold {
        let sel: Vec<usize> = (0..valid)
            .filter(|&i| s[i] > tau || forced.binary_search(&i).is_ok())
            .collect();
        (Some(sel), valid)
    } else {
        let kr = match topk {
            TopK::Fixed(k) => k,
            TopK::PerRow(k) => k[0],
            TopK::Capacity(c) => (c * valid as f64).ceil() as usize,
        };
        if forced.len() > kr {
            (None, kr)
        } else {
            let mut rest: Vec<usize> = (0..valid)
                .filter(|i| forced.binary_search(i).is_err())
                .collect();
            rest.sort_by(|&a, &b| rank(&s, a, b));
            let mut sel = forced.clone();
            sel.extend_from_slice(&rest[..kr - forced.len()]);
            match order {
                Order::Position => sel.sort(),
                Order::Score => sel.sort_by(|&a, &b| rank(&s, a, b)),
            }
            (Some(sel), kr)
        }
    };
    let short = inp.u8() % 16 == 0 && needed > 0;
    let room = if short {
        needed - 1
    } else {
        needed + inp.below(2)
    };
    let with_scores = inp.bool();
    // out_idx = NULL is documented as "not wanted": the same scores and rows.
    let with_idx = inp.u8() % 4 != 0;
    let rs = d + inp.below(2);
    let rlen = if room == 0 { 0 } else { (room - 1) * rs + d };
    let ws_mode = inp.u8() % 3;
    let want_err = if short {
        Some(ErrorKind::BufferTooSmall)
    } else if want_sel.is_none() {
        Some(ErrorKind::InvalidArgument)
    } else {
        None
    };
    let mark = T::of32(-1234.5);
    for k in Kernels::all_supported() {
        let mut idx = vec![u32::MAX; room];
        let mut sc = vec![f32::from_bits(0x7fa5_a5a5); room];
        let mut rows = vec![mark; rlen];
        let mut ws = vec![0u64; tokenroute::route_workspace_len(n)];
        let r = k.route(
            Matrix::new(&h, n, d, hs).unwrap(),
            &w,
            bias,
            act,
            select,
            &spec,
            RouteOut {
                indices: with_idx.then_some(&mut idx[..]),
                scores: with_scores.then_some(&mut sc[..]),
                rows: MatrixMut::new(&mut rows, room, d, rs).unwrap(),
            },
            match ws_mode {
                0 => Some(&mut ws[..]),
                _ => None,
            },
        );
        assert_eq!(
            r.as_ref().err().map(|e| e.kind),
            want_err,
            "{:?} route {select:?}",
            k.isa()
        );
        let sel: &[usize] = match (&want_sel, want_err) {
            (Some(v), None) => v,
            _ => &[],
        };
        if want_err.is_none() {
            assert_eq!(r.unwrap(), sel.len());
        }
        let mut want_idx = vec![u32::MAX; room];
        let mut want_sc = vec![f32::from_bits(0x7fa5_a5a5); room];
        let mut want_rows = vec![mark; rlen];
        for (j, &i) in sel.iter().enumerate() {
            if with_idx {
                want_idx[j] = i as u32;
            }
            if with_scores {
                want_sc[j] = s[i];
            }
            want_rows[j * rs..j * rs + d].copy_from_slice(&h[i * hs..i * hs + d]);
        }
        assert_eq!(idx, want_idx, "{:?} route {select:?} indices", k.isa());
        assert_eq!(
            sc.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            want_sc.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "{:?} route scores",
            k.isa()
        );
        assert_eq!(bits(&rows), bits(&want_rows), "{:?} route rows", k.isa());
    }
}
