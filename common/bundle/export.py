"""Export a bundle as a self-contained folder with the runtime of the shared ``common`` package vendored beside its
configs.

The exported layout is::

    <output_dir>/<bundle_name>/
        LICENSE
        configs/...
        docs/...
        common/...        # ``common/__init__.py`` and the runtime packages it imports (utils, losses, data, ...)

Only the packages that ``import common`` loads are vendored (:func:`runtime_packages`): the tools
(``common.experiments``, ``common.bundle``, see ``TOOL_PACKAGES``) are never imported by bundle configs, and would
bring requirements (matplotlib) that are not in the bundle's metadata.

Run outputs (``models/``, ``eval/``, ``data/``, ``runs/``, ``outputs/``) and caches are not exported.

Publishing trained weights (``weights``, ``variants``, ``weights_url``): the trained ``models/model.pt`` is copied into
the export, the variant files it was trained with are merged into every top-level config (so that the inference
config's ``network_def`` alone fits the weights, as the zoo's checks read it; the fit is checked), the
``network_data_format`` of ``configs/metadata.json`` is rewritten for the merged network (a variant may change its
input and output shapes; :mod:`common.bundle.network_format`), and ``large_files.yml`` lists the file with its URL
and md5 hash in the zoo's format::

    large_files:
    - path: models/model.pt
      url: <where the file is uploaded>
      hash_val: <md5 of the file>
      hash_type: md5

Because ``python -m monai.bundle run ...`` puts the working directory first on ``sys.path``, running the exported bundle from
inside its folder imports the vendored ``common`` rather than any installed copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import common
from common.bundle.network_format import describe_network, write_network_data_format

__all__ = [
    "RUN_OUTPUT_DIRS",
    "IGNORED_NAMES",
    "TOOL_PACKAGES",
    "VENDORED_PACKAGE",
    "common_package_dir",
    "copy_ignore",
    "export_bundle",
    "file_hash",
    "LARGE_FILE_HASHES",
    "merge_variants",
    "runtime_packages",
    "write_large_files",
]

#: top-level bundle folders holding run outputs (checkpoints, evaluation results, data, logs); never exported.
RUN_OUTPUT_DIRS: tuple[str, ...] = ("models", "eval", "data", "runs", "outputs")
#: names ignored at any depth (caches and editor/OS debris).
IGNORED_NAMES: tuple[str, ...] = (
    "__pycache__",
    "*.pyc",
    "*.pyo",
    "*.egg-info",
    ".pytest_cache",
    ".ipynb_checkpoints",
    ".DS_Store",
)
#: name of the vendored package folder inside an exported bundle.
VENDORED_PACKAGE = "common"
#: sub-packages of ``common`` that are tools (not imported by ``import common``); never vendored.
TOOL_PACKAGES: tuple[str, ...] = ("experiments", "bundle")
#: hash types that the zoo's download of ``large_files`` entries (``monai.apps.download_url``) checks.
LARGE_FILE_HASHES: tuple[str, ...] = ("md5", "sha1", "sha256", "sha512")
#: file the zoo reads to download large files before verifying a bundle.
LARGE_FILES_NAME = "large_files.yml"
#: where the published weights go in the bundle (the zoo's preferred file).
WEIGHTS_PATH = "models/model.pt"
#: config files at the top of ``configs/`` that are not workflow configs (never merged with variants).
NON_WORKFLOW_CONFIGS: tuple[str, ...] = ("metadata.json",)


def file_hash(path: str | os.PathLike, hash_type: str = "md5", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file with one of ``LARGE_FILE_HASHES``."""
    if hash_type not in LARGE_FILE_HASHES:
        raise ValueError(f"hash_type must be one of {LARGE_FILE_HASHES}, got {hash_type!r}.")
    digest = hashlib.new(hash_type)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def common_package_dir() -> Path:
    """Return the source folder of the imported ``common`` package (the one vendored by :func:`export_bundle`)."""
    return Path(common.__file__).resolve().parent


def runtime_packages() -> tuple[str, ...]:
    """The sub-packages of ``common`` that ``import common`` loads (its ``__all__``), less ``TOOL_PACKAGES``.

    Returns:
        package names such as ``("data", "engines", ..., "utils")``, in the order of ``common.__all__``.
    """
    package_dir = common_package_dir()
    names = tuple(name for name in common.__all__ if name not in TOOL_PACKAGES)
    missing = [
        n for n in names if not (package_dir / n / "__init__.py").is_file() and not (package_dir / f"{n}.py").is_file()
    ]
    if missing:
        raise RuntimeError(f"common.__all__ names {missing}, which are not modules of {package_dir}.")
    return names


