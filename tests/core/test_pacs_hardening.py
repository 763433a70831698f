"""Hostile PACS peers (issue 26, items 2, 3, 4, 9, 10): each test builds its peer with real
pynetdicom on a free loopback port and checks that what the network sends is confined (file
names), bounded (bytes, seconds), checked (study and patient of retrieved instances, AE titles)
and parsed defensively (one bad C-FIND value). Limits are made small so that payloads just
above them stay cheap; benchmarks/probe_pacs_limits.py measures the real large payloads."""

from __future__ import annotations

import struct
import threading
import time
from pathlib import Path

import pytest
from ports import free_port

pytest.importorskip("pynetdicom", reason='the "pacs" extra (pynetdicom) is not installed')

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, evt  # noqa: E402
from pynetdicom.pdu_primitives import MaximumLengthNotification  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelFind as FIND,
)
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelGet as GET,
)
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelMove as MOVE,
)
from pynetdicom.sop_class import Verification  # noqa: E402

from cxr_viewer.core.errors import Cancelled, PacsError  # noqa: E402
from cxr_viewer.core.interop.pacs import (  # noqa: E402
    NetLimits,
    PacsClient,
    PacsNode,
    retrieve_folder,
    valid_uid,
)
from cxr_viewer.core.progress import CancelToken  # noqa: E402

PEER_AE = "HOSTILE"
OUR_AE = "CXRTEST"
STUDY = "1.2.826.0.1.3680043.8.498.1"


