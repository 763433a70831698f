"""Recognise a model file, read its architecture as data, and refuse what cannot be explained.

* ``.keras`` (Keras 3 zip): ``config.json`` is scanned first (a Lambda layer is refused by name
  before anything loads), then the model loads with ``safe_mode=True``.
* ``.h5``/``.hdf5`` written by Keras 2: the ``model_config`` attribute is read with h5py as JSON
  (no code runs) and scanned; the architecture is rebuilt later by :mod:`.rebuild`. The
  reference outputs the import is verified against come from ``tf_keras`` (Keras 2 itself) when
  it is installed, else from Keras 3's own reader when that can load the file (flat models).
* ``.h5`` written by Keras 3: loaded by Keras 3 (safe mode), like a ``.keras`` file.
* A TensorFlow SavedModel folder is refused: Keras 3 loads it only as ``keras.layers.TFSMLayer``,
  an opaque inference-only layer with no inner layers to explain.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.errors import BundleError, ModelLoadError
from cxr_viewer.core.io import jsonio
from cxr_viewer.core.model.bundle import METADATA_FILE

from .configs import preprocess_lambda, refuse_unsupported, replace_preprocess_lambdas

KERAS3 = "keras3"
KERAS2_H5 = "keras2-h5"
KERAS3_H5 = "keras3-h5"

Reference = Callable[[np.ndarray], np.ndarray]
_HISTORY = re.compile(r'"keras_history": \["([^"]+)"')


@dataclass
class SourceModel:
    """A model file read for import.

    Attributes
    ----------
    path, format:
        The file and one of ``keras3``, ``keras2-h5``, ``keras3-h5``.
    config:
        The whole model serialised as ``{"class_name", "config"}`` (plain JSON data).
    legacy:
        True when ``config`` is in the Keras 2 dialect.
    keras_version:
        The Keras version that wrote the file, where recorded.
    model:
        The loaded Keras 3 model (Keras 3 formats only).
    """

    path: Path
    format: str
    config: dict[str, Any]
    legacy: bool
    keras_version: str = ""
    model: Any = None
    notes: list[str] = field(default_factory=list)
    #: top-level Lambda layers wrapping a keras.applications preprocess_input:
    #: (layer name, application module or None, evidence, names of the layers it reads from)
    preprocess_lambdas: list[tuple[str, str | None, str, list[str]]] = field(default_factory=list)


def read_source(path: str | Path) -> SourceModel:
    """Read ``path`` for import, or raise :class:`BundleError` saying why it cannot be."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"No model file at {path}", "the path does not exist.")
    if path.is_dir() or path.name == "saved_model.pb":
        _refuse_folder(path if path.is_dir() else path.parent)
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return _read_keras(path)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path)
    raise BundleError(
        f"Cannot import {path.name}",
        f"'{suffix or path.name}' is not a Keras model format CXR Lens reads.",
        "Import a Keras 3 .keras file or a Keras 2 .h5 file (saved with model.save()).",
    )


def _refuse_folder(path: Path) -> None:
    if (path / "saved_model.pb").is_file():
        raise BundleError(
            f"Cannot import the TensorFlow SavedModel folder {path.name}",
            "Keras 3 loads a SavedModel only as keras.layers.TFSMLayer, an inference-only layer: "
            "its inner layers and activations are not reachable, so Grad-CAM and SHAP cannot be "
            "computed.",
            "In the environment that made it, load it with tf.keras.models.load_model and save "
            "it as a Keras file: model.save('model.h5') (Keras 2) or model.save('model.keras'), "
            "then import that file.",
        )
    if (path / METADATA_FILE).is_file():
        raise BundleError(
            f"{path.name} is already a CXR Lens model bundle",
            "it has a metadata.json; nothing to import.",
            "Open it directly as a model bundle.",
        )
    raise BundleError(
        f"Cannot import the folder {path.name}",
        "it is neither a Keras model file nor a SavedModel.",
        "Choose a .keras or .h5 model file.",
    )


def _read_keras(path: Path) -> SourceModel:
    from cxr_viewer.core.io.archive import KERAS_LIMITS, read_member

    try:
        with zipfile.ZipFile(path) as zf:  # capped: no zip bomb is inflated
            config = jsonio.loads(read_member(zf, path, "config.json", KERAS_LIMITS))
            meta = (
                jsonio.loads(read_member(zf, path, "metadata.json", KERAS_LIMITS))
                if _has(zf, "metadata.json")
                else {}
            )
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise ModelLoadError(
            f"Cannot read {path.name}",
            f"it is not a readable Keras 3 .keras archive ({type(e).__name__}: {e}).",
            "Save the model again with model.save('model.keras').",
        ) from e
    refuse_unsupported(config, path.name)
    lambdas = _preprocess_lambdas(config)
    if not lambdas:
        return _loaded(path, KERAS3, str(meta.get("keras_version", "")))
    # the recognised Lambda becomes an Identity layer in a copy, which loads with no code
    with tempfile.TemporaryDirectory() as tmp:
        copy_path = Path(tmp) / path.name
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(copy_path, "w") as dst:
            for item in src.infolist():
                data = src.read(item.filename)
                if item.filename == "config.json":
                    data = json.dumps(replace_preprocess_lambdas(config, legacy=False)).encode()
                dst.writestr(item, data)
        source = _loaded(copy_path, KERAS3, str(meta.get("keras_version", "")))
    source.path, source.preprocess_lambdas = path, lambdas
    return source


