import base64
import csv
import hashlib
import importlib.util
import io
import json
import re
import struct
from pathlib import Path

import fire
import nibabel as nib
import numpy as np
import pytest
from common.data import make_brain_mr
from common.evaluation.visual_turing import (
    VIEW_NAMES,
    VisualTuringError,
    class_quota,
    make_study,
    render_image,
    sample_entries,
    shortcut_keys,
    shuffle_order,
    window_image,
)
from common.evaluation.visual_turing_score import read_answers, score_study
from monai.transforms import LoadImage
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def write_synthetic_set(folder: Path, n: int, shape: tuple[int, ...], seed: int = 0) -> Path:
    """A one-channel 'synthetic' datalist whose file names say what they are (the app must not)."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        name = f"images/synthetic_gan_{i:04d}.nii.gz"
        nib.save(nib.Nifti1Image((rng.random(shape) * 300.0).astype(np.float32), np.eye(4)), folder / name)
        entries.append({"image": name, "class": i % 2, "synthetic": True, "generator": "pggan"})
    path = folder / "datalist.json"
    path.write_text(json.dumps({"training": entries}))
    return path


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtt")
    # 2 patients x 4 slices, 32 x 32, four channels: 4 tumour and 4 non-tumour slices
    real = make_brain_mr(root / "real", num_patients=2, cases_per_patient=4, image_size=32, split_fractions=(1, 0, 0))
    synthetic = write_synthetic_set(root / "synthetic", 8, (24, 24, 1))
    return {"root": root, "real": Path(real), "synthetic": synthetic}


def study_of(app: Path) -> dict:
    html = app.read_text()
    match = re.search(r'<script id="study-data" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(match.group(1).replace("<\\/", "</"))


def png_chunks(data: bytes) -> list[tuple[str, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8].decode("ascii"), data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def test_make_writes_a_hint_free_app_and_a_separate_key(sets, tmp_path):
    out = tmp_path / "study"
    result = make_study(sets["real"], sets["synthetic"], out, n_real=4, n_synthetic=4, classes=True, channel=1, seed=3)
    app, key_file = Path(result["app"]), Path(result["key"])
    # the readers get one file; the key is outside its folder
    assert sorted(p.name for p in app.parent.iterdir()) == ["index.html"]
    assert key_file.parent == out and app.parent == out / "app"
    html = app.read_text()
    key = json.loads(key_file.read_text())
    # no file name, folder, datalist key or generator name of any case reaches the page
    for hint in ("synthetic_gan", "brain_P", ".nii", "datalist", "pggan", "answer_key", str(sets["root"])):
        assert hint not in html
    study = study_of(app)
    assert study["study_id"] == key["study_id"] == result["study_id"]
    assert [c["id"] for c in study["cases"]] == [f"case-{i:03d}" for i in range(1, 9)]
    assert all(set(c) == {"id", "image"} for c in study["cases"])
    # every image: the same PNG header (size, 8-bit grey, no interlace) and only IHDR/IDAT/IEND chunks
    headers, sizes = set(), set()
    for case, entry in zip(study["cases"], key["cases"]):
        data = base64.b64decode(case["image"].split(",", 1)[1])
        chunks = png_chunks(data)
        assert {name for name, _ in chunks} == {"IHDR", "IDAT", "IEND"}
        assert chunks[0][0] == "IHDR" and chunks[-1][0] == "IEND"
        headers.add(chunks[0][1])
        image = Image.open(io.BytesIO(data))
        assert image.mode == "L" and image.info == {}
        sizes.add(image.size)
        assert entry["case"] == case["id"]
        assert hashlib.sha256(data).hexdigest() == entry["png_sha256"]
    assert len(headers) == 1 and sizes == {(256, 256)}
    assert struct.unpack(">IIBBBBB", headers.pop()) == (256, 256, 8, 0, 0, 0, 0)
    # stratified sampling: 2 of each class for each origin
    counts = {(o, c): 0 for o in ("real", "synthetic") for c in (0, 1)}
    for entry in key["cases"]:
        counts[(entry["origin"], entry["class"])] += 1
    assert set(counts.values()) == {2}
    # the key maps each case to its source: re-rendering the source gives the shown picture
    for case, entry in zip(study["cases"], key["cases"]):
        array = np.asarray(LoadImage(image_only=True, ensure_channel_first=True)(entry["image"]), dtype=np.float32)
        array = array[..., 0] if array.ndim == 4 else array  # synthetic (C, H, W, 1) slices
        array = array[1:2] if array.shape[0] > 1 else array
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(case["image"].split(",", 1)[1]))))
        assert np.array_equal(shown, render_image(array, 256))
    assert study["questions"]["classes"] == [
        {"value": 0, "name": "non-tumour", "key": "N"},
        {"value": 1, "name": "tumour", "key": "T"},
    ]
    assert study["layout"] == {"rows": [], "cols": ["channel 1"]}
    assert "0.5th" in study["window"] and "99.5th" in study["window"]
    assert any("native sizes" in w for w in result["warnings"])  # 32 x 32 real vs 24 x 24 synthetic: said, not hidden


def test_case_order_is_independent_of_origin(sets, tmp_path):
    # the shuffle: over many seeds, the position of a case is uncorrelated with its origin
    origin = np.array([0] * 10 + [1] * 10)
    positions, synthetic = [], []
    for seed in range(300):
        order = shuffle_order(20, np.random.default_rng(seed))
        positions += list(range(20))
        synthetic += list(origin[order])
    r = np.corrcoef(positions, synthetic)[0, 1]
    assert abs(r) < 0.06  # 6,000 pairs: the standard error of r is 0.013
    # the studies: neither the shown order nor the sorted case names group the origins
    orders = []
    for seed in range(6):
        key = json.loads(
            Path(
                make_study(sets["real"], sets["synthetic"], tmp_path / str(seed), 4, 4, channel=1, seed=seed)["key"]
            ).read_text()
        )
        by_name = [e["origin"] for e in sorted(key["cases"], key=lambda e: e["case"])]
        assert by_name == [e["origin"] for e in key["cases"]]
        orders.append(tuple(by_name))
    assert len(set(orders)) > 3
    assert ("real",) * 4 + ("synthetic",) * 4 not in orders
    first_half_synthetic = np.mean([o[:4].count("synthetic") for o in orders])
    assert 1.0 <= first_half_synthetic <= 3.0


def test_stratified_sampling_counts_and_errors():
    rng = np.random.default_rng(0)
    entries = [{"image": f"{i}.nii.gz", "class": int(i < 7)} for i in range(12)]  # 7 of class 1, 5 of class 0
    assert class_quota(5, [0, 1]) == {0: 3, 1: 2}
    chosen = sample_entries(entries, 5, rng, "class", [0, 1])
    assert [e["class"] for e in chosen] == [0, 0, 0, 1, 1]
    assert len({e["image"] for e in chosen}) == 5
    chosen = sample_entries(entries, 9, rng)
    assert len({e["image"] for e in chosen}) == 9
    with pytest.raises(VisualTuringError, match="6 cases of class 0 asked but it has 5"):
        sample_entries(entries, 12, rng, "class", [0, 1], "real")
    with pytest.raises(VisualTuringError, match="13 cases asked"):
        sample_entries(entries, 13, rng)
    with pytest.raises(VisualTuringError, match="have no 'class'"):
        sample_entries([{"image": "a"}], 1, rng, "class")
    assert shortcut_keys(["non-tumour", "tumour"]) == ["N", "T"]
    assert shortcut_keys(["solid", "subsolid", "ring"]) == ["O", "U", "I"]  # S and R belong to synthetic/real


def test_window_and_render_2d_and_3d():
    ramp = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    out = window_image(ramp, window=(100.0, 300.0))
    assert out[0, 0, 0] == 0.0 and out[0, 2, 0] == pytest.approx(0.5) and out[0, 9, 99] == 1.0
    lo, hi = 0.005 * 999, 0.995 * 999  # numpy's linear percentiles of 0..999
    assert window_image(ramp)[0, 5, 0] == pytest.approx((500 - lo) / (hi - lo))
    assert np.all(window_image(np.full((1, 4, 4), 7.0)) == 0.0)
    # 2D, two channels: a row of two 16 x 16 panels with a 4-pixel grey gap
    two = render_image(np.stack([ramp[0, :, :10], ramp[0, :, :10].T]), 16)
    assert two.shape == (16, 36) and np.all(two[:, 16:20] == 96)
    # 3D: the three central slices side by side; a bright voxel line through the centre shows in every view
    volume = np.zeros((1, 8, 6, 4), dtype=np.float32)
    volume[0, 4, 3, :] = 1.0  # along the third axis through the centre: a dot across it, a line in the other views
    picture = render_image(volume, 16, window=(0.0, 1.0))
    assert picture.shape == (16, 3 * 16 + 2 * 4)
    panels = [picture[:, i * 20 : i * 20 + 16] for i in range(3)]
    assert all(p.max() > 100 for p in panels)
    assert (panels[1] > 100).sum() > (panels[0] > 100).sum()  # a line (coronal) covers more than a dot (axial)
    assert len(VIEW_NAMES) == 3


def write_nodule_set(folder: Path, n: int, seed: int) -> Path:
    """3D volumes (10, 8, 6) of noise with one bright 3-voxel cube off the centre and its box."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(n):
        volume = (rng.random((10, 8, 6)) * 100.0).astype(np.float32)
        volume[1:4, 1:4, 0:3] = 300.0
        nib.save(nib.Nifti1Image(volume, np.eye(4)), folder / f"images/v{i}.nii.gz")
        entries.append({"image": f"images/v{i}.nii.gz", "box": [[1, 1, 0, 4, 4, 3]], "box_label": [0]})
    (folder / "datalist.json").write_text(json.dumps({"training": entries}))
    return folder / "datalist.json"


def test_3d_study_shows_three_labelled_views_centred_on_the_box(tmp_path):
    real = write_nodule_set(tmp_path / "real3d", 2, seed=1)
    synthetic = write_nodule_set(tmp_path / "syn3d", 2, seed=2)
    result = make_study(real, synthetic, tmp_path / "study", 2, 2, display_size=32, window="0,300")
    study = study_of(Path(result["app"]))
    assert study["layout"] == {"rows": [], "cols": ["axial", "coronal", "sagittal"]}
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(study["cases"][0]["image"].split(",", 1)[1]))))
    assert image.shape == (32, 3 * 32 + 2 * 4)
    assert "window 0 to 300" in study["window"]
    assert result["warnings"] == []
    # central slices (5, 4, 3) miss the cube; slices through the box centre (2, 2, 1), cropped to 4 voxels, show it
    assert image.max() < 255
    result = make_study(
        real, synthetic, tmp_path / "boxed", 2, 2, display_size=32, window="0,300", box_key="box", crop=4
    )
    image = np.asarray(
        Image.open(io.BytesIO(base64.b64decode(study_of(Path(result["app"]))["cases"][0]["image"].split(",", 1)[1])))
    )
    for i in range(3):
        panel = image[:, i * 36 : i * 36 + 32]
        assert panel[12:20, 12:20].min() == 255  # the cube fills the centre of every view


