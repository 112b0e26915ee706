"""Versions, status names and ISA levels (the foundation calls)."""

from __future__ import annotations

from typing import List

from ._ffi import TKR_ISA_AUTO, TokenrouteError, check, lib

#: ISA level ids by name (``TKR_ISA_*``), as accepted by ``TOKENROUTE_ISA``.
ISA_IDS = {"auto": 0, "scalar": 1, "avx2": 2, "avx512": 3, "neon": 4}


def abi_version() -> int:
    """The C ABI version of the loaded library (``tkr_abi_version``)."""
    return lib().tkr_abi_version()


def version() -> str:
    """The library version string, e.g. ``"0.1.0"``."""
    return lib().tkr_version_string().decode()


def version_number() -> int:
    """MAJOR * 10000 + MINOR * 100 + PATCH."""
    return lib().tkr_version_number()


def isa_name(isa: int) -> str:
    """The name of a level id ("scalar", "avx2", ...; "auto" for 0, else "unknown")."""
    return lib().tkr_isa_name(int(isa)).decode()


def get_isa() -> str:
    """The active level's name, or ``"auto"`` when ``TOKENROUTE_ISA`` forced a level
    this CPU lacks (every kernel call then raises ``TKR_STATUS_ISA_UNAVAILABLE``)."""
    return isa_name(lib().tkr_get_isa())


def get_isa_id() -> int:
    """The active level's id (``TKR_ISA_*``; 0 when none is usable)."""
    return lib().tkr_get_isa()


def set_isa(isa) -> None:
    """Switches every kernel to a level, by name or id; ``"auto"`` re-detects. Raises
    :class:`TokenrouteError` (``TKR_STATUS_ISA_UNAVAILABLE``) when this CPU lacks it."""
    if isinstance(isa, str):
        if isa not in ISA_IDS:
            raise TokenrouteError(2, "tkr_set_isa", f"unknown level name {isa!r}")
        isa = ISA_IDS[isa]
    check(lib().tkr_set_isa(int(isa) & 0xFFFFFFFF), "tkr_set_isa")


def supported_isas() -> List[str]:
    """Names of the levels this build and CPU support, lowest first."""
    mask = lib().tkr_supported_isas()
    return [name for name, i in ISA_IDS.items() if i != TKR_ISA_AUTO and mask & (1 << i)]


def release_thread_buffers() -> None:
    """Frees the library's scratch buffers held by the calling thread (at most 1 MiB per
    buffer kind, ``TKR_THREAD_SCRATCH_CAP``) and its process-wide spare (at most 64 MiB).
    The next call that needs scratch allocates again."""
    lib().tkr_release_thread_buffers()


def status_string(status: int) -> str:
    """The name of a status code, e.g. ``"TKR_STATUS_OUT_OF_RANGE"``."""
    return lib().tkr_status_string(int(status) & 0xFFFFFFFF).decode()
