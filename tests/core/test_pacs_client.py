"""The PACS client without a PACS: node validation, query keys, and the network failures that
need no server (nothing listening; a peer that accepts TCP but never answers). All loopback,
short timeouts; the tests against a real Orthanc are in tests/integration/test_pacs_orthanc.py."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from ports import free_port

pytest.importorskip("pynetdicom", reason='the "pacs" extra (pynetdicom) is not installed')

from cxr_viewer.core.errors import PacsError  # noqa: E402
from cxr_viewer.core.interop.pacs import (  # noqa: E402
    PacsClient,
    PacsNode,
    StudyRecord,
    _date_range,
    log_association,
)


def test_node_parses_ae_at_host_port_and_round_trips():
    node = PacsNode.parse("ORTHANC@127.0.0.1:4242", calling_ae="ME")
    assert (node.ae_title, node.host, node.port, node.calling_ae) == (
        "ORTHANC",
        "127.0.0.1",
        4242,
        "ME",
    )
    assert node.label == "ORTHANC@127.0.0.1:4242"
    assert PacsNode.from_dict(json.loads(json.dumps(node.as_dict()))) == node


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        (dict(ae_title="", host="h", port=1), "PACS AE title"),
        (dict(ae_title="A" * 17, host="h", port=1), "PACS AE title"),
        (dict(ae_title="A\\B", host="h", port=1), "PACS AE title"),
        (dict(ae_title="A", host="h", port=1, calling_ae="x\ny"), "calling AE title"),
        (dict(ae_title="A", host="h", port=0), "PACS port"),
        (dict(ae_title="A", host="h", port=70000), "PACS port"),
        (dict(ae_title="A", host=" ", port=104), "host"),
        (dict(ae_title="A", host="h", port=104, retrieve="ftp"), "retrieve method"),
    ],
)
def test_invalid_node_fields_are_clear_errors(kwargs, what):
    with pytest.raises(PacsError) as info:
        PacsNode(**kwargs)
    assert what in info.value.what and info.value.hint


@pytest.mark.parametrize("text", ["ORTHANC", "ORTHANC@host", "@h:1", "A@h:port"])
def test_unparseable_node_text(text):
    with pytest.raises(PacsError, match="AE@HOST:PORT"):
        PacsNode.parse(text)


def test_date_ranges():
    assert _date_range(None, None) == ""
    assert _date_range("2024-01-31", None) == "20240131-"
    assert _date_range(None, "20240131") == "-20240131"
    assert _date_range("20240101", "2024-01-01") == "20240101"
    with pytest.raises(PacsError, match="Invalid date range"):
        _date_range("20240201", "20240101")
    with pytest.raises(PacsError, match="Invalid to date"):
        _date_range(None, "2024-13-01")


def test_masked_record_hides_every_patient_field():
    rec = StudyRecord("1.2.3", "Doe^Jane", "P1", "19700101", "F", study_date="20240101")
    masked = rec.masked()
    assert [getattr(masked, k) for k in StudyRecord.PATIENT_FIELDS] == ["•••"] * 4
    assert (masked.study_instance_uid, masked.study_date) == ("1.2.3", "20240101")
    assert StudyRecord("1.2.3").masked().patient_name == ""  # nothing to hide stays empty


def test_nothing_listening(tmp_path):
    log = tmp_path / "a.log"
    node = PacsNode("PACS", "127.0.0.1", free_port())
    with pytest.raises(PacsError) as info:
        PacsClient(node, timeout=2, log_path=log).echo()
    assert "nothing answers at 127.0.0.1" in info.value.why
    (rec,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert (rec["operation"], rec["outcome"]) == ("C-ECHO", "not established")


def test_a_peer_that_never_answers_times_out(tmp_path):
    """A TCP listener that accepts and stays silent (e.g. the PACS's web port by mistake)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(10)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        node = PacsNode("PACS", "127.0.0.1", server.getsockname()[1])
        with pytest.raises(PacsError) as info:
            PacsClient(node, timeout=1, log_path=tmp_path / "a.log").find_studies()
        assert "did not accept the association within 1 s" in info.value.why
        assert "DICOM port" in info.value.hint
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()
        t.join(timeout=5)


def test_association_log_is_appended_and_survives_an_unwritable_path(tmp_path):
    log = tmp_path / "sub" / "a.log"
    log_association(log, {"operation": "C-ECHO"})
    log_association(log, {"operation": "C-FIND"})
    assert [json.loads(x)["operation"] for x in log.read_text().splitlines()] == [
        "C-ECHO",
        "C-FIND",
    ]
    blocker = tmp_path / "file"
    blocker.write_text("")
    log_association(blocker / "a.log", {"operation": "C-ECHO"})  # a warning, no exception


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--send", "ORTHANC-4242"], "not written as AE@HOST:PORT"),
        (["--dicom-out", "dcm", "--explain", "none"], "without an explanation"),
    ],
)
def test_batch_dicom_options_fail_clearly_before_the_model_loads(tmp_path, capsys, extra, message):
    from cxr_viewer.cli import main
    from cxr_viewer.core.paths import samples_dir

    missing_model = tmp_path / "no-such-bundle"  # never reached: the options are checked first
    args = [
        "batch",
        str(samples_dir()),
        "--model",
        str(missing_model),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args + extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
