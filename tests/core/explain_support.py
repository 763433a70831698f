"""Models shared by the explainer, trust and batch tests (built once per test process).

* :func:`tiny_classifier` — a random 32×32 greyscale CNN with a residual block (contract tests).
* :func:`phantom_classifier` — a small CNN trained on ``trainer.synth`` phantoms (64×64, a few
  hundred images, a few epochs, fixed seeds) plus held-out test phantoms with lesion masks.
  ``CXR_PHANTOM_SEED`` (default 1) sets the model's training seed, to check that a finding is
  not one seed's luck.

Where the phantom model's Grad-CAM peak (default layer ``c4``, stride 2) falls on the 30
positive test phantoms, for training seeds 0 / 1 / 2 (``CXR_PHANTOM_SEED=<seed>`` runs the
tests with another seed):

* residual block 3×3 + 3×3 (``c4`` receptive field 22 px): strictly inside the mask 0.17 /
  0.10 / 0.50, within 4 px 0.80 / 0.93 / 0.73.
* 3×3 + 1×1 (18 px, used here): strictly inside 0.03 / 0.23 / 0.13, within 4 px 1.00 / 1.00 /
  0.97; Grad-CAM rank correlation with the weight-randomized model 0.34 / 0.19 / 0.33.
* 1×1 + 1×1 (14 px): strictly inside 0.00 / 0.03 / 0.03, within 4 px 0.97 / 1.00 / 1.00, but
  rank correlation with the randomized model 0.45 / 0.37 / 0.24 (fails Adebayo's check at
  seed 0).

The peak sits 1–3 px *outside* the lesion rim for every variant tried (dilated, 5×5, or 7×7/11×11
separable last convolutions, extra depth, a second pooling to stride 4, average or blur pooling,
a 9×9 stem, 128-px input, no pooling at all with the map at full resolution: strict rates
0.00–0.57 at seed 1). The map at full resolution peaks outside too, so it is neither the
upsampling nor the stride; the units that detect the lesion sit just outside it, in the lung
next to it, and Grad-CAM, exact for a GAP head (it equals CAM), reports where those units are.
The 3×3 + 1×1 block keeps the peak within 4 px on every seed (3×3 + 3×3 does not) and the map
still far from a random model's, so the phantom model uses it (training ~60 s on two cores).

Both are written as real model bundles (with a SHAP background set) and loaded through
``Classifier``, so the tests exercise the same path as the viewer.
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TMP = tempfile.TemporaryDirectory(prefix="cxr-explain-tests-")
PHANTOM_SIZE = 64


def _conv_bn_relu(x, filters: int, kernel: int, name: str, dilation: int = 1):
    from keras import layers

    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=dilation, name=f"{name}_conv")(
        x
    )
    x = layers.BatchNormalization(momentum=0.8, name=f"{name}_bn")(x)
    return layers.ReLU(name=name)(x)


def build_small_cnn(
    size: int, *, seed: int = 0, width: int = 16, block_kernels: tuple[int, int] = (3, 3)
):
    """stem (5×5, BN) → max pool → residual block → conv → conv (BN) → GAP → softmax(2).

    The residual block makes ``b1_conv1``/``b1_conv2`` non-cut layers (SHAP must refuse them);
    the last conv ``c4`` (stride 2 of the input) is the Grad-CAM layer. Global *average*
    pooling: Grad-CAM's channel weights assume it (with a max-pooling head a channel's
    activations away from its maximum do not count toward the score, yet Grad-CAM draws them).
    ``block_kernels`` are the residual block's two kernel sizes: (3, 3) gives ``c4`` a 22-px
    receptive field, (3, 1) 18 px, (1, 1) 14 px.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 1), name="image")
    x = _conv_bn_relu(inp, width, 5, "stem")
    x = layers.MaxPooling2D(name="pool1")(x)
    k1, k2 = block_kernels
    y = layers.Conv2D(width, k1, padding="same", activation="relu", name="b1_conv1")(x)
    y = layers.Conv2D(width, k2, padding="same", name="b1_conv2")(y)
    x = layers.Add(name="b1_add")([x, y])
    x = layers.ReLU(name="b1_out")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu", name="c3")(x)
    x = _conv_bn_relu(x, 2 * width, 3, "c4")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out = layers.Dense(2, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="small_cnn")


