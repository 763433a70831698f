"""A real DICOMweb server for the tests: Orthanc with its DICOMweb plugin (Debian packages
``orthanc`` and ``orthanc-dicomweb``) on free localhost ports.

Like :func:`tests.orthanc_support.start_orthanc`, with the plugin loaded from its Debian path
and configured in the JSON configuration (root ``/dicom-web/``). With ``credentials``, a Lua
``IncomingHttpRequestFilter`` lets a DICOMweb request through only when it carries one of the
accepted ``Authorization`` headers (HTTP basic ``user:password``, or ``Bearer <token>``), so
both authentication modes are checked by the server itself; Orthanc's REST API (used by the
tests only to check what arrived) stays open to 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

from orthanc_support import (
    ORTHANC_AE,
    Orthanc,
    dicom_files,
    free_port,
    launch,
    orthanc_binary,
    serve,
)

PLUGIN_PATHS = (
    Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so"),
    Path("/usr/lib/orthanc/libOrthancDicomWeb.so"),
)
SKIP_REASON = (
    "Orthanc or its DICOMweb plugin is not installed (Debian: apt-get install orthanc "
    "orthanc-dicomweb; .ci/run does it where it may): the DICOMweb tests need a real server"
)
ROOT = "/dicom-web/"


class TlsProxy:
    """HTTPS in front of a local HTTP server: a TLS endpoint on a free 127.0.0.1 port (the
    certificate of :func:`self_signed_certificate`) that relays each connection's bytes to
    ``127.0.0.1:target_port``. (Debian's Orthanc 1.10 crashes on its own HTTPS requests, so
    the tests put TLS in front of it.)"""

    def __init__(self, target_port: int, tls: tuple[Path, Path]) -> None:
        self.target_port = target_port
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(tls[1]))
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self.listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()  # the client refused our certificate: the point of the test
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        t = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        t.start()
        pipe(client, upstream)
        t.join(timeout=30)
        client.close()
        upstream.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.listener.close()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """(certificate PEM, certificate + key PEM for Orthanc) for 127.0.0.1, made with the
    openssl command; FileNotFoundError when it is not installed."""
    exe = shutil.which("openssl")
    if exe is None:
        raise FileNotFoundError("openssl")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    both = folder / "orthanc.pem"
    both.write_text(cert.read_text() + key.read_text())
    return cert, both


def dicomweb_plugin() -> Path | None:
    return next((p for p in PLUGIN_PATHS if p.exists()), None)


def available() -> bool:
    return orthanc_binary() is not None and dicomweb_plugin() is not None


def _lua_filter(headers: list[str]) -> str:
    accepted = ", ".join(json.dumps(h) for h in headers)
    return f"""
local accepted = {{ {accepted} }}
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if string.sub(uri, 1, {len(ROOT)}) ~= "{ROOT}" then
    return ip == "127.0.0.1"
  end
  local given = httpHeaders["authorization"]
  for _, h in ipairs(accepted) do
    if given == h then return true end
  end
  return false
end
"""


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def start_orthanc_dicomweb(
    folder: Path,
    *,
    basic: tuple[str, str] | None = None,
    bearer: str | None = None,
    http_port: int | None = None,
) -> Orthanc:
    """Start Orthanc with the DICOMweb plugin; DICOMweb then needs ``basic`` (user, password)
    or ``bearer`` credentials when either is given. ``Orthanc.url + ROOT`` is the service."""
    exe, plugin = orthanc_binary(), dicomweb_plugin()
    if exe is None or plugin is None:
        raise FileNotFoundError("Orthanc or libOrthancDicomWeb.so")
    folder.mkdir(parents=True, exist_ok=True)
    http_port = http_port or free_port()
    dicom_port = free_port()
    while dicom_port == http_port:  # a caller's own http_port may lie in the helper's pool
        dicom_port = free_port()
    lua: list[str] = []
    headers = []
    if basic is not None:
        headers.append(basic_header(*basic))
    if bearer is not None:
        headers.append(f"Bearer {bearer}")
    if headers:
        script = folder / "auth.lua"
        script.write_text(_lua_filter(headers))
        lua.append(str(script))
    config = {
        "Name": "CXR Lens test DICOMweb",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": ORTHANC_AE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "Plugins": [str(plugin)],
        "LuaScripts": lua,
        "DicomWeb": {
            "Enable": True,
            "Root": ROOT,
            "EnableWado": False,
            "Host": f"127.0.0.1:{http_port}",
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
        "StableAge": 1,
        "ConcurrentJobs": 1,
        "HttpThreadsCount": 4,
        "SaveJobs": False,
    }
    return launch(exe, folder, config, (http_port, dicom_port, 0), "/plugins", _has_dicomweb)


def _has_dicomweb(orthanc: Orthanc, plugins) -> None:
    if "dicom-web" not in plugins:
        orthanc.stop()
        raise RuntimeError(f"Orthanc did not load the DICOMweb plugin:\n{orthanc.log_tail()}")


def main(argv: list[str] | None = None) -> int:
    """A local Orthanc with DICOMweb to try ``--send URL`` with; stops after --minutes."""
    import argparse
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.io import list_study_files

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--seed", nargs="*", default=[], help="DICOM files or folders to STOW-RS")
    p.add_argument("--minutes", type=float, default=30.0, help="run this long (default 30)")
    p.add_argument("--http-port", type=int, default=18043)
    args = p.parse_args(argv)
    if not available():
        print(SKIP_REASON, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cxr-orthanc-dicomweb-") as tmp:
        server = start_orthanc_dicomweb(Path(tmp), http_port=args.http_port)
        url = server.url + ROOT

        def setup() -> None:
            dicoms = dicom_files(args.seed, list_study_files)
            if dicoms:
                client = DicomWebClient(DicomWebNode(url))
                client.raise_if_failed(client.store(dicoms))
                print(f"stored {len(dicoms)} DICOM file(s)", flush=True)
            print(
                f"DICOMweb: {url} (web view {server.url}); stops in {args.minutes:g} min",
                flush=True,
            )

        serve(server, args.minutes, setup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
