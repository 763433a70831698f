"""The classifier: a bundle's model with a compiled, cached predict function.

Measured on the 2-core CPU (ResNet50V2, 224×224, batch 1): eager ``model(x)`` 356 ms,
``model.predict`` 141 ms, a ``tf.function`` with a fixed input signature 65 ms. So one compiled
function is built per classifier, warmed up at load time (its first call traces, ~1 s) and
reused for every call.

On a GPU the batch size of that function (which LIME's samples and the trust curves' perturbed
images go through) is chosen at warm-up by measuring throughput (:meth:`Classifier.measure_batch_sizes`);
on the CPU it stays at 16. Mixed precision (float16 compute, float32 weights) is optional, off by
default, GPU only, and used only if its probabilities match float32's within
:data:`MIXED_PRECISION_TOLERANCE` on check inputs at load.

:meth:`Classifier.predict_inputs` (what LIME, occlusion, the trust curves and batch prediction
call) runs on the forward path chosen at warm-up (:mod:`cxr_viewer.core.model.forward`: the compiled
``tf.function``, XLA or ONNX Runtime, verified equal within 1e-4, the fastest, with its batch
size, also on the CPU); :attr:`Classifier.forward_path` says which. Gradient methods use
:attr:`Classifier.model` in TensorFlow.
"""

from __future__ import annotations

import copy
import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.io.study import Study
from cxr_viewer.core.model.bundle import Bundle
from cxr_viewer.core.model.forward import (
    AUTO_PATHS_CPU,
    AUTO_PATHS_GPU,
    CPU_BATCH_CANDIDATES,
    FORWARD_GPU_BATCHES,
    XLA_CPU_SKIPPED,
    ForwardCandidate,
    ForwardChoice,
    build_onnx,
    build_xla,
    cache_key,
    cache_root,
    choose_forward,
    load_cached,
    requested_path,
    save_cached,
)
from cxr_viewer.core.model.heads import DEFAULT_NEAR_BAND, HeadKind, head_kind
from cxr_viewer.core.model.model_io import describe_device, import_tensorflow, runtime_config
from cxr_viewer.core.model.preprocess import InputSpec, check_finite, study_to_input
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress


@dataclass(frozen=True)
class Prediction:
    """Probabilities for one input, one per entry of ``class_names``, and the decision rule.

    ``kind`` is the bundle's head (:mod:`cxr_viewer.core.model.heads`): for ``softmax`` and
    ``binary`` the classes are exclusive and one is predicted; for ``multilabel`` every entry is
    an independent finding, present when its probability reaches its own threshold.
    """

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    threshold: float | None = None
    positive_class: str | None = None
    kind: str = "softmax"
    #: multilabel: one threshold per finding (None: 0.5 each)
    thresholds: tuple[float, ...] | None = None
    near_band: float = DEFAULT_NEAR_BAND

    @property
    def head(self) -> HeadKind:
        """The head kind's plug-in object: it owns the decision rule (:mod:`.heads`)."""
        return head_kind(self.kind)

    # -- exclusive classes ----------------------------------------------------------------
    @property
    def uses_threshold(self) -> bool:
        """True when a two-class decision thresholds the positive class's probability."""
        return self.head.uses_threshold(self)

    @property
    def positive_index(self) -> int | None:
        return self.head.positive_index(self)

    @property
    def decision_threshold(self) -> float | None:
        """The threshold of a binary decision (0.5 for a binary head without one)."""
        if not self.uses_threshold:
            return None
        return 0.5 if self.threshold is None else float(self.threshold)

    @property
    def predicted_index(self) -> int:
        """Binary decision by threshold; softmax arg-max; multilabel: the most probable finding
        at or above its threshold, else the most probable one (the finding explained by
        default — *not* a prediction that it is the only one present)."""
        return self.head.predicted_index(self)

    @property
    def predicted_class(self) -> str:
        """The predicted class; for multilabel the findings above threshold ("; "-joined)."""
        return self.head.predicted_class(self)

    # -- findings -------------------------------------------------------------------------
    def threshold_of(self, index: int) -> float | None:
        """The threshold entry ``index`` is compared with (None: arg-max decision)."""
        return self.head.threshold_of(self, index)

    def above(self, index: int) -> bool:
        t = self.threshold_of(index)
        return t is not None and float(self.probabilities[index]) >= t

    @property
    def positive_findings(self) -> list[int]:
        """Multilabel: indices of findings at or above threshold, most probable first."""
        return self.head.positive_findings(self)

    def order(self) -> list[int]:
        """Class indices by decreasing probability (stable)."""
        return [int(i) for i in np.argsort(-np.asarray(self.probabilities), kind="stable")]

    def near_threshold(self, index: int) -> bool:
        """True when entry ``index`` lies within the bundle's band around its threshold."""
        t = self.threshold_of(index)
        return t is not None and abs(float(self.probabilities[index]) - t) < self.near_band

    def rule_text(self, index: int | None = None) -> str:
        """The decision in words, e.g. "PNEUMONIA — p 0.91 ≥ threshold 0.62".

        Without ``index``: the headline (binary: the decision; softmax: the arg-max; multilabel:
        the findings above threshold). With ``index``: that entry's own rule.
        """
        if index is None:
            return self.head.rule_text(self)
        p = self.probabilities
        t = self.threshold_of(index)
        name = self.class_names[index]
        if t is None:
            return f"{name} — p {p[index]:.2f}"
        sign = "≥" if p[index] >= t else "<"
        return f"{name} — p {p[index]:.2f} {sign} threshold {t:.2f}"

    def headline(self) -> str:
        """A short headline: the rule (binary / softmax) or, for multilabel, how many findings
        are above threshold and which (the full rules: :meth:`rule_text`)."""
        return self.head.headline(self)

    @property
    def is_near_threshold(self) -> bool:
        """Binary: the positive probability is near its threshold; multilabel: any finding is."""
        return self.head.is_near_threshold(self)

    @property
    def findings(self) -> bool:
        """The entries are independent findings (multi-label), not exclusive classes."""
        return self.head.findings

    def as_dict(self) -> dict[str, float]:
        return {c: float(p) for c, p in zip(self.class_names, self.probabilities, strict=True)}


