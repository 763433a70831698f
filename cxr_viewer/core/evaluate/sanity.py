"""Does a method's map depend on the model at all? Cascading model randomisation, cached.

Adebayo et al., "Sanity Checks for Saliency Maps" (NeurIPS 2018): re-initialise the model's
weights from the top layer down, one cascade stage after another, recompute the map, and
compare it with the trained model's map. A method that explains the *model* gives a different
map once the weights it depends on are random; a method whose map barely changes (an edge
detector would not change at all) shows the image, not the model, and its map should not be
read as "what the model looks at".

:func:`cascade_check` does this for one method on a few inputs (the bundle's SHAP background
images, else the model's zero-centred input): stages "top layer", "top half", "all layers" of
the layers with a kernel (Dense, Conv, DepthwiseConv; re-drawn from a normal distribution with
each weight array's own standard deviation, so activations keep their scale; batch
normalisation is kept). At each stage it records the median Spearman ρ between the trained
and randomised maps (each for the class the trained model predicts). A method whose ρ with
*every* weight randomised stays above :data:`INSENSITIVE_RHO` is flagged "insensitive to the
model for this model".

Each method runs at its short self-test settings (``quick_settings``): the check is about what
the map depends on, not how many samples it takes, and it has to run in seconds. Results are
cached per model file (its SHA-256) and method in the user's cache folder
(``$CXR_SANITY_CACHE``, ``0``/``off`` for none; else ``…/cxr-lens/sanity``), like the
forward-path choice (:mod:`cxr_viewer.core.model.forward`), so a model is checked once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_viewer.core.evaluate.agreement import spearman
from cxr_viewer.core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from cxr_viewer.core.model.inference import Classifier

log = logging.getLogger(__name__)

#: Spearman ρ (fully randomised vs trained map) above which a method is flagged
INSENSITIVE_RHO = 0.5
#: inputs the check explains
N_INPUTS = 2
#: bump when the procedure changes (old cache entries are then ignored)
VERSION = 1
CACHE_ENV = "CXR_SANITY_CACHE"


@dataclass(frozen=True)
class SanityResult:
    """The cascading randomisation check of one method on one model.

    ``stages`` name what was randomised ("top 1 of 28 layers", …); ``rho`` the median
    Spearman ρ (trained vs randomised map) at each stage over ``inputs`` inputs.
    """

    method: str
    stages: tuple[str, ...]
    rho: tuple[float, ...]
    inputs: int
    settings: dict[str, Any]
    threshold: float = INSENSITIVE_RHO

    @property
    def final_rho(self) -> float:
        return self.rho[-1] if self.rho else float("nan")

    @property
    def insensitive(self) -> bool:
        return math.isfinite(self.final_rho) and self.final_rho > self.threshold

    @property
    def text(self) -> str:
        """The badge: "insensitive to the model for this model" or that it passes."""
        if self.insensitive:
            return "insensitive to the model for this model"
        return "depends on the model (randomisation check passed)"

    @property
    def detail(self) -> str:
        steps = ", ".join(f"{s}: ρ {r:.2f}" for s, r in zip(self.stages, self.rho, strict=True))
        return (
            "Sanity check (Adebayo et al. 2018): the model's weights were re-drawn at random from "
            f"the top layer down and the map recomputed on {self.inputs} input(s). Spearman ρ "
            f"with the trained model's map — {steps}. A map that stays similar (ρ above "
            f"{self.threshold}) once every weight is random shows the image, not what this model "
            "uses."
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["insensitive"] = self.insensitive
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SanityResult:
        return cls(
            method=str(d["method"]),
            stages=tuple(str(s) for s in d["stages"]),
            rho=tuple(float(r) for r in d["rho"]),
            inputs=int(d["inputs"]),
            settings=dict(d.get("settings", {})),
            threshold=float(d.get("threshold", INSENSITIVE_RHO)),
        )


def weighted_layers(model: Any) -> list[Any]:
    """The layers with a kernel (Dense, Conv, DepthwiseConv), top (output side) first."""
    out = []
    for layer in model.layers:
        if any(hasattr(layer, a) for a in ("kernel", "depthwise_kernel")) and layer.get_weights():
            out.append(layer)
    return out[::-1]


def randomised_copy(model: Any, n_top: int, seed: int = 0) -> Any:
    """A copy of ``model`` whose top ``n_top`` kernel layers have random weights."""
    import keras

    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    rng = np.random.default_rng(seed)
    for layer in weighted_layers(twin)[:n_top]:
        new = []
        for w in layer.get_weights():
            sd = float(np.std(w)) or 0.05
            new.append(rng.normal(0.0, sd, w.shape).astype(w.dtype))
        layer.set_weights(new)
    return twin


def stages_for(n_layers: int) -> list[int]:
    """Cumulative stage sizes: the top layer, the top half, every layer."""
    return sorted({1, max(1, n_layers // 2), n_layers})


def check_inputs(classifier: Classifier, n: int = N_INPUTS) -> np.ndarray:
    """The inputs the check explains: the bundle's background images, else a mid-grey input."""
    bg = classifier.bundle.background()
    if bg is not None and len(bg):
        return np.asarray(bg[:n], np.float32)
    spec = classifier.spec
    low, high = spec.channel_range
    mid = (np.asarray(low, np.float32) + np.asarray(high, np.float32)) / 2.0
    return np.broadcast_to(mid, (1, spec.height, spec.width, spec.channels)).astype(np.float32)


