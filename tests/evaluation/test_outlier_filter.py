"""Filtering a synthetic datalist with the feature-space outlier filter (Han thesis sec. 4: discarding weird-looking
images)."""

import json

import nibabel as nib
import numpy as np
from common.evaluation import filter_synthetic_datalist

from tests.builders import blobs


def write_list(folder, name, images, classes, extra=None):
    entries = []
    for i, (img, c) in enumerate(zip(images, classes)):
        path = folder / f"{name}_{i}.nii.gz"
        nib.save(nib.Nifti1Image(img[0], np.eye(4)), path)
        entries.append({"image": path.name, "class": int(c), **(extra or {})})
    datalist = folder / f"{name}.json"
    datalist.write_text(json.dumps({"training": entries}))
    return datalist


def test_filter_synthetic_datalist_writes_kept_and_rejected(tmp_path):
    real = write_list(tmp_path, "real", blobs(30, 0), [1] * 30)
    fake_imgs = np.concatenate([blobs(10, 3), np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)])
    fake = write_list(tmp_path, "fake", fake_imgs, [1] * 13, {"synthetic": True})
    report = tmp_path / "outliers.json"
    out = tmp_path / "kept.json"
    summary = filter_synthetic_datalist(
        str(fake),
        str(real),
        2,
        16,
        output_datalist=str(out),
        report_file=str(report),
        features="pixels",
        method="knn",
        k=3,
        quantile=0.99,
        real_class=1,
    )
    data = json.loads(out.read_text())
    rejected = {e["image"] for e in data["rejected"]}
    assert {"fake_10.nii.gz", "fake_11.nii.gz", "fake_12.nii.gz"} <= rejected
    assert len(data["training"]) + len(data["rejected"]) == 13 and len(data["training"]) >= 9
    assert all(
        "exceeds the threshold" in e["outlier_reason"] and e["outlier_score"] > e["outlier_threshold"]
        for e in data["rejected"]
    )
    assert summary["feature_space"] == "pixels" and summary["num_rejected"] == len(rejected)
    assert len(json.loads(report.read_text())["scores"]) == 13
    # the named feature extractor path works too (random-init fallback, named in the summary)
    summary = filter_synthetic_datalist(str(fake), str(real), 2, 16, output_datalist=str(out), features="resnet10", k=3)
    assert "fallback" in summary["feature_space"]
