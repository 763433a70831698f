"""Where does a heat map point? Scores against radiologist boxes, baselines and bootstrap CIs.

Qt-free and TensorFlow-free: everything here works on numpy maps and box lists, so the
``localize`` command, the viewer's trust panel and the tests share one implementation.

Measures (for one map and the boxes of one finding on one image, all on the same pixel grid):

- **pointing game** (Zhang et al., 2016): is the map's peak inside a box? ``strict`` needs the
  peak pixel in a box; ``tolerant`` accepts a peak within 15 px *at 224 px* of a box (the
  original tolerance), scaled to the grid. When several pixels share the maximum (a flat map),
  the hit is the fraction of them that count, i.e. the expected hit under random tie-breaking.
- **energy inside**: the share of the map's positive mass that falls inside the boxes (the
  energy-based pointing game of Score-CAM).
- **top-k IoU**: the map thresholded to its top k % of the image area (pixels tied at the
  threshold included, non-positive pixels never selected) against the box mask, as CheXlocalize
  thresholds maps against segmentations. ``k`` is chosen per method on the data at hand from
  :data:`TOPK_GRID` (see :func:`choose_topk`) and always reported with its value.

Baselines that see no image: a centre-prior Gaussian (:func:`centre_prior`), a uniform random map
(:func:`uniform_random`) and an anatomy prior (:class:`AnatomyPrior`: the mean box mask of the
same finding over the *other* patients' images, leave-one-patient-out).
"""

from __future__ import annotations

import csv
import math
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxr_viewer.core.errors import CxrError
from cxr_viewer.core.io.resize import resize_map

