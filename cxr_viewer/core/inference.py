"""The classifier: a bundle's model with a compiled, cached predict function.

Measured on the 2-core CPU (DESIGN.md): eager ``model(x)`` 356 ms, ``model.predict`` 141 ms, a
``tf.function`` with a fixed input signature 65 ms. So one compiled function is built per
classifier, warmed up at load time (its first call traces, ~1 s) and reused for every call.

On a GPU the batch size of that function (which LIME's samples and the trust curves' perturbed
images go through) is chosen at warm-up by measuring throughput (:meth:`Classifier.measure_batch_sizes`);
on the CPU it stays at 16. Mixed precision (float16 compute, float32 weights) is optional, off by
default, GPU only, and used only if its probabilities match float32's within
:data:`MIXED_PRECISION_TOLERANCE` on check inputs at load.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle
from .errors import ExplainError
from .model_io import describe_device, import_tensorflow, runtime_config
from .preprocess import check_finite, study_to_input
from .progress import CancelToken, ProgressFn, no_progress
from .study import Study


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one input."""

    probabilities: np.ndarray
    class_names: tuple[str, ...]
    threshold: float | None = None
    positive_class: str | None = None

    @property
    def predicted_index(self) -> int:
        """Arg-max, or for a binary bundle with a threshold: positive iff p(positive) ≥ threshold."""
        if (
            self.threshold is not None
            and self.positive_class in self.class_names
            and len(self.class_names) == 2
        ):
            pos = self.class_names.index(self.positive_class)
            return pos if self.probabilities[pos] >= self.threshold else 1 - pos
        return int(np.argmax(self.probabilities))

    @property
    def predicted_class(self) -> str:
        return self.class_names[self.predicted_index]

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


def mixed_precision_twin(model):
    """A copy of ``model`` computing in float16 (``mixed_float16``) with the same weights.

    Every layer but the last is rebuilt from its config with the mixed policy (weights stay
    float32); the last keeps float32 so the probabilities are computed in full precision.
    Raises ValueError/TypeError if a layer cannot be rebuilt that way.
    """
    import keras

    last = model.layers[-1].name

    def clone_layer(layer):
        cfg = layer.get_config()
        if layer.name != last and "dtype" in cfg and not isinstance(layer, keras.layers.InputLayer):
            cfg["dtype"] = "mixed_float16"
        return layer.__class__.from_config(cfg)

    twin = keras.models.clone_model(model, clone_function=clone_layer)
    twin.set_weights(model.get_weights())
    return twin


def precision_check_inputs(spec, n: int = 8, seed: int = 0) -> np.ndarray:
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
        CPU (DESIGN.md), so 16 there; on a GPU (None) it is measured at :meth:`warm_up`.
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

    def _compile(self, model):
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
        p32 = np.asarray(self._predict_fn(x), np.float64)
        p16 = np.asarray(fn16(x), np.float64)
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
        if self.on_gpu and not self._batch_fixed:
            self.batch_throughput = self.measure_batch_sizes(GPU_BATCH_CANDIDATES)
            if self.batch_throughput:
                self.batch_size = pick_batch_size(self.batch_throughput)

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
            outs.append(np.asarray(self._predict_fn(x[start : start + self.batch_size])))
            progress(min(1.0, (start + self.batch_size) / max(n, 1)), "predicting")
        return (
            np.concatenate(outs, axis=0)
            if outs
            else np.zeros((0, len(self.class_names)), np.float32)
        )

    def predict_study(self, study: Study) -> Prediction:
        """The prediction for one study (through the shared preprocessing)."""
        probs = self.predict_inputs(study_to_input(study, self.spec)[None])[0]
        return self.make_prediction(probs)

    def make_prediction(self, probs: np.ndarray) -> Prediction:
        return Prediction(
            probabilities=np.asarray(probs, dtype=np.float32),
            class_names=self.class_names,
            threshold=self.bundle.threshold,
            positive_class=self.bundle.positive_class,
        )


def load_classifier(bundle_path, warm_up: bool = True) -> Classifier:
    """Open a bundle and load its classifier (optionally warmed up)."""
    from .bundle import open_bundle

    clf = Classifier(open_bundle(bundle_path))
    if warm_up:
        clf.warm_up()
    return clf
