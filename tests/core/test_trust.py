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
    perturbation_curve,
    pixel_order,
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
    assert set(out.trust) == {"deletion_auc", "insertion_auc"}
    assert all(0.0 <= v <= 1.0 for v in out.trust.values())
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
