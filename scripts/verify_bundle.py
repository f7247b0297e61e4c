"""Check bundles for model-zoo readiness.

Examples::

    python scripts/verify_bundle.py bundles/dcgan_wgan
    python scripts/verify_bundle.py bundles/dcgan_wgan --mode full
    python scripts/verify_bundle.py bundles/dcgan_wgan --mode full --variants configs/variants/tiny.yaml
    python scripts/verify_bundle.py bundles/* --mode min
    python scripts/verify_bundle.py common/bundle scripts tests/scripts --format_only

Full mode checks the bundle's local ``models/model.pt`` if it has one: pass the variant files it was trained with
(``--variants``), or ``--fresh_weights true`` to check freshly initialised weights of the default network instead.
Full mode also compares the input and output shapes that ``metadata.json`` declares with those of ``network_def``
(merged with ``--variants``): a repository bundle's metadata describes its default network, an export made with
``scripts/export_bundle.py --variants`` describes the merged one.
The checks reproduce the MONAI model zoo's ``ci/verify_bundle.py`` and code-format check at model-zoo commit
dfae206df112837d817e78d3727c9f32b3b52e82 (``common.bundle.verify.ZOO_COMMIT``).

Prints the problems found and exits with status 1 if there are any.
"""

from __future__ import annotations

import sys

import fire
from common.bundle.verify import check_format, verify_bundle


def main(
    *bundles: str,
    mode: str = "min",
    device: str | None = None,
    fresh_weights: bool = False,
    variants: str | list[str] | tuple[str, ...] = (),
    format_only: bool = False,
) -> None:
    """Verify bundle folders (or, with ``format_only``, only run black/isort/flake8 on folders).

    Args:
        bundles: bundle folders (or any folders with ``format_only``).
        mode: ``"min"`` or ``"full"``, as for the model zoo's ``ci/verify_bundle.py``.
        device: device for the network checks of full mode.
        fresh_weights: in full mode, export fresh weights even if a local ``models/model.pt`` exists.
        variants: in full mode, the variant file(s) ``models/model.pt`` was trained with (relative to the bundle).
        format_only: only run the code-format check on the given folders.
    """
    if not bundles:
        raise SystemExit("give at least one bundle folder, e.g. bundles/dcgan_wgan")
    failed = False
    for bundle in bundles:
        problems = (
            check_format(bundle)
            if format_only
            else verify_bundle(
                bundle,
                mode=mode,
                device=device,
                fresh_weights=fresh_weights,
                variants=[variants] if isinstance(variants, str) else list(variants),
            )
        )
        what = "format" if format_only else f"{mode} verification"
        if problems:
            failed = True
            print(f"{bundle}: {what} FAILED ({len(problems)} problem(s))")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"{bundle}: {what} passed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    fire.Fire(main)
