"""PACS in the viewer: nodes (DIMSE or DICOMweb) with "Test connection", query/retrieve, DICOM
export/send, and the File-menu entries that open them.

- :class:`PacsNodesDialog` — the PACS nodes, each DIMSE (AE title, host, port, our calling AE,
  our storage port for C-MOVE, C-GET or C-MOVE) or DICOMweb (base URL, authentication none /
  basic / bearer, TLS verified by default or against a CA file), saved in the viewer's settings
  without passwords or tokens; "Test connection" sends a C-ECHO or a QIDO-RS query.
- :class:`QueryRetrieveDialog` — a study-level C-FIND or QIDO-RS (patient name/ID, date range,
  CR/DX) with a result table, and retrieve (C-GET / C-MOVE or WADO-RS) of the chosen studies
  into the study list, with progress and Cancel; what arrived before a cancel or a failure is
  kept and opened. Parametric Maps, Segmentations and reports that arrive with a study are
  kept beside it (File ▸ Stored DICOM results… shows them), not opened as studies.
- :class:`DicomExportDialog` — File ▸ Export ▸ DICOM…: the shown explanations as Secondary
  Captures plus a structured report into a folder, optionally sent (C-STORE or STOW-RS) to a
  node; patient fields are asked only for PNG/JPEG sources (empty = anonymous).
- :class:`PacsActions` — the File-menu entries (:class:`~.menu_entries.MenuEntry`) the window
  builds its menu from; it opens the dialogs with what they need, never the window itself.

The "hide patient fields" setting masks patient names, IDs, birth dates and sex in the result
table. Network work runs on the controller's network worker (:class:`~.network.Network`);
nothing is sent anywhere unless the user asks.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
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
    QProgressBar,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxr_viewer.core.errors import CxrError, PacsError

from . import network as net
from .error_dialog import describe
from .menu_entries import FILE_EXPORT, MenuEntry
from .network import (
    DICOMWEB,
    NODES_KEY,
    PROTOCOLS,
    Network,
    Retrieved,
    SavedNode,
    StudyQuery,
    load_nodes,
    save_nodes,
)
from .worker import Failure, Task

if TYPE_CHECKING:
    from cxr_viewer.core.interop.pacs import StudyRecord
    from cxr_viewer.core.io.study import Study

    from .network import Endpoint
    from .settings import Settings
    from .state import ViewerState

__all__ = [
    "NODES_KEY",
    "RETRIEVE_DIR_KEY",
    "DicomExportDialog",
    "PacsActions",
    "PacsNodesDialog",
    "QueryRetrieveDialog",
    "load_nodes",
    "retrieve_dir",
    "save_nodes",
]

RETRIEVE_DIR_KEY = "pacs/retrieve_dir"
_W = TypeVar("_W", bound=QWidget)
_D = TypeVar("_D", bound=QDialog)

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
    ("Study UID", "study_instance_uid"),
)
NO_NODE = "(no PACS node: add one in File ▸ PACS nodes…)"


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


def _studies(n: int) -> str:
    return f"{n} stud{'y' if n == 1 else 'ies'}"


@dataclass(frozen=True)
class PacsContext:
    """What the PACS dialogs need of the viewer, and nothing of the window: the settings, the
    viewer's state, the controller's :class:`~.network.Network`, the dialogs' parent widget,
    how to open retrieved files and how to show a status message."""

    settings: Settings
    state: ViewerState
    network: Network
    parent: QWidget | None
    open_files: Callable[[list[Path]], None]
    show_message: Callable[[str], None]


class _Busy:
    """A progress bar and a Cancel button driving one network task of a dialog at a time."""

    def __init__(self, layout: QBoxLayout, network: Network, slot: str) -> None:
        self.network = network
        self.slot = slot
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

    def start(
        self,
        what: str,
        fn: Callable[..., Any],
        busy_text: str,
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[Failure], None],
        on_cancelled: Callable[[], None],
        on_partial: Callable[[Any], None] | None = None,
    ) -> Task:
        """Run ``fn(progress, cancel, partial)`` on the network worker; every outcome first
        hides the bar, then calls its callback."""

        def finish(cb: Callable[..., None]) -> Callable[..., None]:
            def run(*args: Any) -> None:
                self.stop()
                cb(*args)

            return run

        self.bar.setRange(0, 0)
        self.bar.setFormat(busy_text)
        self.bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        self.task = self.network.submit(
            f"{self.slot}:{what}",
            fn,
            on_done=finish(on_done),
            on_error=finish(on_error),
            on_cancelled=finish(on_cancelled),
            on_progress=self.progress,
            on_partial=on_partial,
        )
        return self.task

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

    def abandon(self) -> None:
        """The dialog closes: cancel the task; its callbacks are not called any more."""
        if self.task is not None:
            Network.abandon(self.task)
            self.task = None

    @property
    def running(self) -> bool:
        return self.task is not None


# ---------------------------------------------------------------------------- node forms


def _form(rows: Sequence[tuple[str, QWidget]]) -> QFormLayout:
    form = QFormLayout()
    form.setContentsMargins(0, 0, 0, 0)
    for label, widget in rows:
        form.addRow(label, widget)
    return form


def _value(widget: QWidget) -> Any:
    """What a field of a node form holds (a line edit's text without surrounding spaces)."""
    if isinstance(widget, QSpinBox):
        return widget.value()
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QCheckBox):
        return widget.isChecked()
    assert isinstance(widget, QLineEdit)
    return widget.text().strip()


