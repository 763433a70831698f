"""DICOM header → Study fields: per-frame attributes, VOI windows and LUTs, spacing, metadata.

Only the values are read here; applying them is the display pipeline's job
(:mod:`cxr_viewer.core.io.display`, DICOM PS3.3 C.11).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.processing import apply_voi
from pydicom.sequence import Sequence

from cxr_viewer.core.io.study import VoiLut, Window

#: Header values copied into ``Study.metadata`` (as strings) when present.
METADATA_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyDescription",
    "SeriesDescription",
    "Modality",
    "ViewPosition",
    "BodyPartExamined",
    "InstitutionName",
    "Manufacturer",
)

# Attributes of the Modality LUT, VOI LUT, Presentation LUT and Pixel Measures modules that a
# frame's view needs, and the functional group macros that override them per frame
# (PS3.3 C.7.6.16.2.9 Pixel Value Transformation, C.7.6.16.2.10 Frame VOI LUT,
# C.7.6.16.2.1 Pixel Measures).
_FRAME_KEYWORDS = (
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "VOILUTSequence",
    "PresentationLUTShape",
    "PixelSpacing",
    "ImagerPixelSpacing",
)
_FUNCTIONAL_GROUP_MACROS = (
    "PixelValueTransformationSequence",
    "FrameVOILUTSequence",
    "PixelMeasuresSequence",
)
_VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def frame_view(ds: Dataset, frame: int) -> Dataset:
    """The LUT/VOI/spacing attributes that apply to ``frame``.

    For classic objects that is ``ds`` itself. Enhanced multi-frame objects keep them in the
    Shared and Per-frame Functional Groups Sequences (PS3.3 C.7.6.16): the returned data set
    holds the top-level values overridden by the shared, then the frame's own groups.
    """
    shared = ds.get("SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not shared and not per_frame:
        return ds
    view = Dataset()
    view.file_meta = ds.file_meta
    view.set_original_encoding(*ds.original_encoding)
    for keyword in _FRAME_KEYWORDS:
        if keyword in ds:
            elem = ds[keyword]
            view[elem.tag] = elem
    items = [shared[0]] if shared else []
    if per_frame and frame < len(per_frame):
        items.append(per_frame[frame])
    for item in items:
        for macro in _FUNCTIONAL_GROUP_MACROS:
            seq = item.get(macro)
            if seq:
                for elem in seq[0]:
                    view[elem.tag] = elem
    return view


def _values(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def windows_of(view: Dataset) -> list[Window]:
    """Every valid window (Window Center/Width pairs, PS3.3 C.11.2.1.2) with its explanation.

    Pairs that are not finite or have a width ≤ 0 are skipped; an unknown VOI LUT Function
    falls back to LINEAR, the standard's default.
    """
    centers = _values(view.get("WindowCenter"))
    widths = _values(view.get("WindowWidth"))
    names = _values(view.get("WindowCenterWidthExplanation"))
    function = str(view.get("VOILUTFunction") or "LINEAR").strip().upper()
    if function not in _VOI_FUNCTIONS:
        function = "LINEAR"
    out: list[Window] = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        try:
            center, width = float(c), float(w)
        except (TypeError, ValueError):
            continue
        if not (math.isfinite(center) and math.isfinite(width)) or width <= 0:
            continue
        name = str(names[i]).strip() if i < len(names) else ""
        out.append(Window(center, width, function, name))  # type: ignore[arg-type]
    return out


def voi_luts_of(view: Dataset) -> list[VoiLut]:
    """The VOI LUTs of a VOI LUT Sequence (PS3.3 C.11.2.1.1), read with pydicom's ``apply_voi``.

    Each table is obtained by mapping every input it covers through ``apply_voi``, so pydicom
    handles the US/SS and US/OW ambiguities of LUT Descriptor and LUT Data. Tables are read
    into 16-bit entries; if the data exceed the bit depth the descriptor declares, or it
    declares a depth outside 1..16 bits (known encoder errors), the depth is taken from the
    data.
    """
    out: list[VoiLut] = []
    for item in view.get("VOILUTSequence") or []:
        desc = item.get("LUTDescriptor")
        if desc is None or "LUTData" not in item or len(desc) != 3:
            continue
        entries = int(desc[0]) or 2**16
        first, bits = int(desc[1]), int(desc[2])
        one = Dataset()
        one.file_meta = view.file_meta
        one.set_original_encoding(*view.original_encoding)
        table = Dataset()
        table.add_new(0x00283002, item["LUTDescriptor"].VR, [entries % 2**16, first, 16])
        table.add(item["LUTData"])
        one.VOILUTSequence = Sequence([table])
        data = apply_voi(np.arange(first, first + entries, dtype=np.int64), one)
        top = int(data.max()) if data.size else 0
        if not 1 <= bits <= 16 or top >= 2**bits:
            # PS3.3 C.11.2.1.1 allows 8 to 16 bits; a descriptor outside (e.g. 64 or 1024, or
            # one the data exceed) is an encoder error: the depth is taken from the data
            bits = min(max(top.bit_length(), 1), 16)
        name = str(item.get("LUTExplanation") or "").strip()
        out.append(VoiLut(first_mapped=first, data=np.asarray(data), bits=bits, name=name))
    return out


def pixel_spacing_of(view: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from Pixel Spacing, else Imager Pixel Spacing; None if unusable."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        values = _values(view.get(keyword))
        try:
            spacing = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            continue
        if len(spacing) == 2 and all(math.isfinite(s) and s > 0 for s in spacing):
            return spacing
    return None


def metadata_of(ds: Dataset) -> dict[str, str]:
    """The :data:`METADATA_KEYWORDS` present in ``ds``, as strings (multi-values joined by ``\\``)."""
    out: dict[str, str] = {}
    for keyword in METADATA_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # a damaged text value must not hide the image
            continue
        text = "\\".join(str(v) for v in _values(value)).strip()
        if text:
            out[keyword] = text
    return out


def inverts(photometric: str, view: Dataset) -> bool:
    """True when the display must be inverted once: MONOCHROME1 or Presentation LUT Shape INVERSE.

    Image IODs that carry Presentation LUT Shape (2050,0020) (e.g. the DX Image Module, PS3.3
    C.8.11.7) require INVERSE exactly when the image is MONOCHROME1, so the two name the same
    inversion (PS3.3 C.11.6.1.2) and it is applied once, never twice.
    """
    shape = str(view.get("PresentationLUTShape") or "").strip().upper()
    return photometric == "MONOCHROME1" or shape == "INVERSE"
