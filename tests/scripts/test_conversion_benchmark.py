"""The conversion benchmark (``scripts/benchmark.py --workflow conversion``) at a tiny size: fields and sane values,
not timings."""

import json
import sys
from pathlib import Path

import pytest
from common.bundle.conversion_benchmark import CONVERSIONS, benchmark_conversion

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import benchmark as benchmark_script  # noqa: E402

TINY = dict(
    brats_cases=3,
    memory_cases=2,
    luna16_cases=2,
    medmnist_images=40,
    brats_shape=(24, 24, 16),
    luna16_shape=(32, 32, 12),
    medmnist_size=8,
    medmnist_images_per_case=10,
    slices="2:10",
    writer_repeats=2,
)


def test_conversion_benchmark_reports_every_conversion_and_worker_count(tmp_path, capsys):
    output = tmp_path / "conversion.json"
    benchmark_script.main(workflow="conversion", output=str(output), work_dir=str(tmp_path / "work"), **TINY)
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(output.read_text())

    assert result["machine"]["cpu"] and result["machine"]["cores"] >= 1
    for name, writer in result["nifti_writer"].items():
        assert writer["identical_bytes"], name  # save_nifti writes what nibabel's own writer writes
        assert writer["files"] >= 2 and writer["speedup"] > 0
        for key in ("nibabel_save_ms", "save_nifti_ms"):
            assert 0 < writer[key]["min"] <= writer[key]["median"]

    assert list(result["conversions"]) == list(CONVERSIONS)
    # cases and entries of each conversion: BraTS 2D keeps slices 2-9 of each case; MedMNIST has one entry per
    # image, in blocks of 10 per split (28, 4 and 8 images: 3 + 1 + 1 cases)
    expected = {"brats_3d": (3, 3), "brats_2d": (3, 24), "luna16": (2, 2), "medmnist": (5, 40)}
    files_per_entry = {"brats_3d": 5, "brats_2d": 5, "luna16": 2, "medmnist": 1}
    for name, conversion in result["conversions"].items():
        assert [run["num_workers"] for run in conversion["runs"]] == [0, 2]
        assert conversion["input_mb"] > 0
        for run in conversion["runs"]:
            assert (run["cases"], run["entries"]) == expected[name] and run["skipped"] == 0, name
            assert run["files"] == files_per_entry[name] * run["entries"] and run["output_mb"] > 0, name
            assert run["cases_per_s"] == pytest.approx(run["cases"] / run["seconds"], rel=0.01)
            assert run["entries_per_s"] == pytest.approx(run["entries"] / run["seconds"], rel=0.01)
            assert run["cpu_seconds_per_case"] >= 0
            assert 0 < run["baseline_rss_mb"] <= run["peak_rss_mb"]
            if run["num_workers"]:
                assert run["peak_worker_rss_mb"] > 0, name
            else:
                assert run["peak_worker_rss_mb"] is None, name

    flat = result["flat_memory"]
    assert flat["conversion"] == "brats_3d"
    assert [(r["num_workers"], r["memory"]) for r in flat["runs"]] == [(0, "peak_rss_mb"), (2, "peak_worker_rss_mb")]
    for run in flat["runs"]:
        assert run["cases_2"] > 0 and run["cases_3"] > 0
        assert run["growth_mb"] == pytest.approx(run["cases_3"] - run["cases_2"], abs=0.11)


def test_conversion_benchmark_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown conversions"):
        benchmark_conversion(conversions="brats_4d", work_dir=tmp_path)
    with pytest.raises(ValueError, match="memory_cases"):
        benchmark_conversion(memory_cases=1, work_dir=tmp_path)
    with pytest.raises(ValueError, match="no --config_file"):
        benchmark_script.main(config_file="train.yaml", workflow="conversion")
