"""Drift: a window of live traffic against the training reference, both as whylogs profiles.

Every feature gets a distance between the two distributions, with missing values as a category of their own, so a
feed that starts sending nulls drifts as surely as one whose values move:

- numbers: the reference's quantiles cut the line into bins (up to 20, fewer for discrete columns), and each
  profile's KLL sketch says what share of its values falls in each bin;
- categories: the frequent-items sketches give each category's share (the rest of the mass, if any, is "other").

The distance is Hellinger or Jensen-Shannon (both in [0, 1]: 0 for the same distribution, 1 for disjoint ones), or
for numbers Wasserstein-1 scaled by the reference's standard deviation: the default, which reads as "how many
standard deviations the values moved" and catches a 0.5σ shift that the other two score below their usual
thresholds (benchmarks/bench_drift.py). Distances between distributions do not grow with the sample size the way a
test's p-value shrinks, so a busy window of unchanged traffic does not alarm.
Data quality is reported beside the scores: null-rate jumps, values outside the reference's range, categories the
model never saw. Each column also carries a small `Distribution` (both profiles' shares over the same bins or
categories) so the report can show what moved; `cicloml.drift_report` draws it.
"""

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from cicloml.estimation import PerformanceEstimate
from cicloml.profiling import SCORE_COLUMN, DatasetProfileView
from cicloml.spec import DriftSpec

Method = Literal["hellinger", "jensen_shannon", "wasserstein"]
Column = Any
"""A whylogs `ColumnProfileView` (whylogs is imported only through `cicloml.profiling`)."""
Sketch = Any
"""A whylogs KLL sketch of a numeric column (`kll_doubles_sketch`)."""

QUANTILE_CUTS = tuple(np.linspace(0.05, 0.95, 19))
"""Where the reference's quantiles cut a numeric column into bins (20 bins of ~5% each, fewer when values repeat)."""
WASSERSTEIN_GRID = tuple(np.linspace(0.01, 0.99, 99))
OUT_OF_RANGE_SHARE = 0.01
"""Values outside the reference's [min, max] above this share of a window are a data-quality issue."""
UNSEEN_CATEGORY_SHARE = 0.01
"""Categories absent from the reference above this share of a window are a data-quality issue."""
HISTOGRAM_BINS = 24
"""Equal-width bins of a numeric column's picture (fewer for whole numbers over a short range)."""
HISTOGRAM_TAIL = 0.005
"""The picture spans both profiles' values from this quantile to its complement; the outer bins hold the tails, so
one extreme value does not squeeze the rest into a single bar."""
TOP_CATEGORIES = 10
"""Categories a picture names (the most frequent in either profile); the rest are summed as other categories, so
a column of thousands of values keeps the report small."""


class Distribution(BaseModel):
    """What a report draws for one column: the reference's and the window's shares of all rows over the same bins
    (numbers) or categories. Missing values are apart, in `FeatureDrift`'s null rates, so the shares here and the
    null rate add up to 1."""

    edges: list[float] | None = None
    """Numbers: the bins' edges, one more than the shares (the outer bins also count the values beyond them)."""
    categories: list[str] | None = None
    """Categories: the label of each share but the last, which is every other category's."""
    reference: list[float]
    current: list[float]


class FeatureDrift(BaseModel):
    """One column's drift: its distance from the reference and what the window looked like."""

    column: str
    kind: Literal["numeric", "categorical"]
    method: Method
    score: float
    threshold: float
    """The score above which this kind of column counts as drifted."""
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_null_rate: float
    current_null_rate: float
    distribution: Distribution | None = None
    """Both profiles' shares, for the report's picture; None when neither profile has a value to draw."""


class QualityIssue(BaseModel):
    column: str
    rule: Literal["null_rate_increase", "out_of_range", "unseen_categories"]
    detail: str


