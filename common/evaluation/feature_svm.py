"""Support vector machine baseline on hand-crafted image features (GA-UNet paper, Chen et al., sec. 4: "ResNet-18,
ResNet-50, DenseNet-161 and Support Vector Machine (SVM)" classifiers).

The paper does not say which features its SVM used; here they are, per image channel (images are expected in
``[0, 1]`` per channel, as the classification bundle's preprocessing gives them):

- the image average-pooled to a ``grid`` x ``grid`` (x ``grid``) thumbnail (coarse layout and intensity);
- a ``bins``-bin intensity histogram over ``[0, 1]`` of the voxels above ``foreground`` (tissue contrast: a tumour
  adds bright T1c/FLAIR voxels), normalised to sum to one;
- mean, standard deviation and 50th/90th/99th percentiles of those voxels.

The features are standardised (scikit-learn ``StandardScaler``) and classified by ``sklearn.svm.SVC`` (RBF kernel,
``C = 1``, ``gamma = "scale"``, ``class_weight="balanced"`` by default). Scores for AUC are the SVM decision values
(binary: ``sigmoid(decision)`` as the class-1 probability; multi-class: softmax of the one-vs-rest decision values);
predictions are their arg-max, which equals ``SVC.predict`` for two classes.

Persistence without pickles: scikit-learn models can only be stored as pickles, which the project never loads
(checkpoints load with ``weights_only=True``). :meth:`FeatureSVM.fit` writes the support-vector indices, dual
coefficients and intercepts to ``svm_model.npz`` for the record; :meth:`FeatureSVM.evaluate` refits the SVM on the
same training features (SVC fitting is deterministic) and checks that the refit equals the stored model before
scoring the test set.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from common.evaluation.report import write_report
from common.handlers import ClassificationMetricsHandler
from common.metrics.classification import classification_metrics
from common.utils import atomic_path, atomic_write_json

__all__ = ["FeatureSVM", "image_features"]

logger = logging.getLogger(__name__)


def image_features(images: torch.Tensor, grid: int = 8, bins: int = 16, foreground: float = 0.02) -> np.ndarray:
    """Hand-crafted features of a batch of images ``(B, C, *spatial)`` (2D or 3D), see the module docstring.

    Returns:
        ``(B, F)`` float64 array, ``F = C * (grid ** spatial_dims + bins + 5)``.
    """
    x = torch.as_tensor(images).detach().float().cpu()
    b, c = x.shape[:2]
    spatial_dims = x.ndim - 2
    pool = F.adaptive_avg_pool2d if spatial_dims == 2 else F.adaptive_avg_pool3d
    thumbs = pool(x, grid).reshape(b, -1)
    stats = []
    for i in range(b):
        per_channel = []
        for ch in range(c):
            v = x[i, ch].reshape(-1)
            v = v[v > foreground]
            if v.numel() == 0:
                v = torch.zeros(1)
            hist = torch.histc(v.clamp(0, 1), bins=bins, min=0.0, max=1.0)
            hist = hist / hist.sum().clamp_min(1.0)
            q = torch.quantile(v, torch.tensor([0.5, 0.9, 0.99]))
            per_channel.append(torch.cat([hist, v.mean()[None], v.std(unbiased=False)[None], q]))
        stats.append(torch.cat(per_channel))
    return torch.cat([thumbs, torch.stack(stats)], dim=1).double().numpy()


def _collect(loader: Iterable[Mapping[str, Any]], label_key: str, **feature_args: Any) -> tuple[np.ndarray, np.ndarray]:
    feats, labels = [], []
    for batch in loader:
        feats.append(image_features(batch["image"], **feature_args))
        labels.append(torch.as_tensor(batch[label_key]).reshape(-1).long().numpy())
    if not feats:
        raise ValueError("the data loader yielded no batch.")
    return np.concatenate(feats), np.concatenate(labels)


class FeatureSVM:
    """Fit and evaluate the SVM baseline from bundle data loaders.

    Args:
        train_loader: training data (dicts with ``image`` ``(B, C, *spatial)`` in [0, 1] and the class).
        model_dir: folder of ``svm_model.npz`` (the bundle's ``ckpt_dir``).
        num_classes: number of classes.
        label_key: batch key of the class.
        kernel, C, gamma, class_weight: ``sklearn.svm.SVC`` arguments.
        grid, bins, foreground: :func:`image_features` arguments.
    """

    def __init__(
        self,
        train_loader: Iterable[Mapping[str, Any]],
        model_dir: str | os.PathLike,
        num_classes: int = 2,
        label_key: str = "class",
        kernel: str = "rbf",
        C: float = 1.0,  # noqa: N803 - scikit-learn's name for the SVM regularisation, as configs pass it
        gamma: str | float = "scale",
        class_weight: str | None = "balanced",
        grid: int = 8,
        bins: int = 16,
        foreground: float = 0.02,
    ) -> None:
        self.train_loader = train_loader
        self.model_file = os.path.join(str(model_dir), "svm_model.npz")
        self.num_classes = int(num_classes)
        self.label_key = label_key
        self.svc_args = {"kernel": kernel, "C": float(C), "gamma": gamma, "class_weight": class_weight}
        self.feature_args = {"grid": int(grid), "bins": int(bins), "foreground": float(foreground)}
        self.scaler: Any = None
        self.svc: Any = None

    def _fit(self) -> None:
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        x, y = _collect(self.train_loader, self.label_key, **self.feature_args)
        if len(np.unique(y)) < 2:
            raise ValueError(f"the SVM needs at least two classes in the training set, got {np.unique(y).tolist()}.")
        self.scaler = StandardScaler().fit(x)
        self.svc = SVC(decision_function_shape="ovr", **self.svc_args).fit(self.scaler.transform(x), y)
        self.num_train = len(y)

    def scores(self, loader: Iterable[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Class scores ``(N, num_classes)`` (rows sum to one) and labels ``(N,)`` of a loader's images."""
        x, y = _collect(loader, self.label_key, **self.feature_args)
        d = self.svc.decision_function(self.scaler.transform(x))
        if d.ndim == 1:  # binary: positive decision = class svc.classes_[1]
            p1 = 1.0 / (1.0 + np.exp(-d))
            cols = {int(self.svc.classes_[0]): 1.0 - p1, int(self.svc.classes_[1]): p1}
        else:
            e = np.exp(d - d.max(axis=1, keepdims=True))
            e = e / e.sum(axis=1, keepdims=True)
            cols = {int(c): e[:, i] for i, c in enumerate(self.svc.classes_)}
        prob = np.stack([cols.get(k, np.zeros(len(y))) for k in range(self.num_classes)], axis=1)
        return prob, y

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "support": self.svc.support_,
            "dual_coef": self.svc.dual_coef_,
            "intercept": self.svc.intercept_,
            "classes": self.svc.classes_,
            "scaler_mean": self.scaler.mean_,
            "scaler_scale": self.scaler.scale_,
        }

    def fit(self, val_loader: Iterable[Mapping[str, Any]] | None = None, output_file: str | None = None) -> dict:
        """Fit on the training loader, write ``svm_model.npz``, score the validation set (written to
        ``output_file`` as JSON when given). Returns the validation metrics (empty without a validation loader)."""
        self._fit()
        os.makedirs(os.path.dirname(self.model_file), exist_ok=True)
        with atomic_path(self.model_file) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **self._arrays())
        results: dict[str, Any] = {}
        if val_loader is not None:
            prob, y = self.scores(val_loader)
            results = classification_metrics(prob, y, self.num_classes)
            if output_file:
                report = {**results, "classifier": "svm", "num_train": self.num_train}
                write_report(report, output_file, title="SVM validation", log=logger)
            else:
                logger.info("SVM validation: %s", results)
        logger.info("SVM fitted on %d images (%d support vectors).", self.num_train, len(self.svc.support_))
        return results

    def evaluate(self, loader: Iterable[Mapping[str, Any]], handler: ClassificationMetricsHandler) -> dict:
        """Refit, check the refit equals ``svm_model.npz``, score ``loader`` and write the metrics with ``handler``.

        Raises:
            FileNotFoundError: when the model was never trained (no ``svm_model.npz``).
            RuntimeError: when the refit differs from the stored model (training data or settings changed).
        """
        if not os.path.isfile(self.model_file):
            raise FileNotFoundError(f"{self.model_file} not found: run the SVM training first.")
        self._fit()
        with np.load(self.model_file, allow_pickle=False) as stored:
            current = self._arrays()
            for key in stored.files:
                if stored[key].shape != current[key].shape or not np.allclose(stored[key], current[key], atol=1e-8):
                    raise RuntimeError(
                        f"the SVM refitted for evaluation differs from {self.model_file} ({key}): the training data "
                        "or the SVM settings changed since training."
                    )
        prob, y = self.scores(loader)
        results = classification_metrics(prob, y, self.num_classes)
        written = handler.write({**results, "num_train": float(self.num_train)})
        if handler.per_image_file is not None:  # the same per-image file as the network classifiers'
            handler.metric_fn.reset()
            handler.metric_fn(torch.as_tensor(prob), torch.as_tensor(y))
            atomic_write_json(handler.per_image(), handler.per_image_file)
        return written

    def run(
        self,
        stage: str,
        loader: Iterable[Mapping[str, Any]],
        output_file: str,
        extra: Mapping[str, Any] | None = None,
        per_image_file: str | None = None,
        image_ids: Sequence[Any] | None = None,
    ) -> dict:
        """The bundle entry point: ``stage="train"`` fits and scores the validation ``loader``;
        ``stage="evaluate"`` refits, checks and scores the test ``loader``; both write ``output_file``. At
        ``evaluate``, ``per_image_file`` (with ``image_ids``, the test images in the loader's order) receives each
        image's score, label and predicted class, as :class:`~common.handlers.ClassificationMetricsHandler` writes
        them for the network classifiers."""
        if stage == "train":
            return self.fit(loader, output_file)
        if stage == "evaluate":
            handler = ClassificationMetricsHandler(
                output_file, self.num_classes, extra=extra, per_image_file=per_image_file, image_ids=image_ids
            )
            return self.evaluate(loader, handler)
        raise ValueError(f"stage must be 'train' or 'evaluate', got {stage!r}.")
