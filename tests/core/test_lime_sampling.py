"""LIME's perturbation designs: antithetic pairs, randomised orthogonal arrays, determinism.

The end-to-end cases use the tiny linear Keras model of lime_support, whose effect per
superpixel is set by construction.
"""

from __future__ import annotations

import numpy as np
import pytest
from lime_support import SETTINGS, linear_classifier

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.lime_explainer import (
    SAMPLINGS,
    LimeExplainer,
    MaskStream,
    perturbed_images,
    split_pairs,
)


@pytest.mark.parametrize("design", ["antithetic", "orthogonal"])
def test_antithetic_designs_give_complementary_pairs(design):
    stream = MaskStream(design, 13, seed=5)
    rows = np.concatenate([stream.take(7), stream.take(40), stream.take(2)])  # 7 rounds up
    assert rows.shape == (8 + 40 + 2, 13)
    assert set(np.unique(rows)) == {0, 1}
    np.testing.assert_array_equal(rows[0::2] + rows[1::2], 1)  # pair p: rows 2p, 2p + 1
    # every superpixel is hidden in exactly half of the rows
    np.testing.assert_array_equal(rows.sum(axis=0), len(rows) // 2)


def test_orthogonal_blocks_are_balanced_and_uncorrelated():
    d = 13  # Hadamard order 16: a block is 16 pairs; even and odd pairs use separate blocks
    rows = MaskStream("orthogonal", d, seed=1).take(128)  # 64 pairs = 2 blocks per half
    z = 2.0 * rows[0::2] - 1.0
    for half in (z[0::2], z[1::2]):  # the two halves of the split-half check
        for block in (half[:16], half[16:]):
            np.testing.assert_array_equal(block.T @ block, 16 * np.eye(d))
    x = 2.0 * rows - 1.0
    np.testing.assert_array_equal(x.T @ x, 128 * np.eye(d))
    assert not np.array_equal(z[0::2][:16], z[0::2][16:])  # fresh columns / signs / order


def test_random_design_is_iid_coins_and_unknown_design_is_refused():
    rows = MaskStream("random", 50, seed=0).take(401)
    assert rows.shape == (401, 50)
    assert 0.45 < rows.mean() < 0.55
    assert not np.all(rows[0::2][:200] + rows[1::2] == 1)
    with pytest.raises(ExplainError, match="Unknown LIME sampling"):
        MaskStream("sobol", 4, seed=0)


def test_same_seed_same_stream_other_seed_other_stream():
    for design in SAMPLINGS:
        a = MaskStream(design, 20, seed=3).take(100)
        np.testing.assert_array_equal(a, MaskStream(design, 20, seed=3).take(100))
        assert not np.array_equal(a, MaskStream(design, 20, seed=4).take(100))


def test_split_pairs_keeps_pairs_together_and_row_zero_in_both():
    a, b = split_pairs(9, paired=True)  # row 0 + pairs (1,2) (3,4) (5,6) (7,8)
    assert a.tolist() == [0, 1, 2, 5, 6] and b.tolist() == [0, 3, 4, 7, 8]
    a, b = split_pairs(6, paired=False)
    assert a.tolist() == [0, 2, 4] and b.tolist() == [0, 1, 3, 5]


def test_perturbed_images_show_image_or_fill_per_superpixel():
    segments = np.array([[0, 0, 1], [2, 2, 1]])
    image = np.arange(6, dtype=np.float32).reshape(2, 3, 1) + 10
    fill = np.zeros_like(image)
    out = perturbed_images(image, fill, segments, np.array([[1, 0, 1], [0, 1, 0]], np.int8))
    np.testing.assert_array_equal(out[0, ..., 0], [[10, 11, 0], [13, 14, 0]])
    np.testing.assert_array_equal(out[1, ..., 0], [[0, 0, 12], [0, 0, 15]])


def test_same_seed_gives_the_same_map(tmp_path, image_and_segments):
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(1).permutation(n)) / n
    clf = linear_classifier(tmp_path, effects, segments)
    settings = {**SETTINGS, "num_samples": 300, "early_stop": False}
    a = LimeExplainer(clf, {**settings, "seed": 7}).explain(x, 1)
    b = LimeExplainer(clf, {**settings, "seed": 7}).explain(x, 1)
    c = LimeExplainer(clf, {**settings, "seed": 8}).explain(x, 1)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.settings["samples_used"] == 299  # row 0 + 149 whole pairs under the cap of 300


def test_orthogonal_pairs_recover_a_linear_model_at_least_as_well(tmp_path, image_and_segments):
    """On a model linear in the superpixels, the designed samples' weights rank the
    superpixels as the model does, and no worse than lime's independent coin flips."""
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(2).permutation(n)) / n
    clf = linear_classifier(tmp_path, effects, segments)

    def rank_corr(design: str) -> float:
        hm = LimeExplainer(
            clf, {**SETTINGS, "num_samples": 64, "early_stop": False, "sampling": design}
        ).explain(x, 1)
        w = np.array([hm.values[segments == i][0] for i in range(n)])
        return float(np.corrcoef(np.argsort(np.argsort(w)), effects)[0, 1])

    ortho, coins = rank_corr("orthogonal"), rank_corr("random")
    assert ortho > 0.95 and ortho >= coins


def test_log_odds_of_a_linear_logit_are_recovered_exactly(tmp_path, image_and_segments):
    """LIME's default output, the log-odds, is linear in the masks on this model: the surrogate
    ranks the superpixels exactly as the model does, with either design."""
    x, segments = image_and_segments
    n = int(segments.max()) + 1
    effects = 1.5 * (1 + np.random.default_rng(2).permutation(n)) / n
    clf = linear_classifier(tmp_path, effects, segments)
    for design in ("orthogonal", "random"):
        settings = {**SETTINGS, "output": "log_odds", "num_samples": 64, "early_stop": False}
        hm = LimeExplainer(clf, {**settings, "sampling": design}).explain(x, 1)
        w = np.array([hm.values[segments == i][0] for i in range(n)])
        assert np.corrcoef(np.argsort(np.argsort(w)), effects)[0, 1] > 0.99, design


def test_unknown_sampling_setting_is_a_clear_error(tmp_path, image_and_segments):
    x, segments = image_and_segments
    clf = linear_classifier(tmp_path, np.ones(int(segments.max()) + 1), segments)
    with pytest.raises(ExplainError, match="sampling"):
        LimeExplainer(clf, {**SETTINGS, "sampling": "sobol"}).explain(x, 1)
