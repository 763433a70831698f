"""Synthetic test data: chest-X-ray phantoms with lesions at known positions.

:mod:`.phantoms` draws phantoms (images, labels, lesion masks) and writes them as PNG and DICOM.
They serve the tests, the benchmarks, the trainer's ``cxr-train synth`` and ``samples`` commands,
and one product path: the SHAP background set of an imported model when the user gives no
images (:mod:`cxr_viewer.core.importer.background`). It is not a core layer: it depends only on
NumPy, pydicom and the display transform of :mod:`cxr_viewer.core.io`, and nothing it imports
depends on it. Nothing is imported here.
"""
