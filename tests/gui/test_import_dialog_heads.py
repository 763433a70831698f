"""The import dialog reads the head and proposes the preprocessing; it compares conventions on
sample images before anything is saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_viewer.core.model.bundle import open_bundle

pytest.importorskip("pytestqt")
pytest.importorskip("tf_keras")

from cxr_viewer.core.importer import CANDIDATES  # noqa: E402
from cxr_viewer.gui.import_dialog import ImportDialog  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def sigmoid_rescaling_h5(tmp_path_factory) -> Path:
    """One sigmoid unit after a Rescaling(1/255) layer: a binary model fed raw pixels."""
    import tf_keras as k

    k.utils.set_random_seed(0)
    inp = k.Input((SIZE, SIZE, 1))
    x = k.layers.Rescaling(1.0 / 255)(inp)
    x = k.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("m") / "sig.h5"
    k.Model(inp, k.layers.Dense(1, activation="sigmoid")(x)).save(path, save_format="h5")
    return path


def test_dialog_proposes_and_imports_a_binary_sigmoid_model(qtbot, sigmoid_rescaling_h5, tmp_path):
    out = tmp_path / "bundle"
    dialog = ImportDialog(sigmoid_rescaling_h5, out_dir=out)
    qtbot.addWidget(dialog)
    dialog.show()
    assert "one sigmoid unit" in dialog.found.text() and "Rescaling" in dialog.found.text()
    assert dialog.preprocess_combo.currentData() == "raw"
    assert "proposed" in dialog.preprocess_combo.currentText()
    dialog.classes_edit.setText("pneumonia")  # one name is enough for one sigmoid unit
    # compare the conventions on the bundled sample studies first
    with qtbot.waitSignal(dialog.preview_table.itemChanged, timeout=120_000, raising=False):
        dialog.preview_button.click()
    qtbot.waitUntil(lambda: dialog.preview_table.rowCount() == len(CANDIDATES), timeout=120_000)
    table = dialog.preview_table
    assert table.isVisible() and table.columnCount() >= 2
    headers = [table.verticalHeaderItem(r).text() for r in range(table.rowCount())]
    assert "raw ★" in headers
    cell = table.item(0, 0).text()
    assert cell.split()[0] == "pneumonia"  # p(positive) of a two-class model
    with qtbot.waitSignal(dialog.imported, timeout=120_000):
        dialog.import_button.click()
    bundle = open_bundle(out)
    assert bundle.head.kind == "binary"
    assert bundle.class_names == ["no pneumonia", "pneumonia"]
    assert bundle.input_spec.preprocessing == "raw"


def test_dialog_refuses_a_single_name_for_a_softmax_model(qtbot, tmp_path):
    import tf_keras as k

    inp = k.Input((SIZE, SIZE, 1))
    x = k.layers.GlobalAveragePooling2D()(k.layers.Conv2D(4, 3)(inp))
    path = tmp_path / "soft.h5"
    k.Model(inp, k.layers.Dense(3, activation="softmax")(x)).save(path, save_format="h5")
    dialog = ImportDialog(path, out_dir=tmp_path / "b")
    qtbot.addWidget(dialog)
    assert "3 exclusive classes" in dialog.found.text()
    dialog.classes_edit.setText("a, b")
    dialog.import_button.click()
    assert not dialog.running
    assert "do not match the class names" in dialog.status.text()
