//! The attention API (safe Rust and C entry points): the dispatch wiring on every
//! level, a naive f64 reference, and bad input (a clear status, nothing written).

use half::bf16;
use tokenroute::ffi::attend::*;
use tokenroute::ffi::score::TKR_DTYPE_F32;
use tokenroute::ffi::*;
use tokenroute::{
    AttendExtras, AttendOptions, ErrorKind, Heads, HeadsMut, Isa, Kernels, KeySubset, ListsPer,
    MatrixMut,
};

struct Rng(u64);
impl Rng {
    fn f(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

const CANARY: f32 = 12345.5;

/// Naive f64 attention over `keys` for a dense [n, h, d] layout.
#[allow(clippy::too_many_arguments)]
fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    keys: &[usize],
    visible: &dyn Fn(usize, usize) -> bool,
) -> (Vec<f64>, Vec<f64>) {
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0.0; n_q * h_q * d];
    let mut lse = vec![f64::NEG_INFINITY; n_q * h_q];
    for i in 0..n_q {
        for h in 0..h_q {
            let g = h / (h_q / h_kv);
            let ks: Vec<usize> = keys.iter().cloned().filter(|&t| visible(i, t)).collect();
            if ks.is_empty() {
                continue;
            }
            let xs: Vec<f64> = ks
                .iter()
                .map(|&t| {
                    (0..d)
                        .map(|e| q[(i * h_q + h) * d + e] as f64 * k[(t * h_kv + g) * d + e] as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let ps: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
            let l: f64 = ps.iter().sum();
            for e in 0..d {
                out[(i * h_q + h) * d + e] = ks
                    .iter()
                    .zip(&ps)
                    .map(|(&t, p)| p * v[(t * h_kv + g) * d + e] as f64)
                    .sum::<f64>()
                    / l;
            }
            lse[i * h_q + h] = m + l.ln();
        }
    }
    (out, lse)
}

#[test]
fn every_level_matches_the_reference_and_each_other() {
    let (n_q, h_q, h_kv, d, n_k) = (7, 8, 2, 80, 300);
    let mut r = Rng(99);
    let q: Vec<f32> = (0..n_q * h_q * d).map(|_| r.f()).collect();
    let k: Vec<f32> = (0..n_k * h_kv * d).map(|_| r.f()).collect();
    let v: Vec<f32> = (0..n_k * h_kv * d).map(|_| r.f()).collect();
    let sel: Vec<u32> = (0..n_k as u32).filter(|t| t % 3 != 1).collect();
    let k_pos: Vec<u32> = (0..n_k as u32).map(|t| 2 * t).collect();
    let q_pos: Vec<u32> = (0..n_q as u32).map(|i| 300 + 40 * i).collect();
    let keys: Vec<usize> = sel.iter().map(|&t| t as usize).collect();
    let vis = |i: usize, t: usize| k_pos[t] <= q_pos[i] && q_pos[i] - 200 < k_pos[t];
    let (want, want_lse) = reference(&q, &k, &v, n_q, h_q, h_kv, d, &keys, &vis);
    let mut first: Option<(Vec<f32>, Vec<f32>, Vec<f32>)> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; n_q * h_q * d];
        let mut lse = vec![0f32; n_q * h_q];
        let mut mass = vec![0f32; n_k];
        let opts = AttendOptions {
            causal: true,
            window: 200,
            q_positions: Some(&q_pos),
            k_positions: Some(&k_pos),
            ..Default::default()
        };
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, h_kv, d).unwrap(),
            Heads::dense(&v, n_k, h_kv, d).unwrap(),
            KeySubset::Indices(&sel),
            &opts,
            HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
            AttendExtras {
                lse: Some((&mut lse, 0)),
                mass: Some((&mut mass, 0)),
            },
        )
        .unwrap();
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 1e-5,
                "{:?} out {i}: {a} vs {b}",
                kern.isa()
            );
        }
        for (a, b) in lse.iter().zip(&want_lse) {
            assert!((*a as f64 - b).abs() < 1e-5 * (1.0 + b.abs()));
        }
        // Each visible (row) distributes a mass of 1.
        let total: f64 = mass.iter().map(|&x| x as f64).sum();
        let rows = want_lse.iter().filter(|x| x.is_finite()).count();
        assert!(
            (total - rows as f64).abs() < 1e-3,
            "mass {total} vs {rows} rows"
        );
        match &first {
            None => first = Some((out, lse, mass)),
            Some((o, l, m)) => {
                assert_eq!(&out, o, "{:?} differs", kern.isa());
                assert_eq!(&lse, l);
                assert_eq!(&mass, m);
            }
        }
    }
    assert!(Kernels::for_isa(Isa::Scalar).is_some());
}

