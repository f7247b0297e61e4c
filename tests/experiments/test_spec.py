"""Grid parsing, validation, substitution; the example grids; plots that the runner test does not draw."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from common.experiments import GridError, load_grid, parse_grid, resolve_refs, slugify, tsne_plot
from common.experiments.plots import _cliques, cd_diagram
from common.experiments.runner import variant_path

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"name": "g", "output_dir": "out", "bundle": "bundles/x", "datasets": ["D"], "methods": ["M"]}


def _parse(**changes):
    return parse_grid({**MINIMAL, **changes}, source="grid.yaml", root="/r")


def test_defaults_and_paths():
    spec = _parse(metrics=["acc", "hd95", {"name": "dice", "label": "Dice"}])
    assert spec.output_dir == "/r/out" and spec.bundle == "/r/bundles/x" and spec.seeds == [0]
    assert [(m.name, m.higher_is_better) for m in spec.metrics] == [("acc", True), ("hd95", False), ("dice", True)]
    assert spec.metrics[2].label == "Dice"
    assert variant_path("/r/bundles/x", "tiny.yaml") == "/r/bundles/x/configs/variants/tiny.yaml"
    assert slugify("CDA-GAN 40%") == "cda-gan_40pct" and slugify("w/o DA") == "w_o_da"


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": []}, "unknown keys"),
        ({"methods": ["A", "A"]}, "duplicate"),
        ({"methods": ["a b", "a_b"]}, "same folder"),
        ({"seeds": [0, 0]}, "duplicates"),
        ({"seeds": "x"}, "seeds"),
        ({"error": "var"}, "error"),
        ({"methods": [{"name": "M", "overrides": {"x": "${generators.nope.synthetic_datalist}"}}]}, "no declared"),
        ({"methods": [{"name": "M", "overrides": {"x": "${foo}"}}]}, "unknown reference"),
        (
            {"generators": {"g": {"bundle": "bundles/dcgan_wgan"}}, "overrides": {"x": "${generators.g.enhanced}"}},
            "has outputs",
        ),
        ({"ratio_plot": {"curves": {"c": {"nope": 20}}}}, "unknown methods"),
        ({"tsne": {"generator": "nope"}}, "tsne"),
        ({"blocks": "images"}, "blocks"),
        ({"ratio_plot": {"curves": {"c": {"M": "${vars.nope}"}}}}, "ratio_plot.curves.c"),
        ({"vars": {"n": "x"}, "ratio_plot": {"curves": {"c": {"M": "${vars.n}"}}}}, "must be numbers"),
        ({"generators": {"g": {"bundle": "b", "train": False, "inference_runs": []}}}, "runs nothing"),
        ({"generators": {"g": {"bundle": "b", "inference_runs": [], "outputs": {"s": "x.json"}}}}, "only trains"),
        ({"generators": {"g": {"bundle": "b", "evaluate_overrides": {"x": 1}}}}, "no evaluate_config"),
        (
            {"generators": {"g": {"bundle": "b", "evaluate_config": "e.yaml", "evaluate_overrides": [2]}}},
            "must be a mapping",
        ),
        (
            {
                "generators": {
                    "g": {
                        "bundle": "b",
                        "evaluate_config": "e.yaml",
                        "evaluate_overrides": {"c": "${generators.g.ckpt_dir}"},
                    }
                }
            },
            "declared before",
        ),
        ({"generators": {"g": {"bundle": "b", "inference_runs": [{"variants": [1]}]}}}, "variants"),
        ({"generators": {"g": {"bundle": "b", "overrides": {"c": "${generators.g.ckpt_dir}"}}}}, "declared before"),
        (
            {
                "generators": {
                    "a": {"bundle": "b", "overrides": {"c": "${generators.z.ckpt_dir}"}},
                    "z": {"bundle": "b"},
                }
            },
            "declared before",
        ),
        (
            {
                "generators": {
                    "a": {"bundle": "b", "per_dataset": True},
                    "z": {"bundle": "b", "overrides": {"c": "${generators.a.ckpt_dir}"}},
                }
            },
            "per_dataset too",
        ),
        (
            {
                "datasets": [{"name": "D", "split": {"mode": "small", "fraction": 0.1}}],
                "methods": [{"name": "M", "overrides": {"synthetic_datalist": "${dataset_dir}/datalist.json"}}],
            },
            "method 'M' overrides name .*whole data set's datalist",
        ),
        (
            {
                "datasets": [{"name": "D", "split": {"mode": "small", "fraction": 0.1}}],
                "vars": {"real": "${dataset_dir}/datalist.json"},
            },
            "`vars` name",
        ),
        (
            {
                "datasets": [{"name": "D", "split": {"mode": "small", "fraction": 0.1}}],
                "generators": {
                    "g": {
                        "bundle": "b",
                        "per_dataset": True,
                        "overrides": {"n": "$len('${dataset_dir}/datalist.json')"},
                    }
                },
            },
            "generator 'g' overrides name",
        ),
    ],
)
def test_invalid_grids_fail_naming_the_file(changes, message):
    with pytest.raises(GridError, match=message) as err:
        _parse(**changes)
    assert "grid.yaml" in str(err.value)


def test_the_whole_datalist_is_fine_without_a_split():
    spec = _parse(methods=[{"name": "M", "overrides": {"synthetic_datalist": "${dataset_dir}/datalist.json"}}])
    assert spec.methods[0].overrides["synthetic_datalist"] == "${dataset_dir}/datalist.json"


def test_known_generator_outputs():
    spec = _parse(generators={"c": {"bundle": "bundles/cda_gan"}, "d": {"bundle": "bundles/dcgan_wgan"}})
    assert spec.generators["c"].outputs["synthetic_datalist"] == "cross_domain/synthetic_datalist.json"
    assert spec.generators["c"].outputs["enhanced_datalist"] == "cross_domain/enhanced_datalist.json"
    assert spec.generators["d"].outputs == {"synthetic_datalist": "synthetic/datalist.json"}


def test_blocks_generator_chains_and_ratio_vars():
    """The options of paper 004's grid: per-test-image blocks, a train-only and an inference-only generator with a
    variant file per inference run, ratio-plot x values from `vars`."""
    assert _parse().blocks == "seeds" and _parse().per_image_file == "per_image.json"
    generators = {
        "m": {"bundle": "bundles/stylegan2", "inference_runs": []},
        "mc": {
            "bundle": "bundles/stylegan2",
            "train": False,
            "overrides": {"mask_checkpoint": "${generators.m.ckpt_dir}/model.pt"},
            "inference_runs": [{"variants": "mc_sg.yaml", "num_generated_patients": 2}],
            "outputs": {"n1": "synthetic_n1/datalist.json"},
        },
    }
    spec = _parse(
        blocks="test_images",
        per_image_file="scores.json",
        vars={"n": {"n1": 2}},
        generators=generators,
        methods=["BL", "MC 1"],
        ratio_plot={"curves": {"MC": {"BL": 0, "MC 1": "${vars.n.n1}"}}},
    )
    assert spec.blocks == "test_images" and spec.per_image_file == "scores.json"
    m, mc = spec.generators["m"], spec.generators["mc"]
    assert m.train and m.inference_runs == [] and m.outputs == {}
    assert not mc.train and mc.inference_runs == [{"variants": ["mc_sg.yaml"], "num_generated_patients": 2}]
    assert spec.ratio_plot["curves"]["MC"] == {"BL": 0, "MC 1": 2}


def test_resolve_refs_keeps_types():
    ctx = {"vars": {"args": {"n": 3}}, "seed": 2, "generators": {"g": {"synthetic_datalist": "/o/s.json"}}}
    out = resolve_refs(
        {"a": "${vars.args}", "b": "${seed}", "c": "run_${seed}.txt", "d": ["${generators.g.synthetic_datalist}"]}, ctx
    )
    assert out == {"a": {"n": 3}, "b": 2, "c": "run_2.txt", "d": ["/o/s.json"]}
    with pytest.raises(KeyError):
        resolve_refs("${vars.nope}", ctx)
    with pytest.raises(RuntimeError, match="exploded"):
        resolve_refs("${generators.g.x}", {"generators": {"g": RuntimeError("exploded")}})


@pytest.mark.parametrize("path", sorted((REPO / "scripts" / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_example_grids_are_valid(path):
    spec = load_grid(path, root=REPO)
    assert spec.methods and spec.datasets
    bundles = {spec.bundle} | {g.bundle for g in spec.generators.values()}
    missing = sorted(b for b in bundles if not (Path(b) / "configs" / "train.yaml").is_file())
    if missing:
        pytest.skip(f"{missing} not in the tree yet")
    for g in spec.generators.values():
        for v in g.variants:
            assert Path(variant_path(g.bundle, v)).is_file(), v
    files = [*spec.common_variants, *[v for d in spec.datasets for v in d.variants]]
    for v in files + [v for m in spec.methods for v in m.variants]:
        assert Path(variant_path(spec.bundle, v)).is_file(), v


def test_cli_dry_run(tmp_path, capsys):
    spec_file = importlib.util.spec_from_file_location("run_experiment", REPO / "scripts" / "run_experiment.py")
    module = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(module)
    (tmp_path / "configs").mkdir()
    for name in ("train.yaml", "evaluate.yaml"):
        (tmp_path / "configs" / name).write_text("run: []\n")
    grid = tmp_path / "g.yaml"
    grid.write_text(f"name: g\noutput_dir: {tmp_path / 'out'}\nbundle: {tmp_path}\ndatasets: [D]\nmethods: [M]\n")
    module.main([str(grid), "--dry_run"])
    assert "monai.bundle run evaluating" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_cd_cliques_and_plots(tmp_path):
    # ranks 1, 1.5, 3 with CD 1.0: {1, 1.5} is a group, 3 stands alone
    assert _cliques(np.array([1.0, 1.5, 3.0]), 1.0) == [(0, 1)]
    assert _cliques(np.array([1.0, 2.0, 3.0]), 2.5) == [(0, 2)]
    assert Path(cd_diagram(["a", "b", "c"], [1.0, 1.5, 3.0], 1.0, tmp_path / "cd.png")).read_bytes()[:4] == b"\x89PNG"
    result = {
        "coords": [[0, 0], [1, 1], [5, 5], [6, 6]],
        "classes": [0, 1, 0, 1],
        "sources": ["real", "real", "synthetic", "synthetic"],
        "features": "pixels: test",
        "tsne": {"perplexity": 1.0, "max_iter": 250},
    }
    assert Path(tsne_plot(result, tmp_path / "t.png")).read_bytes()[:4] == b"\x89PNG"
    assert tsne_plot({"error": "x"}, tmp_path / "u.png") is None


def test_synthetic_pairs_plot_reads_the_shown_channel_of_source_and_translation(tmp_path):
    import json

    import nibabel as nib
    from common.experiments.plots import synthetic_pairs_plot

    def save(name, value):
        nib.save(nib.Nifti1Image(np.full((8, 8), value, np.float32), np.eye(4)), str(tmp_path / name))

    entries = []
    for i, cls in enumerate((0, 1, 1)):
        save(f"real{i}_t1.nii.gz", 0.0)
        save(f"syn{i}_t1.nii.gz", 1.0)
        save(f"syn{i}_flair.nii.gz", 2.0)
        image = [f"syn{i}_t1.nii.gz", f"syn{i}_flair.nii.gz"]
        entries.append(
            {"image": image, "class": 1 - cls, "source": str(tmp_path / f"real{i}_t1.nii.gz"), "source_class": cls}
        )
    datalist = tmp_path / "synthetic_datalist.json"
    datalist.write_text(json.dumps({"training": entries}))
    # channel 0: the source file named by the entry
    assert Path(synthetic_pairs_plot(datalist, tmp_path / "p0.png", channel=0)).read_bytes()[:4] == b"\x89PNG"
    # the last channel (default): the source's FLAIR file, which must exist
    with pytest.raises(FileNotFoundError, match="real0_flair"):
        synthetic_pairs_plot(datalist, tmp_path / "p1.png")
    for i in range(3):
        save(f"real{i}_flair.nii.gz", 3.0)
    assert Path(synthetic_pairs_plot(datalist, tmp_path / "p1.png", per_class=1)).is_file()
    # a noise-to-image generator's datalist names no source, or the noise marker (PGGAN): no plot
    datalist.write_text(json.dumps({"training": [{"image": image, "class": 0}]}))
    assert synthetic_pairs_plot(datalist, tmp_path / "p2.png") is None
    for marker in ("noise", "../../pggan/synthetic/noise"):  # the second as merge_datalists rebased it before
        datalist.write_text(json.dumps({"training": [{"image": image, "class": 0, "source": marker}]}))
        assert synthetic_pairs_plot(datalist, tmp_path / "p2.png") is None


def test_synthetic_pairs_plot_takes_the_channel_from_a_per_channel_source(tmp_path):
    """A GA-UNet datalist names one source file per channel and only ``class``: the shown channel's file is read."""
    import json

    import nibabel as nib
    from common.experiments.plots import synthetic_pairs_plot

    def save(name, value):
        nib.save(nib.Nifti1Image(np.full((8, 8), value, np.float32), np.eye(4)), str(tmp_path / name))

    for name, value in (("scan_a.nii.gz", 0.0), ("other_b.nii.gz", 1.0), ("g_t1.nii.gz", 2.0), ("g_flair.nii.gz", 3.0)):
        save(name, value)
    source = [str(tmp_path / "scan_a.nii.gz"), str(tmp_path / "other_b.nii.gz")]  # no common channel suffix
    entries = [{"image": ["g_t1.nii.gz", "g_flair.nii.gz"], "class": c, "source": source} for c in (0, 1)]
    datalist = tmp_path / "synthetic_datalist.json"
    datalist.write_text(json.dumps({"training": entries}))
    assert Path(synthetic_pairs_plot(datalist, tmp_path / "p.png")).read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "other_b.nii.gz").unlink()  # the last channel's source is the one read
    with pytest.raises(FileNotFoundError, match="other_b"):
        synthetic_pairs_plot(datalist, tmp_path / "p.png")
    entries[0]["source"] = source[:1]
    datalist.write_text(json.dumps({"training": entries}))
    with pytest.raises(ValueError, match="1 source files for 2 images"):
        synthetic_pairs_plot(datalist, tmp_path / "p.png")


