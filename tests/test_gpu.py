"""The GPU path, proven where TensorFlow sees a GPU (``pytest -m gpu``); skipped elsewhere.

Device settings take effect only before TensorFlow starts, so the checks of the device choice
and memory policy run in fresh interpreters; the agreement, batch-size and precision checks run
in this process (which started TensorFlow through the one place: first GPU, memory growth).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from bundle_support import write_tiny_bundle
from device_support import NOISE, SAMPLE_PNG, _child, _result

from cxr_viewer.core.device_compare import TOLERANCE

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    return write_tiny_bundle(tmp_path_factory.mktemp("gpu") / "tiny_bundle", size=64)


@pytest.fixture(scope="module")
def study():
    from cxr_viewer.core.io import load_study

    return load_study(SAMPLE_PNG)


AUTO_CHILD = r"""
import json
from cxr_viewer.core.model.model_io import configure, gpu_memory_in_use, import_tensorflow, runtime_state
configure("auto")
tf = import_tensorflow()
physical = tf.config.list_physical_devices("GPU")
out = {"state": runtime_state().as_dict(), "physical": [d.name for d in physical]}
out["growth"] = [tf.config.experimental.get_memory_growth(d) for d in physical[:1]]
with tf.device("/GPU:0"):
    x = tf.ones((4096, 4096))  # 64 MB
    out["sum"] = float(tf.reduce_sum(x))
    out["in_use"] = gpu_memory_in_use()
print("RESULT " + json.dumps(out))
"""


def test_auto_runs_on_the_first_gpu_only_with_memory_growth():
    out = _result(_child(AUTO_CHILD))
    state = out["state"]
    assert state["applied_before_first_op"] is True
    assert state["visible_gpus"] == out["physical"][:1]  # only the first GPU is used
    assert state["device"].startswith("GPU 0: ")
    assert state["memory_growth"] is True and out["growth"] == [True]
    assert state["memory_limit_mb"] is None
    assert out["sum"] == 4096.0 * 4096.0
    assert out["in_use"] >= 64 * 2**20  # the status bar's figure counts the tensor


CAP_CHILD = r"""
import json
from cxr_viewer.core.model.model_io import configure, import_tensorflow, runtime_state
configure("auto", gpu_memory_mb=256)
tf = import_tensorflow()
gpu = tf.config.list_physical_devices("GPU")[0]
out = {"state": runtime_state().as_dict()}
out["limit"] = tf.config.get_logical_device_configuration(gpu)[0].memory_limit
with tf.device("/GPU:0"):
    out["small"] = float(tf.reduce_sum(tf.ones((1024, 1024))))  # 4 MB fits
    try:
        big = tf.ones((16384, 16384))  # 1 GB does not fit in 256 MB
        out["big"] = float(tf.reduce_sum(big))
    except tf.errors.ResourceExhaustedError:
        out["big"] = "refused"
print("RESULT " + json.dumps(out))
"""


def test_gpu_memory_cap_is_enforced():
    out = _result(_child(CAP_CHILD))
    assert out["state"]["memory_limit_mb"] == 256 and out["state"]["memory_growth"] is False
    assert out["limit"] == 256
    assert out["small"] == 1024.0 * 1024.0
    assert out["big"] == "refused"


INDEX_CHILD = r"""
import json, sys
from cxr_viewer.core.errors import DeviceError
from cxr_viewer.core.model.model_io import configure, import_tensorflow, runtime_state
configure(sys.argv[1])
try:
    tf = import_tensorflow()
    out = {"state": runtime_state().as_dict(),
           "physical": [d.name for d in tf.config.list_physical_devices("GPU")]}
except DeviceError as exc:
    out = {"error": exc.what}
