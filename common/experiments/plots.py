"""Plots of a grid's results, drawn with matplotlib's ``Agg`` canvas (no display needed).

Figures are :class:`matplotlib.figure.Figure` objects saved directly (PNG through the Agg renderer), without
``pyplot``: importing this module changes no global matplotlib state (back end, open figures).

- ``bars_<metric>.png``: metric per data set and method, error bars = the grid's spread over seeds (over test
  images for the metrics with per-image values of a ``blocks: test_images`` grid, as the tables);
- ``cd_<metric>_<blocks>.png``: critical-difference diagram of the Nemenyi test (Demšar 2006, Fig. 1): methods on
  an average-rank axis, groups not significantly different joined by a bar, the CD drawn on top;
- ``ratio_<metric>.png``: metric vs synthetic ratio or number of synthetic samples, one panel per data set, error
  bars = standard error over seeds, or over test images as the tables (CDA-GAN Table 7; Vu et al. Fig. 5: DSC vs
  the number of generated patients, the baseline at x = 0);
- ``tsne.png``: t-SNE of real vs synthetic images, colour = class, marker = real/synthetic (Han sec. 4.2.6);
- ``synthetic_pairs.png``: the t-SNE's synthetic images beside the real images they were translated from (the
  ``source`` of a cross-domain generator's datalist entries), a few per source class, the last channel;
- ``mask_pairs_<generator>.png``: for a generator of image+mask pairs evaluated with
  :class:`~common.evaluation.PairedGenerativeEvaluation`, real pairs (top) and its synthetic pairs (below) that
  contain a lesion, the mask's outline drawn on the image;
- ``boxes_<generator>.png``: for a generator of images with boxes (CPGGAN, pix2pix) whose evaluation
  names its real and synthetic datalists, real images (top) and synthetic ones (below) with their boxes drawn.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from common.data.merging import NOISE_SOURCE
from common.experiments.results import cell_aggregates, metrics_of, ratio_curves
from common.experiments.spec import GridSpec, slugify
from common.utils import atomic_path
from matplotlib.figure import Figure

__all__ = [
    "bar_plot",
    "box_pairs_plot",
    "cd_diagram",
    "mask_pairs_plot",
    "ratio_plot",
    "synthetic_pairs_plot",
    "tsne_plot",
    "write_plots",
]


def _save(fig, path: str | os.PathLike) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return str(path)


def bar_plot(
    means: np.ndarray,
    errs: np.ndarray,
    datasets: Sequence[str],
    methods: Sequence[str],
    ylabel: str,
    path: str | os.PathLike,
    title: str = "",
) -> str:
    """Grouped bars: ``means``/``errs`` of shape ``(len(datasets), len(methods))`` (NaN = missing)."""
    n_d, n_m = len(datasets), len(methods)
    fig = Figure(figsize=(max(4.0, 1.0 + n_d * (0.35 * n_m + 0.6)), 3.6))
    ax = fig.subplots()
    width = 0.8 / n_m
    x = np.arange(n_d)
    for j, m in enumerate(methods):
        ax.bar(x + (j - (n_m - 1) / 2) * width, np.nan_to_num(means[:, j]), width, yerr=np.nan_to_num(errs[:, j]),
               capsize=2, label=m)  # fmt: skip
    ax.set_xticks(x, datasets)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=max(1, n_m // 6), bbox_to_anchor=(1.01, 1), loc="upper left")
    return _save(fig, path)


def _cliques(ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs ``[i, j]`` of rank-sorted methods whose rank span is below ``cd`` (not significantly different)."""
    order = np.sort(ranks)
    spans = []
    for i in range(len(order)):
        j = i
        while j + 1 < len(order) and order[j + 1] - order[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in spans):
            spans.append((i, j))
    return spans


