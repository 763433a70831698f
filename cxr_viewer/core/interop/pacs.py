"""DICOM networking with a PACS (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE and C-STORE.

A :class:`PacsNode` names the remote application entity (AE title, host, port) and our side
(calling AE title; the port of our own storage SCP for C-MOVE). A :class:`PacsClient` runs one
operation per association, with timeouts on every step, and turns every failure into a
:class:`~cxr_viewer.core.errors.PacsError` (what / why / what to do):

- the TCP connection fails or times out, the PACS rejects or aborts the association;
- a C-FIND / C-GET / C-MOVE / C-STORE answers with a failure status.

Everything that comes from the network is bounded and checked (:class:`NetLimits`):

- sizes: the PDU size we announce, every PDU and every DIMSE message as its bytes arrive
  (a C-FIND identifier, a C-STORE dataset; the association is dropped as soon as one is too
  big, before it is decoded), each C-FIND field (an oversized or unreadable value is left
  empty and flagged in :attr:`StudyRecord.problems`, the other fields and matches are kept);
  no Deflated transfer syntax is offered (a few kB inflate to gigabytes);
- time: connection, association, DIMSE and network timeouts, a read deadline inside a PDU
  (a half-sent message does not hang a thread), and a deadline per operation; every call
  takes a cancel token, and cancelling or the deadline aborts the association at once;
- names: a Study or SOP Instance UID names a folder or file only when it is a valid DICOM
  UID, else a hash of it, and the path is checked to stay inside the destination
  (:func:`retrieve_folder`);
- content: a retrieved instance whose Study Instance UID (or Patient ID, when the query
  result gave one) differs from the request is refused, not written, and reported; our
  storage SCP for C-MOVE checks the called and the calling AE titles.

DIMSE over TLS: pass an :class:`ssl.SSLContext` as ``tls`` (our associations) and
``scp_tls`` (our C-MOVE storage SCP) to :class:`PacsClient`.

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
import hashlib
import json
import logging
import os
import re
import socket
import struct
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, Unpack

from cxr_viewer.core.errors import Cancelled, PacsError
from cxr_viewer.core.interop.extra import import_extra
from cxr_viewer.core.io.atomic import make_folder
from cxr_viewer.core.progress import CancelToken

if TYPE_CHECKING:  # pydicom and pynetdicom are imported where used (the PACS extra)
    import ssl
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
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")  # PS3.5 section 9: digits and dots, <= 64
_MIB = 1024 * 1024


@dataclass(frozen=True)
class NetLimits:
    """Size and time limits on what a PACS (or anything answering on its port) sends us.

    Attributes
    ----------
    max_pdu:
        The maximum PDU length we announce (bytes); a received PDU longer than
        ``max(4 * max_pdu, 1 MiB)`` drops the association before it is read.
    max_identifier_bytes:
        A C-FIND answer (one identifier) larger than this drops the association; the
        matches received before it are kept.
    max_instance_bytes:
        A C-STORE dataset (a retrieved instance) larger than this drops the association;
        instances received before it are kept.
    max_field_bytes:
        A C-FIND field longer than this is left empty and flagged (DICOM allows at most
        64 characters for names and UIDs).
    find_seconds, retrieve_seconds:
        Deadline of a whole C-FIND / of one study's C-GET or C-MOVE, from the association.
    max_associations:
        Concurrent associations our storage SCP accepts during a C-MOVE.
    """

    max_pdu: int = 65536
    max_identifier_bytes: int = 16 * _MIB
    max_instance_bytes: int = 256 * _MIB
    max_field_bytes: int = 1024
    find_seconds: float = 300.0
    retrieve_seconds: float = 3600.0
    max_associations: int = 2

    def __post_init__(self) -> None:
        for name in ("max_pdu", "max_identifier_bytes", "max_instance_bytes", "max_field_bytes"):
            if int(getattr(self, name)) < 1:
                raise PacsError(f"Invalid PACS limit {name}", "it must be at least 1 byte")
        for name in ("find_seconds", "retrieve_seconds"):
            if not float(getattr(self, name)) > 0:
                raise PacsError(f"Invalid PACS limit {name}", "it must be a positive time")

    @property
    def max_pdu_received(self) -> int:
        return max(4 * self.max_pdu, _MIB)


def valid_uid(text: str) -> bool:
    """Whether ``text`` is a DICOM UID (PS3.5 section 9: digits and dots, at most 64)."""
    return isinstance(text, str) and len(text) <= 64 and bool(_UID_RE.fullmatch(text))


def _confined_name(text: str, prefix: str) -> str:
    """``text`` when it is a valid UID, else ``prefix`` plus a hash of it (never a path)."""
    if valid_uid(text):
        return text
    digest = hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return f"{prefix}-{digest}"


def _inside(root: Path, name: str) -> Path:
    """``root/name`` after resolving symbolic links, checked to stay directly in ``root``."""
    base = root.resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise PacsError(
            f"Refused to write outside {base}",
            f"the name derived from the PACS's answer leads to {target}",
            "Remove the link or file of that name from the retrieve folder and try again.",
        )
    return target


def retrieve_folder(base: str | Path, study_instance_uid: str) -> Path:
    """Where a study is retrieved: ``base/<Study Instance UID>`` when the UID (as the PACS
    sent it) is a valid DICOM UID, else ``base/study-<sha256 of it>``; always inside
    ``base`` (also when a link of that name points elsewhere: PacsError)."""
    return _inside(Path(base), _confined_name(study_instance_uid, "study"))


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
    #: fields the PACS sent that could not be used (left empty), e.g. "patient_name: ..."
    problems: tuple[str, ...] = ()

    PATIENT_FIELDS = ("patient_name", "patient_id", "patient_birth_date", "patient_sex")

    def masked(self) -> StudyRecord:
        """The same record with the patient fields hidden (the "hide patient fields" setting)."""
        hidden: dict[str, Any] = {k: "•••" if getattr(self, k) else "" for k in self.PATIENT_FIELDS}
        return replace(self, **hidden)


class FindResult(list[StudyRecord]):
    """The C-FIND matches (a list), with what went wrong while they arrived.

    ``problem`` is empty when the PACS answered completely; otherwise it says why the list
    may be incomplete (an oversized answer, the deadline, ...). ``skipped`` counts matches
    that could not be read at all.
    """

    problem: str = ""
    skipped: int = 0

    @property
    def flagged(self) -> int:
        """How many matches have a field that could not be used."""
        return sum(1 for r in self if r.problems)


@dataclass
class RetrieveResult:
    """What a C-GET / C-MOVE brought back (kept even when it failed part way)."""

    files: list[Path] = field(default_factory=list)
    failed: int = 0
    warning: int = 0
    cancelled: bool = False
    problem: str = ""
    #: why instances were refused (another study or patient; not written)
    rejected: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.failed or self.cancelled or self.problem or self.rejected)

    def note_refused(self) -> None:
        """Add the refused instances, if any, to ``problem`` (:func:`refused_text`)."""
        if self.rejected:
            refused = refused_text(self.rejected)
            self.problem = f"{self.problem}; {refused}" if self.problem else refused


class _Labelled(Protocol):
    """A node as the user knows it (a DIMSE or a DICOMweb node)."""

    @property
    def label(self) -> str: ...


@dataclass
class StoreResult:
    """What a C-STORE run sent."""

    sent: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def raise_if_failed(self, node: _Labelled, what: str = "file", server: str = "PACS") -> None:
        """A PacsError when anything failed, counting ``what`` (files, objects) stored on
        ``node`` (``server``: whose log to check)."""
        if self.failed:
            first = "; ".join(f"{p.name}: {why}" for p, why in self.failed[:3])
            raise PacsError(
                f"{len(self.failed)} of {len(self.failed) + len(self.sent)} {what}(s) were not "
                f"stored on {node.label}",
                first,
                f"Check the {server}'s log and that it accepts these SOP classes; {what}s that "
                "were stored stay stored.",
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


def _plain_syntaxes() -> list[UID]:
    """The transfer syntaxes for query/retrieve and echo contexts: never Deflated (a few kB
    on the wire inflate to gigabytes before any size check could see them)."""
    return _uids()[1]


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


# ---------------------------------------------------------------------------- wire limits


class _Guard:
    """Size limits checked on the bytes as they arrive, before pynetdicom keeps or decodes them.

    pynetdicom reads a whole PDU of whatever length the peer announces and collects a DIMSE
    message's fragments without a bound. Bound to ``EVT_CONN_OPEN`` (before anything is
    read), :meth:`install` wraps the association socket's ``recv``: a PDU header announcing
    more than ``limits.max_pdu_received`` bytes, or a message whose fragments add up to more
    than ``max_message`` bytes, fails the read, which closes the connection (pynetdicom
    treats it as the peer closing it). Reads also get the network timeout, so a half-sent
    PDU ends instead of blocking a thread. ``tripped`` says which limit stopped it.
    """

    COMMAND_CAP = 64 * 1024  # a DIMSE command set is a few hundred bytes

    def __init__(self, limits: NetLimits, max_message: int, what: str, timeout: float) -> None:
        self.limits = limits
        self.max_message = int(max_message)
        self.what = what
        self.timeout = timeout
        self.tripped = ""
        self.sockets: list[Any] = []
        self.lock = threading.Lock()

    def trip(self, why: str) -> OSError:
        with self.lock:
            if not self.tripped:
                self.tripped = why
        log.warning("PACS association dropped: %s", why)
        return OSError(why)

    def install(self, event: Event) -> None:
        """EVT_CONN_OPEN handler."""
        sock = event.assoc.dul.socket
        if sock is None:  # pragma: no cover - pynetdicom sets it before the event
            return
        with self.lock:
            self.sockets.append(sock)
        # an instance attribute shadows the method the DUL reactor calls
        setattr(sock, "recv", _BoundedRecv(sock, self))  # noqa: B010 - shadows the method

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        from pynetdicom import evt

        return [(evt.EVT_CONN_OPEN, self.install)]

    def close_all(self) -> None:
        """Shut the guarded connections down (unblocks a read stuck on a silent peer)."""
        with self.lock:
            socks = list(self.sockets)
        for sock in socks:
            raw = getattr(sock, "socket", None)
            if raw is None:
                continue
            try:
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _BoundedRecv:
    """The bounded ``recv`` :class:`_Guard` puts on one association socket."""

    def __init__(self, sock: Any, guard: _Guard) -> None:
        self.inner: Callable[[int], bytearray] = sock.recv
        self.sock = sock
        self.guard = guard
        self.pending: int | None = None  # PDU type whose body is read next
        self.message = {0: 0, 1: 0}  # bytes of the message being received: dataset, command
        self.tripped = ""  # this connection's limit, once exceeded (others go on)

    def _trip(self, why: str) -> OSError:
        self.tripped = why
        return self.guard.trip(why)

    def __call__(self, nr_bytes: int) -> bytearray:
        raw = getattr(self.sock, "socket", None)
        if raw is not None:
            raw.settimeout(self.guard.timeout)
        if self.tripped:
            raise OSError(self.tripped)
        if self.pending is None:  # the DUL reads a 6-byte PDU header, then its body
            data = self.inner(nr_bytes)
            if nr_bytes == 6 and len(data) == 6:
                pdu_type, _, length = struct.unpack(">BBL", bytes(data))
                if 1 <= pdu_type <= 7:
                    cap = self.guard.limits.max_pdu_received
                    if length > cap:
                        raise self._trip(
                            f"the peer announced a PDU of {length:,} bytes (our limit is {cap:,})"
                        )
                    self.pending = pdu_type
            return data
        pdu_type, self.pending = self.pending, None
        data = self.inner(nr_bytes)
        if pdu_type == 0x04:  # P-DATA-TF
            self._count(data)
        return data

    def _count(self, data: bytearray) -> None:
        # PS3.8 9.3.5: items of (4-byte length, context ID, control header, fragment)
        offset, end = 0, len(data)
        while offset + 6 <= end:
            (length,) = struct.unpack(">L", bytes(data[offset : offset + 4]))
            control = data[offset + 5]
            is_command = control & 0x01
            self.message[is_command] += max(0, length - 2)
            cap = _Guard.COMMAND_CAP if is_command else self.guard.max_message
            if self.message[is_command] > cap:
                kind = "a command" if is_command else self.guard.what
                raise self._trip(f"the PACS sent {kind} larger than {_human(cap)} (the limit)")
            if control & 0x02:  # the last fragment of this message
                self.message[is_command] = 0
            offset += 4 + length


def _human(n: int) -> str:
    if n >= _MIB:
        return f"{n / _MIB:g} MiB"
    if n >= 1024:
        return f"{n / 1024:g} KiB"
    return f"{n} bytes"


class _Watchdog:
    """Aborts an association when the cancel token is set or the deadline passes.

    pynetdicom's SCU calls block until the next answer (up to the DIMSE timeout, renewed by
    every answer, so a peer dribbling answers never times out); this thread makes Cancel and
    the per-operation deadline take effect within a fraction of a second.
    """

    def __init__(
        self,
        assoc: Association,
        cancel: CancelToken | None,
        seconds: float,
        guard: _Guard | None = None,
    ) -> None:
        self.assoc = assoc
        self.cancel = cancel
        self.seconds = float(seconds)
        self.deadline = time.monotonic() + self.seconds
        self.guard = guard
        self.reason = ""  # "cancelled" or "deadline"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cxr-pacs-watchdog", daemon=True)

    def __enter__(self) -> _Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.cancel is not None and self.cancel.cancelled:
                self.reason = "cancelled"
            elif time.monotonic() > self.deadline:
                self.reason = "deadline"
            else:
                continue
            _hard_abort(self.assoc, self.guard)
            return


def _hard_abort(assoc: Association, guard: _Guard | None) -> None:
    """Abort at once: queue the A-ABORT, then close the socket if the reactor is stuck."""
    try:
        assoc.abort(block=False)
    except Exception as exc:  # the association may be going away by itself
        log.debug("abort: %s", exc)
    t_end = time.monotonic() + 0.5
    while assoc.dul.is_alive() and time.monotonic() < t_end:
        time.sleep(0.01)
    if assoc.dul.is_alive() and guard is not None:
        guard.close_all()
    # a caller blocked waiting for the next DIMSE message (up to the DIMSE timeout) is woken
    # the way pynetdicom wakes it when the peer aborts
    assoc.dimse.msg_queue.put((None, None))


def write_instance(dest: Path, dataset: Dataset, file_meta: Dataset) -> Path:
    """Write a received instance to ``dest/<SOPInstanceUID>.dcm`` atomically (temporary file,
    fsync, rename; the outputs' file mode, :data:`~cxr_viewer.core.io.atomic.OUTPUT_FILE_MODE`);
    a SOP Instance UID that is not a valid UID is replaced by ``instance-<hash>``."""
    from pydicom.dataset import FileMetaDataset

    from cxr_viewer.core.io.atomic import atomic_write

    dataset.file_meta = FileMetaDataset(file_meta)
    name = _confined_name(str(dataset.get("SOPInstanceUID", "") or ""), "instance") + ".dcm"
    final = _inside(dest, name)
    return atomic_write(final, lambda tmp: dataset.save_as(tmp, enforce_file_format=True))


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
    limits:
        Size and time limits on what comes from the network (:class:`NetLimits`).
    tls:
        An :class:`ssl.SSLContext` for DIMSE over TLS on our associations (server name
        checked against ``node.host`` when the context checks host names).
    scp_tls:
        An :class:`ssl.SSLContext` (server side) for our C-MOVE storage SCP.
    """

    def __init__(
        self,
        node: PacsNode,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        log_path: Path | None = None,
        limits: NetLimits | None = None,
        tls: ssl.SSLContext | None = None,
        scp_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.node = node
        self.timeout = float(timeout)
        self.log_path = log_path
        self.limits = limits or NetLimits()
        self.tls = tls
        self.scp_tls = scp_tls

    # -- plumbing ---------------------------------------------------------------------------

    def _ae(self) -> AE:
        import_extra("pynetdicom", PacsError, "Cannot talk to a PACS", extra="PACS")
        from pynetdicom import AE, _config

        pn_log = logging.getLogger("pynetdicom")
        if pn_log.level == logging.NOTSET:  # its errors become our PacsErrors instead
            pn_log.setLevel(logging.CRITICAL)
        # pynetdicom pretty-prints every identifier whatever the log level: a 10 MB name
        # would be decoded and formatted before we could check it (and it is patient data)
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        ae = AE(ae_title=self.node.calling_ae)
        ae.acse_timeout = self.timeout
        ae.dimse_timeout = self.timeout
        ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        ae.maximum_associations = self.limits.max_associations
        ae.maximum_pdu_size = self.limits.max_pdu
        return ae

    def _guard(self, max_message: int, what: str) -> _Guard:
        return _Guard(self.limits, max_message, what, self.timeout)

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
        if assoc.is_aborted and not assoc.accepted_contexts and assoc.rejected_contexts:
            return (
                "it accepted none of the services and transfer syntaxes we proposed (we "
                "never propose Deflated syntaxes: a few kB of them can inflate to gigabytes)",
                "Ask the PACS administrator to allow Explicit or Implicit VR Little Endian "
                f"for AE '{node.calling_ae}'.",
            )
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
        self,
        ae: AE,
        operation: str,
        started: float,
        guard: _Guard | None = None,
        evt_handlers: list[Any] | None = None,
        **kwargs: Any,
    ) -> Iterator[Association]:
        node = self.node
        guard = guard or self._guard(self.limits.max_identifier_bytes, "an answer")
        handlers: list[Any] = list(evt_handlers or []) + guard.handlers()
        if self.tls is not None:
            kwargs["tls_args"] = (self.tls, node.host)
        try:
            assoc = ae.associate(
                node.host, node.port, ae_title=node.ae_title, evt_handlers=handlers, **kwargs
            )
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
            if assoc.is_alive():  # a peer that never answers the release
                _hard_abort(assoc, guard)

    # -- C-ECHO -----------------------------------------------------------------------------

    def echo(self, *, cancel: CancelToken | None = None) -> float:
        """C-ECHO; returns the round trip in seconds. Raises PacsError on any failure
        (Cancelled when ``cancel`` is set while it waits)."""
        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        started = time.monotonic()
        ae = self._ae()
        ae.add_requested_context(Verification, _plain_syntaxes())
        guard = self._guard(self.limits.max_identifier_bytes, "an answer")
        with (
            self._association(ae, "C-ECHO", started, guard) as assoc,
            _Watchdog(assoc, cancel, self.timeout, guard) as watch,
        ):
            status = assoc.send_c_echo()
            code = int(status.Status) if status is not None and "Status" in status else None
        if watch.reason == "cancelled":
            self._log("C-ECHO", started, "cancelled")
            raise Cancelled("C-ECHO cancelled", "the test of the connection was stopped")
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
        max_results: int = MAX_FIND_RESULTS,
        cancel: CancelToken | None = None,
        **keys: Unpack[StudyKeys],
    ) -> FindResult:
        """C-FIND at study level (Study Root) on the :class:`StudyKeys` ``keys``.

        Returns the matches; a match with an unusable field keeps its other fields (the field
        is empty and named in ``problems``). When the answer stops early (an oversized answer,
        the ``limits.find_seconds`` deadline), the matches that arrived are returned with
        ``problem`` set, or PacsError is raised when none did. ``cancel`` aborts the
        association at once and raises :class:`~cxr_viewer.core.errors.Cancelled`.
        """
        from pydicom.dataset import Dataset

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND  # type: ignore[attr-defined]

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        # the return keys empty, the matching keys as the user gave them
        for keyword, value in (
            dict.fromkeys(("StudyInstanceUID", *STUDY_FIELDS), "") | study_filters(keys)
        ).items():
            setattr(query, keyword, value)
        started = time.monotonic()
        ae = self._ae()
        ae.add_requested_context(FIND, _plain_syntaxes())
        found = FindResult()
        code: int | None = None
        truncated = False
        guard = self._guard(self.limits.max_identifier_bytes, "a C-FIND answer")
        logged = [k for k in ("patient_name", "patient_id") if keys.get(k)]
        with (
            self._association(ae, "C-FIND", started, guard) as assoc,
            _Watchdog(assoc, cancel, self.limits.find_seconds, guard) as watch,
        ):
            for status, identifier in assoc.send_c_find(query, FIND):
                code = int(status.Status) if status is not None and "Status" in status else None
                if code in (0xFF00, 0xFF01):
                    try:
                        found.append(_record(identifier, self.limits.max_field_bytes))
                    except Exception as exc:  # one unreadable match must not lose the rest
                        log.warning("C-FIND match skipped: %s", exc)
                        found.skipped += 1
                    if len(found) >= max_results:
                        truncated = True
                        assoc.abort()
                        break
                    continue
                break
        if watch.reason == "cancelled":
            self._log("C-FIND", started, "cancelled", matches=len(found), keys=logged)
            raise Cancelled("Search cancelled", f"{len(found)} match(es) had arrived")
        stopped = ""
        if guard.tripped:
            stopped = f"{guard.tripped}; the association was dropped"
        elif watch.reason == "deadline":
            stopped = (
                f"the PACS had not finished answering after {self.limits.find_seconds:g} s "
                "(the deadline); the association was aborted"
            )
        if found.skipped:
            found.problem = f"{found.skipped} match(es) could not be read and are not listed"
        if stopped:
            found.problem = "; ".join(x for x in (stopped, found.problem) if x)
            self._log("C-FIND", started, "stopped", matches=len(found), keys=logged, error=stopped)
            if not found:
                raise PacsError(
                    f"The query on {self.node.label} was stopped",
                    stopped,
                    "Refine the query; if it happens again, tell the PACS administrator.",
                )
            return found
        if truncated:
            self._log("C-FIND", started, "truncated", matches=len(found), keys=logged)
            return found
        if code != 0:
            self._log("C-FIND", started, "failed", status=code, matches=len(found), keys=logged)
            raise PacsError(
                f"The query on {self.node.label} failed",
                _status_text(code, "find"),
                "Simplify the query (fewer keys, a shorter date range) or check the PACS's log.",
            )
        self._log("C-FIND", started, "success", matches=len(found), keys=logged)
        return found

    # -- C-GET and C-MOVE -------------------------------------------------------------------

    def retrieve_study(
        self,
        study_instance_uid: str,
        dest: str | Path,
        *,
        patient_id: str | None = None,
        progress: ProgressCb | None = None,
        cancel: CancelToken | None = None,
    ) -> RetrieveResult:
        """Retrieve a study into ``dest`` by C-GET or C-MOVE, as the node says; returns what
        arrived (also when it failed part way).

        C-MOVE sends the study to our own storage SCP (``node.listen_host:node.storage_port``,
        AE ``node.calling_ae``), which writes it into ``dest``. Raises PacsError when the UID is
        not a DICOM UID or the association (or, for C-MOVE, our storage SCP) cannot be made; a
        failed, stopped or cancelled retrieve is reported in the result (``problem``,
        ``failed``, ``cancelled``, ``rejected``) with the files that did arrive. An instance of
        another study, or of another patient than ``patient_id`` (when given, e.g. from the
        C-FIND match), is refused and listed in ``rejected``, never written.
        """
        result, handler = _receiver(study_instance_uid, dest, patient_id)
        job = _Retrieval(study_instance_uid, result, handler, time.monotonic(), progress, cancel)
        move = self.node.retrieve == "move"
        watch, guards = self._move(job) if move else self._get(job)
        self._stopped(result, watch, guards)
        self._log_retrieve("C-MOVE" if move else "C-GET", job.started, result, study_instance_uid)
        return result

    def _get(self, job: _Retrieval) -> tuple[_Watchdog, list[_Guard]]:
        """C-GET ``job``'s study over one association that takes the instances back."""
        from pynetdicom import build_role, evt

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET  # type: ignore[attr-defined]

        ae = self._ae()
        ae.add_requested_context(GET, _plain_syntaxes())
        classes = _retrieve_contexts(ae, as_scp=False)
        roles = [build_role(sop, scp_role=True) for sop in classes]
        guard = self._guard(self.limits.max_instance_bytes, "an instance")
        with (
            self._association(
                ae,
                "C-GET",
                job.started,
                guard,
                ext_neg=roles,
                evt_handlers=[(evt.EVT_C_STORE, job.handler)],
            ) as assoc,
            _Watchdog(assoc, job.cancel, self.limits.retrieve_seconds, guard) as watch,
        ):
            self._run_retrieve(assoc.send_c_get(job.query(), GET), assoc, job, "get")
        return watch, [guard]

    def _move(self, job: _Retrieval) -> tuple[_Watchdog, list[_Guard]]:
        """C-MOVE ``job``'s study to our own storage SCP, run while the move does."""
        from pynetdicom import evt

        # pynetdicom makes its SOP class names at import time: its types cannot list them
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE  # type: ignore[attr-defined]

        scp_ae = self._ae()
        _retrieve_contexts(scp_ae, as_scp=True)
        # only the PACS we asked may store into our SCP while the move runs, and only when
        # it calls us by our own AE title
        scp_ae.require_calling_aet = [self.node.ae_title]
        scp_ae.require_called_aet = True
        scp_guard = self._guard(self.limits.max_instance_bytes, "an instance")
        try:
            server = scp_ae.start_server(
                (self.node.listen_host, self.node.storage_port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, job.handler), *scp_guard.handlers()],
                ssl_context=self.scp_tls,
            )
        except OSError as exc:
            self._log("C-MOVE", job.started, "no storage SCP", error=str(exc))
            raise PacsError(
                f"Cannot receive images on {self.node.listen_host}:{self.node.storage_port}",
                f"our storage SCP cannot listen there ({exc.strerror or exc})",
                "Choose another storage port in the PACS settings (and register it on the "
                "PACS), or use C-GET.",
            ) from exc
        assert server is not None  # start_server(block=False) returns the running server
        guard = self._guard(self.limits.max_identifier_bytes, "an answer")
        try:
            ae = self._ae()
            ae.add_requested_context(MOVE, _plain_syntaxes())
            with (
                self._association(ae, "C-MOVE", job.started, guard) as assoc,
                _Watchdog(assoc, job.cancel, self.limits.retrieve_seconds, guard) as watch,
            ):
                responses = assoc.send_c_move(job.query(), self.node.calling_ae, MOVE)
                self._run_retrieve(responses, assoc, job, "move")
        finally:
            _stop_server(server, scp_guard)
        return watch, [guard, scp_guard]

    def _stopped(self, result: RetrieveResult, watch: _Watchdog, guards: list[_Guard]) -> None:
        """Fold the watchdog's and the guards' reasons for stopping into ``result``."""
        why = [g.tripped for g in guards if g.tripped]
        if watch.reason == "cancelled":
            result.cancelled = True
        elif watch.reason == "deadline":
            why.append(
                f"the retrieve had not finished after {self.limits.retrieve_seconds:g} s "
                "(the deadline)"
            )
        if why:
            stopped = "; ".join(why) + "; the association was dropped"
            result.problem = "; ".join(x for x in (stopped, result.problem) if x)

    def _run_retrieve(
        self,
        responses: Iterator[tuple[Dataset, Dataset | None]],
        assoc: Association,
        job: _Retrieval,
        service: str,
    ) -> None:
        result, progress, cancel = job.result, job.progress, job.cancel
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
        if result.rejected and result.problem == "the PACS reported success but sent no instance":
            result.problem = ""  # it sent only what was refused: that is the problem
        result.note_refused()
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
            rejected=len(result.rejected),
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
        started = time.monotonic()
        ae = self._ae()
        contexts: set[tuple[str, str]] = set()
        for _p, ds in datasets:
            sop, ts = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
            if (sop, ts) not in contexts and len(contexts) < 127:
                contexts.add((sop, ts))
                ae.add_requested_context(sop, ts)
        total = len(datasets)
        guard = self._guard(self.limits.max_identifier_bytes, "an answer")
        with (
            self._association(ae, "C-STORE", started, guard) as assoc,
            _Watchdog(assoc, cancel, self.limits.retrieve_seconds, guard),
        ):
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


