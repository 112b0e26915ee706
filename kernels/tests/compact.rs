//! Every compaction variant against plain-loop oracles that live here: row copies
//! (gather, scatter, both maps, no map, in-place compaction) compared byte for byte over
//! the whole buffers (so a write outside the rows fails too), for every row size from 0
//! to 300 bytes and larger ones, strides, unaligned starts, empty lists and the
//! non-temporal large-copy path; the gated scatter-add compared bit for bit with an f32
//! loop rounded by `half`, over special values (NaN, inf, +-0, subnormals, rounding
//! ties, overflow), every tail length, strides and gates present or absent.

mod common;
use common::*;
use half::{bf16, f16};
use proptest::prelude::{any, proptest, ProptestConfig};
use tokenroute_kernels::compact::{
    CopyRowsArgs, CopyRowsFn, ScatterAddArgs, ScatterAddFn, COPY_ROWS, NT_MIN_BYTES, NT_MIN_ROW,
    SCATTER_ADD_BF16, SCATTER_ADD_F16, SCATTER_ADD_F32,
};
use tokenroute_kernels::KernelInfo;

// ---------------------------------------------------------------------------------------
// Row copies.

/// A byte buffer whose element `0` sits `off` bytes past a 64-byte boundary, with `off`
/// bytes before it and 64 after it (all random, so a stray write shows).
struct Buf {
    raw: Vec<u8>,
    base: usize,
    off: usize,
    len: usize,
}

impl Buf {
    fn new(len: usize, off: usize, rng: &mut Rng) -> Buf {
        let mut raw = vec![0u8; len + off + 128];
        let base = raw.as_ptr().align_offset(64);
        for b in raw[base..base + off + len + 64].iter_mut() {
            *b = rng.next_u32() as u8;
        }
        Buf {
            raw,
            base,
            off,
            len,
        }
    }
    fn ptr(&mut self) -> *mut u8 {
        self.raw[self.base + self.off..].as_mut_ptr()
    }
    /// The data, from `off` bytes before element 0 to 64 bytes past the end.
    fn region(&self) -> &[u8] {
        &self.raw[self.base..self.base + self.off + self.len + 64]
    }
    /// The data only.
    fn data_mut(&mut self) -> &mut [u8] {
        let s = self.base + self.off;
        &mut self.raw[s..s + self.len]
    }
    fn data(&self) -> &[u8] {
        let s = self.base + self.off;
        &self.raw[s..s + self.len]
    }
}

fn span(rows: usize, rb: usize, stride: usize) -> usize {
    if rows == 0 {
        0
    } else {
        (rows - 1) * stride + rb
    }
}

#[derive(Clone, Debug)]
struct CopyCase {
    rb: usize,
    src_rows: usize,
    src_stride: usize,
    dst_rows: usize,
    dst_stride: usize,
    src_idx: Option<Vec<u32>>,
    dst_idx: Option<Vec<u32>>,
    n: usize,
    src_off: usize,
    dst_off: usize,
    /// src and dst are one buffer (in-place compaction): src_idx strictly ascending.
    in_place: bool,
    /// The first list position copied (the kernel's `first`).
    first: usize,
    /// The kernel's `whole_bytes` hint.
    whole: usize,
}

/// The oracle: row by row, byte by byte, in order.
fn oracle_copy(c: &CopyCase, src: &[u8], dst: &mut [u8]) {
    for j in c.first..c.n {
        let s = c.src_idx.as_ref().map_or(j, |v| v[j] as usize) * c.src_stride;
        let d = c.dst_idx.as_ref().map_or(j, |v| v[j] as usize) * c.dst_stride;
        for b in 0..c.rb {
            dst[d + b] = src[s + b];
        }
    }
}

fn oracle_in_place(c: &CopyCase, buf: &mut [u8]) {
    for j in c.first..c.n {
        let s = c.src_idx.as_ref().unwrap()[j] as usize * c.src_stride;
        let d = j * c.dst_stride;
        for b in 0..c.rb {
            buf[d + b] = buf[s + b];
        }
    }
}

