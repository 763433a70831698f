"""``import_model``: wrap a classifier trained elsewhere into a CXR Lens model bundle."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.bundle import Bundle, sha256_file, write_bundle
from cxr_viewer.core.errors import BundleError, CxrError, ExplainError
from cxr_viewer.core.preprocess import PREPROCESSINGS, InputSpec
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

from .background import make_background
from .configs import declared_input_shape, has_nested_model
from .rebuild import rebuild_flat
from .sources import KERAS2_H5, read_source, reference_for
from .weights import h5_weight_source, keras_weight_source, load_weights

#: largest |Δ| between the original's and the imported model's outputs that counts as identical
TOLERANCE = 1e-4
#: random inputs the import is verified on (plus up to as many background images)
N_VERIFY = 4
DEFAULT_PREPROCESSING = "unit"


def import_model(
    model_path: str | Path,
    class_names: list[str],
    *,
    out_dir: str | Path,
    preprocessing: str | None = None,
    input_size: tuple[int, int] | None = None,
    background_dir: str | Path | None = None,
    positive_class: str | None = None,
    n_background: int = 16,
    name: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Bundle:
    """Import a Keras 3 ``.keras`` or Keras 2 ``.h5`` classifier as a model bundle.

    The model is rebuilt as one flat Keras 3 graph (a nested backbone's layers become layers of
    the model, so Grad-CAM — Selvaraju et al. 2017 — and per-layer SHAP — Lundberg & Lee 2017 —
    can address them), its weights are copied by layer name, and its outputs are checked
    against the original's on random inputs and background images; any difference above
    :data:`TOLERANCE` refuses the import.

    Parameters
    ----------
    model_path:
        The ``.keras`` / ``.h5`` file. SavedModel folders, Lambda layers, models without
        convolutional feature maps and models whose output count differs from the class count
        are refused with :class:`BundleError`.
    class_names:
        One name per model output, in output order.
    out_dir:
        The bundle folder to write.
    preprocessing:
        ``"unit"`` ([0, 1]) or ``"symmetric"`` ([-1, 1]); None means ``"unit"``, recorded in
        the metadata as assumed rather than given.
    input_size:
        (rows, columns); required when the model accepts any size, else it must match.
    background_dir:
        Images (PNG/JPEG/DICOM) for the SHAP background set; without it, synthetic phantoms
        are used and the metadata says so.
    positive_class:
        The class a binary bundle reports as positive.
    """
    start = time.perf_counter()
    model_path = Path(model_path)
    classes = _check_classes(class_names, positive_class)
    if preprocessing is not None and preprocessing not in PREPROCESSINGS:
        raise BundleError(
            f"Unknown preprocessing '{preprocessing}'", f"choose one of {sorted(PREPROCESSINGS)}."
        )
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists", "", "Choose a new folder or allow overwriting.")

    step = _Steps(progress, cancel)
    step(0.02, f"reading {model_path.name}")
    source = read_source(model_path)
    spec = _input_spec(source.config, input_size, preprocessing or DEFAULT_PREPROCESSING)
    nested = has_nested_model(source.config)

    step(0.15, "rebuilding the model as a flat graph" if nested else "rebuilding the model")
    flat = rebuild_flat(
        source.config, legacy=source.legacy, input_shape=(spec.height, spec.width, spec.channels)
    )
    _check_outputs(flat.model, classes)
    step(0.35, "loading the weights")
    weights = (
        h5_weight_source(model_path)
        if source.format == KERAS2_H5
        else keras_weight_source(source.model)
    )
    n_weights = load_weights(flat, weights)

    step(0.5, "choosing the explanation layers")
    gradcam_layer, shap_layers = _explanation_layers(flat.model)

    step(0.6, "making the SHAP background set")
    background, bg_source = make_background(spec, background_dir, n_background, cancel)

    step(0.75, "checking the imported model against the original")
    reference, reference_name = reference_for(source)
    if reference is None:
        raise BundleError(
            f"Cannot verify the import of {model_path.name}",
            "the file is a Keras 2 model with a nested backbone: Keras 3 cannot load it as it "
            "is, and tf_keras (Keras 2), needed to compute its original outputs, is not "
            "installed.",
            "Install it (pip install tf_keras) and import again.",
        )
    probe = _probe_inputs(spec, background)
    expected = reference(probe)
    got = np.asarray(flat.model(probe, training=False))
    diff = _compare(expected, got, model_path.name, reference_name)
    activation = _output_activation(got, model_path.name)

    step(0.88, "writing the bundle")
    extra: dict[str, Any] = {
        "imported": True,
        "source_file": model_path.name,
        "source_format": source.format,
        "source_sha256": sha256_file(model_path),
        "source_keras_version": source.keras_version,
        "preprocessing": spec.preprocessing,
        "preprocessing_given": preprocessing is not None,
        "classes": classes,
        "flattened_nested_models": flat.nested,
        "output": {"activation": activation, "classes": len(classes)},
        "background_source": bg_source,
        "verification": {
            "reference": reference_name,
            "inputs": int(len(probe)),
            "max_abs_diff": diff,
            "tolerance": TOLERANCE,
        },
        "import_notes": flat.notes,
        "weights_loaded": n_weights,
    }
    if flat.renamed:
        extra["renamed_layers"] = flat.renamed
    if positive_class:
        extra["positive_class"] = positive_class
    bundle = write_bundle(
        out,
        flat.model,
        name=name or model_path.stem,
        class_names=classes,
        input_spec=spec,
        gradcam_layer=gradcam_layer,
        shap_layers=shap_layers,
        background=background,
        extra=extra,
        overwrite=overwrite,
    )
    step(0.95, "re-opening the bundle")
    try:
        reloaded = np.asarray(bundle.load_model()(probe, training=False))
        _compare(expected, reloaded, model_path.name, reference_name)
    except CxrError:
        shutil.rmtree(bundle.root, ignore_errors=True)
        raise
    progress(1.0, f"imported in {time.perf_counter() - start:.1f} s")
    return bundle


class _Steps:
    def __init__(self, progress: ProgressFn, cancel: CancelToken | None) -> None:
        self.progress, self.cancel = progress, cancel

    def __call__(self, fraction: float, message: str) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.progress(fraction, message)


def _check_classes(class_names: list[str], positive_class: str | None) -> list[str]:
    classes = [str(c).strip() for c in class_names]
    if len(classes) < 2 or any(not c for c in classes) or len(set(classes)) != len(classes):
        raise BundleError(
            "Invalid class names",
            f"got {classes}: a classifier needs at least two distinct, non-empty names.",
            "Give one name per model output, in output order.",
        )
    if positive_class is not None and positive_class not in classes:
        raise BundleError(
            f"The positive class '{positive_class}' is not one of the classes",
            f"the classes are {classes}.",
        )
    return classes


def _input_spec(config: dict, input_size, preprocessing: str) -> InputSpec:
    shape = declared_input_shape(config)
    if shape is None or len(shape) != 4:
        raise BundleError(
            "Cannot tell the model's input shape",
            f"the file declares {shape}; CXR Lens expects (batch, rows, columns, channels).",
            "Pass the input size (--input-size H W) and a model taking 1 or 3 channels.",
        )
    _, rows, cols, channels = shape
    if channels not in (1, 3):
        raise BundleError(
            "Unsupported model input",
            f"the model takes {channels} channels; chest X-ray models take 1 or 3.",
        )
    if input_size is not None:
        h, w = (int(v) for v in input_size)
        if (rows is not None and rows != h) or (cols is not None and cols != w):
            raise BundleError(
                f"The model takes {rows}×{cols} inputs, not {h}×{w}",
                "its input layer has a fixed size.",
                "Leave the input size out (it is read from the model) or give the model's size.",
            )
        rows, cols = h, w
    if rows is None or cols is None:
        raise BundleError(
            "The model accepts any input size",
            "CXR Lens needs the size the model was trained at.",
            "Pass it with --input-size H W.",
        )
    return InputSpec(int(rows), int(cols), int(channels), preprocessing)


def _check_outputs(model, classes: list[str]) -> None:
    shape = tuple(model.outputs[0].shape)
    n = shape[-1] if len(shape) == 2 else None
    if n != len(classes):
        raise BundleError(
            "The model's outputs do not match the class names",
            f"it gives {n if n is not None else shape[1:]} outputs per image, you named "
            f"{len(classes)} classes ({', '.join(classes)}).",
            "Give exactly one class name per output, in output order (a single sigmoid output "
            "must be re-exported as a 2-unit softmax).",
        )


def _explanation_layers(model) -> tuple[str, list[str]]:
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers

    try:
        gradcam = default_gradcam_layer(model)
    except ExplainError as exc:
        raise BundleError(
            "Cannot import a model CXR Lens cannot explain",
            f"{exc.what}: {exc.why}",
            "Grad-CAM and per-layer SHAP need a convolutional classifier.",
        ) from exc
    return gradcam, list(shap_layers(model))


def _probe_inputs(spec: InputSpec, background: np.ndarray) -> np.ndarray:
    lo, hi = spec.value_range
    rng = np.random.default_rng(0)
    rand = rng.uniform(lo, hi, size=(N_VERIFY, spec.height, spec.width, spec.channels))
    return np.concatenate([rand.astype(np.float32), background[:N_VERIFY]], axis=0)


def _compare(expected, got, source_name: str, reference_name: str) -> float:
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        raise BundleError(
            f"The imported model does not reproduce {source_name}",
            f"output shapes differ: {expected.shape} (original, {reference_name}) vs {got.shape}.",
        )
    diff = float(np.max(np.abs(expected.astype(np.float64) - got)))
    if not np.isfinite(diff) or diff > TOLERANCE:
        raise BundleError(
            f"The imported model does not reproduce {source_name}",
            f"its outputs differ from the original's ({reference_name}) by up to {diff:.3g} "
            f"(tolerance {TOLERANCE:g}).",
            "The architecture could not be translated faithfully to Keras 3; re-save the model "
            "with Keras 3 (model.save('model.keras')) and import that.",
        )
    return diff


def _output_activation(probs: np.ndarray, source_name: str) -> str:
    if probs.min() < -1e-6 or probs.max() > 1 + 1e-6:
        raise BundleError(
            f"{source_name} does not output probabilities",
            f"its outputs range over [{probs.min():.3g}, {probs.max():.3g}]; CXR Lens shows "
            "class probabilities.",
            "End the model with a softmax layer and save it again.",
        )
    return "softmax" if np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4) else "sigmoid"
