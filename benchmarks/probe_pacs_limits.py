"""Hostile-PACS probe: what one checkout's PACS client does against peers that send too much,
too slowly, or the wrong things (issue 26, items 2, 3, 4, 9, 10), with the real payloads.

Each scenario runs a hostile pynetdicom peer in one process and our client in another (so the
peer's own memory is not counted), on free loopback ports, and prints per scenario: the
client's peak RSS (resource.getrusage), elapsed seconds, and what happened (matches kept,
files written, files outside the destination). Run it once per checkout to compare::

    python benchmarks/probe_pacs_limits.py --code /path/to/old/checkout --json before.json
    python benchmarks/probe_pacs_limits.py --json after.json
    python benchmarks/probe_pacs_limits.py --only name10mb,dribble   # a subset

A baseline is measured in the same run: the client process that only imports the client and
does one ordinary C-FIND (``baseline``); the other peaks are to be read against it. The big
scenarios need about 3 GB of free memory (the old client's peaks) and 1 GiB of disk in the
temporary folder (the C-STORE file the peer streams from); nothing leaves 127.0.0.1.

Figures of the client before (the checkout without the limits) / after, on a 2-core Linux VM
shared with other jobs (load average about 15, so the seconds are inflated; peaks are not),
with the two commands above: peak RSS baseline 63 / 63 MB; deflate 3,136 MB / 63 MB (not
offered); name200mb 864 / 79 MB (dropped at 16 MiB, the match before it kept); name10mb
103 / 83 MB; table10mb 546 MB and 18.1 s / 154 MB and 0.06 s; cstore1g 3,136 MB and a
1,024 MB file / 320 MB and no file; traversal 2 / 0 files outside the destination; dribble
91.4 s (10 matches, no way to cancel) / 2.1 s (cancelled); halfsent exit delayed 59.8 / 0.4 s.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PEER_AE, OUR_AE = "HOSTILE", "CXRLENS"
STUDY = "1.2.826.0.1.3680043.8.498.1"
MiB = 1024 * 1024

SCENARIOS = {
    "baseline": "one ordinary C-FIND match",
    "traversal": "C-FIND answers StudyInstanceUID '../GUIESCAPED'; C-GET sends 2 instances",
    "deflate": "C-FIND answer in Deflated Explicit VR: ~1 MB on the wire, 1 GiB inflated",
    "name200mb": "a C-FIND match with a 200 MB PatientName (after one good match)",
    "name10mb": "a C-FIND match with a 10 MB PatientName, then a good match",
    "badvalue": "3 matches, the second with NumberOfStudyRelatedInstances = '²'",
    "foreign": "C-GET answered with another patient's study (SOMEONE^ELSE)",
    "spoof": "during a C-MOVE, a third party stores into our SCP calling it 'ANYONE'",
    "cstore1g": "during a C-MOVE, a 1 GiB C-STORE into our storage SCP",
    "dribble": "C-FIND: one match every 10 s, 10 matches; Cancel pressed after 2 s",
    "halfsent": "during a C-MOVE, a third party sends half a PDU to our SCP and stalls 60 s",
    "table10mb": "the query dialog parses and shows a match with a 10 MB PatientName (offscreen)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- the peer


def _match(uid=STUDY, name="Doe^Jane", pid="P1", **extra):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = uid
    ds.PatientName = name
    ds.PatientID = pid
    ds.StudyDate = "20240101"
    for k, v in extra.items():
        setattr(ds, k, v)
    return ds


def _instance(study=STUDY, pid="P1", name="Doe^Jane"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = pid, name, "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 8, 8, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(64)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _deflated_bomb(inflated: int) -> bytes:
    """A C-FIND identifier in Deflated Explicit VR Little Endian whose last element (a UT)
    holds ``inflated`` bytes: built by streaming, so the peer never holds it inflated."""

    def short(group, elem, vr, value: bytes) -> bytes:
        value += b" " * (len(value) % 2)
        return struct.pack("<HH2sH", group, elem, vr, len(value)) + value

    head = (
        short(0x0008, 0x0052, b"CS", b"STUDY")
        + short(0x0010, 0x0010, b"PN", b"BOMB")
        + short(0x0020, 0x000D, b"UI", STUDY.encode() + b"\0")
        + struct.pack("<HH2sHL", 0x0040, 0xA160, b"UT", 0, inflated)
    )
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = [z.compress(head)]
    chunk = b"A" * MiB
    for _ in range(inflated // MiB):
        out.append(z.compress(chunk))
    out.append(z.flush())
    return b"".join(out)


def run_peer(name: str, port: int, dest_port: int, tmp: Path) -> None:
    import pynetdicom.service_class as sc
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
    )
    from pynetdicom import AE, _config, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind as FIND,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet as GET,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelMove as MOVE,
    )

    ae = AE(ae_title=PEER_AE)
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 120
    plain = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    ae.add_supported_context(FIND, [DeflatedExplicitVRLittleEndian] if name == "deflate" else plain)
    ae.add_supported_context(GET, plain)
    ae.add_supported_context(MOVE, plain)
    ae.add_supported_context(SecondaryCaptureImageStorage, plain, scu_role=False, scp_role=True)
    ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
    stop = threading.Event()

    if name == "deflate":
        bomb = _deflated_bomb(1024 * MiB)
        print(f"peer: deflated identifier of {len(bomb):,} bytes", file=sys.stderr, flush=True)
        encode = sc.encode

        def patched(ds, *a, **kw):  # this peer's encoder sends the prepared bytes instead
            return bomb if ds.get("PatientName") == "BOMB" else encode(ds, *a, **kw)

        sc.encode = patched

    def on_find(event):
        if name == "traversal":
            yield 0xFF00, _match("../GUIESCAPED")
        elif name == "deflate":
            yield 0xFF00, _match(name="BOMB")
        elif name == "name200mb":
            yield 0xFF00, _match(STUDY + ".1")
            yield 0xFF00, _match(STUDY + ".2", name="N" * (200 * MiB))
        elif name == "name10mb":
            yield 0xFF00, _match(STUDY + ".1", name="N" * (10 * MiB))
            yield 0xFF00, _match(STUDY + ".2")
        elif name == "badvalue":
            bad = _match(STUDY + ".2")
            bad.add_new("NumberOfStudyRelatedInstances", "LO", "²")
            for ds in (_match(STUDY + ".1"), bad, _match(STUDY + ".3")):
                yield 0xFF00, ds
        elif name == "dribble":
            for i in range(10):
                if i and stop.wait(10):
                    return
                yield 0xFF00, _match(f"{STUDY}.{i + 1}")
        else:
            yield 0xFF00, _match()

    def on_get(event):
        uid = str(event.identifier.StudyInstanceUID)
        if name == "foreign":
            yield 1
            yield 0xFF00, _instance(study=STUDY + ".99", pid="P2", name="SOMEONE^ELSE")
            return
        yield 2
        for _ in range(2):
            yield 0xFF00, _instance(study=uid)

    def third_party(called: str):
        other = AE(ae_title=PEER_AE)  # the PACS's AE title, spoofed
        other.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        return other.associate("127.0.0.1", dest_port, ae_title=called)

    def on_move(event):
        if name == "spoof":
            assoc = third_party("ANYONE")
            if assoc.is_established:
                assoc.send_c_store(_instance(study=STUDY + ".5", name="SOMEONE^ELSE"))
                assoc.release()
        elif name == "cstore1g":
            path = tmp / "big.dcm"
            ds = _instance()
            ds.Rows, ds.Columns = 16384, 32768
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
            with open(path, "wb") as fh:  # the file is written in pieces, never held whole
                ds.PixelData = b""
                ds.save_as(fh, enforce_file_format=True)
            _append_big_pixel_data(path, 16384 * 32768 * 2)
            _config.STORE_SEND_CHUNKED_DATASET = True
            assoc = third_party(OUR_AE)
            if assoc.is_established:
                status = assoc.send_c_store(path)
                print(f"peer: 1 GiB C-STORE status {status}", file=sys.stderr, flush=True)
                if assoc.is_established:
                    assoc.release()
        elif name == "halfsent":
            assoc = third_party(OUR_AE)
            assoc.dul.socket.socket.sendall(b"\x04\x00" + struct.pack(">L", 1000) + bytes(10))
            threading.Timer(60, assoc.abort).start()
        yield "127.0.0.1", dest_port
        yield 1
        yield 0xFF00, _instance()

    ae.start_server(
        ("127.0.0.1", port),
        block=True,
        evt_handlers=[
            (evt.EVT_C_FIND, on_find),
            (evt.EVT_C_GET, on_get),
            (evt.EVT_C_MOVE, on_move),
        ],
    )


def _append_big_pixel_data(path: Path, size: int) -> None:
    """Replace the empty Pixel Data element at the end of ``path`` by one of ``size`` bytes."""
    raw = path.read_bytes()
    tag = struct.pack("<HH", 0x7FE0, 0x0010)
    at = raw.rindex(tag)
    with open(path, "r+b") as fh:
        fh.seek(at)
        fh.truncate()
        fh.write(tag + b"OW\0\0" + struct.pack("<L", size))
        chunk = bytes(MiB)
        for _ in range(size // MiB):
            fh.write(chunk)


# ---------------------------------------------------------------------------- the client


def run_table(tmp: Path) -> dict:
    """Parse two raw identifiers (as pynetdicom hands them over) and fill the dialog's table."""
    import io

    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import read_dataset
    from pydicom.filewriter import write_dataset

    from cxr_viewer.core.interop import pacs
    from cxr_viewer.gui.app import ensure_app
    from cxr_viewer.gui.network import Network
    from cxr_viewer.gui.pacs_dialogs import QueryRetrieveDialog
    from cxr_viewer.gui.settings import Settings
    from cxr_viewer.gui.state import ViewerState
    from cxr_viewer.gui.worker import WorkerThread

    app = ensure_app()

    def raw(ds):
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, True
        write_dataset(fp, ds)
        return read_dataset(io.BytesIO(fp.getvalue()), True, True)

    identifiers = [raw(_match(name="N" * (10 * MiB))), raw(_match(STUDY + ".2"))]
    worker = WorkerThread("cxr-net")
    dialog = QueryRetrieveDialog(Settings(tmp / "settings.ini"), ViewerState(), Network(worker))
    t0 = time.monotonic()
    dialog.records = [pacs._record(d) for d in identifiers]
    dialog.fill_table()
    dialog.show()
    app.processEvents()
    out = {"seconds": round(time.monotonic() - t0, 2), "matches": dialog.table.rowCount()}
    out["name_chars_shown"] = len(dialog.table.item(0, 0).text())
    dialog.done(0)
    worker.shutdown()
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def run_client(name: str, port: int, dest_port: int, tmp: Path) -> dict:
    from cxr_viewer.core.interop import pacs

    if name == "table10mb":
        return run_table(tmp)

    kind = "move" if name in ("spoof", "cstore1g", "halfsent") else "get"
    node = pacs.PacsNode(
        PEER_AE, "127.0.0.1", port, calling_ae=OUR_AE, storage_port=dest_port, retrieve=kind
    )
    client = pacs.PacsClient(node, timeout=120, log_path=tmp / "associations.log")
    base = tmp / "retrieved"
    out: dict = {}
    t0 = time.monotonic()
    try:
        if name in ("traversal", "foreign", "spoof", "cstore1g", "halfsent"):
            uid = STUDY
            if name == "traversal":
                (rec,) = client.find_studies()
                uid = rec.study_instance_uid
            if hasattr(pacs, "retrieve_folder"):  # what this checkout's dialog does
                folder = pacs.retrieve_folder(base, uid)
            else:
                folder = base / uid
            result = client.retrieve_study(uid, folder)
            out["returned_at"] = time.time()
            out["kept"] = len(result.files)
            out["complete"] = result.complete
            out["problem"] = result.problem[:160]
        elif name == "dribble":
            kw = {}
            if "cancel" in inspect.signature(client.find_studies).parameters:
                from cxr_viewer.core.progress import CancelToken

                kw["cancel"] = token = CancelToken()
                threading.Timer(2.0, token.cancel).start()
            out["matches"] = len(client.find_studies(**kw))
        else:
            found = client.find_studies()
            out["matches"] = len(found)
            out["flagged"] = sum(1 for r in found if getattr(r, "problems", ()))
            out["problem"] = getattr(found, "problem", "")[:160]
    except Exception as exc:
        out["raised"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    out["seconds"] = round(time.monotonic() - t0, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


# ---------------------------------------------------------------------------- orchestration


def scenario(name: str, code: Path) -> dict:
    port, dest_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="probe-pacs-") as tmpdir:
        tmp = Path(tmpdir)
        work = tmp / "work" / "deep"  # '../GUIESCAPED' from retrieved/ lands in work/
        work.mkdir(parents=True)
        env = dict(os.environ, PYTHONPATH=str(code), QT_QPA_PLATFORM="offscreen")
        me = [sys.executable, str(Path(__file__).resolve())]
        args = ["--port", str(port), "--dest-port", str(dest_port), "--tmp", str(work)]
        peer = subprocess.Popen([*me, "--peer", name, *args], env=env)
        try:
            for _ in range(600):  # the deflate peer prepares its payload first
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            client = subprocess.run(
                [*me, "--client", name, *args], env=env, capture_output=True, text=True
            )
            exited = time.time()
        finally:
            peer.terminate()
            peer.wait(timeout=30)
        try:
            out = json.loads(client.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            out = {"raised": f"client died ({client.returncode}): {client.stderr[-300:]}"}
        if "returned_at" in out:
            out["exit_delay_s"] = round(exited - out.pop("returned_at"), 1)
        # counted once the client process has exited (its SCP threads may write until then)
        files = [p for p in tmp.rglob("*.dcm") if p.name != "big.dcm"]
        out["dcm_written"] = len(files)
        out["dcm_outside_dest"] = sum(1 for p in files if (work / "retrieved") not in p.parents)
        largest = max((p.stat().st_size for p in files), default=0)
        out["largest_written_mb"] = round(largest / MiB, 1)
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose cxr_viewer to test")
    ap.add_argument("--only", default="", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dest-port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.peer:
        run_peer(a.peer, a.port, a.dest_port, a.tmp)
        return 0
    if a.client:
        print(json.dumps(run_client(a.client, a.port, a.dest_port, a.tmp)))
        return 0
    names = [n for n in a.only.split(",") if n] or list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    print(f"code: {a.code.resolve()}")
    results = {}
    for name in names:
        results[name] = scenario(name, a.code.resolve())
        print(f"{name:10s} {SCENARIOS[name]}\n           {json.dumps(results[name])}", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"code": str(a.code.resolve()), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
