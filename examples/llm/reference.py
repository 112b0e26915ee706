"""The numpy forward pass (attention through tokenroute) against independent
implementations of the same GGUF file, recorded once in reference.md:

- transformers (``from_pretrained(dir, gguf_file=...)``, which dequantizes the file to
  float32 and un-permutes the Q/K rows for its own RoPE layout): logits of a 512-token
  prompt (cosine per position), the greedy continuation of 32 tokens, and the tokenizer;
- llama.cpp (``llama-cpp-python``, when installed; f16 KV cache, one thread): the same,
  for information (llama.cpp multiplies Q4_1 weights by activations quantized to Q8_1,
  so it is not the float32 computation the other two do).

    python examples/llm/reference.py     # writes reference.md
"""

from __future__ import annotations

import os
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model as M  # noqa: E402
import numpy as np  # noqa: E402

import corpus  # noqa: E402
import engine as E  # noqa: E402

PROMPT_TOKENS = 512
GREEDY = 32


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def ours(model, ids):
    """All positions' logits of ``ids`` and the greedy continuation (dense decode)."""
    s, logits = E.prefill(model, ids, len(ids) + GREEDY, all_logits=True)
    m = E.make_method(model, "dense", None, s.capacity)
    tok = int(logits[-1].argmax())
    gen = [tok]
    for _ in range(GREEDY - 1):
        tok = int(E.step(model, [s], [m], [tok])[0].argmax())
        gen.append(tok)
    return logits, gen


class Transformers:
    """The GGUF file through transformers (float32, one thread)."""

    def __init__(self, model):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(1)
        d, f = str(model.path.parent), model.path.name
        self.torch, self.eos = torch, model.eos_id
        self.hf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(d, gguf_file=f)

    def __call__(self, ids):
        torch = self.torch
        with torch.no_grad():
            t = torch.from_numpy(ids)[None]
            logits = self.hf(t).logits[0].numpy()
            gen = self.hf.generate(t, attention_mask=torch.ones_like(t), max_new_tokens=GREEDY, do_sample=False,
                                   pad_token_id=self.eos)[0, len(ids):].tolist()
        return logits, gen


def llamacpp_ref(model, ids):
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(model.path), n_ctx=len(ids) + GREEDY, n_threads=1, n_threads_batch=1,
                          logits_all=True, type_k=1, type_v=1, verbose=False)
    llm.reset()
    llm.eval([int(x) for x in ids])
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    gen = []
    tok = int(logits[-1].argmax())
    for _ in range(GREEDY):
        gen.append(tok)
        llm.eval([tok])
        tok = int(np.asarray(llm.scores[llm.n_tokens - 1]).argmax())
    return logits, gen, llm


def compare(model, texts=None, with_llamacpp=True):
    """Figures of the comparison on each text (first 512 tokens of a code and a prose
    window)."""
    texts = texts or corpus.windows(model, PROMPT_TOKENS, 2)
    out = []
    hf = Transformers(model)
    for t in texts:
        ids = t.ids[:PROMPT_TOKENS]
        lo, go = ours(model, ids)
        r = {"text": t.source, "tokens": int(ids.size), "greedy_ours": model.decode(go)}
        lt, gt = hf(ids)
        text = model.decode(ids)
        r["tokenizer_same_as_transformers"] = bool(
            hf.tokenizer(text, add_special_tokens=False)["input_ids"] == model.tokenizer.encode(text).ids)
        c = cosines(lo, lt)
        r["transformers"] = {"cos_min": float(c.min()), "cos_mean": float(c.mean()),
                             "max_abs_diff": float(np.abs(lo - lt).max()),
                             "greedy_same": go == gt, "greedy": model.decode(gt)}
        if with_llamacpp:
            try:
                ll, gl, llm = llamacpp_ref(model, ids)
            except ImportError:
                ll = None
            if ll is not None:
                c = cosines(lo, ll)
                r["llamacpp"] = {
                    "cos_min": float(c.min()), "cos_mean": float(c.mean()),
                    "greedy_same": go == gl,
                    "greedy_common_prefix": next((i for i, (a, b) in enumerate(zip(go, gl)) if a != b), len(go)),
                    "greedy": model.decode(gl),
                    "tokenizer_same": [int(x) for x in llm.tokenize(text.encode(), add_bos=False, special=False)]
                    == model.tokenizer.encode(text).ids,
                }
        out.append(r)
    return out


def main():
    model = M.Model()
    res = compare(model)
    lines = ["# Reference check", "",
             "Written by `python examples/llm/reference.py`: the numpy forward pass (f16 KV cache, every "
             "attention through tokenroute) against transformers and llama.cpp on the same GGUF file, "
             f"logits of every position of a {PROMPT_TOKENS}-token prompt and {GREEDY} greedy tokens.", ""]
    import transformers

    lines.append(f"transformers {transformers.__version__}" + (
        f", llama-cpp-python {__import__('llama_cpp').__version__}" if any("llamacpp" in r for r in res) else ""))
    lines.append("")
    lines += ["| text | reference | cosine min | cosine mean | greedy 32 identical | tokenizer identical |",
              "|---|---|---:|---:|---|---|"]
    for r in res:
        t = r["transformers"]
        lines.append(f"| {r['text']} | transformers | {t['cos_min']:.7f} | {t['cos_mean']:.7f} | "
                     f"{t['greedy_same']} | {r['tokenizer_same_as_transformers']} |")
        if "llamacpp" in r:
            t = r["llamacpp"]
            same = "True" if t["greedy_same"] else f"first {t['greedy_common_prefix']} tokens"
            lines.append(f"| {r['text']} | llama.cpp | {t['cos_min']:.7f} | {t['cos_mean']:.7f} | "
                         f"{same} | {t['tokenizer_same']} |")
    lines.append("")
    for r in res:
        lines.append(f"- {r['text']}: ours {r['greedy_ours']!r}")
        if "llamacpp" in r and not r["llamacpp"]["greedy_same"]:
            lines.append(f"  llama.cpp {r['llamacpp']['greedy']!r}")
    (HERE / "reference.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