#: the pointing-game tolerance of Zhang et al.: 15 pixels on a 224-pixel image
TOLERANCE_PX_AT_224 = 15.0
#: top-k % area thresholds tried by :func:`choose_topk`
TOPK_GRID: tuple[float, ...] = (2.5, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
#: the centre prior's standard deviation as a fraction of the image side
CENTRE_SIGMA = 0.25
#: measures reported per row and summarised
MEASURES: tuple[str, ...] = ("pointing_strict", "pointing_tolerant", "energy_inside", "iou_topk")
#: baseline method names as they appear in the outputs
BASELINES: tuple[str, ...] = ("centre_prior", "uniform_random", "anatomy_prior")

REQUIRED_COLUMNS = ("filename", "finding", "x", "y", "w", "h")
#: other names of the columns: the RSNA Pneumonia Detection Challenge's ``stage_2_train_labels``
#: (patientId, x, y, width, height, Target; the image is ``<patientId>.dcm`` or ``.jpg``)
COLUMN_ALIASES = {"patientId": "filename", "width": "w", "height": "h"}
#: the finding of a file without a ``finding`` column but with RSNA's ``Target``
RSNA_FINDING = "Lung Opacity"


class AnnotationError(CxrError):
    """A box annotation file could not be read or does not fit the image."""


@dataclass(frozen=True)
class Box:
    """One radiologist box in the pixels of the image it was drawn on (top-left origin)."""

    filename: str
    finding: str
    x: float
    y: float
    w: float
    h: float
    image_width: float | None = None
    image_height: float | None = None
    patient_id: str = ""

    def scaled(self, rows: int, columns: int) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) on a grid of ``rows`` × ``columns`` pixels.

        The box is scaled by grid size / annotated image size; without the annotated size it is
        taken to be in the grid's own pixels.
        """
        sx = columns / self.image_width if self.image_width else 1.0
        sy = rows / self.image_height if self.image_height else 1.0
        return self.x * sx, self.y * sy, (self.x + self.w) * sx, (self.y + self.h) * sy


# --------------------------------------------------------------------------------------- reading
def _float(value: str, column: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise AnnotationError(
            f"Cannot read the boxes in {where}",
            f"column '{column}' holds {value!r}, not a number.",
            "Fix that cell; x, y, w, h are pixels of the annotated image.",
        ) from None
    if not math.isfinite(v):
        raise AnnotationError(
            f"Cannot read the boxes in {where}", f"column '{column}' is {value!r}.", ""
        )
    return v


def read_boxes(path: str | Path) -> list[Box]:
    """Every box of a CSV with columns filename, finding, x, y, w, h [, image_width,
    image_height, patient_id] (the NIH ChestX-ray14 ``BBox_List`` layout, 512-pixel copy), or
    RSNA's patientId, x, y, width, height, Target (films without a box skipped; the finding is
    :data:`RSNA_FINDING`, the image is matched by its stem).

    Raises :class:`AnnotationError` for a missing file, missing columns, non-numbers or boxes of
    zero or negative size.
    """
    p = Path(path)
    if not p.is_file():
        raise AnnotationError(
            f"Cannot open the annotations {p}",
            "the file does not exist.",
            "Choose a CSV with columns filename, finding, x, y, w, h.",
        )
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in (reader.fieldnames or [])]
            alias = {a: c for a, c in COLUMN_ALIASES.items() if a in header and c not in header}
            header = [alias.get(c, c) for c in header]
            rsna = "finding" not in header and "Target" in header
            if rsna:
                header.append("finding")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise AnnotationError(
                    f"Cannot read the boxes in {p.name}",
                    f"the CSV lacks the column(s) {', '.join(missing)} (it has "
                    f"{', '.join(header) or 'no header'}).",
                    "A box CSV needs filename, finding, x, y, w, h in pixels.",
                )
            boxes = []
            for n, raw in enumerate(reader, start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
                row = {alias.get(k, k): v for k, v in row.items()}
                where = f"{p.name} line {n}"
                if rsna:
                    if not row.get("x") and row.get("Target", "") in ("0", ""):
                        continue  # RSNA lists every film; one without a box has no x
                    row["finding"] = RSNA_FINDING
                    row.setdefault("patient_id", row.get("filename", ""))
                x, y, w, h = (_float(row[c], c, where) for c in ("x", "y", "w", "h"))
                if w <= 0 or h <= 0:
                    raise AnnotationError(
                        f"Cannot read the boxes in {where}",
                        f"the box has width {w} and height {h}; both must be positive.",
                        "",
                    )
                iw = row.get("image_width") or ""
                ih = row.get("image_height") or ""
                boxes.append(
                    Box(
                        filename=row["filename"],
                        finding=row["finding"] or "(unnamed)",
                        x=x,
                        y=y,
                        w=w,
                        h=h,
                        image_width=_float(iw, "image_width", where) if iw else None,
                        image_height=_float(ih, "image_height", where) if ih else None,
                        patient_id=row.get("patient_id") or "",
                    )
                )
    except UnicodeDecodeError:
        raise AnnotationError(
            f"Cannot read the annotations {p.name}", "the file is not UTF-8 text.", ""
        ) from None
    except csv.Error as exc:
        raise AnnotationError(f"Cannot read the annotations {p.name}", str(exc), "") from None
    return boxes


def sidecar_path(image_path: str | Path) -> Path:
    """The per-study sidecar of an image: ``chest.png`` → ``chest.boxes.csv``."""
    p = Path(image_path)
    return p.with_name(p.stem + ".boxes.csv")


def boxes_for_image(
    boxes: Iterable[Box], image_path: str | Path, csv_dir: Path | None
) -> list[Box]:
    """The boxes of ``boxes`` that belong to ``image_path``.

    A box's filename is resolved against ``csv_dir`` (the annotation file's folder) first; when
    no box matches that way, boxes whose file *name* equals the image's are taken (an image
    opened from a copy elsewhere).
    """
    img = Path(image_path)
    boxes = list(boxes)
    try:
        target = img.resolve()
    except OSError:
        target = img
    exact = []
    if csv_dir is not None:
        for b in boxes:
            try:
                if (csv_dir / b.filename).resolve() == target:
                    exact.append(b)
            except OSError:
                continue
    if exact:
        return exact
    # by file name; a name without a suffix (RSNA's patientId) by the image's stem
    return [
        b
        for b in boxes
        if Path(b.filename).name == img.name
        or (not Path(b.filename).suffix and Path(b.filename).name == img.stem)
    ]


def group_boxes(boxes: Iterable[Box]) -> dict[tuple[str, str], list[Box]]:
    """Boxes grouped by (filename, finding), in first-seen order."""
    groups: dict[tuple[str, str], list[Box]] = defaultdict(list)
    for b in boxes:
        groups[(b.filename, b.finding)].append(b)
    return dict(groups)


# ------------------------------------------------------------------------------------- geometry
def box_mask(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask (rows, columns) of the union of ``boxes``: a pixel is inside when its
    centre is. A box smaller than a pixel still marks the pixel holding its centre."""
    rows, cols = int(shape[0]), int(shape[1])
    mask = np.zeros((rows, cols), dtype=bool)
    for b in boxes:
        x0, y0, x1, y1 = b.scaled(rows, cols)
        c0, c1 = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
        r0, r1 = math.ceil(y0 - 0.5), math.ceil(y1 - 0.5)
        if c1 <= c0:
            c0 = int(math.floor((x0 + x1) / 2))
            c1 = c0 + 1
        if r1 <= r0:
            r0 = int(math.floor((y0 + y1) / 2))
            r1 = r0 + 1
        c0, c1 = max(c0, 0), min(c1, cols)
        r0, r1 = max(r0, 0), min(r1, rows)
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