class DriftReport(BaseModel):
    """A window compared with the reference: per-feature scores, prediction drift, data quality, the verdict."""

    model_tag: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    check: Literal["drift", "skew"] = "drift"
    """"skew" for a model's first served window: a difference there is training/serving skew (the two paths
    compute features differently), which retraining would not fix."""
    min_drifted_features: int
    features: list[FeatureDrift]
    prediction: FeatureDrift | None
    """The model's score column, when both profiles have one."""
    quality_issues: list[QualityIssue]
    performance: PerformanceEstimate | None = None
    """The model's performance estimated from the window's logged scores (before labels); None without them."""
    baseline_roc_auc: float | None = None
    """The model's ROC AUC on its test window, at training: what the estimate is held against."""

    @property
    def performance_line(self) -> str | None:
        """ "estimated ROC AUC 0.79 ± 0.01 (training 0.79)", or None without an estimate."""
        return self.performance.describe(self.baseline_roc_auc) if self.performance else None

    @property
    def drifted_features(self) -> list[str]:
        return [feature.column for feature in self.features if feature.drifted]

    @property
    def drifted(self) -> bool:
        return len(self.drifted_features) >= self.min_drifted_features

    @property
    def title(self) -> str:
        """What was found, in words: "drift", "no drift", "training/serving skew" or "no training/serving skew"."""
        found = "training/serving skew" if self.check == "skew" else "drift"
        return found if self.drifted else f"no {found}"

    def markdown(self) -> str:
        """A summary table for people (the drift flow's artifact), most drifted first."""
        verdict = f"**{self.title}**" if self.drifted else self.title
        window = f"{self.window_start:%Y-%m-%d %H:%M} – {self.window_end:%H:%M} UTC" if self.window_start else "window"
        lines = [
            f"### {self.model_tag}, {window}: {verdict}",
            "",
            f"{len(self.drifted_features)} of {len(self.features)} features above their threshold "
            f"(drift needs {self.min_drifted_features}).",
            *(
                ["", f"Impact: {self.performance_line}, from {self.performance.rows:,} logged scores."]
                if self.performance
                else []
            ),
            "",
            "| feature | kind | method | score | threshold | drifted | null rate (reference → window) "
            "| rows (reference / window) |",
            "|---|---|---|---:|---:|---|---|---|",
        ]
        rows = sorted(self.features, key=lambda feature: -feature.score)
        if self.prediction is not None:
            rows.append(self.prediction)
        for feature in rows:
            lines.append(
                f"| {feature.column} | {feature.kind} | {feature.method} | {feature.score:.3f} | {feature.threshold} "
                f"| {'yes' if feature.drifted else ''} | "
                f"{feature.reference_null_rate:.1%} → {feature.current_null_rate:.1%} | "
                f"{feature.reference_rows:,} / {feature.current_rows:,} |"
            )
        if self.quality_issues:
            lines += ["", "**Data quality**", ""]
            lines += [f"- `{issue.column}` {issue.rule}: {issue.detail}" for issue in self.quality_issues]
        return "\n".join(lines)


def compare_profiles(
    reference: DatasetProfileView,
    current: DatasetProfileView,
    *,
    features: Sequence[str],
    spec: DriftSpec,
    model_tag: str,
    score_column: str = SCORE_COLUMN,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    check: Literal["drift", "skew"] = "drift",
) -> DriftReport:
    """Compare `current` (a window of traffic) with `reference` (the training profile) on `features`."""
    drifts, issues = [], []
    for column in features:
        drift, column_issues = _compare_column(reference, current, column, spec)
        drifts.append(drift)
        issues += column_issues
    prediction = None
    if reference.get_column(score_column) is not None and current.get_column(score_column) is not None:
        prediction, _ = _compare_column(reference, current, score_column, spec)
    return DriftReport(
        model_tag=model_tag,
        window_start=window_start,
        window_end=window_end,
        check=check,
        min_drifted_features=spec.min_drifted_features,
        features=drifts,
        prediction=prediction,
        quality_issues=issues,
    )


