"""The forward path of the model-agnostic loops, chosen per model at warm-up.

LIME's samples, occlusion's patches, the deletion/insertion trust curves and batch prediction
spend nearly all their time in plain forward passes (no gradients). Which runtime does those
fastest depends on the model and the machine, so at warm-up :func:`choose_forward` measures the
candidates and keeps the fastest:

* ``tf`` — the compiled ``tf.function`` (fixed input signature) the classifier always had;
* ``xla`` — the same function with ``jit_compile=True`` (XLA fuses the graph; one compilation
  per input shape, so partial batches are padded to the batch size);
* ``onnx`` — the model converted with tf2onnx and run by ONNX Runtime, on its CUDA provider
  when TensorFlow runs on a GPU (and ``onnxruntime-gpu`` offers that provider), else its CPU
  provider.

A candidate is used only if its probabilities equal the ``tf`` path's within
:data:`EQUALITY_TOLERANCE` on check inputs over the model's value range. Any failure —
tf2onnx or onnxruntime missing, a conversion error, an XLA compile error, a mismatch — leaves
that candidate out with the reason recorded in :class:`ForwardChoice` (and logged), so the
``tf`` path is always there to fall back to. The timing (:func:`interleaved_rates`) compares
the verified paths at the base batch size in interleaved rounds, fastest call kept (a shared
machine's load only slows calls down, and hits every candidate alike), then the winner at the
other batch sizes, each within a small budget (:data:`COMPARE_BUDGET_S`, :data:`TUNE_BUDGET_S`);
a candidate must beat ``tf`` by :data:`SWITCH_GAIN` to replace it (``tf`` is the reference).
``auto`` on the CPU does not try XLA (:data:`AUTO_PATHS_CPU`). The choice is remembered per
model file, device and library versions in the user's cache folder (:func:`cache_root`), so
only a model's first load here pays for the conversion and the timing; later loads only check
the remembered path's outputs again.

``CXR_FORWARD=auto|tf|xla|onnx`` forces a path (``tf`` is exactly the earlier behaviour: no
measuring on the CPU, batch 16), for reproducibility and tests; a forced path that fails its
checks falls back to ``tf`` like any other candidate. ``CXR_FORWARD_CACHE=off`` (or a folder)
turns the memory off (or moves it).

Gradient methods (Grad-CAM, SHAP) never come here: they run the Keras model in TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import CxrError

log = logging.getLogger("cxr_viewer")

FORWARD_ENV = "CXR_FORWARD"
FORWARD_CHOICES = ("auto", "tf", "xla", "onnx")
#: largest |p_candidate − p_tf| over the check inputs for a candidate to be used
EQUALITY_TOLERANCE = 1e-4
#: a candidate replaces ``tf`` only when at least this much faster (images/s ratio)
SWITCH_GAIN = 1.1
#: batch sizes tried: the first one compares the paths, the others tune the winner
CPU_BATCH_CANDIDATES = (16, 8, 32)
FORWARD_GPU_BATCHES = (64, 16, 32, 128, 256)
#: the paths ``auto`` tries besides ``tf``. Not XLA on the CPU: measured on a 2-core CPU
#: (benchmarks/bench_forward.py) XLA's CPU convolutions ran 2–10× slower than the
#: ``tf.function``'s oneDNN ones on the demo, a 128-px CNN and ResNet50V2, and compiling took
#: 2–12 s at load; ``CXR_FORWARD=xla`` still forces it.
AUTO_PATHS_CPU = ("onnx",)
AUTO_PATHS_GPU = ("xla", "onnx")
XLA_CPU_SKIPPED = (
    "not tried on the CPU by auto (XLA's CPU convolutions are several times slower than "
    "tf.function's oneDNN ones); CXR_FORWARD=xla forces it"
)
#: seconds of timing after the first round (the paths at the base batch), for tuning the batch
TUNE_BUDGET_S = 2.0
#: seconds of comparing the paths at the base batch (one round at least)
COMPARE_BUDGET_S = 2.0
#: rounds of the comparison even past its budget: with a big model on a CPU (ResNet50V2, ~0.7 s
#: a 16-image call) the budget allows two, and the faster of two calls each left ONNX Runtime's
#: ~1.2× gain within the noise of a shared machine (measured 1.0–1.24× between two loads)
MIN_COMPARE_ROUNDS = 3
MAX_ROUNDS = 5

LABELS = {"tf": "tf.function", "xla": "XLA", "onnx": "onnxruntime"}

ForwardFn = Callable[[np.ndarray], np.ndarray]


class ForwardConfigError(CxrError):
    """``CXR_FORWARD`` names no forward path."""


def requested_path(value: str | None = None) -> str:
    """The forward path asked for: ``value``, else ``$CXR_FORWARD``, else ``auto``."""
    raw = os.environ.get(FORWARD_ENV, "") if value is None else value
    choice = raw.strip().lower() or "auto"
    if choice not in FORWARD_CHOICES:
        raise ForwardConfigError(
            f"Unknown forward path {raw!r}",
            f"{FORWARD_ENV} takes one of {', '.join(FORWARD_CHOICES)}.",
            f"Unset {FORWARD_ENV} (auto: the fastest verified path) or set one of those.",
        )
    return choice


@dataclass
class ForwardCandidate:
    """One way of running the model forward: raw model outputs for a float32 batch."""

    name: str
    fn: ForwardFn
    device: str = "CPU"
    #: pad partial batches to the batch size (XLA compiles once per input shape)
    fixed_shape: bool = False
    #: what a later load can reuse instead of building again (ONNX: the converted graph)
    artifact: bytes | None = None

    @property
    def label(self) -> str:
        return f"{LABELS.get(self.name, self.name)} ({self.device})"

    def __call__(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        n = len(x)
        if self.fixed_shape and 0 < n < batch_size:
            pad = np.zeros((batch_size - n, *x.shape[1:]), np.float32)
            return np.asarray(self.fn(np.concatenate([x, pad])))[:n]
        return np.asarray(self.fn(x))


@dataclass
class ForwardChoice:
    """Which path the model-agnostic loops use, and how that was decided."""

    name: str
    label: str
    batch_size: int
    requested: str = "auto"
    #: images/s per path and batch size, as measured
    throughput: dict[str, dict[int, float]] = field(default_factory=dict)
    #: max |p − p_tf| over the check inputs, per verified candidate
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    #: why a candidate was not used (conversion error, mismatch, not installed, ...)
    rejected: dict[str, str] = field(default_factory=dict)
    #: seconds spent building (converting / compiling) each candidate
    setup_seconds: dict[str, float] = field(default_factory=dict)
    #: seconds spent timing
    timing_seconds: float = 0.0

    def describe(self) -> str:
        """E.g. ``"onnxruntime (CPU), batch 32"``."""
        return f"{self.label}, batch {self.batch_size}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.name,
            "describe": self.describe(),
            "requested": self.requested,
            "batch_size": self.batch_size,
            "throughput": {
                k: {str(b): round(v, 1) for b, v in d.items()} for k, d in self.throughput.items()
            },
            "max_abs_diff": dict(self.max_abs_diff),
            "rejected": dict(self.rejected),
            "setup_seconds": {k: round(v, 2) for k, v in self.setup_seconds.items()},
            "timing_seconds": round(self.timing_seconds, 2),
        }


# -- building the candidates ----------------------------------------------------------------------
def _signature(tf: Any, spec: Any) -> Any:
    return tf.TensorSpec([None, spec.height, spec.width, spec.channels], tf.float32, name="x")


def build_xla(model: Any, spec: Any, device: str = "CPU") -> ForwardCandidate:
    """The model's forward pass compiled by XLA (``jit_compile=True``)."""
    from cxr_viewer.core.model.model_io import import_tensorflow

    tf = import_tensorflow()
    fn = tf.function(
        lambda x: tf.cast(model(x, training=False), tf.float32),
        input_signature=[_signature(tf, spec)],
        jit_compile=True,
    )
    return ForwardCandidate("xla", fn, device, fixed_shape=True)


