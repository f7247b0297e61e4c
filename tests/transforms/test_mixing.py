"""Batch MixUp / CutMix / CutOut with soft labels (CDA-GAN Table 2 baselines)."""

import pytest
import torch
from common.transforms import BatchMixer, ClassificationPrepareBatch


def _batch(spatial=(16, 16)):
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    # image of sample i is constant i + 1, so each pixel tells which sample it came from
    images = (torch.arange(6, dtype=torch.float32) + 1).reshape(6, 1, *([1] * len(spatial))).expand(6, 2, *spatial)
    return images.clone(), torch.nn.functional.one_hot(labels, 2).float()


@pytest.mark.parametrize("spatial", [(16, 16), (8, 8, 8)])
def test_cutmix_label_weight_is_the_fraction_of_own_pixels(spatial):
    images, labels = _batch(spatial)
    mixer = BatchMixer("cutmix", alpha=1.0, seed=3)
    mixed, soft = mixer(images, labels)
    assert torch.allclose(soft.sum(1), torch.ones(6))
    for i in range(6):
        own = (mixed[i] == i + 1).float().mean()
        others = mixed[i][mixed[i] != i + 1].unique()
        if others.numel():  # the pasted pixels come from one other sample, whose label takes the rest
            assert mixer.last_weights[i] == pytest.approx(float(own), abs=1e-6)
            j = int(others[0]) - 1
            expected = own * labels[i] + (1 - own) * labels[j]
            assert torch.allclose(soft[i], expected, atol=1e-6)
        else:  # pasted from itself (or an empty box): its own label
            assert torch.allclose(soft[i], labels[i])
    assert (mixer.last_weights < 1).any()


def test_mixup_mixes_images_and_labels_with_the_same_weight():
    images, labels = _batch()
    mixer = BatchMixer("mixup", seed=0)
    mixed, soft = mixer(images, labels)
    for i in range(6):
        lam = mixer.last_weights[i]
        # mixed value = lam * (i+1) + (1-lam) * (j+1): recover j and compare the label mix
        j = int(round(float((mixed[i, 0, 0, 0] - lam * (i + 1)) / (1 - lam)))) - 1 if lam < 0.999 else i
        assert torch.allclose(soft[i], lam * labels[i] + (1 - lam) * labels[j], atol=1e-4)


def test_cutout_keeps_labels_and_zeroes_a_box():
    images, labels = _batch()
    mixed, out = BatchMixer("cutout", seed=1)(images, labels)
    assert torch.equal(out, labels)
    assert (mixed == 0).any() and set(mixed.unique().tolist()) <= set(range(7))


def test_none_and_errors():
    images, labels = _batch()
    mixed, out = BatchMixer("none")(images, labels)
    assert mixed is images and out is labels
    with pytest.raises(ValueError, match="Unknown mixing mode"):
        BatchMixer("mosaic")


def test_prepare_batch_one_hot_and_mixing():
    images, _ = _batch()
    batch = {"image": images, "class": torch.tensor([0, 1, 2, 1, 0, 2])}
    x, y = ClassificationPrepareBatch(3)(batch, "cpu")
    assert y.shape == (6, 3) and torch.equal(y.argmax(1), batch["class"])
    x, y = ClassificationPrepareBatch(3, mixer=BatchMixer("mixup", seed=0))(batch, "cpu")
    assert torch.allclose(y.sum(1), torch.ones(6)) and not torch.equal(y, y.round())
    # soft targets work with the cross-entropy loss
    loss = torch.nn.CrossEntropyLoss()(torch.randn(6, 3), y)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="class labels"):
        ClassificationPrepareBatch(2)(batch, "cpu")
