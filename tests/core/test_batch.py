"""`cxr-viewer batch`: predictions.csv, overlays and heat maps; bad files do not stop it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from explain_support import tiny_classifier
from PIL import Image

from cxr_viewer.cli import main


@pytest.fixture(scope="module")
def bundle_root():
    pytest.importorskip("tensorflow")
    return tiny_classifier().bundle.root


def test_batch_writes_rows_maps_and_overlays(tmp_path, bundle_root):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 48)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((rng.random((30, 30)) * 255).astype(np.uint8)).save(src / "sub" / "a.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # truncated PNG
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            str(src),
            "--model",
            str(bundle_root),
            "--explain",
            "gradcam,lime,shap",
            "--out",
            str(out),
            "--lime-samples",
            "32",
            "--shap-samples",
            "8",
            "--quiet",
        ]
    )
    assert code == 0
    rows = list(csv.DictReader(open(out / "predictions.csv", encoding="utf-8")))
    assert len(rows) == 3
    by_name = {r["file"].replace("\\", "/").split("/in/")[1]: r for r in rows}
    bad = by_name["broken.png"]
    assert bad["status"] == "error" and bad["error"] and bad["p_lesion"] == ""
    for name, shape in (("a.png", (40, 48)), ("sub/a.png", (30, 30))):
        r = by_name[name]
        assert r["status"] == "ok", r["error"]
        assert float(r["p_lesion"]) + float(r["p_no_lesion"]) == pytest.approx(1.0, abs=1e-4)
        assert r["predicted_class"] in ("lesion", "no_lesion")
        path, batch = r["forward_path"].split(", batch ")  # e.g. "tf.function (CPU), batch 16"
        assert path.split(" (")[0] in ("tf.function", "XLA", "onnxruntime") and int(batch) > 0
        for m in ("gradcam", "lime", "shap"):
            assert float(r[f"seconds_{m}"]) > 0
            assert 0.0 <= float(r[f"{m}_deletion_auc"]) <= 1.0
            assert 0.0 <= float(r[f"{m}_insertion_auc"]) <= 1.0
        assert r["shap_completeness_gap"] != ""
        stem = name.replace("/", "__").removesuffix(".png")
        for m in ("gradcam", "lime", "shap"):
            heat = np.load(out / f"{stem}_{m}.npy", allow_pickle=False)
            assert heat.shape == shape and heat.dtype == np.float32
            with Image.open(out / f"{stem}_{m}.png") as im:
                assert im.size == (shape[1], shape[0]) and im.mode == "RGB"


def test_batch_reports_a_bad_method_or_empty_input(tmp_path, bundle_root, capsys):
    (tmp_path / "empty").mkdir()
    args = ["--model", str(bundle_root), "--out", str(tmp_path / "o")]
    assert main(["batch", str(tmp_path / "empty"), *args]) == 2
    assert main(["batch", str(tmp_path), "--explain", "no-such-method", *args]) == 2
    assert "no-such-method" in capsys.readouterr().err
