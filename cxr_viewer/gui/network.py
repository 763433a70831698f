"""The viewer's PACS work — DIMSE or DICOMweb — on the controller's worker model.

A PACS node is saved as a :class:`SavedNode`: a name and one protocol's endpoint, either
DIMSE (:class:`~cxr_viewer.core.interop.pacs.PacsNode`: C-ECHO, C-FIND, C-GET/C-MOVE, C-STORE) or
DICOMweb (:class:`~cxr_viewer.core.interop.dicomweb.DicomWebNode`: base URL, authentication none /
basic / bearer, TLS verified by default; QIDO-RS, WADO-RS, STOW-RS). Passwords and tokens are
never written to the settings; :class:`Network` keeps them in memory for the session.

The operations (:func:`echo`, :func:`find`, :func:`retrieve`, :func:`store`) take either
endpoint and pick the client; they are plain functions that run on a worker thread, take a
:class:`~cxr_viewer.core.progress.CancelToken` and touch no widget. :class:`Network` submits
them to the controller's ``cxr-net`` worker (one of its long-lived
:class:`~.worker.WorkerThread` s, cancelled and stopped with the others at shutdown); the
dialogs in :mod:`.pacs_dialogs` only build the request and show the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import CxrError, PacsError
from cxr_viewer.core.progress import CancelToken, ProgressFn

from .worker import Failure, Task, WorkerThread

if TYPE_CHECKING:
    from cxr_viewer.core.interop.dicomweb import DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsNode, RetrieveResult, StudyRecord

    from .settings import Settings

    Endpoint = PacsNode | DicomWebNode

NODES_KEY = "pacs/nodes"
#: the one DICOMweb service the former DICOMweb dialog remembered (read once, then moved)
LEGACY_DICOMWEB_KEY = "dicomweb/node"
DIMSE, DICOMWEB = "dimse", "dicomweb"
PROTOCOLS = {
    DIMSE: "DIMSE (C-FIND, C-GET / C-MOVE, C-STORE)",
    DICOMWEB: "DICOMweb (QIDO-RS, WADO-RS, STOW-RS)",
}
ECHO_TIMEOUT_S = 10.0


# ---------------------------------------------------------------------------- saved nodes


@dataclass(frozen=True)
class SavedNode:
    """A PACS node as the settings keep it: a name, a protocol and the endpoint's fields
    (without password or token: :meth:`endpoint` takes the secret)."""

    name: str
    protocol: str
    fields: dict[str, Any] = field(hash=False, compare=True)

    @classmethod
    def of(cls, endpoint: Endpoint, name: str = "") -> SavedNode:
        from cxr_viewer.core.interop.pacs import PacsNode

        if isinstance(endpoint, PacsNode):
            fields = endpoint.as_dict()
            fields.pop("name", None)
            return cls(name or endpoint.name, DIMSE, fields)
        fields = endpoint.as_dict()
        fields.pop("protocol", None)
        return cls(name, DICOMWEB, fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedNode:
        """A node from the settings (CxrError, KeyError or TypeError when it is not usable)."""
        protocol = str(data.get("protocol", DIMSE))
        if protocol not in PROTOCOLS:
            raise PacsError(f"Unknown PACS protocol '{protocol}'", "it is not DIMSE or DICOMweb")
        fields = {k: v for k, v in data.items() if k not in ("protocol", "name")}
        node = cls(str(data.get("name", "")), protocol, fields)
        node.endpoint("x")  # checks every field (a stand-in secret: the real one is not stored)
        return node

    def as_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "name": self.name, **self.fields}

    @property
    def is_dicomweb(self) -> bool:
        return self.protocol == DICOMWEB

    @property
    def secret_kind(self) -> str:
        """ "password", "token", or "" when the node needs no secret."""
        auth = self.fields.get("auth", "none") if self.is_dicomweb else "none"
        return {"basic": "password", "bearer": "token"}.get(str(auth), "")

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.is_dicomweb:
            return str(self.fields.get("url", "DICOMweb"))
        f = self.fields
        return f"{f.get('ae_title')}@{f.get('host')}:{f.get('port')}"

    def endpoint(self, secret: str = "") -> Endpoint:
        """The client's node (a PacsError names the field that is wrong or the missing secret)."""
        if self.is_dicomweb:
            from cxr_viewer.core.interop.dicomweb import DicomWebNode

            kind = self.secret_kind
            return DicomWebNode.from_dict(
                self.fields,
                password=secret if kind == "password" else "",
                token=secret if kind == "token" else "",
            )
        from cxr_viewer.core.interop.pacs import PacsNode

        return PacsNode.from_dict({**self.fields, "name": self.name})


