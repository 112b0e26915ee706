//! Ceilings, the results table, the JSON document and the comparison of two runs.

use crate::cpu::{human_bytes, CpuInfo};
use crate::{ceiling, Case, Result_};
use serde_json::{json, Value};
use std::time::Instant;
use tokenroute::Isa;

pub struct Ceiling {
    /// "read", "copy" or "fma".
    pub kind: &'static str,
    /// Which cache level the size targets ("L1", "L2", "L3", "DRAM"; "" for fma).
    pub level: &'static str,
    pub bytes: u64,
    /// Bytes/s (read: bytes read; copy: bytes copied) or flop/s.
    pub rate: f64,
    /// Threads measuring it (the buffer split across them; the FMA loop on each).
    pub threads: usize,
}

fn best_rate(work: f64, reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    work / ts[ts.len() / 2]
}

pub fn measure_ceilings(info: &CpuInfo, quick: bool, threads: &[usize]) -> Vec<Ceiling> {
    let l1 = info.cache(1).unwrap_or(32 << 10);
    let l2 = info.cache(2).unwrap_or(1 << 20);
    let l3 = info.cache(3).unwrap_or(32 << 20);
    let dram = if quick {
        (4 * l3).max(128 << 20)
    } else {
        (8 * l3).max(512 << 20)
    };
    let mut out = Vec::new();
    for &t in threads {
        for (level, bytes) in [
            ("L1", l1 / 2),
            ("L2", l2 / 2),
            ("L3", l3 / 2),
            ("DRAM", dram),
        ] {
            // Per thread, the size of its cache level (the private L1/L2 hold one
            // thread's part each); DRAM and the shared L3 as one buffer.
            let bytes = if level == "L1" || level == "L2" {
                bytes * t as u64
            } else {
                bytes
            };
            let reps = if bytes > l3 { 5 } else { 50 };
            let n = (bytes / 4) as usize;
            let src = vec![1.0f32; n];
            let rate = best_rate(bytes as f64, reps, || {
                ceiling::read_par(std::hint::black_box(&src), t);
            });
            out.push(Ceiling {
                kind: "read",
                level,
                bytes,
                rate,
                threads: t,
            });
            // The copy holds source and destination: half the bytes each at cache sizes.
            let cn = if bytes > l3 { n } else { n / 2 };
            let mut dst = vec![0f32; cn];
            let rate = best_rate((cn * 4) as f64, reps, || {
                ceiling::copy_par(&mut dst, std::hint::black_box(&src[..cn]), t);
            });
            out.push(Ceiling {
                kind: "copy",
                level,
                bytes: (cn * 4) as u64,
                rate,
                threads: t,
            });
        }
        let iters = if quick { 2_000_000 } else { 20_000_000 };
        let start = Instant::now();
        let flops = ceiling::fma_par(iters, t);
        let first = flops as f64 / start.elapsed().as_secs_f64();
        let second = best_rate(flops as f64, 3, || {
            ceiling::fma_par(iters, t);
        });
        out.push(Ceiling {
            kind: "fma",
            level: "",
            bytes: 0,
            rate: first.max(second),
            threads: t,
        });
    }
    out
}

pub fn print_ceilings(c: &[Ceiling]) {
    let mut last = 0;
    for x in c {
        if x.threads != last {
            last = x.threads;
            match x.threads {
                1 => println!("\nceilings (one core, measured now):"),
                t => println!("\nceilings ({t} threads, measured now):"),
            }
        }
        match x.kind {
            "fma" => println!(
                "  f32 FMA peak                 {:>8.1} GFLOP/s",
                x.rate / 1e9
            ),
            k => println!(
                "  {k:<4} {:<4} {:>10}          {:>8.1} GB/s",
                x.level,
                human_bytes(x.bytes),
                x.rate / 1e9
            ),
        }
    }
    println!();
}

