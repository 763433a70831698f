"""Results as DICOM: a Secondary Capture per explanation and a Comprehensive SR per image.

What a PACS shows of CXR Lens's work (the way commercial chest X-ray AI products report back):

- :func:`secondary_capture` — the displayed image with the explanation burned in (the same
  :func:`~cxr_viewer.core.io.display.display_image` and :mod:`~cxr_viewer.core.explain.overlay` path the
  viewer and ``cxr-viewer batch`` use), plus a side panel on the right with the colour bar, the
  method and class, the prediction, the model's name and version and "NOT FOR DIAGNOSIS". The
  image keeps its pixel grid (the panel is appended, never drawn over the film), so a point of
  the SC is the same point of the source. Image Type ``DERIVED\\SECONDARY``; RGB, uncompressed.
- :func:`structured_report` — a Comprehensive SR with the model identity, each class
  probability, the threshold, the decision and the trust figures of every explanation,
  referencing the source image (and the Secondary Captures).

For a DICOM source both go into **new series of the source study** (Patient and General Study
modules copied, the source image referenced in the Source Image Sequence). PNG/JPEG sources
get a **new study** with the patient fields the user entered, or anonymous ones.

Everything here is Qt-free; highdicom (the ``pacs`` extra) is imported lazily and its absence
is a clear :class:`~cxr_viewer.core.errors.DicomExportError`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer import __version__
from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.explain.registry import EXPLAINERS
from cxr_viewer.core.interop.extra import import_extra
from cxr_viewer.core.io.atomic import atomic_write_bytes, make_folder, write_error
from cxr_viewer.core.io.study import Study
from cxr_viewer.core.model.heads import head_kind

if TYPE_CHECKING:  # pydicom and PIL are imported where used; the inference module is heavy
    from PIL.ImageFont import FreeTypeFont, ImageFont
    from pydicom.dataset import Dataset

    from cxr_viewer.core.explain.base import Heatmap
    from cxr_viewer.core.model.inference import Classifier, Prediction

MANUFACTURER = "CXR Lens"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"
#: our local coding scheme (PS3.3 8.2: a "99" prefix marks a private scheme)
SCHEME = "99CXRLENS"
#: the SC series and SR series numbers inside the source study (high, to sort after the originals)
SC_SERIES_NUMBER = 9901
SR_SERIES_NUMBER = 9902

#: Patient module and General Study module attributes copied from a DICOM source
PATIENT_STUDY_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientComments",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
)

TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)

#: the on-screen name of each method (from the registry) and of the Grad-CAM++ variant
METHOD_LABELS = {
    **{name: cls.display.short_label for name, cls in EXPLAINERS.items()},
    "gradcam++": "Grad-CAM++",
}


def _highdicom() -> ModuleType:
    return import_extra("highdicom", DicomExportError, "Cannot write DICOM results")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model made the prediction (drawn into the SC, written into the SR)."""

    name: str
    version: str
    class_names: tuple[str, ...]
    threshold: float | None = None
    positive_class: str | None = None

    @classmethod
    def from_classifier(cls, clf: Classifier) -> ModelIdentity:
        b = clf.bundle
        return cls(
            name=b.name,
            version=b.version or "unversioned",
            class_names=tuple(clf.class_names),
            threshold=b.threshold,
            positive_class=b.positive_class,
        )