def _preprocess_lambdas(config: dict[str, Any]) -> list[tuple[str, str | None, str, list[str]]]:
    out = []
    for layer in config.get("config", {}).get("layers", []):
        found = preprocess_lambda(layer)
        if found is not None:
            out.append(
                (str(layer.get("name") or layer["config"].get("name")), *found, _inbound(layer))
            )
    return out


def _inbound(layer: dict[str, Any]) -> list[str]:
    """Names of the layers a layer's first call reads from (both dialects)."""
    names: list[str] = []
    nodes = layer.get("inbound_nodes") or []
    node = nodes[0] if nodes else []
    if isinstance(node, dict):  # Keras 3
        text = json.dumps(node)
        return [m for m in _HISTORY.findall(text)]
    for entry in node if isinstance(node, list) else []:
        if isinstance(entry, list) and entry:
            names.append(str(entry[0]))
    return names


def _has(zf: zipfile.ZipFile, name: str) -> bool:
    return name in zf.namelist()


def _loaded(path: Path, fmt: str, version: str) -> SourceModel:
    from cxr_viewer.core.model.model_io import load_keras_model

    model = load_keras_model(path)
    import keras

    config = keras.saving.serialize_keras_object(model)
    return SourceModel(
        path=path, format=fmt, config=config, legacy=False, keras_version=version, model=model
    )


def _read_h5(path: Path) -> SourceModel:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = _text(f.attrs.get("keras_version", ""))
            has_weights = "model_weights" in f
    except OSError as exc:
        raise ModelLoadError(
            f"Cannot read {path.name}",
            f"it is not a readable HDF5 file ({exc}).",
            "The file may be truncated; copy it again.",
        ) from exc
    if raw is None:
        raise BundleError(
            f"{path.name} holds weights only",
            "the .h5 file has no model_config: the architecture is not in it.",
            "Save the whole model with model.save('model.h5') (not save_weights) and import that.",
        )
    try:
        config = jsonio.loads(_text(raw))
    except jsonio.JsonError as exc:
        raise ModelLoadError(f"Cannot read the architecture in {path.name}", str(exc)) from exc
    refuse_unsupported(config, path.name)
    lambdas = _preprocess_lambdas(config)
    if version.startswith("3"):
        if lambdas:
            raise BundleError(
                f"Cannot import {path.name}: layer '{lambdas[0][0]}' is a Lambda",
                "a Lambda in a .h5 written by Keras 3 cannot be set aside before loading.",
                "Save the model as a .keras file (model.save('model.keras')) and import that.",
            )
        return _loaded(path, KERAS3_H5, version)
    if not has_weights:
        raise BundleError(f"{path.name} has no weights", "the model_weights group is missing.")
    return SourceModel(
        path=path,
        format=KERAS2_H5,
        config=config,
        legacy=True,
        keras_version=version,
        preprocess_lambdas=lambdas,
    )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def reference_for(source: SourceModel) -> tuple[Reference | None, str]:
    """A function computing the *original* model's outputs, and what computes them.

    Keras 3 formats: the loaded model itself. Keras 2 ``.h5``: ``tf_keras`` (Keras 2, the
    library that wrote the file) if installed — the file was scanned for Lambda layers before, and
    loading runs inside tf_keras' safe-mode scope — else Keras 3's own reader if it can load the
    file (flat models), else None.
    """
    if source.model is not None:
        model = source.model
        return (lambda x: np.asarray(model(x, training=False))), f"keras {_version('keras')}"
    if source.preprocess_lambdas:  # tf_keras loads a copy whose Lambda is a linear Activation
        with tempfile.TemporaryDirectory() as tmp:
            import shutil

            import h5py

            copy_path = Path(tmp) / source.path.name
            shutil.copyfile(source.path, copy_path)
            with h5py.File(copy_path, "r+") as f:
                f.attrs["model_config"] = json.dumps(
                    replace_preprocess_lambdas(source.config, legacy=True)
                )
            model = _tf_keras_model(copy_path)
        if model is None:
            return None, ""
        return (lambda x: np.asarray(model(x, training=False))), (
            f"tf_keras {_version('tf_keras')} (Keras 2; its preprocess_input Lambda set aside)"
        )
    model = _tf_keras_model(source.path)
    if model is not None:
        return (lambda x: np.asarray(model(x, training=False))), (
            f"tf_keras {_version('tf_keras')} (Keras 2)"
        )
    from cxr_viewer.core.model.model_io import load_keras_model

    try:
        k3 = load_keras_model(source.path)
    except BundleError:
        return None, ""
    return (lambda x: np.asarray(k3(x, training=False))), f"keras {_version('keras')} (h5 reader)"


def _tf_keras_model(path: Path) -> Any:
    try:
        import tf_keras
    except ImportError:
        return None
    try:
        from tf_keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - layout of other tf_keras versions
        scope = contextlib.nullcontext()
    else:
        scope = SafeModeScope(True)
    try:
        with scope:
            return tf_keras.models.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError):
        return None


def _version(pkg: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"
