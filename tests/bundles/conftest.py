"""Fixtures of the bundle tests; the plain helper functions are in helpers.py."""

import shutil
from pathlib import Path

import pytest
from helpers import REPO


@pytest.fixture
def bundle_copy(tmp_path):
    """A copy of a repository bundle in tmp_path (its outputs never touch the repository): ``bundle_copy(name)``, or
    ``bundle_copy(name, folder)`` for a second copy in another folder."""

    def _copy(name: str, folder: str | None = None) -> Path:
        dst = tmp_path / (folder or name)
        shutil.copytree(
            REPO / "bundles" / name, dst, ignore=shutil.ignore_patterns("models", "eval", "data", "runs", "outputs")
        )
        return dst

    return _copy