@dataclass(frozen=True)
class PatientEntry:
    """Patient fields for a PNG/JPEG source (which has none); all empty means anonymous."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""  # M, F, O or empty

    def checked(self) -> PatientEntry:
        if self.birth_date and not (len(self.birth_date) == 8 and self.birth_date.isdigit()):
            raise DicomExportError(
                "Cannot use the patient's birth date",
                f"'{self.birth_date}' is not a date written as YYYYMMDD",
                "Enter it as e.g. 19700131, or leave it empty.",
            )
        if self.sex not in ("", "M", "F", "O"):
            raise DicomExportError(
                "Cannot use the patient's sex",
                f"'{self.sex}' is not one of M, F, O",
                "Choose M, F, O or leave it empty.",
            )
        for label, text in (("name", self.name), ("ID", self.patient_id)):
            if "\\" in text or len(text) > 64:
                raise DicomExportError(
                    f"Cannot use the patient {label}",
                    "it contains a backslash or is longer than 64 characters",
                    "Shorten it.",
                )
        return self


@dataclass
class ExplanationResult:
    """One explanation as exported: the map at the study's size and how it was drawn."""

    method: str
    class_name: str
    values: np.ndarray
    signed: bool
    colormap: str | None = None
    opacity: float = 0.5
    layer: str | None = None
    trust: dict[str, float] = field(default_factory=dict)
    #: the map's status (``Heatmap.status_text``): "ok", or "no signal: <why>; <what to try>"
    status: str = "ok"
    #: the trust verdicts in words, then what the film's maps say together (agreement, most
    #: faithful): TEXT items of the explanation's SR container
    notes: tuple[str, ...] = ()
    #: the map as computed, at the model's input size (for a Parametric Map at model resolution)
    model_values: np.ndarray | None = None

    @property
    def method_label(self) -> str:
        """The method's on-screen name (:data:`METHOD_LABELS`; an unknown method: its name)."""
        return METHOD_LABELS.get(self.method, self.method)

    @classmethod
    def from_heatmap(
        cls,
        hm: Heatmap,
        study: Study,
        *,
        opacity: float = 0.5,
        colormap: str | None = None,
        trust: dict[str, float] | None = None,
        notes: Sequence[str] = (),
    ) -> ExplanationResult:
        """From a :class:`~cxr_viewer.core.explain.base.Heatmap` (any size; resized here);
        ``notes`` follow the map's own verdicts (:func:`cxr_viewer.core.evaluate.trust.verdicts`)."""
        from cxr_viewer.core.evaluate.trust import verdicts

        full = hm.resized(study.rows, study.columns)
        figures = dict(hm.trust)
        figures.update(trust or {})
        said = [v.text for v in verdicts(hm.method, figures, dict(hm.settings or {}))]
        return cls(
            method=hm.method,
            class_name=hm.class_name,
            values=np.asarray(full.values, np.float32),
            signed=bool(hm.signed),
            colormap=colormap,
            opacity=opacity,
            layer=hm.layer,
            trust={k: float(v) for k, v in figures.items() if np.isfinite(v)},
            status=hm.status_text,
            notes=(*said, *notes),
            model_values=np.asarray(hm.values, np.float32),
        )


@dataclass
class ExportResult:
    """What :func:`export_results` wrote."""

    secondary_captures: list[Path]
    report: Path
    study_instance_uid: str
    new_study: bool

    @property
    def files(self) -> list[Path]:
        return [*self.secondary_captures, self.report]


# ---------------------------------------------------------------------------- source header


