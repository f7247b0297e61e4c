"""The README's two set-up commands and `.ci/run`: CI must install and test exactly as a new user is told to."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _readme_commands() -> tuple[list[str], str]:
    """The install steps of the README's first command (before the main job) and its test command."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    setup = readme[readme.index("## Set-up") :]
    blocks = _bash_blocks(setup)
    install = [step.strip() for step in blocks[0].strip().split("&&")]
    assert install[-1].startswith("python -m monai.bundle run training"), install
    tests = setup[setup.index("**Run the tests**") :]
    return install[:-1], _bash_blocks(tests)[0].strip()


def test_ci_installs_and_tests_as_the_readme_says():
    install, test_command = _readme_commands()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert install == [
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "pip install torch==2.13.0",
        'pip install -e ".[test]"',
    ]
    positions = [ci.index(step) for step in install]
    assert positions == sorted(positions), "`.ci/run` installs in another order than the README"
    assert ci.index(test_command) > positions[-1], "`.ci/run` must run the README's test command after installing"


def test_the_test_command_uses_only_installed_plugins():
    """`-n`/`--dist` come from pytest-xdist: the `test` extra the README installs must name it."""
    _, test_command = _readme_commands()
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    test_extra = pyproject[pyproject.index("test = [") :]
    test_extra = test_extra[: test_extra.index("]")]
    if re.search(r"(^|\s)(-n|--dist|--maxprocesses)\b", test_command):
        assert '"pytest-xdist' in test_extra
