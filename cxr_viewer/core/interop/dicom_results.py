"""One image's results as the DICOM objects a hospital asks for, written to a folder.

:func:`export_objects` writes, for one image, the kinds chosen (:data:`KINDS`):

- ``pm``  — a Parametric Map per explanation (:mod:`cxr_viewer.core.interop.dicom_pm`);
- ``sr``  — one TID 1500 Measurement Report (:mod:`cxr_viewer.core.interop.dicom_sr`) referencing the
  maps and segmentations written with it;
- ``seg`` — a Segmentation of each map's top region (:mod:`cxr_viewer.core.interop.dicom_seg`);
- ``sc``  — the fallback: a Secondary Capture per explanation with the map burned in, and the
  Comprehensive SR that goes with them (:func:`~cxr_viewer.core.interop.dicom_export.export_results`).

Parametric Maps, reports and Segmentations reference a DICOM source image; for a PNG/JPEG
source (nothing to reference) the Secondary Capture fallback is written instead and
:attr:`ObjectsResult.note` says so. File names: ``<stem>_<method>_PM.dcm``,
``<stem>_<method>_SEG.dcm``, ``<stem>_MR.dcm`` (the report), and those of ``export_results``.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.interop.dicom_export import (
    ExplanationResult,
    ModelIdentity,
    _referenceable,
    _save,
    export_results,
    output_folder,
    source_header,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.core.io.study import Study
    from cxr_viewer.core.model.inference import Prediction

KINDS = ("sc", "pm", "sr", "seg")
DEFAULT_KINDS = ("pm", "sr")


def parse_kinds(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"pm,sr"`` → ``("pm", "sr")`` (order of :data:`KINDS`); a clear error otherwise."""
    items = text.split(",") if isinstance(text, str) else list(text)
    kinds = {k.strip().lower() for k in items if k.strip()}
    unknown = sorted(kinds - set(KINDS))
    if unknown or not kinds:
        raise DicomExportError(
            "Cannot tell which DICOM objects to write",
            f"'{','.join(unknown) or text}' is not among {', '.join(KINDS)}",
            "List some of sc, pm, sr, seg separated by commas, e.g. pm,sr.",
        )
    return tuple(k for k in KINDS if k in kinds)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ObjectsResult:
    """What :func:`export_objects` wrote (paths in writing order) and of which kind."""

    files: list[Path] = field(default_factory=list)
    kinds: dict[Path, str] = field(default_factory=dict)
    study_instance_uid: str = ""
    note: str = ""

    def of_kind(self, kind: str) -> list[Path]:
        return [p for p in self.files if self.kinds[p] == kind]


def export_objects(
    study: Study,
    prediction: Prediction,
    model: ModelIdentity,
    explanations: Sequence[ExplanationResult],
    out_dir: str | Path,
    *,
    kinds: Sequence[str] = DEFAULT_KINDS,
    model_sha256: str | None = None,
    stem: str | None = None,
    top_percent: float | None = None,
) -> ObjectsResult:
    """Write the chosen kinds of objects for one image (see the module's docstring)."""
    from cxr_viewer.core.interop.dicom_pm import parametric_map
    from cxr_viewer.core.interop.dicom_seg import DEFAULT_TOP_PERCENT, segmentation
    from cxr_viewer.core.interop.dicom_sr import measurement_report

    chosen = parse_kinds(kinds)
    if not explanations:
        raise DicomExportError(
            "No DICOM results written",
            "every object kind describes an explanation and none was computed",
            "Use --explain with at least one method.",
        )
    out = output_folder(out_dir)
    stem = stem or study.path.stem
    source = source_header(study)
    result = ObjectsResult()
    want_sc = "sc" in chosen
    if not _referenceable(source) and not want_sc:
        want_sc = True
        result.note = (
            "no DICOM source image to reference: Secondary Capture and Comprehensive SR "
            "written instead"
        )
    if want_sc:
        legacy = export_results(study, prediction, model, explanations, out, stem=stem)
        for p in legacy.secondary_captures:
            result.files.append(p)
            result.kinds[p] = "sc"
        result.files.append(legacy.report)
        result.kinds[legacy.report] = "sc-sr"
        result.study_instance_uid = legacy.study_instance_uid
    if not _referenceable(source):
        return result
    assert source is not None
    result.study_instance_uid = str(source.StudyInstanceUID)
    from cxr_viewer.core.interop.dicom_export import _highdicom

    hd = _highdicom()
    pms: list[Dataset] = []
    segs: list[Dataset] = []
    pm_series, seg_series = hd.UID(), hd.UID()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        for i, ex in enumerate(explanations, 1):
            tag = ex.method.replace("+", "p")
            if "pm" in chosen:
                pm = parametric_map(
                    source, ex, model, series_instance_uid=pm_series, instance_number=i
                )
                pms.append(pm)
                _add(result, _save(pm, out / f"{stem}_{tag}_PM.dcm"), "pm")
            if "seg" in chosen:
                seg = segmentation(
                    source,
                    ex,
                    model,
                    top_percent=top_percent or DEFAULT_TOP_PERCENT,
                    series_instance_uid=seg_series,
                    instance_number=i,
                )
                segs.append(seg)
                _add(result, _save(seg, out / f"{stem}_{tag}_SEG.dcm"), "seg")
        if "sr" in chosen:
            report = measurement_report(
                source,
                prediction,
                model,
                explanations,
                pms,
                model_sha256=model_sha256,
                segmentations=segs,
            )
            _add(result, _save(report, out / f"{stem}_MR.dcm"), "sr")
    return result


def _add(result: ObjectsResult, path: Path, kind: str) -> None:
    result.files.append(path)
    result.kinds[path] = kind
