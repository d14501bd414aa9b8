"""Population training: many (task, configuration) trials trained as one batched computation.

On small networks a Python loop per configuration leaves the CPU idle between tiny kernels.
Here a *population* of trials that share the model family, batch size and (for ConvNets) depth is
trained at once: every member's weights are stacked along a leading member dimension in one
``(G, P)`` parameter (narrower members zero-padded to the widest, shallower MLPs padded with frozen
identity layers), one forward/backward pass serves all members, and the optimiser update is
vectorised with per-member learning rate, weight decay, momentum/beta1, dropout and optimiser
(SGD or AdamW, mixed in one population). Members may train on different tasks of one input shape:
each sees its own task's mini-batches; members are ordered by mini-batches per epoch, so at every
step those still training are a suffix of the stack, computed as a view.

Equivalence with :func:`metahpo_utils.training.train_config` (same seed, same data):

- each member starts from exactly the weights the sequential trainer would build (its model is
  built under the same ``torch.manual_seed`` and copied into the padded stack; padding is zero
  and stays zero: a padded unit has no input weights, outputs ReLU(0) = 0 and gets zero gradient);
- each task's mini-batch order is the sequential trainer's (``randperm`` from ``seed + 1``), drawn
  once per task and epoch for all its members;
- SGD (momentum, coupled weight decay) and AdamW apply, per member, the float32 operations of
  torch's own optimisers: given the same gradient, a member's update is torch's bit for bit;
- dropout masks are the sequential trainer's own: each member replays, with its own generator,
  the default random stream the sequential trainer would use after building its model;
- max pooling routes gradients to the first maximum of each window, as torch's pooling;
- a member whose batch loss is non-finite or above :data:`~metahpo_utils.training.DIVERGENCE_LOSS`
  is stopped at that step (no update, recorded ``diverged``), the rest go on.

What differs is float32 rounding of batched against single matrix products and convolutions, so
validation losses agree to about 1e-6 (not bit for bit) and accuracies agree unless a prediction
sits on a tie or an unstable (high learning rate) run amplifies the rounding. ``cost_s`` of a
member is the population's wall time divided by its size.

Where the time goes (one thread; ``python -m metahpo_utils perf --only trainers``): MLPs spend it
mostly in the batched matrix products and in drawing the members' exact dropout masks (torch's
Mersenne Twister, one 64-bit number per unit); ConvNets in mkldnn's grouped convolutions. The rest
is kept small: the optimiser updates contiguous runs of SGD and AdamW members in place
(:class:`~metahpo_utils.population_ops.PopulationOptimizer`), masks are drawn a block of steps at
a time (:class:`~metahpo_utils.population_ops.PopulationDropout`), MLP layers write their weight
gradients straight into one preallocated buffer (:class:`_Linear`), ConvNet activations are
channels-last with a fused ReLU + max pooling, and evaluation runs in batches of a few MB.
"""
from __future__ import annotations

import bisect
import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data.tasks import Task
from .models import Classifier, build_model
from .population_ops import DROPOUT_MASKS, PopulationDropout, PopulationOptimizer, max_pool_relu  # noqa: F401
from .training import DIVERGENCE_LOSS, TrialResult, majority_accuracy, resolve_device, seeded


def group_key(config: Mapping[str, Any], family: str) -> tuple[str, int, int]:
    """Configurations with the same key train together: (family, depth, batch size).

    MLPs of depths 1, 2, 3... share one key (depth ``-1``): a shallower member is padded with
    frozen identity layers, exact because their inputs are ReLU outputs (non-negative).
    """
    depth = int(config.get("depth", 2))
    if family == "mlp" and depth >= 1:
        depth = -1
    return family, depth, int(config.get("batch_size", 32))