def _match(uid: str = STUDY, name: str = "Doe^Jane", pid: str = "P1", **extra) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyDate = "20240101"
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def _instance(study: str = STUDY, pid: str = "P1", name: str = "Doe^Jane", pixels: int = 64):
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = pid
    ds.PatientName = name
    ds.Modality = "OT"
    ds.Rows, ds.Columns = max(1, pixels // 64), 64
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(ds.Rows * ds.Columns)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


class Peer:
    """A pynetdicom SCP on a free loopback port with the given handlers."""

    def __init__(
        self, handlers, *, find=False, get=False, move=False, syntaxes=None, ssl_context=None
    ):
        self.ae = AE(ae_title=PEER_AE)
        self.ae.network_timeout = 5
        self.ae.acse_timeout = 5
        self.ae.dimse_timeout = 5
        ts = syntaxes or [ExplicitVRLittleEndian, "1.2.840.10008.1.2"]
        self.ae.add_supported_context(Verification)
        for sop, wanted in ((FIND, find), (GET, get), (MOVE, move)):
            if wanted:
                self.ae.add_supported_context(sop, ts)
        if move:  # the C-MOVE SCP associates with the destination to store
            self.ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        if get:
            self.ae.add_supported_context(
                SecondaryCaptureImageStorage, ts, scu_role=False, scp_role=True
            )
        self.requested: list[list[str]] = []
        handlers = [*handlers, (evt.EVT_REQUESTED, self._requested)]
        self.server = self.ae.start_server(
            ("127.0.0.1", 0), block=False, evt_handlers=handlers, ssl_context=ssl_context
        )
        self.port = int(self.server.server_address[1])

    def _requested(self, event) -> None:
        self.requested.append(
            [ts for cx in event.assoc.requestor.requested_contexts for ts in cx.transfer_syntax]
        )

    def node(self, **kw) -> PacsNode:
        return PacsNode(PEER_AE, "127.0.0.1", self.port, calling_ae=OUR_AE, **kw)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peers():
    made: list[Peer] = []

    def make(handlers, **kw) -> Peer:
        made.append(Peer(handlers, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _client(peer: Peer, tmp_path: Path, timeout: float = 5, **kw) -> PacsClient:
    return PacsClient(
        peer.node(**kw.pop("node", {})), timeout=timeout, log_path=tmp_path / "a.log", **kw
    )


# ---------------------------------------------------------------------------- item 2


@pytest.mark.parametrize(
    "uid",
    [
        "../GUIESCAPED",
        "/tmp/ABSOLUTE",
        "..",
        "",
        "1.2/../../x",
        "1.2." + "3" * 70,
        "a\x00b",
        "1.2.3\n",
    ],
)
def test_retrieve_folders_from_network_uids_stay_inside(tmp_path, uid):
    base = tmp_path / "retrieved"
    folder = retrieve_folder(base, uid)
    assert folder.parent == base.resolve()
    assert folder.name.startswith("study-") and not valid_uid(uid)


def test_a_valid_uid_names_its_folder_and_a_link_cannot_lead_outside(tmp_path):
    base = tmp_path / "retrieved"
    assert retrieve_folder(base, STUDY) == base.resolve() / STUDY
    base.mkdir()
    (base / "1.2.3").symlink_to(tmp_path)  # planted: a valid name that resolves elsewhere
    with pytest.raises(PacsError, match="Refused to write outside"):
        retrieve_folder(base, "1.2.3")


def test_a_hostile_study_uid_retrieves_nothing_anywhere(peers, tmp_path):
    """The peer answers C-FIND with ../GUIESCAPED and would C-GET two instances for it."""
    sent = []

    def on_get(event):
        yield 2
        for _ in range(2):
            sent.append(1)
            yield 0xFF00, _instance(study=event.identifier.StudyInstanceUID)

    peer = peers(
        [
            (evt.EVT_C_FIND, lambda e: iter([(0xFF00, _match("../GUIESCAPED"))])),
            (evt.EVT_C_GET, on_get),
        ],
        find=True,
        get=True,
    )
    client = _client(peer, tmp_path)
    (rec,) = client.find_studies()
    assert any("study_instance_uid" in p for p in rec.problems)
    base = tmp_path / "retrieved"
    folder = retrieve_folder(base, rec.study_instance_uid)
    with pytest.raises(PacsError, match="not a DICOM UID"):
        client.retrieve_study(rec.study_instance_uid, folder)
    assert sent == [] and not (tmp_path / "GUIESCAPED").exists()
    assert [p for p in tmp_path.rglob("*.dcm")] == []


# ---------------------------------------------------------------------------- item 3


def test_no_deflated_transfer_syntax_is_offered(peers, tmp_path):
    peer = peers([(evt.EVT_C_FIND, lambda e: iter([(0xFF00, _match())]))], find=True)
    assert len(_client(peer, tmp_path).find_studies()) == 1
    assert peer.requested and all(DeflatedExplicitVRLittleEndian not in r for r in peer.requested)


def test_a_peer_offering_only_deflate_gets_no_query(peers, tmp_path):
    peer = peers(
        [(evt.EVT_C_FIND, lambda e: iter([(0xFF00, _match())]))],
        find=True,
        syntaxes=[DeflatedExplicitVRLittleEndian],
    )
    with pytest.raises(PacsError, match="accepted none of the services") as info:
        _client(peer, tmp_path).find_studies()
    assert "Deflated" in info.value.why


def _find_peer(peers, answers, *, unlimited_pdu=False):
    """A C-FIND SCP answering ``answers`` (datasets), optionally ignoring our PDU size."""
    sent: list[int] = []

    def on_find(event):
        if unlimited_pdu:  # a peer that sends each message as one PDU, whatever we announced
            for item in event.assoc.requestor.user_information:
                if isinstance(item, MaximumLengthNotification):
                    item.maximum_length_received = 0  # 0: no limit (PS3.8 D.1)
        for ds in answers:
            if event.is_cancelled:
                return
            sent.append(1)
            yield 0xFF00, ds

    return peers([(evt.EVT_C_FIND, on_find)], find=True), sent


def test_an_oversized_identifier_drops_the_association_and_keeps_earlier_matches(peers, tmp_path):
    cap = 64 * 1024
    big = _match(uid=STUDY + ".3", name="X" * (cap + 1024))  # just above the cap
    peer, _sent = _find_peer(
        peers, [_match(STUDY + ".1"), _match(STUDY + ".2"), big, _match(STUDY + ".4")]
    )
    limits = NetLimits(max_identifier_bytes=cap)
    found = _client(peer, tmp_path, limits=limits).find_studies()
    assert [r.study_instance_uid for r in found] == [STUDY + ".1", STUDY + ".2"]
    assert "larger than 64 KiB" in found.problem and "dropped" in found.problem


def test_an_identifier_just_below_the_cap_is_kept_with_its_long_field_flagged(peers, tmp_path):
    cap = 64 * 1024
    peer, _ = _find_peer(peers, [_match(name="X" * (cap - 1024)), _match(STUDY + ".2")])
    found = _client(peer, tmp_path, limits=NetLimits(max_identifier_bytes=cap)).find_studies()
    assert len(found) == 2 and not found.problem
    assert found[0].patient_name == "" and found[0].patient_id == "P1"
    assert found[0].problems == ("patient_name: 64,512 bytes, over the 1,024-byte limit",)


def test_an_oversized_pdu_is_refused_before_it_is_read(peers, tmp_path):
    peer, _ = _find_peer(
        peers, [_match(STUDY + ".1"), _match(name="X" * (2 * 1024 * 1024))], unlimited_pdu=True
    )
    found = _client(peer, tmp_path).find_studies()  # default limits: PDUs up to 1 MiB
    assert [r.study_instance_uid for r in found] == [STUDY + ".1"]
    assert "announced a PDU of" in found.problem


def _move_peer(peers, send, *, study=STUDY):
    """A C-MOVE SCP that stores ``send`` (datasets) into the move destination."""

    def on_move(event):
        yield "127.0.0.1", _MOVE_PORT[0]
        yield len(send)
        for ds in send:
            yield 0xFF00, ds

    return peers([(evt.EVT_C_MOVE, on_move)], move=True)


_MOVE_PORT = [0]


def test_our_storage_scp_drops_an_oversized_instance(peers, tmp_path):
    cap = 128 * 1024
    _MOVE_PORT[0] = free_port()
    peer = _move_peer(peers, [_instance(pixels=1024), _instance(pixels=cap + 1024)])
    client = _client(
        peer,
        tmp_path,
        node={"retrieve": "move", "storage_port": _MOVE_PORT[0]},
        limits=NetLimits(max_instance_bytes=cap),
    )
    result = client.retrieve_study(STUDY, tmp_path / "out")
    assert len(result.files) == 1 and result.files[0].stat().st_size < cap
    assert "larger than 128 KiB" in result.problem and not result.complete


# ---------------------------------------------------------------------------- item 4


def _get_peer(peers, send):
    def on_get(event):
        yield len(send)
        for ds in send:
            yield 0xFF00, ds

    return peers([(evt.EVT_C_GET, on_get)], get=True)


def test_a_c_get_answered_with_another_study_or_patient_is_refused(peers, tmp_path):
    good = _instance()
    other_study = _instance(study=STUDY + ".99", pid="P2", name="SOMEONE^ELSE")
    other_patient = _instance(pid="P2", name="SOMEONE^ELSE")
    peer = _get_peer(peers, [good, other_study, other_patient])
    out = tmp_path / "out"
    result = _client(peer, tmp_path).retrieve_study(STUDY, out, patient_id="P1")
    assert [p.name for p in result.files] == [good.SOPInstanceUID + ".dcm"]
    assert sorted(p.name for p in out.iterdir()) == [good.SOPInstanceUID + ".dcm"]
    assert len(result.rejected) == 2 and not result.complete
    assert "another study" in result.problem and "another patient" in result.problem
    assert "SOMEONE" not in result.problem  # the other patient's data is not echoed


def test_a_c_get_drops_an_instance_just_over_the_cap_and_keeps_the_one_before(peers, tmp_path):
    cap = 128 * 1024
    small, big = _instance(pixels=cap - 4096), _instance(pixels=cap + 1024)
    peer = _get_peer(peers, [small, big])
    client = _client(peer, tmp_path, limits=NetLimits(max_instance_bytes=cap))
    result = client.retrieve_study(STUDY, tmp_path / "out")
    assert [p.name for p in result.files] == [small.SOPInstanceUID + ".dcm"]
    assert "an instance larger than 128 KiB" in result.problem and not result.complete
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [small.SOPInstanceUID + ".dcm"]


def test_a_c_get_of_only_foreign_instances_is_a_failure_not_a_success(peers, tmp_path):
    from cxr_viewer.core.interop.pacs import raise_for_retrieve

    peer = _get_peer(peers, [_instance(study=STUDY + ".7", name="SOMEONE^ELSE")])
    client = _client(peer, tmp_path)
    result = client.retrieve_study(STUDY, tmp_path / "out")
    assert result.files == [] and result.rejected
    with pytest.raises(PacsError, match="incomplete"):
        raise_for_retrieve(client.node, result)


def test_our_storage_scp_checks_the_called_ae_and_the_study(peers, tmp_path):
    """During a C-MOVE, a third party calls our SCP with a wrong called AE title, then with a
    spoofed calling AE title and an instance of another study; only the PACS's own instance
    of the requested study is kept."""
    _MOVE_PORT[0] = free_port()
    attempts: dict[str, bool] = {}

    def spoof(called: str, ds) -> None:
        ae = AE(ae_title=PEER_AE)  # the PACS's AE title, spoofed
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", _MOVE_PORT[0], ae_title=called)
        attempts[called] = assoc.is_established
        if assoc.is_established:
            status = assoc.send_c_store(ds)
            attempts["stored"] = status.Status == 0
            assoc.release()

    good = _instance()

    def on_move(event):
        spoof("SOMEONE", _instance())
        spoof(OUR_AE, _instance(study=STUDY + ".5", name="SOMEONE^ELSE"))
        yield "127.0.0.1", _MOVE_PORT[0]
        yield 1
        yield 0xFF00, good

    peer = peers([(evt.EVT_C_MOVE, on_move)], move=True)
    client = _client(peer, tmp_path, node={"retrieve": "move", "storage_port": _MOVE_PORT[0]})
    result = client.retrieve_study(STUDY, tmp_path / "out")
    assert attempts == {"SOMEONE": False, OUR_AE: True, "stored": False}
    assert [p.name for p in result.files] == [good.SOPInstanceUID + ".dcm"]
    assert len(result.rejected) == 1


# ---------------------------------------------------------------------------- item 9


def _dribbling_find_peer(peers, every: float):
    sent: list[int] = []
    stop = threading.Event()

    def on_find(event):
        for i in range(100):
            if i and stop.wait(every):
                return
            if event.is_cancelled or not event.assoc.is_established:
                return
            sent.append(i)
            yield 0xFF00, _match(f"{STUDY}.{i + 1}")

    peer = peers([(evt.EVT_C_FIND, on_find)], find=True)
    return peer, sent, stop


def test_find_studies_can_be_cancelled_while_a_peer_dribbles(peers, tmp_path):
    peer, sent, stop = _dribbling_find_peer(peers, every=30.0)
    cancel = CancelToken()

    def cancel_after_the_first_match() -> None:
        # after the first match (not at a fixed time: a busy machine may take a while to
        # associate), well before the second one, 30 s later
        while not sent and not stop.is_set():
            time.sleep(0.05)
        time.sleep(0.5)
        cancel.cancel()

    threading.Thread(target=cancel_after_the_first_match, daemon=True).start()
    try:
        with pytest.raises(Cancelled, match="1 match"):
            _client(peer, tmp_path, timeout=60).find_studies(cancel=cancel)
        # the peer's second match comes 30 s later, its third 60 s later: not waited for
    finally:
        stop.set()


def test_find_studies_stops_at_its_deadline_and_keeps_what_arrived(peers, tmp_path):
    peer, sent, stop = _dribbling_find_peer(peers, every=30.0)
    try:
        # 3 s: room for the association and the first match on a busy machine, and far
        # below the 30 s the second match would take
        limits = NetLimits(find_seconds=3.0)
        found = _client(peer, tmp_path, timeout=60, limits=limits).find_studies()
        assert [r.study_instance_uid for r in found] == [STUDY + ".1"]
        assert "after 3 s (the deadline)" in found.problem
    finally:
        stop.set()


def test_a_half_sent_answer_times_out_instead_of_hanging(peers, tmp_path):
    """The PACS starts a PDU and stalls: the read times out (network timeout) and the query
    fails with a clear error, while the peer is still stalled."""
    stop = threading.Event()

    def on_find(event):
        event.assoc.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">L", 1000) + bytes(10))
        stop.wait(30)
        yield 0xFF00, _match()

    peer = peers([(evt.EVT_C_FIND, on_find)], find=True)
    try:
        with pytest.raises(PacsError, match="no answer"):
            _client(peer, tmp_path, timeout=1).find_studies()
        assert not stop.is_set()  # returned while the peer still held the half-sent PDU
    finally:
        stop.set()


def _our_scp_threads() -> list[threading.Thread]:
    """The association threads of our storage SCP (AE title OUR_AE; the peers' are HOSTILE)."""
    return [
        t
        for t in threading.enumerate()
        if "AcceptorThread" in t.name
        and getattr(t, "acceptor", None) is not None
        and t.acceptor.ae_title == OUR_AE
    ]


def test_a_half_sent_message_to_our_scp_does_not_outlive_the_move(peers, tmp_path):
    """A third party opens an association with our storage SCP and stops half way through a
    PDU; the move finishes and none of our SCP's threads is left waiting for the rest."""
    _MOVE_PORT[0] = free_port()
    stalled: list[AE] = []
    ours: list[threading.Thread] = []

    def on_move(event):
        ae = AE(ae_title=PEER_AE)
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", _MOVE_PORT[0], ae_title=OUR_AE)
        assert assoc.is_established
        stalled.append(assoc)
        # a P-DATA-TF header announcing 1000 bytes, then 10 of them, then silence
        assoc.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">L", 1000) + bytes(10))
        time.sleep(0.2)  # our side has read the header and waits for the rest
        ours.extend(_our_scp_threads())
        yield "127.0.0.1", _MOVE_PORT[0]
        yield 1
        yield 0xFF00, _instance()

    peer = peers([(evt.EVT_C_MOVE, on_move)], move=True)
    client = _client(
        peer, tmp_path, timeout=30, node={"retrieve": "move", "storage_port": _MOVE_PORT[0]}
    )
    result = client.retrieve_study(STUDY, tmp_path / "out")
    assert len(result.files) == 1
    assert ours  # the stalled association's thread, seen while the move ran
    for t in ours:
        t.join(timeout=2)
    ours = [t for t in ours if t.is_alive()]
    assert ours == []  # joined at once: the stalled association was cut when the move ended
    for assoc in stalled:
        assoc.abort()