def _show_value(widget: QWidget, value: Any) -> None:
    if isinstance(widget, QSpinBox):
        widget.setValue(int(value))
    elif isinstance(widget, QComboBox):
        widget.setCurrentIndex(max(0, widget.findData(value)))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    else:
        assert isinstance(widget, QLineEdit)
        widget.setText(str(value))


def _line(placeholder: str = "", text: str = "") -> QLineEdit:
    line = QLineEdit(text)
    line.setPlaceholderText(placeholder)
    return line


def _port(value: int) -> QSpinBox:
    port = QSpinBox()
    port.setRange(1, 65535)
    port.setValue(value)
    return port


def _choice(items: Sequence[tuple[str, str]]) -> QComboBox:
    """A combo box of (text, data) items."""
    combo = QComboBox()
    for text, data in items:
        combo.addItem(text, data)
    return combo


class _NodeFields:
    """The form of a node's saved fields: each widget a row under its label, known by the
    node's field name, showing the field's default (what the widget holds when made) when a
    saved node lacks it."""

    def __init__(self, owner: QWidget) -> None:
        self.layout = QFormLayout(owner)
        self.layout.setContentsMargins(0, 0, 0, 0)
        self.widgets: dict[str, QWidget] = {}
        self.defaults: dict[str, Any] = {}

    def add(self, name: str, label: str, widget: _W) -> _W:
        self.layout.addRow(label, widget)
        self.widgets[name] = widget
        self.defaults[name] = _value(widget)
        return widget

    def show(self, saved: dict[str, Any]) -> None:
        for name, widget in self.widgets.items():
            _show_value(widget, saved.get(name, self.defaults[name]))

    def values(self) -> dict[str, Any]:
        return {name: _value(widget) for name, widget in self.widgets.items()}


