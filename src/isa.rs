//! Which ISA level is active: detection, the environment overrides, and switching.
//!
//! - `TOKENROUTE_ISA=<level>|auto` (read once, at first use) is exact: a level this CPU
//!   (or build) lacks, or an unknown name, makes every kernel call fail with
//!   `ISA_UNAVAILABLE`; nothing falls back silently.
//! - `TOKENROUTE_ISA_MAX=<level>` is a lenient cap: the best supported level whose id
//!   is at most the cap's id (unknown names are ignored).
//! - [`set_isa`] (`tkr_set_isa`) switches the whole table at once with one atomic store;
//!   a call already running keeps the table it started with.

use crate::dispatch::Kernels;
use crate::error::{Error, ErrorKind, Result};
use std::sync::atomic::{AtomicU32, Ordering};
use tokenroute_kernels::Isa;

/// 0: not decided yet; `UNAVAILABLE`: the forced level is unusable; else an `Isa` id.
static ACTIVE: AtomicU32 = AtomicU32::new(0);
const UNAVAILABLE: u32 = u32::MAX;

/// The best supported level with id <= `cap` (all levels when `cap` is None).
fn best_supported(cap: Option<Isa>) -> Isa {
    Isa::ALL
        .into_iter()
        .rev()
        .filter(|isa| isa.is_supported())
        .find(|isa| cap.is_none_or(|c| isa.id() <= c.id()))
        .unwrap_or(Isa::Scalar)
}

fn env_cap() -> Option<Isa> {
    std::env::var("TOKENROUTE_ISA_MAX")
        .ok()
        .and_then(|v| Isa::from_name(v.trim()))
}

/// The level chosen by the environment: `Err(())` when `TOKENROUTE_ISA` forces a level
/// that cannot run here.
fn from_env() -> core::result::Result<Isa, ()> {
    match std::env::var("TOKENROUTE_ISA") {
        Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => match Isa::from_name(v.trim()) {
            Some(isa) if isa.is_supported() => Ok(isa),
            _ => Err(()),
        },
        _ => Ok(best_supported(env_cap())),
    }
}

#[inline]
fn state() -> u32 {
    let s = ACTIVE.load(Ordering::Relaxed);
    if s != 0 {
        return s;
    }
    let decided = from_env().map_or(UNAVAILABLE, Isa::id);
    // Concurrent first calls all compute the same value; keep whichever landed first
    // (it may also be a tkr_set_isa that raced ahead).
    match ACTIVE.compare_exchange(0, decided, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => decided,
        Err(current) => current,
    }
}

/// The active table, or `ISA_UNAVAILABLE` when `TOKENROUTE_ISA` forced a level this CPU
/// lacks.
#[inline]
pub(crate) fn active_kernels() -> Result<&'static Kernels> {
    Isa::from_id(state())
        .and_then(Kernels::for_isa)
        .ok_or(Error::new(
            ErrorKind::IsaUnavailable,
            "the forced ISA level is not available on this CPU",
        ))
}

/// The active level, or `None` when `TOKENROUTE_ISA` forced a level this CPU lacks.
pub fn active_isa() -> Option<Isa> {
    Isa::from_id(state())
}

/// Switches every kernel to `isa` (all at once), or with `None` back to automatic
/// detection (the best supported level under `TOKENROUTE_ISA_MAX`). Fails with
/// `ISA_UNAVAILABLE`, leaving the active level unchanged, when the CPU lacks `isa`.
pub fn set_isa(isa: Option<Isa>) -> Result<()> {
    let isa = match isa {
        None => best_supported(env_cap()),
        Some(isa) => {
            crate::error::ensure!(
                isa.is_supported(),
                IsaUnavailable,
                "this CPU does not support that ISA level"
            );
            isa
        }
    };
    ACTIVE.store(isa.id(), Ordering::Relaxed);
    Ok(())
}

/// Mask (`1 << id`) of the levels compiled in and supported by this CPU.
pub fn supported_isas() -> u32 {
    Isa::supported_mask()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_supported_respects_the_cap() {
        assert_eq!(best_supported(Some(Isa::Scalar)), Isa::Scalar);
        let best = best_supported(None);
        assert!(best.is_supported());
        assert!(Isa::ALL
            .into_iter()
            .filter(|i| i.is_supported())
            .all(|i| i.id() <= best.id()));
        if Isa::Avx2.is_supported() {
            assert_eq!(best_supported(Some(Isa::Avx2)), Isa::Avx2);
        }
    }
}
