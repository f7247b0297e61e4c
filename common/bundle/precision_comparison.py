"""Same learning under two precision policies: loss curves and a short training's FID, fp32 against the default.

:func:`compare_precision` trains a bundle's configured step for ``iterations`` iterations once per policy (e.g.
``"float32"`` and ``"auto"``, the bundle's ``amp`` id) and seed (the bundle's ``seed`` id), every run built in this
process from the config by :class:`monai.bundle.ConfigWorkflow` and re-seeded with
:func:`monai.utils.set_determinism` after the bundle's ``initialize`` (which may or may not have to write the
phantom first), so that the runs of one seed start from the same weights, the same batches in the same order and the
same random noise: each run records SHA-256 digests of its initial weights, of the torch RNG state before the first
iteration and of the first batch, and the comparison says whether they are equal across policies
(``identical_start``). As in :mod:`common.bundle.benchmark`, the step is called with a stand-in engine, without the
trainer's handlers (no checkpoints, no learning-rate schedule steps).

After training, a fixed number of samples (``fid_samples``) comes from the trained generator, in float32 and eval
mode, from the same inputs in every run (``eval_seed``), and is compared by FID with the same real phantom images in
every run (their digest is recorded), on the project's named feature extractor
(:func:`common.metrics.features.build_feature_extractor`; without weights the named random-init ResNet-18 fallback,
whose name every result carries). What a sample is depends on the step (:data:`SAMPLERS`):

- :class:`~common.engines.GANStep` (DCGAN, WGAN): ``generator(z)``, ``z`` standard normal, against the first
  training images;
- :class:`~common.engines.CycleGANStep` (CycleGAN, CDA-GAN): the training negatives translated to the positive domain
  (``translate(n, "p")``, with attention where the variant has it) against the training positives;
- :class:`~common.engines.MCGANStep` (3D MCGAN): the generator's nodule boxes on training VOIs (``G(x)`` in the
  central ``nodule_size`` box) against the real nodule boxes of the same VOIs (random flips and noise boxes drawn
  with ``eval_seed``): nodule crops, as the bundle's evaluation compares (the surroundings are the real ones).

Images are mapped from ``[-1, 1]`` to ``[0, 1]`` and clipped before the features, as the bundles' evaluations do.

The comparison (:func:`compare_runs`):

- **first iteration**: every loss of iteration 1 of a policy against float32 of the same seed,
  ``|a - r| / (|r| + eps)`` (``eps`` as below, from the whole float32 curve), must be at most ``first_tolerance``
  (the losses of iteration 1 come from identical weights and inputs, so they differ only by the policy's rounding;
  bf16 keeps 8 significant bits, so rounding changes a value by up to 2^-8 relative, 2^-9 on average, which a
  forward pass through a few layers accumulates to about 1 %);
- **loss curves**: each curve is smoothed with an exponential moving average ``m_t = beta m_{t-1} + (1 - beta) x_t``
  (``m_1 = x_1``; iterations where a loss is not logged are skipped), and the deviation of a policy from float32 for
  one seed is ``max_t |m_t - m^fp32_t| / (|m^fp32_t| + eps)`` with ``eps = eps_fraction * mean_t |m^fp32_t|`` (at
  least 1e-8), so that a loss that crosses zero (a WGAN critic loss, a Wasserstein estimate) is measured on its own
  scale. The run-to-run noise is the same measure between float32 runs of different seeds (the mean over ordered
  pairs). A loss passes when its deviation is within the fixed tolerance for every seed (``deviation``, the largest
  over seeds, at most ``tolerance``) or, like for like, within the run-to-run noise (``mean_deviation``, the mean
  over seeds, at most the seed noise). Both verdicts are reported, and how many iterations from the start
  the smoothed curves stay within the fixed tolerance (``agreement_iterations``): GAN training amplifies any
  perturbation, rounding included, so two runs that start equal agree closely at first and then drift apart as
  runs of different seeds do. A float32 control run whose initial weights carry a rounding-sized random
  perturbation (``perturb_control``) shows how fast any such perturbation takes the curves apart;
- **FID**: per policy the mean over seeds; the difference ``mean(policy) - mean(float32)`` passes when it is at most
  the run-to-run noise, the spread (max - min) of the float32 FIDs over seeds (undetermined with one seed).
"""

