"""Headless end-to-end check of an installation (source or frozen): ``cxr-viewer --self-test``.

Checks that every compressed DICOM transfer syntax CXR Lens reads still has a decoder plugin
and that matplotlib still writes PDF/PNG (report export), loads the demo bundle (or ``--model``),
opens a JPEG 2000 DICOM, a JPEG-LS DICOM and a PNG sample, predicts each, computes a short map
with every registered explanation method, then reports the compute device (which device, GPUs
found, memory growth or cap; on a GPU the same prediction and explanations run again on the CPU
and must agree within stated tolerances) and exits 0 only if all of it worked. The console gets
one line per step, the device and the forward path (:attr:`Classifier.forward_path`); the full
JSON report is written only with ``--report FILE``, and the last lines say where it went or how
to save it. Frozen apps commonly lose DICOM codec plugins (pylibjpeg finds them through package
entry points, i.e. dist-info metadata) and data files; this finds out.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cxr_viewer import __version__
from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

#: the sample studies the self-test opens, by what they exercise (written by
#: ``python -m trainer.sample_studies``)
SAMPLES = {
    "jpeg2000_dicom": "phantom_j2k.dcm",
    "jpegls_dicom": "phantom_jpegls.dcm",
    "png": "phantom_selftest.png",
}

#: per registered method its short settings: enough to prove it runs end to end
EXPLAIN: dict[str, dict[str, Any]] = {
    name: dict(cls.quick_settings) for name, cls in EXPLAINERS.items()
}
#: compressed transfer syntaxes (pydicom.uid keywords) that must keep a decoder plugin
CODEC_SYNTAXES = (
    "JPEGBaseline8Bit",
    "JPEGExtended12Bit",
    "JPEGLossless",
    "JPEGLosslessSV1",
    "JPEGLSLossless",
    "JPEGLSNearLossless",
    "JPEG2000Lossless",
    "JPEG2000",
    "HTJ2KLossless",
    "HTJ2K",
    "RLELossless",
)


#: the console's hint when no --report was given
NO_REPORT_HINT = "JSON report not saved: use --report FILE to save it"


def _step(
    report: dict[str, Any],
    name: str,
    fn: Callable[[], dict[str, Any] | None],
    console: Callable[[dict[str, Any]], str] | None = None,
) -> bool:
    """Run one step, record ok / seconds / error in ``report["steps"][name]``, print a line.

    ``console``, given the step's entry, says what a passed step adds to its console line.
    """
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
    if not entry["ok"]:
        detail = f": {entry['error']}"
    else:
        detail = f": {console(entry)}" if console is not None else ""
    print(
        f"[{'ok' if entry['ok'] else 'FAILED'}] {name} ({entry['seconds']} s){detail}", flush=True
    )
    return entry["ok"]


def check_codecs() -> dict[str, Any]:
    """Usable decoder plugins per compressed transfer syntax; raises when one is unusable.

    pydicom 3 decodes through plugins (``pydicom.pixels.get_decoder``). Its "pylibjpeg" plugin
    counts as available when the ``libjpeg`` / ``openjpeg`` / ``rle`` modules import, but it
    decodes with the functions pylibjpeg registers through package *entry points*: a frozen app
    without their dist-info metadata lists the plugin and then fails on the first JPEG lossless,
    HTJ2K or RLE file. So a syntax whose pylibjpeg decoder has no entry point is a failure here.
    """
    import pydicom.uid
    from pydicom.pixels import get_decoder
    from pylibjpeg.utils import get_pixel_data_decoders

    found = get_pixel_data_decoders()
    plugins: dict[str, list[str]] = {}
    no_entry_point = []
    for keyword in CODEC_SYNTAXES:
        uid = getattr(pydicom.uid, keyword)
        available = set(get_decoder(uid).available_plugins)
        if "pylibjpeg" in available and uid not in found:
            available.discard("pylibjpeg")
            no_entry_point.append(keyword)
        plugins[keyword] = sorted(available)
    lost = [k for k, v in plugins.items() if not v]
    if lost or no_entry_point:
        raise RuntimeError(
            f"no usable decoder for {', '.join(lost) or '(none)'}; pylibjpeg has no decoder "
            f"entry point for {', '.join(no_entry_point) or '(none)'} — the dist-info metadata "
            "of pylibjpeg-libjpeg / -openjpeg / -rle is missing (frozen app: copy_metadata)"
        )
    return {"plugins": plugins, "pylibjpeg_entry_points": len(found)}


def check_matplotlib() -> dict[str, Any]:
    """Render a figure to PDF and PNG (the viewer's report export and the overlay colormaps).

    matplotlib picks its output backend by import at save time, which a frozen app can lose.
    """
    import io

    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2))
    fig.add_subplot().imshow([[0.0, 1.0], [1.0, 0.0]], cmap=matplotlib.colormaps["inferno"])
    fig.text(0.1, 0.9, "CXR Lens self-test")
    sizes = {}
    for fmt in ("pdf", "png"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
        sizes[fmt] = len(buf.getvalue())
    return {"matplotlib": matplotlib.__version__, "bytes": sizes}


def check_device(state: dict[str, Any]) -> dict[str, Any]:
    """The device section: where TensorFlow runs and, on a GPU, GPU-vs-CPU agreement.

    Raises when, with a GPU, TensorFlow's device settings came too late (after its first op),
    or when an output on the GPU differs from the CPU's beyond :data:`cxr_viewer.core.device_compare.TOLERANCE`.
    """
    from cxr_viewer.core.device_compare import compare_devices
    from cxr_viewer.core.model.model_io import import_tensorflow, runtime_config, runtime_state

    tf = import_tensorflow()
    rs = runtime_state()
    build = tf.sysconfig.get_build_info()
    out: dict[str, Any] = {
        **(rs.as_dict() if rs else {}),
        "tensorflow_cuda_build": bool(build.get("is_cuda_build", False)),
        "cuda_version": build.get("cuda_version"),
        "mixed_precision_requested": runtime_config().mixed_precision,
    }
    clf = state.get("clf")
    if clf is not None:
        out["batch_size"] = clf.batch_size
        out["batch_throughput"] = {str(k): round(v, 1) for k, v in clf.batch_throughput.items()}
        out["precision"] = clf.precision
        if clf.forward_choice is not None:
            out["forward"] = clf.forward_choice.as_dict()
        if clf.precision_check is not None:
            out["precision_check"] = clf.precision_check.as_dict()
    if rs is None:
        raise RuntimeError("TensorFlow did not start through cxr_viewer.core.model.model_io")
    if rs.gpus_found and not rs.applied_before_first_op:  # on a CPU there is nothing to apply
        raise RuntimeError(rs.note)
    study = state["studies"].get("png") or next(iter(state["studies"].values()), None)
    if clf is None or study is None:
        out["gpu_vs_cpu"] = {"compared": False, "reason": "no model or study (see above)"}
        if rs.visible_gpus:
            raise RuntimeError("a GPU is in use but the comparison with the CPU could not run")
        return out
    if rs.request == "cpu":
        out["gpu_vs_cpu"] = {"compared": False, "reason": "--device cpu: GPUs hidden by request"}
        return out
    out["gpu_vs_cpu"] = compare_devices(clf, study, int(state.get("target", 0)), EXPLAIN)
    if out["gpu_vs_cpu"]["compared"] and not out["gpu_vs_cpu"]["ok"]:
        bad = [k for k, r in out["gpu_vs_cpu"]["results"].items() if not r["ok"]]
        raise RuntimeError(f"GPU and CPU disagree beyond tolerance on {', '.join(bad)}: {out}")
    return out


def check_sanity(state: dict[str, Any], compute: bool) -> dict[str, Any]:
    """Per method, the cascading randomisation check on this model (core.sanity): computed
    and cached with ``--sanity``, else the cached result. A method flagged as insensitive to
    the model is reported, not a failure: the check describes the method, not the install."""
    from cxr_viewer.core.evaluate.sanity import SanityResult, cached_result, sanity_check

    clf = state.get("clf")
    if clf is None:
        raise RuntimeError("needs the model (see the failed steps above)")
    out: dict[str, Any] = {}
    for method, settings in EXPLAIN.items():
        result: SanityResult | None
        if compute:
            result = sanity_check(clf, method, settings=settings)
        else:
            result = cached_result(clf, method, settings)
        if result is None:
            out[method] = "not run on this model yet (cxr-viewer --self-test --sanity)"
            continue
        out[method] = {**result.as_dict(), "verdict": result.text}
        print(f"    {method}: {result.text} (ρ {result.final_rho:.2f} with every weight random)")
    return out


def run(args) -> int:
    """Run every step; write the report to ``args.report`` if given; 0 iff all steps passed
    (and the report, when asked for, was written)."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    from cxr_viewer.core.analysis import ExplainRequest, analyze, prepare
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    report: dict[str, Any] = {
        "cxr_lens": __version__,
        "frozen": bool(getattr(sys, "frozen", False)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "steps": {},
    }
    state: dict[str, Any] = {"studies": {}}
    model_path = Path(getattr(args, "model", None) or demo_bundle_dir())

    _step(report, "dicom_codecs", check_codecs)
    _step(report, "matplotlib", check_matplotlib)

    def load_model():
        clf = Classifier(open_bundle(model_path))
        clf.warm_up()
        state["clf"] = clf
        import tensorflow as tf

        return {
            "bundle": str(model_path),
            "device": clf.device,
            "tensorflow": tf.__version__,
            "classes": list(clf.class_names),
            "input": [clf.spec.height, clf.spec.width, clf.spec.channels],
            "forward_path": clf.forward_path,
        }

    _step(
        report,
        "load_model",
        load_model,
        console=lambda e: f"on {e['device']}, forward path {e['forward_path']}",
    )
    report["device"] = report["steps"]["load_model"].get("device")
    report["forward_path"] = report["steps"]["load_model"].get("forward_path")

    for key, filename in SAMPLES.items():

        def load(filename: str = filename, key: str = key) -> dict[str, Any]:
            study = load_study(samples_dir() / filename)
            state["studies"][key] = study
            out: dict[str, Any] = {
                "file": filename,
                "shape": [study.rows, study.columns],
                "transfer_syntax": study.transfer_syntax,
            }
            if study.transfer_syntax:
                from pydicom.pixels import get_decoder

                out["decoders"] = sorted(get_decoder(study.transfer_syntax).available_plugins)
            return out

        _step(report, f"open_{key}", load)

    for key in SAMPLES:

        def predict(key=key):
            if "clf" not in state or key not in state["studies"]:
                raise RuntimeError("needs the model and the study (see the failed steps above)")
            pred = prepare(state["studies"][key], state["clf"]).prediction
            state.setdefault("target", pred.predicted_index)
            return {"probabilities": pred.as_dict(), "predicted": pred.predicted_class}

        _step(report, f"predict_{key}", predict)

    study = state["studies"].get("png") or next(iter(state["studies"].values()), None)
    for method, settings in EXPLAIN.items():

        def explain(method=method, settings=settings):
            import numpy as np

            if "clf" not in state or study is None:
                raise RuntimeError("needs a loaded model and a study (see the failed steps above)")
            request = ExplainRequest(method, settings, int(state.get("target", 0)), trust=False)
            analysis = analyze(
                study,
                state["clf"],
                [request],
                predict=False,
                raise_errors=True,
                check_applicable=False,  # every method runs: its own error says what is wrong
            )
            found = analysis.results[-1].heatmap
            assert found is not None  # raise_errors: a result without a map has raised
            heatmap = found.resized(study.rows, study.columns)
            if (
                heatmap.values.shape != (study.rows, study.columns)
                or not np.isfinite(heatmap.values).all()
            ):
                raise RuntimeError(f"bad heat map: shape {heatmap.values.shape} or not finite")
            return {
                "layer": heatmap.layer,
                "settings": heatmap.settings,
                "trust": heatmap.trust,
                "runtime_s": round(heatmap.runtime_s, 3),
            }

        _step(report, f"explain_{method}", explain)

    _step(report, "sanity_check", lambda: check_sanity(state, bool(getattr(args, "sanity", 0))))
    _step(report, "device", lambda: check_device(state))

    report["ok"] = all(s["ok"] for s in report["steps"].values())
    report["failed"] = [name for name, s in report["steps"].items() if not s["ok"]]
    text = json.dumps(report, indent=2, default=str)
    written = True
    if getattr(args, "report", None):
        path = Path(args.report).resolve()
        try:
            path.write_text(text, encoding="utf-8")
            print(f"JSON report written to {path}")
        except OSError as exc:
            written = False
            print(
                f"cxr-viewer: error: the self-test report could not be written to {path} "
                f"({exc.strerror or exc}); give --report a file in a writable folder",
                file=sys.stderr,
            )
    else:
        print(NO_REPORT_HINT)
    print(
        "SELF-TEST "
        + ("PASSED" if report["ok"] else f"FAILED ({', '.join(report['failed'])})")
        + f" on {report['device'] or 'no device'}"
        + (f", forward path {report['forward_path']}" if report["forward_path"] else "")
    )
    return 0 if report["ok"] and written else 1
