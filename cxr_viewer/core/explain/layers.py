"""Which layers of a Keras 3 model Grad-CAM and per-layer SHAP can be computed at.

The model object is passed in (so TensorFlow is already loaded); this module itself imports
nothing heavy at import time.

* :func:`gradcam_layers` — layers with a 4-D (batch, rows, columns, channels) output. Grad-CAM
  (Selvaraju et al. 2017) needs only the gradient of the class score w.r.t. that output, so any
  such layer works; :func:`default_gradcam_layer` is the last one before global pooling.
* :func:`shap_layers` — layers whose output is a *cut* of the graph: every path from the input
  to the output passes through that one tensor. Only then does ``shap.GradientExplainer`` on
  ``(layer.output, model.output)`` see the whole model downstream of the layer, and only then
  do the attributions sum to f(x) − E f(background) (completeness, Lundberg & Lee 2017). Inside
  a residual block a single layer's output is not a cut (the skip connection bypasses it), so
  those layers are not offered (measured).
* Every function works on the model with nested backbones inlined
  (:func:`cxr_viewer.core.model.graph.flatten_model`).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cxr_viewer.core.errors import ExplainError
from cxr_viewer.core.model.graph import flatten_model

# Keras models, layers, graph nodes and tensors are typed ``Any`` here: this module reads
# Keras's functional graph (``_nodes_by_depth``, ``_keras_history``), which has no stable types.

#: layer classes whose outputs are not worth explaining (they only pad, reshape or copy)
_SKIP_CLASSES = {
    "InputLayer",
    "ZeroPadding2D",
    "Cropping2D",
    "Dropout",
    "SpatialDropout2D",
    "GaussianNoise",
    "GaussianDropout",
    "Rescaling",
    "Normalization",
    "Resizing",
    "CenterCrop",
    "RandomFlip",
    "RandomRotation",
    "RandomZoom",
    "RandomTranslation",
    "RandomContrast",
    "RandomBrightness",
}
_CONV_CLASSES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")
_POOL_CLASSES = {"GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten"}
#: layers Grad-CAM's default looks through, walking back from the global pooling
_PASS_CLASSES = {"MaxPooling2D", "AveragePooling2D"}


class _Graph:
    """The layer graph of a functional model: one vertex per call node."""

    def __init__(self, model: Any) -> None:
        if not hasattr(model, "_nodes_by_depth"):
            raise ExplainError(
                "Cannot inspect the model's layers",
                f"{type(model).__name__} is not a functional Keras model.",
                "Export the model as a functional (or Sequential) Keras 3 model.",
            )
        depths = sorted(model._nodes_by_depth, reverse=True)  # inputs first
        self.nodes = [n for d in depths for n in model._nodes_by_depth[d]]
        ids = {id(n) for n in self.nodes}
        self.children: dict[int, list[int]] = defaultdict(list)
        for n in self.nodes:
            for p in n.parent_nodes:
                if id(p) in ids:
                    self.children[id(p)].append(id(n))
        self.sources = [id(n) for n in self.nodes if n.is_input]
        out_ids: set[int] = set()
        for t in model.outputs:
            op, node_index, _ = t._keras_history
            out_ids.add(id(op._inbound_nodes[node_index]))
        self.sinks = out_ids

    def reaches_output_without(self, removed: int) -> bool:
        seen = {removed}
        stack = [s for s in self.sources if s != removed]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            if k in self.sinks:
                return True
            stack.extend(self.children.get(k, ()))
        return False


def layer_output(model: Any, name: str) -> Any:
    """The output tensor of layer ``name`` *in this model's graph*.

    ``layer.output`` is the layer's first call; after :func:`~cxr_viewer.core.model.graph.flatten_model` re-traced a nested
    backbone, the flattened graph holds the layer's second call, so look the node up instead.
    """
    g = _Graph(model)
    for n in g.nodes:
        if n.operation is not None and n.operation.name == name and not n.is_input:
            if len(n.outputs) != 1:
                raise ExplainError(
                    f"Layer '{name}' has {len(n.outputs)} outputs",
                    "explanations need a layer with a single output tensor.",
                )
            return n.outputs[0]
    raise ExplainError(
        f"The model has no layer '{name}'",
        "the layer name is not in the model.",
        "Choose one of the layers the explainer offers.",
    )


def _four_d(node: Any) -> bool:
    outs = node.outputs
    if len(outs) != 1:
        return False
    shape = outs[0].shape
    return len(shape) == 4 and all(s is None or s > 1 for s in shape[1:3])


def _candidate_nodes(model: Any) -> tuple[_Graph, list[Any]]:
    g = _Graph(model)
    names: set[str] = set()
    out: list[Any] = []
    for n in g.nodes:
        op = n.operation
        if n.is_input or op is None or type(op).__name__ in _SKIP_CLASSES:
            continue
        if op.name in names or not _four_d(n):  # shared layers: first call only
            continue
        names.add(op.name)
        out.append(n)
    return g, out


def gradcam_layers(model: Any) -> list[str]:
    """Names of the layers Grad-CAM can be computed at (4-D outputs), input side first."""
    _, nodes = _candidate_nodes(flatten_model(model))
    return [n.operation.name for n in nodes]


def default_gradcam_layer(model: Any) -> str:
    """The last convolution's activation before global pooling (Selvaraju et al. 2017, §3).

    From the global pooling / flatten layer the graph is walked back past dropout, padding,
    pooling and noise layers (VGG's ``block5_pool``, a ``Dropout`` before the pooling) to the
    layer that produced the feature maps — the convolution's activation (or the convolution
    itself when its activation is built in). Raises ExplainError for a model without
    convolutional feature maps.
    """
    flat = flatten_model(model)
    _, nodes = _candidate_nodes(flat)
    if not nodes:
        raise ExplainError(
            "The model has no convolutional feature maps",
            "Grad-CAM needs a layer with a (rows, columns, channels) output.",
            "Use LIME for this model.",
        )
    candidates = {id(n) for n in nodes}
    for n in reversed(_Graph(flat).nodes):
        if type(n.operation).__name__ not in _POOL_CLASSES:
            continue
        stack = list(n.parent_nodes)
        while stack:
            p = stack.pop()
            if p.is_input or p.operation is None:
                continue
            if type(p.operation).__name__ in _SKIP_CLASSES | _PASS_CLASSES:
                stack.extend(p.parent_nodes)
            elif id(p) in candidates:
                return str(p.operation.name)
    return str(nodes[-1].operation.name)


def spatial_sizes(model: Any, names: list[str]) -> dict[str, tuple[int, int]]:
    """(rows, columns) of each named layer's output (for menus: "block2_out (28×28)")."""
    g = _Graph(flatten_model(model))
    out: dict[str, tuple[int, int]] = {}
    for n in g.nodes:
        op = n.operation
        if op is None or n.is_input or op.name not in names or op.name in out:
            continue
        if len(n.outputs) == 1 and len(n.outputs[0].shape) == 4:
            rows, cols = n.outputs[0].shape[1:3]
            if rows is not None and cols is not None:
                out[op.name] = (int(rows), int(cols))
    return out


