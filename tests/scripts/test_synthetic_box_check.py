"""scripts/synthetic_box_check.py: a tiny trained 2D detector run through the script on the real test slices gives
its own test metrics back, and on slices whose boxes were moved off the lesions it finds fewer of them. The detector
trains in fp32 on every machine (``amp: false``), 40 epochs: CPM 1.0 / 0.958 / 0.851 on the 16 test slices with seeds
0 / 1 / 2 (2026-12-07, an AVX2 AMD EPYC); 20 epochs under ``amp: auto`` had given 0.958 where auto meant bf16 and
0.333 in fp32 there. About 40 s."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from common.experiments import recorded_config_files

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from synthetic_box_check import check, main  # noqa: E402

DET = REPO / "bundles" / "detection" / "configs"


def _command(workflow: str, files: list[str], run_dir: Path) -> list[str]:
    listed = "[" + ",".join(f"'{f}'" for f in files) + "]"  # as the grid runner writes it
    return [sys.executable, "-m", "monai.bundle", "run", workflow, "--config_file", listed,
            "--ckpt_dir", str(run_dir / "models"), "--output_dir", str(run_dir / "eval"), "--seed", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished detection run as a grid leaves it: run.json with its training and evaluating commands."""
    tmp = tmp_path_factory.mktemp("box_check")
    run_dir, data = tmp / "run", tmp / "data"
    run_dir.mkdir()
    overrides = run_dir / "overrides.yaml"
    overrides.write_text(
        f"dataset_dir: {data}\nmax_epochs: 40\nlearning_rate: 0.01\naugment_prob: 0.0\namp: false\n"
        "phantom_args: {num_patients: 16, cases_per_patient: 2, image_size: 32, max_lesions: 2, "
        "positive_fraction: 1.0, seed: 0, split_fractions: [0.5, 0.0, 0.5]}\n"
    )
    variants = [str(DET / "variants" / "2d.yaml"), str(DET / "variants" / "tiny_2d.yaml")]
    commands = [
        _command("training", [str(DET / "train.yaml"), *variants, str(overrides)], run_dir),
        _command(
            "evaluating", [str(DET / "train.yaml"), str(DET / "evaluate.yaml"), *variants, str(overrides)], run_dir
        ),
    ]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    for cmd in commands:
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=env)
    record = {"status": "ok", "commands": [" ".join(c) for c in commands]}
    (run_dir / "run.json").write_text(json.dumps(record))
    return run_dir, data


def test_recorded_config_files_name_each_workflow(trained_run):
    run_dir, _ = trained_run
    assert Path(recorded_config_files(run_dir, "evaluating")[1]).name == "evaluate.yaml"
    assert Path(recorded_config_files(run_dir, "training")[-1]).name == "overrides.yaml"
    with pytest.raises(ValueError, match="no 'inference' command"):
        recorded_config_files(run_dir, "inference")
    with pytest.raises(FileNotFoundError, match="run.json"):
        recorded_config_files(run_dir / "models", "training")


def test_check_gives_the_runs_own_test_metrics_on_its_test_slices_and_fewer_hits_off_the_lesions(trained_run, tmp_path):
    run_dir, data = trained_run
    datalist = data / "datalist.json"
    same = check(str(run_dir), str(datalist), section="test")
    test = json.loads(datalist.read_text())["test"]
    assert same["num_images"] == len(test) and same["num_boxes"] == sum(len(e["box"]) for e in test)
    assert same["synthetic"] == same["real_test"] and set(same["synthetic"]) >= {"cpm", "sensitivity_iou0.25"}
    assert same["real_test"]["cpm"] > 0.4  # the detector finds lesions

    # the same slices, each box moved to the slice's empty corner (outside the head): nothing there to find
    moved = [{**e, "box": [[0, 0, b[2] - b[0], b[3] - b[1]] for b in e["box"]]} for e in test]
    off = data / "moved.json"
    off.write_text(json.dumps({"training": moved}))
    result = check(str(run_dir), str(off))
    assert result["section"] == "training" and result["num_boxes"] == same["num_boxes"]
    print("box check cpm", same["real_test"]["cpm"], result["synthetic"]["cpm"])
    assert result["synthetic"]["cpm"] < same["real_test"]["cpm"] - 0.3

    main(str(run_dir), synthetic_datalist=str(off), output=str(tmp_path / "out.json"))
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["mean"]["synthetic"] == pytest.approx(result["synthetic"]) and len(written["runs"]) == 1
