"""End-to-end test of bundles/cpggan through MONAI's bundle runner, on the tiny metastasis phantom."""

import copy
import json

import monai
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from common.data import DatalistError, prepare_phantom, validate_datalist
from common.engines import latest_checkpoint
from helpers import configs, evaluate_configs, run_workflow
from monai.bundle import ConfigWorkflow

NAME = "cpggan"


def test_train_infer_evaluate(bundle_copy):
    root = bundle_copy(NAME)

    def files(main):
        return [str(root / "configs" / main), str(root / "configs" / "variants" / "tiny.yaml")]

    wf, _ = run_workflow(files("train.yaml"), "training")
    assert all(e["box"] for e in wf.parser.get_parsed_content("train#datalist"))
    assert latest_checkpoint(root / "models") is not None and (root / "models" / "model.pt").is_file()

    wf, _ = run_workflow(files("inference.yaml"), "inference")
    synthetic = root / "eval" / "synthetic" / "datalist.json"
    summary = validate_datalist(synthetic, spatial_dims=2, num_channels=1, box_key="box")
    assert summary["num_entries"]["training"] == wf.parser.get_parsed_content("num_samples")
    for entry in json.loads(synthetic.read_text())["training"]:
        assert entry["synthetic"] is True and entry["box"] and len(entry["box_label"]) == len(entry["box"])
        assert entry["generator"]["checkpoint_sha256"] and entry["condition_source"].endswith(".nii.gz")
        for box in entry["box"]:
            assert 0 <= box[0] < box[2] <= 16 and 0 <= box[1] < box[3] <= 16

    run_workflow(evaluate_configs(root, "tiny.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    for key in ("fid", "kid_mean", "box_change_inside", "box_change_outside", "fid_reference", "kid_reference_mean"):
        assert np.isfinite(metrics[key]), key
    # the real-vs-real reference: the generator's own training slices with lesions against the held-out ones
    training = monai.data.load_decathlon_datalist(wf.parser.get_parsed_content("datalist"), True, "training")
    assert metrics["reference_section"] == "training"
    assert metrics["num_reference"] == sum(1 for e in training if e["box"]) > 0


def lesion_contrast(images: torch.Tensor, condition: torch.Tensor, margin: int = 1) -> torch.Tensor:
    """Per image: mean intensity inside the condition's boxes minus the mean in a ring ``margin`` voxels wide around
    them. The phantom's metastases (enhancing rim, thesis sec. 5) are brighter than their surroundings on T1c, so a
    real slice scores high on its own boxes and lower on another slice's boxes.

    Args:
        images: (N, 1, H, W). condition: (N, 1, H, W), 1 inside the boxes, 0 elsewhere.

    Returns:
        (N,) contrast scores.
    """
    dilated = F.max_pool2d(condition, 2 * margin + 1, stride=1, padding=margin)
    ring = (dilated - condition).clamp(0, 1)
    inside = (images * condition).sum((1, 2, 3)) / condition.sum((1, 2, 3)).clamp(min=1)
    around = (images * ring).sum((1, 2, 3)) / ring.sum((1, 2, 3)).clamp(min=1)
    return inside - around


def placement_gap(generator: torch.nn.Module, latents: torch.Tensor, conditions: torch.Tensor) -> float:
    """Lesion contrast of ``G(z, c)`` at the boxes of ``c`` minus that of ``G(z, c')`` (the same latents, the
    conditions rolled by one: other slices' boxes) at the same boxes of ``c``: positive only when the generator
    puts brighter-than-surroundings lesions where it is told to."""
    other = torch.roll(torch.arange(len(conditions)), 1)
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        matched = lesion_contrast(generator(latents, conditions), conditions)
        control = lesion_contrast(generator(latents, conditions[other]), conditions)
    generator.train(was_training)
    return float((matched - control).mean())


def test_trained_cpggan_places_lesions_in_the_boxes(bundle_copy):
    """After a short training on 16 px metastasis slices, generated images are brighter inside the condition boxes
    than around them, much more than when the same latents are given other slices' boxes, and much more than the
    same generator before training or never-trained generators (which also react locally to the condition, so
    "change near the boxes" alone would not tell). About 1,000 iterations at 8 -> 16 px (~45 s on one thread of a
    shared CPU).

    Measured (seed 0): trained gap 0.211, the same generator before training -0.017, four other untrained
    generators -0.00..0.066; real slices 0.364.
    """
    root = bundle_copy(NAME)
    files = [str(root / "configs" / "train.yaml"), str(root / "configs" / "variants" / "tiny.yaml")]
    override = {
        "phantom_args": {
            "num_patients": 32, "cases_per_patient": 4, "image_size": 16, "max_lesions": 2,
            "positive_fraction": 0.75, "seed": 0,
        },
        "image_size": 16, "start_size": 8, "latent_size": 16, "fmap_base": 64, "fmap_max": 16, "batch_size": 8,
        "fade_in_images": 2664, "stabilise_images": 2664, "learning_rate": 0.001,
        "save_interval": 100000, "sample_interval": 100000,
    }  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is several times faster than two on a shared CPU
    try:
        wf = ConfigWorkflow(config_file=files, workflow_type=None, run_id="training", logging_file=False, **override)
        wf.initialize()
        generator = wf.parser.get_parsed_content("generator")
        initial = copy.deepcopy(generator)
        wf.run()
        dataset = wf.parser.get_parsed_content("train#dataset")
        assert len(dataset) >= 12
        conditions = torch.stack([dataset[i]["condition"] for i in range(len(dataset))]).repeat(4, 1, 1, 1)
        real = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
        generator_cpu = generator.cpu()
        torch.manual_seed(1)
        latents = torch.randn(len(conditions), override["latent_size"])

        own = conditions[: len(real)]
        real_gap = float((lesion_contrast(real, own) - lesion_contrast(real, own.roll(1, 0))).mean())
        trained = placement_gap(generator_cpu, latents, conditions)
        before = placement_gap(initial.cpu(), latents, conditions)
        untrained = []
        for seed in range(4):
            torch.manual_seed(100 + seed)
            fresh = wf.parser.get_parsed_content("generator_def", lazy=False).cpu()
            untrained.append(placement_gap(fresh, latents, conditions))
    finally:
        torch.set_num_threads(threads)
    print(
        f"lesion placement gap: real {real_gap:.3f}, trained {trained:.3f}, before training {before:.3f}, "
        f"untrained {np.round(untrained, 3).tolist()}"
    )
    assert real_gap > 0.2  # the statistic sees the phantom's lesions
    assert trained > 0.12, trained
    assert trained > before + 0.1, (trained, before)
    assert trained > max(untrained) + 0.05, (trained, untrained)


def test_normal_slices_from_another_datalist(bundle_copy, tmp_path):
    """Thesis sec. 5.2.2 (ii): with ``normal_datalist``, the lesion-free slices come from other subjects (the thesis's
    193 normal subjects, used for CPGGAN training only), added to the boxed slices of ``datalist``; the lesion-free
    slices of ``datalist`` itself are then left out. A normal datalist without lesion-free slices stops the run
    before training, naming the file."""
    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml", "with_normal.yaml")
    normal = prepare_phantom(
        tmp_path / "normal", "brain_metastases", num_patients=3, cases_per_patient=2, image_size=32,
        positive_fraction=0.0, seed=5, split_fractions=[1.0, 0.0, 0.0],
    )  # fmt: skip

    def training_entries(**override):
        wf = ConfigWorkflow(config_file=files, workflow_type=None, run_id="training", logging_file=False, **override)
        wf.initialize()
        return wf, wf.parser.get_parsed_content("train#datalist")

    wf, own = training_entries()
    real = monai.data.load_decathlon_datalist(wf.parser.get_parsed_content("datalist"), True, "training")
    assert any(not e["box"] for e in own) and len(own) == len(real)  # include_normal alone: the datalist's own

    _, entries = training_entries(normal_datalist=str(normal))
    normal_images = {e["image"] for e in monai.data.load_decathlon_datalist(str(normal), True, "training")}
    assert [e["image"] for e in entries if e["box"]] == [e["image"] for e in real if e["box"]]
    assert {e["image"] for e in entries if not e["box"]} == normal_images and len(normal_images) == 6

    _, entries = training_entries(normal_datalist=str(normal), include_normal=False)
    assert all(e["box"] for e in entries)  # without include_normal the normal datalist is not used

    boxed = prepare_phantom(
        tmp_path / "boxed", "brain_metastases", num_patients=2, cases_per_patient=1, image_size=32,
        positive_fraction=1.0, seed=6, split_fractions=[1.0, 0.0, 0.0],
    )  # fmt: skip
    with pytest.raises(RuntimeError) as raised:  # MONAI's config parser wraps the error of an expression
        training_entries(normal_datalist=str(boxed))
    assert isinstance(raised.value.__cause__, DatalistError)
    assert str(boxed) in str(raised.value.__cause__) and "has no slices without boxes" in str(raised.value.__cause__)
    assert latest_checkpoint(root / "models") is None


def test_normal_slices_written_by_other_tools_train_beside_the_phantom(bundle_copy, tmp_path):
    """A normal datalist as another tool writes it: a 2D NIfTI slice stored as (H, W, 1) with an LPS-like affine and
    an ITK ``.mha`` slice with swapped directions, entries holding only ``image``, ``box`` and ``box_label`` (the
    phantom's carry ``class``, ``patient``, ``label`` too). Batches mixing both kinds collate, and training runs."""
    import itk
    import nibabel as nib

    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    entries = []
    for i in range(3):
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
        nib.save(
            nib.Nifti1Image(rng.random((32, 32, 1)).astype(np.float32), affine), str(tmp_path / f"img/n{i}.nii.gz")
        )
        entries.append({"image": f"img/n{i}.nii.gz", "box": [], "box_label": []})
    slice_ = itk.image_from_array(rng.random((32, 32)).astype(np.float32))
    slice_.SetDirection(np.array([[0.0, 1.0], [1.0, 0.0]]))
    itk.imwrite(slice_, str(tmp_path / "img/n3.mha"))
    entries.append({"image": "img/n3.mha", "box": [], "box_label": []})
    normal = tmp_path / "normal.json"
    normal.write_text(json.dumps({"training": entries}))

    root = bundle_copy(NAME)
    files = configs(root, "train.yaml", "tiny.yaml", "with_normal.yaml")
    wf, _ = run_workflow(files, "training", normal_datalist=str(normal))
    assert sum(not e["box"] for e in wf.parser.get_parsed_content("train#datalist")) == 4
    assert latest_checkpoint(root / "models") is not None
