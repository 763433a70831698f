"""The CXR Lens trainer: builds the classifier the viewer explains, and exports its bundle.

Imports ``cxr_viewer.core`` (loading, preprocessing, bundle), never ``cxr_viewer.gui``.
"""
