"""The MONAI model zoo's code-format check, reproduced with the zoo's own settings.

The zoo's ``code-format-check`` workflow runs ``runtests.sh --codeformat`` at the root of its repository, whose
``models/<bundle>/`` folders hold the bundles.  For Python files that means, with the settings of the zoo's
``setup.cfg`` and ``pyproject.toml`` at its root:

* ``isort --check <root>``,
* ``black --skip-magic-trailing-comma --check <root>`` (line length 120),
* ``flake8 <root> --count --statistics`` with the plugins of its ``requirements-dev.txt``: flake8-bugbear,
  flake8-comprehensions, flake8-executable and pep8-naming (the ``test`` extra installs them).

:func:`check_zoo_format` builds that layout in a temporary folder (the bundles' Python files under ``models/`` and the
zoo's settings at the root) and runs the same three commands there.  Settings and commands follow
Project-MONAI/model-zoo at commit ``ZOO_COMMIT``.  The zoo's ``pytype`` step is not reproduced.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

__all__ = ["ZOO_COMMIT", "ZOO_FLAKE8_PLUGINS", "ZOO_PYPROJECT", "ZOO_SETUP_CFG", "check_zoo_format"]

#: the Project-MONAI/model-zoo commit whose format settings and checks are reproduced.
ZOO_COMMIT = "dfae206df112837d817e78d3727c9f32b3b52e82"

#: the ``[flake8]`` and ``[isort]`` sections of the zoo's ``setup.cfg`` (its comments shortened).
ZOO_SETUP_CFG = """\
[flake8]
select = B,C,E,F,N,P,T4,W,B9
max_line_length = 120
# C408: dict keyword syntax is fine; E501 replaced by B950; N812: `import ... as F`; B023, B028, B907: MONAI issues
ignore =
    E203
    E501
    E741
    W503
    W504
    C408
    N812
    B023
    B905
    B028
    B907
    C419
per_file_ignores = __init__.py: F401, __main__.py: F401
exclude = *.pyi,.git,.eggs,monai/_version.py,versioneer.py,venv,.venv,_version.py

[isort]
known_first_party = models
profile = black
line_length = 120
skip = .git, .eggs, venv, .venv, versioneer.py, _version.py, conf.py
skip_glob = *.pyi
"""

#: the ``[tool.black]`` section of the zoo's ``pyproject.toml`` (its ``exclude`` pattern left out: it names folders
#: that the temporary layout never holds).
ZOO_PYPROJECT = """\
[tool.black]
line-length = 120
target-version = ['py37', 'py38', 'py39']
include = '\\.pyi?$'
"""

#: flake8 plugins the zoo installs (distribution name: module that must be importable).
ZOO_FLAKE8_PLUGINS: dict[str, str] = {
    "flake8-bugbear": "bugbear",
    "flake8-comprehensions": "flake8_comprehensions",
    "flake8-executable": "flake8_executable",
    "pep8-naming": "pep8ext_naming",
}

#: the zoo's commands, run from its root (``runtests.sh --codeformat``); ``{root}`` is that root.
ZOO_COMMANDS: dict[str, tuple[str, ...]] = {
    "isort": ("--check", "{root}"),
    "black": ("--skip-magic-trailing-comma", "--check", "{root}"),
    "flake8": ("{root}", "--count", "--statistics"),
}


def _copy_python_files(src: Path, dst: Path) -> int:
    """Copy the ``.py`` files under ``src`` to the same relative paths under ``dst``, keeping permission bits."""
    count = 0
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if "__pycache__" in rel.parts:
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst / rel)  # flake8-executable checks the executable bit
        count += 1
    return count


def check_zoo_format(bundle_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """Run the zoo's format check (isort, black, flake8 with its settings and plugins) on bundles' Python files.

    One subprocess per tool covers all bundles.

    Args:
        bundle_dirs: bundle folders, e.g. exports of :func:`common.bundle.export.export_bundle`; each is checked as
            ``models/<folder name>/`` of the zoo (two folders must not share a name).

    Returns:
        One problem per failing tool (with its output) or missing tool/plugin; empty when all pass.
    """
    folders = [Path(b).resolve() for b in bundle_dirs]
    names = [f.name for f in folders]
    if len(set(names)) != len(names):
        raise ValueError(f"bundle folder names must be unique in the zoo layout, got {names}.")
    missing = [tool for tool in ZOO_COMMANDS if find_spec(tool) is None]
    missing += [dist for dist, module in ZOO_FLAKE8_PLUGINS.items() if find_spec(module) is None]
    if missing:
        return [f"format: install the test extra; missing {', '.join(missing)}"]
    problems = []
    with tempfile.TemporaryDirectory(prefix="zoo_format_") as tmp:
        root = Path(tmp)
        (root / "setup.cfg").write_text(ZOO_SETUP_CFG)
        (root / "pyproject.toml").write_text(ZOO_PYPROJECT)
        if sum(_copy_python_files(f, root / "models" / f.name) for f in folders) == 0:
            return []
        for tool, args in ZOO_COMMANDS.items():
            cmd = [sys.executable, "-m", tool, *(a.format(root=root) for a in args)]
            result = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
            if result.returncode != 0:
                detail = (result.stdout + result.stderr).replace(f"{root}{os.sep}models{os.sep}", "").strip()
                problems.append(f"format: zoo {tool} check failed:\n{detail}")
    return problems