def onnx_providers(on_gpu: bool, available: Sequence[str]) -> list[str]:
    """ONNX Runtime's execution providers for the device TensorFlow runs on.

    On a GPU: the CUDA provider (CPU as ONNX Runtime's own fallback for unsupported nodes);
    raises RuntimeError when only CPU providers exist (comparing ONNX Runtime on the CPU with
    TensorFlow on the GPU is pointless). On the CPU: the CPU provider.
    """
    if on_gpu:
        if "CUDAExecutionProvider" not in available:
            raise RuntimeError(
                "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu "
                f"for the GPU; available: {', '.join(available) or 'none'})"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CPUExecutionProvider" not in available:
        raise RuntimeError(f"onnxruntime has no CPUExecutionProvider ({', '.join(available)})")
    return ["CPUExecutionProvider"]


def convert_to_onnx(model: Any, spec: Any, opset: int = 17) -> bytes:
    """The Keras model as a serialized ONNX graph (tf2onnx, through a concrete function).

    The converted function is the one the ``tf`` path runs, cast to float32 included.
    """
    import tf2onnx

    from cxr_viewer.core.model.model_io import import_tensorflow

    tf = import_tensorflow()
    sig = (_signature(tf, spec),)
    fn = tf.function(lambda x: tf.cast(model(x, training=False), tf.float32), input_signature=sig)
    # tf2onnx logs each step at INFO through its own loggers; keep them at WARNING
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)
    return bytes(proto.SerializeToString())


