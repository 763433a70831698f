"""A real PACS for the tests: Orthanc (Debian package ``orthanc``) on free localhost ports.

:func:`start_orthanc` writes a configuration into a temporary folder (storage and index
there too), starts ``Orthanc`` with it, waits (bounded) until its REST API answers and returns
an :class:`Orthanc` handle; :meth:`Orthanc.stop` ends it (terminate, then kill). Only the
REST API on 127.0.0.1 is used, and only to seed and to check what arrived; everything under
test goes through the DICOM port. Orthanc accepts associations only from the AE titles in its
configuration, from 127.0.0.1 (``DicomCheckModalityHost``), and its HTTP server refuses
non-local clients (``RemoteAccessAllowed: false``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ports import free_port

ORTHANC_AE = "ORTHANC"
OUR_AE = "CXRLENS"
START_TIMEOUT_S = 30.0
SKIP_REASON = (
    "Orthanc is not installed (Debian: apt-get install orthanc; .ci/run does it where it "
    "may): the PACS tests need a real PACS"
)


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None
    )


@dataclass
class Orthanc:
    process: subprocess.Popen
    http_port: int
    dicom_port: int
    storage_port: int  # where Orthanc sends C-MOVEs to our AE
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, path: str, body: object | None = None, method: str | None = None):
        """GET (or POST ``body``: text as is, anything else as JSON) and decode the JSON answer."""
        if body is None:
            data = None
        else:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def study_id(self, study_instance_uid: str) -> str:
        hits = self.rest("/tools/lookup", study_instance_uid, method="POST")
        (hit,) = [h for h in hits if h["Type"] == "Study"]
        return hit["ID"]

    def instance_tags(self, orthanc_id: str) -> dict:
        return self.rest(f"/instances/{orthanc_id}/tags?simplify")

    def log_tail(self, n: int = 40) -> str:
        log = self.folder / "orthanc.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:]) if log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def start_orthanc(folder: Path, ports: tuple[int, int, int] | None = None) -> Orthanc:
    """Start Orthanc with its files in ``folder``; ``ports`` = (HTTP, DICOM, our storage SCP)
    or free ones."""
    exe = orthanc_binary()
    if exe is None:
        raise FileNotFoundError("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    if ports is not None:
        http_port, dicom_port, storage_port = ports
    else:
        http_port, dicom_port, storage_port = free_port(), free_port(), free_port()
    allow = {f"Allow{op}": True for op in ("Echo", "Find", "Get", "Move", "Store")}
    config = {
        "Name": "CXR Lens test PACS",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [],
        "LuaScripts": [],
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "DicomModalities": {
            "cxrlens": {"AET": OUR_AE, "Host": "127.0.0.1", "Port": storage_port, **allow}
        },
        "DicomScpTimeout": 30,
        "StableAge": 1,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 4,
        "SaveJobs": False,
    }
    return launch(exe, folder, config, (http_port, dicom_port, storage_port), "/system")


def launch(
    exe: str,
    folder: Path,
    config: dict,
    ports: tuple[int, int, int],
    ready: str,
    check: Callable[[Orthanc, object], None] | None = None,
) -> Orthanc:
    """Write ``config`` to ``folder``, start Orthanc on it and wait until the REST path
    ``ready`` answers (``check`` may then refuse its answer by stopping Orthanc and raising)."""
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
    )
    log.close()
    orthanc = Orthanc(proc, *ports, folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start:\n{orthanc.log_tail()}")
        try:
            answer = orthanc.rest(ready)
        except OSError:
            time.sleep(0.2)
            continue
        if check is not None:
            check(orthanc, answer)
        return orthanc
    orthanc.stop()
    raise RuntimeError(
        f"Orthanc did not answer within {START_TIMEOUT_S:g} s:\n{orthanc.log_tail()}"
    )


def main(argv: list[str] | None = None) -> int:
    """A local Orthanc to try CXR Lens's PACS features with; stops by itself after --minutes."""
    import argparse
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from cxr_viewer.core.interop.pacs import PacsClient, PacsNode
    from cxr_viewer.core.io import list_study_files

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--seed", nargs="*", default=[], help="DICOM files or folders to C-STORE")
    p.add_argument("--minutes", type=float, default=30.0, help="run this long (default 30)")
    p.add_argument("--dicom-port", type=int, default=14242)
    p.add_argument("--http-port", type=int, default=18042)
    p.add_argument("--storage-port", type=int, default=11113, help="our C-MOVE storage port")
    args = p.parse_args(argv)
    if orthanc_binary() is None:
        print(SKIP_REASON, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cxr-orthanc-") as tmp:
        server = start_orthanc(Path(tmp), (args.http_port, args.dicom_port, args.storage_port))

        def setup() -> None:
            node = PacsNode(ORTHANC_AE, "127.0.0.1", args.dicom_port, calling_ae=OUR_AE)
            dicoms = dicom_files(args.seed, list_study_files)
            if dicoms:
                sent = PacsClient(node, timeout=20).store(dicoms)
                print(f"stored {len(sent.sent)} DICOM file(s)", flush=True)
            print(
                f"Orthanc: {ORTHANC_AE}@127.0.0.1:{args.dicom_port} (our AE {OUR_AE}, C-MOVE "
                f"to port {args.storage_port}); web/REST http://127.0.0.1:{args.http_port}; "
                f"stops in {args.minutes:g} min or on Ctrl+C",
                flush=True,
            )

        serve(server, args.minutes, setup)
    return 0


def dicom_files(sources: list[str], list_study_files: Callable) -> list[Path]:
    """The DICOM files of the --seed files and folders."""
    files = [f for s in sources for f in list_study_files(s)]
    return [f for f in files if str(f).lower().endswith((".dcm", ".dicom"))]


def serve(server: Orthanc, minutes: float, setup: Callable[[], None]) -> None:
    """Run ``setup``, then keep ``server`` up for ``minutes`` (or until it exits or Ctrl+C);
    stop it in every case."""
    try:
        setup()
        deadline = time.monotonic() + minutes * 60
        while time.monotonic() < deadline and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
