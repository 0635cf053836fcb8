"""Live model quality: labels that arrive late, joined to the predictions the service logged, measured per window.

Data drift says the inputs moved; only labels say whether the model got worse. Each logged prediction takes the
label of the same entity whose event time is nearest to when it was scored (within the spec's tolerance), among the
labels known by a given time. Each window's ROC AUC is then held against the model's own, on its test window.
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import norm

from cicloml.estimation import Calibration, PerformanceEstimate, estimate_performance, roc_auc_standard_error
from cicloml.evaluation import Metrics, evaluate_scores
from cicloml.prediction_log import rows_disagreement
from cicloml.spec import LabelsSpec, QualitySpec

LABEL_COLUMN = "label"


class WindowQuality(BaseModel):
    window_start: datetime
    predictions: int
    """Predictions logged in the window (only those for entities)."""
    profiled_rows: int | None = None
    """Rows the traffic profiles hold for the window, to hold against `predictions`; None when not counted (traffic
    not profiled)."""
    labelled: int
    metrics: Metrics | None
    """Scores against labels at the model's threshold; None without labelled predictions."""
    judged: bool
    """Enough labels of both classes (`min_labels`) to hold the window against the model's baseline."""
    roc_auc_interval: tuple[float, float] | None = None
    """The realized ROC AUC's interval at `quality.confidence`."""
    degraded: bool
    """Judged, and the whole interval lies below the model's baseline − `quality.max_drop`."""
    estimate: PerformanceEstimate | None = None
    """The performance estimated from the window's scores alone, as the drift check estimated it before labels
    (the same scores and calibration give the same estimate); None without a calibration."""
    concept_drift: bool = False
    """Degraded, but the estimate did not foresee it: the scores looked as good as at training, the outcomes
    changed. Probable concept drift, which only retraining on new labels fixes."""

    @property
    def estimate_gap(self) -> float | None:
        """Realized minus estimated ROC AUC."""
        if self.estimate is None or self.estimate.roc_auc is None or self.metrics is None:
            return None
        return None if self.metrics.roc_auc is None else self.metrics.roc_auc - self.estimate.roc_auc

    @property
    def rows_disagreement(self) -> str | None:
        """A line for the report when the profiled and logged rows differ, else None."""
        return rows_disagreement(self.profiled_rows, self.predictions)