def source_header(study: Study) -> Dataset | None:
    """The source file's DICOM header (no pixels), or None for PNG/JPEG/ACR-NEMA sources.

    A file without SOP Class/Instance and Study Instance UIDs (old ACR-NEMA) cannot be
    referenced, so it is treated like a PNG (new study) but its patient fields are kept.
    """
    if study.format != "dicom":
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(study.path, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise DicomExportError(
            f"Cannot export results for {study.path.name}",
            f"its DICOM header can no longer be read ({type(exc).__name__}: {exc})",
            "Check that the file is still there and unchanged.",
        ) from exc
    # Type 2 attributes of the Patient and General Study modules are present in every
    # conformant source; older files lack some. Present-and-empty means "unknown".
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _referenceable(ds: Dataset | None) -> bool:
    return ds is not None and all(
        str(ds.get(k, "") or "").strip()
        for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
    )


def require_referenceable(source: Dataset | None, what: str) -> None:
    """A clear error when ``source`` cannot be referenced by a derived object (``what``:
    "a Parametric Map", "a Segmentation")."""
    if not _referenceable(source):
        raise DicomExportError(
            f"Cannot write {what}",
            "the source is not a DICOM image with SOP, series and study UIDs to reference",
            "Export a Secondary Capture for PNG/JPEG sources (--dicom-out sc).",
        )


def require_sop_class(ds: Dataset, sop_class: str, kind: str, what: str) -> None:
    """A clear error when ``ds`` is not of ``sop_class`` (``kind``, e.g. "Segmentation"), read
    as ``what`` (e.g. "the regions")."""
    if str(ds.get("SOPClassUID", "")) != sop_class:
        raise DicomExportError(
            f"Cannot read {what}",
            f"the object is not a {kind} (SOP class {ds.get('SOPClassUID', 'none')})",
            f"Open a {kind}.",
        )


@contextlib.contextmanager
def quiet_person_names() -> Iterator[None]:
    """highdicom warns about a source's single-component Patient Name; it is copied as is."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person")
        yield


def equipment(model: ModelIdentity) -> dict[str, str]:
    """highdicom's General Equipment arguments of the objects written for ``model``."""
    return {
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": model.name[:64] or "unnamed",
        "software_versions": f"CXR Lens {__version__}",
        "device_serial_number": (model.version or "unversioned")[:64],
    }


def derived_object(
    make: Callable[..., Dataset],
    source: Dataset,
    model: ModelIdentity,
    series_number: int,
    series: str,
    *,
    series_instance_uid: str | None,
    instance_number: int,
    **arguments: Any,
) -> Dataset:
    """A new instance that ``make`` (a highdicom class, e.g. ``Segmentation``) derives from
    ``source`` for ``model``: in the series ``series_instance_uid`` (a new one when None)
    numbered ``series_number`` and described "CXR Lens ``series`` (not for diagnosis)", with a
    new SOP Instance UID, the model as the equipment and the source's patient and study;
    ``arguments`` are the class's own."""
    hd = _highdicom()
    with quiet_person_names():
        derived: Dataset = make(
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=instance_number,
            **equipment(model),
            **arguments,
        )
    _copy_patient_study(derived, source)
    derived.SeriesDescription = f"CXR Lens {series} ({NOT_FOR_DIAGNOSIS})"[:64]
    return derived


# ---------------------------------------------------------------------------- burned-in pixels


def _font(size: int) -> FreeTypeFont | ImageFont:
    from PIL import ImageFont

    try:  # matplotlib ships DejaVu Sans: the same glyphs on every machine
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
        return ImageFont.truetype(str(path), size)
    except Exception:  # pragma: no cover - matplotlib is a dependency
        return ImageFont.load_default(size)


def _fmt(p: float) -> str:
    return f"{p:.3f}"


def _threshold_of(prediction: Prediction, index: int) -> float | None:
    """The threshold class ``index`` is decided by (None: arg-max), as the prediction says."""
    t = prediction.threshold_of(index)
    return None if t is None else float(t)


def _decisions(prediction: Prediction) -> list[str]:
    """What the model decided: the predicted class, or every finding above its threshold
    (multi-label; "no finding above threshold" when none is)."""
    if head_kind(getattr(prediction, "kind", "softmax")).findings:
        found = [prediction.class_names[i] for i in prediction.positive_findings]
        return found or ["no finding above threshold"]
    return [prediction.predicted_class]


def panel_lines(
    explanation: ExplanationResult, prediction: Prediction, model: ModelIdentity
) -> list[tuple[str, tuple[int, int, int]]]:
    """The text lines of the SC's side panel (text, colour)."""
    method = explanation.method_label
    lines: list[tuple[str, tuple[int, int, int]]] = [
        (NOT_FOR_DIAGNOSIS, (255, 64, 64)),
        ("", (255, 255, 255)),
        (f"{method}", (255, 255, 255)),
        (f"class: {explanation.class_name}", (255, 255, 255)),
    ]
    if explanation.layer:
        lines.append((f"layer: {explanation.layer}", (200, 200, 200)))
    if explanation.status != "ok":  # e.g. "no signal: the map is zero everywhere; …"
        head, _, rest = explanation.status.partition(": ")
        lines.append((f"{head.upper()}: the map is blank", (255, 64, 64)))
        for part in rest.split(";"):  # wrapped: the panel is as wide as its longest line
            lines.extend((t, (255, 180, 120)) for t in textwrap.wrap(part.strip(), 36))
    lines.append(("", (255, 255, 255)))
    lines.append((f"prediction: {prediction.predicted_class}", (255, 220, 120)))
    for i, (name, p) in enumerate(prediction.as_dict().items()):
        t = _threshold_of(prediction, i)
        rule = "" if t is None else f" ({'≥' if p >= t else '<'} threshold {_fmt(t)})"
        lines.append((f"p({name}) = {_fmt(p)}{rule}", (255, 255, 255)))
    lines.append(("", (255, 255, 255)))
    lines.append((f"model: {model.name}", (200, 200, 200)))
    lines.append((f"version: {model.version}", (200, 200, 200)))
    lines.append((f"CXR Lens {__version__}", (200, 200, 200)))
    return lines


def burned_in_image(
    study: Study, explanation: ExplanationResult, prediction: Prediction, model: ModelIdentity
) -> np.ndarray:
    """(rows', columns + panel, 3) uint8: the displayed film with the overlay, and the panel.

    The top-left ``study.rows × study.columns`` block is exactly
    :func:`~cxr_viewer.core.explain.overlay.composite` of the display image and the colourised map (as
    the viewer and ``batch`` draw it); ``rows'`` exceeds ``study.rows`` (black below the film)
    only when a small film is too short for the panel's text and colour bar.
    """
    from PIL import Image, ImageDraw

    from cxr_viewer.core.explain.overlay import colorbar_image, colorize, composite, robust_vmax
    from cxr_viewer.core.io.display import display_image

    if explanation.values.shape != (study.rows, study.columns):
        raise DicomExportError(
            "Cannot draw the explanation into the image",
            f"the map is {explanation.values.shape}, the image {study.rows}×{study.columns}",
            "Export the explanation computed for this image.",
        )
    vmax = robust_vmax(explanation.values)
    rgba = colorize(
        explanation.values, signed=explanation.signed, colormap=explanation.colormap, vmax=vmax
    )
    film = composite(display_image(study), [(rgba, explanation.opacity)])
    rows, cols = film.shape[:2]
    lines = panel_lines(explanation, prediction, model)
    font_px = max(10, min(48, rows // 45))
    font = _font(font_px)
    probe = ImageDraw.Draw(Image.new("RGB", (8, 8)))
    text_w = max(int(probe.textlength(t, font=font)) for t, _ in lines if t)
    margin = font_px
    bar_w = max(8, font_px)
    panel_w = max(text_w, bar_w + int(probe.textlength("+0.00e+00", font=font)) + margin)
    panel_w += 2 * margin
    step = int(font_px * 1.35)
    bar_top = margin + step * (len(lines) + 1)
    # small films (224 px): the panel runs below the film, which is padded with black, so the
    # text and a readable colour bar always fit and the film keeps its pixel grid at the top
    height = max(rows, bar_top + max(8 * font_px, 120) + 2 * margin)
    bar_len = height - bar_top - 2 * margin
    panel = Image.new("RGB", (panel_w, height), (0, 0, 0))
    draw = ImageDraw.Draw(panel)
    y = margin
    for text, colour in lines:
        if text:
            draw.text((margin, y), text, fill=colour, font=font)
        y += step
    # the colour bar, drawn opaque over black, under the text
    bar = colorbar_image(
        signed=explanation.signed,
        colormap=explanation.colormap,
        length=bar_len,
        thickness=bar_w,
        vertical=True,
        with_alpha=False,
    )
    panel.paste(Image.fromarray(bar[..., :3]), (margin, bar_top))
    x_label = margin + bar_w + font_px // 2
    top_label = f"+{vmax:.2g}"
    low_label = f"-{vmax:.2g}" if explanation.signed else "0"
    draw.text((x_label, bar_top), top_label, fill=(255, 255, 255), font=font)
    draw.text((x_label, bar_top + bar_len - font_px), low_label, fill=(255, 255, 255), font=font)
    if height > rows:
        film = np.concatenate([film, np.zeros((height - rows, cols, 3), np.uint8)], axis=0)
    return np.concatenate([film, np.asarray(panel, np.uint8)], axis=1)


# ---------------------------------------------------------------------------- datasets


def _copy_patient_study(target: Dataset, source: Dataset) -> None:
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            target[keyword] = source[keyword]


def _now() -> tuple[str, str]:
    now = _dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _study_args(patient: PatientEntry | None) -> dict[str, Any]:
    p = (patient or PatientEntry()).checked()
    date, time = _now()
    return dict(
        study_instance_uid=_highdicom().UID(),
        patient_id=p.patient_id or None,
        patient_name=p.name or None,
        patient_birth_date=p.birth_date or None,
        patient_sex=p.sex or None,
        study_date=date,
        study_time=time,
        accession_number=None,
        study_id=None,
        referring_physician_name=None,
    )


def secondary_capture(
    study: Study,
    explanation: ExplanationResult,
    prediction: Prediction,
    model: ModelIdentity,
    *,
    source: Dataset | None = None,
    study_args: dict[str, Any] | None = None,
    series_instance_uid: str | None = None,
    instance_number: int = 1,
) -> Dataset:
    """The SC data set (pydicom Dataset) for one explanation.

    ``source`` is the DICOM header from :func:`source_header` (None: PNG/JPEG); for a
    non-referenceable source, ``study_args`` (from a shared new study) must be given.
    """
    hd = _highdicom()
    pixels = burned_in_image(study, explanation, prediction, model)
    series_uid = series_instance_uid or hd.UID()
    common: dict[str, Any] = dict(
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        # highdicom insists on a value; replaced below by the source's own or left empty
        # (Type 2: unknown), never guessed
        patient_orientation=("L", "F"),
        series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        pixel_spacing=study.pixel_spacing,
        series_description=f"CXR Lens {explanation.method_label} ({NOT_FOR_DIAGNOSIS})",
        manufacturer_model_name=model.name[:64],
        software_versions=f"CXR Lens {__version__}",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )
    sc: Dataset
    if source is not None and _referenceable(source):
        sc = hd.sc.SCImage(
            study_instance_uid=str(source.StudyInstanceUID),
            **common,
        )
        _copy_patient_study(sc, source)
    else:
        args = dict(study_args or _study_args(None))
        sc = hd.sc.SCImage(**args, **common)
        if source is not None:  # ACR-NEMA: keep who it is, new study
            for k in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
                if k in source:
                    sc[k] = source[k]
    orientation = source.get("PatientOrientation") if source is not None else None
    sc.PatientOrientation = orientation if orientation and len(orientation) == 2 else None
    # General Series Laterality (Type 2C): the source's, else present and empty (unknown)
    sc.Laterality = source.get("Laterality") if source is not None else None
    _describe_derivation(sc, explanation, source)
    date, time = _now()
    sc.ContentDate, sc.ContentTime = date, time
    sc.BurnedInAnnotation = "YES"
    sc.LossyImageCompression = "01" if _lossy_source(source) else "00"
    return sc


def _lossy_source(source: Dataset | None) -> bool:
    if source is None:
        return True  # JPEG sources; PNG ones are lossless but the display path is 8-bit anyway
    ts = str(getattr(source, "file_meta", {}).get("TransferSyntaxUID", "") or "")
    return str(source.get("LossyImageCompression", "00")) == "01" or ts in (
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
    )


def _describe_derivation(
    ds: Dataset, explanation: ExplanationResult, source: Dataset | None
) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    ds.ImageType = ["DERIVED", "SECONDARY"]
    method = explanation.method_label
    ds.DerivationDescription = (
        f"{method} explanation of class {explanation.class_name} burned in by CXR Lens "
        f"{__version__}; {NOT_FOR_DIAGNOSIS}"
    )[:1024]
    ds.ImageComments = NOT_FOR_DIAGNOSIS
    if source is not None and _referenceable(source):
        ref = Dataset()
        ref.ReferencedSOPClassUID = source.SOPClassUID
        ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.SourceImageSequence = DicomSequence([ref])


def _code(value: str, meaning: str, scheme: str = SCHEME) -> Any:
    """A highdicom ``CodedConcept`` in our coding scheme."""
    return _highdicom().sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def structured_report(
    prediction: Prediction,
    model: ModelIdentity,
    explanations: Sequence[ExplanationResult],
    *,
    source: Dataset | None = None,
    secondary_captures: Sequence[Dataset] = (),
    study_args: dict[str, Any] | None = None,
) -> Dataset:
    """The Comprehensive SR (pydicom Dataset) of one image's prediction and explanations.

    Content tree (root: LOINC 18748-4 "Diagnostic imaging report")::

        TEXT   Comment               NOT FOR DIAGNOSIS ...
        TEXT   Algorithm Name / Algorithm Version (DCM 111001 / 111003)
        IMAGE  Source of Measurement the source image (DICOM sources) and each SC
        NUM    probability of <class>  per class ({probability})
        NUM    decision threshold      (binary bundles with a threshold)
        CODE   Finding               the predicted class
        CONTAINER explanation          per method: method, class, layer, verdicts in words
                                       (TEXT "Trust verdict"), trust figures
    """
    hd = _highdicom()
    sr = hd.sr
    from pydicom.sr.codedict import codes

    prob_unit = sr.CodedConcept("{probability}", "UCUM", "probability")
    items = [
        sr.TextContentItem(
            name=codes.DCM.Comment,
            value=f"{NOT_FOR_DIAGNOSIS}: research software output, not a clinical finding.",
            relationship_type=sr.RelationshipTypeValues.CONTAINS,
        ),
        sr.TextContentItem(
            name=sr.CodedConcept("111001", "DCM", "Algorithm Name"),
            value=model.name[:1024] or "unnamed",
            relationship_type=sr.RelationshipTypeValues.CONTAINS,
        ),
        sr.TextContentItem(
            name=sr.CodedConcept("111003", "DCM", "Algorithm Version"),
            value=model.version[:1024] or "unversioned",
            relationship_type=sr.RelationshipTypeValues.CONTAINS,
        ),
    ]
    evidence: list[Dataset] = []
    refs: list[Dataset] = []
    if source is not None and _referenceable(source):
        refs.append(source)
        evidence.append(source)
    for sc in secondary_captures:
        refs.append(sc)
        evidence.append(sc)
    for ref in refs:
        items.append(
            sr.ImageContentItem(
                name=sr.CodedConcept("121112", "DCM", "Source of Measurement"),
                referenced_sop_class_uid=str(ref.SOPClassUID),
                referenced_sop_instance_uid=str(ref.SOPInstanceUID),
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            )
        )
    for i, (name, p) in enumerate(prediction.as_dict().items()):
        figures = [
            ("P", "Probability of", p),
            ("T", "Decision threshold for", _threshold_of(prediction, i)),
        ]
        for prefix, meaning, value in figures:
            if value is None:
                continue
            items.append(
                sr.NumContentItem(
                    name=_code(f"{prefix}-{name}"[:16], f"{meaning} {name}"),
                    value=round(float(value), 6),
                    unit=prob_unit,
                    relationship_type=sr.RelationshipTypeValues.CONTAINS,
                )
            )
    for decided in _decisions(prediction):
        items.append(
            sr.CodeContentItem(
                name=sr.CodedConcept("121071", "DCM", "Finding"),
                value=_code(f"C-{decided}"[:16], decided),
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            )
        )
    for ex in explanations:
        method = ex.method_label
        children = [
            sr.TextContentItem(
                name=_code("METHOD", "Explanation method"),
                value=method,
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            ),
            sr.TextContentItem(
                name=_code("EXPLAINED", "Explained class"),
                value=ex.class_name,
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            ),
        ]
        if ex.layer:
            children.append(
                sr.TextContentItem(
                    name=_code("LAYER", "Model layer"),
                    value=ex.layer,
                    relationship_type=sr.RelationshipTypeValues.CONTAINS,
                )
            )
        children.append(
            sr.TextContentItem(
                name=_code("MAPSTATUS", "Map status"),
                value=ex.status[:1024],  # UT would take more; one line is the point
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            )
        )
        for note in ex.notes:
            children.append(
                sr.TextContentItem(
                    name=_code("VERDICT", "Trust verdict"),
                    value=note[:1024],
                    relationship_type=sr.RelationshipTypeValues.CONTAINS,
                )
            )
        for key, value in sorted(ex.trust.items()):
            children.append(
                sr.NumContentItem(
                    name=_code(key.upper()[:16], key.replace("_", " ")),
                    value=round(float(value), 6),
                    unit=sr.CodedConcept("1", "UCUM", "no units"),
                    relationship_type=sr.RelationshipTypeValues.CONTAINS,
                )
            )
        items.append(
            sr.ContainerContentItem(
                name=_code("EXPLANATION", f"{method} explanation"),
                relationship_type=sr.RelationshipTypeValues.CONTAINS,
            )
        )
        items[-1].ContentSequence = sr.ContentSequence(children)
    root = sr.ContainerContentItem(
        name=sr.CodedConcept("18748-4", "LN", "Diagnostic imaging report"),
        template_id=None,
    )
    root.ContentSequence = sr.ContentSequence(items)
    if not evidence:
        raise DicomExportError(
            "Cannot write the structured report",
            "it has no image to reference (no DICOM source and no Secondary Capture)",
            "Export at least one explanation, or export from a DICOM source.",
        )
    if not _referenceable(source):
        # a new study: the SR joins the SCs' study (the first evidence) — highdicom takes the
        # Patient and Study modules from evidence[0]
        evidence = [*secondary_captures]
    report: Dataset = sr.ComprehensiveSR(
        evidence=evidence,
        content=root,
        series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"CXR Lens AI result ({NOT_FOR_DIAGNOSIS})",
        coding_schemes=[
            hd.coding_schemes.CodingSchemeIdentificationItem(
                designator=SCHEME,
                name="CXR Lens local codes",
                responsible_organization="CXR Lens",
            )
        ],
    )
    if source is not None and _referenceable(source):
        _copy_patient_study(report, source)
    return report


def export_results(
    study: Study,
    prediction: Prediction,
    model: ModelIdentity,
    explanations: Sequence[ExplanationResult],
    out_dir: str | Path,
    *,
    patient: PatientEntry | None = None,
    stem: str | None = None,
) -> ExportResult:
    """Write one SC per explanation and one SR to ``out_dir``; return what was written.

    File names: ``<stem>_<method>_SC.dcm`` and ``<stem>_SR.dcm`` (``stem``: the source file's
    name). ``patient`` is used only for PNG/JPEG sources.
    """
    out = output_folder(out_dir)
    with quiet_person_names():
        return _export(study, prediction, model, explanations, out, patient, stem)


def _export(
    study: Study,
    prediction: Prediction,
    model: ModelIdentity,
    explanations: Sequence[ExplanationResult],
    out: Path,
    patient: PatientEntry | None,
    stem: str | None,
) -> ExportResult:
    source = source_header(study)
    new_study = not _referenceable(source)
    study_args = _study_args(patient) if new_study else None
    stem = stem or study.path.stem
    series_uid = _highdicom().UID()
    scs = [
        secondary_capture(
            study,
            ex,
            prediction,
            model,
            source=source,
            study_args=study_args,
            series_instance_uid=series_uid,
            instance_number=i,
        )
        for i, ex in enumerate(explanations, 1)
    ]
    report = structured_report(
        prediction, model, explanations, source=source, secondary_captures=scs
    )
    paths: list[Path] = []
    for ex, sc in zip(explanations, scs, strict=True):
        tag = ex.method.replace("+", "p")
        paths.append(_save(sc, out / f"{stem}_{tag}_SC.dcm"))
    sr_path = _save(report, out / f"{stem}_SR.dcm")
    uid = str(scs[0].StudyInstanceUID) if scs else str(report.StudyInstanceUID)
    return ExportResult(paths, sr_path, uid, new_study)


def output_folder(out_dir: str | Path) -> Path:
    """``out_dir``, created if missing (a DicomExportError saying why it cannot be)."""
    return make_folder(out_dir, f"Cannot write DICOM results to {out_dir}", DicomExportError)


def _save(ds: Dataset, path: Path) -> Path:
    """Write ``ds`` to ``path`` atomically (:func:`~cxr_viewer.core.io.atomic.atomic_write`).

    The data set is encoded in memory first, so a write error is the OS's own (pydicom wraps
    one raised inside its writer, traceback included, in a new message) and a killed process
    never leaves a short file under ``path``.
    """
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise write_error(path, exc, DicomExportError) from exc
    return path


def validate_with_dciodvfy(path: str | Path, timeout: float = 60.0) -> list[str] | None:
    """Errors dicom3tools' ``dciodvfy`` reports for a file; None when it is not installed."""
    import shutil
    import subprocess

    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    proc = subprocess.run(
        [exe, "-new", str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    text = proc.stdout + proc.stderr
    return [line for line in text.splitlines() if line.startswith("Error")]