def _vendor_common(target: Path) -> None:
    """Copy ``common``'s top-level files (``__init__.py``) and its runtime packages to ``target``, without caches."""
    package_dir = common_package_dir()
    ignore = shutil.ignore_patterns(*IGNORED_NAMES)
    target.mkdir(parents=True)
    top_files = [p.name for p in package_dir.iterdir() if p.is_file()]
    for name in sorted(set(top_files) - set(ignore(str(package_dir), top_files))):
        shutil.copy2(package_dir / name, target / name)
    for name in runtime_packages():
        if (package_dir / name).is_dir():
            shutil.copytree(package_dir / name, target / name, ignore=ignore)


def copy_ignore(
    root: str | os.PathLike, top_level_excludes: tuple[str, ...] = RUN_OUTPUT_DIRS
) -> Callable[[str, list[str]], set[str]]:
    """Build a ``shutil.copytree`` ``ignore`` callable for copying a bundle.

    Args:
        root: the bundle folder being copied.
        top_level_excludes: names skipped directly under ``root`` (the run-output folders by default).

    Returns:
        A callable ignoring ``IGNORED_NAMES`` at any depth and ``top_level_excludes`` at the top level.
    """
    root = Path(root).resolve()
    ignore_names = shutil.ignore_patterns(*IGNORED_NAMES)

    def _fn(folder: str, names: list[str]) -> set[str]:
        ignored = set(ignore_names(folder, names))
        if Path(folder).resolve() == root:
            ignored.update(n for n in names if n in top_level_excludes)
        return ignored

    return _fn


def merge_variants(bundle_dir: str | os.PathLike, variants: Sequence[str | os.PathLike]) -> list[str]:
    """Merge variant files into every workflow config at the top of a bundle's ``configs/``, in place.

    Each ``configs/<name>.{json,yaml,yml}`` (not ``NON_WORKFLOW_CONFIGS``) becomes its merge with ``variants``, in
    order, as ``monai.bundle`` merges a ``--config_file`` list; an overlay (``evaluate.yaml``, merged on
    ``train.yaml``) then gives the same result as before.  YAML comments are not kept: a header names the merge.

    Args:
        bundle_dir: bundle folder to rewrite.
        variants: variant config files.

    Returns:
        the names of the rewritten config files.
    """
    from monai.bundle import ConfigParser
    from monai.bundle.utils import merge_kv

    variant_files = [Path(v) for v in variants]
    configs = sorted(
        p
        for p in (Path(bundle_dir) / "configs").iterdir()
        if p.is_file() and p.suffix in (".json", ".yaml", ".yml") and p.name not in NON_WORKFLOW_CONFIGS
    )
    for path in configs:
        parser = ConfigParser(ConfigParser.load_config_file(path))
        for variant in variant_files:
            for key, value in ConfigParser.load_config_file(variant).items():
                try:
                    merge_kv(parser, key, value)
                except (KeyError, ValueError):  # an overlay (evaluate.yaml) lacks the section: its base gets it
                    continue
        merged = parser.get()
        if path.suffix == ".json":
            ConfigParser.export_config_file(merged, path, fmt="json", indent=4)
            continue
        ConfigParser.export_config_file(merged, path, fmt="yaml", sort_keys=False, default_flow_style=None)
        header = f"# {path.name} merged with {', '.join(v.name for v in variant_files)} by the export\n"
        path.write_text(header + path.read_text())
    return [p.name for p in configs]


def write_large_files(
    bundle_dir: str | os.PathLike, url: str, path: str = WEIGHTS_PATH, hash_type: str = "md5"
) -> Path:
    """Write ``large_files.yml`` (the zoo's format) listing ``path`` of the bundle with its URL and hash.

    Args:
        bundle_dir: bundle folder holding ``path``.
        url: where the file will be downloaded from (the place it is uploaded to).
        path: the file, relative to ``bundle_dir``.
        hash_type: one of ``LARGE_FILE_HASHES``; the zoo's bundles use md5.

    Returns:
        the path of the written file.
    """
    import yaml

    if not url.startswith(("http://", "https://")):
        raise ValueError(f"the weights URL must be an http(s) URL, got {url!r}.")
    entry = {
        "path": path,
        "url": url,
        "hash_val": file_hash(Path(bundle_dir) / path, hash_type),
        "hash_type": hash_type,
    }
    out = Path(bundle_dir) / LARGE_FILES_NAME
    out.write_text(yaml.safe_dump({"large_files": [entry]}, sort_keys=False))
    return out


def _check_weights_fit(bundle_dir: Path, weights: Path, net_id: str = "network_def") -> None:
    """Raise ValueError unless ``weights`` load into ``net_id`` of the bundle's inference config (strictly)."""
    import torch
    from monai.bundle import ConfigParser

    inference = next((bundle_dir / "configs").glob("inference.*"), None)
    if inference is None:
        raise ValueError(f"{bundle_dir} has no configs/inference.* to check the weights against.")
    parser = ConfigParser()
    parser.read_config(str(inference))
    parser.read_meta(str(bundle_dir / "configs" / "metadata.json"))
    parser["bundle_root"] = str(bundle_dir)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        parser.get_parsed_content(net_id).load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(
            f"the weights {weights} do not fit '{net_id}' of {inference.name}; pass the variant files they were "
            f"trained with: {e}"
        ) from e


