"""The shared conversion engine: argument parsing, resume, a killed conversion, unknown layouts, output folders."""

import json
import os
import shutil
from pathlib import Path

import pytest
from common.data.converters import (
    CASES_DIR,
    DATALIST_NAME,
    SUMMARY_NAME,
    BraTSConverter,
    LayoutError,
    convert,
    parse_slices,
    parse_split,
)

from tests.data.converters.releases import brats_case


def test_parse_split_and_slices():
    assert parse_split("7:1:2") == pytest.approx((0.7, 0.1, 0.2))
    assert parse_split("60:20:20") == pytest.approx((0.6, 0.2, 0.2))
    assert parse_split((0.6, 0.2, 0.2)) == pytest.approx((0.6, 0.2, 0.2))
    assert parse_split("8:2") == pytest.approx((0.8, 0.2, 0.0))
    for bad in ("7:1:2:1", "0:1:1", "a:b:c", "-1:1:1"):
        with pytest.raises(ValueError, match="split"):
            parse_split(bad)
    assert parse_slices("30:126") == (30, 126)
    assert parse_slices(None) is None and parse_slices("all") is None
    for bad in ("126:30", "30", "1.5:4"):
        with pytest.raises(ValueError, match="slices"):
            parse_slices(bad)


_LOAD_CASE = BraTSConverter.load_case


class _Counter:
    """Wraps BraTSConverter.load_case: counts the loaded cases and fails at the ``fail_at``-th call."""

    def __init__(self, fail_at=None, error=RuntimeError):
        self.loaded, self.fail_at, self.error = [], fail_at, error

    def install(self, monkeypatch):
        monkeypatch.setattr(BraTSConverter, "load_case", lambda converter, case: self.load(converter, case))
        return self

    def load(self, converter, case):
        self.loaded.append(case.case_id)
        result = _LOAD_CASE(converter, case)
        if self.fail_at is not None and len(self.loaded) == self.fail_at:
            raise self.error("simulated kill during the case")
        return result


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_resume_and_killed_conversion(brats2020_release, tmp_path, monkeypatch):
    out = tmp_path / "out"
    args = dict(spatial_dims=2, slices="2:6", progress=False)
    # a conversion killed while converting its 4th case: three cases finished, nothing of the 4th, no datalist
    counter = _Counter(fail_at=4).install(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated kill"):
        convert("brats", brats2020_release, out, **args)
    finished = sorted(p.name for p in (out / CASES_DIR).iterdir())
    assert finished == counter.loaded[:3]
    assert all((out / CASES_DIR / name / "case.json").is_file() for name in finished)
    assert not (out / DATALIST_NAME).exists()
    # a SIGKILL leaves its hidden partial folder and temporary files: the next run removes them
    partial = out / CASES_DIR / f".{counter.loaded[3]}.partial-0123456789ab"
    partial.mkdir()
    (partial / "s002_t1.nii.gz").write_bytes(b"half")

    counter = _Counter().install(monkeypatch)
    summary = convert("brats", brats2020_release, out, **args)
    all_cases = sorted(p.name for p in brats2020_release.iterdir() if p.is_dir())
    assert sorted(counter.loaded) == sorted(set(all_cases) - set(finished))  # only the unfinished cases
    assert summary["cases_reused"] == 3 and summary["cases_converted"] == 7
    assert not [p for p in (out / CASES_DIR).iterdir() if p.name.startswith(".")]
    assert not list(out.rglob(".*tmp*"))
    before = _mtimes(out / CASES_DIR)

    # a complete conversion run again loads nothing, rewrites no case file, and may change the split only
    counter = _Counter().install(monkeypatch)
    again = convert("brats", brats2020_release, out, split="60:20:20", **args)
    assert counter.loaded == [] and again["cases_reused"] == 10 and again["cases_converted"] == 0
    assert _mtimes(out / CASES_DIR) == before
    assert json.loads((out / DATALIST_NAME).read_text())["parameters"]["split"] == pytest.approx([0.6, 0.2, 0.2])
    # other case options into the same folder: refused before anything is written
    with pytest.raises(ValueError, match="other options"):
        convert("brats", brats2020_release, out, spatial_dims=2, slices="1:6", progress=False)
    assert _mtimes(out / CASES_DIR) == before


def test_unknown_layouts_fail_before_writing(tmp_path):
    empty = tmp_path / "downloads"
    (empty / "BraTS2020_ValidationData").mkdir(parents=True)
    (empty / "notes.txt").write_text("not a release")
    out = tmp_path / "out"
    with pytest.raises(LayoutError, match=r"no BraTS case folder found under .*downloads.*BraTS20_Training_001_"):
        convert("brats", empty, out)
    (empty / "scans" / "patient1").mkdir(parents=True)
    (empty / "scans" / "patient1" / "flair.mha").touch()
    with pytest.raises(LayoutError, match=r"\(\.mha files were found, but not in that layout\)\. Expected .*2015/2016"):
        convert("brats", empty, out)
    with pytest.raises(LayoutError, match=r"not a Medical Segmentation Decathlon task folder: expected .*dataset.json"):
        convert("msd", empty, out)
    with pytest.raises(LayoutError, match=r"no KiTS19 case folder .*case_00000/imaging.nii.gz"):
        convert("kits19", empty, out)
    with pytest.raises(LayoutError, match="does not exist"):
        convert("kits19", tmp_path / "missing", out)
    assert not out.exists()


def test_output_folder_checks(tmp_path):
    release = tmp_path / "release"
    brats_case(release, "BraTS20_Training_001", {3: 3.0})
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "results.csv").write_text("keep me")
    with pytest.raises(FileExistsError, match="holds no conversion"):
        convert("brats", release, foreign, progress=False)
    assert sorted(os.listdir(foreign)) == ["results.csv"]
    with pytest.raises(ValueError, match="outside the input folder"):
        convert("brats", release, release / "converted", progress=False)
    # a release whose only case is bad: the summary is written and names it, the datalist is not
    shutil.rmtree(release)
    brats_case(release, "BraTS20_Training_001", {3: 3.0}, missing=["flair"])
    with pytest.raises(Exception, match="no case .* could be converted"):
        convert("brats", release, tmp_path / "out", progress=False)
    summary = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert summary["skipped"][0]["case"] == "BraTS20_Training_001" and "flair" in summary["skipped"][0]["reason"]
    assert not (tmp_path / "out" / DATALIST_NAME).exists()
