"""Where a bundle lives, so that its configs work from the repository root and from the bundle folder.

``python -m monai.bundle run training --config_file bundles/X/configs/train.yaml`` may be started from any
folder, but a config's text cannot know its own location. MONAI's :class:`~monai.bundle.ConfigWorkflow`
knows it (``config_root_path``, the folder of the first config file) and so do the ``monai.bundle`` commands
that take a ``config_file`` argument; :func:`bundle_root` reads it from the calling workflow.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

__all__ = ["bundle_root"]


def _root_of_config_dir(config_dir: Path) -> Path:
    return config_dir.parent if config_dir.name == "configs" else config_dir


def bundle_root(default: str | os.PathLike | None = None) -> str:
    """The root folder of the bundle whose config is being parsed.

    Resolution order: the ``config_root_path`` of the ``ConfigWorkflow`` on the call stack; else the first
    ``config_file`` argument of a ``monai.bundle`` command on the call stack (``verify_net_in_out``,
    ``ckpt_export``...); else ``default``; else the current folder.

    Returns:
        An absolute path.
    """
    frame = inspect.currentframe()
    try:
        f = frame.f_back if frame is not None else None
        config_file_candidate: Path | None = None
        while f is not None:
            owner = f.f_locals.get("self")
            # read the instance dict: MONAI workflows and parsers resolve unknown attributes dynamically
            root = vars(owner).get("config_root_path") if hasattr(owner, "__dict__") else None
            if root is not None and type(owner).__name__.endswith("Workflow"):
                return str(_root_of_config_dir(Path(root)).resolve())
            if config_file_candidate is None and f.f_globals.get("__name__", "").startswith("monai.bundle"):
                cfg = f.f_locals.get("config_file")
                if isinstance(cfg, (list, tuple)) and cfg:
                    cfg = cfg[0]
                if isinstance(cfg, (str, os.PathLike)) and str(cfg).strip("[]'\" ").endswith(
                    (".yaml", ".json", ".yml")
                ):
                    config_file_candidate = Path(str(cfg).split(",")[0].strip("[]'\" "))
            f = f.f_back
        if config_file_candidate is not None:
            return str(_root_of_config_dir(config_file_candidate.resolve().parent))
    finally:
        del frame
    return str(Path(default if default is not None else os.getcwd()).resolve())