def group_configs(configs: Sequence[Mapping[str, Any]], family: str = "mlp", max_size: int = 64) -> list[list[int]]:
    """Indices of ``configs`` in groups of at most ``max_size`` that can train as one population,
    in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(group_key(c, family), []).append(i)
    out = []
    for idx in groups.values():
        out += [idx[j:j + max_size] for j in range(0, len(idx), max_size)]
    return out


# ---------------------------------------------------------------- stacked models
class _Stack(nn.Module):
    """Stacked, zero-padded weights of G members of one architecture.

    The trunk's weight layers (Linear or Conv) in order, then the head, each as views
    ``(G, out, in, *kernel)`` and biases ``(G, out)`` of the one parameter :attr:`flat` (:meth:`params`).
    """

    def __init__(self, models: Sequence[Classifier], kind: str, pools: Sequence[bool], n_classes: int):
        super().__init__()
        self.kind, self.pools, self.G = kind, list(pools), len(models)
        layer_lists = [_weight_layers(model) for model in models]
        self.depths = [len(lst) for lst in layer_lists]
        n_layers = max(self.depths)
        if len(set(self.depths)) > 1 and (kind != "mlp" or min(self.depths) == 0):
            raise ValueError("population: members differ in depth (only MLPs with hidden layers can be padded)")
        Ws, bs = [], []
        self.widths: list[list[int]] = []  # per trunk layer: each member's output width; last: the head's input
        #: per layer, members for which it is a frozen identity (depth padding), never updated
        self.frozen: list[torch.Tensor] = []
        for li in range(n_layers + 1):
            if li < n_layers:  # a member's layer, or an identity of its last width when it is shallower
                mods = [lst[li] if li < len(lst) else _identity(lst[-1].weight.shape[0]) for lst in layer_lists]
            else:
                mods = [m.head for m in models]
            w0 = mods[0].weight
            out = max(m.weight.shape[0] for m in mods)
            inn = max(m.weight.shape[1] for m in mods)
            W = torch.zeros(self.G, out, inn, *w0.shape[2:])
            b = torch.zeros(self.G, out)
            for g, m in enumerate(mods):
                o, i = m.weight.shape[:2]
                W[g, :o, :i] = m.weight.detach()
                b[g, :o] = m.bias.detach()
            Ws.append(W)
            bs.append(b)
            self.widths.append([m.weight.shape[1] if li == n_layers else m.weight.shape[0] for m in mods])
            self.frozen.append(torch.tensor([li < n_layers and li >= d for d in self.depths]))
        self.n_classes = n_classes
        # all weights in one (G, P) parameter: one optimiser update per step instead of one per tensor
        self.layout: list[tuple[int, tuple[int, ...]]] = []
        off = 0
        for t in [x for pair in zip(Ws, bs) for x in pair]:
            self.layout.append((off, tuple(t.shape[1:])))
            off += t[0].numel()
        self.flat = nn.Parameter(torch.cat([t.reshape(self.G, -1) for pair in zip(Ws, bs) for t in pair], 1))
        #: (member, first, end) element ranges of frozen identity layers (a layer's weights and bias
        #: are adjacent, so a shallower member's padding layers make one range)
        self.frozen_ranges: list[tuple[int, int, int]] = []
        for g in range(self.G):
            for li in range(n_layers):
                if bool(self.frozen[li][g]):
                    first = self.layout[2 * li][0]
                    end = self.layout[2 * li + 1][0] + int(np.prod(self.layout[2 * li + 1][1]))
                    if self.frozen_ranges and self.frozen_ranges[-1][0] == g and self.frozen_ranges[-1][2] == first:
                        first = self.frozen_ranges.pop()[1]
                    self.frozen_ranges.append((g, first, end))
        # MLPs: each layer's backward writes its weight and bias gradients into this buffer (see _Linear)
        self.register_buffer("grad_buffer", torch.zeros_like(self.flat) if kind == "mlp" else None, persistent=False)

    def dropout_widths(self) -> tuple[list[list[int]], list[int]]:
        """Per dropout layer (each MLP trunk layer; a ConvNet's pooled features): each member's width
        there (0 where the layer is a member's frozen identity: no dropout, no draw), and the padded width."""
        if self.kind == "mlp":
            widths = zip(self.widths[:-1], self.frozen[:-1])
            return ([[0 if bool(fz[g]) else w[g] for g in range(self.G)] for w, fz in widths],
                    [max(w) for w in self.widths[:-1]])
        return [list(self.widths[-1])], [max(self.widths[-1])]

    def params(self, of: torch.Tensor | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Each layer's stacked weights ``(G, out, in, *kernel)`` and biases ``(G, out)``, as views
        of :attr:`flat` (or of ``of``, laid out alike) from one split (whose backward writes all
        gradients in one piece)."""
        parts = torch.split(self.flat if of is None else of, [int(np.prod(shape)) for _, shape in self.layout], dim=1)
        views = [t.view(self.G, *shape) for t, (_, shape) in zip(parts, self.layout)]
        return views[0::2], views[1::2]

    def activation_elements(self, input_shape: Sequence[int]) -> int:
        """Floats in the population's largest activation per example (to size evaluation batches)."""
        if self.kind == "mlp":
            return self.G * max(max(w) for w in self.widths)
        spatial, most = int(np.prod(input_shape[1:])), 0
        for li, pool in enumerate(self.pools):
            most = max(most, max(self.widths[li]) * spatial)
            spatial //= 2 ** (len(input_shape) - 1) if pool else 1
        return self.G * most

    def gradient(self) -> torch.Tensor:
        """The ``(G, P)`` gradient of the last backward pass (rows of the members it computed)."""
        return self.grad_buffer if self.grad_buffer is not None else self.flat.grad

    def forward(self, x: torch.Tensor, dropout: PopulationDropout | None = None, shared: bool = True,
                start: int = 0) -> torch.Tensor:
        """Logits ``(G, batch, classes_max)``.

        Args:
            x: one batch for every member ``(batch, *input)`` (``shared``), or one per member
                ``(G, batch, *input)``.
            dropout: the members' dropout (training, set to the step); ``None`` evaluates without dropout.
            start: compute only members ``start:`` (a view of the stacked weights; the others'
                gradients stay zero), for ``(G - start, ...)`` inputs when not shared.
        """
        G = self.G - start
        weights, biases = self.params()
        n_trunk = len(weights) - 1
        if self.kind == "mlp":
            gW, gb = self.params(self.grad_buffer)
            h = x.flatten(1) if shared else x.flatten(2)  # (b, d) or (G, b, d)
            if shared:  # the one batch, broadcast (stride 0) to every member's product
                h = h.expand(G, *h.shape)
            for li in range(n_trunk):
                h = _Linear.apply(h, weights[li][start:], biases[li][start:], gW[li][start:], gb[li][start:])
                h = torch.relu_(h)  # (G, b, out)
                if dropout is not None:
                    h = dropout(h, li, start)
            return _Linear.apply(h, weights[-1][start:], biases[-1][start:], gW[-1][start:], gb[-1][start:])
        else:
            # activations (b, G * C, *spatial), the members' channels side by side, laid out channels-last
            # (channels innermost in memory), where mkldnn's grouped convolutions and the pooling are fastest
            if shared:
                h = x
            else:  # (G, b, C, *spatial) -> (b, *spatial, G, C) in memory
                spatial = list(range(3, x.dim()))
                h = x.permute(1, *spatial, 0, 2).reshape(x.shape[1], *x.shape[3:], G * x.shape[2])
                h = h.permute(0, h.dim() - 1, *range(1, h.dim() - 1))
            for li in range(n_trunk):
                W, b = weights[li][start:], biases[li][start:]
                if li == 0 and shared:  # one input for all: im2col and one product with all members' filters
                    h = _conv_shared(h, W, b)
                else:  # grouped, one group per member
                    h = _conv_grouped(h, W, b)
                h = max_pool_relu(h) if self.pools[li] else torch.relu_(h)
            h = h.mean(tuple(range(2, h.dim())))  # global average pooling
            if n_trunk == 0 and shared:
                h = h.repeat(1, G)
            h = h.reshape(h.shape[0], G, -1).transpose(0, 1)  # (G, b, C_last)
            if dropout is not None:
                h = dropout(h, 0, start)
        Wh, bh = weights[-1][start:], biases[-1][start:]
        return torch.baddbmm(bh[:, None, :], h, Wh.transpose(1, 2))

    def member_state(self, g: int, model: Classifier) -> Classifier:
        """Copy member ``g``'s weights (un-padded) into ``model`` (built for its configuration)."""
        mods = _weight_layers(model)
        weights, biases = self.params()
        pairs = list(zip(mods, weights[: len(mods)], biases[: len(mods)]))
        pairs.append((model.head, weights[-1], biases[-1]))  # identity padding layers are skipped
        with torch.no_grad():
            for m, W, b in pairs:
                o, i = m.weight.shape[:2]
                m.weight.copy_(W[g, :o, :i])
                m.bias.copy_(b[g, :o])
        return model


class _Linear(torch.autograd.Function):
    """``h @ W^T + b`` per member (``h (G, n, in)``, ``W (G, out, in)``, ``b (G, out)``).

    The backward pass computes what torch's linear layer computes per member (``g^T h``, ``g``
    summed over rows, ``g W``) and writes the weight and bias gradients straight into ``gW`` and
    ``gb``, views of the population's gradient buffer: no per-step gradient tensors, no transposed
    copies, no concatenation into the ``(G, P)`` gradient.
    """

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor, gW: torch.Tensor,
                gb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h, W)
        ctx.grads = gW, gb
        return torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None, None]:  # type: ignore
        h, W = ctx.saved_tensors
        gW, gb = ctx.grads
        torch.bmm(g.transpose(1, 2), h, out=gW)
        torch.sum(g, 1, out=gb)
        return (torch.bmm(g, W) if ctx.needs_input_grad[0] else None), None, None, None, None


def _conv_shared(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All members' first convolution (stride 1, same padding) of one input ``x (n, C, *spatial)``:
    ``W (G, out, C, *kernel)``, ``b (G, out)``. As im2col and one matrix product with every member's
    filters (a few input channels make a poor convolution but a cheap product); returns
    ``(n, G * out, *spatial)`` laid out channels-last."""
    n, C, *spatial = x.shape
    k, K = W.shape[-1], math.prod(W.shape[2:])
    if len(spatial) == 1:  # (n, C, L) -> (n, L, C, k)
        cols = F.pad(x, (k // 2, k // 2)).unfold(2, k, 1).permute(0, 2, 1, 3)
    else:  # (n, C * k * k, H * W) -> (n, H * W, C * k * k)
        cols = F.unfold(x, k, padding=k // 2).transpose(1, 2)
    cols = cols.reshape(-1, K)  # (n * spatial, C * kernel), ordered as W's (C, *kernel)
    # filters as a contiguous (K, G * out) matrix: autograd then computes their gradient as cols^T g,
    # several times faster than the (g^T cols)^T it uses for a transposed view
    out = torch.addmm(b.reshape(-1), cols, W.reshape(-1, K).t().contiguous())  # (n * spatial, G * out)
    out = out.view(n, *spatial, -1)
    return out.permute(0, out.dim() - 1, *range(1, out.dim() - 1))


def _conv_grouped(h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Each member's convolution (stride 1, same padding) of its own channels: ``h (n, G * C, *spatial)``
    channels-last, ``W (G, out, C, *kernel)``; returns ``(n, G * out, *spatial)`` channels-last
    (1-D as 2-D convolutions of height 1, which mkldnn runs channels-last)."""
    G, k = W.shape[0], W.shape[-1]
    w = W.reshape(G * W.shape[1], *W.shape[2:])
    if h.dim() == 3:
        out = F.conv2d(h.unsqueeze(2), w.unsqueeze(2), b.reshape(-1), padding=(0, k // 2), groups=G)
        return out.squeeze(2)
    return F.conv2d(h, w, b.reshape(-1), padding=k // 2, groups=G)


def _weight_layers(model: Classifier) -> list[nn.Module]:
    return [m for m in model.trunk.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def _identity(width: int) -> SimpleNamespace:
    """An identity layer's weight and bias (no module, so no random draws)."""
    return SimpleNamespace(weight=torch.eye(width), bias=torch.zeros(width))


# ---------------------------------------------------------------- training
@dataclass
class PopulationResult:
    """Per-member results (in the order of the members given) and the group's wall time."""

    results: list[TrialResult]
    wall_s: float


def _prototype(family: str, task: Task, config: Mapping[str, Any], seed: int) -> tuple[Classifier, torch.Tensor]:
    """A member's model as the sequential trainer builds it, and the random state right after
    (where the sequential trainer's dropout stream starts); the caller's random state is untouched."""
    with seeded(seed):
        return build_model(family, task.input_shape, task.n_classes, config), torch.get_rng_state()


def _pools(model: Classifier) -> list[bool]:
    return [any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) for m in block.modules()) for block in model.trunk
            if any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in block.modules())]


class _Data:
    """One split of the members' tasks, padded to a common length: ``X (U, n_max, *input)``,
    ``y (U, n_max)``, ``n (U,)`` for the U distinct tasks."""

    def __init__(self, Xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor], device: torch.device):
        self.n = [len(y) for y in ys]
        n_max = max(self.n)
        self.X = torch.zeros(len(Xs), n_max, *Xs[0].shape[1:], device=device)
        self.y = torch.zeros(len(ys), n_max, dtype=torch.long, device=device)
        for u, (X, y) in enumerate(zip(Xs, ys)):
            self.X[u, : len(y)] = X.to(device)
            self.y[u, : len(y)] = y.to(device)


def _losses(logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor, class_ok: torch.Tensor) -> torch.Tensor:
    """Per member and row cross-entropy ``(G, b)`` (0 on padding rows); classes a member's task
    lacks are masked out of its softmax."""
    logits = logits.masked_fill(~class_ok[:, None, :], float("-inf"))
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).clamp(min=0), reduction="none")
    return torch.where(valid, ce.view(y.shape), torch.zeros_like(y, dtype=ce.dtype))


