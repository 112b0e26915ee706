//! The compaction API on every ISA level this CPU has: results against plain-loop
//! oracles (gather, scatter, scatter-add, in-place compaction, KV-cache compaction in
//! both layouts, shared and per-head lists, capacity strides), the index rules, and bad
//! input leaving every buffer untouched.

use proptest::prelude::{any, proptest, ProptestConfig};
use tokenroute::{bf16, f16, ErrorKind, Kernels, KvCacheMut, KvKeep, KvLayout, Matrix, MatrixMut};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn levels() -> Vec<&'static Kernels> {
    let v: Vec<_> = Kernels::all_supported().collect();
    if let Ok(req) = std::env::var("TOKENROUTE_REQUIRE_ISAS") {
        for name in req.split(',').filter(|s| !s.is_empty()) {
            assert!(
                v.iter().any(|k| k.isa().name() == name.trim()),
                "required level {name} unavailable"
            );
        }
    }
    v
}

fn sorted_subset(n: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n as u32).filter(|_| rng.below(2) == 0).collect()
}

/// A 3-byte element: "any element size".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Rgb([u8; 3]);

fn check_gather_scatter<T: Copy + PartialEq + std::fmt::Debug>(
    gen: impl Fn(u64) -> T,
    cols: usize,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let (rows, stride) = (37, cols + 3);
    let src: Vec<T> = (0..rows * stride)
        .map(|i| gen(i as u64 * 31 + seed))
        .collect();
    let idx: Vec<u32> = (0..25).map(|_| rng.below(rows) as u32).collect();
    let fill = gen(u64::MAX);
    for k in levels() {
        // Gather (repeats, any order) into a strided destination.
        let ds = cols + 1;
        let mut dst = vec![fill; idx.len() * ds];
        k.gather_rows(
            Matrix::new(&src, rows, cols, stride).unwrap(),
            &idx,
            MatrixMut::new(&mut dst, idx.len(), cols, ds).unwrap(),
        )
        .unwrap();
        for (j, &i) in idx.iter().enumerate() {
            for c in 0..ds {
                let want = if c < cols {
                    src[i as usize * stride + c]
                } else {
                    fill
                };
                assert_eq!(
                    dst[j * ds + c],
                    want,
                    "{:?} gather row {j} col {c}",
                    k.isa()
                );
            }
        }
        // Scatter a shuffled distinct list back.
        let mut perm: Vec<u32> = (0..rows as u32).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, rng.below(i + 1));
        }
        perm.truncate(20);
        let y: Vec<T> = (0..20 * cols).map(|i| gen(i as u64 + 7777)).collect();
        let mut out = src.clone();
        k.scatter_rows(
            Matrix::dense(&y, 20, cols).unwrap(),
            &perm,
            MatrixMut::new(&mut out, rows, cols, stride).unwrap(),
        )
        .unwrap();
        let mut want = src.clone();
        for (j, &i) in perm.iter().enumerate() {
            want[i as usize * stride..][..cols].copy_from_slice(&y[j * cols..][..cols]);
        }
        assert_eq!(out, want, "{:?} scatter", k.isa());
    }
}

#[test]
fn gather_and_scatter_any_element_type_on_every_level() {
    for cols in [0, 1, 2, 3, 5, 16, 17, 100, 1030] {
        check_gather_scatter(|x| x as f32, cols, 1);
        check_gather_scatter(|x| x as u16, cols, 2);
        check_gather_scatter(|x| x as u8, cols, 3);
        check_gather_scatter(|x| Rgb([x as u8, (x >> 8) as u8, 9]), cols, 4);
        check_gather_scatter(|x| x.wrapping_mul(0x9e37_79b9_7f4a_7c15), cols, 5);
    }
}

#[test]
fn compact_rows_is_stable_and_leaves_the_tail_on_every_level() {
    let mut rng = Rng(99);
    for cols in [1, 3, 16, 64, 777] {
        for _ in 0..5 {
            let (rows, stride) = (50, cols + rng.below(3));
            let data: Vec<u32> = (0..rows * stride).map(|i| i as u32).collect();
            let keep = sorted_subset(rows, &mut rng);
            let mut want = data.clone();
            for (j, &i) in keep.iter().enumerate() {
                for c in 0..cols {
                    want[j * stride + c] = data[i as usize * stride + c];
                }
            }
            for k in levels() {
                let mut d = data.clone();
                let n = k
                    .compact_rows(MatrixMut::new(&mut d, rows, cols, stride).unwrap(), &keep)
                    .unwrap();
                assert_eq!(n, keep.len());
                assert_eq!(d, want, "{:?}", k.isa());
            }
        }
    }
}

