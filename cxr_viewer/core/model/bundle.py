"""The model bundle: the contract between the trainer and the viewer.

A bundle is a folder (or a ``.zip`` of one) holding::

    model.keras        the Keras 3 model (loaded with safe_mode=True)
    metadata.json      what the viewer needs to use and explain it (schema below)
    background.npy     a small set of model inputs for SHAP, plain float32, no pickle

Both sides read and write it through this module only. The schema follows the spirit of
MONAI's bundle ``metadata.json``: a version, what the model takes and gives, how it was made,
how well it did and what it is for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import BundleError
from cxr_viewer.core.io import jsonio
from cxr_viewer.core.io.archive import BUNDLE_LIMITS, extract_zip
from cxr_viewer.core.model.bundle_schema import (
    MAX_METADATA_BYTES,
    SCHEMA,
    SCHEMA_VERSION,
    section,
    validate_metadata,
)
from cxr_viewer.core.model.heads import DEFAULT_NEAR_BAND, Head
from cxr_viewer.core.model.preprocess import InputSpec

MODEL_FILE = "model.keras"
METADATA_FILE = "metadata.json"
BACKGROUND_FILE = "background.npy"
INTENDED_USE = "research and demonstration, not for diagnosis"
REQUIRED_KEYS = tuple(key for key, spec in SCHEMA.items() if spec.required)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Bundle:
    """A model bundle opened from disk (the model itself is loaded lazily, see ``load_model``).

    Attributes mirror ``metadata.json``; ``metadata`` keeps the whole document for display.
    """

    root: Path
    metadata: dict[str, Any]
    input_spec: InputSpec
    class_names: list[str]
    gradcam_layer: str | None = None
    shap_layers: list[str] = field(default_factory=list)
    threshold: float | None = None
    positive_class: str | None = None
    head: Head = field(default_factory=Head)
    #: finding → decision threshold (multi-label heads; a missing finding uses 0.5)
    thresholds: dict[str, float] = field(default_factory=dict)
    #: |p − threshold| below this is flagged "near threshold"
    near_band: float = DEFAULT_NEAR_BAND
    _tmpdir: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.root / str(self.metadata["model_file"])

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.root.name))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", ""))

    @property
    def intended_use(self) -> str:
        return str(self.metadata.get("intended_use", INTENDED_USE))

    def card(self) -> dict[str, Any]:
        """The model card figures the prediction panel shows, where the bundle has them.

        ``test_auc`` (``metrics.test_auc``, else ``metrics.test.auc``), ``finding_auc``
        (multi-label: ``metrics.per_finding.<name>.test_auc``) and ``population`` (a line
        about the training data: ``model_card.training_population`` or ``training_population``,
        else built from ``data_summary``). ``model_card`` figures come first.
        """
        metrics = section(self.metadata, "metrics")
        test = section(metrics, "test")
        card = section(self.metadata, "model_card")
        auc = card.get("test_auc", metrics.get("test_auc", test.get("auc")))
        per = section(metrics, "per_finding")
        finding_auc = {
            str(k): float(v["test_auc"])
            for k, v in per.items()
            if isinstance(v, dict) and isinstance(v.get("test_auc"), int | float)
        }
        return {
            "test_auc": float(auc)
            if isinstance(auc, int | float) and not isinstance(auc, bool)
            else None,
            "finding_auc": finding_auc,
            "population": card.get("training_population")
            if isinstance(card.get("training_population"), str)
            else _population(self.metadata),
        }

    def background(self) -> np.ndarray | None:
        """The SHAP background set (n, h, w, c) float32, or None if the bundle has none."""
        name = self.metadata.get("background_file")
        if not name:
            return None
        path = self.root / name
        try:
            arr = read_npy(path)
        except (OSError, ValueError) as exc:
            raise BundleError(
                f"Cannot read the SHAP background set {path.name}",
                exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc),
                "Re-export the bundle with `cxr-train export`.",
            ) from exc
        expected = (self.input_spec.height, self.input_spec.width, self.input_spec.channels)
        if arr.ndim != 4 or tuple(arr.shape[1:]) != expected:
            raise BundleError(
                "The SHAP background set does not match the model input",
                f"background.npy has shape {arr.shape}, the model takes (n, {expected}).",
                "Re-export the bundle.",
            )
        background: np.ndarray = arr.astype(np.float32, copy=False)
        return background

    def load_model(self) -> Any:
        """Load the Keras model with safe mode on, after verifying its checksum."""
        path = self.model_path
        if not path.is_file():
            raise BundleError(
                f"The bundle has no model file {path.name}",
                f"{self.root} lacks it.",
                "Choose a complete bundle folder.",
            )
        expected = self.metadata.get("model_sha256")
        actual = sha256_file(path)
        if expected != actual:
            raise BundleError(
                "The model file does not match its bundle",
                f"sha256 of {path.name} is {actual[:12]}…, metadata.json expects {str(expected)[:12]}….",
                "The file was changed or truncated after export: re-export or re-copy the bundle.",
            )
        from cxr_viewer.core.model.model_io import (
            load_keras_model,  # imports TensorFlow: keep it lazy
        )

        model = load_keras_model(path)
        self._check_model(model)
        return model

    def _check_model(self, model: Any) -> None:
        shape = tuple(model.inputs[0].shape[1:])
        spec = self.input_spec
        if shape != (spec.height, spec.width, spec.channels):
            raise BundleError(
                "The model does not match its bundle",
                f"the model takes {shape}, metadata.json says "
                f"{(spec.height, spec.width, spec.channels)}.",
                "Re-export the bundle from the trained model.",
            )
        n_out = model.outputs[0].shape[-1]
        if n_out != self.head.units:
            raise BundleError(
                "The model does not match its bundle",
                f"the model has {n_out} outputs, metadata.json describes a {self.head.kind} "
                f"head with {self.head.units} ({', '.join(self.class_names)}).",
                "Re-export the bundle with the right class names.",
            )
        names = {layer.name for layer in model.layers}
        for layer in [self.gradcam_layer, *self.shap_layers]:
            if layer and layer not in names:
                raise BundleError(
                    f"The bundle names a layer the model lacks: '{layer}'",
                    "Grad-CAM and SHAP need the backbone's layers addressable by name.",
                    "Re-export the bundle (the trainer keeps backbones flat).",
                )


def _population(meta: dict[str, Any]) -> str | None:
    text = meta.get("training_population")
    if isinstance(text, str) and text.strip():
        return text.strip()
    summary = meta.get("data_summary")
    if not isinstance(summary, dict):
        return None
    splits = section(meta, "data_splits")
    train = section(splits, "train")
    parts = []
    if train.get("images"):
        parts.append(
            f"{train['images']} training images"
            + (f" of {train['patients']} patients" if train.get("patients") else "")
        )
    elif summary.get("images"):
        parts.append(f"{summary['images']} images")
    if summary.get("source"):
        parts.append(f"from {summary['source']}")
    if summary.get("views"):
        parts.append(f"({summary['views']})")
    return " ".join(parts) or None


_NPY_MAGIC = b"\x93NUMPY"


def read_npy(path: Path) -> np.ndarray:
    """One array from a ``.npy`` file, never pickles, never more memory than the file holds.

    ``np.load`` opens whatever the bytes say: a zip (``.npz``) comes back as an archive, not
    an array. Here anything but a ``.npy`` file is a ``ValueError`` saying what it is, and a
    header that declares more data than the file holds is refused before any allocation.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
        if head != _NPY_MAGIC:
            kind = "a zip archive (.npz)" if head[:2] == b"PK" else "not a NumPy .npy file"
            raise ValueError(f"it is {kind}; a bundle's background_file must be one .npy array")
        fh.seek(0)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype.hasobject:
            raise ValueError("it holds Python objects (pickles), which are never loaded")
        declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        available = path.stat().st_size - fh.tell()
        if declared > available:
            raise ValueError(
                f"its header declares {declared:,} bytes of data but the file holds "
                f"{available:,}; it is truncated or damaged"
            )
        fh.seek(0)
        arr: np.ndarray = np.lib.format.read_array(fh, allow_pickle=False)
        return arr


