"""Bring your own model: wrap a classifier trained elsewhere into a CXR Lens model bundle.

Reads Keras 3 ``.keras`` and Keras 2 ``.h5`` files (flat, or with a backbone nested as one
layer), rebuilds them as one flat Keras 3 graph whose layers Grad-CAM and SHAP can address,
verifies the result reproduces the original's outputs, and writes a bundle. Used by
``cxr-train import`` and by the viewer's File ▸ Model ▸ Open model. Importing this package imports no
TensorFlow; :func:`import_model` does when called.
"""

from __future__ import annotations

from .api import TOLERANCE, Prepared, import_model, prepare, preview_predictions
from .background import PHANTOM_SOURCE
from .inspect import CANDIDATES, ModelSummary, inspect_model
from .sources import KERAS2_H5, KERAS3, KERAS3_H5

#: file name suffixes :func:`import_model` reads (a bare model the viewer offers to import)
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")

__all__ = [
    "CANDIDATES",
    "ModelSummary",
    "Prepared",
    "inspect_model",
    "prepare",
    "preview_predictions",
    "KERAS2_H5",
    "KERAS3",
    "KERAS3_H5",
    "MODEL_SUFFIXES",
    "PHANTOM_SOURCE",
    "TOLERANCE",
    "import_model",
]
