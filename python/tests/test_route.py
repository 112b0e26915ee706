"""The fused route call through the Python package, against score -> select ->
gather done with the package's separate calls and with numpy."""

import ctypes
import re

import ml_dtypes
import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError
import importlib

rmod = importlib.import_module("tokenroute.route")

from conftest import REPO


def status(f):
    with pytest.raises(TokenrouteError) as e:
        f()
    return e.value.name


@pytest.mark.parametrize("dtype", [np.float32, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("n", [0, 1, 17, 300])
def test_route_topk_matches_the_separate_calls(rng, dtype, n):
    d = 40
    h = rng.standard_normal((n, d)).astype(dtype)
    w = rng.standard_normal(d).astype(dtype)
    k = n // 3
    r = tokenroute.route(h, w, 0.25, k=k, keep_first=min(1, k))
    s = tokenroute.score(h, w, np.float32([0.25]))
    idx = tokenroute.topk(s, k, keep_first=min(1, k))
    assert np.array_equal(r.indices, idx)
    assert np.array_equal(r.scores, s[idx])
    assert np.array_equal(r.rows.view(np.uint8), h[idx].view(np.uint8))
    # The numpy reference of the selection: the k highest scores (ties to the lower index).
    if k:
        rest = np.argsort(-s[1:], kind="stable")[: k - 1] + 1
        assert np.array_equal(np.sort(np.concatenate([[0], rest])), r.indices)


def test_route_threshold_capacity_order_and_keeps(rng):
    h = rng.standard_normal((50, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    s = 1 / (1 + np.exp(-(h.astype(np.float64) @ w)))
    r = tokenroute.route(h, w, tau=0.5, keep_last=2)
    want = np.flatnonzero((s > 0.5) | (np.arange(50) >= 48))
    assert np.array_equal(r.indices, want)
    assert np.array_equal(r.rows, h[want])
    r = tokenroute.route(h, w, capacity=0.2, order="score")
    assert r.indices.size == 10
    assert np.all(np.diff(r.scores) <= 0)
    assert set(r.indices) == set(np.argsort(-s, kind="stable")[:10])
    m = np.zeros(50, bool)
    m[[3, 7]] = True
    r = tokenroute.route(h, w, k=5, keep_mask=m, activation="none")
    assert {3, 7} <= set(r.indices.tolist()) and r.indices.size == 5
    # Strided h (a column slice of a wider buffer) is passed as it is.
    big = np.zeros((50, 32), np.float32)
    big[:, 8:24] = h
    r2 = tokenroute.route(big[:, 8:24], w, k=5, keep_mask=m, activation="none")
    assert np.array_equal(r.indices, r2.indices) and np.array_equal(r.rows, r2.rows)


def test_route_uint16_bits(rng):
    h = rng.standard_normal((20, 8)).astype(np.float16)
    w = rng.standard_normal(8).astype(np.float16)
    a = tokenroute.route(h, w, k=4)
    b = tokenroute.route(h.view(np.uint16), w.view(np.uint16), k=4, dtype="f16")
    assert np.array_equal(a.indices, b.indices) and np.array_equal(a.rows.view(np.uint16), b.rows)


def test_route_errors(rng):
    h = rng.standard_normal((6, 4)).astype(np.float32)
    w = np.ones(4, np.float32)
    assert status(lambda: tokenroute.route(h, w)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, k=2, tau=0.5)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, k=7)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, capacity=1.5)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, k=1, keep_first=2)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, np.ones(3, np.float32), k=1)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w.astype(np.float16), k=1)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, tau=0.5, order="score")) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, k=1, activation="relu")) == "TKR_STATUS_INVALID_ARGUMENT"
    assert status(lambda: tokenroute.route(h, w, k=1, keep_mask=np.ones(5, bool))) == "TKR_STATUS_INVALID_ARGUMENT"
    assert tokenroute.route_workspace_size(10) >= 120


def test_route_options_struct_matches_the_header():
    header = (REPO / "include" / "tokenroute.h").read_text()
    body = re.search(r"typedef struct tkr_route_options \{(.*?)\} tkr_route_options;", header, re.S).group(1)
    body = re.sub(r"//[^\n]*", "", body)
    fields = re.findall(r"([\w\s\*]+?)\s*\b(\w+);", body)
    assert [f[1] for f in fields] == [f[0] for f in rmod.RouteOptions._fields_]
    o = rmod.RouteOptions()
    assert rmod._route_init(ctypes.byref(o)) == 0
    assert o.struct_size == ctypes.sizeof(rmod.RouteOptions)


def test_route_identical_on_every_level(rng, each_level):
    h = rng.standard_normal((257, 33)).astype(np.float32)
    w = rng.standard_normal(33).astype(np.float32)
    res = each_level(lambda: tokenroute.route(h, w, k=40, order="score"))
    ref = res.pop("scalar")
    for level, r in res.items():
        assert np.array_equal(r.indices, ref.indices) and np.array_equal(r.scores, ref.scores), level
