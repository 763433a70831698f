"""A TID 1500 Measurement Report per image: the model's result in the form PACS and AI
result viewers read (the IHE AI Results profile's report), and reading it back.

Content (DICOM PS3.16 TID 1500, written with highdicom's ``MeasurementReport`` into a
Comprehensive 3D SR)::

    Imaging Measurement Report (DCM 126000)
      Procedure reported: SCT 363679005 "Imaging procedure" (CID 100)
      Observer context: device = the model (name, "CXR Lens", model name and version)
      Imaging Measurements (DCM 126010)
        group "classification" (TID 1501)
          Algorithm Name / Version / Parameters (DCM 111001 / 111003 / 111002): the model's
              name and version; parameters "model file sha256 <hex>" and "decision rule: ..."
          Source image for measurement group: the film
          NUM   Probability of <class> (99CXRLENS P-<class>), UCUM {probability}, per class
          NUM   Decision threshold for <class> (99CXRLENS T-<class>), where one applies
          CODE  Finding (DCM 121071) = the decided class (99CXRLENS C-<class>)
        group per explanation map (TID 1501)
          Tracking identifier "<method> <class>", Measurement Method = the method's DCM CID
              217 code, Finding type = the explained class, Algorithm identification
          Source of Measurement (DCM 121112): the Parametric Map (the figures are measured on
              it; "Real World Value Map used for measurement" would name a stand-alone Real
              World Value Mapping object, which a Parametric Map is not), and the film
          NUM   each trust figure (99CXRLENS, e.g. DELETION_AUC "deletion auc"), UCUM 1
        group per Segmentation of a map's top region (TID 1410 planar ROI), when written:
          Referenced Segmentation Frame (DCM 121214): the Segmentation, frame 1, segment 1

The local codes are in the private scheme ``99CXRLENS`` (declared in the report's Coding
Scheme Identification Sequence). :func:`read_report` reads back what a viewer shows as the
legend: the model, the probabilities, the decision and the trust figures of each referenced
Parametric Map, whoever wrote the report (items it does not know are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cxr_viewer import __version__
from cxr_viewer.core.errors import DicomExportError
from cxr_viewer.core.interop.dicom_export import (
    MANUFACTURER,
    NOT_FOR_DIAGNOSIS,
    SCHEME,
    ExplanationResult,
    ModelIdentity,
    _copy_patient_study,
    _decisions,
    _highdicom,
    _referenceable,
    _threshold_of,
    quiet_person_names,
)
from cxr_viewer.core.interop.dicom_pm import PARAMETRIC_MAP_STORAGE, method_code
from cxr_viewer.core.model.heads import head_kind

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from cxr_viewer.core.model.inference import Prediction

#: series number of the measurement reports inside the source study
REPORT_SERIES_NUMBER = 9904
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
#: SCT 363679005 "Imaging procedure" (DICOM CID 100)
PROCEDURE = ("363679005", "SCT", "Imaging procedure")


def decision_rule(prediction: Prediction) -> str:
    """How the decision was made from the probabilities, in words."""
    if head_kind(getattr(prediction, "kind", "softmax")).findings:
        return "each finding is present when its probability reaches its own threshold"
    threshold = prediction.decision_threshold
    pos = prediction.positive_index
    if threshold is not None and pos is not None:
        names = prediction.class_names
        other = names[1 - pos]
        return f"{names[pos]} when p({names[pos]}) >= {threshold:.6g}, else {other}"
    return "the class of highest probability (arg-max)"


def _local(value: str, meaning: str) -> Any:
    return _highdicom().sr.CodedConcept(value=value[:16], scheme_designator=SCHEME, meaning=meaning)


def measurement_report(
    source: Dataset,
    prediction: Prediction,
    model: ModelIdentity,
    explanations: Sequence[ExplanationResult],
    parametric_maps: Sequence[Dataset],
    *,
    model_sha256: str | None = None,
    segmentations: Sequence[Dataset] = (),
    series_instance_uid: str | None = None,
) -> Dataset:
    """The TID 1500 Measurement Report (a Comprehensive 3D SR, pydicom Dataset) of one image.

    ``parametric_maps[i]`` is the map of ``explanations[i]`` (empty: no maps were written, the
    figures are then measured on the film alone); ``segmentations`` (optional) are
    Segmentations of the same image (one segment each).
    """
    if not _referenceable(source):
        raise DicomExportError(
            "Cannot write the measurement report",
            "the source is not a DICOM image with SOP, series and study UIDs to reference",
            "Export a Secondary Capture and the Comprehensive SR for PNG/JPEG sources.",
        )
    if parametric_maps and len(parametric_maps) != len(explanations):
        raise DicomExportError(
            "Cannot write the measurement report",
            f"{len(explanations)} explanation(s) but {len(parametric_maps)} Parametric Map(s)",
            "Pass the Parametric Map written for each explanation.",
        )
    hd = _highdicom()
    sr = hd.sr
    from pydicom.sr.codedict import codes

    parameters = [f"decision rule: {decision_rule(prediction)}"]
    if model_sha256:
        parameters.insert(0, f"model file sha256 {model_sha256}")
    algorithm = sr.AlgorithmIdentification(
        name=model.name[:64] or "unnamed",
        version=(model.version or "unversioned")[:64],
        parameters=parameters,
        manufacturer=MANUFACTURER,
    )
    film = sr.SourceImageForMeasurementGroup(
        referenced_sop_class_uid=str(source.SOPClassUID),
        referenced_sop_instance_uid=str(source.SOPInstanceUID),
    )
    prob_unit = sr.CodedConcept("{probability}", "UCUM", "probability")
    no_units = sr.CodedConcept("1", "UCUM", "no units")
    measurements = []
    for i, (name, p) in enumerate(prediction.as_dict().items()):
        measurements.append(
            sr.Measurement(
                name=_local(f"P-{name}", f"Probability of {name}"),
                value=round(float(p), 6),
                unit=prob_unit,
            )
        )
        t = _threshold_of(prediction, i)
        if t is not None:
            measurements.append(
                sr.Measurement(
                    name=_local(f"T-{name}", f"Decision threshold for {name}"),
                    value=round(float(t), 6),
                    unit=prob_unit,
                )
            )
    findings = [
        sr.QualitativeEvaluation(name=codes.DCM.Finding, value=_local(f"C-{d}", d))
        for d in _decisions(prediction)
    ]
    groups = [
        sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=sr.TrackingIdentifier(uid=hd.UID(), identifier="classification"),
            algorithm_id=algorithm,
            measurements=measurements,
            qualitative_evaluations=findings,
            source_images=[film],
        )
    ]
    maps: list[Dataset | None] = [*parametric_maps] or [None] * len(explanations)
    for ex, pm in zip(explanations, maps, strict=True):
        value, meaning = method_code(ex.method)
        label = ex.method_label
        trust = [
            sr.Measurement(
                name=_local(key.upper(), key.replace("_", " ")),
                value=round(float(v), 6),
                unit=no_units,
            )
            for key, v in sorted(ex.trust.items())
        ]
        groups.append(
            sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=f"{label} {ex.class_name}"[:64]
                ),
                method=sr.CodedConcept(value, "DCM", meaning),
                finding_type=_local(f"C-{ex.class_name}", ex.class_name),
                algorithm_id=algorithm,
                measurements=trust or None,
                source_images=[
                    *(
                        []
                        if pm is None
                        else [
                            sr.SourceImageForMeasurementGroup(
                                referenced_sop_class_uid=str(pm.SOPClassUID),
                                referenced_sop_instance_uid=str(pm.SOPInstanceUID),
                            )
                        ]
                    ),
                    film,
                ],
            )
        )
    roi_groups = []
    for seg in segmentations:
        desc = seg.SegmentSequence[0]
        roi_groups.append(
            sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=str(desc.SegmentLabel)[:64]
                ),
                referenced_segment=sr.ReferencedSegmentationFrame(
                    sop_class_uid=str(seg.SOPClassUID),
                    sop_instance_uid=str(seg.SOPInstanceUID),
                    frame_number=1,
                    segment_number=int(desc.SegmentNumber),
                    source_image=sr.SourceImageForSegmentation(
                        str(source.SOPClassUID), str(source.SOPInstanceUID)
                    ),
                ),
                algorithm_id=algorithm,
            )
        )
    observer = sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(),
            name=model.name[:64] or "unnamed",
            manufacturer_name=MANUFACTURER,
            model_name=f"{model.name} {model.version}"[:64],
        ),
    )
    report = sr.MeasurementReport(
        observation_context=sr.ObservationContext(observer_device_context=observer),
        procedure_reported=sr.CodedConcept(*PROCEDURE),
        imaging_measurements=[*groups, *roi_groups],
    )
    with quiet_person_names():
        ds: Dataset = sr.Comprehensive3DSR(
            evidence=[source, *parametric_maps, *segmentations],
            content=report[0],
            series_instance_uid=series_instance_uid or hd.UID(),
            series_number=REPORT_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            is_complete=True,
            series_description=f"CXR Lens measurement report ({NOT_FOR_DIAGNOSIS})"[:64],
            coding_schemes=[
                hd.coding_schemes.CodingSchemeIdentificationItem(
                    designator=SCHEME,
                    name="CXR Lens local codes",
                    responsible_organization="CXR Lens",
                )
            ],
        )
    # a Segmentation frame names its segment already (its Segment Identification), and the
    # standard allows Referenced Segment Number only where no frame is referenced (dciodvfy
    # reports it as an error); highdicom writes both
    for item in _walk(ds.ContentSequence):
        if str(item.get("ValueType")) == "IMAGE" and _name(item)[0] == "121214":
            for ref in item.ReferencedSOPSequence:
                if "ReferencedFrameNumber" in ref and "ReferencedSegmentNumber" in ref:
                    del ref.ReferencedSegmentNumber
    _copy_patient_study(ds, source)
    ds.SoftwareVersions = f"CXR Lens {__version__}"
    return ds


# ---------------------------------------------------------------------------- reading back


@dataclass
class ReportSummary:
    """What a Measurement Report says, for the viewer's legend."""

    sop_instance_uid: str
    algorithm_name: str = ""
    algorithm_version: str = ""
    parameters: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    findings: list[str] = field(default_factory=list)
    #: Parametric Map SOP Instance UID → {trust figure: value}
    map_figures: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Parametric Map SOP Instance UID → (method code meaning, tracking identifier)
    map_labels: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Segmentation SOP Instance UIDs the report references
    segmentations: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str | None:
        for p in self.parameters:
            if p.startswith("model file sha256 "):
                return p.split()[-1]
        return None


