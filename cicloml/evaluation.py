"""Evaluation of a binary classifier's scores: metrics, calibration and slices as an `EvalReport` value.

Scores are P(label=1). `choose_threshold` picks the decision threshold on a validation set; `evaluate_scores`
measures a test set at that threshold, overall and per slice (each value of each column the caller passes);
`plot_evaluation` and `render_markdown` turn the result into figures and a document a person reads.
"""

import base64
import io

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from cicloml.errors import DataError

CALIBRATION_BINS = 10
HEADLINE_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "f1")
"""The metrics `EvalReport.summary` reports, e.g. as lineage metadata on a registered model."""
TABLE_METRICS = (*HEADLINE_METRICS, "precision", "recall")
MISSING_SLICE = "missing"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class Metrics(_Value):
    """Quality of scores against labels; the AUCs are None where undefined (only one class present)."""

    roc_auc: float | None
    pr_auc: float | None
    """Average precision."""
    log_loss: float
    brier: float
    f1: float
    """At the report's threshold, like precision and recall."""
    precision: float
    recall: float
    positive_rate: float
    """Share of rows with label 1."""
    rows: int


class CalibrationBin(_Value):
    """Scores in [lower, upper) (the last bin includes 1.0): how often they were right on average."""

    lower: float
    upper: float
    mean_score: float
    observed_rate: float
    rows: int


class SliceMetrics(_Value):
    """Metrics of the rows where `column` equals `value` (missing values are the slice "missing")."""

    column: str
    value: str
    metrics: Metrics


class EvalReport(_Value):
    """A model's scores on a test set, measured at one threshold: overall, by calibration bin and by slice."""

    threshold: float
    """Scores at or above it predict label 1."""
    overall: Metrics
    calibration: list[CalibrationBin]
    """Equal-width bins over [0, 1]; empty bins omitted."""
    slices: list[SliceMetrics]
    min_slice_rows: int
    """Slices smaller than this are reported but never the worst slice: their AUC is mostly noise."""
    worst_slice: SliceMetrics | None
    """Lowest ROC AUC among slices with at least `min_slice_rows` rows and both classes."""

    def summary(self) -> dict[str, float]:
        """The headline metrics as a flat dict; an undefined metric is left out rather than stored as NaN."""
        values = self.overall.model_dump(include=set(HEADLINE_METRICS))
        return {name: values[name] for name in HEADLINE_METRICS if values[name] is not None}


