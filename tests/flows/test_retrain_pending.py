"""A retraining with no labels newer than the champion's fits nothing, registers nothing and leaves one pending
request; the quality check starts it again once enough labels have matured, and that retraining trains (real flows,
embedded, on the seeded world)."""

from datetime import datetime, timedelta, timezone

import pytest

from cicloml.registry import ModelRegistry
from cicloml.retraining import pending_requests
from flows.check_model_quality import CheckQualityParams, check_model_quality
from flows.retrain import RetrainParams, retrain
from tests.conftest import ciclo_environment
from tests.flows.test_check_model_quality import serve_and_log
from tests.flows.world import world_with_champion
from tests.unit.test_alerts import Receiver

pytestmark = pytest.mark.slow

END = datetime(2026, 11, 1, 6, tzinfo=timezone.utc)
CUSTOMERS, DAYS = 800, 60
FIRST, SECOND = END + timedelta(hours=1), END + timedelta(hours=2)


def test_a_retraining_without_new_labels_waits_for_them(tmp_path):
    with (
        Receiver([]) as slack,
        ciclo_environment(tmp_path / "state", slack_webhook_url=slack.url.get_secret_value()) as settings,
    ):
        champion, history = world_with_champion(END, CUSTOMERS, DAYS)
        serve_and_log(settings, champion, history, "none", FIRST)
        serve_and_log(settings, champion, history, "none", SECOND)
        registry = ModelRegistry(settings, "churn")

        # A check asked at once: the window's labels are 30 days away, so there is nothing new to learn from.
        asked = retrain(
            RetrainParams(
                as_of=END + timedelta(hours=3),
                reason="drift in the test",
                model_tag=champion,
                window_start=FIRST,
                check="drift",
            )
        )
        assert (asked.challenger, asked.promoted, asked.pending) == (None, False, True)
        assert asked.skipped.startswith("skipped: no labelled data to learn from: 0 labelled rows newer than")
        expected = FIRST + timedelta(days=30)
        assert f"labels for window {FIRST:%Y-%m-%d %H:%M} UTC are expected from {expected:%Y-%m-%d %H:%M}" in (
            asked.skipped
        )
        assert [version.tag for version in registry.versions()] == [champion]
        [waiting] = pending_requests(settings.state_dir, "churn")
        assert (waiting.model_tag, waiting.window_start, waiting.labels_expected_from) == (champion, FIRST, expected)
        assert [body["text"] for body in slack.bodies] == ["Retraining deferred: no new labelled data yet"]

        # Ten days on, no label has matured: the request keeps waiting.
        early = check_model_quality(CheckQualityParams(known_by=END + timedelta(days=10), retrain_in_process=True))
        assert early.restarted_requests == [] and len(pending_requests(settings.state_dir, "churn")) == 1

        # A month on, both windows' labels are known: the quality check (no drop to report) starts the request
        # again, and the retraining fits a challenger on them.
        late = check_model_quality(CheckQualityParams(known_by=END + timedelta(days=31), retrain_in_process=True))
        assert late.degraded_windows == [] and late.restarted_requests == [waiting.key]
        assert pending_requests(settings.state_dir, "churn") == []
        [_, challenger] = registry.versions()
        lineage = registry.lineage(challenger.tag)
        assert lineage.test_window[1] > registry.lineage(champion).test_window[1]
        assert lineage.gate is not None and lineage.gate.comparison is not None  # judged against the champion
        assert slack.bodies[-1]["text"].startswith("Retrained churn")