class QualityReport(BaseModel):
    """A model's live quality per window, from its logged predictions and the labels known by `known_by`."""

    model_tag: str
    known_by: datetime
    baseline_roc_auc: float
    """The model's ROC AUC on its test window, at training."""
    max_drop: float
    confidence: float = 0.9
    """The confidence of each window's ROC AUC interval."""
    min_labels: int
    windows: list[WindowQuality]

    @property
    def degraded_windows(self) -> list[WindowQuality]:
        return [window for window in self.windows if window.degraded]

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_windows)

    @property
    def title(self) -> str:
        if not any(window.judged for window in self.windows):
            return "not enough labels yet"
        if any(window.concept_drift for window in self.windows):
            return "quality dropped: probable concept drift"
        return "quality dropped" if self.degraded else "quality held"

    def markdown(self) -> str:
        lines = [
            f"# Live quality of {self.model_tag}: {self.title}",
            "",
            f"Labels known by {self.known_by:%Y-%m-%d %H:%M} UTC. ROC AUC at training (test window): "
            f"**{self.baseline_roc_auc:.3f}**; a window whose ROC AUC's {self.confidence:.0%} interval lies wholly "
            f"more than {self.max_drop} below it has degraded (judged from {self.min_labels} labelled predictions).",
            "",
            "| window (UTC) | predictions | labelled | ROC AUC | change | estimated before labels | realized − "
            "estimated | PR AUC | log loss | positives | verdict |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for window in self.windows:
            metrics = window.metrics
            auc = metrics.roc_auc if metrics else None
            verdict = "degraded" if window.degraded else ("ok" if window.judged else "too few labels")
            if window.concept_drift:
                verdict = "degraded, unforeseen: probable concept drift"
            estimate = window.estimate.describe() if window.estimate else "–"
            change = None if auc is None else auc - self.baseline_roc_auc
            lines.append(
                f"| {window.window_start:%Y-%m-%d %H:%M:%S} | {window.predictions} | {window.labelled} "
                f"| {_auc(auc, window.roc_auc_interval)} | {_number(change, signed=True)} "
                f"| {estimate} | {_number(window.estimate_gap, signed=True)} "
                f"| {_number(metrics.pr_auc if metrics else None)} | {_number(metrics.log_loss if metrics else None)} "
                f"| {_number(metrics.positive_rate if metrics else None)} | {verdict} |"
            )
        notes = [
            f"- Window {window.window_start:%Y-%m-%d %H:%M:%S}: {note}"
            for window in self.windows
            if (note := window.rows_disagreement)
        ]
        return "\n".join([*lines, *([""] if notes else []), *notes])


def join_labels(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    spec: LabelsSpec,
    entity_keys: Sequence[str],
    known_by: datetime,
    within: timedelta,
) -> pd.DataFrame:
    """`predictions` (as `read_prediction_log` returns them) with a `label` column: the label of the same entity
    (all its join keys equal) whose event time is nearest to `scored_at`, within `within`, among labels known by
    `known_by`; NaN if none."""
    keys = list(entity_keys)
    missing = [column for column in (*keys, spec.event_time, spec.column) if column not in labels.columns]
    if missing:
        raise ValueError(
            f"label table lacks column(s) {', '.join(missing)} (labels.* in the project spec; join keys "
            f"{', '.join(keys)})"
        )
    known = labels
    if spec.available_time is not None:
        known = labels[pd.to_datetime(labels[spec.available_time], utc=True) <= pd.Timestamp(known_by)]
    right = pd.DataFrame(
        {
            **{key: known[key].to_numpy() for key in keys},
            "labelled_at": _utc_ns(known[spec.event_time]),
            LABEL_COLUMN: known[spec.column].to_numpy(dtype=float),
        }
    ).sort_values("labelled_at", kind="stable")
    left = predictions.assign(
        **{key: pd.Series(dtype=right[key].dtype) for key in keys if key not in predictions},  # an empty log
        scored_at=_utc_ns(predictions["scored_at"]),
    ).sort_values("scored_at", kind="stable")
    for key in keys:
        if left[key].dtype != right[key].dtype:  # e.g. ids logged as strings, labels keyed by int
            left[key], right[key] = left[key].astype(str), right[key].astype(str)
    joined = pd.merge_asof(
        left, right, left_on="scored_at", right_on="labelled_at", by=keys, direction="nearest", tolerance=within
    )
    return joined.drop(columns="labelled_at")


def assess_quality(
    joined: pd.DataFrame,
    *,
    model_tag: str,
    baseline_roc_auc: float,
    threshold: float,
    spec: QualitySpec,
    known_by: datetime,
    calibration: Calibration | None = None,
) -> QualityReport:
    """Measure each window of `joined` (from `join_labels`) and judge it against the model's baseline ROC AUC; with
    the model's `calibration`, hold each window's realized quality against its estimate from the scores alone."""
    windows = []
    for window_start, rows in joined.groupby("window_start", sort=True):
        estimate = None
        if calibration is not None:
            estimate = estimate_performance(rows["score"].to_numpy(dtype=float), calibration, threshold=threshold)
        labelled = rows[rows[LABEL_COLUMN].notna()]
        metrics = None
        if len(labelled):
            scores, outcomes = labelled["score"].to_numpy(dtype=float), labelled[LABEL_COLUMN].to_numpy(dtype=np.int64)
            metrics = evaluate_scores(scores, outcomes, threshold=threshold).overall
        judged = metrics is not None and metrics.roc_auc is not None and len(labelled) >= spec.min_labels
        interval = None
        if metrics is not None and metrics.roc_auc is not None:
            positives = int(labelled[LABEL_COLUMN].sum())
            interval = roc_auc_interval(metrics.roc_auc, positives, len(labelled) - positives, spec.confidence)
        bar = baseline_roc_auc - spec.max_drop
        degraded = judged and interval is not None and interval[1] < bar
        foreseen = estimate is not None and estimate.roc_auc_interval is not None and estimate.roc_auc_interval[1] < bar
        windows.append(
            WindowQuality(
                window_start=window_start.to_pydatetime(),
                predictions=len(rows),
                labelled=len(labelled),
                metrics=metrics,
                judged=judged,
                roc_auc_interval=interval,
                degraded=degraded,
                estimate=estimate,
                concept_drift=degraded and estimate is not None and not foreseen,
            )
        )
    return QualityReport(
        model_tag=model_tag,
        known_by=known_by,
        baseline_roc_auc=baseline_roc_auc,
        max_drop=spec.max_drop,
        confidence=spec.confidence,
        min_labels=spec.min_labels,
        windows=windows,
    )


def roc_auc_interval(roc_auc: float, positives: int, negatives: int, confidence: float) -> tuple[float, float]:
    """A normal interval around a ROC AUC with Hanley and McNeil's standard error; clipped to [0, 1]."""
    half = float(norm.ppf(0.5 + confidence / 2)) * roc_auc_standard_error(roc_auc, positives, negatives)
    return max(0.0, roc_auc - half), min(1.0, roc_auc + half)


def _utc_ns(values: pd.Series) -> pd.Series:
    # merge_asof needs both time columns in one dtype; Parquet round trips give microseconds, pandas nanoseconds.
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def _auc(value: float | None, interval: tuple[float, float] | None) -> str:
    return _number(value) if interval is None else f"{_number(value)} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _number(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
