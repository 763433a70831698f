"""Runtime hook of the frozen app: quiet, offline defaults set before anything is imported."""

import os

# lime wraps its sampling loop in tqdm; a windowed app has no stderr to write it to.
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras must never try to reach the network for anything (weights come only from local files).
os.environ.setdefault("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".cxr-lens", "keras"))
