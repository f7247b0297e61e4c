"""Paper 004's grid (scripts/experiments/phantom_stylegan2.yaml): 26 methods and a control, B-SG/M-SG/C-SG/MC-SG generator runs,
per-test-image blocks, Fig. 5's curves; a dry run lists every command without running one."""

from pathlib import Path

from common.experiments import GridRunner, load_grid

REPO = Path(__file__).resolve().parents[2]
GRID = REPO / "scripts" / "experiments" / "phantom_stylegan2.yaml"


def test_grid_has_the_26_methods_and_the_statistics_of_table_2_3():
    spec = load_grid(GRID, root=REPO)
    names = [m.name for m in spec.methods]
    assert len(names) == 27 and names[0] == "BL + w.o." and names[13] == "BL + w."
    # the control: real data alone for n6's iterations (30 epochs of 20 iterations = 50 of 12)
    control = spec.methods[26]
    assert control.name == "BL + w.o. + iterations of n6" and control.overrides == {"max_epochs": 50}
    assert not control.variants and spec.overrides["max_epochs"] == 30
    counts = spec.vars["generated_patients"]
    assert list(counts) == [f"n{i}" for i in range(1, 7)]
    for aug in ("w.o.", "w."):
        for gen in ("B-SG", "MC-SG"):
            expected = [f"{gen} + {aug} + n{i}" for i in range(1, 7)]
            assert [n for n in names if n.startswith(f"{gen} + {aug} + ")] == expected
            curve = spec.ratio_plot["curves"][f"{gen} {aug} aug."]
            assert curve == {f"BL + {aug}": 0, **{f"{gen} + {aug} + {n}": x for n, x in counts.items()}}
    assert spec.blocks == "test_images" and spec.error == "sem" and spec.seeds == [0]
    assert [m.name for m in spec.metrics] == ["dsc_eq6", "dice"]
    classic = {m.name for m in spec.methods if "classic.yaml" in m.variants}
    assert classic == {n for n in names if " + w. " in n or n == "BL + w."}


def test_dry_run_lists_the_generator_runs_and_every_method(tmp_path):
    spec = load_grid(GRID, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    lines: list[str] = []
    runner = GridRunner(spec, dry_run=True, log=lines.append)
    records = runner.run()
    assert len(records) == 27 and {r["status"] for r in records} == {"dry_run"}
    assert not (tmp_path / "out").exists()
    gens = {r["name"]: r for r in runner.generator_records}
    assert list(gens) == ["b_sg", "m_sg", "c_sg", "mc_sg"] and {r["status"] for r in gens.values()} == {"dry_run"}
    workflows = {n: [c.split(" run ")[1].split()[0] for c in r["commands"]] for n, r in gens.items()}
    assert workflows == {
        "b_sg": ["training"] + ["inference"] * 6,
        "m_sg": ["training"],
        "c_sg": ["training"],
        "mc_sg": ["inference"] * 6,
    }
    assert all("variants/b_sg.yaml" in c for c in gens["b_sg"]["commands"])
    assert all("variants/mc_sg.yaml" in c for c in gens["mc_sg"]["commands"])
    # MC-SG reads M-SG's and C-SG's checkpoints of the same data set
    generators = tmp_path / "out" / "generators"
    over = gens["mc_sg"]["overrides"]
    assert over["checkpoint"] == f"{generators}/c_sg/phantom/models/model.pt"
    assert over["mask_checkpoint"] == f"{generators}/m_sg/phantom/models/model.pt"
    # each count's inference run writes its own folder, which its two methods read
    plans = {p.method: p for p in runner.run_plans()}
    for gen, label in (("b_sg", "B-SG"), ("mc_sg", "MC-SG")):
        plan = runner.generator_plan(spec.generators[gen], spec.datasets[0])
        for i, step in enumerate(plan.steps[-6:], 1):
            n = spec.vars["generated_patients"][f"n{i}"]
            assert (
                step.overrides["num_generated_patients"] == n and f"synthetic_n{i}" in step.overrides["synthetic_dir"]
            )
            for aug in ("w.o.", "w."):
                syn = plans[f"{label} + {aug} + n{i}"].overrides["synthetic_datalist"]
                assert syn == f"{generators}/{gen}/phantom/eval/synthetic_n{i}/datalist.json"
    assert "synthetic_datalist" not in plans["BL + w."].overrides


CALIBRATED = REPO / "scripts" / "experiments" / "phantom_stylegan2_calibrated.yaml"


def test_calibrated_grid_plans_generators_their_evaluation_and_an_iteration_matched_control(tmp_path):
    """The calibrated grid: B-SG and MC-SG pairs on the 8-patient subset, each evaluated on its n8 set (as many pairs
    as the real training slices, whose scores are the reference); the control trains as many iterations as n16."""
    spec = load_grid(CALIBRATED, root=REPO)
    spec.output_dir = str(tmp_path / "out")
    runner = GridRunner(spec, dry_run=True, log=lambda s: None)
    records = runner.run()
    assert len(records) == 9 * 5 and {r["status"] for r in records} == {"dry_run"}  # 8 rows and the upper bound
    gens = {r["name"]: r for r in runner.generator_records}
    workflows = {n: [c.split(" run ")[1].split()[0] for c in r["commands"]] for n, r in gens.items()}
    assert workflows == {
        "b_sg": ["training", "inference", "inference", "inference", "evaluating"],
        "m_sg": ["training"],
        "c_sg": ["training"],
        "mc_sg": ["inference", "inference", "inference", "evaluating"],
    }
    assert all("variants/diffaugment.yaml" in c for n in ("b_sg", "m_sg", "c_sg") for c in gens[n]["commands"])
    for name in ("b_sg", "mc_sg"):
        step = runner.generator_plan(spec.generators[name], spec.datasets[0]).steps[-1]
        assert step.workflow == "evaluating" and "synthetic_n8" in step.overrides["synthetic_datalist"]
        assert step.overrides.get("synthetic_method", "b_sg") == name
    real = 8 * 4  # training patients x slices
    synthetic = spec.vars["generated_patients"]["n16"] * spec.generators["b_sg"].overrides["slices_per_patient"]
    control = next(m for m in spec.methods if m.name == "BL, iterations of n16")
    epochs = spec.overrides["max_epochs"]
    assert control.overrides["max_epochs"] * real == epochs * (real + synthetic)
    plans = {p.method: p for p in runner.run_plans()}
    assert "mode='full'" in plans["Upper bound (80 patients)"].overrides["datalist"]
    assert "mode='small'" in plans["BL"].overrides["datalist"]
    assert (
        plans["MC-SG + n16"]
        .overrides["synthetic_datalist"]
        .endswith("mc_sg/calibrated_phantom_8_patients/eval/synthetic_n16/datalist.json")
    )
