"""A bundle's localization figures, as the viewer shows them next to each map (Qt-free).

A model card may say how well each explanation method's maps land on radiologists' boxes of
films the model never trained on (``cxr-viewer localize``, or the trainer's report when
validation or test boxes exist): the share of a map's positive mass inside the boxes ("energy
inside") and how often its peak lies in or near a box ("pointing", ±15 px at 224), next to the
same figures of a map that never looks at the image (the anatomy prior: the mean box mask of
other patients). Nothing here invents a figure: a card without them gives ``None``.

Accepted layouts (under ``model_card.localization``, else a top-level ``localization``):

- ``{"methods": {method: {measure: value}}, "baselines": {"anatomy_prior": {...}}, ...}``
  (the anatomy prior may also sit among ``methods``);
- ``{"summary": [row, ...]}`` / ``{"rows": [...]}`` or a bare list of rows, as
  :func:`cxr_viewer.core.evaluate.localize.summarize` writes them (``method``, ``finding``, ``n`` and the
  measures; the ``ALL`` finding is preferred);
- ``{method: {measure: value}, "split": ..., "boxes": ..., "prior_fitted_on": ...}`` (the
  trainer's ``model_card.localization``, :func:`trainer.localization.card_entry`), or its full
  record with the methods under ``overall``.

A value is a number or ``{"mean": x, "lo": ..., "hi": ...}`` (also ``value``/``estimate``).
Context keys, all optional: ``split`` ("test", "validation"), ``images``/``n_images``,
``boxes``/``n_boxes``, ``prior``/``prior_source`` (what the prior was fitted on), ``tolerance``,
``classes`` (the classes whose maps were scored: the boxes' findings, e.g. ``["lung_opacity"]``;
a card without them is read as the bundle's positive class's, when it has one). The figures say
nothing about a map of another class — the "no opacity" map of a finding-vs-rest model is not
scored against boxes of opacities — so :meth:`LocalizationCard.note` says so instead.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: names the anatomy prior goes by in a card (normalised, see :func:`_norm`)
PRIOR_NAMES = ("anatomyprior", "prior", "anatomy")
#: a card's names for the tolerant pointing game (first found wins), then the strict one
POINTING_KEYS = ("pointing_tolerant", "pointing", "pointing_game", "hit_rate", "pointing_strict")
ENERGY_KEYS = ("energy_inside", "energy", "mass_inside", "energy_in_boxes")
#: how a split's short name reads in a sentence
SPLIT_NAMES = {"val": "validation", "valid": "validation", "held-out": "held-out"}
CONTEXT_KEYS = {
    "split": ("split", "evaluated_on", "on"),
    "images": ("images", "n_images", "films", "n_films"),
    "boxes": ("boxes", "n_boxes"),
    "prior": ("prior_source", "prior", "prior_boxes", "prior_fitted_on"),
    "classes": ("classes", "class", "explained_class"),
}


def _norm(name: str) -> str:
    """ "Grad-CAM++" → "gradcam++"; "anatomy_prior" → "anatomyprior"."""
    return re.sub(r"[\s_\-]", "", str(name).lower())


def class_named(name: str, class_names: list[str]) -> str | None:
    """The class of ``class_names`` that a finding or class ``name`` names, ignoring case,
    spaces, "_" and "-" ("Lung Opacity" → "lung_opacity"); None when none does."""
    return next((c for c in class_names if _norm(c) == _norm(name)), None)


def _number(value: Any) -> float | None:
    if isinstance(value, Mapping):
        for key in ("mean", "value", "estimate"):
            if key in value:
                return _number(value[key])
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _first(record: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if key in record:
            v = _number(record[key])
            if v is not None:
                return v
    return None


@dataclass(frozen=True)
class MapFigures:
    """One map's localization figures (fractions in [0, 1]; None: not in the card)."""

    energy_inside: float | None = None
    pointing: float | None = None
    #: "tolerant" (±15 px at 224) or "strict" (peak pixel inside), which ``pointing`` is
    pointing_kind: str = "tolerant"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> MapFigures | None:
        energy = _first(record, ENERGY_KEYS)
        pointing, kind = None, "tolerant"
        for key in POINTING_KEYS:
            if key in record and _number(record[key]) is not None:
                pointing = _number(record[key])
                kind = "strict" if key == "pointing_strict" else "tolerant"
                break
        if energy is None and pointing is None:
            return None
        return cls(energy, pointing, kind)


