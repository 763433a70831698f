"""The short Markdown report of a run: data, training, validation and test figures."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cxr_viewer.core.model.bundle import INTENDED_USE

from .config import Config


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table: the header, its rule and a line a row (each cell through _fmt)."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _metrics_table(metrics: dict, class_names: list[str]) -> list[str]:
    per = metrics["per_class"]
    lines = [
        f"- images: {metrics['n']}, accuracy **{_fmt(metrics['accuracy'])}**, "
        f"AUC **{_fmt(metrics['auc'])}**, macro F1 {_fmt(metrics['macro_f1'])}",
        "",
        *_table(
            ("class", "precision", "recall", "F1", "support"),
            (
                [
                    name,
                    *(per[name][k] for k in ("precision", "recall", "f1")),
                    str(per[name]["support"]),
                ]
                for name in class_names
            ),
        ),
    ]
    if metrics.get("sensitivity") is not None:
        lines.insert(
            1,
            f"- at the threshold: sensitivity **{_fmt(metrics['sensitivity'])}**, specificity "
            f"**{_fmt(metrics['specificity'])}**",
        )
    if metrics.get("ece") is not None:
        lines.insert(
            1, f"- calibration: expected calibration error (10 bins) {_fmt(metrics['ece'])}"
        )
    if len(class_names) > 2 and metrics.get("auc_per_class"):
        per = ", ".join(f"{k} {_fmt(v)}" for k, v in metrics["auc_per_class"].items())
        lines.insert(1, f"- one-vs-rest AUC per class: {per}")
    for sub, v in (metrics.get("sensitivity_by_subtype") or {}).items():
        lines.insert(
            1, f"- sensitivity for subtype *{sub}*: {_fmt(v['sensitivity'])} (n = {v['n']})"
        )
    cm = metrics["confusion_matrix"]
    lines += ["", "Confusion matrix (rows = true, columns = predicted):", ""]
    lines.append("| | " + " | ".join(class_names) + " |")
    lines.append("|---" * (len(class_names) + 1) + "|")
    for name, row in zip(class_names, cm, strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return lines


def write_report(
    path: Path,
    cfg: Config,
    summary: dict,
    class_names: list[str],
    evaluation: dict,
    training: dict,
    figures: list[Path],
    trials: list[dict] | None = None,
) -> Path:
    """Write ``report.md``; figure links are relative to its folder."""
    sp = summary["splits"]
    lines = [
        f"# {cfg.name}: training report",
        "",
        f"*Intended use: {INTENDED_USE}.*",
        "",
        "## Data",
        "",
        f"- source: {', '.join(summary['sources'])}; views: {', '.join(summary['views']) or 'n/a'}",
        f"- {summary['images']} images of {summary['patients']} patients "
        f"({summary.get('missing_images', 0)} listed but missing and "
        f"{summary['unreadable_images']} unreadable, skipped: all in `skipped_files.csv`); "
        "split **by patient**, stratified",
        *[f"  - skipped: `{r['path']}` ({r['reason']})" for r in summary.get("skipped_files", [])],
        "",
        *_table(
            ("split", "patients", "images", *class_names),
            (
                [s, str(sp[s]["patients"]), str(sp[s]["images"])]
                + [str(sp[s]["per_class"][c]) for c in class_names]
                for s in ("train", "val", "test")
            ),
        ),
    ]
    m = cfg.model
    lines += [
        "",
        "## Model and training",
        "",
        f"- {m.architecture}, input {m.input_size}×{m.input_size}×{m.channels} "
        f"({cfg.preprocessing}), {training.get('parameters', 'n/a')} parameters",
        f"- imbalance: {cfg.imbalance.strategy}"
        + (
            f" (class weights {training.get('class_weight')})"
            if training.get("class_weight")
            else ""
        )
        + f"; augmentation: {'on' if cfg.augment.enabled else 'off'}",
        f"- epochs run: {training.get('epochs_run')}, best epoch (by {cfg.train.monitor}): "
        f"{training.get('best_epoch')}; time in fit() over all invocations "
        f"{_fmt(training.get('fit_seconds_all_invocations'))} s; this invocation "
        f"{_fmt(training.get('wall_time_s'))} s"
        + (
            " (the trained model was reused: evaluation and export only)"
            if training.get("reused_trained_model")
            else ""
        ),
        "",
    ]
    if trials:
        lines += [
            "## Random search (selected on validation)",
            "",
            *_table(
                ("trial", "learning rate", "dropout", "dense units", "val AUC"),
                (
                    (
                        str(t["trial"]),
                        f"{t['learning_rate']:.2e}",
                        f"{t['dropout']:.2f}",
                        str(t["dense_units"]),
                        t["val_auc"],
                    )
                    for t in trials
                ),
            ),
            "",
        ]
    thr = evaluation["threshold"]
    lines += [
        "## Decision rule",
        "",
        (
            f"{evaluation['positive_class']} if p ≥ {thr:.3f} (chosen on validation by "
            f"{evaluation['threshold_rule']}"
            + (
                f", target sensitivity {evaluation['target_sensitivity']:.2f}"
                if evaluation.get("target_sensitivity")
                else ""
            )
            + "; never on test)"
            if thr is not None
            else "arg-max over classes"
        ),
        "",
        "## Validation",
        "",
        *_metrics_table(evaluation["val"], class_names),
        "",
        "## Test (held out; reported once)",
        "",
        *_metrics_table(evaluation["test"], class_names),
        "",
    ]
    base = evaluation.get("pixel_baseline")
    if base:
        model_auc = evaluation["test"]["auc"]
        verdict = (
            "the model beats it"
            if model_auc is not None
            and base["test_auc"] is not None
            and model_auc > base["test_auc"]
            else "**the model does not beat it**"
        )
        lines += [
            "## Baseline on the same split",
            "",
            f"- {base['model']}: validation AUC {_fmt(base['val_auc'])}, test AUC "
            f"**{_fmt(base['test_auc'])}**, against the model's test AUC **{_fmt(model_auc)}**: "
            f"{verdict}.",
            "",
        ]
    g = evaluation.get("gradcam_check")
    if g:
        lines += [
            "## Grad-CAM on the test split",
            "",
            f"{g['images']} test images, Grad-CAM at `{g['layer']}` for the predicted class; the "
            f"top {g['fraction_removed']:.0%} of pixels replaced with a {g['fill']}.",
            "",
            "| map removed | median drop of p | mean drop of p | median drop of log-odds |",
            "|---|---|---|---|",
            f"| Grad-CAM top {g['fraction_removed']:.0%} | {_fmt(g['median_drop_gradcam'])} | "
            f"{_fmt(g['mean_drop_gradcam'])} | {_fmt(g.get('median_log_odds_drop_gradcam'))} |",
            f"| random ({g['random_reference']}) | {_fmt(g['median_drop_random'])} | "
            f"{_fmt(g['mean_drop_random'])} | {_fmt(g.get('median_log_odds_drop_random'))} |",
            "",
            f"- ratio of median drops (Grad-CAM / random): **{_fmt(g['ratio_median_drop'])}** "
            f"in p, **{_fmt(g.get('ratio_median_log_odds_drop'))}** in log-odds (the score of "
            "the viewer's faithfulness figure; p of a confident prediction barely moves); "
            f"Grad-CAM's removal drops p more than random's on "
            f"{g['share_gradcam_beats_random']:.0%} of images",
            f"- median share of the map inside the central 80 % of the image: "
            f"**{_fmt(g['median_centre_mass'])}** (a uniform map: {_fmt(g['centre_mass_uniform_map'])};"
            f" {g['share_centre_mass_below_uniform']:.0%} of maps fall below it — border, "
            "markers or collimation edge)",
            "",
        ]
        if g.get("by_fill"):
            lines += [
                "The same removal with other fills (what the removed pixels become changes the "
                "test; a lead over random that holds under every fill is the one to believe):",
                "",
                "| removed pixels become | median drop of log-odds, Grad-CAM / random | "
                "median of (Grad-CAM − random) per film | Grad-CAM beats random |",
                "|---|---|---|---|",
            ]
            for fill, f in g["by_fill"].items():
                lines.append(
                    f"| {fill} | {_fmt(f['median_log_odds_drop_gradcam'])} / "
                    f"{_fmt(f['median_log_odds_drop_random'])} | "
                    f"{_fmt(f['median_log_odds_margin'])} | "
                    f"{f['share_gradcam_beats_random']:.0%} of films |"
                )
            lines.append("")
    if training.get("box_supervision"):
        b = training["box_supervision"]
        lines += [
            "## Box supervision",
            "",
            f"- {b['method']}",
            f"- boxes `{b['boxes_file']}`: {b['boxed_training_films_used']} of "
            f"{b['boxed_training_films_available']} boxed training films used (share "
            f"{b['share']}), loss weight {b['loss_weight']}, negative weight "
            f"{b['negative_weight']}",
            "",
        ]
    if evaluation.get("localization"):
        from .localization import markdown_section

        lines += markdown_section(evaluation["localization"])
    lines += ["## Figures", ""]
    for f in figures:
        rel = Path(f).relative_to(path.parent) if Path(f).is_relative_to(path.parent) else f
        lines.append(f"![{Path(f).stem}]({rel})")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


#: the per-finding figures of a multi-label report, in column order
_FINDING_COLUMNS = ("threshold", "val_auc", "test_auc", "test_sensitivity", "test_specificity")


def write_multilabel_report(
    path: Path, cfg, summary: dict, findings: list[str], evaluation: dict, training: dict,
    figures: list[Path],
) -> Path:  # fmt: skip
    """A short Markdown report for a multi-label run: per-finding thresholds and AUCs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# {cfg.name}",
        "",
        "Multi-label model: one sigmoid output per finding, each with its own threshold chosen "
        f"on validation ({evaluation['threshold_rule']}) and applied unchanged to test.",
        "",
        f"Data: {summary['images']} images of {summary['patients']} patients "
        f"({', '.join(summary['sources'])}), split by patient.",
        f"Training: {training.get('epochs_run', '?')} epochs, best epoch "
        f"{training.get('best_epoch', '?')}, {training.get('parameters', '?')} parameters.",
        "",
        *_table(
            ("finding", "threshold", "val AUC", "test AUC", "test sensitivity", "test specificity"),
            ([f, *(evaluation["per_finding"][f][k] for k in _FINDING_COLUMNS)] for f in findings),
        ),
        "",
        f"Mean AUC: validation {_fmt(evaluation['val']['auc'])}, "
        f"test {_fmt(evaluation['test']['auc'])}.",
        "",
        *[f"![{p.stem}]({p.name})" for p in figures],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
