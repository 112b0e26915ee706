//! `tokenroute-bench`: the project's main command.
//!
//! Prints the CPU, measures this machine's single-core ceilings (read and copy
//! bandwidth, f32 FMA peak) at L1/L2/L3/DRAM sizes, then for every kernel family,
//! representative shapes and every ISA level the CPU has: checks the output against
//! the scalar level (bit-exact, or within the documented bound; a mismatch makes the
//! command exit with status 1), times it (warm-up, then the median, min and max of
//! several runs, each interleaved with a run of the relevant ceiling on the same
//! bytes) and prints time, throughput, % of the ceiling and speedup over scalar.
//!
//! ```text
//! cargo run --release -p tokenroute-bench -- [--quick] [--filter TEXT] [--json FILE]
//! cargo run --release -p tokenroute-bench -- --compare A.json B.json
//! ```

mod cases;
mod ceiling;
mod cpu;
mod report;

use std::time::{Duration, Instant};
use tokenroute::{Isa, Kernels};

/// Which of the machine's ceilings a case is held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// Reading this many bytes once (SIMD sum).
    Read(u64),
    /// Copying this many bytes (memcpy).
    Copy(u64),
    /// The f32 FMA peak (the case reports flops).
    Fma,
    /// The roofline: reading this many bytes or doing the case's flops at the FMA
    /// peak, whichever takes longer.
    Roofline(u64),
}

/// One benchmark case: a kernel on one shape, runnable on any level.
pub trait Case {
    fn family(&self) -> &'static str;
    /// The operation, e.g. `score_bf16_e1`.
    fn name(&self) -> String;
    fn shape(&self) -> String;
    /// Bytes read + written by one run (for GB/s).
    fn bytes(&self) -> u64;
    /// Floating-point operations of one run (0 when not meaningful).
    fn flops(&self) -> u64 {
        0
    }
    fn bound(&self) -> Bound;
    fn run(&mut self, k: &'static Kernels);
    /// The output of the last run, as bits, for the check against scalar.
    fn output(&self) -> Vec<u32>;
    /// Compares a level's output with the scalar level's: Ok(what held) or Err(why not).
    fn check(&self, scalar: &[u32], got: &[u32]) -> Result<&'static str, String> {
        match scalar.iter().zip(got).position(|(a, b)| a != b) {
            None if scalar.len() == got.len() => Ok("bit-exact"),
            None => Err(format!(
                "output lengths differ: {} vs {}",
                scalar.len(),
                got.len()
            )),
            Some(i) => Err(format!(
                "element {i}: {:#010x} vs scalar {:#010x}",
                got[i], scalar[i]
            )),
        }
    }
    /// Levels not worth timing for this case (the scalar reference on huge shapes);
    /// the check still runs.
    fn time_level(&self, _isa: Isa) -> bool {
        true
    }
}

/// One timed result.
#[derive(Clone, Debug)]
pub struct Result_ {
    pub family: String,
    pub name: String,
    pub shape: String,
    pub level: String,
    pub check: String,
    pub ok: bool,
    pub reps: usize,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub bytes: u64,
    pub flops: u64,
    pub ceiling: String,
    /// Ceiling throughput (bytes/s or flop/s) measured interleaved with this case.
    pub ceiling_rate: f64,
    /// This case's throughput as a fraction of the ceiling.
    pub of_ceiling: f64,
    pub speedup_vs_scalar: Option<f64>,
}

