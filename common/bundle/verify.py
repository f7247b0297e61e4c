"""Model-zoo readiness checks for a bundle folder.

This is the project's own implementation of the checks that the MONAI model zoo runs on submitted bundles (its
``ci/verify_bundle.py`` in "min" and "full" modes and the key conventions of its contribution guide), plus the
project's own requirements (``docs/README.md``, ``docs/data_license.txt``, a train config, no committed weights).

The zoo's checks followed are those of Project-MONAI/model-zoo at commit ``ZOO_COMMIT``
(dfae206df112837d817e78d3727c9f32b3b52e82): ``ci/verify_bundle.py`` (required and preferred files, ``large_files``
entries, version and changelog, the metadata schema; in full mode ``verify_net_in_out`` and the TorchScript export by
``ckpt_export`` of ``network_def`` from ``configs/inference.*``), its exclusion lists of ``ci/bundle_custom_data.py``
(``ZOO_EXCLUSIONS``), and its code-format check (:mod:`common.bundle.zoo_format`).

``verify_bundle(bundle_dir, mode)`` returns a list of human-readable problems; an empty list means the bundle passes.

The metadata schema is kept in the repository (``schemas/meta_schema_20240725.json``) so that validation never needs
the network.  Source of the stored file: ``public/schema/meta_schema_20240725.json`` of the Project-MONAI website
repository (Project-MONAI/project-monai.github.io, commit abfc0515409b160a9af8f5cef631dff45d503162), which states that
its schema files are verbatim copies of the MONAI-extra-test-data 0.8.1 release assets; ``META_SCHEMA_SHA256`` pins it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from common.bundle.export import IGNORED_NAMES, LARGE_FILE_HASHES, RUN_OUTPUT_DIRS, copy_ignore, file_hash
from common.bundle.network_format import describe_network, network_format_differences
from common.bundle.zoo_format import ZOO_COMMIT, check_zoo_format
from common.utils import sha256_file

__all__ = [
    "META_SCHEMA_URL",
    "META_SCHEMA_FILE",
    "META_SCHEMA_SHA256",
    "REQUIRED_FILES",
    "INFERENCE_KEYS",
    "TRAIN_KEYS",
    "MAX_FILE_SIZE",
    "WEIGHT_SUFFIXES",
    "find_config",
    "schema_file_for",
    "check_schema_file",
    "check_required_files",
    "check_metadata",
    "check_configs",
    "check_config_ids",
    "check_files",
    "check_large_files",
    "check_network",
    "check_format",
    "verify_bundle",
    "ZOO_COMMIT",
    "ZOO_EXCLUSIONS",
]

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
#: schema URL that the project's bundles put in ``configs/metadata.json`` (newest one used by the model zoo).
META_SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
)
#: local copy of the schema behind ``META_SCHEMA_URL``.
META_SCHEMA_FILE = SCHEMA_DIR / "meta_schema_20240725.json"
#: sha256 of ``META_SCHEMA_FILE``.
META_SCHEMA_SHA256 = "cd64aa8a5904426f6fc6855dabe46af8c742d5bad644b4e9cfb78ebad09ad678"

CONFIG_SUFFIXES: tuple[str, ...] = ("json", "yaml", "yml")
#: files every bundle must have (the zoo needs LICENSE and metadata; the project adds the docs).
REQUIRED_FILES: tuple[str, ...] = ("LICENSE", "configs/metadata.json", "docs/README.md", "docs/data_license.txt")
#: keys the zoo requires in the inference config.
INFERENCE_KEYS: tuple[str, ...] = ("bundle_root", "device", "network_def", "inferer")
#: keys the zoo requires in the train config.
TRAIN_KEYS: tuple[str, ...] = ("bundle_root", "device", "dataset_dir")
#: id that ``python -m monai.bundle run`` executes by default.
RUN_ID = "run"
#: conventional checkpoint file name, loaded by inference and exported by ``ckpt_export``.
CHECKPOINT_NAME = "model.pt"
#: the model zoo limits each file to 25 MB.
MAX_FILE_SIZE = 25 * 1024 * 1024
#: ids evaluated as written in full mode (cheap to build, and used by every workflow).
EVALUATED_IDS: tuple[str, ...] = ("bundle_root", "device", "dataset_dir", "ckpt_dir", "output_dir", "network_def")
#: suffixes of network weights, which must not be committed (the zoo downloads them via ``large_files.yml``).
WEIGHT_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ts", ".ckpt", ".onnx", ".safetensors")
#: metadata keys the zoo needs beyond the schema ("name" is shown in the model browser).
METADATA_KEYS: tuple[str, ...] = ("name", "changelog")

#: the zoo's route for bundles whose network cannot take its full-mode network checks: the bundle's name in the
#: lists of its ``ci/bundle_custom_data.py`` (``exclude_verify_shape_list``: no ``verify_net_in_out``;
#: ``exclude_verify_torchscript_list``: no TorchScript export).  A zoo submission adds the name to those lists.
#: ``{bundle name: {check: reason}}``; the reasons are repeated in the bundles' model cards.
ZOO_EXCLUSIONS: dict[str, dict[str, str]] = {
    "detection": {
        "verify_net_in_out": "the two-stage Faster R-CNN returns one dict of boxes, labels and scores per image (a "
        "list, not a tensor), as MONAI's lung_nodule_ct_detection, which the zoo excludes the same way",
        "torchscript": "proposal selection, RoI align and per-image NMS in the forward pass use Python lists of "
        "variable length and dict outputs, which TorchScript cannot script",
    },
    "ga_unet": {
        "verify_net_in_out": "the generator takes three inputs, the real image x_i, the latent z and the class c "
        "(paper 002 sec. II-B), and refuses to make up the class the zoo's one-input call leaves out",
        "torchscript": "the generator's optional latent and class inputs and its shape checks use Python features "
        "that TorchScript cannot script",
    },
}

_PERSONAL_PATH = re.compile(r"(^|[\s'\"=(])(/home/|/Users/|~/|[A-Za-z]:[\\/]+Users[\\/])")
_WINDOWS_ABS = re.compile(r"^[A-Za-z]:[\\/]")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def find_config(bundle_dir: str | os.PathLike, name: str) -> Path | None:
    """Return ``configs/<name>.{json,yaml,yml}`` of a bundle, or None when absent (the first suffix found wins)."""
    for suffix in CONFIG_SUFFIXES:
        path = Path(bundle_dir) / "configs" / f"{name}.{suffix}"
        if path.is_file():
            return path
    return None


def _load_config(path: Path) -> Any:
    from monai.bundle import ConfigParser

    return ConfigParser.load_config_file(path)


def check_schema_file(schema_file: str | os.PathLike = META_SCHEMA_FILE, sha256: str = META_SCHEMA_SHA256) -> list[str]:
    """Check that the stored metadata schema exists and has the pinned sha256."""
    path = Path(schema_file)
    if not path.is_file():
        return [f"schema: stored schema {path} is missing"]
    digest = sha256_file(path)
    if digest != sha256:
        return [f"schema: {path.name} sha256 is {digest}, expected {sha256}"]
    return []


def schema_file_for(url: str) -> Path | None:
    """Return the stored schema file whose name matches the last part of a metadata ``schema`` URL, if any."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    path = SCHEMA_DIR / name
    return path if name and path.is_file() else None


