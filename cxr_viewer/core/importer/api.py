"""``import_model``: wrap a classifier trained elsewhere into a CXR Lens model bundle."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from cxr_viewer.core.errors import BundleError, CxrError, ExplainError
from cxr_viewer.core.explain.registry import UNAVAILABLE_KEY
from cxr_viewer.core.model.bundle import Bundle, sha256_file, write_bundle
from cxr_viewer.core.model.heads import HEAD_KINDS, Head, head_kind, propose_head
from cxr_viewer.core.model.preprocess import INTERPOLATIONS, PREPROCESSINGS, InputSpec, Intensity
from cxr_viewer.core.progress import CancelToken, ProgressFn, no_progress

from .background import make_background
from .configs import REFUSED_HINT, declared_input_shape, has_nested_model
from .inspect import CANDIDATES, ModelSummary, summarize_config
from .rebuild import FlatModel, rebuild_flat
from .sources import KERAS2_H5, SourceModel, read_source, reference_for
from .weights import h5_weight_source, keras_weight_source, load_weights

#: largest |Δ| between the original's and the imported model's outputs that counts as identical
TOLERANCE = 1e-4
#: random inputs the import is verified on (plus up to as many background images)
N_VERIFY = 4


@dataclass
class Prepared:
    """A model file read, rebuilt flat and weighted, before any bundle is written."""

    source: SourceModel
    summary: ModelSummary
    flat: FlatModel
    rows: int
    columns: int
    channels: int
    n_weights: int
    #: the preprocess_input Lambda replaced by a convention (:func:`_lambda_convention`)
    preprocess_lambda: dict[str, Any] | None = None

    @property
    def units(self) -> int:
        return int(self.flat.model.outputs[0].shape[-1])

    def spec(
        self, preprocessing: str, interpolation: str = "auto", intensity: Intensity | None = None
    ) -> InputSpec:
        return InputSpec(
            self.rows,
            self.columns,
            self.channels,
            preprocessing,
            interpolation,
            intensity or Intensity(),
        )


def prepare(
    model_path: str | Path,
    *,
    input_size: tuple[int, int] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Prepared:
    """Read ``model_path``, rebuild it as a flat Keras 3 graph and load its weights."""
    model_path = Path(model_path)
    step = _Steps(progress, cancel)
    step(0.02, f"reading {model_path.name}")
    source = read_source(model_path)
    summary = summarize_config(source.config)
    rows, cols, channels = _input_shape(source.config, input_size)
    nested = has_nested_model(source.config)
    step(0.15, "rebuilding the model as a flat graph" if nested else "rebuilding the model")
    flat = rebuild_flat(source.config, legacy=source.legacy, input_shape=(rows, cols, channels))
    shape = tuple(flat.model.outputs[0].shape)
    if len(shape) != 2:
        raise BundleError(
            "The model's output is not one score per class",
            f"it gives outputs of shape {shape[1:]} per image.",
            "Import a classifier whose last layer gives one value per class or finding.",
        )
    step(0.35, "loading the weights")
    weights = (
        h5_weight_source(model_path, flat.sources.values())
        if source.format == KERAS2_H5
        else keras_weight_source(source.model)
    )
    n_weights = load_weights(flat, weights)
    summary = _refine_normalization(summary, flat.model)
    lambda_info = _lambda_convention(source)
    if lambda_info is not None:
        summary.preprocessing = lambda_info["convention"]
        summary.preprocessing_reason = (
            f"its Lambda layer '{lambda_info['layer']}' is keras.applications."
            f"{lambda_info['application']}.preprocess_input, replaced by the "
            f"{lambda_info['convention']} convention"
        )
    return Prepared(source, summary, flat, rows, cols, channels, n_weights, lambda_info)


def _lambda_convention(source: SourceModel) -> dict[str, Any] | None:
    """The convention replacing the model's preprocess_input Lambda, checked, or None.

    The Lambda must be the model's first step (it reads the input layer) and the only one. Its
    application is read from its configuration (Keras 2), else from the backbone it feeds
    (Keras 3 stores the function's name only). The convention is then checked against the
    *installed* library's ``preprocess_input`` on 0–255 pixels (library code, not the file's).
    """
    from .configs import APPLICATION_CONVENTIONS
    from .inspect import _BACKBONE_RULES, _nested_names

    found = source.preprocess_lambdas
    if not found:
        return None
    inputs = {
        str(ld.get("name") or ld.get("config", {}).get("name"))
        for ld in source.config.get("config", {}).get("layers", [])
        if ld.get("class_name") == "InputLayer"
    }
    name, app, evidence, reads = found[0]
    if len(found) > 1 or not set(reads) <= inputs or not reads:
        raise BundleError(
            f"Cannot import the model: layer '{name}' is a preprocess_input Lambda that is not "
            "the model's first step",
            "CXR Lens replaces such a Lambda by its input convention, which is applied to the "
            "image before the model; here it reads "
            f"{', '.join(reads) or 'nothing'}"
            + (f" and there are {len(found)} of them" if len(found) > 1 else "")
            + ".",
            REFUSED_HINT,
        )
    checked_app = app
    if app is None:  # Keras 3: the backbone it feeds tells which application's
        for nested in _nested_names(source.config):
            for pattern, pre in _BACKBONE_RULES:
                if re.search(pattern, nested):
                    app, checked_app = nested, _REPRESENTATIVE[pre]
                    evidence += f", feeding the keras.applications backbone '{nested}'"
                    break
            if app is not None:
                break
    if app is None or checked_app is None:
        raise BundleError(
            f"Cannot import the model: layer '{name}' is a Lambda",
            "it wraps a function named preprocess_input, but no keras.applications backbone "
            "follows it to tell which application's (each scales pixels differently), and the "
            "Lambda's code is never run.",
            REFUSED_HINT,
        )
    convention = APPLICATION_CONVENTIONS[checked_app]
    check = _library_check(checked_app, convention)
    return {
        "layer": name,
        "application": app,
        "convention": convention,
        "evidence": evidence,
        "library_max_abs_diff": check,
    }


#: convention → a keras.applications module whose preprocess_input computes it
_REPRESENTATIVE = {
    "torch": "densenet",
    "raw": "efficientnet",
    "caffe": "resnet50",
    "symmetric": "mobilenet_v2",
}


def _library_check(app: str, convention: str) -> float:
    """max |installed keras.applications.<app>.preprocess_input(pixels) − the convention|."""
    import importlib

    from cxr_viewer.core.model.preprocess import normalize

    module = importlib.import_module(f"keras.applications.{app}")
    pixels = np.linspace(0.0, 255.0, 16 * 16, dtype=np.float32).reshape(1, 16, 16, 1)
    grey = np.repeat(pixels, 3, axis=-1)
    expected = np.asarray(module.preprocess_input(grey.copy()), dtype=np.float64)
    spec = InputSpec(16, 16, 3, convention)
    got = normalize(grey[..., :1] / 255.0, spec)
    diff = float(np.max(np.abs(expected - got)))
    if diff > 1e-3:
        raise BundleError(
            f"Cannot replace keras.applications.{app}.preprocess_input by a convention",
            f"the {convention} convention differs from it by up to {diff:.3g} on 0-255 pixels.",
            REFUSED_HINT,
        )
    return diff


def import_model(
    model_path: str | Path,
    class_names: list[str],
    *,
    out_dir: str | Path,
    preprocessing: str | None = None,
    input_size: tuple[int, int] | None = None,
    background_dir: str | Path | None = None,
    positive_class: str | None = None,
    head: str | None = None,
    threshold: float | None = None,
    thresholds: dict[str, float] | None = None,
    near_band: float | None = None,
    n_background: int = 16,
    name: str | None = None,
    overwrite: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    interpolation: str | None = None,
    intensity: Intensity | None = None,
    reference_predictions: str | Path | None = None,
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
        The ``.keras`` / ``.h5`` file. SavedModel folders and Lambda layers are refused with
        :class:`BundleError`. A model without convolutional feature maps is imported with the
        methods that apply to it (LIME, occlusion); why Grad-CAM and SHAP do not is recorded
        under ``methods_unavailable`` (:func:`cxr_viewer.core.explain.registry.method_unavailable`).
    class_names:
        One name per model output, in output order. For a single sigmoid unit: the positive
        finding's name, or ``[negative, positive]``.
    out_dir:
        The bundle folder to write.
    preprocessing:
        One of :data:`cxr_viewer.core.model.preprocess.PREPROCESSINGS`; None takes the proposal of
        :func:`.inspect.propose_preprocessing` (a Rescaling layer, the backbone, else ``unit``),
        recorded in the metadata as proposed rather than given.
    input_size:
        (rows, columns); required when the model accepts any size, else it must match.
    background_dir:
        Images (PNG/JPEG/DICOM) for the SHAP background set; without it, synthetic phantoms
        are used and the metadata says so.
    positive_class:
        The class a two-class bundle thresholds (a single sigmoid unit: its finding).
    head:
        ``softmax``, ``binary`` or ``multilabel``; None takes the proposal (one unit: binary;
        softmax: softmax; several sigmoid units: multilabel; linear: softmax logits).
    threshold, thresholds:
        The binary decision threshold (default 0.5), and per-finding thresholds of a
        multi-label head (default 0.5 each).
    near_band:
        The viewer flags a probability this close to its threshold (default 0.05).
    interpolation, intensity:
        The training pipeline's resize interpolation (a key of
        :data:`~cxr_viewer.core.model.preprocess.INTERPOLATIONS`) and linear intensity step, as the
        user states them; None: ``auto`` and none, or the best match on the reference films.
    reference_predictions:
        A CSV of the model's outputs on a few films through the user's own pipeline
        (:func:`.pipeline_match.read_reference`). Every candidate preprocessing (the parts not
        stated) is run on those films; the best is used, and a poor best match is recorded as a
        warning under ``preprocessing_check`` (:mod:`.pipeline_match`).
    """
    start = time.perf_counter()
    model_path = Path(model_path)
    if preprocessing is not None and preprocessing not in PREPROCESSINGS:
        raise BundleError(
            f"Unknown preprocessing '{preprocessing}'", f"choose one of {sorted(PREPROCESSINGS)}."
        )
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise BundleError(
            f"Unknown resize interpolation '{interpolation}'",
            f"choose one of {', '.join(INTERPOLATIONS)}.",
        )
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleError(f"{out} already exists", "", "Choose a new folder or allow overwriting.")

    step = _Steps(progress, cancel)
    prep = prepare(model_path, input_size=input_size, progress=progress, cancel=cancel)
    summary, flat, source = prep.summary, prep.flat, prep.source
    if prep.preprocess_lambda is not None and preprocessing not in (
        None,
        prep.preprocess_lambda["convention"],
    ):
        raise BundleError(
            f"The model does its own preprocessing: not '{preprocessing}'",
            f"its first layer is {prep.summary.preprocessing_reason}.",
            "Leave --preprocess out (or give that convention).",
        )
    spec = prep.spec(preprocessing or summary.preprocessing, interpolation or "auto", intensity)
    _check_head_request(head, prep.units)
    # the class names are checked against the output count before anything slow runs
    early_kind = head or propose_head(prep.units, summary.activation or "sigmoid")
    _resolve_classes(class_names, early_kind, prep.units, None)

    check: dict[str, Any] | None = None
    if reference_predictions is not None:
        step(0.45, "comparing preprocessings with the model's own pipeline")
        spec, check = _match_reference(
            prep, spec, reference_predictions, preprocessing, interpolation, intensity
        )

    step(0.5, "choosing the explanation layers")
    gradcam_layer, shap_layers, unavailable = _explanation_layers(flat.model)

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
    activation = _output_activation(flat.model, summary.activation, got, model_path.name)
    kind = head or propose_head(prep.units, activation, _sums_to_one(got))
    out_head = Head(kind, prep.units, activation)
    classes, positive = _resolve_classes(class_names, kind, prep.units, positive_class)

    step(0.88, "writing the bundle")
    extra: dict[str, Any] = {
        "imported": True,
        "source_file": model_path.name,
        "source_format": source.format,
        "source_sha256": sha256_file(model_path),
        "source_keras_version": source.keras_version,
        "preprocessing": spec.preprocessing,
        "preprocessing_given": preprocessing is not None,
        "preprocessing_proposed": summary.preprocessing,
        "preprocessing_reason": summary.preprocessing_reason,
        "preprocessing_check": check
        or {"checked": False, "why": "no reference predictions were given"},
        "head_given": head is not None,
        "classes": classes,
        "flattened_nested_models": flat.nested,
        "background_source": bg_source,
        "verification": {
            "reference": reference_name,
            "inputs": int(len(probe)),
            "max_abs_diff": diff,
            "tolerance": TOLERANCE,
        },
        "import_notes": flat.notes,
        "preprocess_lambda": prep.preprocess_lambda,
        "weights_loaded": prep.n_weights,
        UNAVAILABLE_KEY: unavailable,
    }
    if flat.renamed:
        extra["renamed_layers"] = flat.renamed
    extra.update(_decision_metadata(out_head, classes, positive, threshold, thresholds, near_band))
    bundle = write_bundle(
        out,
        flat.model,
        name=name or model_path.stem,
        class_names=classes,
        input_spec=spec,
        gradcam_layer=gradcam_layer,
        shap_layers=shap_layers,
        background=None if "shap" in unavailable else background,
        extra=extra,
        overwrite=overwrite,
        head=out_head,
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


def _decision_metadata(
    head: Head,
    classes: list[str],
    positive: str | None,
    threshold: float | None,
    thresholds: dict[str, float] | None,
    near_band: float | None,
) -> dict[str, Any]:
    """The metadata of the decision rule: near band, positive class, the threshold (a head
    kind with a default one, e.g. binary, always gets it) and per-finding thresholds."""
    extra: dict[str, Any] = {}
    if near_band is not None:
        if not 0.0 <= float(near_band) <= 0.5:
            raise BundleError("The near-threshold band must be in [0, 0.5]", f"got {near_band}.")
        extra["near_threshold_band"] = float(near_band)
    if positive:
        extra["positive_class"] = positive
    if threshold is not None:
        extra["threshold"] = _check_threshold("threshold", threshold)
    elif head.spec.default_threshold is not None:
        extra["threshold"] = head.spec.default_threshold
    if head.multilabel:
        given = dict(thresholds or {})
        unknown = sorted(set(given) - set(classes))
        if unknown:
            raise BundleError(
                f"Thresholds for unknown findings: {', '.join(unknown)}",
                f"the findings are {', '.join(classes)}.",
            )
        extra["thresholds"] = {c: _check_threshold(c, given.get(c, 0.5)) for c in classes}
    return extra


def _match_reference(
    prep: Prepared,
    spec: InputSpec,
    csv_path: str | Path,
    preprocessing: str | None,
    interpolation: str | None,
    intensity: Intensity | None,
) -> tuple[InputSpec, dict[str, Any]]:
    """The spec whose unstated parts best reproduce the reference outputs, and the record."""
    from .pipeline_match import (
        GOOD_DP,
        GOOD_RHO,
        TRIED_INTERPOLATIONS,
        is_poor,
        match_pipeline,
        read_reference,
        warning_text,
    )

    images, reference = read_reference(csv_path, prep.units)
    model = prep.flat.model
    ranked = match_pipeline(
        lambda x: np.asarray(model(x, training=False)),
        spec,
        images,
        reference,
        conventions=(preprocessing,) if preprocessing else CANDIDATES,
        intensities=(intensity,) if intensity else (Intensity(),),
        interpolations=(interpolation,) if interpolation else TRIED_INTERPOLATIONS,
    )
    best = ranked[0]
    record: dict[str, Any] = {
        "checked": True,
        "reference_file": Path(csv_path).name,
        "films": len(images),
        "best": best.to_dict(),
        "candidates": [c.to_dict() for c in ranked[:10]],
        "thresholds": {"spearman_rho": GOOD_RHO, "max_abs_dp": GOOD_DP},
    }
    if is_poor(best):
        record["warning"] = warning_text(best, len(images))
    chosen = prep.spec(best.preprocessing, best.interpolation, best.intensity)
    return chosen, record


def preview_predictions(
    prep: Prepared,
    images01: list[np.ndarray],
    *,
    head: str | None = None,
    candidates: tuple[str, ...] = CANDIDATES,
) -> dict[str, np.ndarray]:
    """Probabilities (n images, classes) of the prepared model under each preprocessing.

    ``images01`` are display images in [0, 1] (:func:`cxr_viewer.core.io.display.display_image`);
    each goes through the shared preprocessing with every candidate, so the user can see which
    convention gives sane predictions before saving.
    """
    from cxr_viewer.core.model.preprocess import image01_to_input

    out: dict[str, np.ndarray] = {}
    out_head = None
    for name in candidates:
        spec = prep.spec(name)
        x = np.stack([image01_to_input(img, spec) for img in images01]).astype(np.float32)
        raw = np.asarray(prep.flat.model(x, training=False))
        if out_head is None:
            act = _output_activation(prep.flat.model, prep.summary.activation, raw, "the model")
            kind = head or propose_head(prep.units, act, _sums_to_one(raw))
            out_head = Head(kind, prep.units, act)
        out[name] = out_head.probabilities(raw)
    return out


class _Steps:
    def __init__(self, progress: ProgressFn, cancel: CancelToken | None) -> None:
        self.progress, self.cancel = progress, cancel

    def __call__(self, fraction: float, message: str) -> None:
        if self.cancel is not None:
            self.cancel.raise_if_cancelled()
        self.progress(fraction, message)


def _check_head_request(head: str | None, units: int) -> None:
    if head is None:
        return
    if head not in HEAD_KINDS:
        raise BundleError(f"Unknown head '{head}'", f"choose one of {', '.join(HEAD_KINDS)}.")
    kind = head_kind(head)
    if kind.single_unit and units != 1:
        raise BundleError(
            f"A {head} head has one sigmoid output",
            f"this model has {units} outputs.",
            "Import it as softmax (exclusive classes) or multilabel (independent findings).",
        )
    if not kind.single_unit and units == 1:
        raise BundleError(
            f"A single output cannot be a {head} head",
            "one sigmoid unit is a binary model: name its positive finding.",
        )


def _resolve_classes(
    class_names: list[str], kind: str, units: int, positive_class: str | None
) -> tuple[list[str], str | None]:
    """(class list of the bundle, positive class) for a ``kind`` head with ``units`` outputs."""
    classes = [str(c).strip() for c in class_names]
    if not classes or any(not c for c in classes) or len(set(classes)) != len(classes):
        raise BundleError(
            "Invalid class names",
            f"got {classes}: give distinct, non-empty names.",
            "Give one name per model output, in output order.",
        )
    if head_kind(kind).single_unit:
        if len(classes) == 1:
            classes = [f"no {classes[0]}", classes[0]]
        if len(classes) != 2:
            raise BundleError(
                "The model's outputs do not match the class names",
                f"it has one sigmoid output (one finding), you named {len(classes)} classes "
                f"({', '.join(classes)}).",
                "Name the positive finding (and optionally the negative first: "
                "'normal, pneumonia').",
            )
        if positive_class is not None and positive_class != classes[1]:
            if positive_class == classes[0]:
                raise BundleError(
                    f"'{positive_class}' cannot be the positive class",
                    "a single sigmoid output is the probability of the *last* name given.",
                    "Name the negative class first and the positive finding last.",
                )
            raise BundleError(
                f"The positive class '{positive_class}' is not one of the classes",
                f"the classes are {classes}.",
            )
        return classes, classes[1]
    if len(classes) != units:
        what = "findings" if head_kind(kind).findings else "classes"
        raise BundleError(
            "The model's outputs do not match the class names",
            f"it gives {units} outputs per image, you named {len(classes)} {what} "
            f"({', '.join(classes)}).",
            "Give exactly one name per output, in output order.",
        )
    if positive_class is not None and positive_class not in classes:
        raise BundleError(
            f"The positive class '{positive_class}' is not one of the classes",
            f"the classes are {classes}.",
        )
    return classes, positive_class


def _check_threshold(name: str, value: Any) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"The threshold of '{name}' is not a number", f"got {value!r}.") from exc
    if not 0.0 < t < 1.0:
        raise BundleError(f"The threshold of '{name}' must be between 0 and 1", f"got {t}.")
    return t


def _input_shape(
    config: dict[str, Any], input_size: tuple[int, int] | None
) -> tuple[int, int, int]:
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
    return int(rows), int(cols), int(channels)


def _refine_normalization(summary: ModelSummary, model: Any) -> ModelSummary:
    """A Normalization layer whose mean lives in its weights: read it to tell raw from [0, 1]."""
    if "normalises itself" not in summary.preprocessing_reason:
        return summary
    for layer in model.layers:
        if type(layer).__name__ == "Normalization" and getattr(layer, "mean", None) is not None:
            mean = float(np.abs(np.asarray(layer.mean)).max())
            pre = "raw" if mean > 2.0 else "unit"
            unit = "pixel units" if pre == "raw" else "[0, 1] units"
            summary.preprocessing = pre
            summary.preprocessing_reason = (
                f"the model starts with a Normalization layer (mean in {unit})"
            )
            break
    return summary


def _explanation_layers(model: Any) -> tuple[str | None, list[str], dict[str, str]]:
    """(Grad-CAM layer, SHAP layers, method → why it does not apply) of the rebuilt model.

    A model without convolutional feature maps (Flatten → Dense) has no layer Grad-CAM or
    per-layer SHAP can be computed at; it is imported with LIME and occlusion, which perturb
    the input only, and the two refusals are recorded in the bundle.
    """
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers

    unavailable: dict[str, str] = {}
    try:
        gradcam: str | None = default_gradcam_layer(model)
    except ExplainError as exc:
        gradcam = None
        unavailable["gradcam"] = (
            "the model has no convolutional feature maps (no layer with a rows × columns × "
            "channels output): Grad-CAM weights such maps by their gradients"
        )
        del exc
    layers = list(shap_layers(model))
    if not layers:
        unavailable["shap"] = (
            "the model has no layer of feature maps that every path from input to output "
            "passes through: per-layer SHAP attributes the prediction to such a layer"
        )
    return gradcam, layers, unavailable


def _probe_inputs(spec: InputSpec, background: np.ndarray) -> np.ndarray:
    lo, hi = spec.channel_range
    rng = np.random.default_rng(0)
    rand = rng.uniform(lo, hi, size=(N_VERIFY, spec.height, spec.width, spec.channels))
    return np.concatenate([rand.astype(np.float32), background[:N_VERIFY]], axis=0)


def _compare(
    expected_values: npt.ArrayLike, got_values: npt.ArrayLike, source_name: str, reference_name: str
) -> float:
    expected, got = np.asarray(expected_values), np.asarray(got_values)
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


def _sums_to_one(outputs: np.ndarray) -> bool:
    out = np.asarray(outputs)
    return bool(
        out.shape[-1] > 1
        and out.min() >= -1e-6
        and out.max() <= 1 + 1e-6
        and np.allclose(out.sum(axis=-1), 1.0, atol=1e-4)
    )


def _output_activation(
    model: Any, declared: str | None, outputs: np.ndarray, source_name: str
) -> str:
    """The model's final activation: from its configuration or graph, checked on its outputs."""
    from cxr_viewer.core.model.graph import final_score_parts

    activation = declared
    if activation is None:
        _, kind, op = final_score_parts(model)
        name = getattr(getattr(op, "activation", None), "__name__", None)
        if type(op).__name__ == "Softmax":
            activation = "softmax"
        elif kind in ("dense_logit", "logit") and name in ("softmax", "sigmoid"):
            activation = name
        elif type(op).__name__ == "Dense" and name == "linear":
            activation = "linear"
    out = np.asarray(outputs)
    in_unit = bool(out.min() >= -1e-6 and out.max() <= 1 + 1e-6)
    if activation is None:
        if _sums_to_one(out):
            activation = "softmax"
        elif in_unit:
            activation = "sigmoid"
        else:
            raise BundleError(
                f"{source_name} does not output probabilities or logits",
                "its last layer is neither a softmax, a sigmoid nor a linear Dense layer, and "
                f"its outputs range over [{out.min():.3g}, {out.max():.3g}].",
                "End the model with a Dense layer (softmax, sigmoid or linear) and save it again.",
            )
    if activation in ("softmax", "sigmoid") and not in_unit:
        raise BundleError(
            f"{source_name} does not output probabilities",
            f"its last layer is a {activation} but its outputs range over "
            f"[{out.min():.3g}, {out.max():.3g}].",
            "The file may be damaged; save the model again.",
        )
    return activation
