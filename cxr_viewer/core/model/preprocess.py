"""The one preprocessing function from a study to model input.

The trainer, the classifier and every explainer call :func:`study_to_input` (or its two halves
:func:`resize_for_model` and :func:`normalize`), so the model is explained on exactly the input
it was trained on. The model sees the study's *default* display (its own window, inversion
applied), never the radiologist's interactive window/level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from cxr_viewer.core.errors import BundleError, InvalidInputError
from cxr_viewer.core.io.display import display_image
from cxr_viewer.core.io.study import Study

#: a scale or an offset: one value, or one per channel
_Param = float | tuple[float, float, float]

#: name → (scale, offset) applied to a [0, 1] image: ``x * scale + offset``. Each is a scalar,
#: or a per-channel triple (R, G, B order of the *model's* channels) for the ImageNet ones.
#: A grey image has R = G = B, so caffe's BGR channel swap only changes which mean goes to
#: which channel; a 1-channel model gets the mean of the three channels' parameters.
PREPROCESSINGS: dict[str, tuple[_Param, _Param]] = {
    # [0, 1]: the custom CNNs trained from scratch (pixel / 255).
    "unit": (1.0, 0.0),
    # [-1, 1]: keras.applications' "tf" mode (ResNet V2, MobileNet V1/V2, Inception, Xception).
    "symmetric": (2.0, -1.0),
    # [0, 255]: raw pixels, for models with their own Rescaling/Normalization layer
    # (keras.applications EfficientNet, ConvNeXt, RegNet) or trained on uint8 arrays.
    "raw": (255.0, 0.0),
    # keras.applications' "caffe" mode (VGG16/19, ResNet50 V1): BGR, ImageNet mean subtracted.
    # The model's channels are B, G, R: means 103.939, 116.779, 123.68 in that order.
    "caffe": ((255.0, 255.0, 255.0), (-103.939, -116.779, -123.68)),
    # keras.applications' "torch" mode (DenseNet, CheXNet-style) and torchvision: RGB,
    # (x - mean) / std with the ImageNet mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225).
    "torch": (
        (1 / 0.229, 1 / 0.224, 1 / 0.225),
        (-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225),
    ),
}

#: one line per preprocessing, for menus and messages
PREPROCESSING_LABELS: dict[str, str] = {
    "unit": "[0, 1]: pixel / 255",
    "symmetric": "[-1, 1]: pixel / 127.5 - 1 (keras.applications 'tf' mode)",
    "raw": "[0, 255]: raw pixels (the model rescales them itself)",
    "caffe": "BGR, ImageNet mean subtracted (keras.applications 'caffe' mode: VGG, ResNet50)",
    "torch": "ImageNet mean/std (keras.applications 'torch' mode: DenseNet, CheXNet)",
}


#: resize interpolations a bundle can state (``input.interpolation``): ``auto`` is area when
#: shrinking and cubic when enlarging; ``bilinear`` is what OpenCV's ``cv2.resize`` default and
#: Keras' ``image_dataset_from_directory`` / ``tf.image.resize`` use
INTERPOLATIONS: dict[str, int | None] = {
    "auto": None,
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}
#: where a linear intensity step is applied: ``pixels``: to 0–255 pixel values *before* the
#: /255, saturating at 0 and 255 as uint8 arithmetic (``cv2.convertScaleAbs``) does; ``unit``: to
#: [0, 1] values *after* the /255, unclipped
INTENSITY_STAGES = ("pixels", "unit")


@dataclass(frozen=True)
class Intensity:
    """A linear intensity step of the training pipeline: ``v * scale + offset``.

    ``offset`` is in the units of ``stage`` (pixel values for ``pixels``, [0, 1] for ``unit``).
    A contrast step ×1.3 before the /255 is ``Intensity(1.3, 0.0, "pixels")``.
    """

    scale: float = 1.0
    offset: float = 0.0
    stage: str = "pixels"

    def __post_init__(self) -> None:
        if self.stage not in INTENSITY_STAGES:
            raise BundleError(
                f"Unknown intensity stage '{self.stage}'",
                f"choose {' or '.join(INTENSITY_STAGES)} (before or after the /255).",
            )
        if not (np.isfinite(self.scale) and np.isfinite(self.offset)) or self.scale <= 0:
            raise BundleError(
                "Invalid intensity step",
                f"scale {self.scale} and offset {self.offset}: the scale must be a positive "
                "number and the offset a number.",
            )

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0

    def apply(self, image01: np.ndarray) -> np.ndarray:
        """The step on a [0, 1] image (float32), in the stage's units."""
        if self.identity:
            return image01
        if self.stage == "pixels":
            out = np.clip(image01 * self.scale + self.offset / 255.0, 0.0, 1.0)
        else:
            out = image01 * self.scale + self.offset
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> str:
        where = (
            "before the /255 (pixel values, saturating)"
            if self.stage == "pixels"
            else ("after the /255")
        )
        return f"× {self.scale:g} {'+' if self.offset >= 0 else '-'} {abs(self.offset):g} {where}"


