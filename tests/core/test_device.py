"""Device choice, GPU memory policy and quiet consoles (the one place TensorFlow starts).

Device settings only take effect before TensorFlow starts, so every check that configures
TensorFlow runs in a fresh interpreter; the rest (parsing, the log filter, batch-size choice,
mixed precision on a tiny model) run here. On a GPU machine the same child processes run;
``tests/test_gpu.py`` holds what needs a GPU.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np
import pytest
from device_support import NOISE, SAMPLE_PNG, _child, _result

from cxr_viewer.core.errors import DeviceError
from cxr_viewer.core.model.model_io import DeviceRequest, NativeLogFilter, quiet_native_stderr


# ------------------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "text, kind, index",
    [
        ("auto", "auto", None),
        ("CPU", "cpu", None),
        ("all", "all", None),
        ("gpu", "gpu", 0),
        (" gpu:2 ", "gpu", 2),
    ],
)
def test_device_requests_parse(text, kind, index):
    req = DeviceRequest.parse(text)
    assert (req.kind, req.index) == (kind, index)
    assert DeviceRequest.parse(str(req)) == req


@pytest.mark.parametrize("text", ["tpu", "gpu:-1", "gpu:x", "cuda:0", "gpu:1:2"])
def test_bad_device_requests_are_refused(text):
    with pytest.raises(ValueError, match="expected auto, cpu or gpu:N"):
        DeviceRequest.parse(text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "--device", "tpu", str(SAMPLE_PNG)], "expected auto, cpu or gpu:N"),
        (["info", "--gpu-memory", "0", str(SAMPLE_PNG)], "positive whole number of MB"),
        (["--device", "gpu:x"], "expected auto, cpu or gpu:N"),
    ],
)
def test_the_viewer_cli_refuses_bad_device_options(argv, message, capsys):
    from cxr_viewer.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_the_trainer_cli_refuses_bad_device_options(capsys):
    from trainer.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["split", "--device", "gpu:one", "--config", "x.toml"])
    assert exc.value.code == 2
    assert "expected auto, cpu or gpu:N" in capsys.readouterr().err


@pytest.mark.parametrize("command, default", [("train", "all"), ("evaluate", "auto")])
def test_training_uses_every_gpu_by_default_the_rest_one(command, default, capsys):
    from trainer.cli import main

    with pytest.raises(SystemExit):
        main([command, "-h"])
    assert f"(default: {default})" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("module", ["cxr_viewer.cli", "trainer.cli"])
def test_version_on_both_commands(module, capsys):
    import importlib

    from cxr_viewer import __version__

    with pytest.raises(SystemExit) as exc:
        importlib.import_module(module).main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert __version__ in out and ("cxr-viewer" in out or "cxr-train" in out)


# ------------------------------------------------------------------------------ device
CPU_CHILD = r"""
import json, os, sys
from cxr_viewer.cli import main
code = main(["info", "--device", "cpu", sys.argv[1]])
out = {"code": code, "env": os.environ.get("CUDA_VISIBLE_DEVICES"),
       "tf_imported_by_info": "tensorflow" in sys.modules}
