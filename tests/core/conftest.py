"""Fixtures of the core tests."""

from __future__ import annotations

import os

import pytest
from lime_support import flat_image_and_segments


@pytest.fixture(scope="module")
def image_and_segments():
    """(image, superpixels) of lime_support's flat test image."""
    return flat_image_and_segments()


@pytest.fixture(scope="session")
def phantom_case(tmp_path_factory):
    """explain_support's model trained on phantoms, with its test phantoms. Under pytest-xdist
    the first worker that needs it trains it and the others load it (a file lock in the run's
    shared temp folder), so it is trained once per run, not once per worker."""
    pytest.importorskip("tensorflow")
    from explain_support import phantom_classifier

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return phantom_classifier()
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "phantom_model"
    shared.mkdir(exist_ok=True)
    with FileLock(f"{shared}.lock"):
        return phantom_classifier(shared)
