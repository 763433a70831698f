"""The :class:`Study`: one image as CXR Lens holds it, independent of the file it came from.

Readers in :mod:`cxr_viewer.core.io` (one per registered format) turn files into a ``Study``;
nothing after them touches pydicom or the file again. The display pipeline (:mod:`.display`)
turns a ``Study`` into the 8-bit image a radiologist sees, and
:mod:`cxr_viewer.core.model.preprocess` turns that same display image into model input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

VoiFunction = Literal["LINEAR", "LINEAR_EXACT", "SIGMOID"]


@dataclass(frozen=True)
class Window:
    """A VOI window (DICOM PS3.3 C.11.2.1.2): centre and width in modality units."""

    center: float
    width: float
    function: VoiFunction = "LINEAR"
    name: str = ""

    def __post_init__(self) -> None:
        if not np.isfinite(self.center) or not np.isfinite(self.width):
            raise ValueError(f"window centre/width must be finite, got {self.center}/{self.width}")
        if self.width <= 0:
            raise ValueError(f"window width must be positive, got {self.width}")

    @property
    def low(self) -> float:
        return self.center - self.width / 2.0

    @property
    def high(self) -> float:
        return self.center + self.width / 2.0


@dataclass(frozen=True)
class VoiLut:
    """A VOI LUT from a VOI LUT Sequence (DICOM PS3.3 C.11.2.1.1).

    ``data[i]`` is the output for input ``first_mapped + i``; inputs below/above map to the first/
    last entry. Outputs range over ``0 .. 2**bits - 1``.
    """

    first_mapped: int
    data: np.ndarray
    bits: int
    name: str = ""

    def __post_init__(self) -> None:
        if not 1 <= int(self.bits) <= 16:
            raise ValueError(f"VOI LUT entries must have 1 to 16 bits, got {self.bits}")
        if np.ndim(self.data) != 1 or len(self.data) == 0:
            raise ValueError(
                f"VOI LUT data must be a non-empty 1-D table, got {np.shape(self.data)}"
            )


@dataclass
class Study:
    """One image, ready for display and for the model.

    Attributes
    ----------
    path:
        The file it came from.
    format:
        The name of the format it was read as, in lower case (``ImageFormat.name``, see
        :mod:`cxr_viewer.core.io.formats`): ``"png"``, ``"jpeg"`` or ``"dicom"`` for the
        built-in readers.
    pixels:
        float32 array (rows, columns) after the modality LUT (rescale slope/intercept or
        Modality LUT Sequence), i.e. in modality units, for the current frame. Greyscale images
        stored as RGB/RGBA are reduced to one channel; true colour images are converted to
        luminance (``is_color`` records that).
    windows:
        Every VOI window the file offers, first one the default. Empty when the file has none.
    voi_luts:
        VOI LUTs from a VOI LUT Sequence; used instead of a window when ``windows`` is empty.
    auto_window:
        A window computed from the pixels (percentiles) or from the bit depth for PNG/JPEG.
    invert:
        True when the display must be inverted once at the end of the pipeline
        (MONOCHROME1, or Presentation LUT Shape INVERSE).
    """

    path: Path
    format: str
    pixels: np.ndarray
    auto_window: Window
    windows: list[Window] = field(default_factory=list)
    voi_luts: list[VoiLut] = field(default_factory=list)
    invert: bool = False
    photometric: str = "MONOCHROME2"
    bits_stored: int = 8
    frame: int = 0
    n_frames: int = 1
    pixel_spacing: tuple[float, float] | None = None
    transfer_syntax: str | None = None
    is_color: bool = False
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.pixels.ndim != 2:
            raise ValueError(f"Study.pixels must be 2-D, got shape {self.pixels.shape}")
        if self.pixels.dtype != np.float32:
            self.pixels = self.pixels.astype(np.float32)

    @property
    def rows(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def columns(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def default_window(self) -> Window | None:
        """The window the display starts with: the file's first window, else none (VOI LUT or auto)."""
        return self.windows[0] if self.windows else None

    @property
    def name(self) -> str:
        return self.path.name

    # Metadata keys a radiologist needs (used by the GUI's metadata panel and by `info`).
    PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