pub fn untimed(case: &dyn Case, isa: Isa, check: String, ok: bool) -> Result_ {
    Result_ {
        family: case.family().into(),
        name: case.name(),
        shape: case.shape(),
        level: isa.name().into(),
        check,
        ok,
        reps: 0,
        median_s: f64::NAN,
        min_s: f64::NAN,
        max_s: f64::NAN,
        bytes: case.bytes(),
        flops: case.flops(),
        ceiling: String::new(),
        ceiling_rate: f64::NAN,
        of_ceiling: f64::NAN,
        speedup_vs_scalar: None,
        threads: 1,
        speedup_vs_1_thread: None,
        cpu_s: f64::NAN,
        cpu_vs_1_thread: None,
    }
}

fn fmt_time(s: f64) -> String {
    if s.is_nan() {
        "-".into()
    } else if s < 1e-3 {
        format!("{:.1} us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{s:.3} s")
    }
}

pub fn print_results(results: &[Result_]) {
    println!(
        "{:<28} {:<26} {:<7} {:>3} {:>10} {:>10} {:>10} {:>13} {:>7} {:>8} {:>19}  {:<22} check",
        "kernel",
        "shape",
        "level",
        "thr",
        "median",
        "min",
        "max",
        "throughput",
        "%ceil",
        "vs scal",
        "vs 1t (eff) work",
        "ceiling"
    );
    let mut last = String::new();
    for r in results {
        let key = format!("{}{}", r.name, r.shape);
        if key != last && !last.is_empty() {
            println!();
        }
        last = key;
        let thr = if r.median_s.is_nan() {
            "(not timed)".to_string()
        } else if r.ceiling.starts_with("f32 FMA") || r.ceiling == "roofline: FMA" {
            format!("{:.1} GFLOP/s", r.flops as f64 / r.median_s / 1e9)
        } else {
            format!("{:.2} GB/s", r.bytes as f64 / r.median_s / 1e9)
        };
        let pct = if r.of_ceiling.is_nan() {
            "-".into()
        } else {
            format!("{:.0}%", r.of_ceiling * 100.0)
        };
        let sp = r
            .speedup_vs_scalar
            .map_or("-".into(), |s| format!("{s:.1}x"));
        let par = r.speedup_vs_1_thread.map_or("-".into(), |s| {
            let work = r
                .cpu_vs_1_thread
                .filter(|w| w.is_finite())
                .map_or(String::new(), |w| format!(" w{:.0}%", 100.0 * w));
            format!("{s:.2}x ({:.0}%){work}", 100.0 * s / r.threads as f64)
        });
        println!(
            "{:<28} {:<26} {:<7} {:>3} {:>10} {:>10} {:>10} {:>13} {:>7} {:>8} {:>19}  {:<22} {}",
            r.name,
            r.shape,
            r.level,
            r.threads,
            fmt_time(r.median_s),
            fmt_time(r.min_s),
            fmt_time(r.max_s),
            thr,
            pct,
            sp,
            par,
            r.ceiling,
            r.check
        );
    }
}

