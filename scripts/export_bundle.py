"""Export a bundle as a self-contained folder with the runtime packages of ``common`` vendored beside its configs
(``import common`` and what it loads; not the tools ``common.experiments`` and ``common.bundle``).

Example::

    python scripts/export_bundle.py --bundle bundles/dcgan_wgan --output_dir /tmp/export
    cd /tmp/export/dcgan_wgan && python -m monai.bundle run training --config_file configs/train.yaml

Publishing trained weights to the model zoo (the variant files they were trained with are merged into the configs,
``configs/metadata.json``'s ``network_data_format`` is rewritten for the merged network, whose shapes a variant may
change, and ``large_files.yml`` lists the weights with their md5)::

    python scripts/export_bundle.py --bundle bundles/dcgan_wgan --output_dir /tmp/export \
        --weights bundles/dcgan_wgan/models/model.pt --variants "['configs/variants/3d.yaml']" \
        --weights_url https://example.org/dcgan_wgan/model.pt
"""

from __future__ import annotations

import fire
from common.bundle.export import export_bundle


def main(
    bundle: str,
    output_dir: str,
    overwrite: bool = False,
    name: str | None = None,
    weights: str | None = None,
    variants: str | list[str] | tuple[str, ...] = (),
    weights_url: str | None = None,
) -> str:
    """Export ``bundle`` to ``<output_dir>/<name>`` and return that path.

    Args:
        bundle: bundle folder, e.g. ``bundles/dcgan_wgan``.
        output_dir: folder to export into.
        overwrite: replace an existing non-empty export.
        name: exported folder name, defaults to the bundle folder's name.
        weights: trained weights to publish (e.g. ``<bundle>/models/model.pt``), copied to ``models/model.pt``.
        variants: variant file(s) the weights were trained with, relative to the bundle folder; merged into the configs,
            and the metadata's ``network_data_format`` describes the merged network.
        weights_url: URL the weights will be uploaded to, written to ``large_files.yml`` with their md5.
    """
    variant_list = [variants] if isinstance(variants, str) else list(variants)
    try:
        out = export_bundle(
            bundle,
            output_dir,
            overwrite=overwrite,
            bundle_name=name,
            weights=weights,
            variants=variant_list,
            weights_url=weights_url,
        )
        return str(out)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        raise SystemExit(f"export failed: {e}") from e


if __name__ == "__main__":
    fire.Fire(main)