/// The mass bound of the header (`tkr_attention_options.mass`), with keys listed many
/// times: an element receiving N probabilities carries the f32 summation term
/// 2^-24 N (|m| + S) (found by the fuzzer with 150 copies of one key).
#[test]
fn mass_of_repeated_keys_is_within_the_documented_bound() {
    let (n_q, d, n_k) = (3, 4, 3);
    let mut r = Rng(7);
    let q: Vec<f32> = (0..n_q * d).map(|_| r.f()).collect();
    let k: Vec<f32> = (0..n_k * d).map(|_| r.f()).collect();
    let v = vec![1f32; n_k * d];
    // Equal probabilities added over and over round the same way: the summation term
    // dominates (without it this test fails).
    let mut sel = vec![0u32; 3000];
    sel.extend([1u32; 500]);
    sel.push(2);
    let scale = 1.0 / (d as f64).sqrt();
    let m0 = [0.5f32, 0.0, 3.0];
    // Exact mass, the count of added probabilities and A.
    let (mut exact, mut terms, mut a_max) = ([0f64; 3], [0f64; 3], 0f64);
    for i in 0..n_q {
        let dots: Vec<(f64, f64)> = (0..n_k)
            .map(|t| {
                let p = (0..d).map(|e| q[i * d + e] as f64 * k[t * d + e] as f64);
                let (dot, abs) = p.fold((0.0, 0.0), |(s, a), x| (s + x, a + x.abs()));
                (dot * scale, abs * scale)
            })
            .collect();
        let xs: Vec<f64> = sel.iter().map(|&t| dots[t as usize].0).collect();
        a_max = dots.iter().map(|x| x.1).fold(a_max, f64::max);
        let m = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let l: f64 = xs.iter().map(|x| (x - m).exp()).sum();
        for (&t, x) in sel.iter().zip(&xs) {
            exact[t as usize] += (x - m).exp() / l;
            terms[t as usize] += 1.0;
        }
    }
    let mut first: Option<Vec<f32>> = None;
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; n_q * d];
        let mut mass = m0.to_vec();
        kern.attention(
            Heads::dense(&q, n_q, 1, d).unwrap(),
            Heads::dense(&k, n_k, 1, d).unwrap(),
            Heads::dense(&v, n_k, 1, d).unwrap(),
            KeySubset::Indices(&sel),
            &AttendOptions::default(),
            HeadsMut::dense(&mut out, n_q, 1, d).unwrap(),
            AttendExtras {
                lse: None,
                mass: Some((&mut mass, 0)),
            },
        )
        .unwrap();
        for j in 0..n_k {
            let (m, s) = (m0[j].abs() as f64, exact[j]);
            let bound = 2f64.powi(-17) * (1.0 + a_max) * (1.0 + n_q as f64 / 64.0) * (1.0 + s)
                + 2f64.powi(-24) * terms[j] * (m + s)
                + 2f64.powi(-22) * (1.0 + m);
            let err = (mass[j] as f64 - (m0[j] as f64 + s)).abs();
            assert!(
                err <= bound,
                "{:?} mass {j}: {} vs {} (err {err:e}, bound {bound:e})",
                kern.isa(),
                mass[j],
                m0[j] as f64 + s
            );
        }
        match &first {
            None => first = Some(mass),
            Some(f) => assert_eq!(&mass, f, "{:?} differs", kern.isa()),
        }
    }
}

#[test]
fn bf16_dot_option_is_accurate_where_available() {
    let (n_q, h_q, h_kv, d, n_k) = (40, 4, 1, 128, 200);
    let mut r = Rng(5);
    let q: Vec<bf16> = (0..n_q * h_q * d).map(|_| bf16::from_f32(r.f())).collect();
    let k: Vec<bf16> = (0..n_k * h_kv * d).map(|_| bf16::from_f32(r.f())).collect();
    let v: Vec<bf16> = (0..n_k * h_kv * d).map(|_| bf16::from_f32(r.f())).collect();
    let f = |x: &[bf16]| x.iter().map(|b| b.to_f32()).collect::<Vec<f32>>();
    let keys: Vec<usize> = (0..n_k).collect();
    let (want, _) = reference(&f(&q), &f(&k), &f(&v), n_q, h_q, h_kv, d, &keys, &|_, _| {
        true
    });
    for kern in Kernels::all_supported() {
        let mut out = vec![0f32; n_q * h_q * d];
        let opts = AttendOptions {
            bf16_dot: true,
            ..Default::default()
        };
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, h_kv, d).unwrap(),
            Heads::dense(&v, n_k, h_kv, d).unwrap(),
            KeySubset::Dense,
            &opts,
            HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
            AttendExtras::default(),
        )
        .unwrap();
        // Values |v| <= 1: the documented bound is 2^-8 (1 + A) plus the exact path's.
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!(
                (*a as f64 - b).abs() < 2f64.powi(-8) * 4.0,
                "{:?} out {i}: {a} vs {b}",
                kern.isa()
            );
        }
    }
}

fn err<T>(r: tokenroute::Result<T>) -> ErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

