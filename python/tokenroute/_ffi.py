"""Loading the shared library, the ctypes declarations, constants and errors.

Every exported C function is declared here through :func:`declare` (argtypes and
restype) by the module of its family; the test suite fails when a symbol of
``include/tokenroute.symbols`` has no declaration, or when a declaration disagrees
with the prototype in ``include/tokenroute.h``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from ctypes import c_char_p, c_size_t, c_uint32, c_void_p
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: The C ABI version this package is written against (``TKR_ABI_VERSION``). The
#: library's ``tkr_abi_version()`` must equal it, checked when the library is loaded.
EXPECTED_ABI_VERSION = 2

# --- constants (the TKR_* macros of tokenroute.h; tests compare them with the header)

#: Every TKR_* macro value this package knows, by name: the foundation's below, each
#: family's registered by its module through :func:`constant`. The test suite requires
#: exactly the header's macros (except the version numbers).
CONSTANTS: Dict[str, int] = {}


def constant(name: str, value: int) -> int:
    """Registers a TKR_* macro value (by the module of its family) and returns it."""
    CONSTANTS[name] = value
    return value


TKR_STATUS_OK = 0
TKR_STATUS_NULL_POINTER = 1
TKR_STATUS_INVALID_ARGUMENT = 2
TKR_STATUS_OUT_OF_RANGE = 3
TKR_STATUS_BUFFER_TOO_SMALL = 4
TKR_STATUS_ISA_UNAVAILABLE = 5
TKR_STATUS_UNSUPPORTED = 6
TKR_STATUS_PANIC = 7
TKR_STATUS_SIZE_OVERFLOW = 8
TKR_STATUS_BAD_STRIDE = 9
TKR_STATUS_OVERLAP = 10
TKR_STATUS_DUPLICATE_INDEX = 11
TKR_STATUS_UNSORTED_INDEX = 12
TKR_STATUS_PARALLEL_FAILED = 13

TKR_ISA_AUTO = 0
TKR_ISA_SCALAR = 1
TKR_ISA_AVX2 = 2
TKR_ISA_AVX512 = 3
TKR_ISA_NEON = 4

TKR_DTYPE_F32 = 1
TKR_DTYPE_F16 = 2
TKR_DTYPE_BF16 = 3

CONSTANTS.update(
    (k, v) for k, v in dict(globals()).items() if k.startswith("TKR_") and isinstance(v, int)
)

#: Status names without the prefix, by code (the library's tkr_status_string is the
#: authority once loaded; this table serves errors raised before a call).
STATUS_NAMES = {
    v: k[len("TKR_STATUS_"):]
    for k, v in dict(globals()).items()
    if k.startswith("TKR_STATUS_")
}


class TokenrouteError(ValueError):
    """A tokenroute call failed, or its arguments were refused before the call.

    Attributes:
        status: the ``TKR_STATUS_*`` code (an ``int``).
        name: the status name, e.g. ``"TKR_STATUS_BAD_STRIDE"``.
        function: the C function concerned (or the Python wrapper).
        detail: what the Python checks found, when they raised it before the call.
    """

    def __init__(self, status: int, function: str, detail: str = ""):
        self.status = int(status)
        self.name = status_name(self.status)
        self.function = function
        self.detail = detail
        msg = f"{function}: {self.name}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


def status_name(status: int) -> str:
    """``"TKR_STATUS_<NAME>"`` of a status code, from the library when it is loaded."""
    if _LIB is not None:
        return _LIB.tkr_status_string(int(status) & 0xFFFFFFFF).decode()
    name = STATUS_NAMES.get(int(status))
    return f"TKR_STATUS_{name}" if name else "TKR_STATUS_UNKNOWN"


# --- finding and loading the library


def _library_filename() -> str:
    if sys.platform == "darwin":
        return "libtokenroute.dylib"
    if sys.platform == "win32":
        return "tokenroute.dll"
    return "libtokenroute.so"


def candidate_paths() -> List[Path]:
    """Where the library is looked for, in order:

    1. ``TOKENROUTE_LIB`` (a file, or a directory holding the library);
    2. next to this package (a library copied into ``tokenroute/`` before
       ``pip install`` is installed with it);
    3. the cargo target directory: ``$CARGO_TARGET_DIR/release``, then
       ``target/release`` of the repository this package sits in.
    """
    name = _library_filename()
    out: List[Path] = []
    env = os.environ.get("TOKENROUTE_LIB")
    if env:
        p = Path(env)
        return [p / name if p.is_dir() else p]
    here = Path(__file__).resolve().parent
    out.append(here / name)
    target = os.environ.get("CARGO_TARGET_DIR")
    if target:
        out.append(Path(target) / "release" / name)
    # python/tokenroute/_ffi.py -> the repository root is two levels above the package.
    out.append(here.parent.parent / "target" / "release" / name)
    return out


def find_library() -> Path:
    """The first existing candidate of :func:`candidate_paths`."""
    paths = candidate_paths()
    for p in paths:
        if p.is_file():
            return p
    if os.environ.get("TOKENROUTE_LIB"):
        raise OSError(f"TOKENROUTE_LIB={os.environ['TOKENROUTE_LIB']}: no such library file")
    tried = ", ".join(str(p) for p in paths)
    raise OSError(
        "tokenroute: shared library not found (tried "
        + tried
        + "); set TOKENROUTE_LIB, copy the library into the package, or run "
        "`cargo build --release`"
    )


# --- declarations

#: name -> (restype, argtypes) of every C function this package declares.
DECLARATIONS: Dict[str, Tuple[object, Tuple[object, ...]]] = {}

_LIB: Optional[ctypes.CDLL] = None
LIBRARY_PATH: Optional[Path] = None


def declare(name: str, restype: object, argtypes: Sequence[object]):
    """Declares a C function (by the family module that wraps it) and returns it."""
    DECLARATIONS[name] = (restype, tuple(argtypes))
    fn = getattr(_LIB, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


def lib() -> ctypes.CDLL:
    """The loaded library (raw ctypes functions, with their declarations)."""
    assert _LIB is not None
    return _LIB


def _load() -> None:
    global _LIB, LIBRARY_PATH
    path = find_library()
    handle = ctypes.CDLL(str(path))
    handle.tkr_abi_version.restype = c_uint32
    handle.tkr_abi_version.argtypes = []
    abi = handle.tkr_abi_version()
    if abi != EXPECTED_ABI_VERSION:
        raise ImportError(
            f"tokenroute: {path} has C ABI version {abi}, this package expects "
            f"{EXPECTED_ABI_VERSION}: the library does not match this Python package "
            "(reinstall both from one checkout: pip install ./python; or point "
            "TOKENROUTE_LIB at a library of ABI version "
            f"{EXPECTED_ABI_VERSION})"
        )
    _LIB = handle
    LIBRARY_PATH = path


_load()

# The foundation: versions, status names, ISA levels.
declare("tkr_abi_version", c_uint32, [])
declare("tkr_version_number", c_uint32, [])
declare("tkr_version_string", c_char_p, [])
declare("tkr_status_string", c_char_p, [c_uint32])
declare("tkr_get_isa", c_uint32, [])
declare("tkr_set_isa", c_uint32, [c_uint32])
declare("tkr_supported_isas", c_uint32, [])
declare("tkr_isa_name", c_char_p, [c_uint32])
declare("tkr_last_error_message", c_char_p, [])


def check(status: int, function: str) -> None:
    """Raises :class:`TokenrouteError` unless ``status`` is ``TKR_STATUS_OK``; its
    ``detail`` is the library's ``tkr_last_error_message()`` (which argument, which
    rule), read right after the failing call on this thread."""
    if status != TKR_STATUS_OK:
        detail = _LIB.tkr_last_error_message().decode(errors="replace") if _LIB else ""
        raise TokenrouteError(status, function, detail)


# Exported for the family modules.
__all__ = [
    "EXPECTED_ABI_VERSION",
    "TokenrouteError",
    "c_size_t",
    "c_uint32",
    "c_void_p",
    "check",
    "declare",
    "lib",
]
