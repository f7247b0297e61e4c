"""YOLOv3 (common.networks.detection.yolov3) and its anchors: k-means on known clusters, the datalist helper, output
shapes in 2D and 3D, the Darknet-53 size, training/eval interface of FasterRCNN, padding and network resolution."""

import json
import math

import numpy as np
import pytest
import torch
from common.networks import YOLOv3
from common.networks.detection import AnchorError, DarknetBackbone, datalist_anchors, datalist_box_sizes, kmeans_anchors
from common.utils.errors import UserInputError

ANCHORS_2D = [[4, 4], [6, 6], [8, 8], [10, 10], [12, 12], [14, 14], [16, 16], [20, 20], [24, 24]]
TINY = dict(base_channels=4, blocks=(1, 1, 1, 1, 1))


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


def test_kmeans_recovers_known_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 8.0], [12.0, 12.0], [30.0, 20.0]])
    sizes = np.concatenate([c * rng.uniform(0.95, 1.05, size=(50, 2)) for c in centres])
    anchors = kmeans_anchors(sizes, 3, seed=1)
    assert anchors.shape == (3, 2)
    assert torch.allclose(anchors, torch.tensor(centres, dtype=torch.float32), rtol=0.03)  # sorted by area
    assert torch.equal(anchors, kmeans_anchors(sizes, 3, seed=1))
    with pytest.warns(UserWarning, match="2 distinct box shapes: 1 anchors repeat"):
        few = kmeans_anchors(np.array([[4.0, 4.0]] * 5 + [[8.0, 8.0]]), 3)
    assert sorted(map(tuple, few.tolist()))[0] == (4.0, 4.0) and (8.0, 8.0) in map(tuple, few.tolist())


