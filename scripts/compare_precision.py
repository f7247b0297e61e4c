"""Same learning in fp32 and under another precision policy: loss curves and a short training's FID.

Trains a bundle's step ``--iterations`` iterations per policy and seed from identical starts and prints the JSON of
:func:`common.bundle.precision_comparison.compare_precision` (every run's loss curves, start digests and FID on the
named feature extractor; the comparison with its tolerances and pass/fail per loss), then a short table on stderr.

Examples::

    B=bundles/dcgan_wgan/configs
    python scripts/compare_precision.py --config_file "['$B/train.yaml']" --iterations 300 --seeds "[0, 1]" \
        --fid_samples 128 --output dcgan_precision.json
    # explicit dtypes, so that the comparison means the same on every CPU
    python scripts/compare_precision.py --config_file "['$B/train.yaml','$B/variants/tiny.yaml']" --iterations 2 \
        --seeds "[0]" --policies "['float32', 'bfloat16']" --fid_samples 16
    # config overrides as for the bundle, e.g. a smaller CycleGAN
    C=bundles/cda_gan/configs
    python scripts/compare_precision.py --config_file "['$C/train.yaml','$C/variants/cyclegan.yaml']" \
        --image_size 64 --iterations 150
    # the same precision computed another way: Winograd against direct convolutions, both fp32
    python scripts/compare_precision.py --config_file "['$C/train.yaml','$C/variants/cyclegan.yaml']" \
        --conv_algorithm direct --policies "['float32', 'float32 conv_algorithm=winograd']" --iterations 150
    # seeds as separate commands, then compared together
    python scripts/compare_precision.py --config_file "['$B/train.yaml']" --seeds 0 --output s0.json
    python scripts/compare_precision.py --config_file "['$B/train.yaml']" --seeds 1 --output s1.json
    python scripts/compare_precision.py --merge "['s0.json', 's1.json']" --output both.json
"""

from __future__ import annotations

import json
import sys
from typing import Any

from common.bundle.benchmark import report_json
from common.bundle.precision_comparison import compare_precision, merge_comparisons
from common.utils.cli import run_fire


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def summary_table(result: dict[str, Any]) -> str:
    """A plain-text table of the comparison: per policy and loss the first-iteration and curve deviations with
    their verdicts, then the FIDs."""
    comparison = result["comparison"]
    rows = [
        "policy | loss | first iteration | curve deviation max / mean over seeds | agrees for (iterations) | seed noise"
        " | pass"
    ]
    for policy, res in comparison["policies"].items():
        for name, curve in res["curves"].items():
            first = res["first_iteration"][name]
            rows.append(
                " | ".join(
                    [
                        policy,
                        name,
                        _fmt(first["deviation"]),
                        f"{_fmt(curve['deviation'])} / {_fmt(curve['mean_deviation'])}",
                        str(curve["agreement_iterations"]),
                        _fmt(curve["seed_noise"]),
                        str(curve["pass"] and first["pass"] is not False),
                    ]
                )
            )
        f = res["fid"]
        rows.append(
            f"{policy} | FID mean {_fmt(f.get('mean'), '.3f')} vs {comparison['reference']} "
            f"{_fmt(f.get('reference_mean'), '.3f')} | difference {_fmt(f.get('difference'), '.3f')} | "
            f"seed noise {_fmt(f.get('noise'), '.3f')} | pass {f['pass']} | identical start {res['identical_start']}"
            f" | all pass {res['pass']}"
        )
    return "\n".join(rows)


def main(
    config_file: Any = None,
    iterations: int = 100,
    seeds: Any = (0, 1),
    policies: Any = ("float32", "auto"),
    fid_samples: int = 64,
    output: str | None = None,
    merge: Any = None,
    **kwargs: Any,
) -> None:
    """Print (and with ``output`` write) the comparison JSON; the table goes to stderr.

    Args:
        config_file: one config file or a list merged in order.
        iterations: training iterations per run.
        seeds: the bundle seeds (two or more measure the run-to-run noise).
        policies: ``amp`` values, ``"float32"`` among them; each may carry its own config overrides, e.g.
            ``"float32 conv_algorithm=winograd"``.
        fid_samples: images per set of each run's FID (0: none).
        output: also write the JSON to this file.
        merge: instead of training, JSON files written by earlier runs of this script with the same configuration
            (e.g. one per seed): their runs are compared together (``merge_comparisons``).
        kwargs: ``tolerance``, ``first_tolerance``, ``beta``, ``eps_fraction``, ``threads``, ``eval_seed``,
            ``feature_weights``, ``feature_arch`` and config overrides (e.g. ``--image_size 64``); with ``merge``
            only the four tolerance settings.
    """
    if (config_file is None) == (merge is None):
        raise ValueError("give exactly one of --config_file or --merge.")
    if merge is not None:
        files = [merge] if isinstance(merge, str) else list(merge)
        results = []
        for path in files:
            with open(path) as f:
                results.append(json.load(f))
        result = merge_comparisons(results, **kwargs)
    else:
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        policies = [policies] if isinstance(policies, str) else list(policies)
        result = compare_precision(config_file, iterations, seeds, policies, fid_samples, **kwargs)
    report_json(result, output)
    print(summary_table(result), file=sys.stderr)


if __name__ == "__main__":
    run_fire(main)  # `--help` would otherwise land in **override
