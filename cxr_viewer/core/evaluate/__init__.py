"""The evaluation layer: how far an explanation can be trusted.

Deletion / insertion curves and the top-20 % drop (:mod:`.trust`), agreement between maps
(:mod:`.agreement`), the model- and data-randomisation sanity checks (:mod:`.sanity`) and the
pointing game and box agreement against annotated lesions (:mod:`.localize`). It reads maps from
:mod:`cxr_viewer.core.explain` and runs the classifier of :mod:`cxr_viewer.core.model`; only
:mod:`cxr_viewer.core.interop` sits above it. Nothing is imported here.
"""