def build_onnx(
    model: Any, spec: Any, on_gpu: bool = False, device: str = "CPU", graph: bytes | None = None
) -> ForwardCandidate:
    """The model converted by tf2onnx (or ``graph``, converted earlier), run by ONNX Runtime."""
    import onnxruntime as ort

    providers = onnx_providers(on_gpu, ort.get_available_providers())
    graph = graph if graph is not None else convert_to_onnx(model, spec)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only
    # idle compute threads sleep instead of spinning: between calls the loops do numpy work
    # (masks, blur) and TensorFlow's own threads run, which spinning threads would starve
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    session = ort.InferenceSession(graph, sess_options=opts, providers=providers)
    if on_gpu and "CUDAExecutionProvider" not in session.get_providers():
        raise RuntimeError("onnxruntime could not start its CUDA provider")
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0])

    return ForwardCandidate("onnx", run, device, artifact=graph)


# -- verifying and timing -------------------------------------------------------------------------
def max_difference(
    candidate: ForwardCandidate,
    reference: np.ndarray,
    x: np.ndarray,
    to_probabilities: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
) -> float:
    """Largest |p_candidate − reference| over ``x`` (inf when not finite or misshaped)."""
    got = to_probabilities(candidate(x, batch_size)).astype(np.float64)
    if got.shape != reference.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.max(np.abs(got - reference)))


