"""Fake bundles for the grid runner tests, shared by the test files (the fixture is in ``conftest.py``).

``FAKE_MONAI`` is the script behind a fake ``python`` that stands in for the interpreter in the runner's commands
(``<python> -m monai.bundle run <workflow> --config_file [...] --ckpt_dir ... --output_dir ... --seed ...``): it
merges the YAML config files as MONAI does (later files replace top-level keys), applies the command-line ids, logs
the call (workflow, ckpt_dir, seed, config files, ``$GDA_CPU_BF16``) to ``$FAKE_CALLS`` and does what the workflow of a tiny bundle
would do, in milliseconds instead of the seconds a real ``monai.bundle`` start takes: ``inference`` and ``evaluating``
read the model of ``checkpoint`` when the config names one (an inference-only generator on another's checkpoint), and
``evaluating`` writes ``per_image.json`` from a ``per_image`` id (``{image id: value}``, plus ``quality``) and adds
the ``extra_metrics`` id's entries to its metrics.
"""

import textwrap
from pathlib import Path

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
    cfg, files = {}, ast.literal_eval(opts.pop("config_file"))
    for f in files:
        cfg.update(yaml.safe_load(open(f)) or {})
    for k, v in opts.items():
        cfg[k] = yaml.safe_load(v)
    with open(os.environ["FAKE_CALLS"], "a") as log:
        call = {"workflow": workflow, "ckpt_dir": cfg["ckpt_dir"], "seed": cfg["seed"], "files": files,
                "cpu_bf16": os.environ.get("GDA_CPU_BF16")}
        log.write(json.dumps(call) + "\\n")
    if cfg.get("fail_" + workflow):
        sys.exit("boom in " + workflow)
    ckpt, out = Path(cfg["ckpt_dir"]), Path(cfg["output_dir"])
    if workflow == "training":
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "model.json").write_text(json.dumps(cfg))
    elif workflow == "inference":
        assert Path(cfg.get("checkpoint") or ckpt / "model.json").is_file(), "train first"
        folder = out / cfg.get("synthetic_subdir", "synthetic")
        folder.mkdir(parents=True, exist_ok=True)
        entries = [{"image": f"s{j}.nii.gz", "class": j % 2} for j in range(cfg["num_samples"])]
        (folder / "datalist.json").write_text(json.dumps({"training": entries}))
    elif workflow == "evaluating":
        assert Path(cfg.get("checkpoint") or ckpt / "model.json").is_file(), "train first"
        q, s = cfg["quality"] + cfg.get("bonus", 0.0), cfg["seed"]
        n_syn = 0
        if cfg.get("synthetic_datalist") not in (None, "none"):
            n_syn = len(json.load(open(cfg["synthetic_datalist"]))["training"])
        out.mkdir(parents=True, exist_ok=True)
        metrics = {"acc": 0.5 + 0.1 * q + 0.01 * s, "hd95": 10.0 - q + s, "syn_count": n_syn, "note": "text"}
        metrics.update(cfg.get("extra_metrics") or {})
        (out / "metrics.json").write_text(json.dumps(metrics))
        if cfg.get("per_image"):
            ids = list(cfg["per_image"])
            values = [v + q + 0.01 * s for v in cfg["per_image"].values()]
            (out / "per_image.json").write_text(json.dumps({"ids": ids, "acc": values, "non_finite": {}}))
    """)


def write_yaml(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def n_calls(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0