def tolerance_px(shape: tuple[int, int]) -> float:
    """The 15 px at 224 pointing tolerance scaled to a grid of ``shape`` (by its shorter side)."""
    return TOLERANCE_PX_AT_224 * min(shape) / 224.0


# ------------------------------------------------------------------------------------- measures
def _check(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2 or v.shape != mask.shape:
        raise ValueError(f"map shape {v.shape} differs from the box mask's {mask.shape}")
    return np.nan_to_num(v, nan=-np.inf) if np.isnan(v).any() else v


def pointing_game(values: np.ndarray, mask: np.ndarray, tolerance: float = 0.0) -> float:
    """Hit (1.0) when the map's peak lies in ``mask`` or within ``tolerance`` pixels of it.

    With several pixels at the maximum, the fraction of them that hit (expected hit when ties
    are broken at random). NaN for a mask with no pixel.
    """
    v = _check(values, mask)
    if not mask.any():
        return float("nan")
    peaks = v == v.max()
    if tolerance <= 0:
        return float(mask[peaks].mean())
    outside = (~mask).astype(np.uint8)
    dist = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return float((dist[peaks] <= tolerance).mean())


def peak_location(values: np.ndarray) -> tuple[int, int]:
    """(x, y) of the first maximum of a map."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-np.inf)
    r, c = np.unravel_index(int(np.argmax(v)), v.shape)
    return int(c), int(r)


def energy_inside(values: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's positive mass inside ``mask`` (NaN when the map has no positive mass)."""
    v = np.clip(_check(values, mask), 0.0, None)
    v[~np.isfinite(v)] = 0.0
    total = float(v.sum())
    if total <= 0:
        return float("nan")
    return float(v[mask].sum() / total)


def _topk_thresholds(v: np.ndarray, ks: Sequence[float]) -> list[float]:
    desc = np.sort(v.ravel())[::-1]
    return [float(desc[max(1, int(round(v.size * float(k) / 100.0))) - 1]) for k in ks]


def topk_region(values: np.ndarray, k_percent: float) -> np.ndarray:
    """The top ``k_percent`` % of the image area by value (ties at the threshold included,
    non-positive pixels excluded)."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, -np.inf)
    (kth,) = _topk_thresholds(v, [k_percent])
    return (v >= kth) & (v > 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def topk_iou(values: np.ndarray, mask: np.ndarray, k_percent: float) -> float:
    """IoU of the map's top ``k_percent`` % region with ``mask``."""
    _check(values, mask)
    return iou(topk_region(values, k_percent), mask)


@dataclass
class Scores:
    """Every measure of one map against one box mask (IoU at each k of the grid)."""

    pointing_strict: float
    pointing_tolerant: float
    energy_inside: float
    iou_by_k: dict[float, float]
    peak_xy: tuple[int, int]


def score_map(values: np.ndarray, mask: np.ndarray, ks: Sequence[float] = TOPK_GRID) -> Scores:
    """All measures of ``values`` against ``mask`` (same shape)."""
    v = _check(values, mask)
    v = np.where(np.isfinite(v), v, -np.inf)
    ious = {
        float(k): iou((v >= t) & (v > 0), mask)
        for k, t in zip(ks, _topk_thresholds(v, ks), strict=True)
    }
    return Scores(
        pointing_strict=pointing_game(values, mask, 0.0),
        pointing_tolerant=pointing_game(values, mask, tolerance_px(mask.shape)),
        energy_inside=energy_inside(values, mask),
        iou_by_k=ious,
        peak_xy=peak_location(values),
    )


def box_agreement(values: np.ndarray, boxes: Sequence[Box]) -> dict[str, float | bool]:
    """What the viewer's trust panel says for one map: is the peak in a box (strict), and the
    share of the positive map mass inside the boxes. ``values`` is at the study's pixel size."""
    mask = box_mask(boxes, np.asarray(values).shape)
    return {
        "peak_in_box": bool(pointing_game(values, mask, 0.0) >= 0.5),
        "energy_inside": energy_inside(values, mask),
    }


# ------------------------------------------------------------------------------------ baselines
def centre_prior(shape: tuple[int, int], sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """An isotropic-in-relative-units Gaussian at the image centre, σ = ``sigma`` × each side."""
    rows, cols = shape
    yy = ((np.arange(rows) + 0.5) / rows - 0.5) / sigma
    xx = ((np.arange(cols) + 0.5) / cols - 0.5) / sigma
    return np.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2)).astype(np.float32)