from cxr_viewer.core.model.model_io import describe_device, import_tensorflow, runtime_state
tf = import_tensorflow()
out["physical_gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
out["state"] = runtime_state().as_dict()
out["device"] = describe_device()
out["sum"] = float(tf.reduce_sum(tf.constant([1.0, 2.0])))
print("RESULT " + json.dumps(out))
"""


def test_device_cpu_hides_gpus_from_tensorflow_before_it_is_imported():
    out = _result(_child(CPU_CHILD, str(SAMPLE_PNG)))
    assert out["code"] == 0
    assert out["tf_imported_by_info"] is False  # set before any import of TensorFlow
    assert out["env"] == "-1"
    assert out["physical_gpus"] == []  # hidden even on a machine with a GPU
    assert out["state"]["request"] == "cpu" and out["state"]["visible_gpus"] == []
    assert out["state"]["applied_before_first_op"] is True
    assert out["device"] == "CPU" and out["sum"] == 3.0


POLICY_CHILD = r"""
import json, sys
from cxr_viewer.core.model.model_io import (configure, import_tensorflow, runtime_state,
                                      gpu_memory_in_use)
configure("auto", gpu_memory_mb=int(sys.argv[1]) or None)
tf = import_tensorflow()
gpus = tf.config.list_physical_devices("GPU")
out = {"state": runtime_state().as_dict(), "physical_gpus": len(gpus)}
out["sum"] = float(tf.reduce_sum(tf.constant([1.0, 2.0])))  # the first op, after the config
out["memory_in_use"] = gpu_memory_in_use()
if gpus:
    out["growth"] = tf.config.experimental.get_memory_growth(gpus[0])
    cfg = tf.config.get_logical_device_configuration(gpus[0])
    out["limit"] = cfg[0].memory_limit if cfg else None
# after the first op the settings can no longer change: configure says so
out["reconfigure_cpu"] = configure("cpu")
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("cap_mb", [0, 512])
def test_memory_growth_or_cap_runs_against_the_real_tf_config_api(cap_mb):
    """Growth (default) or a cap: applied before the first op, through tf.config, no error."""
    out = _result(_child(POLICY_CHILD, str(cap_mb)))
    state = out["state"]
    assert state["applied_before_first_op"] is True and state["note"] == ""
    assert state["request"] == "auto" and out["sum"] == 3.0
    assert out["reconfigure_cpu"] is False  # takes effect at the next start
    if out["physical_gpus"] == 0:  # this machine: nothing to grow or cap, and it says so
        assert state["visible_gpus"] == [] and state["device"] == "CPU"
        assert state["memory_growth"] is False and state["memory_limit_mb"] is None
        assert out["memory_in_use"] is None
    else:  # a GPU machine: the first GPU only, with growth on or the cap
        assert len(state["visible_gpus"]) == 1 and state["device"].startswith("GPU 0")
        assert out["growth"] is (cap_mb == 0) and state["memory_growth"] is (cap_mb == 0)
        assert out["limit"] == (cap_mb or None) and state["memory_limit_mb"] == (cap_mb or None)
        assert isinstance(out["memory_in_use"], int)


MEMORY_API_CHILD = r"""
import json
import re
from cxr_viewer.core.model.model_io import apply_memory_policy, import_tensorflow
tf = import_tensorflow()
target = (tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("CPU"))[0]
out = {"device_type": target.device_type}
# on a GPU only growth here (a cap excludes it; tests/test_gpu.py checks the cap)
for cap in (None, 512) if target.device_type == "CPU" else (None,):
    try:
        out[str(cap)] = apply_memory_policy(tf, target, cap)
    except ValueError as exc:  # TensorFlow's own refusal for a CPU device
        out[str(cap)] = "ValueError: " + str(exc)
if target.device_type == "GPU":
    out["growth"] = tf.config.experimental.get_memory_growth(target)
print("RESULT " + json.dumps(out))
"""


def test_the_memory_policy_calls_reach_the_real_tf_config_api():
    """On a CPU machine the growth and cap calls are made on the CPU device: TensorFlow's
    own API receives them well-formed and refuses them for what they are (not a GPU), which
    a wrong call (TypeError, AttributeError) would not do. On a GPU both are accepted."""
    out = _result(_child(MEMORY_API_CHILD))
    if out["device_type"] == "GPU":
        assert out["None"] == "growth" and out["growth"] is True
    else:
        assert re.fullmatch(r"ValueError: Cannot set memory growth on non-GPU.*", out["None"])
        assert re.fullmatch(r"ValueError: Setting memory limit on CPU .*", out["512"])


LATE_CHILD = r"""
import json
import tensorflow as tf
tf.reduce_sum(tf.constant([1.0]))  # someone ran an op before the one place could configure
from cxr_viewer.core.model.model_io import import_tensorflow, runtime_state
import_tensorflow()
print("RESULT " + json.dumps(runtime_state().as_dict()))
"""


def test_settings_that_come_after_the_first_op_are_reported_not_silently_lost():
    state = _result(_child(LATE_CHILD))
    assert state["applied_before_first_op"] is False
    assert "already run an op" in state["note"]


MISSING_GPU_CHILD = r"""
import json
from cxr_viewer.core.errors import DeviceError
from cxr_viewer.core.model.model_io import configure, import_tensorflow
configure("gpu:7")
try:
    import_tensorflow()
    out = {"raised": None}
except DeviceError as exc:
    out = {"raised": type(exc).__name__, "what": exc.what, "why": exc.why, "hint": exc.hint}
print("RESULT " + json.dumps(out))
"""


def test_a_gpu_that_is_not_there_is_a_clear_error():
    out = _result(_child(MISSING_GPU_CHILD))
    assert out["raised"] == DeviceError.__name__
    assert out["what"] == "Cannot run on gpu:7"
    assert "TensorFlow sees" in out["why"] and "--device auto or cpu" in out["hint"]


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["-m", "cxr_viewer", "batch", str(SAMPLE_PNG), "--device", "gpu:99"], "cxr-viewer batch:"),
        (["-m", "trainer.cli", "evaluate", "--bundle", "b", "--out", "o", "--device", "gpu:99"],
         "cxr-train: error:"),
    ],
)  # fmt: skip
def test_both_clis_report_a_missing_gpu_clearly(argv, prefix, tiny_bundle, tmp_path):
    if argv[1] == "cxr_viewer":
        argv = [*argv, "--model", str(tiny_bundle), "--out", str(tmp_path / "out")]
    proc = _child("", *argv)
    assert proc.returncode == 2
    assert f"{prefix} Cannot run on gpu:99" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------ quiet consoles