def cascade_check(
    classifier: Classifier,
    method: str,
    *,
    settings: Mapping[str, Any] | None = None,
    inputs: np.ndarray | None = None,
    seed: int = 0,
    progress: ProgressFn = no_progress,
) -> SanityResult:
    """Run the cascading randomisation check of ``method`` (see the module docstring)."""
    from cxr_viewer.core.explain.registry import create_explainer, explainer_class
    from cxr_viewer.core.model.graph import flat_model

    cls = explainer_class(method)
    s = dict(cls.quick_settings if settings is None else settings)
    x = check_inputs(classifier) if inputs is None else np.asarray(inputs, np.float32)
    targets = [int(np.argmax(p)) for p in classifier.predict_inputs(x)]

    def maps(clf: Classifier) -> list[np.ndarray]:
        exp = create_explainer(method, clf, s)
        return [exp.explain(xi, t).values for xi, t in zip(x, targets, strict=True)]

    trained = maps(classifier)
    model = flat_model(classifier.model)
    layers = weighted_layers(model)
    names, rhos = [], []
    sizes = stages_for(len(layers))
    for i, k in enumerate(sizes):
        progress(i / len(sizes), f"sanity check {cls.display.short_label}: top {k} layers")
        twin = classifier.with_model(randomised_copy(model, k, seed))
        rho = [spearman(a, b) for a, b in zip(trained, maps(twin), strict=True)]
        names.append(f"top {k} of {len(layers)} layers" if k < len(layers) else "all layers")
        rhos.append(float(np.median(rho)))
    progress(1.0, "sanity check done")
    return SanityResult(method, tuple(names), tuple(rhos), len(x), s)


# -- the cache -----------------------------------------------------------------------------------
def cache_root() -> Path | None:
    """``$CXR_SANITY_CACHE`` (``0``/``off``: no cache), else the user's cache folder."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in ("0", "off", "no", "false"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "cxr-lens" / "sanity"


def cache_key(model_sha256: str, method: str, settings: Mapping[str, Any]) -> str:
    text = json.dumps([VERSION, model_sha256, method, dict(settings)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _sha(classifier: Classifier) -> str:
    return str(classifier.bundle.metadata.get("model_sha256", ""))


def cached_result(
    classifier: Classifier, method: str, settings: Mapping[str, Any] | None = None
) -> SanityResult | None:
    """The cached check of ``method`` on this model file, or None (not run, or no cache)."""
    from cxr_viewer.core.explain.registry import explainer_class

    root = cache_root()
    if root is None or not _sha(classifier):
        return None
    s = dict(explainer_class(method).quick_settings if settings is None else settings)
    path = root / f"{cache_key(_sha(classifier), method, s)}.json"
    try:
        return SanityResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sanity_check(
    classifier: Classifier,
    method: str,
    *,
    settings: Mapping[str, Any] | None = None,
    progress: ProgressFn = no_progress,
) -> SanityResult:
    """The cached result for this model file and method, else :func:`cascade_check` (cached)."""
    from cxr_viewer.core.explain.registry import explainer_class

    s = dict(explainer_class(method).quick_settings if settings is None else settings)
    found = cached_result(classifier, method, s)
    if found is not None:
        return found
    result = cascade_check(classifier, method, settings=s, progress=progress)
    root = cache_root()
    if root is not None and _sha(classifier):
        path = root / f"{cache_key(_sha(classifier), method, s)}.json"
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(result.as_dict(), indent=1), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            log.info("sanity check not cached in %s: %s", root, exc)
    return result
