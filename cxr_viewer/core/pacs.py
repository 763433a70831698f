"""DICOM networking with a PACS (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

A :class:`PacsNode` names the remote application entity (AE title, host, port) and our side
(calling AE title; the port of our own storage SCP for C-MOVE). A :class:`PacsClient` runs one
operation per association, with timeouts on every step, and turns every failure into a
:class:`~cxr_viewer.core.errors.PacsError` (what / why / what to do):

- the TCP connection fails or times out, the PACS rejects or aborts the association;
- a C-FIND / C-GET / C-MOVE / C-STORE answers with a failure status.

Retrieves write each arriving instance to the destination folder at once (atomically:
temporary name, then rename), so an aborted, cancelled or partly failed retrieve keeps what
arrived; :class:`RetrieveResult` says what arrived and what did not. Every association is
appended to the association log (JSON lines: when, who — our user and calling AE —, which
node, which operation, outcome, counts), without patient names or IDs.

Nothing here contacts any node unless called; the viewer and ``cxr-viewer batch --send`` only
call it on the user's request.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import Cancelled, PacsError
from cxr_viewer.core.progress import CancelToken

if TYPE_CHECKING:  # pydicom and pynetdicom are imported where used (the PACS extra)
    from collections.abc import Iterator

    from pydicom.dataset import Dataset
    from pydicom.uid import UID
    from pynetdicom import AE
    from pynetdicom.association import Association
    from pynetdicom.events import Event

DEFAULT_CALLING_AE = "CXRLENS"
DEFAULT_TIMEOUT = 15.0
#: at most this many C-FIND matches are kept (the rest is cancelled: refine the query)
MAX_FIND_RESULTS = 1000

ProgressCb = Callable[[int, int], None]  # (done, total or 0 when unknown)

log = logging.getLogger("cxr_viewer.pacs")

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, no controls


def _check_ae(title: str, what: str) -> str:
    title = str(title).strip()
    if not title or not _AE_RE.match(title):
        raise PacsError(
            f"Invalid {what} '{title}'",
            "a DICOM AE title is 1 to 16 printable ASCII characters without a backslash",
            "Enter the AE title the PACS administrator gave you (e.g. ORTHANC).",
        )
    return title


def _check_port(port: Any, what: str) -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        value = -1
    if not 1 <= value <= 65535:
        raise PacsError(
            f"Invalid {what} '{port}'",
            "a TCP port is a whole number from 1 to 65535",
            "Enter the PACS's DICOM port (often 104, 4242 or 11112).",
        )
    return value


@dataclass(frozen=True)
class PacsNode:
    """A remote DICOM node and how we present ourselves to it.

    Attributes
    ----------
    ae_title, host, port:
        The PACS's AE title, host name or address, DICOM port.
    calling_ae:
        Our AE title (the PACS must know it to answer, and for C-MOVE to send back to it).
    name:
        A label for the settings list.
    storage_port:
        The port of our own storage SCP, where a C-MOVE sends the images (the PACS must have
        our calling AE registered with this host and port).
    listen_host:
        The address our storage SCP binds to (loopback by default).
    retrieve:
        ``"get"`` (C-GET, no incoming connection needed) or ``"move"`` (C-MOVE).
    """

    ae_title: str
    host: str
    port: int
    calling_ae: str = DEFAULT_CALLING_AE
    name: str = ""
    storage_port: int = 11113
    listen_host: str = "127.0.0.1"
    retrieve: str = "get"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", _check_ae(self.ae_title, "PACS AE title"))
        object.__setattr__(self, "calling_ae", _check_ae(self.calling_ae, "calling AE title"))
        object.__setattr__(self, "port", _check_port(self.port, "PACS port"))
        object.__setattr__(self, "storage_port", _check_port(self.storage_port, "storage port"))
        if not str(self.host).strip():
            raise PacsError("Invalid PACS host", "the host is empty", "Enter a host name or IP.")
        if self.retrieve not in ("get", "move"):
            raise PacsError(
                f"Invalid retrieve method '{self.retrieve}'",
                "it is either 'get' (C-GET) or 'move' (C-MOVE)",
                "Choose one of the two.",
            )

    @classmethod
    def parse(cls, text: str, **kwargs: Any) -> PacsNode:
        """``AE@HOST:PORT`` (as ``cxr-viewer batch --send`` takes it)."""
        m = re.match(r"^([^@]+)@(.+):(\d+)$", str(text).strip())
        if not m:
            raise PacsError(
                f"Cannot read the PACS node '{text}'",
                "it is not written as AE@HOST:PORT",
                "Write it like ORTHANC@127.0.0.1:4242.",
            )
        return cls(ae_title=m.group(1), host=m.group(2), port=int(m.group(3)), **kwargs)

    @property
    def label(self) -> str:
        return self.name or f"{self.ae_title}@{self.host}:{self.port}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PacsNode:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class StudyRecord:
    """One C-FIND match at study level."""

    study_instance_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    modalities: str = ""
    instances: int | None = None

    PATIENT_FIELDS = ("patient_name", "patient_id", "patient_birth_date", "patient_sex")

    def masked(self) -> StudyRecord:
        """The same record with the patient fields hidden (the "hide patient fields" setting)."""
        hidden: dict[str, Any] = {k: "•••" if getattr(self, k) else "" for k in self.PATIENT_FIELDS}
        return replace(self, **hidden)


@dataclass
class RetrieveResult:
    """What a C-GET / C-MOVE brought back (kept even when it failed part way)."""

    files: list[Path] = field(default_factory=list)
    failed: int = 0
    warning: int = 0
    cancelled: bool = False
    problem: str = ""

    @property
    def complete(self) -> bool:
        return not (self.failed or self.cancelled or self.problem)


@dataclass
class StoreResult:
    """What a C-STORE run sent."""

    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def raise_if_failed(self, node: PacsNode) -> None:
        if self.failed:
            first = "; ".join(f"{p.name}: {why}" for p, why in self.failed[:3])
            raise PacsError(
                f"{len(self.failed)} of {len(self.failed) + len(self.sent)} file(s) were not "
                f"stored on {node.label}",
                first,
                "Check the PACS's log and that it accepts these SOP classes; files that were "
                "stored stay stored.",
            )


# ---------------------------------------------------------------------------- association log


def default_log_path() -> Path:
    """``$CXR_PACS_LOG``, else ``$XDG_STATE_HOME/cxr-lens/pacs-associations.log``."""
    env = os.environ.get("CXR_PACS_LOG")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "cxr-lens" / "pacs-associations.log"


_LOG_LOCK = threading.Lock()


def log_association(path: Path | None, record: dict[str, Any]) -> None:
    """Append one JSON line to the association log (never fails the operation itself)."""
    target = path or default_log_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _LOG_LOCK, open(target, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as exc:
        log.warning("cannot write the PACS association log %s: %s", target, exc)


# ---------------------------------------------------------------------------- contexts


def _uids() -> tuple[list[UID], list[UID]]:
    from pydicom import uid

    compressed = [
        uid.JPEG2000,
        uid.JPEG2000Lossless,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
        uid.RLELossless,
    ]
    plain = [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]
    return compressed, plain


def _storage_classes() -> tuple[list[UID], list[UID]]:
    """(image SOP classes, non-image SOP classes) we accept when retrieving."""
    from pydicom import uid

    images = [
        uid.ComputedRadiographyImageStorage,
        uid.DigitalXRayImageStorageForPresentation,
        uid.DigitalXRayImageStorageForProcessing,
        uid.SecondaryCaptureImageStorage,
        uid.MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
        uid.MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
        uid.CTImageStorage,
        uid.MRImageStorage,
        uid.DigitalMammographyXRayImageStorageForPresentation,
    ]
    other = [
        uid.ComprehensiveSRStorage,
        uid.EnhancedSRStorage,
        uid.BasicTextSRStorage,
        uid.KeyObjectSelectionDocumentStorage,
        uid.GrayscaleSoftcopyPresentationStateStorage,
    ]
    return images, other


def _retrieve_contexts(ae: AE, *, as_scp: bool) -> list[UID]:
    """Storage contexts for receiving: per image class, one context per compressed transfer
    syntax (so the PACS sends each image as it stores it) and one uncompressed."""
    compressed, plain = _uids()
    images, other = _storage_classes()
    if as_scp:
        for sop in images:
            ae.add_supported_context(sop, compressed + plain)
        for sop in other:
            ae.add_supported_context(sop, plain)
        return images + other
    for sop in images:
        for ts in compressed:
            ae.add_requested_context(sop, ts)
        ae.add_requested_context(sop, plain)
    for sop in other:
        ae.add_requested_context(sop, plain)
    return images + other


# ---------------------------------------------------------------------------- status texts


def _status_text(code: int | None, service: str) -> str:
    if code is None:
        return "no answer (timeout or the association was aborted)"
    from pynetdicom import status as st

    table = {
        "find": st.QR_FIND_SERVICE_CLASS_STATUS,
        "get": st.QR_GET_SERVICE_CLASS_STATUS,
        "move": st.QR_MOVE_SERVICE_CLASS_STATUS,
        "store": st.STORAGE_SERVICE_CLASS_STATUS,
    }.get(service, {})
    entry = table.get(code) or st.GENERAL_STATUS.get(code)
    if entry is None and 0xA700 <= code <= 0xA7FF:
        entry = ("Failure", "out of resources")
    if entry is None and 0xC000 <= code <= 0xCFFF:
        entry = ("Failure", "unable to process")
    text = f"{entry[0]}: {entry[1]}" if entry else "unknown status"
    return f"status 0x{code:04X} ({text})"


def _safe_name(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z._-]", "_", text)[:128] or "instance"


def write_instance(dest: Path, dataset: Dataset, file_meta: Dataset) -> Path:
    """Write a received instance to ``dest/<SOPInstanceUID>.dcm`` (temp name, then rename)."""
    from pydicom.dataset import FileMetaDataset

    dataset.file_meta = FileMetaDataset(file_meta)
    name = _safe_name(str(dataset.get("SOPInstanceUID", "") or "instance")) + ".dcm"
    final = dest / name
    tmp = dest / (name + ".part")
    dataset.save_as(tmp, enforce_file_format=True)
    os.replace(tmp, final)
    return final


# ---------------------------------------------------------------------------- the client


class PacsClient:
    """DICOM network operations with one node; one association per call.

    Parameters
    ----------
    node:
        The remote node.
    timeout:
        Seconds for the TCP connection, the association negotiation, each DIMSE answer and
        network silence.
    log_path:
        The association log (default :func:`default_log_path`).
    """

    def __init__(
        self, node: PacsNode, *, timeout: float = DEFAULT_TIMEOUT, log_path: Path | None = None
    ) -> None:
        self.node = node
        self.timeout = float(timeout)
        self.log_path = log_path

    # -- plumbing ---------------------------------------------------------------------------

    def _ae(self) -> AE:
        try:
            from pynetdicom import AE
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise PacsError(
                "Cannot talk to a PACS",
                "the pynetdicom package is not installed",
                'Install the PACS extra: python -m pip install -e ".[pacs]"',
            ) from exc
        pn_log = logging.getLogger("pynetdicom")
        if pn_log.level == logging.NOTSET:  # its errors become our PacsErrors instead
            pn_log.setLevel(logging.CRITICAL)
        ae = AE(ae_title=self.node.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        ae.maximum_associations = 2
        return ae

    def _log(self, operation: str, started: float, outcome: str, **detail: Any) -> None:
        record = {
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "user": _user(),
            "calling_ae": self.node.calling_ae,
            "called_ae": self.node.ae_title,
            "host": self.node.host,
            "port": self.node.port,
            "operation": operation,
            "outcome": outcome,
            "seconds": round(time.monotonic() - started, 3),
        }
        record.update({k: v for k, v in detail.items() if v not in (None, "")})
        log_association(self.log_path, record)

    def _why_not_established(self, assoc: Association) -> tuple[str, str]:
        node = self.node
        if assoc.is_rejected:
            return (
                f"it refused the association (it does not accept calling AE "
                f"'{node.calling_ae}' for called AE '{node.ae_title}')",
                f"Ask the PACS administrator to register AE '{node.calling_ae}' for this "
                "computer, and check the PACS's AE title.",
            )
        try:
            with socket.create_connection((node.host, node.port), timeout=min(self.timeout, 5)):
                reachable = True
        except OSError as exc:
            reachable = False
            reason = exc.strerror or type(exc).__name__
        if not reachable:
            return (
                f"nothing answers at {node.host}:{node.port} ({reason})",
                "Check the host and port, that the PACS is running and that no firewall "
                "blocks the port.",
            )
        return (
            f"the connection opened but the PACS did not accept the association within "
            f"{self.timeout:g} s (it aborted or did not answer)",
            "Check that the port is the PACS's DICOM port (not its web port) and its AE title.",
        )

    @contextmanager
    def _association(
        self, ae: AE, operation: str, started: float, **kwargs: Any
    ) -> Iterator[Association]:
        node = self.node
        try:
            assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, **kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            self._log(operation, started, "not established", error=str(exc))
            raise PacsError(
                f"Cannot connect to {node.label} for {operation}",
                f"{type(exc).__name__}: {exc}",
                "Check the node's host, port and AE titles in the settings.",
            ) from exc
        if not assoc.is_established:
            why, hint = self._why_not_established(assoc)
            self._log(operation, started, "not established", error=why)
            raise PacsError(f"Cannot connect to {node.label} for {operation}", why, hint)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            t_end = time.monotonic() + self.timeout
            while assoc.is_alive() and time.monotonic() < t_end:
                time.sleep(0.01)

    # -- C-ECHO -----------------------------------------------------------------------------

    def echo(self) -> float:
        """C-ECHO; returns the round trip in seconds. Raises PacsError on any failure."""
        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        started = time.monotonic()
        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association(ae, "C-ECHO", started) as assoc:
            status = assoc.send_c_echo()
            code = int(status.Status) if status is not None and "Status" in status else None
        if code != 0:
            self._log("C-ECHO", started, "failed", status=code)
            raise PacsError(
                f"{self.node.label} did not answer the C-ECHO",
                _status_text(code, "echo"),
                "The association opened; check the PACS's log.",
            )
        seconds = time.monotonic() - started
        self._log("C-ECHO", started, "success")
        return seconds

    # -- C-FIND -----------------------------------------------------------------------------

    def find_studies(
        self,
        *,
        patient_name: str = "",
        patient_id: str = "",
        date_from: str | _dt.date | None = None,
        date_to: str | _dt.date | None = None,
        modalities: Sequence[str] = ("CR", "DX"),
        max_results: int = MAX_FIND_RESULTS,
    ) -> list[StudyRecord]:
        """C-FIND at study level (Study Root). Dates are ``YYYYMMDD`` or ``date``; either end of
        the range may be open. ``patient_name`` may use ``*`` wildcards."""
        from pydicom.dataset import Dataset

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientName = patient_name.strip()
        query.PatientID = patient_id.strip()
        query.StudyDate = _date_range(date_from, date_to)
        query.ModalitiesInStudy = "\\".join(m.strip().upper() for m in modalities if m.strip())
        for keyword in (
            "StudyInstanceUID",
            "PatientBirthDate",
            "PatientSex",
            "StudyTime",
            "AccessionNumber",
            "StudyDescription",
            "NumberOfStudyRelatedInstances",
        ):
            setattr(query, keyword, "")
        started = time.monotonic()
        ae = self._ae()
        ae.add_requested_context(FIND)
        found: list[StudyRecord] = []
        code: int | None = None
        truncated = False
        with self._association(ae, "C-FIND", started) as assoc:
            for status, identifier in assoc.send_c_find(query, FIND):
                code = int(status.Status) if status is not None and "Status" in status else None
                if code in (0xFF00, 0xFF01) and identifier is not None:
                    found.append(_record(identifier))
                    if len(found) >= max_results:
                        truncated = True
                        assoc.abort()
                        break
                    continue
                break
        keys = [k for k, v in (("patient_name", patient_name), ("patient_id", patient_id)) if v]
        if truncated:
            self._log("C-FIND", started, "truncated", matches=len(found), keys=keys)
            return found
        if code != 0:
            self._log("C-FIND", started, "failed", status=code, matches=len(found), keys=keys)
            raise PacsError(
                f"The query on {self.node.label} failed",
                _status_text(code, "find"),
                "Simplify the query (fewer keys, a shorter date range) or check the PACS's log.",
            )
        self._log("C-FIND", started, "success", matches=len(found), keys=keys)
        return found

    # -- C-GET ------------------------------------------------------------------------------

    def get_study(
        self,
        study_instance_uid: str,
        dest: str | Path,
        *,
        progress: ProgressCb | None = None,
        cancel: CancelToken | None = None,
    ) -> RetrieveResult:
        """C-GET a study into ``dest``; returns what arrived (also when it failed part way).

        Raises PacsError only when the association cannot be made; a failed or cancelled
        retrieve is reported in the result (``problem``, ``failed``, ``cancelled``) with the
        files that did arrive.
        """
        from pydicom.dataset import Dataset
        from pynetdicom import build_role, evt

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

        out = _dest(dest)
        result = RetrieveResult()
        started = time.monotonic()
        ae = self._ae()
        ae.add_requested_context(GET)
        classes = _retrieve_contexts(ae, as_scp=False)
        roles = [build_role(sop, scp_role=True) for sop in classes]
        handler = _StoreHandler(out, result)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_instance_uid
        with self._association(
            ae, "C-GET", started, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, handler)]
        ) as assoc:
            self._run_retrieve(assoc.send_c_get(query, GET), assoc, result, "get", progress, cancel)
        self._log_retrieve("C-GET", started, result, study_instance_uid)
        return result

    # -- C-MOVE -----------------------------------------------------------------------------

    def move_study(
        self,
        study_instance_uid: str,
        dest: str | Path,
        *,
        progress: ProgressCb | None = None,
        cancel: CancelToken | None = None,
    ) -> RetrieveResult:
        """C-MOVE a study to our own storage SCP (``node.listen_host:node.storage_port``, AE
        ``node.calling_ae``), which writes it into ``dest``. Same result rules as C-GET."""
        from pydicom.dataset import Dataset
        from pynetdicom import evt

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

        out = _dest(dest)
        result = RetrieveResult()
        started = time.monotonic()
        scp_ae = self._ae()
        _retrieve_contexts(scp_ae, as_scp=True)
        # only the PACS we asked may store into our SCP while the move runs
        scp_ae.require_calling_aet = [self.node.ae_title]
        handler = _StoreHandler(out, result)
        try:
            server = scp_ae.start_server(
                (self.node.listen_host, self.node.storage_port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, handler)],
            )
        except OSError as exc:
            self._log("C-MOVE", started, "no storage SCP", error=str(exc))
            raise PacsError(
                f"Cannot receive images on {self.node.listen_host}:{self.node.storage_port}",
                f"our storage SCP cannot listen there ({exc.strerror or exc})",
                "Choose another storage port in the PACS settings (and register it on the "
                "PACS), or use C-GET.",
            ) from exc
        assert server is not None  # start_server(block=False) returns the running server
        try:
            ae = self._ae()
            ae.add_requested_context(MOVE)
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = study_instance_uid
            with self._association(ae, "C-MOVE", started) as assoc:
                responses = assoc.send_c_move(query, self.node.calling_ae, MOVE)
                self._run_retrieve(responses, assoc, result, "move", progress, cancel)
        finally:
            server.shutdown()
        self._log_retrieve("C-MOVE", started, result, study_instance_uid)
        return result

    def retrieve_study(
        self,
        study_instance_uid: str,
        dest: str | Path,
        *,
        progress: ProgressCb | None = None,
        cancel: CancelToken | None = None,
    ) -> RetrieveResult:
        """C-GET or C-MOVE, as the node says."""
        if self.node.retrieve == "move":
            return self.move_study(study_instance_uid, dest, progress=progress, cancel=cancel)
        return self.get_study(study_instance_uid, dest, progress=progress, cancel=cancel)

    def _run_retrieve(
        self,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        assoc: Association,
        result: RetrieveResult,
        service: str,
        progress: ProgressCb | None,
        cancel: CancelToken | None,
    ) -> None:
        code: int | None = None
        for status, _identifier in responses:
            code = int(status.Status) if status is not None and "Status" in status else None
            if status is not None:
                done = sum(
                    int(status.get(k, 0) or 0)
                    for k in (
                        "NumberOfCompletedSuboperations",
                        "NumberOfFailedSuboperations",
                        "NumberOfWarningSuboperations",
                    )
                )
                remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
                if progress is not None and code == 0xFF00:
                    progress(done, done + remaining)
                if code != 0xFF00:
                    result.failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
                    result.warning = int(status.get("NumberOfWarningSuboperations", 0) or 0)
            if cancel is not None and cancel.cancelled:
                result.cancelled = True
                assoc.abort()
                return
            if code != 0xFF00:
                break
        ours = result.problem  # e.g. our side could not write an instance
        said = _status_text(code, service)
        if code == 0xFE00:
            result.cancelled = True
        elif code in (0xB000,) or (code == 0 and result.failed):
            result.problem = f"{result.failed} instance(s) could not be retrieved ({said})"
        elif code != 0:
            result.problem = f"the retrieve failed: {said}"
        if not result.files and code == 0 and not result.problem:
            result.problem = "the PACS reported success but sent no instance"
        if ours and ours not in result.problem:
            result.problem = f"{result.problem}; {ours}" if result.problem else ours

    def _log_retrieve(self, op: str, started: float, result: RetrieveResult, uid: str) -> None:
        outcome = (
            "cancelled"
            if result.cancelled
            else ("success" if result.complete else "partial" if result.files else "failed")
        )
        self._log(
            op,
            started,
            outcome,
            study_instance_uid=uid,
            instances=len(result.files),
            failed=result.failed,
            problem=result.problem,
        )

    # -- C-STORE ----------------------------------------------------------------------------

    def store(
        self,
        paths: Iterable[str | Path],
        *,
        progress: ProgressCb | None = None,
        cancel: CancelToken | None = None,
    ) -> StoreResult:
        """C-STORE DICOM files (as stored, in their own transfer syntax).

        Files that are not DICOM Part 10 objects with SOP Class/Instance UIDs are reported in
        ``failed`` without being sent. Raises PacsError when no association can be made.
        """
        import pydicom

        result = StoreResult()
        datasets = []
        for p in map(Path, paths):
            try:
                ds = pydicom.dcmread(p)
                _ = ds.SOPClassUID, ds.SOPInstanceUID, ds.file_meta.TransferSyntaxUID
            except pydicom.errors.InvalidDicomError:
                result.failed.append(
                    (p, "not sent: it has no DICOM file header (not DICOM, or old ACR-NEMA)")
                )
                continue
            except Exception as exc:
                result.failed.append((p, f"not sent: it cannot be read as DICOM ({exc})"))
                continue
            datasets.append((p, ds))
        if not datasets:
            return result
        compressed, plain = _uids()
        started = time.monotonic()
        ae = self._ae()
        contexts: set[tuple[str, str]] = set()
        for _p, ds in datasets:
            sop, ts = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
            if (sop, ts) not in contexts and len(contexts) < 127:
                contexts.add((sop, ts))
                ae.add_requested_context(sop, ts)
        total = len(datasets)
        with self._association(ae, "C-STORE", started) as assoc:
            for i, (p, ds) in enumerate(datasets, 1):
                if cancel is not None and cancel.cancelled:
                    result.failed.extend((q, "cancelled") for q, _ in datasets[i - 1 :])
                    break
                if not assoc.is_established:
                    result.failed.append((p, "the association was lost"))
                    continue
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, RuntimeError) as exc:
                    result.failed.append((p, f"not sent: {exc}"))
                    continue
                code = int(status.Status) if status is not None and "Status" in status else None
                if code is not None and (code == 0 or 0xB000 <= code <= 0xB0FF):
                    result.sent.append(p)
                else:
                    result.failed.append((p, _status_text(code, "store")))
                if progress is not None:
                    progress(i, total)
        self._log(
            "C-STORE",
            started,
            "success" if not result.failed else ("partial" if result.sent else "failed"),
            instances=len(result.sent),
            failed=len(result.failed),
        )
        return result


class _StoreHandler:
    """EVT_C_STORE handler: write each instance at once; remember what arrived."""

    def __init__(self, dest: Path, result: RetrieveResult) -> None:
        self.dest = dest
        self.result = result
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> int:
        try:
            path = write_instance(self.dest, event.dataset, event.file_meta)
        except Exception as exc:  # a full disk must not kill the association silently
            log.warning("cannot write a retrieved instance into %s: %s", self.dest, exc)
            with self.lock:
                self.result.problem = f"cannot write into {self.dest}: {exc}"
            return 0xA700
        with self.lock:
            self.result.files.append(path)
        return 0x0000


def _dest(dest: str | Path) -> Path:
    out = Path(dest)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PacsError(
            f"Cannot retrieve into {out}",
            f"the folder cannot be created ({exc.strerror or exc})",
            "Choose a folder you can write to.",
        ) from exc
    return out


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _as_date(value: str | _dt.date | None, which: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, _dt.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "")
    try:
        _dt.datetime.strptime(text, "%Y%m%d")
    except ValueError as exc:
        raise PacsError(
            f"Invalid {which} date '{value}'",
            "dates are written YYYYMMDD or YYYY-MM-DD",
            "Enter e.g. 2024-01-31, or leave it empty.",
        ) from exc
    return text


def _date_range(date_from: str | _dt.date | None, date_to: str | _dt.date | None) -> str:
    lo, hi = _as_date(date_from, "from"), _as_date(date_to, "to")
    if lo and hi and lo > hi:
        raise PacsError(
            "Invalid date range",
            f"the start {lo} is after the end {hi}",
            "Swap the dates.",
        )
    if lo and hi and lo == hi:
        return lo
    return f"{lo}-{hi}" if (lo or hi) else ""


def _record(ds: Dataset) -> StudyRecord:
    from pydicom.multival import MultiValue

    def text(keyword: str) -> str:
        try:
            value = ds.get(keyword, "")
        except Exception:  # a damaged value must not hide the match
            return ""
        if value is None:
            return ""
        if isinstance(value, MultiValue | list | tuple):
            return "\\".join(str(v) for v in value)
        return str(value)

    n = text("NumberOfStudyRelatedInstances")
    return StudyRecord(
        study_instance_uid=text("StudyInstanceUID"),
        patient_name=text("PatientName"),
        patient_id=text("PatientID"),
        patient_birth_date=text("PatientBirthDate"),
        patient_sex=text("PatientSex"),
        study_date=text("StudyDate"),
        study_time=text("StudyTime"),
        accession_number=text("AccessionNumber"),
        study_description=text("StudyDescription"),
        modalities=text("ModalitiesInStudy"),
        instances=int(n) if n.strip().isdigit() else None,
    )


def raise_for_retrieve(node: PacsNode, result: RetrieveResult) -> None:
    """A PacsError describing an incomplete retrieve (the arrived files stay where they are)."""
    if result.cancelled:
        raise Cancelled(
            "Retrieve cancelled", f"{len(result.files)} instance(s) arrived and are kept"
        )
    if not result.complete:
        raise PacsError(
            f"The retrieve from {node.label} is incomplete",
            f"{result.problem or 'some instances failed'}; {len(result.files)} instance(s) "
            "arrived and are kept",
            "Try again later or ask the PACS administrator; check the association log.",
        )