class DimseForm(QWidget):
    """The fields of a DIMSE node."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields = fields = _NodeFields(self)
        self.ae_title = fields.add("ae_title", "PACS AE title", _line("e.g. ORTHANC"))
        self.host = fields.add("host", "Host", _line("e.g. 127.0.0.1 or pacs.hospital.local"))
        self.port = fields.add("port", "Port", _port(4242))
        self.calling_ae = fields.add("calling_ae", "Our AE title", QLineEdit("CXRLENS"))
        self.storage_port = fields.add("storage_port", "Our storage port (C-MOVE)", _port(11113))
        self.listen_host = fields.add("listen_host", "Listen on (C-MOVE)", QLineEdit("127.0.0.1"))
        self.listen_host.setToolTip(
            "Address our storage SCP listens on for C-MOVE: 127.0.0.1 for a PACS on this "
            "computer, this computer's address (or 0.0.0.0) for a PACS elsewhere"
        )
        self.retrieve = fields.add(
            "retrieve",
            "Retrieve with",
            _choice(
                [("C-GET (no incoming connection)", "get"), ("C-MOVE to our storage port", "move")]
            ),
        )

    def show_fields(self, f: dict[str, Any]) -> None:
        self.fields.show(f)

    def endpoint(self, name: str) -> Endpoint:
        from cxr_viewer.core.interop.pacs import PacsNode

        values = self.fields.values()
        values["listen_host"] = values["listen_host"] or "127.0.0.1"
        return PacsNode(name=name, **values)


class DicomWebForm(QWidget):
    """The fields of a DICOMweb node; the password or token is never stored."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields = fields = _NodeFields(self)
        self.url = fields.add("url", "DICOMweb URL", _line("https://pacs.example.org/dicom-web"))
        self.auth = fields.add(
            "auth",
            "Authentication",
            _choice(
                [
                    ("None", "none"),
                    ("HTTP basic (user name and password)", "basic"),
                    ("Bearer token", "bearer"),
                ]
            ),
        )
        self.user = fields.add("username", "User name", QLineEdit())
        # the password or token is a row of the form, not a field of the saved node
        self.secret = _line("password (basic) or token (bearer); never stored")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        fields.layout.addRow("Password / token", self.secret)
        self.ca_file = fields.add(
            "ca_bundle", "CA file", _line("PEM file of the hospital's CA (empty: the system's)")
        )
        self.verify = QCheckBox("Verify the server's TLS certificate")
        self.verify.setChecked(True)
        self.verify.setToolTip("Turn off only to test: without it anyone on the way can listen")
        fields.add("verify_tls", "", self.verify)
        self.auth.currentIndexChanged.connect(self._auth_changed)
        self._auth_changed()

    @property
    def auth_mode(self) -> str:
        return str(self.auth.currentData())

    def set_auth(self, mode: str) -> None:
        self.auth.setCurrentIndex(max(0, self.auth.findData(mode)))

    def _auth_changed(self) -> None:
        mode = self.auth_mode
        self.user.setEnabled(mode == "basic")
        self.secret.setEnabled(mode != "none")

    def show_fields(self, f: dict[str, Any], secret: str = "") -> None:
        self.fields.show(f)
        self.secret.setText(secret)

    def endpoint(self, name: str = "") -> Endpoint:
        from cxr_viewer.core.interop.dicomweb import DicomWebNode

        values = self.fields.values()
        mode, secret = values["auth"], self.secret.text()
        if mode != "basic":
            values["username"] = ""
        return DicomWebNode(
            **values,
            password=secret if mode == "basic" else "",
            token=secret if mode == "bearer" else "",
        )


# ---------------------------------------------------------------------------- nodes