def foreign_instance(
    study: str, patient: str, study_uid: str, patient_id: str | None
) -> tuple[str, str] | None:
    """Why an instance of ``study`` and ``patient`` must not be kept by a retrieve of
    ``study_uid`` (of ``patient_id``, when known): (the reason for the user, a 64-character
    status comment), or None. The other patient's identifiers are never echoed."""
    if study != study_uid:
        return "it belongs to another study than the one requested", "not the requested study"
    if patient_id and patient != patient_id:
        return "it belongs to another patient than the study's", "not the requested patient"
    return None


def refused_text(rejected: Sequence[str]) -> str:
    """The refused instances in one line ("2 instance(s) refused and not kept: …")."""
    return f"{len(rejected)} instance(s) refused and not kept: " + "; ".join(sorted(set(rejected)))


class _StoreHandler:
    """EVT_C_STORE handler: check that each instance belongs to the requested study (and
    patient), write it at once, remember what arrived and what was refused."""

    def __init__(
        self, dest: Path, result: RetrieveResult, study_uid: str, patient_id: str | None = None
    ) -> None:
        self.dest = dest
        self.result = result
        self.study_uid = study_uid
        self.patient_id = patient_id or None
        self.lock = threading.Lock()

    def _refuse(self, why: str, comment: str) -> Any:
        from pydicom.dataset import Dataset

        with self.lock:
            self.result.rejected.append(why)
        status = Dataset()
        status.Status = 0xC000  # PS3.4 B.2.3: "Cannot understand" class of failures
        status.ErrorComment = comment[:64]
        return status

    def __call__(self, event: Event) -> Any:
        try:
            dataset = event.dataset
            study = str(dataset.get("StudyInstanceUID", "") or "")
            patient = str(dataset.get("PatientID", "") or "")
        except Exception as exc:
            return self._refuse(f"an instance could not be decoded ({exc})", "cannot decode")
        foreign = foreign_instance(study, patient, self.study_uid, self.patient_id)
        if foreign is not None:
            return self._refuse(*foreign)
        try:
            path = write_instance(self.dest, dataset, event.file_meta)
        except Exception as exc:  # a full disk must not kill the association silently
            log.warning("cannot write a retrieved instance into %s: %s", self.dest, exc)
            with self.lock:
                self.result.problem = f"cannot write into {self.dest}: {exc}"
            return 0xA700
        with self.lock:
            self.result.files.append(path)
        return 0x0000