def test_the_log_filter_drops_start_up_noise_and_keeps_everything_else(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    f = NativeLogFilter()
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796045548.511030    6082 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796045548.511030    6082 gpu_device.cc:2344] Cannot dlopen some GPU libs",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
        "E0000 00:00:1.2    1 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to "
        "register factory for plugin cuDNN when one has already been registered",
    ]
    kept = [
        "E0000 00:00:1.2    1 some_op.cc:10] a real native error",
        "F0000 00:00:1.2    1 check.cc:10] Check failed: fatal",
        "Traceback (most recent call last):",
        "",
    ]
    assert [line for line in noise + kept if f.keep(line)] == kept
    cuinit = "E0000 00:00:1.2    6082 cuda_platform.cc:52] failed call to cuInit: UNKNOWN (303)"
    assert f.keep(cuinit)  # a CUDA driver may be there: a real fault, shown
    f.keep("I0000 00:00:1.2    6082 cudart_stub.cc:31] Could not find cuda drivers on your machine")
    assert not f.keep(cuinit)  # no driver at all: no GPU, nothing wrong
    g = NativeLogFilter()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # --device cpu
    assert not g.keep(cuinit)


def test_quiet_native_stderr_filters_fd_2_and_passes_real_errors(capfd):
    with quiet_native_stderr(True):
        os.write(2, b"I0000 00:00:17.5    1 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:17.5    1 op.cc:1] a real error\nplain text from C\n")
        print("python stderr", file=sys.stderr)
        os.write(2, b"no newline at the end")
    err = capfd.readouterr().err
    assert "oneDNN" not in err
    for line in ("a real error", "plain text from C", "python stderr", "no newline at the end"):
        assert line in err
    with quiet_native_stderr(False):  # --verbose: untouched
        os.write(2, b"I0000 00:00:17.5    1 port.cc:153] oneDNN custom operations are on.\n")
    assert "oneDNN" in capfd.readouterr().err


def test_viewer_commands_are_quiet_unless_verbose(tiny_bundle, tmp_path):
    """A command that starts TensorFlow prints none of its start-up lines; --verbose does."""
    args = ["-m", "cxr_viewer", "batch", str(SAMPLE_PNG), "--model", str(tiny_bundle)]
    quiet = _child("", *args, "--explain", "gradcam", "--out", str(tmp_path / "q"))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert not NOISE.search(quiet.stderr), quiet.stderr
    assert (tmp_path / "q" / "predictions.csv").is_file()
    info = _child("", "-m", "cxr_viewer", "info", str(SAMPLE_PNG))
    assert info.returncode == 0 and not NOISE.search(info.stderr), info.stderr
    loud = _child("", *args, "--out", str(tmp_path / "v"), "--verbose")
    assert loud.returncode == 0, loud.stderr[-3000:]
    if not NOISE.search(loud.stderr):
        pytest.skip("this TensorFlow build prints nothing at start-up, even when allowed to")


