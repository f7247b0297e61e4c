"""Scoring a Visual Turing Test: the readers' exported answers against the study's answer key (Han, paper 003,
sec. 3.3.2 and 4.3.4, Tables 1 and 3).

:func:`score_study` reads the answer files the app exports (JSON or CSV, one per reader) and the answer key that
:func:`common.evaluation.visual_turing.make_study` wrote, checks that they belong together (the same study id, every
case answered once, no unknown case, valid answers), and reports, per reader and pooled over the readers:

- real vs synthetic: the confusion matrix of Table 1 (real as real, real as synthetic, synthetic as real, synthetic
  as synthetic, in % of the real and of the synthetic cases) and the accuracy with its exact (Clopper-Pearson) 95 %
  interval and the exact two-sided binomial test against 50 % (:mod:`common.metrics.reader_study`); an accuracy
  close to 50 % means the readers could not tell the synthetic images from the real ones;
- with classes (sec. 4.2.5), the class confusion matrix of Table 3 (tumour as tumour, tumour as non-tumour, ...),
  with the errors split by origin as in Table 3 ("23 (R: 11, S: 12)"), the test against ``1 / K``;
- with two readers or more, the agreement: Cohen's kappa of every pair of readers, and Fleiss' kappa of all of them
  when there are three or more.

The pooled score treats every (reader, case) answer as one trial, so its interval ignores the correlation between
the answers of one reader or to one case: read it as descriptive. Outputs: ``vtt_scores.json``, ``vtt_table.md``
(Markdown tables in the style of Tables 1 and 3) and ``vtt_confusion.png`` (matplotlib, the ``experiments`` extra).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common.evaluation.visual_turing import ANSWERS_FORMAT, KEY_FORMAT, ORIGINS, VisualTuringError
from common.metrics.reader_study import CI_METHOD, cohen_kappa, fleiss_kappa, rating_counts, score_task
from common.utils import atomic_path, atomic_write_json, atomic_write_text

__all__ = ["format_markdown", "read_answers", "read_key", "score_answers", "score_study"]

_CSV_COLUMNS = ("format", "study_id", "reader", "case", "origin", "class", "confidence")


def read_key(path: str | os.PathLike) -> dict[str, Any]:
    """The answer key written by ``make_study``.

    Raises:
        VisualTuringError: a missing or unreadable file, or not an answer key.
    """
    try:
        with open(path, encoding="utf-8") as f:
            key = json.load(f)
    except FileNotFoundError as e:
        raise VisualTuringError(f"{path}: the answer key does not exist.") from e
    except (OSError, ValueError) as e:
        raise VisualTuringError(f"{path}: the answer key is not readable JSON ({e}).") from e
    if not isinstance(key, dict) or key.get("format") != KEY_FORMAT or not isinstance(key.get("cases"), list):
        raise VisualTuringError(f"{path}: not a Visual Turing Test answer key (no format {KEY_FORMAT!r}).")
    return key


def _int_or_none(value: Any, path: str, what: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError) as e:
        raise VisualTuringError(f"{path}: {what} {value!r} is not a number.") from e
    if number != int(number):
        raise VisualTuringError(f"{path}: {what} {value!r} is not an integer.")
    return int(number)


def read_answers(path: str | os.PathLike) -> dict[str, Any]:
    """One reader's answers, from the JSON or the CSV file the app exports.

    Args:
        path: the answer file (``.csv`` read as CSV, anything else as JSON).

    Returns:
        ``{"path", "study_id", "reader", "answers": [{"case", "origin", "class", "confidence"}, ...]}``.

    Raises:
        VisualTuringError: a missing or unreadable file, or one that is not an answer file of the app.
    """
    path = str(path)
    if not os.path.isfile(path):
        raise VisualTuringError(f"{path}: the answer file does not exist.")
    if path.lower().endswith(".csv"):
        try:
            with open(path, encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise VisualTuringError(f"{path}: the answer file is not readable CSV ({e}).") from e
        if not rows or set(_CSV_COLUMNS) - set(rows[0]):
            raise VisualTuringError(f"{path}: not an answer file of the app (it needs the columns {_CSV_COLUMNS}).")
        if {r["format"] for r in rows} != {ANSWERS_FORMAT} or len({(r["study_id"], r["reader"]) for r in rows}) != 1:
            raise VisualTuringError(f"{path}: the rows must all have format {ANSWERS_FORMAT!r}, one study and reader.")
        study_id, reader = rows[0]["study_id"], rows[0]["reader"]
        answers = [
            {
                "case": r["case"],
                "origin": r["origin"] or None,
                "class": _int_or_none(r["class"], path, f"the class of {r['case']}"),
                "confidence": _int_or_none(r["confidence"], path, f"the confidence of {r['case']}"),
            }
            for r in rows
        ]
    else:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            raise VisualTuringError(f"{path}: the answer file is not readable JSON ({e}).") from e
        if (
            not isinstance(data, dict)
            or data.get("format") != ANSWERS_FORMAT
            or not isinstance(data.get("answers"), list)
        ):
            raise VisualTuringError(f"{path}: not an answer file of the app (no format {ANSWERS_FORMAT!r}).")
        study_id, reader = data.get("study_id"), data.get("reader")
        answers = []
        for a in data["answers"]:
            if not isinstance(a, dict) or "case" not in a:
                raise VisualTuringError(f"{path}: an answer without a 'case'.")
            answers.append(
                {
                    "case": a["case"],
                    "origin": a.get("origin"),
                    "class": _int_or_none(a.get("class"), path, f"the class of {a['case']}"),
                    "confidence": _int_or_none(a.get("confidence"), path, f"the confidence of {a['case']}"),
                }
            )
    if not reader or not str(reader).strip():
        raise VisualTuringError(f"{path}: the answer file names no reader.")
    return {"path": path, "study_id": study_id, "reader": str(reader).strip(), "answers": answers}


def _check(answers: Mapping[str, Any], key: Mapping[str, Any], key_path: str) -> dict[str, dict[str, Any]]:
    """The answers of one file by case, after checking them against the key."""
    path = answers["path"]
    if answers["study_id"] != key["study_id"]:
        raise VisualTuringError(
            f"{path}: the answers are for study {answers['study_id']!r} but the key {key_path} is for study "
            f"{key['study_id']!r}."
        )
    by_case: dict[str, dict[str, Any]] = {}
    problems = []
    class_values = {c["value"] for c in key["classes"]} if key.get("classes") else None
    for a in answers["answers"]:
        if a["case"] in by_case:
            problems.append(f"case {a['case']} is answered twice")
        by_case[a["case"]] = a
    known = [c["case"] for c in key["cases"]]
    unknown = sorted(set(by_case) - set(known))
    if unknown:
        problems.append(f"cases {unknown[:5]} are not in the study")
    missing = [c for c in known if c not in by_case or by_case[c]["origin"] is None]
    if missing:
        problems.append(f"{len(missing)} of {len(known)} cases have no real/synthetic answer (first: {missing[:5]})")
    bad = [c for c, a in by_case.items() if a["origin"] is not None and a["origin"] not in ORIGINS]
    if bad:
        problems.append(f"cases {bad[:5]} have an answer other than {list(ORIGINS)}")
    if class_values is not None:
        no_class = [c for c in known if c in by_case and by_case[c]["class"] not in class_values]
        if no_class:
            problems.append(
                f"{len(no_class)} cases have no valid class answer (one of {sorted(class_values)}; first: {no_class[:5]})"
            )
    bad_confidence = [c for c, a in by_case.items() if a["confidence"] is not None and not 1 <= a["confidence"] <= 5]
    if bad_confidence:
        problems.append(f"cases {bad_confidence[:5]} have a confidence outside 1-5")
    if problems:
        raise VisualTuringError(f"{path} (reader {answers['reader']!r}): " + "; ".join(problems) + ".")
    return by_case


def _class_breakdown(
    truth: Sequence[int], answers: Sequence[int], origins: Sequence[str], labels: Sequence[int]
) -> dict[str, list[list[int]]]:
    """The class confusion counts of the real and of the synthetic cases (Table 3's "(R: 11, S: 12)")."""
    out = {}
    for origin in ORIGINS:
        keep = [i for i, o in enumerate(origins) if o == origin]
        task = score_task([truth[i] for i in keep], [answers[i] for i in keep], labels) if keep else None
        out[origin] = task["counts"] if task else [[0] * len(labels) for _ in labels]
    return out


def _score_one(
    cases: Sequence[Mapping[str, Any]], answers: Sequence[Mapping[str, Any]], class_values: Sequence[int] | None
) -> dict[str, Any]:
    """The scores of answers (one reader, or several concatenated) to ``cases`` (key entries, same order)."""
    result: dict[str, Any] = {
        "n_answers": len(answers),
        "origin": score_task([c["origin"] for c in cases], [a["origin"] for a in answers], ORIGINS, chance=0.5),
    }
    confidences = [a["confidence"] for a in answers if a["confidence"] is not None]
    correct = [
        a["confidence"] for c, a in zip(cases, answers) if a["confidence"] is not None and a["origin"] == c["origin"]
    ]
    result["confidence"] = {
        "n_rated": len(confidences),
        "mean": float(np.mean(confidences)) if confidences else None,
        "mean_when_correct": float(np.mean(correct)) if correct else None,
    }
    if class_values is not None:
        truth = [c["class"] for c in cases]
        given = [a["class"] for a in answers]
        result["class"] = score_task(truth, given, class_values)
        result["class"]["by_origin_counts"] = _class_breakdown(truth, given, [c["origin"] for c in cases], class_values)
    return result


def _agreement(readers: Sequence[str], answers: Sequence[Sequence[Any]], labels: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "cohen_kappa": {
            f"{readers[i]} vs {readers[j]}": cohen_kappa(answers[i], answers[j], labels)
            for i, j in itertools.combinations(range(len(readers)), 2)
        }
    }
    if len(readers) >= 3:
        out["fleiss_kappa"] = fleiss_kappa(rating_counts(answers, labels))
    return out


def score_answers(answer_sets: Sequence[Mapping[str, Any]], key: Mapping[str, Any], key_path: str = "key") -> dict:
    """Scores of the readers' answers (from :func:`read_answers`) against the key (from :func:`read_key`).

    Returns:
        ``{"study_id", "n_cases", "n_readers", "readers": {name: scores}, "pooled": scores or None,
        "agreement": {"origin": ..., "class": ...} or None, "classes", "ci_method"}``; ``scores`` is
        ``{"n_answers", "origin": score_task(...), "class": score_task(...) with "by_origin_counts",
        "confidence"}``.

    Raises:
        VisualTuringError: no answer files, answers of another study, missing/unknown/invalid answers, or two files
            of the same reader.
    """
    if not answer_sets:
        raise VisualTuringError("no answer files given.")
    seen: dict[str, str] = {}
    for a in answer_sets:
        if a["reader"] in seen:
            raise VisualTuringError(f"{seen[a['reader']]} and {a['path']} are both answers of reader {a['reader']!r}.")
        seen[a["reader"]] = a["path"]
    cases = key["cases"]
    class_values = [c["value"] for c in key["classes"]] if key.get("classes") else None
    checked = {a["reader"]: _check(a, key, key_path) for a in answer_sets}
    ordered = {r: [by_case[c["case"]] for c in cases] for r, by_case in checked.items()}
    readers = list(ordered)
    result: dict[str, Any] = {
        "study_id": key["study_id"],
        "n_cases": len(cases),
        "n_readers": len(readers),
        "classes": key.get("classes"),
        "ci_method": CI_METHOD,
        "readers": {r: _score_one(cases, ordered[r], class_values) for r in readers},
        "pooled": None,
        "agreement": None,
        "answer_files": {r: seen[r] for r in readers},
    }
    if len(readers) > 1:
        result["pooled"] = _score_one(
            list(cases) * len(readers), [a for r in readers for a in ordered[r]], class_values
        )
        result["agreement"] = {
            "origin": _agreement(readers, [[a["origin"] for a in ordered[r]] for r in readers], ORIGINS)
        }
        if class_values is not None:
            result["agreement"]["class"] = _agreement(
                readers, [[a["class"] for a in ordered[r]] for r in readers], class_values
            )
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _p(value: float) -> str:
    return f"{value:.3g}" if value >= 1e-4 else "<1e-4"


def _rows(result: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    rows = list(result["readers"].items())
    if result["pooled"] is not None:
        rows.append((f"pooled ({result['n_readers']} readers)", result["pooled"]))
    return rows


def format_markdown(result: Mapping[str, Any]) -> str:
    """Markdown tables of a :func:`score_answers` result in the style of the thesis' Tables 1 and 3."""
    lines = [
        f"# Visual Turing Test `{result['study_id']}`: {result['n_cases']} cases, {result['n_readers']} reader(s)",
        "",
        "Accuracy: share of correct answers, with its exact (Clopper-Pearson) 95 % interval and the exact two-sided "
        "binomial test against chance (50 % for real vs synthetic); proximity to 50 % means the synthetic images "
        "were hard to tell from the real ones. The other columns are % of the cases of the first named kind.",
        "",
        "## Real vs synthetic (Table 1)",
        "",
        "| reader | Accuracy (%) | 95 % CI (%) | p (vs 50 %) | Real as Real (%) | Real as Synt (%) | "
        "Synt as Real (%) | Synt as Synt (%) | answers |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in _rows(result):
        acc, rp = s["origin"]["accuracy"], s["origin"]["row_percent"]
        cells = [_pct(v) for row in rp for v in (row if row is not None else [None, None])]
        lines.append(
            f"| {name} | {100 * acc['accuracy']:.1f} | {100 * acc['ci_low']:.1f}-{100 * acc['ci_high']:.1f} | "
            f"{_p(acc['p_value'])} | " + " | ".join(cells) + f" | {acc['total']} |"
        )
    if result.get("classes"):
        names = [c["name"] for c in result["classes"]]
        pairs = [(i, j) for i in range(len(names)) for j in range(len(names))]
        chance = 100.0 / len(names)
        lines += [
            "",
            f"## {' vs '.join(n.capitalize() for n in names)} (Table 3)",
            "",
            "Errors are split by origin as in Table 3: `(R: real cases, S: synthetic cases)`, in counts.",
            "",
            f"| reader | Accuracy (%) | 95 % CI (%) | p (vs {chance:.0f} %) | "
            + " | ".join(f"{names[i].capitalize()} as {names[j].capitalize()} (%)" for i, j in pairs)
            + " | answers |",
            "| --- | --- | --- | --- | " + " | ".join("---" for _ in pairs) + " | --- |",
        ]
        for name, s in _rows(result):
            acc, rp, split = s["class"]["accuracy"], s["class"]["row_percent"], s["class"]["by_origin_counts"]
            cells = []
            for i, j in pairs:
                cell = _pct(rp[i][j] if rp[i] is not None else None)
                if i != j:
                    r, y = split["real"][i][j], split["synthetic"][i][j]
                    cell += f" (R: {r}, S: {y})"
                cells.append(cell)
            lines.append(
                f"| {name} | {100 * acc['accuracy']:.1f} | {100 * acc['ci_low']:.1f}-{100 * acc['ci_high']:.1f} | "
                f"{_p(acc['p_value'])} | " + " | ".join(cells) + f" | {acc['total']} |"
            )
    if result["agreement"] is not None:
        lines += ["", "## Agreement between readers", ""]
        for task, agreement in result["agreement"].items():
            what = "real vs synthetic" if task == "origin" else "class"
            for pair, kappa in agreement["cohen_kappa"].items():
                lines.append(f"- {what}, Cohen's kappa {pair}: {kappa:.3f}")
            if "fleiss_kappa" in agreement:
                lines.append(f"- {what}, Fleiss' kappa of all readers: {agreement['fleiss_kappa']:.3f}")
    return "\n".join(lines) + "\n"


def _figure(result: Mapping[str, Any], path: Path) -> None:
    """Confusion matrices (rows: truth, in % of the row) of every reader and the pooled answers, one row per
    question, saved as PNG with matplotlib's Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = _rows(result)
    tasks = [("origin", ["real", "synthetic"])]
    if result.get("classes"):
        tasks.append(("class", [c["name"] for c in result["classes"]]))
    fig = Figure(figsize=(3.2 * len(rows), 3.0 * len(tasks)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(tasks), len(rows), squeeze=False)
    for t, (task, labels) in enumerate(tasks):
        for r, (name, scores) in enumerate(rows):
            ax = axes[t][r]
            counts = np.asarray(scores[task]["counts"], dtype=float)
            percent = 100.0 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
            ax.imshow(percent, vmin=0, vmax=100, cmap="Blues")
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(
                        j,
                        i,
                        f"{percent[i, j]:.0f}%\n({int(counts[i, j])})",
                        ha="center",
                        va="center",
                        color="white" if percent[i, j] > 60 else "black",
                        fontsize=8,
                    )
            ax.set_xticks(range(len(labels)), labels, fontsize=8)
            ax.set_yticks(range(len(labels)), labels, fontsize=8)
            ax.set_xlabel("answer", fontsize=8)
            ax.set_ylabel("truth", fontsize=8)
            acc = scores[task]["accuracy"]["accuracy"]
            ax.set_title(f"{name}\naccuracy {100 * acc:.1f} %", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def score_study(
    answer_files: str | os.PathLike | Sequence[str | os.PathLike], key: str | os.PathLike, out_dir: str | os.PathLike
) -> dict[str, Any]:
    """Score the answer files of a study against its key and write the report.

    Args:
        answer_files: the readers' exported answer files (JSON or CSV), one per reader.
        key: the study's ``answer_key.json``.
        out_dir: folder of ``vtt_scores.json``, ``vtt_table.md`` and ``vtt_confusion.png``.

    Returns:
        the :func:`score_answers` result, with ``"files"``: the paths written.

    Raises:
        VisualTuringError: see :func:`read_answers`, :func:`read_key` and :func:`score_answers`.
    """
    files = [answer_files] if isinstance(answer_files, (str, os.PathLike)) else list(answer_files)
    key_data = read_key(key)
    result = score_answers([read_answers(f) for f in files], key_data, str(key))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "vtt_scores.json", "markdown": out / "vtt_table.md", "figure": out / "vtt_confusion.png"}
    atomic_write_text(format_markdown(result), written["markdown"])
    try:
        _figure(result, written["figure"])
    except ImportError:  # matplotlib is optional (the `experiments` extra): the JSON and the tables are complete
        del written["figure"]
    result["files"] = {k: str(v) for k, v in written.items()}
    atomic_write_json(result, written["json"])
    return result