# --- scoring ---------------------------------------------------------------------------------------------------


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold that maximizes F1 on (validation) scores; ties go to the highest threshold."""
    scores, labels = _check_inputs(scores, labels)
    if not labels.any():
        raise DataError("choose_threshold needs at least one row with label 1; F1 is undefined without positives")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    # The last row of each run of equal scores: predicting 1 for scores >= that score predicts exactly rows[:i+1].
    ends = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    f1 = 2 * true_positives[ends] / (ends + 1 + labels.sum())
    best = int(np.argmax(f1))
    # Halfway to the next lower score predicts the same on this set and leaves a margin for unseen scores.
    if best + 1 < len(ends):
        return float((sorted_scores[ends[best]] + sorted_scores[ends[best + 1]]) / 2)
    return float(sorted_scores[ends[best]])


def evaluate_scores(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float,
    slices: pd.DataFrame | None = None,
    min_slice_rows: int = 30,
) -> EvalReport:
    """Measure scores against labels at `threshold`, overall, in calibration bins and per slice.

    `slices` holds one column per slicing attribute, row-aligned with `scores` (its index is ignored); every
    distinct value of every column is a slice.
    """
    scores, labels = _check_inputs(scores, labels)
    slice_metrics = [] if slices is None else _slice_metrics(scores, labels, threshold, slices)
    candidates = [
        item for item in slice_metrics if item.metrics.rows >= min_slice_rows and item.metrics.roc_auc is not None
    ]
    return EvalReport(
        threshold=threshold,
        overall=_metrics(scores, labels, threshold),
        calibration=_calibration_bins(scores, labels),
        slices=slice_metrics,
        min_slice_rows=min_slice_rows,
        worst_slice=min(candidates, key=lambda item: item.metrics.roc_auc, default=None),
    )


def _check_inputs(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise DataError(f"scores and labels must be 1-D (got shapes {scores.shape} and {labels.shape})")
    if len(scores) != len(labels):
        raise DataError(f"scores and labels differ in length ({len(scores)} and {len(labels)})")
    if len(scores) == 0:
        raise DataError("nothing to evaluate: scores and labels are empty")
    if not np.all((scores >= 0) & (scores <= 1)):
        raise DataError("scores must be probabilities of label 1, in [0, 1] (found values outside or NaN)")
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"labels must be 0 or 1 (found {sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]})")
    return scores, labels.astype(int)


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> Metrics:
    predicted = (scores >= threshold).astype(int)
    both_classes = 0 < labels.sum() < len(labels)
    return Metrics(
        roc_auc=float(roc_auc_score(labels, scores)) if both_classes else None,
        pr_auc=float(average_precision_score(labels, scores)) if both_classes else None,
        log_loss=float(log_loss(labels, scores, labels=[0, 1])),
        brier=float(brier_score_loss(labels, scores, labels=[0, 1])),
        f1=float(f1_score(labels, predicted, zero_division=0.0)),
        precision=float(precision_score(labels, predicted, zero_division=0.0)),
        recall=float(recall_score(labels, predicted, zero_division=0.0)),
        positive_rate=float(labels.mean()),
        rows=len(labels),
    )


def _calibration_bins(scores: np.ndarray, labels: np.ndarray) -> list[CalibrationBin]:
    # A score of exactly 1.0 belongs to the last bin, not an eleventh one.
    bin_of = np.minimum((scores * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    bins = []
    for index in np.unique(bin_of):
        in_bin = bin_of == index
        bins.append(
            CalibrationBin(
                lower=index / CALIBRATION_BINS,
                upper=(index + 1) / CALIBRATION_BINS,
                mean_score=float(scores[in_bin].mean()),
                observed_rate=float(labels[in_bin].mean()),
                rows=int(in_bin.sum()),
            )
        )
    return bins


def _slice_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float, slices: pd.DataFrame
) -> list[SliceMetrics]:
    if len(slices) != len(scores):
        raise DataError(f"slices has {len(slices)} rows but there are {len(scores)} scores; they must be aligned")
    result = []
    for column in slices.columns:
        series = slices[column]
        values = np.where(series.isna().to_numpy(), MISSING_SLICE, series.astype(str).to_numpy())
        for value in np.unique(values):
            in_slice = values == value
            metrics = _metrics(scores[in_slice], labels[in_slice], threshold)
            result.append(SliceMetrics(column=str(column), value=str(value), metrics=metrics))
    return result


# --- figures ---------------------------------------------------------------------------------------------------


def plot_evaluation(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, bytes]:
    """PNG figures by name: "roc", "precision_recall", "calibration" and "confusion_matrix"."""
    scores, labels = _check_inputs(scores, labels)
    both_classes = 0 < labels.sum() < len(labels)
    plots = {
        "roc": _plot_roc,
        "precision_recall": _plot_precision_recall,
        "calibration": _plot_calibration,
        "confusion_matrix": _plot_confusion_matrix,
    }
    images = {}
    for name, plot in plots.items():
        # A bare Figure (not pyplot) keeps no global figure registry and needs no display, so it is thread-safe.
        figure = Figure(figsize=(4.5, 4), dpi=100, layout="constrained")
        axes = figure.add_subplot()
        if name in ("roc", "precision_recall") and not both_classes:
            axes.text(0.5, 0.5, "undefined: only one class in labels", ha="center", va="center")
        else:
            plot(axes, scores, labels, threshold)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        images[name] = buffer.getvalue()
    return images


def _plot_roc(axes: Axes, scores: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUC {roc_auc_score(labels, scores):.3f}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    predicted = scores >= threshold
    operating_point = (predicted[labels == 0].mean(), predicted[labels == 1].mean())
    axes.scatter(*operating_point, color="black", zorder=3, label=f"threshold {threshold:.3f}")
    axes.set(title="ROC curve", xlabel="False positive rate", ylabel="True positive rate")
    axes.legend(loc="lower right")


def _plot_precision_recall(axes: Axes, scores: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    precision, recall, _ = precision_recall_curve(labels, scores)
    axes.step(recall, precision, where="post", label=f"AP {average_precision_score(labels, scores):.3f}")
    axes.axhline(labels.mean(), linestyle="--", color="grey", label="positive rate")
    predicted = (scores >= threshold).astype(int)
    operating_point = (recall_score(labels, predicted), precision_score(labels, predicted, zero_division=0.0))
    axes.scatter(*operating_point, color="black", zorder=3, label=f"threshold {threshold:.3f}")
    axes.set(title="Precision-recall curve", xlabel="Recall", ylabel="Precision", ylim=(0, 1.02))
    axes.legend(loc="lower left")


def _plot_calibration(axes: Axes, scores: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    bins = _calibration_bins(scores, labels)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot([b.mean_score for b in bins], [b.observed_rate for b in bins], marker="o", label="model")
    axes.set(title="Calibration", xlabel="Mean score", ylabel="Observed rate of label 1", xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="upper left")


def _plot_confusion_matrix(axes: Axes, scores: np.ndarray, labels: np.ndarray, threshold: float) -> None:
    counts = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])
    axes.imshow(counts, cmap="Blues")
    for (actual, predicted), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axes.text(predicted, actual, str(count), ha="center", va="center", color=color)
    axes.set(title=f"Confusion matrix (threshold {threshold:.3f})", xlabel="Predicted", ylabel="Actual")
    axes.set(xticks=[0, 1], yticks=[0, 1])


# --- markdown --------------------------------------------------------------------------------------------------


def render_markdown(
    report: EvalReport, *, champion: EvalReport | None = None, images: dict[str, bytes] | None = None
) -> str:
    """A markdown document of the report (e.g. a Prefect artifact), compared with the champion's if given."""
    lines = ["# Evaluation", "", f"{report.overall.rows} rows, threshold {report.threshold:.4f}.", ""]
    lines += _headline_table(report, champion)
    lines += ["", "## Worst slice", "", _describe_worst_slice(report), ""]
    if report.slices:
        lines += ["## Slices", "", "| column | value | rows | positive rate | ROC AUC | PR AUC | F1 |"]
        lines.append("|---|---|---:|---:|---:|---:|---:|")
        for item in report.slices:
            m = item.metrics
            lines.append(
                f"| {item.column} | {_escape(item.value)} | {m.rows} | {m.positive_rate:.3f} "
                f"| {_number(m.roc_auc)} | {_number(m.pr_auc)} | {m.f1:.4f} |"
            )
        lines.append("")
    lines += ["## Calibration", "", "| scores | rows | mean score | observed rate |", "|---|---:|---:|---:|"]
    lines += [
        f"| {b.lower:.1f}–{b.upper:.1f} | {b.rows} | {b.mean_score:.3f} | {b.observed_rate:.3f} |"
        for b in report.calibration
    ]
    if images:
        lines += ["", "## Figures", ""]
        lines += [
            f"![{name}](data:image/png;base64,{base64.b64encode(png).decode()})\n" for name, png in images.items()
        ]
    return "\n".join(lines).rstrip() + "\n"