def centre_prior_energy(
    box: tuple[float, float, float, float], shape: tuple[int, int], sigma: float = CENTRE_SIGMA
) -> float:
    """What geometry predicts for :func:`centre_prior`'s energy inside the box (x0, y0, x1, y1):
    the product of the 1-D Gaussian masses over the box, each normalised over the image."""
    rows, cols = shape

    def mass(a: float, b: float, n: int) -> float:
        s = sigma * n
        c = n / 2.0

        def cdf(t: float) -> float:
            return 0.5 * (1.0 + math.erf((t - c) / (s * math.sqrt(2.0))))

        return (cdf(b) - cdf(a)) / (cdf(n) - cdf(0.0))

    x0, y0, x1, y1 = box
    return mass(x0, x1, cols) * mass(y0, y1, rows)


def seed_for(*parts: str) -> int:
    """A stable seed from strings (same across runs and machines)."""
    return zlib.crc32("\x1f".join(parts).encode("utf-8"))


def uniform_random(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Independent uniform [0, 1) values per pixel."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


class AnatomyPrior:
    """Where a finding usually is: the mean box mask of that finding over *other* patients.

    Masks are accumulated on a ``grid`` × ``grid`` unit square (the boxes' relative position),
    per finding and per patient, so the leave-one-patient-out mean costs one subtraction.
    Images without a patient id count as their own patient.
    """

    def __init__(self, boxes: Iterable[Box], grid: int = 224) -> None:
        self.grid = int(grid)
        self._total: dict[str, np.ndarray] = {}
        self._count: dict[str, int] = defaultdict(int)
        self._by_patient: dict[tuple[str, str], np.ndarray] = {}
        self._n_patient: dict[tuple[str, str], int] = defaultdict(int)
        for (_filename, finding), group in group_boxes(boxes).items():
            m = box_mask(group, (self.grid, self.grid)).astype(np.float64)
            pid = self.patient_of(group[0])
            self._total[finding] = self._total.get(finding, 0) + m
            self._count[finding] += 1
            key = (finding, pid)
            self._by_patient[key] = self._by_patient.get(key, 0) + m
            self._n_patient[key] += 1

    @staticmethod
    def patient_of(box: Box) -> str:
        return box.patient_id or f"file:{box.filename}"

    def map_for(self, finding: str, patient: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The prior for ``finding`` on an image of ``patient`` at ``shape`` (None when no other
        patient has that finding)."""
        n = self._count.get(finding, 0) - self._n_patient.get((finding, patient), 0)
        if n <= 0:
            return None
        total = self._total[finding] - self._by_patient.get((finding, patient), 0)
        prior = (total / n).astype(np.float32)
        rows, cols = shape
        return resize_map(prior, rows, cols)


# ---------------------------------------------------------------------------------- statistics
def choose_topk(iou_rows: Sequence[dict[float, float]], grid: Sequence[float] = TOPK_GRID) -> float:
    """The k of ``grid`` with the highest mean IoU over ``iou_rows`` (smallest k on ties)."""
    best_k, best = float(grid[0]), -1.0
    for k in grid:
        vals = np.array([r[float(k)] for r in iou_rows], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        m = float(vals.mean()) if vals.size else -1.0
        if m > best + 1e-12:
            best_k, best = float(k), m
    return best_k


def crossfit_topk(
    iou_rows: Sequence[dict[float, float]],
    clusters: Sequence[str],
    grid: Sequence[float] = TOPK_GRID,
) -> tuple[float, list[float]]:
    """k chosen on all rows, and for each row the k chosen on the *other* half of the
    clusters (patients split in two by a stable hash), so that the IoU reported for a row never
    used that row's patient to choose its threshold. With one half empty, every row gets the k
    chosen on all rows."""
    k_all = choose_topk(iou_rows, grid)
    fold = [seed_for(str(c)) % 2 for c in clusters]
    halves = [[r for r, f in zip(iou_rows, fold, strict=True) if f == h] for h in (0, 1)]
    if not halves[0] or not halves[1]:
        return k_all, [k_all] * len(iou_rows)
    k_half = [choose_topk(halves[h], grid) for h in (0, 1)]
    return k_all, [k_half[1 - f] for f in fold]


def bootstrap_ci(
    values: Sequence[float],
    clusters: Sequence[str] | None = None,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``values`` and its percentile bootstrap CI.

    With ``clusters`` (e.g. patient ids) whole clusters are resampled, so several images of one
    patient do not pass for independent evidence. NaNs are ignored; all-NaN gives NaNs.
    """
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    v = v[keep]
    if v.size == 0:
        return (float("nan"),) * 3
    if clusters is None:
        inv = np.arange(v.size)
    else:
        cl = np.asarray([str(c) for c in clusters], dtype=object)[keep]
        _, inv = np.unique(cl.astype(str), return_inverse=True)
    n_cl = int(inv.max()) + 1
    sums = np.bincount(inv, weights=v, minlength=n_cl)
    counts = np.bincount(inv, minlength=n_cl).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, n_cl, size=(int(n_boot), n_cl))
    boots = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha])
    return float(v.mean()), float(lo), float(hi)


