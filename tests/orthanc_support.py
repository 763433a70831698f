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
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def start_orthanc(folder: Path) -> Orthanc:
    exe = orthanc_binary()
    if exe is None:
        raise FileNotFoundError("Orthanc")
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port, storage_port = free_port(), free_port(), free_port()
    while len({http_port, dicom_port, storage_port}) < 3:
        storage_port = free_port()
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
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
    )
    log.close()
    orthanc = Orthanc(proc, http_port, dicom_port, storage_port, folder)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Orthanc exited at start:\n{orthanc.log_tail()}")
        try:
            orthanc.rest("/system")
            return orthanc
        except OSError:
            time.sleep(0.2)
    orthanc.stop()
    raise RuntimeError(
        f"Orthanc did not answer within {START_TIMEOUT_S:g} s:\n{orthanc.log_tail()}"
    )