fn args(c: &CopyCase, src: *const u8, dst: *mut u8) -> CopyRowsArgs {
    CopyRowsArgs {
        src,
        src_stride: c.src_stride,
        src_idx: c.src_idx.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        dst,
        dst_stride: c.dst_stride,
        dst_idx: c.dst_idx.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
        first: c.first,
        n: c.n,
        row_bytes: c.rb,
        whole_bytes: c.whole,
    }
}

fn check_copy_with(c: &CopyCase, kernels: &[KernelInfo<CopyRowsFn>], seed: u64) {
    let compare = |id: String, got: &Buf, want: &Buf| {
        if let Some(p) = (0..want.region().len()).find(|&p| got.region()[p] != want.region()[p]) {
            panic!(
                "{id}: byte at offset {} from element 0 differs: {c:?}",
                p as isize - c.dst_off as isize
            );
        }
    };
    if c.in_place {
        assert_eq!(c.src_stride, c.dst_stride);
        let len = span(c.src_rows, c.rb, c.src_stride);
        let mut want = Buf::new(len, c.dst_off, &mut Rng::new(seed));
        oracle_in_place(c, want.data_mut());
        for k in kernels {
            let mut got = Buf::new(len, c.dst_off, &mut Rng::new(seed));
            let p = got.ptr();
            // SAFETY: every row addressed lies in the buffer; ascending in-place list.
            unsafe { (k.f)(&args(c, p, p)) };
            compare(k.id().to_string(), &got, &want);
        }
        return;
    }
    let mut rng = Rng::new(seed);
    let mut src = Buf::new(span(c.src_rows, c.rb, c.src_stride), c.src_off, &mut rng);
    let dlen = span(c.dst_rows, c.rb, c.dst_stride);
    let dseed = rng.next_u64();
    let mut want = Buf::new(dlen, c.dst_off, &mut Rng::new(dseed));
    oracle_copy(c, src.data(), want.data_mut());
    let src_before = src.region().to_vec();
    for k in kernels {
        let mut got = Buf::new(dlen, c.dst_off, &mut Rng::new(dseed));
        // SAFETY: every row addressed lies in its buffer; the buffers are distinct.
        unsafe { (k.f)(&args(c, src.ptr(), got.ptr())) };
        compare(k.id().to_string(), &got, &want);
        assert!(
            src.region() == src_before,
            "{}: wrote to the source",
            k.id()
        );
    }
}

fn check_copy(c: &CopyCase, seed: u64) {
    check_copy_with(c, &runnable(COPY_ROWS), seed);
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.below(i + 1));
    }
}

/// A sorted random subset of `0..n` of size about `n * num / den` (at least `min`).
fn subset(n: usize, num: usize, den: usize, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).filter(|_| rng.below(den) < num).collect();
    if v.is_empty() && n > 0 {
        v.push(rng.below(n) as u32);
    }
    v
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Gather,
    GatherSorted,
    Scatter,
    Both,
    Plain,
    InPlace,
}
const MODES: [Mode; 6] = [
    Mode::Gather,
    Mode::GatherSorted,
    Mode::Scatter,
    Mode::Both,
    Mode::Plain,
    Mode::InPlace,
];

fn make_case(
    mode: Mode,
    rb: usize,
    rows: usize,
    pad: usize,
    offs: (usize, usize),
    rng: &mut Rng,
) -> CopyCase {
    let (src_stride, dst_stride) = (rb + pad, rb + (pad * 7) % 5);
    let mut c = CopyCase {
        rb,
        src_rows: rows,
        src_stride,
        dst_rows: rows,
        dst_stride,
        src_idx: None,
        dst_idx: None,
        n: rows,
        src_off: offs.0,
        dst_off: offs.1,
        in_place: false,
        first: 0,
        whole: 0,
    };
    match mode {
        Mode::Gather => {
            c.n = rng.below(rows + 3);
            c.dst_rows = c.n;
            c.src_idx = Some((0..c.n).map(|_| rng.below(rows.max(1)) as u32).collect());
            if rows == 0 {
                c.n = 0;
                c.dst_rows = 0;
                c.src_idx = Some(vec![]);
            }
        }
        Mode::GatherSorted => {
            let v = subset(rows, 1, 2, rng);
            c.n = v.len();
            c.dst_rows = c.n;
            c.src_idx = Some(v);
        }
        Mode::Scatter => {
            let mut v = subset(rows, 2, 3, rng);
            shuffle(&mut v, rng);
            c.n = v.len();
            c.src_rows = c.n;
            c.dst_idx = Some(v);
        }
        Mode::Both => {
            let mut v = subset(rows, 1, 2, rng);
            shuffle(&mut v, rng);
            c.n = v.len();
            c.src_rows = rows + 2;
            c.src_idx = Some((0..c.n).map(|_| rng.below(rows + 2) as u32).collect());
            c.dst_idx = Some(v);
        }
        Mode::Plain => {}
        Mode::InPlace => {
            let v = if rng.below(4) == 0 {
                (0..rows as u32).collect()
            } else {
                subset(rows, 1, 2, rng)
            };
            c.n = v.len();
            c.dst_stride = src_stride;
            c.src_idx = Some(v);
            c.in_place = true;
        }
    }
    c
}

