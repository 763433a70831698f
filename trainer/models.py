"""The classifiers: a small residual CNN and keras.applications backbones, one head.

Every model is a flat functional Keras model: keras.applications backbones are built with
``input_tensor=`` and the head is applied to ``base.output``, so each backbone layer (e.g.
ResNet50V2's ``conv1_conv``, ``post_relu``) stays addressable by name in the saved model — a
backbone nested as one layer would hide them from Grad-CAM and per-layer SHAP
(docs/ARCHITECTURE.md).

Head (as in the covid-cxr seeds): GlobalAveragePooling → Dropout → Dense with L2 →
LeakyReLU → Dense softmax named ``output`` (float32 even under mixed precision).

References: He et al. 2016, *Identity mappings in deep residual networks* (ResNet V2);
Howard et al. 2017, *MobileNets*; Sandler et al. 2018, *MobileNetV2*.
"""

from __future__ import annotations

from cxr_viewer.core.errors import TrainingError
from cxr_viewer.core.model.preprocess import InputSpec

from .config import ModelConfig
from .heads import TrainerHead, trainer_head

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


def _weights_file_name(arch: str, alpha: float, size: int) -> str:
    """The no-top ImageNet weights file keras.applications downloads for this backbone."""
    if arch == "mobilenet":
        a = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(alpha, f"{alpha}")
        rows = size if size in (128, 160, 192, 224) else 224
        return f"mobilenet_{a}_{rows}_tf_no_top.h5"
    if arch == "mobilenetv2":
        rows = size if size in (96, 128, 160, 192, 224) else 224
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5"
    return f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _resolve_weights(mc: ModelConfig, spec: InputSpec) -> str | None:
    """``model.weights`` as keras.applications takes it: a checked local path, "imagenet", or
    None."""
    if not mc.weights:
        return None
    if mc.weights == "imagenet":
        return "imagenet"
    from .config import resolve_path

    path = resolve_path(mc.weights)
    if not path.is_file():
        raise TrainingError(
            f"Backbone weights file not found: {path}",
            "model.weights names a file that does not exist.",
            f"Point model.weights at the no-top ImageNet file "
            f"({_weights_file_name(mc.architecture, mc.alpha, spec.height)}), or set it to "
            '"imagenet" on a machine with internet access.',
        )
    return str(path)


def _application(inputs, mc: ModelConfig, spec: InputSpec):
    """A keras.applications backbone built on ``inputs`` (flat), ImageNet weights from a local
    file or Keras' own download.

    A 1-channel input is repeated to RGB inside the model (layer ``grey_to_rgb``) so that the
    ImageNet weights apply while the bundle, its SHAP background and LIME stay greyscale.
    """
    import keras
    from keras import layers

    weights = _resolve_weights(mc, spec)
    x = inputs
    if spec.channels == 1:
        x = layers.Concatenate(axis=-1, name="grey_to_rgb")([inputs, inputs, inputs])
    kwargs = dict(include_top=False, weights=weights, input_tensor=x, pooling=None)
    arch = mc.architecture
    try:
        if arch == "resnet50v2":
            base = keras.applications.ResNet50V2(**kwargs)
        elif arch == "resnet101v2":
            base = keras.applications.ResNet101V2(**kwargs)
        elif arch == "mobilenet":
            base = keras.applications.MobileNet(alpha=mc.alpha, **kwargs)
        elif arch == "mobilenetv2":
            base = keras.applications.MobileNetV2(alpha=mc.alpha, **kwargs)
        else:  # pragma: no cover - validated in config
            raise TrainingError(f"Unknown architecture {arch}")
    except (ValueError, OSError) as exc:  # wrong architecture/alpha/size, or not an HDF5 file
        raise TrainingError(
            f"Cannot build the {arch} backbone with weights {weights}",
            f"{type(exc).__name__}: {exc}",
            f"model.weights must be the no-top file for this backbone, alpha and input size "
            f"({_weights_file_name(arch, mc.alpha, spec.height)}); check model.alpha.",
        ) from exc
    except Exception as exc:  # the "imagenet" download: URLError, HTTPError, OSError, …
        if weights != "imagenet":
            raise
        name = _weights_file_name(arch, mc.alpha, spec.height)
        raise TrainingError(
            f"Cannot download the ImageNet weights for {arch}",
            f"Keras could not fetch {name} ({type(exc).__name__}: {exc}); this machine is "
            "probably offline.",
            f"Copy {name} (the keras.applications no-top ImageNet file) to this machine and set "
            'model.weights to its path, or put it in ~/.keras/models/ and keep "imagenet".',
        ) from exc
    if not mc.feature_layer:
        return base.output
    try:
        return base.get_layer(mc.feature_layer).output
    except ValueError as exc:
        convs = [layer.name for layer in base.layers if layer.name.endswith("relu")][-6:]
        raise TrainingError(
            f"The {arch} backbone has no layer '{mc.feature_layer}'",
            "model.feature_layer names the backbone layer the head reads.",
            f'Use one of its layers (the last few: {", ".join(convs)}), or "" for its last.',
        ) from exc


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
    head = trainer_head(mc.head)
    if head.class_activation_map:
        model = keras.Model(
            inputs, _cam_head(features, mc, n_classes), name=f"cxr_{mc.architecture}"
        )
        set_trainable(model, mc, phase="train")
        return model
    x = layers.GlobalAveragePooling2D(name="head_pool")(features)
    x = layers.Dropout(mc.dropout, name="head_dropout")(x)
    x = layers.Dense(
        mc.dense_units,
        kernel_regularizer=keras.regularizers.L2(mc.l2) if mc.l2 > 0 else None,
        name="head_dense",
    )(x)
    x = layers.LeakyReLU(name="head_leaky_relu")(x)
    outputs = layers.Dense(
        n_classes, activation=head.activation, dtype="float32", name=OUTPUT_NAME
    )(x)
    model = keras.Model(inputs, outputs, name=f"cxr_{mc.architecture}")
    if mc.fine_tune_from >= len(model.layers):
        raise TrainingError(
            "model.fine_tune_from is past the last layer",
            f"the model has {len(model.layers)} layers.",
        )
    set_trainable(model, mc, phase="train")
    return model


