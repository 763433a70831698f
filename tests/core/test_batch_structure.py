"""The batch engines' structure (issue 28): a typed run configuration, no private name imported
across the command modules, and no import (at module level or inside a function) from
``batch_ray`` or ``batch_core`` back to ``batch``."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import cxr_viewer.commands as commands_pkg

COMMANDS = Path(commands_pkg.__file__).parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from … import …`` in ``path``, inside functions too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            found.append((module, [a.name for a in node.names]))
    return found


def test_no_private_name_crosses_a_command_module():
    crossing = [
        f"{path.name}: from {module} import {name}"
        for path in COMMANDS.glob("*.py")
        for module, names in _imports(path)
        if module.startswith(".") or module.startswith("cxr_viewer")
        for name in names
        if name.startswith("_") and name != "__version__"
    ]
    assert crossing == []


def test_the_engines_never_import_the_command_module():
    for name in ("batch_ray.py", "batch_core.py"):
        modules = [m for m, _ in _imports(COMMANDS / name)]
        assert not any(m in (".batch", "cxr_viewer.commands.batch") for m in modules), name


def test_the_run_configuration_is_typed_and_built_once_from_the_command_line():
    from cxr_viewer.commands.batch import add_arguments
    from cxr_viewer.commands.batch_core import BatchConfig, BatchContext

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(
        ["in", "--model", "m", "--out", "o", "--explain", "lime,shap", "--lime-samples", "40"]
        + ["--shap-layer", "conv", "--no-trust", "--seed", "3"]
    )
    config = BatchConfig.from_namespace(ns)
    assert config.trust is False and config.seed == 3
    assert config.settings("lime") == {"seed": 3, "num_samples": 40}
    assert config.settings("shap") == {"seed": 3, "layer": "conv"}
    requests = config.requests(["lime"], None)
    assert requests[0].trust is False and requests[0].seed == 3
    assert BatchContext.__dataclass_fields__["config"].type == "BatchConfig"