def interleaved_rates(
    candidates: dict[str, ForwardCandidate],
    x: np.ndarray,
    sizes: Sequence[int],
    budget_s: float,
    reference: str | None = None,
    min_rounds: int = 1,
) -> dict[str, dict[int, float]]:
    """Images/s of each candidate at each batch size: the fastest of interleaved calls.

    One warm call each, then rounds of one timed call per (candidate, size) — interleaved, so
    a burst of load from other programs slows every candidate alike — while ``budget_s`` lasts
    (``min_rounds`` at least, :data:`MAX_ROUNDS` at most). The fastest call counts, not the
    mean (other programs only ever slow a call down). After the first round, a candidate 3×
    slower than ``reference`` is not timed again (it cannot win).
    """
    for cand in candidates.values():
        for b in sizes:
            cand(x[:b], b)
    rates: dict[str, dict[int, float]] = {n: {} for n in candidates}
    start = time.perf_counter()
    for round_ in range(MAX_ROUNDS):
        for name, cand in candidates.items():
            if round_ and reference in rates and name != reference:
                if max(rates[name].values()) * 3 < max(rates[reference].values()):
                    continue
            for b in sizes:
                t = time.perf_counter()
                cand(x[:b], b)
                rate = b / max(time.perf_counter() - t, 1e-9)
                rates[name][b] = max(rates[name].get(b, 0.0), rate)
        if round_ + 1 >= min_rounds and time.perf_counter() - start > budget_s:
            break  # at least min_rounds, more while the budget lasts
    return rates


def pick_batch(throughput: dict[int, float], within: float = 0.9) -> int:
    """The smallest batch whose images/s is within ``within`` of the best one measured."""
    best = max(throughput.values())
    return min(b for b, v in throughput.items() if v >= within * best)


def choose_forward(
    tf_candidate: ForwardCandidate,
    builders: dict[str, Callable[[], ForwardCandidate]],
    check_inputs: np.ndarray,
    timing_inputs: Callable[[int], np.ndarray],
    to_probabilities: Callable[[np.ndarray], np.ndarray],
    requested: str = "auto",
    batch_candidates: Sequence[int] = CPU_BATCH_CANDIDATES,
    fixed_batch: int | None = None,
    tune_budget_s: float = TUNE_BUDGET_S,
    tolerance: float = EQUALITY_TOLERANCE,
    timing: bool = True,
    auto_paths: Sequence[str] | None = None,
) -> tuple[ForwardChoice, ForwardCandidate]:
    """Build, verify and time the candidates; return the choice and the candidate to use.

    ``builders`` maps each other path's name to a function building it (it may raise: the
    candidate is then rejected with the reason). ``requested`` is ``auto`` (the fastest
    verified path among ``auto_paths``, None: all) or one path's name (that one if it
    verifies, else ``tf``).
    ``fixed_batch`` (a batch size given by the caller) skips the batch tuning; ``timing=False``
    (a forced path remembered from an earlier load) skips all timing: only the check runs.
    """
    base = fixed_batch or batch_candidates[0]
    choice = ForwardChoice(tf_candidate.name, tf_candidate.label, base, requested)
    reference = to_probabilities(tf_candidate(check_inputs, base)).astype(np.float64)
    if requested == "auto":
        names = [n for n in builders if auto_paths is None or n in auto_paths]
    else:
        names = [n for n in builders if n == requested]
    if requested not in ("auto", tf_candidate.name) and not names:
        choice.rejected[requested] = "not available here"
    verified: dict[str, ForwardCandidate] = {tf_candidate.name: tf_candidate}
    for name in names:
        start = time.perf_counter()
        try:
            cand = builders[name]()
            diff = max_difference(cand, reference, check_inputs, to_probabilities, base)
        except Exception as exc:  # any failure of an optional path leaves it out
            choice.rejected[name] = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            log.info("forward path %s not used: %s", name, choice.rejected[name])
            continue
        finally:
            choice.setup_seconds[name] = time.perf_counter() - start
        choice.max_abs_diff[name] = diff
        if not diff <= tolerance:
            choice.rejected[name] = (
                f"outputs differ from tf.function by {diff:.3g} (> {tolerance:g})"
            )
            log.info("forward path %s not used: %s", name, choice.rejected[name])
            continue
        verified[name] = cand

    if requested != "auto":
        chosen = verified.get(requested, tf_candidate)
        measure = timing and chosen is not tf_candidate
    else:
        chosen, measure = tf_candidate, len(verified) > 1
    if not measure:
        # tf only (forced, the one verified, or the fallback of a forced path that failed):
        # the earlier behaviour (the caller measures the GPU batch itself); or a remembered path
        choice.name, choice.label = chosen.name, chosen.label
        return choice, chosen

    start = time.perf_counter()
    x = timing_inputs(max(max(batch_candidates), base))
    if requested == "auto":
        rates = interleaved_rates(
            verified, x, [base], COMPARE_BUDGET_S, tf_candidate.name, MIN_COMPARE_ROUNDS
        )
        for name, r in rates.items():
            choice.throughput[name] = {base: r[base]}
        tf_rate = choice.throughput[tf_candidate.name][base]
        best = max(verified, key=lambda n: choice.throughput[n][base])
        if best != tf_candidate.name and choice.throughput[best][base] < SWITCH_GAIN * tf_rate:
            best = tf_candidate.name
        chosen = verified[best]
    sizes = [base]
    if fixed_batch is None:
        # other sizes only if a warm and a timed call fit the budget at the base rate (a big
        # model on the CPU is saturated at any size anyway)
        base_rate = choice.throughput.get(chosen.name, {}).get(base)
        sizes += [
            b
            for b in batch_candidates
            if b != base and (base_rate is None or 2 * b / base_rate <= tune_budget_s)
        ]
    tuned = interleaved_rates({chosen.name: chosen}, x, sizes, tune_budget_s)[chosen.name]
    kept = choice.throughput.setdefault(chosen.name, {})
    for size, rate in tuned.items():
        kept[size] = max(kept.get(size, 0.0), rate)
    choice.batch_size = base if fixed_batch is not None else pick_batch(kept)
    choice.timing_seconds = time.perf_counter() - start
    choice.name, choice.label = chosen.name, chosen.label
    log.info("forward path: %s (%s)", choice.describe(), choice.as_dict())
    return choice, chosen


