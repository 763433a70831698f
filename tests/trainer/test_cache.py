"""The decoded-image cache: same values as the viewer's path, reuse, unreadable files."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.io import load_study
from cxr_viewer.core.model.preprocess import InputSpec, study_to_input
from trainer.cache import build_cache
from trainer.pipeline import gather_inputs, make_dataset
from trainer.synth import make_phantoms, write_phantoms


def test_cache_matches_study_to_input_and_is_reused(tmp_path):
    write_phantoms(tmp_path / "d", make_phantoms(3, 40, seed=1), photometrics=("MONOCHROME1",))
    paths = sorted(str(p) for p in (tmp_path / "d" / "images").iterdir())
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths.append(str(tmp_path / "broken.png"))
    spec = InputSpec(32, 32, 3, "symmetric")
    cache = build_cache(paths, spec, tmp_path / "cache", workers=2, progress=False)
    assert cache.images.shape == (len(paths), 32, 32) and cache.images.dtype == np.float16
    assert list(cache.failed) == [len(paths) - 1] and not cache.ok[-1]
    x = gather_inputs(cache.images, np.arange(len(paths) - 1), spec)
    for i, p in enumerate(paths[:-1]):
        expected = study_to_input(load_study(p), spec)
        np.testing.assert_allclose(x[i], expected, atol=2e-3)  # float16 storage
    mtime = cache.path.stat().st_mtime_ns
    again = build_cache(paths, spec, tmp_path / "cache", progress=False)
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime
    assert again.failed.keys() == cache.failed.keys()
    # another size is another cache
    other = build_cache(paths, InputSpec(16, 16), tmp_path / "cache", progress=False)
    assert other.path != cache.path
    with pytest.raises(TrainingError, match="No image could be read"):
        build_cache([str(tmp_path / "broken.png")], spec, tmp_path / "c2", progress=False)


def test_dataset_batches_labels_in_order(tmp_path):
    images = np.random.default_rng(0).random((10, 16, 16)).astype(np.float16)
    spec = InputSpec(16, 16, 1, "unit")
    rows = np.array([3, 1, 4, 1, 5])
    ds = make_dataset(images, rows, np.array([0, 1, 0, 1, 1]), 2, spec, batch_size=2)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds], strict=True)
    x, y = np.concatenate(xs), np.concatenate(ys)
    np.testing.assert_array_equal(x[..., 0], images[rows].astype(np.float32))
    np.testing.assert_array_equal(y.argmax(1), [0, 1, 0, 1, 1])
