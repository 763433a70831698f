"""The interoperability layer: results and studies exchanged with other systems.

PACS query / retrieve / send over DIMSE (:mod:`.pacs`) and DICOMweb (:mod:`.dicomweb`), and the
DICOM objects CXR Lens writes for its results: Secondary Capture and the export folder
(:mod:`.dicom_export`), Parametric Maps (:mod:`.dicom_pm`), Comprehensive SR (:mod:`.dicom_sr`),
Segmentations (:mod:`.dicom_seg`), the set written together (:mod:`.dicom_results`) and reading
stored results back as overlays (:mod:`.dicom_overlays`). It is the top layer of the core and may
use every layer below; nothing in the core imports it. Nothing is imported here.
"""
