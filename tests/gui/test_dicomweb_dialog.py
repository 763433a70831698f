"""File ▸ Query/retrieve over DICOMweb… (gui/dicomweb_dialog.py) against a real Orthanc with
its DICOMweb plugin and bearer authentication (skipped, saying why, where it is absent)."""

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

TOKEN = "gui-token-51"


def test_search_and_retrieve_over_dicomweb(qtbot, tmp_path):
    from cxr_viewer.core.interop.dicom_pm import parametric_map
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.io import load_study
    from cxr_viewer.gui.dicomweb_dialog import SETTINGS_KEY, DicomWebDialog
    from cxr_viewer.gui.pacs_dialogs import RETRIEVE_DIR_KEY
    from cxr_viewer.gui.settings import Settings

    server = start_orthanc_dicomweb(tmp_path / "orthanc", bearer=TOKEN)
    try:
        url = server.url + ROOT
        film = samples_dir() / "phantom_jpegls.dcm"
        study = load_study(film)
        values = np.linspace(0, 1, study.rows * study.columns, dtype=np.float32)
        ex = de.ExplanationResult("gradcam", "PNEUMONIA", values.reshape(study.rows, -1), False)
        model = de.ModelIdentity("demo", "1", ("NORMAL", "PNEUMONIA"))
        pm = parametric_map(de.source_header(study), ex, model)
        seed = DicomWebClient(DicomWebNode(url, "bearer", token=TOKEN))
        seed.raise_if_failed(seed.store([film, pm]))

        settings = Settings(tmp_path / "settings.ini")
        settings.q.setValue(RETRIEVE_DIR_KEY, str(tmp_path / "retrieved"))
        dialog = DicomWebDialog(settings)
        qtbot.addWidget(dialog)
        dialog.url.setText(url)
        dialog.auth.setCurrentText("bearer")
        dialog.secret.setText("wrong")
        dialog.search()
        qtbot.waitUntil(lambda: "HTTP 403" in dialog.message.text(), timeout=20000)
        dialog.secret.setText(TOKEN)
        dialog.search()
        qtbot.waitUntil(lambda: dialog.table.rowCount() == 1, timeout=20000)
        src = pydicom.dcmread(film, stop_before_pixels=True)
        assert dialog.table.item(0, 6).text() == src.StudyInstanceUID
        dialog.table.selectRow(0)
        with qtbot.waitSignal(dialog.retrieved, timeout=30000) as got:
            dialog.retrieve_selected()
        (image,) = got.args[0]
        assert pydicom.dcmread(image).SOPInstanceUID == src.SOPInstanceUID
        assert "1 stored result(s)" in dialog.message.text()
        arrived = sorted((tmp_path / "retrieved" / str(src.StudyInstanceUID)).iterdir())
        assert {p.name for p in arrived} == {
            f"{src.SOPInstanceUID}.dcm",
            f"{pm.SOPInstanceUID}.dcm",
        }
        # the node is remembered, its token is not
        stored = json.loads(settings.q.value(SETTINGS_KEY))
        assert stored["url"] == url.rstrip("/") and stored["auth"] == "bearer"
        assert TOKEN not in json.dumps(stored)
        dialog.reject()
    finally:
        server.stop()