def test_trainer_is_quiet_and_a_real_error_still_shows(tmp_path):
    proc = _child(
        "",
        "-m",
        "trainer.cli",
        "import",
        str(tmp_path / "missing.keras"),
        "--classes",
        "a",
        "b",
        "-o",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 2
    assert "cxr-train import:" in proc.stderr and "missing.keras" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not NOISE.search(proc.stderr), proc.stderr


# ------------------------------------------------------------------------------ inference
def test_pick_batch_size_takes_the_smallest_near_best():
    from cxr_viewer.core.model.inference import pick_batch_size

    assert pick_batch_size({16: 100.0, 32: 180.0, 64: 200.0, 128: 205.0}) == 64
    assert pick_batch_size({16: 100.0}) == 16
    assert pick_batch_size({16: 100.0, 32: 95.0}) == 16
    with pytest.raises(ValueError):
        pick_batch_size({})


def test_cpu_batch_size_is_unchanged_and_measurement_runs(tiny_bundle, monkeypatch):
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import CPU_BATCH, Classifier

    monkeypatch.setenv("CXR_FORWARD", "tf")  # the tf.function path alone: the earlier behaviour
    clf = Classifier(open_bundle(tiny_bundle))
    if clf.on_gpu:
        pytest.skip("TensorFlow runs on a GPU here: tests/test_gpu.py covers it")
    clf.warm_up()
    assert clf.batch_size == CPU_BATCH and clf.batch_throughput == {}
    rates = clf.measure_batch_sizes((2, 4), repeats=1, gain=0.0)
    assert list(rates) == [2, 4] and all(r > 0 for r in rates.values())


def test_mixed_precision_is_checked_against_float32(tiny_bundle):
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import (
        MIXED_PRECISION_TOLERANCE,
        Classifier,
        precision_check_inputs,
    )

    clf = Classifier(open_bundle(tiny_bundle), mixed_precision=True)
    if not clf.on_gpu:  # off on the CPU (float16 is emulated there, slower), with the reason
        assert clf.precision == "float32"
        assert clf.precision_check.used is False and "GPU" in clf.precision_check.reason
    x = precision_check_inputs(clf.spec)
    p32 = clf.predict_inputs(x) if clf.precision == "float32" else None
    check = Classifier(open_bundle(tiny_bundle))._try_mixed_precision(require_gpu=False)
    assert check.inputs == len(x) == 8 and check.max_abs_diff is not None
    assert check.used is (check.max_abs_diff <= MIXED_PRECISION_TOLERANCE)
    if check.used and p32 is not None:
        clf16 = Classifier(open_bundle(tiny_bundle))
        clf16._try_mixed_precision(require_gpu=False)
        assert clf16.precision == "mixed_float16"
        np.testing.assert_allclose(clf16.predict_inputs(x), p32, atol=MIXED_PRECISION_TOLERANCE)


def test_the_device_comparison_is_exact_for_the_same_device(tiny_bundle):
    """Every explainer is seeded: on one device two runs are identical, so a GPU-vs-CPU
    difference is floating-point arithmetic only, which the tolerances bound."""
    from cxr_viewer.commands.selftest import EXPLAIN
    from cxr_viewer.core.device_compare import TOLERANCE, compare_devices, gpu_names
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier

    clf = load_classifier(tiny_bundle)
    study = load_study(SAMPLE_PNG)
    if not gpu_names():
        assert compare_devices(clf, study, 0, EXPLAIN) == {
            "compared": False,
            "reason": "TensorFlow sees no GPU: nothing to compare",
        }
    out = compare_devices(clf, study, 0, EXPLAIN, device="/CPU:0")
    assert out["compared"] is True and out["ok"] is True
    assert set(out["results"]) == {"predict", *EXPLAIN} and set(TOLERANCE) >= set(out["results"])
    assert out["results"]["predict"]["max_abs_diff"] == 0.0
    for method in EXPLAIN:
        assert out["results"][method]["max_rel_diff"] == 0.0, method
