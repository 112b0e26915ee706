"""tokenroute.topk / threshold / mask conversions against numpy references: ties by
lower index, NaN below every number, forced keeps, valid lengths, per-row k and
capacity, strided scores, empty inputs, error paths; option structs against the header
and the library; identical results on every ISA level."""

import ctypes
import math
import re

import numpy as np
import pytest

import tokenroute
from tokenroute import TokenrouteError
from tokenroute import select as sel

from conftest import REPO

PAD = 0xFFFFFFFF


def ref_topk(row, k, forced=()):
    """Indices (ascending) of the exact top-k: forced first, then by (NaN last,
    -value, index)."""
    forced = sorted(set(forced))
    rest = [i for i in range(len(row)) if i not in set(forced)]
    key = sorted(rest, key=lambda i: (math.isnan(row[i]), -row[i] if not math.isnan(row[i]) else 0.0, i))
    return sorted(forced + key[: k - len(forced)])


def forced_set(L, keep_first, keep_last, mask_row):
    f = set(range(min(keep_first, L)))
    last = min(keep_last, L - min(keep_first, L))
    f |= set(range(L - last, L))
    if mask_row is not None:
        f |= {i for i in range(L) if mask_row[i]}
    return f


def special_scores(rng, batch, n):
    s = rng.standard_normal((batch, n)).astype(np.float32)
    pick = rng.random((batch, n))
    s[pick < 0.1] = np.nan
    s[(pick >= 0.1) & (pick < 0.2)] = 0.5  # ties
    s[(pick >= 0.2) & (pick < 0.25)] = -0.0
    s[(pick >= 0.25) & (pick < 0.28)] = np.inf
    s[(pick >= 0.28) & (pick < 0.3)] = 1e-45
    return s


@pytest.mark.parametrize("n", [0, 1, 5, 16, 17, 64, 100, 333])
def test_topk_single_row(rng, n):
    s = special_scores(rng, 1, n)[0]
    for k in sorted({0, min(1, n), n // 3, n // 2, n}):
        got = tokenroute.topk(s, k)
        assert got.dtype == np.uint32
        assert got.tolist() == ref_topk(s.tolist(), k)
        idx, vals = tokenroute.topk(s, k, order="score", return_scores=True)
        assert sorted(idx.tolist()) == ref_topk(s.tolist(), k)
        assert np.array_equal(vals.view(np.uint32), s[idx].view(np.uint32))
        # Descending score, NaN last, ties by index.
        keyed = [(math.isnan(s[i]), -s[i] if not math.isnan(s[i]) else 0, i) for i in idx]
        assert keyed == sorted(keyed)


def test_topk_batched_forced_valid_lens_and_strides(rng):
    batch, n = 7, 90
    big = special_scores(rng, batch, n + 6)
    s = big[:, 3 : 3 + n]  # strided rows
    lens = rng.integers(0, n + 1, batch)
    mask = rng.random((batch, n)) < 0.05
    k = 20
    lens = np.maximum(lens, k + 3)
    idx, counts = tokenroute.topk(s, row_k=[k] * batch, keep_first=2, keep_last=1,
                                  keep_mask=mask, valid_lens=lens)
    for r in range(batch):
        L = int(lens[r])
        f = forced_set(L, 2, 1, mask[r])
        if len(f) > k:
            continue
        want = ref_topk(s[r, :L].tolist(), k, f)
        assert idx[r, : counts[r]].tolist() == want
        assert np.all(idx[r, counts[r] :] == PAD)


def test_topk_capacity_and_row_k(rng):
    s = special_scores(rng, 5, 40)
    lens = [40, 33, 10, 1, 0]
    idx, counts = tokenroute.topk(s, capacity=0.3, valid_lens=lens)
    assert counts.tolist() == [math.ceil(0.3 * L) for L in lens]
    for r, L in enumerate(lens):
        assert idx[r, : counts[r]].tolist() == ref_topk(s[r, :L].tolist(), int(counts[r]))
    idx2, counts2 = tokenroute.topk(s, row_k=[3, 0, 10, 1, 0], valid_lens=lens)
    assert counts2.tolist() == [3, 0, 10, 1, 0]
    assert idx2[2, :10].tolist() == ref_topk(s[2, :10].tolist(), 10)


def test_topk_workspace(rng):
    s = special_scores(rng, 3, 50)
    need = tokenroute.topk_workspace_size(50)
    assert need == 8 * 50
    ws = np.empty(need, np.uint8)
    a = tokenroute.topk(s, 7, workspace=ws)
    b = tokenroute.topk(s, 7)
    assert np.array_equal(a, b)
    with pytest.raises(TokenrouteError) as e:
        tokenroute.topk(s, 7, workspace=np.empty(need - 8, np.uint8))
    assert e.value.name == "TKR_STATUS_BUFFER_TOO_SMALL"
    with pytest.raises(TokenrouteError) as e:
        tokenroute.topk_workspace_size(2**62)
    assert e.value.name == "TKR_STATUS_SIZE_OVERFLOW"


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 100, 1000])
def test_threshold(rng, n):
    s = special_scores(rng, 3, n)
    for tau in (0.0, 0.5, -np.inf, np.nan, 1e-45):
        idx, counts = tokenroute.threshold(s, tau)
        for r in range(3):
            want = [i for i in range(n) if s[r, i] > tau]
            assert idx[r, : counts[r]].tolist() == want
            assert np.all(idx[r, counts[r] :] == PAD)
    one = tokenroute.threshold(s[0], 0.5)
    assert one.tolist() == [i for i in range(n) if s[0, i] > 0.5]