from __future__ import annotations

import ast
import gc
import hashlib
import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from common.bundle.peak_benchmark import hardware_info
from common.data.loading import cycle_loader
from common.engines import CycleGANStep, GANStep, MCGANStep, TrainingStep
from common.metrics.features import build_feature_extractor, extract_features
from common.metrics.generative import fid

__all__ = [
    "SAMPLERS",
    "compare_precision",
    "agreement_iterations",
    "compare_runs",
    "curve_deviation",
    "deviation_series",
    "ema",
    "first_iteration_deviation",
    "parse_policy",
    "merge_comparisons",
    "run_policy",
    "tensor_digest",
]

REFERENCE_POLICY = "float32"
"""The policy every other policy is compared with."""

Pairs = Callable[[Any, Any, int, int], tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------------------------- digests
def tensor_digest(tensors: Sequence[torch.Tensor] | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 hex digest of tensors' shapes, dtypes and bytes (in the given order; a mapping's keys too)."""
    h = hashlib.sha256()
    items = tensors.items() if isinstance(tensors, Mapping) else enumerate(tensors)
    for key, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _weights_digest(step: TrainingStep) -> str:
    """Digest of the state dicts of all the step's networks (parameters and buffers)."""
    return tensor_digest({f"{name}.{k}": v for name, net in step.networks.items() for k, v in net.state_dict().items()})


def _batch_digest(batch: Any) -> str:
    """Digest of the tensors of a batch (a dict of tensors, or a tensor)."""
    if isinstance(batch, Mapping):
        return tensor_digest({str(k): torch.as_tensor(v) for k, v in batch.items() if isinstance(v, torch.Tensor)})
    return tensor_digest([torch.as_tensor(batch)])


# ----------------------------------------------------------------------------------------------- samples for FID
def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    return torch.cat([fn(x[i : i + chunk]).float().cpu() for i in range(0, x.shape[0], chunk)])


def _stack(items: Sequence[Any]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(getattr(v, "as_tensor", lambda: v)()).float() for v in items])