def _bundle(model, name: str, size: int, background: np.ndarray, root: Path | None = None):
    from cxr_viewer.core.explain.layers import default_gradcam_layer, shap_layers
    from cxr_viewer.core.model.bundle import write_bundle
    from cxr_viewer.core.model.preprocess import InputSpec

    return write_bundle(
        root if root is not None else Path(_TMP.name) / name,
        model,
        name=name,
        class_names=["no_lesion", "lesion"],
        input_spec=InputSpec(size, size, 1, "unit"),
        gradcam_layer=default_gradcam_layer(model),
        shap_layers=shap_layers(model),
        background=background,
        overwrite=True,
    )


@functools.lru_cache(maxsize=1)
def tiny_classifier():
    """A random-weight 32×32 classifier (bundle with 6 background images)."""
    from cxr_viewer.core.model.inference import Classifier

    model = build_small_cnn(32, seed=1, width=4)
    rng = np.random.default_rng(0)
    bg = rng.random((6, 32, 32, 1), dtype=np.float32)
    return Classifier(_bundle(model, "tiny", 32, bg), batch_size=8)


@dataclass
class PhantomCase:
    classifier: object
    images: np.ndarray  # (n, s, s, 1) model inputs
    labels: np.ndarray
    masks: np.ndarray
    val_accuracy: float

    @property
    def positives(self) -> np.ndarray:
        return np.nonzero(self.labels == 1)[0]


@functools.lru_cache(maxsize=1)
def phantom_classifier(shared: Path | None = None) -> PhantomCase:
    """A small CNN trained on phantoms; held-out test phantoms with their lesion masks.

    The training seed is ``CXR_PHANTOM_SEED`` (default 1); the phantom sets are fixed. With
    ``shared`` (a folder the test processes of one run share, see the ``phantom_case`` fixture)
    the trained model is written there as a bundle, and a process that finds it loads it
    instead of training again.
    """
    import json

    import keras

    from cxr_viewer.core.model.bundle import open_bundle
    from cxr_viewer.core.model.inference import Classifier
    from trainer.synth import make_phantoms

    s = PHANTOM_SIZE
    test = make_phantoms(60, s, seed=2)
    x = test.images[..., None].astype(np.float32)
    seed = int(os.environ.get("CXR_PHANTOM_SEED", "1"))
    record = shared / f"seed{seed}.json" if shared is not None else None
    if record is not None and record.is_file():
        acc = json.loads(record.read_text(encoding="utf-8"))["val_accuracy"]
        clf = Classifier(open_bundle(shared / f"seed{seed}"), batch_size=16)
        return PhantomCase(clf, x, test.labels, test.masks, acc)
    train = make_phantoms(500, s, seed=1)
    background = make_phantoms(16, s, seed=3).images[..., None]
    model = build_small_cnn(s, seed=seed, block_kernels=(3, 1))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(train.images[..., None], train.labels, epochs=10, batch_size=32, verbose=0)
    # one more pass at learning rate 0 only refreshes the batch-norm statistics (momentum 0.8
    # lags the weights after 160 steps and leaves the inference model near chance)
    model.optimizer.learning_rate.assign(0.0)
    model.fit(train.images[..., None], train.labels, epochs=1, batch_size=32, verbose=0)
    acc = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == test.labels))
    root = shared / f"seed{seed}" if shared is not None else None
    clf = Classifier(_bundle(model, "phantom", s, background, root), batch_size=16)
    if record is not None:  # last: a process that sees it finds the bundle complete
        record.write_text(json.dumps({"val_accuracy": acc}), encoding="utf-8")
    return PhantomCase(clf, x, test.labels, test.masks, acc)
