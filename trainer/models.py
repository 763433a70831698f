"""The classifiers: a small residual CNN and keras.applications backbones, one head.

Every model is a flat functional Keras model: keras.applications backbones are built with
``input_tensor=`` and the head is applied to ``base.output``, so each backbone layer (e.g.
ResNet50V2's ``conv1_conv``, ``post_relu``) stays addressable by name in the saved model — a
backbone nested as one layer would hide them from Grad-CAM and per-layer SHAP (DESIGN.md).

Head (as in the covid-cxr seeds): GlobalAveragePooling → Dropout → Dense with L2 →
LeakyReLU → Dense softmax named ``output`` (float32 even under mixed precision).

References: He et al. 2016, *Identity mappings in deep residual networks* (ResNet V2);
Sandler et al. 2018, *MobileNetV2*.
"""

from __future__ import annotations

from pathlib import Path

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.preprocess import InputSpec

from .config import ModelConfig

INPUT_NAME = "image"
OUTPUT_NAME = "output"
#: batch-norm moving-average momentum of dcnn_resnet: 0.9 rather than Keras' 0.99, so the
#: inference statistics settle within the few hundred steps a small chest X-ray set gives
BN_MOMENTUM = 0.9


def _dcnn_resnet(inputs, mc: ModelConfig):
    """A small residual CNN: stem conv + max pool, then ``blocks`` residual blocks that each
    halve the resolution (two 3×3 convs + 1×1 projection shortcut, added, ReLU).

    Each ``block{b}_out`` is a cut of the graph (a valid per-layer SHAP point); the last one is
    the Grad-CAM layer. With a 224 input and 3 blocks the last map is 7×7.
    """
    import keras
    from keras import layers

    reg = keras.regularizers.L2(mc.l2) if mc.l2 > 0 else None
    x = layers.Conv2D(
        mc.init_filters, 5, strides=2, padding="same", use_bias=False, name="stem_conv",
        kernel_regularizer=reg,
    )(inputs)  # fmt: skip
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for b in range(1, mc.blocks + 1):
        f = mc.init_filters * mc.filter_growth ** (b - 1)
        shortcut = layers.Conv2D(
            f, 1, strides=2, name=f"block{b}_shortcut", kernel_regularizer=reg
        )(x)
        y = layers.Conv2D(
            f, 3, strides=2, padding="same", use_bias=False, name=f"block{b}_conv1",
            kernel_regularizer=reg,
        )(x)  # fmt: skip
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn1")(y)
        y = layers.ReLU(name=f"block{b}_relu1")(y)
        y = layers.Conv2D(
            f, 3, padding="same", use_bias=False, name=f"block{b}_conv2", kernel_regularizer=reg
        )(y)
        y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn2")(y)
        x = layers.Add(name=f"block{b}_add")([shortcut, y])
        x = layers.ReLU(name=f"block{b}_out")(x)
    return x


def _application(inputs, mc: ModelConfig, spec: InputSpec):
    """A keras.applications backbone built on ``inputs`` (flat), weights from a local file."""
    import keras

    weights = None
    if mc.weights:
        path = Path(mc.weights).expanduser()
        if not path.is_file():
            raise TrainingError(
                f"Backbone weights file not found: {path}",
                "CXR Lens never downloads weights.",
                "Download the no-top ImageNet weights once and set model.weights to the file.",
            )
        if spec.channels != 3:
            raise TrainingError(
                "Pretrained backbone weights need 3 input channels",
                f"model.channels is {spec.channels}.",
                "Set model.channels = 3 (the grey image is repeated).",
            )
        weights = str(path)
    kwargs = dict(include_top=False, weights=weights, input_tensor=inputs, pooling=None)
    arch = mc.architecture
    try:
        if arch == "resnet50v2":
            base = keras.applications.ResNet50V2(**kwargs)
        elif arch == "resnet101v2":
            base = keras.applications.ResNet101V2(**kwargs)
        elif arch == "mobilenetv2":
            base = keras.applications.MobileNetV2(alpha=mc.alpha, **kwargs)
        else:  # pragma: no cover - validated in config
            raise TrainingError(f"Unknown architecture {arch}")
    except ValueError as exc:
        raise TrainingError(
            f"Cannot build the {arch} backbone", str(exc), "Check model.weights and model.alpha."
        ) from exc
    return base.output


def build_model(mc: ModelConfig, spec: InputSpec, n_classes: int, *, seed: int = 0):
    """Build (not compile) the classifier for ``spec`` with ``n_classes`` softmax outputs.

    Layers before index ``mc.fine_tune_from`` are frozen (0 = all trainable). Seeds Python,
    NumPy and the backend first, so the same config gives the same initial weights.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(spec.height, spec.width, spec.channels), name=INPUT_NAME)
    if mc.architecture == "dcnn_resnet":
        features = _dcnn_resnet(inputs, mc)
    else:
        features = _application(inputs, mc, spec)
    x = layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = layers.Dropout(mc.dropout, name="head_dropout")(x)
    x = layers.Dense(
        mc.dense_units,
        kernel_regularizer=keras.regularizers.L2(mc.l2) if mc.l2 > 0 else None,
        name="head_dense",
    )(x)
    x = layers.LeakyReLU(name="head_leaky_relu")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name=OUTPUT_NAME)(x)
    model = keras.Model(inputs, outputs, name=f"cxr_{mc.architecture}")
    if mc.fine_tune_from > 0:
        if mc.fine_tune_from >= len(model.layers):
            raise TrainingError(
                "model.fine_tune_from is past the last layer",
                f"the model has {len(model.layers)} layers.",
            )
        for layer in model.layers[: mc.fine_tune_from]:
            layer.trainable = False
    return model


def compile_model(model, learning_rate: float, n_classes: int) -> None:
    """Adam + categorical cross-entropy, with accuracy and AUC (the monitored metric).

    AUC is computed per output column and averaged (``multi_label=True``): for a two-class
    softmax both columns give the positive class's ROC AUC, for more classes it is the macro
    one-vs-rest AUC. (Keras' default flattens all columns into one ROC, which rewards a model
    that only predicts the class prior.) 1000 thresholds rather than 200: a small model's
    probabilities often crowd into a narrow band, where 200 bins tie many of them.
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.AUC(
                name="auc", multi_label=True, num_labels=n_classes, num_thresholds=1000
            ),
        ],
    )
