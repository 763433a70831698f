"""The top region of an explanation map as a DICOM Segmentation, for viewers that draw SEG
but not Parametric Maps; and reading Segmentations back.

:func:`segmentation` writes one binary segment: the map's top ``k`` % of the image area
(:func:`~cxr_viewer.core.evaluate.localize.topk_region`: pixels tied at the threshold included,
non-positive pixels never selected), on the source film's pixel grid, referencing the film.
Segment: category SCT 309825002 "Spatial and Relational Concept" (DICOM CID 7150), type the
method's DCM CID 217 code (e.g. 130403 "Gradient-weighted class activation"), algorithm type
AUTOMATIC with the model as the algorithm, label e.g. "Grad-CAM PNEUMONIA top 10%".

Qt-free; highdicom (the ``pacs`` extra) is imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.interop.dicom_export import (
    MANUFACTURER,
    _highdicom,
    derived_object,
    require_referenceable,
    require_sop_class,
)
from cxr_viewer.core.interop.dicom_pm import ImageReference, method_code, referenced_images

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity

SEG_SERIES_NUMBER = 9905
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: SCT 309825002 "Spatial and Relational Concept" (DICOM CID 7150)
CATEGORY = ("309825002", "SCT", "Spatial and Relational Concept")
DEFAULT_TOP_PERCENT = 10.0


def segmentation(
    source: Dataset,
    explanation: ExplanationResult,
    model: ModelIdentity,
    *,
    top_percent: float = DEFAULT_TOP_PERCENT,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """A binary Segmentation (pydicom Dataset) of the map's top ``top_percent`` % region."""
    from cxr_viewer.core.evaluate.localize import topk_region

    require_referenceable(source, "a Segmentation")
    rows, cols = int(source.Rows), int(source.Columns)
    if explanation.values.shape != (rows, cols):
        raise DicomExportError(
            "Cannot write the Segmentation",
            f"the map is {explanation.values.shape}, the image {rows}×{cols}",
            "Resample the map to the image's pixel grid (ExplanationResult.from_heatmap).",
        )
    if not 0.0 < top_percent <= 100.0:
        raise DicomExportError(
            "Cannot write the Segmentation",
            f"the top region's share {top_percent:g} % is not in (0, 100]",
            "Choose e.g. 10 (the top 10 % of the image area).",
        )
    hd = _highdicom()
    mask = np.asarray(topk_region(np.asarray(explanation.values, np.float32), top_percent))
    code_value, code_meaning = method_code(explanation.method)
    method = explanation.method_label
    label = f"{method} {explanation.class_name} top {top_percent:g}%"[:64]
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=label,
        segmented_property_category=hd.sr.CodedConcept(*CATEGORY),
        segmented_property_type=hd.sr.CodedConcept(code_value, "DCM", code_meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=model.name[:64] or "unnamed",
            family=hd.sr.CodedConcept("130401", "DCM", "Visual explanation"),
            version=(model.version or "unversioned")[:64],
            source=MANUFACTURER,
        ),
    )
    seg = derived_object(
        hd.seg.Segmentation,
        source,
        model,
        SEG_SERIES_NUMBER,
        f"{method} top region",
        series_instance_uid=series_instance_uid,
        instance_number=instance_number,
        source_images=[source],
        pixel_array=mask.astype(np.uint8)[np.newaxis],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        content_label="TOPREGION",
        content_description=label,
        omit_empty_frames=False,
    )
    return seg


@dataclass
class RegionMask:
    """One segment of a Segmentation read back."""

    mask: np.ndarray  # bool (rows, columns)
    label: str
    segment_number: int
    references: list[ImageReference]
    sop_instance_uid: str


def read_segmentation(ds: Dataset, sop_instance_uid: str) -> list[RegionMask]:
    """The segments of a Segmentation on the image ``sop_instance_uid`` (any program's)."""
    require_sop_class(ds, SEGMENTATION_STORAGE, "Segmentation", "the regions")
    hd = _highdicom()
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        out = []
        for desc in seg.SegmentSequence:
            number = int(desc.SegmentNumber)
            pixels = seg.get_pixels_by_source_instance(
                [sop_instance_uid], segment_numbers=[number], ignore_spatial_locations=True
            )
            out.append(
                RegionMask(
                    mask=np.asarray(pixels[0, :, :, 0] > 0),
                    label=str(desc.SegmentLabel),
                    segment_number=number,
                    references=referenced_images(ds),
                    sop_instance_uid=str(ds.SOPInstanceUID),
                )
            )
    except (AttributeError, IndexError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise DicomExportError(
            "Cannot read the Segmentation",
            f"{type(exc).__name__}: {exc}",
            "The object may be malformed or not cover this image.",
        ) from exc
    return out
