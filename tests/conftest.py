"""Shared fixtures: the real-data folder (skipped when absent), the one tiny model bundle, quiet
TensorFlow, and the ``gpu`` marker (such tests skip, with the reason, where TensorFlow sees no
GPU)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TQDM_DISABLE", "1")
# however TensorFlow starts in a test process, it must not take the whole GPU: the gpu tests'
# child processes need some of it too
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from cxr_viewer.core.paths import shared_data_dir  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _forward_choices_in_a_temp_folder(tmp_path_factory):
    """The forward-path choices (cxr_viewer.core.model.forward) are remembered in this run's temp
    folder, never in the user's cache (child processes inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CXR_FORWARD_CACHE", str(tmp_path_factory.mktemp("forward_cache")))
        yield


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` (or ``$CXR_SHARED_DATA``); skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real test data not found: set CXR_SHARED_DATA or place it at ../shared/data")
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """The shared tiny bundle (32×32 grey, random weights; see ``tests/bundle_support.py``).

    The viewer's tests override it with the 64×64 RGB variant written the way the app loads it.
    """
    from bundle_support import write_tiny_bundle

    return write_tiny_bundle(tmp_path_factory.mktemp("tiny") / "tiny_bundle")


_GPU_SEEN: list[str] = []


def _gpus_tensorflow_sees() -> list[str]:
    """Physical GPUs of this process's TensorFlow (imported through the one place, once)."""
    if not _GPU_SEEN:
        from cxr_viewer.core.model.model_io import import_tensorflow

        tf = import_tensorflow()
        _GPU_SEEN.append(",".join(d.name for d in tf.config.list_physical_devices("GPU")))
    return [n for n in _GPU_SEEN[0].split(",") if n]


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not _gpus_tensorflow_sees():
        pytest.skip(
            "TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty): "
            'gpu tests run only on a machine with a CUDA GPU and `pip install -e ".[gpu]"`'
        )


def pytest_collection_modifyitems(config, items):
    """Files with ``slow`` tests run first (each file's own order kept): the two pytest-xdist
    workers then share the long ones from the start, and the many short files fill the end,
    instead of one worker finishing a long file alone while the other waits."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