log = logging.getLogger("cxr_viewer")

#: CPU batch (~10 saturates a 2-core CPU); the GPU's first guess before it is measured
CPU_BATCH = 16
GPU_BATCH = 64
#: batch sizes tried at warm-up on a GPU, smallest first (stops early once throughput levels off)
GPU_BATCH_CANDIDATES = (16, 32, 64, 128, 256)
#: largest |p_float16 - p_float32| over the check inputs for mixed precision to be used
MIXED_PRECISION_TOLERANCE = 0.01


def pick_batch_size(throughput: dict[int, float], within: float = 0.9) -> int:
    """The smallest batch whose images/s is within ``within`` of the best one measured.

    Bigger batches only cost memory (and the first LIME map's latency) once the device is
    saturated, so the smallest near-best size wins.
    """
    if not throughput:
        raise ValueError("no batch size was measured")
    best = max(throughput.values())
    return min(b for b, v in throughput.items() if v >= within * best)


@dataclass
class PrecisionCheck:
    """The load-time comparison of mixed-precision against float32 probabilities."""

    used: bool
    max_abs_diff: float | None = None
    tolerance: float = MIXED_PRECISION_TOLERANCE
    reason: str = ""
    inputs: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def mixed_precision_twin(model: Any) -> Any:
    """A copy of ``model`` computing in float16 (``mixed_float16``) with the same weights.

    Every layer but the last is rebuilt from its config with the mixed policy (weights stay
    float32); the last keeps float32 so the probabilities are computed in full precision.
    Raises ValueError/TypeError if a layer cannot be rebuilt that way.
    """
    import keras

    last = model.layers[-1].name

    def clone_layer(layer: Any) -> Any:
        cfg = layer.get_config()
        if layer.name != last and "dtype" in cfg and not isinstance(layer, keras.layers.InputLayer):
            cfg["dtype"] = "mixed_float16"
        return layer.__class__.from_config(cfg)

    twin = keras.models.clone_model(model, clone_function=clone_layer)
    twin.set_weights(model.get_weights())
    return twin


