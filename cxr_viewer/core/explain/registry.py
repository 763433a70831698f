"""The explanation methods CXR Lens offers, by name.

Importing this module imports neither TensorFlow nor shap nor lime: each explainer imports what
it needs when it first runs.
"""

from __future__ import annotations

from typing import Any

from cxr_viewer.core.errors import ExplainError

from .base import DisplayDefaults, Explainer
from .gradcam import GradCamExplainer
from .lime_explainer import LimeExplainer
from .shap_explainer import ShapLayerExplainer

#: name → Explainer subclass, in the order the GUI lists them
EXPLAINERS: dict[str, type[Explainer]] = {
    "gradcam": GradCamExplainer,
    "lime": LimeExplainer,
    "shap": ShapLayerExplainer,
}


def create_explainer(name: str, classifier, settings: dict[str, Any] | None = None) -> Explainer:
    """An explainer ``name`` ("gradcam", "lime" or "shap") for ``classifier``.

    ``settings`` override the method's ``default_settings`` (unknown keys are refused, so a
    typo does not silently fall back to a default).
    """
    key = str(name).strip().lower()
    if key in ("gradcam++", "gradcampp"):
        key, settings = "gradcam", {**(settings or {}), "variant": "gradcam++"}
    cls = EXPLAINERS.get(key)
    if cls is None:
        raise ExplainError(
            f"Unknown explanation method '{name}'",
            f"CXR Lens offers {', '.join(EXPLAINERS)}.",
        )
    unknown = sorted(set(settings or {}) - set(cls.default_settings))
    if unknown:
        raise ExplainError(
            f"Unknown {cls.label} setting(s): {', '.join(unknown)}",
            f"{cls.label} takes {', '.join(sorted(cls.default_settings))}.",
        )
    return cls(classifier, settings)


def display_defaults(name: str) -> DisplayDefaults:
    """How method ``name``'s map is shown by default (colormap, opacity, cut-off, label)."""
    cls = EXPLAINERS.get(str(name).strip().lower())
    if cls is None:
        raise ExplainError(
            f"Unknown explanation method '{name}'",
            f"CXR Lens offers {', '.join(EXPLAINERS)}.",
        )
    return cls.display
