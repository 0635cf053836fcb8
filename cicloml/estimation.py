"""Estimated performance of a window before its labels arrive: confidence-based performance estimation (CBPE).

Labels come late (30 days in the demo), so a model's live ROC AUC is only known a month after it mattered. What is
known at once is each row's score. If the scores are calibrated, a row scored 0.3 has label 1 with probability 0.3,
and the labels a window will get can be simulated from its scores alone.

1. At training time `fit_calibration` learns, on the validation rows, a map from scores to calibrated probabilities
   P(label=1 | score): isotonic regression, Platt's sigmoid on the logit of the score, or none, whichever has the
   lowest log loss out-of-sample (k-fold cross-fitting within the validation rows; a map must beat "none" by a
   standard error). The map is plain numbers (`Calibration`), stored in the model's lineage, with the covariance of
   a Platt recalibration of its output: how far off it could be, given how many validation rows it was fitted on.
2. For a window of live scores, `estimate_performance` takes the calibrated probabilities p_i and, under the CBPE
   assumption that P(label | score) has not changed since training (covariate shift, not concept drift), treats each
   row's label as Bernoulli(p_i). It draws `simulations` label vectors (a seeded numpy Generator), measures the fixed
   scores against each draw (ROC AUC, average precision, precision and recall at the decision threshold) and reports
   the mean as the estimate, the standard deviation as its standard error and the central `confidence` quantiles as
   the interval: the range the realized metric should fall in once the labels arrive. Each draw also perturbs the
   calibration within its uncertainty (sigmoid(a logit(p_i) + b), (a, b) ~ N((1, 0), covariance)): the map's own
   estimation error moves the estimated ROC AUC about as much as the labels' randomness does in a 5,000-row window
   (a slope off by 0.05 moves it by ~0.01), and an interval without it covers too rarely. A draw leaves out the metrics
   it does not define: a draw with one class only has no ROC AUC or average precision, one without positives no
   recall (precision is undefined for every draw when no score reaches the threshold).
3. The ROC AUC estimate is anchored where the truth is known (`anchor_calibration`): the estimate on the model's
   test scores minus their realized ROC AUC is stored with the map and subtracted from every estimate. The estimate
   becomes the test ROC AUC moved by how much the window's scores differ from the test window's, and an error the
   map makes everywhere alike cancels.

The metrics are vectorized over draws: ROC AUC from the scores' ranks, computed once (average ranks for ties, so it
equals scikit-learn's roc_auc_score), as (sum of the positives' ranks - n1(n1+1)/2) / (n1 n0), one matrix product
per block of draws; average precision from cumulative sums in the descending score order, also computed once, one
step per distinct score (as scikit-learn's average_precision_score). Draws go in blocks of bounded size, so memory
stays flat for large windows (~70 MB at most) and a block size never changes the result. 500 draws over 5,000 rows
take ~0.05 s.

When the assumption fails the estimate is wrong while looking confident: under concept drift (the same scores now
mean a different churn rate), and under a covariate shift into a region where the model is miscalibrated in a way
the validation rows never showed (a tree model flat beyond its training data). Comparing it with the realized metric,
once labels arrive, is what catches that.
"""

from typing import Literal, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator
from scipy.stats import rankdata
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from cicloml.errors import DataError

CalibrationMethod = Literal["none", "isotonic", "sigmoid"]