#[test]
fn copy_rows_every_size_to_300_bytes_every_mode_matches_oracle() {
    let mut rng = Rng::new(1);
    for rb in 0..=300 {
        for (k, mode) in MODES.into_iter().enumerate() {
            let rows = 1 + (rb + k) % 9;
            let pad = (rb * 3 + k) % 4;
            let offs = ((rb + k) % 64, (rb * 5 + k * 11) % 64);
            let mut c = make_case(mode, rb, rows, pad, offs, &mut rng);
            // Every third case copies a suffix of the list only; every other one
            // claims to be part of a large copy (the streaming path, for rows of
            // NT_MIN_ROW bytes or more).
            if (rb + k) % 3 == 0 {
                c.first = c.n / 2;
            }
            if (rb + k) % 2 == 1 {
                c.whole = NT_MIN_BYTES;
            }
            check_copy(&c, rng.next_u64());
        }
    }
}

#[test]
fn copy_rows_large_rows_match_oracle() {
    let mut rng = Rng::new(2);
    for rb in [
        383, 384, 385, 511, 512, 513, 767, 1000, 1024, 3072, 3075, 4095, 4096, 4097, 8192, 16384,
        16389,
    ] {
        for mode in MODES {
            let offs = (rng.below(64), rng.below(64));
            let mut c = make_case(mode, rb, 6, rng.below(70), offs, &mut rng);
            check_copy(&c, rng.next_u64());
            c.whole = NT_MIN_BYTES;
            check_copy(&c, rng.next_u64());
        }
    }
}

#[test]
fn copy_rows_empty_lists_and_zero_rows_write_nothing() {
    let mut rng = Rng::new(3);
    for rb in [0, 1, 7, 64, 300, 5000] {
        for mode in MODES {
            let mut c = make_case(mode, rb, 5, 2, (3, 5), &mut rng);
            c.n = 0;
            for v in [&mut c.src_idx, &mut c.dst_idx].into_iter().flatten() {
                v.clear();
            }
            check_copy(&c, rng.next_u64());
        }
    }
}

/// `k` distinct indices below `n`, sorted or shuffled.
fn distinct(n: usize, k: usize, sorted: bool, rng: &mut Rng) -> Vec<u32> {
    let mut v: Vec<u32> = (0..n as u32).collect();
    shuffle(&mut v, rng);
    v.truncate(k);
    if sorted {
        v.sort();
    }
    v
}

