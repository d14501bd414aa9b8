"""Population training: many configurations of one architecture trained as one batched computation.

On small networks a Python loop per configuration leaves the CPU idle between tiny kernels.
Here a *group* of configurations that share the model family, depth and batch size is trained
at once: every member's weights are stacked along a leading member dimension (widths differ, so
each layer is zero-padded to the group's widest member), one forward/backward pass serves all
members, and the optimiser update is vectorised with per-member learning rate, weight decay,
momentum/beta1, dropout and optimiser (SGD or AdamW, mixed in one group).

Equivalence with :func:`metahpo_utils.training.train_config` (same seed, same data):

- each member starts from exactly the weights the sequential trainer would build (its model is
  built under the same ``torch.manual_seed`` and copied into the padded stack; padding is zero
  and stays zero: a padded unit has no input weights, outputs ReLU(0) = 0 and gets zero gradient);
- members share the seed, hence the sequential trainer's mini-batch order (``randperm`` from
  ``seed + 1``), which the group draws once;
- SGD (momentum, coupled weight decay) and AdamW follow torch's update formulas;
- dropout masks are the sequential trainer's own: each member replays, with its own generator,
  the default random stream the sequential trainer would use after building its model;
- a member whose batch loss is non-finite or above :data:`~metahpo_utils.training.DIVERGENCE_LOSS`
  is stopped at that step (no update, recorded ``diverged``), the rest go on.

What differs is float32 rounding of batched against single matrix products, so validation losses
agree to about 1e-5 (not bit for bit) and accuracies agree unless a prediction sits on a tie.
``cost_s`` of a member is the group's wall time divided by its size.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data.tasks import Task
from .models import Classifier, build_model
from .training import DIVERGENCE_LOSS, TrialResult, _majority_accuracy, make_optimizer, resolve_device

ADAM_EPS = 1e-8
ADAM_BETA2 = 0.999


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

    ``layers``: the trunk's weight layers (Linear or Conv) in order, each stored as
    ``(G, out, in, *kernel)``, and the head ``(G, classes, features)``, with biases ``(G, out)``.
    """

    def __init__(self, models: Sequence[Classifier], kind: str, pools: Sequence[bool], n_classes: int):
        super().__init__()
        self.kind, self.pools, self.G = kind, list(pools), len(models)
        layer_lists = [_weight_layers(model) for model in models]
        self.depths = [len(lst) for lst in layer_lists]
        n_layers = max(self.depths)
        if len(set(self.depths)) > 1 and (kind != "mlp" or min(self.depths) == 0):
            raise ValueError("population: members differ in depth (only MLPs with hidden layers can be padded)")
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
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
            self.weights.append(nn.Parameter(W))
            self.biases.append(nn.Parameter(b))
            self.widths.append([m.weight.shape[1] if li == n_layers else m.weight.shape[0] for m in mods])
            self.frozen.append(torch.tensor([li < n_layers and li >= d for d in self.depths]))
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor, dropout: "_Dropout | None" = None) -> torch.Tensor:
        """Logits ``(G, batch, classes)`` for a batch shared by every member.

        ``dropout``: the members' dropout (training); ``None`` evaluates without dropout.
        """
        G = self.G
        n_trunk = len(self.weights) - 1
        if self.kind == "mlp":
            h = x.flatten(1)  # (b, d): shared by all members
            for li in range(n_trunk):
                W, b = self.weights[li], self.biases[li]
                if li == 0:
                    h = torch.matmul(h, W.transpose(1, 2)) + b[:, None, :]  # (G, b, out)
                else:
                    h = torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))
                h = torch.relu(h)
                if dropout is not None:
                    h = dropout(h, self.widths[li], skip=self.frozen[li])
            if n_trunk == 0:
                h = h.unsqueeze(0).expand(G, -1, -1)
        else:
            conv = F.conv2d if self.kind == "cnn2d" else F.conv1d
            pool = F.max_pool2d if self.kind == "cnn2d" else F.max_pool1d
            h = x  # (b, C, *spatial)
            for li in range(n_trunk):
                W, b = self.weights[li], self.biases[li]
                w = W.reshape(G * W.shape[1], *W.shape[2:])
                # first block: the input is shared (one ordinary conv with G * out channels); later: grouped
                h = conv(h, w, b.reshape(-1), padding=W.shape[-1] // 2, groups=1 if li == 0 else G)
                h = torch.relu(h)
                if self.pools[li]:
                    h = pool(h, 2)
            dims = tuple(range(2, h.dim()))
            h = h.mean(dims) if n_trunk else x.mean(tuple(range(2, x.dim()))).repeat(1, G)  # global average pooling
            h = h.reshape(h.shape[0], G, -1).transpose(0, 1)  # (G, b, C_last)
            if dropout is not None:
                h = dropout(h, self.widths[-1])
        Wh, bh = self.weights[-1], self.biases[-1]
        return torch.baddbmm(bh[:, None, :], h, Wh.transpose(1, 2))[:, :, : self.n_classes]

    def member_state(self, g: int, model: Classifier) -> Classifier:
        """Copy member ``g``'s weights (un-padded) into ``model`` (built for its configuration)."""
        mods = _weight_layers(model)
        pairs = list(zip(mods, self.weights[: len(mods)], self.biases[: len(mods)]))
        pairs.append((model.head, self.weights[-1], self.biases[-1]))  # identity padding layers are skipped
        with torch.no_grad():
            for m, W, b in pairs:
                o, i = m.weight.shape[:2]
                m.weight.copy_(W[g, :o, :i])
                m.bias.copy_(b[g, :o])
        return model


def _weight_layers(model: Classifier) -> list[nn.Module]:
    return [m for m in model.trunk.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def _identity(width: int) -> SimpleNamespace:
    """An identity layer's weight and bias (no module, so no random draws)."""
    return SimpleNamespace(weight=torch.eye(width), bias=torch.zeros(width))


class _Dropout:
    """Per-member dropout drawing exactly the masks the sequential trainer draws.

    torch's CPU dropout draws ``empty_like(x).bernoulli_(1 - p)`` from the default generator
    (nothing when ``p == 0``); the sequential trainer's default generator, after building a member's
    model under ``manual_seed(seed)``, is replayed here by one generator per member, drawing
    masks of that member's own (un-padded) width, layer after layer, step after step.
    """

    def __init__(self, rates: Sequence[float], states: Sequence[torch.Tensor], device: torch.device):
        self.rates = [float(p) for p in rates]
        self.gens = []
        for st in states:
            g = torch.Generator()
            g.set_state(st)
            self.gens.append(g)
        self.device = device
        self.active = [m for m, p in enumerate(self.rates) if p > 0]

    def __call__(self, h: torch.Tensor, widths: Sequence[int], skip: torch.Tensor | None = None) -> torch.Tensor:
        """``h``: ``(G, batch, width_max)`` activations; ``widths``: each member's real width;
        ``skip``: members for which this layer is identity padding (no dropout, no draw)."""
        active = self.active if skip is None else [m for m in self.active if not bool(skip[m])]
        if not active:
            return h
        scale = torch.ones(h.shape, dtype=h.dtype)
        for m in active:
            p = self.rates[m]
            noise = torch.empty((h.shape[1], widths[m]), dtype=h.dtype).bernoulli_(1 - p, generator=self.gens[m])
            scale[m, :, : widths[m]] = noise.div_(1 - p)
        return h * scale.to(self.device)


# ---------------------------------------------------------------- vectorised optimiser
class _PopulationOptimizer:
    """SGD (momentum, coupled weight decay) and AdamW (decoupled), per member, as torch computes them."""

    def __init__(self, params: Sequence[nn.Parameter], configs: Sequence[Mapping[str, Any]], device: torch.device,
                 frozen: Sequence[torch.Tensor] | None = None):
        def vec(key: str, default: float) -> torch.Tensor:
            return torch.tensor([float(c.get(key, default)) for c in configs], dtype=torch.float32, device=device)

        self.params = list(params)
        # per parameter, members that never update it (identity padding layers)
        self.keep = [torch.zeros(len(configs), dtype=torch.bool, device=device) if f is None else f.to(device)
                     for f in (frozen or [None] * len(self.params))]
        self.lr, self.wd, self.mom = vec("lr", 1e-2), vec("weight_decay", 0.0), vec("momentum", 0.9)
        opts = [c.get("optimizer", "adamw") for c in configs]
        bad = sorted({o for o in opts if o not in ("sgd", "adamw")})
        if bad:
            raise ValueError(f"config: unknown optimizer '{bad[0]}' (use sgd or adamw)")
        self.adam = torch.tensor([o == "adamw" for o in opts], device=device)
        self.any_adam, self.any_sgd = bool(self.adam.any()), bool((~self.adam).any())
        self.beta1 = self.mom.double()
        self.step_n = 0
        self.buf = [torch.zeros_like(p) for p in self.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, alive: torch.Tensor) -> None:
        self.step_n += 1
        t = self.step_n
        bc1 = (1 - self.beta1 ** t).float()
        bc2_sqrt = math.sqrt(1 - ADAM_BETA2 ** t)
        for k, p in enumerate(self.params):
            shape = (-1, *([1] * (p.dim() - 1)))
            lr, wd, mom = self.lr.view(shape), self.wd.view(shape), self.mom.view(shape)
            g = p.grad
            new = p
            if self.any_sgd:
                d = g + wd * p
                self.buf[k] = d.clone() if t == 1 else self.buf[k] * mom + d
                new_sgd = p - lr * self.buf[k]
            if self.any_adam:
                self.m[k] = torch.lerp(self.m[k], g, 1 - mom)
                self.v[k] = self.v[k] * ADAM_BETA2 + (1 - ADAM_BETA2) * g * g
                denom = self.v[k].sqrt() / bc2_sqrt + ADAM_EPS
                new_adam = p * (1 - lr * wd) - (lr / bc1.view(shape)) * self.m[k] / denom
            if self.any_sgd and self.any_adam:
                new = torch.where(self.adam.view(shape), new_adam, new_sgd)
            else:
                new = new_adam if self.any_adam else new_sgd
            p.copy_(torch.where((alive & ~self.keep[k]).view(shape), new, p))


# ---------------------------------------------------------------- training
@dataclass
class PopulationResult:
    """Per-member results (in the order of the configurations given) and the group's wall time."""

    results: list[TrialResult]
    wall_s: float


def _prototype(family: str, task: Task, config: Mapping[str, Any], seed: int) -> Classifier:
    torch.manual_seed(seed)
    return build_model(family, task.input_shape, task.n_classes, config)


def _pools(model: Classifier) -> list[bool]:
    return [any(isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) for m in block.modules()) for block in model.trunk
            if any(isinstance(m, (nn.Conv1d, nn.Conv2d)) for m in block.modules())]


@torch.no_grad()
def _evaluate(stack: _Stack, X: torch.Tensor, y: torch.Tensor, batch: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member accuracy and mean cross-entropy ``(G,)`` (as :func:`training.evaluate`)."""
    correct = torch.zeros(stack.G, dtype=torch.float64, device=X.device)
    loss = torch.zeros(stack.G, dtype=torch.float64, device=X.device)
    for i in range(0, len(y), batch):
        logits = stack(X[i:i + batch])  # (G, b, C)
        yb = y[i:i + batch]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(stack.G), reduction="none")
        loss += ce.view(stack.G, -1).sum(1).double()
        correct += (logits.argmax(-1) == yb).sum(1).double()
    return correct / len(y), loss / len(y)


def train_population(task: Task, configs: Sequence[Mapping[str, Any]], epochs: int = 10, seed: int = 0,
                     family: str = "mlp", device: str | torch.device | None = None,
                     keep_models: bool = False) -> PopulationResult:
    """Train configurations that share a :func:`group_key` as one population on ``task``.

    Args:
        task: the task (train / val / test tensors).
        configs: hyperparameters per member (same family, depth and batch size; widths may differ).
        epochs, seed, family, device: as :func:`metahpo_utils.training.train_config`.
        keep_models: also return each member's trained model (un-padded) in ``.model``.

    Returns:
        A :class:`PopulationResult` whose ``results[i]`` corresponds to ``configs[i]``.
    """
    if not configs:
        raise ValueError("population: no configurations")
    keys = {group_key(c, family) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"population: configurations differ in depth or batch size {sorted(keys)}; "
                         "split them with group_configs")  # (MLP depths >= 1 may differ: padded)
    t0 = time.perf_counter()
    dev = resolve_device(device)
    protos, states = [], []
    for c in configs:
        protos.append(_prototype(family, task, c, seed))
        states.append(torch.get_rng_state())  # where the sequential trainer's dropout stream starts
    stack = _Stack(protos, family, _pools(protos[0]) if family != "mlp" else [], task.n_classes).to(dev)
    G = len(configs)
    opt = _PopulationOptimizer([*stack.weights, *stack.biases], configs, dev, [*stack.frozen, *stack.frozen])
    drop = _Dropout([float(c.get("dropout", 0.0)) for c in configs], states, dev)
    Xtr, ytr = task.X_train.to(dev), task.y_train.to(dev)
    Xva, yva = task.X_val.to(dev), task.y_val.to(dev)
    Xte, yte = task.X_test.to(dev), task.y_test.to(dev)
    bs = int(configs[0].get("batch_size", 32))
    g = torch.Generator().manual_seed(seed + 1)  # the sequential trainer's shuffling stream
    alive = torch.ones(G, dtype=torch.bool, device=dev)
    curves: list[list[float]] = [[] for _ in range(G)]
    val_losses: list[list[float]] = [[] for _ in range(G)]
    train_losses: list[list[float]] = [[] for _ in range(G)]
    for _ in range(epochs):
        if not bool(alive.any()):
            break
        stack.train()
        perm = torch.randperm(len(ytr), generator=g).to(dev)
        total = torch.zeros(G, dtype=torch.float64, device=dev)
        seen = 0
        for i in range(0, len(perm), bs):
            idx = perm[i:i + bs]
            logits = stack(Xtr[idx], drop)
            yb = ytr[idx]
            losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.repeat(G), reduction="none").view(G, -1).mean(1)
            lv = losses.detach()
            alive = alive & torch.isfinite(lv) & (lv <= DIVERGENCE_LOSS)  # a diverging member stops before its step
            if not bool(alive.any()):
                break
            for p in stack.parameters():
                p.grad = None
            torch.where(alive, losses, torch.zeros_like(losses)).sum().backward()
            opt.step(alive)
            total += torch.where(alive, lv, torch.zeros_like(lv)).double() * len(idx)
            seen += len(idx)
        if not bool(alive.any()):
            break
        stack.eval()
        acc, vl = _evaluate(stack, Xva, yva)
        alive = alive & torch.isfinite(vl)
        for m in torch.nonzero(alive).flatten().tolist():
            curves[m].append(float(acc[m]))
            val_losses[m].append(float(vl[m]))
            train_losses[m].append(float(total[m]) / max(seen, 1))
    stack.eval()
    test_acc = _evaluate(stack, Xte, yte)[0] if bool(alive.any()) else None
    wall = time.perf_counter() - t0
    results = []
    for m, c in enumerate(configs):
        ok = bool(alive[m]) and len(curves[m]) == epochs
        if ok:
            obj, test = curves[m][-1], float(test_acc[m])
        else:
            obj, test = _majority_accuracy(task.y_train, task.y_val), _majority_accuracy(task.y_train, task.y_test)
        model = stack.member_state(m, build_model(family, task.input_shape, task.n_classes, c)).cpu() \
            if keep_models and ok else None
        results.append(TrialResult(obj, test, "ok" if ok else "diverged", curves[m], val_losses[m], train_losses[m],
                                   wall / G, model))
    return PopulationResult(results, wall)


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


__all__ = ["group_key", "group_configs", "train_population", "train_configs", "PopulationResult", "make_optimizer"]
