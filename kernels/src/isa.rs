//! ISA tiers: ids, names and the exact feature set each one requires.
//!
//! Ids are part of the C ABI (`TKR_ISA_*`) and are never renumbered; a new tier gets a
//! new id appended at the end.

/// One ISA tier. The numeric value is the C ABI id (`TKR_ISA_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum Isa {
    /// Portable Rust, always available; the reference every other tier must match.
    Scalar = 1,
    /// x86-64-v3: AVX, AVX2, FMA, BMI1, BMI2, F16C, LZCNT, MOVBE (and POPCNT, from v2).
    Avx2 = 2,
    /// x86-64-v4: the avx2 tier plus AVX-512 F, BW, CD, DQ, VL.
    Avx512 = 3,
    /// aarch64 Advanced SIMD (NEON) with FP.
    Neon = 4,
}

crate::simd::for_tier!(
    avx2,
    tier_const,
    /// The `target_feature` string of the avx2 tier (x86-64-v3).
    TIER_AVX2
);
crate::simd::for_tier!(
    avx512,
    tier_const,
    /// The `target_feature` string of the avx512 tier (x86-64-v4).
    TIER_AVX512
);
crate::simd::for_tier!(
    neon,
    tier_const,
    /// The `target_feature` string of the neon tier.
    TIER_NEON
);

impl Isa {
    /// Every tier, in id order.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// The C ABI id.
    #[inline]
    pub const fn id(self) -> u32 {
        self as u32
    }

    /// This tier's bit in a supported-levels mask (`1 << id`).
    #[inline]
    pub const fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The tier for a C ABI id, if any.
    pub const fn from_id(id: u32) -> Option<Isa> {
        match id {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2),
            3 => Some(Isa::Avx512),
            4 => Some(Isa::Neon),
            _ => None,
        }
    }

    /// Stable lowercase name, as used by `TOKENROUTE_ISA` and in kernel ids.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// The tier with this name (exact, lowercase).
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Whether kernels for this tier are compiled into this build (target architecture).
    pub const fn is_compiled(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 | Isa::Avx512 => cfg!(target_arch = "x86_64"),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    /// Whether this tier is compiled in and the running CPU (and OS) supports every
    /// feature of it. Detection is done by `std` and cached by it.
    #[cfg(feature = "std")]
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                use std::arch::is_x86_feature_detected as d;
                d!("avx")
                    && d!("avx2")
                    && d!("fma")
                    && d!("bmi1")
                    && d!("bmi2")
                    && d!("f16c")
                    && d!("lzcnt")
                    && d!("movbe")
                    && d!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                use std::arch::is_x86_feature_detected as d;
                Isa::Avx2.is_supported()
                    && d!("avx512f")
                    && d!("avx512bw")
                    && d!("avx512cd")
                    && d!("avx512dq")
                    && d!("avx512vl")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Mask (`1 << id`) of the tiers this CPU supports.
    #[cfg(feature = "std")]
    pub fn supported_mask() -> u32 {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_supported())
            .fold(0, |m, isa| m | isa.bit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_bits_are_distinct_and_round_trip() {
        let mut bits = 0u32;
        for isa in Isa::ALL {
            assert_eq!(Isa::from_id(isa.id()), Some(isa));
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
            assert_eq!(bits & isa.bit(), 0, "{isa:?} shares a bit");
            bits |= isa.bit();
        }
        assert_eq!(Isa::from_id(0), None);
        assert_eq!(Isa::from_id(5), None);
        assert_eq!(Isa::from_name("AVX2"), None);
    }

    #[cfg(feature = "std")]
    #[test]
    fn scalar_is_always_supported() {
        assert!(Isa::Scalar.is_supported());
        assert_ne!(Isa::supported_mask() & Isa::Scalar.bit(), 0);
    }
}
