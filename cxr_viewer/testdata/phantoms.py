"""Synthetic chest-X-ray phantoms with lesions at known positions.

A phantom is drawn in normalised coordinates (so any size gives the same anatomy): a body
outline, two dark lung fields with domed bases, a bright mediastinum, spine and heart shadow,
clavicles and posterior ribs over the lungs, a random pose (rotation, scale, shift) and noise.
Positives carry one bright opacity (round or lobulated, random size) inside a lung; its mask is
returned with the image. Values are *display* values in [0, 1] in the MONOCHROME2 sense (bone
bright, air dark), i.e. what :func:`cxr_viewer.core.io.display.display_image` gives for a correct
reading of the files :func:`write_phantoms` writes.

Everything is deterministic for a seed; phantom ``i`` of a set depends only on ``(seed, i)``
and its label, so ``make_phantoms(n)`` is a prefix of ``make_phantoms(m)`` for ``m > n`` when the
labels agree.

The phantoms are for tests and demonstrations (an explainer on a model trained on them must
point at the lesion, cf. the "pointing game" of Zhang et al. 2018, *Top-down neural attention by
excitation backprop*); they are not a model of real radiographic anatomy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: class names of the phantom task, index = label
PHANTOM_CLASSES: tuple[str, str] = ("no_lesion", "lesion")

#: 12 bits stored in 16 allocated, like most CR/DX detectors
_BITS_STORED = 12
_MAX_STORED = 2**_BITS_STORED - 1


@dataclass
class PhantomSet:
    """A set of phantoms.

    Attributes
    ----------
    images:
        float32 (n, size, size) display values in [0, 1], MONOCHROME2 sense.
    labels:
        int64 (n,), 1 = lesion present, 0 = none.
    masks:
        bool (n, size, size), the lesion mask (all False when the label is 0).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _soft_ellipse(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, edge: float
) -> np.ndarray:
    """1 inside the ellipse, 0 outside, with a sigmoid edge of width ``edge`` (normalised units)."""
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    inside: np.ndarray = 1.0 / (1.0 + np.exp((r - 1.0) * min(ax, ay) / edge))
    return inside


def _lungs(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, edge: float) -> np.ndarray:
    """Soft mask of both lung fields: ellipses cut by a domed diaphragm, heart cut-out on the
    image right (patient's left)."""
    lungs = np.zeros_like(x)
    for side in (-1.0, 1.0):
        cx = side * rng.uniform(0.36, 0.42)
        ax = rng.uniform(0.24, 0.29)
        ay = rng.uniform(0.50, 0.58)
        cy = rng.uniform(-0.10, -0.02)
        field = _soft_ellipse(x, y, cx, cy, ax, ay, edge)
        # diaphragm dome: the lung stops above a parabola peaking under the lung's centre
        dome_y = cy + ay * rng.uniform(0.55, 0.75) + 0.9 * (x - cx) ** 2
        field = field / (1.0 + np.exp((y - dome_y) / edge))
        lungs = np.maximum(lungs, field)
    return lungs


def _ribs(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, edge: float) -> np.ndarray:
    """Posterior ribs: arcs descending laterally on each side, plus the clavicles."""
    out = np.zeros_like(x)
    n_ribs = int(rng.integers(7, 9))
    spacing = rng.uniform(0.13, 0.15)
    thick = rng.uniform(0.018, 0.024)
    top = rng.uniform(-0.62, -0.55)
    ax = np.abs(x)
    for k in range(n_ribs):
        curve = top + k * spacing + 0.55 * (ax - 0.08) ** 2 - 0.12 * (ax - 0.08)
        band = np.exp(-(((y - curve) / thick) ** 2))
        out = np.maximum(out, band * (ax > 0.07))
    clav_y = top - 0.04 + 0.25 * (ax - 0.3) ** 2
    clav = np.exp(-(((y - clav_y) / (thick * 1.3)) ** 2)) * (ax > 0.06) * (ax < 0.62)
    ribs: np.ndarray = np.maximum(out, clav)
    return ribs


