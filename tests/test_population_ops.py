"""The population trainer's building blocks reproduce torch's own per-member computations.

Bit for bit where the population trainer promises the sequential trainer's numbers (dropout masks
drawn ahead, the optimiser update, pooling), statistically for the opt-in ``population`` masks.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metahpo_utils.population_ops import PopulationDropout, PopulationOptimizer, max_pool_relu


def _states(seeds):
    out = []
    for s in seeds:
        g = torch.Generator().manual_seed(s)
        torch.empty(7).uniform_(generator=g)  # somewhere inside the stream, as after building a model
        out.append(g.get_state())
    return out


def test_sequential_masks_are_bernoulli_draws_across_blocks():
    """Each member's scales are its own ``bernoulli_(1 - p) / (1 - p)`` draws, in the sequential
    trainer's order (layer after layer, step after step, rows x its width), whatever the block size;
    a member without dropout or on a frozen identity layer draws nothing and passes units through."""
    rates = [0.3, 0.0, 0.5, 0.1]
    # member 2 has no second layer (a frozen identity there); member 0's layers differ in width
    widths = [[5, 7, 3, 6], [4, 7, 0, 6]]
    seeds = [11, 12, 13, 14]
    rows = np.array([[4, 4, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4], [2, 2, 2, 2], [4, 4, 1, 4]])  # (steps, G)
    bs, W = 4, 7
    # the sequential trainer's draws, member by member
    want = torch.ones(len(rows), 2, len(rates), bs, W)  # (step, layer, member, row, unit)
    for m, (p, st) in enumerate(zip(rates, _states(seeds))):
        g = torch.Generator()
        g.set_state(st)
        for s in range(len(rows)):
            for li in range(2):
                r, w = int(rows[s, m]), widths[li][m]
                if p > 0 and w > 0:
                    want[s, li, m, :r, :w] = torch.empty(r, w).bernoulli_(1 - p, generator=g).div_(1 - p)
    for block_elements in (1, 2 * 4 * 4 * 14, 1 << 20):  # one step per block, two, all
        drop = PopulationDropout(rates, _states(seeds), widths, [W, W], bs, torch.device("cpu"),
                                 block_elements=block_elements)
        drop.start_epoch(rows)
        for s in range(len(rows)):
            drop.at_step(s)
            for li in range(2):
                got = drop(torch.ones(len(rates), bs, W), li)
                for m in range(len(rates)):
                    r = int(rows[s, m])
                    assert torch.equal(got[m, :r], want[s, li, m, :r]), (block_elements, s, li, m)
        # and members start: only (a suffix of the stack, as for tasks that finished their epoch)
        drop.start_epoch(rows)
        drop.at_step(0)
        assert drop(torch.ones(2, bs, W), 0, start=2).shape == (2, bs, W)


def test_population_masks_keep_each_members_rate():
    """``population`` masks (opt-in, other numbers): per member the kept share is 1 - p, kept units
    scale by 1 / (1 - p), members without dropout or units there keep everything."""
    rates = [0.0, 0.1, 0.3, 0.5, 0.5]
    widths = [[64] * 4 + [0]]  # the last member has no units in this layer (frozen identity)
    drop = PopulationDropout(rates, _states(range(5)), widths, [64], 256, torch.device("cpu"), masks="population")
    drop.start_epoch(np.full((1, 5), 256))
    drop.at_step(0)
    out = drop(torch.ones(5, 256, 64), 0)  # 16384 units per member
    for m, p in enumerate(rates):
        kept = out[m] != 0
        if p == 0 or m == 4:
            assert bool(kept.all()) and bool((out[m] == 1).all())
            continue
        share = kept.float().mean().item()
        sd = (p * (1 - p) / kept.numel()) ** 0.5
        assert abs(share - (1 - p)) < 5 * sd, (p, share)
        assert torch.allclose(out[m][kept], torch.tensor(1 / (1 - p)))
    with pytest.raises(ValueError, match="dropout masks"):
        PopulationDropout(rates, _states(range(5)), widths, [64], 8, torch.device("cpu"), masks="other")


def test_optimizer_update_is_torchs_bit_for_bit():
    """SGD and AdamW members, with their own hyperparameters, updated in slices (members start:
    only on some steps), match torch's optimisers run on each member alone, bit for bit."""
    configs = [dict(optimizer="sgd", lr=0.05, weight_decay=1e-4, momentum=0.9),
               dict(optimizer="sgd", lr=0.2, weight_decay=0.0, momentum=0.5),
               dict(optimizer="adamw", lr=3e-3, weight_decay=1e-2, momentum=0.85),
               dict(optimizer="adamw", lr=1e-2, weight_decay=0.0, momentum=0.95)]
    G, P = len(configs), 1000
    gen = torch.Generator().manual_seed(0)
    init = torch.randn(G, P, generator=gen)
    param = torch.nn.Parameter(init.clone())
    opt = PopulationOptimizer(param, configs, torch.device("cpu"), frozen=[(1, 990, 1000)])
    refs = []
    for m, c in enumerate(configs):
        p = torch.nn.Parameter(init[m].clone())
        if c["optimizer"] == "sgd":
            o = torch.optim.SGD([p], lr=c["lr"], momentum=c["momentum"], weight_decay=c["weight_decay"])
        else:
            o = torch.optim.AdamW([p], lr=c["lr"], betas=(c["momentum"], 0.999), weight_decay=c["weight_decay"])
        refs.append((p, o))
    for step, start in enumerate([0, 0, 2, 1, 0, 3]):
        grad = torch.randn(G, P, generator=gen)
        for m in range(start, G):
            p, o = refs[m]
            p.grad = grad[m].clone()
            o.step()
        opt.step(start, grad.clone())
        for m in range(G):
            want = refs[m][0].detach()
            if m == 1:  # its frozen range never moves; the rest is torch's update
                assert torch.equal(param[m, 990:], init[m, 990:])
                want, got = want[:990], param.detach()[m, :990]
            else:
                got = param.detach()[m]
            assert torch.equal(got, want), (step, m)


