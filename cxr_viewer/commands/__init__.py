"""Headless sub-commands of ``cxr-viewer`` (see :mod:`cxr_viewer.cli`)."""
