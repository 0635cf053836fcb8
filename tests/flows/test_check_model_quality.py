"""check-model-quality under Prefect, embedded: labels that have not arrived give no verdict; once they arrive, a
window of normal traffic holds its quality and a window of concept drift (outcomes changed, features not) is
alerted once and asks for retraining once (the retraining itself is detect-drift's test and the trigger's)."""

from datetime import datetime, timedelta, timezone

import pytest

from cicloml.demo.churn import generate_traffic, served_features
from cicloml.models.row_scorer import row_scoring
from cicloml.prediction_log import PredictionLog
from cicloml.registry import ModelRegistry
from flows.check_model_quality import CheckQualityParams, check_model_quality
from tests.conftest import ciclo_environment
from tests.flows.world import world_with_champion
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
CUSTOMERS, DAYS = 800, 60
NORMAL, CONCEPT_DRIFT = END + timedelta(hours=1), END + timedelta(hours=2)


def serve_and_log(settings, champion: str, history, scenario: str, at: datetime) -> None:
    """A window of traffic as the service logs it, and its labels added to the label table (known 30 days on)."""
    model = ModelRegistry(settings, "churn").load(champion)
    traffic = generate_traffic(history, at, scenario=scenario)
    traffic.append_to(settings.data_dir)
    served = served_features(history, traffic)
    schema = model.lineage.features
    scores = row_scoring(model.pipeline, schema)({name: served[name].tolist() for name in schema.features}).tolist()
    log = PredictionLog(settings.prediction_log_dir, champion, "worker-a", clock=lambda: at.timestamp() + 60)
    log.record({"customer_id": served["customer_id"].tolist()}, scores)
    log.close()


def test_a_quality_drop_alerts_once_and_requests_retraining_once(tmp_path):
    with (
        Receiver([]) as slack,
        ciclo_environment(tmp_path / "state", slack_webhook_url=slack.url.get_secret_value()) as settings,
    ):
        champion, history = world_with_champion(END, CUSTOMERS, DAYS)
        serve_and_log(settings, champion, history, "none", NORMAL)
        serve_and_log(settings, champion, history, "competitor_offer", CONCEPT_DRIFT)

        early = check_model_quality(CheckQualityParams(known_by=END + timedelta(days=10)))
        assert (early.windows, early.labelled, early.live_roc_auc) == (2, 0, None)
        assert (early.alerts, early.retrain) == ([], "none") and slack.bodies == []

        known_by = END + timedelta(days=31)
        late = check_model_quality(CheckQualityParams(known_by=known_by, retrain_in_process=False))
        normal, drifted = late.window_roc_auc[NORMAL], late.window_roc_auc[CONCEPT_DRIFT]
        assert late.labelled == 2 * CUSTOMERS
        assert normal > late.baseline_roc_auc - 0.05 > drifted, late
        assert late.degraded_windows == [CONCEPT_DRIFT]
        # The scores looked as good as at training: the estimate did not foresee the drop, so it is named concept
        # drift, in the result, the report and Slack.
        assert late.concept_drift_windows == [CONCEPT_DRIFT]
        foreseen = late.estimates[CONCEPT_DRIFT]
        assert foreseen is not None and foreseen.roc_auc_interval[1] >= late.baseline_roc_auc - 0.05 > drifted
        assert (late.alerts, late.retrain) == (["sent"], "requested")
        assert [body["text"].split(":")[0] for body in slack.bodies] == ["Probable concept drift in churn"]
        assert f"{drifted:.3f}" in slack.bodies[0]["text"] and "concept drift" in str(slack.bodies[0]["blocks"])
        # The model-health page shows both windows' realized quality beside the estimate, and the request with why.
        page = open(late.health_page).read()
        assert f"realized ROC AUC {drifted:.3f}" in page and f"realized ROC AUC {normal:.3f}" in page
        assert "probable concept drift: live ROC AUC" in page and "<b>requested</b>" in page

        again = check_model_quality(CheckQualityParams(model_tag=champion, known_by=known_by, retrain_in_process=False))
        assert (again.alerts, again.retrain) == (["already_sent"], "already_requested")
        assert len(slack.bodies) == 1
