"""PACS in the viewer: node settings with "Test connection", query/retrieve, DICOM export/send.

- :class:`PacsNodesDialog` — the PACS nodes (name, AE title, host, port, our calling AE, our
  storage port for C-MOVE, C-GET or C-MOVE), saved in the viewer's settings; "Test
  connection" runs a C-ECHO.
- :class:`QueryRetrieveDialog` — a study-level C-FIND (patient name/ID, date range, CR/DX) with
  a result table, and retrieve (C-GET or C-MOVE) of the chosen studies into the study list,
  with progress and Cancel; what arrived before a cancel or a failure is kept and opened.
- :class:`DicomExportDialog` — File ▸ Export ▸ DICOM…: the shown explanations as Secondary
  Captures plus a structured report into a folder, optionally sent (C-STORE) to a node; patient
  fields are asked only for PNG/JPEG sources (empty = anonymous).

The "hide patient fields" setting masks patient names, IDs, birth dates and sex in the result
table. Network work runs on a worker thread; nothing is sent anywhere unless the user asks.
:func:`install` adds the menu entries to a main window.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QMenu,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.errors import CxrError

from .error_dialog import describe
from .worker import Failure, Task, WorkerThread

if TYPE_CHECKING:
    from cxr_viewer.core.interop.pacs import PacsNode, StudyRecord

    from .main_window import MainWindow
    from .settings import Settings
    from .state import ViewerState

NODES_KEY = "pacs/nodes"
RETRIEVE_DIR_KEY = "pacs/retrieve_dir"

#: result table columns: (header, StudyRecord attribute)
COLUMNS = (
    ("Patient name", "patient_name"),
    ("Patient ID", "patient_id"),
    ("Birth date", "patient_birth_date"),
    ("Sex", "patient_sex"),
    ("Study date", "study_date"),
    ("Description", "study_description"),
    ("Modalities", "modalities"),
    ("Images", "instances"),
    ("Accession", "accession_number"),
)


# ---------------------------------------------------------------------------- settings


def load_nodes(settings: Settings) -> list[PacsNode]:
    """The PACS nodes saved in the settings (invalid entries are skipped)."""
    from cxr_viewer.core.interop.pacs import PacsNode

    raw = settings.q.value(NODES_KEY, "")
    try:
        items = json.loads(str(raw)) if raw else []
    except ValueError:
        return []
    nodes = []
    for item in items if isinstance(items, list) else []:
        try:
            nodes.append(PacsNode.from_dict(item))
        except (CxrError, TypeError):
            continue
    return nodes


def save_nodes(settings: Settings, nodes: list[PacsNode]) -> None:
    settings.q.setValue(NODES_KEY, json.dumps([n.as_dict() for n in nodes]))


def retrieve_dir(settings: Settings) -> Path:
    """Where retrieved studies go (``$XDG_DATA_HOME/cxr-lens/retrieved`` by default)."""
    value = settings.q.value(RETRIEVE_DIR_KEY, "")
    if value:
        return Path(str(value))
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "cxr-lens" / "retrieved"


def _error_text(exc: BaseException) -> str:
    headline, body = describe(exc)
    return f"<b>{headline}</b><br>{body}".replace("\n", "<br>")


class _Busy:
    """A progress bar and a Cancel button driving one task at a time."""

    def __init__(self, layout, worker: WorkerThread) -> None:
        self.worker = worker
        self.task: Task | None = None
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)

    def start(self, task: Task, busy_text: str = "") -> Task:
        self.task = task
        self.bar.setRange(0, 0)
        self.bar.setFormat(busy_text)
        self.bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        return self.worker.submit(task)

    def progress(self, fraction: float, message: str) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(fraction * 1000))
        self.bar.setFormat(message or "%p %")

    def stop(self) -> None:
        self.task = None
        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.cancel_button.setEnabled(False)

    @property
    def running(self) -> bool:
        return self.task is not None


# ---------------------------------------------------------------------------- nodes


class PacsNodesDialog(QDialog):
    """Edit the list of PACS nodes; "Test connection" sends a C-ECHO to the edited node."""

    def __init__(
        self, settings: Settings, parent: QWidget | None = None, worker: WorkerThread | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("PacsNodesDialog")
        self.setWindowTitle("PACS nodes")
        self.settings = settings
        self.nodes = load_nodes(settings)
        self._own_worker = worker is None
        self.worker = worker or WorkerThread("cxr-pacs", self)

        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show)
        self.name = QLineEdit()
        self.ae_title = QLineEdit()
        self.ae_title.setPlaceholderText("e.g. ORTHANC")
        self.host = QLineEdit()
        self.host.setPlaceholderText("e.g. 127.0.0.1 or pacs.hospital.local")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(4242)
        self.calling_ae = QLineEdit("CXRLENS")
        self.storage_port = QSpinBox()
        self.storage_port.setRange(1, 65535)
        self.storage_port.setValue(11113)
        self.listen_host = QLineEdit("127.0.0.1")
        self.listen_host.setToolTip(
            "Address our storage SCP listens on for C-MOVE: 127.0.0.1 for a PACS on this "
            "computer, this computer's address (or 0.0.0.0) for a PACS elsewhere"
        )
        self.retrieve = QComboBox()
        self.retrieve.addItem("C-GET (no incoming connection)", "get")
        self.retrieve.addItem("C-MOVE to our storage port", "move")
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("PACS AE title", self.ae_title)
        form.addRow("Host", self.host)
        form.addRow("Port", self.port)
        form.addRow("Our AE title", self.calling_ae)
        form.addRow("Our storage port (C-MOVE)", self.storage_port)
        form.addRow("Listen on (C-MOVE)", self.listen_host)
        form.addRow("Retrieve with", self.retrieve)

        self.add_button = QPushButton("Add / update")
        self.add_button.clicked.connect(self.add_or_update)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove_current)
        self.test_button = QPushButton("Test connection")
        self.test_button.setObjectName("TestConnection")
        self.test_button.clicked.connect(self.test_connection)
        self.result_label = QLabel("")
        self.result_label.setObjectName("TestResult")
        self.result_label.setWordWrap(True)
        self.result_label.setTextFormat(Qt.TextFormat.RichText)
        buttons = QHBoxLayout()
        for b in (self.add_button, self.remove_button, self.test_button):
            buttons.addWidget(b)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        box.rejected.connect(self.reject)
        box.accepted.connect(self.accept)

        right = QVBoxLayout()
        right.addLayout(form)
        right.addLayout(buttons)
        right.addWidget(self.result_label)
        top = QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(right, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        self.busy = _Busy(lay, self.worker)
        lay.addWidget(box)
        self._refresh()

    def _refresh(self, select: int = 0) -> None:
        self.list.clear()
        for n in self.nodes:
            self.list.addItem(n.label)
        if self.nodes:
            self.list.setCurrentRow(min(select, len(self.nodes) - 1))

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.nodes):
            return
        n = self.nodes[row]
        self.name.setText(n.name)
        self.ae_title.setText(n.ae_title)
        self.host.setText(n.host)
        self.port.setValue(n.port)
        self.calling_ae.setText(n.calling_ae)
        self.storage_port.setValue(n.storage_port)
        self.listen_host.setText(n.listen_host)
        self.retrieve.setCurrentIndex(max(0, self.retrieve.findData(n.retrieve)))

    def edited_node(self) -> PacsNode:
        """The node as the form describes it (raises PacsError when a field is invalid)."""
        from cxr_viewer.core.interop.pacs import PacsNode

        return PacsNode(
            ae_title=self.ae_title.text(),
            host=self.host.text().strip(),
            port=self.port.value(),
            calling_ae=self.calling_ae.text(),
            name=self.name.text().strip(),
            storage_port=self.storage_port.value(),
            listen_host=self.listen_host.text().strip() or "127.0.0.1",
            retrieve=str(self.retrieve.currentData()),
        )

    def add_or_update(self) -> None:
        try:
            node = self.edited_node()
        except CxrError as exc:
            self.result_label.setText(_error_text(exc))
            return
        labels = [n.label for n in self.nodes]
        if node.label in labels:
            idx = labels.index(node.label)
            self.nodes[idx] = node
        else:
            self.nodes.append(node)
            idx = len(self.nodes) - 1
        save_nodes(self.settings, self.nodes)
        self._refresh(idx)
        self.result_label.setText(f"Saved {node.label}.")

    def remove_current(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.nodes):
            del self.nodes[row]
            save_nodes(self.settings, self.nodes)
            self._refresh(row)

    def test_connection(self) -> Task | None:
        from cxr_viewer.core.interop.pacs import PacsClient

        try:
            node = self.edited_node()
        except CxrError as exc:
            self.result_label.setText(_error_text(exc))
            return None
        self.result_label.setText(f"Sending a C-ECHO to {node.label}…")
        self.test_button.setEnabled(False)

        def done(seconds: float) -> None:
            self.busy.stop()
            self.test_button.setEnabled(True)
            self.result_label.setText(
                f"<span style='color:#2e7d32'>✔ {node.label} answered the C-ECHO "
                f"in {seconds * 1000:.0f} ms.</span>"
            )

        def failed(f: Failure) -> None:
            self.busy.stop()
            self.test_button.setEnabled(True)
            self.result_label.setText(_error_text(f.exc))

        def cancelled() -> None:
            self.busy.stop()
            self.test_button.setEnabled(True)
            self.result_label.setText("Cancelled.")

        task = Task(
            lambda progress, cancel, partial: PacsClient(node, timeout=10).echo(cancel=cancel),
            "pacs:echo",
            on_done=done,
            on_error=failed,
            on_cancelled=cancelled,
        )
        return self.busy.start(task, "C-ECHO…")

    def done(self, result: int) -> None:  # noqa: D102 - Qt API
        if self.busy.task is not None:
            self.busy.task.cancel()
        if self._own_worker:
            self.worker.shutdown()
        super().done(result)


# ---------------------------------------------------------------------------- query/retrieve


class QueryRetrieveDialog(QDialog):
    """Query a PACS for studies and retrieve the chosen ones (``retrieved(list[Path])``)."""

    #: the files that arrived (list of Path), after each retrieve (also a partial one)
    retrieved = Signal(object)
    busy: _Busy  # set at the end of __init__; the selection lambda reads it later

    def __init__(
        self,
        settings: Settings,
        state: ViewerState,
        parent: QWidget | None = None,
        worker: WorkerThread | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("QueryRetrieveDialog")
        self.setWindowTitle("Query / retrieve from PACS")
        self.settings = settings
        self.state = state
        self.records: list[StudyRecord] = []
        self._own_worker = worker is None
        self.worker = worker or WorkerThread("cxr-pacs", self)

        self.node = QComboBox()
        self.node.setObjectName("Node")
        self.reload_nodes()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("e.g. Doe* (wildcards allowed)")
        self.patient_id = QLineEdit()
        self.date_from = QLineEdit()
        self.date_from.setPlaceholderText("YYYY-MM-DD (empty: any)")
        self.date_to = QLineEdit()
        self.date_to.setPlaceholderText("YYYY-MM-DD (empty: any)")
        self.cr = QCheckBox("CR")
        self.dx = QCheckBox("DX")
        self.cr.setChecked(True)
        self.dx.setChecked(True)
        mods = QHBoxLayout()
        mods.addWidget(self.cr)
        mods.addWidget(self.dx)
        mods.addStretch(1)
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form = QFormLayout()
        form.addRow("PACS", self.node)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Study date", dates)
        form.addRow("Modality", mods)

        self.search_button = QPushButton("Search")
        self.search_button.setObjectName("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.retrieve_button = QPushButton("Retrieve selected")
        self.retrieve_button.setObjectName("Retrieve")
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.retrieve_button.setEnabled(False)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("Results")
        self.table.setHorizontalHeaderLabels([c[0] for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(
            lambda: self.retrieve_button.setEnabled(
                bool(self.selected_rows()) and not self.busy.running
            )
        )
        self.table.doubleClicked.connect(lambda _i: self.retrieve_selected())
        self.message = QLabel("")
        self.message.setObjectName("Message")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)

        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addStretch(1)
        buttons.addWidget(self.retrieve_button)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.message)
        self.busy = _Busy(lay, self.worker)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay.addWidget(close)
        self.resize(900, 560)
        state.events.privacy.connect(self.fill_table)

    def reload_nodes(self) -> None:
        self.node.clear()
        nodes = load_nodes(self.settings)
        for n in nodes:
            self.node.addItem(n.label, n)
        if not nodes:
            self.node.addItem("(no PACS node: add one in File ▸ PACS nodes…)", None)

    def current_node(self) -> PacsNode | None:
        return self.node.currentData()

    # -- search -----------------------------------------------------------------------------

    def search(self) -> Task | None:
        from cxr_viewer.core.interop.pacs import PacsClient

        node = self.current_node()
        if node is None:
            self.message.setText("Add a PACS node first (File ▸ PACS nodes…).")
            return None
        query: dict[str, Any] = dict(
            patient_name=self.patient_name.text(),
            patient_id=self.patient_id.text(),
            date_from=self.date_from.text().strip() or None,
            date_to=self.date_to.text().strip() or None,
            modalities=[m for m, box in (("CR", self.cr), ("DX", self.dx)) if box.isChecked()],
        )
        self.message.setText(f"Searching {node.label}…")
        self.search_button.setEnabled(False)

        def done(records) -> None:
            self._idle()
            self.records = list(records)
            self.fill_table()
            n = len(self.records)
            text = f"{n} stud{'y' if n == 1 else 'ies'} found on {node.label}."
            flagged = sum(1 for r in self.records if r.problems)
            if flagged:
                text += (
                    f"<br>{flagged} of them had field(s) the PACS sent in an unusable form, "
                    "left empty (hover over the row for which)."
                )
            problem = getattr(records, "problem", "")
            if problem:
                text += f"<br><b>The list may be incomplete:</b> {html.escape(problem)}."
            self.message.setText(text)

        task = Task(
            lambda progress, cancel, partial: PacsClient(node).find_studies(**query, cancel=cancel),
            "pacs:find",
            on_done=done,
            on_error=self._failed,
            on_cancelled=self._cancelled,
        )
        return self.busy.start(task, "C-FIND…")

    def fill_table(self) -> None:
        """(Re)draw the results; patient fields masked while "hide patient fields" is on."""
        hide = self.state.hide_patient
        self.table.setRowCount(len(self.records))
        for r, rec in enumerate(self.records):
            shown = rec.masked() if hide else rec
            for c, (_header, attr) in enumerate(COLUMNS):
                value = getattr(shown, attr)
                text = "" if value is None else str(value)
                if (
                    attr in ("study_date", "patient_birth_date")
                    and len(text) == 8
                    and text.isdigit()
                ):
                    text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
                item = QTableWidgetItem(text)
                if rec.problems:
                    item.setToolTip("Unusable from the PACS: " + "; ".join(rec.problems))
                self.table.setItem(r, c, item)
        if self.records and not self.selected_rows():
            self.table.selectRow(0)

    def selected_rows(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedIndexes()})

    # -- retrieve ---------------------------------------------------------------------------

    def retrieve_selected(self) -> Task | None:
        from cxr_viewer.core.interop.pacs import PacsClient, raise_for_retrieve, retrieve_folder

        node = self.current_node()
        rows = self.selected_rows()
        if node is None or not rows or self.busy.running:
            return None
        # the UIDs and patient IDs come from the network: the folder is derived from the UID
        # and confined to the retrieve folder; instances of another study/patient are refused
        studies = [(self.records[r].study_instance_uid, self.records[r].patient_id) for r in rows]
        uids = [uid for uid, _pid in studies]
        base = retrieve_dir(self.settings)
        client = PacsClient(node)

        def work(progress, cancel, partial):
            arrived: list[Path] = []
            problems: list[BaseException] = []
            for k, (uid, patient_id) in enumerate(studies):
                if cancel.cancelled:
                    break

                def step(done, total, k=k):
                    frac = (k + (done / total if total else 0.0)) / len(uids)
                    progress(frac, f"study {k + 1}/{len(uids)}: {done}/{total or '?'} images")

                try:
                    result = client.retrieve_study(
                        uid,
                        retrieve_folder(base, uid),
                        patient_id=patient_id or None,
                        progress=step,
                        cancel=cancel,
                    )
                except CxrError as exc:  # this study only (e.g. its UID is not a DICOM UID)
                    problems.append(exc)
                    continue
                arrived.extend(result.files)
                partial(list(result.files))
                try:
                    raise_for_retrieve(node, result)
                except CxrError as exc:
                    problems.append(exc)
            return arrived, problems

        self.retrieve_button.setEnabled(False)
        self.search_button.setEnabled(False)
        self.message.setText(f"Retrieving {len(uids)} stud{'y' if len(uids) == 1 else 'ies'}…")

        def on_partial(files) -> None:
            if files:
                self.retrieved.emit(list(files))

        def done(result) -> None:
            self._idle()
            arrived, problems = result
            text = f"{len(arrived)} image(s) retrieved into the study list."
            if problems:
                text += "<br>" + "<br>".join(_error_text(p) for p in problems)
            self.message.setText(text)

        task = Task(
            work,
            "pacs:retrieve",
            on_done=done,
            on_error=self._failed,
            on_progress=self.busy.progress,
            on_partial=on_partial,
            on_cancelled=self._cancelled,
            partial_interval_s=0.0,
        )
        return self.busy.start(task, "retrieving…")

    # -- common -----------------------------------------------------------------------------

    def _idle(self) -> None:
        self.busy.stop()
        self.search_button.setEnabled(True)
        self.retrieve_button.setEnabled(bool(self.selected_rows()))

    def _failed(self, f: Failure) -> None:
        self._idle()
        self.message.setText(_error_text(f.exc))

    def _cancelled(self) -> None:
        self._idle()
        self.message.setText("Cancelled; images that had arrived are in the study list.")

    def done(self, result: int) -> None:  # noqa: D102 - Qt API
        if self.busy.task is not None:
            self.busy.task.cancel()
        if self._own_worker:
            self.worker.shutdown()
        super().done(result)


# ---------------------------------------------------------------------------- export


class DicomExportDialog(QDialog):
    """Export the shown explanations as DICOM (SC + SR) into a folder, optionally send them."""

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.setObjectName("DicomExportDialog")
        self.setWindowTitle("Export DICOM results")
        self.win = win
        study = win.state.study
        self.is_dicom = study is not None and study.format == "dicom"
        self.folder = QLineEdit(str(Path(win.settings.last_dir) / "cxr-lens-dicom"))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        self.patient_name = QLineEdit()
        self.patient_id = QLineEdit()
        self.birth_date = QLineEdit()
        self.birth_date.setPlaceholderText("YYYYMMDD")
        self.sex = QComboBox()
        for s in ("", "F", "M", "O"):
            self.sex.addItem(s)
        self.send_to = QComboBox()
        self.send_to.addItem("(do not send)", None)
        for n in load_nodes(win.settings):
            self.send_to.addItem(n.label, n)
        form = QFormLayout()
        form.addRow("Folder", row)
        if self.is_dicom:
            form.addRow(QLabel("A new series in the source study (its patient fields are kept)."))
        else:
            form.addRow(QLabel("A new study (PNG/JPEG source); patient fields, empty = anonymous:"))
            form.addRow("Patient name", self.patient_name)
            form.addRow("Patient ID", self.patient_id)
            form.addRow("Birth date", self.birth_date)
            form.addRow("Sex", self.sex)
        form.addRow("Also send to", self.send_to)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.message)
        self.busy = _Busy(lay, win.controller.io_worker)
        lay.addWidget(self.buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Export DICOM results to", self.folder.text()
        )
        if folder:
            self.folder.setText(folder)

    def inputs(self):
        """(study, prediction, model identity, explanations) from the viewer's state."""
        from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity
        from cxr_viewer.core.model.inference import Prediction

        st = self.win.state
        if st.study is None or st.model is None or st.prediction is None:
            raise CxrError(
                "Nothing to export as DICOM",
                "a study with a prediction is needed",
                "Open a study and load a model first.",
            )
        m = st.model
        model = ModelIdentity(
            m.name, m.version or "unversioned", tuple(m.class_names), m.threshold, m.positive_class
        )
        pred = st.prediction
        if not isinstance(pred, Prediction):
            raise CxrError("Nothing to export as DICOM", "the prediction is not ready yet")
        explanations = [
            ExplanationResult.from_heatmap(
                ov.heatmap.heatmap, st.study, opacity=ov.opacity, colormap=ov.colormap
            )
            for ov in st.overlays.values()
            if ov.visible and ov.heatmap is not None and not ov.heatmap.partial
        ]
        if not explanations:
            raise CxrError(
                "Nothing to export as DICOM",
                "no explanation is shown",
                "Turn on Grad-CAM, LIME or SHAP and wait for the map, then export.",
            )
        return st.study, pred, model, explanations

    def start(self) -> Task | None:
        from cxr_viewer.core.interop.dicom_export import PatientEntry, export_results
        from cxr_viewer.core.interop.pacs import PacsClient

        try:
            study, pred, model, explanations = self.inputs()
            patient = PatientEntry(
                self.patient_name.text().strip(),
                self.patient_id.text().strip(),
                self.birth_date.text().strip(),
                self.sex.currentText(),
            ).checked()
        except CxrError as exc:
            self.message.setText(_error_text(exc))
            return None
        folder = Path(self.folder.text().strip() or ".")
        node = self.send_to.currentData()

        def work(progress, cancel, partial):
            result = export_results(study, pred, model, explanations, folder, patient=patient)
            sent = None
            if node is not None:
                cancel.raise_if_cancelled()
                sent = PacsClient(node).store(result.files, cancel=cancel)
                sent.raise_if_failed(node)
            return result, sent

        def done(out) -> None:
            self.busy.stop()
            result, sent = out
            text = f"Wrote {len(result.files)} DICOM file(s) to {folder}"
            if sent is not None:
                text += f" and sent them to {node.label}"
            self.win.status.show_message(text)
            self.accept()

        def failed(f: Failure) -> None:
            self.busy.stop()
            self.buttons.setEnabled(True)
            self.message.setText(_error_text(f.exc))

        self.buttons.setEnabled(False)
        return self.busy.start(
            Task(work, "pacs:export", on_done=done, on_error=failed, on_cancelled=self.reject),
            "writing DICOM…",
        )