LOGIT_CLIP = 1e-6
"""Probabilities are clipped to [LOGIT_CLIP, 1 - LOGIT_CLIP] before their logit, so 0 and 1 map to finite numbers."""
LOSS_CLIP = 1e-4
"""Held-out probabilities are clipped to [LOSS_CLIP, 1 - LOSS_CLIP] for the log loss: a map that calls a row that
turned out positive impossible (isotonic's flat ends do) costs ~9 nats there, not infinity."""
SIGNIFICANCE = 1.0
"""Isotonic replaces the parametric choice only if its cross-fitted log loss is lower by more than this many
standard errors of the paired per-row difference: a step function fits noise, and on calibrated scores noise alone
makes it look better often without a margin."""
SIGMOID_TEST = 3.84
"""The sigmoid replaces "none" when its cross-fitted log loss is lower and the Platt fit's slope differs from 1
beyond chance: (slope − 1)² over its variance above this (chi-squared, one degree of freedom: p < 0.05 were the scores
calibrated; a needless sigmoid fitted to calibrated scores is close to the identity and costs little). The slope is
what moves a ranking's estimate, and log loss alone judges it weakly: a gradient-boosting model whose scores were
overconfident by a slope of ~0.7 lost only 0.0007 nats to the sigmoid on 1,000 validation rows (under one standard
error), yet its uncalibrated scores put the estimated ROC AUC ~0.06 above the realized one (the backtest's worlds,
seeds 1–6)."""
BLOCK_ELEMENTS = 2_000_000
"""Label draws are simulated in blocks of at most this many (draw, row) cells (~16 MB of float64 per array)."""
CANDIDATES: tuple[CalibrationMethod, ...] = ("none", "isotonic", "sigmoid")


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class Calibration(_Value):
    """A map from a model's scores to calibrated P(label=1), fitted on the validation rows; plain numbers, so it is
    stored as JSON in the model's lineage and applied without scikit-learn."""

    method: CalibrationMethod
    errors: dict[str, float]
    """Log loss of each candidate method on the validation rows, cross-fitted (each fold's rows scored by a map fitted
    on the other folds): why `method` was chosen. A proper scoring rule, so lower means probabilities closer to the
    true ones, unlike the expected calibration error, which depends on its binning and is zero for a constant
    prediction of the base rate; log loss rather than Brier because it weighs relative errors at small probabilities,
    where most rows of a rare-positive problem lie (Brier barely moves for a miscalibration that shifts the
    estimated ROC AUC by 0.01)."""
    rows: int
    """Validation rows the map was fitted on."""
    folds: int
    """Cross-fitting folds the candidates were judged with (0: too few rows of a class to judge; "none")."""
    x: tuple[float, ...] = ()
    """isotonic: the scores at which the fitted step function changes (increasing)."""
    y: tuple[float, ...] = ()
    """isotonic: the calibrated probability at each of `x`; linear between them, constant beyond the ends."""
    slope: float | None = None
    """sigmoid (Platt, on the logit of the score): P = 1 / (1 + exp(-(slope * logit(score) + intercept))); slope 1 and
    intercept 0 change nothing, so "none" is the special case and a nearly calibrated model gets a nearly identity
    map."""
    intercept: float | None = None
    covariance: tuple[float, float, float] | None = None
    """How uncertain the map is: var(a), cov(a, b), var(b) of a recalibration P' = sigmoid(a * logit(P) + b) of this
    map's output P, at a = 1, b = 0, from the validation rows' Fisher information. `estimate_performance` draws (a, b)
    from it for each simulation, so its intervals carry the calibration's estimation error as well as the labels'
    randomness; None: no such error (a map given by hand, or too few rows to judge)."""
    roc_auc_offset: float = 0.0
    """The estimate's own error where the truth is known: the ROC AUC estimated from the model's test scores minus
    the one their labels give (`anchor_calibration`). Every estimate subtracts it, so traffic like the test window's
    is estimated at the test ROC AUC and the map's fitting error cancels: fitted on a few thousand validation rows, a
    map put the backtest's day-0 models' estimates 0.03 above or below their realized ROC AUC on unchanged traffic
    (seeds 1–10; 0.01 once anchored). What remains is the test ROC AUC's own sampling error. 0: not anchored."""
    roc_auc_offset_se: float = 0.0
    """That sampling error (Hanley and McNeil's, on the test split's class counts): each draw of an estimate also
    draws its offset from N(`roc_auc_offset`, this²), so the interval carries it."""

    @model_validator(mode="after")
    def _map_matches_method(self) -> Self:
        if self.method == "isotonic":
            if not self.x or len(self.x) != len(self.y):
                raise ValueError("an isotonic calibration needs x and y of one, non-zero length")
            if np.any(np.diff(self.x) < 0) or np.any(np.diff(self.y) < 0):
                raise ValueError("an isotonic calibration's x and y must be non-decreasing")
        if self.method == "sigmoid" and (self.slope is None or self.intercept is None):
            raise ValueError("a sigmoid calibration needs slope and intercept")
        if self.covariance is not None:
            var_a, cov_ab, var_b = self.covariance
            if var_a < 0 or var_b < 0 or cov_ab**2 > var_a * var_b * (1 + 1e-9):
                raise ValueError(f"covariance {self.covariance} is not a covariance matrix (var a, cov ab, var b)")
        return self

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated P(label=1) for each score, in [0, 1]; monotone in the score, so rankings are kept."""
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.clip(np.interp(scores, self.x, self.y), 0.0, 1.0)
        if self.method == "sigmoid":
            assert self.slope is not None and self.intercept is not None  # the validator's guarantee, for mypy
            return _sigmoid(self.slope * _logit(scores) + self.intercept)
        return scores


def fit_calibration(scores: np.ndarray, labels: np.ndarray, *, seed: int = 0, folds: int = 5) -> Calibration:
    """Choose and fit the calibration map on validation scores and labels.

    Each candidate (none, isotonic, sigmoid) is judged by its log loss on held-out folds (`folds`-fold stratified
    cross-fitting, shuffled with `seed`), so a flexible map pays for fitting noise; the winner is then fitted on all
    the rows. The sigmoid wins over "none" only when it is better held out and its slope differs from 1 beyond
    chance (`SIGMOID_TEST`); isotonic only when it beats that choice by more than `SIGNIFICANCE` standard errors.
    Calibrated scores are left alone.
    """
    scores, labels = _check_scores(scores, "fit_calibration"), np.asarray(labels)
    if labels.shape != scores.shape or not np.isin(labels, (0, 1)).all():
        raise DataError(f"labels must be 0 or 1, one per score (got shape {labels.shape} for {len(scores)} scores)")
    labels = labels.astype(int)
    if min(labels.sum(), len(labels) - labels.sum()) < folds:
        # Too few rows of a class to hold any out: nothing can be judged out-of-sample, so nothing is changed.
        errors = {"none": float(_log_losses(scores, labels).mean())}
        return Calibration(method="none", errors=errors, rows=len(scores), folds=0)

    held_out = {method: np.empty(len(scores)) for method in CANDIDATES}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_rows, test_rows in splitter.split(scores.reshape(-1, 1), labels):
        for method in CANDIDATES:
            fitted = _fit_map(method, scores[fit_rows], labels[fit_rows])
            held_out[method][test_rows] = fitted.apply(scores[test_rows])

    losses = {method: _log_losses(predicted, labels) for method, predicted in held_out.items()}
    errors = {method: float(loss.mean()) for method, loss in losses.items()}
    sigmoid = _fit_map("sigmoid", scores, labels)
    parametric: CalibrationMethod = (
        "sigmoid" if errors["sigmoid"] < errors["none"] and _departs_from_identity(sigmoid, scores) else "none"
    )
    winner = "isotonic" if _significantly_lower(losses["isotonic"], losses[parametric]) else parametric
    fitted = sigmoid if winner == "sigmoid" else _fit_map(winner, scores, labels)
    return fitted.model_copy(
        update={
            "errors": errors,
            "rows": len(scores),
            "folds": folds,
            "covariance": _recalibration_covariance(fitted.apply(scores)),
        }
    )


def anchor_calibration(
    calibration: Calibration, scores: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> Calibration:
    """`calibration` with its `roc_auc_offset` measured on held-out labelled scores (the test split's): unchanged
    when they hold one class only."""
    labels = np.asarray(labels).astype(int)
    if not 0 < labels.sum() < len(labels):
        return calibration
    unanchored = calibration.model_copy(update={"roc_auc_offset": 0.0, "roc_auc_offset_se": 0.0})
    # The threshold only matters for precision and recall, which are not anchored.
    estimated = estimate_performance(scores, unanchored, threshold=0.5, seed=seed).roc_auc
    if estimated is None:
        return calibration
    realized = float(roc_auc(scores, labels)[0])
    positives = int(labels.sum())
    error = roc_auc_standard_error(realized, positives, len(labels) - positives)
    return unanchored.model_copy(update={"roc_auc_offset": estimated - realized, "roc_auc_offset_se": error})


def roc_auc_standard_error(roc_auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of a ROC AUC measured on this many labels of each class: it needs
    only the AUC and the counts."""
    q1, q2 = roc_auc / (2 - roc_auc), 2 * roc_auc**2 / (1 + roc_auc)
    variance = (
        roc_auc * (1 - roc_auc) + (positives - 1) * (q1 - roc_auc**2) + (negatives - 1) * (q2 - roc_auc**2)
    ) / max(positives * negatives, 1)
    return float(np.sqrt(max(variance, 0.0)))


def _fit_map(method: CalibrationMethod, scores: np.ndarray, labels: np.ndarray) -> Calibration:
    if method == "none":
        return Calibration(method="none", errors={}, rows=len(scores), folds=0)
    if method == "isotonic":
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
        x, y = tuple(isotonic.X_thresholds_.tolist()), tuple(isotonic.y_thresholds_.tolist())
        return Calibration(method="isotonic", errors={}, rows=len(scores), folds=0, x=x, y=y)
    # C=inf: no penalty. Newton on two parameters converges in a few steps, ~40x faster here than the default lbfgs.
    platt = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-8).fit(_logit(scores).reshape(-1, 1), labels)
    slope, intercept = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    return Calibration(method="sigmoid", errors={}, rows=len(scores), folds=0, slope=slope, intercept=intercept)


