"""Export a trained model as a CXR Lens bundle (:func:`cxr_viewer.core.model.bundle.write_bundle`).

The default Grad-CAM layer and the SHAP layers offered come from
:mod:`cxr_viewer.core.explain.layers` (the same rules the viewer applies to imported models);
the SHAP background set is a class-stratified random sample of *training* inputs, already
preprocessed (``study_to_input`` space), saved as plain float32 ``.npy``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from cxr_viewer.core.model.bundle import INTENDED_USE, Bundle, write_bundle

from .config import Config
from .data import PreparedData
from .pipeline import gather_inputs

PREPROCESSING_NOTE = (
    "cxr_viewer.core.model.preprocess.study_to_input: the study's default display image "
    "(window, VOI LUT, MONOCHROME1 inversion) in [0, 1] → resize_for_model (area when "
    "shrinking, cubic when enlarging) → normalize ({name}: x·{scale} + {offset}, grey repeated "
    "to {channels} channel(s))"
)


def background_rows(data: PreparedData, n: int, seed: int) -> np.ndarray:
    """``n`` training cache rows, stratified by class, in seeded random order."""
    part = data.part("train")
    rng = np.random.default_rng(seed)
    n = min(n, len(part))
    share = part["y"].value_counts(normalize=True).sort_index()
    picked: list[int] = []
    for cls, frac in share.items():
        rows = part.loc[part["y"] == cls, "row"].to_numpy()
        take = min(len(rows), max(1, int(round(frac * n))))
        picked.extend(rng.choice(rows, size=take, replace=False).tolist())
    rng.shuffle(picked)
    return np.asarray(picked[:n], dtype=np.int64)


def _metrics_for_metadata(evaluation: dict) -> dict[str, Any]:
    val, test = evaluation["val"], evaluation["test"]
    if "per_finding" in evaluation:  # multi-label: mean AUCs, then one entry per finding
        return {
            "auc": val["auc"],
            "accuracy": val["accuracy"],
            "test_auc": test["auc"],
            "test_accuracy": test["accuracy"],
            "threshold_rule": evaluation["threshold_rule"],
            "per_finding": evaluation["per_finding"],
        }
    return {
        # flat keys the viewer shows (validation figures), then the full tables
        "auc": val["auc"],
        "accuracy": val["accuracy"],
        "test_auc": test["auc"],
        "test_accuracy": test["accuracy"],
        "test_sensitivity": test.get("sensitivity"),
        "test_specificity": test.get("specificity"),
        "test_ece": test.get("ece"),
        "pixel_baseline": evaluation.get("pixel_baseline"),
        "gradcam_check": evaluation.get("gradcam_check"),
        "threshold_rule": evaluation["threshold_rule"],
        "validation": val,
        "test": test,
    }


def model_card(cfg: Config, data: PreparedData, evaluation: dict) -> dict[str, Any]:
    """What a reader needs in five seconds: held-out figures at the operating point, who the
    training films came from, what the model is for and not for (Mitchell et al. 2019)."""
    test = evaluation["test"]
    sp = data.summary()["splits"]["test"]
    card: dict[str, Any] = {
        "task": " vs ".join(data.class_names),
        "test_auc": test["auc"],
        "test_auc_per_class": test.get("auc_per_class", {}),
        "test_images": sp["images"],
        "test_patients": sp["patients"],
        "test_ece": test.get("ece"),
        "threshold": evaluation["threshold"],
        "threshold_rule": evaluation["threshold_rule"],
        "positive_class": evaluation["positive_class"],
        "training_population": cfg.export.training_population
        or f"{data.summary()['images']} images of {data.summary()['patients']} patients from "
        f"{', '.join(data.summary()['sources'])}",
        "intended_use": cfg.export.intended_use or INTENDED_USE,
        "not_for": cfg.export.not_for or "any clinical decision",
    }
    if data.head.findings:  # independent findings, each with its own threshold and test AUC
        per = evaluation["per_finding"]
        card["task"] = "independent findings: " + ", ".join(data.class_names)
        card["test_auc_per_class"] = {f: per[f]["test_auc"] for f in data.class_names}
        card["thresholds"] = dict(evaluation["thresholds"])
    if test.get("sensitivity") is not None:
        card["test_sensitivity"] = test["sensitivity"]
        card["test_specificity"] = test["specificity"]
    if test.get("sensitivity_by_subtype"):
        card["test_sensitivity_by_subtype"] = {
            k: v["sensitivity"] for k, v in test["sensitivity_by_subtype"].items()
        }
    if evaluation.get("pixel_baseline"):
        card["pixel_baseline_test_auc"] = evaluation["pixel_baseline"]["test_auc"]
    if evaluation.get("gradcam_check"):
        g = evaluation["gradcam_check"]
        card["gradcam_median_drop"] = g["median_drop_gradcam"]
        card["gradcam_median_drop_random"] = g["median_drop_random"]
        card["gradcam_median_log_odds_drop"] = g["median_log_odds_drop_gradcam"]
        card["gradcam_median_log_odds_drop_random"] = g["median_log_odds_drop_random"]
        card["gradcam_centre_mass"] = g["median_centre_mass"]
        if g.get("by_fill"):
            card["gradcam_deletion_by_fill"] = {
                fill: {
                    "median_log_odds_margin": f["median_log_odds_margin"],
                    "share_gradcam_beats_random": f["share_gradcam_beats_random"],
                }
                for fill, f in g["by_fill"].items()
            }
    if evaluation.get("localization"):
        from .localization import card_entry

        card["localization"] = card_entry(evaluation["localization"])
    return card


def data_summary_for_metadata(data: PreparedData) -> dict[str, Any]:
    s = data.summary()
    m = data.manifest
    # images per class (per finding: images with it), from the head's targets of every image
    total = data.head.targets(m, data.class_names).sum(axis=0)
    per_class = ", ".join(f"{c} {int(n)}" for c, n in zip(data.class_names, total, strict=True))
    sp = s["splits"]
    return {
        "source": ", ".join(s["sources"]),
        "views": ", ".join(s["views"]) or "not recorded",
        "images": s["images"],
        "patients": s["patients"],
        "classes": per_class,
        "split": (
            f"by patient, train/val/test = {sp['train']['patients']}/{sp['val']['patients']}/"
            f"{sp['test']['patients']} patients, {sp['train']['images']}/{sp['val']['images']}/"
            f"{sp['test']['images']} images"
        ),
    }


def export_bundle(
    model,
    cfg: Config,
    data: PreparedData,
    evaluation: dict,
    out_dir: str | Path,
    *,
    training: dict[str, Any] | None = None,
    report_files: list[Path] | None = None,
) -> Bundle:
    """Write the bundle to ``out_dir`` (replacing it) and return it re-opened.

    ``report_files`` (the Markdown report and figures) are copied into ``out_dir/report/``.
    """
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.preprocess import PREPROCESSINGS

    spec = data.spec
    background = gather_inputs(
        data.cache.images, background_rows(data, cfg.export.background_size, cfg.seed), spec
    )
    scale, offset = PREPROCESSINGS[spec.preprocessing]
    extra: dict[str, Any] = {
        "description": cfg.export.description
        or f"{cfg.model.architecture} trained by cxr-train on {', '.join(data.summary()['sources'])}",
        "architecture": cfg.model.architecture,
        "threshold": evaluation["threshold"],
        "positive_class": evaluation["positive_class"],
        "near_threshold_band": cfg.evaluate.near_threshold_band,
        "preprocessing": PREPROCESSING_NOTE.format(
            name=spec.preprocessing, scale=scale, offset=offset, channels=spec.channels
        ),
        "data_summary": data_summary_for_metadata(data),
        "data_splits": data.summary()["splits"],
        "metrics": _metrics_for_metadata(evaluation),
        "model_card": model_card(cfg, data, evaluation),
        "intended_use": cfg.export.intended_use or INTENDED_USE,
        "background": {
            "count": int(background.shape[0]),
            "selection": f"class-stratified random training inputs (seed {cfg.seed})",
        },
        "training": training or {},
        **({"localization": evaluation["localization"]} if evaluation.get("localization") else {}),
        "config": cfg.to_dict(),
        "trainer": "cxr-train (trainer package of CXR Lens)",
    }
    if data.head.findings:
        extra["thresholds"] = dict(evaluation["thresholds"])
        extra["classes"] = "findings (independent sigmoid outputs): " + ", ".join(data.class_names)
    import keras

    # an uncompiled view of the same layers: the bundle carries no optimizer state (a third of
    # the size for Adam), and the viewer loads it with compile=False anyway
    inference = keras.Model(model.inputs, model.outputs, name=model.name)
    bundle = write_bundle(
        out_dir,
        inference,
        name=cfg.name,
        class_names=data.class_names,
        input_spec=spec,
        gradcam_layer=default_gradcam_layer(inference),
        shap_layers=shap_layers(inference, max_layers=cfg.export.shap_max_layers),
        background=background,
        extra=extra,
        overwrite=True,
        head=data.head.bundle_head(len(data.class_names)),
    )
    if report_files:
        dest = Path(out_dir) / "report"
        dest.mkdir(exist_ok=True)
        for f in report_files:
            shutil.copy2(f, dest / Path(f).name)
    return bundle
