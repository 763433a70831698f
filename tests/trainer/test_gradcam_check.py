"""The report's deletion test under several fills (``trainer.gradcam_check.measure_gradcam``)."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.gradcam_check import FILLS, measure_gradcam


@pytest.fixture(scope="module")
def clf(tiny_bundle):
    from cxr_viewer.core.model.inference import load_classifier

    return load_classifier(tiny_bundle)


def _films(clf, n: int, seed: int = 0) -> np.ndarray:
    s = clf.spec
    rng = np.random.default_rng(seed)
    lo, hi = s.channel_range
    return (lo + (hi - lo) * rng.random((n, s.height, s.width, s.channels))).astype(np.float32)


def test_every_fill_is_measured_and_the_first_is_the_headline(clf):
    x = _films(clf, 6)
    r = measure_gradcam(clf, x, seed=0)
    assert list(r["by_fill"]) == list(FILLS) == ["blur", "mean", "black"]
    for key, value in r["by_fill"]["blur"].items():
        assert r[key] == value, key
    assert r["fill"].startswith("blurred copy")
    # the same films and seed: the same removed regions, so a run with the mean fill first
    # repeats the mean figures and makes them the headline
    m = measure_gradcam(clf, x, seed=0, fills=("mean",))
    assert m["by_fill"]["mean"] == r["by_fill"]["mean"]
    assert m["median_log_odds_margin"] == r["by_fill"]["mean"]["median_log_odds_margin"]
    assert m["fill"] == "the image's mean"
    # what the removed pixels become matters on textured films
    figures = {f: r["by_fill"][f]["median_log_odds_drop_random"] for f in FILLS}
    assert len(set(figures.values())) == 3, figures


def test_a_fill_that_changes_nothing_drops_nothing(clf):
    """On flat films blur, the mean and (at the range's floor) black leave the image as it was:
    no removal can move the score, and Grad-CAM never beats random."""
    s = clf.spec
    x = np.full((3, s.height, s.width, s.channels), s.channel_range[0], np.float32)
    r = measure_gradcam(clf, x, seed=1)
    for fill, f in r["by_fill"].items():
        assert f["median_log_odds_drop_gradcam"] == pytest.approx(0, abs=1e-5), fill
        assert f["median_log_odds_drop_random"] == pytest.approx(0, abs=1e-5), fill
        assert f["median_log_odds_margin"] == pytest.approx(0, abs=1e-5), fill
        assert f["share_gradcam_beats_random"] == 0.0, fill


def test_no_fill_is_refused(clf):
    with pytest.raises(ValueError, match="at least one fill"):
        measure_gradcam(clf, _films(clf, 1), fills=())
