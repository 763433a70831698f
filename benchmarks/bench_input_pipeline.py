"""Input pipeline vs training step: is the tf.data pipeline ever the bottleneck?

Measures, in the same process and on the same images:

1. **decode** — first pass: ``load_study`` → display → resize into the float16 cache
   (happens once per dataset; images/s, for information);
2. **pipeline** — the training ``tf.data`` pipeline alone (shuffle, gather + ``normalize``,
   augmentation, prefetch), iterated without a model: images/s;
3. **model** — the model's own training step (``model.fit`` on one batch repeated in memory, so
   no input cost at all): images/s.

Prints the ratio pipeline / model; above 1 the pipeline keeps the model busy (prefetch overlaps
the two), below 1 the model would wait for data. Uses the real COVID-19 subset when
``../shared/data`` is present, else phantoms.

    python benchmarks/bench_input_pipeline.py [--config trainer/configs/pneumonia.toml]
        [--batches 20] [--no-augment]

The input size, channels, model and batch size come from the config (default: the demo
bundle's, trainer/configs/pneumonia.toml).

Exit status 1 if the pipeline is slower than the model step.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _images(tmp: Path) -> tuple[list[str], str]:
    from cxr_viewer.core.paths import shared_data_dir
    from trainer.datasets import read_covid_chestxray

    shared = shared_data_dir()
    if shared and (shared / "covid-chestxray-subset").is_dir():
        m = read_covid_chestxray(shared / "covid-chestxray-subset")
        return m[
            "path"
        ].tolist(), f"real covid-chestxray subset ({len(m)} images, ≤512 px JPEG/PNG)"
    from trainer.synth import make_phantoms, write_phantoms

    manifest = write_phantoms(tmp, make_phantoms(200, 512, seed=0), formats=("png", "dicom"))
    paths = sorted(str(p) for p in (tmp / "images").iterdir())
    del manifest
    return paths, f"phantoms ({len(paths)} files, 512 px PNG + DICOM)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--config", default=str(root / "trainer" / "configs" / "pneumonia.toml"))
    ap.add_argument("--batches", type=int, default=20, help="batches timed per measurement")
    ap.add_argument("--no-augment", action="store_true")
    args = ap.parse_args()

    import numpy as np

    from trainer.cache import build_cache
    from trainer.config import load_config
    from trainer.data import input_spec_for
    from trainer.imbalance import augmentation_layers
    from trainer.models import build_model, compile_model
    from trainer.pipeline import gather_inputs, make_dataset, one_hot

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp_s:
        tmp = Path(tmp_s)
        paths, what = _images(tmp)
        cfg = load_config(args.config)
        spec = input_spec_for(cfg)
        batch = cfg.train.batch_size
        t0 = time.perf_counter()
        cache = build_cache(paths, spec, tmp / "cache", workers=2, progress=False)
        decode_s = time.perf_counter() - t0
        n = len(paths)
        rows = np.flatnonzero(cache.ok)
        labels = rows % 2
        aug = [] if args.no_augment else augmentation_layers(cfg.augment, spec.value_range, 0)
        need = batch * args.batches

        # 2. pipeline alone (repeat so every timed batch is full; one warm-up batch first)
        ds = make_dataset(
            cache.images, np.resize(rows, need + batch), np.resize(labels, need + batch),
            2, spec, batch_size=batch, shuffle=True, seed=0, augment=aug,
        )  # fmt: skip
        it = iter(ds)
        next(it)
        t0 = time.perf_counter()
        seen = 0
        for x, _ in it:
            seen += int(x.shape[0])
        pipe_s = time.perf_counter() - t0
        pipeline_ips = seen / pipe_s

        # 3. the model's own training step on an in-memory batch
        model = build_model(cfg.model, spec, 2)
        compile_model(model, cfg.train.learning_rate, 2)
        xb = gather_inputs(cache.images, rows[:batch], spec)
        yb = one_hot(labels[:batch], 2)
        model.train_on_batch(xb, yb)  # trace + warm up
        t0 = time.perf_counter()
        for _ in range(args.batches):
            model.train_on_batch(xb, yb)
        model_s = time.perf_counter() - t0
        model_ips = args.batches * batch / model_s

    ratio = pipeline_ips / model_ips
    print(
        f"data: {what}; input {spec.height}x{spec.width}x{spec.channels}, batch {batch}, "
        f"augmentation {'off' if args.no_augment else 'on'}, model {cfg.model.architecture}"
    )
    print(f"decode into cache (once) : {n / decode_s:8.1f} images/s ({n} images, {decode_s:.1f} s)")
    print(f"input pipeline (per epoch): {pipeline_ips:8.1f} images/s")
    print(f"model training step      : {model_ips:8.1f} images/s")
    print(
        f"ratio pipeline / model   : {ratio:8.2f}  ({'OK: not the bottleneck' if ratio > 1 else 'BOTTLENECK'})"
    )
    return 0 if ratio > 1 else 1


if __name__ == "__main__":
    sys.exit(main())
