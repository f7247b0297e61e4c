"""scripts/prepare_data.py: one subprocess run (with worker processes), and the exit status of a fatal error."""

import importlib.util
import json

from common.data.converters import DATALIST_NAME, SUMMARY_NAME, convert

from tests.bundles.helpers import REPO, run_cli

SECTIONS = ("training", "validation", "test")


def test_prepare_data_brats_cli(brats2020_release, tmp_path):
    out = tmp_path / "cli"
    proc = run_cli(
        ["scripts/prepare_data.py", "brats", str(brats2020_release), str(out), "--spatial_dims", "2", "--slices",
         "2:6", "--min_tumour_area", "3", "--split", "7:1:2", "--num_workers", "2"],  # fmt: skip
        cwd=REPO,
        timeout=300,
    )
    assert proc.stdout.strip().splitlines()[-1] == str(out / DATALIST_NAME)
    assert "brats: 10 cases found, 10 converted, 0 reused, 0 skipped" in proc.stderr
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["num_patients"] == {"training": 7, "validation": 1, "test": 2}
    # the worker processes wrote what a conversion in this process writes
    convert("brats", brats2020_release, tmp_path / "serial", spatial_dims=2, slices="2:6", min_area=3, progress=False)
    serial = json.loads((tmp_path / "serial" / DATALIST_NAME).read_text())
    parallel = json.loads((out / DATALIST_NAME).read_text())
    assert {s: parallel[s] for s in SECTIONS} == {s: serial[s] for s in SECTIONS}


def test_prepare_data_fatal_error_exit_status(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "empty").mkdir()
    assert module.main(["kits19", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    assert "prepare_data: error: no KiTS19 case folder under" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
