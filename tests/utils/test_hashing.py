"""Tests of :func:`common.utils.sha256_file`."""

from __future__ import annotations

import hashlib
import os

import pytest
from common.utils import sha256_file


@pytest.mark.parametrize("size", [0, 1, 3 * 1024 + 5])
def test_sha256_file_equals_hashlib(tmp_path, size):
    path = tmp_path / "blob.bin"
    payload = os.urandom(size)
    path.write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()
    assert sha256_file(path) == expected
    assert sha256_file(str(path), chunk_size=1024) == expected  # read in several chunks


def test_sha256_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "absent.pt")
