"""The project's exception types.

Every message answers three questions: what failed, why, and what the user can do about it.
Raise them with :func:`CxrError.__init__`'s three parts so the GUI can show a headline, an
explanation and a hint separately (see ``cxr_viewer.gui.error_dialog``).
"""

from __future__ import annotations

from collections.abc import Sequence


class CxrError(Exception):
    """Base class of every error CXR Lens reports to a user.

    Parameters
    ----------
    what:
        What failed, as a headline ("Cannot open chest.dcm").
    why:
        Why it failed, in plain words.
    hint:
        What to do about it (install a codec, choose another file, ...). May be empty.
    """

    def __init__(self, what: str, why: str = "", hint: str = "") -> None:
        self.what = what
        self.why = why
        self.hint = hint
        message = f"{what}: {why}" if why else what
        if hint:
            message = f"{message.rstrip('.')}. {hint}"
        super().__init__(message)


class StudyLoadError(CxrError):
    """A file or folder could not be read as an image study."""


class UnsupportedFormatError(StudyLoadError):
    """No registered image format recognises the file (:mod:`cxr_viewer.core.io.formats`)."""


class CorruptFileError(StudyLoadError):
    """The file has a known format but its bytes are truncated or damaged."""


class MissingCodecError(StudyLoadError):
    """A format's reader, or a DICOM transfer syntax's decoder plugin, needs a package that is
    not installed."""


class NoPixelDataError(StudyLoadError):
    """A DICOM file has no Pixel Data element (e.g. a structured report)."""


class ImageTooLargeError(StudyLoadError):
    """The image exceeds the pixel limit (protection against decompression bombs)."""


class InvalidInputError(CxrError):
    """A study cannot be given to the model (e.g. its display image is not finite)."""


class BundleError(CxrError):
    """A model bundle is missing pieces, is inconsistent or fails its checksum.

    ``problems``: one sentence per problem when the bundle's metadata breaks its schema (else
    empty).
    """

    def __init__(
        self, what: str, why: str = "", hint: str = "", *, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(what, why, hint)
        self.problems = list(problems)


class ModelLoadError(BundleError):
    """The Keras model inside a bundle (or a bare model file) could not be loaded safely."""


class ExplainError(CxrError):
    """An explanation could not be computed with the given settings."""


class Cancelled(CxrError):
    """Raised inside long work when the user cancelled it; not an error to show."""

    def __init__(self, what: str = "Cancelled", why: str = "", hint: str = "") -> None:
        super().__init__(what, why, hint)


class TrainingError(CxrError):
    """The trainer could not read a dataset, split it, or train with the given config."""


class DeviceError(CxrError):
    """The requested compute device (``--device``, the viewer's setting) is not available."""


class DicomExportError(CxrError):
    """Results could not be written as DICOM (Secondary Capture, structured report)."""


class PacsError(CxrError):
    """A DICOM network operation (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE) failed."""
