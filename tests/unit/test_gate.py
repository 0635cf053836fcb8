from cicloml.evaluation import Metrics
from cicloml.gate import decide_promotion
from cicloml.spec import GatesSpec

GATES = GatesSpec(min_roc_auc=0.7, min_pr_auc=0.2, max_regression=0.01)


def metrics(roc_auc: float, pr_auc: float = 0.4) -> Metrics:
    return Metrics(
        roc_auc=roc_auc, pr_auc=pr_auc, log_loss=0.3, brier=0.1, f1=0.4, precision=0.4, recall=0.4,
        positive_rate=0.12, rows=1000,
    )  # fmt: skip


def test_with_no_champion_the_floors_decide():
    assert decide_promotion(metrics(0.75), None, GATES).promote
    rejected = decide_promotion(metrics(0.65), None, GATES)
    assert not rejected.promote
    assert rejected.reasons[0] == "failed: ROC AUC 0.6500 vs floor 0.7000"
    assert not decide_promotion(metrics(0.75, pr_auc=0.1), None, GATES).promote


def test_a_challenger_may_be_at_most_the_tolerance_worse_than_the_champion():
    assert decide_promotion(metrics(0.795), metrics(0.80), GATES, champion_tag="churn:a").promote
    worse = decide_promotion(metrics(0.78), metrics(0.80), GATES, champion_tag="churn:a")
    assert not worse.promote
    assert "failed: ROC AUC 0.7800 vs champion churn:a 0.8000 (tolerance 0.0100)" in worse.reasons


def test_the_floors_apply_even_when_the_champion_is_worse():
    assert not decide_promotion(metrics(0.69), metrics(0.60), GATES, champion_tag="churn:a").promote


def test_the_decision_renders_for_people():
    text = decide_promotion(metrics(0.78), metrics(0.80), GATES, champion_tag="churn:a").markdown("churn:b")
    assert "Challenger `churn:b` **rejected**" in text and "| roc_auc | 0.7800 | 0.8000 |" in text
