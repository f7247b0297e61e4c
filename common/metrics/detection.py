"""Detection metrics of Han's thesis: FROC and CPM (sec. 6.2.2 / Table 5) and per-image sensitivity and false
positives at an IoU threshold (sec. 5.2.3 / Table 4), bootstrap confidence intervals of the CPM (LUNA16), the
validation score of model selection, and a COCO mAP/mAR wrapper on MONAI's ``COCOMetric``.

Matching rules (one image at a time, detections in decreasing score order):

- a detection is a **true positive** if its IoU with a not yet detected ground-truth box is >= ``iou_threshold``
  (the unmatched ground truth with the highest IoU is taken);
- a detection whose only such overlaps are with already detected ground truths is a **duplicate**: as in the
  LUNA16 CPM evaluation, it is neither a hit nor a false positive (``duplicates="ignore"``), or it counts as a
  false positive (``duplicates="fp"``);
- any other detection is a **false positive**.

FROC: sweeping the score threshold ``t`` over the detection scores, sensitivity(t) = detected nodules / all
nodules and FPs per scan(t) = false positives with score >= t / number of scans (detections of equal score enter
together: one operating point per distinct score, as the ROC curve of LUNA16's evaluation script). The
sensitivity at a FP rate ``r`` is read from these operating points in one of two ways:

- ``mode="luna16"`` (the default): linear interpolation of the FROC curve over the FP axis, as LUNA16's
  ``noduleCADEvaluationLUNA16.py`` does (``numpy.interp`` on the operating points; Setio et al. 2017). At a FP
  rate shared by several operating points the highest sensitivity is taken; beyond the last operating point the
  last sensitivity. As sensitivity only rises at true positives and the FP count only at false positives, this
  differs from the step rule only where a true and a false positive share a score (a tie enters both at once, and
  the curve is a straight line between the operating points before and after it).
- ``mode="step"``: the highest sensitivity of an operating point with at most ``r`` FPs per scan (0 if none),
  never an interpolation: the sensitivity one can actually achieve at that rate.

The default is the LUNA16 rule, so that CPMs are comparable with LUNA16 results and with the thesis (Table 5
reports the LUNA16 CPM, ref. [56]). CPM is the mean sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan.

Confidence intervals (:func:`cpm_bootstrap`): as LUNA16's script, scans are drawn with replacement (as many as
there are, ``n_bootstrap`` times, 1000 by default), the FROC is recomputed on each sample (a scan drawn twice counts
its nodules and false positives twice), and the 2.5 and 97.5 percentiles of the sensitivity at each FP rate (and of
the CPM) over the samples bound the 95 % interval.

CPM by attribute (Table 5: size, attenuation): for the nodules of one attribute value, hits on nodules of other
values are ignored (they are neither hits nor false positives), false positives stay, the number of scans is
unchanged.

Model selection (thesis sec. 5.2.3: best sensitivity on validation at detection threshold 0.1 % and IoU 0.5;
sec. 6.2.2: best sensitivity at detection threshold 0.5 and IoU 0.25): :func:`detection_score` gives the
validation score (``"sensitivity"`` at a detection threshold, or ``"cpm"``), :class:`DetectionScore` the ignite
metric that accumulates a validation run's detections for it (the key metric of a MONAI ``SupervisedEvaluator``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from ignite.metrics import Metric

__all__ = [
    "CPM_FP_RATES",
    "box_iou_np",
    "coco_metrics",
    "CPM_MODES",
    "DetectionScore",
    "attribute_matches",
    "cpm",
    "cpm_bootstrap",
    "cpm_by_attribute",
    "detection_score",
    "VALIDATION_METRICS",
    "froc_curve",
    "froc_matches",
    "match_image",
    "sensitivity_at_fp_rates",
    "sensitivity_fp_per_image",
]

CPM_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""The seven false-positive rates per scan of the CPM (Han's thesis sec. 6.2.2, LUNA16)."""

CPM_MODES: tuple[str, ...] = ("luna16", "step")
"""How the sensitivity at a FP rate is read from the FROC operating points (:func:`sensitivity_at_fp_rates`)."""

TP, FP, DUPLICATE = 1, 0, -1