def _read_metadata(root: Path) -> dict[str, Any]:
    path = root / METADATA_FILE
    if not path.is_file():
        raise BundleError(
            f"{root.name} is not a CXR Lens model bundle",
            f"it has no {METADATA_FILE}.",
            "Choose a bundle folder written by `cxr-train` (or import a bare model with "
            "`cxr-train import`).",
        )
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            raise BundleError(
                f"Cannot read {path}",
                f"it is {size:,} bytes; a metadata.json is at most {MAX_METADATA_BYTES:,}.",
                "Re-export the bundle.",
            )
        meta = jsonio.loads(path.read_bytes())
    except (OSError, jsonio.JsonError) as exc:
        why = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        raise BundleError(f"Cannot read {path}", why, "Re-export the bundle.") from exc
    return validate_metadata(meta, root)


def _safe_extract(zip_path: Path) -> tuple[Path, tempfile.TemporaryDirectory[str]]:
    tmp = tempfile.TemporaryDirectory(prefix="cxr-bundle-")
    dest = Path(tmp.name).resolve()
    try:
        extract_zip(zip_path, dest, BUNDLE_LIMITS)
    except BundleError:
        tmp.cleanup()
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        tmp.cleanup()
        raise BundleError(f"{zip_path.name} is not a readable zip", str(exc)) from exc
    # a zip may hold the bundle folder itself or its files at the top level
    if (dest / METADATA_FILE).is_file():
        return dest, tmp
    subdirs = [p for p in dest.iterdir() if p.is_dir() and (p / METADATA_FILE).is_file()]
    if len(subdirs) == 1:
        return subdirs[0], tmp
    tmp.cleanup()
    raise BundleError(f"{zip_path.name} holds no model bundle", f"no {METADATA_FILE} inside.")


