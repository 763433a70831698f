"""DICOMweb against a real Orthanc with its DICOMweb plugin (tests/orthanc_dicomweb_support.py):
QIDO-RS, WADO-RS and STOW-RS with HTTP basic and bearer authentication checked by the server,
and ``cxr-viewer batch --send URL`` storing Parametric Maps, a TID 1500 report and
Segmentations under the source study, read back over WADO-RS equal to the maps computed.

Skipped, with the reason, where Orthanc or the plugin is not installed. Uses the shipped DX
phantoms and the demo model (no shared data).
"""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_dicomweb_support import ROOT, SKIP_REASON, available, start_orthanc_dicomweb

from cxr_viewer.core.errors import PacsError
from cxr_viewer.core.evaluate.localize import topk_region
from cxr_viewer.core.paths import demo_bundle_dir, samples_dir

pytest.importorskip("dicomweb_client", reason='the "pacs" extra (dicomweb-client) is missing')
pytest.importorskip("highdicom", reason='the "pacs" extra (highdicom) is missing')
if not available():
    pytest.skip(SKIP_REASON, allow_module_level=True)

from cxr_viewer.core.interop import dicom_pm, dicom_seg, dicom_sr  # noqa: E402
from cxr_viewer.core.interop.dicomweb import (  # noqa: E402
    DicomWebClient,
    DicomWebNode,
)

USER, PASSWORD, TOKEN = "cxr", "s3cret-pw", "tok-7f3a9c"
PHANTOMS = ("phantom_j2k.dcm", "phantom_jpegls.dcm")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    orthanc = start_orthanc_dicomweb(
        tmp_path_factory.mktemp("orthanc-dicomweb"), basic=(USER, PASSWORD), bearer=TOKEN
    )
    yield orthanc
    orthanc.stop()


def _url(server) -> str:
    return server.url + ROOT


def _bearer(server) -> DicomWebClient:
    return DicomWebClient(DicomWebNode(_url(server), "bearer", token=TOKEN), timeout=20)


def test_stow_qido_wado_with_basic_and_bearer(server, tmp_path):
    basic = DicomWebClient(DicomWebNode(_url(server), "basic", USER, PASSWORD), timeout=20)
    assert basic.echo() >= 0
    sent = basic.store([samples_dir() / PHANTOMS[0]])
    basic.raise_if_failed(sent)
    assert [p.name for p in sent.sent] == [PHANTOMS[0]]
    src = pydicom.dcmread(samples_dir() / PHANTOMS[0])
    bearer = _bearer(server)
    studies = bearer.find_studies(patient_id=str(src.PatientID), modalities=("DX",))
    assert [s.study_instance_uid for s in studies] == [src.StudyInstanceUID]
    assert studies[0].patient_name == str(src.PatientName)
    (inst,) = bearer.find_instances(src.StudyInstanceUID)
    assert inst.sop_instance_uid == src.SOPInstanceUID and inst.modality == "DX"
    assert bearer.find_results(src.StudyInstanceUID) == []
    back = bearer.retrieve_study(src.StudyInstanceUID, tmp_path / "wado")
    assert back.complete and len(back.files) == 1
    again = pydicom.dcmread(back.files[0])
    assert again.SOPInstanceUID == src.SOPInstanceUID
    assert np.array_equal(again.pixel_array, src.pixel_array)


def test_wado_of_a_study_refuses_another_patients_instance(server, tmp_path):
    """Two patients' films filed under one Study Instance UID (a mis-merged study): retrieving
    the study for the first patient keeps only that patient's instance, as C-GET and C-MOVE
    do; the other is refused, never written, and its identifiers are not echoed."""
    from pydicom.uid import generate_uid

    from cxr_viewer.core.interop.dicomweb import InstanceRecord

    ours = pydicom.dcmread(samples_dir() / PHANTOMS[1])
    ours.StudyInstanceUID, ours.SOPInstanceUID = generate_uid(), generate_uid()
    ours.file_meta.MediaStorageSOPInstanceUID = ours.SOPInstanceUID
    theirs = pydicom.dcmread(samples_dir() / PHANTOMS[1])
    theirs.StudyInstanceUID = ours.StudyInstanceUID
    theirs.SeriesInstanceUID, theirs.SOPInstanceUID = generate_uid(), generate_uid()
    theirs.file_meta.MediaStorageSOPInstanceUID = theirs.SOPInstanceUID
    theirs.PatientID, theirs.PatientName = "OTHER-77", "SOMEONE^ELSE"
    client = _bearer(server)
    client.raise_if_failed(client.store([ours, theirs]))
    study = str(ours.StudyInstanceUID)
    records = [
        InstanceRecord(
            study, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.SOPClassUID)
        )
        for ds in (ours, theirs)
    ]
    out = tmp_path / "wado"
    got = client.retrieve_study(study, out, instances=records, patient_id=str(ours.PatientID))
    assert [p.name for p in out.iterdir()] == [f"{ours.SOPInstanceUID}.dcm"]
    assert [p.name for p in got.files] == [f"{ours.SOPInstanceUID}.dcm"]
    assert got.rejected == ["it belongs to another patient than the study's"]
    assert not got.complete and "1 instance(s) refused and not kept" in got.problem
    assert "OTHER-77" not in got.problem and "SOMEONE" not in got.problem
    # without a patient to hold it to, both are the study's
    both = client.retrieve_study(study, tmp_path / "both", instances=records)
    assert both.complete and len(both.files) == 2


