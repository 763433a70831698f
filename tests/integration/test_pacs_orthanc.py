"""PACS in and out against a real Orthanc (started here on free localhost ports).

C-ECHO; refused and unanswered associations; C-STORE of the shared chest DICOMs; C-FIND by
patient ID, date range and modality; C-GET and C-MOVE bringing them back pixel-identical; a
cancelled retrieve keeping what arrived; ``cxr-viewer batch --send`` storing one Secondary
Capture and one SR per image under the source study, checked through Orthanc's REST API.
Skips with the reason when the ``Orthanc`` binary (Debian package ``orthanc``), pynetdicom or
the shared data are missing.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from orthanc_support import (
    ORTHANC_AE,
    OUR_AE,
    SKIP_REASON,
    free_port,
    orthanc_binary,
    start_orthanc,
)

from cxr_viewer.core.errors import Cancelled, PacsError
from cxr_viewer.core.paths import demo_bundle_dir
from cxr_viewer.core.progress import CancelToken

pytestmark = pytest.mark.integration
pytest.importorskip("pynetdicom", reason='the "pacs" extra (pynetdicom) is not installed')
if orthanc_binary() is None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from cxr_viewer.core.interop.pacs import (  # noqa: E402
    PacsClient,
    PacsNode,
    StudyRecord,
    raise_for_retrieve,
)

RG1_STUDY = "1.3.6.1.4.1.5962.1.2.9.20040826185059.5457"
SENT = (
    "chest_CR_MONO1_J2K-lossy_RG1_J2KI.dcm",  # JPEG 2000, MONOCHROME1, study RG1
    "chest_CR_MONO1_JPEGLS-near-lossless_RG1_JLSN.dcm",  # JPEG-LS, same study
    "chest_CR_PA_MONO2_8bit_JPEGbaseline_SIIM.dcm",  # JPEG baseline, another study (1901)
)
ACR_NEMA = "chest_CR_MONO1_10bit_ACRNEMA_CR-MONO1-10-chest.dcm"  # no file header: not sendable


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture()
def assoc_log(tmp_path, monkeypatch):
    path = tmp_path / "associations.log"
    monkeypatch.setenv("CXR_PACS_LOG", str(path))
    return path


def _client(orthanc, **kw) -> PacsClient:
    node = PacsNode(ORTHANC_AE, "127.0.0.1", orthanc.dicom_port, calling_ae=OUR_AE,
                    storage_port=orthanc.storage_port, **kw)  # fmt: skip
    return PacsClient(node, timeout=20)


@pytest.fixture(scope="module")
def stored(orthanc, shared_data, tmp_path_factory):
    """C-STORE the shared chest DICOMs (plus one that cannot be sent) once for the module."""
    folder = shared_data / "dicom"
    paths = [folder / n for n in (*SENT, ACR_NEMA)]
    node = PacsNode(ORTHANC_AE, "127.0.0.1", orthanc.dicom_port, calling_ae=OUR_AE)
    log = tmp_path_factory.mktemp("log") / "store.log"
    return PacsClient(node, timeout=20, log_path=log).store(paths), log


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_echo_and_association_log(orthanc, assoc_log):
    assert _client(orthanc).echo() > 0
    (rec,) = _records(assoc_log)
    assert rec["operation"] == "C-ECHO" and rec["outcome"] == "success"
    assert (rec["calling_ae"], rec["called_ae"], rec["port"]) == (
        OUR_AE,
        ORTHANC_AE,
        orthanc.dicom_port,
    )
    assert rec["user"] and rec["time"].endswith("+00:00")


def test_unknown_calling_ae_is_refused_clearly(orthanc, assoc_log):
    node = PacsNode(ORTHANC_AE, "127.0.0.1", orthanc.dicom_port, calling_ae="STRANGER")
    with pytest.raises(PacsError) as info:
        PacsClient(node, timeout=10).echo()
    assert "refused the association" in info.value.why and "STRANGER" in info.value.hint
    assert _records(assoc_log)[-1]["outcome"] == "not established"


def test_nothing_listening_is_a_clear_error(assoc_log):
    node = PacsNode(ORTHANC_AE, "127.0.0.1", free_port())
    with pytest.raises(PacsError) as info:
        PacsClient(node, timeout=5).find_studies(patient_id="x")
    assert "nothing answers" in info.value.why and info.value.hint


def test_c_store_of_the_shared_dicoms(orthanc, stored):
    result, log = stored
    assert [p.name for p in result.sent] == list(SENT)
    ((bad, why),) = result.failed
    assert bad.name == ACR_NEMA and "no DICOM file header" in why
    stored_uids = {orthanc.instance_tags(i)["SOPInstanceUID"] for i in orthanc.rest("/instances")}
    sent_uids = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in result.sent
    }
    assert sent_uids <= stored_uids
    (rec,) = _records(log)
    assert (rec["operation"], rec["outcome"], rec["instances"], rec["failed"]) == (
        "C-STORE",
        "partial",
        3,
        1,
    )
    with pytest.raises(PacsError, match="1 of 4 file"):
        result.raise_if_failed(PacsNode(ORTHANC_AE, "127.0.0.1", orthanc.dicom_port))


def test_c_find_by_patient_id_date_and_modality(orthanc, stored, assoc_log):
    client = _client(orthanc)
    (rg1,) = client.find_studies(patient_id="9RG1")
    assert rg1.study_instance_uid == RG1_STUDY and rg1.instances == 2
    assert (rg1.patient_name, rg1.study_date, rg1.modalities) == (
        "CompressedSamples^RG1",
        "20040826",
        "CR",
    )
    in_2004 = client.find_studies(date_from="2004-01-01", date_to="2004-12-31")
    assert [s.study_instance_uid for s in in_2004] == [RG1_STUDY]
    assert len(client.find_studies()) == 2  # both studies (CR), open date range
    assert client.find_studies(date_from="2005-01-01") == []
    assert client.find_studies(patient_id="9RG1", modalities=("DX",)) == []
    assert client.find_studies(patient_name="Compressed*")[0].patient_id == "9RG1"
    masked = rg1.masked()
    assert isinstance(masked, StudyRecord) and "RG1" not in repr(
        [getattr(masked, k) for k in StudyRecord.PATIENT_FIELDS]
    )
    with pytest.raises(PacsError, match="Invalid date range"):
        client.find_studies(date_from="20050101", date_to="20040101")
    # the log names the keys used, never their values (no patient data in it)
    assert "9RG1" not in assoc_log.read_text()


def _pixels_by_uid(paths):
    out = {}
    for p in paths:
        ds = pydicom.dcmread(p)
        out[str(ds.SOPInstanceUID)] = (ds.pixel_array, str(ds.file_meta.TransferSyntaxUID))
    return out


@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_brings_the_study_back_pixel_identical(
    orthanc, stored, shared_data, tmp_path, method, assoc_log
):
    client = _client(orthanc, retrieve=method)
    seen = []
    result = client.retrieve_study(
        RG1_STUDY, tmp_path / method, progress=lambda d, t: seen.append((d, t))
    )
    assert result.complete, result.problem
    raise_for_retrieve(client.node, result)  # complete: no error
    got = _pixels_by_uid(result.files)
    want = _pixels_by_uid([shared_data / "dicom" / n for n in SENT[:2]])
    assert set(got) == set(want)
    for uid, (pixels, syntax) in want.items():
        assert got[uid][1] == syntax  # sent back as stored, not transcoded
        assert np.array_equal(got[uid][0], pixels)
    if method == "get":
        assert seen[-1] == (2, 2)
    assert not list((tmp_path / method).glob("*.part")) and not list(tmp_path.rglob(".cxr-tmp-*"))
    rec = _records(assoc_log)[-1]
    assert (rec["operation"], rec["outcome"], rec["instances"]) == (
        f"C-{method.upper()}",
        "success",
        2,
    )


def test_cancelled_retrieve_keeps_what_arrived(orthanc, stored, tmp_path, assoc_log):
    token = CancelToken()
    result = _client(orthanc).retrieve_study(
        RG1_STUDY, tmp_path, progress=lambda done, total: token.cancel(), cancel=token
    )
    assert result.cancelled and not result.complete
    # the abort races with the PACS's next sub-operation: one or both may have arrived, and
    # every one that did is whole, readable and reported
    assert 1 <= len(result.files) <= 2
    assert sorted(result.files) == sorted(tmp_path.glob("*.dcm"))
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.rglob(".cxr-tmp-*"))
    for f in result.files:
        assert pydicom.dcmread(f).pixel_array.size > 0
    with pytest.raises(Cancelled, match=f"{len(result.files)} instance"):
        raise_for_retrieve(_client(orthanc).node, result)
    assert _records(assoc_log)[-1]["outcome"] == "cancelled"


def test_batch_send_stores_one_sc_and_one_sr_per_image_under_the_source_study(
    orthanc, stored, shared_data, tmp_path, assoc_log
):
    pytest.importorskip("tensorflow")
    from cxr_viewer.cli import main

    src = tmp_path / "in"
    src.mkdir()
    for name in (SENT[0], SENT[2]):
        shutil.copy(shared_data / "dicom" / name, src / name)
    before = set(orthanc.rest("/instances"))
    code = main(
        [
            "batch",
            str(src),
            "--model",
            str(demo_bundle_dir()),
            "--explain",
            "gradcam",
            "--out",
            str(tmp_path / "out"),
            "--send",
            f"{ORTHANC_AE}@127.0.0.1:{orthanc.dicom_port}",
            "--calling-ae",
            OUR_AE,
            "--dicom-objects",
            "sc",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    rows = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert all(",ok," in r for r in rows[1:]), rows
    assert sorted(p.name for p in (tmp_path / "out" / "dicom").iterdir()) == sorted(
        f"{n[:-4]}_{kind}.dcm" for n in (SENT[0], SENT[2]) for kind in ("gradcam_SC", "SR")
    )
    new = set(orthanc.rest("/instances")) - before
    assert len(new) == 4
    for name in (SENT[0], SENT[2]):
        source = pydicom.dcmread(shared_data / "dicom" / name, stop_before_pixels=True)
        study = orthanc.study_id(str(source.StudyInstanceUID))
        tags = [orthanc.instance_tags(i["ID"]) for i in orthanc.rest(f"/studies/{study}/instances")]
        ours = [t for t in tags if t.get("Manufacturer") == "CXR Lens"]
        sc = [t for t in ours if t["SOPClassUID"] == pydicom.uid.SecondaryCaptureImageStorage]
        sr = [t for t in ours if t["SOPClassUID"] == pydicom.uid.ComprehensiveSRStorage]
        refs = [
            t
            for t in sc
            if t["SourceImageSequence"][0]["ReferencedSOPInstanceUID"] == source.SOPInstanceUID
        ]
        assert len(refs) == 1, f"{name}: {len(sc)} SCs, none or several referencing the source"
        (sc_tags,) = refs
        assert sc_tags["ImageType"] == "DERIVED\\SECONDARY"
        assert sc_tags["PatientID"] == source.PatientID
        sr_images = [_sr_images(t) for t in sr]
        matching = [t for t, im in zip(sr, sr_images, strict=True) if source.SOPInstanceUID in im]
        assert len(matching) == 1, f"{name}: SRs referencing {sr_images}"
        (sr_tags,) = matching
        assert _sr_images(sr_tags) == [source.SOPInstanceUID, sc_tags["SOPInstanceUID"]]
        probs = {
            c["ConceptNameCodeSequence"][0]["CodeMeaning"]: float(
                c["MeasuredValueSequence"][0]["NumericValue"]
            )
            for c in sr_tags["ContentSequence"]
            if c["ValueType"] == "NUM"
        }
        assert {"Probability of NORMAL", "Probability of PNEUMONIA"} <= set(probs)
        assert probs["Probability of NORMAL"] + probs["Probability of PNEUMONIA"] == (
            pytest.approx(1.0, abs=1e-4)
        )
    sends = [r for r in _records(assoc_log) if r["operation"] == "C-STORE"]
    assert [(r["outcome"], r["instances"]) for r in sends] == [("success", 2), ("success", 2)]


def _sr_images(tags: dict) -> list[str]:
    return [
        c["ReferencedSOPSequence"][0]["ReferencedSOPInstanceUID"]
        for c in tags.get("ContentSequence", [])
        if c["ValueType"] == "IMAGE"
    ]


def test_failed_sub_operation_is_reported_and_what_arrived_is_kept(
    orthanc, stored, tmp_path, monkeypatch, assoc_log
):
    """Our side cannot store the second instance (disk full): the PACS counts a failed
    sub-operation, the first instance stays, and the error says so."""
    import errno

    from cxr_viewer.core.interop import pacs

    real = pacs.write_instance
    calls = []

    def flaky(dest, dataset, file_meta):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(dest, dataset, file_meta)

    monkeypatch.setattr(pacs, "write_instance", flaky)
    client = _client(orthanc)
    in_study = len(orthanc.rest(f"/studies/{orthanc.study_id(RG1_STUDY)}/instances"))
    result = client.retrieve_study(RG1_STUDY, tmp_path)
    assert len(result.files) == in_study - 1 and all(f.exists() for f in result.files)
    assert result.failed == 1 and not result.complete
    assert result.problem.startswith("1 instance(s) could not be retrieved (status 0xB000")
    assert "No space left on device" in result.problem
    with pytest.raises(PacsError) as info:
        raise_for_retrieve(client.node, result)
    assert "incomplete" in info.value.what
    assert f"{in_study - 1} instance(s) arrived and are kept" in info.value.why
    assert _records(assoc_log)[-1]["outcome"] == "partial"
