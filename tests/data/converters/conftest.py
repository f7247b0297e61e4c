"""Fixtures of the converter tests: tiny public releases, written once per module (see releases.py)."""

from pathlib import Path

import pytest

from tests.data.converters.releases import brats2020


@pytest.fixture(scope="module")
def brats2020_release(tmp_path_factory) -> Path:
    """A 10-case BraTS 2020 training release (see :func:`releases.brats2020`); tests must not modify it."""
    return brats2020(tmp_path_factory.mktemp("brats2020"))