class PacsNodesDialog(QDialog):
    """Edit the list of PACS nodes; "Test connection" sends a C-ECHO or a QIDO-RS query to the
    edited node."""

    def __init__(self, settings: Settings, network: Network, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("PacsNodesDialog")
        self.setWindowTitle("PACS nodes")
        self.settings = settings
        self.network = network
        self.nodes = load_nodes(settings)

        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show)
        self.name = QLineEdit()
        self.protocol = QComboBox()
        self.protocol.setObjectName("Protocol")
        for key, text in PROTOCOLS.items():
            self.protocol.addItem(text, key)
        self.dimse = DimseForm()
        self.web = DicomWebForm()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.dimse)
        self.pages.addWidget(self.web)
        self.protocol.currentIndexChanged.connect(self.pages.setCurrentIndex)
        head = _form([("Name", self.name), ("Protocol", self.protocol)])

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

        right = QVBoxLayout()
        right.addLayout(head)
        right.addWidget(self.pages)
        right.addLayout(buttons)
        right.addWidget(self.result_label)
        right.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.list, 1)
        top.addLayout(right, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        self.busy = _Busy(lay, network, f"nodes-{id(self)}")
        lay.addWidget(box)
        self._refresh()

    @property
    def web_protocol(self) -> bool:
        return self.protocol.currentData() == DICOMWEB

    def set_protocol(self, protocol: str) -> None:
        self.protocol.setCurrentIndex(max(0, self.protocol.findData(protocol)))

    def _refresh(self, select: int = 0) -> None:
        self.list.clear()
        for n in self.nodes:
            self.list.addItem(f"{n.label}  ({'DICOMweb' if n.is_dicomweb else 'DIMSE'})")
        if self.nodes:
            self.list.setCurrentRow(min(select, len(self.nodes) - 1))

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self.nodes):
            return
        n = self.nodes[row]
        self.result_label.setText("")  # a test result belongs to the node it tested
        self.name.setText(n.name)
        self.set_protocol(n.protocol)
        if n.is_dicomweb:
            self.web.show_fields(n.fields, self.network.secret_for(n))
        else:
            self.dimse.show_fields(n.fields)

    def edited(self) -> tuple[SavedNode, Endpoint]:
        """The node as the form describes it and its endpoint (PacsError when a field is
        invalid)."""
        name = self.name.text().strip()
        endpoint = self.web.endpoint(name) if self.web_protocol else self.dimse.endpoint(name)
        return SavedNode.of(endpoint, name), endpoint

    def edited_node(self) -> SavedNode:
        return self.edited()[0]

    def add_or_update(self) -> None:
        try:
            node, _endpoint = self.edited()
        except CxrError as exc:
            self.result_label.setText(_error_text(exc))
            return
        self.network.remember_secret(node, self.web.secret.text())
        labels = [n.label for n in self.nodes]
        if node.label in labels:
            idx = labels.index(node.label)
            self.nodes[idx] = node
        else:
            self.nodes.append(node)
            idx = len(self.nodes) - 1
        save_nodes(self.settings, self.nodes)
        self._refresh(idx)
        kept = (
            " (the password or token is kept until the viewer closes)" if node.secret_kind else ""
        )
        self.result_label.setText(f"Saved {html.escape(node.label)}{kept}.")

    def remove_current(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self.nodes):
            del self.nodes[row]
            save_nodes(self.settings, self.nodes)
            self._refresh(row)

    def test_connection(self) -> Task | None:
        try:
            node, endpoint = self.edited()
        except CxrError as exc:
            self.result_label.setText(_error_text(exc))
            return None
        sent = net.echo_text(endpoint)
        label = html.escape(node.label)
        self.result_label.setText(f"Sending {sent} to {label}…")
        self.test_button.setEnabled(False)

        def done(seconds: float) -> None:
            self.test_button.setEnabled(True)
            self.result_label.setText(
                f"<span style='color:#2e7d32'>✔ {label} answered {sent} "
                f"in {seconds * 1000:.0f} ms.</span>"
            )

        def failed(f: Failure) -> None:
            self.test_button.setEnabled(True)
            self.result_label.setText(_error_text(f.exc))

        def cancelled() -> None:
            self.test_button.setEnabled(True)
            self.result_label.setText("Cancelled.")

        return self.busy.start(
            "echo",
            lambda progress, cancel, partial: net.echo(endpoint, cancel),
            "testing…",
            on_done=done,
            on_error=failed,
            on_cancelled=cancelled,
        )

    def done(self, result: int) -> None:  # noqa: D102 - Qt API
        self.busy.abandon()
        super().done(result)


# ---------------------------------------------------------------------------- picking a node