def _compare_column(
    reference: DatasetProfileView, current: DatasetProfileView, column: str, spec: DriftSpec
) -> tuple[FeatureDrift, list[QualityIssue]]:
    ref_column, cur_column = reference.get_column(column), current.get_column(column)
    if ref_column is None:
        raise ValueError(f"the reference profile has no column {column!r}; it was not part of training")
    ref_rows, ref_nulls = _counts(ref_column)
    cur_rows, cur_nulls = _counts(cur_column) if cur_column is not None else (0, 0)
    ref_null_rate = ref_nulls / ref_rows if ref_rows else 0.0
    cur_null_rate = cur_nulls / cur_rows if cur_rows else 0.0
    issues = []
    if cur_null_rate - ref_null_rate > spec.max_null_rate_increase:
        issues.append(
            QualityIssue(
                column=column,
                rule="null_rate_increase",
                detail=f"null rate {ref_null_rate:.1%} in training, {cur_null_rate:.1%} in this window",
            )
        )

    ref_frequent = _frequent_items(ref_column)
    kind: Literal["numeric", "categorical"] = "categorical" if ref_frequent is not None else "numeric"
    method: Method = spec.method
    threshold = spec.threshold
    if kind == "categorical":
        method, threshold = spec.categorical_method, spec.categorical_threshold
        categories, p, q, unseen = _category_shares(ref_frequent, ref_rows, ref_nulls, cur_column, cur_rows, cur_nulls)
        distribution: Distribution | None = _top_categories(categories, p, q)
        if unseen:
            issues.append(
                QualityIssue(
                    column=column,
                    rule="unseen_categories",
                    detail=", ".join(f"{value!r} ({share:.1%})" for value, share in unseen.items()),
                )
            )
        score = _distance(method, p, q)
    else:
        ref_sketch = ref_column.get_metric("distribution").kll.value
        cur_sketch = cur_column.get_metric("distribution").kll.value if cur_column is not None else None
        if cur_sketch is not None and not cur_sketch.is_empty() and not ref_sketch.is_empty():
            outside = _outside_range(ref_sketch, cur_sketch)
            if outside > OUT_OF_RANGE_SHARE:
                issues.append(
                    QualityIssue(
                        column=column,
                        rule="out_of_range",
                        detail=f"{outside:.1%} of values outside the training range "
                        f"[{ref_sketch.get_min_value():g}, {ref_sketch.get_max_value():g}]",
                    )
                )
        distribution = _histogram(ref_sketch, cur_sketch, ref_null_rate, cur_null_rate)
        if method == "wasserstein":
            score = _wasserstein(ref_sketch, cur_sketch, ref_null_rate, cur_null_rate)
        else:
            p, q = _bin_shares(ref_sketch, cur_sketch, ref_null_rate, cur_null_rate)
            score = _distance(method, p, q)
    drift = FeatureDrift(
        column=column,
        kind=kind,
        method=method,
        score=round(score, 6),
        threshold=threshold,
        drifted=score > threshold,
        reference_rows=ref_rows,
        current_rows=cur_rows,
        reference_null_rate=ref_null_rate,
        current_null_rate=cur_null_rate,
        distribution=distribution,
    )
    return drift, issues


def _counts(column: Column) -> tuple[int, int]:
    counts = column.get_metric("counts")
    return int(counts.n.value), int(counts.null.value)


def _frequent_items(column: Column) -> dict[str, float] | None:
    """Category -> estimated count for a string column, None for a numeric one."""
    types = column.get_metric("types")
    if types is None or types.string.value == 0:
        return None
    items = column.get_metric("frequent_items")
    return {item.value: float(item.est) for item in items.to_summary_dict()["frequent_strings"]}


def _category_shares(
    ref_items: dict[str, float], ref_rows: int, ref_nulls: int, cur_column: Column, cur_rows: int, cur_nulls: int
) -> tuple[list[str], np.ndarray, np.ndarray, dict[str, float]]:
    """The categories, and the shares of each, "other" (mass the sketch does not list) and null, in the same order
    for both; the window's categories unseen in the reference."""
    cur_items = _frequent_items(cur_column) if cur_column is not None else None
    cur_items = cur_items or {}
    categories = sorted(set(ref_items) | set(cur_items))

    def shares(items: dict[str, float], rows: int, nulls: int) -> np.ndarray:
        if rows == 0:
            return np.zeros(len(categories) + 2)
        listed = [items.get(category, 0.0) for category in categories]
        other = max(0.0, rows - nulls - sum(listed))
        return np.array([*listed, other, nulls]) / rows

    unseen = {
        category: count / cur_rows
        for category, count in cur_items.items()
        if category not in ref_items and cur_rows and count / cur_rows > UNSEEN_CATEGORY_SHARE
    }
    return categories, shares(ref_items, ref_rows, ref_nulls), shares(cur_items, cur_rows, cur_nulls), unseen


def _top_categories(categories: list[str], p: np.ndarray, q: np.ndarray) -> Distribution:
    """`_category_shares`' shares without the null share, the `TOP_CATEGORIES` largest in either profile named (the
    reference's most frequent first), the rest added to "other"."""
    largest = sorted(range(len(categories)), key=lambda i: (-max(p[i], q[i]), categories[i]))[:TOP_CATEGORIES]
    kept = sorted(largest, key=lambda i: (-p[i], -q[i], categories[i]))

    def shares(values: np.ndarray) -> list[float]:
        named = [float(values[i]) for i in kept]
        other = float(values[:-1].sum()) - sum(named)  # every category not named, and the sketch's unlisted mass
        return [round(share, 6) for share in (*named, max(0.0, other))]

    return Distribution(categories=[categories[i] for i in kept], reference=shares(p), current=shares(q))