def box_iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of corner boxes ``(N, 2d)`` x ``(M, 2d)`` -> ``(N, M)`` (end-exclusive coordinates, volume = prod(sides)).

    The box convention is that of MONAI's :func:`~monai.data.box_utils.box_iou` (``StandardMode`` corners,
    ``TO_REMOVE = 0``), but MONAI computes in float32 and adds ``eps`` to the union, which moves IoUs that sit exactly
    on a matching threshold below it: two boxes sharing 900 of their 1000 voxels get 0.89999998 instead of 0.9, so at
    ``iou_threshold=0.9`` a hit becomes a false positive and the CPM of the hand-made case in
    ``tests/metrics/test_detection_metrics.py`` drops from 0.536 to 0.464. The metrics therefore compute IoUs here in
    float64 without ``eps`` (``tests/metrics/test_detection_metrics.py::test_box_iou_np_is_monai_box_iou_in_float64``).

    Args:
        a: ``(N, 2d)`` boxes ``[lo_1, ..., lo_d, hi_1, ..., hi_d]``.
        b: ``(M, 2d)`` boxes.

    Returns:
        ``(N, M)`` float64 IoUs; 0 where the union is empty, zeros ``(N, M)`` when either set is empty.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return np.zeros((len(a), len(b)))
    d = a.shape[1] // 2
    lo = np.maximum(a[:, None, :d], b[None, :, :d])
    hi = np.minimum(a[:, None, d:], b[None, :, d:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    va = np.clip(a[:, d:] - a[:, :d], 0, None).prod(-1)
    vb = np.clip(b[:, d:] - b[:, :d], 0, None).prod(-1)
    union = va[:, None] + vb[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_image(
    pred_boxes: Any, pred_scores: Any, gt_boxes: Any, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of one image's detections to its ground truths (see the module docstring).

    Args:
        pred_boxes: (D, 2d) detections.
        pred_scores: (D,) scores.
        gt_boxes: (G, 2d) ground truths.
        iou_threshold: minimum IoU of a hit.

    Returns:
        ``kind`` (D,) in the score order given back: 1 hit, 0 false positive, -1 duplicate; ``scores`` (D,) sorted
        in decreasing order; ``gt_index`` (D,) the ground truth a hit or duplicate refers to (-1 for a false
        positive).
    """
    gt = np.asarray(gt_boxes, dtype=np.float64)
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64)
    width = gt.shape[-1] if gt.size else (pred_boxes.shape[-1] if pred_boxes.size else 0)
    pred_boxes = pred_boxes.reshape(-1, width) if width else pred_boxes.reshape(0, 0)
    scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    scores = scores[order]
    kind = np.zeros(len(scores), dtype=np.int64)
    gt_index = np.full(len(scores), -1, dtype=np.int64)
    if len(scores) == 0 or gt.size == 0:
        return kind, scores, gt_index
    iou = box_iou_np(pred_boxes[order], gt.reshape(-1, width))
    detected = np.zeros(len(gt), dtype=bool)
    for i in range(len(scores)):
        hits = iou[i] >= iou_threshold
        if not hits.any():
            continue
        free = hits & ~detected
        if free.any():
            j = int(np.argmax(np.where(free, iou[i], -1.0)))
            detected[j] = True
            kind[i], gt_index[i] = TP, j
        else:
            kind[i], gt_index[i] = DUPLICATE, int(np.argmax(np.where(hits, iou[i], -1.0)))
    return kind, scores, gt_index


def _match_images(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float,
    duplicates: str,
    gt_mask: Sequence[Any] | None,
    with_gt: bool = False,
) -> list[tuple]:
    """Per image: ``(scores (D,), hit (D,), false positive (D,), number of counted ground truths)``, and with
    ``with_gt`` the ground truth each detection refers to ``(D,)`` (-1 for a false positive) last."""
    if duplicates not in ("ignore", "fp"):
        raise ValueError(f"duplicates must be 'ignore' or 'fp', got {duplicates!r}.")
    out = []
    for i, img in enumerate(images):
        gt = np.asarray(img["gt_boxes"], dtype=np.float64)
        g = len(gt) if gt.size else 0
        mask = np.ones(g, dtype=bool) if gt_mask is None else np.asarray(gt_mask[i], dtype=bool).reshape(-1)
        kind, scores, gt_index = match_image(img["pred_boxes"], img["pred_scores"], gt, iou_threshold)
        counted = np.where(gt_index >= 0, mask[np.clip(gt_index, 0, max(g - 1, 0))] if g else False, True)
        tp = (kind == TP) & counted
        fp = kind == FP
        if duplicates == "fp":
            fp = fp | ((kind == DUPLICATE) & counted)
        out.append((scores, tp, fp, int(mask.sum()), gt_index) if with_gt else (scores, tp, fp, int(mask.sum())))
    return out


def froc_matches(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.25,
    duplicates: str = "ignore",
    attributes: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Each image's matched detections, the per-case values from which a FROC (and the CPM) is computed again on any
    resample of the images (:func:`common.metrics.bootstrap.bootstrap_cpm_ci`).

    Args:
        images: as :func:`froc_curve`; an ``"image"`` and a ``"patient"`` entry are copied when present, and the
            per-box values of each of ``attributes``.
        iou_threshold / duplicates: as :func:`froc_curve`.
        attributes: per-box attributes kept (e.g. ``["size"]``) for :func:`attribute_matches`.

    Returns:
        per image ``{"scores": [...], "tp": [...], "fp": [...], "gt": [...], "num_gt": G}`` (detections in
        decreasing score order; a duplicate is neither ``tp`` nor ``fp`` unless ``duplicates="fp"``; ``gt``: the
        ground truth a hit or duplicate refers to, -1 for a false positive), plus ``image``/``patient`` and
        ``attributes: {name: [value per ground truth]}``.
    """
    out = []
    for img, (scores, tp, fp, num_gt, gt_index) in zip(
        images, _match_images(images, iou_threshold, duplicates, None, with_gt=True)
    ):
        entry: dict[str, Any] = {k: img[k] for k in ("image", "patient") if img.get(k) is not None}
        entry.update(scores=scores.tolist(), tp=tp.astype(int).tolist(), fp=fp.astype(int).tolist())
        entry.update(gt=gt_index.tolist(), num_gt=num_gt)
        if attributes:
            entry["attributes"] = {a: list(img.get(a) or []) for a in attributes}
        out.append(entry)
    return out


def attribute_matches(matches: Mapping[str, Any], attribute: str, value: Any) -> dict[str, Any]:
    """One image's :func:`froc_matches` entry restricted to the ground truths whose ``attribute`` is ``value``, as
    :func:`cpm_by_attribute` counts them: hits on other ground truths are neither hits nor false positives, false
    positives stay, the image stays.

    Returns:
        the entry with ``tp``, ``fp`` and ``num_gt`` of that value.
    """
    values = matches.get("attributes", {}).get(attribute)
    if values is None:
        raise KeyError(f"the matches of {matches.get('image', 'an image')} hold no attribute {attribute!r}.")
    gt = np.asarray(matches["gt"], dtype=np.int64)
    keep = np.asarray([v == value for v in values] + [False], dtype=bool)  # index -1: no ground truth
    counted = np.where(gt >= 0, keep[gt], True)
    tp = np.asarray(matches["tp"], dtype=bool) & counted
    fp = np.asarray(matches["fp"], dtype=bool) & counted
    return {**matches, "tp": tp.astype(int).tolist(), "fp": fp.astype(int).tolist(), "num_gt": int(keep[:-1].sum())}


def _froc_from_matches(matches: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> dict[str, Any]:
    """The FROC operating points of matched images (see :func:`froc_curve`)."""
    num_gt = sum(m[3] for m in matches)
    num_images = len(matches)
    scores = np.concatenate([m[0] for m in matches]) if matches else np.zeros(0)
    tp = np.concatenate([m[1] for m in matches]) if matches else np.zeros(0, dtype=bool)
    fp = np.concatenate([m[2] for m in matches]) if matches else np.zeros(0, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp, fp = scores[order], tp[order], fp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    # one operating point per distinct score: the last detection of a run of equal scores
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    thresholds = np.r_[np.inf, scores[last]]
    sens = np.r_[0.0, ctp[last] / num_gt] if num_gt else np.zeros(len(thresholds))
    fps = np.r_[0.0, cfp[last] / max(num_images, 1)]
    return {"fps": fps, "sensitivity": sens, "thresholds": thresholds, "num_images": num_images, "num_gt": num_gt}


def froc_curve(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.25,
    duplicates: str = "ignore",
    gt_mask: Sequence[Any] | None = None,
) -> dict[str, np.ndarray | int]:
    """FROC operating points over a set of images (scans or slices).

    Args:
        images: per image ``{"pred_boxes": (D, 2d), "pred_scores": (D,), "gt_boxes": (G, 2d)}``.
        iou_threshold: minimum IoU of a hit.
        duplicates: ``"ignore"`` (LUNA16) or ``"fp"``.
        gt_mask: per image, a boolean (G,) selecting the ground truths that count (hits on the others are
            ignored); None: all count.

    Returns:
        ``{"fps": FPs per image at each threshold, "sensitivity": ..., "thresholds": scores, "num_images",
        "num_gt"}``; the arrays (P,) start at the operating point "no detection" (threshold +inf), one point per
        distinct score.
    """
    return _froc_from_matches(_match_images(images, iou_threshold, duplicates, gt_mask))


def sensitivity_at_fp_rates(
    fps: np.ndarray, sensitivity: np.ndarray, fp_rates: Sequence[float] = CPM_FP_RATES, mode: str = "luna16"
) -> np.ndarray:
    """Sensitivity of a FROC curve at each FP rate (see the module docstring for the two modes).

    Args:
        fps: (P,) FPs per image of the operating points, non-decreasing (:func:`froc_curve`).
        sensitivity: (P,) their sensitivities, non-decreasing.
        fp_rates: (R,) the FP rates.
        mode: ``"luna16"`` (linear interpolation over the FP axis, LUNA16's ``numpy.interp``) or ``"step"`` (the
            highest sensitivity with at most that many FPs).

    Returns:
        (R,) sensitivities.
    """
    if mode not in CPM_MODES:
        raise ValueError(f"mode must be one of {CPM_MODES}, got {mode!r}.")
    fps, sensitivity = np.asarray(fps, dtype=np.float64), np.asarray(sensitivity, dtype=np.float64)
    rates = np.asarray(fp_rates, dtype=np.float64)
    if mode == "step":
        return np.array([float(sensitivity[fps <= r].max()) if (fps <= r).any() else 0.0 for r in rates])
    if fps.size == 0:
        return np.zeros(len(rates))
    # numpy.interp on points with repeated x values: at such an x the last (highest) sensitivity, between two x
    # values a line from the highest sensitivity at the left one to the lowest at the right one; written out here
    # because numpy.interp documents no result for x values that are not strictly increasing
    xs, first = np.unique(fps, return_index=True)
    last = np.r_[first[1:] - 1, len(fps) - 1]
    lo, hi = sensitivity[first], sensitivity[last]
    k = np.searchsorted(xs, rates, side="right") - 1
    out = np.empty(len(rates))
    for i, (r, j) in enumerate(zip(rates, k)):
        if j < 0:
            out[i] = lo[0]
        elif j == len(xs) - 1:
            out[i] = hi[j]
        else:
            out[i] = hi[j] + (lo[j + 1] - hi[j]) * (r - xs[j]) / (xs[j + 1] - xs[j])
    return out


def cpm(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.25,
    fp_rates: Sequence[float] = CPM_FP_RATES,
    duplicates: str = "ignore",
    gt_mask: Sequence[Any] | None = None,
    mode: str = "luna16",
) -> dict[str, Any]:
    """Competition Performance Metric: mean sensitivity at ``fp_rates`` FPs per scan.

    Args:
        images: as :func:`froc_curve`.
        iou_threshold / duplicates / gt_mask: as :func:`froc_curve`.
        fp_rates: the FP rates (the seven of LUNA16 by default).
        mode: ``"luna16"`` (interpolated, the default) or ``"step"`` (:func:`sensitivity_at_fp_rates`).

    Returns:
        ``{"cpm": float, "sensitivities": {rate: sensitivity}, "froc": froc_curve output}``.
    """
    froc = froc_curve(images, iou_threshold, duplicates, gt_mask)
    sens = sensitivity_at_fp_rates(froc["fps"], froc["sensitivity"], fp_rates, mode)  # type: ignore[arg-type]
    return {"cpm": float(sens.mean()), "sensitivities": dict(zip(map(float, fp_rates), map(float, sens))), "froc": froc}


def cpm_bootstrap(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.25,
    fp_rates: Sequence[float] = CPM_FP_RATES,
    duplicates: str = "ignore",
    mode: str = "luna16",
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Bootstrap confidence intervals of the CPM and of the sensitivity at each FP rate, over scans (LUNA16).

    Each of the ``n_bootstrap`` samples draws ``len(images)`` scans with replacement (seeded), recomputes the FROC
    and reads the sensitivities (``mode``) at ``fp_rates``; the interval is given by the ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2`` percentiles over the samples (``numpy.percentile``, linear). Each scan is matched
    once: a sample reuses the matches of the scans it draws.

    Args:
        images: as :func:`froc_curve`.
        iou_threshold / fp_rates / duplicates / mode: as :func:`cpm`.
        n_bootstrap: number of bootstrap samples (LUNA16: 1000).
        confidence: coverage of the interval (0.95: the 2.5 and 97.5 percentiles).
        seed: seed of the draws.

    Returns:
        ``{"cpm_ci_low", "cpm_ci_high", "cpm_mean": mean CPM over the samples, "sens_ci_low": {rate: value},
        "sens_ci_high": {rate: value}, "n_bootstrap", "confidence"}``; NaN bounds when there is no image.
    """
    if int(n_bootstrap) < 1:
        raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}.")
    if not 0 < float(confidence) < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    rates = [float(r) for r in fp_rates]
    matches = _match_images(images, iou_threshold, duplicates, None)
    n = len(matches)
    if n == 0:
        nan = float("nan")
        return {
            "cpm_ci_low": nan,
            "cpm_ci_high": nan,
            "cpm_mean": nan,
            "sens_ci_low": dict.fromkeys(rates, nan),
            "sens_ci_high": dict.fromkeys(rates, nan),
            "n_bootstrap": int(n_bootstrap),
            "confidence": float(confidence),
        }
    draws = np.random.default_rng(seed).integers(0, n, size=(int(n_bootstrap), n))
    sens = np.empty((int(n_bootstrap), len(rates)))
    for b, draw in enumerate(draws):
        froc = _froc_from_matches([matches[i] for i in draw])
        sens[b] = sensitivity_at_fp_rates(froc["fps"], froc["sensitivity"], rates, mode)
    cpms = sens.mean(axis=1)
    q = [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2]
    (low, high), (s_low, s_high) = np.percentile(cpms, q), np.percentile(sens, q, axis=0)
    return {
        "cpm_ci_low": float(low),
        "cpm_ci_high": float(high),
        "cpm_mean": float(cpms.mean()),
        "sens_ci_low": dict(zip(rates, map(float, s_low))),
        "sens_ci_high": dict(zip(rates, map(float, s_high))),
        "n_bootstrap": int(n_bootstrap),
        "confidence": float(confidence),
    }


def cpm_by_attribute(
    images: Sequence[Mapping[str, Any]],
    attribute: str,
    iou_threshold: float = 0.25,
    fp_rates: Sequence[float] = CPM_FP_RATES,
    duplicates: str = "ignore",
    values: Sequence[str] | None = None,
    mode: str = "luna16",
) -> dict[str, float]:
    """CPM restricted to the ground truths of each value of a per-box attribute (e.g. ``"size"``).

    Args:
        images: as :func:`froc_curve`, each with ``attribute``: a list of one value per ground-truth box.
        attribute: the attribute key.
        iou_threshold / fp_rates / duplicates / mode: as :func:`cpm`.
        values: the values to report (default: those present, sorted); a value without nodules gives NaN.

    Returns:
        ``{value: cpm}``.
    """
    present = sorted({str(v) for img in images for v in img.get(attribute, [])})
    out = {}
    for value in values or present:
        masks = [np.array([str(v) == value for v in img.get(attribute, [])], dtype=bool) for img in images]
        if not any(m.any() for m in masks):
            out[value] = float("nan")
            continue
        out[value] = cpm(images, iou_threshold, fp_rates, duplicates, masks, mode)["cpm"]
    return out


def sensitivity_fp_per_image(
    images: Sequence[Mapping[str, Any]],
    iou_threshold: float = 0.5,
    score_threshold: float = 0.5,
    duplicates: str = "ignore",
) -> dict[str, float]:
    """Sensitivity and false positives per image of the detections with score >= ``score_threshold``
    (Han's thesis Table 4: "sensitivity/FPs per slice" at IoU 0.5 and 0.25).

    Returns:
        ``{"sensitivity", "fp_per_image", "num_gt", "num_images"}``.
    """
    kept = []
    for img in images:
        s = np.asarray(img["pred_scores"], dtype=np.float64).reshape(-1)
        b = np.asarray(img["pred_boxes"], dtype=np.float64)
        keep = s >= score_threshold
        kept.append({"pred_boxes": b[keep] if b.size else b, "pred_scores": s[keep], "gt_boxes": img["gt_boxes"]})
    froc = froc_curve(kept, iou_threshold, duplicates)
    return {
        "sensitivity": float(froc["sensitivity"][-1]),  # type: ignore[index]
        "fp_per_image": float(froc["fps"][-1]),  # type: ignore[index]
        "num_gt": int(froc["num_gt"]),  # type: ignore[arg-type]
        "num_images": int(froc["num_images"]),  # type: ignore[arg-type]
    }


VALIDATION_METRICS: tuple[str, ...] = ("cpm", "sensitivity")
"""The validation scores of model selection (:func:`detection_score`)."""


def detection_score(
    images: Sequence[Mapping[str, Any]],
    metric: str = "cpm",
    iou_threshold: float = 0.25,
    score_threshold: float = 0.5,
    fp_rates: Sequence[float] = CPM_FP_RATES,
    duplicates: str = "ignore",
    mode: str = "luna16",
) -> float:
    """The validation score of model selection (thesis sec. 5.2.3 and 6.2.2: "the model with the best
    sensitivity on validation" at a detection threshold and IoU threshold; or the CPM).

    Args:
        images: as :func:`froc_curve`.
        metric: ``"sensitivity"`` (of the detections with score >= ``score_threshold``, at ``iou_threshold``;
            :func:`sensitivity_fp_per_image`) or ``"cpm"`` (at ``iou_threshold``, ``fp_rates``, ``mode``).
        iou_threshold: minimum IoU of a hit.
        score_threshold: detection threshold of ``"sensitivity"`` (unused by ``"cpm"``).
        fp_rates / duplicates / mode: as :func:`cpm`.

    Returns:
        the score, higher is better.
    """
    if metric == "cpm":
        return float(cpm(images, iou_threshold, fp_rates, duplicates, mode=mode)["cpm"])
    if metric == "sensitivity":
        return float(sensitivity_fp_per_image(images, iou_threshold, score_threshold, duplicates)["sensitivity"])
    raise ValueError(f"metric must be one of {VALIDATION_METRICS}, got {metric!r}.")


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


class DetectionScore(Metric):
    """Ignite metric of a validation run's detections: :func:`detection_score` over all images seen since the last
    reset (the key metric of a MONAI ``SupervisedEvaluator`` that selects the best checkpoint).

    Each update takes ``(pred, label)`` from ``output_transform(engine.state.output)``: ``pred`` a list (one per
    image) of the detector's eval-mode outputs ``{"boxes": (D, 2d), "scores": (D,), ...}`` (Faster R-CNN,
    YOLOv3 or any detector with that output), ``label`` the list of ground-truth boxes ``(G, 2d)`` (or dicts with
    ``"boxes"``), in the same coordinates. Images are gathered on one process: under distributed training each
    rank validates the whole validation set.

    Args:
        metric / iou_threshold / score_threshold / fp_rates / duplicates / mode: as :func:`detection_score`.
        output_transform: engine output -> ``(pred, label)``; default ``(output["pred"], output["label"])``.
    """

    def __init__(
        self,
        metric: str = "cpm",
        iou_threshold: float = 0.25,
        score_threshold: float = 0.5,
        fp_rates: Sequence[float] = CPM_FP_RATES,
        duplicates: str = "ignore",
        mode: str = "luna16",
        output_transform: Callable[[Any], Any] = lambda out: (out["pred"], out["label"]),
    ) -> None:
        if metric not in VALIDATION_METRICS:
            raise ValueError(f"metric must be one of {VALIDATION_METRICS}, got {metric!r}.")
        self.kwargs = {
            "metric": metric,
            "iou_threshold": float(iou_threshold),
            "score_threshold": float(score_threshold),
            "fp_rates": tuple(float(r) for r in fp_rates),
            "duplicates": duplicates,
            "mode": mode,
        }
        self.images: list[dict[str, np.ndarray]] = []
        super().__init__(output_transform=output_transform)

    def reset(self) -> None:
        self.images = []

    def update(self, output: Any) -> None:
        preds, labels = output
        for pred, gt in zip(preds, labels):
            gt = gt["boxes"] if isinstance(gt, Mapping) else gt
            self.images.append(
                {
                    "pred_boxes": _numpy(pred["boxes"]),
                    "pred_scores": _numpy(pred["scores"]).reshape(-1),
                    "gt_boxes": _numpy(gt) if gt is not None else np.zeros((0, 0)),
                }
            )

    def compute(self) -> float:
        return detection_score(self.images, **self.kwargs)  # type: ignore[arg-type]


def coco_metrics(
    images: Sequence[Mapping[str, Any]],
    classes: Sequence[str] = ("lesion",),
    iou_list: Sequence[float] = (0.1, 0.25, 0.5),
    iou_range: Sequence[float] = (0.1, 0.5, 0.05),
    max_detection: int = 100,
) -> dict[str, float]:
    """COCO mAP/mAR with MONAI's ``COCOMetric`` (IoU range ``iou_range``, ``max_detection`` per image).

    Args:
        images: as :func:`froc_curve`, with optional ``pred_labels``/``gt_labels`` (0-based; default 0).

    Returns:
        ``{"map", "mar"}`` (over ``iou_range``) and MONAI's full result dict under their own names.
    """
    from monai.apps.detection.metrics.coco import COCOMetric
    from monai.apps.detection.metrics.matching import matching_batch

    def arr(x: Any, d: int) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        return a.reshape(-1, d) if a.size else np.zeros((0, d))

    d = next((np.asarray(i["gt_boxes"]).shape[-1] for i in images if np.size(i["gt_boxes"])), 6)
    pred_boxes = [arr(i["pred_boxes"], d) for i in images]
    pred_scores = [np.asarray(i["pred_scores"], dtype=np.float64).reshape(-1) for i in images]
    pred_labels = [
        np.asarray(i.get("pred_labels", np.zeros(len(s))), dtype=np.int64).reshape(-1)
        for i, s in zip(images, pred_scores)
    ]
    gt_boxes = [arr(i["gt_boxes"], d) for i in images]
    gt_labels = [
        np.asarray(i.get("gt_labels", np.zeros(len(g))), dtype=np.int64).reshape(-1) for i, g in zip(images, gt_boxes)
    ]
    metric = COCOMetric(
        classes=list(classes), iou_list=iou_list, iou_range=iou_range, max_detection=(max_detection,), verbose=False
    )
    results = matching_batch(
        iou_fn=box_iou_np,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=pred_boxes,
        pred_classes=pred_labels,
        pred_scores=pred_scores,
        gt_boxes=gt_boxes,
        gt_classes=gt_labels,
        max_detections=max_detection,
    )
    values = metric(results)[0]
    tag = f"IoU_{iou_range[0]:.2f}_{iou_range[1]:.2f}_{iou_range[2]:.2f}_MaxDet_{max_detection}"
    out = {k: float(v) for k, v in values.items()}
    out["map"] = float(values[f"mAP_{tag}"])
    out["mar"] = float(values[f"mAR_{tag}"])
    return out
