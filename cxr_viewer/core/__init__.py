"""Qt-free core of CXR Lens: study loading, preprocessing, model bundles, inference, explainers."""
