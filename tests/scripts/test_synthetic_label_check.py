"""scripts/synthetic_label_check.py: the agreement arithmetic on hand-made predictions, the run's config files, and
one real check with a tiny trained classifier on real phantom images labelled right and flipped."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from synthetic_label_check import check, inference_files, label_agreement  # noqa: E402

CLS = REPO / "bundles" / "classification" / "configs"


def _prediction(name: str, p1: float) -> dict:
    return {"image": f"/x/{name}", "probabilities": [1.0 - p1, p1], "pred": int(p1 >= 0.5)}


def test_label_agreement_values():
    entries = [{"image": [f"/y/s{i}.nii.gz", "/y/other.nii.gz"], "class": c} for i, c in enumerate([0, 0, 1, 1])]
    predictions = [_prediction(f"s{i}.nii.gz", p) for i, p in enumerate([0.2, 0.6, 0.9, 0.7])]
    result = label_agreement(predictions, entries)
    assert result["per_class"][0] == {"count": 2, "mean_p1": pytest.approx(0.4), "agreement": 0.5}
    assert result["per_class"][1] == {"count": 2, "mean_p1": pytest.approx(0.8), "agreement": 1.0}
    assert result["agreement"] == 0.75 and result["auc"] == pytest.approx(1.0) and result["num_images"] == 4
    assert label_agreement(predictions[2:], entries[2:])["auc"] is None  # one class: no AUC
    with pytest.raises(ValueError, match="not the same order"):
        label_agreement(predictions[::-1], entries)
    with pytest.raises(ValueError, match="3 predictions for 4"):
        label_agreement(predictions[:3], entries)


def _record(run_dir: Path, files: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    listed = "[" + ",".join(f"'{f}'" for f in files) + "]"  # as the grid runner writes it
    command = f"python -m monai.bundle run training --config_file {listed} --ckpt_dir {run_dir / 'models'} --seed 0"
    (run_dir / "run.json").write_text(json.dumps({"status": "ok", "commands": [command]}))


def test_inference_files_swap_the_train_config(tmp_path):
    _record(tmp_path / "r", [str(CLS / "train.yaml"), str(CLS / "variants" / "resnet50.yaml"), "/o/overrides.yaml"])
    assert inference_files(tmp_path / "r") == [
        str(CLS / "inference.yaml"), str(CLS / "variants" / "resnet50.yaml"), "/o/overrides.yaml"
    ]  # fmt: skip
    _record(tmp_path / "svm", [str(CLS / "train.yaml"), str(CLS / "variants" / "svm.yaml")])
    with pytest.raises(ValueError, match="SVM"):
        inference_files(tmp_path / "svm")
    _record(tmp_path / "other", [str(CLS / "inference.yaml")])
    with pytest.raises(ValueError, match="not a train.yaml"):
        inference_files(tmp_path / "other")


def test_check_with_a_trained_classifier(tmp_path):
    """Real images with their own classes and with the classes flipped: the per-class agreements swap exactly."""
    run_dir = tmp_path / "run"
    overrides = run_dir / "overrides.yaml"
    run_dir.mkdir()
    data = tmp_path / "data"
    overrides.write_text(f"dataset_dir: {data}\nmax_epochs: 2\n")
    files = [str(CLS / "train.yaml"), str(CLS / "variants" / "tiny.yaml"), str(overrides)]
    listed = "[" + ",".join(f"'{f}'" for f in files) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", listed]
    cmd += ["--ckpt_dir", str(run_dir / "models"), "--output_dir", str(run_dir / "eval"), "--seed", "0"]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    _record(run_dir, files)
    datalist = json.loads((data / "datalist.json").read_text())
    entries = datalist["training"]
    right, flipped = tmp_path / "right.json", tmp_path / "flipped.json"
    right.write_text(json.dumps({"training": entries}))
    flipped.write_text(json.dumps({"training": [{**e, "class": 1 - int(e["class"])} for e in entries]}))
    # relative image paths resolve against the datalist's folder, as load_decathlon_datalist does
    for f in (right, flipped):
        f.replace(data / f.name)
    a = check(str(run_dir), str(data / "right.json"))
    b = check(str(run_dir), str(data / "flipped.json"))
    assert a["num_images"] == b["num_images"] == len(entries)
    assert a["agreement"] == pytest.approx(1.0 - b["agreement"])
    assert a["per_class"][0]["mean_p1"] == pytest.approx(b["per_class"][1]["mean_p1"])
    assert a["auc"] == pytest.approx(1.0 - b["auc"])