@dataclass(frozen=True)
class LocalizationCard:
    """The localization figures of a bundle: per method, and of the anatomy prior."""

    methods: dict[str, MapFigures]
    prior: MapFigures | None = None
    split: str = ""
    images: int | None = None
    boxes: int | None = None
    prior_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the classes whose maps the figures score (empty: not known, taken to be any class)
    classes: tuple[str, ...] = ()

    def applies_to(self, class_name: str | None) -> bool:
        """Whether the figures score maps of ``class_name`` (True when either is unknown)."""
        return not self.classes or class_name is None or class_name in self.classes

    def note(self, method: str, label: str = "", class_name: str | None = None) -> str:
        """:meth:`sentence` for a map of ``class_name``; for a class the figures do not score,
        a line saying so (e.g. "Localization on radiologists' boxes was measured for
        lung_opacity maps; this map explains no_opacity.")."""
        if self.applies_to(class_name):
            return self.sentence(method, label)
        if self.figures(method, label) is None:
            return ""
        scored = " and ".join(self.classes)
        return (
            f"Localization on radiologists' boxes was measured for {scored} maps; this map "
            f"explains {class_name}."
        )

    def figures(self, method: str, label: str = "") -> MapFigures | None:
        """The figures of ``method`` (its id, or its label: "gradcam" or "Grad-CAM")."""
        wanted = {_norm(method), _norm(label)} - {""}
        for name, figs in self.methods.items():
            if _norm(name) in wanted:
                return figs
        return None

    def where(self) -> str:
        """ "of 65 test films (101 boxes)" — as much as the card says ("" when nothing)."""
        split = SPLIT_NAMES.get(self.split.strip().lower(), self.split.strip())
        if split and not any(w in split.lower() for w in ("film", "image")):
            split = f"{split} films"
        if self.images is not None:
            films = f"{self.images} {split or 'films'}"
        else:
            films = split
        text = f"of {films}" if films else ""
        if self.boxes is not None:
            text = f"{text} ({self.boxes} boxes)".strip()
        return text

    def sentence(self, method: str, label: str = "") -> str:
        """What the viewer writes next to ``method``'s map; "" when the card has no figure.

        E.g. "On radiologists' boxes of 65 test films (101 boxes): this map puts 41 % of its mass inside; a
        map that ignores the image, 33 %. Peak in or near a box: 62 % of films; the prior's, 80 %."
        """
        figs = self.figures(method, label)
        if figs is None:
            return ""
        where = self.where()
        head = "On radiologists' boxes" + (f" {where}" if where else "")
        prior = self.prior
        parts = []
        if figs.energy_inside is not None:
            text = f"this map puts {_pct(figs.energy_inside)} of its mass inside"
            if prior is not None and prior.energy_inside is not None:
                text += f"; a map that ignores the image, {_pct(prior.energy_inside)}"
            parts.append(text)
        if figs.pointing is not None:
            where_peak = "in or near a box" if figs.pointing_kind == "tolerant" else "in a box"
            text = f"peak {where_peak}: {_pct(figs.pointing)} of films"
            if prior is not None and prior.pointing is not None:
                text += f"; the prior's, {_pct(prior.pointing)}"
            parts.append(text)
        body = ". ".join(p[0].upper() + p[1:] if i else p for i, p in enumerate(parts))
        return f"{head}: {body}."

    def tooltip(self) -> str:
        """What the figures mean, and where the prior came from."""
        lines = [
            "Measured by the model's maker on radiologists' boxes of films the model never "
            "trained on (cxr-viewer localize).",
            "Mass inside: the share of the map's positive values that falls inside the boxes.",
            "Peak in or near a box: how often the map's highest point lies in a box"
            + (" or within 15 px of one at 224 px" if self._tolerant() else "")
            + ".",
        ]
        if self.prior is not None:
            src = f", fitted on {self.prior_source}" if self.prior_source else ""
            lines.append(
                "A map that ignores the image: the anatomy prior (where radiologists' boxes "
                f"usually are, from other patients{src}). A map that does no better than it "
                "shows where findings usually lie, not where this film's finding is."
            )
        return "\n".join(lines)

    def _tolerant(self) -> bool:
        return any(f.pointing_kind == "tolerant" for f in self.methods.values())


def _pct(value: float) -> str:
    return f"{value * 100:.0f} %"


def _rows(value: Any) -> list[Mapping[str, Any]] | None:
    if isinstance(value, list) and all(isinstance(r, Mapping) for r in value):
        return [r for r in value if "method" in r]
    return None


