"""The forward path of the model-agnostic loops (cxr_viewer.core.model.forward): verified, chosen,
forced, remembered; with a tiny synthetic model, and ONNX on the demo bundle's model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from cxr_viewer.core.model import forward
from cxr_viewer.core.model.forward import (
    EQUALITY_TOLERANCE,
    ForwardCandidate,
    ForwardConfigError,
    choose_forward,
    onnx_providers,
    requested_path,
)

RNG = np.random.default_rng(0)
CHECK = RNG.random((8, 4, 4, 1), dtype=np.float32)


def _model(x: np.ndarray) -> np.ndarray:
    """A two-class 'model' in numpy: softmax of two fixed projections."""
    z = np.stack([x.mean(axis=(1, 2, 3)), x.std(axis=(1, 2, 3))], axis=1) * 3.0
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _timing_inputs(n: int) -> np.ndarray:
    return np.random.default_rng(1).random((n, 4, 4, 1), dtype=np.float32)


def _choose(builders, requested="auto", **kw):
    tf = ForwardCandidate("tf", _model)
    return choose_forward(
        tf,
        builders,
        check_inputs=CHECK,
        timing_inputs=_timing_inputs,
        to_probabilities=lambda p: p,
        requested=requested,
        batch_candidates=(4, 2, 8),
        tune_budget_s=0.5,
        **kw,
    )


def _slow(x: np.ndarray) -> np.ndarray:
    time.sleep(0.05)
    return _model(x)


def test_the_chooser_refuses_a_candidate_with_wrong_outputs_and_one_that_fails():
    def broken():
        raise RuntimeError("conversion failed: op Foo is not supported")

    builders = {
        "wrong": lambda: ForwardCandidate("wrong", lambda x: _model(x) + 2e-4),
        "broken": broken,
        "nan": lambda: ForwardCandidate("nan", lambda x: np.full((len(x), 2), np.nan)),
    }
    choice, chosen = _choose(builders)
    assert choice.name == chosen.name == "tf"
    assert set(choice.rejected) == {"wrong", "broken", "nan"}
    assert "differ from tf.function by 0.0002" in choice.rejected["wrong"]
    assert choice.rejected["broken"] == "RuntimeError: conversion failed: op Foo is not supported"
    assert choice.max_abs_diff["wrong"] == pytest.approx(2e-4, rel=1e-3)
    assert choice.max_abs_diff["nan"] == float("inf")
    assert choice.throughput == {}  # nothing to compare: tf at the base batch, no timing
    assert choice.batch_size == 4 and choice.describe() == "tf.function (CPU), batch 4"


def test_a_forced_path_is_used_when_it_verifies_and_falls_back_to_tf_when_not():
    same = {"onnx": lambda: ForwardCandidate("onnx", lambda x: _model(x) + 5e-5)}
    choice, chosen = _choose(same, requested="onnx")
    assert chosen.name == choice.name == "onnx" and choice.rejected == {}
    assert choice.label == "onnxruntime (CPU)"
    assert set(choice.throughput["onnx"]) == {4, 2, 8} and choice.batch_size in (4, 2, 8)
    np.testing.assert_allclose(chosen(CHECK, 4), _model(CHECK), atol=EQUALITY_TOLERANCE)

    wrong = {"onnx": lambda: ForwardCandidate("onnx", lambda x: 1 - _model(x))}
    choice, chosen = _choose(wrong, requested="onnx")
    assert chosen.name == choice.name == "tf" and "differ" in choice.rejected["onnx"]

    choice, chosen = _choose({}, requested="xla")
    assert chosen.name == "tf" and choice.rejected == {"xla": "not available here"}


def test_auto_keeps_tf_over_a_verified_but_much_slower_candidate():
    choice, chosen = _choose({"slow": lambda: ForwardCandidate("slow", _slow)})
    assert chosen.name == "tf" and choice.rejected == {}
    assert set(choice.throughput) == {"tf", "slow"}
    assert choice.throughput["tf"][4] > choice.throughput["slow"][4]
    assert choice.batch_size in choice.throughput["tf"]
    assert choice.as_dict()["path"] == "tf" and choice.timing_seconds > 0


def test_the_comparison_runs_its_minimum_rounds_even_past_its_budget():
    """A big model's calls outlast the budget after one round: the comparison still times
    every path MIN_COMPARE_ROUNDS times (interleaved), so one noisy call cannot pick the path."""
    calls: dict[str, int] = {"tf": 0, "other": 0}

    def counted(name):
        def fn(x: np.ndarray) -> np.ndarray:
            calls[name] += 1
            return _model(x)

        return ForwardCandidate(name, fn)

    cands = {"tf": counted("tf"), "other": counted("other")}
    x = _timing_inputs(4)
    forward.interleaved_rates(cands, x, [4], 0.0, "tf", forward.MIN_COMPARE_ROUNDS)
    # one warm call each, then one timed call per round
    assert calls == {"tf": 1 + forward.MIN_COMPARE_ROUNDS, "other": 1 + forward.MIN_COMPARE_ROUNDS}
    calls.update(tf=0, other=0)
    forward.interleaved_rates(cands, x, [4], 0.0, "tf")
    assert calls == {"tf": 2, "other": 2}
    assert 1 < forward.MIN_COMPARE_ROUNDS <= forward.MAX_ROUNDS


def test_auto_tries_only_the_auto_paths_and_a_forced_path_may_be_any():
    built = []

    def build(name):
        built.append(name)
        return ForwardCandidate(name, _model)

    builders = {n: (lambda n=n: build(n)) for n in ("xla", "onnx")}
    choice, _ = _choose(builders, auto_paths=("onnx",))
    assert built == ["onnx"] and set(choice.max_abs_diff) == {"onnx"}
    choice, chosen = _choose(builders, requested="xla", auto_paths=("onnx",))
    assert built == ["onnx", "xla"] and chosen.name == "xla"


def test_a_fixed_batch_is_kept_and_fixed_shape_candidates_pad_partial_batches():
    shapes = []

    def fixed(x):
        shapes.append(x.shape[0])
        return _model(x)

    cand = ForwardCandidate("xla", fixed, fixed_shape=True)
    out = cand(CHECK[:3], 8)
    assert shapes == [8] and out.shape == (3, 2)
    np.testing.assert_allclose(out, _model(CHECK[:3]), atol=1e-6)
    choice, chosen = _choose({"xla": lambda: cand}, requested="xla", fixed_batch=6)
    assert chosen is cand and choice.batch_size == 6 and list(choice.throughput["xla"]) == [6]


def test_the_requested_path_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(forward.FORWARD_ENV, raising=False)
    assert requested_path() == "auto"
    monkeypatch.setenv(forward.FORWARD_ENV, " ONNX ")
    assert requested_path() == "onnx"
    assert requested_path("xla") == "xla"
    monkeypatch.setenv(forward.FORWARD_ENV, "tensorrt")
    with pytest.raises(ForwardConfigError) as err:
        requested_path()
    assert "auto, tf, xla, onnx" in err.value.why and err.value.hint


def test_onnx_providers_follow_the_device():
    cpu_only = ["CPUExecutionProvider"]
    cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(False, cuda) == ["CPUExecutionProvider"]
    assert onnx_providers(True, cuda) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        onnx_providers(True, cpu_only)
    with pytest.raises(RuntimeError):
        onnx_providers(False, ["AzureExecutionProvider"])


# -- the classifier ---------------------------------------------------------------------------------
@pytest.fixture
def no_cache(monkeypatch):
    monkeypatch.setenv(forward.CACHE_ENV, "off")


def _inputs(clf, n=11):
    shape = (n, clf.spec.height, clf.spec.width, clf.spec.channels)
    return np.random.default_rng(5).random(shape, dtype=np.float32)


@pytest.mark.parametrize("path", ["tf", "xla", "onnx"])
def test_forced_paths_give_the_tf_outputs(tiny_bundle, no_cache, monkeypatch, path):
    pytest.importorskip("onnxruntime")
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    reference = Classifier(open_bundle(tiny_bundle), batch_size=4)
    x = _inputs(reference)
    expected = reference.predict_inputs(x)  # before warm-up: the tf.function path
    monkeypatch.setenv(forward.FORWARD_ENV, path)
    clf = Classifier(open_bundle(tiny_bundle), batch_size=4)
    if clf.on_gpu and path == "onnx":
        pytest.skip("ONNX Runtime's CUDA provider is covered where onnxruntime-gpu is installed")
    clf.warm_up()
    assert clf.forward_choice.name == path, clf.forward_choice.rejected
    device = "GPU" if clf.on_gpu else "CPU"
    assert clf.forward_path == f"{forward.LABELS[path]} ({device}), batch 4"
    # 11 inputs in batches of 4: the last one is partial (padded on the XLA path)
    np.testing.assert_allclose(clf.predict_inputs(x), expected, atol=EQUALITY_TOLERANCE)


def test_a_wrong_onnx_conversion_falls_back_to_tf(tiny_bundle, no_cache, monkeypatch):
    from cxr_viewer.core.model import inference
    from cxr_viewer.core.model.bundle import open_bundle

    def wrong_onnx(model, spec, on_gpu=False, device="CPU", graph=None):
        return ForwardCandidate("onnx", lambda x: np.asarray(model(x))[:, ::-1], device)

    monkeypatch.setattr(inference, "build_onnx", wrong_onnx)
    monkeypatch.setenv(forward.FORWARD_ENV, "onnx")
    clf = inference.Classifier(open_bundle(tiny_bundle))
    clf.warm_up()
    assert clf.forward_choice.name == "tf" and clf.forward_path.startswith("tf.function")
    assert "differ from tf.function" in clf.forward_choice.rejected["onnx"]


def test_auto_measures_once_and_the_next_load_reuses_the_choice(tiny_bundle, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier

    monkeypatch.setenv(forward.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(forward.FORWARD_ENV, raising=False)
    first = Classifier(open_bundle(tiny_bundle))
    first.warm_up()
    c = first.forward_choice
    tried = set(forward.AUTO_PATHS_GPU if first.on_gpu else forward.AUTO_PATHS_CPU)
    assert c.requested == "auto" and set(c.max_abs_diff) == tried
    assert c.rejected == ({} if first.on_gpu else {"xla": forward.XLA_CPU_SKIPPED})
    assert max(c.max_abs_diff.values()) <= EQUALITY_TOLERANCE
    assert set(c.throughput) == {"tf", *tried} and first.batch_size == c.batch_size
    assert first.forward_path == c.describe()
    (entry,) = list(tmp_path.iterdir())
    assert (entry / "model.onnx").is_file() is (c.name == "onnx")

    again = Classifier(open_bundle(tiny_bundle))
    again.warm_up()
    r = again.forward_choice
    assert r.requested == "auto (remembered)" and r.throughput == {}
    assert (r.name, again.batch_size) == (c.name, c.batch_size)
    x = _inputs(again)
    np.testing.assert_allclose(
        again.predict_inputs(x), first.predict_inputs(x), atol=EQUALITY_TOLERANCE
    )

    (entry / "choice.json").write_text("{not json")  # a damaged entry: measured again
    third = Classifier(open_bundle(tiny_bundle))
    third.warm_up()
    assert third.forward_choice.requested == "auto" and third.forward_choice.throughput


@pytest.mark.slow
def test_the_demo_model_converts_to_onnx_within_tolerance(no_cache):
    pytest.importorskip("onnxruntime")
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.forward import build_onnx, max_difference
    from cxr_viewer.core.model.inference import Classifier, precision_check_inputs
    from cxr_viewer.core.paths import demo_bundle_dir

    clf = Classifier(open_bundle(demo_bundle_dir()))
    x = precision_check_inputs(clf.spec)
    reference = clf.predict_inputs(x).astype(np.float64)
    cand = build_onnx(clf.model, clf.spec)
    assert cand.artifact and cand.label == "onnxruntime (CPU)"
    diff = max_difference(cand, reference, x, clf.head.probabilities, 8)
    assert diff <= EQUALITY_TOLERANCE
