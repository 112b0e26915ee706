"""Optional: the numpy forward pass against an independent reference,
sentence-transformers with torch on CPU (skipped when it is not installed).
Run: python -m pytest examples/minilm/test_reference.py"""
import os
import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from corpus import texts  # noqa: E402
from model import MiniLM, forward_numpy, model_dir  # noqa: E402


def test_dense_numpy_matches_sentence_transformers():
    st_mod = pytest.importorskip("sentence_transformers")
    m = MiniLM()
    st = st_mod.SentenceTransformer(str(model_dir()), device="cpu")
    st.max_seq_length = 512
    cos = []
    for length in (128, 512):
        for ids in texts(m.tokenizer, length, 8):
            text = m.tokenizer.decode(ids[1:-1].tolist())
            ref = st.encode(text, normalize_embeddings=True)
            cos.append(float(forward_numpy(m, m.encode(text)) @ ref))
    print(f"cosine to sentence-transformers: min {min(cos):.8f}, mean {np.mean(cos):.8f}")
    assert min(cos) >= 0.9999


def test_bad_inputs_are_errors():
    m = MiniLM()
    with pytest.raises(ValueError):
        m.encode("")
    with pytest.raises(ValueError):
        m.encode("word " * 600)
    with pytest.raises(ValueError):
        m.embed(np.zeros(513, np.int32))