def _name(item: Dataset) -> tuple[str, str, str]:
    c = item.ConceptNameCodeSequence[0]
    return str(c.CodeValue), str(c.CodingSchemeDesignator), str(c.CodeMeaning)


def _walk(items: Sequence[Dataset]) -> list[Dataset]:
    out: list[Dataset] = []
    for item in items:
        out.append(item)
        out.extend(_walk(item.get("ContentSequence", [])))
    return out


@dataclass
class _GroupItems:
    """What one measurement group of a report says (:func:`read_report`)."""

    pm_uid: str | None = None
    tracking: str = ""
    method: str = ""
    findings: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)


def _read_item(item: Dataset, out: ReportSummary, g: _GroupItems) -> None:
    """Read one content item of a measurement group into ``g`` (its own facts) or ``out``."""
    code, scheme, meaning = _name(item)
    vt = str(item.ValueType)
    if vt in ("IMAGE", "COMPOSITE") and code in ("121112", "126100"):
        ref = item.ReferencedSOPSequence[0]
        uid = str(ref.ReferencedSOPInstanceUID)
        if str(ref.ReferencedSOPClassUID) == PARAMETRIC_MAP_STORAGE or code == "126100":
            g.pm_uid = uid
        elif uid not in out.images:
            out.images.append(uid)
    elif vt == "IMAGE" and code in ("121191", "121214"):  # Referenced Segment(ation Frame)
        out.segmentations.append(str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID))
    elif vt == "TEXT" and code == "112039":  # Tracking Identifier
        g.tracking = str(item.TextValue)
    elif vt == "CODE" and code == "370129005":  # Measurement Method
        g.method = str(item.ConceptCodeSequence[0].CodeMeaning)
    elif vt == "CODE" and code == "121071":  # Finding
        g.findings.append(str(item.ConceptCodeSequence[0].CodeMeaning))
    elif vt == "TEXT" and code in ("111001", "111002", "111003"):
        _read_algorithm(code, str(item.TextValue), out)
    elif vt == "NUM" and "MeasuredValueSequence" in item:
        value = float(item.MeasuredValueSequence[0].NumericValue)
        if scheme == SCHEME and code.startswith("P-"):
            out.probabilities[meaning.removeprefix("Probability of ")] = value
        elif scheme == SCHEME and code.startswith("T-"):
            out.thresholds[meaning.removeprefix("Decision threshold for ")] = value
        else:
            g.figures[meaning] = value


