"""The demo's path end to end: a served model; a normal day that raises nothing; a covariate shift whose drift is
alerted with its estimated impact, which holds, so nothing is trained; days of concept drift that no feature shows;
their labels, a month later, show the drop the estimate missed (concept drift); a retraining on those labels that
beats the champion on fresh post-drift rows with its interval; `cicloml serve` switching to it with no failed
request; and the next day's labels showing the new model's live ROC AUC above the old one's."""

import pytest

from flows.demo import DemoParams, demo
from flows.local import run_locally
from tests.conftest import ciclo_environment
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

CUSTOMERS = 2000  # the demo's own world: its story is tuned on it, not on a smaller one
CONCEPT_DAYS = 3


def test_the_demo_heals_a_degraded_model(tmp_path):
    with (
        Receiver([]) as slack,
        ciclo_environment(
            tmp_path / "state", slack_webhook_url=slack.url.get_secret_value(), profile_window_seconds="20"
        ),
    ):
        summary = run_locally(
            demo, DemoParams(customers=CUSTOMERS, days=90, scenario="price_rise", concept_days=CONCEPT_DAYS)
        )

    # Covariate shift: alerted, estimated to hold, nothing trained for it.
    assert summary.skew == "no training/serving skew"
    assert (summary.drift, summary.drifted_features, summary.alert) == ("drift", ["monthly_charges"], "sent")
    assert summary.drift_retraining == "held"
    [normal, shifted, *concept, recovery] = summary.windows
    assert shifted.decision == "drift: alerted; retraining held" and shifted.reason.startswith("holds: estimated")

    # Concept drift: no feature moved, the labels show a drop the estimate did not foresee.
    assert summary.concept_drift_check == "no drift"
    # (A normal day's labels may dip past the tolerance by chance, unforeseen too: it would be named as well.)
    named = [f"competitor_offer {day}" for day in range(1, CONCEPT_DAYS + 1)]
    assert set(named) <= set(summary.concept_drift_days), summary.concept_drift_days
    for day in concept:
        assert day.estimated is not None and day.realized_roc_auc is not None
        assert day.realized_roc_auc < day.estimated.roc_auc_interval[0], day
    assert concept[-1].decision == "probable concept drift: retraining requested"

    # One retraining, on the new labels; the challenger beat the champion on the post-drift rows it did not train
    # on, by more than the gate asks and with the interval's lower bound above zero.
    assert summary.training_runs == 2 and summary.promoted
    assert summary.champion_after != summary.champion_before
    gate = summary.gate
    assert gate is not None and gate.rows == CUSTOMERS and gate.difference >= 0.005 and gate.interval[0] > 0
    assert all(reason.startswith("ok: ") for reason in summary.gate_reasons), summary.gate_reasons

    # Switched with traffic flowing and nothing failed; the next day's labels show the recovery.
    assert summary.requests_during_switch > 0 and summary.failed_during_switch == 0
    assert summary.failed_requests == 0
    assert summary.served_after == [summary.champion_after]
    assert recovery.model_tag == summary.champion_after
    assert summary.live_roc_auc_after > summary.live_roc_auc_before + 0.02, summary

    texts = [body["text"].split(":")[0] for body in slack.bodies]
    assert texts[0] == "Drift in churn" and texts[-1] == "Retrained churn"
    assert texts.count("Probable concept drift in churn") == 1  # one message for the run of degraded days
    assert summary.batch_predictions == CUSTOMERS
    assert summary.drift_report.endswith(".html")