/// Side arrays: position ids (i64, i32) and a byte mask compacted with the same list.
#[test]
fn side_arrays_compact_with_the_same_list() {
    let mut rng = Rng(5);
    let n = 1000;
    let keep = sorted_subset(n, &mut rng);
    for k in levels() {
        let mut pos64: Vec<i64> = (0..n as i64).map(|i| i * 3).collect();
        let mut pos32: Vec<i32> = (0..n as i32).collect();
        let mut mask: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            k.compact_rows(MatrixMut::dense(&mut pos64, n, 1).unwrap(), &keep)
                .unwrap(),
            keep.len()
        );
        k.compact_rows(MatrixMut::dense(&mut pos32, n, 1).unwrap(), &keep)
            .unwrap();
        k.compact_rows(MatrixMut::dense(&mut mask, n, 1).unwrap(), &keep)
            .unwrap();
        for (j, &i) in keep.iter().enumerate() {
            assert_eq!(pos64[j], i as i64 * 3);
            assert_eq!(pos32[j], i as i32);
            assert_eq!(mask[j], (i % 251) as u8);
        }
        assert_eq!(
            pos32[keep.len()..],
            (keep.len() as i32..n as i32).collect::<Vec<_>>()[..]
        );
    }
}

/// Oracle for a KV cache: element offset of (t, h, c).
fn kv_off(layout: KvLayout, ts: usize, hs: usize, t: usize, h: usize, c: usize) -> usize {
    let _ = layout;
    t * ts + h * hs + c
}

fn check_kv(
    layout: KvLayout,
    n_tokens: usize,
    n_heads: usize,
    dim: usize,
    extra: usize,
    per_head: bool,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let (ts, hs) = match layout {
        KvLayout::TokenMajor => {
            let hs = dim + extra;
            (n_heads * hs + extra, hs)
        }
        KvLayout::HeadMajor => {
            let ts = dim + extra;
            (ts, (n_tokens + extra) * ts)
        }
    };
    let len = match layout {
        KvLayout::TokenMajor => n_tokens * ts,
        KvLayout::HeadMajor => n_heads * hs,
    };
    let data: Vec<u16> = (0..len).map(|i| i as u16 ^ 0x5a5a).collect();
    let lists: Vec<Vec<u32>> = (0..if per_head { n_heads } else { 1 })
        .map(|_| {
            let mut v: Vec<u32> = (0..n_tokens as u32).collect();
            for i in (1..v.len()).rev() {
                v.swap(i, rng.below(i + 1));
            }
            v.truncate(n_tokens / 2);
            v.sort();
            v
        })
        .collect();
    let flat: Vec<u32> = lists.concat();
    let mut want = data.clone();
    for h in 0..n_heads {
        let list = &lists[if per_head { h } else { 0 }];
        for (j, &t) in list.iter().enumerate() {
            for c in 0..dim {
                want[kv_off(layout, ts, hs, j, h, c)] =
                    data[kv_off(layout, ts, hs, t as usize, h, c)];
            }
        }
    }
    for k in levels() {
        let mut d = data.clone();
        let view = KvCacheMut::new(&mut d, layout, n_tokens, n_heads, dim, ts, hs).unwrap();
        let keep = if per_head {
            KvKeep::PerHead(&flat)
        } else {
            KvKeep::Shared(&flat)
        };
        let n = k.kv_compact(view, keep).unwrap();
        assert_eq!(n, n_tokens / 2);
        assert_eq!(
            d,
            want,
            "{:?} {layout:?} per_head={per_head} extra={extra}",
            k.isa()
        );
    }
}

#[test]
fn kv_compaction_both_layouts_shared_and_per_head_on_every_level() {
    let mut seed = 1;
    for layout in [KvLayout::TokenMajor, KvLayout::HeadMajor] {
        for (t, h, d) in [
            (1, 1, 1),
            (9, 1, 8),
            (17, 4, 64),
            (33, 8, 128),
            (40, 3, 5),
            (300, 3, 16),
            (263, 2, 1),
        ] {
            for extra in [0, 3] {
                for per_head in [false, true] {
                    seed += 1;
                    check_kv(layout, t, h, d, extra, per_head, seed);
                }
            }
        }
    }
}

