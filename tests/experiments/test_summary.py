"""The results page: verdicts, calibration rows, errors, and the committed page equals what its result files give."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from common.experiments.results import write_results_csv
from common.experiments.summary import _calibration_md, build_results_page, calibration_rows, grid_rows, paired_verdict
from common.utils.errors import UserInputError

ROOT = Path(__file__).resolve().parents[2]


def test_paired_verdict_rules():
    # differences +0.1, +0.12, +0.08: t-interval 0.1 +- 4.303 * 0.02 / sqrt(3) = [0.0503, 0.1497]
    diff, (lo, hi), verdict = paired_verdict({0: 0.9, 1: 0.92, 2: 0.88}, {0: 0.8, 1: 0.8, 2: 0.8})
    assert diff == pytest.approx(0.1)
    assert (lo, hi) == pytest.approx((0.1 - 4.302653 * 0.02 / 3**0.5, 0.1 + 4.302653 * 0.02 / 3**0.5), abs=1e-6)
    assert verdict == "helps"
    assert paired_verdict({0: 0.7, 1: 0.68, 2: 0.72}, {0: 0.8, 1: 0.8, 2: 0.8})[2] == "hurts"
    # lower is better (FID): a lower value helps
    assert (
        paired_verdict({0: 10.0, 1: 12.0, 2: 11.0}, {0: 20.0, 1: 21.0, 2: 22.0}, higher_is_better=False)[2] == "helps"
    )
    assert paired_verdict({0: 0.9, 1: 0.7}, {0: 0.8, 1: 0.8})[2] == "within noise"
    # only common seeds are paired
    assert paired_verdict({0: 0.9, 5: 0.1}, {0: 0.8, 1: 0.8}) == (pytest.approx(0.1), None, "one seed")
    assert paired_verdict({3: 0.9}, {0: 0.8}) == (None, None, "one seed")
    assert paired_verdict({0: 1.0, 1: 1.0}, {0: 1.0, 1: 1.0})[2] == "no difference"
    assert paired_verdict({0: 0.5, 1: 0.5}, {0: 1.0, 1: 1.0})[1:] == (None, "same on every seed")


def _grid(folder: Path, methods: list[str], values: dict[tuple[str, int], float], metric: str = "auc") -> Path:
    folder.mkdir(parents=True)
    grid = {
        "name": "g",
        "datasets": [{"name": "Phantom"}],
        "methods": [{"name": m} for m in methods],
        "metrics": [{"name": metric, "label": metric.upper(), "higher_is_better": metric != "fid"}],
    }
    (folder / "grid.json").write_text(json.dumps(grid))
    rows = [
        {"dataset": "Phantom", "method": m, "seed": s, "metrics": {metric: v}, "status": "ok", "run_dir": "r"}
        for (m, s), v in values.items()
    ]
    rows.append({"dataset": "Phantom", "method": "B", "seed": 9, "status": "failed", "run_dir": "r", "error": "x"})
    write_results_csv(rows, folder / "results.csv")
    return folder


def test_grid_rows_pairs_each_method_with_its_baseline(tmp_path):
    values = {("A", 0): 0.8, ("A", 1): 0.82, ("A", 2): 0.78, ("B", 0): 0.9, ("B", 1): 0.93, ("B", 2): 0.9}
    _grid(tmp_path / "g", ["A", "B"], values)
    rows = grid_rows({"results": "g", "metric": "auc", "baseline": "A"}, tmp_path)["Phantom"]
    assert [(r.method, r.baseline, r.verdict) for r in rows] == [("A", None, "baseline"), ("B", "A", "helps")]
    assert rows[1].mean == pytest.approx(0.91)
    assert rows[1].values == {0: 0.9, 1: 0.93, 2: 0.9}  # the failed seed 9 is left out
    pairs = grid_rows({"results": "g", "metric": "auc", "pairs": {"A": "B"}}, tmp_path)["Phantom"]
    assert [(r.method, r.verdict) for r in pairs] == [("A", "hurts"), ("B", "baseline")]
    with pytest.raises(UserInputError, match="metric 'dice'"):
        grid_rows({"results": "g", "metric": "dice", "baseline": "A"}, tmp_path)
    with pytest.raises(UserInputError, match="baseline 'C'"):
        grid_rows({"results": "g", "metric": "auc", "baseline": "C"}, tmp_path)
    with pytest.raises(UserInputError, match="missing"):
        grid_rows({"results": "nothing", "metric": "auc", "baseline": "A"}, tmp_path)


def test_reference_rows_say_where_they_lie_not_that_they_help(tmp_path):
    values = {("A", 0): 0.8, ("A", 1): 0.82, ("A", 2): 0.78, ("B", 0): 0.9, ("B", 1): 0.93, ("B", 2): 0.9}
    values.update({("Bound", s): v + 0.1 for (m, s), v in values.items() if m == "B"})
    _grid(tmp_path / "g", ["A", "B", "Bound"], values)
    entry = {"results": "g", "metric": "auc", "baseline": "A", "references": ["Bound"]}
    assert [r.verdict for r in grid_rows(entry, tmp_path)["Phantom"]] == ["baseline", "helps", "above"]
    low = {"results": "g", "metric": "auc", "baseline": "Bound", "references": ["A"]}
    assert [r.verdict for r in grid_rows(low, tmp_path)["Phantom"]] == ["below", "same on every seed", "baseline"]
    with pytest.raises(UserInputError, match="references"):
        grid_rows({**entry, "references": ["C"]}, tmp_path)
    # a grid whose method is marked `reference: true` needs no `references` in the summary entry
    grid_file = tmp_path / "g" / "grid.json"
    grid = json.loads(grid_file.read_text())
    grid["methods"][2]["reference"] = True
    grid_file.write_text(json.dumps(grid))
    marked = {"results": "g", "metric": "auc", "baseline": "A"}
    assert [r.verdict for r in grid_rows(marked, tmp_path)["Phantom"]] == ["baseline", "helps", "above"]
    with pytest.raises(UserInputError, match="reference row 'Bound' needs a baseline"):
        grid_rows({"results": "g", "metric": "auc", "pairs": {"B": "A"}}, tmp_path)


def _calibration(
    path: Path, seed: int, baseline: float, upper: float, difficulty, iterations: int = 300, variants=None
) -> Path:
    settings = {"num_small_patients": 8, "ratio": 10, "num_test_patients": 40, "iterations": iterations, "seed": seed}
    if variants is not None:
        settings["variants"] = variants
    data = {
        "family": "classification",
        "metric": "auc",
        "difficulty": difficulty,
        "baseline": {"auc": baseline},
        "upper_bound": {"auc": upper},
        "settings": settings,
    }
    path.write_text(json.dumps(data))
    return path


def test_calibration_rows_group_seeds_and_name_presets(tmp_path):
    knobs = {
        "lesion_contrast": 0.55,
        "lesion_radius": [0.1, 0.16],
        "noise": 0.04,
        "texture": 0.06,
        "anatomy_spread": 1.5,
    }
    files = [
        _calibration(tmp_path / "a.json", 1, 0.7, 0.99, knobs),
        _calibration(tmp_path / "b.json", 0, 0.8, 0.97, "calibrated_classification"),
        _calibration(tmp_path / "c.json", 0, 1.0, 1.0, None),
    ]
    rows = calibration_rows(files)
    assert [(r["difficulty"], r["seeds"], r["baseline"]) for r in rows] == [
        ("calibrated_classification", [0, 1], [0.8, 0.7]),
        ("default", [0], [1.0]),
    ]
    other = _calibration(tmp_path / "d.json", 2, 0.75, 0.99, knobs)
    data = json.loads(other.read_text())
    data["settings"]["num_test_patients"] = 20  # another test set: not one row with the others
    other.write_text(json.dumps(data))
    with pytest.raises(UserInputError, match="other settings"):
        calibration_rows(files + [other])
    # another network of the same bundle (a variant merged into both runs) is a row of its own, named by it
    thesis = [
        _calibration(tmp_path / f"t{i}.json", i, b, u, "calibrated_classification", variants=["variants/thesis.yaml"])
        for i, (b, u) in enumerate([(0.74, 0.9), (0.89, 0.92)])
    ]
    # a newer file of the same setting records its dimension and (empty) variants; an older one has neither: one row
    newer = _calibration(tmp_path / "n.json", 3, 0.9, 1.0, "calibrated_classification", variants=[])
    data = json.loads(newer.read_text())
    data["settings"]["spatial_dims"] = 2
    newer.write_text(json.dumps(data))
    rows = calibration_rows(files + thesis + [newer])
    assert [(r["variants"], r["seeds"], r["baseline"]) for r in rows] == [
        ([], [0, 1, 3], [0.8, 0.7, 0.9]),
        (["variants/thesis.yaml"], [0, 1], [0.74, 0.89]),
        ([], [0], [1.0]),
    ]
    (tmp_path / "thesis.yaml").write_text(json.dumps({"calibrations": ["t*.json"], "grids": []}))
    page = build_results_page(tmp_path / "thesis.yaml")
    assert "| classification 2D, `variants/thesis.yaml` | `calibrated_classification` |" in page
    (tmp_path / "e.json").write_text("{}")
    with pytest.raises(UserInputError, match="not a calibration result"):
        calibration_rows([tmp_path / "e.json"])


def test_page_names_sizes_and_verdicts(tmp_path):
    _grid(
        tmp_path / "g",
        ["GAN", "GA-UNet"],
        {("GAN", 0): 20.0, ("GAN", 1): 22.0, ("GA-UNet", 0): 30.0, ("GA-UNet", 1): 29.0},
        metric="fid",
    )
    _calibration(tmp_path / "cal.json", 0, 0.8, 0.99, "calibrated_classification")
    (tmp_path / "summary.yaml").write_text(
        "calibrations: [cal.json]\n"
        "grids:\n"
        "  - {title: 'Table II', results: g, metric: fid, baseline: GAN, size: '2 seeds', command: 'python x.py'}\n"
    )
    page = build_results_page(tmp_path / "summary.yaml")
    assert "## Table II" in page and "Size: 2 seeds" in page and "Command: `python x.py`" in page
    assert "| GA-UNet | 29.500 | 2 | GAN | +8.500 [" in page  # FID: higher is worse
    assert "| GA-UNet | 29.500 | 2 | GAN | +8.500 [" in page and page.rstrip().endswith("| within noise |")
    assert "| classification 2D | `calibrated_classification` | auc | 0 | 0.800 | 0.990 | 8 vs 80 | 40 |" in page
    with pytest.raises(UserInputError, match="does not exist"):
        build_results_page(tmp_path / "missing.yaml")


def test_committed_results_page_is_what_its_result_files_give():
    page = build_results_page(ROOT / "docs" / "results" / "summary.yaml")
    assert (ROOT / "docs" / "results.md").read_text() == page, "run python scripts/results_summary.py"


def test_cli_check_mode(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("results_summary", ROOT / "scripts" / "results_summary.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "results.md"
    with pytest.raises(SystemExit) as exit_info:
        script.main(output=str(out), check=True)
    assert exit_info.value.code == 1 and "out of date" in capsys.readouterr().err
    script.main(output=str(out))
    script.main(output=str(out), check=True)
    assert "up to date" in capsys.readouterr().out


def test_calibration_rows_of_detection_families_name_their_presets(tmp_path):
    from common.data.phantoms import BRAIN_METASTASES_PRESETS

    knobs = BRAIN_METASTASES_PRESETS["calibrated_detection"]
    mapping = {
        "lesion_contrast": knobs.lesion_contrast,
        "lesion_radius": list(knobs.lesion_radius),
        "texture": knobs.texture,
        "noise": knobs.noise,
        "anatomy_spread": knobs.anatomy_spread,
    }
    files = []
    for seed, difficulty in ((0, mapping), (1, "calibrated_detection")):
        settings = {
            "num_small_patients": 4,
            "ratio": 10,
            "num_test_patients": 20,
            "seed": seed,
            "phantom_args": {"num_cases": 60, "difficulty": difficulty},
        }
        data = {
            "family": "detection_2d",
            "metric": "cpm",
            "difficulty": difficulty,
            "baseline": {"cpm": 0.3 + seed},
            "upper_bound": {"cpm": 0.6},
            "settings": settings,
        }
        files.append(tmp_path / f"{seed}.json")
        files[-1].write_text(json.dumps(data))
    (row,) = calibration_rows(files)
    assert (row["family"], row["spatial_dims"], row["difficulty"], row["seeds"]) == (
        "detection_2d",
        2,
        "calibrated_detection",
        [0, 1],
    )


def test_calibrations_with_other_training_steps_are_rows_of_their_own(tmp_path):
    """A task calibrated at two run lengths gives two rows, each naming its steps; one length names none."""
    files = []
    for seed, iterations, cpm in ((0, 400, 0.3), (1, 400, 0.35), (0, 1600, 0.6)):
        settings = {"num_small_patients": 8, "ratio": 10, "num_test_patients": 12, "seed": seed}
        data = {
            "family": "detection_3d",
            "metric": "cpm",
            "difficulty": "calibrated_detection",
            "baseline": {"cpm": cpm},
            "upper_bound": {"cpm": cpm + 0.1},
            "settings": {**settings, "iterations": iterations},
        }
        files.append(tmp_path / f"{seed}_{iterations}.json")
        files[-1].write_text(json.dumps(data))
    rows = calibration_rows(files)
    assert [(r["iterations"], r["seeds"], r["baseline"]) for r in rows] == [
        (400, [0, 1], [0.3, 0.35]),
        (1600, [0], [0.6]),
    ]
    page = "\n".join(_calibration_md(rows))
    assert "| detection 3D, 400 steps |" in page and "| detection 3D, 1,600 steps |" in page
    assert "| detection 3D |" in "\n".join(_calibration_md(calibration_rows(files[2:])))
    # an upper bound trained longer than its baseline is a row of its own, always naming both step counts
    longer = json.loads(files[2].read_text())
    longer["settings"]["upper_bound_iterations"] = 3200
    files.append(tmp_path / "0_1600_3200.json")
    files[-1].write_text(json.dumps(longer))
    rows = calibration_rows(files)
    assert [(r["iterations"], r["upper_bound_iterations"]) for r in rows] == [(400, 400), (1600, 1600), (1600, 3200)]
    assert "| detection 3D, 1,600 / 3,200 steps |" in "\n".join(_calibration_md(rows))
    assert "| detection 3D, 1,600 / 3,200 steps |" in "\n".join(_calibration_md(calibration_rows(files[3:])))