def _read_algorithm(code: str, text: str, out: ReportSummary) -> None:
    """Algorithm Name (111001), Parameters (111002) or Version (111003)."""
    if code == "111001":
        out.algorithm_name = text
    elif code == "111003":
        out.algorithm_version = text
    elif text not in out.parameters:
        out.parameters.append(text)


def read_report(ds: Dataset) -> ReportSummary:
    """The model, probabilities, decisions and per-map trust figures of a TID 1500 report."""
    if "ContentSequence" not in ds or str(ds.get("ValueType", "")) != "CONTAINER":
        raise DicomExportError(
            "Cannot read the report",
            "the object is not a structured report with a content tree",
            "Open a Measurement Report (SR).",
        )
    out = ReportSummary(str(ds.SOPInstanceUID))
    for group in _walk(ds.ContentSequence):
        if str(group.get("ValueType")) != "CONTAINER" or _name(group)[0] != "125007":
            continue  # DCM 125007 "Measurement Group"
        g = _GroupItems()
        for item in group.get("ContentSequence", []):
            _read_item(item, out, g)
        pm_uid, tracking, method, findings, figures = (
            g.pm_uid,
            g.tracking,
            g.method,
            g.findings,
            g.figures,
        )
        if pm_uid is not None:  # a map's group: its finding is the explained class
            out.map_figures[pm_uid] = figures
            out.map_labels[pm_uid] = (method, tracking)
        else:
            out.findings.extend(findings)
    return out