def test_mask_pairs_plot_shows_pairs_with_a_lesion_and_reads_the_shown_channel(tmp_path):
    """Only entries whose label has foreground are read (a lesion-free entry's missing image is never opened) while
    the set has any; the shown channel's file is read; neither set with a lesion: no plot."""
    import json

    import nibabel as nib
    from common.experiments.plots import mask_pairs_plot

    def save(name, array):
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / name))

    lesion = np.zeros((8, 8), np.uint8)
    lesion[2:5, 2:5] = 2
    save("seg.nii.gz", lesion)
    save("empty.nii.gz", np.zeros((8, 8), np.uint8))
    save("t1.nii.gz", np.ones((8, 8), np.float32))
    save("stack.nii.gz", np.ones((8, 8, 3), np.float32))  # one file, channels last
    entries = [
        {"image": ["gone_t1.nii.gz", "gone_flair.nii.gz"], "label": "empty.nii.gz"},  # no lesion: never read
        {"image": ["t1.nii.gz", "flair.nii.gz"], "label": "seg.nii.gz"},
    ]
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"test": [{"image": "stack.nii.gz", "label": "seg.nii.gz"}]}))
    synthetic = tmp_path / "synthetic.json"
    synthetic.write_text(json.dumps({"training": entries}))
    assert Path(mask_pairs_plot(real, synthetic, tmp_path / "a.png", channel=0, real_section="test")).is_file()
    with pytest.raises(FileNotFoundError, match="flair"):  # the last channel (default) is the FLAIR file
        mask_pairs_plot(real, synthetic, tmp_path / "b.png", real_section="test")
    save("flair.nii.gz", np.ones((8, 8), np.float32))
    assert Path(mask_pairs_plot(real, synthetic, tmp_path / "b.png", count=1, real_section="test")).is_file()
    # no synthetic pair has a lesion: its first pairs are shown instead (their images read: the missing file fails)
    synthetic.write_text(json.dumps({"training": entries[:1]}))
    with pytest.raises(FileNotFoundError, match="gone_flair"):
        mask_pairs_plot(real, synthetic, tmp_path / "c.png", real_section="test")
    real.write_text(json.dumps({"test": [{"image": "t1.nii.gz", "label": "empty.nii.gz"}]}))
    assert mask_pairs_plot(real, synthetic, tmp_path / "c.png", real_section="test") is None


