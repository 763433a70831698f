"""Golden numbers of every analysis path on the demo bundle: the viewer's session
(:class:`~cxr_viewer.gui.session.ModelSession`), ``cxr-viewer batch`` (local engine and
``--engine ray``), ``cxr-viewer localize`` and ``cxr-viewer --self-test`` must keep giving the
predictions, maps (to 1e-5) and trust figures recorded in ``golden/pipeline.npz``.

The file was written by today's code before the analysis pipeline was unified; a refactoring
that changes a number fails here. Regenerate it (only for a deliberate change of the numbers,
and say so in the commit) with::

    CXR_LENS_REGENERATE_GOLDEN=1 PYTHONPATH=$PWD QT_QPA_PLATFORM=offscreen \\
        python -m pytest -q -p no:cacheprovider tests/core/test_golden_pipeline.py

The file holds no pickles (``np.load(..., allow_pickle=False)``): maps are kept as every
:data:`STRIDE`-th pixel plus their sum and L2 norm, CSV rows as string arrays.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from cxr_viewer.cli import main  # noqa: E402
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "pipeline.npz"
REGENERATE = os.environ.get("CXR_LENS_REGENERATE_GOLDEN") == "1"
#: the sample studies analysed: a synthetic phantom (256 px, resized) and a real film (224 px)
STUDIES = ("phantom_selftest.png", "real-04_pneumonia_bacteria__person671_bacteria_2564.jpeg")
METHODS = ("gradcam", "lime", "shap", "occlusion")
#: few samples, seeded: what ``batch --lime-samples 97 --shap-samples 16 --seed 0`` passes
SETTINGS = {
    "gradcam": {},
    "lime": {"seed": 0, "num_samples": 97},
    "shap": {"seed": 0, "nsamples": 16},
    "occlusion": {},
}
BATCH_OPTIONS = ["--lime-samples", "97", "--shap-samples", "16", "--seed", "0"]
STRIDE = 4
MAP_ATOL = 1e-5
#: figures written to a CSV are rounded to 4 (probabilities 6) decimals
CSV_ATOL = 1.5e-4


def _map_digest(values: np.ndarray) -> dict[str, np.ndarray]:
    v = np.asarray(values, np.float64)
    return {
        "map": np.asarray(values, np.float32)[::STRIDE, ::STRIDE].copy(),
        "map_stats": np.array([v.sum(), np.sqrt((v * v).sum()), v.min(), v.max()]),
        "shape": np.array(v.shape),
    }


def _put(out: dict[str, np.ndarray], prefix: str, values: dict[str, np.ndarray]) -> None:
    for k, v in values.items():
        out[f"{prefix}/{k}"] = np.asarray(v)


def _trust(trust: dict[str, float]) -> dict[str, np.ndarray]:
    keys = sorted(trust)
    return {
        "trust_keys": np.array(keys, dtype=str),
        "trust": np.array([float(trust[k]) for k in keys], np.float64),
    }


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _row_arrays(row: dict[str, str]) -> dict[str, np.ndarray]:
    keys = sorted(k for k in row if not k.startswith("seconds"))
    return {
        "csv_keys": np.array(keys, dtype=str),
        # the input's name only: the run's temporary folder differs every time
        "csv_values": np.array([Path(row[k]).name if k == "file" else row[k] for k in keys], str),
    }


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    src = tmp_path_factory.mktemp("golden-in")
    for name in STUDIES:
        shutil.copy(samples_dir() / name, src / name)
    return src


def _session_numbers() -> dict[str, np.ndarray]:
    from cxr_viewer.core.io import load_study
    from cxr_viewer.gui.session import ModelSession

    session = ModelSession()
    session.load(demo_bundle_dir())
    out: dict[str, np.ndarray] = {}
    for name in STUDIES:
        study = load_study(samples_dir() / name)
        pred = session.predict(study)
        out[f"session/{name}/probs"] = np.asarray(pred.probabilities, np.float64)
        out[f"session/{name}/predicted"] = np.array(pred.predicted_index)
        for method in METHODS:
            result = session.explain(study, method, pred.predicted_index, None, SETTINGS[method])
            hm = result.heatmap
            _put(out, f"session/{name}/{method}", _map_digest(hm.values))
            _put(out, f"session/{name}/{method}", _trust(hm.trust))
            out[f"session/{name}/{method}/preview_stats"] = _map_digest(result.preview)["map_stats"]
    return out


def _batch_numbers(src: Path, out_dir: Path, tag: str, *extra: str) -> dict[str, np.ndarray]:
    args = ["batch", str(src), "--model", str(demo_bundle_dir()), "--out", str(out_dir)]
    code = main([*args, "--explain", ",".join(METHODS), "--quiet", *BATCH_OPTIONS, *extra])
    assert code == 0
    out: dict[str, np.ndarray] = {}
    rows = {Path(r["file"]).name: r for r in _csv_rows(out_dir / "predictions.csv")}
    assert sorted(rows) == sorted(STUDIES)
    for name, row in rows.items():
        assert row["status"] == "ok", row["error"]
        _put(out, f"{tag}/{name}", _row_arrays(row))
        for method in METHODS:
            values = np.load(out_dir / row[f"map_{method}"], allow_pickle=False)
            _put(out, f"{tag}/{name}/{method}", _map_digest(values))
    return out


def _localize_numbers(src: Path, out_dir: Path) -> dict[str, np.ndarray]:
    boxes = src / "boxes.csv"
    boxes.write_text(
        "filename,finding,x,y,w,h,patient_id\n"
        f"{STUDIES[0]},PNEUMONIA,40,60,80,90,p1\n"
        f"{STUDIES[1]},PNEUMONIA,120,50,70,100,p2\n"
        f"{STUDIES[1]},NORMAL,20,30,60,60,p2\n",
        encoding="utf-8",
    )
    args = ["localize", str(boxes), "--model", str(demo_bundle_dir()), "--out", str(out_dir)]
    extra = ["--explain", "gradcam,occlusion,lime", "--lime-samples", "97", "--seed", "0"]
    assert main([*args, *extra, "--bootstrap", "50", "--montage", "0", "--quiet"]) == 0
    out: dict[str, np.ndarray] = {}
    for row in _csv_rows(out_dir / "rows.csv"):
        # the anatomy prior has no other patient with the finding here: an error row, kept
        assert row["status"] == "ok" or row["method"] == "anatomy_prior", row
        prefix = f"localize/{row['filename']}/{row['finding']}/{row['method']}"
        _put(out, prefix, _row_arrays(row))
    return out


def _selftest_numbers(tmp: Path) -> dict[str, np.ndarray]:
    from cxr_viewer.commands import selftest

    report_path = tmp / "selftest.json"
    code = main(["--self-test", "--report", str(report_path)])
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert code == 0, report["failed"]
    out: dict[str, np.ndarray] = {}
    for key in selftest.SAMPLES:
        step = report["steps"][f"predict_{key}"]
        probs = step["probabilities"]
        out[f"selftest/{key}/probs"] = np.array([probs[c] for c in sorted(probs)], np.float64)
        out[f"selftest/{key}/predicted"] = np.array(step["predicted"], dtype=str)
    for method in selftest.EXPLAIN:
        step = report["steps"][f"explain_{method}"]
        out[f"selftest/{method}/layer"] = np.array(step["layer"] or "", dtype=str)
        out[f"selftest/{method}/settings"] = np.array(
            json.dumps(step["settings"], sort_keys=True), dtype=str
        )
        _put(out, f"selftest/{method}", _trust(step["trust"]))
    return out


def _compare(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    if "csv_values" in name:
        return  # compared cell by cell in _compare_csv
    if name.endswith("/settings"):  # JSON with figures (e.g. occlusion's base score)
        _compare_json(name, json.loads(str(got)), json.loads(str(want)))
        return
    if want.dtype.kind in "US":
        assert got.tolist() == want.tolist(), name
        return
    atol = MAP_ATOL if name.endswith("/map") else 1e-6
    if name.endswith("map_stats") or name.endswith("preview_stats"):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=name)
        return
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, equal_nan=True, err_msg=name)


def _compare_json(name: str, got: object, want: object) -> None:
    """Equal structure and text; numbers to 1e-5 (the forward path — TensorFlow or
    onnxruntime, and its batch size — is chosen by timing at load, and moves p by ~1e-6)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), name
        for k in want:
            if k != "batch_size":  # the forward path's, timed at load (8 or 16 on a CPU)
                _compare_json(f"{name}.{k}", got[k], want[k])
    elif isinstance(want, float) or isinstance(got, float):
        assert isinstance(got, int | float) and isinstance(want, int | float), name
        assert abs(float(got) - float(want)) <= 1e-5, (name, got, want)
    else:
        assert got == want, (name, got, want)


