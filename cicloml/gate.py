"""The promotion gate: a challenger becomes champion only if it clears the floors and, where there is a champion,
beats it on the same fresh labelled rows by at least `gates.min_improvement` (a tie is not a promotion) without
being plausibly worse by more than `gates.max_regression` (the lower bound of a paired bootstrap interval).

`compare_paired` scores both models' ROC AUC on the same rows and bootstraps the difference: each resample draws
row indices with replacement and uses the same indices for both models, so what the rows have in common (easy or
hard cases, the positive rate) cancels out of the difference and the interval measures the models, not the rows.
"""

from datetime import datetime, timezone

import numpy as np
from pydantic import BaseModel

from cicloml.errors import DataError
from cicloml.evaluation import Metrics
from cicloml.spec import GatesSpec

_CHUNK_CELLS = 2_000_000
"""Draws held at once (rows × resamples): bounds memory at ~16 MB per array of draws (a model's tallies per run of
tied scores and class take at most twice that) whatever the data size."""

_BLOCK_DRAWS = 131_072
"""Draws a model tallies at once (rows × resamples, 1 MB of cells): its cells and tallies stay in the CPU's cache,
about three times as fast as tallying a whole chunk when scores are distinct."""


class PairedComparison(BaseModel):
    """Challenger vs champion ROC AUC on the same rows, with a paired bootstrap interval of the difference."""

    rows: int
    positives: int
    window: tuple[datetime, datetime] | None
    """The rows' event-time span, set by the caller."""
    challenger_roc_auc: float
    champion_roc_auc: float
    difference: float
    """challenger − champion on all the rows."""
    interval: tuple[float, float]
    """Central `confidence` interval of the difference over the resamples (percentile bootstrap)."""
    confidence: float
    resamples: int
    """Resamples the interval is computed from (those drawn, less any that held a single class)."""

    def describe(self) -> str:
        """One line for people: rows, window, the difference and its interval."""
        window = "" if self.window is None else f", {_time(self.window[0])} to {_time(self.window[1])}"
        return (
            f"On the same {self.rows} rows ({self.positives} positive{window}): ROC AUC challenger "
            f"{self.challenger_roc_auc:.4f}, champion {self.champion_roc_auc:.4f}, difference {self.difference:+.4f} "
            f"({self.confidence:.0%} interval {self.interval[0]:+.4f} to {self.interval[1]:+.4f}, "
            f"{self.resamples} paired resamples)."
        )


class GateDecision(BaseModel):
    promote: bool
    reasons: list[str]
    """Why, one line per rule checked (passed or failed)."""
    challenger: Metrics
    champion: Metrics | None
    champion_tag: str | None
    comparison: PairedComparison | None = None
    """Challenger vs champion on the same fresh rows; None when there was no champion."""

    @property
    def label(self) -> str:
        return "passed" if self.promote else "rejected"

    def markdown(self, challenger_tag: str) -> str:
        """Champion vs challenger, for people."""
        verdict = "**promoted** to champion" if self.promote else "**rejected**; it stays in the registry, unserved"
        lines = [f"Challenger `{challenger_tag}` {verdict}.", ""]
        lines += ["| metric | challenger | champion |", "|---|---:|---:|"]
        for metric in ("roc_auc", "pr_auc", "log_loss", "brier", "f1"):
            ours, theirs = getattr(self.challenger, metric), getattr(self.champion, metric, None)
            lines.append(f"| {metric} | {_number(ours)} | {_number(theirs)} |")
        if self.comparison is not None:
            lines += ["", self.comparison.describe()]
        champion = f"`{self.champion_tag}`" if self.champion_tag else "none yet"
        lines += ["", f"Champion: {champion}", "", *[f"- {reason}" for reason in self.reasons]]
        return "\n".join(lines)