def cd_diagram(
    methods: Sequence[str], average_ranks: Sequence[float], cd: float, path: str | os.PathLike, title: str = ""
) -> str:
    """Critical-difference diagram (Demšar 2006, Fig. 1): rank axis (1 = best, on the left), each method's average
    rank with its name, the CD interval, and a thick bar joining each group of methods whose ranks differ by less
    than ``cd``."""
    ranks = np.asarray(average_ranks, dtype=float)
    k = len(methods)
    order = np.argsort(ranks, kind="stable")
    half = (k + 1) // 2
    height = 1.2 + 0.28 * max(half, k - half) + 0.15 * len(_cliques(ranks, cd))
    fig = Figure(figsize=(7.0, height))
    ax = fig.subplots()
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.6, hi + 0.6)
    ax.set_ylim(-height, 0.9)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="k", lw=1)
    for r in range(lo, hi + 1):
        ax.vlines(r, 0, 0.1, color="k", lw=1)
        ax.text(r, 0.17, str(r), ha="center", va="bottom", fontsize=8)
    if math.isfinite(cd):
        ax.hlines(0.65, lo, lo + cd, color="k", lw=1.5)
        ax.vlines([lo, lo + cd], 0.6, 0.7, color="k", lw=1.5)
        ax.text(lo + cd / 2, 0.72, f"CD = {cd:.3f}", ha="center", va="bottom", fontsize=8)
    for pos, idx in enumerate(order):
        left = pos < half
        row = pos if left else k - 1 - pos
        y = -0.35 - 0.28 * row
        x_text = lo - 0.5 if left else hi + 0.5
        ax.plot([ranks[idx], ranks[idx], x_text], [0, y, y], color="k", lw=0.8)
        ax.text(x_text, y, f"{methods[idx]} ({ranks[idx]:.2f})", ha="right" if left else "left", va="center",
                fontsize=8)  # fmt: skip
    sorted_ranks = ranks[order]
    for n, (i, j) in enumerate(_cliques(ranks, cd)):
        y = -0.12 - 0.1 * n
        ax.hlines(y, sorted_ranks[i] - 0.03, sorted_ranks[j] + 0.03, color="tab:red", lw=3)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def ratio_plot(
    panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, float]]]],
    x_label: str,
    ylabel: str,
    path: str | os.PathLike,
) -> str:
    """Metric vs synthetic amount: ``panels[dataset][curve] = [(x, mean, err), ...]``, one panel per data set."""
    n = max(1, len(panels))
    fig = Figure(figsize=(3.6 * n, 3.0))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (dataset, curves) in zip(axes[0], panels.items()):
        for curve, pts in curves.items():
            pts = sorted(p for p in pts if math.isfinite(p[1]))
            if pts:
                xs, ys, es = zip(*pts)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=curve)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel(x_label)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def tsne_plot(result: Mapping[str, Any], path: str | os.PathLike) -> str | None:
    """Scatter of a :func:`common.evaluation.embeddings.tsne_real_vs_synthetic` result: colour = class, circle = real,
    cross = synthetic; the feature kind is in the title. Returns ``None`` for a result holding an ``error``."""
    if "error" in result or not result.get("coords"):
        return None
    coords = np.asarray(result["coords"], dtype=float)
    classes = [str(c) for c in result["classes"]]
    sources = list(result["sources"])
    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.subplots()
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, cls in enumerate(sorted(set(classes))):
        for src, marker in (("real", "o"), ("synthetic", "x")):
            sel = np.array([c == cls and s == src for c, s in zip(classes, sources)])
            if sel.any():
                ax.scatter(coords[sel, 0], coords[sel, 1], s=14, marker=marker, color=colours[ci % len(colours)],
                           alpha=0.75, label=f"{src}, class {cls}")  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    info = result.get("tsne", {})
    ax.set_title(
        f"t-SNE (perplexity {info.get('perplexity', '?'):.3g}, {info.get('max_iter', '?')} it.)\n{result['features']}",
        fontsize=7,
    )
    ax.legend(fontsize=7)
    return _save(fig, path)


def _read_image(file: str | os.PathLike) -> np.ndarray:
    """An image file's array, float32, singleton axes dropped."""
    import nibabel as nib  # the grid tools' dependency, not the plots' (a grid without image files)

    return np.squeeze(np.asarray(nib.load(str(file)).dataobj, dtype=np.float32))


