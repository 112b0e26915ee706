"""The PEP 517 build backend of the tokenroute Python package: a wheel that carries
the built C library, from one command, with no build dependency.

    pip install ./python           # builds the library with cargo and installs both
    pip wheel ./python -w dist     # the wheel alone (tokenroute-<v>-py3-none-<platform>.whl)

The library put into the wheel (``tokenroute/libtokenroute.so`` on Linux) is, in order:

1. ``TOKENROUTE_BUILD_LIB``: a library file built elsewhere;
2. when this package sits in the tokenroute repository (``../Cargo.toml``): the result
   of ``cargo build --release --lib -p tokenroute`` (``$CARGO_TARGET_DIR`` or the
   repository's ``target/``), built now (a no-op when it is fresh);
3. a library already copied next to the package sources (``tokenroute/libtokenroute.so``).

Anything else is an error that says what to do. The wheel's library must match the
package's C ABI version: importing checks ``tkr_abi_version()`` against
``tokenroute._ffi.EXPECTED_ABI_VERSION`` and refuses a mismatch.

Only the standard library is used, so ``pip install --no-index ./python`` works offline
(with ``--no-deps``, or numpy already installed). Editable installs (``pip install -e``)
add the source directory to ``sys.path``; the package then finds the library in the
cargo target directory as usual.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SRC = Path(__file__).resolve().parent.parent  # python/
REPO = SRC.parent
PACKAGE = "tokenroute"


def _library_name() -> str:
    if sys.platform == "darwin":
        return "libtokenroute.dylib"
    if sys.platform == "win32":
        return "tokenroute.dll"
    return "libtokenroute.so"


def _project() -> Dict[str, object]:
    """name, version, requires-python, dependencies and description of pyproject.toml."""
    text = (SRC / "pyproject.toml").read_text()
    try:
        import tomllib  # Python >= 3.11

        p = tomllib.loads(text)["project"]
    except ModuleNotFoundError:  # Python < 3.11: a reader for the tables we use
        p = {"optional-dependencies": {}}
        section = None
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("["):
                section = s.strip("[]")
                continue
            if "=" not in s or s.startswith("#"):
                continue
            k, v = (x.strip() for x in s.split("=", 1))
            if section == "project.optional-dependencies":
                p["optional-dependencies"][k] = re.findall(r'"([^"]*)"', v)
            elif section == "project" and v.startswith("["):
                p[k] = re.findall(r'"([^"]*)"', v)
            elif section == "project" and v.startswith("{"):
                p[k] = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', v))
            elif section == "project" and v.startswith('"'):
                p[k] = v.strip('"')
    return p


def _dist_name(p: Dict[str, object]) -> str:
    return re.sub(r"[-_.]+", "_", str(p["name"])).lower()


def _metadata(p: Dict[str, object]) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {p['name']}",
        f"Version: {p['version']}",
        f"Summary: {p.get('description', '')}",
    ]
    if "requires-python" in p:
        lines.append(f"Requires-Python: {p['requires-python']}")
    lic = p.get("license")
    if isinstance(lic, dict) and "text" in lic:
        lines.append(f"License: {lic['text']}")
    for dep in p.get("dependencies", []) or []:
        lines.append(f"Requires-Dist: {dep}")
    for extra, deps in (p.get("optional-dependencies") or {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for dep in deps:
            lines.append(f'Requires-Dist: {dep}; extra == "{extra}"')
    return "\n".join(lines) + "\n"


def _platform_tag() -> str:
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


def _cargo_target_dir() -> Path:
    env = os.environ.get("CARGO_TARGET_DIR")
    if env:
        return Path(env) if Path(env).is_absolute() else REPO / env
    return REPO / "target"


def _find_library() -> Path:
    name = _library_name()
    env = os.environ.get("TOKENROUTE_BUILD_LIB")
    if env:
        lib = Path(env)
        if not lib.is_file():
            raise RuntimeError(f"TOKENROUTE_BUILD_LIB={env}: no such file")
        return lib
    if (REPO / "Cargo.toml").is_file() and (REPO / "include" / "tokenroute.h").is_file():
        cargo = os.environ.get("CARGO", "cargo")
        cmd = [cargo, "build", "--release", "--lib", "-p", "tokenroute"]
        print("tokenroute build: " + " ".join(cmd), file=sys.stderr, flush=True)
        try:
            subprocess.run(cmd, cwd=REPO, check=True, stdout=sys.stderr)
        except FileNotFoundError:
            raise RuntimeError(
                "tokenroute: building the wheel needs a Rust toolchain (cargo on PATH), "
                "or TOKENROUTE_BUILD_LIB=<a built libtokenroute>"
            ) from None
        lib = _cargo_target_dir() / "release" / name
        if not lib.is_file():
            raise RuntimeError(f"cargo build finished but {lib} is missing")
        return lib
    staged = SRC / PACKAGE / name
    if staged.is_file():
        return staged
    raise RuntimeError(
        "tokenroute: no library to put in the wheel: build from the tokenroute repository "
        "(python/ next to Cargo.toml), set TOKENROUTE_BUILD_LIB, or copy the library into "
        f"{staged}"
    )


class _Wheel:
    """Writes a wheel: files, then dist-info (METADATA, WHEEL, RECORD) last."""

    def __init__(self, path: Path, dist_info: str):
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED)
        self.dist_info = dist_info
        self.records: List[Tuple[str, str, int]] = []

    def add(self, arcname: str, data: bytes, executable: bool = False) -> None:
        info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = (0o755 if executable else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        self.zip.writestr(info, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        self.records.append((arcname, f"sha256={digest}", len(data)))

    def close(self, metadata: str, tag: str) -> None:
        self.add(f"{self.dist_info}/METADATA", metadata.encode())
        wheel = f"Wheel-Version: 1.0\nGenerator: tokenroute_build\nRoot-Is-Purelib: false\nTag: {tag}\n"
        self.add(f"{self.dist_info}/WHEEL", wheel.encode())
        record = io.StringIO()
        for name, digest, size in self.records:
            record.write(f"{name},{digest},{size}\n")
        record.write(f"{self.dist_info}/RECORD,,\n")
        info = zipfile.ZipInfo(f"{self.dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        self.zip.writestr(info, record.getvalue())
        self.zip.close()


def _package_files() -> List[Path]:
    return sorted(
        f
        for f in (SRC / PACKAGE).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts and f.suffix in (".py", ".typed")
    )


def _build(wheel_directory: str, editable: bool) -> str:
    p = _project()
    dist = _dist_name(p)
    version = str(p["version"])
    dist_info = f"{dist}-{version}.dist-info"
    if editable:
        tag = "py3-none-any"
    else:
        tag = f"py3-none-{_platform_tag()}"
    filename = f"{dist}-{version}-{tag}.whl"
    out = Path(wheel_directory) / filename
    w = _Wheel(out, dist_info)
    if editable:
        w.add(f"__editable__.{dist}.pth", (str(SRC) + "\n").encode())
    else:
        for f in _package_files():
            w.add(f"{PACKAGE}/{f.relative_to(SRC / PACKAGE).as_posix()}", f.read_bytes())
        lib = _find_library()
        w.add(f"{PACKAGE}/{_library_name()}", lib.read_bytes(), executable=True)
    w.close(_metadata(p), tag)
    return filename


# --- PEP 517 / PEP 660 hooks


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    return _build(wheel_directory, editable=False)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None) -> str:
    return _build(wheel_directory, editable=True)


def build_sdist(sdist_directory, config_settings=None) -> str:
    raise RuntimeError(
        "tokenroute: no source distribution of the Python package alone (it needs the "
        "Rust sources of the whole repository); build a wheel: pip wheel ./python"
    )

