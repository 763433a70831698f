"""``cxr-viewer batch --dicom-out DIR`` and ``--send AE@HOST:PORT`` or ``--send URL``:
results as DICOM.

Per image, after its explanations, the objects of ``--dicom-objects`` (default ``pm,sr``: a
Parametric Map per method and a TID 1500 Measurement Report; ``seg``: a Segmentation of each
map's top region; ``sc``: the Secondary Capture fallback with its Comprehensive SR;
:mod:`cxr_viewer.core.interop.dicom_results`) written to ``--dicom-out`` (default with ``--send``:
``OUT/dicom``), then, with ``--send``, C-STOREd to that node (:mod:`cxr_viewer.core.interop.pacs`) or,
for an ``https://`` (or ``http://``) address, STOW-RS'd to that DICOMweb service
(:mod:`cxr_viewer.core.interop.dicomweb`), image by image, so a failure part way loses nothing already
sent or written. The node is checked (C-ECHO, or a QIDO-RS query) before any image is processed.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import CxrError

if TYPE_CHECKING:
    from cxr_viewer.core.analysis import Analysis


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DICOM results")
    g.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write per image the DICOM objects of --dicom-objects to DIR",
    )
    g.add_argument(
        "--dicom-objects",
        default="pm,sr",
        metavar="LIST",
        help="which DICOM objects: pm (Parametric Map per method), sr (TID 1500 measurement "
        "report), seg (Segmentation of each map's top region), sc (Secondary Capture with the "
        "map burned in, and its SR); default pm,sr (PNG/JPEG sources always get sc)",
    )
    g.add_argument(
        "--send",
        metavar="AE@HOST:PORT|URL",
        help="C-STORE those DICOM results to this PACS node, or STOW-RS them to this DICOMweb "
        "URL (implies --dicom-out OUT/dicom)",
    )
    g.add_argument(
        "--calling-ae",
        default="CXRLENS",
        help="our AE title for --send (default CXRLENS; the PACS must know it)",
    )
    g.add_argument(
        "--pacs-timeout", type=float, default=30.0, help="seconds per DICOM network step"
    )
    from cxr_viewer.commands.dicomweb_args import add_arguments as add_dicomweb_arguments

    add_dicomweb_arguments(g)


@dataclass(frozen=True)
class DicomOptions:
    """The command line's DICOM result options (``--dicom-out``, ``--send`` …), typed."""

    out: str
    explain: str
    opacity: float = 0.5
    dicom_out: str | None = None
    dicom_objects: str = "pm,sr"
    send: str | None = None
    calling_ae: str = "CXRLENS"
    pacs_timeout: float = 30.0
    dicomweb_auth: str = "none"
    dicomweb_user: str = ""
    dicomweb_ca: str = ""
    dicomweb_no_verify: bool = False

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> DicomOptions:
        return cls(
            out=str(ns.out),
            explain=str(getattr(ns, "explain", "")),
            opacity=float(getattr(ns, "opacity", 0.5)),
            dicom_out=getattr(ns, "dicom_out", None),
            dicom_objects=str(getattr(ns, "dicom_objects", "pm,sr")),
            send=getattr(ns, "send", None),
            calling_ae=str(getattr(ns, "calling_ae", "CXRLENS")),
            pacs_timeout=float(getattr(ns, "pacs_timeout", 30.0)),
            dicomweb_auth=str(getattr(ns, "dicomweb_auth", "none")),
            dicomweb_user=str(getattr(ns, "dicomweb_user", "")),
            dicomweb_ca=str(getattr(ns, "dicomweb_ca", "")),
            dicomweb_no_verify=bool(getattr(ns, "dicomweb_no_verify", False)),
        )


class DicomOutput:
    """What the batch does with each image's results, from the command line."""

    def __init__(self, args: DicomOptions) -> None:
        self.opacity = float(args.opacity)
        from cxr_viewer.core.interop.dicom_results import parse_kinds

        self.folder = Path(args.dicom_out or Path(args.out) / "dicom")
        self.kinds = parse_kinds(getattr(args, "dicom_objects", "pm,sr"))
        self.model_sha256: str | None = None
        self.client: Any = None
        self.web: Any = None
        if args.send:
            from cxr_viewer.commands.dicomweb_args import is_dicomweb, node_from_args

            if is_dicomweb(args.send):
                from cxr_viewer.core.interop.dicomweb import DicomWebClient

                self.web = DicomWebClient(node_from_args(args), timeout=args.pacs_timeout)
                self.web.echo()  # fail before hours of work, not after
                return
            from cxr_viewer.core.interop.pacs import PacsClient, PacsNode

            node = PacsNode.parse(args.send, calling_ae=args.calling_ae)
            self.client = PacsClient(node, timeout=args.pacs_timeout)
            self.client.echo()  # fail before hours of work, not after

    @classmethod
    def from_options(cls, args: DicomOptions | None) -> DicomOutput | None:
        if args is None or not (args.dicom_out or args.send):
            return None
        if str(args.explain).strip().lower() in ("", "none"):
            raise CxrError(
                "Cannot write DICOM results without an explanation",
                "--dicom-out and --send write a Secondary Capture per explanation",
                "Use --explain gradcam (or another method).",
            )
        return cls(args)

    def handle(self, analysis: Analysis, heatmaps: list, row: dict[str, Any], stem: str) -> str:
        """Write (and send) one image's results — the analysis (:mod:`cxr_viewer.core.analysis`)
        and its maps at the study's size; returns a short status, or raises CxrError."""
        from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity
        from cxr_viewer.core.interop.dicom_results import export_objects, file_sha256

        clf, study, prediction = analysis.classifier, analysis.study, analysis.prediction
        if prediction is None:
            raise CxrError("No DICOM results written", "the image was not predicted")
        explanations = []
        film = []
        if row.get("agreement"):
            film.append(f"Agreement: {row['agreement']}")
        for hm in heatmaps:
            trust = {
                k: row[f"{hm.method}_{k}"]
                for k in ("deletion_auc", "insertion_auc")
                if row.get(f"{hm.method}_{k}") not in (None, "")
            }
            best = ["most faithful on this film"] if row.get("most_faithful") == hm.method else []
            explanations.append(
                ExplanationResult.from_heatmap(
                    hm, study, opacity=self.opacity, trust=trust, notes=[*best, *film]
                )
            )
        if not explanations:
            raise CxrError(
                "No DICOM results written",
                "every DICOM object describes an explanation and none was computed",
                "Use --explain with at least one method.",
            )
        model = ModelIdentity.from_classifier(clf)
        if self.model_sha256 is None:
            self.model_sha256 = str(clf.bundle.metadata.get("model_sha256") or "") or (
                file_sha256(clf.bundle.model_path)
            )
        result = export_objects(
            study,
            prediction,
            model,
            explanations,
            self.folder,
            kinds=self.kinds,
            model_sha256=self.model_sha256,
            stem=stem,
        )
        note = f" ({result.note})" if result.note else ""
        if self.web is not None:
            stored = self.web.store(result.files)
            self.web.raise_if_failed(stored)
            return f"{len(stored.sent)} DICOM object(s) stored on {self.web.node.label}{note}"
        if self.client is None:
            return f"{len(result.files)} DICOM file(s){note}"
        sent = self.client.store(result.files)
        sent.raise_if_failed(self.client.node)
        return f"{len(sent.sent)} DICOM file(s) sent to {self.client.node.label}{note}"
