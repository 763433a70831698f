"""The model layer: what a model is and how it is run.

A model bundle on disk (:mod:`.bundle`, its schema :mod:`.bundle_schema` and model card
:mod:`.model_card`), its output head (:mod:`.heads`: softmax, one sigmoid, multi-label, linear),
the shared preprocessing from a study to the model's input (:mod:`.preprocess`), loading Keras and
TensorFlow (:mod:`.model_io`), the verified forward paths (:mod:`.forward`), the classifier that
predicts (:mod:`.inference`) and class scores for the explainers (:mod:`.scores`). It builds on :mod:`cxr_viewer.core.io`; the
explainers, evaluation and interoperability layers build on it. Nothing is imported here, so
importing a submodule stays as cheap as that submodule.
"""