def _histogram(
    ref_sketch: Sketch, cur_sketch: Sketch | None, ref_null_rate: float, cur_null_rate: float
) -> Distribution | None:
    """Both sketches' shares of all rows over equal-width bins spanning both: the shape a reader expects (the
    reference-quantile bins the scores use are flat for the reference by construction, which hides its shape)."""
    sketches = [sketch for sketch in (ref_sketch, cur_sketch) if sketch is not None and not sketch.is_empty()]
    ends = [
        end
        for sketch in sketches
        for end in sketch.get_quantiles([HISTOGRAM_TAIL, 1.0 - HISTOGRAM_TAIL])
        if math.isfinite(end)  # a column may hold infinities; the outer bins count them
    ]
    if not ends:
        return None
    low, high = min(ends), max(ends)
    if all(_whole_numbers(sketch) for sketch in sketches):
        # A bar per whole number (or per run of them), centred on it: equal-width bins would leave gaps between
        # counts. Judged from the values, since the feature store serves counts as floats.
        values = math.ceil(high) - math.floor(low) + 1
        width = math.ceil(values / HISTOGRAM_BINS)
        edges = [math.floor(low) - 0.5 + width * i for i in range(math.ceil(values / width) + 1)]
    elif high > low:
        edges = [float(edge) for edge in np.linspace(low, high, HISTOGRAM_BINS + 1)]
    else:
        edges = [low - 0.5, low + 0.5]

    def shares(sketch: Sketch | None, null_rate: float) -> list[float]:
        if sketch is None or sketch.is_empty():
            return [0.0] * (len(edges) - 1)
        pmf = sketch.get_pmf(edges)  # below the first edge, each bin, above the last
        bins = [pmf[0] + pmf[1], *pmf[2:-2], pmf[-2] + pmf[-1]] if len(edges) > 2 else [sum(pmf)]
        return [round(share * (1.0 - null_rate), 6) for share in bins]

    return Distribution(
        edges=[round(edge, 9) for edge in edges],
        reference=shares(ref_sketch, ref_null_rate),
        current=shares(cur_sketch, cur_null_rate),
    )


def _whole_numbers(sketch: Sketch) -> bool:
    """Whether the sketch's values look like whole numbers (its extremes and deciles are)."""
    values = [sketch.get_min_value(), sketch.get_max_value(), *sketch.get_quantiles(list(np.linspace(0.1, 0.9, 9)))]
    return all(float(value).is_integer() for value in values)


def _bin_shares(
    ref_sketch: Sketch, cur_sketch: Sketch | None, ref_null_rate: float, cur_null_rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """Shares per reference-quantile bin (scaled by the non-null rate) plus the null share, for both profiles."""

    def shares(sketch: Sketch | None, null_rate: float, cuts: list[float]) -> np.ndarray:
        if sketch is None or sketch.is_empty():
            return np.array([0.0] * (len(cuts) + 1) + [null_rate])
        values = np.array(sketch.get_pmf(cuts) if cuts else [1.0])
        return np.append(values * (1.0 - null_rate), null_rate)

    cuts = [] if ref_sketch.is_empty() else sorted(set(ref_sketch.get_quantiles(list(QUANTILE_CUTS))))
    return shares(ref_sketch, ref_null_rate, cuts), shares(cur_sketch, cur_null_rate, cuts)


def _distance(method: Method, p: np.ndarray, q: np.ndarray) -> float:
    if p.sum() == 0 or q.sum() == 0:
        return 0.0 if p.sum() == q.sum() else 1.0
    p, q = p / p.sum(), q / q.sum()
    if method == "jensen_shannon":
        mean = (p + q) / 2
        divergence = 0.5 * (_kl(p, mean) + _kl(q, mean))
        return math.sqrt(max(0.0, divergence))
    return math.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(p * q)))))  # Hellinger


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


def _wasserstein(ref_sketch: Sketch, cur_sketch: Sketch | None, ref_null_rate: float, cur_null_rate: float) -> float:
    """Wasserstein-1 between the non-null values over the reference's standard deviation; a column that lost all
    its values, or whose null rate moved, scores at least the null-rate change."""
    null_change = abs(cur_null_rate - ref_null_rate)
    if ref_sketch.is_empty() or cur_sketch is None or cur_sketch.is_empty():
        return 1.0 if ref_sketch.is_empty() != (cur_sketch is None or cur_sketch.is_empty()) else null_change
    grid = list(WASSERSTEIN_GRID)
    ref_quantiles, cur_quantiles = np.array(ref_sketch.get_quantiles(grid)), np.array(cur_sketch.get_quantiles(grid))
    spread = float(np.std(ref_quantiles)) or 1.0
    return max(float(np.mean(np.abs(ref_quantiles - cur_quantiles))) / spread, null_change)


def _outside_range(ref_sketch: Sketch, cur_sketch: Sketch) -> float:
    """The share of the window's values below the reference's minimum or above its maximum."""
    low, high = ref_sketch.get_min_value(), ref_sketch.get_max_value()
    below, up_to_high = cur_sketch.get_cdf([low, math.nextafter(high, math.inf)])[:2]
    return float(below + (1.0 - up_to_high))
