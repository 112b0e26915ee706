"""Optional: the numpy forward pass (attention through tokenroute) against transformers
on the same GGUF file (skipped when transformers is not installed). reference.py records
the figures in reference.md. Run: python -m pytest examples/llm/test_reference.py"""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_logits_and_greedy_match_transformers():
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    import model as M
    import reference

    res = reference.compare(M.Model(), with_llamacpp=False)
    for r in res:
        t = r["transformers"]
        print(r["text"], t)
        assert t["cos_min"] >= 0.9999, r
        assert t["greedy_same"], r
        assert r["tokenizer_same_as_transformers"], r
