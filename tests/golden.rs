//! Golden outputs: every kernel variant of every family, on every level this CPU has,
//! reproduces the output bits recorded in `tests/data/golden.txt` for a fixed,
//! deterministic set of inputs (awkward shapes, tails, strides, special values).
//!
//! Each line of the data file is `case | level@arch | kernel | hash bytes`: an FNV-1a 64
//! hash of the output bytes (a single differing byte always changes it) and their
//! length. A failure names the case and the kernel. Levels this CPU lacks keep their
//! lines (NEON's are recorded and checked under QEMU: `.ci/test-aarch64.sh`). A level
//! with no lines of its own (AVX-512: the data was recorded on a CPU without it) must
//! reproduce the other levels' lines, as the kernels promise bit-identical outputs
//! across levels (see `Golden::cross_level`).
//!
//! `TOKENROUTE_GOLDEN_DUMP=<dir>` also writes every output's bytes into `<dir>` (one
//! file per line), to compare two builds byte by byte when a hash differs.
//!
//! Recording (only from code whose outputs are the reference, never to make a changed
//! kernel pass): `TOKENROUTE_GOLDEN_RECORD=1 cargo test --release --test golden`
//! rewrites the lines of the levels this CPU has and keeps the others.

use half::{bf16, f16};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use tokenroute::{Heads, Isa, Kernels};
use tokenroute_kernels::attend::{self, *};
use tokenroute_kernels::compact::{self, *};
use tokenroute_kernels::score::{self, Activation, ScoreArgs};
use tokenroute_kernels::select::{self, Order, ThresholdArgs, TopkArgs};
use tokenroute_kernels::sigmoid;
use tokenroute_kernels::softmax::{SoftmaxArgs, SoftmaxFn, SOFTMAX_BF16, SOFTMAX_F16, SOFTMAX_F32};
use tokenroute_kernels::KernelInfo;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden.txt");
/// The lines checked, built into the test binary so that it runs anywhere (a prebuilt
/// binary on another machine, QEMU); recording reads and rewrites [`DATA`].
const GOLDEN: &str = include_str!("data/golden.txt");

/// FNV-1a, 64 bits.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: plain-old-data element types only (floats, integers, half types).
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

/// The recorded lines and what this run saw.
struct Golden {
    lines: BTreeMap<(String, String, String), String>,
    record: bool,
    failures: Vec<String>,
    checked: usize,
    /// Outputs of an unrecorded level checked against the other levels' lines.
    cross_checked: usize,
    /// Outputs of an unrecorded level with no promise of identity (not checked).
    unrecorded: usize,
}

impl Golden {
    fn load() -> Golden {
        let record = std::env::var_os("TOKENROUTE_GOLDEN_RECORD").is_some();
        let text = if record {
            std::fs::read_to_string(DATA).unwrap_or_default()
        } else {
            GOLDEN.to_string()
        };
        let mut lines: BTreeMap<(String, String, String), String> = BTreeMap::new();
        for l in text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let f: Vec<&str> = l.split(" | ").collect();
            assert_eq!(f.len(), 4, "malformed golden line {l:?}");
            lines.insert((f[0].into(), f[1].into(), f[2].into()), f[3].into());
        }
        if record {
            // Every line of a level this CPU has is rewritten from this run.
            lines.retain(|(_, level, _), _| {
                !Isa::ALL
                    .iter()
                    .any(|i| i.is_supported() && *level == tag(*i))
            });
        }
        Golden {
            lines,
            record,
            failures: Vec::new(),
            checked: 0,
            cross_checked: 0,
            unrecorded: 0,
        }
    }

    fn put(&mut self, case: &str, isa: Isa, kernel: &str, out: &[u8]) {
        let key = (case.to_string(), tag(isa), kernel.to_string());
        let val = format!("{:016x} {}", fnv(out), out.len());
        if let Some(dir) = std::env::var_os("TOKENROUTE_GOLDEN_DUMP") {
            let name: String = format!("{case}__{}__{kernel}", tag(isa))
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            std::fs::write(std::path::Path::new(&dir).join(name), out).unwrap();
        }
        self.checked += 1;
        if self.record {
            assert!(self.lines.insert(key, val).is_none(), "case recorded twice");
            return;
        }
        match self.lines.get(&key) {
            Some(want) if *want == val => {}
            Some(want) => self.failures.push(format!(
                "{case} | {} | {kernel}: output {val}, golden {want}",
                tag(isa)
            )),
            None if self.level_recorded(isa) => self
                .failures
                .push(format!("{case} | {} | {kernel}: no golden line", tag(isa))),
            None => self.cross_level(case, isa, kernel, &val),
        }
    }

    /// Whether the data file has any line of this level (on this architecture).
    fn level_recorded(&self, isa: Isa) -> bool {
        let t = tag(isa);
        self.lines.keys().any(|(_, l, _)| *l == t)
    }

    /// A level with no recorded lines (AVX-512 could not be recorded where the data was
    /// made) is held to the bit-identity across levels that the kernels promise: its
    /// output must equal the one every recorded level of this architecture gives (they
    /// all agree). The opt-in AVX512-BF16 attention is not bit-identical to the other
    /// levels: it is checked only where its own lines were recorded.
    fn cross_level(&mut self, case: &str, isa: Isa, kernel: &str, val: &str) {
        if kernel.contains("dpbf16") {
            self.unrecorded += 1;
            return;
        }
        let arch = format!("@{}", std::env::consts::ARCH);
        let others: Vec<&String> = self
            .lines
            .iter()
            .filter(|((c, l, _), _)| c == case && l.ends_with(&arch))
            .map(|(_, v)| v)
            .collect();
        if others.is_empty() || others.iter().any(|v| *v != val) {
            self.failures.push(format!(
                "{case} | {} | {kernel}: output {val}, other levels {others:?}",
                tag(isa)
            ));
        } else {
            self.cross_checked += 1;
        }
    }

    /// Runs `run` with every variant of `reg` this CPU can run.
    fn each<F: Copy>(
        &mut self,
        reg: &[KernelInfo<F>],
        case: &str,
        mut run: impl FnMut(F) -> Vec<u8>,
    ) {
        for k in runnable(reg) {
            let out = run(k.f);
            self.put(case, k.isa, &k.id().to_string(), &out);
        }
    }

    fn finish(self) {
        if self.record {
            let mut text = String::from(
                "# Golden output hashes (tests/golden.rs): case | level | kernel | fnv1a64 bytes\n",
            );
            for ((c, l, k), v) in &self.lines {
                writeln!(text, "{c} | {l} | {k} | {v}").unwrap();
            }
            std::fs::create_dir_all(std::path::Path::new(DATA).parent().unwrap()).unwrap();
            std::fs::write(DATA, text).unwrap();
            eprintln!("recorded {} outputs into {DATA}", self.checked);
            return;
        }
        assert!(self.checked > 0);
        assert!(
            self.failures.is_empty(),
            "{} of {} outputs differ from the golden ones:\n{}",
            self.failures.len(),
            self.checked,
            self.failures
                .iter()
                .take(60)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!(
            "{} outputs equal their golden hashes ({} of them on a level without its own \
             lines, against the other levels'; {} outputs of such a level not promised \
             identical to other levels, unchecked)",
            self.checked - self.unrecorded,
            self.cross_checked,
            self.unrecorded
        );
    }
}

