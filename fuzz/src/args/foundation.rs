//! Argument cases of the foundation calls: status and ISA names for any code, and
//! switching the ISA level to any id.

use crate::Input;
use std::ffi::CStr;
use tokenroute::ffi::isa::*;
use tokenroute::ffi::*;

pub fn status_string(inp: &mut Input) {
    let code = if inp.bool() {
        inp.below(15) as u32
    } else {
        inp.u32()
    };
    let p = tkr_status_string(code);
    assert!(!p.is_null());
    // SAFETY: the library returns a static NUL-terminated string.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
    if code <= TKR_STATUS_PARALLEL_FAILED {
        assert!(
            s.starts_with("TKR_STATUS_") && s != "TKR_STATUS_UNKNOWN",
            "{code}: {s}"
        );
    } else {
        assert_eq!(s, "TKR_STATUS_UNKNOWN");
    }
}

pub fn isa_name(inp: &mut Input) {
    let id = if inp.bool() {
        inp.below(6) as u32
    } else {
        inp.u32()
    };
    let p = tkr_isa_name(id);
    assert!(!p.is_null());
    // SAFETY: as above.
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap();
    let want = match id {
        0 => "auto",
        1 => "scalar",
        2 => "avx2",
        3 => "avx512",
        4 => "neon",
        _ => "unknown",
    };
    assert_eq!(s, want);
}

pub fn set_isa(inp: &mut Input) {
    let id = if inp.bool() {
        inp.below(6) as u32
    } else {
        inp.u32()
    };
    let before = tkr_get_isa();
    let mask = tkr_supported_isas();
    let st = tkr_set_isa(id);
    let want = match id {
        TKR_ISA_AUTO => TKR_STATUS_OK,
        1..=4 if mask & (1 << id) != 0 => TKR_STATUS_OK,
        1..=4 => TKR_STATUS_ISA_UNAVAILABLE,
        _ => TKR_STATUS_INVALID_ARGUMENT,
    };
    assert_eq!(st, want, "tkr_set_isa({id})");
    if st == TKR_STATUS_OK && id != TKR_ISA_AUTO {
        assert_eq!(tkr_get_isa(), id);
    } else if st != TKR_STATUS_OK {
        assert_eq!(
            tkr_get_isa(),
            before,
            "a refused tkr_set_isa changed the level"
        );
    }
    assert_eq!(tkr_set_isa(TKR_ISA_AUTO), TKR_STATUS_OK);
}
