"""backtest: replay weeks of a seeded world in simulated time and compare retraining policies on it.

The same library code as production (training, gate, drift, estimates, quality check, incidents, retraining rules)
runs day by day on the seeded churn world (`cicloml.backtest`), under each policy; the result is a JSON summary, a
picture and an HTML page under the state folder's reports, shown in the Prefect UI as artifacts.
"""

import base64

from prefect import flow, get_run_logger
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from pydantic import BaseModel, Field

from cicloml.backtest import (
    DEFAULT_POLICIES,
    BacktestWorld,
    PolicySummary,
    TimelineEntry,
    default_timeline,
    run_backtest,
)
from cicloml.backtest_report import summary_markdown, write_backtest_report
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from flows.local import run_locally


class BacktestParams(BaseModel):
    weeks: int = Field(16, ge=1)
    customers: int = Field(BacktestWorld.model_fields["customers"].default, ge=100)
    seed: int = 7
    policies: list[str] = Field(default_factory=lambda: list(DEFAULT_POLICIES))
    """Among never, weekly, every_drift, cicloml, oracle, cicloml_weekly."""
    timeline: list[TimelineEntry] = Field(default_factory=default_timeline)
    """(first day, day after the last or None for the world's end, scenario)."""


class BacktestSummary(BaseModel):
    report_dir: str
    """Where backtest.json, backtest.png and backtest.html are."""
    summaries: dict[str, PolicySummary]
    """Per policy, in the order asked."""


@flow(name="backtest")
def backtest(params: BacktestParams = BacktestParams()) -> BacktestSummary:
    """Replay `params.weeks` weeks of the seeded world under each policy with the spec's rules; write and show the
    comparison."""
    logger = get_run_logger()
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    world = BacktestWorld(weeks=params.weeks, customers=params.customers, seed=params.seed, timeline=params.timeline)
    result = run_backtest(spec, world, params.policies, progress=logger.info)

    folder = settings.reports_dir / "backtest" / world.name
    paths = write_backtest_report(result, folder)
    picture = base64.b64encode(paths["png"].read_bytes()).decode()
    create_markdown_artifact(
        key="backtest",
        markdown=f"![live ROC AUC per day and policy](data:image/png;base64,{picture})\n\n{summary_markdown(result)}",
        description=world.name,
    )
    create_link_artifact(key="backtest-report", link=paths["html"].as_uri(), link_text="backtest report (HTML)")
    logger.info("backtest written to %s", folder)
    return BacktestSummary(
        report_dir=str(folder), summaries={policy.policy.name: policy.summary for policy in result.policies}
    )


if __name__ == "__main__":
    print(run_locally(backtest).model_dump_json(indent=2))
