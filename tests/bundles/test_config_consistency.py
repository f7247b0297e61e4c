"""One source of truth per bundle: the configs that repeat ids of train.yaml keep them equal.

``inference.yaml`` stays standalone (the model zoo's ``verify_net_in_out`` and ``ckpt_export`` read it alone, with
``network_def``), so it repeats the ids it needs from ``train.yaml``. These tests keep every id defined in both equal,
for the bare pair and with each variant file merged after each of them (as the bundles' commands merge them), except
the ids of the short allow-list below. ``evaluate.yaml`` is an overlay always merged on ``train.yaml``: it must not
repeat a ``train.yaml`` id with the same value, and no variant may replace the workflow it runs.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pytest
from helpers import REPO
from monai.bundle import ConfigParser
from monai.bundle.utils import merge_kv

BUNDLES = sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs" / "train.yaml").is_file())

#: ids that may differ between train.yaml and inference.yaml, with the reason; ``bundle:id`` for one bundle only.
ALLOWED: dict[str, str] = {
    # the workflows themselves: each config runs its own engine on its own checked inputs
    "initialize": "train.yaml makes the phantom and checks the training data; inference checks the checkpoint",
    "run": "training runs the trainer, inference the synthesis or prediction",
    "imports": "each config imports the modules its own expressions use",
    # inference's loop, not the model: how many images one forward pass takes
    "batch_size": "the inference batch size is a throughput setting of the synthesis or prediction loop",
    "amp": "training defaults to the precision policy (amp: auto, common/engines/precision.py); inference sets its "
    "own autocast",
    "num_workers": "the training's DataLoader workers follow the device (common/data/loading.py); inference loads "
    "its own inputs",
    "stylegan2:ckpt_dir": "train.yaml trains one of B-SG, M-SG and C-SG into models/, models/m_sg or models/c_sg; "
    "inference.yaml reads B-SG's, or M-SG's and C-SG's for MC-SG, from models/",
    "stylegan2:output_dir": "as ckpt_dir: the training's logs and samples go to eval/[m_sg|c_sg], the synthetic pairs "
    "of B-SG and MC-SG to eval/ and eval/mc_sg",
    **{
        f"{bundle}:{name}": "inference wraps the same network in common.engines.accelerate_inference (the training "
        "step applies memory_format and conv_algorithm itself)"
        for bundle, names in {"cda_gan": ("gen_n", "gen_p", "attn_n", "attn_p"), "detection": ("network",)}.items()
        for name in names
    },
    "segmentation:transforms": "inference.yaml keeps an empty `transforms` so that the training-only "
    "`transforms#...` lists of the variants land there, unused (its preprocessing has no label and is invertible)",
}

#: variants of inference.yaml alone, with the reason (they are not merged after train.yaml or evaluate.yaml).
INFERENCE_ONLY_VARIANTS: dict[str, str] = {
    "stylegan2/mc_sg.yaml": "MC-SG (paper 004 sec. 3.3) is a synthesis pipeline of the trained M-SG and C-SG "
    "generators; it has no training or evaluation of its own"
}

#: variants that replace a workflow id, with the reason (any other variant doing so breaks a workflow).
WORKFLOW_IDS = ("initialize", "run", "finalize", "training", "inference", "evaluating")
ALLOWED_WORKFLOW_OVERRIDES: dict[str, str] = {
    "classification/svm.yaml": "its `run` fits the SVM when `stage` is train (train.yaml) and refits, checks and "
    "scores it when `stage` is evaluate (evaluate.yaml)"
}


def _differences(path: str, a: Any, b: Any) -> list[str]:
    """The nested ids below ``path`` where the raw values ``a`` and ``b`` differ (dicts and equal-length lists are
    compared item by item, so that a differing entry of ``network_def`` is named, not the whole dict)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += _differences(f"{path}#{k}", a.get(k, "<absent>"), b.get(k, "<absent>"))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(f"{path}#{i}", x, y)]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


@functools.lru_cache(maxsize=None)
def _load(path: str) -> dict:
    """One config file's content (read once per test session: the pure-Python YAML loader is slow)."""
    return ConfigParser.load_config_file(path)


