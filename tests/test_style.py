"""The project's format rules (black and isort at line length 120, flake8), as the model zoo checks them."""

from importlib.util import find_spec
from pathlib import Path

import pytest
from common.bundle import check_format

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("folder", ["common", "scripts", "tests"])
def test_format(folder):
    missing = [tool for tool in ("black", "isort", "flake8") if find_spec(tool) is None]
    assert not missing, f"install the [test] extra: {missing} missing"
    problems = check_format(REPO / folder)
    assert not problems, "\n".join(problems)
