"""detect-drift under Prefect, embedded: unchanged traffic passes quietly; drifted traffic (a covariate shift the
model ranks as well as ever) alerts a local Slack receiver once with its estimated impact, which holds, so no
retraining is asked for; a rerun repeats nothing; the drift's next window sends nothing, and clean windows that
clear the incident send one message."""

import re
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

import pytest

from cicloml.profiling import read_window_profiles, window_folder
from cicloml.registry import ModelRegistry
from cicloml.spec import load_spec
from flows.detect_drift import DetectDriftParams, detect_drift
from tests.conftest import ciclo_environment
from tests.flows.world import serve_window, world_with_champion
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
CUSTOMERS, DAYS = 500, 60
QUIET, DRIFTED = END + timedelta(hours=1), END + timedelta(hours=2)  # two hourly windows of traffic


def test_drift_alerts_once_with_its_estimated_impact(tmp_path):
    with (
        Receiver([]) as slack,
        ciclo_environment(tmp_path / "state", slack_webhook_url=slack.url.get_secret_value()) as settings,
    ):
        champion, history = world_with_champion(END, CUSTOMERS, DAYS)
        quiet_rows = serve_window(settings, champion, history, "none", QUIET)
        drifted_rows = serve_window(settings, champion, history, "price_rise", DRIFTED)
        merged = read_window_profiles(window_folder(settings.profiles_dir, champion, QUIET))
        assert merged.get_column("monthly_charges").get_metric("counts").n.value == quiet_rows

        # The first window is the training/serving skew check: the same feature service, so no skew.
        quiet = detect_drift(DetectDriftParams(window_start=QUIET, retrain_in_process=True))
        assert (quiet.check, quiet.drifted, quiet.rows) == ("skew", False, quiet_rows)
        assert (quiet.alert, quiet.retrain) == ("none", "none")
        assert quiet.prediction_score is not None and quiet.prediction_score < 0.2
        assert slack.bodies == []

        drifted = detect_drift(DetectDriftParams(window_start=DRIFTED, retrain_in_process=True))
        assert (drifted.check, drifted.drifted, drifted.rows) == ("drift", True, drifted_rows)
        assert drifted.drifted_features == ["monthly_charges"]
        # The estimate from the window's logged scores says the model ranks as well as at training: drift alerted,
        # retraining held, and the reason (with the estimate) is in the result, the report and the message.
        estimate = drifted.performance
        assert estimate is not None and estimate.rows == drifted_rows
        baseline = ModelRegistry(settings, "churn").lineage(champion).metrics["roc_auc"]
        assert estimate.roc_auc_interval[1] >= baseline - 0.05, (estimate, baseline)
        assert (drifted.alert, drifted.retrain) == ("sent", "held")
        assert drifted.retrain_reason.startswith("holds: estimated ROC AUC"), drifted.retrain_reason
        report = open(drifted.report_path).read()
        assert "<h1>Drift: " in report and "monthly_charges" in report and "estimated ROC AUC" in report
        assert [body["text"].split(":")[0] for body in slack.bodies] == ["Drift in churn"]
        blocks = str(slack.bodies[0]["blocks"])
        assert "monthly_charges" in blocks and "Estimated impact" in blocks and "no retraining" in blocks
        assert [version.tag for version in ModelRegistry(settings, "churn").versions()] == [champion]

        again = detect_drift(DetectDriftParams(window_start=DRIFTED, model_tag=champion, retrain_in_process=True))
        assert (again.drifted, again.alert, again.retrain) == (True, "already_sent", "held")
        assert len(slack.bodies) == 1

        # The drift goes on in the next window: part of the incident already announced, no message. Then clean
        # windows: Slack hears once more, when `alerts.clear_after` of them in a row clear it.
        later = DRIFTED + timedelta(hours=1)
        serve_window(settings, champion, history, "price_rise", later)
        lasting = detect_drift(DetectDriftParams(window_start=later, retrain_in_process=True))
        assert (lasting.drifted, lasting.incident, lasting.alert) == (True, "continues", "incident_open")
        clear_after = load_spec(settings.spec_path).alerts.clear_after
        outcomes = []
        for hour in range(2, 2 + clear_after):
            serve_window(settings, champion, history, "none", DRIFTED + timedelta(hours=hour))
            clean = detect_drift(DetectDriftParams(window_start=DRIFTED + timedelta(hours=hour)))
            outcomes.append((clean.drifted, clean.incident, clean.alert))
        assert outcomes == [(False, "continues", "none")] * (clear_after - 1) + [(False, "cleared", "sent")]
        assert [body["text"].split(":")[0] for body in slack.bodies] == ["Drift in churn", "Drift in churn cleared"]
        assert "2 alerting window(s); peak monthly_charges" in str(slack.bodies[1]["blocks"])
        # The model-health page names every window checked, once each, with the drift's held retraining and why.
        page = open(clean.health_page).read()
        assert f"<{Path(clean.health_page).as_uri()}|Model health>" in str(slack.bodies[0]["blocks"])  # Slack links it
        checked = [QUIET, DRIFTED, later, *(DRIFTED + timedelta(hours=h) for h in range(2, 2 + clear_after))]
        assert re.findall(r'class="window" data-window="([^"]+)"', page) == [w.isoformat() for w in checked[::-1]]
        assert "<b>held</b>" in page and escape(drifted.retrain_reason) in page
