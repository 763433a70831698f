"""The query/retrieve dialog against a hostile PACS (issue 26, items 2 and 10), a pynetdicom
peer on a free loopback port: a Study Instance UID of '../GUIESCAPED' retrieves nothing
anywhere (it used to write two files next to the retrieve folder and report success), and a
bad value in one match leaves the other matches listed."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

pytest.importorskip("pynetdicom", reason='the "pacs" extra (pynetdicom) is not installed')

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelFind as FIND,
)
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelGet as GET,
)

from cxr_viewer.core.interop.pacs import PacsNode  # noqa: E402
from cxr_viewer.gui import pacs_dialogs as pd  # noqa: E402

GOOD = "1.2.826.0.1.3680043.8.498.7"
#: alone the search and the retrieve take ~2 s; a machine running two suites at once took over
#: 20 s for the retrieve (each wait returns as soon as its text appears)
WAIT_MS = 90_000


def _match(uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "P1"
    ds.StudyDate = "20240101"
    return ds


def _instance(study: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "P1", "Doe^Jane", "OT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(64)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture
def hostile_pacs():
    def on_find(event):
        bad = _match(GOOD)
        bad.add_new("NumberOfStudyRelatedInstances", "LO", "²")
        yield 0xFF00, _match("../GUIESCAPED")
        yield 0xFF00, bad

    def on_get(event):
        uid = str(event.identifier.StudyInstanceUID)
        yield 2
        for _ in range(2):
            yield 0xFF00, _instance(uid)

    ae = AE(ae_title="HOSTILE")
    ts = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    ae.add_supported_context(FIND, ts)
    ae.add_supported_context(GET, ts)
    ae.add_supported_context(SecondaryCaptureImageStorage, ts, scu_role=False, scp_role=True)
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)],
    )
    yield PacsNode("HOSTILE", "127.0.0.1", server.server_address[1], calling_ae="CXRTEST")
    server.shutdown()


def test_hostile_uids_retrieve_nothing_and_bad_values_lose_no_match(
    qtbot, window, tmp_path, monkeypatch, hostile_pacs
):
    monkeypatch.setenv("CXR_PACS_LOG", str(tmp_path / "associations.log"))
    base = tmp_path / "work" / "retrieved"
    pd.save_nodes(window.settings, [hostile_pacs])
    window.settings.q.setValue(pd.RETRIEVE_DIR_KEY, str(base))
    window.actions_["pacs_query"].trigger()
    dlg = window.findChild(pd.QueryRetrieveDialog)
    dlg.search()
    qtbot.waitUntil(lambda: "found on" in dlg.message.text(), timeout=WAIT_MS)
    assert dlg.table.rowCount() == 2  # the match with the bad value is listed too
    assert "2 studies found" in dlg.message.text() and "2 of them had field(s)" in (
        dlg.message.text()
    )
    assert "instances: not a whole number" in dlg.table.item(1, 0).toolTip()

    # Qt believes Ctrl is held after a Ctrl shortcut (as after Ctrl+Shift+M in an earlier
    # test): selecting a row must still select it, not toggle the row selected by the search off
    qtbot.keyClick(dlg.table, Qt.Key.Key_F13, Qt.KeyboardModifier.ControlModifier)
    dlg.select_row(0)  # ../GUIESCAPED
    assert dlg.selected_rows() == [0]
    dlg.retrieve_selected()
    qtbot.waitUntil(lambda: "retrieved into the study list" in dlg.message.text(), timeout=WAIT_MS)
    assert dlg.message.text().startswith("0 image(s)")
    assert "not a DICOM UID" in dlg.message.text()
    assert list(tmp_path.rglob("*.dcm")) == []

    dlg.select_row(1)
    dlg.retrieve_selected()
    qtbot.waitUntil(lambda: "retrieved into the study list" in dlg.message.text(), timeout=WAIT_MS)
    assert dlg.message.text().startswith("2 image(s)")
    kept = list(tmp_path.rglob("*.dcm"))
    assert len(kept) == 2 and all(p.parent == base.resolve() / GOOD for p in kept)
    dlg.done(0)
