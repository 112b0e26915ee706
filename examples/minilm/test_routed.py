"""Quick tests of the routed encoder (a few texts): keep ratio 1.0 equals dense, the
library's dense pass matches the numpy model, routing really runs fewer tokens, and bad
input raises clear errors.
Run: PYTHONPATH=python python -m pytest examples/minilm/test_routed.py"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import routed  # noqa: E402,I001  (before numpy: single-threaded BLAS)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import corpus  # noqa: E402
from model import forward_numpy  # noqa: E402


@pytest.fixture(scope="module")
def enc():
    return routed.Encoder()


@pytest.fixture(scope="module")
def texts(enc):
    return corpus.texts(enc.m.tokenizer, 128, 3, "eval") + corpus.texts(enc.m.tokenizer, 256, 1, "eval")


def test_dense_library_matches_numpy_model(enc, texts):
    for ids in texts:
        a = enc.dense(ids)
        assert float(a @ forward_numpy(enc.m, ids)) >= 0.99999
        assert float(a @ enc.dense(ids, attention="numpy")) >= 0.99999


def test_keep_ratio_one_equals_dense(enc, texts):
    full = {i: 1.0 for i in range(6)}
    for ids in texts:
        d = enc.dense(ids)
        p = enc.prune(ids, full)
        assert np.array_equal(p["survivors"], d) and p["tokens"] == [len(ids)] * 6
        assert np.array_equal(p["positions"], np.arange(len(ids)))
        s = enc.skip(ids, full)
        assert np.array_equal(s["all"], d)


def test_pruning_runs_fewer_tokens(enc, texts):
    ids = texts[0]
    n = len(ids)
    r = enc.prune(ids, {1: 0.5, 3: 0.25})
    assert r["tokens"] == [n, n, n // 2, n // 2, n // 4, n // 4]
    assert r["positions"][0] == 0 and np.all(np.diff(r["positions"]) > 0)
    assert abs(np.linalg.norm(r["survivors"]) - 1) < 1e-5
    # The kept tokens are CLS plus the top attention mass after layer 1 (numpy check).
    h = enc.embed(ids)
    h, _ = enc.layer(enc.m.layers[0], h)
    h_in = h
    h, mass = enc.layer(enc.m.layers[1], h, want_mass=True)
    _, m_np = enc.attention(h_in @ enc.m.layers[1]["wqkv"] + enc.m.layers[1]["bqkv"], True, "numpy")
    assert np.allclose(mass, m_np, rtol=1e-4, atol=1e-4)
    trace = []
    enc.prune(ids, {1: 0.5}, trace=trace)
    (li, _, mask), = trace
    order = np.argsort(-mass[1:], kind="stable")[: n // 2 - 1] + 1
    assert li == 1 and mask[0] and set(np.flatnonzero(mask)) == set(order) | {0}
    s = enc.skip(ids, {2: 0.5})
    assert s["tokens"] == [n, n, n // 2, n, n, n]


def test_router_fit_and_route(enc, texts):
    acc = enc.fit_routers("t", {1: 0.5}, corpus.texts(enc.m.tokenizer, 128, 6, "train"))
    assert set(acc) == {1} and acc[1] > 0.6
    pts = []
    r = enc.route(texts[0], "t", agreement=pts)
    assert len(pts) == 1 and pts[0][0][0] and pts[0][1][0]  # CLS kept by both
    assert r["tokens"][2] < len(texts[0])


def test_bad_input(enc):
    with pytest.raises(ValueError, match="position table"):
        enc.dense(np.zeros(513, np.int32))
    with pytest.raises(ValueError, match="empty"):
        enc.dense(np.zeros(0, np.int32))
    with pytest.raises(ValueError, match="empty"):
        enc.m.encode("   ")
    with pytest.raises(ValueError, match="position table"):
        enc.m.encode("word " * 600)
    ids = enc.m.encode("A short sentence.")
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            enc.prune(ids, {1: bad})
        with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
            enc.skip(ids, {1: bad})
    with pytest.raises(ValueError, match="layer"):
        enc.prune(ids, {6: 0.5})
    with pytest.raises(ValueError, match="importance"):
        enc.prune(ids, {1: 0.5}, importance="random")