def synthetic_pairs_plot(
    synthetic_datalist: str | os.PathLike,
    path: str | os.PathLike,
    per_class: int = 4,
    channel: int = -1,
    section: str = "training",
    class_key: str = "source_class",
) -> str | None:
    """Real images (top of each pair of rows) and the synthetic images made from them (below), ``per_class`` of each
    source class.

    Args:
        synthetic_datalist: a generator's datalist whose entries name the real ``source`` image they were made from
            (a cross-domain translation, a GA-UNet sample of ``G(z, x_i)``): either the first channel's file (the
            channel shown is then the file with the same channel suffix) or one file per channel, as ``image``
            (files relative to the datalist).
        path: the PNG file.
        per_class: pairs shown per source class (the first ones of the datalist).
        channel: index of the channel shown (default the last: FLAIR in the BraTS order, where the whole tumour shows).
        section: the datalist section.
        class_key: the entries' key of the source class; entries without it fall back to ``class``.

    Returns:
        the path, or ``None`` when no entry names a source image (e.g. a noise-to-image generator's datalist, whose
        entries name none or :py:data:`common.data.NOISE_SOURCE`).
    """
    from monai.data import load_decathlon_datalist

    entries = [
        e
        for e in load_decathlon_datalist(str(synthetic_datalist), True, section)
        if e.get("source") and os.path.basename(str(e["source"])) != NOISE_SOURCE  # also as merged before it was kept
    ]
    if not entries:
        return None

    def source_class(e: Mapping[str, Any]) -> int:
        return int(e.get(class_key, e.get("class", 0)))

    classes = sorted({source_class(e) for e in entries})
    chosen = [[e for e in entries if source_class(e) == c][:per_class] for c in classes]
    cols = max(len(c) for c in chosen)
    fig = Figure(figsize=(1.1 * cols, 2.3 * len(classes)))
    axes = np.atleast_2d(fig.subplots(2 * len(classes), cols, squeeze=False))
    for a in axes.flat:
        a.axis("off")
    for row, (cls, group) in enumerate(zip(classes, chosen)):
        for col, e in enumerate(group):
            images = e["image"] if isinstance(e["image"], (list, tuple)) else [e["image"]]
            translated = str(images[channel])
            if isinstance(e["source"], (list, tuple)):  # one file per channel, in the layout of ``image``
                if len(e["source"]) != len(images):
                    raise ValueError(f"{synthetic_datalist}: {len(e['source'])} source files for {len(images)} images.")
                source = str(e["source"][channel])
            else:
                source = str(e["source"])
                if translated != str(images[0]):  # the source names channel 0's file: the channel's has its suffix
                    first = Path(str(images[0])).name.split("_")[-1]
                    source = source.replace(f"_{first}", "_" + Path(translated).name.split("_")[-1])
            for r, (file, title) in enumerate(((source, f"real, class {cls}"), (translated, "synthetic"))):
                ax = axes[2 * row + r, col]
                ax.imshow(_read_image(file).T, cmap="gray")
                ax.set_title(title, fontsize=7)
    return _save(fig, path)


def _panel_rows(count: int) -> tuple[Figure, np.ndarray]:
    """A figure of 2 rows of ``count`` image panels, axes off: real images above, synthetic ones below."""
    fig = Figure(figsize=(1.3 * count, 2.8))
    axes = fig.subplots(2, count, squeeze=False)
    for a in axes.flat:
        a.axis("off")
    return fig, axes


