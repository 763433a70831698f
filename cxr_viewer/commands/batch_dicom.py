"""``cxr-viewer batch --dicom-out DIR`` and ``--send AE@HOST:PORT``: results as DICOM.

Per image, after its explanations: one Secondary Capture per method and one Comprehensive SR
(:mod:`cxr_viewer.core.dicom_export`) written to ``--dicom-out`` (default with ``--send``:
``OUT/dicom``), then, with ``--send``, C-STOREd to that node (:mod:`cxr_viewer.core.pacs`),
image by image, so a failure part way loses nothing already sent or written. The node is
checked with a C-ECHO before any image is processed.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import CxrError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("DICOM results")
    g.add_argument(
        "--dicom-out",
        metavar="DIR",
        help="also write per image a Secondary Capture per method and a structured report",
    )
    g.add_argument(
        "--send",
        metavar="AE@HOST:PORT",
        help="C-STORE those DICOM results to this PACS node (implies --dicom-out OUT/dicom)",
    )
    g.add_argument(
        "--calling-ae",
        default="CXRLENS",
        help="our AE title for --send (default CXRLENS; the PACS must know it)",
    )
    g.add_argument(
        "--pacs-timeout", type=float, default=30.0, help="seconds per DICOM network step"
    )


class DicomOutput:
    """What the batch does with each image's results, from the command line."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.opacity = float(args.opacity)
        self.folder = Path(args.dicom_out or Path(args.out) / "dicom")
        self.client = None
        if args.send:
            from cxr_viewer.core.pacs import PacsClient, PacsNode

            node = PacsNode.parse(args.send, calling_ae=args.calling_ae)
            self.client = PacsClient(node, timeout=args.pacs_timeout)
            self.client.echo()  # fail before hours of work, not after

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DicomOutput | None:
        if not (getattr(args, "dicom_out", None) or getattr(args, "send", None)):
            return None
        if str(args.explain).strip().lower() in ("", "none"):
            raise CxrError(
                "Cannot write DICOM results without an explanation",
                "--dicom-out and --send write a Secondary Capture per explanation",
                "Use --explain gradcam (or another method).",
            )
        return cls(args)

    def handle(self, clf, study, prediction, heatmaps: list, row: dict[str, Any], stem: str) -> str:
        """Write (and send) one image's results; returns a short status, or raises CxrError."""
        from cxr_viewer.core.dicom_export import ExplanationResult, ModelIdentity, export_results

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
                "a Secondary Capture needs an explanation and none was computed",
                "Use --explain with at least one method.",
            )
        model = ModelIdentity.from_classifier(clf)
        result = export_results(study, prediction, model, explanations, self.folder, stem=stem)
        if self.client is None:
            return f"{len(result.files)} DICOM file(s)"
        sent = self.client.store(result.files)
        sent.raise_if_failed(self.client.node)
        return f"{len(sent.sent)} DICOM file(s) sent to {self.client.node.label}"
