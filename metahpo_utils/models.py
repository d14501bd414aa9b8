"""Models: MLP, small ConvNets (2-D images, 1-D signals), the multi-task model and transfer helpers.

Every model is a ``trunk`` (a sequence of blocks, so "freeze the first n layers"
means the first n blocks) followed by a linear ``head``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .choices import VISION_FAMILIES as FAMILIES
from .errors import MetahpoError



class ModelError(MetahpoError, ValueError):
    """Unknown model family or one that does not fit the input."""


class Classifier(nn.Module):
    """``head(trunk(x))`` with the trunk's output size in ``feature_dim``."""

    def __init__(self, trunk: nn.Sequential, feature_dim: int, n_classes: int):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def mlp_trunk(input_shape: Sequence[int], width: int, depth: int, dropout: float) -> tuple[nn.Sequential, int]:
    """``depth`` blocks of Linear-ReLU-Dropout over the flattened input."""
    d_in = math.prod(input_shape)
    blocks: list[nn.Module] = []
    for i in range(depth):
        first = [nn.Flatten()] if i == 0 else []
        blocks.append(nn.Sequential(*first, nn.Linear(d_in if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)))
    if depth == 0:
        return nn.Sequential(nn.Flatten()), d_in
    return nn.Sequential(*blocks), width


def cnn_trunk(input_shape: Sequence[int], width: int, depth: int, dropout: float) -> tuple[nn.Sequential, int]:
    """``depth`` blocks of Conv-ReLU-MaxPool (2-D for (C, H, W), 1-D for (C, L)), then global average pooling.

    Channels double every block starting at ``width // 2`` (at least 8), capped at ``2 * width``.
    Pooling stops once the spatial size reaches 1, so 8x8 digits take depth 3.
    """
    two_d = len(input_shape) == 3
    conv, pool, gap = (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d) if two_d else (nn.Conv1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d)
    kernel = 3 if two_d else 5
    c_in, size = input_shape[0], min(input_shape[1:])
    blocks: list[nn.Module] = []
    for i in range(depth):
        c_out = min(2 * width, max(8, (width // 2) * 2 ** i))
        layers: list[nn.Module] = [conv(c_in, c_out, kernel, padding=kernel // 2), nn.ReLU()]
        if size >= 2:
            layers.append(pool(2))
            size //= 2
        blocks.append(nn.Sequential(*layers))
        c_in = c_out
    blocks.append(nn.Sequential(gap(1), nn.Flatten(), nn.Dropout(dropout)))
    return nn.Sequential(*blocks), c_in


def build_model(family: str, input_shape: Sequence[int], n_classes: int, config: Mapping[str, Any]) -> Classifier:
    """A classifier for one configuration.

    Args:
        family: ``mlp``, ``cnn2d`` (inputs ``(C, H, W)``) or ``cnn1d`` (inputs ``(C, L)``).
        input_shape: shape of one example.
        n_classes: outputs.
        config: uses ``width``, ``depth`` and ``dropout`` (defaults 64, 2, 0.0).
    """
    width, depth = int(config.get("width", 64)), int(config.get("depth", 2))
    dropout = float(config.get("dropout", 0.0))
    if family == "mlp":
        trunk, dim = mlp_trunk(input_shape, width, depth, dropout)
    elif family in ("cnn2d", "cnn1d"):
        want = 3 if family == "cnn2d" else 2
        if len(input_shape) != want:
            raise ModelError(f"model: '{family}' needs inputs of {want} dims per example, got {tuple(input_shape)}")
        trunk, dim = cnn_trunk(input_shape, width, depth, dropout)
    else:
        raise ModelError(f"model: unknown family '{family}' (use {', '.join(FAMILIES)})")
    return Classifier(trunk, dim, n_classes)


class MultiTaskModel(nn.Module):
    """A shared trunk with one linear head per task.

    ``forward(x, task)`` returns the logits of that task's head; training sums the
    tasks' losses, L_MTL = sum_t L_t(head_t(trunk(x_t)), y_t), each head on its own
    task's labels.
    """

    def __init__(self, trunk: nn.Sequential, feature_dim: int, n_classes: Sequence[int]):
        super().__init__()
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.heads = nn.ModuleList(nn.Linear(feature_dim, k) for k in n_classes)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return self.heads[task](self.trunk(x))


def freeze_blocks(trunk: nn.Sequential, n_frozen: int) -> None:
    """Freeze the parameters of the first ``n_frozen`` blocks of a trunk (the rest stay trainable)."""
    if not 0 <= n_frozen <= len(trunk):
        raise ModelError(f"transfer: n_frozen={n_frozen} outside 0..{len(trunk)} (blocks in the trunk)")
    for i, block in enumerate(trunk):
        for p in block.parameters():
            p.requires_grad_(i >= n_frozen)