#[test]
fn kv_dense_views() {
    let mut d = vec![0f32; 4 * 2 * 3];
    assert!(KvCacheMut::dense(&mut d, KvLayout::TokenMajor, 4, 2, 3).is_ok());
    assert!(KvCacheMut::dense(&mut d, KvLayout::HeadMajor, 4, 2, 3).is_ok());
    assert_eq!(
        KvCacheMut::dense(&mut d, KvLayout::HeadMajor, 5, 2, 3)
            .unwrap_err()
            .kind,
        ErrorKind::BufferTooSmall
    );
}

#[test]
fn scatter_add_matches_f32_loop_on_every_level() {
    let mut rng = Rng(3);
    let (rows, d) = (30, 100);
    let h: Vec<f32> = (0..rows * d).map(|i| (i as f32 * 0.37).sin()).collect();
    let idx: Vec<u32> = sorted_subset(rows, &mut rng);
    let y: Vec<f32> = (0..idx.len() * d)
        .map(|i| (i as f32 * 0.11).cos())
        .collect();
    let g: Vec<f32> = (0..idx.len()).map(|j| j as f32 / 7.0).collect();
    for k in levels() {
        for gate in [None, Some(&g[..])] {
            let mut out = h.clone();
            k.scatter_add_rows(
                MatrixMut::dense(&mut out, rows, d).unwrap(),
                &idx,
                Matrix::dense(&y, idx.len(), d).unwrap(),
                gate,
            )
            .unwrap();
            let mut want = h.clone();
            for (j, &i) in idx.iter().enumerate() {
                for c in 0..d {
                    let t = match gate {
                        Some(g) => g[j] * y[j * d + c],
                        None => y[j * d + c],
                    };
                    want[i as usize * d + c] += t;
                }
            }
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
        // bf16 and f16 run through the same API.
        let hb: Vec<bf16> = h.iter().map(|&x| bf16::from_f32(x)).collect();
        let yb: Vec<bf16> = y.iter().map(|&x| bf16::from_f32(x)).collect();
        let mut out = hb.clone();
        k.scatter_add_rows(
            MatrixMut::dense(&mut out, rows, d).unwrap(),
            &idx,
            Matrix::dense(&yb, idx.len(), d).unwrap(),
            Some(&g),
        )
        .unwrap();
        for (j, &i) in idx.iter().enumerate() {
            for c in 0..d {
                let p = i as usize * d + c;
                assert_eq!(
                    out[p],
                    bf16::from_f32(hb[p].to_f32() + g[j] * yb[j * d + c].to_f32())
                );
            }
        }
        let hf: Vec<f16> = h.iter().map(|&x| f16::from_f32(x)).collect();
        let mut out = hf.clone();
        let yf: Vec<f16> = y.iter().map(|&x| f16::from_f32(x)).collect();
        k.scatter_add_rows(
            MatrixMut::dense(&mut out, rows, d).unwrap(),
            &idx,
            Matrix::dense(&yf, idx.len(), d).unwrap(),
            None,
        )
        .unwrap();
        for (j, &i) in idx.iter().enumerate() {
            let p = i as usize * d;
            assert_eq!(out[p], f16::from_f32(hf[p].to_f32() + yf[j * d].to_f32()));
        }
    }
}

#[test]
fn bad_indices_and_shapes_write_nothing() {
    use ErrorKind::*;
    let k = Kernels::active().unwrap();
    let src: Vec<f32> = (0..40).map(|i| i as f32).collect();
    let orig = vec![-1f32; 40];
    let mut dst = orig.clone();
    let mut run_gather = |idx: &[u32], rows: usize| {
        k.gather_rows(
            Matrix::dense(&src, 10, 4).unwrap(),
            idx,
            MatrixMut::dense(&mut dst[..rows * 4], rows, 4).unwrap(),
        )
        .map_err(|e| e.kind)
    };
    assert_eq!(run_gather(&[1, 10], 2), Err(OutOfRange));
    assert_eq!(run_gather(&[1, 2], 3), Err(InvalidArgument));
    assert_eq!(run_gather(&[9, 9, 0], 3), Ok(()));
    dst.copy_from_slice(&orig);

    let y = vec![5f32; 12];
    for (idx, want) in [
        (&[1u32, 4, 1][..], DuplicateIndex),
        (&[1, 10, 2][..], OutOfRange),
        (&[3, 1, 3][..], DuplicateIndex),
    ] {
        let r = k.scatter_rows(
            Matrix::dense(&y, 3, 4).unwrap(),
            idx,
            MatrixMut::dense(&mut dst, 10, 4).unwrap(),
        );
        assert_eq!(r.unwrap_err().kind, want);
        let r = k.scatter_add_rows(
            MatrixMut::dense(&mut dst, 10, 4).unwrap(),
            idx,
            Matrix::dense(&y, 3, 4).unwrap(),
            None,
        );
        assert_eq!(r.unwrap_err().kind, want);
        assert_eq!(dst, orig);
    }
    let r = k.scatter_add_rows(
        MatrixMut::dense(&mut dst, 10, 4).unwrap(),
        &[0, 1, 2],
        Matrix::dense(&y, 3, 4).unwrap(),
        Some(&[1.0, 2.0]),
    );
    assert_eq!(r.unwrap_err().kind, InvalidArgument);
    let r = k.scatter_add_rows(
        MatrixMut::dense(&mut dst, 10, 4).unwrap(),
        &[0, 1],
        Matrix::dense(&y, 3, 4).unwrap(),
        None,
    );
    assert_eq!(r.unwrap_err().kind, InvalidArgument);

    for (keep, want) in [
        (&[1u32, 3, 2][..], UnsortedIndex),
        (&[1, 3, 3][..], DuplicateIndex),
        (&[1, 3, 10][..], OutOfRange),
        (&[3, 2, 10][..], OutOfRange),
    ] {
        let r = k.compact_rows(MatrixMut::dense(&mut dst, 10, 4).unwrap(), keep);
        assert_eq!(r.unwrap_err().kind, want);
        assert_eq!(dst, orig);
    }
    // KV: one bad per-head list among good ones moves nothing.
    let mut cache: Vec<u16> = (0..4 * 3 * 2).map(|i| i as u16).collect();
    let before = cache.clone();
    let lists = [0u32, 2, 3, 1, 0, 3, 2, 2];
    let view = KvCacheMut::dense(&mut cache, KvLayout::TokenMajor, 4, 3, 2).unwrap();
    assert_eq!(
        k.kv_compact(view, KvKeep::PerHead(&lists[..6]))
            .unwrap_err()
            .kind,
        UnsortedIndex
    );
    let view = KvCacheMut::dense(&mut cache, KvLayout::HeadMajor, 4, 3, 2).unwrap();
    assert_eq!(
        k.kv_compact(view, KvKeep::PerHead(&lists[..5]))
            .unwrap_err()
            .kind,
        InvalidArgument
    );
    let view = KvCacheMut::dense(&mut cache, KvLayout::HeadMajor, 4, 3, 2).unwrap();
    assert_eq!(
        k.kv_compact(view, KvKeep::Shared(&[0, 4]))
            .unwrap_err()
            .kind,
        OutOfRange
    );
    assert_eq!(cache, before);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn proptest_compaction_round_trip(rows in 0usize..80, cols in 0usize..40, pad in 0usize..4, seed in any::<u64>()) {
        // gather(keep) then scatter(keep) restores the kept rows; compact_rows equals gather.
        let mut rng = Rng(seed | 1);
        let stride = cols + pad;
        let data: Vec<u32> = (0..rows * stride).map(|_| rng.next() as u32).collect();
        let keep = sorted_subset(rows, &mut rng);
        for k in levels() {
            let mut g = vec![0u32; keep.len() * cols];
            k.gather_rows(Matrix::new(&data, rows, cols, stride).unwrap(), &keep, MatrixMut::dense(&mut g, keep.len(), cols).unwrap()).unwrap();
            let mut back = vec![0u32; rows * stride];
            k.scatter_rows(Matrix::dense(&g, keep.len(), cols).unwrap(), &keep, MatrixMut::new(&mut back, rows, cols, stride).unwrap()).unwrap();
            for &i in &keep {
                let r = i as usize * stride;
                assert_eq!(back[r..r + cols], data[r..r + cols]);
            }
            let mut c = data.clone();
            let n = k.compact_rows(MatrixMut::new(&mut c, rows, cols, stride).unwrap(), &keep).unwrap();
            for j in 0..n {
                assert_eq!(c[j * stride..j * stride + cols], g[j * cols..(j + 1) * cols]);
            }
        }
    }
}

/// Found by fuzzing (ffi_args timed out): empty per-head keep lists over a cache with
/// a huge head count and no tokens must return at once, not check each empty list.
#[test]
fn kv_compaction_empty_per_head_lists_never_walk_the_heads() {
    for k in levels() {
        let mut data: [f32; 0] = [];
        let heads = usize::MAX / 8;
        let view = KvCacheMut::new(&mut data, KvLayout::HeadMajor, 0, heads, 1, 1, 1).unwrap();
        assert_eq!(k.kv_compact(view, KvKeep::PerHead(&[])).unwrap(), 0);
    }
}