def mask_pairs_plot(
    real_datalist: str | os.PathLike,
    synthetic_datalist: str | os.PathLike,
    path: str | os.PathLike,
    count: int = 6,
    channel: int = -1,
    real_section: str = "training",
    synthetic_section: str = "training",
) -> str | None:
    """Image+mask pairs with a lesion: ``count`` real ones (top row) and ``count`` synthetic ones (bottom row), the
    first of each section whose label map has foreground, one channel shown with the mask's outline on it. A set
    without any lesion shows its first ``count`` pairs instead, titled "no lesion" (e.g. a mask generator that
    collapsed to empty masks).

    Args:
        real_datalist: datalist of the real pairs (``image``: a file or one file per channel; ``label``).
        synthetic_datalist: datalist of the synthetic pairs, same layout.
        path: the PNG file.
        count: pairs shown per set.
        channel: index of the channel shown for one-file-per-channel images, or of the channel axis of a
            multi-channel file (default the last: FLAIR in the BraTS order).
        real_section: section of ``real_datalist``.
        synthetic_section: section of ``synthetic_datalist``.

    Returns:
        the path, or ``None`` when neither set has a pair with a lesion.
    """
    from monai.data import load_decathlon_datalist

    def pairs(datalist: str | os.PathLike, section: str, lesion: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        found = []
        for e in load_decathlon_datalist(str(datalist), True, section):
            label = _read_image(e["label"])
            if lesion and not np.any(label > 0):
                continue
            files = e["image"] if isinstance(e["image"], (list, tuple)) else [e["image"]]
            image = _read_image(files[channel] if len(files) > 1 else files[0])
            if image.ndim == label.ndim + 1:  # one multi-channel file: the channel axis is the one label lacks
                axis = next((i for i, n in enumerate(image.shape) if i >= label.ndim or n != label.shape[i]), 0)
                image = np.take(image, channel, axis=axis)
            found.append((image, label))
            if len(found) == count:
                break
        return found

    rows = [("real", pairs(real_datalist, real_section)), ("synthetic", pairs(synthetic_datalist, synthetic_section))]
    if not any(found for _, found in rows):
        return None
    sets = ((real_datalist, real_section), (synthetic_datalist, synthetic_section))
    rows = [(n, f) if f else (f"{n}, no lesion", pairs(*where, lesion=False)) for (n, f), where in zip(rows, sets)]
    fig, axes = _panel_rows(count)
    for r, (name, found) in enumerate(rows):
        for c, (image, label) in enumerate(found):
            ax = axes[r, c]
            if image.ndim == 3:  # a volume: the slice through the lesion's largest cross-section
                z = int(np.argmax((label > 0).sum(axis=(0, 1))))
                image, label = image[..., z], label[..., z]
            ax.imshow(image.T, cmap="gray")
            ax.contour((label > 0).T.astype(float), levels=[0.5], colors="red", linewidths=0.6)
            ax.set_title(name, fontsize=7)
    return _save(fig, path)


def box_panels(
    datalist: str | os.PathLike, section: str = "training", count: int = 6
) -> list[tuple[np.ndarray, list[list[float]]]]:
    """The first ``count`` images of a detection datalist's section that have boxes, as 2D panels with their boxes.

    A 2D image is shown whole with its ``[x1, y1, x2, y2]`` boxes; a volume by its axial slice through the centre
    of its first box, with the ``[x1, y1, x2, y2]`` of every box that crosses that slice (``[x1, y1, z1, x2, y2,
    z2]`` boxes, voxel corners, end exclusive). Entries without boxes are skipped (their images are never read).

    Args:
        datalist: detection datalist (``image``: one single-channel file; ``box``).
        section: its section.
        count: panels returned at most.

    Returns:
        ``[(image (X, Y), boxes), ...]``.
    """
    from monai.data import load_decathlon_datalist

    panels = []
    for e in load_decathlon_datalist(str(datalist), True, section):
        boxes = [[float(v) for v in b] for b in e.get("box") or []]
        if not boxes:
            continue
        image = _read_image(e["image"])
        if image.ndim == 3:
            z = int((boxes[0][2] + boxes[0][5]) // 2)
            image = image[..., z]
            boxes = [[b[0], b[1], b[3], b[4]] for b in boxes if b[2] <= z < b[5]]
        panels.append((image, boxes))
        if len(panels) == count:
            break
    return panels


def box_pairs_plot(
    real_datalist: str | os.PathLike,
    synthetic_datalist: str | os.PathLike,
    path: str | os.PathLike,
    count: int = 6,
    real_section: str = "training",
    synthetic_section: str = "training",
) -> str | None:
    """Images with boxes: ``count`` real ones (top row) and ``count`` synthetic ones (bottom row), each with its
    boxes drawn (:func:`box_panels`), so that one sees whether a generator puts lesions where its boxes say.

    Args:
        real_datalist: detection datalist of the real images.
        synthetic_datalist: detection datalist of the synthetic images.
        path: the PNG file.
        count: images shown per set.
        real_section: section of ``real_datalist``.
        synthetic_section: section of ``synthetic_datalist``.

    Returns:
        the path, or ``None`` when neither set has an image with a box.
    """
    from matplotlib.patches import Rectangle

    rows = [
        ("real", box_panels(real_datalist, real_section, count)),
        ("synthetic", box_panels(synthetic_datalist, synthetic_section, count)),
    ]
    if not any(panels for _, panels in rows):
        return None
    fig, axes = _panel_rows(count)
    for r, (name, panels) in enumerate(rows):
        for c, (image, boxes) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(image.T, cmap="gray")  # x across, y down, as the boxes' voxel corners
            for x1, y1, x2, y2 in boxes:
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec="red", lw=0.6))
            ax.set_title(name, fontsize=7)
    return _save(fig, path)


