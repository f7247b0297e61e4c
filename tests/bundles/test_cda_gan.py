"""bundles/cda_gan through MONAI's bundle runner on tiny phantom data: every variant trains, inference writes
Algorithm 2's balanced set and Algorithm 3's aligned difference maps."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from common.data import validate_datalist
from common.engines import latest_checkpoint
from common.metrics import change_inside_outside
from helpers import cli_list, configs, evaluate_configs, free_port, run_cli, run_workflow

NAME = "cda_gan"
VARIANTS = [
    [],
    ["ssa_cyclegan.yaml"],
    ["cyclegan.yaml"],
    ["uaggan.yaml"],
    ["aggan.yaml"],
    ["wo_se.yaml"],
    ["wo_sa.yaml"],
    ["wo_ss.yaml"],
    ["wo_sn.yaml"],
    ["cyclegan_se.yaml"],
    ["cyclegan_cbam.yaml"],
    ["diff_augment.yaml"],
]


def sized_configs(root, main, variants, tiny="tiny.yaml"):
    """``main`` with the variants, then the tiny sizes."""
    return configs(root, main, *variants, tiny)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("variants", VARIANTS, ids=lambda v: v[0][:-5] if v else "cda_gan")
def test_every_variant_trains(bundle_copy, variants, dims):
    root = bundle_copy(NAME)
    files = (
        sized_configs(root, "train.yaml", variants)
        if dims == 2
        else sized_configs(root, "train.yaml", ["3d.yaml", *variants], tiny="tiny_3d.yaml")
    )
    wf, _ = run_workflow(files, "training")
    assert wf.parser.get_parsed_content("spatial_dims") == dims
    nets = wf.parser.get_parsed_content("train#step").networks
    assert nets["gen_n"] is not nets["gen_p"] and nets["disc_n"] is not nets["disc_p"]  # two of each, not shared
    step = wf.parser.get_parsed_content("train#step")
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert {"gen_n", "gen_p", "disc_n", "disc_p", "optimizer_generators", "pool_n", "trainer"} <= set(state)
    assert ("attn_n" in state) == (step.attention == "separate")
    # the variant's switches reached the networks
    residual = wf.parser.get_parsed_content("residual_attention")
    kinds = {type(m).__name__ for m in step.networks["gen_n"].modules()}
    expected = {"amse": "AMSEBlock", "se": "SEBlock", "cbam": "CBAMBlock"}.get(residual)
    assert expected is None or expected in kinds
    sn = wf.parser.get_parsed_content("spectral_norm")
    has_sn = any("parametrizations" in n for n, _ in step.networks["disc_n"].named_modules())
    assert has_sn == sn


@pytest.mark.parametrize("variants", [[], ["cyclegan.yaml"]], ids=["cda_gan", "cyclegan"])
def test_3d_trains_and_infers(bundle_copy, variants):
    root = bundle_copy(NAME)
    files = sized_configs(root, "train.yaml", ["3d.yaml", *variants], tiny="tiny_3d.yaml")
    run_workflow(files, "training")
    files[0] = str(root / "configs" / "inference.yaml")
    run_workflow(files, "inference")
    out = root / "eval" / "cross_domain"
    validate_datalist(out / "synthetic_datalist.json", spatial_dims=3, num_channels=4, class_key="class")


@pytest.mark.parametrize("rule", ["train", "test"])
def test_inference_algorithms_2_and_3(bundle_copy, rule):
    root = bundle_copy(NAME)
    run_workflow(sized_configs(root, "train.yaml", []), "training")
    run_workflow(sized_configs(root, "inference.yaml", []), "inference", difference_rule=rule)
    out = root / "eval" / "cross_domain"
    real = json.loads((root / "data" / "brain_mr_2d" / "datalist.json").read_text())["training"]
    summary = validate_datalist(
        out / "synthetic_datalist.json", class_key="class", required_classes=[0, 1], num_channels=4, spatial_dims=2
    )
    # Algorithm 2: one synthetic image of the other class per real image -> the classes swap counts
    real_counts = {c: sum(e["class"] == c for e in real) for c in (0, 1)}
    assert summary["class_counts"]["training"] == {0: real_counts[1], 1: real_counts[0]}
    synthetic = json.loads((out / "synthetic_datalist.json").read_text())
    entry = synthetic["training"][0]
    assert entry["synthetic"] is True and entry["generator"]["checkpoint_sha256"] and entry["source"]
    assert entry["class"] == 1 - entry["source_class"]
    # Algorithm 3: difference maps beside the real images, voxel for voxel
    enhanced = json.loads((out / "enhanced_datalist.json").read_text())
    assert enhanced["difference_rule"] == rule
    for e in enhanced["training"]:
        for image, diff in zip(e["image"], e["difference"]):
            a, b = nib.load(image), nib.load(diff)
            assert a.shape == b.shape and np.allclose(a.affine, b.affine)
        maximum = max(nib.load(d).get_fdata().max() for d in e["difference"])
        if e["class"] == 0 and rule == "train":
            assert maximum == 0.0  # train-time rule: zeros for negatives
        else:
            assert maximum > 0.0


def test_evaluate_writes_translation_metrics_and_the_probe_reads_the_discriminators(bundle_copy):
    root = bundle_copy(NAME)
    run_workflow(sized_configs(root, "train.yaml", []), "training")
    run_workflow(evaluate_configs(root, "tiny.yaml"), "evaluating")
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "fallback" in metrics["feature_extractor"] and metrics["section"] == "test"
    for key in ("fid_translated_negatives", "kid_translated_positives", "attention_dice", "change_inside_tumour"):
        assert np.isfinite(metrics[key]), key
    assert metrics["num_positives"] > 0 and metrics["num_negatives"] > 0
    # the discriminator map probe reads the same training checkpoint
    probe_files = [str(root / "configs" / "train.yaml"), *configs(root, "probe_discriminators.yaml", "tiny.yaml")]
    run_workflow(probe_files, "probing", probe_batches=1)
    probe = json.loads((root / "eval" / "discriminator_probe.json").read_text())
    assert probe["checkpoint"] == latest_checkpoint(root / "models").name and probe["num_batches"] == 1
    gap = probe["disc_n/real_own_map"] - probe["disc_n/fake_own_map"]
    assert probe["disc_n/image_gap"] + probe["disc_n/map_gap"] == pytest.approx(gap)


def test_attention_finds_the_tumour_after_short_training(bundle_copy, torch_threads):
    """Functional: after ~80 iterations on 32x32 phantom slices the P -> N attention map lies on the tumour (far more
    than on a shifted copy of the mask) and G_N changes the image more inside the tumour than outside."""
    torch_threads(2)
    root = bundle_copy(NAME)
    override = dict(
        phantom_args={
            "num_patients": 12,
            "cases_per_patient": 2,
            "image_size": 32,
            "positive_fraction": 0.5,
            "seed": 0,
        },
        image_size=32,
        base_channels=8,
        num_res_blocks=2,
        attention_base_channels=8,
        attention_res_blocks=1,
        disc_layers=2,
        pool_size=10,
        n_epochs=40,
        n_epochs_decay=0,
        learning_rate=0.002,
        batch_size=4,
    )
    wf, _ = run_workflow([str(root / "configs" / "train.yaml")], "training", **override)
    step, dataset = wf.parser.get_parsed_content("train#step"), wf.parser.get_parsed_content("train#dataset")
    images = torch.stack([dataset[i]["positive"] for i in range(len(dataset))])
    masks = (torch.stack([dataset[i]["mask"] for i in range(len(dataset))]) > 0).float()
    shifted = torch.roll(masks, shifts=(10, 10), dims=(-2, -1))
    for net in step.networks.values():
        net.eval()
    with torch.no_grad():
        translated, attention = step.translate(images, "n")
    on_tumour = float((attention * masks).sum() / masks.sum())
    on_shifted = float((attention * shifted).sum() / shifted.sum())
    assert on_tumour > 0.15 and on_tumour > 5 * on_shifted, (on_tumour, on_shifted)
    inside, outside = change_inside_outside(images, translated, masks)
    assert inside > 3 * outside, (inside, outside)


def test_torchrun_two_processes_gloo(bundle_copy):
    root = bundle_copy(NAME)
    files = [str(root / "configs" / f) for f in ("train.yaml", "multi_gpu_train.yaml", "variants/tiny.yaml")]
    cfg = cli_list(files)
    args = [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
    ]
    run_cli([*args, "-m", "monai.bundle", "run", "training", "--config_file", cfg], cwd=root)
    state = torch.load(latest_checkpoint(root / "models"), weights_only=True)
    assert state["trainer"]["iteration"] == 2 * state["trainer"]["epoch_length"]
    assert {"model.pt", "gen_p.pt", "attn_n.pt", "attn_p.pt"} <= {p.name for p in (root / "models").iterdir()}
