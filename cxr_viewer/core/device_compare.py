"""Proof that the GPU path computes what the CPU computes: same inputs, both devices, compared.

Used by ``cxr-viewer --self-test`` (its device section), the ``gpu``-marked tests and
``benchmarks/bench_gpu.py``. Both runs go through the one analysis pipeline
(:func:`cxr_viewer.core.analysis.analyze`), so what is compared is what every caller computes;
it sits beside that pipeline, above the core's layers. Every explainer is seeded (LIME's perturbations, SHAP's
background/interpolation schedule), so the two runs differ only by floating-point arithmetic:
cuDNN vs oneDNN kernels and summation order. TensorFloat-32 (TensorFlow's default for
convolutions and matrix products on Ampere and newer GPUs, ~10 mantissa bits) is turned off for
the comparison and restored after it: the check is that the GPU computes the same float32
function, not how much precision TF32 trades for speed.

Tolerances (:data:`TOLERANCE`): probabilities by absolute difference; maps by the largest
absolute difference divided by the CPU map's largest absolute value (so a map that is all
small numbers is not judged on an absolute scale).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.model.model_io import import_tensorflow

if TYPE_CHECKING:
    from cxr_viewer.core.analysis import Analysis, ExplainRequest
    from cxr_viewer.core.io.study import Study
    from cxr_viewer.core.model.inference import Classifier

T = TypeVar("T")

#: largest allowed GPU-vs-CPU difference per output (see the module docstring): predictions,
#: then each method's own ``device_tolerance`` from the registry
TOLERANCE: dict[str, float] = {
    "predict": 1e-3,
    **{name: cls.device_tolerance for name, cls in EXPLAINERS.items()},
}
CPU = "/CPU:0"


def gpu_names() -> list[str]:
    """TensorFlow's logical GPU device names visible to this process ([] on a CPU machine)."""
    tf = import_tensorflow()
    return [d.name for d in tf.config.list_logical_devices("GPU")]


def map_difference(gpu_map: np.ndarray, cpu_map: np.ndarray) -> dict[str, float]:
    """``max |gpu − cpu| / max |cpu|`` and the Pearson correlation of two maps."""
    a = np.asarray(gpu_map, np.float64).ravel()
    b = np.asarray(cpu_map, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {np.shape(gpu_map)} vs {np.shape(cpu_map)}")
    scale = float(np.max(np.abs(b))) or 1.0
    rel = float(np.max(np.abs(a - b))) / scale
    corr = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
    return {"max_rel_diff": rel, "correlation": corr}


def run_on(device: str, fn: Callable[[], T]) -> tuple[T, float]:
    """``fn()`` with TensorFlow ops placed on ``device`` (e.g. "/CPU:0"), and its seconds."""
    tf = import_tensorflow()
    start = time.perf_counter()
    with tf.device(device):
        out = fn()
    return out, time.perf_counter() - start


def compare_devices(
    classifier: Classifier,
    study: Study,
    target: int,
    settings: dict[str, dict[str, Any]],
    device: str | None = None,
) -> dict[str, Any]:
    """Predict and explain ``study`` on the first GPU and on the CPU; compare within tolerance.

    ``device`` replaces the first GPU (a test compares "/CPU:0" with itself: the runs must be
    identical, which is what makes a GPU-vs-CPU difference mean arithmetic only).
    Returns ``{"compared": False, "reason": ...}`` when TensorFlow sees no GPU. Otherwise
    ``compared``, ``gpu``, ``tolerance``, per output (``predict`` and each method in
    ``settings``) the difference, the seconds on each device and ``ok``, and overall ``ok``.
    """
    gpus = [device] if device else gpu_names()
    if not gpus:
        return {"compared": False, "reason": "TensorFlow sees no GPU: nothing to compare"}
    gpu = gpus[0]
    tf = import_tensorflow()
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        return _compare(classifier, study, target, settings, gpu)
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def _analyze_on(
    device: str, classifier: Classifier, study: Study, requests: list[ExplainRequest]
) -> Analysis:
    """The pipeline on ``device``: a prediction without requests, else only the maps (errors
    raised, every method attempted: a method that does not apply fails the comparison)."""
    from cxr_viewer.core.analysis import analyze

    analysis, _ = run_on(
        device,
        lambda: analyze(
            study,
            classifier,
            requests,
            predict=not requests,
            raise_errors=True,
            check_applicable=False,
        ),
    )
    return analysis


def _compare(
    classifier: Classifier,
    study: Study,
    target: int,
    settings: dict[str, dict[str, Any]],
    gpu: str,
) -> dict[str, Any]:
    from cxr_viewer.core.analysis import ExplainRequest

    out: dict[str, Any] = {"compared": True, "gpu": gpu, "tolerance": dict(TOLERANCE)}
    results: dict[str, Any] = {}
    on_gpu, on_cpu = (_analyze_on(d, classifier, study, []) for d in (gpu, CPU))
    assert on_gpu.prediction is not None and on_cpu.prediction is not None
    p_gpu, p_cpu = on_gpu.prediction.probabilities, on_cpu.prediction.probabilities
    diff = float(np.max(np.abs(np.asarray(p_gpu) - np.asarray(p_cpu))))
    results["predict"] = {
        "max_abs_diff": diff,
        "gpu_s": round(on_gpu.timings["predict"], 4),
        "cpu_s": round(on_cpu.timings["predict"], 4),
        "ok": diff <= TOLERANCE["predict"],
    }
    for method, s in settings.items():
        # the maps without trust figures, compared at the study's pixels
        request = [ExplainRequest(method, dict(s), target, trust=False)]
        on_gpu, on_cpu = (_analyze_on(d, classifier, study, request) for d in (gpu, CPU))
        hm_gpu, hm_cpu = (a.results[0].heatmap for a in (on_gpu, on_cpu))
        assert hm_gpu is not None and hm_cpu is not None  # raise_errors: no map has raised
        d = map_difference(
            hm_gpu.resized(study.rows, study.columns).values,
            hm_cpu.resized(study.rows, study.columns).values,
        )
        results[method] = {
            **d,
            "gpu_s": round(on_gpu.timings[method], 3),
            "cpu_s": round(on_cpu.timings[method], 3),
            "ok": d["max_rel_diff"] <= TOLERANCE.get(method, 0.05),
        }
    out["results"] = results
    out["ok"] = all(r["ok"] for r in results.values())
    return out
