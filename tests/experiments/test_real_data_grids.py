"""The real-data experiment grids and the "Train on real data" sections of the model cards.

Each real-data grid is the twin of a phantom grid and may differ from it only in its data set entries, so that the
two cannot drift apart; every documented ``scripts/prepare_data.py`` command names an existing sub-command with its
own options, and every documented bundle command names existing config files and ids of those files.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import shlex
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from common.experiments import GridRunner, load_grid

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "scripts" / "experiments"
TWINS = {  # real-data grid -> its phantom grid
    "brats_classification.yaml": "phantom_classification.yaml",
    "brats_segmentation.yaml": "phantom_segmentation.yaml",
    "luna16_mcgan_detection_table5.yaml": "mcgan_detection_table5.yaml",
}
CARDS = sorted(REPO.glob("bundles/*/docs/README.md"))
SECTION = "## Train on real data"
PREPARE = "python scripts/prepare_data.py"
BUNDLE_RUN = "python -m monai.bundle run"
RUN_ARGS = {"config_file", "meta_file", "logging_file", "args_file"}  # options of `monai.bundle run` itself


def _prepare_data() -> ModuleType:
    """``scripts/prepare_data.py`` imported by path (``scripts`` is not a package)."""
    spec = importlib.util.spec_from_file_location("prepare_data_under_test", REPO / "scripts" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(card: Path) -> str:
    """The text of the card's "Train on real data" section (up to the next level-2 heading)."""
    text = card.read_text(encoding="utf-8")
    assert text.count(SECTION + "\n") == 1, f"{card}: needs exactly one '{SECTION}' section"
    body = text.split(SECTION + "\n", 1)[1]
    return body.split("\n## ", 1)[0]


def _code_lines(markdown: str) -> list[str]:
    """The lines of the fenced code blocks of ``markdown``, backslash continuations joined."""
    lines, inside, pending = [], False, ""
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((pending + line).strip())
        pending = ""
    return lines


def _commands(lines: list[str], prefix: str) -> list[list[str]]:
    """The shell words after ``prefix`` of each line that starts with it."""
    return [shlex.split(line[len(prefix) :], comments=True) for line in lines if line.startswith(prefix)]