def _stop_server(server: Any, guard: _Guard) -> None:
    """Stop our storage SCP and every association it still runs (a peer stalled half way
    through a message must not keep a thread, and the process, alive)."""
    for assoc in list(server.active_associations):
        _hard_abort(assoc, guard)
    server.shutdown()


def _check_study_uid(uid: str) -> None:
    if not valid_uid(uid):
        shown = repr(uid[:80]) + ("…" if len(uid) > 80 else "")
        raise PacsError(
            f"Cannot retrieve the study {shown}",
            "its Study Instance UID, as the PACS sent it, is not a DICOM UID (digits and "
            "dots, at most 64 characters)",
            "Ask the PACS administrator to check this study; nothing was retrieved.",
        )


def _receiver(
    study_instance_uid: str, dest: str | Path, patient_id: str | None
) -> tuple[RetrieveResult, _StoreHandler]:
    """For a retrieve of a checked study UID into ``dest`` (created): the result it fills and
    the C-STORE handler that writes what arrives there."""
    _check_study_uid(study_instance_uid)
    result = RetrieveResult()
    return result, _StoreHandler(_dest(dest), result, study_instance_uid, patient_id)


@dataclass
class _Retrieval:
    """One study's C-GET or C-MOVE: what it asks for, where what arrives goes, who watches."""

    study_instance_uid: str
    result: RetrieveResult
    handler: _StoreHandler
    started: float
    progress: ProgressCb | None
    cancel: CancelToken | None

    def query(self) -> Dataset:
        """The identifier of the study-level C-GET or C-MOVE."""
        from pydicom.dataset import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = self.study_instance_uid
        return query