fn num(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

pub fn to_json(
    info: &CpuInfo,
    ceilings: &[Ceiling],
    results: &[Result_],
    quick: bool,
    threads: &[usize],
) -> Value {
    json!({
        "schema": "tokenroute-bench/1",
        "threads": threads,
        "library_version": env!("CARGO_PKG_VERSION"),
        "abi_version": tokenroute::ffi::version::TKR_ABI_VERSION,
        "quick": quick,
        "cpu": {
            "model": info.model,
            "vendor": info.vendor,
            "family_model": info.family_model,
            "logical_cpus": info.logical_cpus,
            "caches": info.caches.iter().map(|(l, t, s)| json!({"level": l, "type": t, "bytes": s})).collect::<Vec<_>>(),
            "features": info.features,
        },
        "levels": info.levels,
        "active_level": info.active_level,
        "ceilings": ceilings.iter().map(|c| json!({
            "kind": c.kind, "level": c.level, "bytes": c.bytes, "rate": num(c.rate),
            "unit": if c.kind == "fma" { "flop/s" } else { "bytes/s" }, "threads": c.threads,
        })).collect::<Vec<_>>(),
        "results": results.iter().map(|r| json!({
            "family": r.family, "kernel": r.name, "shape": r.shape, "level": r.level,
            "check": r.check, "ok": r.ok, "reps": r.reps,
            "median_s": num(r.median_s), "min_s": num(r.min_s), "max_s": num(r.max_s),
            "bytes": r.bytes, "flops": r.flops,
            "ceiling": r.ceiling, "ceiling_rate": num(r.ceiling_rate), "of_ceiling": num(r.of_ceiling),
            "speedup_vs_scalar": r.speedup_vs_scalar.map_or(Value::Null, num),
            "threads": r.threads,
            "speedup_vs_1_thread": r.speedup_vs_1_thread.map_or(Value::Null, num),
            "parallel_efficiency": r.speedup_vs_1_thread.map_or(Value::Null, |s| num(s / r.threads as f64)),
            "cpu_s": num(r.cpu_s),
            "work_efficiency": r.cpu_vs_1_thread.map_or(Value::Null, num),
        })).collect::<Vec<_>>(),
    })
}

/// Prints two runs side by side (matched by kernel, shape and level) with ratios.
/// Returns the process exit status.
pub fn compare(a_path: &str, b_path: &str) -> i32 {
    let load = |p: &str| -> Option<Value> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| eprintln!("{p}: {e}"))
            .ok()?;
        serde_json::from_str(&text)
            .map_err(|e| eprintln!("{p}: {e}"))
            .ok()
    };
    let (Some(a), Some(b)) = (load(a_path), load(b_path)) else {
        return 2;
    };
    let title = |v: &Value| {
        format!(
            "{} (tokenroute {}, {})",
            v["cpu"]["model"].as_str().unwrap_or("?"),
            v["library_version"].as_str().unwrap_or("?"),
            v["active_level"].as_str().unwrap_or("?")
        )
    };
    println!("A: {a_path}: {}\nB: {b_path}: {}\n", title(&a), title(&b));
    for kind in ["read", "copy"] {
        for c in a["ceilings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["kind"] == kind)
        {
            let other = b["ceilings"].as_array().into_iter().flatten().find(|d| {
                d["kind"] == kind && d["level"] == c["level"] && d["threads"] == c["threads"]
            });
            if let (Some(x), Some(y)) = (c["rate"].as_f64(), other.and_then(|d| d["rate"].as_f64()))
            {
                println!(
                    "ceiling {kind} {:<5} {:>3}t A {:>8.1} GB/s  B {:>8.1} GB/s  B/A {:.2}",
                    c["level"].as_str().unwrap_or(""),
                    c["threads"].as_u64().unwrap_or(1),
                    x / 1e9,
                    y / 1e9,
                    y / x
                );
            }
        }
    }
    let fma = |v: &Value| {
        v["ceilings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["kind"] == "fma")
            .and_then(|c| c["rate"].as_f64())
    };
    if let (Some(x), Some(y)) = (fma(&a), fma(&b)) {
        println!(
            "ceiling f32 FMA peak A {:>8.1} GFLOP/s  B {:>8.1} GFLOP/s  B/A {:.2}",
            x / 1e9,
            y / 1e9,
            y / x
        );
    }
    println!(
        "\n{:<28} {:<26} {:<7} {:>3} {:>10} {:>10} {:>8} {:>7} {:>7}",
        "kernel", "shape", "level", "thr", "A", "B", "A/B", "A %ceil", "B %ceil"
    );
    let empty = Vec::new();
    let bres = b["results"].as_array().unwrap_or(&empty);
    for r in a["results"].as_array().unwrap_or(&empty) {
        let Some(o) = bres.iter().find(|o| {
            o["kernel"] == r["kernel"]
                && o["shape"] == r["shape"]
                && o["level"] == r["level"]
                && o["threads"].as_u64().unwrap_or(1) == r["threads"].as_u64().unwrap_or(1)
        }) else {
            continue;
        };
        let (Some(ta), Some(tb)) = (r["median_s"].as_f64(), o["median_s"].as_f64()) else {
            continue;
        };
        let pct = |v: &Value| {
            v["of_ceiling"]
                .as_f64()
                .map_or("-".into(), |p| format!("{:.0}%", p * 100.0))
        };
        println!(
            "{:<28} {:<26} {:<7} {:>3} {:>10} {:>10} {:>7.2}x {:>7} {:>7}",
            r["kernel"].as_str().unwrap_or(""),
            r["shape"].as_str().unwrap_or(""),
            r["level"].as_str().unwrap_or(""),
            r["threads"].as_u64().unwrap_or(1),
            fmt_time(ta),
            fmt_time(tb),
            ta / tb,
            pct(r),
            pct(o)
        );
    }
    0
}

/// Prints the scaling table of one run: per case (best level), the single-thread time,
/// then per thread count the speedup, the parallel efficiency and the % of the ceiling
/// measured with as many threads. Returns the process exit status.
pub fn summary(path: &str) -> i32 {
    let doc: Value = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{path}: {e}");
            return 2;
        }
    };
    let threads: Vec<u64> = doc["threads"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_else(|| vec![1]);
    let level = doc["active_level"].as_str().unwrap_or("").to_string();
    println!(
        "{} ({} logical CPUs), level {level}, threads {threads:?}",
        doc["cpu"]["model"].as_str().unwrap_or("?"),
        doc["cpu"]["logical_cpus"]
    );
    for kind in ["read", "copy"] {
        let mut line = format!("ceiling {kind} DRAM GB/s:");
        for c in doc["ceilings"].as_array().into_iter().flatten() {
            if c["kind"] == kind && c["level"] == "DRAM" {
                line += &format!(
                    "  {}t {:.1}",
                    c["threads"],
                    c["rate"].as_f64().unwrap_or(f64::NAN) / 1e9
                );
            }
        }
        println!("{line}");
    }
    let mut line = "ceiling FMA GFLOP/s:".to_string();
    for c in doc["ceilings"].as_array().into_iter().flatten() {
        if c["kind"] == "fma" {
            line += &format!(
                "  {}t {:.0}",
                c["threads"],
                c["rate"].as_f64().unwrap_or(f64::NAN) / 1e9
            );
        }
    }
    println!("{line}\n");
    let mut head = format!("{:<28} {:<26} {:>10}", "kernel", "shape", "1 thread");
    for t in threads.iter().filter(|&&t| t > 1) {
        head += &format!(" {:>26}", format!("{t}t: x (eff) %ceil work"));
    }
    println!("{head}");
    let empty = Vec::new();
    let results = doc["results"].as_array().unwrap_or(&empty);
    for r in results
        .iter()
        .filter(|r| r["level"] == level.as_str() && r["threads"].as_u64() == Some(1))
    {
        let Some(t1) = r["median_s"].as_f64() else {
            continue;
        };
        let mut line = format!(
            "{:<28} {:<26} {:>10}",
            r["kernel"].as_str().unwrap_or(""),
            r["shape"].as_str().unwrap_or(""),
            fmt_time(t1)
        );
        for &t in threads.iter().filter(|&&t| t > 1) {
            let o = results.iter().find(|o| {
                o["kernel"] == r["kernel"]
                    && o["shape"] == r["shape"]
                    && o["level"] == r["level"]
                    && o["threads"].as_u64() == Some(t)
            });
            let cell =
                match o.and_then(|o| Some((o["median_s"].as_f64()?, o["of_ceiling"].as_f64()))) {
                    Some((tt, pc)) => format!(
                        "{:.2}x ({:.0}%) {}",
                        t1 / tt,
                        100.0 * t1 / tt / t as f64,
                        pc.map_or("-".into(), |p| format!("{:.0}%", 100.0 * p))
                    ),
                    None => "-".into(),
                };
            line += &format!(" {cell:>20}");
        }
        println!("{line}");
    }
    0
}