def scale_offset(preprocessing: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) arrays of shape (channels,) for ``preprocessing``."""
    scale, offset = PREPROCESSINGS[preprocessing]
    s = np.broadcast_to(np.asarray(scale, np.float64), (3,))
    o = np.broadcast_to(np.asarray(offset, np.float64), (3,))
    if channels == 1:
        s, o = s.mean(keepdims=True), o.mean(keepdims=True)
    return s[:channels].astype(np.float32), o[:channels].astype(np.float32)


@dataclass(frozen=True)
class InputSpec:
    """What the model takes: size, channels and the named value mapping."""

    height: int
    width: int
    channels: int = 3
    preprocessing: str = "unit"
    #: resize interpolation (a key of :data:`INTERPOLATIONS`)
    interpolation: str = "auto"
    #: a linear intensity step of the training pipeline, applied before the convention
    intensity: Intensity = Intensity()

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise BundleError(
                f"Unknown resize interpolation '{self.interpolation}'",
                f"CXR Lens knows {', '.join(INTERPOLATIONS)}.",
            )
        if self.preprocessing not in PREPROCESSINGS:
            raise BundleError(
                f"Unknown preprocessing '{self.preprocessing}'",
                f"CXR Lens knows {sorted(PREPROCESSINGS)}.",
                "Re-export the bundle with one of those names.",
            )
        if self.channels not in (1, 3):
            raise BundleError(
                f"Unsupported channel count {self.channels}",
                "Chest X-ray models take 1 (greyscale) or 3 (greyscale repeated) channels.",
            )
        if self.height < 8 or self.width < 8:
            raise BundleError(f"Input size {self.height}x{self.width} is too small")

    @property
    def channel_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(model value of display 0, of display 1), each of shape (channels,)."""
        scale, offset = scale_offset(self.preprocessing, self.channels)
        lo, hi = (float(v) for v in self.intensity.apply(np.array([0.0, 1.0], np.float32)))
        return (lo * scale + offset).astype(np.float32), (hi * scale + offset).astype(np.float32)

    @property
    def value_range(self) -> tuple[float, float]:
        """:attr:`channel_range` averaged over channels (exact for the scalar conventions)."""
        lo, hi = self.channel_range
        return float(lo.mean()), float(hi.mean())

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Model input back to [0, 1] display values (inverse of :func:`normalize`)."""
        lo, hi = self.channel_range
        unit: np.ndarray = (np.asarray(x, np.float32) - lo) / (hi - lo)
        return unit

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.interpolation == "auto":  # the defaults are not written: older viewers' bundles
            d.pop("interpolation")
        if self.intensity.identity:
            d.pop("intensity")
        lo, hi = self.channel_range
        if np.all(lo == lo[0]) and np.all(hi == hi[0]):
            d["value_range"] = [float(lo[0]), float(hi[0])]
        else:
            d["value_range"] = [lo.tolist(), hi.tolist()]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        try:
            step = d.get("intensity") or {}
            return cls(
                height=int(d["height"]),
                width=int(d["width"]),
                channels=int(d.get("channels", 3)),
                preprocessing=str(d.get("preprocessing", "unit")),
                interpolation=str(d.get("interpolation", "auto")),
                intensity=Intensity(
                    float(step.get("scale", 1.0)),
                    float(step.get("offset", 0.0)),
                    str(step.get("stage", "pixels")),
                ),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(
                "The bundle's input description is incomplete",
                f"metadata.json 'input' needs height, width, channels, preprocessing ({exc}).",
            ) from exc


def resize_for_model(image01: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Resize a [0, 1] display image (H, W) to the model's (height, width), float32.

    ``spec.interpolation`` ``auto``: area interpolation when shrinking (no aliasing of fine lung
    texture), cubic when enlarging; else the interpolation the model was trained with.
    """
    h, w = image01.shape[:2]
    interp = INTERPOLATIONS[spec.interpolation]
    if interp is None:
        interp = cv2.INTER_AREA if (h >= spec.height and w >= spec.width) else cv2.INTER_CUBIC
    out = cv2.resize(image01.astype(np.float32), (spec.width, spec.height), interpolation=interp)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def normalize(image01: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Map resized [0, 1] images to model values and channels.

    Accepts (h, w), (h, w, c), (n, h, w) or (n, h, w, c) with c in {1, 3}; returns
    (..., h, w, spec.channels) float32. A 3-channel input is reduced to its mean first when the
    model takes 1 channel, and a 1-channel input is repeated when it takes 3.
    """
    x = np.asarray(image01, dtype=np.float32)
    if x.shape[-1] in (1, 3) and x.ndim >= 3 and x.shape[-2] == spec.width:
        pass  # already has a channel axis
    else:
        x = x[..., None]
    if x.shape[-1] == 3 and spec.channels == 1:
        x = x.mean(axis=-1, keepdims=True)
    elif x.shape[-1] == 1 and spec.channels == 3:
        x = np.repeat(x, 3, axis=-1)
    x = spec.intensity.apply(x)
    scale, offset = scale_offset(spec.preprocessing, spec.channels)
    values: np.ndarray = (x * scale + offset).astype(np.float32)
    return values


def study_to_input(study: Study, spec: InputSpec) -> np.ndarray:
    """Model input (height, width, channels) for a study: default display → resize → normalize.

    Raises
    ------
    InvalidInputError
        When the display image or the input is not finite (NaN/inf pixels, or a window or
        LUT that turns them into NaN), or has no contrast at all (every value the same: a
        uniform image, or a window such as centre -1e308 / width 1e308 that maps every pixel
        to one grey level): a prediction on such an input would mean nothing.
    """
    try:
        image01 = display_image(study)
    except ValueError as exc:  # a window or VOI LUT that cannot be applied
        raise InvalidInputError(
            f"Cannot give {study.name} to the model",
            f"its display transform is invalid ({exc})",
            "Check the file's window and VOI LUT attributes.",
        ) from exc
    resized = check_finite(resize_for_model(image01, spec), study.name)
    check_contrast(resized, study.name)
    return check_finite(normalize(resized, spec), study.name)


#: Least range of a display image (0–1 scale) with contrast: below one step of a 16-bit
#: display (1/65535), and above the float32 rounding that resizing a uniform image leaves.
MIN_CONTRAST = 1e-5


def check_contrast(image01: np.ndarray, name: str = "the image") -> np.ndarray:
    """``image01`` (a display image at the model's size) unchanged unless it is uniform
    (its range is below :data:`MIN_CONTRAST`)."""
    low, high = float(np.min(image01)), float(np.max(image01))
    if high - low >= MIN_CONTRAST:
        return image01
    raise InvalidInputError(
        f"No prediction for {name}",
        f"its model input has no contrast: every pixel is the same grey level ({low:.3g} on "
        "the 0–1 display scale), so the model would be asked about a blank image; the "
        "image is uniform, or its window/level or VOI LUT maps every pixel to one value",
        "Check the file's window and VOI LUT attributes (`cxr-viewer info`) or choose "
        "another image.",
    )


def check_finite(x: np.ndarray, name: str = "the image") -> np.ndarray:
    """``x`` unchanged if every value is finite, else :class:`InvalidInputError`."""
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise InvalidInputError(
            f"Cannot give {name} to the model",
            f"{bad:,} of its {x.size:,} input values are not finite (NaN or infinite); the "
            "image's pixel values or its window/level are damaged",
            "Check the file (e.g. `cxr-viewer info`) or choose another one.",
        )
    return x


def image01_to_input(image01: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Model input for an already displayed [0, 1] image of any size (refused if not finite)."""
    return check_finite(normalize(resize_for_model(image01, spec), spec))
