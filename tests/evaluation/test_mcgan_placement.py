"""Where the 3D MCGAN synthesis puts its nodules (Han thesis sec. 6.2.1): at each real nodule's box shifted and
zoomed by up to 10 % (``real_nodule``, the default), or at random inside the lung (``random_lung``)."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data.validation import DatalistError
from common.evaluation.mcgan import MCGANSynthesis, SynthesisSettingError
from common.transforms import lung_mask

SHAPE = (24, 24, 24)
BOXES = [[4, 5, 5, 9, 10, 10], [15, 12, 11, 21, 18, 18]]  # one nodule in each lung block
CONDITIONS = [("small", "solid"), ("large", "ground-glass")]


class Constant(torch.nn.Module):
    """A stand-in generator: a constant nodule of 0.5 (in [-1, 1]) everywhere in the VOI."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1] * 0 + 0.5


def _volume() -> np.ndarray:
    v = np.zeros(SHAPE, dtype=np.float32)  # soft tissue
    v[[0, -1]], v[:, [0, -1]] = -1000.0, -1000.0  # air around the body (touches the in-plane borders)
    v[3:11, 3:21, 3:21] = -850.0  # two lung blocks
    v[13:22, 3:21, 3:21] = -850.0
    for b in BOXES:
        v[b[0] + 1 : b[3] - 1, b[1] + 1 : b[4] - 1, b[2] + 1 : b[5] - 1] = 20.0  # the real nodules
    return v


def _datalist(tmp_path, lung_file: np.ndarray | None = None) -> str:
    nib.save(nib.Nifti1Image(_volume(), np.eye(4)), str(tmp_path / "ct.nii.gz"))
    entry = {"image": "ct.nii.gz", "box": BOXES, "size": [c[0] for c in CONDITIONS]}
    entry["attenuation"] = [c[1] for c in CONDITIONS]
    if lung_file is not None:
        nib.save(nib.Nifti1Image(lung_file.astype(np.uint8), np.eye(4)), str(tmp_path / "lung.nii.gz"))
        entry["lung"] = "lung.nii.gz"
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [entry]}))
    return str(path)


def _synthesis(tmp_path, datalist, **kwargs) -> MCGANSynthesis:
    return MCGANSynthesis(
        Constant(), datalist, tmp_path / "out", None, "mcgan_3d", "0", voi_size=16, nodule_size=8, **kwargs
    )


def _written(tmp_path):
    data = json.loads((tmp_path / "out" / "datalist.json").read_text())
    return data, data["training"]


def test_real_nodule_placement_is_the_real_box_shifted_and_zoomed_up_to_ten_percent(tmp_path):
    synthesis = _synthesis(tmp_path, _datalist(tmp_path), ratio=6, seed=1)
    assert synthesis.placement == "real_nodule"  # the default
    summary = synthesis.run()
    data, entries = _written(tmp_path)
    assert data["placement"] == "real_nodule" and summary["num_generated_nodules"] == 12 == 6 * len(BOXES)
    real = np.array(BOXES, dtype=float)
    centre, extent = (real[:, :3] + real[:, 3:]) / 2, real[:, 3:] - real[:, :3]
    moved = []
    for e in entries:
        # each real nodule generated again with its own conditions, in its own place: one box each, all synthetic
        assert e["size"] == [c[0] for c in CONDITIONS] and e["attenuation"] == [c[1] for c in CONDITIONS]
        assert e["synthetic_box"] == [True, True] and len(e["box"]) == len(BOXES)
        box = np.array(e["box"], dtype=float)
        new_centre, new_extent = (box[:, :3] + box[:, 3:]) / 2, box[:, 3:] - box[:, :3]
        # shift <= 10 % of the extent, zoom within 10 % (plus half a voxel of rounding each)
        assert np.all(np.abs(new_centre - centre) <= 0.1 * extent + 0.5 + 1e-9)
        assert np.all(new_extent >= 0.9 * extent - 0.5) and np.all(new_extent <= 1.1 * extent + 0.5)
        moved.append(not np.array_equal(box, real))
        # the scan changed only around the generated boxes (nodule region: box + 1 voxel margin)
        image = nib.load(tmp_path / "out" / e["image"]).get_fdata()
        changed = np.abs(image - _volume()) > 1e-3
        near = np.zeros(SHAPE, dtype=bool)
        for b in e["box"]:
            near[b[0] - 2 : b[3] + 2, b[1] - 2 : b[4] + 2, b[2] - 2 : b[5] + 2] = True
        assert changed.any() and not (changed & ~near).any()
    assert sum(moved) >= 3  # the draws do move the boxes