def _recalibration_covariance(probabilities: np.ndarray) -> tuple[float, float, float] | None:
    """The inverse Fisher information of (a, b) in sigmoid(a * logit(P) + b) at a = 1, b = 0: the sampling
    covariance of a Platt recalibration of these probabilities, were they calibrated."""
    clipped = np.clip(probabilities, LOGIT_CLIP, 1 - LOGIT_CLIP)
    logits, weights = _logit(clipped), clipped * (1 - clipped)
    information = np.array(
        [[np.sum(weights * logits**2), np.sum(weights * logits)], [np.sum(weights * logits), np.sum(weights)]]
    )
    if np.linalg.det(information) <= 1e-12 * max(1.0, float(np.trace(information)) ** 2):
        return None  # one distinct probability: the slope is not identified
    covariance = np.linalg.inv(information)
    return float(covariance[0, 0]), float(covariance[0, 1]), float(covariance[1, 1])


def _departs_from_identity(sigmoid: Calibration, scores: np.ndarray) -> bool:
    """Whether the Platt fit's slope lies beyond `SIGMOID_TEST` from 1 in the Wald statistic."""
    covariance = _recalibration_covariance(scores)
    if covariance is None or sigmoid.slope is None:
        return False
    return bool((sigmoid.slope - 1.0) ** 2 / covariance[0] > SIGMOID_TEST)


