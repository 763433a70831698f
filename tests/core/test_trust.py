"""Deletion/insertion curves (Petsiuk et al. 2018) and the SHAP completeness gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from explain_support import tiny_classifier

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.trust import (
    add_trust,
    auc,
    baseline_image,
    completeness_gap,
    delete_top_fraction,
    deletion_insertion,
    figures_text,
    figures_tooltip,
    perturbation_curve,
    pixel_order,
    top_fraction_drop,
    verdicts,
)


def test_auc_is_the_trapezoidal_area():
    f = np.linspace(0, 1, 11)
    assert auc(f, np.ones_like(f)) == pytest.approx(1.0)
    assert auc(f, f) == pytest.approx(0.5)
    assert auc(f, 1 - f) == pytest.approx(0.5)


def test_completeness_gap_formula():
    assert completeness_gap(0.45, 0.9, 0.4) == pytest.approx(0.1)
    assert completeness_gap(0.5, 0.9, 0.4) == pytest.approx(0.0)
    assert math.isnan(completeness_gap(0.1, 0.5, 0.5))


def test_pixel_order_puts_the_most_important_first_and_breaks_ties_by_seed():
    s = np.array([[0.1, 0.9], [0.5, 0.5]])
    order = pixel_order(s, seed=0)
    assert order[0] == 1 and order[-1] == 0
    assert set(order[1:3]) == {2, 3}
    np.testing.assert_array_equal(order, pixel_order(s, seed=0))
    flat = np.zeros((8, 8))
    assert not np.array_equal(pixel_order(flat, 0), pixel_order(flat, 1))


@pytest.fixture(scope="module")
def clf():
    pytest.importorskip("tensorflow")
    return tiny_classifier()


def test_curves_start_and_end_where_they_must(clf):
    rng = np.random.default_rng(3)
    x = rng.random((32, 32, 1), dtype=np.float32)
    sal = rng.random((32, 32)).astype(np.float32)
    p = clf.predict_inputs(np.stack([x, baseline_image(x, clf.spec, "black")]))[:, 1]
    f, d = perturbation_curve(clf, x, sal, 1, mode="deletion", steps=4, baseline="black")
    assert len(f) == len(d) == 5
    assert d[0] == pytest.approx(p[0], abs=1e-6) and d[-1] == pytest.approx(p[1], abs=1e-6)
    blur = baseline_image(x, clf.spec, "blur")
    pb = clf.predict_inputs(blur[None])[0, 1]
    f, ins = perturbation_curve(clf, x, sal, 1, mode="insertion", steps=4)
    assert ins[0] == pytest.approx(pb, abs=1e-6) and ins[-1] == pytest.approx(p[0], abs=1e-6)
    # deleting everything = the baseline, whatever the map
    assert delete_top_fraction(clf, x, sal, 1, 1.0, baseline="black") == pytest.approx(
        p[1], abs=1e-6
    )
    assert delete_top_fraction(clf, x, None, 1, 0.0) == pytest.approx(p[0], abs=1e-6)


def test_add_trust_records_both_aucs(clf):
    x = np.random.default_rng(4).random((32, 32, 1), dtype=np.float32)
    hm = Heatmap(np.random.default_rng(5).random((32, 32)).astype(np.float32), "t", 1, "l", False)
    out = add_trust(hm, clf, x, steps=4)
    assert set(out.trust) == {
        "deletion_auc",
        "insertion_auc",
        "p",
        "drop_top",
        "drop_random",
        "drop_fraction",
    }
    assert all(0.0 <= out.trust[k] <= 1.0 for k in ("deletion_auc", "insertion_auc", "p"))
    assert all(-1.0 <= out.trust[k] <= 1.0 for k in ("drop_top", "drop_random"))
    assert hm.trust == {}  # the original is untouched
    figs = deletion_insertion(clf, x, hm.values[::2, ::2], 1, steps=4)  # maps are resized
    assert set(figs) == {"deletion_auc", "insertion_auc"}


def test_bad_arguments_raise(clf):
    x = np.zeros((32, 32, 1), np.float32)
    with pytest.raises(ExplainError):
        perturbation_curve(clf, x, np.zeros((32, 32)), 0, mode="sideways")
    with pytest.raises(ExplainError):
        perturbation_curve(clf, np.zeros((8, 8, 1), np.float32), np.zeros((8, 8)), 0)
    with pytest.raises(ExplainError):
        baseline_image(x, clf.spec, "pink")


def test_top_fraction_drop_matches_deleting_the_top_pixels(clf):
    rng = np.random.default_rng(6)
    x = rng.random((32, 32, 1), dtype=np.float32)
    sal = rng.random((32, 32)).astype(np.float32)
    out = top_fraction_drop(clf, x, sal, 1, fraction=0.2, n_random=3)
    p = float(clf.predict_inputs(x[None])[0, 1])
    assert out["p"] == pytest.approx(p, abs=1e-6)
    after = delete_top_fraction(clf, x, sal, 1, 0.2)  # the same blur baseline and ranking
    assert out["drop_top"] == pytest.approx(p - after, abs=1e-6)
    assert out["drop_fraction"] == 0.2 and math.isfinite(out["drop_random"])


def _levels(method, trust, settings=None):
    return [(v.level, v.text) for v in verdicts(method, trust, settings or {})]


def test_faithfulness_verdicts_in_plain_words():
    good = _levels("gradcam", {"p": 0.9, "drop_top": 0.41, "drop_random": 0.05})
    assert good == [("good", "faithful: removing its top 20 % drops p by 0.41 vs 0.05 at random")]
    weak = _levels("gradcam", {"p": 0.9, "drop_top": 0.10, "drop_random": 0.05})
    assert weak[0][0] == "warn" and weak[0][1].startswith("weakly faithful")
    bad = _levels("gradcam", {"p": 0.9, "drop_top": -0.02, "drop_random": 0.05})
    assert bad == [
        ("bad", "not faithful: removing its top 20 % raises p by 0.02 vs a drop of 0.05 at random")
    ]
    mixed = _levels("gradcam", {"p": 0.87, "drop_top": 0.25, "drop_random": -0.09})
    assert mixed == [
        ("good", "faithful: removing its top 20 % drops p by 0.25 vs a rise of 0.09 at random")
    ]
    low = _levels("gradcam", {"p": 0.04, "drop_top": 0.01, "drop_random": 0.0})
    assert low[0][0] == "info" and "only 0.04" in low[0][1]
    assert _levels("gradcam", {"deletion_auc": 0.3}) == []  # no drop figures: no verdict
    saturated = _levels("gradcam", {"p": 1.0, "drop_top": 0.002, "drop_random": 0.0})
    assert saturated == [
        ("info", "faithfulness not measurable: p stays 1.00 with any 20 % removed")
    ]


def test_lime_and_shap_verdicts():
    lime = {"samples": 2000.0, "split_half_rho": 0.93, "split_half_top_overlap": 0.7}
    assert ("warn", "LIME did not converge at 2,000 samples") in _levels(
        "lime", lime, {"samples_used": 2000, "converged": False, "early_stop": True}
    )
    assert ("good", "LIME converged at 1,400 samples") in _levels(
        "lime", lime, {"samples_used": 1400, "converged": True}
    )
    fixed = _levels("lime", lime, {"samples_used": 1000, "converged": False, "early_stop": False})
    assert fixed == [("info", "LIME ran 1,000 samples without a convergence check")]
    shap = {"completeness_gap": 0.004, "f_x": 1.2, "f_background": 0.3, "sum_attributions": 0.9}
    assert _levels("shap", shap) == [("good", "SHAP sums to the score within 0.4 %")]
    assert _levels("shap", {**shap, "completeness_gap": 0.12})[0][0] == "warn"
    assert _levels("shap", {**shap, "completeness_gap": 0.38})[0][0] == "bad"
    assert _levels("shap", {**shap, "completeness_gap": float("nan")})[0][0] == "info"
    detail = verdicts("shap", shap)[0].detail
    assert "add up" in detail and "background" in detail


def test_figures_text_and_tooltip_say_what_they_mean():
    trust = {"deletion_auc": 0.53, "insertion_auc": 0.58, "completeness_gap": 0.379}
    assert figures_text(trust) == "del 0.53 / ins 0.58 · gap 37.9 %"
    tip = figures_tooltip(trust)
    assert "Lower is better" in tip and "Higher is better" in tip and "add up exactly" in tip
    assert figures_text({}) == "" and figures_tooltip({}) == ""


def test_add_trust_makes_one_predict_call_without_repeated_images_and_the_same_figures(clf):
    x = np.random.default_rng(6).random((32, 32, 1), dtype=np.float32)
    hm = Heatmap(np.random.default_rng(7).random((32, 32)).astype(np.float32), "t", 1, "l", False)
    calls = []

    class Counting:
        spec = clf.spec

        def predict_inputs(self, imgs, cancel=None):
            calls.append(len(imgs))
            return clf.predict_inputs(imgs, cancel=cancel)

    out = add_trust(hm, Counting(), x, steps=16)
    assert calls == [37]  # 17 deletion + 15 insertion (its ends are deletion's) + 5 drops
    separate = deletion_insertion(clf, x, hm.values, 1, steps=16)
    separate.update(top_fraction_drop(clf, x, hm.values, 1))
    assert set(out.trust) == set(separate)
    for k, v in separate.items():
        assert out.trust[k] == pytest.approx(v, abs=1e-6), k
