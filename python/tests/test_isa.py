"""ISA levels through the Python package: the active level, switching, forcing a level
the CPU lacks (in a subprocess, as the environment is read once)."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError


def test_active_level():
    want = os.environ.get("TKR_EXPECT_ISA")
    if want is not None:
        assert tokenroute.get_isa_id() == int(want)
    elif not os.environ.get("TOKENROUTE_ISA") and not os.environ.get("TOKENROUTE_ISA_MAX"):
        # Automatic detection picks the best supported level.
        assert tokenroute.get_isa() == tokenroute.supported_isas()[-1]
    assert "scalar" in tokenroute.supported_isas()
    assert tokenroute.get_isa() in tokenroute.supported_isas()


def test_set_isa_round_trip():
    before = tokenroute.get_isa_id()
    try:
        for name in tokenroute.supported_isas():
            tokenroute.set_isa(name)
            assert tokenroute.get_isa() == name
            tokenroute.set_isa(tokenroute.ISA_IDS[name])
            assert tokenroute.get_isa() == name
    finally:
        tokenroute.set_isa(before)
    assert tokenroute.get_isa_id() == before


def test_set_isa_errors():
    before = tokenroute.get_isa_id()
    with pytest.raises(TokenrouteError) as e:
        tokenroute.set_isa(77)
    assert e.value.name == "TKR_STATUS_INVALID_ARGUMENT" and e.value.status == 2
    with pytest.raises(TokenrouteError):
        tokenroute.set_isa("sse9")
    missing = [n for n in ("avx2", "avx512", "neon") if n not in tokenroute.supported_isas()]
    assert missing, "every level is supported: no ISA_UNAVAILABLE to test"
    for name in missing:
        with pytest.raises(TokenrouteError) as e:
            tokenroute.set_isa(name)
        assert e.value.name == "TKR_STATUS_ISA_UNAVAILABLE"
    assert tokenroute.get_isa_id() == before


def test_isa_names():
    assert tokenroute.isa_name(0) == "auto"
    assert tokenroute.isa_name(99) == "unknown"
    for name, i in tokenroute.ISA_IDS.items():
        assert tokenroute.isa_name(i) == name


def _python(code, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith("TOKENROUTE_ISA")}
    full.pop("TKR_EXPECT_ISA", None)
    full.update(env)
    r = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


FORCED = """
import numpy as np, tokenroute
from tokenroute import TokenrouteError
print(tokenroute.get_isa())
for f in (lambda: tokenroute.sigmoid(np.ones(3, np.float32)),
          lambda: tokenroute.score(np.ones((2, 3), np.float32), np.ones((1, 3), np.float32))):
    try:
        f()
        print("ok")
    except TokenrouteError as e:
        print(e.name)
tokenroute.set_isa("scalar")
print(tokenroute.sigmoid(np.zeros(1, np.float32))[0])
"""


def test_forced_unavailable_level_fails_every_call():
    missing = [n for n in ("avx2", "avx512", "neon") if n not in tokenroute.supported_isas()]
    for name in missing + ["no-such-level"]:
        out = _python(FORCED, TOKENROUTE_ISA=name).split()
        assert out == ["auto", "TKR_STATUS_ISA_UNAVAILABLE", "TKR_STATUS_ISA_UNAVAILABLE", "0.5"]


def test_isa_max_caps_leniently():
    sup = tokenroute.supported_isas()
    for cap, cid in tokenroute.ISA_IDS.items():
        if cap == "auto":
            continue
        want = [n for n in sup if tokenroute.ISA_IDS[n] <= cid][-1]
        assert _python("import tokenroute; print(tokenroute.get_isa())",
                       TOKENROUTE_ISA_MAX=cap) == want
