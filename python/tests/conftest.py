"""Shared fixtures of the Python tests.

The suite runs once per ISA level (python/run_tests.py starts one pytest process per
level with TOKENROUTE_ISA=<level> and TKR_EXPECT_ISA=<id>); a process whose active
level is not the requested one stops before running anything.
"""

import os
from pathlib import Path

import numpy as np
import pytest

import tokenroute

#: The repository (the tests read include/tokenroute.h and include/tokenroute.symbols).
REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    want = os.environ.get("TKR_EXPECT_ISA")
    if want is not None and tokenroute.get_isa_id() != int(want):
        raise pytest.UsageError(
            f"active ISA level is {tokenroute.get_isa()} ({tokenroute.get_isa_id()}), "
            f"TKR_EXPECT_ISA={want}"
        )


def pytest_report_header(config):
    return (
        f"tokenroute {tokenroute.version()} from {tokenroute.LIBRARY_PATH}, "
        f"ISA level {tokenroute.get_isa()} (supported: {', '.join(tokenroute.supported_isas())})"
    )


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def each_level():
    """Yields a function that runs a callable on every supported level (switching the
    active level with set_isa) and restores the level afterwards."""
    before = tokenroute.get_isa_id()

    def run(f):
        out = {}
        for name in tokenroute.supported_isas():
            tokenroute.set_isa(name)
            out[name] = f()
        return out

    yield run
    tokenroute.set_isa(before)
