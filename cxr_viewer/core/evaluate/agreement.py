"""Do the maps shown on a film agree? Rank correlation, top-area overlap, plain words, a layer.

Four methods on one film can point at four different places, and a reader who sees only one
map cannot know. For every pair of maps (each at the model's input size; resized to the first
map's shape when they differ):

* **Spearman ρ** of the pixel values (ties, such as LIME's flat superpixels, take their mean
  rank): 1 when the maps rank the pixels alike, ~0 when unrelated;
* **top-10 % overlap**: the share of one map's top 10 % of pixels (ranked by value, ties broken
  at random with a fixed seed, as in :func:`cxr_viewer.core.evaluate.trust.pixel_order`) that is also in
  the other's; 0.1 is what two unrelated maps share by chance.

Two maps *agree* when ρ ≥ :data:`AGREE_RHO` and the overlap ≥ :data:`AGREE_OVERLAP` (three times
chance). :func:`agreement_words` groups the methods that agree ("Grad-CAM and occlusion agree;
LIME points elsewhere"), and :func:`agreement_layer` marks where at least ``k`` methods put
their top 10 %. Pure numpy (SciPy for ranks); no model is called.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cxr_viewer.core.io.resize import resize_map

#: the top share of the pixels compared
TOP = 0.1
#: a pair agrees at or above both
AGREE_RHO, AGREE_OVERLAP = 0.5, 0.3


def _as_maps(maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    shape: tuple[int, ...] | None = None
    for name, m in maps.items():
        a = np.asarray(m, np.float64)
        if a.ndim != 2:
            raise ValueError(f"map '{name}' is not 2-D: {a.shape}")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            a = resize_map(a.astype(np.float32), shape[0], shape[1]).astype(np.float64)
        out[name] = np.where(np.isfinite(a), a, np.nanmin(a) if np.isfinite(a).any() else 0.0)
    return out


def top_mask(values: np.ndarray, fraction: float = TOP, seed: int = 0) -> np.ndarray:
    """Boolean mask of the top ``fraction`` of pixels by value (ties broken by ``seed``)."""
    v = np.asarray(values, np.float64)
    flat = v.ravel()
    k = max(1, int(round(float(fraction) * flat.size)))
    tie = np.random.default_rng(seed).random(flat.size)
    order = np.lexsort((tie, -flat))
    mask = np.zeros(flat.size, bool)
    mask[order[:k]] = True
    return mask.reshape(v.shape)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ of two maps' pixel values (0 when either map is constant, unless both are)."""
    from scipy.stats import rankdata

    x, y = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    x_const, y_const = np.all(x == x[0]), np.all(y == y[0])
    if x_const or y_const:
        return 1.0 if (x_const and y_const) else 0.0
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = TOP, seed: int = 0) -> float:
    """Share of ``a``'s top ``fraction`` of pixels that is also in ``b``'s."""
    ma, mb = top_mask(a, fraction, seed), top_mask(b, fraction, seed)
    return float((ma & mb).sum() / max(int(ma.sum()), 1))


@dataclass(frozen=True)
class PairAgreement:
    """How far two methods' maps agree on one film."""

    a: str
    b: str
    rho: float
    overlap: float

    @property
    def agree(self) -> bool:
        return self.rho >= AGREE_RHO and self.overlap >= AGREE_OVERLAP


def pairwise(maps: Mapping[str, np.ndarray], fraction: float = TOP) -> list[PairAgreement]:
    """Spearman ρ and top-``fraction`` overlap of every pair of maps, in the given order."""
    m = _as_maps(maps)
    return [
        PairAgreement(a, b, spearman(m[a], m[b]), top_overlap(m[a], m[b], fraction))
        for a, b in itertools.combinations(m, 2)
    ]


def groups(names: Sequence[str], pairs: Sequence[PairAgreement]) -> list[list[str]]:
    """The methods joined by agreeing pairs (connected components), in the order of ``names``."""
    parent = {n: n for n in names}

    def find(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for p in pairs:
        if p.agree and p.a in parent and p.b in parent:
            parent[find(p.b)] = find(p.a)
    out: dict[str, list[str]] = {}
    for n in names:
        out.setdefault(find(n), []).append(n)
    return list(out.values())


def _join(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def agreement_words(
    pairs: Sequence[PairAgreement], names: Sequence[str], labels: Mapping[str, str] | None = None
) -> str:
    """One plain-words line: which maps agree and which point elsewhere.

    "All 4 maps agree", "Grad-CAM and occlusion agree; LIME points elsewhere", "The 3 maps
    disagree: each points elsewhere", or "" for fewer than two maps.
    """
    names = list(names)
    if len(names) < 2:
        return ""
    labels = labels or {}

    def lab(n: str) -> str:
        return labels.get(n, n)

    gs = groups(names, pairs)
    if len(gs) == 1:
        return (
            f"All {len(names)} maps agree"
            if len(names) > 2
            else f"{_join([lab(n) for n in names])} agree"
        )
    if all(len(g) == 1 for g in gs):
        return (
            f"The {len(names)} maps disagree: each points elsewhere"
            if len(names) > 2
            else f"{lab(names[0])} and {lab(names[1])} disagree"
        )
    parts = []
    for g in sorted(gs, key=len, reverse=True):
        if len(g) > 1:
            parts.append(f"{_join([lab(n) for n in g])} agree")
        else:
            parts.append(f"{lab(g[0])} points elsewhere")
    return "; ".join(parts)


def agreement_summary(pairs: Sequence[PairAgreement]) -> str:
    """The pairwise figures in one CSV-friendly line: "gradcam~lime rho 0.41 top10 0.22; …"."""
    return "; ".join(f"{p.a}~{p.b} rho {p.rho:.2f} top10 {p.overlap:.2f}" for p in pairs)


def agreement_layer(
    maps: Mapping[str, np.ndarray], k: int = 2, fraction: float = TOP
) -> np.ndarray:
    """Where at least ``k`` methods put their top ``fraction``: the share of methods there.

    float32 map at the first map's shape: count / n where count ≥ k, else 0 (so 1.0 is where
    every method agrees). ``k`` is clipped to [1, n].
    """
    m = _as_maps(maps)
    if not m:
        raise ValueError("no maps to compare")
    n = len(m)
    k = min(max(int(k), 1), n)
    count = sum(top_mask(v, fraction).astype(np.int32) for v in m.values())
    count_arr = np.asarray(count, np.float32)
    return np.where(count_arr >= k, count_arr / n, 0.0).astype(np.float32)


@dataclass(frozen=True)
class FilmComparison:
    """What the viewer, the PDF report and the batch say about the maps of one film."""

    pairs: tuple[PairAgreement, ...]
    words: str
    most_faithful: str | None

    @property
    def line(self) -> str:
        """ "Agreement: …" for the grid and the report ("" with fewer than two maps)."""
        return f"Agreement: {self.words}" if self.words else ""


def compare_film(
    maps: Mapping[str, np.ndarray],
    trusts: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str] | None = None,
) -> FilmComparison:
    """Pairwise agreement of ``maps`` and the most faithful of them (by their ``trusts``)."""
    from cxr_viewer.core.evaluate.trust import most_faithful

    pairs = tuple(pairwise(maps)) if len(maps) > 1 else ()
    return FilmComparison(pairs, agreement_words(pairs, list(maps), labels), most_faithful(trusts))
