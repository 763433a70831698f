"""The explanation methods CXR Lens offers, by name: the one list of them.

Each method's facts (label, signedness, layer, shortcut, display defaults, its typed
``settings_type``, the settings the viewer and ``batch`` offer, its self-test settings) are
class attributes of its :class:`~.base.Explainer` subclass; the viewer, ``batch``, the
self-test and the tests read them from :data:`EXPLAINERS`. Adding a method is its module plus one line here.

Importing this module imports neither TensorFlow nor shap nor lime: each explainer imports what
it needs when it first runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.model.bundle_schema import Key, mapping, register_key, string

from .base import Explainer, ExplainerSettings
from .gradcam import GradCamExplainer
from .lime_explainer import LimeExplainer
from .occlusion import OcclusionExplainer
from .shap_explainer import ShapLayerExplainer

if TYPE_CHECKING:
    from cxr_viewer.core.model.bundle import Bundle
    from cxr_viewer.core.model.inference import Classifier

#: bundle metadata key: method name → why it does not apply to the model (written by the
#: importer, e.g. Grad-CAM and SHAP for a model without convolutional feature maps)
UNAVAILABLE_KEY = "methods_unavailable"
register_key(
    UNAVAILABLE_KEY,
    Key(
        mapping(values=string(min_len=1, max_len=2000)),
        False,
        "method → why it does not apply to the model",
    ),
)

#: name → Explainer subclass, in the order the GUI lists them
EXPLAINERS: dict[str, type[Explainer]] = {
    cls.name: cls
    for cls in (
        GradCamExplainer,
        LimeExplainer,
        ShapLayerExplainer,
        OcclusionExplainer,
    )
}
#: other names a method answers to → (registry name, settings they imply)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "gradcam++": ("gradcam", {"variant": "gradcam++"}),
    "gradcampp": ("gradcam", {"variant": "gradcam++"}),
}


def explainer_class(name: str) -> type[Explainer]:
    """The Explainer subclass of method ``name`` (an alias such as "gradcam++" included)."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, (key, {}))[0]
    cls = EXPLAINERS.get(key)
    if cls is None:
        raise ExplainError(
            f"Unknown explanation method '{name}'",
            f"CXR Lens offers {', '.join(EXPLAINERS)}.",
        )
    return cls


def create_explainer(
    name: str,
    classifier: Classifier,
    settings: ExplainerSettings | Mapping[str, Any] | None = None,
) -> Explainer:
    """An explainer ``name`` (a key of :data:`EXPLAINERS` or :data:`ALIASES`) for ``classifier``.

    ``settings`` is the method's settings object or a dict overriding its defaults (what the
    command line and the viewer pass; converted once, here). Unknown names, wrong types and
    out-of-range values raise ExplainError, so a typo does not silently fall back to a default.
    """
    key = str(name).strip().lower()
    if key in ALIASES:
        key, implied = ALIASES[key]
        if isinstance(settings, ExplainerSettings):
            settings = settings.replace(**implied)
        else:
            settings = {**(settings or {}), **implied}
    return explainer_class(key)(classifier, settings)


def check_setting(name: str, key: str, value: Any) -> None:
    """Raise ExplainError unless ``key=value`` is a valid setting of method ``name``."""
    explainer_class(name).settings_type.from_mapping({key: value})


def method_unavailable(name: str, bundle: Bundle) -> str | None:
    """Why method ``name`` does not apply to ``bundle``'s model, or None when it does.

    Read from the bundle alone (no model is loaded): the reasons the importer recorded under
    :data:`UNAVAILABLE_KEY`, a layer-based method with no layer named (``gradcam_layer`` /
    ``shap_layers`` empty), and a method that needs the SHAP background set of a bundle without
    one. LIME and occlusion perturb the input only and apply to every model.
    """
    cls = explainer_class(name)
    reasons = bundle.metadata.get(UNAVAILABLE_KEY) or {}
    if isinstance(reasons, dict) and cls.name in reasons:
        return str(reasons[cls.name])
    if cls.needs_background and not bundle.metadata.get("background_file"):
        return "the bundle has no SHAP background set"
    if cls.name == "gradcam" and not bundle.gradcam_layer:
        return "the bundle names no Grad-CAM layer (the model has no convolutional feature maps)"
    if cls.name == "shap" and not bundle.shap_layers:
        return "the bundle names no layer per-layer SHAP can be computed at"
    return None
