"""File ▸ Query/retrieve over DICOMweb…: QIDO-RS search and WADO-RS retrieve (no Qt in the
protocol: :mod:`cxr_viewer.core.interop.dicomweb`), beside the DIMSE dialog of :mod:`.pacs_dialogs`.

The service (base URL, authentication: none, HTTP basic or a bearer token; TLS verified by
default, or against a CA file) is entered in the dialog; the URL, user name and TLS choices are
remembered, the password and token never are. Requests run on a worker thread; retrieved
studies go where the DIMSE dialog puts them (:func:`.pacs_dialogs.retrieve_dir`) and are opened
in the study list (``retrieved`` signal), with any Parametric Maps and Segmentations stored
with them (File ▸ Stored DICOM results… shows those).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.errors import CxrError

from .worker import Failure, Task, WorkerThread

if TYPE_CHECKING:
    from cxr_viewer.core.interop.dicomweb import DicomWebNode
    from cxr_viewer.core.interop.pacs import StudyRecord

    from .settings import Settings
    from .window_api import ViewerWindow

SETTINGS_KEY = "dicomweb/node"
COLUMNS = ("Patient", "Patient ID", "Date", "Description", "Modalities", "Images", "Study UID")


class DicomWebDialog(QDialog):
    """Search a DICOMweb service for studies and retrieve the chosen ones."""

    #: the files that arrived (list of Path), after each retrieve
    retrieved = Signal(object)

    def __init__(self, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Query / retrieve over DICOMweb")
        self.settings = settings
        self.records: list[StudyRecord] = []
        self.worker = WorkerThread("cxr-dicomweb", self)
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.auth = QComboBox()
        self.auth.addItems(["none", "basic", "bearer"])
        self.user = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setPlaceholderText("password (basic) or token (bearer); never stored")
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("PEM file of the hospital's CA (empty: the system's)")
        self.verify = QCheckBox("Verify the server's TLS certificate")
        self.verify.setChecked(True)
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("e.g. Doe* (wildcards allowed)")
        self.patient_id = QLineEdit()
        form = QFormLayout()
        for label, widget in (
            ("DICOMweb URL", self.url),
            ("Authentication", self.auth),
            ("User name", self.user),
            ("Password / token", self.secret),
            ("CA file", self.ca_file),
            ("", self.verify),
            ("Patient name", self.patient_name),
            ("Patient ID", self.patient_id),
        ):
            form.addRow(label, widget)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        self.retrieve_button = QPushButton("Retrieve selected")
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.retrieve_button.setEnabled(False)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(
            lambda: self.retrieve_button.setEnabled(bool(self.selected_rows()))
        )
        self.message = QLabel("")
        self.message.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.search_button)
        buttons.addStretch(1)
        buttons.addWidget(self.retrieve_button)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.message)
        lay.addWidget(close)
        self.resize(900, 620)
        self._restore()

    # -- the node ---------------------------------------------------------------------------

    def _restore(self) -> None:
        import json

        raw = self.settings.q.value(SETTINGS_KEY, "")
        try:
            data = json.loads(str(raw)) if raw else {}
        except ValueError:
            data = {}
        self.url.setText(str(data.get("url", "")))
        self.auth.setCurrentText(str(data.get("auth", "none")))
        self.user.setText(str(data.get("username", "")))
        self.ca_file.setText(str(data.get("ca_bundle", "")))
        self.verify.setChecked(bool(data.get("verify_tls", True)))

    def node(self) -> DicomWebNode:
        """The node of the form (a PacsError when a field is wrong); remembered without secrets."""
        import json

        from cxr_viewer.core.interop.dicomweb import DicomWebNode

        auth = self.auth.currentText()
        secret = self.secret.text()
        node = DicomWebNode(
            url=self.url.text().strip(),
            auth=auth,
            username=self.user.text().strip(),
            password=secret if auth == "basic" else "",
            token=secret if auth == "bearer" else "",
            verify_tls=self.verify.isChecked(),
            ca_bundle=self.ca_file.text().strip(),
        )
        self.settings.q.setValue(SETTINGS_KEY, json.dumps(node.as_dict()))
        return node

    def selected_rows(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedIndexes()})

    def _run(self, slot: str, work: Any, done: Any) -> Task | None:
        from cxr_viewer.core.interop.dicomweb import DicomWebClient

        try:
            client = DicomWebClient(self.node())
        except CxrError as exc:
            self.message.setText(str(exc))
            return None
        self.search_button.setEnabled(False)
        self.retrieve_button.setEnabled(False)

        def finished() -> None:
            self.search_button.setEnabled(True)
            self.retrieve_button.setEnabled(bool(self.selected_rows()))

        def on_done(result: Any) -> None:
            finished()
            done(result)

        def on_error(f: Failure) -> None:
            finished()
            self.message.setText(str(f.exc))

        task = Task(
            lambda progress, cancel, partial: work(client),
            slot,
            on_done=on_done,
            on_error=on_error,
            on_cancelled=finished,
        )
        return self.worker.submit(task)

    # -- QIDO-RS / WADO-RS ------------------------------------------------------------------

    def search(self) -> Task | None:
        name, pid = self.patient_name.text(), self.patient_id.text()
        self.message.setText("Searching…")

        def done(records: list[StudyRecord]) -> None:
            self.records = records
            self.table.setRowCount(len(records))
            for r, rec in enumerate(records):
                values = (
                    rec.patient_name,
                    rec.patient_id,
                    rec.study_date,
                    rec.study_description,
                    rec.modalities,
                    "" if rec.instances is None else str(rec.instances),
                    rec.study_instance_uid,
                )
                for c, text in enumerate(values):
                    self.table.setItem(r, c, QTableWidgetItem(text))
            self.message.setText(f"{len(records)} stud{'y' if len(records) == 1 else 'ies'} found.")

        return self._run(
            "search",
            lambda client: client.find_studies(patient_name=name, patient_id=pid, modalities=()),
            done,
        )

    def retrieve_selected(self) -> Task | None:
        from .pacs_dialogs import retrieve_dir

        uids = [self.records[r].study_instance_uid for r in self.selected_rows()]
        if not uids:
            return None
        base = retrieve_dir(self.settings)
        self.message.setText(f"Retrieving {len(uids)} stud{'y' if len(uids) == 1 else 'ies'}…")

        def work(client: Any) -> tuple[list[Path], int, list[str]]:
            import pydicom

            from cxr_viewer.core.interop.dicomweb import DERIVED_CLASSES

            images: list[Path] = []
            results = 0
            problems: list[str] = []
            for uid in uids:
                result = client.retrieve_study(uid, base / uid)
                for f in result.files:  # results are shown over their image, not as images
                    header = pydicom.dcmread(f, stop_before_pixels=True)
                    if str(header.get("SOPClassUID", "")) in DERIVED_CLASSES:
                        results += 1
                    else:
                        images.append(f)
                if not result.complete:
                    problems.append(result.problem or f"{result.failed} instance(s) failed")
            return images, results, problems

        def done(result: tuple[list[Path], int, list[str]]) -> None:
            images, results, problems = result
            text = f"{len(images)} image(s) retrieved into the study list"
            if results:
                text += f", with {results} stored result(s) (File ▸ Stored DICOM results…)"
            text += "."
            if problems:
                text += " Not everything arrived: " + "; ".join(problems[:2])
            self.message.setText(text)
            if images:
                self.retrieved.emit(images)

        return self._run("retrieve", work, done)

    def done(self, result: int) -> None:  # noqa: D401 - Qt's name
        self.worker.shutdown()
        super().done(result)


def install(win: ViewerWindow) -> QAction:
    """Add File ▸ Query/retrieve over DICOMweb… to the main window."""

    def show() -> DicomWebDialog:
        dialog = DicomWebDialog(win.settings, win.window())
        dialog.retrieved.connect(lambda files: win.controller.open_paths([str(f) for f in files]))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    act = QAction("Query/retrieve over DICOM&web…", win.window())
    act.triggered.connect(show)
    win.addAction(act)
    win.actions_.all["dicomweb_query"] = act
    for menu_action in win.menuBar().actions():
        menu = menu_action.menu()
        if isinstance(menu, QMenu) and menu_action.text().replace("&", "") == "File":
            menu.insertAction(win.actions_.all["quit"], act)
            break
    return act
