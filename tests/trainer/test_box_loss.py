"""The per-location box loss (trainer.boxes.make_mil_loss) on hand-made evidence maps: what
it asks of a boxed film of the class and of a film of the other class."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.boxes import make_mil_loss

BIG = 20.0  # a per-location logit difference whose sigmoid is 0 or 1 to float precision


def _target(mask, weight: float, positive: bool) -> np.ndarray:
    t = np.zeros((1, 4, 4, 3), np.float32)
    t[..., 0], t[..., 1], t[..., 2] = mask, weight, float(positive)
    return t


def _maps(e) -> np.ndarray:
    """head_cam of a two-class CAM head for evidence map e: logits (-e/2, +e/2)."""
    e = np.asarray(e, np.float32)
    return np.stack([-e / 2, e / 2], axis=-1)[None]


def _loss(mask, weight, positive, e) -> float:
    fn = make_mil_loss(1, 2)
    return float(np.asarray(fn(_target(mask, weight, positive), _maps(e)))[0])


BOX = np.zeros((4, 4))
BOX[1, 1] = BOX[1, 2] = 1.0
CLEAR = np.full((4, 4), -BIG)
LESION = np.where(BOX > 0, BIG, -BIG)


def test_a_map_that_matches_the_boxes_costs_nothing():
    assert _loss(BOX, 1, True, LESION) == pytest.approx(0, abs=1e-6)
    assert _loss(0, 1, False, CLEAR) == pytest.approx(0, abs=1e-6)


def test_inside_and_outside_the_boxes_weigh_the_same_whatever_their_areas():
    # the lesion missed: every box cell wrong, the mean over the box area is BIG
    assert _loss(BOX, 1, True, CLEAR) == pytest.approx(BIG, rel=1e-4)
    # evidence everywhere: every cell outside the 2-cell box wrong, also BIG on average
    assert _loss(BOX, 1, True, np.full((4, 4), BIG)) == pytest.approx(BIG, rel=1e-4)


def test_a_film_of_the_other_class_is_nothing_anywhere():
    one = CLEAR.copy()
    one[3, 3] = BIG  # evidence for the class in one cell of 16
    assert _loss(0, 1, False, one) == pytest.approx(BIG / 16, rel=1e-3)
    # the loss is per location: the cell's sigmoid, not the film's mean
    assert _loss(0, 1, False, np.zeros((4, 4))) == pytest.approx(np.log(2), rel=1e-4)


def test_the_films_weight_scales_the_loss():
    assert _loss(BOX, 0, True, CLEAR) == 0  # a boxed-class film whose boxes are not used
    assert _loss(0, 0.25, False, np.zeros((4, 4))) == pytest.approx(np.log(2) / 4, rel=1e-4)


def test_the_boxed_class_may_be_any_index_and_the_rest_are_pooled():
    """Class 0 boxed: its own logit minus the other's, so the signs flip with the maps; three
    classes: the boxed logit against the log-sum-exp of the other two."""
    first = make_mil_loss(0, 2)
    flipped = -_maps(LESION)  # (e/2, -e/2): class 0 holds the lesion evidence
    assert float(np.asarray(first(_target(BOX, 1, True), flipped))[0]) == pytest.approx(0, abs=1e-6)
    assert float(np.asarray(first(_target(BOX, 1, True), _maps(LESION)))[0]) == pytest.approx(
        2 * BIG, rel=1e-4
    )
    three = make_mil_loss(2, 3)
    logits = np.zeros((1, 4, 4, 3), np.float32)
    logits[..., 2] = np.where(BOX > 0, BIG, -BIG)  # the others at 0: lse(0, 0) = log 2
    got = float(np.asarray(three(_target(BOX, 1, True), logits))[0])
    d_in, d_out = BIG - np.log(2), -BIG - np.log(2)
    assert got == pytest.approx(np.log1p(np.exp(-d_in)) + np.log1p(np.exp(d_out)), rel=1e-4)


def test_each_film_of_a_batch_has_its_own_weight_and_class():
    fn = make_mil_loss(1, 2)
    t = np.concatenate([_target(BOX, 1, True), _target(0, 0.5, False), _target(BOX, 0, True)])
    e = np.stack([CLEAR, np.zeros((4, 4)), CLEAR])
    y = np.concatenate([_maps(v) for v in e])
    got = np.asarray(fn(t, y))
    np.testing.assert_allclose(got, [BIG, 0.5 * np.log(2), 0.0], rtol=1e-4, atol=1e-6)