def _headline_table(report: EvalReport, champion: EvalReport | None) -> list[str]:
    ours = report.overall.model_dump()
    if champion is None:
        lines = ["| metric | value |", "|---|---:|"]
        return lines + [f"| {_label(name)} | {_number(ours[name])} |" for name in TABLE_METRICS]
    theirs = champion.overall.model_dump()
    lines = ["| metric | value | champion | Δ vs champion |", "|---|---:|---:|---:|"]
    for name in TABLE_METRICS:
        delta = None if ours[name] is None or theirs[name] is None else ours[name] - theirs[name]
        lines.append(
            f"| {_label(name)} | {_number(ours[name])} | {_number(theirs[name])} | {_number(delta, signed=True)} |"
        )
    return lines


def _label(metric: str) -> str:
    # A negative delta is good news for losses and bad news for everything else: say which is which.
    return f"{metric} (lower is better)" if metric in ("log_loss", "brier") else metric


def _describe_worst_slice(report: EvalReport) -> str:
    worst = report.worst_slice
    if worst is None:
        return f"No slice has at least {report.min_slice_rows} rows and both classes."
    return (
        f"**{worst.column} = {_escape(worst.value)}**: ROC AUC {_number(worst.metrics.roc_auc)} on "
        f"{worst.metrics.rows} rows (overall {_number(report.overall.roc_auc)})."
    )


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _escape(text: str) -> str:
    """Slice values are data: keep a `|` in one from splitting the table cell."""
    return text.replace("|", "\\|")