/// A level as recorded: its name and the architecture (the scalar level runs on every
/// architecture, and NaN payloads may differ between them).
fn tag(isa: Isa) -> String {
    format!("{}@{}", isa.name(), std::env::consts::ARCH)
}

/// The variants this CPU can run; a tier named in `TOKENROUTE_REQUIRE_ISAS` may not be
/// skipped.
fn runnable<F: Copy>(reg: &[KernelInfo<F>]) -> Vec<KernelInfo<F>> {
    let required = std::env::var("TOKENROUTE_REQUIRE_ISAS").unwrap_or_default();
    reg.iter()
        .filter(|k| {
            let ok = k.isa.is_supported();
            assert!(
                ok || !required.split(',').any(|s| s.trim() == k.isa.name()),
                "{} skipped but its tier is required",
                k.id()
            );
            ok
        })
        .copied()
        .collect()
}

/// xorshift64*: deterministic inputs.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.u64() % n.max(1) as u64) as usize
    }
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    /// Values in `[-a, a]`, and with probability `special` one of the awkward ones.
    fn f32s(&mut self, n: usize, a: f32, special: f32) -> Vec<f32> {
        const S: [u32; 16] = [
            0x0000_0000,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0xffc0_0001,
            0x7f80_0001,
            0x7fa0_1234,
            0x0000_0001,
            0x8000_0003,
            0x0080_0000,
            0x807f_ffff,
            0x7f7f_ffff,
            0xff7f_ffff,
            0x3f80_0000,
            0xc2d0_0000,
        ];
        (0..n)
            .map(|_| {
                if self.uniform(0.0, 1.0) < special {
                    f32::from_bits(S[self.below(S.len())])
                } else {
                    self.uniform(-a, a)
                }
            })
            .collect()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u64() as u8).collect()
    }
    /// `n` distinct indices below `m`, in random order.
    fn distinct(&mut self, n: usize, m: usize) -> Vec<u32> {
        let mut all: Vec<u32> = (0..m as u32).collect();
        for i in 0..n {
            let j = i + self.below(m - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    }
}

/// Element types of score, scatter-add and attention inputs.
trait Elt: Copy + Default + 'static {
    const NAME: &'static str;
    fn from(x: f32) -> Self;
}
impl Elt for f32 {
    const NAME: &'static str = "f32";
    fn from(x: f32) -> f32 {
        x
    }
}
impl Elt for f16 {
    const NAME: &'static str = "f16";
    fn from(x: f32) -> f16 {
        f16::from_f32(x)
    }
}
impl Elt for bf16 {
    const NAME: &'static str = "bf16";
    fn from(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
}
fn conv<T: Elt>(v: &[f32]) -> Vec<T> {
    v.iter().map(|&x| T::from(x)).collect()
}

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);
fn aligned(bytes: usize) -> Vec<Line> {
    vec![Line([0; 64]); bytes.div_ceil(64) + 1]
}

// ---------------------------------------------------------------------------------
// score and sigmoid

fn sigmoid_cases(g: &mut Golden) {
    let mut rng = Rng::new(1);
    let mut x = rng.f32s(1100, 120.0, 0.05);
    x.extend(rng.f32s(300, 0.01, 0.1));
    for n in [
        0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 100, 1000, 1400,
    ] {
        let x = &x[x.len() - n..];
        g.each(sigmoid::SIGMOID_F32, &format!("sigmoid n={n}"), |f| {
            let mut y = vec![0f32; n + 1];
            // SAFETY: x and y[1..] hold n floats (y unaligned on purpose).
            unsafe { f(x.as_ptr(), y[1..].as_mut_ptr(), n) };
            let mut z = x.to_vec();
            unsafe { f(z.as_ptr(), z.as_mut_ptr(), n) };
            y.extend(z);
            as_bytes(&y).to_vec()
        });
    }
}