def _lesion(
    x: np.ndarray, y: np.ndarray, lung_mask: np.ndarray, rng: np.random.Generator, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """A bright opacity inside the lungs: (soft intensity profile, bool mask)."""
    ys, xs = np.nonzero(lung_mask)
    radius = rng.uniform(0.06, 0.14)  # normalised units, i.e. 3 %..7 % of the image width
    lobulated = bool(rng.integers(0, 2))
    # candidate centres: lung pixels whose whole disc stays inside the lungs
    for _ in range(40):
        j = int(rng.integers(0, len(ys)))
        cy, cx = y[ys[j], xs[j]], x[ys[j], xs[j]]
        r = np.hypot(x - cx, y - cy)
        if np.all(lung_mask[r <= radius * 1.15]):
            break
    theta = np.arctan2(y - cy, x - cx)
    rr = np.full_like(x, radius)
    if lobulated:
        for harmonic in (2, 3, 5):
            rr = rr + radius * rng.uniform(0.08, 0.22) * np.cos(
                harmonic * theta + rng.uniform(0, 2 * np.pi)
            )
    edge = max(0.5 / size * 2.0, radius * 0.18)
    profile = 1.0 / (1.0 + np.exp((r - rr) / edge))
    mask = (profile > 0.5) & lung_mask
    if not mask.any():  # tiny images: at least the centre pixel
        mask[ys[j], xs[j]] = True
    return profile * lung_mask, mask


def _effusion(
    x: np.ndarray, y: np.ndarray, lung_mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A pleural-effusion-like opacity: the base of one lung filled up to a meniscus that
    rises towards the chest wall (brightest at the costophrenic angle)."""
    ys, xs = np.nonzero(lung_mask)
    side = 1.0 if rng.integers(0, 2) else -1.0
    on_side = (x[ys, xs] * side) > 0.05
    if not on_side.any():
        on_side[:] = True
    lung_y = y[ys[on_side], xs[on_side]]
    bottom = float(np.quantile(lung_y, 0.98))
    top = float(np.quantile(lung_y, 0.15))
    depth = rng.uniform(0.18, 0.32) * (bottom - top)
    # the fluid level: higher (smaller y) laterally, a meniscus
    level = bottom - depth - 0.25 * np.clip(np.abs(x) - 0.2, 0, None) * (bottom - top)
    edge = 0.025
    profile = 1.0 / (1.0 + np.exp(-(y - level) / edge)) * ((x * side) > 0.0)
    mask = (profile > 0.5) & lung_mask
    return profile * lung_mask, mask


def _one_phantom(
    size: int, label: int, rng: np.random.Generator, effusion: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    # pose jitter: rotation, isotropic scale, shift — applied to the sampling grid
    angle = np.deg2rad(rng.uniform(-6.0, 6.0))
    scale = rng.uniform(0.9, 1.08)
    shift = rng.uniform(-0.05, 0.05, size=2)
    g = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0
    yy, xx = np.meshgrid(g, g, indexing="ij")
    ca, sa = np.cos(angle), np.sin(angle)
    x = (ca * (xx - shift[0]) + sa * (yy - shift[1])) / scale
    y = (-sa * (xx - shift[0]) + ca * (yy - shift[1])) / scale
    edge = max(1.5 / size, 0.01)

    body = _soft_ellipse(x, y, 0.0, 0.12, rng.uniform(0.82, 0.9), rng.uniform(1.0, 1.1), edge * 2)
    # mediastinum + spine (bright, central) and the heart shadow (image right, patient's left)
    spine = np.exp(-((x / rng.uniform(0.06, 0.08)) ** 4)) * (y > -0.9)
    medi = _soft_ellipse(x, y, 0.02, -0.05, rng.uniform(0.12, 0.15), 0.7, edge * 3)
    heart = _soft_ellipse(
        x, y, rng.uniform(0.1, 0.15), rng.uniform(0.22, 0.3), rng.uniform(0.25, 0.3), 0.24, edge * 3
    )
    central = np.maximum(medi, heart)
    # the heart and mediastinum hide the lung behind them
    lungs = _lungs(x, y, rng, edge * 1.5) * (1.0 - central)
    img = 0.04 + 0.50 * body  # air dark, soft tissue grey
    # lungs darker, slightly lighter towards the periphery and bases (vessels, overlap)
    periph = np.clip(np.abs(x) * 0.35 + np.clip(y, 0, None) * 0.3, 0, 0.3)
    img = img - lungs * (rng.uniform(0.30, 0.36) - periph * 0.5)
    img = img + 0.12 * central * body + 0.14 * spine * body
    ribs = _ribs(x, y, rng, edge)
    img = img + rng.uniform(0.05, 0.08) * ribs * body * (0.4 + 0.6 * lungs)

    lung_mask = lungs > 0.5
    mask = np.zeros((size, size), dtype=bool)
    if label:
        profile, mask = _lesion(x, y, lung_mask, rng, size)
        img = img + rng.uniform(0.22, 0.35) * profile
    if effusion:
        profile, eff_mask = _effusion(x, y, lung_mask, rng)
        img = img + rng.uniform(0.25, 0.35) * profile
        mask = np.stack([mask, eff_mask])

    # soft texture + quantum-like noise, then clip to display range
    img = img + rng.normal(0.0, 0.015, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask


def make_phantoms(
    n: int, size: int = 128, *, seed: int = 0, positive_fraction: float = 0.5
) -> PhantomSet:
    """Draw ``n`` chest-X-ray-like phantoms of ``size``×``size`` pixels.

    Parameters
    ----------
    n:
        Number of images (≥ 1).
    size:
        Side in pixels (≥ 16).
    seed:
        Seed; the same arguments always give the same set.
    positive_fraction:
        Fraction of images with a lesion; exactly ``round(n * positive_fraction)`` positives in a
        seeded random order.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if not 0.0 <= positive_fraction <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
    n_pos = int(round(n * positive_fraction))
    labels = np.zeros(n, dtype=np.int64)
    labels[:n_pos] = 1
    np.random.default_rng([seed, 0x1AB]).shuffle(labels)
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        images[i], masks[i] = _one_phantom(size, int(labels[i]), rng)
    return PhantomSet(images=images, labels=labels, masks=masks)


# --- writing -------------------------------------------------------------------------------


def _write_png(path: Path, image01: np.ndarray) -> None:
    import cv2

    u8 = np.rint(np.clip(image01, 0, 1) * 255).astype(np.uint8)
    if not cv2.imwrite(str(path), u8):
        raise OSError(f"could not write {path}")


def _write_dicom(path: Path, image01: np.ndarray, photometric: str, patient_id: str) -> None:
    """A DX "for presentation" DICOM (PS3.3 A.26), 12 bits stored in 16, with a VOI window.

    MONOCHROME1 stores inverted values (PS3.3 C.7.6.3.1.2: minimum = white), so a correct
    viewer shows the same picture for both photometric interpretations. Window centre 2048 /
    width 4096 maps stored values 0..4095 linearly onto the display range (C.11.2.1.2.1).
    """
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian
    from pydicom.uid import generate_uid as uid

    stored = np.rint(np.clip(image01, 0, 1) * _MAX_STORED).astype(np.uint16)
    if photometric == "MONOCHROME1":
        stored = (_MAX_STORED - stored).astype(np.uint16)
    elif photometric != "MONOCHROME2":
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")

    from pydicom.dataset import Dataset

    key = [path.name, patient_id, photometric]
    sop_uid = uid(entropy_srcs=["sop", *key])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = uid(entropy_srcs=["study", patient_id])
    ds.SeriesInstanceUID = uid(entropy_srcs=["series", *key])
    ds.PatientName = f"Phantom^{patient_id}"
    ds.PatientID = patient_id
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.StudyDescription = "CXR Lens synthetic phantom (not a patient)"
    ds.Manufacturer = "CXR Lens trainer.synth"  # kept: files written before the move say so
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = (int(s) for s in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = _BITS_STORED
    ds.HighBit = _BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.VOILUTFunction = "LINEAR"
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_phantoms(
    out_dir: str | Path,
    phantoms: PhantomSet,
    *,
    formats: tuple[str, ...] = ("png", "dicom"),
    photometrics: tuple[str, ...] = ("MONOCHROME2", "MONOCHROME1"),
    prefix: str = "phantom",
) -> Path:
    """Write phantoms, their masks and a manifest CSV; return the manifest's path.

    Each phantom ``i`` is one "patient" ``{prefix}-{i:05d}``; with PNG and both DICOM
    photometrics it gets three files, all with the same patient id (patient-level splits must
    keep them together). Masks are written as 8-bit PNG (0/255) for every phantom. The manifest
    ``manifest.csv`` has the columns ``path,label,patient_id,view,source,mask_path`` with paths
    relative to ``out_dir`` and labels as class names (:data:`PHANTOM_CLASSES`).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    unknown = set(formats) - {"png", "dicom"}
    if unknown or not formats:
        raise ValueError(f"formats must be a non-empty subset of png, dicom; got {formats}")
    rows = []
    for i in range(len(phantoms)):
        pid = f"{prefix}-{i:05d}"
        label = PHANTOM_CLASSES[int(phantoms.labels[i])]
        mask_rel = f"masks/{pid}_mask.png"
        _write_png(out / mask_rel, phantoms.masks[i].astype(np.float32))
        files: list[str] = []
        if "png" in formats:
            rel = f"images/{pid}.png"
            _write_png(out / rel, phantoms.images[i])
            files.append(rel)
        if "dicom" in formats:
            for photometric in photometrics:
                rel = f"images/{pid}_{photometric.lower()}.dcm"
                _write_dicom(out / rel, phantoms.images[i], photometric, pid)
                files.append(rel)
        for rel in files:
            rows.append(
                {
                    "path": rel,
                    "label": label,
                    "patient_id": pid,
                    "view": "PA",
                    "source": "phantom",
                    "mask_path": mask_rel,
                }
            )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["path", "label", "patient_id", "view", "source", "mask_path"]
        )
        writer.writeheader()
        writer.writerows(rows)
    return manifest


# --- two independent findings -----------------------------------------------------------------

#: the findings of the multi-label phantom task, in output order
MULTILABEL_FINDINGS: tuple[str, str] = ("nodule", "effusion")
#: the manifest label of a phantom with neither finding
NO_FINDING = "no_finding"


@dataclass
class MultiLabelPhantomSet:
    """Phantoms with two independent findings: a nodule (a round or lobulated opacity anywhere
    in a lung) and an effusion (one lung's base filled up to a meniscus).

    ``labels`` is (n, 2) int64 (columns :data:`MULTILABEL_FINDINGS`), ``masks`` (n, 2, S, S).
    """

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def label_text(self, i: int) -> str:
        """The manifest label: findings joined by "|", or :data:`NO_FINDING`."""
        found = [f for f, v in zip(MULTILABEL_FINDINGS, self.labels[i], strict=True) if v]
        return "|".join(found) or NO_FINDING


def make_multilabel_phantoms(
    n: int, size: int = 128, *, seed: int = 0, fraction: float = 0.5
) -> MultiLabelPhantomSet:
    """``n`` phantoms, each finding present independently in ``round(n * fraction)`` of them
    (two independent seeded shuffles, so all four combinations occur)."""
    if n < 1 or size < 16 or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"need n ≥ 1, size ≥ 16, fraction in [0, 1]; got {n}, {size}, {fraction}")
    k = int(round(n * fraction))
    labels = np.zeros((n, 2), dtype=np.int64)
    for j in range(2):
        col = np.zeros(n, dtype=np.int64)
        col[:k] = 1
        np.random.default_rng([seed, 0x2AB, j]).shuffle(col)
        labels[:, j] = col
    images = np.empty((n, size, size), dtype=np.float32)
    masks = np.zeros((n, 2, size, size), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, 0x3C, i])
        img, m = _one_phantom(size, int(labels[i, 0]), rng, effusion=bool(labels[i, 1]))
        images[i] = img
        if m.ndim == 3:
            masks[i] = m
        else:
            masks[i, 0] = m
    return MultiLabelPhantomSet(images=images, labels=labels, masks=masks)


def write_multilabel_phantoms(
    out_dir: str | Path, phantoms: MultiLabelPhantomSet, *, prefix: str = "mlphantom"
) -> Path:
    """Write the phantoms as PNG with a manifest whose ``label`` is the finding set
    ("nodule|effusion", "nodule", "effusion" or "no_finding"); return the manifest's path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(len(phantoms)):
        pid = f"{prefix}-{i:05d}"
        rel = f"images/{pid}.png"
        _write_png(out / rel, phantoms.images[i])
        rows.append(
            {
                "path": rel,
                "label": phantoms.label_text(i),
                "patient_id": pid,
                "view": "PA",
                "source": "phantom",
            }
        )
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "patient_id", "view", "source"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest
