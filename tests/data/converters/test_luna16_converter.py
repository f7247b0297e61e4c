"""LUNA16 converter on a tiny copy of the release: ``subset*/<seriesuid>.mhd`` + ``.raw`` written through ITK with a
flipped axis, anisotropic spacing and a non-zero origin, ``CSVFILES/annotations.csv`` in world millimetres (LPS), and
the model zoo's detection datalist (``cccwhd`` world boxes). Expected boxes are computed by hand below."""

import csv
import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from common.data import check_patient_disjoint, validate_datalist
from common.data.converters import DATALIST_NAME, convert
from common.data.converters.luna16 import nodule_size_class

from tests.bundles.helpers import REPO
from tests.data.converters.releases import lidc_xml

SHAPE = (24, 20, 16)  # (x, y, z) voxels
SPACING = (0.7, 0.8, 2.5)  # mm
ORIGIN = (-100.0, 50.0, -300.0)  # LPS mm
DIRECTION = np.diag([1.0, -1.0, 1.0])  # the y axis flipped: world y = 50 - 0.8 j
UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.{:03d}"
SECTIONS = ("training", "validation", "test")
# nodules (LPS mm centre, diameter) by series; world = origin + direction * spacing * index, by hand:
#   small: voxel (10, 7, 6) -> x = -100 + 0.7 * 10 = -93.0, y = 50 - 0.8 * 7 = 44.4, z = -300 + 2.5 * 6 = -285.0
#   medium: voxel (4.3, 12.6, 9.2) -> (-96.99, 39.92, -277.0)
SMALL = (-93.0, 44.4, -285.0, 4.4)
MEDIUM = (-96.99, 39.92, -277.0, 12.0)
OUTSIDE = (-93.0, 44.4, -200.0, 5.0)  # z index (-200 + 300) / 2.5 = 40 > 15: outside the volume
# half diameters in voxels: 4.4 mm -> (2.2 / 0.7, 2.2 / 0.8, 2.2 / 2.5) = (3.14, 2.75, 0.88): voxel centres within
# [6.86, 13.14] x [4.25, 9.75] x [5.12, 6.88]; 12 mm -> (8.57, 7.5, 2.4): [-4.27, 12.87] x [5.1, 20.1] x [6.8, 11.6]
SMALL_BOX = [7, 5, 6, 14, 10, 7]
MEDIUM_BOX = [0, 6, 7, 13, 20, 12]  # clipped to the volume at x = 0 and y = 20
ANNOTATIONS = {1: [SMALL, MEDIUM], 2: [SMALL], 3: [OUTSIDE], 5: [MEDIUM], 7: [SMALL], 99: [SMALL]}  # 99: no series


def write_mhd(path: Path, array: np.ndarray) -> None:
    """A LUNA16 series: MetaImage header + raw int16 data, (x, y, z) array, with the geometry above."""
    import itk

    image = itk.image_from_array(np.ascontiguousarray(array.transpose(2, 1, 0)))  # ITK arrays are (z, y, x)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(itk.matrix_from_array(DIRECTION))
    path.parent.mkdir(parents=True, exist_ok=True)
    itk.imwrite(image, str(path))


def luna16_release(root: Path, num_series: int = 8) -> Path:
    """``subset0/``, ``subset1/`` of series ``UID.format(i)`` (int16 HU, voxel (10, 7, 6) set to 500 HU as a
    marker), ``CSVFILES/annotations.csv`` with :data:`ANNOTATIONS` and an ignored ``candidates_V2.csv``."""
    rng = np.random.default_rng(0)
    for i in range(num_series):
        hu = (rng.normal(-700, 30, SHAPE)).astype(np.int16)
        hu[10, 7, 6] = 500
        write_mhd(root / f"subset{i % 2}" / f"{UID.format(i)}.mhd", hu)
    (root / "CSVFILES").mkdir(parents=True)
    with open(root / "CSVFILES" / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"])
        for i, nodules in ANNOTATIONS.items():
            writer.writerows([UID.format(i), *nodule] for nodule in nodules)
    (root / "CSVFILES" / "candidates_V2.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n")
    return root


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return luna16_release(tmp_path_factory.mktemp("luna16"))


def entries_of(datalist_file: Path) -> dict:
    datalist = json.loads(datalist_file.read_text())
    return {e["case"]: e for s in SECTIONS for e in datalist[s]}


def test_size_classes_of_the_thesis():
    assert [nodule_size_class(d) for d in (3.0, 10.0, 10.01, 20.0, 20.5)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
    ]


def test_luna16_world_to_voxel_boxes(release, tmp_path):
    out = tmp_path / "out"
    summary = convert("luna16", release, out, split="5:1:1", seed=3, progress=False)
    reasons = {s["case"]: s["reason"] for s in summary["skipped"]}
    assert sorted(reasons) == [UID.format(3), UID.format(99)]
    assert "outside the volume" in reasons[UID.format(3)] and "nodule 0" in reasons[UID.format(3)]
    assert "not found" in reasons[UID.format(99)] and "annotations" in reasons[UID.format(99)]
    assert summary["cases_converted"] == 7
    result = validate_datalist(out / DATALIST_NAME, sections=SECTIONS, box_key="box", label_key="label",
                               class_key="class", spatial_dims=3, num_channels=1,
                               required_keys=("patient", "size"))  # fmt: skip
    assert sum(result["num_boxes"].values()) == 5
    entries = entries_of(out / DATALIST_NAME)
    two = entries[UID.format(1)]
    assert two["box"] == [SMALL_BOX, MEDIUM_BOX] and two["size"] == ["small", "medium"] and two["class"] == 1
    assert two["box_label"] == [0, 0] and two["box_clipped"] == [False, True] and "attenuation" not in two
    negative = entries[UID.format(0)]
    assert negative["box"] == [] and negative["class"] == 0 and negative["patient"] == UID.format(0)
    assert (
        summary["class_counts"]["training"].get(0, 0)
        + sum(summary["class_counts"][s].get(0, 0) for s in ("validation", "test"))
        == 3
    )  # series 0, 4, 6 have no nodule
    # the written NIfTI: the marker voxel sits inside the small box and its RAS position is the annotation's LPS one
    image = nib.load(out / two["image"])
    array = np.asarray(image.dataobj)
    assert image.shape == SHAPE and array.dtype == np.int16 and array[10, 7, 6] == 500
    assert np.allclose(image.affine @ [10, 7, 6, 1], [93.0, -44.4, -285.0, 1.0])
    mask = np.asarray(nib.load(out / two["label"]).dataobj)
    x1, y1, z1, x2, y2, z2 = SMALL_BOX
    assert mask[10, 7, 6] == 1 and mask[x1:x2, y1:y2, z1:z2].sum() > 0 and mask[20, 2, 1] == 0
    # splits by patient, reproducible; a re-run reuses every converted case and lists the skips again
    datalist = json.loads((out / DATALIST_NAME).read_text())
    check_patient_disjoint(datalist)
    again = convert("luna16", release, out, split="5:1:1", seed=3, progress=False)
    assert again["cases_reused"] == 7 and again["cases_converted"] == 0 and len(again["skipped"]) == 2
    assert json.loads((out / DATALIST_NAME).read_text()) == datalist


def test_luna16_zoo_datalist_and_cli(release, tmp_path, capsys):
    # the model zoo's dataset_fold0.json: cccwhd boxes in LPS world mm, images relative to the data folder
    zoo = {
        "training": [
            {"image": f"subset1/{UID.format(1)}.mhd", "box": [[*SMALL[:3], 4.4, 4.4, 4.4]], "label": [0]},
            {"image": f"{UID.format(2)}.mhd", "box": [], "label": []},  # found in subset0 by its name
        ],
        "validation": [{"image": f"subset1/{UID.format(5)}.mhd", "box": [[*MEDIUM[:3], 12, 12, 12]], "label": [0]}],
    }
    (tmp_path / "dataset_fold0.json").write_text(json.dumps(zoo))
    spec = importlib.util.spec_from_file_location("prepare_data", REPO / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "zoo"
    argv = ["luna16", str(release), str(out), "--datalist_json", str(tmp_path / "dataset_fold0.json"), "--split", "2:1"]
    assert module.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out / DATALIST_NAME)
    entries = entries_of(out / DATALIST_NAME)
    assert sorted(entries) == [UID.format(i) for i in (1, 2, 5)]
    assert entries[UID.format(1)]["box"] == [SMALL_BOX] and entries[UID.format(2)]["class"] == 0
    assert entries[UID.format(5)]["box"] == [MEDIUM_BOX] and entries[UID.format(5)]["size"] == ["medium"]
    # no annotations at all: one clear error, nothing written
    empty = tmp_path / "no_csv"
    write_mhd(empty / "subset0" / f"{UID.format(0)}.mhd", np.zeros(SHAPE, np.int16))
    assert module.main(["luna16", str(empty), str(tmp_path / "out2")]) == 1
    assert "no annotations.csv in" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_luna16_lidc_reader_attenuation(release, tmp_path):
    # series 1: the small nodule at voxel (10, 7, 6) (z = -285 mm) rated part-solid-ish (3, 3, 2, 5 -> median 3) by
    # four readers; the medium one (voxel (4.3, 12.6), z = -277) by two readers only (texture 5); a < 3 mm nodule
    small, medium = (10, 7, [-287.5, -285.0, -282.5]), (4.3, 12.6, [-277.0])
    readers = [[(*small, 3), (*medium, 5)], [(*small, 3), (*medium, 5)], [(*small, 2), (12, 3, [-290.0], None)],
               [(*small, 5)]]  # fmt: skip
    lidc_xml(tmp_path / "LIDC-XML-only" / "tcia-lidc-xml" / "185" / "068.xml", UID.format(1), readers)
    lidc_xml(tmp_path / "LIDC-XML-only" / "tcia-lidc-xml" / "185" / "069.xml", UID.format(2), [[(*small, 1)]] * 3)
    out = tmp_path / "out"
    convert("luna16", release, out, lidc_xml=tmp_path / "LIDC-XML-only", split="5:1:1", progress=False)
    entries = entries_of(out / DATALIST_NAME)
    assert entries[UID.format(1)]["attenuation"] == ["part-solid", "unknown"]  # medium: 2 < 3 readers
    assert entries[UID.format(2)]["attenuation"] == ["ground-glass"]
    assert entries[UID.format(0)]["attenuation"] == [] and entries[UID.format(7)]["attenuation"] == ["unknown"]