def check_required_files(bundle_dir: str | os.PathLike) -> list[str]:
    """Check the files the zoo and the project require: ``REQUIRED_FILES`` plus inference and train configs."""
    root = Path(bundle_dir)
    problems = [f"files: missing {f}" for f in REQUIRED_FILES if not (root / f).is_file()]
    for name in ("inference", "train"):
        found = [s for s in CONFIG_SUFFIXES if (root / "configs" / f"{name}.{s}").is_file()]
        if not found:
            problems.append(f"files: missing configs/{name}.json or configs/{name}.yaml")
        elif len(found) > 1:
            problems.append(f"files: several {name} configs ({', '.join(f'{name}.{s}' for s in found)}); keep one")
    readme = root / "docs" / "README.md"
    if readme.is_file() and not readme.read_text(encoding="utf-8", errors="replace").strip():
        problems.append("files: docs/README.md is empty")
    return problems


def check_metadata(bundle_dir: str | os.PathLike, schema_file: str | os.PathLike | None = None) -> list[str]:
    """Check ``configs/metadata.json``: version and changelog, the schema, and the network I/O names.

    Args:
        bundle_dir: bundle folder.
        schema_file: schema to validate against; defaults to the stored copy matching the metadata ``schema`` URL.
    """
    meta_file = Path(bundle_dir) / "configs" / "metadata.json"
    if not meta_file.is_file():
        return []  # reported by check_required_files
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError as e:
        return [f"metadata: configs/metadata.json is not valid JSON: {e}"]
    if not isinstance(metadata, dict):
        return ["metadata: configs/metadata.json must hold a JSON object"]
    problems = [f"metadata: missing '{k}'" for k in METADATA_KEYS if k not in metadata]

    version, changelog = metadata.get("version"), metadata.get("changelog")
    if version is None:
        problems.append("metadata: missing 'version'")
    elif isinstance(changelog, dict) and version not in changelog:
        problems.append(f"metadata: version '{version}' is missing from 'changelog'")

    url = metadata.get("schema")
    if schema_file is None:
        if not isinstance(url, str):
            problems.append("metadata: missing 'schema' (the URL of the metadata schema)")
        else:
            schema_file = schema_file_for(url)
            if schema_file is None:
                problems.append(f"metadata: schema '{url}' has no stored copy in {SCHEMA_DIR}; use {META_SCHEMA_URL}")
            elif Path(schema_file) == META_SCHEMA_FILE:
                problems += check_schema_file()
    if schema_file is not None:
        problems += _validate_schema(metadata, Path(schema_file))

    data_format = metadata.get("network_data_format")
    if isinstance(data_format, dict):
        inputs, outputs = data_format.get("inputs"), data_format.get("outputs")
        if not isinstance(inputs, dict) or "image" not in inputs:
            names = sorted(inputs) if isinstance(inputs, dict) else []
            problems.append(f"metadata: network_data_format inputs must include 'image' (found {names})")
        if not isinstance(outputs, dict) or "pred" not in outputs:
            names = sorted(outputs) if isinstance(outputs, dict) else []
            problems.append(f"metadata: network_data_format outputs must include 'pred' (found {names})")
    return problems


