"""The model card in words a radiologist reads in five seconds (Qt-free; the viewer's model
panel, batch and reports use it).

From a bundle's ``metadata.json``: the held-out (test) AUC and how many films and patients it was
measured on, the operating point (threshold, sensitivity, specificity), calibration, who the
training films came from, and what the model is for and not for. Bundles written before the
``model_card`` block existed fall back to their ``metrics`` (saying which split a figure is from).
"""

from __future__ import annotations

import math
from typing import Any

from cxr_viewer.core.model.bundle_schema import section


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def model_card_lines(meta: dict[str, Any], *, short: bool = False) -> list[str]:
    """Plain-text lines, most important first. ``short``: only the held-out figure, the
    decision rule, the training population and what the model is not for (the five-second
    read); the rest belongs in a tooltip or a report."""
    card = section(meta, "model_card")
    metrics = section(meta, "metrics")
    lines: list[str] = []
    test_auc = _num(card.get("test_auc", metrics.get("test_auc")))
    if test_auc is not None:
        where = ""
        n_img, n_pat = card.get("test_images"), card.get("test_patients")
        if isinstance(n_img, int) and isinstance(n_pat, int):
            where = f" on {n_img} held-out films of {n_pat} patients not seen in training"
        lines.append(f"Test AUC {test_auc:.3f}{where}")
    else:
        val_auc = _num(metrics.get("auc"))
        if val_auc is not None:
            lines.append(f"Validation AUC {val_auc:.3f} (no held-out test figure in this bundle)")
    thr = _num(card.get("threshold", meta.get("threshold")))
    pos = card.get("positive_class", meta.get("positive_class"))
    sens, spec = _num(card.get("test_sensitivity")), _num(card.get("test_specificity"))
    if thr is not None and pos:
        text = f"Says {pos} when p ≥ {thr:.2f} (chosen on validation)"
        if sens is not None and spec is not None:
            text += f": on test, sensitivity {sens:.2f}, specificity {spec:.2f}"
        lines.append(text)
    population = card.get("training_population")
    not_for = card.get("not_for")
    if short:
        if isinstance(population, str) and population:
            lines.append(f"Trained on: {population}")
        if isinstance(not_for, str) and not_for:
            lines.append(f"Not for: {not_for}")
        return lines
    subtypes = card.get("test_sensitivity_by_subtype")
    if isinstance(subtypes, dict) and subtypes:
        parts = [f"{k} {v:.2f}" for k, v in subtypes.items() if _num(v) is not None]
        if parts:
            lines.append("Sensitivity by subtype: " + ", ".join(parts))
    ece = _num(card.get("test_ece"))
    if ece is not None:
        lines.append(f"Calibration error (ECE) {ece:.3f}: probabilities are close to observed rates"
                     if ece < 0.05 else f"Calibration error (ECE) {ece:.3f}: read p as a score, "
                     "not a rate")  # fmt: skip
    if isinstance(population, str) and population:
        lines.append(f"Trained on: {population}")
    use = card.get("intended_use", meta.get("intended_use"))
    if isinstance(use, str) and use:
        lines.append(f"For: {use}")
    if isinstance(not_for, str) and not_for:
        lines.append(f"Not for: {not_for}")
    return lines


def model_title(name: str, version: str) -> str:
    """The model's name with its version said as such: ``"… MobileNet 0.25) v1"``.

    A version that starts with a digit gets a "v" ("1" → "v1", "0.0-test" → "v0.0-test");
    any other (already "v2", "2024-05 retrain") is kept as written; no version, no suffix.
    """
    name, version = name.strip(), version.strip()
    if not version:
        return name
    if version[0].isdigit():
        version = f"v{version}"
    return f"{name} {version}".strip()
