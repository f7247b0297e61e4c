"""End-to-end tests of bundles/segmentation through MONAI's bundle runner, on tiny phantom data."""

import json
import math
import re
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import prepare_phantom
from common.engines import latest_checkpoint
from common.experiments.results import read_per_image
from common.losses import SoftDiceLoss
from common.metrics import SEGMENTATION_KEYS
from helpers import configs, evaluate_configs, run_cli, run_workflow
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow
from scipy import ndimage

NAME = "segmentation"
TINY = {
    "brain_mr_2d": {"num_patients": 8, "cases_per_patient": 2, "image_size": 32, "positive_fraction": 0.5, "seed": 0},
    "brain_mr_3d": {"num_patients": 8, "image_size": 16, "positive_fraction": 0.5, "seed": 0},
}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """The tiny phantom sets, generated once and copied into each bundle copy."""
    base = tmp_path_factory.mktemp("phantoms")
    return {kind: prepare_phantom(base / kind, kind, **args) for kind, args in TINY.items()}


def bundle_with_data(bundle_copy, phantoms, kind):
    root = bundle_copy(NAME)
    src = phantoms[kind]
    shutil.copytree(str(src).rsplit("/", 1)[0], root / "data" / kind)
    return root


def chain(error):
    """Every message of an exception and its causes (the bundle parser wraps the original error)."""
    messages = []
    while error is not None:
        messages.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return "\n".join(messages)


def _entries(datalist_file, section):
    data = json.loads(open(datalist_file).read())
    base = datalist_file.parent
    return [{**e, "image": [str(base / f) for f in e["image"]]} for e in data.get(section, [])]


def write_enhanced(root, kind):
    """Difference maps |x - blur(x)| / max beside the phantom (same affine as the image), three datalists as
    CrossDomainSynthesis writes them: training with the train rule (zeros for negatives), validation/test with the
    test rule."""
    datalist = root / "data" / kind / "datalist.json"
    for section, rule in (("training", "train"), ("validation", "test"), ("test", "test")):
        out = root / "data" / "enhanced" / {"training": "train"}.get(section, section)
        (out / "difference").mkdir(parents=True)
        entries = []
        for i, entry in enumerate(_entries(datalist, section)):
            files = []
            for c, f in enumerate(entry["image"]):
                img = nib.load(f)
                x = img.get_fdata().astype(np.float32)
                d = np.abs(x - ndimage.gaussian_filter(x, 2.0))
                d = d / max(float(d.max()), 1e-6)
                if rule == "train" and int(entry["class"]) == 0:
                    d = np.zeros_like(d)
                path = out / "difference" / f"difference_{i:05d}_ch{c}.nii.gz"
                nib.save(nib.Nifti1Image(d, img.affine), str(path))
                files.append(str(path))
            entries.append({**entry, "difference": files})
        data = {"difference_rule": rule, "training": entries}
        (out / "enhanced_datalist.json").write_text(json.dumps(data))