pub struct Options {
    pub quick: bool,
    pub filter: Option<String>,
    pub json: Option<String>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` repeatedly, each run preceded by one run of each ceiling, until `budget`
/// is spent (at least `min_reps`, at most `max_reps`): the kernel's times and each
/// ceiling's times (so that a busy machine slows both alike and the ratio holds).
fn timed(
    budget: Duration,
    min_reps: usize,
    max_reps: usize,
    mut f: impl FnMut(),
    mut ceiling: impl FnMut(),
    mut fma: impl FnMut(),
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut ts, mut cs, mut fs) = (Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    while ts.len() < max_reps && (ts.len() < min_reps || start.elapsed() < budget) {
        let t = Instant::now();
        ceiling();
        cs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        fma();
        fs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        f();
        ts.push(t.elapsed().as_secs_f64());
    }
    (ts, cs, fs)
}

/// Rounds of the register-resident FMA loop interleaved with compute-bound cases
/// (about 1 ms at 100 GFLOP/s).
const FMA_ITERS: u64 = 250_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options {
        quick: false,
        filter: None,
        json: None,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => opts.quick = true,
            "--filter" => {
                i += 1;
                opts.filter = args.get(i).cloned();
            }
            "--json" => {
                i += 1;
                opts.json = args.get(i).cloned();
            }
            "--compare" => {
                let (Some(a), Some(b)) = (args.get(i + 1), args.get(i + 2)) else {
                    eprintln!("--compare needs two JSON files");
                    std::process::exit(2);
                };
                std::process::exit(report::compare(a, b));
            }
            "--help" | "-h" => {
                println!(
                    "tokenroute-bench [--quick] [--filter TEXT] [--json FILE]\n\
                     tokenroute-bench --compare A.json B.json\n\n\
                     Checks every kernel against the scalar level and times it on every ISA level\n\
                     this CPU has, against this machine's measured ceilings. --filter keeps the\n\
                     cases whose 'family/name/shape' contains TEXT; --quick runs in under a minute."
                );
                return;
            }
            other => {
                eprintln!("unknown argument {other:?} (see --help)");
                std::process::exit(2);
            }
        }
        i += 1;
    }

    let info = cpu::detect();
    println!(
        "tokenroute-bench {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        if opts.quick { "quick" } else { "full" }
    );
    print!("{}", info.describe());

    let ceilings = report::measure_ceilings(&info, opts.quick);
    report::print_ceilings(&ceilings);

    let levels: Vec<&'static Kernels> = Kernels::all_supported().collect();
    let scalar = Kernels::for_isa(Isa::Scalar).expect("scalar is always supported");
    let mut cases = cases::all(opts.quick);
    if let Some(f) = &opts.filter {
        cases.retain(|c| format!("{}/{}/{}", c.family(), c.name(), c.shape()).contains(f.as_str()));
    }
    let budget = Duration::from_millis(if opts.quick { 60 } else { 600 });
    let total = cases.len();
    let mut results: Vec<Result_> = Vec::new();
    let mut failures = 0;
    let fma_rate = ceilings
        .iter()
        .find(|c| c.kind == "fma")
        .map_or(0.0, |c| c.rate);
    for (ci, case) in cases.iter_mut().enumerate() {
        case.run(scalar);
        let reference = case.output();
        let bound = case.bound();
        let ceiling_buf: Vec<f32> = match bound {
            Bound::Read(b) | Bound::Copy(b) | Bound::Roofline(b) => {
                vec![1.0; (b as usize).div_ceil(4)]
            }
            Bound::Fma => Vec::new(),
        };
        let mut copy_dst = match bound {
            Bound::Copy(_) => vec![0f32; ceiling_buf.len()],
            _ => Vec::new(),
        };
        let mut scalar_median = None;
        for &k in &levels {
            eprint!(
                "\r[{}/{}] {} {} {:<8}      ",
                ci + 1,
                total,
                case.name(),
                case.shape(),
                k.isa().name()
            );
            case.run(k);
            let (check, ok) = match case.check(&reference, &case.output()) {
                Ok(what) => (what.to_string(), true),
                Err(why) => (format!("MISMATCH: {why}"), false),
            };
            if !ok {
                failures += 1;
            }
            if !case.time_level(k.isa()) {
                results.push(report::untimed(&**case, k.isa(), check, ok));
                continue;
            }
            // The FMA peak is measured interleaved with every case that is held to it
            // (the start-up measurement only reports it): on a shared machine a peak
            // measured once, minutes earlier, gives ratios above 100%.
            let uses_fma = matches!(bound, Bound::Fma | Bound::Roofline(_)) && case.flops() > 0;
            let fma_round = || {
                if uses_fma {
                    std::hint::black_box(ceiling::fma_loop(std::hint::black_box(FMA_ITERS)));
                }
            };
            let (mut ts, mut cs, mut fs) = match bound {
                Bound::Read(_) | Bound::Roofline(_) => timed(
                    budget,
                    3,
                    200,
                    || case.run(k),
                    || {
                        std::hint::black_box(ceiling::read_sum(&ceiling_buf));
                    },
                    fma_round,
                ),
                Bound::Copy(_) => timed(
                    budget,
                    3,
                    200,
                    || case.run(k),
                    || {
                        copy_dst.copy_from_slice(&ceiling_buf);
                        std::hint::black_box(&copy_dst);
                    },
                    fma_round,
                ),
                Bound::Fma => timed(budget, 3, 200, || case.run(k), || {}, fma_round),
            };
            let fma_rate = if uses_fma {
                ceiling::fma_loop_flops(FMA_ITERS) as f64 / median(&mut fs)
            } else {
                fma_rate
            };
            let med = median(&mut ts);
            let (ceiling_name, ceiling_rate, of_ceiling) = match bound {
                Bound::Read(b) => {
                    let r = b as f64 / median(&mut cs);
                    (
                        format!("read {}", cpu::human_bytes(b)),
                        r,
                        (b as f64 / med) / r,
                    )
                }
                Bound::Copy(b) => {
                    let r = b as f64 / median(&mut cs);
                    (
                        format!("copy {}", cpu::human_bytes(b)),
                        r,
                        (b as f64 / med) / r,
                    )
                }
                Bound::Fma => (
                    "f32 FMA peak".to_string(),
                    fma_rate,
                    (case.flops() as f64 / med) / fma_rate,
                ),
                Bound::Roofline(b) => {
                    let read = b as f64 / median(&mut cs);
                    let t_read = b as f64 / read;
                    let t_fma = case.flops() as f64 / fma_rate;
                    if t_fma > t_read {
                        ("roofline: FMA".to_string(), fma_rate, t_fma / med)
                    } else {
                        (
                            format!("roofline: read {}", cpu::human_bytes(b)),
                            read,
                            t_read / med,
                        )
                    }
                }
            };
            if k.isa() == Isa::Scalar {
                scalar_median = Some(med);
            }
            results.push(Result_ {
                family: case.family().into(),
                name: case.name(),
                shape: case.shape(),
                level: k.isa().name().into(),
                check,
                ok,
                reps: ts.len(),
                median_s: med,
                min_s: ts[0],
                max_s: *ts.last().unwrap(),
                bytes: case.bytes(),
                flops: case.flops(),
                ceiling: ceiling_name,
                ceiling_rate,
                of_ceiling,
                speedup_vs_scalar: scalar_median.map(|s| s / med),
            });
        }
    }
    eprint!("\r{:<80}\r", "");
    report::print_results(&results);
    if let Some(path) = &opts.json {
        let doc = report::to_json(&info, &ceilings, &results, opts.quick);
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n")
            .unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("\nwrote {path}");
    }
    if failures > 0 {
        eprintln!("\n{failures} check(s) FAILED: a level disagrees with the scalar reference");
        std::process::exit(1);
    }
}
