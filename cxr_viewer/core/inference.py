"""The classifier: a bundle's model with a compiled, cached predict function.

Measured on the 2-core CPU (DESIGN.md): eager ``model(x)`` 356 ms, ``model.predict`` 141 ms, a
``tf.function`` with a fixed input signature 65 ms. So one compiled function is built per
classifier, warmed up at load time (its first call traces, ~1 s) and reused for every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bundle import Bundle
from .errors import ExplainError
from .model_io import describe_device, import_tensorflow
from .preprocess import study_to_input
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


class Classifier:
    """A loaded model bundle ready for inference.

    Parameters
    ----------
    bundle:
        The opened bundle; its model is loaded (safe mode, checksum verified) here.
    batch_size:
        The largest batch one compiled call takes; bigger inputs are split. ~10 saturates a 2-core
        CPU (DESIGN.md); GPUs take more.
    """

    def __init__(self, bundle: Bundle, batch_size: int | None = None) -> None:
        self.bundle = bundle
        self.spec = bundle.input_spec
        self.class_names = tuple(bundle.class_names)
        self.model = bundle.load_model()
        self.device = describe_device()
        self.batch_size = batch_size or (64 if self.device.startswith("GPU") else 16)
        tf = import_tensorflow()
        sig = tf.TensorSpec(
            [None, self.spec.height, self.spec.width, self.spec.channels], tf.float32
        )
        model = self.model
        self._predict_fn = tf.function(
            lambda x: model(x, training=False), input_signature=[sig], reduce_retracing=True
        )

    def warm_up(self) -> None:
        """Trace the compiled function once so the first real call is fast."""
        self.predict_inputs(
            np.zeros((1, self.spec.height, self.spec.width, self.spec.channels), np.float32)
        )

    def predict_inputs(
        self,
        x: np.ndarray,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
    ) -> np.ndarray:
        """Probabilities (n, classes) for preprocessed inputs (n, h, w, c), in batches."""
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
