"""The wheel (python/build_backend/tokenroute_build.py) and the ABI check at import.

- A wheel built by the backend carries the package's modules and the library, with
  metadata from pyproject.toml and a RECORD whose hashes match the files.
- Importing the package against a library of another C ABI version fails with an
  ImportError that names both versions and what to do.
"""

import base64
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import tokenroute
from tokenroute import _ffi

PYTHON_DIR = Path(__file__).resolve().parent.parent
BACKEND = PYTHON_DIR / "build_backend" / "tokenroute_build.py"


def _backend():
    spec = importlib.util.spec_from_file_location("tokenroute_build", BACKEND)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_wheel_carries_the_library_and_its_metadata(tmp_path, monkeypatch):
    lib = Path(_ffi.LIBRARY_PATH)
    monkeypatch.setenv("TOKENROUTE_BUILD_LIB", str(lib))
    backend = _backend()
    assert backend.get_requires_for_build_wheel() == []
    name = backend.build_wheel(str(tmp_path))
    assert name.startswith("tokenroute-") and name.endswith(".whl")
    assert "-py3-none-" in name and not name.endswith("-any.whl")
    with zipfile.ZipFile(tmp_path / name) as z:
        names = set(z.namelist())
        libname = backend._library_name()
        assert f"tokenroute/{libname}" in names
        assert z.read(f"tokenroute/{libname}") == lib.read_bytes()
        for mod in ("__init__.py", "_ffi.py", "core.py", "py.typed"):
            assert f"tokenroute/{mod}" in names
        assert not any("__pycache__" in n for n in names)
        dist = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert len(dist) == 1
        meta = z.read(dist[0]).decode()
        project = backend._project()
        assert f"Version: {project['version']}\n" in meta
        assert "Requires-Dist: numpy" in meta
        info = dist[0].rsplit("/", 1)[0]
        assert f"Tag: {name[:-4].split('-', 2)[2]}" in z.read(f"{info}/WHEEL").decode()
        # RECORD: every file but itself, with its sha256 and size.
        rows = [r.split(",") for r in z.read(f"{info}/RECORD").decode().splitlines()]
        listed = {r[0] for r in rows}
        assert listed == names
        for path, digest, size in rows:
            if path.endswith("RECORD"):
                assert digest == "" and size == ""
                continue
            data = z.read(path)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={want}" and int(size) == len(data), path


def test_no_library_is_a_clear_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENROUTE_BUILD_LIB", str(tmp_path / "missing.so"))
    with pytest.raises(RuntimeError, match="TOKENROUTE_BUILD_LIB"):
        _backend().build_wheel(str(tmp_path))


def test_a_library_of_another_abi_version_is_refused_at_import(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or sys.platform != "linux":
        pytest.skip("needs a C compiler on Linux to build a stand-in library")
    other = _ffi.EXPECTED_ABI_VERSION + 1
    src = tmp_path / "fake.c"
    src.write_text(f"unsigned tkr_abi_version(void) {{ return {other}u; }}\n")
    fake = tmp_path / "libtokenroute.so"
    subprocess.run([cc, "-shared", "-fPIC", str(src), "-o", str(fake)], check=True)
    env = dict(os.environ, TOKENROUTE_LIB=str(fake))
    env["PYTHONPATH"] = str(Path(tokenroute.__file__).resolve().parent.parent)
    run = subprocess.run(
        [sys.executable, "-c", "import tokenroute"], env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "ImportError" in run.stderr
    assert f"C ABI version {other}" in run.stderr
    assert f"expects {_ffi.EXPECTED_ABI_VERSION}" in run.stderr
    assert "pip install ./python" in run.stderr


def test_errors_carry_the_library_message():
    """_ffi.check puts tkr_last_error_message() (argument + rule) into the error."""
    import numpy as np

    y = np.zeros(4, dtype=np.float32)
    lib = _ffi.lib()
    st = lib.tkr_sigmoid_f32(None, 3, y.ctypes.data)
    assert st == _ffi.TKR_STATUS_NULL_POINTER
    assert lib.tkr_last_error_message().decode().startswith("x: ")
    with pytest.raises(_ffi.TokenrouteError) as e:
        _ffi.check(st, "tkr_sigmoid_f32")
    assert e.value.detail.startswith("x: ") and "x: " in str(e.value)
