//! ISA levels: ids, names, and switching the active level.

use super::{cstr, guard, tkr_status};
use crate::error::ensure;
use core::ffi::c_char;
use tokenroute_kernels::Isa;

/// Argument of tkr_set_isa: automatic detection. As a result of tkr_get_isa: no level
/// is usable (TOKENROUTE_ISA forced one this CPU lacks).
pub const TKR_ISA_AUTO: u32 = 0;
/// Portable code; always available.
pub const TKR_ISA_SCALAR: u32 = 1;
/// x86-64-v3: AVX2, FMA, F16C, BMI1/2, LZCNT, MOVBE, POPCNT.
pub const TKR_ISA_AVX2: u32 = 2;
/// x86-64-v4: the AVX2 level plus AVX-512 F, BW, CD, DQ, VL.
pub const TKR_ISA_AVX512: u32 = 3;
/// aarch64 Advanced SIMD (NEON).
pub const TKR_ISA_NEON: u32 = 4;

/// The active ISA level (TKR_ISA_*), or TKR_ISA_AUTO (0) when the level forced by the
/// TOKENROUTE_ISA environment variable is unavailable (every kernel call then returns
/// TKR_STATUS_ISA_UNAVAILABLE). The first call reads TOKENROUTE_ISA and
/// TOKENROUTE_ISA_MAX. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_get_isa() -> u32 {
    std::panic::catch_unwind(|| crate::active_isa().map_or(TKR_ISA_AUTO, Isa::id))
        .unwrap_or(TKR_ISA_AUTO)
}

/// Switches every kernel to level `isa` at once (one atomic store; a call already
/// running finishes on the level it started with). TKR_ISA_AUTO re-detects: the best
/// supported level, capped by TOKENROUTE_ISA_MAX when set. Results are bit-identical
/// across levels for every kernel documented so; for the others switching changes the
/// rounding within the documented bounds.
///
/// Returns TKR_STATUS_ISA_UNAVAILABLE (leaving the level unchanged) when this CPU or
/// build lacks `isa`, TKR_STATUS_INVALID_ARGUMENT for an unknown id. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_set_isa(isa: u32) -> tkr_status {
    guard(|| {
        if isa == TKR_ISA_AUTO {
            return crate::set_isa(None);
        }
        let level = Isa::from_id(isa);
        ensure!(level.is_some(), InvalidArgument, "isa": "unknown ISA id");
        crate::set_isa(level)
    })
}

/// Bit mask of the levels this build and CPU support: bit (1 << TKR_ISA_x) is set for
/// each. TKR_ISA_SCALAR is always present. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_supported_isas() -> u32 {
    std::panic::catch_unwind(crate::supported_isas).unwrap_or(1 << TKR_ISA_SCALAR)
}

/// The name of a level ("scalar", "avx2", "avx512", "neon"; "auto" for 0), as accepted
/// by TOKENROUTE_ISA, or "unknown". Static string, never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_isa_name(isa: u32) -> *const c_char {
    match Isa::from_id(isa) {
        Some(Isa::Scalar) => cstr!("scalar"),
        Some(Isa::Avx2) => cstr!("avx2"),
        Some(Isa::Avx512) => cstr!("avx512"),
        Some(Isa::Neon) => cstr!("neon"),
        None if isa == TKR_ISA_AUTO => cstr!("auto"),
        None => cstr!("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn ids_agree_with_the_kernel_crate() {
        assert_eq!(TKR_ISA_SCALAR, Isa::Scalar.id());
        assert_eq!(TKR_ISA_AVX2, Isa::Avx2.id());
        assert_eq!(TKR_ISA_AVX512, Isa::Avx512.id());
        assert_eq!(TKR_ISA_NEON, Isa::Neon.id());
        for isa in Isa::ALL {
            let name = unsafe { std::ffi::CStr::from_ptr(tkr_isa_name(isa.id())) };
            assert_eq!(name.to_str().unwrap(), isa.name());
        }
        assert_eq!(
            ErrorKind::IsaUnavailable.code(),
            super::super::TKR_STATUS_ISA_UNAVAILABLE
        );
    }
}