def write_cross_domain(root, kind):
    """A synthetic datalist like CDA-GAN Algorithm 2's: tumour images (class 1) made from training negatives by
    adding a bright blob to the [0, 1]-scaled source, with `source` = the source's first file."""
    datalist = root / "data" / kind / "datalist.json"
    out = root / "data" / "cross_domain"
    (out / "synthetic").mkdir(parents=True)
    entries = []
    for i, entry in enumerate(e for e in _entries(datalist, "training") if int(e["class"]) == 0):
        files = []
        for c, f in enumerate(entry["image"]):
            x = nib.load(f).get_fdata().astype(np.float32)
            x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
            blob = np.zeros_like(x)
            blob[tuple(slice(s // 3, s // 2) for s in x.shape)] = 0.6
            path = out / "synthetic" / f"synthetic_{i:05d}_ch{c}.nii.gz"
            nib.save(nib.Nifti1Image(np.clip(x + blob, 0, 1), np.eye(4)), str(path))
            files.append(f"synthetic/{path.name}")
        entries.append({"image": files, "class": 1, "synthetic": True, "source": entry["image"][0], "source_class": 0})
    (out / "synthetic_datalist.json").write_text(json.dumps({"synthetic": True, "training": entries}))
    return out / "synthetic_datalist.json"


def write_synthetic_pairs(root, kind, with_label=True):
    """A synthetic datalist of image+mask pairs (flipped copies of the training entries)."""
    datalist = root / "data" / kind / "datalist.json"
    out = root / "data" / "synthetic"
    out.mkdir(parents=True)
    data = json.loads(datalist.read_text())
    entries = []
    for i, entry in enumerate(data["training"]):
        files = []
        for c, f in enumerate(entry["image"] + [entry["label"]]):
            img = nib.load(datalist.parent / f)
            path = out / f"pair_{i:05d}_{c}.nii.gz"
            nib.save(nib.Nifti1Image(np.flip(img.get_fdata(), 0).copy().astype(np.float32), img.affine), str(path))
            files.append(path.name)
        item = {"image": files[:-1], "synthetic": True}
        if with_label:
            item["label"] = files[-1]
        entries.append(item)
    (out / "datalist.json").write_text(json.dumps({"training": entries}))


VARIANTS = [
    ("brain_mr_2d", ("tiny.yaml",)),
    ("brain_mr_2d", ("enhanced.yaml", "tiny.yaml")),
    ("brain_mr_2d", ("pseudo_label.yaml", "tiny.yaml")),
    ("brain_mr_2d", ("classic.yaml", "tiny.yaml")),
    ("brain_mr_2d", ("synthetic.yaml", "tiny.yaml")),
    ("brain_mr_2d", ("small.yaml", "tiny.yaml")),
    ("brain_mr_2d", ("multiclass.yaml", "tiny.yaml")),
    ("brain_mr_3d", ("3d.yaml", "tiny_3d.yaml")),
    ("brain_mr_3d", ("3d.yaml", "enhanced.yaml", "tiny_3d.yaml")),
    ("brain_mr_3d", ("3d.yaml", "classic.yaml", "tiny_3d.yaml")),
    ("brain_mr_3d", ("3d.yaml", "pseudo_label.yaml", "tiny_3d.yaml")),
    ("brain_mr_3d", ("3d.yaml", "synthetic.yaml", "tiny_3d.yaml")),
    ("brain_mr_3d", ("3d.yaml", "small.yaml", "tiny_3d.yaml")),
]


@pytest.mark.parametrize("kind,variants", VARIANTS, ids=["-".join(v).replace(".yaml", "") for _, v in VARIANTS])
def test_train_infer_evaluate(bundle_copy, phantoms, kind, variants):
    root = bundle_with_data(bundle_copy, phantoms, kind)
    if "enhanced.yaml" in variants:
        write_enhanced(root, kind)
    if "pseudo_label.yaml" in variants:
        write_cross_domain(root, kind)
    if "synthetic.yaml" in variants:
        write_synthetic_pairs(root, kind)
    wf, _ = run_workflow(configs(root, "train.yaml", *variants), "training")
    parser = wf.parser
    n_train = len(parser.get_parsed_content("train#datalist"))
    n_real = len(parser.get_parsed_content("train#entries"))
    if "pseudo_label.yaml" in variants or "synthetic.yaml" in variants:
        assert n_train > n_real
        batch = next(iter(parser.get_parsed_content("train#dataloader")))
        assert set(batch) == {"image", "label"}
    else:
        assert n_train == n_real
    in_channels = parser.get_parsed_content("in_channels")
    assert in_channels == (8 if "enhanced.yaml" in variants else 4)
    ckpt = latest_checkpoint(root / "models")
    state = torch.load(ckpt, weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] == parser.get_parsed_content("train#trainer").state.iteration > 0
    best = torch.load(root / "models" / "model.pt", weights_only=True)
    assert best.keys() == state["network"].keys()
    assert list((root / "eval" / "runs").glob("events.out.tfevents*"))

    wf, _ = run_workflow(configs(root, "inference.yaml", *variants), "inference")
    predictions = json.loads((root / "eval" / "predictions" / "datalist.json").read_text())
    test_entries = _entries(root / "data" / kind / "datalist.json", "test")
    assert len(predictions["test"]) == len(test_entries) > 0
    num_classes = wf.parser.get_parsed_content("num_classes")
    for item in predictions["test"]:
        mask = nib.load(root / "eval" / "predictions" / item["label"])
        image = nib.load(item["image"][0])
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine)
        assert set(np.unique(np.asarray(mask.dataobj))) <= set(range(num_classes))

    run_workflow(evaluate_configs(root, *variants), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    for key in SEGMENTATION_KEYS:
        assert key in metrics
    assert metrics["num_images"] == len(test_entries) and metrics["num_scored"] >= 1
    for key in ("dice", "sensitivity", "miou", "dice_global"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["hd95"] >= 0.0 and math.isfinite(metrics["hd95"])
    if "multiclass.yaml" in variants:
        assert {"dice_core", "dice_oedema", "dice_enhancing"} <= set(metrics)
    # per_image.json: one value per test image, the mean of the non-null ones the report's (per class with several)
    per_image = read_per_image(root / "eval" / "per_image.json")
    assert len(per_image["ids"]) == metrics["num_images"] and per_image["ids"][0].endswith("_seg.nii.gz")
    classes = ("_core", "_oedema", "_enhancing") if "multiclass.yaml" in variants else ("",)
    for key in [k + c for k in SEGMENTATION_KEYS for c in classes]:
        values = np.array(per_image[key])
        finite = values[np.isfinite(values)]
        assert (finite.mean() if finite.size else None) == pytest.approx(metrics[key]), key
    if "small.yaml" in variants:
        split = json.loads((root / "eval" / "datalist_small.json").read_text())
        full = json.loads((root / "data" / kind / "datalist.json").read_text())
        assert len(split["training"]) < len(full["training"]) and len(split["test"]) == len(full["test"])


def test_vu_setup_trains_with_eq5_at_a_fixed_learning_rate(bundle_copy, phantoms):
    """variants/vu.yaml (paper 004 sec. 4.3-4.4): eq. 5's SoftDiceLoss, Adam at 1e-4 at every iteration of the run,
    batch norm after every convolution of the U-Net but the output one; it merges with classic and multiclass."""
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    parser = ConfigParser()
    parser.read_config(configs(root, "train.yaml", "vu.yaml"))
    assert parser.get_parsed_content("batch_size") == 64 and parser.get_parsed_content("max_epochs") == 70
    net = parser.get_parsed_content("network_def")
    convs = {n for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))}
    normed = {n.removesuffix(".adn.N") + ".conv" for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    unnormed = convs - normed
    assert len(convs) > 4 and len(unnormed) == 1
    assert net.get_submodule(unnormed.pop()).out_channels == parser.get_parsed_content("num_classes")
    parser.read_config(configs(root, "train.yaml", "vu.yaml", "classic.yaml", "multiclass.yaml"))
    assert isinstance(parser.get_parsed_content("loss"), SoftDiceLoss) and parser.get_parsed_content("num_classes") == 4
    assert len(parser.get_parsed_content("transforms#augmentation")) == 2

    wf = ConfigWorkflow(
        config_file=configs(root, "train.yaml", "vu.yaml", "tiny.yaml"),
        workflow_type=None,
        run_id="training",
        logging_file=False,
        max_epochs=2,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert isinstance(trainer.loss_function, SoftDiceLoss) and trainer.loss_function.epsilon == 1e-5
    rates = []
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda _: rates.append(trainer.optimizer.param_groups[0]["lr"])
    )
    wf.run()
    wf.finalize()
    assert trainer.state.epoch == 2 and len(rates) == trainer.state.iteration >= 4
    assert set(rates) == {1e-4} and trainer.optimizer.param_groups[0]["weight_decay"] == 0.0
    assert -1.0 <= float(trainer.state.output[0]["loss"]) <= 0.0


def test_batch_mixing_variants_train_on_mixed_masks(bundle_copy, phantoms):
    """CDA-GAN Table 3's Mixup/CutMix/CutOut baselines: variants/cutmix.yaml trains one tiny epoch on one-hot masks
    (loss without to_onehot_y); mixup.yaml gives soft masks; train.yaml alone keeps MONAI's label maps."""
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    parser = ConfigParser()
    parser.read_config(configs(root, "train.yaml", "tiny.yaml"))
    parser["bundle_root"] = str(root)
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    _, label = parser.get_parsed_content("train#prepare_batch")(batch, "cpu")
    assert torch.equal(label, batch["label"]) and parser.get_parsed_content("loss").to_onehot_y
    parser.read_config(configs(root, "train.yaml", "mixup.yaml", "tiny.yaml"))
    parser["bundle_root"] = str(root)
    image, soft = parser.get_parsed_content("train#prepare_batch")(batch, "cpu")
    assert soft.shape == (2, 2, 16, 16) and torch.allclose(soft.sum(1), torch.ones(2, 16, 16))
    assert not torch.equal(image, batch["image"])
    assert not parser.get_parsed_content("loss").to_onehot_y

    wf = ConfigWorkflow(
        config_file=configs(root, "train.yaml", "cutmix.yaml", "tiny.yaml"),
        workflow_type=None,
        run_id="training",
        logging_file=False,
    )
    wf.initialize()
    trainer = wf.parser.get_parsed_content("train#trainer")
    labels = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: labels.extend(o["label"] for o in e.state.output))
    wf.run()
    wf.finalize()
    assert not trainer.loss_function.to_onehot_y and len(labels) == 2 * trainer.state.iteration > 0
    for mask in labels:  # hard one-hot masks (K, H, W)
        assert mask.shape == (2, 16, 16) and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(mask.sum(0), torch.ones(16, 16))
    assert math.isfinite(float(trainer.state.output[0]["loss"]))
    assert (root / "models" / "model.pt").is_file()


def test_enhanced_rules_are_enforced(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    write_enhanced(root, "brain_mr_2d")
    files = configs(root, "train.yaml", "enhanced.yaml", "tiny.yaml")
    # test-rule maps needed at validation: a train-rule file is refused, naming the rule
    train_rule = str(root / "data" / "enhanced" / "train" / "enhanced_datalist.json")
    wf = ConfigWorkflow(config_file=files, workflow_type=None, logging_file=False, enhanced_test_datalist=train_rule)
    wf.initialize()
    with pytest.raises(Exception) as error:
        wf.parser.get_parsed_content("validate#datalist")
    assert "'test' rule" in chain(error.value)
    # training needs train-rule maps unless enhanced_train_rule says otherwise (the calibrated grid's ablation)
    test_rule = str(root / "data" / "enhanced" / "validation" / "enhanced_datalist.json")
    for train_rule_id, refused in (("train", True), ("test", False)):
        wf = ConfigWorkflow(
            config_file=files,
            workflow_type=None,
            logging_file=False,
            enhanced_datalist=test_rule,
            enhanced_train_rule=train_rule_id,
        )
        wf.initialize()
        if refused:
            with pytest.raises(Exception) as error:
                wf.parser.get_parsed_content("train#enhanced_entries")
            assert "'train' rule is needed" in chain(error.value)
        else:  # accepted by its rule; the training images have no maps in the validation file, which is named
            with pytest.raises(Exception) as error:
                wf.parser.get_parsed_content("train#enhanced_entries")
            assert "'train' rule" not in chain(error.value) and re.search("no difference map", chain(error.value))
    # an image without a map is named
    wf = ConfigWorkflow(
        config_file=files,
        workflow_type=None,
        logging_file=False,
        enhanced_test_datalist=str(root / "data" / "enhanced" / "test" / "enhanced_datalist.json"),
    )
    wf.initialize()
    with pytest.raises(Exception) as error:
        wf.parser.get_parsed_content("validate#datalist")
    assert re.search("no difference map .*brain_P", chain(error.value))


def test_pseudo_labels_threshold_the_difference(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    write_cross_domain(root, "brain_mr_2d")
    wf = ConfigWorkflow(
        config_file=configs(root, "train.yaml", "pseudo_label.yaml", "tiny.yaml"),
        workflow_type=None,
        logging_file=False,
        image_size=32,
    )
    wf.initialize()
    dataset = wf.parser.get_parsed_content("train#dataset")
    synthetic = [i for i, e in enumerate(dataset.data) if e.get("synthetic")]
    assert synthetic
    label = dataset[synthetic[0]]["label"][0].numpy()
    expected = np.zeros((32, 32))
    expected[32 // 3 : 32 // 2, 32 // 3 : 32 // 2] = 1  # the blob added to the source, the only change
    np.testing.assert_array_equal(label, expected)


def test_synthetic_without_labels_is_rejected(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    write_synthetic_pairs(root, "brain_mr_2d", with_label=False)
    with pytest.raises(Exception) as error:
        run_workflow(configs(root, "train.yaml", "synthetic.yaml", "tiny.yaml"), "training")
    message = chain(error.value)
    assert "label: key is missing" in message and str(root / "data" / "synthetic" / "datalist.json") in message
    assert not (root / "models").exists()


def test_nan_image_is_rejected_before_training(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    data = json.loads((root / "data" / "brain_mr_2d" / "datalist.json").read_text())
    bad = root / "data" / "brain_mr_2d" / data["training"][0]["image"][1]
    img = nib.load(bad)
    arr = img.get_fdata()
    arr[3, 3] = np.nan
    nib.save(nib.Nifti1Image(arr.astype(np.float32), img.affine), str(bad))
    with pytest.raises(Exception) as error:
        run_workflow(configs(root, "train.yaml", "tiny.yaml"), "training")
    assert "DatalistError" in chain(error.value) and bad.name in chain(error.value)
    assert "NaN" in chain(error.value) or "nan" in chain(error.value)
    assert latest_checkpoint(root / "models") is None


def test_resume_continues_the_iteration_count(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    files = configs(root, "train.yaml", "tiny.yaml")
    wf, _ = run_workflow(files, "training")
    first = wf.parser.get_parsed_content("train#trainer").state.iteration
    wf, _ = run_workflow(files, "training", resume=True, max_epochs=2)
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.state.epoch == 2 and trainer.state.iteration == 2 * first
    assert torch.load(latest_checkpoint(root / "models"), weights_only=True)["trainer"]["iteration"] == 2 * first


def test_cli_training_from_the_bundle_folder(bundle_copy, phantoms):
    root = bundle_with_data(bundle_copy, phantoms, "brain_mr_2d")
    run_cli(
        [
            "-m",
            "monai.bundle",
            "run",
            "training",
            "--config_file",
            "['configs/train.yaml','configs/variants/tiny.yaml']",
        ],
        cwd=root,
    )
    assert (root / "models" / "model.pt").is_file()


@pytest.mark.slow
def test_trained_unet_segments_the_tumour(bundle_copy, tmp_path):
    """Functional: a short training on the 2D phantom gives a clearly better test Dice than the untrained U-Net."""
    root = bundle_copy(NAME)
    size = {
        "phantom_args": {
            "num_patients": 16,
            "cases_per_patient": 4,
            "image_size": 32,
            "positive_fraction": 0.75,
            "seed": 0,
        },
        "image_size": 32,
        "unet_channels": [8, 16, 32],
        "unet_strides": [2, 2],
        "num_res_units": 1,
    }
    untrained_dir = tmp_path / "untrained"
    wf = ConfigWorkflow(config_file=configs(root, "train.yaml"), workflow_type=None, logging_file=False, **size)
    untrained_dir.mkdir()
    torch.manual_seed(0)
    torch.save(wf.parser.get_parsed_content("network_def").state_dict(), untrained_dir / "model.pt")
    train = {"max_epochs": 5, "val_interval": 5, "learning_rate": 0.003, "batch_size": 4}
    run_workflow(configs(root, "train.yaml"), "training", **train, **size)
    run_workflow(evaluate_configs(root), "evaluating", **size)
    trained = json.loads((root / "eval" / "metrics.json").read_text())
    run_workflow(evaluate_configs(root), "evaluating", ckpt_dir=str(untrained_dir), output_dir=str(tmp_path), **size)
    untrained = json.loads((tmp_path / "metrics.json").read_text())
    assert trained["dice"] > 0.5 and trained["dice"] > untrained["dice"] + 0.2, (trained, untrained)
    assert trained["miou"] > untrained["miou"]