def test_random_lung_placement_uses_the_datalist_lung_mask(tmp_path):
    only_first = np.zeros(SHAPE, dtype=bool)
    only_first[3:11, 3:21, 3:21] = True  # the mask file holds the first lung block only
    synthesis = _synthesis(tmp_path, _datalist(tmp_path, only_first), ratio=3, placement="random_lung", seed=0)
    synthesis.run()
    data, entries = _written(tmp_path)
    assert data["placement"] == "random_lung"
    for e in entries:
        assert e["box"][:2] == BOXES and e["synthetic_box"] == [False, False, True, True]  # real nodules kept
        assert e["size"][2:] == [c[0] for c in CONDITIONS] and e["attenuation"][2:] == [c[1] for c in CONDITIONS]
        for b in e["box"][2:]:
            assert only_first[b[0] : b[3], b[1] : b[4], b[2] : b[5]].all()


def test_random_lung_placement_without_a_mask_file_thresholds_the_hu(tmp_path):
    synthesis = _synthesis(tmp_path, _datalist(tmp_path), ratio=3, placement="random_lung", seed=0)
    synthesis.run()
    lung = lung_mask(_volume(), -500.0)
    assert not lung[0].any() and lung[3:11, 3:21, 3:21].all()
    second = False
    for e in _written(tmp_path)[1]:
        for b in e["box"][2:]:
            assert lung[b[0] : b[3], b[1] : b[4], b[2] : b[5]].all()
            second |= b[0] >= 13
    assert second  # the second lung block, absent from the mask file of the test above, is used


def test_placement_settings_and_bad_lung_masks_are_refused(tmp_path):
    datalist = _datalist(tmp_path, np.ones((24, 24, 20), dtype=bool))
    with pytest.raises(SynthesisSettingError, match="unknown placement"):
        _synthesis(tmp_path, datalist, placement="anywhere")
    with pytest.raises(SynthesisSettingError, match="random_lung"):
        _synthesis(tmp_path, datalist, conditions=[{"size": "small", "attenuation": "solid"}])
    with pytest.raises(DatalistError, match="lung.nii.gz.*differs"):
        _synthesis(tmp_path, datalist, placement="random_lung").run()
    # a box at the border: the drawn boxes stay inside the volume
    synthesis = _synthesis(tmp_path, datalist, seed=0)
    for _ in range(20):
        b = synthesis.real_nodule_box([0, 0, 19, 5, 5, 24], SHAPE)
        assert min(b[:3]) >= 0 and all(b[3 + a] <= SHAPE[a] for a in range(3))


class DtypeProbe(Constant):
    """A stand-in generator that records the dtype its convolution-like op computes in under autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(torch.matmul(x[:1, :1, :2, :2, 0], x[:1, :1, :2, :2, 0]).dtype)
        return super().forward(x)


@pytest.mark.parametrize("amp, dtype", [(False, torch.float32), ("bfloat16", torch.bfloat16)])
def test_synthesis_runs_the_generator_under_its_precision_policy_and_records_it(tmp_path, amp, dtype):
    probe = DtypeProbe()
    synthesis = MCGANSynthesis(
        probe, _datalist(tmp_path), tmp_path / "out", None, "mcgan_3d", "0", voi_size=16, nodule_size=8, amp=amp
    )
    summary = synthesis.run()
    assert probe.seen and set(probe.seen) == {dtype}
    assert summary["precision"]["dtype"] == str(dtype).replace("torch.", "")
    written = nib.load(tmp_path / "out" / _written(tmp_path)[1][0]["image"])
    assert written.get_data_dtype() == np.float32 and np.isfinite(written.get_fdata()).all()  # fp32 HU either way
