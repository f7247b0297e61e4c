"""SHA-256 of files, read in chunks (checkpoints and feature-extractor weights can be large)."""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_file"]


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file.

    Args:
        path: file to hash.
        chunk_size: bytes read at a time.

    Returns:
        the 64-character lowercase hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