def merged_config(files: Sequence[str | os.PathLike]) -> dict:
    """The raw content of a config list merged as ``ConfigParser.read_config`` merges it (``load_config_files``):
    later files replace ids, ``a#b`` ids replace nested items, ``+a`` ids extend lists and dicts."""
    parser = ConfigParser(config={})
    for f in files:
        for k, v in copy.deepcopy(_load(str(f))).items():
            merge_kv(parser, k, v)
    return parser.get()


def shared_key_differences(
    first: Sequence[str | os.PathLike], second: Sequence[str | os.PathLike], allowed: Iterable[str] = ()
) -> list[str]:
    """The top-level ids defined in both merged config lists whose raw (unparsed) values differ.

    Each list is merged as ``monai.bundle run`` merges it (see ``merged_config``); the values are compared as
    written, before any reference or expression is evaluated, so ``'@x'`` equals ``'@x'`` whatever ``x`` is.

    Args:
        first: config files of the reference (e.g. train.yaml and a variant).
        second: config files to check against it (e.g. inference.yaml and the same variant).
        allowed: top-level ids not compared.

    Returns:
        One ``id#nested#path: <first value> != <second value>`` line per difference; empty when all shared ids agree.
    """
    ca, cb = merged_config(first), merged_config(second)
    allowed = set(allowed)
    return [d for k in ca if k in cb and k not in allowed for d in _differences(k, ca[k], cb[k])]


def _variants(bundle: str) -> list[str]:
    return sorted(p.name for p in (REPO / "bundles" / bundle / "configs" / "variants").glob("*.yaml"))


def _allowed(bundle: str) -> set[str]:
    return {k.split(":")[-1] for k in ALLOWED if ":" not in k or k.startswith(bundle + ":")}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_inference_repeats_train_ids_unchanged(bundle):
    """Every id in both train.yaml and inference.yaml is equal, bare and with each variant merged after both."""
    cfg = REPO / "bundles" / bundle / "configs"
    problems = []
    for variant in [None, *_variants(bundle)]:
        extra = [] if variant is None else [cfg / "variants" / variant]
        if f"{bundle}/{variant}" in INFERENCE_ONLY_VARIANTS:
            merged_config([cfg / "inference.yaml", *extra])  # it merges into inference.yaml
            continue
        try:
            diffs = shared_key_differences(
                [cfg / "train.yaml", *extra], [cfg / "inference.yaml", *extra], _allowed(bundle)
            )
        except (KeyError, ValueError, TypeError) as e:  # a variant's nested id has no parent in inference.yaml
            diffs = [f"does not merge: {type(e).__name__}: {e}"]
        problems += [f"{variant or '(no variant)'}: {d}" for d in diffs]
    assert not problems, f"bundles/{bundle}: train.yaml and inference.yaml disagree:\n" + "\n".join(problems)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_evaluate_is_an_overlay_on_train(bundle):
    """evaluate.yaml holds only what evaluation adds or changes, and defines the `evaluating` workflow."""
    cfg = REPO / "bundles" / bundle / "configs"
    train, overlay = _load(str(cfg / "train.yaml")), _load(str(cfg / "evaluate.yaml"))
    repeated = sorted(k for k in overlay if k in train and overlay[k] == train[k])
    assert not repeated, f"bundles/{bundle}/configs/evaluate.yaml repeats train.yaml's {repeated}: delete them"
    assert overlay["evaluating"] == "@run" and "run" in overlay and "initialize" in overlay


@pytest.mark.parametrize("bundle", BUNDLES)
def test_variants_keep_the_workflows(bundle):
    """No variant replaces a workflow id (it would run instead of the evaluation or inference it is merged into),
    except the commented allow-list; every merged evaluate list still runs evaluate.yaml's `evaluating`."""
    cfg = REPO / "bundles" / bundle / "configs"
    for variant in _variants(bundle):
        ids = set(_load(str(cfg / "variants" / variant)))
        replaced = sorted(ids & set(WORKFLOW_IDS))
        if f"{bundle}/{variant}" not in ALLOWED_WORKFLOW_OVERRIDES:
            assert not replaced, f"bundles/{bundle}/configs/variants/{variant} replaces {replaced}"
        if f"{bundle}/{variant}" in INFERENCE_ONLY_VARIANTS:
            continue
        merged = merged_config([cfg / "train.yaml", cfg / "evaluate.yaml", cfg / "variants" / variant])
        assert merged["evaluating"] == "@run", variant


