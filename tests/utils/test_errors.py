"""The user's input error is printed last: common.utils.errors and the hook that ``import common`` installs."""

from __future__ import annotations

import subprocess
import sys

import common
import pytest
from common.data import DatalistError, DatalistProblem
from common.utils.errors import UserInputError, find_user_error, install_excepthook


def _wrapped(error: BaseException) -> RuntimeError:
    """``error`` wrapped as MONAI's bundle runner wraps the errors of config expressions."""
    try:
        try:
            raise error
        except BaseException as e:  # noqa: B036 - re-raised, wrapped as MONAI wraps any error
            raise RuntimeError("Failed to evaluate ConfigExpression: $validate(...)") from e
    except RuntimeError as outer:
        return outer


def test_find_user_error_walks_causes_and_contexts() -> None:
    user = DatalistError([DatalistProblem("training", None, None, None, "the training section is empty")], "d.json")
    assert isinstance(user, UserInputError) and isinstance(user, ValueError)
    assert find_user_error(_wrapped(user)) is user
    try:
        try:
            raise user
        except DatalistError:
            raise KeyError("while handling")  # noqa: B904 - implicit context, no cause, is the case under test
    except KeyError as e:
        assert find_user_error(e) is user
    assert find_user_error(_wrapped(ValueError("other"))) is None and find_user_error(None) is None


def test_hook_prints_the_user_error_last(capsys: pytest.CaptureFixture[str]) -> None:
    install_excepthook()
    install_excepthook()  # idempotent: one wrapper
    assert getattr(sys.excepthook, "_user_error_last", False)
    user = DatalistError([DatalistProblem("training", 0, "image", "/data/a.nii.gz", "file not found")], "d.json")
    outer = _wrapped(user)
    sys.excepthook(type(outer), outer, outer.__traceback__)
    err = capsys.readouterr().err
    assert err.index("Failed to evaluate ConfigExpression") < err.rindex("The run stopped because of its input")
    assert err.rstrip().splitlines()[-1] == "training[0] image '/data/a.nii.gz': file not found"
    other = _wrapped(ValueError("not the user's"))
    sys.excepthook(type(other), other, other.__traceback__)
    assert "The run stopped" not in capsys.readouterr().err


def test_uncaught_wrapped_error_ends_the_output() -> None:
    """In a fresh interpreter (the hook installed by ``import common``): the problem list is the last output."""
    code = (
        "import common\n"
        "from common.data import DatalistError, DatalistProblem\n"
        "p = DatalistProblem('training', None, None, None, 'the training section is empty')\n"
        "try:\n"
        "    raise DatalistError([p], 'my/datalist.json')\n"
        "except DatalistError as e:\n"
        "    raise RuntimeError('Failed to evaluate ConfigExpression') from e\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and common.__name__ == "common"
    last = proc.stderr.rstrip().splitlines()[-3:]
    assert last[0] == "The run stopped because of its input:", proc.stderr[-2000:]
    assert last[1].startswith("DatalistError: Datalist 'my/datalist.json' failed validation with 1 problem")
    assert last[2] == "training: the training section is empty"
