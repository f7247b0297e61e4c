"""Synthetic inputs shared by several test modules (imported as ``tests.builders``; the suite runs as
``python -m pytest`` from the repository root)."""

import numpy as np

# hand-made 3D detections: corner boxes [x1, y1, z1, x2, y2, z2]
G1, G2 = [0, 0, 0, 10, 10, 10], [20, 20, 20, 30, 30, 30]
G3, G4 = [0, 0, 0, 10, 10, 10], [40, 40, 40, 50, 50, 50]
FAR = [60, 60, 60, 70, 70, 70]


def two_scans():
    """Scan A: nodules G1 (small), G2 (large); scan B: G3 (small), G4 (large)."""
    a = {
        "gt_boxes": [G1, G2],
        "size": ["small", "large"],
        # 0.9 hit G1; 0.8 far: FP; 0.7 hits G1 again: duplicate; 0.3 hits G2
        "pred_boxes": [G1, FAR, [1, 0, 0, 10, 10, 10], G2],
        "pred_scores": [0.9, 0.8, 0.7, 0.3],
    }
    b = {
        "gt_boxes": [G3, G4],
        "size": ["small", "large"],
        # 0.85 far: FP; 0.6 hits G3; 0.2 far: FP
        "pred_boxes": [FAR, G3, [80, 80, 80, 90, 90, 90]],
        "pred_scores": [0.85, 0.6, 0.2],
    }
    return [a, b]


def blobs(n, seed, size=16):
    """Smooth 'anatomy-like' images ``(n, 1, size, size)``: a bright disc at a jittered centre plus mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cy, cx = size / 2 + rng.normal(0, 1, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (size / 3) ** 2).astype(np.float32)
        out.append(disc + rng.normal(0, 0.05, (size, size)).astype(np.float32))
    return np.stack(out)[:, None]


def random_probabilities(n, c, seed):
    """Class probabilities ``(n, c)`` that are informative but imperfect, with ties, and their labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]  # informative but imperfect
    logits = np.round(logits, 1)  # ties in the scores
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return prob, y