def test_threshold_forced_row_tau_and_mask(rng):
    s = special_scores(rng, 4, 60)
    lens = [60, 30, 5, 0]
    km = rng.random((4, 60)) < 0.1
    taus = [0.0, 1.0, np.nan, 0.0]
    idx, counts, mask = tokenroute.threshold(s, row_tau=taus, keep_first=1, keep_last=2,
                                             keep_mask=km, valid_lens=lens, return_mask=True)
    for r in range(4):
        L = lens[r]
        f = forced_set(L, 1, 2, km[r])
        want = sorted(f | {i for i in range(L) if s[r, i] > taus[r]})
        assert idx[r, : counts[r]].tolist() == want
        assert mask[r].tolist() == [i in set(want) for i in range(60)]


def test_mask_index_round_trip(rng):
    for n in (0, 1, 7, 64, 65, 1000):
        m = rng.random(n) < 0.3
        ix = tokenroute.mask_to_indices(m)
        assert ix.tolist() == np.nonzero(m)[0].tolist()
        assert np.array_equal(tokenroute.indices_to_mask(ix, n), m)
        assert tokenroute.mask_to_indices(m.astype(np.uint8) * 7).tolist() == ix.tolist()
    assert tokenroute.indices_to_mask([3, 3, 0], 5).tolist() == [True, False, False, True, False]


def test_select_errors(rng):
    s = rng.standard_normal((2, 10)).astype(np.float32)

    def name(f):
        with pytest.raises(TokenrouteError) as e:
            f()
        return e.value.name

    assert name(lambda: tokenroute.topk(s, 11)) == "TKR_STATUS_INVALID_ARGUMENT"  # k > n
    assert name(lambda: tokenroute.topk(s, 2, keep_first=3)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.topk(s)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.topk(s, 1, row_k=[1, 1])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.topk(s, capacity=1.5)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.topk(s, 2, valid_lens=[11, 2])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.topk(s.astype(np.float64), 2)) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.threshold(s, valid_lens=[1])) == "TKR_STATUS_INVALID_ARGUMENT"
    assert name(lambda: tokenroute.indices_to_mask([5], 5)) == "TKR_STATUS_OUT_OF_RANGE"
    assert name(lambda: tokenroute.indices_to_mask([-1], 5)) == "TKR_STATUS_OUT_OF_RANGE"
    assert name(lambda: tokenroute.mask_to_indices(np.zeros((2, 2), bool))) == "TKR_STATUS_INVALID_ARGUMENT"


def test_options_structs_match_the_header_and_the_library():
    header = (REPO / "include" / "tokenroute.h").read_text()
    for cname, cls, init in (
        ("tkr_threshold_options", sel.ThresholdOptions, sel._threshold_init),
        ("tkr_topk_options", sel.TopkOptions, sel._topk_init),
    ):
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (cname, cname), header, re.S).group(1)
        body = re.sub(r"//[^\n]*", "", body)
        fields = re.findall(r"([\w\s\*]+?)\s*\b(\w+);", body)
        assert [f[1] for f in fields] == [f[0] for f in cls._fields_], cname
        o = cls()
        assert init(ctypes.byref(o)) == 0
        # The library fills struct_size with its own sizeof: the layouts agree.
        assert o.struct_size == ctypes.sizeof(cls), cname
        assert init(None) == 1  # NULL options: TKR_STATUS_NULL_POINTER


def test_unsupported_options_tail():
    """A struct_size larger than the library's with a non-zero tail is UNSUPPORTED."""
    class Bigger(ctypes.Structure):
        _fields_ = sel.TopkOptions._fields_ + [("future", ctypes.c_uint64)]

    o = Bigger()
    o.struct_size = ctypes.sizeof(Bigger)
    o.future = 1
    s = np.ones(4, np.float32)
    out = np.zeros(4, np.uint32)
    lib = tokenroute.lib()
    # The declared function takes a tkr_topk_options*: pass the larger struct through it.
    p = ctypes.cast(ctypes.pointer(o), ctypes.POINTER(sel.TopkOptions))
    got = lib.tkr_topk_f32(s.ctypes.data, 1, 4, 4, 2, p, out.ctypes.data, 2, None, None, 0)
    assert tokenroute.status_string(got) == "TKR_STATUS_UNSUPPORTED"
    assert not out.any()
    o.future = 0
    got = lib.tkr_topk_f32(s.ctypes.data, 1, 4, 4, 2, p, out.ctypes.data, 2, None, None, 0)
    assert got == 0 and out[:2].tolist() == [0, 1]


def test_selection_identical_on_every_level(rng, each_level):
    s = special_scores(rng, 6, 257)
    res = each_level(lambda: (tokenroute.topk(s, 31, order="score").copy(),
                              tokenroute.threshold(s, 0.25)[0].copy()))
    ref = res.pop("scalar")
    for level, (a, b) in res.items():
        assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1]), level
