"""Training end to end on phantoms, and resuming an interrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.config import load_config

pytestmark = pytest.mark.slow


def _phantom_config(csv, **over):
    values = {
        "data.format": "csv",
        "data.root": str(csv),
        "data.class_names": ["no_lesion", "lesion"],
        "model.input_size": 64,
        "model.blocks": 2,
        "model.init_filters": 32,
        "model.dropout": 0.2,
        "augment.enabled": False,
        "train.epochs": 12,
        "train.patience": 12,
        "train.verbose": 0,
        "train.tensorboard": False,
        "export.background_size": 8,
    }
    values.update(over)
    return load_config(None, values)


def test_tiny_model_learns_phantom_lesions_and_exports_a_bundle(phantom_csv_64, tmp_path):
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import load_classifier
    from trainer.run import run_training

    cfg = _phantom_config(phantom_csv_64, **{"evaluate.gradcam_check": 12})
    out = run_training(cfg, tmp_path / "run", progress=False)
    test = out.evaluation["test"]
    assert test["accuracy"] >= 0.85, out.evaluation
    assert test["auc"] >= 0.9
    # threshold from validation, positive class = lesion
    assert out.evaluation["positive_class"] == "lesion" and 0 < out.evaluation["threshold"] < 1

    run = tmp_path / "run"
    for name in (
        "config.resolved.toml",
        "splits.csv",
        "history.csv",
        "metrics.json",
        "model.keras",
    ):
        assert (run / name).is_file(), name
    assert load_config(run / "config.resolved.toml") == cfg
    for fig in ("roc_test.png", "pr_val.png", "confusion_test.png", "learning_curves.png"):
        assert (run / "report" / fig).stat().st_size > 1000
    report = (run / "report" / "report.md").read_text()
    assert "Test (held out" in report
    # the deletion test of the report, under every fill, in the report and the model card
    g = out.evaluation["gradcam_check"]
    assert g["images"] == 12 and list(g["by_fill"]) == ["blur", "mean", "black"]
    for fill in ("blur", "mean", "black"):
        assert f"| {fill} | " in report

    bundle = open_bundle(run / "bundle")
    meta = bundle.metadata
    assert meta["metrics"]["test_auc"] == pytest.approx(test["auc"])
    assert meta["metrics"]["validation"]["auc"] is not None
    by_fill = meta["model_card"]["gradcam_deletion_by_fill"]
    assert by_fill["black"]["share_gradcam_beats_random"] == pytest.approx(
        g["by_fill"]["black"]["share_gradcam_beats_random"]
    )
    assert bundle.class_names == ["no_lesion", "lesion"] and bundle.positive_class == "lesion"
    assert bundle.gradcam_layer == "block2_out" and bundle.shap_layers
    assert bundle.background().shape == (8, 64, 64, 3)
    assert meta["config"]["model"]["architecture"] == "dcnn_resnet"
    assert "tensorflow" in meta["library_versions"]
    # the viewer's classifier on a file of the test split agrees with the trainer
    clf = load_classifier(run / "bundle")
    splits = __import__("pandas").read_csv(run / "splits.csv")
    row = splits[splits["split"] == "test"].iloc[0]
    pred = clf.predict_study(load_study(row["path"]))
    assert pred.probabilities.shape == (2,)

    # `cxr-train evaluate` on the run's test split reproduces the test figures from the bundle
    from trainer.cli import main

    argv = ["evaluate", "--bundle", str(run / "bundle"), "--set", "data.format=csv",
            "--set", f"data.root={phantom_csv_64}", "--splits", str(run / "splits.csv"),
            "--out", str(tmp_path / "ev"), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert ev["auc"] == pytest.approx(test["auc"], abs=1e-6)
    assert ev["confusion_matrix"] == test["confusion_matrix"]

    # running again reuses the finished model instead of retraining
    again = run_training(cfg, run, progress=False)
    assert again.evaluation["test"]["auc"] == pytest.approx(test["auc"])


def test_interrupted_training_resumes_from_the_checkpoint(phantom_csv_small, tmp_path):
    import keras

    from trainer.data import prepare_data
    from trainer.train import read_history, train_model

    cfg = _phantom_config(
        phantom_csv_small,
        **{"model.input_size": 32, "model.blocks": 1, "model.init_filters": 8, "train.epochs": 4},
    )
    run = tmp_path / "run"
    data = prepare_data(cfg, run, progress=False)
    # both files of a patient (PNG + DICOM) share a split
    assert data.manifest.groupby("patient_id")["split"].nunique().max() == 1

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.weights = [w.copy() for w in self.model.get_weights()]
                self.iterations = int(self.model.optimizer.iterations.numpy())
                raise KeyboardInterrupt("simulated interruption after epoch 2")

    interrupt = Interrupt()
    with pytest.raises(KeyboardInterrupt):
        train_model(cfg, data, run, extra_callbacks=[interrupt])
    assert list(read_history(run / "history.csv")["epoch"]) == [0, 1]
    assert not (run / "model.keras").exists()
    backup = json.loads((run / "checkpoints/backup/training_metadata.json").read_text())
    assert backup["epoch"] == 2

    class Probe(keras.callbacks.Callback):
        epochs: list = []

        def on_train_begin(self, logs=None):  # runs after BackupAndRestore restored the state
            self.start_weights = [w.copy() for w in self.model.get_weights()]
            self.start_iterations = int(self.model.optimizer.iterations.numpy())

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    probe = Probe()
    result = train_model(cfg, data, run, extra_callbacks=[probe])
    assert result.resumed_from == 2
    assert probe.epochs == [2, 3]  # continues at the third epoch, not from scratch
    assert probe.start_iterations == interrupt.iterations > 0  # optimizer state restored
    for a, b in zip(probe.start_weights, interrupt.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert list(read_history(run / "history.csv")["epoch"]) == [0, 1, 2, 3]
    assert (run / "model.keras").is_file()
    assert not (run / "checkpoints/backup").exists()  # finished: the backup is cleared


def test_same_config_gives_the_same_weights(phantom_csv_small, tmp_path):
    """Seeds + deterministic ops: two fresh runs of one config train identical weights
    (augmentation and shuffling included)."""
    from trainer.data import prepare_data
    from trainer.train import train_model

    cfg = _phantom_config(
        phantom_csv_small,
        **{"model.input_size": 32, "model.blocks": 1, "model.init_filters": 8,
           "train.epochs": 2, "augment.enabled": True},
    )  # fmt: skip
    weights = []
    for name in ("a", "b"):
        data = prepare_data(cfg, tmp_path / name, progress=False)
        weights.append(train_model(cfg, data, tmp_path / name).model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_random_search_selects_on_validation(phantom_csv_small, tmp_path):
    from trainer.run import run_training

    cfg = _phantom_config(
        phantom_csv_small,
        **{"model.input_size": 32, "model.blocks": 1, "model.init_filters": 8,
           "search.trials": 2, "search.epochs": 2},
    )  # fmt: skip
    out = run_training(cfg, tmp_path / "run", progress=False)
    trials = out.training["search_trials"]
    assert [t["trial"] for t in trials] == [0, 1]
    assert len({t["learning_rate"] for t in trials}) == 2
    best = max(trials, key=lambda t: -1 if t["val_auc"] is None else t["val_auc"])
    chosen = out.training["chosen_hyperparameters"]
    assert chosen["learning_rate"] == best["learning_rate"]
    assert out.bundle.metadata["config"]["train"]["learning_rate"] == best["learning_rate"]
    assert (tmp_path / "run" / "trials" / "trial_01" / "model.keras").is_file()
    assert "Random search" in out.report.read_text()
