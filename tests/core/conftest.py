"""Fixtures of the core tests."""

from __future__ import annotations

import pytest
from lime_support import flat_image_and_segments


@pytest.fixture(scope="module")
def image_and_segments():
    """(image, superpixels) of lime_support's flat test image."""
    return flat_image_and_segments()
