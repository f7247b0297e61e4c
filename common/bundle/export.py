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

Run outputs (``models/``, ``eval/``, ``data/``, ``runs/``, ``outputs/``) and caches are not exported.  Because
``python -m monai.bundle run ...`` puts the working directory first on ``sys.path``, running the exported bundle from
inside its folder imports the vendored ``common`` rather than any installed copy.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import common

__all__ = [
    "RUN_OUTPUT_DIRS",
    "IGNORED_NAMES",
    "TOOL_PACKAGES",
    "VENDORED_PACKAGE",
    "common_package_dir",
    "copy_ignore",
    "export_bundle",
    "runtime_packages",
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


def export_bundle(
    bundle_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    bundle_name: str | None = None,
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

    Returns:
        The path of the exported bundle folder.

    Raises:
        FileNotFoundError: if ``bundle_dir`` has no ``configs/metadata.json``.
        ValueError: if ``output_dir`` lies inside ``bundle_dir``, or the bundle already has a top-level ``common``.
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
