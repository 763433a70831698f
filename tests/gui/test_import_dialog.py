"""The import dialog: answers → import_model on a worker thread → bundle path, errors shown."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.model.bundle import open_bundle

pytest.importorskip("pytestqt")
pytest.importorskip("tf_keras")

from PySide6.QtWidgets import QDialog  # noqa: E402

from cxr_viewer.gui.import_dialog import (  # noqa: E402
    ImportDialog,
    default_bundle_dir,
    parse_class_names,
)

SIZE = 32


@pytest.fixture(scope="module")
def h5_model(tmp_path_factory) -> Path:
    """A small flat Keras 2 classifier saved as .h5 with tf_keras."""
    import tf_keras as k

    k.utils.set_random_seed(0)
    inp = k.Input((SIZE, SIZE, 1))
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inp, k.layers.Dense(2, activation="softmax")(x))
    path = tmp_path_factory.mktemp("model") / "clf.h5"
    model.save(path, save_format="h5")
    return path


def _dialog(qtbot, model: Path, out: Path) -> ImportDialog:
    dialog = ImportDialog(model, out_dir=out)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def test_helpers():
    assert parse_class_names(" normal, COVID-19 ,\nviral ,") == ["normal", "COVID-19", "viral"]
    assert default_bundle_dir(Path("/x/m.h5")) == Path("/x/m_bundle")


def test_import_runs_in_background_and_returns_the_bundle(qtbot, h5_model, tmp_path):
    out = tmp_path / "bundle"
    dialog = _dialog(qtbot, h5_model, out)
    dialog.classes_edit.setText("normal, lesion")
    assert dialog.positive_combo.currentText() == "lesion"  # binary: the second by default
    dialog.preprocess_combo.setCurrentIndex(1)  # symmetric
    progress: list[int] = []
    dialog.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(dialog.imported, timeout=120_000) as blocker:
        dialog.import_button.click()
        assert dialog.running and not dialog.classes_edit.isEnabled()
    assert blocker.args == [out]
    assert dialog.result() == QDialog.Accepted and dialog.bundle_path == out
    assert progress and max(progress) > 50
    bundle = open_bundle(out)
    assert bundle.class_names == ["normal", "lesion"]
    assert bundle.positive_class == "lesion"
    assert bundle.input_spec.preprocessing == "symmetric"
    assert bundle.metadata["imported"] is True and bundle.metadata["source_file"] == "clf.h5"


def test_missing_class_names_are_asked_for_without_starting(qtbot, h5_model, tmp_path):
    dialog = _dialog(qtbot, h5_model, tmp_path / "b")
    dialog.classes_edit.setText("only-one")
    dialog.import_button.click()
    assert not dialog.running
    assert "Name the classes" in dialog.status.text()
    assert dialog.isVisible()


def test_import_error_is_shown_and_the_dialog_stays_usable(qtbot, h5_model, tmp_path):
    dialog = _dialog(qtbot, h5_model, tmp_path / "b")
    dialog.classes_edit.setText("a, b, c")  # the model has 2 outputs
    dialog.import_button.click()
    qtbot.waitUntil(lambda: not dialog.running, timeout=120_000)
    assert "do not match the class names" in dialog.status.text()
    assert dialog.isVisible() and dialog.classes_edit.isEnabled()
    assert dialog.bundle_path is None and not (tmp_path / "b").exists()


def test_input_size_and_background_answers(qtbot, h5_model, tmp_path):
    dialog = _dialog(qtbot, h5_model, tmp_path / "b")
    dialog.classes_edit.setText("a, b")
    assert not dialog.height_spin.isEnabled()
    assert dialog.import_arguments()["input_size"] is None
    assert dialog.import_arguments()["background_dir"] is None
    dialog.size_auto.setChecked(False)
    assert dialog.height_spin.isEnabled()
    dialog.height_spin.setValue(64)
    dialog.width_spin.setValue(48)
    dialog.background_edit.setText(str(tmp_path))
    args = dialog.import_arguments()
    assert args["input_size"] == (64, 48) and args["background_dir"] == tmp_path
    assert args["preprocessing"] == "unit" and args["positive_class"] == "b"


def test_cancel_when_idle_closes(qtbot, h5_model, tmp_path):
    dialog = _dialog(qtbot, h5_model, tmp_path / "b")
    dialog.buttons.rejected.emit()
    assert dialog.result() == QDialog.Rejected and not dialog.isVisible()


def test_cancel_while_running_stops_the_import(qtbot, h5_model, tmp_path):
    dialog = _dialog(qtbot, h5_model, tmp_path / "b")
    dialog.classes_edit.setText("a, b")
    dialog.import_button.click()
    dialog.cancel_or_close()  # cancels at the importer's next step
    qtbot.waitUntil(lambda: not dialog.running, timeout=120_000)
    assert "cancelled" in dialog.status.text().lower()
    assert dialog.isVisible() and dialog.bundle_path is None
    assert not (tmp_path / "b").exists()
    assert np.isfinite(dialog.progress.value())


def test_open_model_with_a_bare_h5_imports_once_then_remembers(qtbot, window, h5_model):
    """File ▸ Open model on a .h5 walks through the import; a second open reuses the bundle."""
    dialog = window.start_import(h5_model)
    dialog.classes_edit.setText("normal, lesion")
    with qtbot.waitSignal(dialog.imported, timeout=120_000) as blocker:
        dialog.import_button.click()
    bundle_dir = Path(blocker.args[0])
    qtbot.waitUntil(lambda: window.state.model is not None, timeout=120_000)
    assert window.settings.imported_bundle(h5_model) == bundle_dir.resolve()

    asked: list[Path] = []
    loaded: list[Path] = []
    window.start_import = asked.append  # must not be asked again
    window.load_model = loaded.append
    window.open_model_path(h5_model)
    assert asked == [] and loaded == [bundle_dir.resolve()]


def test_resize_intensity_and_reference_predictions_reach_the_bundle(qtbot, h5_model, tmp_path):
    """The dialog states the training pipeline's resize and intensity step, and checks the
    import against the user's own predictions: a poor best match is shown in a warning box
    (not modal: the bundle is written and opens)."""
    import csv

    import cv2

    films = tmp_path / "films"
    films.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        cv2.imwrite(str(films / f"f{i}.png"), (rng.random((48, 48)) * 255).astype(np.uint8))
        # outputs no preprocessing of this model gives: they alternate between the extremes
        rows.append([f"f{i}.png", *((0.99, 0.01) if i % 2 else (0.01, 0.99))])
    ref = films / "reference.csv"
    with open(ref, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["file", "normal", "lesion"], *rows])

    out = tmp_path / "bundle"
    dialog = _dialog(qtbot, h5_model, out)
    dialog.classes_edit.setText("normal, lesion")
    dialog.preprocess_combo.setCurrentIndex(dialog.preprocess_combo.findData("unit"))
    dialog.interp_combo.setCurrentIndex(dialog.interp_combo.findData("bilinear"))
    dialog.scale_spin.setValue(1.3)
    dialog.stage_combo.setCurrentIndex(dialog.stage_combo.findData("pixels"))
    dialog.reference_edit.setText(str(tmp_path / "missing.csv"))
    with pytest.raises(CxrError, match="does not exist"):
        dialog.import_arguments()
    dialog.reference_edit.setText(str(ref))
    kwargs = dialog.import_arguments()
    assert kwargs["interpolation"] == "bilinear" and kwargs["reference_predictions"] == ref
    assert (kwargs["intensity"].scale, kwargs["intensity"].stage) == (1.3, "pixels")
    with qtbot.waitSignal(dialog.imported, timeout=120_000):
        dialog.import_button.click()
    spec = open_bundle(out).input_spec
    assert spec.interpolation == "bilinear" and spec.intensity.scale == pytest.approx(1.3)
    assert dialog.import_warning and dialog.warning_box is not None
    assert dialog.warning_box.text() == dialog.import_warning
    dialog.warning_box.close()
