"""Phantom data sets written once per test session for the trainer's tests."""

from __future__ import annotations

import pytest

from trainer.synth import make_phantoms, write_phantoms


@pytest.fixture(scope="session")
def phantom_csv_64(tmp_path_factory):
    """300 phantoms at 64 px as PNG, one patient each; returns the manifest CSV path."""
    out = tmp_path_factory.mktemp("phantoms64")
    return write_phantoms(out, make_phantoms(300, 64, seed=11), formats=("png",))


@pytest.fixture(scope="session")
def phantom_csv_small(tmp_path_factory):
    """60 phantoms at 32 px, PNG + DICOM MONOCHROME1 (two files per patient)."""
    out = tmp_path_factory.mktemp("phantoms32")
    return write_phantoms(
        out, make_phantoms(60, 32, seed=5), formats=("png", "dicom"), photometrics=("MONOCHROME1",)
    )