def is_cut_layer(model: Any, name: str) -> bool:
    """True if every path from the model's input to its output passes through ``name``.

    ``name`` must be a layer called once with a single output tensor.
    """
    g = _Graph(flatten_model(model))
    found = [n for n in g.nodes if n.operation is not None and n.operation.name == name]
    if len(found) != 1 or found[0].is_input or len(found[0].outputs) != 1:
        return False
    return not g.reaches_output_without(id(found[0]))


def shap_layers(model: Any, max_layers: int = 6) -> list[str]:
    """A sensible subset of the cut layers (:func:`is_cut_layer`) for per-layer SHAP, input
    side first.

    Priority: the input of the first convolution (the seeds' ``conv1_conv`` input), then the
    first *branching* cut at each spatial resolution (a block input such as ResNet V2's
    ``convN_block1_preact_relu``, which feeds both the residual and the shortcut path), then
    the last cut before global pooling, then the first cut at each remaining resolution.
    """
    flat = flatten_model(model)
    g, nodes = _candidate_nodes(flat)
    cuts = [n for n in nodes if not g.reaches_output_without(id(n))]
    if not cuts:
        return []
    order = {id(n): i for i, n in enumerate(g.nodes)}
    chosen: list[Any] = []

    def add(n: Any) -> None:
        if n is not None and all(n is not c for c in chosen):
            chosen.append(n)

    cut_ids = {id(n) for n in cuts}
    # 1. the input of the first convolution, if it is a cut and not the raw input
    for n in g.nodes:
        if type(n.operation).__name__ in _CONV_CLASSES:
            for p in n.parent_nodes:
                if id(p) in cut_ids or (
                    not p.is_input
                    and len(p.outputs) == 1
                    and len(p.outputs[0].shape) == 4
                    and not g.reaches_output_without(id(p))
                ):
                    add(p)
            break
    # 2. the first branching cut at each resolution
    seen_res: set[tuple[int | None, ...]] = set()
    for n in cuts:
        res = tuple(n.outputs[0].shape[1:3])
        if res in seen_res:
            continue
        if len(g.children.get(id(n), ())) > 1:
            seen_res.add(res)
            add(n)
    # 3. the last cut before global pooling
    add(cuts[-1])
    # 4. the first cut at each resolution not covered yet
    for n in cuts:
        res = tuple(n.outputs[0].shape[1:3])
        if res not in seen_res:
            seen_res.add(res)
            add(n)
    if len(chosen) > max_layers:
        last = cuts[-1]
        chosen = [c for c in chosen if c is not last][: max(max_layers - 1, 0)] + [last]
    chosen.sort(key=lambda n: order[id(n)])
    return [n.operation.name for n in chosen]
