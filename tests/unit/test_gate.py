from datetime import datetime, timezone

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cicloml import gate
from cicloml.errors import DataError
from cicloml.evaluation import Metrics
from cicloml.gate import GateDecision, PairedComparison, compare_paired, decide_promotion
from cicloml.spec import GatesSpec

GATES = GatesSpec(min_roc_auc=0.7, min_pr_auc=0.2, max_regression=0.01, min_improvement=0.005, confidence=0.9)
WINDOW = (datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc))


def metrics(roc_auc: float, pr_auc: float = 0.4) -> Metrics:
    return Metrics(
        roc_auc=roc_auc, pr_auc=pr_auc, log_loss=0.3, brier=0.1, f1=0.4, precision=0.4, recall=0.4,
        positive_rate=0.12, rows=1000,
    )  # fmt: skip


def rows(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """A signal x and labels ~ Bernoulli(sigmoid(2x)); models see x through more or less noise."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(int)
    return signal, labels, rng


def model(signal: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(signal + noise * rng.normal(size=len(signal)))))


def judge(challenger: np.ndarray, champion: np.ndarray, labels: np.ndarray) -> GateDecision:
    comparison = compare_paired(challenger, champion, labels, confidence=GATES.confidence, window=WINDOW)
    ours, theirs = roc_auc_score(labels, challenger), roc_auc_score(labels, champion)
    return decide_promotion(
        metrics(ours), metrics(theirs), GATES, champion_tag="churn:a", comparison=comparison
    )  # fmt: skip


def comparison(difference: float, interval: tuple[float, float], champion_roc_auc: float = 0.8) -> PairedComparison:
    return PairedComparison(
        rows=5000, positives=600, window=WINDOW, challenger_roc_auc=champion_roc_auc + difference,
        champion_roc_auc=champion_roc_auc, difference=difference, interval=interval, confidence=0.9, resamples=1000,
    )  # fmt: skip


# --- the gate ---------------------------------------------------------------------------------------------------


def test_with_no_champion_the_floors_decide():
    assert decide_promotion(metrics(0.75), None, GATES).promote
    rejected = decide_promotion(metrics(0.65), None, GATES)
    assert not rejected.promote
    assert rejected.reasons[0] == "failed: ROC AUC 0.6500 vs floor 0.7000"
    assert not decide_promotion(metrics(0.75, pr_auc=0.1), None, GATES).promote
    assert rejected.comparison is None and "ok: no champion yet, the floors decide" in rejected.reasons


def test_an_identical_challenger_is_rejected_a_tie_is_not_a_promotion():
    signal, labels, rng = rows()
    scores = model(signal, rng, noise=0.8)
    decision = judge(scores, scores.copy(), labels)
    assert not decision.promote
    assert decision.comparison.difference == 0.0 and decision.comparison.interval == (0.0, 0.0)
    assert decision.reasons[0] == (
        f"failed: improvement: ROC AUC {roc_auc_score(labels, scores):.4f} vs champion churn:a "
        f"{roc_auc_score(labels, scores):.4f} on the same 4000 rows, difference +0.0000 vs required +0.0050 "
        "(a tie is not a promotion)"
    )
    assert len([reason for reason in decision.reasons if reason.startswith("failed")]) == 1


def test_a_slightly_worse_challenger_is_rejected():
    signal, labels, rng = rows()
    champion = model(signal, rng, noise=0.8)
    challenger = champion + 0.05 * rng.normal(size=len(champion))  # the champion, blurred a little
    decision = judge(challenger, champion, labels)
    assert -0.01 < decision.comparison.difference < 0
    assert not decision.promote
    assert decision.reasons[0].startswith("failed: improvement:")


def test_a_clearly_better_challenger_is_promoted():
    signal, labels, rng = rows()
    champion, challenger = model(signal, rng, noise=1.2), model(signal, rng, noise=0.6)
    decision = judge(challenger, champion, labels)
    assert decision.promote, decision.reasons
    assert decision.comparison.difference > 0.03 and decision.comparison.interval[0] > 0
    assert [reason.split(":")[0] for reason in decision.reasons] == ["ok"] * 4


def test_a_challenger_that_is_plausibly_much_worse_is_rejected_even_if_better_on_average():
    decision = decide_promotion(
        metrics(0.82), metrics(0.80), GATES, champion_tag="churn:a", comparison=comparison(0.02, (-0.03, 0.07))
    )
    assert not decision.promote
    assert decision.reasons == [
        "failed: not plausibly worse: 90% paired interval of the difference [-0.0300, +0.0700] (1000 resamples), "
        "lower bound -0.0300 vs tolerance -0.0100",
        "ok: ROC AUC 0.8200 vs floor 0.7000",
        "ok: PR AUC 0.4000 vs floor 0.2000",
        "ok: improvement: ROC AUC 0.8200 vs champion churn:a 0.8000 on the same 5000 rows, difference +0.0200 vs "
        "required +0.0050 (a tie is not a promotion)",
    ]
    within = comparison(0.02, (-0.01, 0.05))  # the lower bound exactly at the tolerance passes
    assert decide_promotion(metrics(0.82), metrics(0.80), GATES, champion_tag="churn:a", comparison=within).promote


def test_the_floors_apply_even_when_the_champion_is_worse():
    decision = decide_promotion(
        metrics(0.69), metrics(0.60), GATES, champion_tag="churn:a", comparison=comparison(0.09, (0.05, 0.13), 0.6)
    )
    assert not decision.promote
    assert decision.reasons[0] == "failed: ROC AUC 0.6900 vs floor 0.7000"


def test_without_fresh_rows_to_compare_on_a_challenger_is_not_promoted():
    decision = decide_promotion(metrics(0.85), metrics(0.80), GATES, champion_tag="churn:a")
    assert not decision.promote
    assert decision.reasons[0].startswith("failed: no fresh labelled rows") and "churn:a" in decision.reasons[0]


def test_a_comparison_needs_a_champion():
    with pytest.raises(ValueError, match="no champion"):
        decide_promotion(metrics(0.85), None, GATES, comparison=comparison(0.05, (0.02, 0.08)))


def test_the_decision_records_the_comparison_and_survives_json():
    signal, labels, rng = rows()
    decision = judge(model(signal, rng, noise=0.6), model(signal, rng, noise=1.2), labels)
    recorded = decision.comparison
    assert (recorded.rows, recorded.positives, recorded.window) == (4000, int(labels.sum()), WINDOW)
    assert recorded.interval[0] < recorded.difference < recorded.interval[1]
    assert (recorded.confidence, recorded.resamples) == (0.9, 1000)
    again = GateDecision.model_validate_json(decision.model_dump_json())
    assert again == decision and again.label == "passed"


def test_the_decision_renders_for_people():
    decision = decide_promotion(
        metrics(0.78), metrics(0.80), GATES, champion_tag="churn:a", comparison=comparison(-0.02, (-0.04, -0.001))
    )
    text = decision.markdown("churn:b")
    assert "Challenger `churn:b` **rejected**" in text and "| roc_auc | 0.7800 | 0.8000 |" in text
    assert (
        "On the same 5000 rows (600 positive, 2026-10-01 00:00 UTC to 2026-11-01 00:00 UTC): ROC AUC challenger "
        "0.7800, champion 0.8000, difference -0.0200 (90% interval -0.0400 to -0.0010, 1000 paired resamples)."
    ) in text
    table_end, summary = text.index("| f1 |"), text.index("On the same 5000 rows")
    assert table_end < summary < text.index("Champion: `churn:a`")
    assert "On the same" not in decide_promotion(metrics(0.78), None, GATES).markdown("churn:b")


# --- the paired bootstrap ---------------------------------------------------------------------------------------


def test_compare_paired_measures_both_models_on_the_same_rows_like_sklearn():
    signal, labels, rng = rows(n=1500, seed=3)
    # Rounded scores have many ties: they count half, as in roc_auc_score.
    challenger, champion = np.round(model(signal, rng, 0.7), 2), np.round(model(signal, rng, 1.0), 1)
    result = compare_paired(challenger, champion, labels, confidence=0.95, resamples=200, seed=1)
    assert result.challenger_roc_auc == pytest.approx(roc_auc_score(labels, challenger), abs=1e-12)
    assert result.champion_roc_auc == pytest.approx(roc_auc_score(labels, champion), abs=1e-12)
    assert result.difference == pytest.approx(result.challenger_roc_auc - result.champion_roc_auc, abs=1e-12)
    assert (result.rows, result.positives, result.window, result.confidence) == (1500, labels.sum(), None, 0.95)


def exact_auc(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> float:
    """ROC AUC of rows drawn `counts` times each, pair by pair: twice the pairs a positive outranks (a tie counts
    half) over twice the pairs, both exact integers, so the one rounding is the division's."""
    positive = labels == 1
    above = np.sign(np.subtract.outer(scores[positive], scores[~positive])) + 1  # 2 above, 1 tied, 0 below
    wins_twice = int((np.outer(counts[positive], counts[~positive]) * above).sum())
    pairs = int(counts[positive].sum()) * int(counts[~positive].sum())
    return wins_twice / (2 * pairs) if pairs else np.nan


@pytest.mark.parametrize("decimals", [None, 2, 1], ids=["distinct scores", "some ties", "a dozen scores"])
def test_every_paired_resample_is_scored_exactly_as_the_rows_it_drew(monkeypatch, decimals):
    signal, labels, rng = rows(n=150, seed=4)
    challenger, champion = model(signal, rng, 0.7), model(signal, rng, 1.0)
    if decimals is not None:  # tree ensembles' scores: many ties, within a class and across classes
        challenger, champion = np.round(challenger, decimals), np.round(champion, decimals)
    # Small chunks of draws and smaller blocks of them scored at once, the last of each partial.
    monkeypatch.setattr(gate, "_CHUNK_CELLS", 150 * 7)
    monkeypatch.setattr(gate, "_BLOCK_DRAWS", 150 * 3)
    result = compare_paired(challenger, champion, labels, confidence=0.8, resamples=30, seed=5)

    # The same draws (chunk by chunk from the seed), each resample scored on its own.
    draws = np.random.default_rng(5)
    drawn = np.concatenate([draws.integers(0, 150, size=(min(7, 30 - start), 150)) for start in range(0, 30, 7)])
    differences = []
    for indices in drawn:
        counts = np.bincount(indices, minlength=150)
        ours, theirs = exact_auc(challenger, labels, counts), exact_auc(champion, labels, counts)
        assert ours == pytest.approx(roc_auc_score(labels, challenger, sample_weight=counts), abs=1e-12)
        assert theirs == pytest.approx(roc_auc_score(labels[indices], champion[indices]), abs=1e-12)
        differences.append(ours - theirs)
    assert result.resamples == 30
    tail = (1 - 0.8) / 2
    assert result.interval == tuple(np.quantile(differences, [tail, 1 - tail]))  # to the bit
    every_row = np.ones(150, dtype=np.int64)
    assert result.challenger_roc_auc == exact_auc(challenger, labels, every_row)
    assert result.champion_roc_auc == exact_auc(champion, labels, every_row)
    assert result.challenger_roc_auc == pytest.approx(roc_auc_score(labels, challenger), abs=1e-12)


def test_compare_paired_is_deterministic_for_a_seed():
    signal, labels, rng = rows(n=2000, seed=1)
    challenger, champion = model(signal, rng, 0.8), model(signal, rng, 0.9)
    first = compare_paired(challenger, champion, labels, confidence=0.9, seed=7)
    assert compare_paired(challenger, champion, labels, confidence=0.9, seed=7) == first
    assert compare_paired(challenger, champion, labels, confidence=0.9, seed=8).interval != first.interval
    wider = compare_paired(challenger, champion, labels, confidence=0.99, seed=7).interval
    assert wider[0] < first.interval[0] and first.interval[1] < wider[1]


def test_the_paired_interval_contains_the_observed_difference_and_pairing_narrows_it():
    for seed in range(5):
        signal, labels, rng = rows(n=2000, seed=seed)
        champion_logit = signal + 0.9 * rng.normal(size=len(signal))
        champion = 1 / (1 + np.exp(-champion_logit))
        challenger = 1 / (1 + np.exp(-(champion_logit + 0.3 * rng.normal(size=len(signal)))))  # much alike
        result = compare_paired(challenger, champion, labels, confidence=0.9, resamples=500, seed=seed)
        lower, upper = result.interval
        assert lower < result.difference < upper, (seed, result)
        # Pairing cancels what the rows share: the difference varies far less than either AUC on its own. (Against
        # a constant, whose AUC is always 0.5, the interval is the challenger AUC's own.)
        alone = compare_paired(challenger, np.zeros_like(challenger), labels, confidence=0.9, resamples=500, seed=seed)
        assert upper - lower < 0.5 * (alone.interval[1] - alone.interval[0]), (seed, result, alone)


def test_resamples_with_a_single_class_are_dropped():
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    scores = np.linspace(0.1, 0.9, 8)
    result = compare_paired(scores, scores[::-1], labels, confidence=0.9, resamples=400)
    # A resample misses the one positive with probability (7/8)^8 ≈ 0.34.
    assert 200 < result.resamples < 350
    assert result.interval[0] <= result.interval[1]


def test_compare_paired_refuses_what_it_cannot_compare():
    scores = np.linspace(0, 1, 10)
    with pytest.raises(DataError, match="both classes, but all 10 labels are 0"):
        compare_paired(scores, scores, np.zeros(10, dtype=int), confidence=0.9)
    with pytest.raises(DataError, match="both classes, but all 10 labels are 1"):
        compare_paired(scores, scores, np.ones(10, dtype=int), confidence=0.9)
    with pytest.raises(DataError, match=r"differ in length \(10, 9 and 10\)"):
        compare_paired(scores, scores[:9], np.arange(10) % 2, confidence=0.9)
    with pytest.raises(DataError, match="labels must be 0 or 1"):
        compare_paired(scores, scores, np.arange(10), confidence=0.9)
    with pytest.raises(DataError, match="finite"):
        compare_paired(np.r_[scores[:9], np.nan], scores, np.arange(10) % 2, confidence=0.9)
    with pytest.raises(DataError, match="empty"):
        compare_paired(np.array([]), np.array([]), np.array([]), confidence=0.9)