def _validate_schema(metadata: dict, schema_file: Path) -> list[str]:
    from jsonschema.validators import validator_for

    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    problems = []
    for error in sorted(validator.iter_errors(metadata), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "<root>"
        problems.append(f"metadata: schema {schema_file.name}: {where}: {error.message}")
    return problems


def _walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(v, f"{path}#{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, f"{path}#{i}" if path else str(i))
    elif isinstance(value, str):
        yield path, value


def _is_absolute_or_personal(text: str) -> bool:
    """Whether a config string is an absolute path literal, or mentions a personal folder anywhere."""
    literal = not text.startswith(("$", "@", "%"))
    absolute = literal and len(text) > 1 and (text.startswith("/") or _WINDOWS_ABS.match(text) is not None)
    return absolute or _PERSONAL_PATH.search(text) is not None


def _absolute_path_problems(config: Any, name: str) -> list[str]:
    return [
        f"configs: {name}: '{where}' holds an absolute or personal path: {text!r}"
        for where, text in _walk_strings(config)
        if _is_absolute_or_personal(text)
    ]


def _missing_ids(parser: Any, ids: Sequence[str]) -> list[str]:
    return [i for i in ids if i not in parser]


def _section_problems(parser: Any, name: str, section: str) -> list[str]:
    """The zoo's naming rules for the ``train`` and ``validate`` sections of a train config."""
    if section == "train":
        required = (
            "train#trainer",
            "train#dataset",
            "train#handlers",
            "train#trainer#max_epochs",
            "train#dataset#data",
        )
        engine = "train#trainer"
        optional = {"postprocessing": "postprocessing", "key_train_metric": "key_metric"}
    else:
        required = ("validate#evaluator", "validate#dataset", "validate#handlers", "validate#dataset#data")
        engine = "validate#evaluator"
        optional = {"postprocessing": "postprocessing", "inferer": "inferer", "key_val_metric": "key_metric"}
    problems = [f"configs: {name}: missing '{i}'" for i in _missing_ids(parser, required)]
    for arg, key in optional.items():
        if parser.get(f"{engine}#{arg}") is not None and f"{section}#{key}" not in parser:
            problems.append(f"configs: {name}: '{engine}#{arg}' is used, so '{section}#{key}' should be defined")
    if parser.get(f"{section}#dataset#transform") is not None and f"{section}#preprocessing" not in parser:
        problems.append(
            f"configs: {name}: '{section}#dataset#transform' is used, so '{section}#preprocessing' is needed"
        )
    handlers = parser.get(f"{section}#handlers")
    if section == "train" and isinstance(handlers, list):
        for handler in handlers:
            target = str(handler.get("_target_", "")) if isinstance(handler, dict) else ""
            if target.rsplit(".", 1)[-1] == "ValidationHandler" and str(handler.get("interval")) != "@val_interval":
                problems.append(f"configs: {name}: ValidationHandler 'interval' should be '@val_interval'")
    return problems


def check_configs(bundle_dir: str | os.PathLike) -> list[str]:
    """Check the config files: they load, carry the zoo's keys and ids, and hold no absolute or personal paths.

    Every ``.json``/``.yaml``/``.yml`` file under ``configs/`` (override files in sub-folders included) must load and
    hold no absolute or personal paths.  Inference config: ``INFERENCE_KEYS``, a ``run`` id and a reference to
    ``models/model.pt``.  Train config: ``TRAIN_KEYS``, ``ckpt_dir``, a ``run`` id, and the zoo's
    ``train#...``/``validate#...`` rules for those sections.
    """
    from monai.bundle import ConfigParser

    root = Path(bundle_dir)
    problems: list[str] = []
    configs: dict[str, Any] = {}
    for path in sorted((root / "configs").rglob("*")):
        if path.suffix.lstrip(".") not in CONFIG_SUFFIXES or not path.is_file():
            continue
        name = path.relative_to(root / "configs").as_posix()
        try:
            configs[name] = _load_config(path)
        except Exception as e:  # noqa: BLE001 - any parse failure is a problem to report
            problems.append(f"configs: {name} does not load: {type(e).__name__}: {e}")
            continue
        problems += _absolute_path_problems(configs[name], name)

    inference = find_config(root, "inference")
    if inference is not None and isinstance(configs.get(inference.name), dict):
        config = configs[inference.name]
        parser = ConfigParser(config)
        problems += [f"configs: {inference.name}: missing key '{k}'" for k in INFERENCE_KEYS if k not in config]
        if RUN_ID not in parser:
            problems.append(f"configs: {inference.name}: missing the '{RUN_ID}' id run by 'monai.bundle run'")
        if not any(CHECKPOINT_NAME in text for _, text in _walk_strings(config)):
            problems.append(f"configs: {inference.name}: never refers to the checkpoint 'models/{CHECKPOINT_NAME}'")

    train = find_config(root, "train")
    if train is not None and isinstance(configs.get(train.name), dict):
        config = configs[train.name]
        parser = ConfigParser(config)
        problems += [f"configs: {train.name}: missing key '{k}'" for k in (*TRAIN_KEYS, "ckpt_dir") if k not in config]
        if RUN_ID not in parser:
            problems.append(f"configs: {train.name}: missing the '{RUN_ID}' id run by 'monai.bundle run'")
        for section in ("train", "validate"):
            if section in config:
                problems += _section_problems(parser, train.name, section)
    return problems


def _shipped_files(root: Path) -> list[Path]:
    """Files that would be shipped: tracked or unignored files under git, else all files outside run outputs."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "."],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
        in_git = True
    except (OSError, subprocess.CalledProcessError):  # no git, or not a work tree
        in_git = False
    if in_git:
        return sorted({root / p for p in out.decode().split("\0") if p and (root / p).is_file()})
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).parts
        if not path.is_file() or rel[0] in RUN_OUTPUT_DIRS:
            continue
        if any(Path(part).match(pattern) for part in rel for pattern in IGNORED_NAMES):
            continue
        files.append(path)
    return files


def check_files(bundle_dir: str | os.PathLike, max_file_size: int = MAX_FILE_SIZE) -> list[str]:
    """Check the files that would be shipped: none larger than ``max_file_size``, no network weights.

    Inside a git work tree the shipped files are those tracked or not ignored; elsewhere, every file outside the
    run-output folders.
    """
    root = Path(bundle_dir).resolve()
    problems = []
    for path in _shipped_files(root):
        size = path.stat().st_size
        if size > max_file_size:
            problems.append(f"files: {_rel(path, root)} is {size / 2**20:.1f} MiB, over the {max_file_size} byte limit")
        if path.suffix.lower() in WEIGHT_SUFFIXES:
            problems.append(f"files: weights {_rel(path, root)} must not be committed (list them in large_files.yml)")
    return problems


def check_large_files(bundle_dir: str | os.PathLike) -> list[str]:
    """Check ``large_files.{yml,yaml,json}`` as the zoo reads it to download the weights before its checks.

    Each entry of its ``large_files`` list needs ``path`` (relative, inside the bundle), ``url`` (http or https) and
    ``hash_val`` with a ``hash_type`` the download understands (``LARGE_FILE_HASHES``); a listed file present in the
    bundle folder must have that hash.  No large-files file is fine (a bundle without weights).
    """
    root = Path(bundle_dir)
    found = [root / f"large_files.{s}" for s in CONFIG_SUFFIXES if (root / f"large_files.{s}").is_file()]
    if not found:
        return []
    name = found[0].name
    try:
        entries = _load_config(found[0]).get("large_files")
    except Exception as e:  # noqa: BLE001 - any parse failure is a problem to report
        return [f"large_files: {name} does not load: {type(e).__name__}: {e}"]
    if not isinstance(entries, list) or not entries:
        return [f"large_files: {name} needs a non-empty 'large_files' list"]
    problems = []
    for i, entry in enumerate(entries):
        where = f"large_files: {name} entry {i}"
        if not isinstance(entry, dict):
            problems.append(f"{where} is not a mapping")
            continue
        missing = [k for k in ("path", "url", "hash_val", "hash_type") if not entry.get(k)]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        path, hash_type = str(entry["path"]), str(entry["hash_type"]).lower()
        if Path(path).is_absolute() or ".." in Path(path).parts:
            problems.append(f"{where}: path {path!r} must be relative to the bundle folder")
            continue
        if not str(entry["url"]).startswith(("http://", "https://")):
            problems.append(f"{where}: url {entry['url']!r} is not an http(s) URL")
        if hash_type not in LARGE_FILE_HASHES:
            problems.append(f"{where}: hash_type {hash_type!r} is not one of {', '.join(LARGE_FILE_HASHES)}")
        elif (root / path).is_file() and file_hash(root / path, hash_type) != str(entry["hash_val"]).lower():
            problems.append(f"{where}: {path} does not have the listed {hash_type} {entry['hash_val']}")
    return problems


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    """Put a bundle folder first on ``sys.path`` (as the zoo does) so bundle-local modules can be imported."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)


def _root_cause(error: BaseException) -> str:
    """``Type: message`` of the innermost cause of an exception (config evaluation errors wrap the real one)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"


def check_config_ids(bundle_dir: str | os.PathLike, ids: Sequence[str] = EVALUATED_IDS) -> list[str]:
    """Evaluate the basic ids of the inference and train configs as written (no override of ``bundle_root``).

    This catches expressions that cannot run, such as a module used in an expression but missing from ``imports``,
    without running any workflow.

    Args:
        bundle_dir: bundle folder.
        ids: ids to evaluate in each config where present.
    """
    from monai.bundle import ConfigParser

    src = Path(bundle_dir).resolve()
    meta_file = src / "configs" / "metadata.json"
    problems = []
    with _on_sys_path(src):
        for name in ("inference", "train"):
            config_file = find_config(src, name)
            if config_file is None:
                continue
            parser = ConfigParser()
            try:
                parser.read_config(str(config_file))
                if meta_file.is_file():
                    parser.read_meta(str(meta_file))
            except Exception:  # noqa: BLE001 - reported by check_configs / check_metadata
                continue
            for i in ids:
                if i not in parser:
                    continue
                try:
                    parser.get_parsed_content(i)
                except Exception as e:  # noqa: BLE001
                    problems.append(f"configs: {config_file.name}: '{i}' does not evaluate: {_root_cause(e)}")
    return problems


def check_network(
    bundle_dir: str | os.PathLike,
    net_id: str = "network_def",
    device: str | None = None,
    torchscript: bool = True,
    fresh_weights: bool = False,
    variants: Sequence[str | os.PathLike] = (),
    bundle_name: str | None = None,
) -> list[str]:
    """Run the network checks of the zoo's full mode on a temporary copy of the bundle.

    1. ``monai.bundle.verify_net_in_out``: ``net_id`` from the inference config on a dummy input shaped from metadata;
       then the metadata's input and output shapes are compared with those of ``net_id`` (:func:`describe_network`:
       its constructor arguments and a dry forward pass), which the zoo's check leaves out (it compares output
       channels and dtype only). A bundle excluded from ``verify_net_in_out`` skips both: the dry pass also calls
       the network with its one metadata input.
    2. ``monai.bundle.ckpt_export`` to TorchScript, from ``models/model.pt`` if present (it must match ``net_id``),
       else from the state dict of a freshly initialised ``net_id`` written into the temporary copy; the TorchScript
       file is loaded back and, when the metadata input shape is fixed, run and compared with the eager network.  A
       provided ``models/model.ts`` is loaded too.

    A check that the zoo skips for the bundle (``ZOO_EXCLUSIONS``) is skipped.  The repository bundle is never
    written to.

    Args:
        bundle_dir: bundle folder.
        net_id: id of the network in the inference config.
        device: device for the forward pass, defaults to ``cuda:0`` when available, else ``cpu``.
        torchscript: run the TorchScript export checks.
        fresh_weights: ignore a local ``models/model.pt`` and export freshly initialised weights.
        variants: the variant files that ``models/model.pt`` was trained with (relative to the bundle folder or
            absolute), merged after the inference config as for the inference run, so that ``net_id`` fits the
            weights; the zoo reads the inference config alone (``export_bundle`` merges the variants into it).
        bundle_name: the name the zoo knows the bundle by, for ``ZOO_EXCLUSIONS``; defaults to the folder name.
    """
    import torch
    from monai.bundle import ConfigParser, ckpt_export, verify_net_in_out

    src = Path(bundle_dir).resolve()
    inference = find_config(src, "inference")
    if inference is None or not (src / "configs" / "metadata.json").is_file():
        return ["network: needs configs/metadata.json and an inference config"]
    device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    excluded = ZOO_EXCLUSIONS.get(bundle_name or src.name, {})
    variant_files = [Path(v) if Path(v).is_absolute() else src / v for v in variants]
    missing = [str(v) for v in variant_files if not v.is_file()]
    if missing:
        return [f"network: variant file(s) not found: {', '.join(missing)}"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="verify_bundle_") as tmp, _on_sys_path(src):
        root = Path(tmp) / src.name
        shutil.copytree(src, root, ignore=copy_ignore(src))
        meta_file = root / "configs" / "metadata.json"
        config_file = [str(root / "configs" / inference.name), *(str(v) for v in variant_files)]
        common_args = {"meta_file": str(meta_file), "config_file": config_file, "bundle_root": str(root)}
        if "verify_net_in_out" not in excluded:
            try:
                verify_net_in_out(net_id=net_id, device=device, **common_args)
            except Exception as e:  # noqa: BLE001 - report, do not crash
                problems.append(f"network: verify_net_in_out failed: {type(e).__name__}: {e}")
            # the declared shapes against a dry forward pass, which calls the network with one input as well
            problems += _data_format_problems(config_file, meta_file, root, net_id)
        if not torchscript or "torchscript" in excluded:
            return problems

        models = root / "models"
        models.mkdir(exist_ok=True)
        ckpt = models / CHECKPOINT_NAME
        parser = ConfigParser()
        parser.read_config(config_file)
        parser.read_meta(str(meta_file))
        parser["bundle_root"] = str(root)
        local_ckpt = src / "models" / CHECKPOINT_NAME
        try:
            net = parser.get_parsed_content(net_id)
            if local_ckpt.is_file() and not fresh_weights:
                shutil.copy2(local_ckpt, ckpt)
                try:
                    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
                except Exception as e:  # noqa: BLE001
                    hint = (
                        "merge the variant files it was trained with (--variants), or check fresh weights "
                        "(--fresh_weights true)"
                    )
                    problems.append(
                        f"network: models/{CHECKPOINT_NAME} does not fit '{net_id}' of {inference.name}"
                        f"{' + ' + ', '.join(v.name for v in variant_files) if variant_files else ''}: "
                        f"{_root_cause(e)}; {hint}"
                    )
                    return problems
            else:
                torch.save(net.state_dict(), ckpt)
            ts_file = models / "verify_model.ts"
            ckpt_export(net_id=net_id, filepath=str(ts_file), ckpt_file=str(ckpt), **common_args)
            scripted = torch.jit.load(str(ts_file), map_location="cpu")
            problems += _compare_scripted(net, scripted, parser)
        except Exception as e:  # noqa: BLE001
            problems.append(f"network: TorchScript export failed: {type(e).__name__}: {e}")
        provided = src / "models" / "model.ts"
        if provided.is_file():
            try:
                torch.jit.load(str(provided), map_location="cpu")
            except Exception as e:  # noqa: BLE001
                problems.append(f"network: models/model.ts does not load: {type(e).__name__}: {e}")
    return problems


def _data_format_problems(config_file: Sequence[str], meta_file: Path, root: Path, net_id: str) -> list[str]:
    """Differences between the metadata's ``network_data_format`` and the shapes ``net_id`` takes and returns
    (:func:`common.bundle.network_format.describe_network`); ``verify_net_in_out`` checks only output channels."""
    try:
        declared = json.loads(meta_file.read_text(encoding="utf-8")).get("network_data_format", {})
        derived = describe_network(config_file, meta_file, root, net_id)
    except Exception as e:  # noqa: BLE001 - report, do not crash
        return [f"network: the shapes of '{net_id}' cannot be derived: {_root_cause(e)}"]
    names = " + ".join(Path(f).name for f in config_file)
    return [
        f"network: metadata.json network_data_format does not describe '{net_id}' of {names}: {d}"
        for d in network_format_differences(declared, derived)
    ]


def _compare_scripted(net: Any, scripted: Any, parser: Any) -> list[str]:
    """Run the eager and TorchScript networks on one dummy input when the metadata input shape is fixed."""
    import torch

    image = parser.get("_meta_#network_data_format#inputs#image", {}) or {}
    shape = image.get("spatial_shape", [])
    fixed = all(isinstance(s, int) for s in shape) and isinstance(image.get("num_channels"), int)
    if not fixed or image.get("dtype", "float32") != "float32":
        return []
    torch.manual_seed(0)
    x = torch.rand(1, image["num_channels"], *shape)
    net = net.to("cpu").eval()
    scripted = scripted.to("cpu").eval()
    with torch.no_grad():
        expected, actual = net(x), scripted(x)
    if not isinstance(expected, torch.Tensor) or not isinstance(actual, torch.Tensor):
        return []
    if expected.shape != actual.shape:
        return [f"network: TorchScript output shape {tuple(actual.shape)} differs from {tuple(expected.shape)}"]
    if not torch.allclose(expected, actual, rtol=1e-4, atol=1e-5):
        return ["network: TorchScript output differs from the eager network"]
    return []


def check_format(folder: str | os.PathLike, line_length: int = 120, extra_flake8_args: Sequence[str] = ()) -> list[str]:
    """Run black, isort and flake8 (each only if installed) in check mode on the Python files of ``folder``.

    Args:
        folder: folder to check.
        line_length: maximum line length passed to all three tools.
        extra_flake8_args: further flake8 command-line arguments.
    """
    folder = Path(folder)
    if next(folder.rglob("*.py"), None) is None:
        return []
    commands = {
        "black": ["--check", "--quiet", "-l", str(line_length), str(folder)],
        "isort": ["--check-only", "--quiet", "--profile", "black", "-l", str(line_length), str(folder)],
        "flake8": ["--max-line-length", str(line_length), *extra_flake8_args, str(folder)],
    }
    problems = []
    for tool, args in commands.items():
        if find_spec(tool) is None:
            continue
        result = subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True)
        if result.returncode != 0:
            detail = (result.stdout + result.stderr).strip()
            problems.append(f"format: {tool} failed on {folder}" + (f":\n{detail}" if detail else ""))
    return problems


def verify_bundle(
    bundle_dir: str | os.PathLike,
    mode: str = "min",
    device: str | None = None,
    schema_file: str | os.PathLike | None = None,
    torchscript: bool = True,
    fresh_weights: bool = False,
    variants: Sequence[str | os.PathLike] = (),
) -> list[str]:
    """Verify a bundle folder the way the model zoo does, plus the project's own requirements.

    ``"min"``: required files, metadata (version in changelog, schema, ``image``/``pred`` I/O names), config keys and
    ids, absolute paths, file sizes, committed weights and ``large_files.yml``.  ``"full"``: also
    :func:`check_config_ids`, :func:`check_network` and the zoo's format check
    (:func:`common.bundle.zoo_format.check_zoo_format`) on the bundle's Python files.

    Full mode checks the local ``models/model.pt`` when there is one: it must fit ``network_def`` of the inference
    config merged with ``variants``, the variant files it was trained with.  ``fresh_weights`` checks freshly
    initialised weights instead (e.g. the weights of a smoke-test run, when checking the bundle's default network).

    Args:
        bundle_dir: bundle folder.
        mode: ``"min"`` or ``"full"``.
        device: device for the network checks of full mode.
        schema_file: metadata schema to validate against, defaults to the stored copy named by the metadata.
        torchscript: in full mode, check the TorchScript export.
        fresh_weights: in full mode, export freshly initialised weights even if a local ``models/model.pt`` exists.
        variants: in full mode, the variant files ``models/model.pt`` was trained with (see :func:`check_network`).

    Returns:
        The problems found; empty when the bundle passes.
    """
    if mode not in ("min", "full"):
        raise ValueError(f"mode must be 'min' or 'full', got {mode!r}.")
    root = Path(bundle_dir)
    if not root.is_dir():
        return [f"files: bundle folder {root} does not exist"]
    problems = check_required_files(root)
    problems += check_metadata(root, schema_file=schema_file)
    problems += check_configs(root)
    problems += check_files(root)
    problems += check_large_files(root)
    if mode == "full":
        problems += check_config_ids(root)
        problems += check_network(
            root, device=device, torchscript=torchscript, fresh_weights=fresh_weights, variants=variants
        )
        problems += check_zoo_format([root])
    return problems