def load_nodes(settings: Settings) -> list[SavedNode]:
    """The PACS nodes saved in the settings (entries that are not usable are skipped); the
    DICOMweb service the former DICOMweb dialog remembered is added once, as a node."""
    raw = settings.q.value(NODES_KEY, "")
    try:
        items = json.loads(str(raw)) if raw else []
    except ValueError:
        items = []
    nodes = []
    for item in items if isinstance(items, list) else []:
        try:
            nodes.append(SavedNode.from_dict(item))
        except (CxrError, KeyError, TypeError, AttributeError):
            continue
    legacy = settings.q.value(LEGACY_DICOMWEB_KEY, "")
    if legacy:
        settings.q.remove(LEGACY_DICOMWEB_KEY)
        try:
            nodes.append(SavedNode.from_dict({**json.loads(str(legacy)), "protocol": DICOMWEB}))
        except (ValueError, CxrError, KeyError, TypeError, AttributeError):
            return nodes
        save_nodes(settings, nodes)
    return nodes


def save_nodes(settings: Settings, nodes: Sequence[SavedNode | Endpoint]) -> None:
    """Save ``nodes`` (saved nodes, or endpoints: a DIMSE node keeps its own name)."""
    saved = [n if isinstance(n, SavedNode) else SavedNode.of(n) for n in nodes]
    settings.q.setValue(NODES_KEY, json.dumps([n.as_dict() for n in saved]))


# ---------------------------------------------------------------------------- operations


def _is_web(endpoint: Endpoint) -> bool:
    from cxr_viewer.core.interop.pacs import PacsNode

    return not isinstance(endpoint, PacsNode)


def echo_text(endpoint: Endpoint) -> str:
    """What the connection test sends: "the C-ECHO" or "a QIDO-RS query"."""
    return "a QIDO-RS query" if _is_web(endpoint) else "the C-ECHO"


def echo(endpoint: Endpoint, cancel: CancelToken) -> float:
    """Test the connection (C-ECHO, or a one-study QIDO-RS query); seconds it took."""
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsClient

    if isinstance(endpoint, DicomWebNode):
        cancel.raise_if_cancelled()
        return DicomWebClient(endpoint, timeout=ECHO_TIMEOUT_S).echo()
    return PacsClient(endpoint, timeout=ECHO_TIMEOUT_S).echo(cancel=cancel)


@dataclass(frozen=True)
class StudyQuery:
    """A study-level query, the same for both protocols."""

    patient_name: str = ""
    patient_id: str = ""
    date_from: str | None = None
    date_to: str | None = None
    modalities: tuple[str, ...] = ("CR", "DX")


def find(endpoint: Endpoint, query: StudyQuery, cancel: CancelToken) -> list[StudyRecord]:
    """C-FIND or QIDO-RS at study level (a C-FIND's list carries ``problem`` when it may be
    incomplete)."""
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsClient

    keys: dict[str, Any] = dict(
        patient_name=query.patient_name,
        patient_id=query.patient_id,
        date_from=query.date_from,
        date_to=query.date_to,
        modalities=list(query.modalities),
    )
    if isinstance(endpoint, DicomWebNode):
        cancel.raise_if_cancelled()
        return DicomWebClient(endpoint).find_studies(**keys)
    return PacsClient(endpoint).find_studies(**keys, cancel=cancel)


@dataclass
class Retrieved:
    """What a retrieve brought: images (for the study list), stored results beside them
    (Parametric Maps, Segmentations, reports), and a problem per study that fell short."""

    images: list[Path] = field(default_factory=list)
    results: int = 0
    problems: list[BaseException] = field(default_factory=list)


def split_results(files: Sequence[Path]) -> tuple[list[Path], int]:
    """(images, number of derived results): results are shown over their image
    (File ▸ Stored DICOM results…), not opened as studies."""
    import pydicom

    from cxr_viewer.core.interop.dicomweb import DERIVED_CLASSES

    images, results = [], 0
    for f in files:
        try:
            sop_class = str(pydicom.dcmread(f, stop_before_pixels=True).get("SOPClassUID", ""))
        except Exception:  # noqa: BLE001 - the study list says why it cannot open the file
            sop_class = ""
        if sop_class in DERIVED_CLASSES:
            results += 1
        else:
            images.append(f)
    return images, results


StepFn = Callable[[int, int], None]


def _retrieve_web(
    endpoint: DicomWebNode,
    uid: str,
    folder: Path,
    step: StepFn,
    cancel: CancelToken,
    patient_id: str | None = None,
) -> RetrieveResult:
    """WADO-RS one instance at a time: progress per instance, a cancel between two; an
    instance of another study or patient is refused (``rejected``), never written."""
    from cxr_viewer.core.interop.dicomweb import DicomWebClient
    from cxr_viewer.core.interop.pacs import RetrieveResult

    client = DicomWebClient(endpoint)
    todo = client.find_instances(uid)
    result = RetrieveResult()
    for i, record in enumerate(todo):
        if cancel.cancelled:
            result.cancelled = True
            break
        part = client.retrieve_study(uid, folder, instances=[record], patient_id=patient_id)
        result.files.extend(part.files)
        result.failed += part.failed
        result.rejected.extend(part.rejected)
        if part.problem and not part.rejected:
            result.problem = part.problem
        step(i + 1, len(todo))
    result.note_refused()
    return result