def _significantly_lower(candidate: np.ndarray, baseline: np.ndarray) -> bool:
    difference = baseline - candidate  # per row: how much the candidate lowers the loss
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference))
    return bool(difference.mean() > SIGNIFICANCE * standard_error)


def _log_losses(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    clipped = np.clip(probabilities, LOSS_CLIP, 1 - LOSS_CLIP)
    return -np.where(labels == 1, np.log(clipped), np.log1p(-clipped))


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, LOGIT_CLIP, 1 - LOGIT_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))  # = 1 / (1 + exp(-values)), without overflow warnings


# --- estimation ------------------------------------------------------------------------------------------------


class PerformanceEstimate(_Value):
    """A window's expected metrics from its scores alone, with standard errors and intervals; a metric is None where
    undefined (fewer than 2 rows, nothing predicted positive, or fewer than 2 draws with both classes)."""

    rows: int
    simulations: int
    """Label vectors drawn."""
    confidence: float
    """Of the intervals: the realized metric should fall inside them this often."""
    roc_auc: float | None
    roc_auc_se: float | None
    """Standard error: the standard deviation of the metric over the draws."""
    roc_auc_interval: tuple[float, float] | None
    pr_auc: float | None
    """Average precision, as `cicloml.evaluation` reports it."""
    pr_auc_se: float | None
    pr_auc_interval: tuple[float, float] | None
    threshold: float
    """The model's decision threshold: scores at or above it predict label 1."""
    precision: float | None
    """Expected at `threshold`, like recall."""
    precision_se: float | None
    precision_interval: tuple[float, float] | None
    recall: float | None
    recall_se: float | None
    recall_interval: tuple[float, float] | None
    positive_rate: float
    """Expected share of label 1: the mean calibrated probability."""

    def describe(self, baseline_roc_auc: float | None = None) -> str:
        """One line for people, e.g. "estimated ROC AUC 0.79 ± 0.01 (training 0.79)"; ± is the interval's
        half-width."""
        if self.roc_auc is None or self.roc_auc_interval is None:
            line = f"estimated ROC AUC undefined ({self.rows} rows)"
        else:
            low, high = self.roc_auc_interval
            line = f"estimated ROC AUC {self.roc_auc:.2f} ± {(high - low) / 2:.2f}"
        return line if baseline_roc_auc is None else f"{line} (training {baseline_roc_auc:.2f})"


