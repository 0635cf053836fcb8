"""materialize-features: register the Feast repo and load the online store up to now."""

import argparse
from datetime import datetime, timezone

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from cicloml.feature_store import MaterializeReport
from cicloml.settings import get_settings
from cicloml.spec import load_spec
from flows import tasks
from flows.local import run_locally


class MaterializeParams(BaseModel):
    end: datetime | None = None
    """Materialize up to this time (default: now)."""
    generate_demo_data: bool = False
    """Write the seeded demo data first (the embedded demo; leave off for real sources)."""
    demo_customers: int = Field(2000, ge=10)
    demo_days: int = Field(90, ge=35, description="Labels arrive 30 days late, so at least 35 days of history.")
    seed: int = 7


@flow(name="materialize-features")
def materialize_features(params: MaterializeParams = MaterializeParams()) -> MaterializeReport:
    """Apply the Feast repo and materialize every online view incrementally up to `end`. Running it twice
    changes nothing: the second run's windows are empty."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    end = params.end or datetime.now(timezone.utc)
    if params.generate_demo_data:
        tasks.write_churn_data(
            settings.data_dir, end, customers=params.demo_customers, days=params.demo_days, seed=params.seed
        )
    store = tasks.open_store(spec.features.repo, settings)
    applied = tasks.apply_repo(store)
    report = tasks.materialize(store, end)
    get_run_logger().info(
        "Materialized %d rows across %d views in %.1fs", report.rows, len(report.views), report.seconds
    )
    create_markdown_artifact(
        key="materialize-summary", markdown=_summary(report, applied.feature_services), description="Rows per view"
    )
    return report


def _summary(report: MaterializeReport, services: list[str]) -> str:
    lines = [
        f"**{report.rows} rows** materialized in {report.seconds:.2f}s; feature services: {', '.join(services)}",
        "",
        "| view | window start | window end | rows |",
        "|---|---|---|---:|",
    ]
    lines += [f"| {v.view} | {v.start:%Y-%m-%d %H:%M} | {v.end:%Y-%m-%d %H:%M} | {v.rows} |" for v in report.views]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flows.materialize_features",
        description="Register the Feast repository the project spec names and load its online store up to now.",
    )
    parser.add_argument(
        "--demo", action="store_true", help="first write the seeded churn demo's data into the state folder"
    )
    args = parser.parse_args(argv)
    print(run_locally(materialize_features, MaterializeParams(generate_demo_data=args.demo)).model_dump_json(indent=2))


if __name__ == "__main__":
    main()
