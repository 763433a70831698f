"""Typed settings per method: one validation path for names, types and ranges."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.explain.gradcam import GradCamSettings
from cxr_viewer.core.explain.lime_explainer import LimeSettings
from cxr_viewer.core.explain.occlusion import OcclusionSettings
from cxr_viewer.core.explain.registry import EXPLAINERS, check_setting
from cxr_viewer.core.explain.shap_explainer import ShapSettings


@pytest.mark.parametrize("cls", [c.settings_type for c in EXPLAINERS.values()])
def test_defaults_are_valid_frozen_and_plain(cls):
    s = cls()
    d = s.as_dict()
    assert tuple(d) == cls.names()
    json.dumps(d)  # what batch CSV, the PDF and DICOM record must stay plain values
    assert cls.from_mapping(d) == s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 3  # type: ignore[misc]


def test_each_method_has_its_own_settings_class():
    kinds = {m: c.settings_type for m, c in EXPLAINERS.items()}
    assert kinds["gradcam"] is GradCamSettings and kinds["lime"] is LimeSettings
    assert kinds["shap"] is ShapSettings and kinds["occlusion"] is OcclusionSettings


@pytest.mark.parametrize(
    ("cls", "values", "match"),
    [
        (LimeSettings, {"num_sample": 10}, "Unknown LIME setting"),
        (LimeSettings, {"num_samples": "many"}, "whole number"),
        (LimeSettings, {"num_samples": 2.5}, "whole number"),
        (LimeSettings, {"early_stop": 1}, "true/false"),
        (LimeSettings, {"num_samples": 1}, "at least 2"),
        (LimeSettings, {"segmentation": "watershed"}, "'slic' or 'quickshift'"),
        (LimeSettings, {"hide_color": 1.5}, r"\[0, 1\]"),
        (GradCamSettings, {"variant": "gradcam+"}, "'gradcam\\+\\+'"),
        (ShapSettings, {"nsamples": 0}, "at least 1"),
        (ShapSettings, {"output": "softmax"}, "'logit' or 'probability'"),
        (OcclusionSettings, {"fill": -0.1}, "grey level"),
        (OcclusionSettings, {"patch": 0}, "at least 1"),
    ],
)
def test_bad_settings_raise_what_why_and_what_to_do(cls, values, match):
    with pytest.raises(ExplainError, match=match) as info:
        cls.from_mapping(values)
    err = info.value
    assert err.what and err.why and err.hint


def test_numbers_are_conformed_to_the_field_type():
    s = LimeSettings.from_mapping({"kernel_width": 2, "num_samples": np.int64(300)})
    assert isinstance(s.kernel_width, float) and s.kernel_width == 2.0
    assert type(s.num_samples) is int and s.num_samples == 300
    assert LimeSettings(hide_color=0.5).hide_color == 0.5
    assert LimeSettings(hide_color="mean").hide_color == "mean"


def test_replace_checks_again():
    s = ShapSettings().replace(nsamples=16)
    assert s.nsamples == 16 and s.max_background == ShapSettings().max_background
    with pytest.raises(ExplainError):
        s.replace(batch_size=0)


def test_registry_checks_one_setting_of_a_method():
    check_setting("lime", "num_samples", 300)
    with pytest.raises(ExplainError, match="Unknown explanation method"):
        check_setting("nope", "num_samples", 300)
    with pytest.raises(ExplainError, match="at least 2"):
        check_setting("lime", "num_samples", 1)