#[test]
fn safe_api_rejects_bad_input_and_writes_nothing() {
    let kern = Kernels::active().unwrap();
    let (n_q, h_q, d, n_k) = (2, 4, 8, 10);
    let q = vec![0.5f32; n_q * h_q * d];
    let kv = vec![0.25f32; n_k * 4 * d];
    let qp = vec![3u32; n_q];
    let kp = vec![1u32; n_k];
    let run = |keys: KeySubset<'_>, opts: AttendOptions<'_>, h_kv: usize, d_q: usize| {
        let mut out = vec![CANARY; n_q * h_q * d];
        let r = kern.attention(
            Heads::dense(&q[..n_q * h_q * d_q], n_q, h_q, d_q).unwrap(),
            Heads::dense(&kv[..n_k * h_kv * d], n_k, h_kv, d).unwrap(),
            Heads::dense(&kv[..n_k * h_kv * d], n_k, h_kv, d).unwrap(),
            keys,
            &opts,
            HeadsMut::dense(&mut out[..n_q * h_q * d_q], n_q, h_q, d_q).unwrap(),
            AttendExtras::default(),
        );
        if r.is_err() {
            assert!(out.iter().all(|&x| x == CANARY), "written on error");
        }
        r
    };
    let def = AttendOptions::default;
    assert_eq!(
        err(run(KeySubset::Dense, def(), 3, d)),
        ErrorKind::InvalidArgument
    ); // 4 % 3
    assert_eq!(
        err(run(KeySubset::Dense, def(), 2, 4)),
        ErrorKind::InvalidArgument
    ); // d differs
    assert_eq!(
        err(run(KeySubset::Dense, def(), 2, 0)),
        ErrorKind::InvalidArgument
    ); // d = 0
    assert_eq!(
        err(run(KeySubset::Indices(&[1, 10]), def(), 2, d)),
        ErrorKind::OutOfRange
    );
    let causal = AttendOptions {
        causal: true,
        ..def()
    };
    assert_eq!(
        err(run(KeySubset::Dense, causal, 2, d)),
        ErrorKind::NullPointer
    );
    let windowed = AttendOptions {
        window: 4,
        q_positions: Some(&qp),
        ..def()
    };
    assert_eq!(
        err(run(KeySubset::Dense, windowed, 2, d)),
        ErrorKind::NullPointer
    );
    let short = AttendOptions {
        causal: true,
        q_positions: Some(&qp[..1]),
        k_positions: Some(&kp),
        ..def()
    };
    assert_eq!(
        err(run(KeySubset::Dense, short, 2, d)),
        ErrorKind::InvalidArgument
    );
    let nan_scale = AttendOptions {
        scale: Some(f32::NAN),
        ..def()
    };
    assert_eq!(
        err(run(KeySubset::Dense, nan_scale, 2, d)),
        ErrorKind::InvalidArgument
    );
    // Block lists: a bad id, bad offsets, zero sizes.
    let blocks = |bs, qb, offsets: &'static [usize], ids: &'static [u32]| KeySubset::Blocks {
        block_size: bs,
        query_block: qb,
        offsets,
        ids,
        per: ListsPer::Shared,
    };
    assert_eq!(
        err(run(blocks(4, 1, &[0, 1, 2], &[0, 3]), def(), 2, d)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        err(run(blocks(4, 1, &[0, 2, 1], &[0, 1]), def(), 2, d)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err(run(blocks(4, 1, &[0, 1], &[0, 1]), def(), 2, d)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err(run(blocks(4, 1, &[0, 1, 3], &[0, 1]), def(), 2, d)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        err(run(blocks(0, 1, &[0, 1, 2], &[0, 1]), def(), 2, d)),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err(run(blocks(4, 0, &[0, 1, 2], &[0, 1]), def(), 2, d)),
        ErrorKind::InvalidArgument
    );
    assert!(run(blocks(4, 1, &[0, 1, 2], &[0, 2]), def(), 2, d).is_ok());
    // Layout errors.
    assert_eq!(err(Heads::new(&q, 2, 4, 8, 16, 4)), ErrorKind::BadStride);
    assert_eq!(
        err(Heads::new(&q, 2, 4, 8, 32, 8)
            .map(|_| ())
            .and(Heads::new(&q[..10], 2, 4, 8, 32, 8))),
        ErrorKind::BufferTooSmall
    );
    assert_eq!(
        err(Heads::new(&q, usize::MAX, 4, 8, usize::MAX / 2, 8)),
        ErrorKind::SizeOverflow
    );
    // Head-major layouts are fine.
    assert!(Heads::new(&q, 2, 4, 8, 8, 16).is_ok());
}

/// The C entry point with every input valid except one thing.
struct Call {
    dtype: u32,
    q: Vec<f32>,
    n_q: usize,
    h_q: usize,
    d: usize,
    k: Vec<f32>,
    n_k: usize,
    h_kv: usize,
    keys: tkr_attention_keys,
    opts: tkr_attention_options,
    q_pos: Vec<u32>,
    k_pos: Vec<u32>,
    idx: Vec<u32>,
    out: Vec<f32>,
    lse: Vec<f32>,
    mass: Vec<f32>,
}

impl Call {
    fn new() -> Call {
        let (n_q, h_q, h_kv, d, n_k) = (3, 4, 2, 16, 20);
        let mut keys = unsafe { std::mem::zeroed::<tkr_attention_keys>() };
        let mut opts = unsafe { std::mem::zeroed::<tkr_attention_options>() };
        unsafe {
            tkr_attention_keys_init(&mut keys);
            tkr_attention_options_init(&mut opts);
        }
        let mut r = Rng(3);
        Call {
            dtype: TKR_DTYPE_F32,
            q: (0..n_q * h_q * d).map(|_| r.f()).collect(),
            n_q,
            h_q,
            d,
            k: (0..n_k * 4 * d).map(|_| r.f()).collect(),
            n_k,
            h_kv,
            keys,
            opts,
            q_pos: vec![5, 10, 15],
            k_pos: (0..n_k as u32).collect(),
            idx: vec![0, 4, 19, 7],
            out: vec![CANARY; n_q * h_q * d],
            lse: vec![CANARY; n_q * h_q],
            mass: vec![CANARY; n_k],
        }
    }
    fn run(&mut self) -> tkr_status {
        let d = self.d;
        unsafe {
            tkr_attention(
                self.dtype,
                self.q.as_ptr() as *const _,
                self.n_q,
                self.h_q,
                d,
                self.h_q * d,
                d,
                self.k.as_ptr() as *const _,
                self.k.as_ptr() as *const _,
                self.n_k,
                self.h_kv,
                self.h_kv * d,
                d,
                self.h_kv * d,
                d,
                &self.keys,
                &self.opts,
                self.out.as_mut_ptr() as *mut _,
                self.h_q * d,
                d,
            )
        }
    }
    fn untouched(&self) -> bool {
        self.out
            .iter()
            .chain(&self.lse)
            .chain(&self.mass)
            .all(|&x| x == CANARY)
    }
}

#[test]
fn c_entry_point_statuses_and_nothing_written_on_error() {
    // Valid call with every option.
    let mut c = Call::new();
    c.keys.kind = TKR_KEYS_INDICES;
    c.keys.indices = c.idx.as_ptr();
    c.keys.n_indices = c.idx.len();
    c.opts.flags = TKR_ATTENTION_CAUSAL;
    c.opts.q_positions = c.q_pos.as_ptr();
    c.opts.k_positions = c.k_pos.as_ptr();
    c.opts.lse = c.lse.as_mut_ptr();
    c.mass.iter_mut().for_each(|x| *x = 0.0);
    c.opts.mass = c.mass.as_mut_ptr();
    assert_eq!(c.run(), TKR_STATUS_OK);
    assert!(c.out.iter().all(|x| x.is_finite() && *x != CANARY));
    assert!(c.lse.iter().all(|x| x.is_finite()));
    let total: f32 = c.mass.iter().sum();
    assert!((total - 12.0).abs() < 1e-4, "{total}");

    type Mutate = fn(&mut Call);
    let cases: &[(&str, Mutate, tkr_status)] = &[
        ("bad dtype", |c| c.dtype = 9, TKR_STATUS_INVALID_ARGUMENT),
        ("d = 0", |c| c.d = 0, TKR_STATUS_INVALID_ARGUMENT),
        (
            "heads do not divide",
            |c| c.h_kv = 3,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        ("zero kv heads", |c| c.h_kv = 0, TKR_STATUS_INVALID_ARGUMENT),
        (
            "unknown flag",
            |c| c.opts.flags = 8,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "unknown out dtype",
            |c| c.opts.out_dtype = 7,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "unknown key kind",
            |c| c.keys.kind = 5,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "infinite scale",
            |c| c.opts.scale = f32::INFINITY,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "causal without positions",
            |c| {
                c.opts.flags = TKR_ATTENTION_CAUSAL;
                c.opts.q_positions = std::ptr::null();
            },
            TKR_STATUS_NULL_POINTER,
        ),
        (
            "window without key positions",
            |c| {
                c.opts.window = 3;
                c.opts.q_positions = c.q_pos.as_ptr();
            },
            TKR_STATUS_NULL_POINTER,
        ),
        (
            "index out of range",
            |c| {
                c.idx[2] = 20;
                c.keys.kind = TKR_KEYS_INDICES;
                c.keys.indices = c.idx.as_ptr();
                c.keys.n_indices = 4;
            },
            TKR_STATUS_OUT_OF_RANGE,
        ),
        (
            "null indices with a count",
            |c| {
                c.keys.kind = TKR_KEYS_INDICES;
                c.keys.n_indices = 4;
            },
            TKR_STATUS_NULL_POINTER,
        ),
        (
            "block id out of range",
            |c| {
                c.keys.kind = TKR_KEYS_BLOCKS;
                c.keys.block_size = 8;
                c.keys.query_block_size = 3;
                static OFFS: [usize; 2] = [0, 2];
                static IDS: [u32; 2] = [1, 3];
                c.keys.block_offsets = OFFS.as_ptr();
                c.keys.block_ids = IDS.as_ptr();
                c.keys.n_block_ids = 2;
            },
            TKR_STATUS_OUT_OF_RANGE,
        ),
        (
            "unknown block_lists",
            |c| {
                c.keys.kind = TKR_KEYS_BLOCKS;
                c.keys.block_lists = 3;
            },
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "null q with size",
            |c| c.q = Vec::new(),
            TKR_STATUS_NULL_POINTER,
        ),
        (
            "overflowing sizes",
            |c| c.n_q = usize::MAX / 8,
            TKR_STATUS_SIZE_OVERFLOW,
        ),
        (
            "lse overlaps out",
            |c| c.opts.lse = c.out.as_mut_ptr(),
            TKR_STATUS_OVERLAP,
        ),
        (
            "mass overlaps q",
            |c| c.opts.mass = c.q.as_mut_ptr(),
            TKR_STATUS_OVERLAP,
        ),
        (
            "options struct too small",
            |c| c.opts.struct_size = 4,
            TKR_STATUS_INVALID_ARGUMENT,
        ),
        (
            "mass stride too small",
            |c| {
                c.opts.mass = c.mass.as_mut_ptr();
                c.opts.mass_head_stride = 5;
            },
            TKR_STATUS_BAD_STRIDE,
        ),
    ];
    for (what, mutate, want) in cases {
        let mut c = Call::new();
        mutate(&mut c);
        if c.q.is_empty() {
            // A null q with a non-zero size.
            let st = unsafe {
                tkr_attention(
                    TKR_DTYPE_F32,
                    std::ptr::null(),
                    1,
                    1,
                    4,
                    4,
                    4,
                    c.k.as_ptr() as *const _,
                    c.k.as_ptr() as *const _,
                    1,
                    1,
                    4,
                    4,
                    4,
                    4,
                    std::ptr::null(),
                    std::ptr::null(),
                    c.out.as_mut_ptr() as *mut _,
                    4,
                    4,
                )
            };
            assert_eq!(st, *want, "{what}");
            assert!(c.untouched(), "{what}: written on error");
            continue;
        }
        let st = c.run();
        assert_eq!(st, *want, "{what}: got {st}");
        assert!(c.untouched(), "{what}: written on error");
    }
    // A larger options struct with an unknown non-zero field is UNSUPPORTED.
    #[repr(C)]
    struct Bigger {
        o: tkr_attention_options,
        extra: u64,
    }
    let mut c = Call::new();
    let mut b = Bigger {
        o: c.opts,
        extra: 1,
    };
    b.o.struct_size = std::mem::size_of::<Bigger>();
    let st = unsafe {
        tkr_attention(
            TKR_DTYPE_F32,
            c.q.as_ptr() as *const _,
            c.n_q,
            c.h_q,
            c.d,
            c.h_q * c.d,
            c.d,
            c.k.as_ptr() as *const _,
            c.k.as_ptr() as *const _,
            c.n_k,
            c.h_kv,
            c.h_kv * c.d,
            c.d,
            c.h_kv * c.d,
            c.d,
            std::ptr::null(),
            &b.o,
            c.out.as_mut_ptr() as *mut _,
            c.h_q * c.d,
            c.d,
        )
    };
    assert_eq!(st, TKR_STATUS_UNSUPPORTED);
    assert!(c.untouched());
    b.extra = 0;
    let st = unsafe {
        tkr_attention(
            TKR_DTYPE_F32,
            c.q.as_ptr() as *const _,
            c.n_q,
            c.h_q,
            c.d,
            c.h_q * c.d,
            c.d,
            c.k.as_ptr() as *const _,
            c.k.as_ptr() as *const _,
            c.n_k,
            c.h_kv,
            c.h_kv * c.d,
            c.d,
            c.h_kv * c.d,
            c.d,
            std::ptr::null(),
            &b.o,
            c.out.as_mut_ptr() as *mut _,
            c.h_q * c.d,
            c.d,
        )
    };
    assert_eq!(st, TKR_STATUS_OK);
    c.opts.struct_size = 0;
}

#[test]
fn merge_summary_and_bound_through_c() {
    // Merge: two parts, one empty.
    let o = [1.0f32, 2.0, 3.0, 4.0, 9.0, 9.0, 9.0, 9.0];
    let l = [0.5f32, f32::NEG_INFINITY];
    let mut out = [CANARY; 4];
    let mut ol = [CANARY; 1];
    let st = unsafe {
        tkr_attention_merge(
            TKR_DTYPE_F32,
            o.as_ptr(),
            2,
            1,
            4,
            4,
            4,
            l.as_ptr(),
            1,
            out.as_mut_ptr() as *mut _,
            4,
            ol.as_mut_ptr(),
        )
    };
    assert_eq!(st, TKR_STATUS_OK);
    assert_eq!(out, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(ol[0], 0.5);
    let mut out = [CANARY; 4];
    let bad = [
        unsafe {
            tkr_attention_merge(
                TKR_DTYPE_F32,
                o.as_ptr(),
                2,
                1,
                0,
                4,
                4,
                l.as_ptr(),
                1,
                out.as_mut_ptr() as *mut _,
                4,
                std::ptr::null_mut(),
            )
        },
        unsafe {
            tkr_attention_merge(
                0,
                o.as_ptr(),
                2,
                1,
                4,
                4,
                4,
                l.as_ptr(),
                1,
                out.as_mut_ptr() as *mut _,
                4,
                std::ptr::null_mut(),
            )
        },
        unsafe {
            tkr_attention_merge(
                TKR_DTYPE_F32,
                std::ptr::null(),
                2,
                1,
                4,
                4,
                4,
                l.as_ptr(),
                1,
                out.as_mut_ptr() as *mut _,
                4,
                std::ptr::null_mut(),
            )
        },
        unsafe {
            tkr_attention_merge(
                TKR_DTYPE_F32,
                o.as_ptr(),
                2,
                1,
                4,
                2,
                4,
                l.as_ptr(),
                1,
                out.as_mut_ptr() as *mut _,
                4,
                std::ptr::null_mut(),
            )
        },
        unsafe {
            tkr_attention_merge(
                TKR_DTYPE_F32,
                out.as_ptr(),
                2,
                1,
                4,
                4,
                4,
                l.as_ptr(),
                1,
                out.as_mut_ptr() as *mut _,
                4,
                std::ptr::null_mut(),
            )
        },
    ];
    assert_eq!(
        bad,
        [
            TKR_STATUS_INVALID_ARGUMENT,
            TKR_STATUS_INVALID_ARGUMENT,
            TKR_STATUS_NULL_POINTER,
            TKR_STATUS_BAD_STRIDE,
            TKR_STATUS_OVERLAP
        ]
    );
    assert_eq!(out, [CANARY; 4]);

    // Summary and bound.
    let (n_k, h, d, b) = (10usize, 2usize, 3usize, 4usize);
    let k: Vec<f32> = (0..n_k * h * d)
        .map(|i| ((i * 7919) % 23) as f32 - 11.0)
        .collect();
    let mut mn = vec![CANARY; 3 * h * d];
    let mut mx = vec![CANARY; 3 * h * d];
    let st = unsafe {
        tkr_key_block_summary(
            TKR_DTYPE_F32,
            k.as_ptr() as *const _,
            n_k,
            h,
            d,
            h * d,
            d,
            b,
            0,
            3,
            mn.as_mut_ptr(),
            mx.as_mut_ptr(),
        )
    };
    assert_eq!(st, TKR_STATUS_OK);
    assert_eq!(
        mn[(2 * h + 1) * d],
        k[(8 * h + 1) * d].min(k[(9 * h + 1) * d])
    );
    let bad = [
        unsafe {
            tkr_key_block_summary(
                TKR_DTYPE_F32,
                k.as_ptr() as *const _,
                n_k,
                h,
                d,
                h * d,
                d,
                b,
                0,
                4,
                mn.as_mut_ptr(),
                mx.as_mut_ptr(),
            )
        },
        unsafe {
            tkr_key_block_summary(
                TKR_DTYPE_F32,
                k.as_ptr() as *const _,
                n_k,
                h,
                d,
                h * d,
                d,
                0,
                0,
                1,
                mn.as_mut_ptr(),
                mx.as_mut_ptr(),
            )
        },
        unsafe {
            tkr_key_block_summary(
                TKR_DTYPE_F32,
                k.as_ptr() as *const _,
                n_k,
                h,
                d,
                h * d,
                d,
                b,
                2,
                1,
                mn.as_mut_ptr(),
                mx.as_mut_ptr(),
            )
        },
        unsafe {
            tkr_key_block_summary(
                TKR_DTYPE_F32,
                k.as_ptr() as *const _,
                n_k,
                h,
                d,
                h * d,
                d,
                b,
                0,
                3,
                mn.as_mut_ptr(),
                mn.as_mut_ptr(),
            )
        },
        unsafe {
            tkr_key_block_summary(
                TKR_DTYPE_F32,
                k.as_ptr() as *const _,
                n_k,
                h,
                d,
                h * d,
                d,
                b,
                0,
                3,
                mn.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        },
    ];
    assert_eq!(
        bad,
        [
            TKR_STATUS_OUT_OF_RANGE,
            TKR_STATUS_INVALID_ARGUMENT,
            TKR_STATUS_INVALID_ARGUMENT,
            TKR_STATUS_OVERLAP,
            TKR_STATUS_NULL_POINTER
        ]
    );
    let q: Vec<f32> = (0..2 * 4 * d).map(|i| (i % 5) as f32 - 2.0).collect();
    let mut bound = vec![CANARY; 2 * 4 * 4];
    let st = unsafe {
        tkr_key_block_bound(
            TKR_DTYPE_F32,
            q.as_ptr() as *const _,
            2,
            4,
            d,
            4 * d,
            d,
            mn.as_ptr(),
            mx.as_ptr(),
            3,
            h,
            bound.as_mut_ptr(),
            4,
        )
    };
    assert_eq!(st, TKR_STATUS_OK);
    for row in 0..8 {
        let (i, hq) = (row / 4, row % 4);
        let g = hq / 2;
        for blk in 0..3 {
            let best = (blk * b..((blk + 1) * b).min(n_k))
                .map(|t| {
                    (0..d)
                        .map(|e| q[(i * 4 + hq) * d + e] * k[(t * h + g) * d + e])
                        .sum::<f32>()
                })
                .fold(f32::NEG_INFINITY, f32::max);
            assert!(bound[row * 4 + blk] >= best);
        }
        assert_eq!(bound[row * 4 + 3], CANARY);
    }
    let st = unsafe {
        tkr_key_block_bound(
            TKR_DTYPE_F32,
            q.as_ptr() as *const _,
            2,
            4,
            d,
            4 * d,
            d,
            mn.as_ptr(),
            mx.as_ptr(),
            3,
            3,
            bound.as_mut_ptr(),
            4,
        )
    };
    assert_eq!(st, TKR_STATUS_INVALID_ARGUMENT);
    let st = unsafe {
        tkr_key_block_bound(
            TKR_DTYPE_F32,
            q.as_ptr() as *const _,
            2,
            4,
            d,
            4 * d,
            d,
            mn.as_ptr(),
            mx.as_ptr(),
            3,
            h,
            bound.as_mut_ptr(),
            2,
        )
    };
    assert_eq!(st, TKR_STATUS_BAD_STRIDE);
}

#[test]
fn merge_api_equals_one_call() {
    let kern = Kernels::active().unwrap();
    let (n_q, h_q, d, n_k) = (3, 2, 24, 200);
    let mut r = Rng(8);
    let q: Vec<f32> = (0..n_q * h_q * d).map(|_| r.f()).collect();
    let k: Vec<f32> = (0..n_k * d).map(|_| r.f()).collect();
    let v: Vec<f32> = (0..n_k * d).map(|_| r.f()).collect();
    let call = |sel: &[u32], out: &mut [f32], lse: &mut [f32]| {
        kern.attention(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            Heads::dense(&k, n_k, 1, d).unwrap(),
            Heads::dense(&v, n_k, 1, d).unwrap(),
            KeySubset::Indices(sel),
            &AttendOptions::default(),
            HeadsMut::dense(out, n_q, h_q, d).unwrap(),
            AttendExtras {
                lse: Some((lse, 0)),
                mass: None,
            },
        )
        .unwrap()
    };
    let rows = n_q * h_q;
    let all: Vec<u32> = (0..n_k as u32).collect();
    let (mut one, mut one_lse) = (vec![0f32; rows * d], vec![0f32; rows]);
    call(&all, &mut one, &mut one_lse);
    let (mut parts, mut lses) = (vec![0f32; 3 * rows * d], vec![0f32; 3 * rows]);
    for (i, ch) in all.chunks(70).enumerate() {
        call(
            ch,
            &mut parts[i * rows * d..(i + 1) * rows * d],
            &mut lses[i * rows..(i + 1) * rows],
        );
    }
    let mut merged = vec![0f32; rows * d];
    let mut mlse = vec![0f32; rows];
    kern.attention_merge(
        3,
        &parts,
        rows * d,
        d,
        &lses,
        rows,
        MatrixMut::dense(&mut merged, rows, d).unwrap(),
        Some(&mut mlse),
    )
    .unwrap();
    for (a, b) in merged.iter().zip(&one) {
        assert!((a - b).abs() < 2e-6, "{a} vs {b}");
    }
    for (a, b) in mlse.iter().zip(&one_lse) {
        assert!((a - b).abs() < 2e-6 * (1.0 + b.abs()));
    }
}

/// Quest end to end: summaries, bounds, top-k blocks through the selection family, then
/// attention over the chosen blocks (per query head) equals the reference over exactly
/// those keys; the ids are the brute-force top-k of the bounds with forced blocks.
#[test]
fn quest_pipeline_selects_top_blocks_and_attends_over_them() {
    let kern = Kernels::active().unwrap();
    let (n_q, h_q, h_kv, d, n_k, bs) = (3usize, 4usize, 2usize, 32usize, 200usize, 16usize);
    let nb = n_k.div_ceil(bs);
    let mut r = Rng(77);
    let q: Vec<f32> = (0..n_q * h_q * d).map(|_| r.f()).collect();
    let k: Vec<f32> = (0..n_k * h_kv * d).map(|_| r.f()).collect();
    let v: Vec<f32> = (0..n_k * h_kv * d).map(|_| r.f()).collect();
    let mut mn = vec![0f32; nb * h_kv * d];
    let mut mx = vec![0f32; nb * h_kv * d];
    kern.key_block_summary(
        Heads::dense(&k, n_k, h_kv, d).unwrap(),
        bs,
        0..nb,
        &mut mn,
        &mut mx,
    )
    .unwrap();
    let mut bound = vec![0f32; n_q * h_q * nb];
    kern.key_block_bound(
        Heads::dense(&q, n_q, h_q, d).unwrap(),
        &mn,
        &mx,
        nb,
        h_kv,
        &mut bound,
        nb,
    )
    .unwrap();
    let (kk, keep_first, keep_last) = (5usize, 1usize, 1usize);
    let mut ids = vec![u32::MAX; n_q * h_q * kk];
    let mut offs = vec![usize::MAX; n_q * h_q + 1];
    let k_eff = kern
        .quest_select_blocks(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            &mn,
            &mx,
            nb,
            h_kv,
            kk,
            keep_first,
            keep_last,
            &mut ids,
            &mut offs,
        )
        .unwrap();
    assert_eq!(k_eff, kk);
    for i in 0..n_q {
        for h in 0..h_q {
            let row = &bound[(i * h_q + h) * nb..(i * h_q + h + 1) * nb];
            // Brute force: forced blocks, then the best others (ties to the lower id).
            let mut want: Vec<u32> = vec![0, (nb - 1) as u32];
            let mut rest: Vec<u32> = (1..nb as u32 - 1).collect();
            rest.sort_by(|&a, &b| {
                row[b as usize]
                    .partial_cmp(&row[a as usize])
                    .unwrap()
                    .then(a.cmp(&b))
            });
            want.extend_from_slice(&rest[..kk - 2]);
            want.sort();
            let l = h * n_q + i;
            assert_eq!(offs[l], l * kk);
            assert_eq!(&ids[offs[l]..offs[l] + kk], &want[..], "query {i} head {h}");
        }
    }
    assert_eq!(offs[n_q * h_q], n_q * h_q * kk);
    // Attention over the selected blocks, per query head.
    let mut out = vec![0f32; n_q * h_q * d];
    kern.attention(
        Heads::dense(&q, n_q, h_q, d).unwrap(),
        Heads::dense(&k, n_k, h_kv, d).unwrap(),
        Heads::dense(&v, n_k, h_kv, d).unwrap(),
        KeySubset::Blocks {
            block_size: bs,
            query_block: 1,
            offsets: &offs,
            ids: &ids,
            per: ListsPer::QHead,
        },
        &AttendOptions::default(),
        HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
        AttendExtras::default(),
    )
    .unwrap();
    for i in 0..n_q {
        for h in 0..h_q {
            let l = h * n_q + i;
            let keys: Vec<usize> = ids[offs[l]..offs[l + 1]]
                .iter()
                .flat_map(|&b| (b as usize * bs)..((b as usize + 1) * bs).min(n_k))
                .collect();
            let qi: Vec<f32> = q[(i * h_q + h) * d..(i * h_q + h + 1) * d].to_vec();
            // Reference for this single row (one query, one head over its KV head).
            let g = h / (h_q / h_kv);
            let kg: Vec<f32> = (0..n_k)
                .flat_map(|t| k[(t * h_kv + g) * d..(t * h_kv + g + 1) * d].to_vec())
                .collect();
            let vg: Vec<f32> = (0..n_k)
                .flat_map(|t| v[(t * h_kv + g) * d..(t * h_kv + g + 1) * d].to_vec())
                .collect();
            let (want, _) = reference(&qi, &kg, &vg, 1, 1, 1, d, &keys, &|_, _| true);
            for e in 0..d {
                assert!(
                    (out[(i * h_q + h) * d + e] as f64 - want[e]).abs() < 1e-5,
                    "query {i} head {h}"
                );
            }
        }
    }
    // Errors: forced blocks beyond k; a short output.
    assert_eq!(
        err(kern.quest_select_blocks(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            &mn,
            &mx,
            nb,
            h_kv,
            2,
            2,
            1,
            &mut ids,
            &mut offs
        )),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        err(kern.quest_select_blocks(
            Heads::dense(&q, n_q, h_q, d).unwrap(),
            &mn,
            &mx,
            nb,
            h_kv,
            kk,
            1,
            1,
            &mut ids[..3],
            &mut offs
        )),
        ErrorKind::BufferTooSmall
    );
}

/// Found by the ffi_args fuzz target: NaN inputs with payloads reached the output
/// through differently ordered operations on each level (x86 keeps one operand's
/// payload), so the levels disagreed on a NaN's bits. Every NaN output, lse included,
/// is now the canonical quiet NaN.
#[test]
fn nan_outputs_are_canonical_on_every_level() {
    use half::f16;
    let (n_q, h_q, h_kv, d, n_k) = (2usize, 4usize, 2usize, 5usize, 3usize);
    let q: Vec<f16> = (0..n_q * h_q * d)
        .map(|i| f16::from_f32(0.25 * (i % 7) as f32 - 0.5))
        .collect();
    let mut k: Vec<f16> = (0..n_k * h_kv * d)
        .map(|i| f16::from_f32(0.125 * (i % 5) as f32))
        .collect();
    let mut v: Vec<f16> = (0..n_k * h_kv * d)
        .map(|i| f16::from_f32((i % 3) as f32))
        .collect();
    // Payload NaNs of both signs in K and V.
    k[3] = f16::from_bits(0x7fc0);
    v[7] = f16::from_bits(0xfd01);
    v[12] = f16::from_bits(0x7c21);
    for kern in Kernels::all_supported() {
        for out_f32 in [false, true] {
            let mut lse = vec![0f32; n_q * h_q];
            let mut o16 = vec![f16::ZERO; n_q * h_q * d];
            let mut o32 = vec![0f32; n_q * h_q * d];
            let (qv, kv, vv) = (
                Heads::dense(&q, n_q, h_q, d).unwrap(),
                Heads::dense(&k, n_k, h_kv, d).unwrap(),
                Heads::dense(&v, n_k, h_kv, d).unwrap(),
            );
            let extras = AttendExtras {
                lse: Some((&mut lse, 0)),
                mass: None,
            };
            let opts = AttendOptions::default();
            let r = if out_f32 {
                kern.attention(
                    qv,
                    kv,
                    vv,
                    KeySubset::Dense,
                    &opts,
                    HeadsMut::dense(&mut o32, n_q, h_q, d).unwrap(),
                    extras,
                )
            } else {
                kern.attention(
                    qv,
                    kv,
                    vv,
                    KeySubset::Dense,
                    &opts,
                    HeadsMut::dense(&mut o16, n_q, h_q, d).unwrap(),
                    extras,
                )
            };
            r.unwrap();
            let mut nans = 0;
            for j in 0..n_q * h_q * d {
                let bits = if out_f32 {
                    o32[j].to_bits()
                } else {
                    o16[j].to_bits() as u32
                };
                let nan = if out_f32 {
                    o32[j].is_nan()
                } else {
                    o16[j].is_nan()
                };
                if nan {
                    nans += 1;
                    let want = if out_f32 { 0x7fc0_0000 } else { 0x7e00 };
                    assert_eq!(bits, want, "{:?}: NaN output {j} not canonical", kern.isa());
                }
            }
            assert!(nans > 0, "the case must produce NaN rows");
            for x in &lse {
                if x.is_nan() {
                    assert_eq!(x.to_bits(), 0x7fc0_0000, "{:?}: lse NaN", kern.isa());
                }
            }
        }
    }
}

/// Found by the ffi_args fuzz target: attention of zero queries, a merge of zero rows
/// and bounds of zero query rows sized a head_dim workspace before noticing there was nothing to do, so a huge
/// head_dim with empty buffers failed (SIZE_OVERFLOW) or tried to allocate it.
#[test]
fn empty_merge_and_bound_never_size_a_workspace() {
    for d in [1usize << 40, usize::MAX / 2] {
        // SAFETY: every buffer is empty: (NULL, 0) is valid.
        let st = unsafe {
            tkr_attention_merge(
                TKR_DTYPE_F32,
                core::ptr::null(),
                3,
                0,
                d,
                0,
                d,
                core::ptr::null(),
                0,
                core::ptr::null_mut(),
                d,
                core::ptr::null_mut(),
            )
        };
        assert_eq!(st, TKR_STATUS_OK, "merge of 0 rows, d = {d}");
        // SAFETY: as above.
        let st = unsafe {
            tkr_key_block_bound(
                TKR_DTYPE_F32,
                core::ptr::null(),
                0,
                2,
                d,
                2 * d,
                d,
                core::ptr::null(),
                core::ptr::null(),
                0,
                1,
                core::ptr::null_mut(),
                0,
            )
        };
        assert_eq!(st, TKR_STATUS_OK, "bound of 0 rows, d = {d}");
        // SAFETY: as above.
        let st = unsafe {
            tkr_attention(
                TKR_DTYPE_F32,
                core::ptr::null(),
                0,
                1,
                d,
                d,
                d,
                core::ptr::null(),
                core::ptr::null(),
                0,
                1,
                d,
                d,
                d,
                d,
                core::ptr::null(),
                core::ptr::null(),
                core::ptr::null_mut(),
                d,
                d,
            )
        };
        assert_eq!(st, TKR_STATUS_OK, "attention of 0 queries, d = {d}");
    }
}