class NodePicker(QWidget):
    """A saved node to talk to, and its password or token when it needs one (never stored;
    remembered for the session by :class:`~.network.Network`)."""

    def __init__(
        self, context: PacsContext, none_text: str = "", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.settings, self.network = context.settings, context.network
        self.none_text = none_text
        self.combo = QComboBox()
        self.combo.setObjectName("Node")
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setObjectName("Secret")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 2)
        row.addWidget(self.secret, 1)
        self.combo.currentIndexChanged.connect(self._node_changed)
        self.reload()

    def reload(self) -> None:
        self.combo.clear()
        if self.none_text:
            self.combo.addItem(self.none_text, None)
        nodes = load_nodes(self.settings)
        for n in nodes:
            self.combo.addItem(n.label, n)
        if not nodes and not self.none_text:
            self.combo.addItem(NO_NODE, None)
        self._node_changed()

    def current(self) -> SavedNode | None:
        node = self.combo.currentData()
        return node if isinstance(node, SavedNode) else None

    def _node_changed(self) -> None:
        node = self.current()
        kind = node.secret_kind if node is not None else ""
        self.secret.setVisible(bool(kind))
        self.secret.setPlaceholderText(f"{kind} (not stored)")
        self.secret.setToolTip(
            f"The {kind} of {node.label}: kept until the viewer closes, never written"
            if node is not None and kind
            else ""
        )
        self.secret.setText(self.network.secret_for(node) if node is not None else "")

    def endpoint(self) -> Endpoint | None:
        """The chosen node's endpoint (None: no node); a PacsError when a secret is missing."""
        node = self.current()
        if node is None:
            return None
        if node.secret_kind and not self.secret.text():
            raise PacsError(
                f"{node.label} needs its {node.secret_kind}",
                "it is not stored with the node",
                f"Enter the {node.secret_kind} next to the node.",
            )
        return self.network.endpoint(node, self.secret.text())


# ---------------------------------------------------------------------------- query/retrieve


class QueryRetrieveDialog(QDialog):
    """Query a PACS for studies and retrieve the chosen ones (``retrieved(list[Path])``)."""

    #: the images that arrived (list of Path), after each study of a retrieve
    retrieved = Signal(object)
    busy: _Busy  # made after the table, whose selection handler reads it

    def __init__(self, context: PacsContext) -> None:
        super().__init__(context.parent)
        self.setObjectName("QueryRetrieveDialog")
        self.setWindowTitle("Query / retrieve from PACS")
        self.settings = context.settings
        self.state = state = context.state
        network = context.network
        self.records: list[StudyRecord] = []

        self.picker = NodePicker(context)
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
        form.addRow("PACS", self.picker)
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
        self.busy = _Busy(lay, network, f"query-{id(self)}")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        lay.addWidget(close)
        self.resize(900, 560)
        state.events.privacy.connect(self.fill_table)

    def reload_nodes(self) -> None:
        self.picker.reload()

    def current_node(self) -> SavedNode | None:
        return self.picker.current()

    def _endpoint(self) -> Endpoint | None:
        """The chosen node's endpoint; None (and why, in the message) when there is none."""
        try:
            endpoint = self.picker.endpoint()
        except CxrError as exc:
            self.message.setText(_error_text(exc))
            return None
        if endpoint is None:
            self.message.setText("Add a PACS node first (File ▸ PACS nodes…).")
        return endpoint

    # -- search -----------------------------------------------------------------------------

    def search(self) -> Task | None:
        endpoint = self._endpoint()
        if endpoint is None:
            return None
        label = html.escape(endpoint.label)
        query = StudyQuery(
            patient_name=self.patient_name.text(),
            patient_id=self.patient_id.text(),
            date_from=self.date_from.text().strip() or None,
            date_to=self.date_to.text().strip() or None,
            modalities=tuple(m for m, box in (("CR", self.cr), ("DX", self.dx)) if box.isChecked()),
        )
        self.message.setText(f"Searching {label}…")
        self._working()

        def done(records: list[StudyRecord]) -> None:
            self._idle()
            self.records = list(records)
            self.fill_table()
            text = f"{_studies(len(self.records))} found on {label}."
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

        return self.busy.start(
            "find",
            lambda progress, cancel, partial: net.find(endpoint, query, cancel),
            "searching…",
            on_done=done,
            on_error=self._failed,
            on_cancelled=self._cancelled,
        )

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
            self.select_row(0)

    def select_row(self, row: int) -> None:
        """Select ``row`` alone. Not ``QTableView.selectRow``: that follows the modifier keys
        Qt last saw and toggles the row off again while it believes Ctrl is held (after a
        Ctrl+Shift shortcut, for one)."""
        flag = QItemSelectionModel.SelectionFlag
        self.table.selectionModel().select(
            self.table.model().index(row, 0), flag.ClearAndSelect | flag.Rows
        )

    def selected_rows(self) -> list[int]:
        return sorted({i.row() for i in self.table.selectedIndexes()})

    # -- retrieve ---------------------------------------------------------------------------

    def retrieve_selected(self) -> Task | None:
        rows = self.selected_rows()
        if not rows or self.busy.running:
            return None
        endpoint = self._endpoint()
        if endpoint is None:
            return None
        studies = [(self.records[r].study_instance_uid, self.records[r].patient_id) for r in rows]
        base = retrieve_dir(self.settings)
        self._working()
        self.message.setText(f"Retrieving {_studies(len(studies))}…")

        def on_partial(files: list[Path]) -> None:
            if files:
                self.retrieved.emit(list(files))

        def done(result: Retrieved) -> None:
            self._idle()
            text = f"{len(result.images)} image(s) retrieved into the study list"
            if result.results:
                text += f", with {result.results} stored result(s) (File ▸ Stored DICOM results…)"
            text += "."
            if result.problems:
                text += "<br>" + "<br>".join(_error_text(p) for p in result.problems)
            self.message.setText(text)

        return self.busy.start(
            "retrieve",
            lambda progress, cancel, partial: net.retrieve(
                endpoint, studies, base, progress, cancel, partial
            ),
            "retrieving…",
            on_done=done,
            on_error=self._failed,
            on_cancelled=self._cancelled,
            on_partial=on_partial,
        )

    # -- common -----------------------------------------------------------------------------

    def _working(self) -> None:
        self.search_button.setEnabled(False)
        self.retrieve_button.setEnabled(False)

    def _idle(self) -> None:
        self.search_button.setEnabled(True)
        self.retrieve_button.setEnabled(bool(self.selected_rows()))

    def _failed(self, f: Failure) -> None:
        self._idle()
        self.message.setText(_error_text(f.exc))

    def _cancelled(self) -> None:
        self._idle()
        self.message.setText("Cancelled; images that had arrived are in the study list.")

    def done(self, result: int) -> None:  # noqa: D102 - Qt API
        self.busy.abandon()
        self.state.events.privacy.disconnect(self.fill_table)
        super().done(result)


