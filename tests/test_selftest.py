"""``cxr-viewer --self-test`` in the source install, against a tiny bundle (not the demo one)."""

from __future__ import annotations

import json
import shutil

import pytest

from cxr_viewer.cli import main
from cxr_viewer.commands import selftest
from cxr_viewer.core.explain.registry import explainer_class
from cxr_viewer.core.paths import samples_dir

STEPS = [
    "dicom_codecs",
    "matplotlib",
    "load_model",
    *(f"open_{k}" for k in selftest.SAMPLES),
    *(f"predict_{k}" for k in selftest.SAMPLES),
    *(f"explain_{m}" for m in selftest.EXPLAIN),
    "sanity_check",
    "device",
]


def _run(tmp_path, *extra: str) -> tuple[int, dict]:
    report = tmp_path / "report.json"
    code = main(["--self-test", "--report", str(report), *extra])
    return code, json.loads(report.read_text(encoding="utf-8"))


def test_samples_exist_with_the_syntaxes_they_exercise():
    import pydicom

    for name in selftest.SAMPLES.values():
        assert (samples_dir() / name).is_file(), f"{name}: run python -m trainer.sample_studies"
    syntaxes = {
        pydicom.dcmread(samples_dir() / n, stop_before_pixels=True).file_meta.TransferSyntaxUID
        for n in (selftest.SAMPLES["jpeg2000_dicom"], selftest.SAMPLES["jpegls_dicom"])
    }
    assert syntaxes == {pydicom.uid.JPEG2000Lossless, pydicom.uid.JPEGLSLossless}


def test_explain_settings_are_ones_the_explainers_take():
    from cxr_viewer.core.explain.registry import EXPLAINERS

    for method, settings in selftest.EXPLAIN.items():
        EXPLAINERS[method].settings_type.from_mapping(settings)  # names, types, ranges valid


def test_self_test_passes_and_reports_every_step(tmp_path, tiny_bundle, capsys):
    code, report = _run(tmp_path, "--model", str(tiny_bundle))
    out = capsys.readouterr().out
    assert code == 0, out
    assert report["ok"] is True and report["failed"] == []
    assert list(report["steps"]) == STEPS
    assert all(s["ok"] and s["seconds"] >= 0 for s in report["steps"].values())
    assert report["device"] == report["steps"]["load_model"]["device"]
    assert report["device"] == "CPU" or report["device"].startswith("GPU")
    steps = report["steps"]
    assert steps["open_jpeg2000_dicom"]["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    assert steps["open_jpegls_dicom"]["transfer_syntax"] == "1.2.840.10008.1.2.4.80"
    assert "pylibjpeg" in steps["open_jpeg2000_dicom"]["decoders"]
    # without early stopping LIME runs to its cap: the image and whole antithetic pairs
    lime_cap = explainer_class("lime").quick_settings["num_samples"]
    assert steps["explain_lime"]["settings"]["samples_used"] == lime_cap
    assert (
        steps["explain_shap"]["layer"]
        in json.loads((tiny_bundle / "metadata.json").read_text(encoding="utf-8"))["shap_layers"]
    )
    assert "SELF-TEST PASSED on CPU" in out or "SELF-TEST PASSED on GPU" in out
    _check_device_section(steps["device"], report["device"])
    # the console names the forward path (as the report does) and where the report went
    forward = report["forward_path"]
    assert forward == steps["load_model"]["forward_path"]
    assert forward.endswith(f", batch {steps['device']['batch_size']}")
    assert f"load_model ({steps['load_model']['seconds']} s): on {report['device']}, " in out
    assert f"forward path {forward}\n" in out
    assert out.rstrip().endswith(f"SELF-TEST PASSED on {report['device']}, forward path {forward}")
    assert f"JSON report written to {(tmp_path / 'report.json').resolve()}\n" in out
    assert selftest.NO_REPORT_HINT not in out


def test_self_test_runs_and_then_reports_the_cached_sanity_check(
    tmp_path, tiny_bundle, capsys, monkeypatch
):
    monkeypatch.setenv("CXR_SANITY_CACHE", str(tmp_path / "cache"))
    code, report = _run(tmp_path, "--model", str(tiny_bundle))
    assert code == 0
    before = report["steps"]["sanity_check"]
    assert all(str(before[m]).startswith("not run") for m in selftest.EXPLAIN)
    code, report = _run(tmp_path, "--model", str(tiny_bundle), "--sanity")
    assert code == 0, capsys.readouterr().out
    computed = report["steps"]["sanity_check"]
    for m in selftest.EXPLAIN:
        assert computed[m]["stages"][-1] == "all layers"
        assert len(computed[m]["rho"]) == len(computed[m]["stages"]) >= 2
        assert computed[m]["verdict"] in (
            "insensitive to the model for this model",
            "depends on the model (randomisation check passed)",
        )
    assert computed["gradcam"]["insensitive"] is False
    code, report = _run(tmp_path, "--model", str(tiny_bundle))  # now from the cache
    cached = report["steps"]["sanity_check"]
    assert {m: cached[m]["rho"] for m in selftest.EXPLAIN} == {
        m: computed[m]["rho"] for m in selftest.EXPLAIN
    }
    assert "with every weight random" in capsys.readouterr().out


def _check_device_section(section: dict, device: str) -> None:
    """What the device section says, on this machine (CPU) or a GPU one."""
    import tensorflow as tf

    assert section["ok"] is True
    # in this test process other tests may have run Keras before the one place did (noted);
    # the fresh-process checks are in tests/core/test_device.py
    assert section["applied_before_first_op"] is True or "already run an op" in section["note"]
    assert section["device"] == device and section["request"] == "auto"
    assert section["gpus_found"] == len(tf.config.list_physical_devices("GPU"))
    if section["gpus_found"] == 0:
        assert device == "CPU" and section["visible_gpus"] == []
        assert section["memory_growth"] is False and section["memory_limit_mb"] is None
        # the forward path chosen at warm-up (core.model.forward) sets the batch size on the CPU too
        forward = section["forward"]
        assert section["batch_size"] == forward["batch_size"]
        assert section["batch_throughput"] == forward["throughput"].get(forward["path"], {})
        assert section["gpu_vs_cpu"] == {
            "compared": False,
            "reason": "TensorFlow sees no GPU: nothing to compare",
        }
    else:
        assert device.startswith("GPU 0") and len(section["visible_gpus"]) == 1
        assert section["memory_growth"] is True
        comparison = section["gpu_vs_cpu"]
        assert comparison["compared"] is True and comparison["ok"] is True
        assert set(comparison["results"]) == {"predict", *selftest.EXPLAIN}
    assert section["precision"] == "float32" and section["mixed_precision_requested"] is False


def test_a_broken_bundle_fails_with_the_step_named(tmp_path, tiny_bundle, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    model_file = broken / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:1000])  # truncated: checksum and zip broken
    code, report = _run(tmp_path, "--model", str(broken))
    out = capsys.readouterr().out
    assert code == 1
    assert report["ok"] is False
    assert report["failed"][0] == "load_model"
    assert report["steps"]["open_png"]["ok"]  # what does not need the model still runs
    assert "predict_png" in report["failed"] and "explain_gradcam" in report["failed"]
    assert "[FAILED] load_model" in out and "SELF-TEST FAILED (load_model" in out