def test_datalist_anchors_read_and_scale_the_training_boxes(tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((64, 32, 1), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    entries = [
        {"image": "a.nii.gz", "box": [[0, 0, 4, 8], [10, 10, 22, 22]], "box_label": [0, 0]},
        {"image": "a.nii.gz", "box": [[1, 1, 31, 21]], "box_label": [0]},
        {"image": "a.nii.gz", "box": [], "box_label": []},
    ]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": entries, "test": entries[2:], "validation": []}))
    sizes = datalist_box_sizes(path, spatial_dims=2, box_mode="xyxy")
    assert sizes.tolist() == [[4, 8], [12, 12], [30, 20]]
    scaled = datalist_box_sizes(path, spatial_dims=2, box_mode="xyxy", target_size=[128, 128])
    assert scaled.tolist() == [[8, 32], [24, 48], [60, 80]]  # x2 along axis 0 (64), x4 along axis 1 (32)
    assert datalist_anchors(path, 3, spatial_dims=2, box_mode="xyxy") == [[4, 8], [12, 12], [30, 20]]
    with pytest.raises(AnchorError, match="no boxes") as err:
        datalist_box_sizes(path, spatial_dims=2, section="test")
    assert isinstance(err.value, UserInputError) and str(path) in str(err.value)
    with pytest.raises(AnchorError, match="no boxes"):
        datalist_box_sizes(path, spatial_dims=2, section="validation")
    with pytest.raises(AnchorError, match="cannot read"):
        datalist_box_sizes(path, spatial_dims=2, section="missing")


def test_darknet53_at_full_size():
    backbone = DarknetBackbone(2, 3)
    convs = [m for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 52  # Darknet-53 is these 52 convolutions and the classifier's connected layer
    assert sum(p.numel() for p in backbone.parameters()) == pytest.approx(40.58e6, rel=1e-3)
    assert backbone.out_channels == [256, 512, 1024]


def test_output_shapes_2d_and_3d():
    net = YOLOv3(2, 1, 2, ANCHORS_2D, **TINY)
    outs = net.raw_outputs(torch.rand(2, 1, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 8, 12, 7), (2, 3, 4, 6, 7), (2, 3, 2, 3, 7)]  # 2 d + 1 + C = 7
    net3 = YOLOv3(3, 2, 1, [[a[0]] * 3 for a in ANCHORS_2D], base_channels=2, blocks=(1, 1, 1, 1, 1))
    outs = net3.raw_outputs(torch.rand(1, 2, 32, 64, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 3, 4, 8, 4, 8), (1, 3, 2, 4, 2, 8), (1, 3, 1, 2, 1, 8)]
    net3.eval()
    (det,) = net3(torch.rand(1, 2, 32, 32, 32))
    assert det["boxes"].shape[1] == 6 and det["boxes"].shape[0] == det["scores"].shape[0] > 0


def test_training_and_eval_interface_of_faster_rcnn():
    net = YOLOv3(2, 1, 1, ANCHORS_2D, detections_per_img=20, **TINY)
    images = torch.rand(2, 1, 40, 50)  # not multiples of 32: padded to 64 x 64
    targets = [
        {"boxes": torch.tensor([[3.0, 4.0, 13.0, 12.0]]), "labels": torch.tensor([0])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    losses = net(images, targets)
    assert set(losses) == {"loss_box", "loss_objectness", "loss_class"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert net.head.outputs[0][-1].conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="targets"):
        net(images)
    net.eval()
    detections = net(images)
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"boxes", "scores", "labels"}
        assert 0 < det["boxes"].shape[0] <= 20 and det["labels"].dtype == torch.int64
        assert torch.all(det["scores"][:-1] >= det["scores"][1:]) and torch.all(det["scores"] > net.score_thresh)
        boxes = det["boxes"]
        assert torch.all(boxes[:, :2] >= 0) and torch.all(boxes[:, 2] <= 40) and torch.all(boxes[:, 3] <= 50)
        assert torch.all(boxes[:, 2:] > boxes[:, :2])


def test_score_threshold_and_nms():
    net = YOLOv3(2, 1, 1, ANCHORS_2D, score_thresh=0.99, **TINY).eval()
    assert net(torch.rand(1, 1, 32, 32))[0]["boxes"].shape == (0, 4)  # untrained scores are about 0.01 * 0.5
    net = YOLOv3(2, 1, 1, ANCHORS_2D, nms_thresh=0.0, **TINY).eval()
    (det,) = net(torch.rand(1, 1, 32, 32))
    from monai.data.box_utils import box_iou

    iou = box_iou(det["boxes"], det["boxes"]) - torch.eye(len(det["boxes"]))
    assert iou.max() <= 0.0  # NMS at IoU 0 leaves disjoint boxes only


def test_network_resolution_resizes_and_scales_back():
    size = {"training": [64, 64], "testing": [96, 96]}
    net = YOLOv3(2, 1, 1, ANCHORS_2D, input_size=size, **TINY)
    images = torch.rand(1, 1, 32, 48)
    seen = []
    net.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[2:])))
    boxes = torch.tensor([[3.0, 4.0, 13.0, 12.0]])
    captured = {}
    original = net.loss.forward

    def spy(predictions, anchors, strides, targets):
        captured["boxes"] = targets[0]["boxes"]
        return original(predictions, anchors, strides, targets)

    net.loss.forward = spy
    net(images, [{"boxes": boxes, "labels": torch.tensor([0])}])
    assert seen[-1] == (64, 64)
    assert torch.allclose(captured["boxes"], boxes * torch.tensor([2.0, 4 / 3, 2.0, 4 / 3]))
    net.eval()
    (det,) = net(images)
    assert seen[-1] == (96, 96)
    assert torch.all(det["boxes"][:, 2] <= 32) and torch.all(det["boxes"][:, 3] <= 48)
    with pytest.raises(ValueError, match="multiples of 32"):
        YOLOv3(2, 1, 1, ANCHORS_2D, input_size={"training": [100, 100]}, **TINY)


def test_anchors_are_sorted_and_travel_with_the_state_dict():
    shuffled = ANCHORS_2D[::-1]
    net = YOLOv3(2, 1, 1, shuffled, **TINY)
    assert net.anchors.tolist() == [[float(v) for v in a] for a in ANCHORS_2D]
    assert [a.shape for a in net.scale_anchors()] == [(3, 2)] * 3
    other = YOLOv3(2, 1, 1, [[1, 1]] * 9, **TINY)
    other.load_state_dict(net.state_dict())
    assert torch.equal(other.anchors, net.anchors)
    with pytest.raises(ValueError, match="anchors must be 9"):
        YOLOv3(2, 1, 1, ANCHORS_2D[:6], **TINY)


def test_objectness_prior_sets_the_output_bias():
    net = YOLOv3(2, 1, 2, ANCHORS_2D, objectness_prior=0.01, **TINY)
    for output in net.head.outputs:
        bias = output[-1].conv.bias.view(3, 7)  # per anchor: t_x, t_y, t_w, t_h, objectness, 2 classes
        assert torch.allclose(bias[:, 4], torch.full((3,), -math.log(99.0)))
        assert bias[:, :4].abs().max() < 1.0  # the other biases keep PyTorch's initialisation
    plain = YOLOv3(2, 1, 2, ANCHORS_2D, objectness_prior=None, **TINY)
    assert plain.head.outputs[0][-1].conv.bias.view(3, 7)[:, 4].abs().max() < 1.0
    with pytest.raises(ValueError, match="objectness_prior"):
        YOLOv3(2, 1, 2, ANCHORS_2D, objectness_prior=1.0, **TINY)