/// Copies large enough to take the non-temporal path, aligned and not: gather,
/// scatter and in-place compaction.
#[test]
fn copy_rows_streaming_path_matches_oracle() {
    let mut rng = Rng::new(4);
    for (rb, pad, offs) in [
        (4109, 0, (0, 0)),
        (4109, 3, (5, 37)),
        (NT_MIN_ROW, 0, (0, 1)),
        (NT_MIN_ROW + 1, 64, (63, 0)),
        (16384, 0, (0, 13)),
        (300, 0, (0, 45)),
        (1000, 5, (17, 63)),
    ] {
        let n = NT_MIN_BYTES.div_ceil(rb) + 3;
        assert!(n * rb >= NT_MIN_BYTES && rb >= NT_MIN_ROW);
        let stride = rb + pad;
        let base = CopyCase {
            rb,
            src_rows: 2 * n,
            src_stride: stride,
            dst_rows: n,
            dst_stride: rb,
            src_idx: Some(distinct(2 * n, n, true, &mut rng)),
            dst_idx: None,
            n,
            src_off: offs.0,
            dst_off: offs.1,
            in_place: false,
            first: 0,
            whole: 0,
        };
        check_copy(&base, rng.next_u64());
        let scatter = CopyCase {
            src_rows: n,
            src_stride: rb,
            dst_rows: 2 * n,
            dst_stride: stride,
            src_idx: None,
            dst_idx: Some(distinct(2 * n, n, false, &mut rng)),
            ..base.clone()
        };
        check_copy(&scatter, rng.next_u64());
        let in_place = CopyCase {
            dst_stride: stride,
            in_place: true,
            ..base.clone()
        };
        check_copy(&in_place, rng.next_u64());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn proptest_copy_rows(rb in 0usize..700, rows in 0usize..40, pad in 0usize..9, mode in 0usize..6, so in 0usize..64, doff in 0usize..64, from_start in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let mut c = make_case(MODES[mode], rb, rows, pad, (so, doff), &mut rng);
        if !from_start {
            c.first = rng.below(c.n + 1);
        }
        // Half the cases claim to be part of a large copy: rows of NT_MIN_ROW bytes or
        // more then take the streaming path even when few.
        if seed % 2 == 0 {
            c.whole = NT_MIN_BYTES;
        }
        check_copy(&c, rng.next_u64());
    }
}

// ---------------------------------------------------------------------------------------
// Gated scatter-add.

trait Elem: Copy + Default + std::fmt::Debug + PartialEq + 'static {
    fn from_f32(x: f32) -> Self;
    fn to_f32(self) -> f32;
    fn bits(self) -> u32;
    fn canonical_nan() -> u32;
    fn registry() -> &'static [KernelInfo<ScatterAddFn<Self>>];
}
impl Elem for f32 {
    fn from_f32(x: f32) -> f32 {
        x
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn bits(self) -> u32 {
        self.to_bits()
    }
    fn canonical_nan() -> u32 {
        0x7fc0_0000
    }
    fn registry() -> &'static [KernelInfo<ScatterAddFn<f32>>] {
        SCATTER_ADD_F32
    }
}
impl Elem for f16 {
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
    fn canonical_nan() -> u32 {
        0x7e00
    }
    fn registry() -> &'static [KernelInfo<ScatterAddFn<f16>>] {
        SCATTER_ADD_F16
    }
}
impl Elem for bf16 {
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    fn bits(self) -> u32 {
        self.to_bits() as u32
    }
    fn canonical_nan() -> u32 {
        0x7fc0
    }
    fn registry() -> &'static [KernelInfo<ScatterAddFn<bf16>>] {
        SCATTER_ADD_BF16
    }
}

/// The element oracle: f32 product, f32 sum, canonical NaN, `half`'s rounding.
fn oracle_add<T: Elem>(h: T, y: T, g: Option<f32>) -> u32 {
    let y = y.to_f32();
    let t = match g {
        Some(g) => g * y,
        None => y,
    };
    let s = h.to_f32() + t;
    if s.is_nan() {
        T::canonical_nan()
    } else {
        T::from_f32(s).bits()
    }
}

#[derive(Clone, Debug)]
struct AddCase<T> {
    h_rows: usize,
    d: usize,
    hs: usize,
    ys: usize,
    idx: Vec<u32>,
    h: Vec<T>,
    y: Vec<T>,
    g: Option<Vec<f32>>,
}

