"""Deletion/insertion curves (Petsiuk et al. 2018) and the SHAP completeness gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from explain_support import tiny_classifier

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.evaluate.trust import (
    FAITHFUL_MARGIN,
    TOP_RANDOM,
    TRUST_RANDOM,
    add_trust,
    auc,
    baseline_image,
    delete_top_fraction,
    deletion_insertion,
    faithfulness_label,
    figures_text,
    figures_tooltip,
    margin_figures,
    most_faithful,
    perturbation_curve,
    pixel_order,
    top_fraction_drop,
    verdicts,
)
from cxr_viewer.core.explain.base import Heatmap
from cxr_viewer.core.explain.shap_explainer import completeness_gap


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
        "logit_deletion_auc",
        "logit_insertion_auc",
        "logit_exact",
        "logit",
        "logit_drop_top",
        "logit_drop_random",
        "margin",
        "margin_lo",
        "margin_hi",
        "n_random",
        "confidence",
    }
    assert all(0.0 <= out.trust[k] <= 1.0 for k in ("deletion_auc", "insertion_auc", "p"))
    assert all(-1.0 <= out.trust[k] <= 1.0 for k in ("drop_top", "drop_random"))
    assert out.trust["logit_exact"] == 1.0  # the tiny model's softmax is separable
    # the log-odds of the image is the logit of its probability
    p = float(clf.predict_inputs(x[None])[0, 1])
    assert out.trust["logit"] == pytest.approx(math.log(p / (1 - p)), abs=1e-4)
    assert out.trust["margin_lo"] <= out.trust["margin"] <= out.trust["margin_hi"]
    assert out.trust["n_random"] == TRUST_RANDOM
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


def _trust(z0, z_top, z_random, **extra):
    return {"p": 0.99, "drop_top": 0.0, "drop_fraction": 0.2, **extra} | margin_figures(
        z0, z_top, np.asarray(z_random, np.float64)
    )


def test_margin_and_its_interval():
    figs = margin_figures(5.0, 2.0, np.array([4.0, 4.5, 3.5, 4.0]))
    assert figs["logit_drop_top"] == pytest.approx(3.0)
    assert figs["logit_drop_random"] == pytest.approx(1.0)
    assert figs["margin"] == pytest.approx(2.0)
    half = figs["margin_hi"] - figs["margin"]
    assert half == pytest.approx(figs["margin"] - figs["margin_lo"]) and half > 0
    # the Student-t interval of the random drops' mean: sd 0.408, n 4, t(0.975, 3) 3.18
    assert half == pytest.approx(3.182 * 0.4082 / 2, rel=1e-3)
    same = margin_figures(5.0, 2.0, np.full(8, 4.0))
    assert same["margin_lo"] == same["margin_hi"] == pytest.approx(2.0)


def test_faithfulness_verdicts_in_plain_words():
    good = verdicts("gradcam", _trust(8.0, 5.0, [7.0, 7.2, 6.8, 7.1, 6.9, 7.0, 7.0, 7.0]))
    assert good[0].level == "good"
    assert good[0].text.startswith("faithful: removing its top 20 % beats random by 2.00 log-odds")
    assert "log-odds" in good[0].detail and "p 0.9900" in good[0].detail
    # a map whose removal raises the score is not faithful, whatever random removal does
    raises = verdicts("gradcam", _trust(8.0, 8.5, [8.2, 8.3, 8.1, 8.2]))
    assert (raises[0].level, raises[0].text) == (
        "bad",
        "not faithful: removing its top 20 % raises the log-odds by 0.50",
    )
    assert faithfulness_label(_trust(8.0, 8.5, [8.2, 8.3])) == "not faithful"
    # random removal lowers it more: not faithful
    worse = verdicts("gradcam", _trust(8.0, 7.5, [6.0, 6.5, 6.2, 6.1]))
    assert worse[0].level == "bad" and "random removal by" in worse[0].text
    # beats random, but the interval reaches below zero: inconclusive, never "faithful"
    noisy = _trust(8.0, 6.7, [7.5, 5.5, 8.0, 6.0])
    assert noisy["margin"] > 0 > noisy["margin_lo"]
    assert verdicts("gradcam", noisy)[0].level == "warn"
    assert faithfulness_label(noisy) == "inconclusive"
    # beats random with a clear interval, but by less than the stated margin: inconclusive
    small = _trust(8.0, 6.9, [7.0, 7.0, 7.0, 7.0])
    assert small["margin_lo"] > 0 and small["margin"] < FAITHFUL_MARGIN
    assert verdicts("gradcam", small)[0].text.startswith("faithfulness inconclusive")
    # no figures: no verdict; saturated probabilities without a logit: not measurable
    assert _levels("gradcam", {"deletion_auc": 0.3}) == []
    flat = _trust(16.1, 16.1, [16.1, 16.1], logit_exact=0.0)
    assert verdicts("gradcam", flat)[0].level == "info"
    assert faithfulness_label(flat) == "not measurable"


def test_most_faithful_picks_the_clearest_faithful_map():
    trusts = {
        "gradcam": _trust(8.0, 5.0, [7.0, 7.1, 6.9, 7.0]),
        "occlusion": _trust(8.0, 4.0, [7.0, 7.1, 6.9, 7.0]),
        "lime": _trust(8.0, 8.5, [7.0, 7.1]),
    }
    assert most_faithful(trusts) == "occlusion"
    assert most_faithful({"lime": trusts["lime"]}) is None


def test_lime_and_shap_verdicts():
    lime = {"samples": 2000.0, "split_half_rho": 0.93, "split_half_top_overlap": 0.7}
    unconverged = verdicts(
        "lime", lime, {"samples_used": 2000, "converged": False, "early_stop": True}
    )
    assert (
        "warn",
        "LIME did not converge at 2,000 samples: raise Samples or use fewer superpixels",
    ) in [(v.level, v.text) for v in unconverged]
    assert "What to do" in unconverged[-1].detail
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
    logit = {**trust, "logit_deletion_auc": 1.234, "logit_insertion_auc": 4.5, "margin": 1.3}
    assert figures_text(logit) == "log-odds del 1.23 / ins 4.50 · margin +1.30 · gap 37.9 %"
    assert "log-odds" in figures_tooltip(logit)
    tip = figures_tooltip(trust)
    assert "Lower is better" in tip and "Higher is better" in tip and "add up exactly" in tip
    assert figures_text({}) == "" and figures_tooltip({}) == ""


def test_add_trust_gives_the_probability_figures_of_the_separate_functions(clf):
    x = np.random.default_rng(6).random((32, 32, 1), dtype=np.float32)
    hm = Heatmap(np.random.default_rng(7).random((32, 32)).astype(np.float32), "t", 1, "l", False)
    out = add_trust(hm, clf, x, steps=16, n_random=TOP_RANDOM)
    separate = deletion_insertion(clf, x, hm.values, 1, steps=16)
    separate.update(top_fraction_drop(clf, x, hm.values, 1))
    for k, v in separate.items():  # p = sigmoid(log-odds) from the pre-activation output
        assert out.trust[k] == pytest.approx(v, abs=1e-5), k


def test_log_odds_per_head_kind_are_the_logits_of_the_probabilities():
    from types import SimpleNamespace

    from cxr_viewer.core.model.heads import Head
    from cxr_viewer.core.model.scores import log_odds_from_outputs, sigmoid

    z = np.array([[2.0, -1.0, 0.5], [30.0, 0.0, -30.0]])
    soft = SimpleNamespace(head=Head("softmax", 3, "softmax"))
    lo = log_odds_from_outputs(soft, z, "logit")
    p = Head("softmax", 3, "linear").probabilities(z).astype(np.float64)
    np.testing.assert_allclose(sigmoid(lo[0]), p[0], rtol=1e-6)
    # p rounds to 1.0 in float32 on the second row; its log-odds stay finite and ~30
    assert p[1, 0] == 1.0 and lo[1, 0] == pytest.approx(30.0, abs=1e-6)
    binary = SimpleNamespace(head=Head("binary", 1, "sigmoid"))
    np.testing.assert_allclose(
        log_odds_from_outputs(binary, z[:, :1], "logit"), [[-2, 2], [-30, 30]]
    )
    multi = SimpleNamespace(head=Head("multilabel", 3, "sigmoid"))
    np.testing.assert_allclose(log_odds_from_outputs(multi, z, "logit"), z)
    # only probabilities: clipped, so a saturated p gives a finite, flagged value
    clipped = log_odds_from_outputs(binary, np.array([[1.0]]), "probability")
    assert np.all(np.isfinite(clipped)) and clipped[0, 1] == pytest.approx(
        np.log((1 - 1e-7) / 1e-7)
    )