CAM_LAYER = "head_cam"


def _cam_head(features, mc: ModelConfig, n_classes: int):
    """The class-activation head (model.head = "cam"): the map *is* the decision.

    Dropout → 1×1 convolution to one logit per class at every location of the last feature map
    (``head_cam``; for two classes one evidence map ``head_evidence`` e and the logits
    (−e/2, +e/2), so that no per-location common mode is left free) → global average of those
    logits → softmax ``output``. The class score is the
    mean of the per-location scores, so the class-activation map (Zhou et al. 2016) is exactly
    what the decision is made of, and Grad-CAM at ``head_cam`` (or at the backbone's last
    feature map: the head is linear up to the softmax) returns it: faithful by construction.
    The per-location logits are also where box supervision acts (:mod:`trainer.boxes`).

    ``model.cam_pool`` = r > 0 (two classes): the decision is instead the softmax-weighted mean
    Σ softmax(r·e)·e, which leans on the locations with the most evidence; ``head_cam`` then
    holds each location's share c = softmax(r·e)·e (as ±c/2), summed rather than averaged, so
    Grad-CAM at ``head_cam`` is still exactly the decision's decomposition. Only the backbone's
    last feature map no longer gives it (the pooling is not linear); the box loss judges e.
    """
    import keras
    from keras import layers

    if mc.cam_pool > 0 and n_classes != 2:
        raise TrainingError(
            "model.cam_pool needs two classes",
            f"it pools the one evidence map of a two-class CAM head; this model has {n_classes}.",
            "Set model.cam_pool = 0.",
        )
    x = layers.Dropout(mc.dropout, name="head_dropout")(features)
    regularizer = keras.regularizers.L2(mc.l2) if mc.l2 > 0 else None
    scale = 1.0  # what turns the mean of head_cam into the decision (1: it is the mean)
    if n_classes == 2:
        # One evidence map e, and logits (-e/2, +e/2): the softmax is sigmoid(mean e), and each
        # class's logit map is exactly its share of the decision. Two free channels would leave
        # a common mode per location that the softmax ignores (so no loss constrains it) but
        # Grad-CAM of one class's logit shows: noise in the map that is not the decision.
        e = layers.Conv2D(
            1, 1, name="head_evidence", dtype="float32", kernel_regularizer=regularizer
        )(x)
        if mc.cam_pool > 0:
            e, scale = _softmax_weighted(e, mc.cam_pool)
        cam = layers.Concatenate(name=CAM_LAYER, dtype="float32")(
            [
                layers.Rescaling(-0.5, name="head_against", dtype="float32")(e),
                layers.Rescaling(0.5, name="head_for", dtype="float32")(e),
            ]
        )
    else:
        cam = layers.Conv2D(
            n_classes, 1, name=CAM_LAYER, dtype="float32", kernel_regularizer=regularizer
        )(x)
    pooled = layers.GlobalAveragePooling2D(name="head_pool", dtype="float32")(cam)
    if scale != 1.0:  # softmax-weighted: the decision is the sum of the shares, not their mean
        pooled = layers.Rescaling(scale, name="head_sum", dtype="float32")(pooled)
    activation = "sigmoid" if n_classes == 1 else "softmax"
    return layers.Activation(activation, dtype="float32", name=OUTPUT_NAME)(pooled)