/// Values that stress the arithmetic and the rounding of every element type.
fn special_value(rng: &mut Rng) -> f32 {
    const POOL: &[f32] = &[
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1.0e-45,
        -1.0e-45,
        1.0e-40,
        -3.0e-39,
        f32::MAX,
        f32::MIN,
        65504.0,
        -65504.0,
        65520.0,
        6.0e-8,
        -3.0e-8,
        2.98e-8,
        6.1e-5,
        3.0e38,
        0.00390625,    // 2^-8: a bf16 tie against 1.0
        0.001953125,   // 2^-9
        0.00048828125, // 2^-11: an f16 tie against 1.0
        1.0078125,     // 1 + 2^-7
        1.0009765625,  // 1 + 2^-10
    ];
    match rng.below(4) {
        0 => POOL[rng.below(POOL.len())],
        1 => f32::from_bits(rng.next_u32()),
        2 => rng.uniform(-1e-4, 1e-4),
        _ => rng.uniform(-4.0, 4.0),
    }
}

impl<T: Elem> AddCase<T> {
    fn random(
        rng: &mut Rng,
        h_rows: usize,
        n: usize,
        d: usize,
        pad: usize,
        specials: bool,
        gated: bool,
    ) -> AddCase<T> {
        let (hs, ys) = (d + pad, d + (pad * 3) % 4);
        let gen = |rng: &mut Rng| {
            if specials {
                special_value(rng)
            } else {
                rng.uniform(-2.0, 2.0)
            }
        };
        let h = (0..h_rows * hs).map(|_| T::from_f32(gen(rng))).collect();
        let y = (0..n * ys).map(|_| T::from_f32(gen(rng))).collect();
        let mut idx: Vec<u32> = (0..h_rows as u32).collect();
        shuffle(&mut idx, rng);
        idx.truncate(n);
        if rng.below(2) == 0 {
            idx.sort();
        }
        let g = gated.then(|| {
            (0..n)
                .map(|_| {
                    if specials && rng.below(3) == 0 {
                        special_value(rng)
                    } else {
                        rng.uniform(0.0, 1.0)
                    }
                })
                .collect()
        });
        AddCase {
            h_rows,
            d,
            hs,
            ys,
            idx,
            h,
            y,
            g,
        }
    }

    fn oracle(&self) -> Vec<u32> {
        let mut out: Vec<u32> = self.h.iter().map(|v| v.bits()).collect();
        for (j, &i) in self.idx.iter().enumerate() {
            let g = self.g.as_ref().map(|g| g[j]);
            for c in 0..self.d {
                let hi = i as usize * self.hs + c;
                out[hi] = oracle_add(self.h[hi], self.y[j * self.ys + c], g);
            }
        }
        out
    }

    fn run(&self, f: ScatterAddFn<T>) -> Vec<u32> {
        let mut h = self.h.clone();
        let a = ScatterAddArgs {
            h: h.as_mut_ptr(),
            h_stride: self.hs,
            idx: self.idx.as_ptr(),
            n: self.idx.len(),
            y: self.y.as_ptr(),
            y_stride: self.ys,
            g: self.g.as_ref().map_or(std::ptr::null(), |g| g.as_ptr()),
            d: self.d,
        };
        // SAFETY: the case's buffers hold every addressed row; indices are distinct.
        unsafe { f(&a) };
        h.iter().map(|v| v.bits()).collect()
    }

    fn check(&self) {
        let want = self.oracle();
        for k in runnable(T::registry()) {
            let got = self.run(k.f);
            if let Some(p) = (0..got.len()).find(|&p| got[p] != want[p]) {
                let (row, col) = (p / self.hs.max(1), p % self.hs.max(1));
                let j = self.idx.iter().position(|&i| i as usize == row);
                panic!(
                    "{}: h[{row}][{col}] = {:#x}, oracle {:#x}; h was {:?}, y {:?}, g {:?} (h_rows {} d {} hs {} ys {})",
                    k.id(),
                    got[p],
                    want[p],
                    self.h[p],
                    j.map(|j| self.y[j * self.ys + col]),
                    j.and_then(|j| self.g.as_ref().map(|g| g[j])),
                    self.h_rows,
                    self.d,
                    self.hs,
                    self.ys
                );
            }
        }
    }
}

fn add_shapes<T: Elem>(seed: u64) {
    let mut rng = Rng::new(seed);
    for d in (0..=70).chain([127, 128, 129, 255, 768, 1000, 4096]) {
        for (h_rows, n) in [(0, 0), (1, 0), (1, 1), (5, 3), (9, 9), (12, 5)] {
            for gated in [false, true] {
                let specials = rng.below(2) == 0;
                let pad = rng.below(5);
                AddCase::<T>::random(&mut rng, h_rows, n, d, pad, specials, gated).check();
            }
        }
    }
}

