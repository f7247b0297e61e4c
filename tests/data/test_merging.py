"""merge_datalists: per-class generator outputs into one datalist, paths rebased (Han sec. 4.2)."""

import json

import pytest
from common.data import merge_datalists
from monai.data import load_decathlon_datalist


def _write(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"training": entries, "validation": [{"image": "v.nii.gz", "class": 0}]}))
    return path


def test_merge_rebases_paths_and_repeats(tmp_path):
    a = _write(
        tmp_path / "gen_a" / "synthetic" / "datalist.json",
        [{"image": "img/0.nii.gz", "class": 1, "source": ["s/0.nii.gz"]}],
    )
    b = _write(
        tmp_path / "real" / "datalist.json", [{"image": ["t1.nii.gz", "t1c.nii.gz"], "class": 0, "patient": "p"}]
    )
    out = tmp_path / "merged" / "sub" / "datalist.json"
    assert merge_datalists([a, b], out, repeats=[1, 2]) == str(out)
    data = json.loads(out.read_text())
    assert "validation" not in data and [m["repeats"] for m in data["merged_from"]] == [1, 2]
    entries = load_decathlon_datalist(str(out), True, "training")
    assert [e["class"] for e in entries] == [1, 0, 0]
    assert entries[0]["image"] == str(tmp_path / "gen_a" / "synthetic" / "img" / "0.nii.gz")
    assert entries[1]["image"] == [str(tmp_path / "real" / "t1.nii.gz"), str(tmp_path / "real" / "t1c.nii.gz")]
    assert (
        out.parent / data["training"][0]["source"][0]
    ).resolve() == tmp_path / "gen_a" / "synthetic" / "s" / "0.nii.gz"
    assert entries[2]["patient"] == "p"


def test_merge_keeps_the_noise_marker_of_noise_to_image_generators(tmp_path):
    """PGGAN's entries name ``source: noise`` (no image): a marker, not a path to rebase."""
    a = _write(
        tmp_path / "pggan" / "synthetic" / "datalist.json", [{"image": "s0.nii.gz", "class": 1, "source": "noise"}]
    )
    out = tmp_path / "sets" / "all" / "datalist.json"
    merge_datalists([a], out)
    entry = json.loads(out.read_text())["training"][0]
    assert entry["source"] == "noise" and entry["image"] == "../../pggan/synthetic/s0.nii.gz"


def test_merge_errors(tmp_path):
    a = _write(tmp_path / "a.json", [{"image": "x.nii.gz", "class": 1}])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        merge_datalists([a, tmp_path / "nowhere.json"], tmp_path / "o.json")
    with pytest.raises(ValueError, match="repeats"):
        merge_datalists([a], tmp_path / "o.json", repeats=[0])
    empty = _write(tmp_path / "e.json", [])
    with pytest.raises(ValueError, match="no entries"):
        merge_datalists([empty], tmp_path / "o.json")
