"""The sample list a first launch opens (real films before phantoms, a pneumonia film shown)
and the model's name with its version, as the status bar and exports say it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_viewer.core.model.model_card import model_title
from cxr_viewer.core.paths import (
    FIRST_LAUNCH_SAMPLE,
    first_launch_sample,
    sample_files,
    samples_dir,
)


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).write_bytes(b"\x89PNG\r\n\x1a\n")


def test_real_films_come_before_the_phantoms_each_in_natural_order(tmp_path):
    _touch(tmp_path, "phantom_b.png", "real-10_x.png", "phantom_a.png", "real-2_y.png")
    names = [f.name for f in sample_files(tmp_path)]
    assert names == ["real-2_y.png", "real-10_x.png", "phantom_a.png", "phantom_b.png"]
    assert sample_files(tmp_path / "missing") == []


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["real-01_normal.png", FIRST_LAUNCH_SAMPLE, "real-07_pneumonia.png"], FIRST_LAUNCH_SAMPLE),
        (["real-01_normal.png", "real-07_pneumonia.png"], "real-07_pneumonia.png"),
        (["real-01_normal.png", "real-02_normal.png"], "real-01_normal.png"),
        (["phantom_a.png"], "phantom_a.png"),
    ],
)
def test_first_launch_sample_prefers_the_chosen_film_then_a_real_pneumonia(names, expected):
    files = [Path(n) for n in names]
    assert first_launch_sample(files) == Path(expected)
    assert first_launch_sample([]) is None


def test_the_shipped_samples_open_on_a_real_pneumonia_film():
    files = sample_files()
    chosen = first_launch_sample(files)
    assert chosen is not None and chosen.name == FIRST_LAUNCH_SAMPLE
    assert chosen == samples_dir() / FIRST_LAUNCH_SAMPLE
    kinds = [f.name.startswith("real-") for f in files]
    assert kinds == sorted(kinds, reverse=True) and any(kinds) and not all(kinds)


@pytest.mark.parametrize(
    ("version", "shown"),
    [("1", "Demo v1"), ("0.0-test", "Demo v0.0-test"), ("v2", "Demo v2"),
     ("May retrain", "Demo May retrain"), ("", "Demo"), ("  ", "Demo")],
)  # fmt: skip
def test_model_title_says_the_version_as_a_version(version, shown):
    assert model_title("Demo", version) == shown