def _number(value: Any) -> float:
    """A measure from a row: "" (undefined, e.g. the energy of a map with no positive mass, as
    a class-activation map that sees no evidence anywhere has) is NaN, which the bootstrap
    leaves out."""
    return float("nan") if value == "" or value is None else float(value)


def summarize(
    rows: Sequence[dict[str, Any]],
    methods: Sequence[str],
    *,
    reference: str = "anatomy_prior",
    n_boot: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per finding and overall ("ALL"), per method: n, mean and 95 % CI of every measure, and
    the paired difference against ``reference`` (same images, same bootstrap draws of
    patients) with its CI. ``rows`` carry ``finding``, ``patient_id``, ``filename``, ``method``
    and the :data:`MEASURES`."""
    by_key: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        by_key[(r["method"], r["filename"], r["finding"])] = r
    findings = sorted({r["finding"] for r in rows})
    out = []
    for finding in [*findings, "ALL"]:
        for method in methods:
            sel = [
                r
                for r in rows
                if r["method"] == method and (finding == "ALL" or r["finding"] == finding)
            ]
            if not sel:
                continue
            rec: dict[str, Any] = {"finding": finding, "method": method, "n": len(sel)}
            rec["topk_percent"] = sel[0].get("topk_percent", "")
            clusters = [r["patient_id"] or r["filename"] for r in sel]
            for m in MEASURES:
                vals = [_number(r[m]) for r in sel]
                mean, lo, hi = bootstrap_ci(vals, clusters, n_boot=n_boot, seed=seed)
                rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"] = mean, lo, hi
                if method != reference:
                    diffs, cl = [], []
                    for r, c in zip(sel, clusters, strict=True):
                        ref = by_key.get((reference, r["filename"], r["finding"]))
                        if ref is not None:
                            diffs.append(_number(r[m]) - _number(ref[m]))
                            cl.append(c)
                    d, dlo, dhi = bootstrap_ci(diffs, cl, n_boot=n_boot, seed=seed)
                    rec[f"{m}_vs_{reference}"] = d
                    rec[f"{m}_vs_{reference}_lo"] = dlo
                    rec[f"{m}_vs_{reference}_hi"] = dhi
            out.append(rec)
    return out


def parse_class_map(spec: str | None) -> dict[str, str]:
    """``"Pneumonia=PNEUMONIA,Infiltrate=PNEUMONIA"`` → {finding: class name}."""
    out: dict[str, str] = {}
    for part in (spec or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise CxrError(
                f"Cannot read the --map entry {part!r}",
                "each entry is FINDING=CLASS.",
                'Example: --map "Pneumonia=PNEUMONIA,Infiltrate=PNEUMONIA".',
            )
        finding, cls = (s.strip() for s in part.split("=", 1))
        if not finding or not cls:
            raise CxrError(f"Cannot read the --map entry {part!r}", "a side is empty.", "")
        out[finding] = cls
    return out


def resolve_classes(
    findings: Iterable[str], class_names: Sequence[str], mapping: dict[str, str]
) -> dict[str, int]:
    """finding → class index: mapped findings by ``mapping``, the others matched by name
    (case-insensitive). Findings with neither are left out. A mapping to a class the model does
    not have is an error."""
    lower = {c.lower(): i for i, c in enumerate(class_names)}
    out: dict[str, int] = {}
    for cls in mapping.values():
        if cls not in class_names and cls.lower() not in lower:
            raise CxrError(
                f"Unknown class '{cls}' in --map",
                f"the model's classes are {', '.join(class_names)}.",
                "",
            )
    for f in findings:
        if f in mapping:
            cls = mapping[f]
            out[f] = class_names.index(cls) if cls in class_names else lower[cls.lower()]
        elif f.lower() in lower:
            out[f] = lower[f.lower()]
    return out
