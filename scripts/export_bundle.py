"""Export a bundle as a self-contained folder with the runtime packages of ``common`` vendored beside its configs
(``import common`` and what it loads; not the tools ``common.experiments`` and ``common.bundle``).

Example::

    python scripts/export_bundle.py --bundle bundles/dcgan_wgan --output_dir /tmp/export
    cd /tmp/export/dcgan_wgan && python -m monai.bundle run training --config_file configs/train.yaml
"""

from __future__ import annotations

import fire
from common.bundle.export import export_bundle


def main(bundle: str, output_dir: str, overwrite: bool = False, name: str | None = None) -> str:
    """Export ``bundle`` to ``<output_dir>/<name>`` and return that path.

    Args:
        bundle: bundle folder, e.g. ``bundles/dcgan_wgan``.
        output_dir: folder to export into.
        overwrite: replace an existing non-empty export.
        name: exported folder name, defaults to the bundle folder's name.
    """
    try:
        return str(export_bundle(bundle, output_dir, overwrite=overwrite, bundle_name=name))
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"export failed: {e}") from e


if __name__ == "__main__":
    fire.Fire(main)
