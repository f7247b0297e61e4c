"""Making a Visual Turing Test: a reader study of real vs synthetic images that runs in a browser (Han, paper 003,
sec. 3.2.3 and 4.2.5, Tables 1 and 3).

The thesis shows an expert physician "a random selection of 50 real/50 synthetic MR images ... in random order"
(sec. 3.2.3), and in sec. 4.2.5 50 real and 50 synthetic images of each of the tumour and non-tumour classes, to be
classified as real or synthetic and as tumour or non-tumour. :func:`make_study` prepares such a study from a real and
a synthetic datalist:

1. **sampling** (:func:`sample_entries`): ``n`` entries of each origin drawn without replacement; with a class key,
   stratified: ``n`` split evenly over the classes (:func:`class_quota`);
2. **rendering** (:func:`render_image`): every case is read with MONAI's ``LoadImage``, windowed channel by
   channel (:func:`window_image`: the case's own 0.5-99.5 percentiles by default, or a fixed ``(lo, hi)`` window),
   cut into panels (2D: the image; 3D: the three orthogonal central slices, or the slices through the centre of
   the case's first box with ``box_key``, optionally cropped around it), each panel padded to a square and
   resampled to ``display_size`` with one interpolation (bilinear with anti-aliasing) and tiled as one 8-bit
   grey-scale PNG: 2D channels side by side (one panel with ``channel``), 3D one row of views per channel; the app
   labels the panels;
3. **hint stripping**: the cases are shuffled (:func:`shuffle_order`), named ``case-001``... in the shown order,
   encoded identically (:func:`encode_png`: 8-bit grey, the same size, only the IHDR, IDAT and IEND chunks: no
   text, time or physical-size chunk) and embedded in the page as data URIs, so the app holds no file name, path or
   datalist key of any case;
4. **the app**: one self-contained ``app/index.html`` (the template files of ``visual_turing_app/`` inlined, the
   study as JSON in the page; a content security policy forbids every network request), which opens from the file
   system; and, outside ``app/``, the answer key ``answer_key.json`` that the app never loads.

Scoring the readers' exported answers is :mod:`common.evaluation.visual_turing_score`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common.utils import UserInputError, atomic_write_json, atomic_write_text
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImage, Resize
from PIL import Image

__all__ = [
    "ANSWERS_FORMAT",
    "DEFAULT_PERCENTILES",
    "KEY_FORMAT",
    "ORIGINS",
    "VIEW_NAMES",
    "VisualTuringError",
    "build_app",
    "class_quota",
    "encode_png",
    "make_study",
    "render_image",
    "sample_entries",
    "shortcut_keys",
    "shuffle_order",
    "window_image",
]

ORIGINS = ("real", "synthetic")
KEY_FORMAT = "gda-visual-turing-key"
ANSWERS_FORMAT = "gda-visual-turing-answers"
DEFAULT_PERCENTILES = (0.5, 99.5)
VIEW_NAMES = ("axial", "coronal", "sagittal")
"""The 3D panels, left to right: the central slices across the third, second and first array axis (for a NIfTI
volume in RAS order: axial, coronal, sagittal)."""
APP_FILES = ("index.html", "style.css", "app.js")
STORAGE_PREFIX = "gda-vtt:"
_GAP = 4  # pixels between panels
_GAP_VALUE = 96  # grey of the gaps, so that panel borders are visible on black backgrounds


class VisualTuringError(UserInputError, ValueError):
    """A problem with the inputs of a Visual Turing Test (datalists, settings, answer files)."""


def _as_paths(value: str | os.PathLike | Sequence[str | os.PathLike], what: str) -> list[str]:
    """One path, a comma-separated string of paths or a sequence of paths, as a list of strings."""
    if isinstance(value, (str, os.PathLike)):  # "a.json", "a.json,b.json" or "[a.json,b.json]" (fire's strings)
        text = str(value).strip()
        text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        paths = [p.strip().strip("'\"") for p in text.split(",") if p.strip()]
    else:
        paths = [str(p) for p in value]
    if not paths:
        raise VisualTuringError(f"no {what} datalist given.")
    return paths


def _load_entries(datalists: Sequence[str], section: str, what: str) -> list[dict[str, Any]]:
    """The entries of ``section`` of every datalist (absolute paths), each tagged with its datalist."""
    entries: list[dict[str, Any]] = []
    for path in datalists:
        if not os.path.isfile(path):
            raise VisualTuringError(f"{path}: the {what} datalist does not exist.")
        try:
            with open(path, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise VisualTuringError(f"{path}: the {what} datalist is not readable JSON ({e}).") from e
        if not isinstance(raw, dict) or not isinstance(raw.get(section), list):
            keys = sorted(raw) if isinstance(raw, dict) else []
            raise VisualTuringError(f"{path}: the {what} datalist has no list {section!r} (it has {keys}).")
        for entry in load_decathlon_datalist(path, is_segmentation=True, data_list_key=section):
            if "image" not in entry:
                raise VisualTuringError(f"{path}: an entry of {section!r} has no 'image'.")
            entries.append({**entry, "_datalist": os.path.abspath(path)})
    if not entries:
        raise VisualTuringError(f"{', '.join(datalists)}: section {section!r} of the {what} datalist is empty.")
    return entries


def class_quota(n: int, classes: Sequence[Any]) -> dict[Any, int]:
    """``n`` cases split as evenly as possible over ``classes``; the first classes get one more when it does not
    divide (paper 003, sec. 4.2.5: the same number of tumour and non-tumour images).

    Args:
        n: total number of cases.
        classes: the class values, in order.

    Returns:
        class value to number of cases.
    """
    base, extra = divmod(int(n), len(classes))
    return {c: base + (1 if i < extra else 0) for i, c in enumerate(classes)}


def sample_entries(
    entries: Sequence[Mapping[str, Any]],
    n: int,
    rng: np.random.Generator,
    class_key: str | None = None,
    classes: Sequence[Any] | None = None,
    what: str = "datalist",
) -> list[Mapping[str, Any]]:
    """``n`` entries drawn at random without replacement, stratified by class when ``class_key`` is given.

    Args:
        entries: datalist entries.
        n: number of entries to draw.
        rng: the random generator of the study.
        class_key: key of the class value; None draws from all entries.
        classes: the class values to draw (``n`` split by :func:`class_quota`); all values found when None.
        what: the datalist's description for error messages.

    Returns:
        the drawn entries, class by class, each class in datalist order.

    Raises:
        VisualTuringError: fewer entries (of a class) than asked, or entries without the class key.
    """
    if n < 1:
        raise VisualTuringError(f"the number of {what} cases must be positive, got {n}.")
    if class_key is None:
        if len(entries) < n:
            raise VisualTuringError(f"{what}: {n} cases asked but the datalist has {len(entries)} entries.")
        return [entries[i] for i in sorted(rng.choice(len(entries), n, replace=False))]
    missing = [i for i, e in enumerate(entries) if e.get(class_key) is None]
    if missing:
        raise VisualTuringError(
            f"{what}: {len(missing)} entries have no {class_key!r} (first: entry {missing[0]}); "
            "give the class key with --class_key, or leave out --classes."
        )
    classes = sorted({e[class_key] for e in entries}) if classes is None else list(classes)
    chosen: list[Mapping[str, Any]] = []
    for cls, quota in class_quota(n, classes).items():
        group = [e for e in entries if e[class_key] == cls]
        if len(group) < quota:
            raise VisualTuringError(f"{what}: {quota} cases of class {cls!r} asked but it has {len(group)}.")
        chosen += [group[i] for i in sorted(rng.choice(len(group), quota, replace=False))]
    return chosen


def shuffle_order(n: int, rng: np.random.Generator) -> np.ndarray:
    """The order in which ``n`` cases are shown: a uniform random permutation, independent of their origin.

    Args:
        n: number of cases.
        rng: the random generator of the study.

    Returns:
        ``(n,)`` permutation: position ``i`` shows case ``order[i]`` of the sampled list.
    """
    return rng.permutation(n)


def window_image(
    image: np.ndarray, window: Sequence[float] | None = None, percentiles: Sequence[float] = DEFAULT_PERCENTILES
) -> np.ndarray:
    """Map the intensities of every channel to ``[0, 1]`` with a window, clipping outside it.

    Args:
        image: ``(C, *spatial)`` intensities.
        window: fixed ``(lo, hi)`` intensities for every channel (e.g. ``(-1000, 400)`` HU for lung CT); None
            takes each channel's own ``percentiles``.
        percentiles: ``(low, high)`` percentiles of the channel's values, used when ``window`` is None.

    Returns:
        ``(C, *spatial)`` float32 in ``[0, 1]``; a constant channel becomes 0.
    """
    out = np.empty(image.shape, dtype=np.float32)
    for c, channel in enumerate(np.asarray(image, dtype=np.float64)):
        if window is None:
            lo, hi = np.percentile(channel, [float(percentiles[0]), float(percentiles[1])])
        else:
            lo, hi = float(window[0]), float(window[1])
        out[c] = 0.0 if hi <= lo else np.clip((channel - lo) / (hi - lo), 0.0, 1.0)
    return out


def _crop(panel: np.ndarray, center: Sequence[int], size: int | None) -> np.ndarray:
    """The ``size x size`` square of ``panel`` centred on ``center``, zero (black) beyond its borders; the whole
    panel when ``size`` is None."""
    if size is None:
        return panel
    out = np.zeros((size, size), dtype=np.float32)
    top, left = int(center[0]) - size // 2, int(center[1]) - size // 2
    src_r = slice(max(top, 0), min(top + size, panel.shape[0]))
    src_c = slice(max(left, 0), min(left + size, panel.shape[1]))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        out[src_r.start - top : src_r.stop - top, src_c.start - left : src_c.stop - left] = panel[src_r, src_c]
    return out


def _panels(image: np.ndarray, center: Sequence[int] | None = None, crop: int | None = None) -> list[np.ndarray]:
    """The 2D panels of one channel ``(*spatial)``: the image in 2D; in 3D the three orthogonal slices through
    ``center`` (default: the central slices), in the order of :data:`VIEW_NAMES`; each cropped by :func:`_crop`."""
    c = [s // 2 for s in image.shape] if center is None else [int(v) for v in center]
    c = [min(max(v, 0), s - 1) for v, s in zip(c, image.shape)]
    if image.ndim == 2:
        return [_crop(image, c, crop)]
    x, y, z = c
    return [
        _crop(image[:, :, z], (x, y), crop),
        _crop(image[:, y, :], (x, z), crop),
        _crop(image[x, :, :], (y, z), crop),
    ]


def _square_resize(panel: np.ndarray, size: int) -> np.ndarray:
    """Pad a panel to a square with zeros (centred), then resample it to ``size x size``: bilinear with
    anti-aliasing, whatever the source size, so that real and synthetic images are resampled alike."""
    h, w = panel.shape
    side = max(h, w)
    square = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = panel
    if side != size:
        resize = Resize((size, size), mode="bilinear", align_corners=False, anti_aliasing=side > size)
        square = np.asarray(resize(torch.from_numpy(square)[None]))[0]
    return np.clip(square, 0.0, 1.0)


def render_image(
    image: np.ndarray,
    display_size: int = 256,
    window: Sequence[float] | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    center: Sequence[int] | None = None,
    crop: int | None = None,
) -> np.ndarray:
    """Render a case as one 8-bit grey-scale picture: 2D, the channels side by side; 3D, one row of the three
    orthogonal slices (:data:`VIEW_NAMES`) per channel.

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)`` intensities.
        display_size: side in pixels of every panel.
        window: fixed ``(lo, hi)`` window, or None for the per-channel ``percentiles`` of the case (computed on the
            whole case, before any crop).
        percentiles: see :func:`window_image`.
        center: voxel the panels are centred on (e.g. a lesion's box centre); None: the image centre.
        crop: side in voxels of the square cut around ``center`` in every panel; None keeps the whole slice.

    Returns:
        ``(R * S + (R - 1) * gap, K * S + (K - 1) * gap)`` uint8, ``S = display_size``; 2D: ``R = 1``, ``K = C``;
        3D: ``R = C``, ``K = 3``; the gaps are mid-grey.
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"expected a (C, H, W) or (C, H, W, D) image, got shape {tuple(image.shape)}.")
    windowed = window_image(image, window, percentiles)
    rows = [[_square_resize(p, display_size) for p in _panels(channel, center, crop)] for channel in windowed]
    if image.ndim == 3:  # 2D: the channels in one row
        rows = [[row[0] for row in rows]]
    n_rows, n_cols = len(rows), len(rows[0])
    height = n_rows * display_size + (n_rows - 1) * _GAP
    width = n_cols * display_size + (n_cols - 1) * _GAP
    canvas = np.full((height, width), _GAP_VALUE, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, panel in enumerate(row):
            top, left = r * (display_size + _GAP), c * (display_size + _GAP)
            canvas[top : top + display_size, left : left + display_size] = np.round(panel * 255.0).astype(np.uint8)
    return canvas


def _box_center(entry: Mapping[str, Any], box_key: str | None, spatial_dims: int, what: str) -> list[int] | None:
    """The centre voxel of the entry's first box (``[x1, y1, (z1,) x2, y2, (z2)]``, MONAI's ``xyxy``/``xyzxyz``),
    or None when the entry has no box (e.g. a negative case: the panels are then centred on the image)."""
    if box_key is None or not entry.get(box_key):
        return None
    box = entry[box_key][0]
    if not isinstance(box, (list, tuple)) or len(box) != 2 * spatial_dims:
        raise VisualTuringError(f"{what}: box {box!r} of {entry['image']} is not [x1, y1, (z1,) x2, y2, (z2)].")
    return [int((float(box[i]) + float(box[i + spatial_dims])) // 2) for i in range(spatial_dims)]


def encode_png(picture: np.ndarray) -> bytes:
    """8-bit grey-scale PNG bytes with no metadata: only the IHDR, IDAT and IEND chunks (no text, time, gamma or
    physical-size chunk), the same zlib level for every case.

    Args:
        picture: ``(H, W)`` uint8.

    Returns:
        the PNG file's bytes.
    """
    if picture.dtype != np.uint8 or picture.ndim != 2:
        raise ValueError(f"expected a 2D uint8 picture, got {picture.dtype} {tuple(picture.shape)}.")
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def _read_case(image: Any, channel: int | None) -> np.ndarray:
    """A case as ``(C, *spatial)`` float array: MONAI ``LoadImage`` (a list of files is stacked as channels),
    trailing singleton axes of 2D slices dropped, channel ``channel`` kept when the image has more than one."""
    array = np.asarray(LoadImage(image_only=True, ensure_channel_first=True)(image), dtype=np.float32)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if channel is not None and array.shape[0] > 1:
        if not -array.shape[0] <= channel < array.shape[0]:
            raise VisualTuringError(f"{image}: channel {channel} asked but the image has {array.shape[0]} channels.")
        array = array[channel : channel + 1] if channel >= 0 else array[[channel]]
    return array


def shortcut_keys(names: Sequence[str], reserved: Sequence[str] = ("R", "S")) -> list[str]:
    """One distinct keyboard letter per class name: the first free letter of the name, else the first free letter
    of the alphabet (``tumour`` -> T, ``non-tumour`` -> N); ``reserved`` are taken by real/synthetic."""
    taken = {k.upper() for k in reserved}
    keys = []
    for name in names:
        letters = [ch.upper() for ch in name if ch.upper() in string.ascii_uppercase]
        key = next((ch for ch in letters + list(string.ascii_uppercase) if ch not in taken), "")
        taken.add(key)
        keys.append(key)
    return keys


def _template(name: str) -> str:
    return (resources.files("common.evaluation") / "visual_turing_app" / name).read_text(encoding="utf-8")


def build_app(study: Mapping[str, Any]) -> str:
    """The self-contained page of a study: the template files with the style, the script and the study inlined.

    Args:
        study: the JSON-serialisable study the app shows (``study_id``, ``title``, ``questions``, ``layout``,
            ``cases`` with ``id`` and ``image`` data URIs...).

    Returns:
        the HTML text.
    """
    data = json.dumps(study, separators=(",", ":")).replace("</", "<\\/")
    title = str(study.get("title", "Visual Turing Test"))
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    html = _template("index.html")
    for marker, value in (
        ("/*__STYLE__*/", _template("style.css")),
        ("/*__APP__*/", _template("app.js")),
        ("__TITLE__", title),
        ("__STUDY_JSON__", data),
    ):
        if marker not in html:
            raise RuntimeError(f"the app template has no {marker} marker.")
        html = html.replace(marker, value, 1)
    return html


def _class_names(classes: Sequence[Any], class_names: str | Sequence[str] | None) -> list[str]:
    if class_names is None:
        if list(classes) == [0, 1]:
            return ["non-tumour", "tumour"]
        return [f"class {c}" for c in classes]
    names = [n.strip() for n in class_names.split(",")] if isinstance(class_names, str) else list(class_names)
    if len(names) != len(classes):
        raise VisualTuringError(f"{len(names)} class names {names} for the {len(classes)} classes {list(classes)}.")
    return [str(n) for n in names]


def _parse_window(window: str | Sequence[float] | None) -> tuple[float, float] | None:
    if window is None:
        return None
    values = window.split(",") if isinstance(window, str) else list(window)
    try:
        lo, hi = (float(v) for v in values)
    except (TypeError, ValueError) as e:
        raise VisualTuringError(f"--window must be two numbers 'lo,hi', got {window!r}.") from e
    if not hi > lo:
        raise VisualTuringError(f"--window {window!r}: the upper bound must exceed the lower one.")
    return lo, hi


def make_study(
    real: str | Sequence[str],
    synthetic: str | Sequence[str],
    out_dir: str | os.PathLike,
    n_real: int = 50,
    n_synthetic: int = 50,
    classes: bool = False,
    class_key: str = "class",
    class_names: str | Sequence[str] | None = None,
    only_class: int | None = None,
    channel: int | None = None,
    channel_names: str | Sequence[str] | None = None,
    window: str | Sequence[float] | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    display_size: int = 256,
    box_key: str | None = None,
    crop: int | None = None,
    seed: int = 0,
    confidence: bool = True,
    real_section: str = "training",
    synthetic_section: str = "training",
    title: str = "Visual Turing Test",
) -> dict[str, Any]:
    """Sample, render and shuffle the cases of a Visual Turing Test and write its app and its answer key.

    Args:
        real: the real datalist(s) (a path, comma-separated paths or a list).
        synthetic: the synthetic datalist(s), e.g. the ``datalist.json`` a generator bundle's inference writes.
        out_dir: output folder: ``app/index.html`` for the readers, ``answer_key.json`` for the organiser.
        n_real: number of real cases (thesis: 50; with ``classes``, split evenly over the classes).
        n_synthetic: number of synthetic cases.
        classes: also ask for the class (tumour / non-tumour, sec. 4.2.5) and stratify the sampling by it.
        class_key: key of the integer class in both datalists.
        class_names: names of the classes in the order of their values (default ``non-tumour,tumour`` for 0/1).
        only_class: keep only the entries of this class (``class_key``) in both datalists, e.g. 1 when the
            generator makes lesion images only, so that real images without lesions do not give the origin away.
        channel: the channel to show of multi-channel images (one-channel images are shown as they are, e.g. a
            one-sequence synthetic set next to the four-sequence real set); None shows every channel in a row.
        channel_names: labels of the shown channels, e.g. ``t1,t1c,t2,flair``.
        window: fixed intensity window ``lo,hi`` for every case; None: each case's own ``percentiles``.
        percentiles: percentiles of the per-case window (default 0.5 and 99.5).
        display_size: side of every panel in pixels (both origins resampled to it alike).
        box_key: key of the entries' boxes (detection datalists, e.g. ``box``): the panels are centred on the first
            box of each case (its lesion or nodule; in 3D the three slices pass through the box centre); cases
            without a box are centred on the image.
        crop: side in voxels of the square shown around the centre (e.g. 64 around a nodule); None: whole slices.
        seed: seed of the sampling and of the order.
        confidence: offer an optional confidence rating (1 = guess ... 5 = certain).
        real_section: datalist section of the real cases.
        synthetic_section: datalist section of the synthetic cases.
        title: title shown to the readers.

    Returns:
        ``{"study_id", "app", "key", "n_cases", "warnings"}``: the study's id and the two files written.

    Raises:
        VisualTuringError: missing or unreadable datalists, too few (class) entries, images whose channel counts or
            dimensions differ between the cases, bad settings.
    """
    if display_size < 8:
        raise VisualTuringError(f"display_size must be at least 8 pixels, got {display_size}.")
    if crop is not None and int(crop) < 2:
        raise VisualTuringError(f"crop must be at least 2 voxels, got {crop}.")
    window_values = _parse_window(window)
    real_paths, synthetic_paths = _as_paths(real, "real"), _as_paths(synthetic, "synthetic")
    rng = np.random.default_rng(seed)
    real_entries = _load_entries(real_paths, real_section, "real")
    synthetic_entries = _load_entries(synthetic_paths, synthetic_section, "synthetic")
    if only_class is not None:
        real_entries = [e for e in real_entries if e.get(class_key) == only_class]
        synthetic_entries = [e for e in synthetic_entries if e.get(class_key) == only_class]
        for paths, kept in ((real_paths, real_entries), (synthetic_paths, synthetic_entries)):
            if not kept:
                raise VisualTuringError(f"{paths}: no entry has {class_key!r} = {only_class!r} (--only_class).")
    key = class_key if classes else None
    class_values: list[Any] | None = None
    if key is not None:
        found = [e.get(key) for e in real_entries + synthetic_entries]
        if any(v is None for v in found):
            missing = [
                p
                for p, es in ((real_paths, real_entries), (synthetic_paths, synthetic_entries))
                if any(e.get(key) is None for e in es)
            ]
            raise VisualTuringError(f"{missing}: entries without {key!r}; give --class_key or leave out --classes.")
        class_values = sorted(set(found))
        if len(class_values) < 2:
            raise VisualTuringError(
                f"{real_paths + synthetic_paths}: --classes asks the readers for the class, but every entry has "
                f"{key!r} = {class_values[0]!r}; use datalists (or a --real_section) with both classes, or leave "
                "out --classes."
            )
    chosen = [("real", e) for e in sample_entries(real_entries, n_real, rng, key, class_values, f"real {real_paths}")]
    chosen += [
        ("synthetic", e)
        for e in sample_entries(synthetic_entries, n_synthetic, rng, key, class_values, f"synthetic {synthetic_paths}")
    ]

    pictures, shapes = [], {"real": set(), "synthetic": set()}
    layout: set[tuple[int, int]] = set()
    for origin, entry in chosen:
        try:
            array = _read_case(entry["image"], channel)
        except VisualTuringError:
            raise
        except Exception as e:  # unreadable image files: name the file
            raise VisualTuringError(f"{entry['_datalist']}: cannot read image {entry['image']}: {e}") from e
        if array.ndim not in (3, 4):
            raise VisualTuringError(f"{entry['image']}: expected a 2D or 3D image, got shape {array.shape[1:]}.")
        shapes[origin].add(tuple(array.shape[1:]))
        layout.add((array.shape[0], array.ndim - 1))
        center = _box_center(entry, box_key, array.ndim - 1, entry["_datalist"])
        pictures.append(render_image(array, display_size, window_values, percentiles, center, crop))
    if len(layout) != 1:
        raise VisualTuringError(
            f"the cases differ in (channels, spatial dims): {sorted(layout)}; pick one channel with --channel."
        )
    n_channels, spatial_dims = layout.pop()
    if channel_names is not None:
        labels = _as_paths(channel_names, "channel names")
    elif channel is not None and n_channels == 1:
        labels = [f"channel {channel}"]
    else:
        labels = [f"channel {c}" for c in range(n_channels)]
    if len(labels) != n_channels:
        raise VisualTuringError(f"{len(labels)} channel names {labels} for {n_channels} shown channels.")
    if spatial_dims == 3:
        panel_layout = {
            "rows": labels if (n_channels > 1 or channel_names is not None) else [],
            "cols": list(VIEW_NAMES),
        }
    else:
        panel_layout = {"rows": [], "cols": labels}
    warnings = []
    if shapes["real"] != shapes["synthetic"]:
        warnings.append(
            f"real images have native sizes {sorted(shapes['real'])} and synthetic {sorted(shapes['synthetic'])}: "
            "both are resampled to the display size with the same interpolation, but by different factors, which "
            "can change their sharpness."
        )

    order = shuffle_order(len(chosen), rng)
    width = max(3, len(str(len(chosen))))
    pngs = [encode_png(pictures[i]) for i in order]
    settings = {
        "n_real": int(n_real),
        "n_synthetic": int(n_synthetic),
        "seed": int(seed),
        "classes": bool(classes),
        "class_key": key,
        "only_class": only_class,
        "channel": channel,
        "window": list(window_values) if window_values is not None else None,
        "percentiles": None if window_values is not None else [float(p) for p in percentiles],
        "display_size": int(display_size),
        "box_key": box_key,
        "crop": crop,
        "interpolation": "bilinear, anti-aliased when shrinking; panels padded to squares",
        "real_datalists": [os.path.abspath(p) for p in real_paths],
        "synthetic_datalists": [os.path.abspath(p) for p in synthetic_paths],
        "real_section": real_section,
        "synthetic_section": synthetic_section,
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for png in pngs:
        digest.update(hashlib.sha256(png).digest())
    study_id = "vtt-" + digest.hexdigest()[:12]
    case_ids = [f"case-{i + 1:0{width}d}" for i in range(len(chosen))]

    names = _class_names(class_values, class_names) if class_values is not None else None
    class_questions = (
        [{"value": v, "name": n, "key": k} for v, n, k in zip(class_values, names, shortcut_keys(names))]
        if class_values is not None and names is not None
        else None
    )
    if window_values is not None:
        window_text = f"every image is shown with the intensity window {window_values[0]:g} to {window_values[1]:g}"
    else:
        window_text = (
            f"every image is shown with its own intensity window, from its {percentiles[0]:g}th to its "
            f"{percentiles[1]:g}th percentile"
        )
    study = {
        "format": "gda-visual-turing-study",
        "version": 1,
        "study_id": study_id,
        "storage_key": STORAGE_PREFIX + study_id,
        "title": title,
        "n_cases": len(chosen),
        "questions": {"origin": list(ORIGINS), "classes": class_questions, "confidence": bool(confidence)},
        "layout": panel_layout,
        "window": window_text,
        "answers_format": ANSWERS_FORMAT,
        "cases": [
            {"id": cid, "image": "data:image/png;base64," + base64.b64encode(png).decode("ascii")}
            for cid, png in zip(case_ids, pngs)
        ],
    }
    answer_key = {
        "format": KEY_FORMAT,
        "version": 1,
        "study_id": study_id,
        "settings": settings,
        "classes": [{"value": q["value"], "name": q["name"]} for q in class_questions] if class_questions else None,
        "layout": study["layout"],
        "native_sizes": {o: [list(s) for s in sorted(shapes[o])] for o in ORIGINS},
        "warnings": warnings,
        "cases": [
            {
                "case": cid,
                "origin": chosen[i][0],
                "class": chosen[i][1].get(key) if key is not None else None,
                "image": chosen[i][1]["image"],
                "datalist": chosen[i][1]["_datalist"],
                "png_sha256": hashlib.sha256(png).hexdigest(),
            }
            for cid, i, png in zip(case_ids, order.tolist(), pngs)
        ],
    }
    out = Path(out_dir)
    (out / "app").mkdir(parents=True, exist_ok=True)
    app_file, key_file = out / "app" / "index.html", out / "answer_key.json"
    atomic_write_text(build_app(study), app_file)
    atomic_write_json(answer_key, key_file)
    return {
        "study_id": study_id,
        "app": str(app_file),
        "key": str(key_file),
        "n_cases": len(chosen),
        "warnings": warnings,
    }
