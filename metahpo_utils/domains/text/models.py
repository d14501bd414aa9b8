"""Text classifiers over character ids ``(N, L)`` (0 = padding): a bag of embeddings with hashed
character bigrams (fastText-style), a 1-D convolutional network and a small Transformer encoder.

Each is a :class:`~metahpo_utils.models.Classifier`: a ``trunk`` (embedding and encoder, reading at
most ``max_len`` tokens) and a linear ``head``. The shared hyperparameters mean what they mean for
the image models: ``width`` is the hidden width (MLP units, convolution channels, the Transformer's
feed-forward size), ``depth`` the number of hidden layers / convolution blocks / encoder layers,
``dropout`` the dropout rate. Text adds ``model``, ``embed_dim``, ``heads`` and ``max_len``.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ...models import Classifier, ModelError
from .tasks import MAX_TOKENS, PAD

TEXT_MODELS = ("bag", "cnn", "transformer")
#: Hash buckets of the bag model's character bigrams.
BIGRAM_BUCKETS = 8192


def _masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid positions: ``h`` (N, L, d), ``mask`` (N, L) -> (N, d)."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


class BagEncoder(nn.Module):
    """Mean of character and hashed character-bigram embeddings, then ``depth - 1`` hidden layers."""

    def __init__(self, vocab_size: int, embed_dim: int, width: int, depth: int, dropout: float, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.bigram = nn.Embedding(BIGRAM_BUCKETS, embed_dim)
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        d = embed_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(d, width), nn.ReLU(), nn.Dropout(dropout)]
            d = width
        self.mlp = nn.Sequential(*layers)
        self.feature_dim = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :self.max_len]
        mask = x != PAD
        uni = self.embed(x)  # (N, L, e)
        pair_mask = mask[:, 1:] & mask[:, :-1]
        ids = (x[:, :-1] * 1_000_003 + x[:, 1:]) % BIGRAM_BUCKETS  # deterministic hash of the pair
        bi = self.bigram(ids)  # (N, L-1, e)
        total = (uni * mask.unsqueeze(-1)).sum(1) + (bi * pair_mask.unsqueeze(-1)).sum(1)
        count = (mask.sum(1) + pair_mask.sum(1)).clamp_min(1).unsqueeze(-1)
        return self.mlp(total / count)


class CnnEncoder(nn.Module):
    """Embedding, ``depth`` blocks of Conv1d(kernel 3)-ReLU, max over valid positions, dropout."""

    def __init__(self, vocab_size: int, embed_dim: int, width: int, depth: int, dropout: float, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        convs: list[nn.Module] = []
        c_in = embed_dim
        for _ in range(depth):
            convs += [nn.Conv1d(c_in, width, 3, padding=1), nn.ReLU()]
            c_in = width
        self.convs = nn.Sequential(*convs)
        self.drop = nn.Dropout(dropout)
        self.feature_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :self.max_len]
        mask = x != PAD
        h = self.convs(self.embed(x).transpose(1, 2))  # (N, width, L)
        h = h.masked_fill(~mask.unsqueeze(1), float("-inf")).amax(2)
        return self.drop(torch.nan_to_num(h, neginf=0.0))


class TransformerTextEncoder(nn.Module):
    """Token and learned position embeddings, ``depth`` pre-norm ``nn.TransformerEncoder`` layers
    (``heads`` heads, feed-forward ``width``), mean over valid positions."""

    def __init__(self, vocab_size: int, embed_dim: int, width: int, depth: int, dropout: float, max_len: int, heads: int):
        super().__init__()
        if embed_dim % heads:
            raise ModelError(f"model: embed_dim={embed_dim} is not divisible by heads={heads}")
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.pos = nn.Embedding(max_len, embed_dim)
        layer = nn.TransformerEncoderLayer(embed_dim, heads, width, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.feature_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :self.max_len]
        L = int((x != PAD).sum(1).max().clamp_min(1))  # drop all-padding columns: less attention work
        x = x[:, :L]
        mask = x != PAD
        h = self.embed(x) + self.pos(torch.arange(L, device=x.device))[None]
        h = self.encoder(h, src_key_padding_mask=~mask)
        return _masked_mean(self.norm(h), mask)


def build_text_model(vocab_size: int, n_classes: int, config: Mapping[str, Any]) -> Classifier:
    """A text classifier for one configuration.

    Args:
        vocab_size: embedding rows (the task's vocabulary plus padding and unknown).
        n_classes: outputs.
        config: ``model`` (``bag``, ``cnn``, ``transformer``), ``embed_dim``, ``width``, ``depth``,
            ``dropout``, ``heads``, ``max_len`` (defaults: bag, 64, 64, 1, 0.0, 2, 64).
    """
    kind = str(config.get("model", "bag"))
    e, w, d = int(config.get("embed_dim", 64)), int(config.get("width", 64)), int(config.get("depth", 1))
    p, L = float(config.get("dropout", 0.0)), min(int(config.get("max_len", 64)), MAX_TOKENS)
    if d < 1 or e < 1 or w < 1 or L < 1:
        raise ModelError(f"model: embed_dim, width, depth and max_len must be positive (got {e}, {w}, {d}, {L})")
    if kind == "bag":
        trunk = BagEncoder(vocab_size, e, w, d, p, L)
    elif kind == "cnn":
        trunk = CnnEncoder(vocab_size, e, w, d, p, L)
    elif kind == "transformer":
        trunk = TransformerTextEncoder(vocab_size, e, w, d, p, L, int(config.get("heads", 2)))
    else:
        raise ModelError(f"model: unknown text model '{kind}' (use {', '.join(TEXT_MODELS)})")
    return Classifier(trunk, trunk.feature_dim, n_classes)