def estimate_performance(
    scores: np.ndarray,
    calibration: Calibration,
    *,
    threshold: float,
    confidence: float = 0.9,
    simulations: int = 500,
    seed: int = 0,
) -> PerformanceEstimate:
    """Expected ROC AUC, average precision, precision and recall of a window's scores once its labels arrive, by
    drawing its labels from the calibrated scores (see the module's docstring); deterministic for a seed, and the
    same for the same scores in any order (labels are drawn row by row, so the rows are put in one order first)."""
    scores = np.sort(_check_scores(scores, "estimate_performance"))
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (got {confidence})")
    if simulations < 2:
        raise ValueError(f"simulations must be at least 2 (got {simulations})")
    probabilities = calibration.apply(scores)
    values: dict[str, float | tuple[float, float] | None] = {
        f"{metric}{suffix}": None
        for metric in ("roc_auc", "pr_auc", "precision", "recall")
        for suffix in ("", "_se", "_interval")
    }
    if len(scores) >= 2:
        draws = _simulate_metrics(scores, probabilities, calibration.covariance, threshold, simulations, seed)
        # The anchor's offset, drawn within its own sampling error (a generator of its own: the label draws stay
        # the same whether or not a calibration is anchored).
        offsets = np.random.default_rng([seed, 1]).normal(
            calibration.roc_auc_offset, calibration.roc_auc_offset_se, simulations
        )
        draws["roc_auc"] = np.clip(draws["roc_auc"] - offsets, 0.0, 1.0)
        for metric, per_draw in draws.items():
            values |= _summarize(metric, per_draw, confidence)
    return PerformanceEstimate(
        rows=len(scores),
        simulations=simulations,
        confidence=confidence,
        threshold=threshold,
        positive_rate=float(probabilities.mean()),
        **values,
    )


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC of fixed `scores` against each row of `labels` (draws x rows, 0/1), as scikit-learn's roc_auc_score
    (tied scores count one half). NaN for a row with one class."""
    return _roc_auc(rankdata(np.asarray(scores, dtype=float)), np.atleast_2d(labels))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of fixed `scores` against each row of `labels` (draws x rows, 0/1), as scikit-learn's
    average_precision_score: one precision-recall step per distinct score. NaN for a row without a positive."""
    return _average_precision(*_descending_runs(np.asarray(scores, dtype=float)), np.atleast_2d(labels))