# ---------------------------------------------------------------------------- menus


def install(win: MainWindow) -> dict[str, QAction]:
    """Add File ▸ Query/retrieve from PACS…, File ▸ PACS nodes… and File ▸ Export ▸ DICOM…"""

    def query() -> QueryRetrieveDialog:
        dialog = QueryRetrieveDialog(win.settings, win.state, win, worker=None)
        dialog.retrieved.connect(lambda files: win.controller.open_paths([str(f) for f in files]))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    def nodes() -> PacsNodesDialog:
        dialog = PacsNodesDialog(win.settings, win)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    def export() -> DicomExportDialog | None:
        if win.state.study is None:
            win.status.show_message("Open a study first")
            return None
        dialog = DicomExportDialog(win)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    actions: dict[str, QAction] = {}
    for name, text, slot, keys in (
        ("pacs_query", "&Query/retrieve from PACS…", query, ["Ctrl+Shift+Q"]),
        ("pacs_nodes", "PACS &nodes…", nodes, []),
        ("export_dicom", "&DICOM (Secondary Capture + report)…", export, ["Ctrl+Shift+E"]),
    ):
        act = QAction(text, win)
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.triggered.connect(slot)
        win.addAction(act)
        actions[name] = act
    win.actions_.all.update(actions)
    file_menu = win.actions_.file_menu
    if file_menu is not None:
        before = win.actions_.all["quit"]  # Actions always creates it
        export_menu = QMenu("E&xport", win)
        export_menu.addAction(actions["export_dicom"])
        file_menu.insertSeparator(before)
        file_menu.insertAction(before, actions["pacs_query"])
        file_menu.insertAction(before, actions["pacs_nodes"])
        file_menu.insertMenu(before, export_menu)
        file_menu.insertSeparator(before)
    return actions