def test_missing_samples_fail_the_open_steps(tmp_path, tiny_bundle, monkeypatch, capsys):
    empty = tmp_path / "resources"
    (empty / "samples").mkdir(parents=True)
    monkeypatch.setenv("CXR_RESOURCES", str(empty))
    code, report = _run(tmp_path, "--model", str(tiny_bundle))
    capsys.readouterr()
    assert code == 1
    assert {f"open_{k}" for k in selftest.SAMPLES} <= set(report["failed"])
    assert report["steps"]["load_model"]["ok"]
    assert "phantom_j2k.dcm" in report["steps"]["open_jpeg2000_dicom"]["error"]


def test_codec_check_fails_when_pylibjpeg_entry_points_are_lost(monkeypatch):
    """What a frozen app without pylibjpeg's dist-info looks like: modules import, no decoders."""
    import pylibjpeg.utils

    assert selftest.check_codecs()["plugins"]["JPEGLossless"] == ["pylibjpeg"]
    monkeypatch.setattr(pylibjpeg.utils, "get_pixel_data_decoders", lambda *a, **k: {})
    with pytest.raises(RuntimeError, match=r"no usable decoder for JPEGLossless.*copy_metadata"):
        selftest.check_codecs()


def _broken_bundle(tmp_path, tiny_bundle):
    """A copy of the tiny bundle with its model file cut short: the self-test fails quickly."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    model_file = broken / "model.keras"
    model_file.write_bytes(model_file.read_bytes()[:1000])
    return broken


def test_without_report_nothing_is_written_and_the_console_says_how(
    tmp_path, tiny_bundle, monkeypatch, capsys
):
    broken = _broken_bundle(tmp_path, tiny_bundle)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(["--self-test", "--model", str(broken)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"{selftest.NO_REPORT_HINT}\nSELF-TEST FAILED (load_model" in out
    assert "written to" not in out
    assert list(work.iterdir()) == []


def test_a_report_that_cannot_be_written_is_an_error(tmp_path, tiny_bundle, capsys):
    broken = _broken_bundle(tmp_path, tiny_bundle)
    target = tmp_path / "a-folder"
    target.mkdir()  # a folder where the report file should go
    code = main(["--self-test", "--model", str(broken), "--report", str(target)])
    captured = capsys.readouterr()
    assert code == 1
    assert f"the self-test report could not be written to {target.resolve()}" in captured.err
    assert "give --report a file in a writable folder" in captured.err
    assert "JSON report written" not in captured.out


def test_report_without_self_test_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--report", str(tmp_path / "r.json")])
    assert exit_info.value.code == 2
    assert "--report FILE saves the --self-test report: add --self-test" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
