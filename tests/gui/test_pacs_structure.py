"""PACS through the controller (issue 28, item 4), without a PACS: no import cycle through the
PACS dialogs (imports inside functions and under TYPE_CHECKING count), the network work on the
controller's worker (no thread of the dialogs' own, stopped at shutdown), the File menu built
from the entries, a node's protocol and the settings it keeps."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path

import pytest

from cxr_viewer.gui import network as net
from cxr_viewer.gui import pacs_dialogs as pd

ROOT = Path(__file__).resolve().parents[2]
GUI = ROOT / "cxr_viewer" / "gui"


def _gui_imports() -> dict[str, set[str]]:
    """module → the cxr_viewer.gui modules it imports anywhere (functions, TYPE_CHECKING)."""
    names = {p.stem for p in GUI.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in GUI.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1 or mod.startswith("cxr_viewer.gui"):
                    base = mod.removeprefix("cxr_viewer.gui").lstrip(".")
                    head = base.split(".")[0]
                    if head in names:
                        deps.add(head)
                    elif not base:  # from . import x
                        deps.update(a.name for a in node.names if a.name in names)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    parts = a.name.split(".")
                    if parts[:2] == ["cxr_viewer", "gui"] and len(parts) > 2:
                        deps.add(parts[2])
        deps.discard(path.stem)
        graph[path.stem] = deps
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), set()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycle_through_the_pacs_dialogs():
    graph = _gui_imports()
    assert "pacs_dialogs" in graph["main_window"]  # the window uses the dialogs' entries
    for mod in ("pacs_dialogs", "network", "menu_entries", "stored_results"):
        reach = _reachable(graph, mod)
        assert mod not in reach, f"{mod} imports itself back"
        assert "main_window" not in reach, f"{mod} reaches main_window"
    assert not (GUI / "dicomweb_dialog.py").exists()  # one query/retrieve dialog for both


def test_the_file_menu_is_built_from_the_entries_and_dialogs_start_no_thread(
    qtbot, window, monkeypatch
):
    from cxr_viewer.gui import worker

    made: list[str] = []
    real_init = worker.WorkerThread.__init__

    def counting_init(self, name, *args, **kwargs):
        made.append(name)
        real_init(self, name, *args, **kwargs)

    monkeypatch.setattr(worker.WorkerThread, "__init__", counting_init)
    texts = [a.text() for a in window.actions_.file_menu.actions()]
    entries = window.pacs.entries()
    for e in entries:
        assert window.actions_[e.name].text() == e.text
    assert texts.index("&Query/retrieve from PACS…") < texts.index("&Quit")
    assert "Stored DICOM &results…" in texts
    assert [a.text() for a in window.actions_.export_menu.actions()] == [
        "&DICOM (Secondary Capture + report)…"
    ]
    before = threading.active_count()
    listeners = len(window.state.events.privacy)
    nodes = window.pacs.nodes()
    query = window.pacs.query()
    assert threading.active_count() == before and made == []  # no worker of their own
    assert nodes.busy.network is query.busy.network is window.controller.network
    assert window.controller.network.worker is window.controller.net_worker
    assert len(window.state.events.privacy) == listeners + 1  # the table follows the switch
    query.done(0)
    nodes.done(0)
    assert len(window.state.events.privacy) == listeners  # and lets go when it closes


def test_closing_the_window_stops_the_network_worker(qtbot, gui, tmp_path):
    win = gui.make_window(qtbot, tmp_path)
    thread = win.controller.net_worker._thread
    assert thread.isRunning()
    win.close()
    assert not thread.isRunning()


def test_a_running_task_of_a_closed_dialog_is_cancelled_and_calls_nothing(qtbot, window):
    import time

    started = threading.Event()

    def slow(progress, cancel, partial):
        started.set()
        while not cancel.cancelled:
            time.sleep(0.01)
        return "late"

    dlg = window.pacs.nodes()
    calls: list[str] = []
    task = dlg.busy.start(
        "slow",
        slow,
        "…",
        on_done=lambda r: calls.append("done"),
        on_error=lambda f: calls.append("error"),
        on_cancelled=lambda: calls.append("cancelled"),
    )
    assert started.wait(10)
    dlg.done(0)
    assert task.token.cancelled
    qtbot.waitUntil(lambda: not window.controller.net_worker.busy, timeout=10_000)
    qtbot.wait(50)
    assert calls == []


def test_saved_nodes_keep_their_protocol_and_never_a_secret(tmp_path):
    from cxr_viewer.core.errors import PacsError
    from cxr_viewer.core.interop.dicomweb import DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsNode
    from cxr_viewer.gui.settings import Settings

    settings = Settings(tmp_path / "s.ini")
    dimse = PacsNode("ORTHANC", "127.0.0.1", 4242, name="Local")
    web = DicomWebNode("https://pacs.example.org/dicom-web", "basic", "ann", password="pw")
    net.save_nodes(settings, [dimse, net.SavedNode.of(web, "Hospital")])
    raw = json.loads(settings.q.value(net.NODES_KEY))
    assert [n["protocol"] for n in raw] == ["dimse", "dicomweb"] and "pw" not in json.dumps(raw)
    a, b = net.load_nodes(settings)
    assert a.endpoint() == dimse and a.label == "Local" and not a.secret_kind
    assert b.label == "Hospital" and b.secret_kind == "password"
    assert b.endpoint("pw") == web and b.endpoint("pw").verify_tls
    bearer = net.SavedNode.of(DicomWebNode("https://pacs.example.org/dw", "bearer", token="t"))
    assert "token" not in bearer.fields and bearer.secret_kind == "token"
    with pytest.raises(PacsError, match="token"):
        bearer.endpoint("")  # the token is not stored: without it there is no endpoint
    # an older settings file: DIMSE nodes had no protocol; the former DICOMweb dialog's one node
    settings.q.setValue(net.NODES_KEY, json.dumps([{**dimse.as_dict()}, {"protocol": "x"}]))
    settings.q.setValue(net.LEGACY_DICOMWEB_KEY, json.dumps(web.as_dict()))
    a, b = net.load_nodes(settings)
    assert a.protocol == "dimse" and b.protocol == "dicomweb" and b.fields["username"] == "ann"
    assert not settings.q.value(net.LEGACY_DICOMWEB_KEY) and len(net.load_nodes(settings)) == 2


def test_the_node_dialog_offers_both_protocols_and_checks_the_web_form(qtbot, tmp_path, network):
    from cxr_viewer.gui.settings import Settings

    dlg = pd.PacsNodesDialog(Settings(tmp_path / "s.ini"), network)
    qtbot.addWidget(dlg)
    assert [dlg.protocol.itemData(i) for i in range(dlg.protocol.count())] == [
        "dimse",
        "dicomweb",
    ]
    dlg.set_protocol("dicomweb")
    assert dlg.pages.currentWidget() is dlg.web and dlg.web.verify.isChecked()
    assert not dlg.web.secret.isEnabled()  # no authentication: nothing to enter
    dlg.web.set_auth("basic")
    assert dlg.web.user.isEnabled() and dlg.web.secret.isEnabled()
    dlg.web.url.setText("http://pacs.example.org/dicom-web")
    dlg.web.user.setText("ann")
    dlg.web.secret.setText("pw")
    assert dlg.test_connection() is None
    assert "unencrypted" in dlg.result_label.text()  # credentials over http:// elsewhere
    dlg.web.url.setText("ftp://x")
    dlg.add_or_update()
    assert "not a DICOMweb address" in dlg.result_label.text() and dlg.nodes == []
    dlg.web.url.setText("https://pacs.example.org/dicom-web")
    dlg.name.setText("Hospital")
    dlg.add_or_update()
    assert [n.label for n in dlg.nodes] == ["Hospital"]
    assert network.secret_for(dlg.nodes[0]) == "pw"  # for this session, not the settings
    dlg.set_protocol("dimse")
    assert dlg.pages.currentWidget() is dlg.dimse
    dlg.list.setCurrentRow(0)
    dlg._show(0)
    assert dlg.web_protocol and dlg.web.secret.text() == "pw"
    dlg.done(0)
