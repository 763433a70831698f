"""Heat maps to RGBA layers and layers onto the X-ray (pure numpy + matplotlib colormaps).

Colorizing is done once per map (and again only when its colormap or scale changes); changing a
layer's opacity or visibility only re-runs :func:`composite`, which is cheap, so the GUI never
recomputes an explanation to redraw it.

Alpha encodes evidence strength: a pixel's alpha is proportional to ``|value| / vmax``, so
weak evidence is transparent and the X-ray shows through, and values below ``cutoff`` (a
fraction of vmax) are fully transparent, so a faint wash does not tint the whole lung field.
Signed maps (LIME, SHAP) use a diverging colormap centred on zero (warm: toward the class,
cool: against); non-negative maps (Grad-CAM) a perceptually uniform sequential one (inferno).
Each method's own defaults live with the method (``Explainer.display``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

#: colormaps offered for signed maps (diverging, centred on 0) and for non-negative maps
SIGNED_COLORMAPS = ("RdBu_r", "PuOr_r", "coolwarm", "bwr", "PiYG_r")
UNSIGNED_COLORMAPS = ("inferno", "magma", "viridis", "turbo", "hot", "jet")
DEFAULT_SIGNED_COLORMAP = "RdBu_r"
DEFAULT_UNSIGNED_COLORMAP = "inferno"
#: (low end, high end) colour names of the diverging colormaps, for legends
DIVERGING_ENDS = {
    "RdBu_r": ("blue", "red"),
    "PuOr_r": ("purple", "orange"),
    "coolwarm": ("blue", "red"),
    "bwr": ("blue", "red"),
    "PiYG_r": ("green", "pink"),
}


def default_colormap(signed: bool) -> str:
    """The default colormap name for a signed or a non-negative map."""
    return DEFAULT_SIGNED_COLORMAP if signed else DEFAULT_UNSIGNED_COLORMAP


@lru_cache(maxsize=32)
def _lut(name: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colormap."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError as exc:
        raise ValueError(f"Unknown colormap '{name}'") from exc
    rgba = cmap(np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def colormap_lut(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB colours :func:`colorize` draws with a colormap (low to high)."""
    return _lut(name).copy()


def robust_vmax(values: np.ndarray, percentile: float = 99.5) -> float:
    """The scale of a map: a high percentile of |values| (robust to a few extreme pixels)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    m = float(np.percentile(v, percentile))
    if m <= 0:
        m = float(v.max())
    return m if m > 0 else 1.0


def colorize(
    values: np.ndarray,
    *,
    signed: bool,
    colormap: str | None = None,
    vmax: float | None = None,
    cutoff: float = 0.0,
) -> np.ndarray:
    """An (H, W, 4) uint8 RGBA image of a heat map.

    Parameters
    ----------
    values:
        (H, W) map. Non-finite values are drawn transparent.
    signed:
        Diverging colours centred on 0 for signed maps; sequential from 0 otherwise (negative
        values of an unsigned map are clipped to 0).
    colormap:
        A matplotlib colormap name; default :func:`default_colormap`.
    vmax:
        |value| drawn at full colour and full alpha; default :func:`robust_vmax`.
    cutoff:
        |value| / vmax below which a pixel is fully transparent (0: none).
    """
    v = np.asarray(values, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"colorize takes a 2-D map, got shape {v.shape}")
    finite = np.isfinite(v)
    v = np.where(finite, v, 0.0)
    scale = float(vmax) if vmax is not None and vmax > 0 else robust_vmax(v)
    lut = _lut(colormap or default_colormap(signed))
    if signed:
        t = np.clip(v / scale, -1.0, 1.0)
        idx = np.round((t + 1.0) * 127.5).astype(np.intp)
        strength = np.abs(t)
    else:
        t = np.clip(v / scale, 0.0, 1.0)
        idx = np.round(t * 255.0).astype(np.intp)
        strength = t
    if cutoff > 0:
        strength = np.where(strength < float(cutoff), 0.0, strength)
    out = np.empty(v.shape + (4,), np.uint8)
    out[..., :3] = lut[idx]
    out[..., 3] = np.round(np.where(finite, strength, 0.0) * 255.0).astype(np.uint8)
    return out


def composite(base01: np.ndarray, layers: Sequence[tuple[np.ndarray, float]] = ()) -> np.ndarray:
    """The X-ray with RGBA layers drawn over it, as (H, W, 3) uint8.

    Parameters
    ----------
    base01:
        (H, W) or (H, W, 3) display image in [0, 1].
    layers:
        (rgba uint8 (H, W, 4), opacity in [0, 1]) pairs, drawn in order ("over" operator with
        alpha = pixel alpha × opacity).
    """
    base = np.clip(np.asarray(base01, dtype=np.float32), 0.0, 1.0)
    if base.ndim == 2:
        base = np.repeat(base[..., None], 3, axis=2)
    elif base.ndim != 3 or base.shape[2] != 3:
        raise ValueError(f"composite takes an (H, W) or (H, W, 3) base, got {base.shape}")
    out = base.copy()
    for rgba, opacity in layers:
        rgba = np.asarray(rgba)
        if rgba.shape[:2] != out.shape[:2] or rgba.shape[2] != 4:
            raise ValueError(f"layer shape {rgba.shape} does not match the image {out.shape[:2]}")
        op = float(np.clip(opacity, 0.0, 1.0))
        if op == 0.0:
            continue
        a = rgba[..., 3:4].astype(np.float32) * (op / 255.0)
        out = out * (1.0 - a) + rgba[..., :3].astype(np.float32) / 255.0 * a
    return np.round(out * 255.0).astype(np.uint8)


def colorbar_image(
    *,
    signed: bool,
    colormap: str | None = None,
    length: int = 256,
    thickness: int = 16,
    vertical: bool = True,
    with_alpha: bool = True,
    cutoff: float = 0.0,
) -> np.ndarray:
    """A legend strip (RGBA uint8) for :func:`colorize`'s mapping.

    Vertical strips run from +vmax at the top to 0 (or −vmax if signed) at the bottom;
    horizontal ones from low (left) to high (right). With ``with_alpha`` the strip fades as the
    overlay does; the GUI draws it over a neutral background and labels the ends with
    ``±vmax``.
    """
    lo = -1.0 if signed else 0.0
    ramp = np.linspace(lo, 1.0, length, dtype=np.float32)
    strip = colorize(ramp[None, :], signed=signed, colormap=colormap, vmax=1.0, cutoff=cutoff)[0]
    if not with_alpha:
        strip[:, 3] = 255
    img = np.repeat(strip[None, :, :], thickness, axis=0)  # (thickness, length, 4)
    if vertical:
        img = np.ascontiguousarray(np.transpose(img, (1, 0, 2))[::-1])
    return img


#: what every legend says about its scale: each map is scaled to its own image
RELATIVE_NOTE = "relative, scaled to this image"


def legend_labels(signed: bool, colormap: str, class_name: str = "") -> tuple[str, str, str]:
    """(low end, high end, caption) of a map's legend, in words rather than raw values.

    Raw attribution values (±0.000686) mean nothing to a reader and change from image to image;
    the colours are scaled per image (:func:`robust_vmax`), and the caption says so.
    """
    cls = class_name or "the class"
    if signed:
        low, high = DIVERGING_ENDS.get(colormap, ("low end", "high end"))
        return (
            f"against {cls}",
            f"toward {cls}",
            f"{high}: toward {cls} · {low}: against · {RELATIVE_NOTE}",
        )
    return "weak", "strong", f"evidence for {cls} · {RELATIVE_NOTE}"