def open_bundle(path: str | Path) -> Bundle:
    """Open a bundle folder or zip and validate its metadata (the model loads later)."""
    path = Path(path)
    tmp = None
    if not path.exists():
        raise BundleError(f"No model bundle at {path}", "the path does not exist.")
    if path.is_file() and path.suffix.lower() == ".zip":
        root, tmp = _safe_extract(path)
    elif path.is_dir():
        root = path
    else:
        raise BundleError(
            f"{path.name} is not a model bundle",
            "a bundle is a folder (or .zip) with model.keras and metadata.json.",
            "For a bare .keras or .h5 model, run `cxr-train import` first.",
        )
    try:
        meta = _read_metadata(root)
    except BaseException:
        if tmp is not None:
            tmp.cleanup()
        raise
    spec = InputSpec.from_dict(meta["input"])
    classes = [str(c) for c in meta["class_names"]]
    head = Head.from_metadata(meta, len(classes))
    positive = head.spec.positive_class(classes, meta.get("positive_class"))
    return Bundle(
        root=root,
        metadata=meta,
        input_spec=spec,
        class_names=classes,
        gradcam_layer=meta.get("gradcam_layer"),
        shap_layers=list(meta.get("shap_layers", [])),
        threshold=meta.get("threshold"),
        positive_class=positive,
        head=head,
        thresholds=_thresholds(meta, classes),
        near_band=_near_band(meta),
        _tmpdir=tmp,
    )


def _thresholds(meta: dict[str, Any], classes: list[str]) -> dict[str, float]:
    raw = meta.get("thresholds") or {}
    if not isinstance(raw, dict):
        raise BundleError("The bundle's thresholds are invalid", "expected {finding: number}.")
    out = {}
    for name, value in raw.items():
        if name not in classes:
            raise BundleError(
                f"The bundle gives a threshold for an unknown finding '{name}'",
                f"its findings are {', '.join(classes)}.",
                "Re-export the bundle.",
            )
        try:
            t = float(value)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"The threshold of '{name}' is not a number", str(value)) from exc
        if not 0.0 <= t <= 1.0:
            raise BundleError(f"The threshold of '{name}' is outside [0, 1]", f"got {t}.")
        out[str(name)] = t
    return out


def _near_band(meta: dict[str, Any]) -> float:
    try:
        band = float(meta.get("near_threshold_band", DEFAULT_NEAR_BAND))
    except (TypeError, ValueError):
        band = DEFAULT_NEAR_BAND
    return min(max(band, 0.0), 0.5)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a bundle, for its metadata."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "tensorflow",
        "keras",
        "numpy",
        "shap",
        "lime",
        "pydicom",
        "opencv-python-headless",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


def write_bundle(
    out_dir: str | Path,
    model: Any,
    *,
    name: str,
    class_names: list[str],
    input_spec: InputSpec,
    gradcam_layer: str | None,
    shap_layers: list[str],
    background: np.ndarray | None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    head: Head | None = None,
) -> Bundle:
    """Write ``model`` and its metadata as a bundle folder, then re-open it to check it.

    ``extra`` adds or overrides metadata keys (version, threshold, positive_class,
    data_summary, metrics, training config, ...). The model is saved to a temporary file first so
    a failed export never leaves a half-written bundle behind. ``head`` describes the output
    (default: softmax over ``class_names``); a non-softmax head writes schema version 2.
    """
    head = head or Head("softmax", len(class_names), "softmax")
    out = Path(out_dir)
    if out.exists():
        if not overwrite:
            raise BundleError(f"{out} already exists", "", "Choose a new folder or pass overwrite.")
        shutil.rmtree(out)
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model.save(staging / MODEL_FILE)
    meta: dict[str, Any] = {
        "schema_version": 1
        if head.spec.schema_1 and head.activation == "softmax"
        else SCHEMA_VERSION,
        "name": name,
        "version": "1",
        "class_names": list(class_names),
        "input": input_spec.to_dict(),
        "output": head.to_dict(),
        "model_file": MODEL_FILE,
        "model_sha256": sha256_file(staging / MODEL_FILE),
        "gradcam_layer": gradcam_layer,
        "shap_layers": list(shap_layers),
        "intended_use": INTENDED_USE,
        "library_versions": library_versions(),
    }
    if background is not None:
        bg = np.ascontiguousarray(background, dtype=np.float32)
        np.save(staging / BACKGROUND_FILE, bg, allow_pickle=False)
        meta["background_file"] = BACKGROUND_FILE
        meta["background_count"] = int(bg.shape[0])
    meta.update(extra or {})
    (staging / METADATA_FILE).write_text(json.dumps(meta, indent=2, default=_json_default), "utf-8")
    staging.rename(out)
    return open_bundle(out)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to metadata.json")
