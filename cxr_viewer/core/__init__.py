"""Qt-free core of CXR Lens, by layer (lowest first; a layer imports only those below it).

:mod:`.io` (image formats, studies, display transforms, file utilities) → :mod:`.model` (bundles,
heads, preprocessing, forward paths, inference) → :mod:`.explain` (methods, overlays) →
:mod:`.evaluate` (trust, agreement, sanity checks, localisation) → :mod:`.interop` (PACS, DICOM
results). :mod:`.importer` turns a foreign Keras model into a bundle and sits beside
:mod:`.evaluate`. :mod:`.errors`, :mod:`.paths` and :mod:`.progress` are used by every layer;
:mod:`.analysis` (the one pipeline) and :mod:`.device_compare` (the pipeline on the CPU and the
GPU, compared) sit above every layer.
"""