#[test]
fn f32_scatter_add_every_shape_matches_oracle_bits_on_every_tier() {
    add_shapes::<f32>(20);
}
#[test]
fn f16_scatter_add_every_shape_matches_oracle_bits_on_every_tier() {
    add_shapes::<f16>(21);
}
#[test]
fn bf16_scatter_add_every_shape_matches_oracle_bits_on_every_tier() {
    add_shapes::<bf16>(22);
}

/// Every pair of special values, as (h, y) and with every special gate: the whole
/// cross product in rows of 37 elements (so both vector bodies and tails see them).
fn special_cross<T: Elem>() {
    let pool: Vec<f32> = {
        let mut r = Rng::new(5);
        let mut v: Vec<f32> = SPECIAL_F32.to_vec();
        v.extend((0..40).map(|_| special_value(&mut r)));
        v
    };
    let d = 37;
    let pairs: Vec<(f32, f32)> = pool
        .iter()
        .flat_map(|&a| pool.iter().map(move |&b| (a, b)))
        .collect();
    let rows = pairs.len().div_ceil(d);
    for gate in [
        None,
        Some(1.0f32),
        Some(0.5),
        Some(-0.0),
        Some(f32::NAN),
        Some(f32::INFINITY),
        Some(1e-30),
        Some(3.0),
    ] {
        let mut c = AddCase::<T> {
            h_rows: rows,
            d,
            hs: d,
            ys: d,
            idx: (0..rows as u32).rev().collect(),
            h: vec![T::default(); rows * d],
            y: vec![T::default(); rows * d],
            g: gate.map(|g| vec![g; rows]),
        };
        for (p, &(a, b)) in pairs.iter().enumerate() {
            let row = p / d;
            let (hi, yi) = (row * d + p % d, (rows - 1 - row) * d + p % d);
            c.h[hi] = T::from_f32(a);
            c.y[yi] = T::from_f32(b);
        }
        c.check();
    }
}

#[test]
fn f32_scatter_add_special_values_cross_product() {
    special_cross::<f32>();
}
#[test]
fn f16_scatter_add_special_values_cross_product() {
    special_cross::<f16>();
}
#[test]
fn bf16_scatter_add_special_values_cross_product() {
    special_cross::<bf16>();
}

/// Every bf16 and f16 rounding boundary: h = 1.0 plus every y whose sum lands on a tie
/// or next to one, in both directions.
#[test]
fn half_rounding_ties_round_to_even() {
    fn run<T: Elem>(ulp_exp: i32) {
        let base = [1.0f32, 1.5, -1.0, 1.0 + 2f32.powi(ulp_exp)];
        let mut ys = vec![];
        for k in -6i32..=6 {
            // Multiples of a quarter ulp of the half type.
            ys.push(k as f32 * 2f32.powi(ulp_exp - 2));
        }
        let d = ys.len();
        let rows = base.len();
        let c = AddCase::<T> {
            h_rows: rows,
            d,
            hs: d,
            ys: d,
            idx: (0..rows as u32).collect(),
            h: base
                .iter()
                .flat_map(|&b| std::iter::repeat_n(T::from_f32(b), d))
                .collect(),
            y: (0..rows)
                .flat_map(|_| ys.iter().map(|&y| T::from_f32(y)))
                .collect(),
            g: None,
        };
        c.check();
    }
    run::<bf16>(-7);
    run::<f16>(-10);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn proptest_scatter_add(h_rows in 0usize..20, frac in 0usize..=4, d in 0usize..150, pad in 0usize..5, specials in any::<bool>(), gated in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let n = h_rows * frac / 4;
        AddCase::<f32>::random(&mut rng, h_rows, n, d, pad, specials, gated).check();
        AddCase::<f16>::random(&mut rng, h_rows, n, d, pad, specials, gated).check();
        AddCase::<bf16>::random(&mut rng, h_rows, n, d, pad, specials, gated).check();
    }
}
