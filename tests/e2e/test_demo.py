"""The closed loop end to end, the demo's path: a served model, normal traffic that raises nothing, drifted traffic
that alerts Slack (a local receiver) once, a retrained champion that `cicloml serve` switches to with no failed
request, live quality once the labels arrive, and batch predictions beside it all."""

import pytest

from flows.demo import DemoParams, demo
from flows.local import run_locally
from tests.conftest import ciclo_environment
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

CUSTOMERS = 500
PER_REQUEST = 10  # the demo's traffic sends ten ids a request


def test_the_demo_closes_the_loop(tmp_path):
    with (
        Receiver([]) as slack,
        ciclo_environment(
            tmp_path / "state", slack_webhook_url=slack.url.get_secret_value(), profile_window_seconds="10"
        ),
    ):
        summary = run_locally(demo, DemoParams(customers=CUSTOMERS, days=60, scenario="price_rise"))

    assert summary.skew == "no training/serving skew"
    assert (summary.drift, summary.drifted_features) == ("drift", ["monthly_charges"])
    assert (summary.alert, summary.retrained, summary.promoted) == ("sent", True, True)
    assert summary.champion_after != summary.champion_before
    assert summary.served_after == [summary.champion_after]
    assert summary.failed_requests == 0
    assert summary.requests_served == 2 * CUSTOMERS // PER_REQUEST + 100 // PER_REQUEST
    # The labels of the demo's traffic are drawn anew each run (seeded by the time), so a window's live ROC AUC can
    # dip past the tolerance by chance: then Slack hears that too, once per window the summary names.
    expected = ["Drift in churn", "Retrained churn"] + ["Quality drop in churn"] * len(summary.quality_drops)
    assert [body["text"].split(":")[0] for body in slack.bodies] == expected
    assert set(summary.live_roc_auc) == {"normal", "price_rise"}
    assert all(0.5 < auc < 1 for auc in summary.live_roc_auc.values()), summary.live_roc_auc
    assert summary.batch_predictions == CUSTOMERS
    assert summary.drift_report.endswith(".html")