def write_plots(
    spec: GridSpec,
    rows: Sequence[Mapping[str, Any]],
    statistics: Mapping[str, Any],
    folder: str | os.PathLike,
    per_image_rows: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, str]:
    """All plots of a grid (see the module docstring) into ``folder``; returns the paths by name.

    Args:
        spec: the grid.
        rows: rows of ``results.csv``.
        statistics: the JSON of :func:`~common.experiments.report.statistics_report`.
        folder: where the PNG files go.
        per_image_rows: rows of ``per_image.csv`` (used with ``blocks: test_images``).
    """
    folder = Path(folder)
    agg = cell_aggregates(spec, rows, per_image_rows)
    sem = cell_aggregates(spec, rows, per_image_rows, "sem")
    datasets = [d.name for d in spec.datasets]
    methods = [m.name for m in spec.methods]
    written: dict[str, str] = {}
    for metric in metrics_of(spec, rows):
        ms = spec.metric(metric)
        means = np.array([[agg.get((d, m, metric), {}).get("mean", np.nan) for m in methods] for d in datasets])
        if np.all(np.isnan(means)):
            continue
        errs = np.array([[agg.get((d, m, metric), {}).get("err", np.nan) for m in methods] for d in datasets])
        slug = slugify(metric)
        cells = [agg.get((d, m, metric), {}) for d in datasets for m in methods]
        over = "test images" if any(c.get("over") == "images" for c in cells) else "seeds"
        written[f"bars_{slug}"] = bar_plot(
            means, errs, datasets, methods, ms.label, folder / f"bars_{slug}.png",
            f"{spec.name}: {ms.label} (± {spec.error} over {over})",
        )  # fmt: skip
        entry = statistics.get("metrics", {}).get(metric, {})
        comparisons = {"all": entry.get("across_datasets")} if entry.get("across_datasets") else {}
        comparisons.update({slugify(d): c for d, c in entry.get("per_dataset", {}).items()})
        for blocks, c in comparisons.items():
            if not c or "nemenyi" not in c:
                continue
            ne, fr = c["nemenyi"], c["friedman"]
            kind = c.get("block_kind", "data sets" if blocks == "all" else "seeds")
            title = (
                f"{ms.label}, {'data sets' if blocks == 'all' else f'{blocks} ({kind})'} as blocks: "
                f"Friedman p = {fr['pvalue']:.3g}, N = {fr['n_blocks']}"
            )
            written[f"cd_{slug}_{blocks}"] = cd_diagram(
                c["methods"], ne["average_ranks"], ne["critical_difference"], folder / f"cd_{slug}_{blocks}.png", title
            )
        if spec.ratio_plot:
            panels: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
            for d in datasets:
                for curve, x_of, base in ratio_curves(spec):
                    pts = []
                    for meth, x in [*([(base, 0.0)] if base else []), *x_of.items()]:
                        e = sem.get((d, meth, metric))
                        if e is not None:
                            pts.append((x, e["mean"], e["err"]))
                    panels.setdefault(d, {})[curve] = pts
            written[f"ratio_{slug}"] = ratio_plot(
                panels, spec.ratio_plot.get("x_label", "synthetic ratio"), f"{ms.label} (± s.e.)",
                folder / f"ratio_{slug}.png",
            )  # fmt: skip
    return written