@pytest.mark.parametrize("shape", [(3, 6, 11), (3, 6, 12), (2, 5, 7, 9), (2, 5, 8, 8)])
def test_max_pool_relu_is_relu_then_max_pool(shape):
    """Values and gradients equal torch's ReLU then max pooling, ties included (first maximum)."""
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    x[0, 0].view(-1)[:4] = 0.7  # ties among positive values
    x[1, 1].view(-1)[:4] = -0.2  # and among negative ones (ReLU zeros)
    pool = F.max_pool1d if len(shape) == 3 else F.max_pool2d
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    want, got = pool(torch.relu(a), 2), max_pool_relu(b)
    assert torch.equal(want, got)
    g = torch.randn(want.shape, generator=torch.Generator().manual_seed(2))
    want.backward(g)
    got.backward(g)
    assert torch.equal(a.grad, b.grad)


def test_population_masks_train_deterministically():
    """The opt-in ``population`` masks in the trainer: seeded (same numbers twice), other numbers
    than the sequential trainer's masks, and members without dropout unaffected by the option."""
    from metahpo_utils.data.datasets import load_dataset
    from metahpo_utils.data.tasks import Task
    from metahpo_utils.population import train_population

    ds = load_dataset("digits")
    task = Task.from_arrays(ds.X[:200], ds.y[:200], name="digits-200", seed=0)
    cfgs = [dict(depth=2, batch_size=32, width=24, lr=0.01, optimizer="adamw", momentum=0.9, dropout=p)
            for p in (0.0, 0.3)]
    a, b = (train_population(task, cfgs, epochs=2, seed=4, dropout_masks="population").results for _ in range(2))
    exact = train_population(task, cfgs, epochs=2, seed=4).results
    assert [r.val_loss for r in a] == [r.val_loss for r in b] and all(r.status == "ok" for r in a)
    assert a[0].val_loss == exact[0].val_loss and a[1].val_loss != exact[1].val_loss


@pytest.mark.parametrize("family, dataset", [("cnn2d", "digits"), ("cnn1d", "mnist1d")])
def test_convnets_on_several_tasks_match_the_sequential_trainer(family, dataset):
    """Members on their own tasks (each its own batches, so grouped first convolutions on
    channels-last inputs), of different widths and sizes, give the sequential trainer's results."""
    from metahpo_utils.data.datasets import load_dataset
    from metahpo_utils.data.tasks import Task
    from metahpo_utils.population import train_members
    from metahpo_utils.training import train_config

    ds = load_dataset(dataset)
    tasks = [Task.from_arrays(ds.X[a:b], ds.y[a:b], name=f"{dataset}-{a}", seed=0) for a, b in ((0, 240), (240, 330))]
    cfgs = [dict(depth=2, batch_size=32, width=w, lr=lr, optimizer=o, momentum=0.9, dropout=p, weight_decay=1e-4)
            for w, lr, o, p in [(16, 0.05, "sgd", 0.2), (24, 0.003, "adamw", 0.0), (12, 0.01, "adamw", 0.4)]]
    members = [(tasks[0], cfgs[0]), (tasks[1], cfgs[1]), (tasks[1], cfgs[2]), (tasks[0], cfgs[1])]
    pop = train_members(members, epochs=2, seed=3, family=family).results
    for (task, c), b in zip(members, pop):
        a = train_config(task, c, epochs=2, seed=3, family=family)
        assert a.status == b.status and a.curve == b.curve
        np.testing.assert_allclose(b.val_loss, a.val_loss, rtol=1e-4, atol=1e-5)
