"""DICOMweb with a PACS (dicomweb-client): QIDO-RS query, WADO-RS retrieve, STOW-RS store.

The web counterpart of :mod:`cxr_viewer.core.interop.pacs` (DIMSE). A :class:`DicomWebNode` is the
service's base URL (e.g. ``https://pacs.example.org/dicom-web``) and how to authenticate:

- ``auth="none"``, ``"basic"`` (user name and password, HTTP basic) or ``"bearer"`` (a token
  sent as ``Authorization: Bearer ...``);
- TLS certificates are verified by default (``verify_tls=True``; ``ca_bundle`` names a CA
  file for a hospital's own certificate authority). Credentials are refused over plain
  ``http://`` except to this machine (127.0.0.1, ::1, localhost).

Secrets never leave the node object: :meth:`DicomWebNode.as_dict` (what settings store) drops
the password and the token, and :attr:`DicomWebNode.label` shows the URL without them.

A :class:`DicomWebClient` turns every failure into a :class:`~cxr_viewer.core.errors.PacsError`
(what / why / what to do): the server cannot be reached, the TLS certificate is not trusted,
the credentials are refused (401/403), the service answers with an error status, or a STOW-RS
answer lists failed instances. Retrieved instances are written at once, atomically
(:func:`~cxr_viewer.core.interop.pacs.write_instance`), so a retrieve that fails part way keeps what
arrived. Nothing here contacts a server unless called.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, Unpack
from urllib.parse import urlsplit

from cxr_viewer.core.errors import PacsError
from cxr_viewer.core.interop.extra import import_extra
from cxr_viewer.core.interop.pacs import (
    MAX_FIND_RESULTS,
    STUDY_FIELDS,
    RetrieveResult,
    StoreResult,
    StudyKeys,
    StudyRecord,
    _record,
    foreign_instance,
    study_filters,
    write_instance,
)

if TYPE_CHECKING:
    import requests
    from dicomweb_client import DICOMwebClient
    from pydicom.dataset import Dataset

DEFAULT_TIMEOUT = 30.0
#: attempts per request (a busy server's 429/408/503/504 answer, or a network failure)
RETRY_ATTEMPTS = 3
AUTH_MODES = ("none", "basic", "bearer")
_LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")
#: what a derived result is: Parametric Map, Segmentation, and the SR classes CXR Lens writes
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
DERIVED_CLASSES = (
    PARAMETRIC_MAP_STORAGE,
    SEGMENTATION_STORAGE,
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
)

T = TypeVar("T")


@dataclass(frozen=True)
class DicomWebNode:
    """A DICOMweb service: base URL, authentication, TLS verification."""

    url: str
    auth: str = "none"
    username: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    verify_tls: bool = True
    ca_bundle: str = ""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PacsError(
                f"'{self.url}' is not a DICOMweb address",
                "it must start with https:// (or http://) and name a host",
                "Enter the service's base URL, e.g. https://pacs.example.org/dicom-web.",
            )
        if parts.username or parts.password:
            raise PacsError(
                "The DICOMweb address contains credentials",
                "a user name or password in the URL would be shown and stored with it",
                "Remove them from the URL and choose basic authentication instead.",
            )
        if self.auth not in AUTH_MODES:
            raise PacsError(
                f"Unknown DICOMweb authentication '{self.auth}'",
                f"it must be one of {', '.join(AUTH_MODES)}",
                "Choose none, basic (user name and password) or bearer (a token).",
            )
        if self.auth == "basic" and not self.username:
            raise PacsError(
                "Basic authentication needs a user name",
                "none was given",
                "Enter the user name (and the password) the PACS gave you.",
            )
        if self.auth == "bearer" and not self.token:
            raise PacsError(
                "Bearer authentication needs a token",
                "none was given",
                "Paste the access token (or set it in the environment variable named in the help).",
            )
        if self.auth != "none" and parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
            raise PacsError(
                "Credentials would be sent unencrypted",
                f"{parts.hostname} is reached over http://, not https://",
                "Use the https:// address of the service.",
            )
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise PacsError(
                "Cannot use the CA certificate file",
                f"{self.ca_bundle} does not exist",
                "Choose the PEM file of the hospital's certificate authority.",
            )
        object.__setattr__(self, "url", self.url.strip().rstrip("/"))

    @property
    def label(self) -> str:
        return self.url

    def as_dict(self) -> dict[str, Any]:
        """The node for the settings file: without the password and the token."""
        return {
            "protocol": "dicomweb",
            "url": self.url,
            "auth": self.auth,
            "username": self.username,
            "verify_tls": self.verify_tls,
            "ca_bundle": self.ca_bundle,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], *, password: str = "", token: str = ""
    ) -> DicomWebNode:
        return cls(
            url=str(data["url"]),
            auth=str(data.get("auth", "none")),
            username=str(data.get("username", "")),
            password=password,
            token=token,
            verify_tls=bool(data.get("verify_tls", True)),
            ca_bundle=str(data.get("ca_bundle", "")),
        )


@dataclass(frozen=True)
class InstanceRecord:
    """One QIDO-RS match at instance level."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str = ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value)