def test_box_panels_show_images_with_boxes_and_a_volume_through_its_first_box(tmp_path):
    """Entries without boxes are skipped unread; a 2D image keeps its boxes; a volume is cut through the centre of
    its first box and keeps the boxes crossing that slice; the plot needs a box in one of the two sets."""
    import json

    import nibabel as nib
    from common.experiments.plots import box_pairs_plot, box_panels

    def save(name, array):
        nib.save(nib.Nifti1Image(array, np.eye(4)), str(tmp_path / name))

    slice_ = np.arange(64, dtype=np.float32).reshape(8, 8)
    save("slice.nii.gz", slice_)
    volume = np.zeros((8, 8, 6), np.float32)
    volume[..., 3] = 7.0
    save("volume.nii.gz", volume)
    real = tmp_path / "real.json"
    real.write_text(json.dumps({"training": [
        {"image": "gone.nii.gz", "box": []},  # never read
        {"image": "slice.nii.gz", "box": [[1, 2, 4, 5]]},
    ]}))  # fmt: skip
    synthetic = tmp_path / "synthetic.json"
    synthetic.write_text(json.dumps({"training": [
        {"image": "volume.nii.gz", "box": [[1, 1, 2, 3, 3, 5], [4, 4, 0, 6, 6, 2], [0, 0, 3, 2, 2, 4]]},
    ]}))  # fmt: skip
    ((image, boxes),) = box_panels(real)
    assert np.array_equal(image, slice_) and boxes == [[1.0, 2.0, 4.0, 5.0]]
    ((image, boxes),) = box_panels(synthetic)
    assert image.shape == (8, 8) and np.all(image == 7.0)  # z = (2 + 5) // 2 = 3
    assert boxes == [[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]]  # the box of z 0-1 does not cross slice 3
    assert Path(box_pairs_plot(real, synthetic, tmp_path / "a.png")).is_file()
    real.write_text(json.dumps({"training": [{"image": "gone.nii.gz", "box": []}]}))
    synthetic.write_text(json.dumps({"training": [{"image": "gone.nii.gz", "box": []}]}))
    assert box_pairs_plot(real, synthetic, tmp_path / "b.png") is None
