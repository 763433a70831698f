"""The demo model's Grad-CAM on real held-out films beats a random map (deletion at 20 %).

The demo's test split is rebuilt from its config (the split is a deterministic function of the
manifest and the seed); 60 of its films are explained. Only "Grad-CAM beats random" is asserted
on real data; the figures themselves are reported by `cxr-train` (report.md, README).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.paths import demo_bundle_dir, shared_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _demo_test_split():
    from trainer.config import load_config
    from trainer.datasets import read_dataset
    from trainer.splits import split_by_patient, subsample_by_patient

    cfg = load_config(ROOT / "trainer" / "configs" / "pneumonia.toml")
    manifest = subsample_by_patient(read_dataset(cfg.data), cfg.data.max_images, cfg.seed)
    split = split_by_patient(
        manifest,
        val_fraction=cfg.split.val_fraction,
        test_fraction=cfg.split.test_fraction,
        seed=cfg.seed,
    )
    return manifest[split.to_numpy() == "test"]


def test_gradcam_beats_a_random_map_on_real_test_films():
    shared = shared_data_dir()
    if shared is None or not (shared / "pediatric-pneumonia" / "labels.csv").is_file():
        pytest.skip("../shared/data/pediatric-pneumonia is not present (set CXR_SHARED_DATA)")
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import load_classifier
    from cxr_viewer.core.model.preprocess import study_to_input
    from trainer.gradcam_check import measure_gradcam

    test = _demo_test_split()
    # the shipped samples were picked from this same split
    shipped = {p.name.split("__", 1)[1] for p in (ROOT / "resources" / "samples").glob("real-*")}
    assert shipped and shipped <= {Path(p).name for p in test["path"]}
    picked = test.sample(n=60, random_state=0)
    clf = load_classifier(demo_bundle_dir())
    x = np.stack([study_to_input(load_study(p), clf.spec) for p in picked["path"]])
    r = measure_gradcam(clf, x, seed=0)
    print(f"\nGrad-CAM on 60 real test films: {r}")
    assert r["mean_drop_gradcam"] > r["mean_drop_random"]
    assert r["share_gradcam_beats_random"] > 0.5
    # the same test in log-odds (the score the viewer's faithfulness figure uses)
    assert r["median_log_odds_drop_gradcam"] > r["median_log_odds_drop_random"]
    assert r["ratio_median_log_odds_drop"] == pytest.approx(
        r["median_log_odds_drop_gradcam"] / r["median_log_odds_drop_random"]
    )
