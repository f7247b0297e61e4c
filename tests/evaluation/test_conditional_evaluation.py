"""ConditionalGenerativeEvaluation on constructed generators whose PA and copy fraction are known."""

import json

import pytest
import torch
import torch.nn as nn
from common.evaluation import ConditionalGenerativeEvaluation


def _split(n, seed):
    """Class 0: dark noisy images, class 1: a bright square on them; ``(n, 1, 16, 16)`` in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 16, 16, generator=g) * 0.4 - 0.9
    classes = torch.arange(n) % 2
    images[classes == 1, :, 4:12, 4:12] += 1.5
    return [{"image": images[i : i + 4], "class": classes[i : i + 4]} for i in range(0, n, 4)]


class ClassPainter(nn.Module):
    """Draws a new image of the class it is asked for (``labels``), ignoring x: a perfect class-conditional
    generator that copies nothing."""

    def __init__(self):
        super().__init__()
        self.rng = torch.Generator().manual_seed(5)

    def forward(self, x, z, labels=None):
        out = torch.rand(x.shape, generator=self.rng) * 0.4 - 0.9 + 0.01 * z[:, :1, None, None]
        out[labels == 1, :, 4:12, 4:12] += 1.5
        return out


class WrongPainter(ClassPainter):
    def forward(self, x, z, labels=None):
        return super().forward(x, z, 1 - labels)


class Copier(nn.Module):
    """Returns one training image whatever it is given."""

    def __init__(self, image):
        super().__init__()
        self.image = image

    def forward(self, x, z, labels=None):
        return self.image.expand(x.shape[0], -1, -1, -1).clone()


def _run(tmp_path, generator, **kwargs):
    evaluation = ConditionalGenerativeEvaluation(
        generator, _split(16, 1), _split(24, 0), latent_dim=4, samples_per_image=2, spatial_dims=2, in_channels=1,
        num_classes=2, output_file=str(tmp_path / "metrics.json"), model_dir=str(tmp_path / "pa"),
        use_labels=True, generative_args={"kid_subset_size": 8, "diversity_pairs": 8}, extra={"method": "test"},
        **kwargs,
    )  # fmt: skip
    return evaluation.run()


def test_pa_and_copy_check_of_known_generators(tmp_path):
    right = _run(tmp_path, ClassPainter())
    assert right["pa"] == pytest.approx(1.0) and right["pa_real"] == pytest.approx(1.0)
    assert right["num_fake"] == 32 and right["num_real"] == 16 and right["pa_ci95"] == pytest.approx(0.0)
    wrong = _run(tmp_path, WrongPainter())
    assert wrong["pa"] == pytest.approx(0.0)
    assert right["copy_fraction"] < 0.1  # new images: about as near to the training set as real ones
    copier = _run(tmp_path, Copier(_split(24, 0)[0]["image"][1:2]))
    assert copier["copy_fraction"] == 1.0 and copier["nn_distance_fake_median"] == pytest.approx(0.0, abs=1e-6)
    assert 0.4 < copier["pa"] < 0.6  # one class-1 image for every sample
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["method"] == "test" and "FeatureSVM" in written["pa_scorer"] and "fid" in written
    assert (tmp_path / "pa" / "svm_model.npz").is_file()
    # the training images scored as the reference: the same value whatever the generator draws
    assert written["num_reference"] == 24 and written["fid_reference"] == pytest.approx(right["fid_reference"])


def test_baselines_get_zeros_for_the_image(tmp_path):
    seen = []

    class Recorder(ClassPainter):
        def forward(self, x, z, labels=None):
            seen.append(x.abs().max().item())
            return super().forward(x, z, labels)

    _run(tmp_path, Recorder(), image_condition=False)
    assert seen and max(seen) == 0.0