def decide_promotion(
    challenger: Metrics,
    champion: Metrics | None,
    gates: GatesSpec,
    *,
    champion_tag: str | None = None,
    comparison: PairedComparison | None = None,
) -> GateDecision:
    """Floors from the spec always apply to the challenger's metrics. With no champion yet, the floors alone decide.
    With a champion, the challenger must beat it on `comparison` (both models on the same fresh rows, see
    `compare_paired`) by at least `gates.min_improvement`, and the lower bound of the paired interval of the
    difference must be at least `-gates.max_regression`; without a comparison (no fresh rows of both classes) there
    is no evidence that it is better, and it is rejected."""
    if champion is None and comparison is not None:
        raise ValueError("comparison given but no champion: pass the champion's metrics too")
    failures: list[str] = []
    passes: list[str] = []

    def rule(ok: bool, text: str) -> None:
        (passes if ok else failures).append(("ok: " if ok else "failed: ") + text)

    auc, pr_auc = challenger.roc_auc or 0.0, challenger.pr_auc or 0.0
    rule(auc >= gates.min_roc_auc, f"ROC AUC {auc:.4f} vs floor {gates.min_roc_auc:.4f}")
    rule(pr_auc >= gates.min_pr_auc, f"PR AUC {pr_auc:.4f} vs floor {gates.min_pr_auc:.4f}")
    if champion is None:
        passes.append("ok: no champion yet, the floors decide")
    elif comparison is None:
        rule(
            False,
            f"no fresh labelled rows of both classes that neither model trained on to compare with {champion_tag}",
        )
    else:
        c = comparison
        rule(
            c.difference >= gates.min_improvement,
            f"improvement: ROC AUC {c.challenger_roc_auc:.4f} vs champion {champion_tag} {c.champion_roc_auc:.4f} "
            f"on the same {c.rows} rows, difference {c.difference:+.4f} vs required {gates.min_improvement:+.4f} "
            "(a tie is not a promotion)",
        )
        rule(
            c.interval[0] >= -gates.max_regression,
            f"not plausibly worse: {c.confidence:.0%} paired interval of the difference "
            f"[{c.interval[0]:+.4f}, {c.interval[1]:+.4f}] ({c.resamples} resamples), lower bound "
            f"{c.interval[0]:+.4f} vs tolerance {-gates.max_regression:+.4f}",
        )
    return GateDecision(
        promote=not failures,
        reasons=failures + passes,
        challenger=challenger,
        champion=champion,
        champion_tag=champion_tag,
        comparison=comparison,
    )


def compare_paired(
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    labels: np.ndarray,
    *,
    confidence: float,
    window: tuple[datetime, datetime] | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> PairedComparison:
    """Both models' ROC AUC on the same rows, and the percentile interval of (challenger − champion) over paired
    bootstrap resamples: each resample draws row indices with replacement, the same for both models. Resamples
    with a single class are dropped. Deterministic for a seed."""
    challenger_scores, champion_scores, labels = _check_paired(challenger_scores, champion_scores, labels)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1 (got {confidence})")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1 (got {resamples})")
    rows = len(labels)
    challenger_ranking, champion_ranking = _Ranking(challenger_scores, labels), _Ranking(champion_scores, labels)
    every_row = np.arange(rows)[None, :]  # one "resample" that draws each row once: the AUC on all the rows
    challenger_auc = float(challenger_ranking.auc(every_row)[0])
    champion_auc = float(champion_ranking.auc(every_row)[0])

    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // rows)
    differences = []
    for start in range(0, resamples, per_chunk):
        count = min(per_chunk, resamples - start)
        # Resample b draws the row indices drawn[b] (the same for both models).
        drawn = rng.integers(0, rows, size=(count, rows))
        differences.append(challenger_ranking.auc(drawn) - champion_ranking.auc(drawn))
    difference = np.concatenate(differences)
    difference = difference[~np.isnan(difference)]
    if len(difference) == 0:
        raise DataError(
            f"every one of {resamples} bootstrap resamples of the {rows} rows held a single class: "
            "compare on more labelled rows"
        )
    tail = (1.0 - confidence) / 2
    lower, upper = np.quantile(difference, [tail, 1.0 - tail])
    return PairedComparison(
        rows=rows,
        positives=int(labels.sum()),
        window=window,
        challenger_roc_auc=challenger_auc,
        champion_roc_auc=champion_auc,
        difference=challenger_auc - champion_auc,
        interval=(float(lower), float(upper)),
        confidence=confidence,
        resamples=len(difference),
    )


