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


# ---- segmentation masks (CDA-GAN Table 3 baselines)
def _seg_batch(spatial, classes=3, b=6):
    """Images whose two channels are i + 1 and (i + 1)^2 for sample i (each pixel tells its source sample) and
    random one-hot masks (B, K, *spatial)."""
    g = torch.Generator().manual_seed(0)
    base = (torch.arange(b, dtype=torch.float32) + 1).reshape(b, 1, *([1] * len(spatial)))
    images = torch.cat([base, base**2], dim=1).expand(b, 2, *spatial).clone()
    labels = torch.randint(0, classes, (b, 1, *spatial), generator=g)
    return images, labels, torch.nn.functional.one_hot(labels[:, 0], classes).movedim(-1, 1).float()


@pytest.mark.parametrize("spatial", [(12, 10), (8, 6, 7)])
def test_segmentation_cutmix_pastes_masks_exactly_where_it_pastes_images(spatial):
    images, _, masks = _seg_batch(spatial)
    mixer = BatchMixer("cutmix", alpha=1.0, seed=5)
    mixed, out = mixer(images, masks)
    assert out.shape == masks.shape
    # the sample each pixel of each mixed image comes from, and the mask that sample has at that pixel
    source = mixed[:, 0].round().long() - 1  # (B, *spatial)
    assert torch.equal(mixed[:, 1], (source + 1).float() ** 2)  # image pixels are whole copies, never blends
    expected = torch.gather(masks, 0, source[:, None].expand_as(masks))
    assert torch.equal(out, expected)
    own = source == torch.arange(6).reshape(6, *([1] * len(spatial)))
    pasted = ~own.flatten(1).all(1)  # samples that received another sample's box (not their own, nor an empty box)
    assert torch.allclose(mixer.last_weights[pasted], own.float().flatten(1).mean(1)[pasted])
    assert (~own).any()  # some pixels were pasted from another sample
    # pixels pasted from another sample carry that sample's mask, which differs from the sample's own mask somewhere
    assert not torch.equal(out[~own.unsqueeze(1).expand_as(out)], masks[~own.unsqueeze(1).expand_as(masks)])


@pytest.mark.parametrize("spatial", [(6, 5), (4, 3, 5)])
def test_segmentation_mixup_mixes_masks_with_the_image_lambda(spatial):
    images, _, masks = _seg_batch(spatial)
    mixer = BatchMixer("mixup", alpha=1.0, seed=2)
    mixed, out = mixer(images, masks)
    assert torch.allclose(out.sum(1), torch.ones_like(out[:, 0]))  # a soft one-hot mask
    mixed_any = False
    for i in range(6):
        v0, v1 = float(mixed[i, 0].flatten()[0]), float(mixed[i, 1].flatten()[0])
        # solve v0 = lam a + (1 - lam) b and v1 = lam a^2 + (1 - lam) b^2 for the partner b = j + 1 and lam
        a, fits = i + 1, []
        for j in range(6):
            if j == i:
                continue
            lam = (v0 - (j + 1)) / (a - (j + 1))
            if abs(lam * a**2 + (1 - lam) * (j + 1) ** 2 - v1) < 1e-3:
                fits.append((j, lam))
        if abs(v0 - a) < 1e-5 and abs(v1 - a**2) < 1e-5:  # own image (partner itself or lam = 1)
            continue
        assert len(fits) == 1
        j, lam = fits[0]
        mixed_any = True
        assert mixer.last_weights[i] == pytest.approx(lam, abs=1e-4)
        assert torch.allclose(out[i], lam * masks[i] + (1 - lam) * masks[j], atol=1e-4)
    assert mixed_any


def test_segmentation_cutout_keeps_masks():
    images, _, masks = _seg_batch((10, 10))
    mixed, out = BatchMixer("cutout", seed=1)(images, masks)
    assert torch.equal(out, masks)
    assert (mixed == 0).any() and not (mixed == 0).all()


def test_segmentation_prepare_batch_one_hot_mixing_and_losses():
    from common.losses import SoftDiceLoss
    from common.transforms import SegmentationPrepareBatch
    from monai.losses import DiceLoss

    images, labels, masks = _seg_batch((8, 8), b=4)
    batch = {"image": images, "label": labels.float()}
    x, y = SegmentationPrepareBatch(3)(batch, "cpu")
    assert torch.equal(y, masks) and torch.equal(x, images)
    x, y = SegmentationPrepareBatch(3, one_hot=False, mixer=BatchMixer("none"))(batch, "cpu")
    assert torch.equal(y, labels.float())  # MONAI's default prepare_batch
    with pytest.raises(ValueError, match="one-hot"):
        SegmentationPrepareBatch(3, one_hot=False, mixer=BatchMixer("cutmix"))(batch, "cpu")
    with pytest.raises(ValueError, match="mask labels"):
        SegmentationPrepareBatch(2)(batch, "cpu")
    # the one-hot targets give the loss of the label maps (the default path), and soft targets are accepted
    logits = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    kw = {"softmax": True, "batch": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5}
    on_maps = DiceLoss(to_onehot_y=True, **kw)(logits, labels)
    assert torch.allclose(DiceLoss(to_onehot_y=False, **kw)(logits, masks), on_maps)
    _, soft = SegmentationPrepareBatch(3, mixer=BatchMixer("mixup", seed=1))(batch, "cpu")
    assert not torch.equal(soft, soft.round())
    assert torch.isfinite(DiceLoss(to_onehot_y=False, **kw)(logits, soft))
    # eq. 5 on a soft target: -(2 sum m p + eps) / (2 B N + eps) with softmax p
    p = torch.softmax(logits, 1)
    expected = -(2 * (soft * p).sum() + 1e-5) / (soft.sum() + p.sum() + 1e-5)
    assert torch.allclose(SoftDiceLoss(1e-5)(logits, soft), expected)