def _compare_csv(prefix: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    keys = want[f"{prefix}/csv_keys"].tolist()
    assert got[f"{prefix}/csv_keys"].tolist() == keys, prefix
    for key, a, b in zip(
        keys,
        got[f"{prefix}/csv_values"].tolist(),
        want[f"{prefix}/csv_values"].tolist(),
        strict=True,
    ):
        if key == "forward_path":
            continue  # e.g. "onnxruntime (CPU), batch 16": the batch size is timed at load
        if key.startswith(("map_", "overlay_")):
            assert Path(a).name == Path(b).name, (prefix, key)
            continue
        try:
            fa, fb = float(a), float(b)
        except ValueError:
            assert a == b, (prefix, key, a, b)
            continue
        assert (np.isnan(fa) and np.isnan(fb)) or abs(fa - fb) <= CSV_ATOL, (prefix, key, a, b)


def _check(got: dict[str, np.ndarray]) -> None:
    if REGENERATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        old = dict(np.load(GOLDEN, allow_pickle=False)) if GOLDEN.exists() else {}
        np.savez_compressed(GOLDEN, **{**old, **got})
        return
    want = dict(np.load(GOLDEN, allow_pickle=False))
    assert set(got) == {k for k in want if k.split("/")[0] in {k2.split("/")[0] for k2 in got}}
    for key, value in got.items():
        _compare(key, value, want[key])
        if key.endswith("/csv_keys"):
            _compare_csv(key.rsplit("/", 1)[0], got, want)


def test_session_batch_localize_and_self_test_keep_their_numbers(inputs, tmp_path):
    """One test (one model load per path) so the module stays well under a minute."""
    got = _session_numbers()
    got.update(_batch_numbers(inputs, tmp_path / "batch", "batch"))
    got.update(_localize_numbers(inputs, tmp_path / "localize"))
    got.update(_selftest_numbers(tmp_path))
    _check(got)
    # the paths agree with each other where they compute the same thing
    for name in STUDIES:
        for method in METHODS:
            trust = dict(
                zip(
                    got[f"session/{name}/{method}/trust_keys"].tolist(),
                    got[f"session/{name}/{method}/trust"].tolist(),
                    strict=True,
                )
            )
            row = dict(
                zip(
                    got[f"batch/{name}/csv_keys"].tolist(),
                    got[f"batch/{name}/csv_values"].tolist(),
                    strict=True,
                )
            )
            assert abs(float(row[f"{method}_deletion_auc"]) - trust["deletion_auc"]) < 1e-4
            assert abs(float(row[f"{method}_insertion_auc"]) - trust["insertion_auc"]) < 1e-4


def test_ray_engine_keeps_the_batch_numbers(ray_session, inputs, tmp_path):
    got = _batch_numbers(inputs, tmp_path / "ray", "batch", "--engine", "ray", "--workers", "1")
    if REGENERATE:
        return  # the local engine's numbers are the golden ones; Ray must give the same
    want = dict(np.load(GOLDEN, allow_pickle=False))
    for key, value in got.items():
        _compare(key, value, want[key])
        if key.endswith("/csv_keys"):
            _compare_csv(key.rsplit("/", 1)[0], got, want)