fn score_type<T: Elt>(g: &mut Golden, reg: &[KernelInfo<score::ScoreFn<T>>]) {
    let mut rng = Rng::new(2);
    let shapes: &[(usize, usize, usize)] = &[
        (0, 5, 1),
        (1, 1, 1),
        (3, 15, 1),
        (5, 16, 1),
        (7, 17, 2),
        (9, 33, 3),
        (13, 100, 5),
        (6, 64, 8),
        (11, 31, 9),
        (17, 130, 12),
        (4, 4, 4),
        (10, 47, 7),
        (2, 1024, 6),
    ];
    let mut cases: Vec<(usize, usize, usize)> = shapes.to_vec();
    if std::mem::size_of::<T>() == 2 {
        cases.push((520, 2048, 1)); // past 2 MiB of H: the row-at-a-time policy
        cases.push((530, 2000, 3));
    }
    for (ci, &(n, d, e)) in cases.iter().enumerate() {
        let (hs, ws, os) = (d + ci % 3, d + (ci % 2) * 5, e + ci % 4);
        let special = if ci % 4 == 3 { 0.02 } else { 0.0 };
        let h: Vec<T> = conv(&rng.f32s(n * hs + 1, 2.0, special));
        let w: Vec<T> = conv(&rng.f32s(e * ws + 1, 1.0, 0.0));
        let bias = rng.f32s(e, 1.0, 0.0);
        for act in [Activation::None, Activation::Sigmoid] {
            let with_bias = (ci + act as usize).is_multiple_of(2);
            let case = format!(
                "score {} n={n} d={d} e={e} {act:?} bias={with_bias}",
                T::NAME
            );
            g.each(reg, &case, |f| {
                let mut out = vec![-7f32; n * os + 1];
                let a = ScoreArgs {
                    h: h[1..].as_ptr(),
                    n,
                    d,
                    h_stride: hs,
                    w: w[1..].as_ptr(),
                    e,
                    w_stride: ws,
                    bias: if with_bias {
                        bias.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    act,
                    out: out.as_mut_ptr(),
                    out_stride: os,
                };
                // SAFETY: the buffers hold the rows the strides describe.
                unsafe { f(&a) };
                as_bytes(&out).to_vec()
            });
        }
    }
}

// ---------------------------------------------------------------------------------
// select

fn threshold_cases(g: &mut Golden) {
    let mut rng = Rng::new(3);
    let sizes = [0, 1, 5, 16, 17, 63, 64, 65, 100, 1000, 4099];
    let taus = [
        0.3,
        0.0,
        -0.0,
        -0.5,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.999,
    ];
    let mut ci = 0;
    for &n in &sizes {
        let mut s = rng.f32s(n, 1.0, 0.05);
        for x in s.iter_mut() {
            if rng.below(5) == 0 {
                *x = (rng.below(7) as f32 - 3.0) * 0.25; // ties
            }
        }
        let keep: Vec<u8> = (0..n)
            .map(|_| (rng.below(9) == 0) as u8 * rng.bytes(1)[0])
            .collect();
        for &tau in &taus {
            ci += 1;
            let (kf, kl) = if ci % 3 == 0 {
                (ci % 5, ci % 7)
            } else {
                (0, 0)
            };
            let use_keep = ci % 4 == 1;
            let outs = ci % 3; // 0: both, 1: indices, 2: mask
            let case =
                format!("threshold n={n} tau={tau} kf={kf} kl={kl} keep={use_keep} outs={outs}");
            g.each(select::THRESHOLD_F32, &case, |f| {
                let mut idx = vec![u32::MAX; n + 1];
                let mut mask = vec![9u8; n + 5];
                let a = ThresholdArgs {
                    scores: s.as_ptr(),
                    n,
                    tau,
                    keep_first: kf,
                    keep_last: kl,
                    keep: if use_keep {
                        keep.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    out_idx: if outs != 2 {
                        idx.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    out_mask: if outs != 1 {
                        mask.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    mask_len: n + 5,
                };
                // SAFETY: outputs sized as the contract asks.
                let c = unsafe { f(&a) };
                let mut out = (c as u64).to_le_bytes().to_vec();
                if outs != 2 {
                    out.extend(as_bytes(&idx[..c]));
                }
                if outs != 1 {
                    out.extend(&mask);
                }
                out
            });
        }
    }
}

fn topk_cases(g: &mut Golden) {
    let mut rng = Rng::new(4);
    // (n, k, keep_first, keep_last, keep-byte rate (0: none), data kind)
    let cases: &[(usize, usize, usize, usize, usize, u8)] = &[
        (1, 1, 0, 0, 0, 0),
        (10, 3, 0, 0, 0, 1),
        (100, 7, 2, 3, 0, 0),
        (512, 100, 0, 0, 5, 2),
        (513, 1, 0, 0, 0, 0),
        (1000, 500, 0, 0, 0, 1),
        (1000, 999, 0, 0, 0, 0),
        (1000, 1000, 0, 0, 0, 0),
        (1000, 0, 0, 0, 0, 0),
        (5000, 10, 0, 0, 0, 0),
        (5000, 10, 0, 0, 20, 0),
        (5000, 40, 1, 1, 3, 0),
        (5000, 500, 0, 0, 0, 3),
        (5000, 2500, 0, 0, 0, 2),
        (50257, 50, 0, 0, 0, 0),
        (50257, 50, 0, 0, 0, 4),
        (50257, 5025, 0, 0, 7, 1),
        (65536, 64, 4, 4, 0, 5),
        (150000, 64, 0, 0, 0, 0),
        (150000, 15000, 0, 0, 0, 1),
        (20000, 700, 0, 0, 2, 0),
        (3000, 30, 0, 0, 0, 6),
    ];
    for (ci, &(n, k, kf, kl, rate, kind)) in cases.iter().enumerate() {
        let mut s = match kind {
            1 => rng.f32s(n, 1.0, 0.03),
            2 => (0..n).map(|_| rng.below(5) as f32 - 2.0).collect(), // few distinct
            3 => vec![0.5; n],
            4 => (0..n).map(|i| i as f32 * 1e-3).collect(), // ascending
            5 => (0..n).map(|i| -(i as f32)).collect(),
            6 => (0..n)
                .map(|i| if i % 7 == 0 { f32::NAN } else { -0.0 })
                .collect(),
            _ => rng.f32s(n, 1.0, 0.0),
        };
        if kind == 0 && n > 2 {
            s[n / 2] = f32::NAN;
        }
        let keep: Vec<u8> = (0..n)
            .map(|_| (rate > 0 && rng.below(rate * 10) == 0) as u8)
            .collect();
        let mut keep = keep;
        let (kf2, kl2) = select::forced_ranges(n, kf, kl);
        for b in keep.iter_mut().take(kf2) {
            *b = 0;
        }
        for b in keep.iter_mut().skip(n - kl2) {
            *b = 0;
        }
        let forced = kf2 + kl2 + keep.iter().filter(|&&b| b != 0).count();
        let k = k.max(forced).min(n);
        for order in [Order::Position, Order::Score] {
            let scores_out = (ci + order as usize).is_multiple_of(2);
            let case =
                format!("topk n={n} k={k} kf={kf} kl={kl} keep={rate} kind={kind} {order:?}");
            g.each(select::TOPK_F32, &case, |f| {
                let mut idx = vec![0u32; k];
                let mut sc = vec![0f32; k];
                let mut scratch = vec![0u64; select::topk_scratch_words(n).div_ceil(2)];
                let a = TopkArgs {
                    scores: s.as_ptr(),
                    n,
                    k,
                    keep_first: kf,
                    keep_last: kl,
                    keep: if rate > 0 {
                        keep.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    order,
                    out_idx: idx.as_mut_ptr(),
                    out_scores: if scores_out {
                        sc.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    scratch: scratch.as_mut_ptr() as *mut u32,
                };
                // SAFETY: k >= forced, k <= n, buffers as the contract asks.
                unsafe { f(&a) };
                let mut out = as_bytes(&idx).to_vec();
                out.extend(as_bytes(&sc));
                out
            });
        }
    }
}

fn mask_cases(g: &mut Golden) {
    let mut rng = Rng::new(5);
    for n in [0, 1, 3, 4, 5, 15, 16, 17, 33, 100, 1001] {
        let mask: Vec<u8> = (0..n)
            .map(|_| {
                if rng.below(3) == 0 {
                    rng.bytes(1)[0]
                } else {
                    0
                }
            })
            .collect();
        g.each(
            select::MASK_TO_INDICES,
            &format!("mask_to_indices n={n}"),
            |f| {
                let mut out = vec![u32::MAX; n];
                // SAFETY: n bytes in, room for n indices.
                let c = unsafe { f(mask.as_ptr(), n, out.as_mut_ptr()) };
                let mut b = (c as u64).to_le_bytes().to_vec();
                b.extend(as_bytes(&out[..c]));
                b
            },
        );
        g.each(
            select::COUNT_NONZERO_U8,
            &format!("count_nonzero n={n}"),
            |f| {
                // SAFETY: n bytes.
                (unsafe { f(mask.as_ptr(), n) } as u64)
                    .to_le_bytes()
                    .to_vec()
            },
        );
        let idx = rng.distinct(n / 3, n);
        g.each(
            select::INDICES_TO_MASK,
            &format!("indices_to_mask n={n}"),
            |f| {
                let mut m = vec![7u8; n];
                // SAFETY: every index < n.
                unsafe { f(idx.as_ptr(), idx.len(), m.as_mut_ptr(), n) };
                m
            },
        );
    }
}

// ---------------------------------------------------------------------------------
// compact

fn copy_rows_cases(g: &mut Golden) {
    let mut rng = Rng::new(6);
    let sizes = [
        0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256,
        257, 300, 1000, 4100,
    ];
    for (ci, &rb) in sizes.iter().enumerate() {
        let rows = 37;
        let (ss, ds) = (rb + ci % 5, rb + (ci * 3) % 7);
        let src = rng.bytes(rows * ss + 3);
        let dst0 = rng.bytes(rows * ds + 3);
        let gather: Vec<u32> = (0..rows).map(|_| rng.below(rows) as u32).collect();
        let perm = rng.distinct(rows, rows);
        let mut asc = rng.distinct(rows / 2, rows);
        asc.sort_unstable();
        for mode in 0..6 {
            // 0 gather, 1 scatter, 2 both maps, 3 none, 4 in-place compaction, 5 gather
            // from position 5 with a whole-copy hint past the streaming threshold.
            let case = format!("copy_rows rb={rb} mode={mode}");
            g.each(compact::COPY_ROWS, &case, |f| {
                let mut dst = dst0.clone();
                let mut inplace = src.clone();
                let a = match mode {
                    4 => CopyRowsArgs {
                        src: inplace.as_ptr(),
                        src_stride: ss,
                        src_idx: asc.as_ptr(),
                        dst: inplace.as_mut_ptr(),
                        dst_stride: ss,
                        dst_idx: std::ptr::null(),
                        first: 0,
                        n: asc.len(),
                        row_bytes: rb,
                        whole_bytes: 0,
                    },
                    _ => CopyRowsArgs {
                        src: src.as_ptr(),
                        src_stride: ss,
                        src_idx: if matches!(mode, 0 | 2 | 5) {
                            gather.as_ptr()
                        } else {
                            std::ptr::null()
                        },
                        dst: dst.as_mut_ptr(),
                        dst_stride: ds,
                        dst_idx: if matches!(mode, 1 | 2) {
                            perm.as_ptr()
                        } else {
                            std::ptr::null()
                        },
                        first: if mode == 5 { 5 } else { 0 },
                        n: rows,
                        row_bytes: rb,
                        whole_bytes: if mode == 5 { 16 << 20 } else { 0 },
                    },
                };
                // SAFETY: every addressed row is in its buffer; maps as the contract asks.
                unsafe { f(&a) };
                if mode == 4 {
                    inplace
                } else {
                    dst
                }
            });
        }
    }
    // A copy past the streaming threshold (8 MiB of 4 KiB rows, unaligned rows).
    let (rows, rb) = (2100, 4000);
    let src = rng.bytes(rows * 4096 + 64);
    let idx: Vec<u32> = (0..rows).map(|_| rng.below(rows) as u32).collect();
    g.each(compact::COPY_ROWS, "copy_rows large gather", |f| {
        let mut dst = vec![0u8; rows * 4100 + 64];
        let a = CopyRowsArgs {
            src: src[3..].as_ptr(),
            src_stride: 4096,
            src_idx: idx.as_ptr(),
            dst: dst[5..].as_mut_ptr(),
            dst_stride: 4100,
            dst_idx: std::ptr::null(),
            first: 0,
            n: rows,
            row_bytes: rb,
            whole_bytes: 0,
        };
        // SAFETY: as above.
        unsafe { f(&a) };
        dst
    });
}

fn scatter_add_type<T: Elt>(g: &mut Golden, reg: &[KernelInfo<ScatterAddFn<T>>]) {
    let mut rng = Rng::new(7);
    for (ci, d) in [1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 257]
        .into_iter()
        .enumerate()
    {
        let (rows, n) = (20, 9);
        let (hs, ys) = (d + ci % 3, d + ci % 2);
        let h0: Vec<T> = conv(&rng.f32s(rows * hs, 4.0, 0.03));
        let y: Vec<T> = conv(&rng.f32s(n * ys, 4.0, 0.03));
        let mut gate = rng.f32s(n, 2.0, 0.1);
        gate[0] = 0.0;
        let idx = rng.distinct(n, rows);
        for gated in [false, true] {
            let case = format!("scatter_add {} d={d} gated={gated}", T::NAME);
            g.each(reg, &case, |f| {
                let mut h = h0.clone();
                let a = ScatterAddArgs {
                    h: h.as_mut_ptr(),
                    h_stride: hs,
                    idx: idx.as_ptr(),
                    n,
                    y: y.as_ptr(),
                    y_stride: ys,
                    g: if gated {
                        gate.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    d,
                };
                // SAFETY: distinct indices of valid rows.
                unsafe { f(&a) };
                as_bytes(&h).to_vec()
            });
        }
    }
}

// ---------------------------------------------------------------------------------
// attend

#[derive(Clone)]
enum Keys {
    Dense,
    Indices(Vec<u32>),
    Blocks(usize, usize, ListsPer, Vec<Vec<u32>>),
}

struct Att {
    n_q: usize,
    h_q: usize,
    h_kv: usize,
    d: usize,
    n_k: usize,
    pad: usize,
    keys: Keys,
    causal: bool,
    window: u32,
    out: OutType,
    lse: bool,
    mass: Option<bool>,
    special: f32,
    big: bool,
}

fn att_cases() -> Vec<Att> {
    let mut rng = Rng::new(8);
    let mut v = Vec::new();
    let shapes: [(usize, usize, usize, usize, usize); 10] = [
        (1, 1, 1, 1, 1),
        (3, 4, 1, 5, 63),
        (16, 4, 2, 16, 64),
        (17, 8, 8, 31, 65),
        (40, 6, 3, 32, 200),
        (5, 8, 2, 33, 130),
        (70, 2, 1, 64, 300),
        (2, 32, 8, 128, 257),
        (9, 4, 4, 80, 129),
        (1, 32, 8, 100, 700),
    ];
    for (i, &(n_q, h_q, h_kv, d, n_k)) in shapes.iter().enumerate() {
        let keys = match i % 4 {
            0 => Keys::Dense,
            1 => {
                let mut ix = rng.distinct(n_k * 2 / 3 + 1, n_k);
                if i % 8 == 1 {
                    ix.sort_unstable();
                }
                Keys::Indices(ix)
            }
            2 => Keys::Indices(((n_k / 3) as u32..n_k as u32).collect()),
            _ => {
                let block = [16, 64, 7][i % 3];
                let q_block = [1, 4, 16][i % 3];
                let per = [ListsPer::Shared, ListsPer::KvHead, ListsPer::QHead][(i / 3) % 3];
                let n_blocks = n_k.div_ceil(block);
                let lists = match per {
                    ListsPer::Shared => 1,
                    ListsPer::KvHead => h_kv,
                    ListsPer::QHead => h_q,
                } * n_q.div_ceil(q_block);
                let l = (0..lists)
                    .map(|_| {
                        let m = rng.below(n_blocks + 1);
                        rng.distinct(m, n_blocks)
                    })
                    .collect();
                Keys::Blocks(block, q_block, per, l)
            }
        };
        for variant in 0..3 {
            v.push(Att {
                n_q,
                h_q,
                h_kv,
                d,
                n_k,
                pad: (i + variant) % 3,
                keys: keys.clone(),
                causal: variant != 0,
                window: if variant == 2 {
                    1 + (i as u32 * 37) % 90
                } else {
                    0
                },
                out: [OutType::F32, OutType::F16, OutType::BF16][(i + variant) % 3],
                lse: variant != 1,
                mass: [None, Some(false), Some(true)][(i + 2 * variant) % 3],
                special: if (i + variant) % 5 == 4 { 0.01 } else { 0.0 },
                big: (i + variant) % 7 == 3,
            });
        }
    }
    v
}

fn attend_type<T: Elt>(g: &mut Golden, regs: &[&[KernelInfo<AttendFn<T>>]]) {
    let mut rng = Rng::new(9);
    for (ci, c) in att_cases().iter().enumerate() {
        let (qh, kh, vh, oh) = (
            c.d + c.pad,
            c.d + 2 * c.pad,
            c.d + c.pad,
            c.d + c.pad.div_ceil(2),
        );
        let (qt, kt, vt, ot) = (
            c.h_q * qh + c.pad,
            c.h_kv * kh + 3 * c.pad,
            c.h_kv * vh,
            c.h_q * oh + c.pad,
        );
        let a = if c.big { 30.0 } else { 2.0 };
        let q: Vec<T> = conv(&rng.f32s(c.n_q * qt, a, c.special));
        let k: Vec<T> = conv(&rng.f32s(c.n_k * kt, a, c.special));
        let v: Vec<T> = conv(&rng.f32s(c.n_k * vt, 2.0, c.special));
        let mut p = 0u32;
        let k_pos: Vec<u32> = (0..c.n_k)
            .map(|_| {
                p += 1 + (rng.below(4) == 0) as u32;
                p
            })
            .collect();
        let q_pos: Vec<u32> = (0..c.n_q)
            .map(|_| rng.below(p as usize + 3) as u32)
            .collect();
        let (mut offsets, mut ids) = (vec![0usize], Vec::new());
        let keys = match &c.keys {
            Keys::Dense => KeySet::Dense,
            Keys::Indices(ix) => KeySet::Indices {
                idx: ix.as_ptr(),
                n: ix.len(),
            },
            Keys::Blocks(block, q_block, per, lists) => {
                for l in lists {
                    ids.extend(l);
                    offsets.push(ids.len());
                }
                KeySet::Blocks {
                    block: *block,
                    q_block: *q_block,
                    offsets: offsets.as_ptr(),
                    ids: ids.as_ptr(),
                    per: *per,
                }
            }
        };
        let mass_len = c.n_k * c.h_kv.max(1);
        let case = format!(
            "attend {} #{ci} nq={} hq={} hkv={} d={} nk={} causal={} window={} out={:?}",
            T::NAME,
            c.n_q,
            c.h_q,
            c.h_kv,
            c.d,
            c.n_k,
            c.causal,
            c.window,
            c.out
        );
        for reg in regs {
            g.each(reg, &case, |f| {
                let mut out = vec![0x5au8; c.n_q * ot * c.out.size() + 2];
                let mut lse = vec![-3f32; c.n_q * c.h_q + 1];
                let mut mass = vec![0.25f32; mass_len];
                let mut ws = aligned(workspace_bytes(c.d).unwrap());
                let args = AttendArgs {
                    q: q.as_ptr(),
                    n_q: c.n_q,
                    h_q: c.h_q,
                    d: c.d,
                    dv: c.d,
                    q_tok: qt,
                    q_head: qh,
                    k: k.as_ptr(),
                    n_k: c.n_k,
                    h_kv: c.h_kv,
                    k_tok: kt,
                    k_head: kh,
                    v: v.as_ptr(),
                    v_tok: vt,
                    v_head: vh,
                    keys,
                    scale: 1.0 / (c.d as f32).sqrt(),
                    softcap: 0.0,
                    alibi: std::ptr::null(),
                    bias: std::ptr::null(),
                    bias_head: 0,
                    bias_query: 0,
                    bias_type: OutType::F32,
                    causal: c.causal,
                    window: c.window,
                    right: 0,
                    q_pos: q_pos.as_ptr(),
                    k_pos: k_pos.as_ptr(),
                    out: out[1..].as_mut_ptr(),
                    out_type: c.out,
                    o_tok: ot,
                    o_head: oh,
                    lse: if c.lse {
                        lse.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    lse_tok: c.h_q,
                    mass: if c.mass.is_some() {
                        mass.as_mut_ptr()
                    } else {
                        std::ptr::null_mut()
                    },
                    mass_head: if c.mass == Some(true) { c.n_k } else { 0 },
                    workspace: ws.as_mut_ptr() as *mut u8,
                };
                // SAFETY: every tensor holds the rows its strides describe; indices,
                // block ids and positions are in range; the workspace is sized.
                unsafe { f(&args) };
                let mut b = out;
                b.extend(as_bytes(&lse));
                b.extend(as_bytes(&canonical_nans(mass)));
                b
            });
        }
    }
}

/// The attention mass with every NaN as the canonical quiet NaN: the code the goldens
/// were recorded from left the payload of a NaN mass (from NaN inputs) to the order of
/// its operations, which differed between levels; outputs and log-sum-exps were already
/// canonical, and the mass is now too (`kernels/tests/attend.rs` checks it).
fn canonical_nans(mut v: Vec<f32>) -> Vec<f32> {
    for x in v.iter_mut().filter(|x| x.is_nan()) {
        *x = f32::from_bits(0x7fc0_0000);
    }
    v
}

fn merge_cases(g: &mut Golden) {
    let mut rng = Rng::new(10);
    for (ci, (parts, rows, d)) in [
        (1, 3, 1),
        (2, 4, 7),
        (3, 5, 16),
        (5, 2, 17),
        (2, 6, 33),
        (4, 3, 100),
    ]
    .into_iter()
    .enumerate()
    {
        let o = rng.f32s(parts * rows * (d + 1), 3.0, 0.01);
        let mut lse = rng.f32s(parts * rows, 20.0, 0.0);
        let at = ci % lse.len();
        lse[at] = f32::NEG_INFINITY;
        if ci == 3 {
            lse[1] = f32::NAN;
        }
        if ci == 4 {
            for r in 0..parts {
                lse[r * rows] = f32::NEG_INFINITY; // a row with nothing
            }
        }
        for out_type in [OutType::F32, OutType::F16, OutType::BF16] {
            let case = format!("merge parts={parts} rows={rows} d={d} out={out_type:?}");
            g.each(attend::MERGE_F32, &case, |f| {
                let mut out = vec![0x33u8; rows * (d + 2) * out_type.size()];
                let mut out_lse = vec![1f32; rows];
                let mut ws = vec![0f32; d];
                let a = MergeArgs {
                    n_parts: parts,
                    n_rows: rows,
                    d,
                    o: o.as_ptr(),
                    part_stride: rows * (d + 1),
                    row_stride: d + 1,
                    lse: lse.as_ptr(),
                    lse_part_stride: rows,
                    out: out.as_mut_ptr(),
                    out_type,
                    out_row_stride: d + 2,
                    out_lse: if out_type == OutType::F16 {
                        std::ptr::null_mut()
                    } else {
                        out_lse.as_mut_ptr()
                    },
                    workspace: ws.as_mut_ptr(),
                };
                // SAFETY: buffers as described.
                unsafe { f(&a) };
                out.extend(as_bytes(&out_lse));
                out
            });
        }
    }
}

fn quest_type<T>(
    g: &mut Golden,
    sums: &[KernelInfo<SummaryFn<T>>],
    bounds: &[KernelInfo<BoundFn<T>>],
) where
    T: Elt + tokenroute::AttendElement,
{
    let mut rng = Rng::new(11);
    for (ci, (n_k, h_kv, d, block)) in [
        (1, 1, 1, 1),
        (100, 2, 17, 16),
        (257, 4, 64, 64),
        (300, 1, 130, 7),
    ]
    .into_iter()
    .enumerate()
    {
        let kt = h_kv * (d + 1) + 2;
        let k: Vec<T> = conv(&rng.f32s(n_k * kt, 3.0, if ci == 2 { 0.01 } else { 0.0 }));
        let n_blocks = n_k.div_ceil(block);
        let len = n_blocks * h_kv * d;
        let summary = |f: SummaryFn<T>, b0: usize, b1: usize| {
            let (mut mn, mut mx) = (vec![9f32; len], vec![9f32; len]);
            let a = SummaryArgs {
                k: k.as_ptr(),
                n_k,
                h_kv,
                d,
                k_tok: kt,
                k_head: d + 1,
                block,
                b0,
                b1,
                kmin: mn.as_mut_ptr(),
                kmax: mx.as_mut_ptr(),
            };
            // SAFETY: blocks b0..b1 of K exist; outputs hold every block.
            unsafe { f(&a) };
            (mn, mx)
        };
        g.each(
            sums,
            &format!(
                "summary {} nk={n_k} hkv={h_kv} d={d} block={block}",
                T::NAME
            ),
            |f| {
                let (mut mn, mx) = summary(f, n_blocks / 3, n_blocks);
                mn.extend(mx);
                as_bytes(&mn).to_vec()
            },
        );
        // Bounds from the scalar summary, so each level's bound sees the same input.
        let (mn, mx) = summary(sums[0].f, 0, n_blocks);
        let (n_q, h_q) = (3, 2 * h_kv);
        let qt = h_q * d + 1;
        let q: Vec<T> = conv(&rng.f32s(n_q * qt, 2.0, if ci == 3 { 0.01 } else { 0.0 }));
        g.each(
            bounds,
            &format!("bound {} nk={n_k} hkv={h_kv} d={d} block={block}", T::NAME),
            |f| {
                let mut out = vec![5f32; n_q * h_q * (n_blocks + 1)];
                let mut ws = aligned(4 * ((d + 15) & !15));
                let a = BoundArgs {
                    q: q.as_ptr(),
                    n_q,
                    h_q,
                    d,
                    q_tok: qt,
                    q_head: d,
                    kmin: mn.as_ptr(),
                    kmax: mx.as_ptr(),
                    n_blocks,
                    h_kv,
                    out: out.as_mut_ptr(),
                    out_stride: n_blocks + 1,
                    workspace: ws.as_mut_ptr() as *mut f32,
                };
                // SAFETY: buffers as described.
                unsafe { f(&a) };
                as_bytes(&out).to_vec()
            },
        );
        // Quest's selection end to end (bounds -> top-k with forced blocks), per level.
        let heads = Heads::new(&q, n_q, h_q, d, qt, d).unwrap();
        let k_sel = (n_blocks / 2).max(1);
        let (kf, kl) = (ci % 2, (ci / 2) % 2);
        if kf + kl > k_sel.min(n_blocks) {
            continue;
        }
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut ids = vec![0u32; n_q * h_q * k_sel];
            let mut offsets = vec![0usize; n_q * h_q + 1];
            let ke = kern
                .quest_select_blocks(
                    heads,
                    &mn,
                    &mx,
                    n_blocks,
                    h_kv,
                    k_sel,
                    kf,
                    kl,
                    &mut ids,
                    &mut offsets,
                )
                .unwrap();
            let mut b = (ke as u64).to_le_bytes().to_vec();
            b.extend(as_bytes(&ids));
            let case = format!(
                "quest {} nk={n_k} hkv={h_kv} d={d} block={block} k={k_sel}",
                T::NAME
            );
            g.put(&case, isa, "tkr_quest_select_blocks", &b);
        }
    }
}

// ---------------------------------------------------------------------------------
// attention through the safe API (the path users run): its split into kernel calls
// (split-K decoding in 512-key chunks merged in chunk order, mass partial sums, row
// units) on top of the kernels above

fn attention_api_type<T: Elt + tokenroute::AttendElement>(g: &mut Golden) {
    let mut rng = Rng::new(12);
    // (n_q, h_q, h_kv, d, n_k, index keys, causal, lse, mass per head (None: no mass))
    #[allow(clippy::type_complexity)]
    let cases: [(
        usize,
        usize,
        usize,
        usize,
        usize,
        bool,
        bool,
        bool,
        Option<bool>,
    ); 6] = [
        (1, 8, 2, 64, 1100, false, false, true, None),
        (2, 4, 4, 33, 1600, true, true, true, None),
        (1, 2, 1, 128, 2049, false, true, false, None),
        (300, 4, 2, 16, 70, false, true, true, Some(false)),
        (130, 8, 1, 24, 90, true, false, false, Some(true)),
        (90, 2, 2, 40, 300, false, true, true, None),
    ];
    for (ci, &(n_q, h_q, h_kv, d, n_k, indexed, causal, with_lse, mass)) in cases.iter().enumerate()
    {
        let special = if ci % 3 == 1 { 0.002 } else { 0.0 };
        let q: Vec<T> = conv(&rng.f32s(n_q * h_q * d, 2.0, special));
        let k: Vec<T> = conv(&rng.f32s(n_k * h_kv * d, 2.0, special));
        let v: Vec<T> = conv(&rng.f32s(n_k * h_kv * d, 2.0, special));
        let k_pos: Vec<u32> = (0..n_k as u32).map(|i| i + i / 7).collect();
        let last = k_pos[n_k - 1] as usize;
        let q_pos: Vec<u32> = (0..n_q)
            .map(|i| (last - last * i / (2 * n_q)) as u32)
            .collect();
        let idx: Vec<u32> = if indexed {
            rng.distinct(n_k * 3 / 4, n_k)
        } else {
            Vec::new()
        };
        let case = format!(
            "attention api {} #{ci} nq={n_q} hq={h_q} hkv={h_kv} d={d} nk={n_k} indexed={indexed} causal={causal}",
            T::NAME
        );
        for isa in Isa::ALL.into_iter().filter(|i| i.is_supported()) {
            let kern = Kernels::for_isa(isa).unwrap();
            let mut out = vec![0f32; n_q * h_q * d];
            let mut lse = vec![-3f32; n_q * h_q];
            let mut m = vec![0.5f32; n_k * h_kv];
            let keys = if indexed {
                tokenroute::KeySubset::Indices(&idx)
            } else {
                tokenroute::KeySubset::Dense
            };
            let opts = tokenroute::AttendOptions {
                causal,
                q_positions: Some(&q_pos),
                k_positions: Some(&k_pos),
                ..Default::default()
            };
            let extras = tokenroute::AttendExtras {
                lse: with_lse.then_some((&mut lse[..], h_q)),
                mass: mass.map(|per_head| (&mut m[..], if per_head { n_k } else { 0 })),
            };
            kern.attention(
                Heads::dense(&q, n_q, h_q, d).unwrap(),
                Heads::dense(&k, n_k, h_kv, d).unwrap(),
                Heads::dense(&v, n_k, h_kv, d).unwrap(),
                keys,
                &opts,
                tokenroute::HeadsMut::dense(&mut out, n_q, h_q, d).unwrap(),
                extras,
            )
            .unwrap();
            let mut b = as_bytes(&out).to_vec();
            b.extend(as_bytes(&lse));
            b.extend(as_bytes(&canonical_nans(m)));
            g.put(&case, isa, "Kernels::attention", &b);
        }
    }
}

// ---------------------------------------------------------------------------------
// softmax

fn softmax_type<T: Elt>(g: &mut Golden, reg: &[KernelInfo<SoftmaxFn<T>>]) {
    let mut rng = Rng::new(18);
    // (rows, n, extra stride, scale, bias: 0 none / 1 shared / 2 per row, out type)
    let shapes: [(usize, usize, usize, f32, u8, OutType); 10] = [
        (1, 0, 0, 1.0, 0, OutType::F32),
        (1, 1, 0, 1.0, 0, OutType::F32),
        (3, 7, 1, 0.5, 1, OutType::F16),
        (2, 17, 0, -1.25, 2, OutType::BF16),
        (2, 33, 2, 1.0, 0, OutType::F32),
        (1, 64, 0, 0.125, 1, OutType::F32),
        (2, 65, 3, 2.0, 2, OutType::F16),
        (1, 200, 0, 1.0, 0, OutType::BF16),
        (3, 1100, 1, 0.3, 1, OutType::F32),
        (1, 4099, 0, 1.0, 2, OutType::F32),
    ];
    for (ci, &(rows, n, extra, scale, bk, out_type)) in shapes.iter().enumerate() {
        let stride = n + extra;
        // Ordinary values; special ones (NaN rows, infinities, subnormals) in some of the
        // short rows (a long row would almost surely be a NaN row).
        let special = if ci % 3 == 0 || n > 65 { 0.0 } else { 0.02 };
        let x: Vec<T> = conv(&rng.f32s(rows * stride + 1, 40.0, special));
        let bias: Vec<f32> = match bk {
            0 => vec![],
            1 => rng.f32s(n, 4.0, special),
            _ => rng.f32s(rows * stride, 4.0, special),
        };
        let esz = out_type.size();
        let case = format!(
            "softmax {} rows={rows} n={n} stride={stride} scale={scale} bias={bk} out={out_type:?}",
            T::NAME
        );
        g.each(reg, &case, |f| {
            // u32 storage: aligned for every output type, then one element in.
            let mut out = vec![0x5a5a_5a5au32; ((rows * stride + 1) * esz).div_ceil(4)];
            let args = SoftmaxArgs {
                x: x[1..].as_ptr(),
                rows,
                n,
                x_stride: stride,
                scale,
                bias: if bk == 0 {
                    std::ptr::null()
                } else {
                    bias.as_ptr()
                },
                bias_stride: if bk == 2 { stride } else { 0 },
                out: (out.as_mut_ptr() as *mut u8).wrapping_add(esz),
                out_type,
                out_stride: stride,
            };
            // SAFETY: every buffer holds the rows the arguments describe.
            unsafe { f(&args) };
            as_bytes(&out).to_vec()
        });
    }
}

#[test]
fn every_kernel_reproduces_its_golden_outputs() {
    let mut g = Golden::load();
    sigmoid_cases(&mut g);
    score_type::<f32>(&mut g, score::SCORE_F32);
    score_type::<f16>(&mut g, score::SCORE_F16);
    score_type::<bf16>(&mut g, score::SCORE_BF16);
    threshold_cases(&mut g);
    topk_cases(&mut g);
    mask_cases(&mut g);
    copy_rows_cases(&mut g);
    scatter_add_type::<f32>(&mut g, compact::SCATTER_ADD_F32);
    scatter_add_type::<f16>(&mut g, compact::SCATTER_ADD_F16);
    scatter_add_type::<bf16>(&mut g, compact::SCATTER_ADD_BF16);
    attend_type::<f32>(&mut g, &[attend::ATTEND_F32]);
    attend_type::<f16>(&mut g, &[attend::ATTEND_F16]);
    #[cfg(target_arch = "x86_64")]
    let bf16_regs: &[&[KernelInfo<AttendFn<bf16>>]] =
        if std::arch::is_x86_feature_detected!("avx512bf16") {
            &[attend::ATTEND_BF16, attend::ATTEND_BF16_DPBF16]
        } else {
            &[attend::ATTEND_BF16]
        };
    #[cfg(not(target_arch = "x86_64"))]
    let bf16_regs: &[&[KernelInfo<AttendFn<bf16>>]] = &[attend::ATTEND_BF16];
    attend_type::<bf16>(&mut g, bf16_regs);
    merge_cases(&mut g);
    quest_type::<f32>(&mut g, attend::SUMMARY_F32, attend::BOUND_F32);
    quest_type::<f16>(&mut g, attend::SUMMARY_F16, attend::BOUND_F16);
    quest_type::<bf16>(&mut g, attend::SUMMARY_BF16, attend::BOUND_BF16);
    attention_api_type::<f32>(&mut g);
    attention_api_type::<f16>(&mut g);
    attention_api_type::<bf16>(&mut g);
    softmax_type::<f32>(&mut g, SOFTMAX_F32);
    softmax_type::<f16>(&mut g, SOFTMAX_F16);
    softmax_type::<bf16>(&mut g, SOFTMAX_BF16);
    g.finish();
}
