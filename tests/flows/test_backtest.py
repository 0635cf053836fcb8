"""The backtest flow under Prefect: a short seeded world replayed under two policies, its report written under the
state folder and shown as artifacts (the picture embedded, the HTML page linked)."""

import json

import pytest

from cicloml.backtest import BacktestResult
from flows.backtest import BacktestParams, backtest
from tests.conftest import ciclo_environment
from tests.flows.test_train import artifact

pytestmark = pytest.mark.slow


def test_the_backtest_flow_writes_its_report_and_shows_it(tmp_path):
    params = BacktestParams(
        weeks=2, customers=300, seed=3, policies=["never", "every_drift"], timeline=[(7, None, "price_rise")]
    )
    with ciclo_environment(tmp_path / "state") as settings:
        summary = backtest(params)
    folder = settings.reports_dir / "backtest"
    assert summary.report_dir.startswith(str(folder)) and list(summary.summaries) == ["never", "every_drift"]
    result = BacktestResult.model_validate_json((tmp_path / summary.report_dir / "backtest.json").read_text())
    assert [policy.policy.name for policy in result.policies] == ["never", "every_drift"]
    assert {name: s.model_dump() for name, s in summary.summaries.items()} == {
        policy.policy.name: json.loads(policy.summary.model_dump_json()) for policy in result.policies
    }
    assert summary.summaries["every_drift"].training_runs > summary.summaries["never"].training_runs == 1
    html = (tmp_path / summary.report_dir / "backtest.html").read_text()
    assert "every_drift" in html and "data:image/png;base64," in html
    shown = artifact("backtest")
    assert "data:image/png;base64," in shown and "every_drift" in shown and "never" in shown
    assert artifact("backtest-report").endswith(f"{summary.report_dir}/backtest.html)")