#: Evaluation batches hold at most this many floats in one activation (large fresh tensors cost page
#: faults on every allocation; a few MB are reused from the heap).
EVAL_ELEMENTS = 1 << 20


@torch.no_grad()
def _evaluate(stack: _Stack, data: _Data, u_of: torch.Tensor, class_ok: torch.Tensor, shared_input: bool = False,
              batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member accuracy and mean cross-entropy ``(G,)`` on each member's own task."""
    G, dev = stack.G, data.X.device
    correct = torch.zeros(G, dtype=torch.float64, device=dev)
    loss = torch.zeros(G, dtype=torch.float64, device=dev)
    n = torch.tensor(data.n, device=dev)[u_of]
    shared = shared_input and data.X.shape[0] == 1
    for i in range(0, data.X.shape[1], batch):
        y = data.y[:, i:i + batch][u_of]  # (G, b)
        valid = (torch.arange(i, i + y.shape[1], device=dev)[None, :] < n[:, None])
        logits = stack(data.X[0, i:i + batch]) if shared else stack(data.X[:, i:i + batch][u_of], shared=False)
        ce = _losses(logits, y, valid, class_ok)
        loss += ce.sum(1).double()
        pred = logits.masked_fill(~class_ok[:, None, :], float("-inf")).argmax(-1)
        correct += ((pred == y) & valid).sum(1).double()
    return correct / n, loss / n


def train_members(members: Sequence[tuple[Task, Mapping[str, Any]]], epochs: int = 10, seed: int = 0,
                  family: str = "mlp", device: str | torch.device | None = None,
                  keep_models: bool = False, dropout_masks: str = "sequential",
                  shared_input: bool = False) -> PopulationResult:
    """Train (task, configuration) members as one population.

    Members may differ in configuration (as long as :func:`group_key` agrees) and in task (same
    input shape): each member sees its own task's mini-batches, in the order the sequential trainer
    would draw them. Members whose task has fewer mini-batches per epoch simply wait (no update)
    while the others finish the epoch, so tasks of similar size make the best groups.

    ``shared_input``: when all members share one task, feed its batches once to all of them (one wide
    product in the first layer; faster). Off (default), every member's products are computed on their
    own, so a member's numbers do not depend on which members share its population: a resumed
    collection, regrouped, matches an uninterrupted one.
    ``dropout_masks`` (one of :data:`~metahpo_utils.population_ops.DROPOUT_MASKS`): ``sequential``
    (default) replays the sequential trainer's masks exactly; ``population`` (opt-in) draws one
    uniform per unit for all members at once, with each member's own keep rate (statistically the
    same, other numbers; faster only where the exact draws dominate).

    Returns:
        A :class:`PopulationResult` whose ``results[i]`` corresponds to ``members[i]``.
    """
    if not members:
        raise ValueError("population: no members")
    configs = [c for _, c in members]
    keys = {group_key(c, family) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"population: configurations differ in depth or batch size {sorted(keys)}; "
                         "split them with group_configs")  # (MLP depths >= 1 may differ: padded)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    bs = int(configs[0].get("batch_size", 32))
    # members in order of their task's mini-batches per epoch: at step s the members still training
    # are a suffix, computed as a view of the stacked weights (nobody pays for a finished task); among
    # equals, SGD before AdamW, so that each optimiser updates contiguous slices
    order = sorted(range(len(members)), key=lambda m: (math.ceil(len(members[m][0].y_train) / bs),
                                                       members[m][1].get("optimizer", "adamw") == "adamw"))
    ordered = [members[m] for m in order]
    res = _train_sorted(ordered, epochs, seed, family, dev, keep_models, dropout_masks, bs, shared_input)
    wall = time.perf_counter() - t0
    out: list[TrialResult | None] = [None] * len(members)
    for k, m in enumerate(order):
        res[k].cost_s = wall / len(members)
        out[m] = res[k]
    return PopulationResult(out, wall)  # type: ignore[arg-type]


def _train_sorted(members: Sequence[tuple[Task, Mapping[str, Any]]], epochs: int, seed: int, family: str,
                  dev: torch.device, keep_models: bool, dropout_masks: str, bs: int,
                  shared_input: bool) -> list[TrialResult]:
    configs = [c for _, c in members]
    tasks: list[Task] = []
    u_list = []
    for task, _ in members:  # distinct tasks, by identity
        u = next((k for k, t in enumerate(tasks) if t is task), None)
        if u is None:
            tasks.append(task)
            u = len(tasks) - 1
        u_list.append(u)
    if len({t.input_shape for t in tasks}) > 1:
        raise ValueError("population: members' tasks differ in input shape")
    u_of = torch.tensor(u_list, device=dev)
    protos, states = [], []
    for task, c in members:
        proto, state = _prototype(family, task, c, seed)
        protos.append(proto)
        states.append(state)
    stack = _Stack(protos, family, _pools(protos[0]) if family != "mlp" else [], max(t.n_classes for t in tasks)).to(dev)
    G = len(members)
    eval_batch = max(bs, min(2048, EVAL_ELEMENTS // stack.activation_elements(tasks[0].input_shape)))
    opt = PopulationOptimizer(stack.flat, configs, dev, stack.frozen_ranges)
    rates = [float(c.get("dropout", 0.0)) for c in configs]
    drop = PopulationDropout(rates, states, *stack.dropout_widths(), bs, dev, dropout_masks, seed)
    class_ok = torch.stack([torch.arange(stack.n_classes) < tasks[u].n_classes for u in u_list]).to(dev)
    train = _Data([t.X_train for t in tasks], [t.y_train for t in tasks], dev)
    val = _Data([t.X_val for t in tasks], [t.y_val for t in tasks], dev)
    test = _Data([t.X_test for t in tasks], [t.y_test for t in tasks], dev)
    shared = shared_input and len(tasks) == 1
    gens = [torch.Generator().manual_seed(seed + 1) for _ in tasks]  # each task's shuffling stream, as sequential
    member_steps = [math.ceil(train.n[u] / bs) for u in u_list]  # ascending
    steps = max(member_steps)
    alive = torch.ones(G, dtype=torch.bool, device=dev)
    curves: list[list[float]] = [[] for _ in range(G)]
    val_losses: list[list[float]] = [[] for _ in range(G)]
    train_losses: list[list[float]] = [[] for _ in range(G)]
    U = len(tasks)
    for _ in range(epochs):
        if not bool(alive.any()):
            break
        stack.train()
        P = torch.full((U, steps * bs), -1, dtype=torch.long)
        for u, n in enumerate(train.n):
            P[u, :n] = torch.randperm(n, generator=gens[u])
        P = P.view(U, steps, bs)
        # rows each member trains on at each step (its task's), for the dropout draws
        drop.start_epoch((P >= 0).sum(2).numpy()[u_list].T)  # (steps, G)
        P = P.to(dev)
        total = torch.zeros(G, dtype=torch.float64, device=dev)
        seen = torch.zeros(G, dtype=torch.float64, device=dev)
        for s_ in range(steps):
            a = bisect.bisect_right(member_steps, s_)  # members a: have a batch at this step
            if not bool(alive[a:].any()):
                continue
            drop.at_step(s_)
            if shared:
                r = min(bs, train.n[0] - s_ * bs)
                ib = P[0, s_, :r]
                logits = stack(train.X[0, ib], drop)
                y, valid = train.y[0, ib].expand(G, -1), torch.ones(G, r, dtype=torch.bool, device=dev)
            else:
                uo = u_of[a:]
                idx = P[uo, s_]  # (G - a, b); -1 = no example
                valid = idx >= 0
                xb = train.X[uo[:, None], idx.clamp(min=0)]
                logits = stack(xb, drop, shared=False, start=a)
                y = train.y[uo[:, None], idx.clamp(min=0)]
            ce = _losses(logits, y, valid, class_ok[a:])
            rows_m = valid.sum(1)
            losses = ce.sum(1) / rows_m.clamp(min=1)
            lv = losses.detach()
            # a member diverging on this batch stops before its step; the rest go on
            alive[a:] &= torch.isfinite(lv) & (lv <= DIVERGENCE_LOSS)
            live = alive[a:]
            for p in stack.parameters():
                p.grad = None
            torch.where(live, losses, torch.zeros_like(losses)).sum().backward()
            # diverged members take junk steps (their results are settled and never read again)
            opt.step(a, stack.gradient())
            total[a:] += torch.where(live, lv, torch.zeros_like(lv)).double() * rows_m.double()
            seen[a:] += rows_m.double()
        if not bool(alive.any()):
            break
        stack.eval()
        acc, vl = _evaluate(stack, val, u_of, class_ok, shared_input, eval_batch)
        alive = alive & torch.isfinite(vl)
        for m in torch.nonzero(alive).flatten().tolist():
            curves[m].append(float(acc[m]))
            val_losses[m].append(float(vl[m]))
            train_losses[m].append(float(total[m]) / max(float(seen[m]), 1.0))
    stack.eval()
    test_acc = _evaluate(stack, test, u_of, class_ok, shared_input, eval_batch)[0] if bool(alive.any()) else None
    results = []
    for m, (task, c) in enumerate(members):
        ok = bool(alive[m]) and len(curves[m]) == epochs
        if ok:
            obj, tst = curves[m][-1], float(test_acc[m])
        else:
            obj, tst = majority_accuracy(task.y_train, task.y_val), majority_accuracy(task.y_train, task.y_test)
        model = None
        if keep_models and ok:
            model = stack.member_state(m, build_model(family, task.input_shape, task.n_classes, c)).cpu()
        results.append(TrialResult(obj, tst, "ok" if ok else "diverged", curves[m], val_losses[m], train_losses[m],
                                   0.0, model))
    return results


def train_population(task: Task, configs: Sequence[Mapping[str, Any]], epochs: int = 10, seed: int = 0,
                     family: str = "mlp", device: str | torch.device | None = None,
                     keep_models: bool = False, dropout_masks: str = "sequential") -> PopulationResult:
    """Train configurations that share a :func:`group_key` as one population on ``task``.

    Args:
        task: the task (train / val / test tensors).
        configs: hyperparameters per member (same family and batch size, and depth for ConvNets;
            widths, MLP depths, optimisers and the rest may differ).
        epochs, seed, family, device: as :func:`metahpo_utils.training.train_config`.
        keep_models: also return each member's trained model (un-padded) in ``.model``.
        dropout_masks: see :func:`train_members`.

    Returns:
        A :class:`PopulationResult` whose ``results[i]`` corresponds to ``configs[i]``.
    """
    if not configs:
        raise ValueError("population: no configurations")
    return train_members([(task, c) for c in configs], epochs, seed, family, device, keep_models, dropout_masks,
                         shared_input=True)


def train_configs(task: Task, configs: Sequence[Mapping[str, Any]], epochs: int = 10, seed: int = 0,
                  family: str = "mlp", device: str | torch.device | None = None, max_group: int = 64,
                  keep_models: bool = False) -> list[TrialResult]:
    """Train any list of configurations on ``task``: grouped by :func:`group_configs`, each group
    as one population. Results are in the order of ``configs``."""
    out: list[TrialResult | None] = [None] * len(configs)
    for idx in group_configs(configs, family, max_group):
        res = train_population(task, [configs[i] for i in idx], epochs, seed, family, device, keep_models)
        for i, r in zip(idx, res.results):
            out[i] = r
    return out  # type: ignore[return-value]


__all__ = ["group_key", "group_configs", "train_members", "train_population", "train_configs", "PopulationResult"]
