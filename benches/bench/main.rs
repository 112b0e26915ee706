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
//! With more than one thread count (`--threads`, default `1,max`), every case is also
//! timed on the best level at each other count (the library's built-in pool), checked
//! bit-exact against the single-threaded scalar output, and held to the machine's
//! ceilings measured with as many threads (read and copy bandwidth split across the
//! threads, the FMA peak times the threads): speedup over one thread and parallel
//! efficiency (speedup / threads) are printed and saved.
//!
//! ```text
//! cargo run --release -p tokenroute-bench -- [--quick] [--filter TEXT] [--json FILE]
//!     [--threads 1,2,max] [--best-only]
//! cargo run --release -p tokenroute-bench -- --compare A.json B.json
//! cargo run --release -p tokenroute-bench -- --summary A.json   # the scaling table
//! ```

mod cases;
mod ceiling;
mod cpu;
mod report;

use std::time::{Duration, Instant};
use tokenroute::parallel::{self, Executor};
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
    /// Threads the case ran on (the library's pool; 1: inline).
    pub threads: usize,
    /// The same level's single-threaded median over this one (rows with threads > 1).
    pub speedup_vs_1_thread: Option<f64>,
    /// Median process CPU seconds of one run (all threads; NaN where unknown).
    pub cpu_s: f64,
    /// The same level's single-threaded CPU time over this one's: the work efficiency
    /// of the split (1 = no overhead), whatever the machine's load.
    pub cpu_vs_1_thread: Option<f64>,
}

pub struct Options {
    pub quick: bool,
    pub filter: Option<String>,
    pub json: Option<String>,
    /// Thread counts to time (1 first).
    pub threads: Vec<usize>,
    /// Time the best level only (the others are still checked).
    pub best_only: bool,
}

/// Parses `--threads`: comma-separated counts, `max` for every core; 1 always first.
fn parse_threads(s: &str) -> Option<Vec<usize>> {
    let max = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut v = vec![1];
    for t in s.split(',') {
        let n = match t.trim() {
            "max" => max,
            x => x
                .parse::<usize>()
                .ok()
                .filter(|&n| (1..=parallel::MAX_THREADS).contains(&n))?,
        };
        if !v.contains(&n) {
            v.push(n);
        }
    }
    Some(v)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// CPU seconds used by this process so far (every thread), or NaN where unknown. On a
/// shared machine it does not count the time spent waiting for a core, so the CPU time
/// of a run at several threads against one thread shows the split's overhead (its work
/// efficiency) whatever the load.
pub fn process_cpu_s() -> f64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct Timespec {
            sec: i64,
            nsec: i64,
        }
        extern "C" {
            fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
        }
        const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
        let mut ts = Timespec { sec: 0, nsec: 0 };
        // SAFETY: clock_gettime writes one timespec (64-bit time_t on Linux targets).
        if unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return ts.sec as f64 + ts.nsec as f64 * 1e-9;
        }
    }
    f64::NAN
}

/// Runs `f` repeatedly, each run preceded by one run of each ceiling, until `budget`
/// is spent (at least `min_reps`, at most `max_reps`): the kernel's times and each
/// ceiling's times (so that a busy machine slows both alike and the ratio holds), and
/// the kernel's process CPU times.
fn timed(
    budget: Duration,
    min_reps: usize,
    max_reps: usize,
    mut f: impl FnMut(),
    mut ceiling: impl FnMut(),
    mut fma: impl FnMut(),
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut ts, mut cs, mut fs, mut us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let start = Instant::now();
    while ts.len() < max_reps && (ts.len() < min_reps || start.elapsed() < budget) {
        let t = Instant::now();
        ceiling();
        cs.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        fma();
        fs.push(t.elapsed().as_secs_f64());
        let (t, u) = (Instant::now(), process_cpu_s());
        f();
        ts.push(t.elapsed().as_secs_f64());
        us.push(process_cpu_s() - u);
    }
    (ts, cs, fs, us)
}

/// Rounds of the register-resident FMA loop interleaved with compute-bound cases
/// (about 1 ms at 100 GFLOP/s).
const FMA_ITERS: u64 = 250_000;