def test_2d_channels_are_shown_side_by_side_with_their_names(sets, tmp_path):
    result = make_study(
        sets["real"], sets["real"], tmp_path / "s", 1, 1, display_size=16, channel_names="t1,t1c,t2,flair"
    )
    study = study_of(Path(result["app"]))
    assert study["layout"] == {"rows": [], "cols": ["t1", "t1c", "t2", "flair"]}
    image = Image.open(io.BytesIO(base64.b64decode(study["cases"][0]["image"].split(",", 1)[1])))
    assert image.size == (4 * 16 + 3 * 4, 16)


def test_make_errors_name_the_problem(sets, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(VisualTuringError, match=re.escape(str(missing))):
        make_study(missing, sets["synthetic"], tmp_path / "a", 2, 2)
    with pytest.raises(VisualTuringError, match="pick one channel with --channel"):
        make_study(sets["real"], sets["synthetic"], tmp_path / "b", 2, 2)  # 4 channels vs 1
    with pytest.raises(VisualTuringError, match="no list 'test'"):
        make_study(sets["real"], sets["synthetic"], tmp_path / "c", 2, 2, channel=0, synthetic_section="test")
    with pytest.raises(VisualTuringError, match="no entry has 'class' = 2"):
        make_study(sets["real"], sets["synthetic"], tmp_path / "e", 2, 2, channel=0, only_class=2)
    with pytest.raises(VisualTuringError, match="--window"):
        make_study(sets["real"], sets["synthetic"], tmp_path / "d", 2, 2, channel=0, window="5")
    with pytest.raises(VisualTuringError, match="every entry has 'class' = 1; use datalists"):  # one class left
        make_study(sets["real"], sets["synthetic"], tmp_path / "f", 2, 2, channel=0, classes=True, only_class=1)


@pytest.fixture()
def key_file(tmp_path):
    """A hand-made key of 8 cases: origins R R R R S S S S, classes T N T N T N T N (1 = tumour)."""
    cases = [
        {"case": f"case-{i:03d}", "origin": "real" if i <= 4 else "synthetic", "class": i % 2} for i in range(1, 9)
    ]
    key = {
        "format": "gda-visual-turing-key",
        "study_id": "vtt-hand",
        "classes": [{"value": 0, "name": "non-tumour"}, {"value": 1, "name": "tumour"}],
        "cases": cases,
    }
    path = tmp_path / "answer_key.json"
    path.write_text(json.dumps(key))
    return path


def write_answers(path: Path, reader: str, origins: str, classes: str, study_id: str = "vtt-hand") -> Path:
    answers = [
        {"case": f"case-{i:03d}", "origin": {"R": "real", "S": "synthetic"}[o], "class": int(c), "confidence": 3}
        for i, (o, c) in enumerate(zip(origins, classes), start=1)
    ]
    data = {"format": "gda-visual-turing-answers", "study_id": study_id, "reader": reader, "answers": answers}
    path.write_text(json.dumps(data))
    return path


def test_score_hand_made_answers_equals_hand_computed_tables(key_file, tmp_path):
    # truth:    R R R R S S S S, classes 1 0 1 0 1 0 1 0
    a = write_answers(tmp_path / "a.json", "A", "RRRSSSRS", "10100001")
    b = write_answers(tmp_path / "b.json", "B", "RRSSSSSR", "11100010")
    result = score_study([a, b], key_file, tmp_path / "out")
    ra, rb = result["readers"]["A"], result["readers"]["B"]
    # A: real as real 3, real as synthetic 1, synthetic as real 1, synthetic as synthetic 3 -> 6/8
    assert ra["origin"]["counts"] == [[3, 1], [1, 3]]
    assert ra["origin"]["row_percent"] == [[75.0, 25.0], [25.0, 75.0]]
    assert ra["origin"]["accuracy"]["accuracy"] == 0.75
    # 6/8: Clopper-Pearson [0.34914, 0.96815]; p = 2 * (28 + 8 + 1) / 256
    assert ra["origin"]["accuracy"]["ci_low"] == pytest.approx(0.34914, abs=1e-5)
    assert ra["origin"]["accuracy"]["ci_high"] == pytest.approx(0.96815, abs=1e-5)
    assert ra["origin"]["accuracy"]["p_value"] == pytest.approx(74 / 256)
    # B: R R S S | S S S R -> [[2, 2], [1, 3]]
    assert rb["origin"]["counts"] == [[2, 2], [1, 3]]
    # classes, rows non-tumour (0), tumour (1). A answers 1 0 1 0 0 0 0 1 against 1 0 1 0 1 0 1 0:
    # non-tumour as non-tumour 3 (cases 2, 4, 6), as tumour 1 (case 8, synthetic); tumour as non-tumour 2 (5, 7:
    # synthetic), tumour as tumour 2
    assert ra["class"]["counts"] == [[3, 1], [2, 2]]
    assert ra["class"]["by_origin_counts"] == {"real": [[2, 0], [0, 2]], "synthetic": [[1, 1], [2, 0]]}
    # pooled: the 16 answers
    assert result["pooled"]["origin"]["counts"] == [[5, 3], [2, 6]]
    assert result["pooled"]["origin"]["accuracy"]["total"] == 16
    # Cohen's kappa A vs B on real/synthetic: A = RRRSSSRS, B = RRSSSSSR; agree on 5 of 8 -> p_o = 5/8;
    # A: 4 R 4 S, B: 3 R 5 S -> p_e = (4*3 + 4*5) / 64 = 0.5; kappa = (0.625 - 0.5) / 0.5 = 0.25
    assert result["agreement"]["origin"]["cohen_kappa"]["A vs B"] == pytest.approx(0.25)
    assert "fleiss_kappa" not in result["agreement"]["origin"]
    # the files
    md = (tmp_path / "out" / "vtt_table.md").read_text()
    assert "| A | 75.0 | 34.9-96.8 | 0.289 | 75.0 | 25.0 | 25.0 | 75.0 | 8 |" in md
    assert "25.0 (R: 0, S: 1)" in md  # A: non-tumour as tumour, the one error on a synthetic case
    assert json.loads((tmp_path / "out" / "vtt_scores.json").read_text())["readers"]["A"]["origin"]["counts"] == [
        [3, 1],
        [1, 3],
    ]
    assert Image.open(tmp_path / "out" / "vtt_confusion.png").size[0] > 100


def test_score_reads_csv_like_json_and_three_readers_get_fleiss(key_file, tmp_path):
    a = write_answers(tmp_path / "a.json", "A", "RRRSSSRS", "10100001")
    data = json.loads(a.read_text())
    csv_path = tmp_path / "a.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["format", "study_id", "reader", "case", "origin", "class", "confidence"])
        for x in data["answers"]:
            w.writerow([data["format"], data["study_id"], "A", x["case"], x["origin"], x["class"], x["confidence"]])
    assert read_answers(csv_path)["answers"] == read_answers(a)["answers"]
    b = write_answers(tmp_path / "b.json", "B", "RRSSSSSR", "11100010")
    c = write_answers(tmp_path / "c.json", "C", "RRRRSSSS", "10101010")
    result = score_study([csv_path, b, c], key_file, tmp_path / "out")
    assert result["readers"]["C"]["origin"]["accuracy"]["accuracy"] == 1.0
    assert set(result["agreement"]["origin"]["cohen_kappa"]) == {"A vs B", "A vs C", "B vs C"}
    # Fleiss on the 8 cases x (real, synthetic) counts of A, B and C
    table = np.array([[3, 0], [3, 0], [2, 1], [1, 2], [0, 3], [0, 3], [1, 2], [1, 2]])
    p_i = ((table**2).sum(1) - 3) / 6
    p_j = table.sum(0) / 24
    expected = (p_i.mean() - (p_j**2).sum()) / (1 - (p_j**2).sum())
    assert result["agreement"]["origin"]["fleiss_kappa"] == pytest.approx(expected)


def test_score_rejects_missing_and_mismatched_answer_files(key_file, tmp_path):
    good = write_answers(tmp_path / "a.json", "A", "RRRSSSRS", "10100001")
    with pytest.raises(VisualTuringError, match="does not exist"):
        score_study([tmp_path / "missing.json"], key_file, tmp_path / "out")
    other = write_answers(tmp_path / "o.json", "O", "RRRSSSRS", "10100001", study_id="vtt-other")
    with pytest.raises(VisualTuringError, match="for study 'vtt-other' but the key .* is for study 'vtt-hand'"):
        score_study([other], key_file, tmp_path / "out")
    data = json.loads(good.read_text())
    data["answers"] = data["answers"][:6]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(VisualTuringError, match=r"2 of 8 cases have no real/synthetic answer.*case-007"):
        score_study([tmp_path / "short.json"], key_file, tmp_path / "out")
    data = json.loads(good.read_text())
    data["answers"][0]["class"] = None
    data["answers"].append({"case": "case-099", "origin": "real", "class": 1})
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(VisualTuringError, match=r"case-099.*not in the study.*no valid class answer"):
        score_study([tmp_path / "bad.json"], key_file, tmp_path / "out")
    with pytest.raises(VisualTuringError, match="both answers of reader 'A'"):
        score_study([good, write_answers(tmp_path / "a2.json", "A", "R" * 8, "1" * 8)], key_file, tmp_path / "out")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(VisualTuringError, match="not readable JSON"):
        score_study([tmp_path / "junk.json"], key_file, tmp_path / "out")
    with pytest.raises(VisualTuringError, match="answer key does not exist"):
        score_study([good], tmp_path / "nokey.json", tmp_path / "out")


def test_script_commands_make_and_score(sets, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("visual_turing_test", REPO / "scripts" / "visual_turing_test.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    # paths as fire passes a bracketed list
    study_id = script.make(
        str(tmp_path / "s"), str(sets["real"]), f"[{sets['synthetic']}]", n_real=2, n_synthetic=2, channel=0
    )
    key = json.loads((tmp_path / "s" / "answer_key.json").read_text())
    assert key["study_id"] == study_id and key["settings"]["channel"] == 0
    # --only_class keeps the lesion cases of both sets (4 real tumour slices of 8; synthetic entries 1, 3, 5, 7)
    # through fire, as on the command line: the flags reach make_study
    command = ["make", str(tmp_path / "t"), str(sets["real"]), str(sets["synthetic"]), "--n_real", "4"]
    fire.Fire({"make": script.make}, command=command + ["--n_synthetic", "4", "--only_class", "1", "--channel", "1"])
    only = json.loads((tmp_path / "t" / "answer_key.json").read_text())["cases"]
    real_entries = json.loads(sets["real"].read_text())["training"]
    tumour = {str(sets["real"].parent / e["image"][0]) for e in real_entries if e["class"] == 1}
    assert {c["image"][0] for c in only if c["origin"] == "real"} == tumour
    assert {c["image"][-11:] for c in only if c["origin"] == "synthetic"} == {f"{i:04d}.nii.gz" for i in (1, 3, 5, 7)}
    answers = {
        "format": "gda-visual-turing-answers",
        "study_id": study_id,
        "reader": "R1",
        "answers": [{"case": c["case"], "origin": "real"} for c in key["cases"]],
    }
    (tmp_path / "r1.json").write_text(json.dumps(answers))
    table = script.score(
        str(tmp_path / "r1.json"), str(tmp_path / "scores"), key=str(tmp_path / "s" / "answer_key.json")
    )
    assert "| R1 | 50.0 |" in table  # everything answered real: 2 of 4 right
    assert (tmp_path / "scores" / "vtt_scores.json").is_file()
