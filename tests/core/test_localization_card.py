"""The model card's localization figures: read from the layouts a card may use, said in one
sentence per method, and nothing when the card has none."""

from __future__ import annotations

import pytest

from cxr_viewer.core.model.localization_card import localization_card

METHODS_LAYOUT = {
    "model_card": {
        "localization": {
            "split": "test",
            "images": 65,
            "boxes": 101,
            "prior_source": "the training split's boxes",
            "methods": {
                "gradcam": {"energy_inside": {"mean": 0.41, "lo": 0.35, "hi": 0.47},
                            "pointing_tolerant": 0.62},
                "lime": {"energy_inside": 0.24},
            },
            "baselines": {
                "anatomy_prior": {"energy_inside": 0.33, "pointing_tolerant": 0.8},
                "uniform_random": {"energy_inside": 0.12, "pointing_tolerant": 0.31},
            },
        }
    }
}  # fmt: skip


def test_the_methods_layout_gives_a_sentence_with_the_prior():
    card = localization_card(METHODS_LAYOUT)
    assert card is not None
    assert set(card.methods) == {"gradcam", "lime"}  # baselines are not maps of the model
    assert card.sentence("gradcam") == (
        "On radiologists' boxes of 65 test films (101 boxes): this map puts 41 % of its mass "
        "inside; a map that ignores the image, 33 %. Peak in or near a box: 62 % of films; the "
        "prior's, 80 %."
    )
    # found by the method's label too; a method the card does not cover has no sentence
    assert card.sentence("Grad-CAM++") == ""
    assert card.sentence("x", "Grad-CAM").startswith("On radiologists' boxes")
    assert card.sentence("lime").endswith("a map that ignores the image, 33 %.")
    assert "training split's boxes" in card.tooltip()


def test_summary_rows_as_localize_writes_them_prefer_the_all_finding():
    rows = [
        {"finding": "Lung Opacity", "method": "gradcam", "n": 60, "energy_inside": 0.5,
         "pointing_tolerant": 0.7},
        {"finding": "ALL", "method": "gradcam", "n": 101, "energy_inside": 0.4,
         "pointing_tolerant": 0.6},
        {"finding": "ALL", "method": "anatomy_prior", "n": 101, "energy_inside": 0.3,
         "pointing_tolerant": 0.8},
    ]  # fmt: skip
    for meta in ({"model_card": {"localization": rows}}, {"localization": {"summary": rows}}):
        card = localization_card(meta)
        assert card is not None
        figs = card.figures("gradcam")
        assert figs is not None
        assert figs.energy_inside == pytest.approx(0.4) and figs.pointing == pytest.approx(0.6)
        assert card.prior is not None and card.prior.energy_inside == pytest.approx(0.3)
        assert card.sentence("gradcam") == (
            "On radiologists' boxes: this map puts 40 % of its mass inside; a map that ignores "
            "the image, 30 %. Peak in or near a box: 60 % of films; the prior's, 80 %."
        )


def test_no_figures_no_card():
    assert localization_card({}) is None
    assert localization_card({"model_card": {"test_auc": 0.9}}) is None
    assert localization_card({"model_card": {"localization": {"split": "test"}}}) is None
    # only baselines: nothing about the model's maps
    only_prior = {"localization": {"anatomy_prior": {"energy_inside": 0.3}}}
    assert localization_card(only_prior) is None
    # non-numbers are not figures
    bad = {"localization": {"gradcam": {"energy_inside": "41 %", "pointing": None}}}
    assert localization_card(bad) is None


def test_without_a_prior_the_sentence_says_only_the_maps_figures():
    card = localization_card({"localization": {"gradcam": {"energy_inside": 0.2}}})
    assert card is not None
    assert (
        card.sentence("gradcam") == "On radiologists' boxes: this map puts 20 % of its mass inside."
    )