/// Times `case` on level `k` (under the caller's executor, with `threads` threads),
/// each run interleaved with its ceiling measured on as many threads.
fn time_case(
    case: &mut dyn Case,
    k: &'static Kernels,
    threads: usize,
    budget: Duration,
    fma_rate: f64,
) -> Result_ {
    let bound = case.bound();
    let ceiling_buf: Vec<f32> = match bound {
        Bound::Read(b) | Bound::Copy(b) | Bound::Roofline(b) => vec![1.0; (b as usize).div_ceil(4)],
        Bound::Fma => Vec::new(),
    };
    let mut copy_dst = match bound {
        Bound::Copy(_) => vec![0f32; ceiling_buf.len()],
        _ => Vec::new(),
    };
    // The FMA peak is measured interleaved with every case that is held to it (the
    // start-up measurement only reports it): on a shared machine a peak measured once,
    // minutes earlier, gives ratios above 100%.
    let uses_fma = matches!(bound, Bound::Fma | Bound::Roofline(_)) && case.flops() > 0;
    let fma_round = || {
        if uses_fma {
            std::hint::black_box(ceiling::fma_par(FMA_ITERS, threads));
        }
    };
    let (mut ts, mut cs, mut fs, mut us) = match bound {
        Bound::Read(_) | Bound::Roofline(_) => timed(
            budget,
            3,
            200,
            || case.run(k),
            || ceiling::read_par(&ceiling_buf, threads),
            fma_round,
        ),
        Bound::Copy(_) => timed(
            budget,
            3,
            200,
            || case.run(k),
            || ceiling::copy_par(&mut copy_dst, &ceiling_buf, threads),
            fma_round,
        ),
        Bound::Fma => timed(budget, 3, 200, || case.run(k), || {}, fma_round),
    };
    let fma_rate = if uses_fma {
        (ceiling::fma_loop_flops(FMA_ITERS) * threads as u64) as f64 / median(&mut fs)
    } else {
        fma_rate * threads as f64
    };
    let med = median(&mut ts);
    let tag = if threads > 1 {
        format!(" x{threads}")
    } else {
        String::new()
    };
    let (ceiling_name, ceiling_rate, of_ceiling) = match bound {
        Bound::Read(b) => {
            let r = b as f64 / median(&mut cs);
            (
                format!("read {}{tag}", cpu::human_bytes(b)),
                r,
                (b as f64 / med) / r,
            )
        }
        Bound::Copy(b) => {
            let r = b as f64 / median(&mut cs);
            (
                format!("copy {}{tag}", cpu::human_bytes(b)),
                r,
                (b as f64 / med) / r,
            )
        }
        Bound::Fma => (
            format!("f32 FMA peak{tag}"),
            fma_rate,
            (case.flops() as f64 / med) / fma_rate,
        ),
        Bound::Roofline(b) => {
            let read = b as f64 / median(&mut cs);
            let t_read = b as f64 / read;
            let t_fma = case.flops() as f64 / fma_rate;
            if t_fma > t_read {
                (format!("roofline: FMA{tag}"), fma_rate, t_fma / med)
            } else {
                (
                    format!("roofline: read {}{tag}", cpu::human_bytes(b)),
                    read,
                    t_read / med,
                )
            }
        }
    };
    Result_ {
        family: case.family().into(),
        name: case.name(),
        shape: case.shape(),
        level: k.isa().name().into(),
        check: String::new(),
        ok: true,
        reps: ts.len(),
        median_s: med,
        min_s: ts[0],
        max_s: *ts.last().unwrap(),
        bytes: case.bytes(),
        flops: case.flops(),
        ceiling: ceiling_name,
        ceiling_rate,
        of_ceiling,
        speedup_vs_scalar: None,
        threads,
        speedup_vs_1_thread: None,
        cpu_s: median(&mut us),
        cpu_vs_1_thread: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = Options {
        quick: false,
        filter: None,
        json: None,
        threads: parse_threads("max").unwrap(),
        best_only: false,
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
            "--threads" => {
                i += 1;
                match args.get(i).and_then(|t| parse_threads(t)) {
                    Some(t) => opts.threads = t,
                    None => {
                        eprintln!(
                            "--threads needs counts between 1 and 1024 (or max), e.g. 1,2,max"
                        );
                        std::process::exit(2);
                    }
                }
            }
            "--best-only" => opts.best_only = true,
            "--levels" => {
                // The ISA levels this CPU supports, "name id" per line (for scripts).
                for k in Kernels::all_supported() {
                    println!("{} {}", k.isa().name(), k.isa().id());
                }
                return;
            }
            "--summary" => {
                let Some(a) = args.get(i + 1) else {
                    eprintln!("--summary needs a JSON file");
                    std::process::exit(2);
                };
                std::process::exit(report::summary(a));
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
                    "tokenroute-bench [--quick] [--filter TEXT] [--json FILE] [--threads LIST] [--best-only]\n\
                     tokenroute-bench --compare A.json B.json\n\
                     tokenroute-bench --summary A.json (speedup per thread count)\n\n\
                     Checks every kernel against the scalar level and times it on every ISA level\n\
                     this CPU has, against this machine's measured ceilings. --filter keeps the\n\
                     cases whose 'family/name/shape' contains TEXT; --quick runs in under a minute.\n\
                     --threads 1,2,max (default 1,max) also times the best level on the library's\n\
                     pool at each count, against ceilings measured with as many threads;\n\
                     --best-only times only the best level (every level is still checked)."
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

    let max_threads = *opts.threads.iter().max().unwrap();
    if max_threads > 1 {
        parallel::set_num_threads(max_threads).expect("starting the library's pool");
    }
    let ceilings = report::measure_ceilings(&info, opts.quick, &opts.threads);
    report::print_ceilings(&ceilings);

    let levels: Vec<&'static Kernels> = Kernels::all_supported().collect();
    let best = *levels.last().unwrap();
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
        .find(|c| c.kind == "fma" && c.threads == 1)
        .map_or(0.0, |c| c.rate);
    for (ci, case) in cases.iter_mut().enumerate() {
        let inline = |f: &mut dyn FnMut()| parallel::with_executor(Executor::Inline, f);
        inline(&mut || case.run(scalar));
        let reference = case.output();
        let mut scalar_median = None;
        let mut one_thread = None;
        let runs: Vec<(&'static Kernels, usize)> = levels
            .iter()
            .map(|&k| (k, 1))
            .chain(opts.threads.iter().filter(|&&t| t > 1).map(|&t| (best, t)))
            .collect();
        for (k, threads) in runs {
            eprint!(
                "\r[{}/{}] {} {} {:<8} {:>3}t      ",
                ci + 1,
                total,
                case.name(),
                case.shape(),
                k.isa().name(),
                threads
            );
            let exec = if threads == 1 {
                Executor::Inline
            } else {
                Executor::Threads(threads)
            };
            parallel::with_executor(exec.clone(), || case.run(k));
            let (check, ok) = match case.check(&reference, &case.output()) {
                Ok(what) => (what.to_string(), true),
                Err(why) => (format!("MISMATCH: {why}"), false),
            };
            if !ok {
                failures += 1;
            }
            let timed_level = if opts.best_only {
                k.isa() == best.isa()
            } else {
                case.time_level(k.isa())
            };
            if !timed_level {
                results.push(report::untimed(&**case, k.isa(), check, ok));
                continue;
            }
            let mut r = parallel::with_executor(exec, || {
                time_case(&mut **case, k, threads, budget, fma_rate)
            });
            r.check = check;
            r.ok = ok;
            if k.isa() == Isa::Scalar && threads == 1 {
                scalar_median = Some(r.median_s);
            }
            r.speedup_vs_scalar = scalar_median.map(|s| s / r.median_s);
            if k.isa() == best.isa() && threads == 1 {
                one_thread = Some((r.median_s, r.cpu_s));
            }
            if threads > 1 {
                r.speedup_vs_1_thread = one_thread.map(|(s, _)| s / r.median_s);
                r.cpu_vs_1_thread = one_thread.map(|(_, c)| c / r.cpu_s);
            }
            results.push(r);
        }
    }
    eprint!("\r{:<80}\r", "");
    report::print_results(&results);
    if let Some(path) = &opts.json {
        let doc = report::to_json(&info, &ceilings, &results, opts.quick, &opts.threads);
        std::fs::write(path, serde_json::to_string_pretty(&doc).unwrap() + "\n")
            .unwrap_or_else(|e| panic!("writing {path}: {e}"));
        println!("\nwrote {path}");
    }
    if failures > 0 {
        eprintln!("\n{failures} check(s) FAILED: a level disagrees with the scalar reference");
        std::process::exit(1);
    }
}
