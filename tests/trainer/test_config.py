"""Config: defaults documented in default.toml, round trip, validation, overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cxr_viewer.core.errors import TrainingError
from trainer.config import Config, dump_config, load_config, parse_override, write_config

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"


def test_default_toml_documents_exactly_the_defaults():
    assert load_config(CONFIGS / "default.toml") == Config()


def test_shipped_configs_are_valid_and_pneumonia_builds_the_demo():
    demo = load_config(CONFIGS / "pneumonia.toml")
    assert demo.export.bundle_dir == "resources/demo_bundle"
    assert demo.data.format == "pediatric_pneumonia" and demo.model.architecture == "mobilenet"
    assert demo.train.head_epochs > 0 and demo.train.fine_tune_learning_rate > 0
    three = load_config(CONFIGS / "pneumonia3.toml")
    assert three.data.task == "three_class" and three.export.bundle_dir == ""
    covid = load_config(CONFIGS / "covid.toml")
    assert covid.export.bundle_dir == ""  # the chance-level model is not the demo any more


def test_round_trip(tmp_path):
    cfg = load_config(
        None,
        {
            "seed": 7,
            "data.views": ["PA"],
            "data.class_names": ['quote"d', "b"],
            "imbalance.class_multipliers": {"COVID-19": 1.5, "non COVID": 2.0},
            "model.architecture": "mobilenetv2",
            "model.alpha": 0.35,
            "train.learning_rate": 3e-4,
            "augment.horizontal_flip": True,
        },
    )
    path = write_config(cfg, tmp_path / "c.toml")
    assert load_config(path) == cfg
    assert tomllib.loads(dump_config(cfg))["model"]["alpha"] == 0.35


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ({"nope": 1}, "unknown key 'nope'"),
        ({"train.epoch": 1}, "unknown key 'train.epoch'"),
        ({"train.epochs": "3"}, "train.epochs"),
        ({"train.epochs": 0}, "train.epochs"),
        ({"model.architecture": "vgg"}, "model.architecture"),
        ({"split.val_fraction": 0.45, "split.test_fraction": 0.4}, "split"),
        ({"augment.enabled": 1}, "augment.enabled"),
        ({"model": 3}, "model"),
        ({"model.cam_pool": 3.0}, 'model.cam_pool: must be 0 unless model.head = "cam"'),
        ({"model.head": "cam", "model.cam_pool": float("inf")}, "model.cam_pool"),
        ({"model.head": "cam", "model.cam_pool": -1.0}, "model.cam_pool"),
    ],
)
def test_bad_values_raise_training_error(overrides, fragment):
    with pytest.raises(TrainingError) as info:
        load_config(None, overrides)
    assert fragment in str(info.value)


def test_bad_file(tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3")
    with pytest.raises(TrainingError, match="Cannot read"):
        load_config(bad)


def test_parse_override():
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override("data.views=['PA']") == ("data.views", ["PA"])
    assert parse_override("model.architecture=mobilenetv2") == ("model.architecture", "mobilenetv2")
    with pytest.raises(TrainingError):
        parse_override("nothing")


def test_preprocessing_follows_architecture():
    assert Config().preprocessing == "unit"
    assert load_config(None, {"model.architecture": "resnet50v2"}).preprocessing == "symmetric"
    assert load_config(None, {"model.preprocessing": "symmetric"}).preprocessing == "symmetric"


def test_boxes_section_and_text_tables():
    from cxr_viewer.core.errors import TrainingError
    from trainer.config import dump_config, load_config

    cfg = load_config(
        None,
        {
            "model.head": "cam",
            "boxes.csv": "boxes.csv",
            "boxes.class_map": {"Lung Opacity": "lung_opacity"},
            "data.columns": {"path": "filename"},
            "data.label_map": {"Normal": "no_opacity", "Lung Opacity": "lung_opacity"},
        },
    )
    assert cfg.boxes.class_map == {"Lung Opacity": "lung_opacity"}
    assert cfg.data.label_map["Normal"] == "no_opacity"
    import tomllib

    from trainer.config import config_from_dict

    assert config_from_dict(tomllib.loads(dump_config(cfg))) == cfg  # round trip
    with pytest.raises(TrainingError, match="model.head"):
        load_config(None, {"boxes.csv": "boxes.csv"})  # the loss needs the CAM head
    with pytest.raises(TrainingError, match="boxes.share"):
        load_config(None, {"model.head": "cam", "boxes.share": 1.5})
    with pytest.raises(TrainingError, match="data.label_map"):
        load_config(None, {"data.label_map": {"Normal": 0}})
    with pytest.raises(TrainingError, match="data.columns"):
        load_config(None, {"data.columns": {"filename": "path"}})