def _softmax_weighted(e, sharpness: float):
    """Each location's share of a softmax-weighted mean of the evidence map ``e``: c = w ⊙ e
    with w = softmax(sharpness · e) over the locations, so that Σc is the decision. Returns c
    and the factor (the number of locations) that turns the mean of c into that sum. Standard
    layers only: the bundle loads in safe mode."""
    from keras import layers

    rows, cols = int(e.shape[1]), int(e.shape[2])
    flat = layers.Reshape((rows * cols, 1), name="head_flat", dtype="float32")(e)
    sharp = layers.Rescaling(float(sharpness), name="head_sharpness", dtype="float32")(flat)
    weights = layers.Softmax(axis=1, name="head_weights", dtype="float32")(sharp)
    share = layers.Multiply(name="head_share", dtype="float32")([weights, flat])
    c = layers.Reshape((rows, cols, 1), name="head_contribution", dtype="float32")(share)
    return c, float(rows * cols)


def cam_training_model(model):
    """The same weights with two outputs: the class probabilities and the per-location class
    logits the box loss sees — ``head_cam``, or with ``model.cam_pool`` the evidence map e
    itself as (−e/2, +e/2), not its weighted shares."""
    import keras
    from keras import layers

    names = {layer.name for layer in model.layers}
    if "head_weights" not in names:
        return keras.Model(model.input, [model.output, model.get_layer(CAM_LAYER).output])
    # softmax-weighted pooling: the box loss judges the evidence e at every location, not its
    # weighted share of the decision
    e = model.get_layer("head_evidence").output
    pair = layers.Concatenate(name="head_evidence_pair", dtype="float32")(
        [layers.Rescaling(-0.5, dtype="float32")(e), layers.Rescaling(0.5, dtype="float32")(e)]
    )
    return keras.Model(model.input, [model.output, pair])


def is_head_layer(layer) -> bool:
    """A layer of the classification head (trained in the frozen-backbone phase)."""
    return layer.name.startswith("head_") or layer.name == OUTPUT_NAME


def set_trainable(model, mc: ModelConfig, *, phase: str, freeze_batchnorm: bool = False) -> int:
    """Freeze layers for a training phase; return the number of trainable weights.

    ``"head"``: only the head trains (the backbone is frozen: its ImageNet features are kept
    while the new head finds its footing). ``"train"``/``"fine_tune"``: layers before
    ``mc.fine_tune_from`` stay frozen, the rest train; with ``freeze_batchnorm`` the
    BatchNormalization layers stay frozen too (in Keras a frozen BatchNormalization runs in
    inference mode, so its ImageNet statistics are kept).
    """
    from keras import layers

    for i, layer in enumerate(model.layers):
        if phase == "head":
            layer.trainable = is_head_layer(layer)
        else:
            frozen = i < mc.fine_tune_from or (
                freeze_batchnorm and isinstance(layer, layers.BatchNormalization)
            )
            layer.trainable = not frozen
    return len(model.trainable_weights)


def compile_model(
    model,
    learning_rate: float,
    n_classes: int,
    head: TrainerHead | None = None,
    *,
    map_loss=None,
    map_weight: float = 1.0,
) -> None:
    """Adam + the head's loss (:mod:`trainer.heads`; default: categorical cross-entropy), with
    its accuracy and AUC (the monitored metric).

    AUC is computed per output column and averaged (``multi_label=True``): for a two-class
    softmax both columns give the positive class's ROC AUC, for more classes it is the macro
    one-vs-rest AUC. (Keras' default flattens all columns into one ROC, which rewards a model
    that only predicts the class prior.) 1000 thresholds rather than 200: a small model's
    probabilities often crowd into a narrow band, where 200 bins tie many of them. A
    multi-label model (independent sigmoid findings) trains on binary cross-entropy; its AUC is
    the mean of the findings' AUCs.
    """
    import keras

    head = head or trainer_head("softmax")
    loss = head.loss()
    metrics = [
        head.accuracy(),
        keras.metrics.AUC(name="auc", multi_label=True, num_labels=n_classes, num_thresholds=1000),
    ]
    if map_loss is not None:  # box supervision: (class output, head_cam map) — trainer.boxes
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss=[loss, map_loss],
            loss_weights=[1.0, float(map_weight)],
            metrics=[metrics, []],
        )
        return
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics
    )
