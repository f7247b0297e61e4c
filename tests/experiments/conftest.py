"""Fake bundles for the grid runner tests.

``fake_python`` is an executable that stands in for ``python`` in the runner's commands
(``<python> -m monai.bundle run <workflow> --config_file [...] --ckpt_dir ... --output_dir ... --seed ...``): it
merges the YAML config files as MONAI does (later files replace top-level keys), applies the command-line ids and
does what the workflow of a tiny bundle would do, in milliseconds instead of the seconds a real
``monai.bundle`` start takes. One test runs the real ``monai.bundle`` on MONAI-expression configs.
"""

import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

FAKE_MONAI = textwrap.dedent("""
    import ast, json, os, sys
    from pathlib import Path
    import yaml

    args = sys.argv[1:]
    assert args[:3] == ["-m", "monai.bundle", "run"], args
    workflow, opts, i = args[3], {}, 4
    while i < len(args):
        opts[args[i][2:]] = args[i + 1]
        i += 2
    cfg = {}
    for f in ast.literal_eval(opts.pop("config_file")):
        cfg.update(yaml.safe_load(open(f)) or {})
    for k, v in opts.items():
        cfg[k] = yaml.safe_load(v)
    with open(os.environ["FAKE_CALLS"], "a") as log:
        log.write(json.dumps({"workflow": workflow, "ckpt_dir": cfg["ckpt_dir"], "seed": cfg["seed"]}) + "\\n")
    if cfg.get("fail_" + workflow):
        sys.exit("boom in " + workflow)
    ckpt, out = Path(cfg["ckpt_dir"]), Path(cfg["output_dir"])
    if workflow == "training":
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "model.json").write_text(json.dumps(cfg))
    elif workflow == "inference":
        assert (ckpt / "model.json").is_file(), "train first"
        (out / "synthetic").mkdir(parents=True, exist_ok=True)
        entries = [{"image": f"s{j}.nii.gz", "class": j % 2} for j in range(cfg["num_samples"])]
        (out / "synthetic" / "datalist.json").write_text(json.dumps({"training": entries}))
    elif workflow == "evaluating":
        assert (ckpt / "model.json").is_file(), "train first"
        q, s = cfg["quality"] + cfg.get("bonus", 0.0), cfg["seed"]
        n_syn = 0
        if cfg.get("synthetic_datalist") not in (None, "none"):
            n_syn = len(json.load(open(cfg["synthetic_datalist"]))["training"])
        out.mkdir(parents=True, exist_ok=True)
        metrics = {"acc": 0.5 + 0.1 * q + 0.01 * s, "hd95": 10.0 - q + s, "syn_count": n_syn, "note": "text"}
        (out / "metrics.json").write_text(json.dumps(metrics))
    """)


def write_yaml(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """``(python, calls_file, downstream_bundle, generator_bundle)`` for runner tests."""
    script = tmp_path / "fake_monai.py"
    script.write_text(FAKE_MONAI)
    python = tmp_path / "fakepython"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}" "$@"\n')
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_CALLS", str(calls))

    down = tmp_path / "bundles" / "down"
    base = "ckpt_dir: models\noutput_dir: eval\nseed: 0\nquality: 0.0\ndataset_dir: data\nsynthetic_datalist: none\n"
    write_yaml(down / "configs" / "train.yaml", base)
    write_yaml(down / "configs" / "evaluate.yaml", base)
    write_yaml(down / "configs" / "variants" / "good.yaml", "quality: 1.0\n")
    write_yaml(down / "configs" / "variants" / "synthetic.yaml", "quality: 0.5\n")
    write_yaml(down / "configs" / "variants" / "fail.yaml", "fail_evaluating: true\n")
    gen = tmp_path / "bundles" / "gen"
    write_yaml(gen / "configs" / "train.yaml", "ckpt_dir: models\noutput_dir: eval\nseed: 0\nnum_samples: 2\n")
    write_yaml(gen / "configs" / "inference.yaml", "ckpt_dir: models\noutput_dir: eval\nseed: 0\nnum_samples: 2\n")
    write_yaml(gen / "configs" / "variants" / "broken.yaml", "fail_training: true\n")
    return str(python), calls, down, gen


def n_calls(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


os.environ.setdefault("MPLBACKEND", "Agg")