# ---------------------------------------------------------------------------- export


#: the export dialog's Parametric Map choices: (Settings.dicom_pm_resolution value, text)
PM_CHOICE_TEXTS = (
    ("source", "on the film's pixel grid"),
    ("model", "at the model's input size (placed on the film by its pixel spacing)"),
    ("none", "not written"),
)


class DicomExportDialog(QDialog):
    """Export the shown explanations as DICOM (SC + SR) into a folder, optionally send them.

    For a DICOM film it also writes a Parametric Map per explanation and the TID 1500 report
    that references them (``dicom_results.export_objects``), on the film's pixel grid or at
    the model's input size as chosen (remembered in ``Settings.dicom_pm_resolution``, like
    ``cxr-viewer batch --dicom-pm-resolution``), or none.
    """

    def __init__(self, context: PacsContext) -> None:
        super().__init__(context.parent)
        self.setObjectName("DicomExportDialog")
        self.setWindowTitle("Export DICOM results")
        self.state = state = context.state
        settings, network = context.settings, context.network
        self.show_message = context.show_message
        study = state.study
        self.is_dicom = study is not None and study.format == "dicom"
        self.folder = QLineEdit(str(Path(settings.last_dir) / "cxr-lens-dicom"))
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
        self.send_to = NodePicker(context, none_text="(do not send)")
        self.settings = settings
        self.pm_resolution = QComboBox()
        for value, text in PM_CHOICE_TEXTS:
            self.pm_resolution.addItem(text, value)
        self.pm_resolution.setCurrentIndex(
            self.pm_resolution.findData(settings.dicom_pm_resolution)
        )
        self.pm_resolution.setToolTip(
            "Parametric Maps (the maps' own values, for PACS viewers): resampled to the "
            "film's pixel grid, or kept at the model's input size"
        )
        form = QFormLayout()
        form.addRow("Folder", row)
        if self.is_dicom:
            form.addRow(QLabel("A new series in the source study (its patient fields are kept)."))
            form.addRow("Parametric Maps", self.pm_resolution)
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
        self.busy = _Busy(lay, network, f"export-{id(self)}")
        lay.addWidget(self.buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Export DICOM results to", self.folder.text()
        )
        if folder:
            self.folder.setText(folder)

    def inputs(self) -> tuple[Any, Any, Any, list[Any]]:
        """(study, prediction, model identity, explanations) from the viewer's state."""
        from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity
        from cxr_viewer.core.model.inference import Prediction

        st = self.state
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

        try:
            study, pred, model, explanations = self.inputs()
            patient = PatientEntry(
                self.patient_name.text().strip(),
                self.patient_id.text().strip(),
                self.birth_date.text().strip(),
                self.sex.currentText(),
            ).checked()
            endpoint = self.send_to.endpoint()
        except CxrError as exc:
            self.message.setText(_error_text(exc))
            return None
        folder = Path(self.folder.text().strip() or ".")
        resolution = str(self.pm_resolution.currentData()) if self.is_dicom else "none"
        if self.is_dicom:
            self.settings.dicom_pm_resolution = resolution

        def work(progress: Any, cancel: Any, partial: Any) -> list[Path]:
            from cxr_viewer.core.interop.dicom_results import export_objects

            result = export_results(study, pred, model, explanations, folder, patient=patient)
            files = list(result.files)
            if resolution != "none":
                maps = export_objects(
                    study,
                    pred,
                    model,
                    explanations,
                    folder,
                    kinds=("pm", "sr"),
                    pm_resolution=resolution,
                )
                files += maps.files
            if endpoint is not None:
                net.store(endpoint, files, cancel)
            return files

        def done(files: list[Path]) -> None:
            text = f"Wrote {len(files)} DICOM file(s) to {folder}"
            if endpoint is not None:
                text += f" and sent them to {endpoint.label}"
            self.show_message(text)
            self.accept()

        def failed(f: Failure) -> None:
            self.buttons.setEnabled(True)
            self.message.setText(_error_text(f.exc))

        self.buttons.setEnabled(False)
        return self.busy.start(
            "export",
            work,
            "writing DICOM…",
            on_done=done,
            on_error=failed,
            on_cancelled=self.reject,
        )

    def done(self, result: int) -> None:  # noqa: D102 - Qt API
        self.busy.abandon()
        super().done(result)


