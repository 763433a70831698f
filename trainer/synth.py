"""Synthetic chest-X-ray phantoms for the trainer (``cxr-train synth``, tests, benchmarks).

The generator lives in :mod:`cxr_viewer.testdata.phantoms`, where the core may use it too (the SHAP
background of an imported model without images of its own); this module keeps the trainer's
import path.
"""

from cxr_viewer.testdata.phantoms import (
    MULTILABEL_FINDINGS,
    NO_FINDING,
    PHANTOM_CLASSES,
    MultiLabelPhantomSet,
    PhantomSet,
    make_multilabel_phantoms,
    make_phantoms,
    write_multilabel_phantoms,
    write_phantoms,
)

__all__ = [
    "MULTILABEL_FINDINGS",
    "NO_FINDING",
    "PHANTOM_CLASSES",
    "MultiLabelPhantomSet",
    "PhantomSet",
    "make_multilabel_phantoms",
    "make_phantoms",
    "write_multilabel_phantoms",
    "write_phantoms",
]