def test_the_trainers_card_entry():
    """``model_card.localization`` as the trainer writes it (Grad-CAM and the baselines at the
    top level, measured on the validation boxes, the prior fitted on the training boxes)."""
    measures = ("pointing_strict", "pointing_tolerant", "energy_inside", "iou_topk")
    entry = {
        "split": "val",
        "boxes": 74,
        "prior_fitted_on": "training boxes (310 boxes)",
        "gradcam": dict(zip(measures, (0.5, 0.71, 0.38, 0.2), strict=True)),
        "anatomy_prior": dict(zip(measures, (0.4, 0.66, 0.31, 0.18), strict=True)),
        "uniform_random": dict(zip(measures, (0.1, 0.3, 0.12, None), strict=True)),
    }
    card = localization_card({"model_card": {"localization": entry}})
    assert card is not None and list(card.methods) == ["gradcam"]
    assert card.sentence("gradcam") == (
        "On radiologists' boxes of validation films (74 boxes): this map puts 38 % of its mass "
        "inside; a map that ignores the image, 31 %. Peak in or near a box: 71 % of films; the "
        "prior's, 66 %."
    )
    assert "training boxes (310 boxes)" in card.tooltip()
    # the full record at the top level of metadata.json, methods under "overall"
    full = {"localization": {"split": "val", "boxes": 74, "overall": {"gradcam": entry["gradcam"]}}}
    top = localization_card(full)
    assert top is not None and top.figures("gradcam") == card.figures("gradcam")


def test_the_figures_are_said_only_next_to_maps_of_the_scored_class():
    """Boxes of opacities score the opacity maps: next to a map of the other class the viewer
    says whose maps were measured instead of quoting figures that are not about it."""
    entry = {"split": "val", "boxes": 74, "classes": ["lung_opacity"],
             "gradcam": {"energy_inside": 0.55, "pointing_tolerant": 0.86}}  # fmt: skip
    card = localization_card({"model_card": {"localization": entry}})
    assert card is not None and card.classes == ("lung_opacity",)
    assert card.note("gradcam", class_name="lung_opacity") == card.sentence("gradcam")
    assert card.note("gradcam", class_name="lung_opacity").startswith("On radiologists' boxes")
    assert card.note("gradcam", class_name="no_opacity") == (
        "Localization on radiologists' boxes was measured for lung_opacity maps; this map "
        "explains no_opacity."
    )
    assert card.note("lime", class_name="no_opacity") == ""  # no figures for LIME at all
    assert card.note("gradcam", class_name=None) == card.sentence("gradcam")  # nothing explained


def test_a_card_without_classes_is_the_positive_classs_or_anyones():
    entry = {"gradcam": {"energy_inside": 0.55}}
    meta = {"positive_class": "lung_opacity", "model_card": {"localization": entry}}
    card = localization_card(meta)
    assert card is not None and card.classes == ("lung_opacity",)
    assert not card.applies_to("no_opacity")
    anyone = localization_card({"model_card": {"localization": entry}})
    assert anyone is not None and anyone.classes == ()
    assert anyone.applies_to("no_opacity") and anyone.note("gradcam", class_name="x") != ""
    one = localization_card({"model_card": {"localization": {**entry, "class": "nodule"}}})
    assert one is not None and one.classes == ("nodule",)
    # a finding's name is read as the bundle's class it names; a name of no class is dropped
    named = {"class_names": ["no_opacity", "lung_opacity"]}
    named["model_card"] = {"localization": {**entry, "classes": ["Lung Opacity"]}}
    card = localization_card(named)
    assert card is not None and card.classes == ("lung_opacity",)
    named["model_card"] = {"localization": {**entry, "classes": ["Nodule"]}}
    card = localization_card({**named, "positive_class": "lung_opacity"})
    assert card is not None and card.classes == ("lung_opacity",)  # the positive class
    card = localization_card(named)
    assert card is not None and card.classes == ()  # unknown: said next to every map