print("RESULT " + json.dumps(out))
"""


def test_gpu_n_picks_that_gpu_and_a_missing_one_is_a_clear_error():
    from cxr_viewer.core.model.model_io import import_tensorflow

    n = len(import_tensorflow().config.list_physical_devices("GPU"))
    last = _result(_child(INDEX_CHILD, f"gpu:{n - 1}"))
    assert last["state"]["visible_gpus"] == [last["physical"][n - 1]]
    assert last["state"]["device"].startswith(f"GPU {n - 1}: ")
    assert last["state"]["memory_growth"] is True
    missing = _result(_child(INDEX_CHILD, f"gpu:{n}"))
    assert missing["error"] == f"Cannot run on gpu:{n}"


def test_device_all_keeps_every_gpu_with_memory_growth():
    out = _result(_child(INDEX_CHILD, "all"))
    assert out["state"]["visible_gpus"] == out["physical"]
    assert out["state"]["memory_growth"] is True and out["state"]["request"] == "all"


def test_device_cpu_hides_the_gpu_and_stays_quiet():
    proc = _child(INDEX_CHILD, "cpu")
    out = _result(proc)
    assert out["physical"] == [] and out["state"]["device"] == "CPU"
    assert not NOISE.search(proc.stderr), proc.stderr


def test_gpu_and_cpu_agree_within_the_stated_tolerance(tiny_bundle, study):
    from cxr_viewer.commands.selftest import EXPLAIN
    from cxr_viewer.core.device_compare import compare_devices
    from cxr_viewer.core.model.inference import load_classifier

    clf = load_classifier(tiny_bundle)
    assert clf.on_gpu
    target = clf.predict_study(study).predicted_index
    out = compare_devices(clf, study, target, EXPLAIN)
    assert out["compared"] is True and out["gpu"].endswith("GPU:0")
    assert set(out["results"]) == {"predict", "gradcam", "lime", "shap"}
    assert out["results"]["predict"]["max_abs_diff"] <= TOLERANCE["predict"]
    for method in EXPLAIN:
        r = out["results"][method]
        assert r["max_rel_diff"] <= TOLERANCE[method], (method, r)
    assert out["ok"] is True


def test_the_gpu_batch_size_is_measured_at_warm_up(tiny_bundle):
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import GPU_BATCH_CANDIDATES, Classifier, pick_batch_size

    clf = Classifier(open_bundle(tiny_bundle))
    clf.warm_up()
    sizes = list(clf.batch_throughput)
    assert sizes and sizes == list(GPU_BATCH_CANDIDATES[: len(sizes)])
    assert all(rate > 0 for rate in clf.batch_throughput.values())
    assert clf.batch_size == pick_batch_size(clf.batch_throughput)
    # the batch size changes the speed, never the result
    x = np.random.default_rng(1).random((clf.batch_size + 7, 64, 64, 1), dtype=np.float32)
    one_by_one = Classifier(open_bundle(tiny_bundle), batch_size=1)
    np.testing.assert_allclose(
        clf.predict_inputs(x), one_by_one.predict_inputs(x), atol=TOLERANCE["predict"]
    )


def test_mixed_precision_on_the_gpu_is_used_only_if_it_matches_float32(tiny_bundle):
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import (
        MIXED_PRECISION_TOLERANCE,
        Classifier,
        precision_check_inputs,
    )

    clf16 = Classifier(open_bundle(tiny_bundle), mixed_precision=True)
    clf32 = Classifier(open_bundle(tiny_bundle))
    check = clf16.precision_check
    assert check is not None and check.inputs == 8 and np.isfinite(check.max_abs_diff)
    x = precision_check_inputs(clf32.spec, n=16, seed=5)  # other inputs than at load
    if check.used:
        assert clf16.precision == "mixed_float16"
        assert check.max_abs_diff <= MIXED_PRECISION_TOLERANCE
        np.testing.assert_allclose(
            clf16.predict_inputs(x), clf32.predict_inputs(x), atol=2 * MIXED_PRECISION_TOLERANCE
        )
    else:
        assert clf16.precision == "float32" and "differs from float32" in check.reason


def test_self_test_device_section_on_the_gpu(tiny_bundle, tmp_path):
    report_path = tmp_path / "report.json"
    proc = _child(
        "", "-m", "cxr_viewer", "--self-test", "--model", str(tiny_bundle),
        "--report", str(report_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"SELF-TEST PASSED on GPU 0: ", proc.stdout)
    assert not NOISE.search(proc.stderr), proc.stderr
    section = json.loads(report_path.read_text(encoding="utf-8"))["steps"]["device"]
    assert section["ok"] and section["memory_growth"] is True
    assert section["applied_before_first_op"] is True
    assert section["gpu_vs_cpu"]["compared"] is True and section["gpu_vs_cpu"]["ok"] is True
    assert section["batch_size"] in (16, 32, 64, 128, 256)
