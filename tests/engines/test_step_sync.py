"""Host synchronisation of the training steps and the bucketed gradient all-reduce.

Host transfers are counted by wrapping the ``torch.Tensor`` methods that read a device value into Python
(``item``, ``tolist``, ``__bool__``, ``__float__``, ``__int__``) and counting the calls made from the step code
(``common/engines``). The CycleGAN steps use ``pool_size=0``: the image pool's draws come from its own CPU
generator and are never device tensors.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from common.engines import DivergenceError, GANStep, TrainingStep
from common.engines.grad_sync import all_reduce_gradients, gradient_buckets

from tests.gloo import run_ranks

sys.path.insert(0, str(Path(__file__).parent))
from test_cyclegan_step import batches, make_step  # noqa: E402

_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


@pytest.fixture
def host_reads(monkeypatch):
    """A counter of host reads of tensors issued from ``common/engines`` code, by method name."""
    counts: Counter = Counter()
    for name in _READS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, _name=name, **kwargs):
            if "common/engines" in sys._getframe(1).f_code.co_filename.replace("\\", "/"):
                counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counts


def engine_at(iteration: int) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch=1, epoch_length=10))


def tiny_gan(loss: str = "wgan", gp_weight: float = 10.0) -> GANStep:
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(4, 16), nn.Unflatten(1, (1, 4, 4)))
    d = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), 1e-3), torch.optim.Adam(d.parameters(), 1e-3)
    return GANStep(g, d, opt_g, opt_d, 4, loss=loss, gp_weight=gp_weight, drift_weight=1e-3 if gp_weight else 0.0)


def _item_report(self, values):
    """The former logging: one ``.item()`` per loss."""
    return {k: v.item() if isinstance(v, torch.Tensor) else float(v) for k, v in values.items()}


# ---------------------------------------------------------------- one check, one transfer
@pytest.mark.parametrize("attention", ["separate", "none"])
def test_cyclegan_step_reads_the_host_once_per_update_plus_once(host_reads, attention):
    step = make_step(2, attention, pool_size=0)
    for i, batch in enumerate(batches(2, n=2), 1):
        host_reads.clear()
        out = step(engine_at(i), batch)
        # 2 optimiser updates (generators, discriminators): one finiteness check each, one transfer of the log
        assert sum(host_reads.values()) == 3, dict(host_reads)
        assert host_reads["__bool__"] == 2 and host_reads["tolist"] == 1
        assert len(out) == (7 if attention != "none" else 6)


@pytest.mark.parametrize("loss,gp_weight", [("bce", 0.0), ("wgan", 10.0)])
def test_gan_step_reads_the_host_once_per_update_plus_once(host_reads, loss, gp_weight):
    step = tiny_gan(loss, gp_weight)
    host_reads.clear()
    out = step(engine_at(1), {"image": torch.randn(3, 1, 4, 4)})
    assert sum(host_reads.values()) == 3, dict(host_reads)
    assert set(out) >= {"loss_d", "loss_g"}


@pytest.mark.parametrize("attention", ["separate", "shared", "none"])
def test_cyclegan_logged_values_equal_per_loss_items(monkeypatch, attention):
    runs = []
    for report in (TrainingStep.report, _item_report):
        monkeypatch.setattr(TrainingStep, "report", report)
        step = make_step(2, attention, pool_size=4)
        runs.append([step(engine_at(i), b) for i, b in enumerate(batches(2, n=3), 1)])
    assert [list(o) for o in runs[0]] == [list(o) for o in runs[1]]  # same keys in the same order
    assert runs[0] == runs[1]  # and bit-equal values


def test_gan_logged_values_equal_per_loss_items(monkeypatch):
    runs = []
    for report in (TrainingStep.report, _item_report):
        monkeypatch.setattr(TrainingStep, "report", report)
        step, gen = tiny_gan(), torch.Generator().manual_seed(1)
        runs.append([step(engine_at(i), {"image": torch.randn(3, 1, 4, 4, generator=gen)}) for i in (1, 2)])
    assert runs[0] == runs[1] and "wasserstein_estimate" in runs[0][0]


def test_report_is_exact_for_every_float_dtype_and_keeps_order(host_reads):
    step = TrainingStep({"n": nn.Linear(1, 1)}, {})
    values = {
        "f32": torch.tensor(0.1),
        "bf16": torch.tensor(1 / 3, dtype=torch.bfloat16),
        "f16": torch.tensor(2 / 3, dtype=torch.float16),
        "f64": torch.tensor(0.1, dtype=torch.float64),
        "lr": 2e-4,
        "shaped": torch.tensor([[-7.25]]),
    }
    out = step.report(values)
    assert list(out) == list(values)
    assert out == {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
    assert all(type(v) is float for v in out.values())
    assert dict(host_reads) == {"tolist": 1}


def test_one_finiteness_check_names_the_offending_loss_before_the_update(host_reads):
    net = nn.Linear(2, 1)
    step = TrainingStep({"net": net}, {"net": torch.optim.SGD(net.parameters(), 0.1)})
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.ones(1, 2)
    step.optimise(engine_at(3), "net", net(x).sum(), terms={"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    assert dict(host_reads) == {"__bool__": 1}
    assert not torch.equal(before[0], net.weight)
    before = [p.detach().clone() for p in net.parameters()]
    bad = {"a": torch.tensor(1.0), "b": torch.tensor(float("inf")), "c": torch.tensor(float("nan"))}
    with pytest.raises(DivergenceError, match=r"Loss 'b' is inf at epoch 1, iteration 3"):
        step.optimise(engine_at(3), "net", net(x).sum() + bad["b"], terms=bad)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # nothing applied
    with pytest.raises(DivergenceError, match=r"Loss 'net loss' is nan"):
        step.optimise(engine_at(4), "net", net(x).sum() * float("nan"))


# ---------------------------------------------------------------- bucketed all-reduce
def test_bucket_layout_follows_order_requires_grad_and_dtype():
    params = [nn.Parameter(torch.zeros(n)) for n in (256, 256, 1024, 64, 64)]  # 1, 1, 4, 0.25, 0.25 KiB
    params[1].requires_grad_(False)
    half = nn.Parameter(torch.zeros(8, dtype=torch.float16))
    kib = 1 / 1024
    assert gradient_buckets(params, bucket_mb=2 * kib) == [[0, 2], [3, 4]]
    assert gradient_buckets(params, bucket_mb=0.5 * kib) == [[0], [2], [3, 4]]  # one param larger than a bucket
    assert gradient_buckets(params, bucket_mb=4.0) == [[0, 2, 3, 4]]
    assert gradient_buckets([params[0], half, params[3]], bucket_mb=4.0) == [[0, 2], [1]]
    with pytest.raises(ValueError, match="bucket_mb"):
        gradient_buckets(params, bucket_mb=0)


def _sync_worker(rank: int, port: int, results) -> None:
    """Per-parameter vs bucketed averaging of rank-dependent gradients, several bucket sizes."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        gen = torch.Generator().manual_seed(100 + rank)
        shapes = [(3, 5), (7,), (2, 3, 4), (1,), (33,)]
        params = [nn.Parameter(torch.zeros(s)) for s in shapes]
        params.append(nn.Parameter(torch.zeros(4), requires_grad=False))  # frozen: never in a bucket
        params.append(nn.Parameter(torch.zeros(6)))  # no gradient on any rank: stays None
        params.append(nn.Parameter(torch.zeros(5)))  # gradient on rank 0 only: averaged with zeros
        grads = [torch.randn(s, generator=gen) * 1e3 for s in shapes]
        own = torch.randn(5, generator=gen)

        reference = [g.clone() for g in grads]
        for g in reference:
            dist.all_reduce(g, op=dist.ReduceOp.SUM)
            g.div_(2)
        partial = own.clone() if rank == 0 else torch.zeros(5)
        dist.all_reduce(partial, op=dist.ReduceOp.SUM)
        partial.div_(2)

        for bucket_mb in (40 / 2**20, 200 / 2**20, 4.0):  # 40 B: smaller than most parameters
            for p, g in zip(params, grads):
                p.grad = g.clone()
            params[-2].grad = None
            params[-1].grad = own.clone() if rank == 0 else None
            all_reduce_gradients(params, bucket_mb)
            equal = all(torch.equal(p.grad, r) for p, r in zip(params, reference))
            results.put((rank, bucket_mb, equal, params[-3].grad is None, params[-2].grad is None))
            results.put((rank, bucket_mb, "partial", torch.equal(params[-1].grad, partial)))

        # the step's own sync_gradients goes through the same buckets
        net = nn.Linear(5, 3)
        step = TrainingStep({"net": net}, {"net": torch.optim.SGD(net.parameters(), 0.1)})
        step.grad_bucket_mb = 16 / 2**20
        net.weight.grad = torch.full((3, 5), float(rank + 1))
        net.bias.grad = torch.full((3,), float(3 * rank))
        step.sync_gradients("net")
        results.put((rank, "step", torch.equal(net.weight.grad, torch.full((3, 5), 1.5)), net.bias.grad.tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_bucketed_all_reduce_equals_per_parameter_all_reduce_on_two_gloo_ranks():
    got = run_ranks(_sync_worker, 2 * 7)
    equal = [g for g in got if len(g) == 5]
    assert len(equal) == 6 and all(e[2] and e[3] and e[4] for e in equal), equal
    partial = [g for g in got if g[2:3] == ("partial",)]
    assert len(partial) == 6 and all(g[3] for g in partial), partial
    steps = [g for g in got if g[1] == "step"]
    assert sorted(g[0] for g in steps) == [0, 1] and all(g[2] and g[3] == [1.5] * 3 for g in steps), steps
