"""House rules a green feature test does not show: lint, Qt only in gui/, TensorFlow lazy, one
analysis pipeline."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_lint_is_clean():
    pytest.importorskip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(ROOT)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    pytest.importorskip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept():
    """import-linter's contracts in pyproject.toml: Qt only in cxr_viewer.gui; the core never
    imports the GUI, the commands or the trainer; the trainer never imports the GUI; the core's
    layers (interop > evaluate | importer > explain > model > io); errors, progress and paths
    below them; the synthetic test data on io only. Every contract is run and kept."""
    pytest.importorskip("importlinter")
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert len(contracts) >= 6 and any(c["type"] == "layers" for c in contracts)
    # no import is let through: the modules above the layers sit directly in cxr_viewer.core
    assert not [c["name"] for c in contracts if c.get("ignore_imports")]
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.is_file() else ["lint-imports"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" KEPT") == len(contracts), result.stdout


def test_core_and_trainer_never_import_qt():
    offenders = []
    for pkg in ("cxr_viewer", "trainer"):
        for path in (ROOT / pkg).rglob("*.py"):
            if "gui" in path.relative_to(ROOT).parts:
                continue
            for line in path.read_text(encoding="utf-8").splitlines():
                s = line.strip()
                if s.startswith(("import PySide6", "from PySide6")):
                    offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders


def test_importing_the_core_does_not_import_tensorflow_or_qt():
    code = (
        "import sys, cxr_viewer.cli, cxr_viewer.core.model.bundle, cxr_viewer.core.model.inference, "
        "cxr_viewer.core.model.preprocess, cxr_viewer.core.io.display\n"
        "bad = [m for m in ('tensorflow', 'keras', 'PySide6', 'shap', 'lime') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported eagerly: {out.stdout.strip()}"


#: the pipeline's steps (model input → prediction → maps → trust figures), which only
#: core/analysis.py and the layers it is built from call
PIPELINE_STEPS = {
    "predict_inputs",
    "predict_study",
    "make_prediction",
    "explain_map",
    "explain_study",
    "explain_with_trust",
    "add_trust",
}


def test_only_the_pipeline_runs_prediction_maps_and_trust():
    """The viewer, both batch engines, localize, the self-test, the device comparison and every
    writer (PNG/PDF report, DICOM) go through ``cxr_viewer.core.analysis``: outside it and the
    layers it is built from (core/model, core/explain, core/evaluate) no module of cxr_viewer
    calls a step of the pipeline itself."""
    built_from = {("core", layer) for layer in ("model", "explain", "evaluate")}
    offenders = []
    for path in sorted((ROOT / "cxr_viewer").rglob("*.py")):
        parts = path.relative_to(ROOT / "cxr_viewer").parts
        if parts == ("core", "analysis.py") or parts[:2] in built_from:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if name in PIPELINE_STEPS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, offenders
