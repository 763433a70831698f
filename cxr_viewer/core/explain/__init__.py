"""The explanation layer: methods behind one interface, and how a map is drawn.

Each method (Grad-CAM, LIME, per-layer SHAP, occlusion) is an :class:`~.base.Explainer`
subclass registered in :mod:`.registry`; :mod:`.base` holds the interface, the :class:`~.base.Heatmap`
it returns and :func:`~.base.explain_study`, :mod:`.layers` finds the layers a method may read,
and :mod:`.overlay` colourises a map and composites it over the display image. It builds on
:mod:`cxr_viewer.core.model` (the classifier) and :mod:`cxr_viewer.core.io`; evaluation and
interoperability build on it.
"""