def _gan_pairs(step: GANStep, dataset: Any, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real: the first ``count`` training images (cycling); fake: ``generator(z)`` with seeded normal latents."""
    real = _stack([dataset[i % len(dataset)][step.image_key] for i in range(count)])
    z = torch.randn((count, *step.latent_shape), generator=torch.Generator().manual_seed(seed))
    generator = step.networks["generator"]
    return real, _in_chunks(lambda v: generator(v.to(step.device)), z)


def _cyclegan_pairs(step: CycleGANStep, dataset: Any, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real: the first ``count`` training positives; fake: the first ``count`` training negatives translated to P."""
    image_key = dataset.image_key

    def domain(entries: Sequence[Mapping[str, Any]], transform: Callable[[dict], dict]) -> torch.Tensor:
        return _stack([transform(dict(entries[i % len(entries)]))[image_key] for i in range(count)])

    real = domain(dataset.positives, dataset.transform_positive)
    negatives = domain(dataset.negatives, dataset.transform_negative)
    return real, _in_chunks(lambda v: step.translate(v.to(step.device), "p")[0], negatives)


def _mcgan_pairs(step: MCGANStep, dataset: Any, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Real: the nodule boxes of ``count`` training VOIs (cycling; flips and noise boxes drawn with ``seed``); fake:
    the generator's nodule boxes on the same VOIs."""
    from monai.data.utils import set_rnd

    set_rnd(dataset, seed)
    items = [dataset[i % len(dataset)] for i in range(count)]
    x, real = _stack([it[step.image_key] for it in items]), _stack([it[step.target_key] for it in items])
    box = step.box(real)
    generator = step.networks["generator"]
    return real[box], _in_chunks(lambda v: generator(v.to(step.device))[box], x)


SAMPLERS: dict[type, Pairs] = {GANStep: _gan_pairs, CycleGANStep: _cyclegan_pairs, MCGANStep: _mcgan_pairs}
"""``(step, dataset, count, seed) -> (real, fake)`` by step class: ``count`` real and generated images
``(count, C, *spatial)`` in ``[-1, 1]`` (the first matching class in order, so subclasses share their base's)."""


def _sampler(step: TrainingStep) -> Pairs:
    for cls, fn in SAMPLERS.items():
        if isinstance(step, cls):
            return fn
    raise ValueError(f"no FID sampler for a {type(step).__name__}; steps with one: {[c.__name__ for c in SAMPLERS]}.")


def _sample_fid(
    step: TrainingStep, dataset: Any, count: int, seed: int, weights_path: str | None, arch: str
) -> dict[str, Any]:
    """FID of ``count`` samples of the trained generator against ``count`` real images (both in float32)."""
    from monai.utils import set_determinism

    networks = list(step.networks.values())
    modes = [net.training for net in networks]
    set_determinism(seed=seed)
    try:
        for net in networks:
            net.eval()
        with torch.no_grad():
            real, fake = _sampler(step)(step, dataset, count, seed)
    finally:
        for net, mode in zip(networks, modes):
            net.train(mode)
    real, fake = ((t.clamp(-1.0, 1.0) + 1.0) / 2.0 for t in (real, fake))
    extractor = build_feature_extractor(real.ndim - 2, real.shape[1], weights_path=weights_path, arch=arch)
    real_f = extract_features(extractor, real, device=step.device)
    fake_f = extract_features(extractor, fake, device=step.device)
    return {
        "fid": fid(real_f, fake_f),
        "fid_samples": count,
        "feature_extractor": extractor.name,
        "real_images_sha256": tensor_digest([real]),
        "image_shape": list(real.shape[1:]),
    }


# ----------------------------------------------------------------------------------------------- one run
def parse_policy(policy: str) -> tuple[str, dict[str, Any]]:
    """``"float32 conv_algorithm=winograd"`` -> ``("float32", {"conv_algorithm": "winograd"})`` (see
    :func:`run_policy`)."""
    amp, *pairs = str(policy).split()
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"policy {policy!r}: expected '<amp> key=value ...', got {pair!r}.")
        try:
            overrides[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[key] = text
    return amp, overrides


def run_policy(
    config_file: str | Sequence[str],
    policy: str,
    seed: int,
    iterations: int,
    fid_samples: int = 64,
    eval_seed: int = 0,
    feature_weights: str | None = None,
    feature_arch: str = "resnet18",
    step_id: str = "train#step",
    loader_id: str = "train#dataloader",
    amp_id: str = "amp",
    seed_id: str = "seed",
    perturb: float = 0.0,
    **override: Any,
) -> dict[str, Any]:
    """Train a bundle's step ``iterations`` iterations under one precision policy and seed; then the FID.

    Args:
        config_file: a config file or a list merged in order.
        policy: the ``amp`` value of the run, e.g. ``"float32"``, ``"auto"``, ``"bfloat16"``, optionally followed by
            config overrides of this run alone as space-separated ``key=value`` pairs (values read as Python
            literals where they parse, else as strings), e.g. ``"float32 conv_algorithm=winograd"``: the same
            precision computed another way. The whole string is the run's label.
        seed: the bundle's ``seed`` (weights, data order, noise).
        iterations: step calls (each on the loader's next batch, cycling).
        fid_samples: real and generated images of the FID (0: no FID).
        eval_seed: seed of the FID's generator inputs and of the real images' random transforms.
        feature_weights: local weights of the feature extractor (None: the named random-init fallback).
        feature_arch: the feature extractor (see :func:`~common.metrics.features.build_feature_extractor`).
        step_id, loader_id, amp_id, seed_id: config ids.
        perturb: when positive, a control run: after the start digests, every floating-point parameter of the
            step's networks is multiplied by ``1 + perturb * n`` (``n`` standard normal from a generator of its own,
            seeded with ``seed``; the global RNG is untouched); ``2**-9`` is the mean size of one rounding to bf16;
            the run is labelled ``"<policy>+perturbed"``.
        override: config overrides, e.g. ``image_size=64``.

    Returns:
        ``policy`` (the label), ``perturb``, ``seed``, ``precision`` (the resolved policy), ``start``
        (``weights_sha256``, ``rng_sha256``, ``first_batch_sha256``, before any ``perturb``), ``losses`` (name -> one
        value per iteration, ``None`` where not logged), ``seconds`` (training wall time) and, with ``fid_samples``,
        ``fid`` and its ``fid_samples``, ``feature_extractor``, ``real_images_sha256`` and ``image_shape``.
    """
    import time

    from monai.bundle import ConfigWorkflow
    from monai.utils import set_determinism

    files = [config_file] if isinstance(config_file, str) else list(config_file)
    amp, own = parse_policy(policy)
    settings = {**override, **own, amp_id: amp, seed_id: int(seed)}
    workflow = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False, **settings)
    workflow.initialize()
    # the bundle's initialize seeds, then may write the phantom (only in the first run): seed again so that every run
    # builds its networks and loader from the same random state
    set_determinism(seed=int(seed))
    parser = workflow.parser
    step = parser.get_parsed_content(step_id)
    loader = parser.get_parsed_content(loader_id)
    start = {"weights_sha256": _weights_digest(step), "rng_sha256": tensor_digest([torch.get_rng_state()])}
    if perturb > 0:
        noise = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for net in step.networks.values():
                for p in net.parameters():
                    if p.is_floating_point():
                        n = torch.randn(p.shape, generator=noise).to(p.device, p.dtype)
                        p.mul_(1.0 + float(perturb) * n)
    engine = SimpleNamespace(state=SimpleNamespace(iteration=0, epoch=1, epoch_length=len(loader)))
    losses: dict[str, list[float | None]] = {}
    began = time.perf_counter()
    for i, (epoch, batch) in zip(range(int(iterations)), cycle_loader(loader)):
        engine.state.epoch = epoch
        if i == 0:
            start["first_batch_sha256"] = _batch_digest(batch)
        engine.state.iteration += 1
        logged = step(engine, batch)
        for name in logged.keys() - losses.keys():
            losses[name] = [None] * i
        for name, values in losses.items():
            values.append(float(logged[name]) if name in logged else None)
    seconds = time.perf_counter() - began
    result: dict[str, Any] = {
        "policy": f"{policy}+perturbed" if perturb > 0 else policy,
        "perturb": float(perturb),
        "seed": int(seed),
        "precision": step.precision.as_dict(),
        "acceleration": step.acceleration.as_dict(),
        "start": start,
        "iterations": int(iterations),
        "losses": losses,
        "seconds": round(seconds, 3),
    }
    if fid_samples:
        result.update(_sample_fid(step, loader.dataset, int(fid_samples), eval_seed, feature_weights, feature_arch))
    del workflow, parser, step, loader, batch
    gc.collect()
    return result


# ----------------------------------------------------------------------------------------------- comparison maths
def ema(values: Sequence[float | None], beta: float = 0.9) -> list[float | None]:
    """Exponential moving average ``m_t = beta m_{t-1} + (1 - beta) x_t``, ``m`` starting at the first value;
    ``None`` values are skipped (their ``m`` is ``None`` and the average carries over them)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}.")
    out: list[float | None] = []
    m: float | None = None
    for x in values:
        if x is None:
            out.append(None)
            continue
        m = float(x) if m is None else beta * m + (1.0 - beta) * float(x)
        out.append(m)
    return out


def _eps(reference: Sequence[float], eps_fraction: float) -> float:
    return max(eps_fraction * statistics.fmean(abs(r) for r in reference), 1e-8) if reference else 1e-8


def deviation_series(
    curve: Sequence[float | None], reference: Sequence[float | None], beta: float = 0.9, eps_fraction: float = 0.1
) -> list[tuple[int, float]]:
    """``(t, |EMA(curve)_t - EMA(reference)_t| / (|EMA(reference)_t| + eps))`` for every iteration ``t`` (1-based)
    where both curves have a value; ``eps = eps_fraction * mean_t |EMA(reference)_t|`` (at least 1e-8)."""
    a, r = ema(curve, beta), ema(reference, beta)
    pairs = [(t, x, y) for t, (x, y) in enumerate(zip(a, r), 1) if x is not None and y is not None]
    if not pairs:
        return []
    eps = _eps([y for _, _, y in pairs], eps_fraction)
    return [(t, abs(x - y) / (abs(y) + eps)) for t, x, y in pairs]


def curve_deviation(
    curve: Sequence[float | None], reference: Sequence[float | None], beta: float = 0.9, eps_fraction: float = 0.1
) -> float | None:
    """The largest value of :func:`deviation_series`: ``max_t |EMA(curve)_t - EMA(reference)_t| /
    (|EMA(reference)_t| + eps)``; ``None`` when the curves share no iteration."""
    series = deviation_series(curve, reference, beta, eps_fraction)
    return max(d for _, d in series) if series else None


def agreement_iterations(
    curve: Sequence[float | None],
    reference: Sequence[float | None],
    tolerance: float,
    beta: float = 0.9,
    eps_fraction: float = 0.1,
) -> int:
    """How many iterations the smoothed curves agree within ``tolerance`` from the start: the iteration before the
    first one whose :func:`deviation_series` value exceeds it (the curve's length when none does)."""
    for t, d in deviation_series(curve, reference, beta, eps_fraction):
        if d > tolerance:
            return t - 1
    return len(curve)


def first_iteration_deviation(
    curve: Sequence[float | None], reference: Sequence[float | None], eps_fraction: float = 0.1
) -> float | None:
    """``|a_1 - r_1| / (|r_1| + eps)`` of the first logged values, ``eps = eps_fraction * mean_t |r_t|`` over the
    whole reference curve (at least 1e-8): a loss that starts near zero by cancellation (a hinge generator loss at
    initialisation) is measured on the scale it has in the run. ``None`` when either curve has no value."""
    a = next((x for x in curve if x is not None), None)
    r = next((x for x in reference if x is not None), None)
    if a is None or r is None:
        return None
    return abs(a - r) / (abs(r) + _eps([x for x in reference if x is not None], eps_fraction))


def compare_runs(
    runs: Sequence[Mapping[str, Any]],
    tolerance: float = 0.1,
    first_tolerance: float = 0.03,
    beta: float = 0.9,
    eps_fraction: float = 0.1,
    reference: str = REFERENCE_POLICY,
) -> dict[str, Any]:
    """Compare every policy's runs with the ``reference`` policy's runs of the same seed (see the module docstring).

    Args:
        runs: results of :func:`run_policy` (``policy``, ``seed``, ``losses``, ``start`` and optionally ``fid``).
        tolerance: the fixed bound of a loss curve's smoothed relative deviation.
        first_tolerance: the bound of the first iteration's relative difference of every loss.
        beta: the EMA smoothing of the curves.
        eps_fraction: ``eps`` of the relative deviation as a fraction of the reference curve's mean magnitude.
        reference: the reference policy.

    Returns:
        ``settings`` (the arguments), ``seed_noise`` (per loss, the mean curve deviation between reference runs of
        different seeds; ``None`` with one seed), ``fid_noise`` (spread of the reference FIDs over seeds) and
        per other policy: ``identical_start`` (per seed), ``first_iteration`` (per loss: largest relative difference
        over seeds, ``pass``), ``curves`` (per loss: ``deviation`` (largest over seeds), ``mean_deviation`` (mean
        over seeds), ``per_seed``,
        ``agreement_iterations`` (:func:`agreement_iterations` with ``tolerance``, the fewest over seeds),
        ``seed_noise``, ``within_tolerance``, ``within_seed_noise``, ``pass``), ``fid`` (means,
        difference, noise, ``pass``: ``None`` when undetermined) and ``pass`` (all losses and the FID where
        determined).
    """
    by_policy: dict[str, dict[int, Mapping[str, Any]]] = {}
    for run in runs:
        by_policy.setdefault(str(run["policy"]), {})[int(run["seed"])] = run
    if reference not in by_policy:
        raise ValueError(f"no run of the reference policy {reference!r}; policies: {sorted(by_policy)}.")
    ref = by_policy[reference]
    names = sorted({name for run in ref.values() for name in run["losses"]})
    noise: dict[str, float | None] = {}
    for name in names:
        values = [
            curve_deviation(ref[a]["losses"].get(name, []), ref[b]["losses"].get(name, []), beta, eps_fraction)
            for a, b in itertools.permutations(sorted(ref), 2)
        ]
        values = [v for v in values if v is not None]
        noise[name] = statistics.fmean(values) if values else None
    ref_fids = [ref[s]["fid"] for s in sorted(ref) if "fid" in ref[s]]
    fid_noise = max(ref_fids) - min(ref_fids) if len(ref_fids) > 1 else None
    out: dict[str, Any] = {
        "reference": reference,
        "settings": {
            "tolerance": tolerance,
            "first_tolerance": first_tolerance,
            "ema_beta": beta,
            "eps_fraction": eps_fraction,
        },
        "seed_noise": noise,
        "fid_noise": fid_noise,
        "policies": {},
    }
    for policy, seeds_runs in sorted(by_policy.items()):
        if policy == reference:
            continue
        seeds = sorted(s for s in seeds_runs if s in ref)
        result: dict[str, Any] = {
            "identical_start": {str(s): dict(seeds_runs[s]["start"]) == dict(ref[s]["start"]) for s in seeds},
            "first_iteration": {},
            "curves": {},
        }
        for name in names:
            pairs = [(seeds_runs[s]["losses"].get(name, []), ref[s]["losses"][name]) for s in seeds]
            firsts = [first_iteration_deviation(a, r, eps_fraction) for a, r in pairs]
            firsts = [v for v in firsts if v is not None]
            first = max(firsts) if firsts else None
            result["first_iteration"][name] = {
                "deviation": first,
                "pass": None if first is None else first <= first_tolerance,
            }
            per_seed = {str(s): curve_deviation(a, r, beta, eps_fraction) for s, (a, r) in zip(seeds, pairs)}
            agreement = [agreement_iterations(a, r, tolerance, beta, eps_fraction) for a, r in pairs]
            known = [v for v in per_seed.values() if v is not None]
            deviation = max(known) if known else None
            mean_deviation = statistics.fmean(known) if known else None
            within_tolerance = None if deviation is None else deviation <= tolerance
            within_noise = None if mean_deviation is None or noise[name] is None else mean_deviation <= noise[name]
            result["curves"][name] = {
                "deviation": deviation,
                "mean_deviation": mean_deviation,
                "per_seed": per_seed,
                "agreement_iterations": min(agreement) if agreement else None,
                "seed_noise": noise[name],
                "within_tolerance": within_tolerance,
                "within_seed_noise": within_noise,
                "pass": None if deviation is None else bool(within_tolerance or within_noise),
            }
        fids = [seeds_runs[s]["fid"] for s in seeds if "fid" in seeds_runs[s]]
        fid_result: dict[str, Any] = {"pass": None}
        if fids and ref_fids:
            mean, ref_mean = statistics.fmean(fids), statistics.fmean(ref_fids)
            fid_result = {
                "mean": mean,
                "reference_mean": ref_mean,
                "difference": mean - ref_mean,
                "noise": fid_noise,
                "pass": None if fid_noise is None else mean - ref_mean <= fid_noise,
            }
        result["fid"] = fid_result
        verdicts = [c["pass"] for c in result["curves"].values()] + [
            f["pass"] for f in result["first_iteration"].values()
        ]
        verdicts += [fid_result["pass"], *result["identical_start"].values()]
        result["pass"] = all(v for v in verdicts if v is not None)
        out["policies"][policy] = result
    return out


# ----------------------------------------------------------------------------------------------- the whole comparison
def compare_precision(
    config_file: str | Sequence[str],
    iterations: int = 100,
    seeds: Sequence[int] = (0, 1),
    policies: Sequence[str] = (REFERENCE_POLICY, "auto"),
    fid_samples: int = 64,
    tolerance: float = 0.1,
    first_tolerance: float = 0.03,
    beta: float = 0.9,
    eps_fraction: float = 0.1,
    threads: int | None = None,
    perturb_control: float = 0.0,
    **override: Any,
) -> dict[str, Any]:
    """Train the bundle's step under each policy and seed (:func:`run_policy`) and compare (:func:`compare_runs`).

    Args:
        config_file: a config file or a list merged in order (e.g. train.yaml and a variant).
        iterations: training iterations per run.
        seeds: the bundle's seeds; two or more measure the run-to-run noise.
        policies: ``amp`` values, each optionally with its own config overrides (``"float32 conv_algorithm=winograd"``,
            see :func:`run_policy`); ``"float32"`` (the reference) must be one of them.
        fid_samples: real and generated images of each run's FID (0: none).
        tolerance, first_tolerance, beta, eps_fraction: see :func:`compare_runs`.
        threads: ``torch.set_num_threads`` for the runs (default: leave as is).
        perturb_control: when positive, also one float32 control run per seed whose initial weights are perturbed
            by this relative amount (``run_policy``'s ``perturb``, e.g. ``2**-9``): compared with float32 like a
            policy (``"float32+perturbed"``), it shows how far any rounding-sized perturbation takes the curves.
        override: config overrides (``image_size=64``) and :func:`run_policy`'s keyword arguments
            (``eval_seed``, ``feature_weights``, ``feature_arch``, the config ids).

    Returns:
        ``config_file``, ``override``, ``hardware``, ``torch``, ``threads``, ``perturb_control``, ``runs`` (one per
        policy and seed, and the control runs, in the order run: seeds outer, policies inner) and ``comparison``.
    """
    if REFERENCE_POLICY not in [str(p) for p in policies]:
        raise ValueError(f"policies must include {REFERENCE_POLICY!r} (the reference), got {list(policies)}.")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}.")
    if threads is not None:
        torch.set_num_threads(int(threads))
    files = [config_file] if isinstance(config_file, str) else list(config_file)
    runs = []
    for seed in seeds:
        for policy in policies:
            runs.append(run_policy(files, str(policy), int(seed), int(iterations), int(fid_samples), **override))
        if perturb_control > 0:
            control = run_policy(
                files,
                REFERENCE_POLICY,
                int(seed),
                int(iterations),
                int(fid_samples),
                perturb=perturb_control,
                **override,
            )
            runs.append(control)
    return {
        "config_file": files,
        "override": {k: str(v) for k, v in override.items()},
        "hardware": hardware_info("cuda" if torch.cuda.is_available() else "cpu"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "iterations": int(iterations),
        "seeds": [int(s) for s in seeds],
        "perturb_control": float(perturb_control),
        "runs": runs,
        "comparison": compare_runs(runs, tolerance, first_tolerance, beta, eps_fraction),
    }


def merge_comparisons(
    results: Sequence[Mapping[str, Any]],
    tolerance: float = 0.1,
    first_tolerance: float = 0.03,
    beta: float = 0.9,
    eps_fraction: float = 0.1,
) -> dict[str, Any]:
    """One comparison from several :func:`compare_precision` results of the same configuration, e.g. one per seed
    run as separate commands: their runs together, compared again with :func:`compare_runs`. A run repeated in
    several results (same policy and seed) must have the same start and losses; it is kept once.

    Args:
        results: :func:`compare_precision` results with equal ``config_file``, ``override`` and ``iterations``.
        tolerance, first_tolerance, beta, eps_fraction: see :func:`compare_runs`.

    Returns:
        The first result's fields with ``seeds``, ``runs`` (all, in the given order) and ``comparison`` replaced,
        and ``merged`` (the number of results).

    Raises:
        ValueError: without results, when the configurations or iteration counts differ, or when a policy and seed
            appear twice with different losses or starts (equal repeats, which a deterministic rerun gives, are
            kept once).
    """
    if not results:
        raise ValueError("no results to merge.")
    keys = ("config_file", "override", "iterations")
    first = results[0]
    for other in results[1:]:
        different = [k for k in keys if other.get(k) != first.get(k)]
        if different:
            raise ValueError(f"results differ in {different}: only runs of one configuration can be merged.")
    runs: list[Mapping[str, Any]] = []
    seen: dict[tuple[str, int], Mapping[str, Any]] = {}
    for run in (run for result in results for run in result["runs"]):
        key = (str(run["policy"]), int(run["seed"]))
        if key in seen:
            if seen[key]["losses"] != run["losses"] or seen[key]["start"] != run["start"]:
                raise ValueError(f"policy and seed {key} repeated with different losses or start in the merged runs.")
            continue  # the same run again (e.g. the float32 reference of a control command): kept once
        seen[key] = run
        runs.append(run)
    merged = dict(first)
    merged.update(
        seeds=sorted({int(run["seed"]) for run in runs}),
        runs=runs,
        merged=len(results),
        comparison=compare_runs(runs, tolerance, first_tolerance, beta, eps_fraction),
    )
    return merged
