"""The PACS dialogs against a real Orthanc: nodes + Test connection, query/retrieve into the
study list (patient fields masked by "hide patient fields"), File ▸ Export ▸ DICOM entries."""

from __future__ import annotations

import pytest
from orthanc_support import (
    ORTHANC_AE,
    OUR_AE,
    SKIP_REASON,
    free_port,
    orthanc_binary,
    start_orthanc,
)

pytestmark = pytest.mark.integration
pytest.importorskip("pynetdicom", reason='the "pacs" extra (pynetdicom) is not installed')
if orthanc_binary() is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from cxr_viewer.core.interop.pacs import PacsClient, PacsNode  # noqa: E402
from cxr_viewer.gui import pacs_dialogs as pd  # noqa: E402

RG1 = (
    "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm",
    "chest_CR_MONO1_JPEGLS-near-lossless_RG1_JLSN.dcm",
)
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, shared_data):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    node = PacsNode(ORTHANC_AE, "127.0.0.1", server.dicom_port, calling_ae=OUR_AE)
    log = tmp_path_factory.mktemp("log") / "a.log"
    stored = PacsClient(node, log_path=log).store([shared_data / "dicom" / n for n in RG1])
    assert len(stored.sent) == 2
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _private_log(tmp_path, monkeypatch):
    monkeypatch.setenv("CXR_PACS_LOG", str(tmp_path / "associations.log"))


def _node(orthanc, **kw):
    return PacsNode(
        ORTHANC_AE,
        "127.0.0.1",
        orthanc.dicom_port,
        calling_ae=OUR_AE,
        name="Local Orthanc",
        storage_port=orthanc.storage_port,
        **kw,
    )


def test_nodes_dialog_saves_nodes_and_tests_the_connection(qtbot, tmp_path, orthanc, network):
    from cxr_viewer.gui.settings import Settings

    settings = Settings(tmp_path / "s.ini")
    dlg = pd.PacsNodesDialog(settings, network)
    qtbot.addWidget(dlg)
    assert not dlg.web_protocol  # DIMSE unless chosen
    dlg.name.setText("Local Orthanc")
    dlg.dimse.ae_title.setText(ORTHANC_AE)
    dlg.dimse.host.setText("127.0.0.1")
    dlg.dimse.port.setValue(orthanc.dicom_port)
    dlg.dimse.calling_ae.setText(OUR_AE)
    dlg.add_or_update()
    (saved,) = pd.load_nodes(Settings(tmp_path / "s.ini"))
    node = saved.endpoint()
    assert saved.protocol == "dimse" and saved.label == "Local Orthanc"
    assert (node.ae_title, node.port, node.calling_ae) == (
        ORTHANC_AE,
        orthanc.dicom_port,
        OUR_AE,
    )
    dlg.test_connection()
    qtbot.waitUntil(lambda: "answered the C-ECHO" in dlg.result_label.text(), timeout=WAIT_MS)
    dlg.dimse.port.setValue(free_port())
    dlg.test_connection()
    qtbot.waitUntil(lambda: "nothing answers" in dlg.result_label.text().lower(), timeout=WAIT_MS)
    dlg.dimse.ae_title.setText("WAY-TOO-LONG-AE-TITLE")
    assert dlg.test_connection() is None and "Invalid PACS AE title" in dlg.result_label.text()
    dlg.done(0)


