"""Box supervision on phantoms: a decoy marker predicts the label in every split, radiologist
boxes mark the real lesion. Without boxes the class-activation map may use either; with boxes
its evidence moves into the boxes (away from the decoy) while the classifier still learns. The
run's report scores localization on the validation boxes, with the prior from the training
boxes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from trainer.config import load_config

pytestmark = pytest.mark.slow

SIDE = 64
DECOY = (2, 14, 2, 14)  # rows, cols of the bright marker (top-left corner)


def _write_phantoms(root, n: int = 240, seed: int = 3):
    """Films with a faint blob lesion (positives) and a bright corner marker on every positive;
    labels.csv uses its own column names and labels, boxes.csv boxes the lesions."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    labels, boxes = [], []
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    for i in range(n):
        positive = i % 2 == 1
        img = 0.35 + 0.05 * rng.standard_normal((SIDE, SIDE))
        name = f"images/f{i:03d}.png"
        if positive:
            cy, cx = rng.integers(24, 54), rng.integers(22, 54)
            img += 0.25 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
            r0, r1, c0, c1 = DECOY
            img[r0:r1, c0:c1] = 0.95
            boxes.append([name, "Blob", cx - 7, cy - 7, 14, 14, SIDE, SIDE, f"p{i}"])
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(root / name)
        labels.append([name, "Blob seen" if positive else "Clear", f"p{i}"])
    with open(root / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "finding_text", "pid"])
        w.writerows(labels)
    with open(root / "boxes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "finding", "x", "y", "w", "h", "image_width", "image_height",
                    "patient_id"])  # fmt: skip
        w.writerows(boxes)
    return root


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    return _write_phantoms(tmp_path_factory.mktemp("box_phantoms"))


def _config(root, loss_weight: float):
    return load_config(
        None,
        {
            "data.format": "csv",
            "data.root": str(root / "labels.csv"),
            "data.columns": {"path": "filename", "label": "finding_text", "patient_id": "pid"},
            "data.label_map": {"Blob seen": "lesion", "Clear": "no_lesion"},
            "data.class_names": ["no_lesion", "lesion"],
            "boxes.csv": str(root / "boxes.csv"),
            "boxes.class_map": {"Blob": "lesion"},
            "boxes.loss_weight": loss_weight,
            "model.head": "cam",
            "model.input_size": SIDE,
            "model.blocks": 2,
            "model.init_filters": 16,
            "model.dropout": 0.1,
            "augment.enabled": False,
            "evaluate.pixel_baseline": False,
            "train.epochs": 10,
            "train.patience": 10,
            "train.learning_rate": 0.003,
            "train.verbose": 0,
            "train.tensorboard": False,
            "export.background_size": 4,
        },
    )


def _map_shares(run_dir, root) -> tuple[float, float]:
    """Mean share of the positive class-activation map inside the lesion box and inside the
    decoy, over the validation and test positives."""
    from cxr_viewer.core.explain.gradcam import GradCamExplainer
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.model.preprocess import study_to_input

    clf = load_classifier(run_dir / "bundle")
    explainer = GradCamExplainer(clf)
    assert explainer.default_layer() == "head_cam"
    splits = {r["path"]: r["split"] for r in csv.DictReader(open(run_dir / "splits.csv"))}
    box_of = {r["filename"]: r for r in csv.DictReader(open(root / "boxes.csv"))}
    inside, decoy = [], []
    for name, b in box_of.items():
        path = str((root / name).resolve())
        if splits.get(path) not in ("val", "test"):
            continue
        x = study_to_input(load_study(path), clf.spec)
        v = np.clip(explainer.explain(x, 1).resized(SIDE, SIDE).values, 0, None)
        total = v.sum() or 1.0
        x0, y0 = int(float(b["x"])), int(float(b["y"]))
        inside.append(v[y0 : y0 + 14, x0 : x0 + 14].sum() / total)
        r0, r1, c0, c1 = DECOY
        decoy.append(v[r0:r1, c0:c1].sum() / total)
    return float(np.mean(inside)), float(np.mean(decoy))


def test_boxes_move_the_map_from_the_decoy_into_the_boxes(phantom_root, tmp_path):
    from trainer.run import run_training

    plain = run_training(_config(phantom_root, 0.0), tmp_path / "plain", progress=False)
    boxed = run_training(_config(phantom_root, 2.0), tmp_path / "boxed", progress=False)
    # the classifier still learns (the decoy alone would give a perfect score)
    assert boxed.evaluation["test"]["auc"] >= 0.9, boxed.evaluation["test"]
    in_plain, decoy_plain = _map_shares(tmp_path / "plain", phantom_root)
    in_boxed, decoy_boxed = _map_shares(tmp_path / "boxed", phantom_root)
    assert in_boxed > in_plain + 0.1, (in_plain, in_boxed)
    assert decoy_boxed < decoy_plain, (decoy_plain, decoy_boxed)
    assert in_boxed > decoy_boxed

    # the report's localization section: validation boxes, prior from the training boxes
    report = (tmp_path / "boxed" / "report" / "report.md").read_text()
    assert "## Localization on the validation boxes" in report
    assert "## Box supervision" in report
    loc = boxed.evaluation["localization"]
    assert loc["split"] == "val" and loc["prior_fitted_on"].startswith("training boxes")
    assert "--prior-boxes" in loc["command"]
    val_boxes = tmp_path / "boxed" / "localization" / "val_boxes.csv"
    splits = {
        r["path"]: r["split"] for r in csv.DictReader(open(tmp_path / "boxed" / "splits.csv"))
    }
    assert {splits[r["filename"]] for r in csv.DictReader(open(val_boxes))} == {"val"}
    meta = json.loads((tmp_path / "boxed" / "bundle" / "metadata.json").read_text())
    card = meta["model_card"]["localization"]
    assert card["split"] == "val" and "gradcam" in card and "anatomy_prior" in card
    assert card["classes"] == ["lesion"]  # the boxes score the lesion class's maps
    assert meta["gradcam_layer"] == "head_cam"
    # the supervised map beats the plain one on the report's energy inside the boxes, too
    plain_e = plain.evaluation["localization"]["overall"]["gradcam"]["energy_inside"]
    boxed_e = loc["overall"]["gradcam"]["energy_inside"]
    assert boxed_e > plain_e, (plain_e, boxed_e)