# ---------------------------------------------------------------------------- menu entries


class PacsActions(PacsContext):
    """The File-menu entries of PACS and DICOM results, and the dialogs they open (made with
    this :class:`PacsContext`: what they need, and nothing of the window)."""

    def entries(self) -> list[MenuEntry]:
        return [
            MenuEntry(
                "pacs_query",
                "&Query/retrieve from PACS…",
                self.query,
                ("Ctrl+Shift+Q",),
                "Search a PACS (DIMSE or DICOMweb) and open studies from it",
            ),
            MenuEntry("pacs_nodes", "PACS &nodes…", self.nodes, tip="DIMSE and DICOMweb nodes"),
            MenuEntry(
                "stored_results",
                "Stored DICOM &results…",
                self.stored_results,
                tip="Parametric Maps and Segmentations stored with the image",
            ),
            MenuEntry(
                "export_dicom",
                "&DICOM (Secondary Capture + report)…",
                self.export,
                ("Ctrl+Shift+E",),
                menu=FILE_EXPORT,
            ),
        ]

    def _open(self, dialog: _D) -> _D:
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dialog.open()
        return dialog

    def _study(self) -> Study | None:
        """The open study; None, and the status bar says to open one, when there is none."""
        if self.state.study is None:
            self.show_message("Open a study first")
        return self.state.study

    def query(self) -> QueryRetrieveDialog:
        dialog = QueryRetrieveDialog(self)
        dialog.retrieved.connect(self.open_files)
        return self._open(dialog)

    def nodes(self) -> PacsNodesDialog:
        return self._open(PacsNodesDialog(self.settings, self.network, self.parent))

    def export(self) -> DicomExportDialog | None:
        return None if self._study() is None else self._open(DicomExportDialog(self))

    def stored_results(self) -> QDialog | None:
        from .stored_results import StoredResultsDialog

        study = self._study()
        if study is None:
            return None
        return self._open(StoredResultsDialog(study, self.parent, network=self.network))