class _Ranking:
    """One model's scores sorted once, so that the ROC AUC of any resample of the rows takes a few vectorized passes:
    the Mann-Whitney statistic with ties counted half, as sklearn's roc_auc_score.

    The statistic only needs, per run of tied scores (in score order), how many positives and negatives a resample
    drew from it. Each row is mapped once to its cell, (class, run), so a block of resamples is tallied by one
    `np.bincount` over the drawn rows' cells, offset per resample: no resamples × rows matrix of draw counts to
    reorder by score and sum over runs (tree ensembles' scores have many ties), which took several times as long. The
    tallies are integers, so the AUCs are the same, to the bit, as from any other exact count of the same draws.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        order = np.argsort(scores, kind="stable")
        ordered = scores[order]
        run_in_order = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
        self.runs = int(run_in_order[-1]) + 1
        run = np.empty(len(scores), dtype=np.int64)
        run[order] = run_in_order
        # Each row's cell: its run of tied scores among the negatives' cells (0 to runs − 1) or the positives'.
        self.cell = labels.astype(np.int64) * self.runs + run

    def auc(self, drawn: np.ndarray) -> np.ndarray:
        """ROC AUC per row of `drawn` (resamples × draws, the row indices each resample drew); NaN for a single
        class."""
        block = max(1, _BLOCK_DRAWS // drawn.shape[1])
        return np.concatenate([self._auc(drawn[start : start + block]) for start in range(0, len(drawn), block)])

    def _auc(self, drawn: np.ndarray) -> np.ndarray:
        count, draws = drawn.shape
        cells = self.cell[drawn]
        cells += 2 * self.runs * np.arange(count)[:, None]  # resample b's cells after those of resamples before it
        tallies = np.bincount(cells.ravel(), minlength=count * 2 * self.runs).reshape(count, 2, self.runs)
        negatives, positives = tallies[:, 0], tallies[:, 1]
        # Twice the pairs a positive outranks (a tie counts half): twice the negatives below it or tied, less the tied.
        at_or_below = np.cumsum(negatives, axis=1)
        wins_twice = 2 * np.einsum("ij,ij->i", positives, at_or_below) - np.einsum("ij,ij->i", positives, negatives)
        drawn_negatives = at_or_below[:, -1]
        pairs = (draws - drawn_negatives) * drawn_negatives
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, wins_twice / (2.0 * pairs), np.nan)


def _check_paired(
    challenger_scores: np.ndarray, champion_scores: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    challenger_scores = np.asarray(challenger_scores, dtype=float)
    champion_scores = np.asarray(champion_scores, dtype=float)
    labels = np.asarray(labels)
    if challenger_scores.ndim != 1 or champion_scores.ndim != 1 or labels.ndim != 1:
        raise DataError(
            "challenger scores, champion scores and labels must be 1-D (got shapes "
            f"{challenger_scores.shape}, {champion_scores.shape} and {labels.shape})"
        )
    if not len(challenger_scores) == len(champion_scores) == len(labels):
        raise DataError(
            "a paired comparison needs both models' scores on the same rows: challenger scores, champion scores and "
            f"labels differ in length ({len(challenger_scores)}, {len(champion_scores)} and {len(labels)})"
        )
    if not (np.isfinite(challenger_scores).all() and np.isfinite(champion_scores).all()):
        raise DataError("scores must be finite numbers (found NaN or infinity)")
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"labels must be 0 or 1 (found {sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]})")
    if len(labels) == 0:
        raise DataError("nothing to compare: scores and labels are empty")
    labels = labels.astype(np.int64)
    if labels.min() == labels.max():
        raise DataError(
            f"ROC AUC needs both classes, but all {len(labels)} labels are {labels[0]}: "
            "compare on rows with positives and negatives"
        )
    return challenger_scores, champion_scores, labels


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _time(value: datetime) -> str:
    """UTC to the minute (a naive time is shown as given)."""
    if value.tzinfo is None:
        return f"{value:%Y-%m-%d %H:%M}"
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
