"""Tests of SyntheticDatalistWriter with a real MONAI SupervisedEvaluator on a tiny network."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from common.handlers import SyntheticDatalistWriter
from monai.data import DataLoader, load_decathlon_datalist
from monai.engines import SupervisedEvaluator

DEVICE = torch.device("cpu")


def _data(n: int, spatial: tuple[int, ...]) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.normal(size=(1, *spatial)).astype(np.float32),
            "src": f"/data/subject_{i:03d}.nii.gz",
            "subject_id": i,
            "score": float(i) / 2,
        }
        for i in range(n)
    ]


def _net(out_channels: int, spatial_dims: int) -> torch.nn.Module:
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    return conv(1, out_channels, kernel_size=3, padding=1)


def _checkpoint(net: torch.nn.Module, tmp_path) -> str:
    path = str(tmp_path / "model.pt")
    torch.save(net.state_dict(), path)
    return path


def _run(writer: SyntheticDatalistWriter, net: torch.nn.Module, data: list[dict], decollate: bool = True) -> None:
    evaluator = SupervisedEvaluator(
        device=DEVICE, val_data_loader=DataLoader(data, batch_size=2), network=net, decollate=decollate
    )
    writer.attach(evaluator)
    evaluator.run()


def _no_tmp_left(folder) -> bool:
    return not [f for f in os.listdir(folder) if ".tmp" in f or f.startswith(".")]


def test_single_channel_3d(tmp_path):
    net = _net(1, 3)
    ckpt = _checkpoint(net, tmp_path)
    out_dir = tmp_path / "synthetic"
    data = _data(3, (6, 7, 8))
    writer = SyntheticDatalistWriter(
        out_dir, "brain_gan", "0.2.0", ckpt, source_key="src", copy_keys=("subject_id", "score"), extra_entry={"k": 1}
    )
    _run(writer, net, data)

    assert writer.num_written == 3
    datalist_file = out_dir / "datalist.json"
    raw = json.loads(datalist_file.read_text())
    sha = hashlib.sha256(open(ckpt, "rb").read()).hexdigest()
    expected_generator = {"bundle": "brain_gan", "version": "0.2.0", "checkpoint": "model.pt", "checkpoint_sha256": sha}
    assert raw["synthetic"] is True
    assert raw["generator"] == expected_generator
    assert raw["description"] == "synthetic data written by brain_gan 0.2.0"
    assert [e["image"] for e in raw["training"]] == [f"synthetic_{i:05d}.nii.gz" for i in range(3)]

    entries = load_decathlon_datalist(str(datalist_file), data_list_key="training")
    assert len(entries) == 3
    for i, entry in enumerate(entries):
        assert entry["synthetic"] is True
        assert entry["source"] == f"/data/subject_{i:03d}.nii.gz"
        assert entry["generator"] == expected_generator
        assert entry["subject_id"] == i and isinstance(entry["subject_id"], int)
        assert entry["score"] == pytest.approx(i / 2)
        assert entry["k"] == 1
        img = nib.load(entry["image"])
        assert img.shape == (6, 7, 8)
        assert img.get_data_dtype() == np.float32
        np.testing.assert_array_equal(img.affine, np.eye(4))
        with torch.no_grad():
            expected = net(torch.as_tensor(data[i]["image"])[None])[0, 0].numpy()
        np.testing.assert_allclose(img.get_fdata(), expected, rtol=1e-5, atol=1e-6)
    assert _no_tmp_left(out_dir)


def test_multi_channel_2d_lists_of_files(tmp_path):
    net = _net(4, 2)
    out_dir = tmp_path / "out"
    data = _data(3, (8, 9))
    names = ["t1", "t1c", "t2", "flair"]
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    writer = SyntheticDatalistWriter(
        out_dir, "mm_gan", "1.0.0", None, channel_names=names, section="validation", prefix="mm", affine=affine
    )
    _run(writer, net, data)

    raw = json.loads((out_dir / "datalist.json").read_text())
    assert raw["generator"]["checkpoint"] is None and raw["generator"]["checkpoint_sha256"] is None
    assert raw["channel_names"] == names
    entries = load_decathlon_datalist(str(out_dir / "datalist.json"), data_list_key="validation")
    assert len(entries) == 3 and writer.num_written == 3
    for i, entry in enumerate(entries):
        assert entry["source"] == "noise"
        assert isinstance(entry["image"], list) and len(entry["image"]) == 4
        assert [os.path.basename(p) for p in entry["image"]] == [f"mm_{i:05d}_{n}.nii.gz" for n in names]
        with torch.no_grad():
            expected = net(torch.as_tensor(data[i]["image"])[None])[0].numpy()
        for c, path in enumerate(entry["image"]):
            img = nib.load(path)
            assert img.shape == (8, 9)
            np.testing.assert_array_equal(img.affine, affine)
            np.testing.assert_allclose(img.get_fdata(), expected[c], rtol=1e-5, atol=1e-6)
    assert _no_tmp_left(out_dir)


def test_default_channel_names_and_no_patient_metadata(tmp_path):
    net = _net(2, 2)
    data = _data(2, (5, 5))
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None, datalist_name="lists/synth.json")
    _run(writer, net, data)
    entries = load_decathlon_datalist(str(tmp_path / "lists" / "synth.json"))
    assert [os.path.basename(p) for p in entries[0]["image"]] == [
        "synthetic_00000_ch0.nii.gz",
        "synthetic_00000_ch1.nii.gz",
    ]
    raw = json.loads((tmp_path / "lists" / "synth.json").read_text())
    assert raw["training"][0]["image"][0] == os.path.join("..", "synthetic_00000_ch0.nii.gz")
    header = nib.load(entries[0]["image"][0]).header
    assert header["descrip"].tobytes().startswith(b"synthetic b 0.1")
    assert header["db_name"].tobytes().strip(b"\x00") == b""


def test_dict_of_batched_tensors(tmp_path):
    """``decollate=False``: the output is a dict of batched tensors."""
    net = _net(1, 2)
    data = _data(3, (6, 6))
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None, copy_keys=("subject_id",), source_key="src")
    _run(writer, net, data, decollate=False)
    entries = load_decathlon_datalist(str(tmp_path / "datalist.json"))
    assert [e["subject_id"] for e in entries] == [0, 1, 2]
    assert [e["source"] for e in entries] == [d["src"] for d in data]
    assert nib.load(entries[2]["image"]).shape == (6, 6)


def test_rerun_resets_entries(tmp_path):
    net = _net(1, 2)
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None)
    evaluator = SupervisedEvaluator(
        device=DEVICE, val_data_loader=DataLoader(_data(2, (4, 4)), batch_size=2), network=net
    )
    writer.attach(evaluator)
    evaluator.run()
    evaluator.run()
    assert writer.num_written == 2
    assert len(json.loads((tmp_path / "datalist.json").read_text())["training"]) == 2


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        SyntheticDatalistWriter(tmp_path, "b", "0.1", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError):
        SyntheticDatalistWriter(tmp_path, "b", "0.1", None, affine=np.eye(3))
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None, channel_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="channel_names"):
        writer.write_sample({"pred": torch.zeros(2, 4, 4)})
    with pytest.raises(ValueError, match="channel-first"):
        writer.write_sample({"pred": torch.zeros(4, 4)})
    with pytest.raises(KeyError, match="pred"):
        writer.write_sample({"image": torch.zeros(1, 4, 4)})
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None, copy_keys=("age",))
    with pytest.raises(KeyError, match="age"):
        writer.write_sample({"pred": torch.zeros(1, 4, 4)})


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None)

    def broken_save(img, filename):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    def broken_stream(img, stream):  # save_nifti streams a .nii.gz through its own gzip writer
        stream.write(b"partial")
        stream.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", broken_save)
    monkeypatch.setattr(nib.Nifti1Image, "to_stream", broken_stream)
    with pytest.raises(KeyboardInterrupt):
        writer.write_sample({"pred": torch.zeros(1, 4, 4)})
    assert os.listdir(tmp_path) == []
    assert writer.num_written == 0


def test_meta_tensor_source_and_fresh_affine(tmp_path):
    from monai.data import MetaTensor

    meta = {"filename_or_obj": "/patients/p001_t1.nii.gz", "patient_name": "someone"}
    src = MetaTensor(torch.rand(1, 4, 4, 4), affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])), meta=meta)
    pred = MetaTensor(torch.rand(1, 4, 4, 4), meta=dict(src.meta))
    writer = SyntheticDatalistWriter(tmp_path, "b", "0.1", None, source_key="image")
    entry = writer.write_sample({"image": src, "pred": pred})
    assert entry["source"] == "/patients/p001_t1.nii.gz"
    img = nib.load(tmp_path / entry["image"])
    np.testing.assert_array_equal(img.affine, np.eye(4))
    assert b"someone" not in gzip.decompress((tmp_path / entry["image"]).read_bytes())


def test_label_key_writes_integer_masks_next_to_images(tmp_path):
    net = _net(2, 3)
    data = _data(3, (4, 5, 6))
    rng = np.random.default_rng(1)
    for d in data:
        d["label"] = rng.integers(0, 3, size=(1, 4, 5, 6)).astype(np.float32)  # as a loader gives a mask
    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    writer = SyntheticDatalistWriter(
        tmp_path / "pairs", "sg", "0.1", None, channel_names=["t1", "t2"], affine=affine, label_key="label"
    )
    _run(writer, net, data)

    raw = json.loads((tmp_path / "pairs" / "datalist.json").read_text())
    assert [e["label"] for e in raw["training"]] == [f"synthetic_{i:05d}_label.nii.gz" for i in range(3)]
    assert list(raw["training"][0])[:3] == ["image", "label", "synthetic"]
    entries = load_decathlon_datalist(str(tmp_path / "pairs" / "datalist.json"), is_segmentation=True)
    for i, entry in enumerate(entries):
        mask = nib.load(entry["label"])
        assert mask.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(mask.affine, affine)
        np.testing.assert_array_equal(mask.affine, nib.load(entry["image"][0]).affine)
        np.testing.assert_array_equal(np.asarray(mask.dataobj), data[i]["label"][0])
        assert nib.load(entry["image"][1]).shape == (4, 5, 6)
    assert _no_tmp_left(tmp_path / "pairs")


def test_label_key_spatial_label_map_and_errors(tmp_path):
    writer = SyntheticDatalistWriter(tmp_path, "sg", "0.1", None, label_key="mask", label_dtype=np.int16)
    entry = writer.write_sample({"pred": torch.rand(1, 4, 6), "mask": torch.tensor([[0, 300] * 3] * 4)})
    assert entry["label"] == "synthetic_00000_label.nii.gz" and entry["image"] == "synthetic_00000.nii.gz"
    mask = nib.load(tmp_path / entry["label"])
    assert mask.get_data_dtype() == np.int16 and int(np.asarray(mask.dataobj).max()) == 300
    with pytest.raises(ValueError, match="shape"):
        writer.write_sample({"pred": torch.rand(1, 4, 6), "mask": torch.zeros(1, 4, 5)})
    with pytest.raises(ValueError, match="integer"):
        writer.write_sample({"pred": torch.rand(1, 4, 6), "mask": torch.full((4, 6), 0.5)})
    with pytest.raises(KeyError, match="mask"):
        writer.write_sample({"pred": torch.rand(1, 4, 6)})
    assert writer.num_written == 1
    with pytest.raises(ValueError, match="fit"):
        SyntheticDatalistWriter(tmp_path, "sg", "0.1", None, label_key="m").write_sample(
            {"pred": torch.rand(1, 4, 4), "m": torch.full((4, 4), 256)}
        )
    with pytest.raises(ValueError, match="integer type"):
        SyntheticDatalistWriter(tmp_path, "sg", "0.1", None, label_key="m", label_dtype=np.float32)
    with pytest.raises(ValueError, match="'label'"):
        SyntheticDatalistWriter(tmp_path, "sg", "0.1", None, channel_names=["image", "label"], label_key="m")
