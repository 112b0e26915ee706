//! Shared test harness: which registry entries can run here, the
//! `TOKENROUTE_REQUIRE_ISAS` guard, and small data generators.
#![allow(dead_code)]

use tokenroute_kernels::{Isa, KernelInfo};

/// The tiers listed in `TOKENROUTE_REQUIRE_ISAS` (comma separated; empty = none).
pub fn required_isas() -> Vec<Isa> {
    let Ok(v) = std::env::var("TOKENROUTE_REQUIRE_ISAS") else {
        return Vec::new();
    };
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            Isa::from_name(s)
                .unwrap_or_else(|| panic!("TOKENROUTE_REQUIRE_ISAS: unknown tier {s:?}"))
        })
        .collect()
}

/// The registry entries this CPU can run. Entries it cannot run are listed on stderr;
/// a required tier (`TOKENROUTE_REQUIRE_ISAS`) that would be skipped fails the test,
/// as does a required tier with no entry in this registry.
pub fn runnable<F: Copy>(registry: &[KernelInfo<F>]) -> Vec<KernelInfo<F>> {
    let required = required_isas();
    let mut out = Vec::new();
    for k in registry {
        if k.isa.is_supported() {
            out.push(*k);
        } else {
            assert!(
                !required.contains(&k.isa),
                "{} skipped: tier {} unsupported by this CPU but required by TOKENROUTE_REQUIRE_ISAS",
                k.id(),
                k.isa.name()
            );
            eprintln!("skipped {}: unsupported by this CPU", k.id());
        }
    }
    for isa in required {
        assert!(
            out.iter().any(|k| k.isa == isa),
            "TOKENROUTE_REQUIRE_ISAS names {} but no runnable kernel of that tier is registered",
            isa.name()
        );
    }
    assert_eq!(
        out.first().map(|k| k.isa),
        Some(Isa::Scalar),
        "registry must start with scalar"
    );
    out
}

/// Small deterministic PRNG (xorshift64*), so failures reproduce without a seed file.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values every float kernel must survive.
pub const SPECIAL_F32: &[f32] = &[
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
    f32::MAX,
    f32::MIN,
    88.7,
    -88.7,
    103.9,
    -103.9,
    16.6,
    -16.6,
];

/// Distance in ulps between two finite f32 (or 0 when both are the same NaN class).
pub fn ulp_diff(a: f32, b: f32) -> u64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0
        } else {
            u64::MAX
        };
    }
    let key = |x: f32| {
        let b = x.to_bits() as i64;
        if b < 0x8000_0000 {
            b
        } else {
            0x8000_0000 - b
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// Bit equality, with any two NaNs equal.
pub fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