def _describe_merged_network(bundle_dir: Path) -> None:
    """Rewrite the ``network_data_format`` of the bundle's metadata for ``network_def`` of its (merged) inference
    config (:func:`common.bundle.network_format.describe_network`); a bundle without an inference config or without
    that metadata key is left as it is."""
    inference = next((bundle_dir / "configs").glob("inference.*"), None)
    meta_file = bundle_dir / "configs" / "metadata.json"
    if inference is None or "network_data_format" not in json.loads(meta_file.read_text(encoding="utf-8")):
        return
    write_network_data_format(meta_file, describe_network(inference, meta_file, bundle_dir))


def export_bundle(
    bundle_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    bundle_name: str | None = None,
    weights: str | os.PathLike | None = None,
    variants: Sequence[str | os.PathLike] = (),
    weights_url: str | None = None,
) -> Path:
    """Write a self-contained copy of a bundle to ``<output_dir>/<bundle_name>``.

    Everything in the bundle folder is copied except the run-output folders ``RUN_OUTPUT_DIRS`` at its top level and
    caches (``IGNORED_NAMES``); the runtime of the ``common`` package (from ``common.__file__``'s folder: its
    top-level files and :func:`runtime_packages`, without caches and without the tools ``TOOL_PACKAGES``) is
    vendored as ``<output_dir>/<bundle_name>/common``.  The copy is built in a temporary sibling folder and renamed into
    place, so an interrupted export never leaves a half-written target.

    Args:
        bundle_dir: bundle folder (holding ``configs/metadata.json``).
        output_dir: folder to export into; created if missing.
        overwrite: replace an existing non-empty ``<output_dir>/<bundle_name>``; otherwise refuse.
        bundle_name: name of the exported folder, defaults to the name of ``bundle_dir``.
        weights: trained weights to publish (a state dict, e.g. the bundle's ``models/model.pt``), written to
            ``WEIGHTS_PATH`` of the export; needs ``weights_url``.
        variants: the variant files the weights were trained with (relative to ``bundle_dir`` or absolute), merged
            into the exported workflow configs (:func:`merge_variants`); the exported metadata's
            ``network_data_format`` then describes the merged inference config's ``network_def``.
        weights_url: the URL ``weights`` will be downloaded from, written to ``large_files.yml`` with its md5.

    Returns:
        The path of the exported bundle folder.

    Raises:
        FileNotFoundError: if ``bundle_dir`` has no ``configs/metadata.json``.
        ValueError: if ``output_dir`` lies inside ``bundle_dir``, the bundle already has a top-level ``common``,
            ``weights`` come without ``weights_url`` (or a non-http one), or do not fit the inference network.
        FileExistsError: if the target exists, is not empty, and ``overwrite`` is False.
    """
    src = Path(bundle_dir).resolve()
    if not (src / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"not a bundle folder (no configs/metadata.json): {src}")
    if (src / VENDORED_PACKAGE).exists():
        raise ValueError(f"bundle {src} already has a top-level '{VENDORED_PACKAGE}', which the export would shadow.")
    out = Path(output_dir).resolve()
    if out == src or src in out.parents:
        raise ValueError(f"output_dir {out} must not be inside the bundle folder {src}.")
    if weights is not None and not weights_url:
        raise ValueError("weights need weights_url, the URL they will be downloaded from (written to large_files.yml).")
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    variant_files = [Path(v) if Path(v).is_absolute() else src / v for v in variants]
    missing = [str(v) for v in variant_files if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"variant file(s) not found: {', '.join(missing)}")
    name = bundle_name or src.name
    target = out / name
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not empty; pass overwrite=True to replace it.")

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out))
    backup: Path | None = None
    try:
        staged = tmp / name
        shutil.copytree(src, staged, ignore=copy_ignore(src))
        _vendor_common(staged / VENDORED_PACKAGE)
        if variant_files:
            merge_variants(staged, variant_files)
            _describe_merged_network(staged)
        if weights is not None and weights_url:
            (staged / WEIGHTS_PATH).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(weights, staged / WEIGHTS_PATH)
            _check_weights_fit(staged, staged / WEIGHTS_PATH)
            write_large_files(staged, weights_url)
        if target.is_dir() and not target.is_symlink() and not any(target.iterdir()):
            target.rmdir()
        elif target.exists() or target.is_symlink():
            backup = tmp / f"{name}.previous"
            os.replace(target, backup)
        os.replace(staged, target)
    except BaseException:
        if backup is not None and not target.exists():
            os.replace(backup, target)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
