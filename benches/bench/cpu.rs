//! What machine this is: CPU model, vendor, cores, caches, features, levels.

use std::fmt::Write;

#[derive(Clone, Debug, Default)]
pub struct CpuInfo {
    pub model: String,
    pub vendor: String,
    pub family_model: String,
    pub logical_cpus: usize,
    /// (level, type, size in bytes) as the kernel reports them for cpu0.
    pub caches: Vec<(u32, String, u64)>,
    pub features: Vec<String>,
    pub levels: Vec<String>,
    pub active_level: String,
}

fn cpuinfo_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix('K') {
        (n, 1024)
    } else if let Some(n) = s.strip_suffix('M') {
        (n, 1024 * 1024)
    } else {
        (s, 1)
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

pub fn detect() -> CpuInfo {
    let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let mut info = CpuInfo {
        model: cpuinfo_field(&text, "model name")
            .unwrap_or_else(|| std::env::consts::ARCH.to_string()),
        vendor: cpuinfo_field(&text, "vendor_id").unwrap_or_default(),
        logical_cpus: text
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1),
        ..Default::default()
    };
    if let (Some(f), Some(m)) = (
        cpuinfo_field(&text, "cpu family"),
        cpuinfo_field(&text, "model"),
    ) {
        info.family_model = format!("family {f} model {m}");
    }
    for idx in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{idx}");
        let read = |f: &str| std::fs::read_to_string(format!("{base}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            break;
        };
        if let (Ok(level), Some(size)) = (level.trim().parse(), parse_size(&size)) {
            info.caches.push((level, kind.trim().to_string(), size));
        }
    }
    let interesting = [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "bmi2",
        "avx512f",
        "avx512bw",
        "avx512dq",
        "avx512vl",
        "avx512_bf16",
        "avx512_fp16",
        "avx512vbmi",
        "avx512_vbmi2",
        "avx512_vnni",
        "amx_tile",
        "asimd",
        "fphp",
        "asimdhp",
        "bf16",
        "sve",
        "sve2",
    ];
    let flags = cpuinfo_field(&text, "flags")
        .or_else(|| cpuinfo_field(&text, "Features"))
        .unwrap_or_default();
    info.features = flags
        .split_whitespace()
        .filter(|f| interesting.contains(f))
        .map(str::to_string)
        .collect();
    let mask = tokenroute::supported_isas();
    info.levels = tokenroute::Isa::ALL
        .into_iter()
        .filter(|i| mask & i.bit() != 0)
        .map(|i| i.name().to_string())
        .collect();
    info.active_level =
        tokenroute::active_isa().map_or("unavailable".into(), |i| i.name().to_string());
    info
}

impl CpuInfo {
    /// The size of the data cache of `level` (1, 2, 3) in bytes.
    pub fn cache(&self, level: u32) -> Option<u64> {
        self.caches
            .iter()
            .find(|(l, t, _)| *l == level && t != "Instruction")
            .map(|c| c.2)
    }

    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "CPU:      {} ({}{}{})",
            self.model,
            self.vendor,
            if self.family_model.is_empty() {
                ""
            } else {
                ", "
            },
            self.family_model
        );
        let caches: Vec<String> = self
            .caches
            .iter()
            .filter(|c| c.1 != "Instruction")
            .map(|(l, _, sz)| format!("L{l} {}", human_bytes(*sz)))
            .collect();
        let _ = writeln!(
            s,
            "cores:    {} logical; caches (per cpu0): {}",
            self.logical_cpus,
            caches.join(", ")
        );
        let _ = writeln!(s, "features: {}", self.features.join(" "));
        let _ = writeln!(
            s,
            "levels:   {} (active: {})",
            self.levels.join(", "),
            self.active_level
        );
        s
    }
}

pub fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 && b % (1 << 30) == 0 {
        format!("{} GiB", b >> 30)
    } else if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}