class DicomWebClient:
    """QIDO-RS, WADO-RS and STOW-RS against one :class:`DicomWebNode`."""

    def __init__(self, node: DicomWebNode, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.node = node
        self.timeout = float(timeout)
        self._web: DICOMwebClient | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        import requests

        class _Session(requests.Session):
            # requests lets $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE replace a session's own
            # verification setting; the node's choice (its CA file, or off) must hold
            def merge_environment_settings(
                self,
                url: str,
                proxies: Any,
                stream: Any,
                verify: Any,
                cert: Any,
            ) -> dict[str, Any]:
                settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
                settings["verify"] = self.verify
                return settings

        session = _Session()
        session.verify = self.node.ca_bundle or self.node.verify_tls
        if self.node.auth == "basic":
            session.auth = (self.node.username, self.node.password)
        elif self.node.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {self.node.token}"
        return session

    def _client(self) -> DICOMwebClient:
        if self._web is None:
            import_extra(
                "dicomweb_client", PacsError, "Cannot use DICOMweb", package="dicomweb-client"
            )
            from dicomweb_client import DICOMwebClient

            web = DICOMwebClient(self.node.url, session=self._session(), timeout=self.timeout)
            # dicomweb-client retries a busy server's 429/408/503/504 answers and (through the
            # retrying package) every exception too, 5 times with waits doubling from 1 s: 31 s
            # before an unreachable server or a refused certificate is reported. Three
            # attempts with waits from 0.25 s report it within about a second.
            web.set_http_retry_params(
                retry=True, max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=250
            )
            self._web = web
        return self._web

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request; every failure becomes a PacsError naming ``what``."""
        import requests

        label = self.node.label
        try:
            return fn()
        except requests.exceptions.SSLError as exc:
            raise PacsError(
                f"{what} on {label} failed",
                f"the server's TLS certificate is not trusted ({_short(exc)})",
                "Ask for the hospital's CA certificate and choose it as the CA file; turn "
                "verification off only to test.",
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise PacsError(
                f"{what} on {label} failed",
                f"the server did not answer within {self.timeout:g} s",
                "Check the address and the network, or raise the timeout.",
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise PacsError(
                f"{what} on {label} failed",
                f"the server cannot be reached ({_short(exc)})",
                "Check the address (host, port, path) and that the service is running.",
            ) from exc
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403):
                raise PacsError(
                    f"{what} on {label} was refused",
                    f"the server answered HTTP {status}: the credentials are missing, wrong or "
                    "not allowed to do this",
                    "Check the authentication (user name and password, or token).",
                ) from exc
            raise PacsError(
                f"{what} on {label} failed",
                f"the server answered HTTP {status} ({_short(exc)})",
                "Check the address (the DICOMweb base path) and the server's log.",
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise PacsError(f"{what} on {label} failed", _short(exc), "Check the address.") from exc

    # -- QIDO-RS ----------------------------------------------------------------------------

    def echo(self) -> float:
        """A QIDO-RS query for one study: checks address and credentials; returns seconds."""
        started = time.monotonic()
        self._call("The connection test", lambda: self._client().search_for_studies(limit=1))
        return time.monotonic() - started

    def find_studies(
        self, *, max_results: int = MAX_FIND_RESULTS, **keys: Unpack[StudyKeys]
    ) -> list[StudyRecord]:
        """QIDO-RS at study level, with the same keys as the DIMSE query."""
        from pydicom.dataset import Dataset

        filters = study_filters(keys)
        wanted = {m for m in filters.pop("ModalitiesInStudy").split("\\") if m}
        filters = {k: v for k, v in filters.items() if v}
        fields = list(STUDY_FIELDS)
        found = self._call(
            "The query",
            lambda: self._client().search_for_studies(
                search_filters=filters,
                fields=fields,
                limit=max_results,
            ),
        )
        out = []
        for item in found:
            record = _record(Dataset.from_json(item))
            mods = set(record.modalities.split("\\")) if record.modalities else set()
            if wanted and mods and not mods & wanted:
                continue  # servers that ignore a ModalitiesInStudy filter: applied here
            out.append(record)
        return out[:max_results]

    def find_instances(
        self, study_instance_uid: str, sop_class_uids: Iterable[str] = ()
    ) -> list[InstanceRecord]:
        """QIDO-RS: the instances of a study (only those of ``sop_class_uids`` when given)."""
        from pydicom.dataset import Dataset

        found = self._call(
            "The instance query",
            lambda: self._client().search_for_instances(
                study_instance_uid=study_instance_uid,
                fields=["SOPClassUID", "Modality", "SeriesInstanceUID"],
                get_remaining=True,
            ),
        )
        wanted = set(sop_class_uids)
        out = []
        for item in found:
            ds = Dataset.from_json(item)
            record = InstanceRecord(
                study_instance_uid=_text(ds, "StudyInstanceUID") or study_instance_uid,
                series_instance_uid=_text(ds, "SeriesInstanceUID"),
                sop_instance_uid=_text(ds, "SOPInstanceUID"),
                sop_class_uid=_text(ds, "SOPClassUID"),
                modality=_text(ds, "Modality"),
            )
            if not wanted or record.sop_class_uid in wanted:
                out.append(record)
        return out

    def find_results(self, study_instance_uid: str) -> list[InstanceRecord]:
        """QIDO-RS: the Parametric Maps, Segmentations and SRs of a study."""
        return self.find_instances(study_instance_uid, DERIVED_CLASSES)

    # -- WADO-RS ----------------------------------------------------------------------------

    def retrieve_instance(self, record: InstanceRecord) -> Dataset:
        """WADO-RS: one instance as a pydicom Dataset."""
        return self._call(
            "The retrieve",
            lambda: self._client().retrieve_instance(
                record.study_instance_uid, record.series_instance_uid, record.sop_instance_uid
            ),
        )

    def retrieve_study(
        self,
        study_instance_uid: str,
        dest: str | Path,
        *,
        instances: Iterable[InstanceRecord] = (),
        patient_id: str | None = None,
    ) -> RetrieveResult:
        """WADO-RS: the study's instances (or ``instances``) into ``dest``, one file each,
        written as each arrives; failures are counted, what arrived is kept. An instance of
        another study, or of another patient than ``patient_id`` (when given, e.g. from the
        QIDO-RS match), is refused and listed in ``rejected``, never written — as a C-GET or
        C-MOVE refuses it (:func:`~cxr_viewer.core.interop.pacs.foreign_instance`)."""
        from pydicom.dataset import FileMetaDataset

        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)
        todo = list(instances) or self.find_instances(study_instance_uid)
        result = RetrieveResult()
        for record in todo:
            try:
                ds = self.retrieve_instance(record)
            except PacsError as exc:
                result.failed += 1
                result.problem = str(exc)
                continue
            foreign = foreign_instance(
                str(ds.get("StudyInstanceUID", "") or ""),
                str(ds.get("PatientID", "") or ""),
                study_instance_uid,
                patient_id,
            )
            if foreign is not None:
                result.rejected.append(foreign[0])
                continue
            meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            if "TransferSyntaxUID" not in meta:
                meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            result.files.append(write_instance(folder, ds, meta))
        result.note_refused()
        return result

    # -- STOW-RS ----------------------------------------------------------------------------

    def store(
        self, items: Sequence[str | Path | Dataset], study_instance_uid: str | None = None
    ) -> StoreResult:
        """STOW-RS the files or data sets (one request per study); the server's answer says
        which were stored. Raise with :meth:`raise_if_failed`."""
        import pydicom

        result = StoreResult()
        by_study: dict[str, list[tuple[Path, Dataset]]] = {}
        for item in items:
            ds: Dataset
            if isinstance(item, str | Path):
                path = Path(item)
                try:
                    ds = pydicom.dcmread(path)
                except Exception as exc:
                    result.failed.append((path, f"cannot be read: {_short(exc)}"))
                    continue
            else:
                ds = item
                path = Path(str(getattr(ds, "filename", "") or f"{ds.SOPInstanceUID}.dcm"))
            study = study_instance_uid or str(ds.get("StudyInstanceUID", ""))
            by_study.setdefault(study, []).append((path, ds))
        for study, pairs in by_study.items():
            answer = self._call("The store", self._stow([ds for _, ds in pairs], study))
            failed = {
                str(i.ReferencedSOPInstanceUID): int(i.get("FailureReason", 0))
                for i in answer.get("FailedSOPSequence", [])
            }
            stored = {
                str(i.ReferencedSOPInstanceUID) for i in answer.get("ReferencedSOPSequence", [])
            }
            for path, ds in pairs:
                uid = str(ds.SOPInstanceUID)
                if uid in failed:
                    result.failed.append((path, f"refused, failure reason 0x{failed[uid]:04X}"))
                elif uid in stored:
                    result.sent.append(path)
                else:
                    result.failed.append((path, "not listed as stored in the server's answer"))
        return result

    def _stow(self, datasets: list[Dataset], study: str) -> Callable[[], Dataset]:
        def run() -> Dataset:
            return self._client().store_instances(datasets, study_instance_uid=study or None)

        return run

    def raise_if_failed(self, result: StoreResult) -> None:
        """A PacsError when an object of ``result`` was not stored."""
        result.raise_if_failed(self.node, "object", "server")


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
