"""Shared fixtures: the real-data folder (skipped when absent) and quiet TensorFlow."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TQDM_DISABLE", "1")

from cxr_viewer.core.paths import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` (or ``$CXR_SHARED_DATA``); skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real test data not found: set CXR_SHARED_DATA or place it at ../shared/data")
    return path