@pytest.mark.parametrize(
    ("node", "why"),
    [
        (lambda url: DicomWebNode(url), "HTTP 403"),
        (lambda url: DicomWebNode(url, "bearer", token="wrong"), "HTTP 403"),
        (lambda url: DicomWebNode(url, "basic", USER, "wrong"), "HTTP 403"),
        (lambda url: DicomWebNode(url.replace(ROOT, "/no-such-root/")), "HTTP 404"),
    ],
)
def test_refused_and_wrong_addresses_are_clear_errors(server, node, why):
    with pytest.raises(PacsError, match=why) as err:
        DicomWebClient(node(_url(server)), timeout=10).echo()
    assert err.value.hint


def test_unreachable_server_is_a_clear_error():
    from orthanc_support import free_port

    node = DicomWebNode(f"http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(PacsError, match="cannot be reached"):
        DicomWebClient(node, timeout=5).echo()


@pytest.mark.slow
def test_batch_send_over_dicomweb_stores_maps_report_and_segmentations(
    server, tmp_path, monkeypatch
):
    pytest.importorskip("tensorflow")
    from cxr_viewer.cli import main

    src_dir = tmp_path / "in"
    src_dir.mkdir()
    for name in PHANTOMS:
        shutil.copy(samples_dir() / name, src_dir / name)
    monkeypatch.setenv("CXR_DICOMWEB_TOKEN", TOKEN)
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            str(src_dir),
            "--model",
            str(demo_bundle_dir()),
            "--explain",
            "gradcam",
            "--out",
            str(out),
            "--send",
            _url(server),
            "--dicomweb-auth",
            "bearer",
            "--dicom-objects",
            "pm,sr,seg",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    assert code == 0
    rows = (out / "predictions.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",ok," in r for r in rows[1:]), rows
    client = _bearer(server)
    study_uids = {str(pydicom.dcmread(samples_dir() / n).StudyInstanceUID) for n in PHANTOMS}
    # QIDO-RS finds the results under the sources' own study (both phantoms share one):
    # per image a Parametric Map, a Segmentation and a report, each in a new series
    found = [r for uid in study_uids for r in client.find_results(uid)]
    kinds = sorted(r.sop_class_uid for r in found)
    assert kinds == sorted(
        [
            dicom_pm.PARAMETRIC_MAP_STORAGE,
            dicom_seg.SEGMENTATION_STORAGE,
            dicom_sr.COMPREHENSIVE_3D_SR,
        ]
        * len(PHANTOMS)
    ), found
    # WADO-RS: every result back as a data set
    retrieved = {r.sop_instance_uid: client.retrieve_instance(r) for r in found}
    series = {r.sop_class_uid: r.series_instance_uid for r in found}
    for name in PHANTOMS:
        source = pydicom.dcmread(samples_dir() / name, stop_before_pixels=True)
        uid = str(source.SOPInstanceUID)
        assert source.SeriesInstanceUID not in series.values()
        # the map read back is the map the batch computed (its .npy), to 1e-5
        (back,) = dicom_pm.maps_for_image(retrieved.values(), uid)
        (npy,) = out.rglob(f"{name[:-4]}_gradcam.npy")
        computed = np.load(npy)
        assert back.values.shape == computed.shape == (source.Rows, source.Columns)
        assert np.abs(back.values - computed).max() <= 1e-5
        assert back.method == "gradcam"
        assert back.quantity == ("130403", "DCM", "Gradient-weighted class activation")
        assert back.references[0].series_instance_uid == source.SeriesInstanceUID
        # the report of this image: model sha256, probabilities as in the CSV, the map's
        # trust figures, the Segmentation
        reports = [
            dicom_sr.read_report(ds)
            for ds in retrieved.values()
            if ds.SOPClassUID == dicom_sr.COMPREHENSIVE_3D_SR
        ]
        (summary,) = [s for s in reports if s.images == [uid]]
        assert summary.sha256 == "9fde30788ffce75df3b3ff0ab524fba14fecdd5c97e9dca837687ac7f8effa37"
        assert set(summary.map_figures) == {back.sop_instance_uid}
        assert set(summary.map_figures[back.sop_instance_uid]) >= {"deletion auc", "insertion auc"}
        rows_by_file = {
            Path(r["file"]).name: r
            for r in csv.DictReader(io.StringIO((out / "predictions.csv").read_text()))
        }
        row = rows_by_file[name]
        for cls, p in summary.probabilities.items():
            assert p == pytest.approx(float(row[f"p_{cls}"]), abs=1e-6)
        assert float(row["gradcam_deletion_auc"]) == pytest.approx(
            summary.map_figures[back.sop_instance_uid]["deletion auc"], abs=1e-4
        )
        # the Segmentation of this image: the top 10 % of the same map
        (seg_uid,) = summary.segmentations
        (region,) = dicom_seg.read_segmentation(retrieved[seg_uid], uid)
        assert np.array_equal(region.mask, topk_region(computed, 10.0))


def test_wrong_token_stops_the_batch_before_any_work(server, tmp_path, monkeypatch, capsys):
    from cxr_viewer.cli import main

    monkeypatch.setenv("CXR_DICOMWEB_TOKEN", "wrong")
    code = main(
        [
            "batch",
            str(samples_dir() / PHANTOMS[0]),
            "--model",
            str(demo_bundle_dir()),
            "--explain",
            "gradcam",
            "--out",
            str(tmp_path / "out"),
            "--send",
            _url(server),
            "--dicomweb-auth",
            "bearer",
            "--quiet",
        ]
    )
    assert code != 0
    assert "HTTP 403" in capsys.readouterr().err
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_parametric_map_report_and_segmentation_over_dimse_too(tmp_path):
    """The new objects also go over C-STORE (pacs.PacsClient) to a DIMSE-only Orthanc."""
    from orthanc_support import ORTHANC_AE, OUR_AE, start_orthanc

    from cxr_viewer.core.interop import dicom_export as de
    from cxr_viewer.core.interop.dicom_results import export_objects
    from cxr_viewer.core.interop.pacs import PacsClient, PacsNode
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.model.inference import Prediction

    study = load_study(samples_dir() / PHANTOMS[0])
    yy, xx = np.mgrid[: study.rows, : study.columns].astype(np.float32)
    ex = de.ExplanationResult(
        "lime", "PNEUMONIA", np.sin(yy / 20) * np.cos(xx / 30), True, trust={"deletion_auc": 0.3}
    )
    model = de.ModelIdentity("demo", "1", ("NORMAL", "PNEUMONIA"), 0.5, "PNEUMONIA")
    pred = Prediction(np.array([0.4, 0.6]), ("NORMAL", "PNEUMONIA"), 0.5, "PNEUMONIA")
    written = export_objects(
        study,
        pred,
        model,
        [ex],
        tmp_path / "dcm",
        kinds=("pm", "sr", "seg"),
        model_sha256="ab" * 32,
    )
    assert [written.kinds[p] for p in written.files] == ["pm", "seg", "sr"]
    orthanc = start_orthanc(tmp_path / "orthanc")
    try:
        node = PacsNode(ORTHANC_AE, "127.0.0.1", orthanc.dicom_port, calling_ae=OUR_AE)
        sent = PacsClient(node, timeout=20).store(written.files)
        sent.raise_if_failed(node)
        assert len(sent.sent) == 3
        classes = sorted(
            orthanc.instance_tags(i)["SOPClassUID"] for i in orthanc.rest("/instances")
        )
        assert classes == sorted(
            [
                dicom_pm.PARAMETRIC_MAP_STORAGE,
                dicom_seg.SEGMENTATION_STORAGE,
                dicom_sr.COMPREHENSIVE_3D_SR,
            ]
        )
    finally:
        orthanc.stop()


def test_tls_is_verified_by_default(server, tmp_path):
    """DICOMweb over HTTPS (a TLS endpoint with a self-signed certificate in front of the
    Orthanc): refused by default, accepted with that certificate as the CA file, or with
    verification turned off."""
    from orthanc_dicomweb_support import TlsProxy, self_signed_certificate

    try:
        tls = self_signed_certificate(tmp_path / "tls")
    except FileNotFoundError:
        pytest.skip("the openssl command is not installed: no certificate for the TLS test")
    proxy = TlsProxy(server.http_port, tls)
    try:
        url = proxy.url + ROOT
        with pytest.raises(PacsError, match="TLS certificate is not trusted"):
            DicomWebClient(DicomWebNode(url, "bearer", token=TOKEN), timeout=10).echo()
        trusted = DicomWebNode(url, "bearer", token=TOKEN, ca_bundle=str(tls[0]))
        client = DicomWebClient(trusted, timeout=10)
        assert client.echo() >= 0
        client.raise_if_failed(client.store([samples_dir() / PHANTOMS[1]]))
        src = pydicom.dcmread(samples_dir() / PHANTOMS[1], stop_before_pixels=True)
        uids = {i.sop_instance_uid for i in client.find_instances(str(src.StudyInstanceUID))}
        assert src.SOPInstanceUID in uids
        unverified = DicomWebNode(url, "bearer", token=TOKEN, verify_tls=False)
        with pytest.warns(Warning, match="Unverified HTTPS request"):  # urllib3 says so
            assert DicomWebClient(unverified, timeout=10).echo() >= 0
    finally:
        proxy.stop()


def test_stored_map_at_model_resolution_reads_back_from_orthanc_into_the_viewer(
    server, tmp_path, qtbot
):
    """A Parametric Map at model resolution, STOW-RS'd under its film's study, retrieved with
    WADO-RS into a folder: opening the film there offers the map on the Explanations pane,
    its values the map computed (at model resolution, and resampled to the film's grid)."""
    from cxr_viewer.core.explain.base import Heatmap
    from cxr_viewer.core.interop import dicom_export as de
    from cxr_viewer.core.interop.dicom_results import export_objects
    from cxr_viewer.core.io import load_study
    from cxr_viewer.core.io.resize import resize_map
    from cxr_viewer.core.model.inference import Prediction
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.main_window import MainWindow
    from cxr_viewer.gui.settings import Settings

    film = tmp_path / "film" / "phantom_j2k.dcm"
    film.parent.mkdir()
    shutil.copy(samples_dir() / PHANTOMS[0], film)
    study = load_study(film)
    yy, xx = np.mgrid[:224, :224].astype(np.float32)
    small = np.exp(-((yy - 70) ** 2 + (xx - 140) ** 2) / (2 * 28.0**2)).astype(np.float32)
    hm = Heatmap(
        values=small, method="gradcam", target_class=1, class_name="PNEUMONIA", signed=False
    )
    classes = ("NORMAL", "PNEUMONIA")
    written = export_objects(
        study,
        Prediction(np.array([0.3, 0.7]), classes, 0.203, "PNEUMONIA"),
        de.ModelIdentity("demo-model", "2.1", classes, 0.203, "PNEUMONIA"),
        [de.ExplanationResult.from_heatmap(hm, study)],
        tmp_path / "written",
        kinds=("pm", "sr"),
        pm_resolution="model",
    )
    client = _bearer(server)
    client.raise_if_failed(client.store([film, *written.files]))
    uid = str(pydicom.dcmread(film, stop_before_pixels=True).SOPInstanceUID)
    study_uid = str(pydicom.dcmread(film, stop_before_pixels=True).StudyInstanceUID)
    pm_uid = str(pydicom.dcmread(written.of_kind("pm")[0], stop_before_pixels=True).SOPInstanceUID)
    got = client.retrieve_study(study_uid, tmp_path / "retrieved")
    (source,) = [
        p
        for p in got.files
        if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == uid
    ]
    ensure_app()
    win = MainWindow(Settings(tmp_path / "settings.ini"))
    qtbot.addWidget(win)
    win.show()
    win.open_paths([str(source)])
    qtbot.waitUntil(lambda: win.state.study is not None, timeout=20_000)
    panel = win.stored_panel
    qtbot.waitUntil(lambda: len(panel.boxes) >= 1, timeout=20_000)
    (ours,) = [ov for ov in panel.overlays if ov.name == f"stored:{pm_uid}"]
    assert ours.label.startswith("stored Grad-CAM PNEUMONIA · model demo-model")
    on_film = resize_map(small, study.rows, study.columns)
    assert np.abs(ours.heatmap.values - on_film).max() <= 1e-5
    (stored,) = [
        dicom_pm.read_parametric_map(pydicom.dcmread(p))
        for p in got.files
        if str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) == pm_uid
    ]
    assert stored.values.shape == (224, 224) and np.abs(stored.values - small).max() <= 1e-5
    index = panel.overlays.index(ours)
    panel.boxes[index].setChecked(True)
    item = win.overlay_view.overlay_item(ours.name)
    assert item is not None and item.isVisible()