# ---------------------------------------------------------------------------- item 10


def test_one_bad_value_does_not_lose_the_other_matches(peers, tmp_path):
    bad = _match(STUDY + ".2")
    bad.add_new("NumberOfStudyRelatedInstances", "LO", "²")  # a superscript two, not a digit
    peer, _ = _find_peer(
        peers,
        [_match(STUDY + ".1", NumberOfStudyRelatedInstances="3"), bad, _match(STUDY + ".3")],
    )
    found = _client(peer, tmp_path).find_studies()
    assert [r.study_instance_uid for r in found] == [STUDY + ".1", STUDY + ".2", STUDY + ".3"]
    assert [r.instances for r in found] == [3, None, None]
    assert found[1].problems == ("instances: not a whole number",)
    assert found[1].patient_name == "Doe^Jane" and found.flagged == 1


def test_a_long_patient_name_is_dropped_not_decoded(peers, tmp_path):
    """The 10 MB name of the issue, scaled down: over the field cap, so never turned into a
    string (nor shown in the table); the match itself is kept."""
    peer, _ = _find_peer(peers, [_match(name="N" * 5000), _match(STUDY + ".2")])
    found = _client(peer, tmp_path, limits=NetLimits(max_field_bytes=4096)).find_studies()
    assert [r.patient_name for r in found] == ["", "Doe^Jane"]
    assert found[0].problems == ("patient_name: 5,000 bytes, over the 4,096-byte limit",)


def test_limits_are_validated():
    with pytest.raises(PacsError, match="max_pdu"):
        NetLimits(max_pdu=0)
    with pytest.raises(PacsError, match="find_seconds"):
        NetLimits(find_seconds=0)


# ---------------------------------------------------------------------------- TLS


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime as dt
    import ipaddress

    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_dimse_over_tls_with_a_checked_certificate(peers, tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    peer = peers(
        [(evt.EVT_C_FIND, lambda e: iter([(0xFF00, _match())]))], find=True, ssl_context=server_ctx
    )
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    client = _client(peer, tmp_path, tls=tls)
    assert client.echo() >= 0
    assert [r.study_instance_uid for r in client.find_studies()] == [STUDY]
    with pytest.raises(PacsError, match="Cannot connect"):  # plain DIMSE to a TLS port
        _client(peer, tmp_path, timeout=2).echo()
    untrusted = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # system CAs only
    with pytest.raises(PacsError, match="Cannot connect"):
        _client(peer, tmp_path, timeout=2, tls=untrusted).echo()