def _options(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """``(positional words, {option: value})`` of ``--option value`` / ``--option=value`` command words."""
    positional, options, i = [], {}, 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            if "=" in word:
                key, value = word[2:].split("=", 1)
            else:
                key, value = word[2:], words[i + 1] if i + 1 < len(words) else ""
                i += 1
            options[key] = value
        else:
            positional.append(word)
        i += 1
    return positional, options


def _grid_comment_lines(grid: Path) -> list[str]:
    """The commands in a grid file's comments (``#   python ...``)."""
    lines = [line.lstrip("#").strip() for line in grid.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line.startswith("python ")]


def _prepare_commands() -> list[tuple[str, list[str]]]:
    """Every ``scripts/prepare_data.py`` command of the model cards, the README and the real-data grids."""
    sources = [*CARDS, REPO / "README.md"]
    found = [(str(s), c) for s in sources for c in _commands(_code_lines(s.read_text(encoding="utf-8")), PREPARE)]
    found += [(str(g), c) for g in (EXPERIMENTS / n for n in TWINS) for c in _commands(_grid_comment_lines(g), PREPARE)]
    return found


def _without_datasets(spec: Any) -> dict[str, Any]:
    """A grid's snapshot without its name, output folder and data set entries (and the t-SNE's data set)."""
    data = spec.to_dict()
    for key in ("name", "output_dir", "source", "datasets"):
        data.pop(key)
    if data.get("tsne"):
        data["tsne"] = {k: v for k, v in data["tsne"].items() if k != "dataset"}
    return data


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_twin_differs_only_in_datasets(twin):
    real = load_grid(EXPERIMENTS / twin, root=REPO)
    phantom = load_grid(EXPERIMENTS / TWINS[twin], root=REPO)
    assert _without_datasets(real) == _without_datasets(phantom)
    # one real data set per phantom one, with the same subset mode, reading a converted folder without a phantom
    assert [(d.split or {}).get("mode", "full") for d in real.datasets] == [
        (d.split or {}).get("mode", "full") for d in phantom.datasets
    ]
    assert all(d.dataset_dir and not (d.split or {}).get("datalist") for d in real.datasets)
    folders = {Path(d.dataset_dir).relative_to(REPO).as_posix() for d in real.datasets}
    assert all(d.overrides == {"phantom_kind": "none"} and not d.variants and not d.vars for d in real.datasets)
    assert len(folders) == 1 and not folders & {"", "."}
    # the grid's comment converts that very folder
    outputs = {_options(c)[0][2] for c in _commands(_grid_comment_lines(EXPERIMENTS / twin), PREPARE)}
    assert outputs == folders
    if real.tsne:
        assert real.tsne["dataset"] in {d.name for d in real.datasets}


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_twin_runs_and_generators_read_the_converted_datalist(twin):
    spec = load_grid(EXPERIMENTS / twin, root=REPO)
    runner = GridRunner(spec, dry_run=True, log=lambda *_: None)
    records = runner.run()
    assert records and not runner.failed
    folder = spec.datasets[0].dataset_dir
    for record in [*records, *runner.generator_records]:
        assert record["status"] == "dry_run", record
        overrides = record["overrides"]
        assert overrides["dataset_dir"] == folder, record  # no phantom folder under output_dir/data
        if "datalist" in overrides:  # a `split` subset of the conversion's datalist
            source = str(Path(folder) / "datalist.json")
            prepared = f"common.data.prepare_phantom(@dataset_dir, @phantom_kind, datalist={source!r}, **@phantom_args)"
            assert overrides["datalist"].startswith(f"$common.data.make_split_datalist({prepared} or {source!r}, ")
    assert all(r["overrides"]["phantom_kind"] == "none" for r in records)


def test_prepare_data_commands_parse():
    module = _prepare_data()
    commands = _prepare_commands()
    assert len(commands) >= 15, "the model cards lost their prepare_data commands"
    problems = []
    for where, words in commands:
        positional, options = _options(words)
        function = getattr(module, positional[0], None) if positional else None
        if positional[0].startswith("_") or not inspect.isfunction(function) or positional[0] == "main":
            problems.append(f"{where}: no sub-command {positional[0]!r}: {' '.join(words)}")
            continue
        parameters = {
            name
            for name, p in inspect.signature(function).parameters.items()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }
        unknown = sorted(set(options) - parameters)
        if unknown:
            problems.append(f"{where}: {positional[0]} has no option(s) {unknown}")
        if len(positional) != 3:  # sub-command, input, output folder
            problems.append(f"{where}: expected an input and an output folder: {' '.join(words)}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("card", CARDS, ids=lambda p: p.parts[-3])
def test_card_bundle_commands(card):
    lines = _code_lines(_section(card))
    commands = _commands(lines, BUNDLE_RUN)
    assert commands, f"{card}: the section shows no bundle command"
    outputs = {_options(c)[0][2] for c in _commands(lines, PREPARE)}
    problems = []
    for words in commands:
        positional, options = _options(words)
        value = options.get("config_file", "")
        files = ast.literal_eval(value) if value.startswith("[") else [value]
        missing = [f for f in files if not (REPO / f).is_file()]
        if missing:
            problems.append(f"missing config file(s) {missing}")
            continue
        ids = set()
        for f in files:
            ids.update(yaml.safe_load((REPO / f).read_text(encoding="utf-8")) or {})
        unknown = sorted(k for k in {positional[0], *options} - RUN_ARGS if k.split("#")[0] not in ids)
        if unknown:
            problems.append(f"{' '.join(words[:2])}: ids {unknown} are in none of {files}")
        if options.get("phantom_kind") != "none" or "dataset_dir" not in options:
            problems.append(f"{' '.join(words[:2])}: needs --dataset_dir and --phantom_kind none")
        elif outputs and options["dataset_dir"] not in outputs:
            problems.append(f"--dataset_dir {options['dataset_dir']} is not converted in the section ({outputs})")
    assert not problems, f"{card}:\n" + "\n".join(problems)


def test_every_card_has_the_section():
    names = {card.parts[-3] for card in CARDS}
    assert names >= {
        "cda_gan", "classification", "cpggan", "dcgan_wgan", "detection", "mcgan_3d", "munit", "pggan",
        "segmentation", "simgan", "ga_unet", "stylegan2",
    }  # fmt: skip
    for card in CARDS:
        # arabic (sec. 4.1) or, as paper 002 numbers them, roman (sec. III-A) section numbers
        assert re.search(
            r"\bsec\. (\d|[IVX]+-?[A-Z]?\b)", _section(card)
        ), f"{card}: the section cites no paper section"
