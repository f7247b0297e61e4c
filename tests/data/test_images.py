"""The one datalist image reader (outlier filter, refinement evaluation, t-SNE) and the per-class draw."""

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from common.data import draw_per_class, read_datalist_images


def _write(folder, arrays):
    """One NIfTI file per channel-last array; entries with absolute paths (a list of files: channels)."""
    folder.mkdir(exist_ok=True)
    entries = []
    for i, array in enumerate(arrays):
        files = []
        for c in range(array.shape[0]):
            path = folder / f"img{i}_c{c}.nii.gz"
            nib.save(nib.Nifti1Image(array[c], np.eye(4)), str(path))
            files.append(str(path))
        entries.append({"image": files if len(files) > 1 else files[0], "class": i % 2})
    return entries


def _expected(array, size, scale):
    x = torch.from_numpy(array).float()
    if scale:
        flat = x.reshape(x.shape[0], -1)
        lo, hi = flat.min(1).values, flat.max(1).values
        x = (x - lo.view(-1, *[1] * (x.ndim - 1))) / (hi - lo).view(-1, *[1] * (x.ndim - 1))
    return F.interpolate(x[None], size=[size] * (x.ndim - 1), mode="area")[0]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("scale", [True, False])
def test_read_matches_definition(tmp_path, spatial_dims, scale):
    rng = np.random.default_rng(0)
    arrays = [(rng.random((3, *[8] * spatial_dims)) * 100 - 20).astype(np.float32) for _ in range(3)]
    entries = _write(tmp_path, arrays)
    images = read_datalist_images(entries, spatial_dims, 4, channels=[2, 0], scale=scale)
    assert images.shape == (3, 2, *[4] * spatial_dims) and images.dtype == torch.float32
    assert not hasattr(images, "meta")
    for array, image in zip(arrays, images):
        torch.testing.assert_close(image, _expected(array[[2, 0]], 4, scale), rtol=1e-5, atol=1e-5)
    # spatial_dims from the first image
    assert torch.equal(read_datalist_images(entries, None, 4, channels=[2, 0], scale=scale), images)


def test_read_2d_slices_with_a_trailing_singleton_axis(tmp_path):
    """(H, W, 1) NIfTI slices read as 2D, exactly as the same slices stored as (H, W)."""
    rng = np.random.default_rng(1)
    arrays = [rng.random((2, 8, 6)).astype(np.float32) for _ in range(2)]
    flat = read_datalist_images(_write(tmp_path / "flat", arrays), 2, 4)
    entries = _write(tmp_path / "slices", [a[..., None] for a in arrays])
    assert nib.load(entries[0]["image"][0]).shape == (8, 6, 1)
    slices = read_datalist_images(entries, 2, 4)
    assert slices.shape == (2, 2, 4, 4)
    torch.testing.assert_close(slices, flat)


def test_read_errors(tmp_path):
    rng = np.random.default_rng(0)
    entries = _write(tmp_path, [rng.random((2, 8, 8)).astype(np.float32), rng.random((1, 8, 8)).astype(np.float32)])
    with pytest.raises(ValueError, match="no entries"):
        read_datalist_images([], 2, 4)
    with pytest.raises(ValueError, match="out of range"):
        read_datalist_images(entries[:1], 2, 4, channels=[2])
    with pytest.raises(ValueError, match="channel counts"):
        read_datalist_images(entries, 2, 4)


def test_draw_per_class():
    entries = [{"image": f"{i}", "class": i % 3} for i in range(30)] + [{"image": "none"}]
    chosen = draw_per_class(entries, max_per_class=4, seed=1)
    assert [e.get("class") for e in chosen] == [0] * 4 + [1] * 4 + [2] * 4 + [None]
    assert chosen == draw_per_class(entries, max_per_class=4, seed=1)
    assert chosen != draw_per_class(entries, max_per_class=4, seed=2)
    assert all(int(a["image"]) < int(b["image"]) for a, b in zip(chosen[:3], chosen[1:4]))  # datalist order
    assert len(draw_per_class(entries)) == 31