def precision_check_inputs(spec: InputSpec, n: int = 8, seed: int = 0) -> np.ndarray:
    """Deterministic check inputs over the model's value range: flat, ramps and noise."""
    lo, hi = (float(v) for v in spec.value_range)
    rng = np.random.default_rng(seed)
    shape = (spec.height, spec.width, spec.channels)
    ramp = np.linspace(lo, hi, spec.width, dtype=np.float32)[None, :, None]
    out = [
        np.full(shape, lo, np.float32),
        np.full(shape, (lo + hi) / 2, np.float32),
        np.broadcast_to(ramp, shape).astype(np.float32),
        np.broadcast_to(ramp.transpose(1, 0, 2)[: spec.height], shape).astype(np.float32)
        if spec.height == spec.width
        else np.full(shape, hi, np.float32),
    ]
    while len(out) < n:
        out.append(rng.uniform(lo, hi, shape).astype(np.float32))
    return np.stack(out[:n])


class Classifier:
    """A loaded model bundle ready for inference.

    Parameters
    ----------
    bundle:
        The opened bundle; its model is loaded (safe mode, checksum verified) here.
    batch_size:
        The largest batch one compiled call takes; bigger inputs are split. ~10 saturates a 2-core
        CPU (measured), so 16 there; on a GPU (None) it is measured at :meth:`warm_up`.
    mixed_precision:
        Try float16 inference (GPU only; checked against float32 at load, see
        :attr:`precision`). None: ``--mixed-precision`` (off by default).
    """

    def __init__(
        self,
        bundle: Bundle,
        batch_size: int | None = None,
        mixed_precision: bool | None = None,
    ) -> None:
        self.bundle = bundle
        self.spec = bundle.input_spec
        self.class_names = tuple(bundle.class_names)
        self.head = bundle.head
        self.model = bundle.load_model()
        self.device = describe_device()
        self.on_gpu = self.device.startswith("GPU")
        self._batch_fixed = batch_size is not None
        self.batch_size = batch_size or (GPU_BATCH if self.on_gpu else CPU_BATCH)
        #: images/s per batch size measured at warm-up (GPU only)
        self.batch_throughput: dict[int, float] = {}
        self.precision = "float32"
        self.precision_check: PrecisionCheck | None = None
        self._predict_fn = self._compile(self.model)
        #: what the model-agnostic loops run on (chosen at :meth:`warm_up`)
        self.forward_choice: ForwardChoice | None = None
        self._forward: ForwardCandidate | None = None
        if runtime_config().mixed_precision if mixed_precision is None else mixed_precision:
            self.precision_check = c = self._try_mixed_precision()
            log.info(
                "mixed precision %s (max |p16 - p32| %s over %d check inputs, tolerance %s)%s",
                "used" if c.used else "not used",
                "n/a" if c.max_abs_diff is None else f"{c.max_abs_diff:.2g}",
                c.inputs,
                c.tolerance,
                f": {c.reason}" if c.reason else "",
            )

    def _compile(self, model: Any) -> Any:
        tf = import_tensorflow()
        sig = tf.TensorSpec(
            [None, self.spec.height, self.spec.width, self.spec.channels], tf.float32
        )
        return tf.function(
            lambda x: tf.cast(model(x, training=False), tf.float32),
            input_signature=[sig],
            reduce_retracing=True,
        )

    def _try_mixed_precision(self, require_gpu: bool = True) -> PrecisionCheck:
        """Switch the predict function to float16 if it matches float32 on check inputs."""
        if require_gpu and not self.on_gpu:
            return PrecisionCheck(False, reason="mixed precision is only used on a GPU")
        x = precision_check_inputs(self.spec)
        try:
            twin = mixed_precision_twin(self.model)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return PrecisionCheck(False, reason=f"the model cannot be rebuilt in float16: {exc}")
        fn16 = self._compile(twin)
        # compared as probabilities (a linear head's logits go through its link first)
        p32 = self.head.probabilities(np.asarray(self._predict_fn(x))).astype(np.float64)
        p16 = self.head.probabilities(np.asarray(fn16(x))).astype(np.float64)
        diff = float(np.max(np.abs(p16 - p32))) if np.isfinite(p16).all() else float("inf")
        check = PrecisionCheck(False, diff, inputs=len(x))
        if diff > MIXED_PRECISION_TOLERANCE:
            check.reason = (
                f"float16 differs from float32 by {diff:.3g} (> {MIXED_PRECISION_TOLERANCE})"
            )
            return check
        check.used = True
        self._predict_fn = fn16
        self.precision = "mixed_float16"
        return check

    def warm_up(self) -> None:
        """Trace the compiled function once so the first real call is fast.

        On a GPU (unless the batch size was given) also measure the batch size that
        saturates it (:meth:`measure_batch_sizes`, :func:`pick_batch_size`).
        """
        self.predict_inputs(
            np.zeros((1, self.spec.height, self.spec.width, self.spec.channels), np.float32)
        )
        choice = self.choose_forward_path()
        if choice.throughput:
            self.batch_throughput = dict(choice.throughput[choice.name])
            self.batch_size = choice.batch_size
        elif self.on_gpu and not self._batch_fixed:
            self.batch_throughput = self.measure_batch_sizes(GPU_BATCH_CANDIDATES)
            if self.batch_throughput:
                self.batch_size = pick_batch_size(self.batch_throughput)

    @property
    def forward_path(self) -> str:
        """The path of :meth:`predict_inputs` in words, e.g. ``"onnxruntime (CPU), batch 32"``."""
        label = self.forward_choice.label if self.forward_choice else f"tf.function ({self._kind})"
        return f"{label}, batch {self.batch_size}"

    @property
    def _kind(self) -> str:
        return "GPU" if self.on_gpu else "CPU"

    def choose_forward_path(self, requested: str | None = None) -> ForwardChoice:
        """Verify and time the forward paths (:func:`cxr_viewer.core.model.forward.choose_forward`).

        ``requested``: ``auto``/``tf``/``xla``/``onnx`` (None: ``$CXR_FORWARD``, else auto).
        Mixed precision keeps the TensorFlow path (its float16 outputs are not the reference).
        """
        requested = requested_path(requested)
        kind = self._kind
        tf_candidate = ForwardCandidate("tf", self._predict_fn, kind)
        builders = {
            "xla": lambda: build_xla(self.model, self.spec, kind),
            "onnx": lambda: build_onnx(self.model, self.spec, self.on_gpu, kind),
        }
        if self.precision != "float32":
            builders = {}
        run = functools.partial(
            choose_forward,
            tf_candidate,
            builders,
            check_inputs=precision_check_inputs(self.spec),
            timing_inputs=self._timing_inputs,
            to_probabilities=self.head.probabilities,
            batch_candidates=FORWARD_GPU_BATCHES if self.on_gpu else CPU_BATCH_CANDIDATES,
            auto_paths=AUTO_PATHS_GPU if self.on_gpu else AUTO_PATHS_CPU,
        )
        # auto: the choice made at an earlier load of this model file here is only checked
        root = cache_root() if requested == "auto" and builders else None
        fixed = self.batch_size if self._batch_fixed else None
        key = cache_key(str(self.bundle.metadata.get("model_sha256", "")), kind, fixed)
        remembered = load_cached(root, key)
        if remembered is not None:
            info, graph = remembered
            if graph is not None:
                builders["onnx"] = lambda: build_onnx(
                    self.model, self.spec, self.on_gpu, kind, graph
                )
            choice, chosen = run(
                requested=info["path"], fixed_batch=info["batch_size"], timing=False
            )
            if choice.name == info["path"]:
                choice.requested = "auto (remembered)"
                self.forward_choice, self._forward = choice, chosen
                self.batch_size = choice.batch_size
                return choice
            builders.pop("onnx", None)
            builders["onnx"] = lambda: build_onnx(self.model, self.spec, self.on_gpu, kind)
        choice, chosen = run(requested=requested, fixed_batch=fixed)
        if self.precision != "float32":
            choice.rejected["xla, onnx"] = "mixed precision runs on TensorFlow"
        else:
            if requested == "auto" and not self.on_gpu:
                choice.rejected.setdefault("xla", XLA_CPU_SKIPPED)
            save_cached(root, key, choice, chosen)  # tf too: its candidates failed here
        self.forward_choice, self._forward = choice, chosen
        return choice

    def _timing_inputs(self, n: int) -> np.ndarray:
        shape = (n, self.spec.height, self.spec.width, self.spec.channels)
        rng = np.random.default_rng(0)
        return rng.uniform(*self.spec.value_range, shape).astype(np.float32)

    def measure_batch_sizes(
        self, candidates: tuple[int, ...], repeats: int = 2, gain: float = 1.1
    ) -> dict[int, float]:
        """Images per second of one compiled call at each batch size, smallest first.

        Stops at the first size that gains less than ``gain`` over the best so far (the device
        is saturated) or that runs out of device memory.
        """
        tf = import_tensorflow()
        shape = (self.spec.height, self.spec.width, self.spec.channels)
        x_all = (
            np.random.default_rng(0)
            .uniform(*self.spec.value_range, (max(candidates), *shape))
            .astype(np.float32)
        )
        measured: dict[int, float] = {}
        for b in candidates:
            x = tf.constant(x_all[:b])
            try:
                np.asarray(self._predict_fn(x))  # first call at this size: allocations
                start = time.perf_counter()
                for _ in range(repeats):
                    np.asarray(self._predict_fn(x))
                elapsed = max(time.perf_counter() - start, 1e-9)
            except tf.errors.ResourceExhaustedError:
                break
            rate = b * repeats / elapsed
            best = max(measured.values(), default=0.0)
            measured[b] = rate
            if best and rate < gain * best:
                break
        return measured

    def predict_inputs(
        self,
        x: np.ndarray,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Probabilities (n, classes) for preprocessed inputs (n, h, w, c), in batches.

        Non-finite inputs are refused (:class:`~cxr_viewer.core.errors.InvalidInputError`).
        The model's outputs go through the head (:meth:`cxr_viewer.core.model.heads.Head.probabilities`):
        logits through their link, a single sigmoid unit as ``[1 − p, p]``.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != (
            self.spec.height,
            self.spec.width,
            self.spec.channels,
        ):
            raise ExplainError(
                "Model input has the wrong shape",
                f"got {x.shape}, the model takes (n, {self.spec.height}, {self.spec.width}, {self.spec.channels}).",
            )
        check_finite(x, "this input")
        outs = []
        n = len(x)
        for start in range(0, n, self.batch_size):
            if cancel is not None:
                cancel.raise_if_cancelled()
            chunk = x[start : start + self.batch_size]
            if self._forward is not None:
                raw = self._forward(chunk, self.batch_size)
            else:
                raw = np.asarray(self._predict_fn(chunk))
            outs.append(self.head.probabilities(raw))
            progress(min(1.0, (start + self.batch_size) / max(n, 1)), "predicting")
        return (
            np.concatenate(outs, axis=0)
            if outs
            else np.zeros((0, len(self.class_names)), np.float32)
        )

    def with_model(self, model: Any) -> Classifier:
        """A copy of this classifier running ``model`` instead (same bundle, input, head and
        batch size; on the TensorFlow path). The sanity check (:mod:`cxr_viewer.core.evaluate.sanity`)
        explains randomised copies of the model through it."""
        twin = copy.copy(self)
        twin.model = model
        twin._predict_fn = twin._compile(model)
        twin.forward_choice, twin._forward = None, None
        return twin

    def predict_study(self, study: Study) -> Prediction:
        """The prediction for one study (through the shared preprocessing)."""
        probs = self.predict_inputs(study_to_input(study, self.spec)[None])[0]
        return self.make_prediction(probs)

    def make_prediction(self, probs: np.ndarray) -> Prediction:
        b = self.bundle
        thresholds = None
        if self.head.multilabel:  # independent findings: one threshold each
            thresholds = tuple(float(b.thresholds.get(c, 0.5)) for c in self.class_names)
        return Prediction(
            probabilities=np.asarray(probs, dtype=np.float32),
            class_names=self.class_names,
            threshold=b.threshold,
            positive_class=b.positive_class,
            kind=self.head.kind,
            thresholds=thresholds,
            near_band=b.near_band,
        )


def load_classifier(bundle_path: str | Path, warm_up: bool = True) -> Classifier:
    """Open a bundle and load its classifier (optionally warmed up)."""
    from cxr_viewer.core.model.bundle import open_bundle

    clf = Classifier(open_bundle(bundle_path))
    if warm_up:
        clf.warm_up()
    return clf
