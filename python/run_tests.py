#!/usr/bin/env python3
"""Runs the Python test suite once per ISA level this CPU supports, each in its own
process with TOKENROUTE_ISA=<level> (the level is read once per process) and
TKR_EXPECT_ISA=<id> (tests/conftest.py stops a run whose active level differs).

    python python/run_tests.py [--bundled] [pytest arguments...]

A level named in TOKENROUTE_REQUIRE_ISAS (comma-separated) that this CPU lacks is a
failure. --bundled requires the imported package to use the library installed next to
it (the `pip install` check of .ci/test). Exit status 0 only when every level passed.
"""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent / "tests"


def main(argv):
    bundled = "--bundled" in argv
    args = [a for a in argv if a != "--bundled"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENROUTE_ISA")}
    env.pop("TKR_EXPECT_ISA", None)
    probe = subprocess.run(
        [sys.executable, "-c",
         "import tokenroute as t; print(t.__file__); print(t.LIBRARY_PATH); "
         "print(','.join(t.supported_isas()))"],
        env=env, capture_output=True, text=True,
    )
    if probe.returncode != 0:
        sys.stderr.write(probe.stderr)
        return 1
    pkg, lib, levels = probe.stdout.split("\n")[:3]
    levels = levels.split(",")
    print(f"tokenroute package {pkg}\nlibrary {lib}\nlevels {', '.join(levels)}", flush=True)
    if bundled and Path(lib).resolve().parent != Path(pkg).resolve().parent:
        print(f"--bundled: the library {lib} is not the one installed with {pkg}")
        return 1
    required = [s.strip() for s in os.environ.get("TOKENROUTE_REQUIRE_ISAS", "").split(",") if s.strip()]
    missing = [r for r in required if r not in levels]
    if missing:
        print(f"TOKENROUTE_REQUIRE_ISAS names {missing}, which this CPU lacks")
        return 1
    ids = {"scalar": 1, "avx2": 2, "avx512": 3, "neon": 4}
    failed = []
    for level in levels:
        print(f"\n--- pytest with TOKENROUTE_ISA={level}", flush=True)
        e = dict(env, TOKENROUTE_ISA=level, TKR_EXPECT_ISA=str(ids[level]))
        r = subprocess.run([sys.executable, "-m", "pytest", str(TESTS), "-q", "-p", "no:cacheprovider", *args], env=e)
        if r.returncode != 0:
            failed.append(f"{level} (exit {r.returncode})")
    print()
    if failed:
        print(f"python tests failed on: {', '.join(failed)}")
        return 1
    print(f"python tests passed on every level: {', '.join(levels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
