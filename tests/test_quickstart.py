"""The README's quick start: CI runs its test command verbatim, and its commands agree with
CONTRIBUTING.md, the Windows forms and pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = "python3 -m venv .venv && "


def _section(text: str, heading: str) -> str:
    """The text of the Markdown section whose heading starts with ``heading``."""
    match = re.search(rf"^(#+) {re.escape(heading)}.*$", text, re.MULTILINE)
    assert match, f"no section {heading!r}"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def _blocks(text: str, language: str) -> list[list[str]]:
    """The fenced code blocks of ``language``, each as its list of non-empty lines."""
    found = re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    return [[line for line in block.splitlines() if line.strip()] for block in found]


def _quick_start() -> dict[str, str]:
    section = _section((ROOT / "README.md").read_text(encoding="utf-8"), "Quick start")
    commands = [block[0] for block in _blocks(section, "bash") if len(block) == 1]
    viewer = [c for c in commands if c.endswith("cxr-viewer")]
    tests = [c for c in commands if "pytest" in c]
    assert len(viewer) == 1 and len(tests) == 1, commands
    windows = _blocks(section, "powershell")
    assert len(windows) == 1 and len(windows[0]) == 2, windows
    return {
        "viewer": viewer[0],
        "tests": tests[0],
        "windows viewer": windows[0][0],
        "windows tests": windows[0][1],
    }


def _ci_command() -> str:
    """The value .ci/run gives README_TEST_COMMAND, as bash reads the assignment."""
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assignments = [line for line in run.splitlines() if line.startswith("README_TEST_COMMAND=")]
    assert len(assignments) == 1, assignments
    done = subprocess.run(
        ["bash", "-c", f'{assignments[0]}\nprintf %s "$README_TEST_COMMAND"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_ci_runs_the_readme_test_command_verbatim():
    command = _quick_start()["tests"]
    assert _ci_command() == command
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    code = [line.strip() for line in run if line.strip() and not line.lstrip().startswith("#")]
    assert 'bash -c "$README_TEST_COMMAND"' in code
    # nothing else in CI installs the project or runs pytest
    others = [
        line
        for line in code
        if ("pip install" in line or "pytest" in line) and "README_TEST_COMMAND" not in line
    ]
    assert others == []


def test_both_commands_run_from_the_project_virtual_environment():
    """Each creates (or reuses) .venv with the system python3, then uses only its tools: that
    is what works under PEP 668 (Debian 12, Ubuntu 24.04), where `pip install` outside a
    virtual environment is refused and `python` does not exist."""
    quick = _quick_start()
    for key in ("viewer", "tests"):
        command = quick[key]
        assert command.startswith(VENV), command
        steps = command[len(VENV) :].split(" && ")
        assert all(step.startswith(".venv/bin/") for step in steps), steps
        assert steps[0].startswith(".venv/bin/python -m pip install -e "), steps
    assert quick["viewer"].endswith(" && .venv/bin/cxr-viewer")
    assert quick["tests"].endswith(" && .venv/bin/python -m pytest")


def test_windows_forms_are_the_same_commands():
    quick = _quick_start()
    for key in ("viewer", "tests"):
        expected = (
            quick[key]
            .replace("python3 -m venv", "py -3.11 -m venv")
            .replace(" && ", "; ")
            .replace(".venv/bin/", ".venv\\Scripts\\")
        )
        assert quick[f"windows {key}"] == expected


def test_the_extras_and_the_script_exist_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    quick = _quick_start()
    assert "cxr-viewer" in project["scripts"]
    assert 'install -e ".[test]" ' in quick["tests"] and "test" in project["optional-dependencies"]
    assert "install -e . " in quick["viewer"]


@pytest.mark.parametrize("key", ["viewer", "tests"])
def test_contributing_setup_gives_the_same_commands(key):
    setup = _section((ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8"), "Setup")
    lines = [line.split("  #")[0].rstrip() for block in _blocks(setup, "bash") for line in block]
    assert _quick_start()[key] in lines