# ---- the checker itself, on a tiny pair of configs


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


TRAIN = """
lambda_attention: 10.0
spatial_dims: 2
network_def: {_target_: UNet, spatial_dims: '@spatial_dims', channels: [8, 16]}
optimizer: {_target_: torch.optim.Adam, lr: 0.001}
run: ['$@trainer.run()']
"""


def test_checker_passes_when_shared_ids_are_equal(tmp_path):
    train = _write(tmp_path / "train.yaml", TRAIN)
    inference = _write(
        tmp_path / "inference.yaml",
        "lambda_attention: 10.0\nspatial_dims: 2\nnetwork_def: {_target_: UNet, spatial_dims: '@spatial_dims', "
        "channels: [8, 16]}\nrun: ['$@evaluator.run()']\nnum_samples: 4\n",
    )
    assert shared_key_differences([train], [inference], allowed=["run"]) == []


def test_checker_reports_a_differing_shared_id(tmp_path):
    train = _write(tmp_path / "train.yaml", TRAIN)
    inference = _write(
        tmp_path / "inference.yaml",
        "lambda_attention: 1.0\nspatial_dims: 2\nnetwork_def: {_target_: UNet, spatial_dims: '@spatial_dims', "
        "channels: [8, 32]}\nrun: []\n",
    )
    diffs = shared_key_differences([train], [inference], allowed=["run"])
    assert diffs == ["lambda_attention: 10.0 != 1.0", "network_def#channels#1: 16 != 32"]
    # not allow-listed: `run` is reported too
    assert "run: ['$@trainer.run()'] != []" in shared_key_differences([train], [inference])


def test_merged_config_is_monais_merge():
    cfg = REPO / "bundles" / "segmentation" / "configs"
    files = [cfg / "train.yaml", cfg / "evaluate.yaml", cfg / "variants" / "classic.yaml", cfg / "variants" / "3d.yaml"]
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    assert merged_config(files) == {k: v for k, v in parser.get().items() if k != "_meta_"}  # read_config adds it


def test_checker_merges_variants_with_nested_ids(tmp_path):
    train = _write(tmp_path / "train.yaml", TRAIN)
    inference = _write(
        tmp_path / "inference.yaml", "spatial_dims: 2\nnetwork_def: {_target_: UNet, channels: [8, 16]}\n"
    )
    variant = _write(tmp_path / "3d.yaml", "spatial_dims: 3\nnetwork_def#channels: [4, 8]\n")
    # the variant makes both spatial_dims 3 and both channel lists equal; the missing nested id is still reported
    assert shared_key_differences([train, variant], [inference, variant]) == [
        "network_def#spatial_dims: '@spatial_dims' != '<absent>'"
    ]


def _yaml_files() -> list[Path]:
    """Every YAML config that MONAI's bundle runner reads: the bundles' and the speed overrides (the experiment grids
    are read by ``common.experiments`` and use YAML merge keys, which MONAI's loader does not take)."""
    roots = [REPO / "bundles", REPO / "scripts" / "experiments" / "speed"]
    return sorted(p for root in roots for p in root.rglob("*.yaml"))


def test_no_config_repeats_a_key_in_one_mapping():
    """YAML keeps the last of two equal keys without a word (a ``device`` written twice into ``train#step`` hid that
    the loader never got it): MONAI's own duplicate-checking loader, made strict, must read every config."""
    import yaml
    from monai.utils.misc import CheckKeyDuplicatesYamlLoader

    problems = []
    old = os.environ.get("MONAI_FAIL_ON_DUPLICATE_CONFIG")
    os.environ["MONAI_FAIL_ON_DUPLICATE_CONFIG"] = "1"
    try:
        for path in _yaml_files():
            try:
                with open(path, encoding="utf-8") as f:
                    yaml.load(f, CheckKeyDuplicatesYamlLoader)
            except (ValueError, yaml.YAMLError) as e:
                problems.append(f"{path.relative_to(REPO)}: {str(e).splitlines()[0]}")
    finally:
        if old is None:
            os.environ.pop("MONAI_FAIL_ON_DUPLICATE_CONFIG")
        else:
            os.environ["MONAI_FAIL_ON_DUPLICATE_CONFIG"] = old
    assert len(_yaml_files()) > 50 and not problems, problems