def _roc_auc(ranks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(sum of the positives' ranks - n1(n1+1)/2) / (n1 n0) per row, one matrix product; `ranks` are the scores'
    average ranks, so a tie counts one half."""
    positives = labels.sum(axis=1, dtype=np.float64)
    negatives = labels.shape[1] - positives
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (labels.astype(np.float64) @ ranks - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _descending_runs(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows in descending score order, and the last position of each run of equal scores in that order: a
    threshold there predicts exactly the rows up to it."""
    order = np.argsort(-scores, kind="stable")
    descending = scores[order]
    return order, np.flatnonzero(np.r_[descending[1:] != descending[:-1], True])


def _average_precision(order: np.ndarray, ends: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Sum over runs of (precision at the run's end) x (positives in the run), over all positives."""
    true_positives = np.cumsum(labels[:, order], axis=1, dtype=np.int64)[:, ends]
    gained = np.diff(true_positives, axis=1, prepend=0)  # positives in each run: the recall step, times n1
    positives = true_positives[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, (gained * (true_positives / (ends + 1))).sum(axis=1) / positives, np.nan)


def _simulate_metrics(
    scores: np.ndarray,
    probabilities: np.ndarray,
    covariance: tuple[float, float, float] | None,
    threshold: float,
    simulations: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Each metric per draw, NaN where a draw leaves it undefined."""
    rows = len(scores)
    rng = np.random.default_rng(seed)
    # Every draw's recalibration first, then the labels block by block: the same numbers whatever the block size.
    recalibrations = _draw_recalibrations(rng, covariance, simulations)
    logits = _logit(np.clip(probabilities, LOGIT_CLIP, 1 - LOGIT_CLIP)) if recalibrations is not None else None
    ranks, (order, ends) = rankdata(scores), _descending_runs(scores)  # once: the scores stay fixed across draws
    predicted = scores >= threshold
    predicted_count = int(predicted.sum())
    block = max(1, min(simulations, BLOCK_ELEMENTS // rows))
    results: dict[str, list[np.ndarray]] = {"roc_auc": [], "pr_auc": [], "precision": [], "recall": []}
    for start in range(0, simulations, block):
        draws = min(block, simulations - start)
        if recalibrations is None or logits is None:
            labels = rng.random((draws, rows)) < probabilities
        else:
            slopes, intercepts = recalibrations[start : start + draws].T
            labels = rng.random((draws, rows)) < _sigmoid(slopes[:, None] * logits + intercepts[:, None])
        positives = labels.sum(axis=1)
        true_positives = labels[:, predicted].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(positives > 0, true_positives / positives, np.nan)
            precision = true_positives / predicted_count if predicted_count else np.full(len(labels), np.nan)
        results["roc_auc"].append(_roc_auc(ranks, labels))
        results["pr_auc"].append(np.where(positives < rows, _average_precision(order, ends, labels), np.nan))
        results["recall"].append(recall)
        results["precision"].append(precision)
    return {metric: np.concatenate(parts) for metric, parts in results.items()}


def _draw_recalibrations(
    rng: np.random.Generator, covariance: tuple[float, float, float] | None, simulations: int
) -> np.ndarray | None:
    """(slope, intercept) per draw from N((1, 0), covariance); slopes kept >= 0, so no draw reverses the map."""
    if covariance is None:
        return None
    var_a, cov_ab, var_b = covariance
    root = np.linalg.cholesky(np.array([[var_a, cov_ab], [cov_ab, var_b]]) + 1e-15 * np.eye(2))
    draws = rng.standard_normal((simulations, 2)) @ root.T + np.array([1.0, 0.0])
    draws[:, 0] = np.maximum(draws[:, 0], 0.0)
    return draws


def _summarize(metric: str, per_draw: np.ndarray, confidence: float) -> dict[str, float | tuple[float, float] | None]:
    defined = per_draw[~np.isnan(per_draw)]
    if len(defined) < 2:
        return {metric: None, f"{metric}_se": None, f"{metric}_interval": None}
    low, high = np.quantile(defined, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {
        metric: float(defined.mean()),
        f"{metric}_se": float(defined.std(ddof=1)),
        f"{metric}_interval": (float(low), float(high)),
    }


def _check_scores(scores: np.ndarray, caller: str) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or len(scores) == 0:
        raise DataError(f"{caller} needs a non-empty 1-D array of scores (got shape {scores.shape})")
    if not np.all((scores >= 0) & (scores <= 1)):
        raise DataError(f"{caller}: scores must be probabilities of label 1, in [0, 1] (found values outside or NaN)")
    return scores