def _raise_incomplete(endpoint: Endpoint, result: RetrieveResult) -> None:
    """A PacsError when a study did not arrive whole (a cancel ends the task as cancelled)."""
    from cxr_viewer.core.interop.dicomweb import DicomWebNode
    from cxr_viewer.core.interop.pacs import raise_for_retrieve

    if not isinstance(endpoint, DicomWebNode):
        raise_for_retrieve(endpoint, result)
    elif result.failed or result.problem or result.rejected:
        why = result.problem or f"{result.failed} instance(s) failed"
        raise PacsError(
            f"The retrieve from {endpoint.label} is incomplete ({len(result.files)} arrived)",
            why,
            "Try again later or check the server's log.",
        )


def retrieve(
    endpoint: Endpoint,
    studies: Sequence[tuple[str, str]],
    base: Path,
    progress: ProgressFn,
    cancel: CancelToken,
    partial: Callable[[list[Path]], None],
) -> Retrieved:
    """C-GET / C-MOVE or WADO-RS of ``studies`` ((Study Instance UID, Patient ID) pairs) into
    ``base``: each study in a folder derived from its UID and confined to ``base``; the images
    of each study go to ``partial`` as soon as it has arrived. A study that fails is a
    problem of the result, not the end of the others."""
    from cxr_viewer.core.interop.dicomweb import DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsClient, retrieve_folder

    out = Retrieved()
    n = len(studies)
    for k, (uid, patient_id) in enumerate(studies):
        if cancel.cancelled:
            break

        def step(done: int, total: int, k: int = k) -> None:
            frac = (k + (done / total if total else 0.0)) / n
            progress(frac, f"study {k + 1}/{n}: {done}/{total or '?'} images")

        try:
            # UIDs and patient IDs come from the network: the folder is derived from the UID
            # and confined to the retrieve folder
            folder = retrieve_folder(base, uid)
            if isinstance(endpoint, DicomWebNode):
                result = _retrieve_web(endpoint, uid, folder, step, cancel, patient_id or None)
            else:
                result = PacsClient(endpoint).retrieve_study(
                    uid, folder, patient_id=patient_id or None, progress=step, cancel=cancel
                )
        except CxrError as exc:  # this study only (e.g. its UID is not a DICOM UID)
            out.problems.append(exc)
            continue
        images, results = split_results(result.files)
        out.images.extend(images)
        out.results += results
        partial(images)
        try:
            _raise_incomplete(endpoint, result)
        except CxrError as exc:
            out.problems.append(exc)
    return out


def store(endpoint: Endpoint, files: Sequence[Path], cancel: CancelToken) -> None:
    """C-STORE or STOW-RS ``files``; a PacsError when any was not stored."""
    from cxr_viewer.core.interop.dicomweb import DicomWebClient, DicomWebNode
    from cxr_viewer.core.interop.pacs import PacsClient

    cancel.raise_if_cancelled()
    if isinstance(endpoint, DicomWebNode):
        client = DicomWebClient(endpoint)
        client.raise_if_failed(client.store(list(files)))
    else:
        PacsClient(endpoint).store(files, cancel=cancel).raise_if_failed(endpoint)


# ---------------------------------------------------------------------------- on the worker


class Network:
    """Runs the PACS operations on the controller's network worker.

    Each :meth:`submit` is a :class:`~.worker.Task` (cancellable; the worker cancels it at
    shutdown). A dialog that closes calls :meth:`abandon`: the task is cancelled and its
    callbacks, which would touch the closed dialog, are dropped.
    """

    def __init__(self, worker: WorkerThread) -> None:
        self.worker = worker
        #: node label → password or token, for this session only (never written)
        self._secrets: dict[str, str] = {}

    def remember_secret(self, node: SavedNode, secret: str) -> None:
        if node.secret_kind and secret:
            self._secrets[node.label] = secret

    def secret_for(self, node: SavedNode) -> str:
        return self._secrets.get(node.label, "") if node.secret_kind else ""

    def endpoint(self, node: SavedNode, secret: str | None = None) -> Endpoint:
        """``node``'s endpoint with ``secret`` (remembered when given), else the remembered one."""
        if secret:
            self.remember_secret(node, secret)
        return node.endpoint(secret or self.secret_for(node))

    def submit(
        self,
        slot: str,
        fn: Callable[[ProgressFn, CancelToken, Callable[[Any], None]], Any],
        *,
        on_done: Callable[[Any], None],
        on_error: Callable[[Failure], None],
        on_cancelled: Callable[[], None] | None = None,
        on_progress: Callable[[float, str], None] | None = None,
        on_partial: Callable[[Any], None] | None = None,
    ) -> Task:
        """Queue ``fn(progress, cancel, partial)``; a newer task in ``slot`` cancels an older."""
        task = Task(
            lambda progress, cancel, partial: fn(progress, cancel, partial),
            f"net:{slot}",
            on_done=on_done,
            on_error=on_error,
            on_progress=on_progress,
            on_partial=on_partial,
            on_cancelled=on_cancelled,
            partial_interval_s=0.0,  # every study's images reach the study list
        )
        return self.worker.submit(task)

    @staticmethod
    def abandon(task: Task) -> None:
        """Cancel ``task`` and drop its callbacks (its dialog is closing)."""
        task.on_done = task.on_error = task.on_progress = task.on_partial = None
        task.on_cancelled = None
        task.cancel()
