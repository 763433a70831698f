"""DICOMweb nodes in the PACS dialogs (issue 32) against a real Orthanc with its DICOMweb plugin
and bearer authentication (skipped, saying why, where it is absent): the node dialog's
protocol choice and connection test, QIDO-RS search and WADO-RS retrieve into the study list
from File ▸ Query/retrieve, and File ▸ Export ▸ DICOM sent with STOW-RS."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from orthanc_dicomweb_support import ROOT, SKIP_REASON, available, start_orthanc_dicomweb

from cxr_viewer.core.interop import dicom_export as de
from cxr_viewer.core.paths import samples_dir

pytest.importorskip("dicomweb_client", reason='the "pacs" extra (dicomweb-client) is missing')
pytest.importorskip("highdicom", reason='the "pacs" extra (highdicom) is missing')
if not available():
    pytest.skip(SKIP_REASON, allow_module_level=True)

from cxr_viewer.gui import pacs_dialogs as pd  # noqa: E402

TOKEN = "gui-token-51"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Orthanc + DICOMweb (bearer TOKEN) holding a film and a Parametric Map of it."""
    from cxr_viewer.core.interop.dicom_pm import parametric_map
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.io import load_study

    orthanc = start_orthanc_dicomweb(tmp_path_factory.mktemp("orthanc"), bearer=TOKEN)
    try:
        film = samples_dir() / "phantom_jpegls.dcm"
        study = load_study(film)
        values = np.linspace(0, 1, study.rows * study.columns, dtype=np.float32)
        ex = de.ExplanationResult("gradcam", "PNEUMONIA", values.reshape(study.rows, -1), False)
        model = de.ModelIdentity("demo", "1", ("NORMAL", "PNEUMONIA"))
        pm = parametric_map(de.source_header(study), ex, model)
        seed = DicomWebClient(DicomWebNode(orthanc.url + ROOT, "bearer", token=TOKEN))
        seed.raise_if_failed(seed.store([film, pm]))
        orthanc.film, orthanc.pm = film, pm
        yield orthanc
    finally:
        orthanc.stop()


def _fill_web_node(dlg, url: str, secret: str) -> None:
    dlg.name.setText("Web PACS")
    dlg.set_protocol("dicomweb")
    dlg.web.url.setText(url)
    dlg.web.set_auth("bearer")
    dlg.web.secret.setText(secret)


def test_a_dicomweb_node_is_tested_saved_without_its_token_and_searched_and_retrieved(
    qtbot, window, tmp_path, server
):
    url = server.url + ROOT
    window.settings.q.setValue(pd.RETRIEVE_DIR_KEY, str(tmp_path / "retrieved"))
    nodes = window.pacs.nodes()
    assert nodes.web.verify.isChecked()  # TLS verification on unless turned off
    _fill_web_node(nodes, url, "wrong")
    assert nodes.pages.currentWidget() is nodes.web
    nodes.test_connection()
    qtbot.waitUntil(lambda: "HTTP 403" in nodes.result_label.text(), timeout=WAIT_MS)
    nodes.web.secret.setText(TOKEN)
    nodes.test_connection()
    qtbot.waitUntil(
        lambda: "answered a QIDO-RS query" in nodes.result_label.text(), timeout=WAIT_MS
    )
    nodes.add_or_update()
    nodes.done(0)
    (saved,) = pd.load_nodes(window.settings)
    assert saved.protocol == "dicomweb" and saved.secret_kind == "token"
    raw = json.dumps(window.settings.q.value(pd.NODES_KEY))
    assert TOKEN not in raw and url.rstrip("/") in raw  # the token is never written

    query = window.pacs.query()
    assert query.current_node() == saved
    assert query.picker.secret.isVisible() and query.picker.secret.text() == TOKEN  # this session
    query.search()
    qtbot.waitUntil(lambda: query.table.rowCount() == 1, timeout=WAIT_MS)
    src = pydicom.dcmread(server.film, stop_before_pixels=True)
    assert query.records[0].study_instance_uid == src.StudyInstanceUID
    query.select_row(0)
    with qtbot.waitSignal(query.retrieved, timeout=WAIT_MS) as got:
        query.retrieve_selected()
    (image,) = got.args[0]
    assert pydicom.dcmread(image).SOPInstanceUID == src.SOPInstanceUID
    qtbot.waitUntil(
        lambda: "retrieved into the study list" in query.message.text(), timeout=WAIT_MS
    )
    assert "1 image(s)" in query.message.text() and "1 stored result(s)" in query.message.text()
    assert image in window.state.studies  # the Parametric Map stays beside it, not in the list
    arrived = sorted((tmp_path / "retrieved" / str(src.StudyInstanceUID)).iterdir())
    assert {p.name for p in arrived} == {
        f"{src.SOPInstanceUID}.dcm",
        f"{server.pm.SOPInstanceUID}.dcm",
    }

    query.picker.secret.setText("")  # a node that needs a token is not asked without one
    assert query.search() is None and "needs its token" in query.message.text()
    query.done(0)


def test_export_sends_with_stow_rs_to_a_dicomweb_node(
    qtbot, gui, viewer, studies_dir, tmp_path, server
):
    from cxr_viewer.core.interop.dicomweb import DicomWebNode

    pd.save_nodes(viewer.settings, [DicomWebNode(server.url + ROOT, "bearer", token=TOKEN)])
    gui.open_study(qtbot, viewer, studies_dir / "phantom1.png")
    viewer.state.set_visible("gradcam", True)
    gui.wait_done(qtbot, viewer, "gradcam")
    viewer.actions_["export_dicom"].trigger()
    dlg = viewer.findChild(pd.DicomExportDialog)
    dlg.folder.setText(str(tmp_path / "dicom"))
    dlg.send_to.combo.setCurrentIndex(1)
    assert dlg.start() is None and "needs its token" in dlg.message.text()
    dlg.send_to.secret.setText(TOKEN)
    dlg.start()
    qtbot.waitUntil(lambda: "sent them to" in viewer.status.msg.text(), timeout=WAIT_MS)
    files = sorted((tmp_path / "dicom").glob("*.dcm"))
    uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert len(server.rest(f"/studies/{server.study_id(uid)}/instances")) == len(files) == 2
