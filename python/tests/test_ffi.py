"""The ctypes layer: the library is found and ABI-checked, every exported symbol is
declared, every declaration matches its prototype in tokenroute.h, and the Python
constants match the header's macros."""

import ctypes
import os
import re
import subprocess
import sys

import pytest

import tokenroute
from tokenroute import _ffi

from conftest import REPO

HEADER = (REPO / "include" / "tokenroute.h").read_text()
SYMBOLS = [s for s in (REPO / "include" / "tokenroute.symbols").read_text().split() if s]


def prototypes():
    """name -> (return type, [parameter types]) of every function in tokenroute.h."""
    text = re.sub(r"//[^\n]*", "", HEADER)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    out = {}
    for m in re.finditer(r"([A-Za-z_][\w \*]*?)\s*\b(tkr_\w+)\s*\(([^)]*)\)\s*;", text):
        ret, name, params = m.group(1), m.group(2), m.group(3)
        params = " ".join(params.split())
        types = []
        if params not in ("", "void"):
            for p in params.split(","):
                p = p.strip()
                # Drop the parameter name: the last identifier.
                types.append(re.sub(r"\b\w+$", "", p).strip())
        out[name] = (" ".join(ret.split()), types)
    return out


PROTOTYPES = prototypes()

C_TO_CTYPES = {
    "uint32_t": ctypes.c_uint32,
    "tkr_status": ctypes.c_uint32,
    "int32_t": ctypes.c_int32,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "float": ctypes.c_float,
    "bool": ctypes.c_bool,
    "const char *": ctypes.c_char_p,
}


def matches(ctype_decl, c_type):
    c_type = " ".join(c_type.replace("*", " * ").split()).replace(" *", " *")
    if c_type == "void":
        return ctype_decl is None
    if c_type in C_TO_CTYPES:
        return ctype_decl is C_TO_CTYPES[c_type]
    if c_type.startswith("tkr_") and c_type.endswith("_fn"):
        # Function pointer typedefs: a CFUNCTYPE.
        return isinstance(ctype_decl, type) and issubclass(ctype_decl, ctypes._CFuncPtr)
    if c_type.endswith("*"):
        # Data and struct pointers: void pointers (numpy .ctypes.data) or typed pointers.
        return ctype_decl is ctypes.c_void_p or (
            isinstance(ctype_decl, type) and issubclass(ctype_decl, ctypes._Pointer)
        )
    raise AssertionError(f"no ctypes mapping for C type {c_type!r}")


def test_every_listed_symbol_is_declared():
    assert SYMBOLS, "include/tokenroute.symbols is empty"
    missing = [s for s in SYMBOLS if s not in _ffi.DECLARATIONS]
    assert not missing, f"exported symbols without a ctypes declaration: {missing}"
    extra = [s for s in _ffi.DECLARATIONS if s not in SYMBOLS]
    assert not extra, f"declarations of symbols the library does not export: {extra}"


def test_declarations_match_the_header_prototypes():
    assert set(PROTOTYPES) == set(SYMBOLS), "header and symbol list disagree"
    for name, (ret, params) in PROTOTYPES.items():
        restype, argtypes = _ffi.DECLARATIONS[name]
        assert matches(restype, ret), f"{name}: restype {restype} vs C {ret!r}"
        assert len(argtypes) == len(params), f"{name}: {len(argtypes)} argtypes vs {params}"
        for i, (a, p) in enumerate(zip(argtypes, params)):
            assert matches(a, p), f"{name}: parameter {i} declared {a}, C type {p!r}"
        fn = getattr(_ffi.lib(), name)
        assert fn.restype is restype and list(fn.argtypes) == list(argtypes)


def test_constants_match_the_header():
    defines = dict(
        (m.group(1), int(m.group(2)))
        for m in re.finditer(r"#define (TKR_\w+) (\d+)\b", HEADER)
    )
    status = {k: v for k, v in defines.items() if k.startswith("TKR_STATUS_")}
    assert status, "no status codes in the header"
    assert _ffi.EXPECTED_ABI_VERSION == defines.pop("TKR_ABI_VERSION")
    want = {k: v for k, v in defines.items() if not k.startswith("TKR_VERSION_")}
    missing = sorted(set(want) - set(_ffi.CONSTANTS))
    assert not missing, f"header macros the package does not define: {missing}"
    extra = sorted(set(_ffi.CONSTANTS) - set(want))
    assert not extra, f"package constants the header lacks: {extra}"
    for k, v in want.items():
        assert _ffi.CONSTANTS[k] == v, f"{k}: python {_ffi.CONSTANTS[k]} vs header {v}"
    # Status names: the Python table, the library and the header agree.
    for k, v in status.items():
        assert tokenroute.status_string(v) == k
        assert _ffi.STATUS_NAMES[v] == k[len("TKR_STATUS_"):]
    assert set(_ffi.STATUS_NAMES) == set(status.values())
    assert tokenroute.status_string(0xFFFFFFFF) == "TKR_STATUS_UNKNOWN"
    isa = {k[len("TKR_ISA_"):].lower(): v for k, v in defines.items() if k.startswith("TKR_ISA_")}
    assert isa == tokenroute.ISA_IDS


def test_versions():
    major, minor, patch = (int(x) for x in tokenroute.version().split("."))
    assert tokenroute.version_number() == major * 10000 + minor * 100 + patch
    assert tokenroute.abi_version() == tokenroute.EXPECTED_ABI_VERSION
    m = re.search(r"#define TKR_VERSION_NUMBER (\d+)", HEADER)
    assert tokenroute.version_number() == int(m.group(1))


def test_abi_mismatch_is_refused_at_load(monkeypatch):
    lib_before = _ffi.lib()
    monkeypatch.setattr(_ffi, "EXPECTED_ABI_VERSION", tokenroute.abi_version() + 1)
    with pytest.raises(ImportError, match="ABI version"):
        _ffi._load()
    assert _ffi.lib() is lib_before


def _run(code, **env):
    full = dict(os.environ)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120
    )


def test_tokenroute_lib_selects_the_library():
    path = str(tokenroute.LIBRARY_PATH)
    r = _run("import tokenroute; print(tokenroute.LIBRARY_PATH)", TOKENROUTE_LIB=path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == path
    # A directory holding the library works too.
    r = _run(
        "import tokenroute; print(tokenroute.LIBRARY_PATH)",
        TOKENROUTE_LIB=str(tokenroute.LIBRARY_PATH.parent),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == path
    r = _run("import tokenroute", TOKENROUTE_LIB="/nonexistent/libtokenroute.so")
    assert r.returncode != 0
    assert "TOKENROUTE_LIB" in r.stderr


def test_candidate_order(monkeypatch, tmp_path):
    monkeypatch.delenv("TOKENROUTE_LIB", raising=False)
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path))
    paths = _ffi.candidate_paths()
    assert paths[0].parent == _ffi.Path(_ffi.__file__).resolve().parent
    assert paths[1] == tmp_path / "release" / paths[0].name
    assert paths[2].parts[-3:] == ("target", "release", paths[0].name)
    assert len(paths) == 3
