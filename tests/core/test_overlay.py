"""Heat maps to RGBA and compositing (pure numpy; no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_viewer.core.explain.overlay import (
    colorbar_image,
    colorize,
    composite,
    default_colormap,
    robust_vmax,
)


def test_signed_map_uses_a_diverging_scale_with_alpha_from_magnitude():
    v = np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]], np.float32)
    rgba = colorize(v, signed=True, vmax=1.0)
    assert rgba.shape == (1, 5, 4) and rgba.dtype == np.uint8
    alpha = rgba[0, :, 3]
    assert alpha[2] == 0  # zero evidence is transparent
    assert alpha[0] == alpha[4] == 255
    assert alpha[1] == alpha[3] == 128
    # RdBu_r: negative blue, positive red
    assert rgba[0, 0, 2] > rgba[0, 0, 0]
    assert rgba[0, 4, 0] > rgba[0, 4, 2]


def test_unsigned_map_clips_negatives_and_scales_alpha():
    v = np.array([[-1.0, 0.0, 0.25, 1.0, 4.0]], np.float32)
    rgba = colorize(v, signed=False, vmax=1.0, colormap="inferno")
    assert list(rgba[0, :, 3]) == [0, 0, 64, 255, 255]
    assert default_colormap(False) == "inferno"  # perceptually uniform, dark where weak
    assert default_colormap(True) == "RdBu_r"


def test_non_finite_values_are_transparent_and_vmax_is_robust():
    v = np.ones((40, 40), np.float32)
    v[0, 0] = np.nan
    v[0, 1] = 1000.0  # one extreme pixel must not wash the map out
    rgba = colorize(v, signed=False)
    assert rgba[0, 0, 3] == 0
    assert rgba[5, 5, 3] == 255
    assert robust_vmax(np.zeros((4, 4))) == 1.0


def test_composite_respects_opacity_without_recolouring():
    base = np.full((4, 4), 0.5, np.float32)
    rgba = colorize(np.ones((4, 4), np.float32), signed=False, vmax=1.0)
    none = composite(base, [(rgba, 0.0)])
    assert np.all(none == 128)
    full = composite(base, [(rgba, 1.0)])
    np.testing.assert_array_equal(full, np.broadcast_to(rgba[..., :3], full.shape))
    half = composite(base, [(rgba, 0.5)]).astype(int)
    expected = np.round((0.5 * 0.5 + 0.5 * rgba[..., :3] / 255.0) * 255).astype(int)
    assert np.abs(half - expected).max() <= 1
    # RGB base images and several layers in order
    out = composite(np.stack([base] * 3, -1), [(rgba, 0.3), (rgba, 0.3)])
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8


def test_composite_refuses_mismatched_layers():
    with pytest.raises(ValueError):
        composite(np.zeros((4, 4)), [(np.zeros((3, 3, 4), np.uint8), 1.0)])
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2, 2)), signed=True)
    with pytest.raises(ValueError):
        colorize(np.zeros((2, 2)), signed=True, colormap="no-such-map")


def test_colorbar_runs_high_at_the_top():
    bar = colorbar_image(signed=True, length=64, thickness=8)
    assert bar.shape == (64, 8, 4)
    assert bar[0, 0, 0] > bar[0, 0, 2]  # top: strong positive = red
    assert bar[-1, 0, 2] > bar[-1, 0, 0]  # bottom: strong negative = blue
    assert bar[32, 0, 3] < 10  # middle ≈ 0 → transparent
    flat = colorbar_image(signed=False, length=32, thickness=4, vertical=False, with_alpha=False)
    assert flat.shape == (4, 32, 4) and np.all(flat[..., 3] == 255)


def test_cutoff_makes_weak_values_transparent_and_legends_say_relative():
    from cxr_viewer.core.explain.overlay import legend_labels

    v = np.array([[0.05, 0.2, 1.0]], np.float32)
    rgba = colorize(v, signed=False, colormap="inferno", vmax=1.0, cutoff=0.1)
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] > 0 and rgba[0, 2, 3] == 255
    signed = colorize(-v, signed=True, colormap="RdBu_r", vmax=1.0, cutoff=0.1)
    assert signed[0, 0, 3] == 0 and signed[0, 2, 3] == 255
    low, high, caption = legend_labels(True, "PuOr_r", "PNEUMONIA")
    assert "against PNEUMONIA" == low and "toward PNEUMONIA" == high
    assert "orange" in caption and "relative, scaled to this image" in caption
    assert "relative, scaled to this image" in legend_labels(False, "inferno", "X")[2]
