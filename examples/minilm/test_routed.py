"""Quick tests of the routed encoder (a few texts): keep ratio 1.0 (or no merge) equals
dense, the library's dense pass matches the numpy model, routing and merging really run
fewer tokens, merged sizes sum to n, the merge step and proportional attention match
naive numpy, and bad input raises clear errors.
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


def test_merge_nothing_equals_dense(enc, texts):
    for ids in texts:
        d = enc.dense(ids)
        for sched in ({}, {i: 1.0 for i in range(6)}):
            r = enc.merge(ids, sched)
            assert np.array_equal(r["all"], d) and r["tokens"] == [len(ids)] * 6
            assert np.array_equal(r["sizes"], np.ones(len(ids), np.float32))
        p = enc.prune(ids, {i: 1.0 for i in range(6)}, carry=True)
        assert np.array_equal(p["nearest"], d) and np.array_equal(p["follow"], d)


def test_merge_sizes_and_counts(enc, texts):
    ids = texts[3]  # 256 tokens
    n = len(ids)
    trace = []
    r = enc.merge(ids, {0: 0.75, 2: 0.5, 3: 0.2}, trace=trace)
    # 0.2 * n is below half of the 0.5 * n tokens left: clipped to (m - 1) // 2 merges.
    assert trace == [(0, n // 4), (2, n // 4), (3, (n // 2 - 1) // 2)]
    k = n // 2 - (n // 2 - 1) // 2
    assert r["tokens"] == [n, 3 * n // 4, 3 * n // 4, n // 2, k, k]
    assert r["sizes"].sum() == n and r["sizes"].min() >= 1 and r["sizes"].size == k
    assert r["positions"][0] == 0 and r["sizes"][0] == 1  # CLS never merged
    assert np.all(np.diff(r["positions"]) > 0)
    assert abs(np.linalg.norm(r["all"]) - 1) < 1e-5
    assert float(r["all"] @ enc.dense(ids)) > 0.9
    p = enc.prune(ids, {1: 0.5, 3: 0.25}, carry=True)
    assert p["weights"].sum() == n and p["weights"].size == n // 4
    with pytest.raises(ValueError, match="metric"):
        enc.merge(ids, {0: 0.5}, metric="values")


def test_merge_step_matches_numpy(enc):
    rng = np.random.default_rng(7)
    n, d, r = 41, 16, 15
    h = rng.standard_normal((n, d)).astype(np.float32)
    size = rng.integers(1, 4, n).astype(np.float32)
    x = rng.standard_normal((n, d)).astype(np.float32)
    h2, s2, p2 = enc._merge_step(h.copy(), size.copy(), np.arange(n), x, r)
    # Naive reference: match odd rows to even rows (not 0) by cosine, merge the r best.
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn[1::2] @ xn[0::2].T
    sim[:, 0] = -np.inf
    best, score = sim.argmax(1), sim.max(1)
    chosen = np.sort(np.argsort(-score, kind="stable")[:r])
    acc = {j: (size[j] * h[j].astype(np.float64), size[j]) for j in range(n)}
    for c in chosen:
        s, t = 2 * c + 1, 2 * best[c]
        acc[t] = (acc[t][0] + size[s] * h[s], acc[t][1] + size[s])
        del acc[s]
    keep = sorted(acc)
    assert np.array_equal(p2, keep) and s2.sum() == size.sum()
    assert np.array_equal(s2, [acc[j][1] for j in keep])
    assert np.allclose(h2, [acc[j][0] / acc[j][1] for j in keep], rtol=1e-5, atol=1e-5)


def test_proportional_attention_matches_numpy(enc, texts):
    h = enc.embed(texts[0])
    n = h.shape[0]
    qkv = h @ enc.m.layers[0]["wqkv"] + enc.m.layers[0]["bqkv"]
    bias = np.log(np.random.default_rng(3).integers(1, 5, n)).astype(np.float32)
    out, mass = enc.attention(qkv, True, log_size=bias)
    H, dh, D = enc.H, enc.dh, enc.D
    q, k, v = (qkv[:, i * D:(i + 1) * D].reshape(n, H, dh).transpose(1, 0, 2).astype(np.float64) for i in range(3))
    s = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + bias
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = (p @ v).transpose(1, 0, 2).reshape(n, D)
    assert np.allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert np.allclose(mass, p.sum((0, 1)), rtol=1e-3, atol=1e-4)
    zero, _ = enc.attention(qkv, False, log_size=np.zeros(n, np.float32))
    plain, _ = enc.attention(qkv, False)
    assert np.allclose(zero, plain, rtol=1e-5, atol=1e-6)


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
