"""A dialog that wraps a bare ``.keras``/``.h5`` model into a CXR Lens bundle.

It reads what the file says without running it (:func:`cxr_viewer.core.importer.inspect_model`:
the output head, a proposed input preprocessing) and asks what it does not say — class names
(one per output, in order; one sigmoid unit: the positive finding), the value range the model
was trained on (the proposal preselected), the input size when the model accepts any, an
optional folder of images for the SHAP background. "Compare on samples" runs the model on a few
sample studies under every preprocessing so a user can see which one gives sane predictions
before saving. Import runs :func:`cxr_viewer.core.importer.import_model` on a
worker thread (the app's model worker when given, since it is the one thread that touches
TensorFlow) with a progress bar and a working Cancel. On success it emits :attr:`imported`
with the bundle folder and accepts; on failure it shows the error (what, why, what to do) and
stays open so the user can correct the answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.errors import BundleError, CxrError
from cxr_viewer.core.importer.inspect import CANDIDATES, ModelSummary, inspect_model
from cxr_viewer.core.model.heads import HEADS
from cxr_viewer.core.model.preprocess import PREPROCESSING_LABELS, Intensity

from .error_dialog import describe
from .worker import Failure, Task, WorkerThread

#: (label, preprocessing name) offered in the dialog, in the importer's candidate order
PREPROCESSING_CHOICES = tuple(
    (f"{PREPROCESSING_LABELS[n]} (\u201c{n}\u201d)", n) for n in CANDIDATES
)


def head_choices() -> list[tuple[str, str | None]]:
    """(label, head kind or None for the model's own) offered in the dialog: every registered
    head kind (:mod:`cxr_viewer.core.model.heads`)."""
    return [("as the model says", None), *((kind.label, kind.name) for kind in HEADS.values())]


#: (label, resize interpolation or None for the importer's choice) offered in the dialog
INTERPOLATION_CHOICES: tuple[tuple[str, str | None], ...] = (
    ("as the importer decides (area, or the best match on reference predictions)", None),
    ("nearest", "nearest"),
    ("bilinear (OpenCV resize, Keras image_dataset_from_directory)", "bilinear"),
    ("area", "area"),
    ("cubic", "cubic"),
)
#: (label, intensity stage) offered in the dialog
STAGE_CHOICES = (
    ("on 0–255 pixels, before the /255", "pixels"),
    ("on [0, 1] values, after the /255", "unit"),
)
NO_POSITIVE = "(none)"
#: sample studies the preprocessing comparison runs on (at most)
N_PREVIEW = 4


def default_bundle_dir(model_path: Path) -> Path:
    """``<folder of the model>/<stem>_bundle`` (numbered if taken)."""
    base = model_path.with_name(f"{model_path.stem}_bundle")
    candidate, i = base, 2
    while candidate.exists():
        candidate, i = base.with_name(f"{base.name}_{i}"), i + 1
    return candidate


def parse_class_names(text: str) -> list[str]:
    """Class names from "a, b, c" (commas or new lines)."""
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


class ImportDialog(QDialog):
    """Ask how to import ``model_path``, import it in the background, give the bundle path.

    Parameters
    ----------
    model_path:
        The bare ``.keras``/``.h5`` file the user chose.
    out_dir:
        Where to write the bundle (default :func:`default_bundle_dir`); editable in the dialog.
    worker:
        The thread to run the import on (the app's model worker); a private one is made if None.
    """

    #: the bundle folder (Path), after a successful import
    imported = Signal(object)

    def __init__(
        self,
        model_path: str | Path,
        parent: QWidget | None = None,
        *,
        out_dir: str | Path | None = None,
        worker: WorkerThread | None = None,
    ) -> None:
        super().__init__(parent)
        self.model_path = Path(model_path)
        self.bundle_path: Path | None = None
        #: the import's preprocessing-check warning, shown in a box once the bundle is written
        self.import_warning: str | None = None
        self.warning_box: QMessageBox | None = None
        self._worker = worker
        self._own_worker: WorkerThread | None = None
        self._task: Task | None = None
        self.setWindowTitle(f"Import model — {self.model_path.name}")
        self.summary: ModelSummary | None = None
        try:
            self.summary = inspect_model(self.model_path)
        except CxrError:
            self.summary = None  # the import itself will say what is wrong with the file
        self._preview_task: Task | None = None
        self._build(Path(out_dir) if out_dir else default_bundle_dir(self.model_path))

    # -- layout --------------------------------------------------------------------------
    def _build(self, out_dir: Path) -> None:
        self._browse_buttons: list[QPushButton] = []
        intro = QLabel(
            f"<b>{self.model_path.name}</b> is a bare Keras model. CXR Lens will wrap it into a "
            "model bundle so it can be explained like its own. Say what the file does not:"
        )
        intro.setWordWrap(True)
        self.found = QLabel(self._found_text())
        self.found.setWordWrap(True)
        self.found.setObjectName("Dim")
        self.classes_edit = QLineEdit()
        self.classes_edit.setPlaceholderText(
            "one name per model output, in order: normal, COVID-19"
        )
        self.positive_combo = QComboBox()
        self.preprocess_combo = QComboBox()
        proposed = self.summary.preprocessing if self.summary else "unit"
        for label, name in PREPROCESSING_CHOICES:
            self.preprocess_combo.addItem(
                label + ("  ★ proposed" if name == proposed else ""), name
            )
        self.preprocess_combo.setCurrentIndex(max(0, self.preprocess_combo.findData(proposed)))
        if self.summary:
            self.preprocess_combo.setToolTip(f"Proposed: {self.summary.preprocessing_reason}")
        self.head_combo = QComboBox()
        for label, kind in head_choices():
            self.head_combo.addItem(label, kind)
        self.size_auto = QCheckBox("read from the model")
        self.size_auto.setChecked(True)
        self.height_spin, self.width_spin = QSpinBox(), QSpinBox()
        for spin in (self.height_spin, self.width_spin):
            spin.setRange(8, 4096)
            spin.setValue(224)
        size_row = QHBoxLayout()
        size_widgets = [self.size_auto, QLabel("rows"), self.height_spin]
        for w in (*size_widgets, QLabel("columns"), self.width_spin):
            size_row.addWidget(w)
        # the training pipeline's resize and linear intensity step (bundle input.interpolation,
        # input.intensity), and the user's own predictions to check the whole pipeline against
        self.interp_combo = QComboBox()
        for label, interp in INTERPOLATION_CHOICES:
            self.interp_combo.addItem(label, interp)
        self.scale_spin, self.offset_spin = QDoubleSpinBox(), QDoubleSpinBox()
        self.scale_spin.setRange(0.001, 1000.0)
        self.scale_spin.setDecimals(3)
        self.scale_spin.setValue(1.0)
        self.offset_spin.setRange(-1000.0, 1000.0)
        self.offset_spin.setDecimals(3)
        self.stage_combo = QComboBox()
        for label, stage in STAGE_CHOICES:
            self.stage_combo.addItem(label, stage)
        intensity_row = QHBoxLayout()
        for w in (QLabel("×"), self.scale_spin, QLabel("+"), self.offset_spin, self.stage_combo):
            intensity_row.addWidget(w)
        intensity_tip = (
            "A contrast or brightness step of the training pipeline, v × scale + offset "
            "(e.g. ×1.3 on the pixels before the /255). ×1 + 0: none."
        )
        for w in (self.scale_spin, self.offset_spin, self.stage_combo):
            w.setToolTip(intensity_tip)
        self.reference_edit = QLineEdit()
        self.reference_edit.setPlaceholderText(
            "optional: a CSV of the model's outputs on a few films through your own pipeline"
        )
        self.reference_edit.setToolTip(
            "Columns: the film's path, then one output per class (as cxr-train import "
            "--reference-predictions reads it). Every preprocessing not stated above is tried "
            "on those films and the best match is used; a poor best match is reported."
        )
        self.background_edit = QLineEdit()
        self.background_edit.setPlaceholderText("empty: synthetic chest X-ray phantoms")
        self.out_edit = QLineEdit(str(out_dir))
        form = QFormLayout()
        form.addRow("Class names", self.classes_edit)
        form.addRow("Positive class", self.positive_combo)
        form.addRow("Output head", self.head_combo)
        form.addRow("Input values", self.preprocess_combo)
        form.addRow("Input size", _wrap(size_row))
        form.addRow("Resize", self.interp_combo)
        form.addRow("Intensity step", _wrap(intensity_row))
        form.addRow(
            "Reference predictions", self._with_browse(self.reference_edit, self._browse_reference)
        )
        form.addRow("SHAP background", self._with_browse(self.background_edit, self._browse_bg))
        form.addRow("Save bundle to", self._with_browse(self.out_edit, self._browse_out))
        self.preview_button = QPushButton("Compare preprocessings on sample images")
        self.preview_button.setToolTip(
            "Run the model on a few sample studies (the SHAP background folder if given, else "
            "the bundled samples) with every input convention, before saving anything"
        )
        self.preview_button.clicked.connect(self.start_preview)
        self.preview_table = QTableWidget(0, 0)
        self.preview_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.preview_table.setVisible(False)
        self.preview_table.setMinimumHeight(150)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        ok, cancel = QDialogButtonBox.StandardButton.Ok, QDialogButtonBox.StandardButton.Cancel
        self.buttons = QDialogButtonBox(ok | cancel)
        self.import_button = self.buttons.button(ok)
        self.import_button.setText("Import")
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.cancel_or_close)
        layout = QVBoxLayout(self)
        for w in (
            intro,
            self.found,
            _wrap(form),
            self.preview_button,
            self.preview_table,
            self.status,
            self.progress,
            self.buttons,
        ):
            layout.addWidget(w)
        self.classes_edit.textChanged.connect(self._update_positive)
        self.size_auto.toggled.connect(self._update_size)
        self._update_positive()
        self._update_size()
        self._inputs = [
            self.classes_edit,
            self.positive_combo,
            self.head_combo,
            self.preprocess_combo,
            self.preview_button,
            self.size_auto,
            self.height_spin,
            self.width_spin,
            self.interp_combo,
            self.scale_spin,
            self.offset_spin,
            self.stage_combo,
            self.reference_edit,
            self.background_edit,
            self.out_edit,
        ]

    def _found_text(self) -> str:
        s = self.summary
        if s is None:
            return ""
        parts = []
        if s.input_shape:
            rows, cols, ch = s.input_shape[1:4]
            parts.append(f"input {rows or 'any'}×{cols or 'any'}×{ch}")
        if s.units:
            act = s.activation or "unknown activation"
            kind = HEADS.get(s.head or "")
            parts.append(
                kind.describe(s.units, act) if kind is not None else f"{s.units} outputs ({act})"
            )
        parts.append(f"proposed input values: {s.preprocessing} ({s.preprocessing_reason})")
        return "Found: " + "; ".join(parts) + "."

    def _with_browse(self, edit: QLineEdit, slot) -> QWidget:
        row = QHBoxLayout()
        row.addWidget(edit)
        button = QPushButton("Browse…")
        button.clicked.connect(slot)
        row.addWidget(button)
        self._browse_buttons.append(button)
        return _wrap(row)

    @Slot()
    def _browse_bg(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of chest X-rays for SHAP")
        if folder:
            self.background_edit.setText(folder)

    @Slot()
    def _browse_reference(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "The model's predictions through your pipeline", "", "CSV (*.csv)"
        )
        if path:
            self.reference_edit.setText(path)

    @Slot()
    def _browse_out(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder to put the bundle in")
        if folder:
            self.out_edit.setText(str(Path(folder) / default_bundle_dir(self.model_path).name))

    @Slot()
    def _update_positive(self) -> None:
        current = self.positive_combo.currentText()
        self.positive_combo.clear()
        self.positive_combo.addItem(NO_POSITIVE)
        names = parse_class_names(self.classes_edit.text())
        self.positive_combo.addItems(names)
        if current in names:
            self.positive_combo.setCurrentText(current)
        elif len(names) == 2:
            self.positive_combo.setCurrentText(names[1])

    @Slot()
    def _update_size(self) -> None:
        manual = not self.size_auto.isChecked()
        self.height_spin.setEnabled(manual)
        self.width_spin.setEnabled(manual)

    # -- the answers ---------------------------------------------------------------------
    def import_arguments(self) -> dict[str, Any]:
        """The keyword arguments for ``import_model`` (BundleError if an answer is missing)."""
        classes = parse_class_names(self.classes_edit.text())
        head = self.head_combo.currentData()
        units = self.summary.units if self.summary else None
        kind = HEADS.get(head or (self.summary.head if self.summary else None) or "")
        binary = kind is not None and kind.single_unit  # one unit: its positive finding
        least = 1 if binary else 2
        if len(classes) < least or len(set(classes)) != len(classes):
            raise BundleError(
                "Name the classes",
                "give distinct names, one per model output, separated by commas"
                + (" (a binary model: its positive finding)." if binary else "."),
            )
        if units and not binary and head is None and len(classes) != units:
            raise BundleError(
                "The model's outputs do not match the class names",
                f"it gives {units} outputs per image, you named {len(classes)}.",
                "Give exactly one name per output, in output order.",
            )
        out = self.out_edit.text().strip()
        if not out:
            raise BundleError("Choose where to save the bundle", "the folder is empty.")
        positive = self.positive_combo.currentText()
        background = self.background_edit.text().strip()
        intensity = Intensity(
            self.scale_spin.value(), self.offset_spin.value(), self.stage_combo.currentData()
        )
        reference = self.reference_edit.text().strip()
        if reference and not Path(reference).is_file():
            raise BundleError(
                "The reference predictions file does not exist",
                f"{reference} is not a file.",
                "Choose the CSV of your model's outputs, or leave the field empty.",
            )
        return {
            "class_names": classes,
            "out_dir": Path(out),
            "preprocessing": self.preprocess_combo.currentData(),
            "input_size": None
            if self.size_auto.isChecked()
            else (self.height_spin.value(), self.width_spin.value()),
            "background_dir": Path(background) if background else None,
            "positive_class": positive if positive in classes else None,
            "head": head,
            "interpolation": self.interp_combo.currentData(),
            "intensity": None if intensity.identity else intensity,
            "reference_predictions": Path(reference) if reference else None,
        }

    # -- comparing preprocessings ----------------------------------------------------------
    @Slot()
    def start_preview(self) -> None:
        """Predict a few sample studies under every preprocessing (worker thread)."""
        if self.running or self._preview_task is not None:
            return
        path = self.model_path
        size = (
            None
            if self.size_auto.isChecked()
            else (self.height_spin.value(), self.width_spin.value())
        )
        head = self.head_combo.currentData()
        background = self.background_edit.text().strip()
        folder = Path(background) if background else None

        def run(progress, cancel, partial):
            from cxr_viewer.core.importer import prepare, preview_predictions

            prep = prepare(path, input_size=size, progress=progress, cancel=cancel)
            names, images = sample_images(folder, N_PREVIEW)
            progress(0.8, "predicting the samples")
            return names, preview_predictions(prep, images, head=head)

        self._preview_task = Task(
            fn=run,
            slot="import-preview",
            on_done=self._preview_done,
            on_error=self._preview_failed,
            on_progress=self._progress,
            on_cancelled=self._preview_cancelled,
        )
        self.preview_button.setEnabled(False)
        self.import_button.setEnabled(False)
        self._show_status("Running the model on sample images…")
        self._worker_thread().submit(self._preview_task)

    def _preview_finished(self) -> None:
        self._preview_task = None
        self.preview_button.setEnabled(True)
        self.import_button.setEnabled(True)

    def _preview_done(self, result) -> None:
        self._preview_finished()
        files, table = result
        self.show_preview(files, table)
        self._show_status(
            "Each cell: the positive class's probability (two classes) or the most probable "
            "class or finding, for that sample under that input convention. Pick the "
            "convention whose predictions look sane."
        )

    def _preview_failed(self, failure: Failure) -> None:
        self._preview_finished()
        self._show_error(failure.exc)

    def _preview_cancelled(self) -> None:
        self._preview_finished()
        self._show_status("Comparison cancelled.")

    def show_preview(self, files: list[str], table: dict) -> None:
        """Fill the comparison table: one row per preprocessing, one column per sample."""
        names = parse_class_names(self.classes_edit.text())
        proposed = self.summary.preprocessing if self.summary else None
        t = self.preview_table
        t.clear()
        t.setRowCount(len(table))
        t.setColumnCount(len(files))
        t.setHorizontalHeaderLabels(files)
        t.setVerticalHeaderLabels([n + (" ★" if n == proposed else "") for n in table])
        positive = self.positive_combo.currentText()
        if len(names) == 1:
            positive = names[0]
        for r, probs in enumerate(table.values()):
            for c in range(len(files)):
                p = probs[c]
                labels = names if len(names) == len(p) else []
                if len(names) == 1 and len(p) == 2:  # one sigmoid unit named by its finding
                    labels = [f"no {names[0]}", names[0]]
                if len(labels) == 2 and positive in labels:  # a two-class decision: p(positive)
                    k = labels.index(positive)
                else:  # the most probable class or finding
                    k = int(p.argmax())
                label = labels[k] if labels else f"output {k}"
                t.setItem(r, c, QTableWidgetItem(f"{label} {p[k]:.2f}"))
        t.resizeColumnsToContents()
        t.setVisible(True)

    # -- running -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None

    @Slot()
    def start(self) -> None:
        """Validate the answers and start the import on the worker thread."""
        if self.running:
            return
        try:
            kwargs = self.import_arguments()
        except CxrError as exc:
            self._show_error(exc)
            return
        path = self.model_path
        classes = kwargs.pop("class_names")

        def run(progress, cancel, partial):
            from cxr_viewer.core.importer import import_model

            return import_model(path, classes, progress=progress, cancel=cancel, **kwargs).root

        self._task = Task(
            fn=run,
            slot="import",
            on_done=self._done,
            on_error=self._failed,
            on_progress=self._progress,
            on_cancelled=self._cancelled,
        )
        self._set_running(True)
        self._show_status("Importing…")
        self._worker_thread().submit(self._task)

    def _worker_thread(self) -> WorkerThread:
        if self._worker is None:
            self._own_worker = WorkerThread("cxr-import", self)
            self._worker = self._own_worker
        return self._worker

    @Slot()
    def cancel_or_close(self) -> None:
        """Cancel a running import or comparison (the dialog stays open), or close the dialog."""
        if self._preview_task is not None:
            self._preview_task.cancel()
            return
        if self._task is not None:
            self._task.cancel()
            self._show_status("Cancelling after the current step…")
            return
        self.reject()

    def _progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * fraction)))
        self._show_status(message[:1].upper() + message[1:] + "…" if message else "Importing…")

    def _done(self, bundle_path: Path) -> None:
        self._task = None
        self._set_running(False)
        self.bundle_path = Path(bundle_path)
        self._show_status(f"Imported to {self.bundle_path}")
        self.import_warning = pipeline_warning(self.bundle_path)
        if self.import_warning:
            # not modal: the import is done and the bundle opens; the warning stays readable
            box = QMessageBox(
                QMessageBox.Icon.Warning,
                "Preprocessing check",
                self.import_warning,
                parent=self.parentWidget() or self,
            )
            box.open()
            self.warning_box = box
        self.imported.emit(self.bundle_path)
        self.accept()

    def _failed(self, failure: Failure) -> None:
        self._task = None
        self._set_running(False)
        self._show_error(failure.exc)

    def _cancelled(self) -> None:
        self._task = None
        self._set_running(False)
        self._show_status("Import cancelled.")

    def _set_running(self, running: bool) -> None:
        for w in self._inputs + self._browse_buttons:
            w.setEnabled(not running)
        if not running:
            self._update_size()
        self.import_button.setEnabled(not running)
        self.progress.setVisible(running)
        if running:
            self.progress.setValue(0)

    def _show_status(self, text: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(text)

    def _show_error(self, exc: BaseException) -> None:
        headline, body = describe(exc)
        self.status.setStyleSheet("color: #b00020;")
        self.status.setText(
            f"<b>{_escape(headline)}</b><br>{_escape(body).replace(chr(10), '<br>')}"
        )

    def done(self, result: int) -> None:  # noqa: D401 - QDialog override
        """Close; a private worker thread is stopped (a running import is cancelled first)."""
        if self._task is not None:
            self._task.cancel()
        if self._preview_task is not None:
            self._preview_task.cancel()
        if self._own_worker is not None:
            self._own_worker.shutdown()
            self._own_worker = None
        super().done(result)


def pipeline_warning(bundle_dir: Path) -> str | None:
    """The import's warning that the best preprocessing matched the reference predictions
    poorly (``metadata.json`` ``preprocessing_check.warning``), or None."""
    from cxr_viewer.core.model.bundle import open_bundle

    try:
        check = open_bundle(bundle_dir).metadata.get("preprocessing_check") or {}
    except CxrError:
        return None
    warning = check.get("warning") if isinstance(check, dict) else None
    return str(warning) if warning else None


def sample_images(folder: Path | None, n: int) -> tuple[list[str], list[np.ndarray]]:
    """Up to ``n`` readable studies (names, [0, 1] display images) from ``folder`` or the
    bundled sample studies."""
    from cxr_viewer.core.errors import StudyLoadError
    from cxr_viewer.core.io import list_study_files, load_study
    from cxr_viewer.core.io.display import display_image
    from cxr_viewer.core.paths import samples_dir

    files = list_study_files(folder if folder is not None else samples_dir())
    if folder is None:  # the bundled samples: chest films before the codec test phantoms
        files = sorted(files, key=lambda f: Path(f).name.startswith("phantom_"))
    names: list[str] = []
    images: list[np.ndarray] = []
    for f in files:
        if len(images) >= n:
            break
        try:
            images.append(display_image(load_study(f)))
        except StudyLoadError:
            continue
        names.append(Path(f).name)
    if not images:
        raise BundleError(
            "No sample images to compare on",
            f"none of the files in {folder or samples_dir()} could be read.",
            "Choose a folder of chest X-rays as the SHAP background.",
        )
    return names, images


def _wrap(layout) -> QWidget:
    w = QWidget()
    w.setLayout(layout)
    layout.setContentsMargins(0, 0, 0, 0)
    return w


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
