"""detect-drift under Prefect, embedded: unchanged traffic passes quietly; drifted traffic alerts a local Slack
receiver once, retrains in process (the new champion's bento is built), and a rerun repeats neither."""

from datetime import datetime, timedelta, timezone

import pytest

from cicloml.profiling import read_window_profiles, window_folder
from cicloml.registry import ModelRegistry
from flows.detect_drift import DetectDriftParams, detect_drift
from tests.conftest import ciclo_environment
from tests.flows.world import serve_window, world_with_champion
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
CUSTOMERS, DAYS = 500, 60
QUIET, DRIFTED = END + timedelta(hours=1), END + timedelta(hours=2)  # two hourly windows of traffic


def test_drift_alerts_once_and_retrains_in_process(tmp_path):
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
        assert (drifted.alert, drifted.retrain) == ("sent", "ran")
        report = open(drifted.report_path).read()
        assert "<h1>Drift: " in report and "monthly_charges" in report

        # Slack heard the drift, then the retraining outcome. The retrained model (the same data and seed, so the
        # same metrics: the gate lets an equal challenger through) is the champion, and its bento was built.
        assert [body["text"].split(":")[0] for body in slack.bodies] == ["Drift in churn", "Retrained churn"]
        assert "monthly_charges" in str(slack.bodies[0]["blocks"]) and "promoted" in slack.bodies[1]["text"]
        registry = ModelRegistry(settings, "churn")
        newest = registry.versions()[-1].tag
        assert newest != champion and registry.champion() == newest
        assert registry.bentos(newest) == [newest]  # a bento is tagged like its model

        again = detect_drift(DetectDriftParams(window_start=DRIFTED, model_tag=champion, retrain_in_process=True))
        assert (again.drifted, again.alert, again.retrain) == (True, "already_sent", "already_requested")
        assert len(slack.bodies) == 2
