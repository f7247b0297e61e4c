"""Synthetic-datalist writers for generated data with more than images: refined images that keep their source's
provenance (MUNIT/SimGAN refinement, Han's thesis sec. 4.2.3) and generated images with bounding boxes (CPGGAN
synthesis, sec. 5.2). Both are :class:`~common.handlers.SyntheticDatalistWriter` subclasses, i.e. ignite handlers."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from common.handlers.synthetic_export import SyntheticDatalistWriter

__all__ = ["DetectionDatalistWriter", "RefinedDatalistWriter"]


class RefinedDatalistWriter(SyntheticDatalistWriter):
    """:class:`~common.handlers.SyntheticDatalistWriter` for refined images that keeps their source's provenance.

    Every batch must carry ``index_key``, the position of the source entry in ``source_section`` of
    ``source_datalist``. Each written entry has: ``image`` (the refined files), ``synthetic: true``, ``source`` (the
    synthetic input image, relative to the new datalist), ``generator`` (the source entry's generator provenance),
    ``refined_by`` (this bundle's name/version/checkpoint/sha256 and ``method``), and every other key of the source
    entry (``class``, ``method`` renamed ``generator_method``...), except the outlier-filter keys.

    Args:
        source_datalist: the synthetic datalist that was refined.
        method: refinement method name (``"munit"``, ``"simgan"``).
        source_section: its section.
        index_key: batch key of the source entry index.
        other args: see :class:`~common.handlers.SyntheticDatalistWriter`.
    """

    _DROP = ("image", "source", "generator", "index", "outlier_score", "outlier_threshold", "outlier_reason")

    def __init__(
        self,
        source_datalist: str,
        method: str,
        *args: Any,
        source_section: str = "training",
        index_key: str = "index",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("prefix", "refined")
        super().__init__(*args, **kwargs)
        with open(source_datalist) as f:
            raw = json.load(f)
        self.source_base = os.path.dirname(os.path.abspath(source_datalist))
        self.source_entries = list(raw.get(source_section, []))
        self.source_generator = raw.get("generator")
        self.method = method
        self.index_key = index_key
        self.refined_by = {**self.generator_info, "method": method}
        self.generator_info = dict(self.source_generator or {})

    def _rel(self, path: Any) -> Any:
        if isinstance(path, (list, tuple)):
            return [self._rel(p) for p in path]
        absolute = path if os.path.isabs(path) else os.path.join(self.source_base, path)
        return os.path.relpath(absolute, os.path.dirname(os.path.abspath(self.datalist_path)))

    def write_sample(self, sample: Mapping) -> dict:
        index = int(np.asarray(self._lookup(sample, self.index_key)).reshape(-1)[0])
        source = self.source_entries[index]
        entry = super().write_sample(sample)
        entry["source"] = self._rel(source["image"])
        entry["generator"] = dict(source.get("generator") or self.source_generator or {})
        for key, value in source.items():
            if key in self._DROP:
                continue
            entry["generator_method" if key == "method" else key] = value
        entry["refined_by"] = dict(self.refined_by)
        return entry

    def datalist(self, entries: Sequence[dict] | None = None) -> dict:
        data = super().datalist(entries)
        data["refined_by"] = dict(self.refined_by)
        data["description"] = f"synthetic data refined by {self.bundle_name} {self.bundle_version} ({self.method})"
        return data


class DetectionDatalistWriter(SyntheticDatalistWriter):
    """:class:`~common.handlers.SyntheticDatalistWriter` for generated images with bounding boxes.

    Variable-length box lists do not survive batch collation, so the batch carries them as JSON strings under
    ``json_key`` (``{"box": [[x1, y1, x2, y2], ...], "box_label": [...], ...}``); each entry gets the decoded items.
    All other arguments are those of :class:`~common.handlers.SyntheticDatalistWriter`.

    Args:
        json_key: batch key of the per-sample JSON string.
        kwargs: passed to :class:`~common.handlers.SyntheticDatalistWriter`.
    """

    def __init__(self, json_key: str = "boxes_json", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.json_key = json_key

    def write_sample(self, sample: Mapping) -> dict:
        entry = super().write_sample(sample)
        entry.update(json.loads(str(self._lookup(sample, self.json_key))))
        entry.update(dict(self.extra_entry))  # constant items keep precedence, as in the parent
        return entry