def _dest(dest: str | Path) -> Path:
    return make_folder(dest, f"Cannot retrieve into {Path(dest)}", PacsError)


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


class StudyKeys(TypedDict, total=False):
    """The keys of a study-level query, the same for C-FIND and QIDO-RS (:func:`study_filters`).

    Dates are ``YYYYMMDD``, ``YYYY-MM-DD`` or a ``date``; either end of the range may be open.
    ``patient_name`` may use ``*`` wildcards. ``modalities`` defaults to CR and DX.
    """

    patient_name: str
    patient_id: str
    date_from: str | _dt.date | None
    date_to: str | _dt.date | None
    modalities: Sequence[str]


#: what a study query asks for besides the keys it matches on (:func:`study_filters`) and the
#: Study Instance UID: C-FIND return keys, QIDO-RS include fields
STUDY_FIELDS = (
    "PatientBirthDate",
    "PatientSex",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


def study_filters(keys: StudyKeys) -> dict[str, str]:
    """The matching keys of a study query by DICOM keyword: Patient Name and ID (stripped), the
    Study Date range and the Modalities in Study (backslash-separated); "" where ``keys``
    leaves them open. PacsError for an invalid date or range."""
    modalities = keys.get("modalities", ("CR", "DX"))
    return {
        "PatientName": keys.get("patient_name", "").strip(),
        "PatientID": keys.get("patient_id", "").strip(),
        "StudyDate": _date_range(keys.get("date_from"), keys.get("date_to")),
        "ModalitiesInStudy": "\\".join(m.strip().upper() for m in modalities if m.strip()),
    }


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


_RECORD_FIELDS = (
    ("study_instance_uid", "StudyInstanceUID"),
    ("patient_name", "PatientName"),
    ("patient_id", "PatientID"),
    ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"),
    ("study_date", "StudyDate"),
    ("study_time", "StudyTime"),
    ("accession_number", "AccessionNumber"),
    ("study_description", "StudyDescription"),
    ("modalities", "ModalitiesInStudy"),
)


def _record(ds: Dataset | None, max_field_bytes: int = NetLimits.max_field_bytes) -> StudyRecord:
    """One C-FIND match, read field by field: a field that is too long or cannot be decoded
    is left empty and named in ``problems`` (never its value: it may be patient data)."""
    from pydicom.multival import MultiValue

    if ds is None:
        raise ValueError("the match has no identifier (it could not be decoded)")
    problems: list[str] = []

    def text(attr: str, keyword: str) -> str:
        try:
            elem = ds.get_item(keyword)  # the raw element: its length before any decoding
            if elem is None:
                return ""
            raw = elem.value
            size = len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw or ""))
            if size > max_field_bytes:
                problems.append(f"{attr}: {size:,} bytes, over the {max_field_bytes:,}-byte limit")
                return ""
            with warnings.catch_warnings():  # pydicom warns about over-long names
                warnings.simplefilter("ignore")
                value = ds[keyword].value
        except Exception as exc:  # a damaged value must not hide the match
            problems.append(f"{attr}: cannot be decoded ({type(exc).__name__})")
            return ""
        if value is None:
            return ""
        if isinstance(value, MultiValue | list | tuple):
            return "\\".join(str(v) for v in value)
        return str(value)

    values = {attr: text(attr, keyword) for attr, keyword in _RECORD_FIELDS}
    uid = values["study_instance_uid"]
    if uid and not valid_uid(uid):
        problems.append("study_instance_uid: not a DICOM UID (the study cannot be retrieved)")
    n = text("instances", "NumberOfStudyRelatedInstances").strip()
    instances: int | None = None
    if re.fullmatch(r"[0-9]{1,9}", n):
        instances = int(n)
    elif n:
        problems.append("instances: not a whole number")
    return StudyRecord(**values, instances=instances, problems=tuple(problems))


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
