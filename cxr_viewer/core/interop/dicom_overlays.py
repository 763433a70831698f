"""Results stored beside an image, found again: the Parametric Maps, Segmentations and
Measurement Reports that reference it, whoever wrote them.

:func:`results_for_image` looks through DICOM files (a study folder from disk, or what a
DIMSE or DICOMweb retrieve wrote) or data sets for the objects that reference one image (by
its SOP Instance UID) and returns them as :class:`ImageResults`: the maps as
:class:`~cxr_viewer.core.explain.base.Heatmap` objects the viewer can draw as overlays
(:meth:`ImageResults.heatmaps`), the top-region masks, and the reports' figures for the
legend. :func:`describe_derived` says which image a derived object belongs to, for a Parametric
Map or Segmentation opened on its own.

Headers are read first (without pixels); only the objects that reference the image are read
in full. Qt-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr_viewer.core.errors import CxrError, DicomExportError
from cxr_viewer.core.interop.dicom_pm import (
    PARAMETRIC_MAP_STORAGE,
    ExplanationMap,
    read_parametric_map,
    referenced_images,
)
from cxr_viewer.core.interop.dicom_seg import SEGMENTATION_STORAGE, RegionMask, read_segmentation
from cxr_viewer.core.interop.dicom_sr import ReportSummary, read_report

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.core.explain.base import Heatmap

SR_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.34")
KIND_NAMES = {PARAMETRIC_MAP_STORAGE: "Parametric Map", SEGMENTATION_STORAGE: "Segmentation"}


@dataclass
class ImageResults:
    """What was found for one image."""

    sop_instance_uid: str
    maps: list[ExplanationMap] = field(default_factory=list)
    regions: list[RegionMask] = field(default_factory=list)
    reports: list[ReportSummary] = field(default_factory=list)
    #: files that looked like results but could not be read: (name, why)
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.maps or self.regions)

    def figures_of(self, m: ExplanationMap) -> dict[str, float]:
        """The trust figures a report gives for map ``m`` (empty when no report names it)."""
        for report in self.reports:
            if m.sop_instance_uid in report.map_figures:
                return dict(report.map_figures[m.sop_instance_uid])
        return {}

    def legend(self, m: ExplanationMap) -> str:
        """One line for the overlay's legend: meaning, unit, trust figures, model."""
        parts = [m.meaning or m.label]
        if m.unit:
            parts.append(f"unit: {m.unit}")
        parts += [f"{k} {v:.3f}" for k, v in sorted(self.figures_of(m).items())]
        for report in self.reports:
            if m.sop_instance_uid in report.map_figures and report.algorithm_name:
                parts.append(f"model {report.algorithm_name} {report.algorithm_version}".strip())
        return "; ".join(parts)

    def heatmaps(self, rows: int, columns: int) -> list[Heatmap]:
        """Each map as a Heatmap on the image's grid (as the viewer's own explanations are):
        method our name or the map's label, class from the report's tracking identifier or
        the meaning, trust figures from the report."""
        from cxr_viewer.core.explain.base import Heatmap
        from cxr_viewer.core.io.resize import resize_map

        out = []
        for m in self.maps:
            values = m.values
            if values.shape != (rows, columns):
                values = resize_map(values, rows, columns)
            out.append(
                Heatmap(
                    values=np.asarray(values, np.float32),
                    method=m.method or m.label.lower() or "map",
                    target_class=-1,
                    class_name=_class_of(m),
                    signed=m.signed,
                    settings={
                        "source": "DICOM Parametric Map",
                        "sop_instance_uid": m.sop_instance_uid,
                    },
                    trust=self.figures_of(m),
                )
            )
        return out


def _class_of(m: ExplanationMap) -> str:
    for marker in (" evidence for ", " attribution for "):
        if marker in m.meaning:
            return m.meaning.split(marker, 1)[1].split(",", 1)[0].strip()
    return ""


def _header(path: Path) -> Dataset | None:
    """The file's header, or None for a file that is not DICOM (a folder holds all sorts)."""
    import warnings

    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom guessing at a non-DICOM file's encoding
            return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return None


def _dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(f for f in path.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif path.is_file():
            out.append(path)
    return out


def results_for_image(
    sources: Iterable[str | Path | Dataset], sop_instance_uid: str
) -> ImageResults:
    """The Parametric Maps, Segmentations and reports among ``sources`` (files, folders or
    data sets) that reference the image ``sop_instance_uid``. Unreadable results are listed
    in :attr:`ImageResults.problems`, never raised: one bad file must not hide the others."""
    import pydicom
    from pydicom.dataset import Dataset

    found = ImageResults(sop_instance_uid)
    items: list[tuple[str, Dataset | Path]] = []
    for src in sources:
        if isinstance(src, Dataset):
            items.append((str(src.get("SOPInstanceUID", "data set")), src))
        else:
            items += [(f.name, f) for f in _dicom_files([src])]
    for name, item in items:
        header = item if isinstance(item, Dataset) else _header(item)
        if header is None:
            continue
        sop_class = str(header.get("SOPClassUID", ""))
        if sop_class not in (PARAMETRIC_MAP_STORAGE, SEGMENTATION_STORAGE, *SR_CLASSES):
            continue
        try:
            if sop_class in SR_CLASSES:
                ds = item if isinstance(item, Dataset) else pydicom.dcmread(item)
                report = read_report(ds)
                if sop_instance_uid in report.images:
                    found.reports.append(report)
                continue
            if not any(r.sop_instance_uid == sop_instance_uid for r in referenced_images(header)):
                continue
            ds = item if isinstance(item, Dataset) else pydicom.dcmread(item)
            if sop_class == PARAMETRIC_MAP_STORAGE:
                found.maps.append(read_parametric_map(ds))
            else:
                found.regions += read_segmentation(ds, sop_instance_uid)
        except (CxrError, OSError, ValueError, AttributeError, KeyError) as exc:
            found.problems.append((name, str(exc)))
    return found


def describe_derived(ds: Dataset) -> str | None:
    """For a Parametric Map or Segmentation: "Parametric Map of image … of series … in study
    …" (the image it belongs to); None for any other object."""
    kind = KIND_NAMES.get(str(ds.get("SOPClassUID", "")))
    if kind is None:
        return None
    refs = referenced_images(ds)
    if not refs:
        raise DicomExportError(
            f"This {kind} names no image",
            "it has no Referenced Series Sequence and no Source Image Sequence",
            "It cannot be shown over an image; open the image's study instead.",
        )
    what = "; ".join(r.describe() for r in refs)
    label = str(ds.get("ContentLabel", "") or ds.get("SeriesDescription", "")).strip()
    return f"{kind}{f' {label}' if label else ''} of {what}"
