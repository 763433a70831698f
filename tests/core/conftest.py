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


@pytest.fixture
def ray_session():
    """A local Ray for one test, shut down after it: the test that hides Ray from sys.modules
    must not run while Ray's log thread is alive (its imports would fail in that thread)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from cxr_viewer.commands.batch_ray import init_local_ray

    init_local_ray(  # what `--engine ray` starts: a new instance, on 127.0.0.1 only
        ray,
        num_cpus=2,
        object_store_memory=200 * 1024 * 1024,
        logging_level="ERROR",
        # Ray starts its workers at nice 15, so on a machine whose other processes are busy at
        # nice 0 (a shared CI box) they get a few per cent of a core and take minutes to import
        # TensorFlow; this test checks the engine, not that scheduling choice
        _system_config={"worker_niceness": 0},
    )
    yield ray
    ray.shutdown()
