"""The trainer's configuration: one TOML file, documented defaults, written back resolved.

Every field has a default (below, and in ``trainer/configs/default.toml`` with comments). A
config file only needs the fields it changes. :func:`load_config` reads it with :mod:`tomllib`,
rejects unknown keys and bad values with a :class:`TrainingError`, and :func:`dump_config`
writes the resolved config (every field) as TOML, so ``config.resolved.toml`` next to a run's
outputs reproduces the run: seeds make splits, sampling, augmentation and initialisation
repeatable: with ``train.deterministic`` (default) TensorFlow runs deterministic kernels, so
the same config on the same machine gives the same weights bit for bit.

Paths may start with ``{shared_data}``, which stands for the team's real data folder
(``../shared/data`` or ``$CXR_SHARED_DATA``, see :func:`cxr_viewer.core.paths.shared_data_dir`).
Other relative paths are relative to the current working directory.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_viewer.core.errors import TrainingError

FORMATS = ("covid_chestxray", "pediatric_pneumonia", "class_folders", "rsna", "csv")
TASKS = ("binary", "three_class")
STRATEGIES = ("none", "class_weight", "oversample")
ARCHITECTURES = ("dcnn_resnet", "resnet50v2", "resnet101v2", "mobilenet", "mobilenetv2")
MONITORS = ("val_auc", "val_loss", "val_accuracy")
THRESHOLD_RULES = ("youden", "f1", "sensitivity")
#: the ``model.head`` values: the heads of trainer/heads.py (TRAINER_HEADS), checked here
HEADS = ("softmax", "multilabel", "cam")
DISTRIBUTE = ("auto", "mirrored", "multiworker", "none")
#: manifest labels meaning "none of the findings" (multi-label)
NO_FINDING_LABELS = ("no_finding", "No Finding", "none", "")


@dataclass
class DataConfig:
    #: covid_chestxray | pediatric_pneumonia | class_folders | rsna | csv
    format: str = "covid_chestxray"
    #: dataset folder (the CSV file itself for format = "csv")
    root: str = "{shared_data}/covid-chestxray-subset"
    #: covid_chestxray: "binary" (non-COVID-19 / COVID-19) or "three_class" (normal / COVID-19 /
    #: other_pneumonia); pediatric_pneumonia: "binary" (NORMAL / PNEUMONIA) or "three_class"
    #: (normal / bacteria / virus)
    task: str = "binary"
    #: covid_chestxray: the views kept (metadata.csv "view" column); empty = all
    views: list[str] = field(default_factory=lambda: ["PA", "AP", "AP Supine"])
    #: class order (index = model output); empty = the reader's own order
    class_names: list[str] = field(default_factory=list)
    #: keep at most this many images (patient-level stratified subsample); 0 = all
    max_images: int = 0
    #: where decoded, resized images are cached; "" = <run dir>/cache
    cache_dir: str = ""
    #: threads decoding images into the cache
    workers: int = 2
    #: format = "csv": the CSV's own column names for the manifest fields, e.g.
    #: {path = "filename", label = "finding"}; fields not named keep their own name (path, label,
    #: patient_id, view, source)
    columns: dict[str, str] = field(default_factory=dict)
    #: CSV label → class name, e.g. {"Normal" = "no_opacity", "Lung Opacity" = "lung_opacity"};
    #: empty = labels are class names. A label the map does not name is an error
    label_map: dict[str, str] = field(default_factory=dict)
    #: refuse to train when more than this fraction of the listed images is missing or
    #: unreadable (every skipped file is listed in <run>/skipped_files.csv and the report)
    max_skipped_fraction: float = 0.02


@dataclass
class BoxesConfig:
    """Box supervision (model.head = "cam"): radiologists' boxes teach the model *where* its
    class evidence lies (a per-location multiple-instance loss on the class-activation map, Li et
    al., CVPR 2018). Boxes of validation films are only used to report localization; boxes of
    test films are never read by the trainer."""

    #: box CSV (filename, finding, x, y, w, h, image_width, image_height[, patient_id]);
    #: filenames relative to the CSV's folder. "" = no box supervision
    csv: str = ""
    #: box finding → class it is evidence for, e.g. {"Lung Opacity" = "lung_opacity"}; empty =
    #: the finding name is the class name
    class_map: dict[str, str] = field(default_factory=dict)
    #: weight of the per-location loss beside the classification loss (0 = boxes only scored)
    loss_weight: float = 1.0
    #: share of the boxed training films whose boxes are used (seeded choice; 0..1)
    share: float = 1.0
    #: weight of the "nothing anywhere" loss on the maps of films of the other classes
    negative_weight: float = 1.0
    #: score the validation maps against the validation boxes in the report (anatomy prior
    #: fitted on the training boxes)
    report_localization: bool = True


@dataclass
class SplitConfig:
    #: fractions of *patients* (stratified by label) in validation and test
    val_fraction: float = 0.15
    test_fraction: float = 0.2


@dataclass
class AugmentConfig:
    #: on the fly, training set only (keras preprocessing layers)
    enabled: bool = True
    #: maximum rotation in degrees
    rotation: float = 10.0
    #: maximum shift, fraction of height/width
    shift: float = 0.1
    #: maximum zoom, fraction
    zoom: float = 0.1
    #: maximum brightness change, fraction of the value range
    brightness: float = 0.1
    #: off by default: chest anatomy is not left/right symmetric
    horizontal_flip: bool = False


@dataclass
class ImbalanceConfig:
    #: none | class_weight (inverse frequency × multiplier) | oversample (RandomOverSampler)
    strategy: str = "class_weight"
    #: class name → extra factor on its weight (class_weight strategy)
    class_multipliers: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelConfig:
    #: dcnn_resnet | resnet50v2 | resnet101v2 | mobilenet (v1) | mobilenetv2
    architecture: str = "dcnn_resnet"
    #: square input side in pixels
    input_size: int = 224
    #: 1 or 3 (greyscale repeated). With a pretrained RGB backbone and channels = 1 the model
    #: repeats the grey channel itself (layer "grey_to_rgb"): same weights, a third of the input
    channels: int = 3
    #: "unit" ([0, 1]) or "symmetric" ([-1, 1]); "" = per architecture (unit for dcnn_resnet)
    preprocessing: str = ""
    #: backbone weights (keras.applications' no-top file): a local path, "imagenet" (Keras
    #: downloads and caches it; needs internet once) or "" (random initialisation)
    weights: str = ""
    #: MobileNet / MobileNetV2 width multiplier
    alpha: float = 1.0
    #: first backbone layer (index) that is trained; earlier ones are frozen. 0 = train all
    fine_tune_from: int = 0
    #: the backbone layer the head reads ("" = its last). An earlier, finer layer gives a
    #: finer map, e.g. MobileNet's "conv_pw_11_relu": 14×14 at 224 px instead of 7×7
    feature_layer: str = ""
    #: "softmax" (one class per image), "multilabel" (independent sigmoid findings; the
    #: manifest label lists an image's findings joined by "|", "no_finding" for none) or "cam"
    #: (the class-activation head): trainer/heads.py
    head: str = "softmax"
    #: head = "cam" with two classes: how the evidence map is pooled into the decision. 0 =
    #: its mean; r > 0 = its softmax-weighted mean with sharpness r (each location weighted by
    #: exp(r·e)), so the decision leans on the locations with the most evidence
    cam_pool: float = 0.0
    #: head: GAP → Dropout(dropout) → Dense(dense_units, L2) → LeakyReLU → Dense → softmax
    dropout: float = 0.3
    dense_units: int = 64
    l2: float = 1e-4
    #: dcnn_resnet: residual blocks, filters of the first, growth factor per block
    blocks: int = 3
    init_filters: int = 32
    filter_growth: int = 2


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    #: early stopping and "best" checkpoint watch this validation metric
    monitor: str = "val_auc"
    patience: int = 6
    #: "auto" = mixed precision only when a GPU is present; "on"/"off" force it
    mixed_precision: str = "auto"
    tensorboard: bool = True
    #: deterministic TensorFlow ops (tf.config.experimental.enable_op_determinism): the same
    #: config gives the same weights, bit for bit, on the same machine
    deterministic: bool = True
    #: Keras progress bar (1), one line per epoch (2) or silent (0)
    verbose: int = 1
    #: fine-tuning a pretrained backbone, as keras.applications users do: first this many
    #: epochs train the head on a frozen backbone (at learning_rate); then the backbone is
    #: unfrozen (from model.fine_tune_from) and trained for `epochs` more at
    #: fine_tune_learning_rate. 0 = a single phase, everything trainable from the start
    head_epochs: int = 0
    #: learning rate of the fine-tuning phase (0 = learning_rate / 10)
    fine_tune_learning_rate: float = 0.0
    #: keep BatchNormalization layers frozen (inference mode) in the fine-tuning phase (with
    #: head_epochs > 0): their ImageNet statistics are not disturbed by small batches
    freeze_batchnorm: bool = True
    #: "auto" (MirroredStrategy over this machine's GPUs when it has any, else one device),
    #: "mirrored" (MirroredStrategy, one machine), "none" (one device) or "multiworker"
    #: (MultiWorkerMirroredStrategy over the machines of the TF_CONFIG environment variable;
    #: batch_size is then per replica — one per worker on CPUs, one per GPU — and the global
    #: batch is batch_size × replicas)
    distribute: str = "auto"
    #: multiworker: seconds to wait for every worker of TF_CONFIG to join before giving up
    worker_timeout: float = 600.0


@dataclass
class EvaluateConfig:
    #: binary tasks: the class whose probability is thresholded; "" = the last class
    positive_class: str = ""
    #: rule choosing the threshold on the validation set: youden (max TPR − FPR), f1, or
    #: sensitivity (the highest threshold whose validation sensitivity ≥ target_sensitivity)
    threshold_rule: str = "youden"
    #: the sensitivity the "sensitivity" rule aims for on validation
    target_sensitivity: float = 0.95
    #: fit the logistic-regression baseline on 32×32 pixels on the same split (reported beside
    #: the model)
    pixel_baseline: bool = True
    #: Grad-CAM faithfulness on at most this many test images (deletion of the top 20 % vs a
    #: random 20 %, map mass in the central 80 %); 0 = skip
    gradcam_check: int = 0
    #: the viewer flags a probability within this distance of its threshold "near threshold"
    near_threshold_band: float = 0.05


@dataclass
class ExportConfig:
    #: bundle folder; "" = <run dir>/bundle
    bundle_dir: str = ""
    #: training inputs saved as the SHAP background set
    background_size: int = 24
    #: most layers offered for per-layer SHAP
    shap_max_layers: int = 6
    #: short description in the bundle
    description: str = ""
    #: model card: who the training images came from, what the model is for and not for
    training_population: str = ""
    intended_use: str = ""
    not_for: str = ""


@dataclass
class SearchConfig:
    #: random-search trials (0 = no search); each trial trains and is scored on validation
    trials: int = 0
    #: log-uniform ranges [low, high]
    learning_rate: list[float] = field(default_factory=lambda: [1e-4, 3e-3])
    #: uniform range [low, high]
    dropout: list[float] = field(default_factory=lambda: [0.2, 0.6])
    #: choices
    dense_units: list[int] = field(default_factory=lambda: [32, 64, 128])
    #: epochs per trial (0 = train.epochs)
    epochs: int = 0


@dataclass
class Config:
    #: the bundle's name
    name: str = "cxr-lens-classifier"
    #: seeds splits, sampling, augmentation and weight initialisation
    seed: int = 42
    #: run folder (checkpoints, logs, figures, report); "" = given on the command line
    run_dir: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    boxes: BoxesConfig = field(default_factory=BoxesConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    @property
    def preprocessing(self) -> str:
        """The resolved preprocessing name (``model.preprocessing`` or the architecture's)."""
        if self.model.preprocessing:
            return self.model.preprocessing
        return "unit" if self.model.architecture == "dcnn_resnet" else "symmetric"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _bad(what: str, why: str, source: str) -> TrainingError:
    return TrainingError(
        f"Invalid configuration: {what}",
        f"{why} (in {source}).",
        "See trainer/configs/default.toml for every key, its meaning and its default.",
    )


#: config tables whose values are text (the others map names to numbers)
_STRING_TABLES = ("columns", "label_map", "class_map")


def _coerce_table(value: Any, key: str, source: str) -> dict[str, Any]:
    """A config table: text values for :data:`_STRING_TABLES`, numbers for the others."""
    if not isinstance(value, dict):
        raise _bad(key, f"expected a table, got {value!r}", source)
    if key.rsplit(".", 1)[-1] in _STRING_TABLES:
        bad = [k for k, v in value.items() if not isinstance(v, str)]
        if bad:
            raise _bad(key, f"expected text values, got {value[bad[0]]!r} for {bad[0]!r}", source)
        return {str(k): str(v) for k, v in value.items()}
    try:
        return {str(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise _bad(key, f"expected numbers, got {value!r}", source) from exc


def _coerce(value: Any, default: Any, key: str, source: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise _bad(key, f"expected true/false, got {value!r}", source)
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(key, f"expected an integer, got {value!r}", source)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(key, f"expected a number, got {value!r}", source)
        if not math.isfinite(value):
            raise _bad(key, f"expected a finite number, got {value!r}", source)
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise _bad(key, f"expected a string, got {value!r}", source)
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise _bad(key, f"expected a list, got {value!r}", source)
        return list(value)
    if isinstance(default, dict):
        return _coerce_table(value, key, source)
    return value


def _merge(obj: Any, values: dict[str, Any], prefix: str, source: str) -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise _bad(
                f"unknown key '{dotted}'", f"known keys here: {', '.join(sorted(known))}", source
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise _bad(dotted, f"expected a [{dotted}] table", source)
            _merge(current, value, f"{dotted}.", source)
        else:
            setattr(obj, key, _coerce(value, current, dotted, source))


def validate(cfg: Config, source: str = "config") -> Config:
    """Check value ranges and choices; return ``cfg`` or raise :class:`TrainingError`."""
    checks = [
        (cfg.data.format in FORMATS, "data.format", f"one of {FORMATS}"),
        (cfg.data.task in TASKS, "data.task", f"one of {TASKS}"),
        (cfg.data.max_images >= 0, "data.max_images", "≥ 0"),
        (cfg.data.workers >= 1, "data.workers", "≥ 1"),
        (0 <= cfg.data.max_skipped_fraction < 1, "data.max_skipped_fraction", "in [0, 1)"),
        (0 < cfg.split.val_fraction < 0.5, "split.val_fraction", "in (0, 0.5)"),
        (0 < cfg.split.test_fraction < 0.5, "split.test_fraction", "in (0, 0.5)"),
        (cfg.imbalance.strategy in STRATEGIES, "imbalance.strategy", f"one of {STRATEGIES}"),
        (all(v > 0 for v in cfg.imbalance.class_multipliers.values()),
         "imbalance.class_multipliers", "positive factors"),
        (cfg.model.architecture in ARCHITECTURES, "model.architecture", f"one of {ARCHITECTURES}"),
        (32 <= cfg.model.input_size <= 1024, "model.input_size", "in [32, 1024]"),
        (cfg.model.channels in (1, 3), "model.channels", "1 or 3"),
        (cfg.model.preprocessing in ("", "unit", "symmetric"), "model.preprocessing",
         '"", "unit" or "symmetric"'),
        (cfg.model.head in HEADS, "model.head", f"one of {HEADS}"),
        (cfg.model.head != "multilabel" or cfg.imbalance.strategy == "none",
         "imbalance.strategy", '"none" with model.head = "multilabel" (class weights and '
         "oversampling are single-label)"),
        (cfg.model.head != "multilabel" or cfg.data.format in ("csv",),
         "data.format", '"csv" with model.head = "multilabel" (labels are finding sets)'),
        (0 <= cfg.model.dropout < 1, "model.dropout", "in [0, 1)"),
        (math.isfinite(cfg.model.cam_pool) and cfg.model.cam_pool >= 0, "model.cam_pool",
         "a finite number ≥ 0"),
        (cfg.model.cam_pool == 0 or cfg.model.head == "cam", "model.cam_pool",
         '0 unless model.head = "cam" (it pools the class-activation map)'),
        (not cfg.boxes.csv or cfg.model.head == "cam", "model.head",
         '"cam" with [boxes] csv set (the loss acts on the class-activation map)'),
        (cfg.boxes.loss_weight >= 0, "boxes.loss_weight", "≥ 0"),
        (cfg.boxes.negative_weight >= 0, "boxes.negative_weight", "≥ 0"),
        (0 <= cfg.boxes.share <= 1, "boxes.share", "in [0, 1]"),
        (set(cfg.data.columns) <= {"path", "label", "patient_id", "view", "source"},
         "data.columns", "a table whose keys are among path, label, patient_id, view, source"),
        (cfg.model.dense_units >= 1, "model.dense_units", "≥ 1"),
        (cfg.model.blocks >= 1 and cfg.model.init_filters >= 1, "model.blocks/init_filters", "≥ 1"),
        (cfg.model.alpha > 0, "model.alpha", "> 0"),
        (cfg.model.fine_tune_from >= 0, "model.fine_tune_from", "≥ 0"),
        (not cfg.model.feature_layer or cfg.model.architecture != "dcnn_resnet",
         "model.feature_layer", '"" for dcnn_resnet (a keras.applications backbone\'s layer)'),
        (cfg.train.head_epochs >= 0, "train.head_epochs", "≥ 0"),
        (cfg.train.fine_tune_learning_rate >= 0, "train.fine_tune_learning_rate", "≥ 0"),
        (0 < cfg.evaluate.target_sensitivity < 1, "evaluate.target_sensitivity", "in (0, 1)"),
        (cfg.evaluate.gradcam_check >= 0, "evaluate.gradcam_check", "≥ 0"),
        (cfg.train.epochs >= 1, "train.epochs", "≥ 1"),
        (cfg.train.batch_size >= 1, "train.batch_size", "≥ 1"),
        (cfg.train.learning_rate > 0, "train.learning_rate", "> 0"),
        (cfg.train.monitor in MONITORS, "train.monitor", f"one of {MONITORS}"),
        (cfg.train.patience >= 1, "train.patience", "≥ 1"),
        (cfg.train.mixed_precision in ("auto", "on", "off"), "train.mixed_precision",
         "auto, on or off"),
        (cfg.train.verbose in (0, 1, 2), "train.verbose", "0, 1 or 2"),
        (cfg.train.distribute in DISTRIBUTE, "train.distribute", f"one of {DISTRIBUTE}"),
        (cfg.train.worker_timeout > 0, "train.worker_timeout", "> 0"),
        (cfg.train.distribute != "multiworker" or cfg.search.trials == 0, "search.trials",
         '0 with train.distribute = "multiworker" (the random search runs on one machine)'),
        (cfg.evaluate.threshold_rule in THRESHOLD_RULES, "evaluate.threshold_rule",
         f"one of {THRESHOLD_RULES}"),
        (0 <= cfg.evaluate.near_threshold_band <= 0.5, "evaluate.near_threshold_band",
         "in [0, 0.5]"),
        (cfg.export.background_size >= 1, "export.background_size", "≥ 1"),
        (cfg.export.shap_max_layers >= 1, "export.shap_max_layers", "≥ 1"),
        (cfg.search.trials >= 0, "search.trials", "≥ 0"),
        (len(cfg.search.learning_rate) == 2 and 0 < cfg.search.learning_rate[0]
         <= cfg.search.learning_rate[1], "search.learning_rate", "[low, high] with 0 < low ≤ high"),
        (len(cfg.search.dropout) == 2 and 0 <= cfg.search.dropout[0] <= cfg.search.dropout[1] < 1,
         "search.dropout", "[low, high] within [0, 1)"),
        (len(cfg.search.dense_units) >= 1 and all(int(u) >= 1 for u in cfg.search.dense_units),
         "search.dense_units", "a non-empty list of positive integers"),
    ]  # fmt: skip
    for ok, key, expected in checks:
        if not ok:
            raise _bad(key, f"must be {expected}", source)
    if cfg.train.head_epochs > 0 and cfg.train.fine_tune_learning_rate == 0:
        # resolved here, so config.resolved.toml records the rate really used
        cfg.train.fine_tune_learning_rate = cfg.train.learning_rate / 10
    if cfg.split.val_fraction + cfg.split.test_fraction >= 0.8:
        raise _bad("split", "val_fraction + test_fraction leaves < 20 % for training", source)
    if len(set(cfg.data.class_names)) != len(cfg.data.class_names):
        raise _bad("data.class_names", "names must be unique", source)
    return cfg


def config_from_dict(values: dict[str, Any], source: str = "config") -> Config:
    """A validated :class:`Config`: defaults overridden by ``values`` (a parsed TOML document)."""
    cfg = Config()
    _merge(cfg, values, "", source)
    return validate(cfg, source)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Read a TOML config (or only the defaults when ``path`` is None) and apply ``overrides``.

    ``overrides`` maps dotted keys (``"train.epochs"``) to values, as the CLI's ``--set`` gives.
    """
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                values = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise TrainingError(
                f"Config file not found: {path}",
                "the file does not exist",
                "Pass an existing .toml file to --config.",
            ) from exc
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TrainingError(
                f"Cannot read the config file {path}",
                str(exc),
                "Fix the TOML syntax (see trainer/configs/default.toml).",
            ) from exc
    for dotted, value in (overrides or {}).items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise _bad(dotted, f"'{part}' is not a table", "--set")
        node[leaf] = value
    return config_from_dict(values, source)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.epochs=3"`` → ``("train.epochs", 3)``; the value is parsed as a TOML value."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise TrainingError(f"Bad --set '{text}'", "expected KEY=VALUE, e.g. train.epochs=3")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string
    return key.strip(), value


# --- writing -----------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def dump_config(cfg: Config) -> str:
    """The resolved config as TOML (every key; reading it back gives an equal config)."""
    d = cfg.to_dict()
    lines = ["# resolved CXR Lens trainer config: every key, defaults included"]
    tables = {k: v for k, v in d.items() if isinstance(v, dict) and k != "class_multipliers"}
    for key, value in d.items():
        if key not in tables:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for table, values in tables.items():
        lines.append("")
        lines.append(f"[{table}]")
        for key, value in values.items():
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def write_config(cfg: Config, path: str | Path) -> Path:
    """Write :func:`dump_config` to ``path``; return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(cfg), encoding="utf-8")
    return path


def resolve_path(text: str) -> Path:
    """Expand ``{shared_data}`` and ``~`` in a config path."""
    if "{shared_data}" in text:
        from cxr_viewer.core.paths import shared_data_dir

        shared = shared_data_dir()
        if shared is None:
            raise TrainingError(
                f"Cannot resolve '{text}'",
                "the team's shared data folder (../shared/data) is not present.",
                "Set CXR_SHARED_DATA to its location, or give data.root as a real path.",
            )
        text = text.replace("{shared_data}", str(shared))
    return Path(text).expanduser()
