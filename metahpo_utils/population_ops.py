"""Per-member building blocks of the population trainer (:mod:`metahpo_utils.population`).

Each works on a population's stacked tensors (a leading member dimension) with few passes over
memory and no per-member Python work on the hot path:

- :class:`PopulationOptimizer`: SGD and AdamW per member, in place, with the same float32
  operations torch's single-tensor optimisers apply to one member (so each member's update is
  bit for bit torch's, given the same gradient);
- :class:`PopulationDropout`: dropout whose masks are, member by member, the ones the sequential
  trainer draws, generated ahead for a block of steps (one draw per member and block);
- :func:`max_pool_relu`: ``max_pool(relu(x), 2)`` as one autograd function.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

ADAM_EPS = 1e-8
ADAM_BETA2 = 0.999

#: ``sequential``: each member draws exactly the sequential trainer's dropout masks (its own random
#: stream); ``population``: one draw for the whole population per layer and step (same keep rate
#: per member, other masks, so other numbers).
DROPOUT_MASKS = ("sequential", "population")

#: Dropout scales drawn ahead are held for at most this many activations (float32) per block of steps.
DROPOUT_BLOCK_ELEMENTS = 1 << 22

_MASK53 = (1 << 53) - 1


# ---------------------------------------------------------------- optimiser
class PopulationOptimizer:
    """SGD (momentum, coupled weight decay) and AdamW (decoupled) on a population's ``(G, P)``
    parameter, each member with its own learning rate, weight decay, momentum/beta1 and step count.

    A member's update uses the float32 operations of torch's single-tensor ``SGD``/``AdamW``
    (``foreach=False``, the CPU default) with its own hyperparameters as per-member ``(G, 1)``
    vectors, so it is bit for bit what torch computes for that member alone. Members of each
    optimiser should be contiguous (the trainer orders them so): each contiguous run is updated as
    one slice, in place, with preallocated scratch (no ``where`` over both updates, no allocation).

    A step updates members ``start:`` only (the others keep their weights and state). Element
    ranges in ``frozen`` ``(member, first, end)`` are restored after every step (identity layers).
    """

    def __init__(self, param: nn.Parameter, configs: Sequence[Mapping[str, Any]], device: torch.device,
                 frozen: Sequence[tuple[int, int, int]] = ()):
        opts = [c.get("optimizer", "adamw") for c in configs]
        bad = sorted({o for o in opts if o not in ("sgd", "adamw")})
        if bad:
            raise ValueError(f"config: unknown optimizer '{bad[0]}' (use sgd or adamw)")
        self.param = param
        G = len(configs)
        # hyperparameters as Python floats, combined in double as torch does, then float32 vectors
        self.lr = np.array([float(c.get("lr", 1e-2)) for c in configs])
        wd = np.array([float(c.get("weight_decay", 0.0)) for c in configs])
        self.beta1 = np.array([float(c.get("momentum", 0.9)) for c in configs])

        def col(x: np.ndarray) -> torch.Tensor:  # (G, 1) float32
            return torch.tensor(x, dtype=torch.float64).float().view(G, 1).to(device)

        self.neg_lr, self.wd, self.mom = col(-self.lr), col(wd), col(self.beta1)
        self.decay, self.one_minus_beta1 = col(1 - self.lr * wd), col(1 - self.beta1)
        self.t = np.zeros(G, dtype=np.int64)  # steps taken, per member
        self.runs: list[tuple[int, int, bool]] = []  # (first, end, adamw): contiguous members of one optimiser
        for g, o in enumerate(opts):
            if self.runs and self.runs[-1][2] == (o == "adamw"):
                self.runs[-1] = (self.runs[-1][0], g + 1, o == "adamw")
            else:
                self.runs.append((g, g + 1, o == "adamw"))
        self.buf = torch.zeros_like(param)  # SGD momentum (zero: the first step's buf * mom + d is d, as torch's clone)
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.scratch = torch.empty_like(param)  # AdamW's denominator
        self.scratch2 = torch.empty_like(param)  # AdamW's m * (-step size)
        with torch.no_grad():
            self.frozen = [(g, a, b, param[g, a:b].clone()) for g, a, b in frozen]

    @torch.no_grad()
    def step(self, start: int = 0, grad: torch.Tensor | None = None) -> None:
        """Update members ``start:`` with their rows of ``grad`` (default ``param.grad``; overwritten)."""
        self.t[start:] += 1
        p, g = self.param.data, self.param.grad if grad is None else grad
        for lo, hi, adamw in self.runs:
            if hi <= start:
                continue
            lo = max(lo, start)
            if adamw:
                self._adamw(p[lo:hi], g[lo:hi], lo, hi)
            else:
                self._sgd(p[lo:hi], g[lo:hi], lo, hi)
        for m, a, b, value in self.frozen:  # identity padding layers never move
            if m >= start:
                p[m, a:b] = value

    def _sgd(self, p: torch.Tensor, g: torch.Tensor, lo: int, hi: int) -> None:
        # torch: d = g.add(p, alpha=wd); buf.mul_(mom).add_(d); p.add_(buf, alpha=-lr)
        buf = self.buf[lo:hi]
        g.addcmul_(p, self.wd[lo:hi])
        buf.mul_(self.mom[lo:hi]).add_(g)
        p.addcmul_(buf, self.neg_lr[lo:hi])

    @staticmethod
    def _col(values: list[float], device: torch.device) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float64).float().view(-1, 1).to(device)

    def _adamw(self, p: torch.Tensor, g: torch.Tensor, lo: int, hi: int) -> None:
        # torch: p.mul_(1 - lr * wd); m.lerp_(g, 1 - beta1); v.mul_(beta2).addcmul_(g, g, value=1 - beta2);
        # denom = (v.sqrt() / sqrt(1 - beta2 ** t)).add_(eps); p.addcdiv_(m, denom, value=-lr / (1 - beta1 ** t))
        # bias corrections in Python floats, as torch computes them, then float32 as its kernels take them
        t = [float(s) for s in self.t[lo:hi]]
        bc2_sqrt = self._col([(1 - ADAM_BETA2 ** s) ** 0.5 for s in t], p.device)
        neg_step = self._col([-(lr / (1 - b1 ** s)) for lr, b1, s in zip(self.lr[lo:hi].tolist(),
                                                                         self.beta1[lo:hi].tolist(), t)], p.device)
        m, v = self.m[lo:hi], self.v[lo:hi]
        denom, num = self.scratch[lo:hi], self.scratch2[lo:hi]
        p.mul_(self.decay[lo:hi])
        m.lerp_(g, self.one_minus_beta1[lo:hi])
        v.mul_(ADAM_BETA2).addcmul_(g, g, value=1 - ADAM_BETA2)
        torch.sqrt(v, out=denom).div_(bc2_sqrt).add_(ADAM_EPS)
        torch.mul(m, neg_step, out=num)  # addcdiv's value * t1, then / t2 and + p: torch's rounding
        p.addcdiv_(num, denom)


# ---------------------------------------------------------------- dropout
class PopulationDropout:
    """Per-member dropout for a population's activations ``(G, batch, width)``.

    ``masks="sequential"`` (default) applies exactly the masks the sequential trainer draws: torch's
    CPU dropout draws ``empty_like(x).bernoulli_(1 - p)`` from the default generator, one 64-bit
    Mersenne-Twister number per unit, keeping a unit when its 53-bit uniform is below ``1 - p``, and
    scales kept units by ``1 / (1 - p)``. Each member here has a generator in the state the
    sequential trainer's default generator is in once its model is built, and draws the same
    numbers in the same order (layer after layer, step after step, ``rows x width`` units of its
    own width) with one ``random_`` call per member and block of steps, thresholding the 53 bits in
    integers: the same masks and the same generator state, in a fraction of the time of one
    ``bernoulli_`` call per member, layer and step.

    ``masks="population"`` draws one uniform per activation for the whole population, keeping with
    each member's own rate (faster, statistically the same, other numbers).

    Use: :meth:`start_epoch` with the rows each member trains on at each step, :meth:`at_step` before
    each step's forward pass, then call with each dropout layer's activations.
    """

    def __init__(self, rates: Sequence[float], states: Sequence[torch.Tensor], layer_widths: Sequence[Sequence[int]],
                 layer_sizes: Sequence[int], batch_size: int, device: torch.device, masks: str = "sequential",
                 seed: int = 0, block_elements: int = DROPOUT_BLOCK_ELEMENTS):
        """
        Args:
            rates: each member's dropout probability.
            states: each member's CPU random state where its sequential dropout stream starts.
            layer_widths: per dropout layer, each member's width (0: the member has no unit there, as
                for a frozen identity layer; it draws nothing there).
            layer_sizes: per dropout layer, the width of the population's (padded) activations.
            batch_size: most rows per step.
            device: where the activations are.
            masks: see :data:`DROPOUT_MASKS`.
            seed: seed of the ``population`` masks' generator.
            block_elements: most activations whose scales are drawn ahead at once.
        """
        if masks not in DROPOUT_MASKS:
            raise ValueError(f"population: dropout masks must be one of {DROPOUT_MASKS} (got {masks!r})")
        self.masks, self.device = masks, device
        self.rates = [float(p) for p in rates]
        G = len(self.rates)
        self.layer_widths = [list(w) for w in layer_widths]
        self.active = [m for m, p in enumerate(self.rates) if p > 0]
        # per layer: members that drop units there
        self.layer_active = [[m for m in self.active if w[m] > 0] for w in self.layer_widths]
        # population masks: each member's keep probability per layer (1 where it has no units)
        self.keep = [torch.tensor([1 - p if w[m] > 0 else 1.0 for m, p in enumerate(self.rates)], device=device)
                     for w in self.layer_widths]
        self.fast_gen = torch.Generator(device=device).manual_seed(seed + 2)
        self.gens = []
        for st in states:
            g = torch.Generator()
            g.set_state(st)
            self.gens.append(g)
        # a unit is kept when (random64 & (2**53 - 1)) * 2**-53 < 1 - p, i.e. the 53 bits < ceil((1 - p) * 2**53)
        self.threshold = [math.ceil((1 - p) * 2.0 ** 53) for p in self.rates]
        # the scale of a kept unit, as torch computes it (float32 1 / (1 - p))
        self.inv = [float(torch.ones(()).div_(1 - p)) if p > 0 else 1.0 for p in self.rates]
        # per member: the (layer, width) it draws at each step, in order
        self.draws = [[(li, w[m]) for li, w in enumerate(self.layer_widths) if w[m] > 0] for m in range(G)]
        W = max([int(w) for w in layer_sizes] + [1])
        per_step = G * len(self.layer_widths) * batch_size * W
        self.block = max(1, block_elements // per_step)
        self.scale: torch.Tensor | None = None  # (G, block, layer, batch, width): 1, 0 or 1 / (1 - p)
        if masks == "sequential" and self.active:
            self.scale = torch.ones(G, self.block, len(self.layer_widths), batch_size, W)
        self.scale_dev = self.scale if self.scale is None or device.type == "cpu" else self.scale.to(device)
        self.rows: np.ndarray | None = None
        self.step, self.first, self.end = 0, 0, 0

    def start_epoch(self, rows: np.ndarray) -> None:
        """``rows (steps, G)``: how many rows each member trains on at each step of the epoch."""
        self.rows = np.asarray(rows)
        self.first = self.end = 0

    def at_step(self, step: int) -> None:
        """The next forward pass is this step of the epoch."""
        self.step = step
        if self.scale is not None and step >= self.end:
            self._draw_block(step)

    def _draw_block(self, first: int) -> None:
        assert self.rows is not None, "start_epoch first"
        assert self.scale is not None and self.scale_dev is not None
        end = min(first + self.block, len(self.rows))
        for m in self.active:
            layers = self.draws[m]
            if not layers:
                continue
            rows = self.rows[first:end, m]
            # runs of steps with the same number of rows (all full but a task's last)
            cuts = [0, *(np.flatnonzero(np.diff(rows)) + 1).tolist(), len(rows)]
            # a member draws its first layers, all of its one width (MLPs, ConvNets): one copy per run
            same = [li for li, _ in layers] == list(range(len(layers))) and len({w for _, w in layers}) == 1
            for a, b in zip(cuts[:-1], cuts[1:]):
                r = int(rows[a])
                if r == 0:
                    continue
                sizes = [r * w for _, w in layers]
                bits = torch.empty((b - a) * sum(sizes), dtype=torch.int64).random_(generator=self.gens[m])
                keep = bits.bitwise_and_(_MASK53).lt_(self.threshold[m])  # 0/1, in place
                dst = self.scale[m, a:b]  # (steps, layer, batch, width)
                if same:
                    w = layers[0][1]
                    dst[:, : len(layers), :r, :w].copy_(keep.view(b - a, len(layers), r, w)).mul_(self.inv[m])
                    continue
                for (li, w), part in zip(layers, keep.view(b - a, sum(sizes)).split(sizes, 1)):
                    dst[:, li, :r, :w].copy_(part.view(b - a, r, w)).mul_(self.inv[m])
        if self.scale_dev is not self.scale:
            self.scale_dev.copy_(self.scale, non_blocking=True)
        self.first, self.end = first, end

    def __call__(self, h: torch.Tensor, layer: int, start: int = 0) -> torch.Tensor:
        """``h``: activations ``(G - start, rows, width)`` of members ``start:`` at dropout ``layer``."""
        if not any(m >= start for m in self.layer_active[layer]):
            return h
        if self.masks == "population":  # one draw for all members: same distribution, other masks
            keep = self.keep[layer][start:].view(-1, *([1] * (h.dim() - 1)))
            return h * ((torch.rand(h.shape, generator=self.fast_gen, device=h.device) < keep) / keep)
        assert self.scale_dev is not None
        return h * self.scale_dev[start:, self.step - self.first, layer, : h.shape[1], : h.shape[2]]


# ---------------------------------------------------------------- pooling
class _PairMax(torch.autograd.Function):
    """Maximum over the two entries of ``dim`` (ties to the first, as torch's max pooling), optionally
    followed by ReLU. The backward pass multiplies the gradient by 0/1 float masks (much faster on
    CPU than ``where`` or boolean masks) into the two halves of one buffer laid out as the input."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, relu: bool) -> torch.Tensor:  # type: ignore[override]
        a, b = x.select(dim, 0), x.select(dim, 1)
        out = torch.maximum(a, b)
        # first: 1 where a >= b (the first maximum wins ties), as sign(a - b) + 1 clamped to 1
        first = torch.sub(a, b).sign_().add_(1).clamp_(max=1)
        if relu:  # relu(max(a, b)) == max(relu(a), relu(b)): ReLU is monotone, so it runs on half the values
            out.relu_()
            routed = out.sign()  # 1 where the output is positive (gradient flows), else 0
            first.mul_(routed)
            second = routed.sub_(first)
        else:
            second = torch.sub(1, first)
        ctx.dim, ctx.layout = dim, (x.shape, x.stride())
        ctx.save_for_backward(first, second)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        first, second = ctx.saved_tensors
        gx = torch.empty_strided(*ctx.layout, dtype=grad.dtype, device=grad.device)  # laid out as the input
        torch.mul(grad, first, out=gx.select(ctx.dim, 0))
        torch.mul(grad, second, out=gx.select(ctx.dim, 1))
        return gx, None, None


def max_pool_relu(h: torch.Tensor) -> torch.Tensor:
    """``max_pool(relu(h), 2)`` over the trailing 1 (``(..., L)``) or 2 (``(..., H, W)``) spatial dims.

    The same values as torch's ReLU then max pooling, and the same gradient: ties go to the first
    maximum in the window (row-major), as in torch's CPU pooling. Pooling runs before the ReLU (they
    commute), two windows of 2 at a time, several times faster than torch's CPU pooling on the many
    channels of a population.
    """
    if h.dim() == 3:
        L = h.shape[-1] // 2
        x = h if h.shape[-1] == 2 * L else h[..., : 2 * L]
        return _PairMax.apply(x.unflatten(-1, (L, 2)), -1, True)
    H, W = h.shape[-2] // 2, h.shape[-1] // 2
    x = h if h.shape[-1] == 2 * W else h[..., : 2 * W]
    x = _PairMax.apply(x.unflatten(-1, (W, 2)), -1, False)  # (..., H_in, W): first max along each row pair
    x = x if x.shape[-2] == 2 * H else x[..., : 2 * H, :]
    return _PairMax.apply(x.unflatten(-2, (H, 2)), -2, True)  # then between the two rows


__all__ = ["PopulationOptimizer", "PopulationDropout", "max_pool_relu", "DROPOUT_MASKS", "ADAM_EPS", "ADAM_BETA2"]
