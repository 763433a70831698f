"""CXR Lens: see why a chest X-ray classifier said what it said.

The package is split into a Qt-free core (:mod:`cxr_viewer.core`) that loads studies, runs the
model and computes explanations, and the desktop GUI (:mod:`cxr_viewer.gui`), the only part that
imports PySide6. TensorFlow is imported lazily, on first use.
"""

__version__ = "0.1.0"