def _from_rows(rows: list[Mapping[str, Any]]) -> dict[str, MapFigures]:
    """Method → figures from summary rows; the "ALL" finding when a method has one."""
    chosen: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        method = str(r["method"])
        if method not in chosen or str(r.get("finding", "")) == "ALL":
            chosen[method] = r
    out = {}
    for method, r in chosen.items():
        figs = MapFigures.from_record(r)
        if figs is not None:
            out[method] = figs
    return out


def _from_mapping(value: Mapping[str, Any]) -> dict[str, MapFigures]:
    out = {}
    for method, record in value.items():
        if isinstance(record, Mapping):
            figs = MapFigures.from_record(record)
            if figs is not None:
                out[str(method)] = figs
    return out


def _context_int(block: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        v = block.get(key)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _context_str(block: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        v = block.get(key)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def _methods_of(block: Mapping[str, Any]) -> dict[str, MapFigures]:
    """Method (and baseline) → figures of a localization object, whichever layout it has."""
    listed = next((r for k in ("summary", "rows") if (r := _rows(block.get(k)))), None)
    if listed is not None:
        methods = _from_rows(listed)
    elif isinstance(block.get("methods"), Mapping):
        methods = _from_mapping(block["methods"])
    elif isinstance(block.get("overall"), Mapping):  # the trainer's full record
        methods = _from_mapping(block["overall"])
    else:
        methods = _from_mapping(block)
    baselines = block.get("baselines")
    if isinstance(baselines, Mapping):
        methods.update(_from_mapping(baselines))
    else:
        methods.update(_from_rows(_rows(baselines) or []))
    return methods


def _take_prior(methods: dict[str, MapFigures], context: Mapping[str, Any]) -> MapFigures | None:
    """Remove the baselines from ``methods``; return the anatomy prior's figures."""
    prior = None
    for name in list(methods):
        key = _norm(name)
        if key in PRIOR_NAMES and prior is None:
            prior = methods.pop(name)
        elif key in ("uniformrandom", "random", "centreprior", "centerprior"):
            methods.pop(name)  # not maps of this model, and not the prior the viewer names
    if prior is None and isinstance(context.get("prior"), Mapping):
        prior = MapFigures.from_record(context["prior"])
    return prior


def _classes(context: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The scored classes the card names (as the bundle spells them, when it lists its classes:
    "Lung Opacity" → "lung_opacity"; names that are no class of it are dropped), else the
    bundle's positive class, else ()."""
    known = meta.get("class_names")
    names = [str(c) for c in known] if isinstance(known, list) and known else None
    for key in CONTEXT_KEYS["classes"]:
        v = context.get(key)
        listed = [v] if isinstance(v, str) else v if isinstance(v, list) else []
        found = [c.strip() for c in listed if isinstance(c, str) and c.strip()]
        if names is not None:  # the bundle's own spelling; names that are no class dropped
            found = [n for c in found if (n := class_named(c, names)) is not None]
        if found:
            return tuple(dict.fromkeys(found))
    card = meta.get("model_card")
    for source in (meta, card if isinstance(card, Mapping) else {}):
        v = source.get("positive_class")
        if isinstance(v, str) and v.strip():
            return (v.strip(),)
    return ()


def localization_card(meta: Mapping[str, Any]) -> LocalizationCard | None:
    """The localization figures of a bundle's metadata, or None when its card has none."""
    card = meta.get("model_card")
    block: Any = card.get("localization") if isinstance(card, Mapping) else None
    if block is None:
        block = meta.get("localization")
    rows = _rows(block)
    context: Mapping[str, Any] = {}
    if rows is not None:
        methods = _from_rows(rows)
    elif isinstance(block, Mapping):
        methods, context = _methods_of(block), block
    else:
        return None
    prior = _take_prior(methods, context)
    if not methods:
        return None
    prior_source = _context_str(context, CONTEXT_KEYS["prior"])
    if not prior_source and isinstance(context.get("prior"), Mapping):
        prior_source = _context_str(context["prior"], ("source", "fitted_on", "boxes"))
    return LocalizationCard(
        methods=methods,
        prior=prior,
        split=_context_str(context, CONTEXT_KEYS["split"]),
        images=_context_int(context, CONTEXT_KEYS["images"]),
        boxes=_context_int(context, CONTEXT_KEYS["boxes"]),
        prior_source=prior_source,
        classes=_classes(context, meta),
    )
