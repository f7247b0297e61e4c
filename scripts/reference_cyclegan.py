"""A straightforward PyTorch CycleGAN, the independent reference of the step-time comparison in ``benchmark.py``.

Written from the CycleGAN paper (Zhu et al. 2017, sec. 4 and appendix 7.2) with plain ``torch.nn`` layers and no
project code, so that ``scripts/benchmark.py --reference_cyclegan`` can time the ``cyclegan`` variant of
``bundles/cda_gan`` against it in one run (CDA-GAN issue, "Performance"):

- generators ``c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-C`` with reflection padding, instance norm, ReLU and a
  tanh output;
- 70x70 PatchGAN discriminators ``C64-C128-C256-C512`` (4x4 convolutions, LeakyReLU 0.2, no norm on the first);
- least-squares adversarial losses, cycle L1 (``lambda_cycle`` 10), identity L1 (0.5 x ``lambda_cycle``), a
  history pool of 50 generated images per domain, Adam (2e-4, betas 0.5/0.999), the discriminator loss halved.

This is a measuring stick, not a training pipeline: the project's CycleGAN is the ``cyclegan`` variant of
``bundles/cda_gan`` (``common.engines.CycleGANStep`` with ``common.networks.ResNetGenerator`` and
``PatchGANDiscriminator``).
"""

from __future__ import annotations

import random
import resource
import statistics
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ReferenceCycleGAN", "ReferenceDiscriminator", "ReferenceGenerator", "benchmark_reference_cyclegan"]


class _ResnetBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ReferenceGenerator(nn.Sequential):
    """CycleGAN ResNet generator, ``(B, C, H, W) -> (B, C, H, W)`` in ``[-1, 1]``; H and W divisible by 4."""

    def __init__(self, channels: int, num_res_blocks: int = 9, base: int = 64) -> None:
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(channels, base, 7),
            nn.InstanceNorm2d(base),
            nn.ReLU(True),
        ]
        for mult in (1, 2):
            layers += [
                nn.Conv2d(base * mult, base * mult * 2, 3, stride=2, padding=1),
                nn.InstanceNorm2d(base * mult * 2),
                nn.ReLU(True),
            ]
        layers += [_ResnetBlock(base * 4) for _ in range(num_res_blocks)]
        for mult in (4, 2):
            layers += [
                nn.ConvTranspose2d(base * mult, base * mult // 2, 3, stride=2, padding=1, output_padding=1),
                nn.InstanceNorm2d(base * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(base, channels, 7), nn.Tanh()]
        super().__init__(*layers)


class ReferenceDiscriminator(nn.Sequential):
    """70x70 PatchGAN, ``(B, C, H, W) -> (B, 1, H/8 - 2, W/8 - 2)`` logits."""

    def __init__(self, channels: int, base: int = 64) -> None:
        layers: list[nn.Module] = [nn.Conv2d(channels, base, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        for i, stride in enumerate((2, 2, 1)):
            c_in, c_out = base * 2**i, base * 2 ** (i + 1)
            layers += [
                nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1),
                nn.InstanceNorm2d(c_out),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(base * 8, 1, 4, stride=1, padding=1))
        super().__init__(*layers)


def _init(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)


class _Pool:
    """History of generated images: after ``size`` images, return a stored one half of the time (CycleGAN)."""

    def __init__(self, size: int = 50) -> None:
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.random() > 0.5:
                i = random.randrange(self.size)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


class ReferenceCycleGAN:
    """Both generators, both discriminators, their optimisers and pools; :meth:`step` is one training iteration."""

    def __init__(
        self, channels: int, num_res_blocks: int = 9, lambda_cycle: float = 10.0, lambda_identity: float = 0.5
    ) -> None:
        self.g_ab, self.g_ba = ReferenceGenerator(channels, num_res_blocks), ReferenceGenerator(
            channels, num_res_blocks
        )
        self.d_a, self.d_b = ReferenceDiscriminator(channels), ReferenceDiscriminator(channels)
        for net in (self.g_ab, self.g_ba, self.d_a, self.d_b):
            net.apply(_init)
        g_params = list(self.g_ab.parameters()) + list(self.g_ba.parameters())
        d_params = list(self.d_a.parameters()) + list(self.d_b.parameters())
        self.opt_g = torch.optim.Adam(g_params, lr=2e-4, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(d_params, lr=2e-4, betas=(0.5, 0.999))
        self.pool_a, self.pool_b = _Pool(), _Pool()
        self.lambda_cycle, self.lambda_identity = lambda_cycle, lambda_identity

    @staticmethod
    def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return F.mse_loss(pred, torch.full_like(pred, float(real)))

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, float]:
        """One CycleGAN iteration on ``(B, C, H, W)`` batches of both domains; returns the losses."""
        for p in list(self.d_a.parameters()) + list(self.d_b.parameters()):
            p.requires_grad_(False)
        fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
        rec_a, rec_b = self.g_ba(fake_b), self.g_ab(fake_a)
        loss_g = self._lsgan(self.d_b(fake_b), True) + self._lsgan(self.d_a(fake_a), True)
        loss_g = loss_g + self.lambda_cycle * (F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b))
        idt = F.l1_loss(self.g_ab(real_b), real_b) + F.l1_loss(self.g_ba(real_a), real_a)
        loss_g = loss_g + self.lambda_identity * self.lambda_cycle * idt
        self.opt_g.zero_grad()
        loss_g.backward()
        self.opt_g.step()
        for p in list(self.d_a.parameters()) + list(self.d_b.parameters()):
            p.requires_grad_(True)
        loss_d = 0.0
        for disc, real, fake in (
            (self.d_a, real_a, self.pool_a.query(fake_a)),
            (self.d_b, real_b, self.pool_b.query(fake_b)),
        ):
            loss_d = loss_d + 0.5 * (self._lsgan(disc(real), True) + self._lsgan(disc(fake), False))
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item()}


def benchmark_reference_cyclegan(
    channels: int = 1,
    image_size: int = 256,
    num_res_blocks: int = 9,
    batch_size: int = 1,
    iterations: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time :meth:`ReferenceCycleGAN.step` on random images; the result has ``benchmark_training_step``'s keys."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    torch.manual_seed(seed)
    random.seed(seed)
    model = ReferenceCycleGAN(channels, num_res_blocks)
    times, cpu_times = [], []
    for i in range(warmup + iterations):
        a = torch.rand(batch_size, channels, image_size, image_size) * 2 - 1
        b = torch.rand(batch_size, channels, image_size, image_size) * 2 - 1
        start, cpu_start = time.perf_counter(), time.process_time()
        model.step(a, b)
        if i >= warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    mean = statistics.mean(times)
    return {
        "config_file": "reference:cyclegan (scripts/reference_cyclegan.py)",
        "override": {"channels": str(channels), "image_size": str(image_size), "num_res_blocks": str(num_res_blocks)},
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "amp": False,
        "iterations": iterations,
        "step_time_s": {
            "mean": mean,
            "median": statistics.median(times),
            "std": statistics.stdev(times) if len(times) > 1 else 0.0,
            "min": min(times),
            "times": times,
        },
        "step_cpu_time_s": {"mean": statistics.mean(cpu_times), "times": cpu_times},
        "samples_per_s": batch_size / mean,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_memory_kind": "cpu_process_peak_rss",
    }