# -- remembering the choice -----------------------------------------------------------------------
CACHE_ENV = "CXR_FORWARD_CACHE"


def cache_root() -> Path | None:
    """Where choices are remembered: ``$CXR_FORWARD_CACHE`` (``0``/``off``: nowhere), else the
    user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``, ``%LOCALAPPDATA%`` on Windows)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("0", "off", "no", "false"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "cxr-lens" / "forward"


def cache_key(model_sha256: str, device: str, batch: int | None) -> str:
    """One entry per model file, device and runtime versions (an upgrade measures again)."""
    import importlib.metadata as md

    versions = []
    for dist in ("tensorflow", "keras", "onnxruntime", "onnxruntime-gpu", "tf2onnx"):
        try:
            versions.append(f"{dist}={md.version(dist)}")
        except md.PackageNotFoundError:
            continue
    text = "|".join([model_sha256, device, str(batch), *versions])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_cached(root: Path | None, key: str) -> tuple[dict[str, Any], bytes | None] | None:
    """The remembered choice (and ONNX graph) for ``key``, or None (absent or unreadable)."""
    if root is None:
        return None
    folder = root / key
    try:
        info = json.loads((folder / "choice.json").read_text(encoding="utf-8"))
        graph = (folder / "model.onnx").read_bytes() if info.get("path") == "onnx" else None
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or info.get("path") not in LABELS:
        return None
    if not isinstance(info.get("batch_size"), int) or info["batch_size"] < 1:
        return None
    return info, graph


def save_cached(
    root: Path | None, key: str, choice: ForwardChoice, chosen: ForwardCandidate
) -> None:
    """Remember ``choice`` (best effort: a read-only cache folder only costs the next load)."""
    if root is None:
        return
    folder = root / key
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if chosen.name == "onnx" and chosen.artifact is not None:
            _write_atomic(folder / "model.onnx", chosen.artifact)
        _write_atomic(folder / "choice.json", json.dumps(choice.as_dict(), indent=1).encode())
    except OSError as exc:
        log.info("forward path choice not remembered in %s: %s", folder, exc)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
