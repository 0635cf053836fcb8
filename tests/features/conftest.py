"""Feature-store fixtures: a real Feast repo (the project's own `features/`) against SQLite or a real Redis."""

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from feast import FeatureStore

from cicloml.demo.churn import DemoTables
from cicloml.feature_store import apply_repo, open_store
from cicloml.settings import Settings
from tests.conftest import FEATURE_REPO, ciclo_environment, redis_server

END = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "redis"])
def online_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """Settings for a fresh state folder, with the online store the test is parametrized over."""
    if request.param == "redis":
        with (
            redis_server(tmp_path) as url,
            ciclo_environment(tmp_path / "state", online_store="redis", redis_url=url) as settings,
        ):
            yield settings
    else:
        with ciclo_environment(tmp_path / "state") as settings:
            yield settings


def applied_store(settings: Settings, tables: DemoTables) -> FeatureStore:
    tables.write(settings.data_dir)
    store = open_store(FEATURE_REPO, settings)
    apply_repo(store)
    return store


def profile_row(customer_id: int, at: datetime, **values: object) -> dict[str, object]:
    row = {
        "plan": "basic",
        "contract": "month-to-month",
        "region": "north",
        "payment_method": "card",
        "senior_citizen": 0,
    }
    return {"customer_id": customer_id, "event_timestamp": at, "created_timestamp": at, **row, **values}


def activity_row(customer_id: int, at: datetime, **values: object) -> dict[str, object]:
    row = {
        "tenure_days": 100,
        "monthly_charges": 50.0,
        "usage_minutes_7d": 300.0,
        "data_gb_30d": 8.0,
        "support_tickets_30d": 0,
        "payment_failures_90d": 0,
        "days_since_last_login": 1,
    }
    return {"customer_id": customer_id, "event_timestamp": at, "created_timestamp": at, **row, **values}


def tables_from(profiles: list[dict], activity: list[dict], labels: list[dict] | None = None) -> DemoTables:
    def frame(rows: list[dict], *time_columns: str) -> pd.DataFrame:
        result = pd.DataFrame(rows)
        for column in time_columns:
            result[column] = pd.to_datetime(result[column], utc=True)
        return result

    activity_frame = frame(activity, "event_timestamp", "created_timestamp")
    activity_frame["days_since_last_login"] = activity_frame["days_since_last_login"].astype("Int64")
    return DemoTables(
        customers=frame(profiles, "event_timestamp", "created_timestamp"),
        activity=activity_frame,
        labels=frame(labels or [], "event_timestamp", "label_timestamp") if labels else pd.DataFrame(),
    )
