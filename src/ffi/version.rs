//! Library and ABI versions. The constants are literals (cbindgen cannot evaluate
//! `env!`); a unit test checks them against Cargo.toml.

use core::ffi::c_char;

/// Major version of the library (semver).
pub const TKR_VERSION_MAJOR: u32 = 0;
/// Minor version of the library (semver).
pub const TKR_VERSION_MINOR: u32 = 1;
/// Patch version of the library (semver).
pub const TKR_VERSION_PATCH: u32 = 0;
/// MAJOR * 10000 + MINOR * 100 + PATCH.
pub const TKR_VERSION_NUMBER: u32 = 100;
/// The ABI version: bumped only on a breaking change of this header's ABI. Compare it
/// with tkr_abi_version() at load time (dynamic loaders such as Python ctypes).
pub const TKR_ABI_VERSION: u32 = 2;

/// The library version as MAJOR * 10000 + MINOR * 100 + PATCH (compare with
/// TKR_VERSION_NUMBER to detect a header/library mismatch). Thread-safe.
#[no_mangle]
pub extern "C" fn tkr_version_number() -> u32 {
    TKR_VERSION_NUMBER
}

/// The library version as a static string, e.g. "0.1.0" (never NULL, never freed).
#[no_mangle]
pub extern "C" fn tkr_version_string() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The ABI version of the loaded library (compare with TKR_ABI_VERSION).
#[no_mangle]
pub extern "C" fn tkr_abi_version() -> u32 {
    TKR_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_constants_match_cargo_toml() {
        let v = |s: &str| s.parse::<u32>().unwrap();
        assert_eq!(TKR_VERSION_MAJOR, v(env!("CARGO_PKG_VERSION_MAJOR")));
        assert_eq!(TKR_VERSION_MINOR, v(env!("CARGO_PKG_VERSION_MINOR")));
        assert_eq!(TKR_VERSION_PATCH, v(env!("CARGO_PKG_VERSION_PATCH")));
        assert_eq!(
            TKR_VERSION_NUMBER,
            TKR_VERSION_MAJOR * 10000 + TKR_VERSION_MINOR * 100 + TKR_VERSION_PATCH
        );
        assert_eq!(tkr_version_number(), TKR_VERSION_NUMBER);
        let s = unsafe { std::ffi::CStr::from_ptr(tkr_version_string()) };
        assert_eq!(s.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
