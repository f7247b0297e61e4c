"""One way to report an evaluation: a JSON file written atomically, a text table, and the table in the log.

Every evaluation pipeline of :mod:`common.evaluation` ends with :func:`write_report`. The table goes to the
``logging`` module, not to stdout: MONAI's bundle runner configures logging from the bundle's
``configs/logging.conf`` (root logger at ``INFO`` on stdout), so ``python -m monai.bundle run evaluating ...``
shows it, and a library user chooses where it goes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from common.utils import atomic_write_json, atomic_write_text
from common.utils.tables import format_table

__all__ = ["format_table", "write_report"]

logger = logging.getLogger(__name__)


def write_report(
    results: Mapping[str, Any],
    output_file: str | os.PathLike,
    table: str | None = None,
    title: str = "evaluation",
    table_file: str | os.PathLike | None = None,
    log: logging.Logger | None = None,
    **json_kwargs: Any,
) -> str:
    """Write ``results`` as JSON atomically, optionally the table as a text file, and log the table.

    Args:
        results: the JSON-serialisable results.
        output_file: the JSON file (parent folders are created; written to a temporary name, then renamed).
        table: the text table; ``None`` formats ``results`` with :func:`format_table`.
        title: what is reported, the first words of the log message.
        table_file: where to write the table as text too (atomically), or ``None``.
        log: the logger of the calling module (default: this module's).
        json_kwargs: passed to :func:`common.utils.atomic_write_json` (``indent``, ``default``...).

    Returns:
        the table.
    """
    atomic_write_json(dict(results), output_file, **json_kwargs)
    if table is None:
        table = format_table(results)
    if table_file is not None:
        atomic_write_text(table + "\n", table_file)
    (log or logger).info("%s (%s):\n%s", title, os.fspath(output_file), table)
    return table
