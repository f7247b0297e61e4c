"""Fixtures of the converter tests: tiny public releases, written once per module (see releases.py)."""

from pathlib import Path

import pytest

from tests.data.converters.releases import brats2020, luna16


@pytest.fixture(scope="module")
def brats2020_release(tmp_path_factory) -> Path:
    """A 10-case BraTS 2020 training release (see :func:`releases.brats2020`); tests must not modify it."""
    return brats2020(tmp_path_factory.mktemp("brats2020"))


@pytest.fixture(scope="module")
def luna16_release(tmp_path_factory) -> Path:
    """An 8-series LUNA16 release with LIDC-IDRI reader annotations (see :func:`releases.luna16`); read-only."""
    return luna16(tmp_path_factory.mktemp("luna16"))
