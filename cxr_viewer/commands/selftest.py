"""Headless end-to-end check of an installation (source or frozen): ``cxr-viewer --self-test``.

Loads the demo bundle, opens a JPEG 2000 DICOM, a JPEG-LS DICOM and a PNG sample, predicts each,
computes Grad-CAM, a short LIME and one SHAP layer, writes a JSON report and exits 0 only if all
of it worked. Frozen apps commonly lose DICOM codec plugins and data files; this finds out.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr_viewer import __version__
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

#: the sample studies the self-test opens, by what they exercise
SAMPLES = {
    "jpeg2000_dicom": "phantom_j2k.dcm",
    "jpegls_dicom": "phantom_jpegls.dcm",
    "png": "phantom_001.png",
}
#: short explanation settings: enough to prove each method runs end to end
EXPLAIN = {
    "gradcam": {},
    "lime": {"num_samples": 100},
    "shap": {"num_samples": 20},
}


def add_arguments(parser) -> None:
    parser.add_argument("--report", help="JSON report path (default: print only)")
    parser.add_argument("--model", help="bundle to test (default: the demo bundle)")


def _step(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any] | None]):
    start = time.perf_counter()
    entry: dict[str, Any] = {"ok": False}
    try:
        entry.update(fn() or {})
        entry["ok"] = True
    except Exception as exc:  # noqa: BLE001 - the self-test reports every failure, then goes on
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc(limit=8)
    entry["seconds"] = round(time.perf_counter() - start, 3)
    report["steps"][name] = entry
    print(
        f"[{'ok' if entry['ok'] else 'FAILED'}] {name} ({entry['seconds']} s)"
        + ("" if entry["ok"] else f": {entry['error']}"),
        flush=True,
    )
    return entry["ok"]


def run(args) -> int:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")
    from cxr_viewer.core.bundle import open_bundle
    from cxr_viewer.core.explain.base import explain_study
    from cxr_viewer.core.explain.registry import create_explainer
    from cxr_viewer.core.inference import Classifier
    from cxr_viewer.core.io import load_study

    report: dict[str, Any] = {
        "cxr_lens": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "steps": {},
    }
    state: dict[str, Any] = {"studies": {}}
    model_path = Path(getattr(args, "model", None) or demo_bundle_dir())

    def load_model():
        clf = Classifier(open_bundle(model_path))
        clf.warm_up()
        state["clf"] = clf
        return {"bundle": str(model_path), "device": clf.device, "classes": list(clf.class_names)}

    _step(report, "load_model", load_model)
    report["device"] = report["steps"]["load_model"].get("device")

    for key, filename in SAMPLES.items():

        def load(filename=filename, key=key):
            study = load_study(samples_dir() / filename)
            state["studies"][key] = study
            return {
                "file": filename,
                "shape": [study.rows, study.columns],
                "transfer_syntax": study.transfer_syntax,
            }

        _step(report, f"open_{key}", load)

    for key, study in state["studies"].items():
        if "clf" not in state:
            break

        def predict(study=study):
            pred = state["clf"].predict_study(study)
            state.setdefault("target", pred.predicted_index)
            return {"probabilities": pred.as_dict(), "predicted": pred.predicted_class}

        _step(report, f"predict_{key}", predict)

    study = state["studies"].get("png") or next(iter(state["studies"].values()), None)
    for method, settings in EXPLAIN.items():

        def explain(method=method, settings=settings):
            if "clf" not in state or study is None:
                raise RuntimeError("needs a loaded model and a study (see the failed steps above)")
            explainer = create_explainer(method, state["clf"], settings)
            heatmap = explain_study(explainer, study, int(state.get("target", 0)))
            import numpy as np

            if (
                heatmap.values.shape != (study.rows, study.columns)
                or not np.isfinite(heatmap.values).all()
            ):
                raise RuntimeError(f"bad heat map: shape {heatmap.values.shape}")
            return {
                "layer": heatmap.layer,
                "settings": heatmap.settings,
                "trust": heatmap.trust,
                "runtime_s": round(heatmap.runtime_s, 3),
            }

        _step(report, f"explain_{method}", explain)

    report["ok"] = all(s["ok"] for s in report["steps"].values())
    text = json.dumps(report, indent=2, default=str)
    if getattr(args, "report", None):
        Path(args.report).write_text(text, encoding="utf-8")
        print(f"report written to {args.report}")
    print("SELF-TEST " + ("PASSED" if report["ok"] else "FAILED"))
    return 0 if report["ok"] else 1