@pytest.mark.parametrize("retrieve", ["get", "move"])
def test_query_retrieve_dialog_fills_the_study_list(qtbot, window, tmp_path, orthanc, retrieve):
    pd.save_nodes(window.settings, [_node(orthanc, retrieve=retrieve)])
    window.settings.q.setValue(pd.RETRIEVE_DIR_KEY, str(tmp_path / "retrieved"))
    window.actions_["pacs_query"].trigger()
    dlg = window.findChild(pd.QueryRetrieveDialog)
    assert dlg is not None and dlg.current_node().endpoint().port == orthanc.dicom_port
    dlg.patient_id.setText("9RG1")
    dlg.date_from.setText("2004-01-01")
    dlg.search()
    qtbot.waitUntil(lambda: dlg.table.rowCount() == 1, timeout=WAIT_MS)
    assert dlg.table.item(0, 0).text() == "CompressedSamples^RG1"
    assert dlg.table.item(0, 4).text() == "2004-08-26"
    window.state.set_hide_patient(True)  # the viewer's privacy switch governs the dialog too
    assert [dlg.table.item(0, c).text() for c in range(4)] == ["•••"] * 4
    window.state.set_hide_patient(False)
    assert dlg.table.item(0, 1).text() == "9RG1"

    dlg.select_row(0)
    dlg.retrieve_selected()
    qtbot.waitUntil(lambda: "retrieved into the study list" in dlg.message.text(), timeout=WAIT_MS)
    assert dlg.message.text().startswith("2 image(s)")
    retrieved = [p for p in window.state.studies if (tmp_path / "retrieved") in p.parents]
    assert len(retrieved) == 2
    qtbot.waitUntil(lambda: window.state.study is not None, timeout=WAIT_MS)
    assert window.state.study.photometric == "MONOCHROME1"
    dlg.done(0)


def test_query_errors_are_shown_in_the_dialog(qtbot, window, orthanc):
    pd.save_nodes(window.settings, [_node(orthanc)])
    window.actions_["pacs_query"].trigger()
    dlg = window.findChild(pd.QueryRetrieveDialog)
    dlg.date_from.setText("31.01.2004")
    dlg.search()
    qtbot.waitUntil(lambda: "Invalid from date" in dlg.message.text(), timeout=WAIT_MS)
    assert dlg.search_button.isEnabled()
    dlg.done(0)


def test_file_menu_has_the_pacs_entries(window):
    file_menu = window.actions_.file_menu
    assert window.menuBar().actions()[0].text() == "&File"
    texts = [a.text() for a in file_menu.actions()]
    assert "&Query/retrieve from PACS…" in texts and "PACS &nodes…" in texts
    export = next(a.menu() for a in file_menu.actions() if a.text() == "E&xport")
    assert [a.text() for a in export.actions()] == ["&DICOM (Secondary Capture + report)…"]


def test_export_dicom_dialog_writes_and_sends_sc_and_sr(
    qtbot, gui, viewer, studies_dir, tmp_path, orthanc
):
    import pydicom

    pd.save_nodes(viewer.settings, [_node(orthanc)])
    gui.open_study(qtbot, viewer, studies_dir / "phantom0.png")
    viewer.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, viewer, "gradcam")
    viewer.actions_["export_dicom"].trigger()
    dlg = viewer.findChild(pd.DicomExportDialog)
    assert dlg is not None and not dlg.is_dicom  # a PNG: a new study, patient fields asked
    dlg.folder.setText(str(tmp_path / "dicom"))
    dlg.patient_id.setText("GUI-7")
    dlg.birth_date.setText("31.01.2020")
    assert dlg.start() is None and "birth date" in dlg.message.text()
    dlg.birth_date.setText("")
    dlg.send_to.combo.setCurrentIndex(1)
    dlg.start()
    qtbot.waitUntil(
        lambda: "sent them to Local Orthanc" in viewer.status.msg.text(), timeout=WAIT_MS
    )
    files = sorted((tmp_path / "dicom").glob("*.dcm"))
    assert [f.name for f in files] == ["phantom0_SR.dcm", "phantom0_gradcam_SC.dcm"]
    sc = pydicom.dcmread(files[1])
    assert sc.PatientID == "GUI-7" and list(sc.ImageType) == ["DERIVED", "SECONDARY"]
    hits = orthanc.rest("/tools/lookup", str(sc.StudyInstanceUID), method="POST")
    study = next(h["ID"] for h in hits if h["Type"] == "Study")
    assert len(orthanc.rest(f"/studies/{study}/instances")) == 2
