"""A seeded customer-churn world: customer profiles, daily activity snapshots, and labels that arrive late.

Churn depends on the features (contract, charges, support tickets, payment failures, tenure, usage) plus noise,
so a model has something real to learn. `generate_traffic` writes the next day's snapshot, optionally drifted
by a named scenario, so the monitoring loop has something real to detect.

Same seed and same `end` → byte-identical files.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import pandas as pd

from cicloml.atomic import atomic_path

PLANS = ("basic", "standard", "premium")
CONTRACTS = ("month-to-month", "one-year", "two-year")
REGIONS = ("north", "south", "east", "west")
PAYMENT_METHODS = ("card", "bank-transfer", "invoice")
LABEL_DELAY = timedelta(days=30)
"""A label says whether the customer churned within 30 days of the observation, so it is known 30 days later."""

USAGE_LOG_MEAN = 5.71
USAGE_LOG_SPREAD = 0.68
"""The history's usage (a gamma(3, 120) level per customer times a lognormal(0, 0.25) day) in log space: mean
log(120) + digamma(3), standard deviation sqrt(trigamma(3) + 0.25²)."""
USAGE_PERSISTENCE = 0.9
"""How much of yesterday's log usage (about its mean) carries to today."""

DriftScenario = Literal["price_rise", "new_region", "broken_payment_feed"]
"""The scenarios that move the features."""
Scenario = Literal["none", DriftScenario, "competitor_offer"]
"""`competitor_offer` changes only who churns, which only labels show."""
SCENARIOS: tuple[str, ...] = get_args(Scenario)
DRIFT_SCENARIOS: tuple[str, ...] = get_args(DriftScenario)


@dataclass(frozen=True)
class DemoTables:
    """The three tables of the demo world. Timestamps are timezone-aware UTC."""

    customers: pd.DataFrame
    """Profile rows: one per customer, plus a row for each later contract change."""
    activity: pd.DataFrame
    """One snapshot per customer per day."""
    labels: pd.DataFrame
    """Observations with the churn outcome and when it became known (`label_timestamp`). History: weekly ones whose
    outcome is known by `end`; traffic: one per customer at the snapshot, known 30 days later."""

    def write(self, data_dir: Path) -> dict[str, Path]:
        """Write each table as Parquet under `data_dir`, atomically; return the paths by table name."""
        paths = {}
        for name in ("customers", "activity", "labels"):
            path = data_dir / f"{name}.parquet"
            with atomic_path(path) as temporary:
                getattr(self, name).to_parquet(temporary, index=False)
            paths[name] = path
        return paths

    def append_to(self, data_dir: Path) -> dict[str, Path]:
        """Add these rows to the tables written under `data_dir` (a new day's data arriving), atomically."""
        paths = {}
        for name in ("customers", "activity", "labels"):
            path = data_dir / f"{name}.parquet"
            rows = pd.concat([pd.read_parquet(path), getattr(self, name)], ignore_index=True)
            with atomic_path(path) as temporary:
                rows.to_parquet(temporary, index=False)
            paths[name] = path
        return paths


def generate_churn_data(end: datetime, *, customers: int = 2000, days: int = 90, seed: int = 7) -> DemoTables:
    """Generate `days` days of history for `customers` customers, ending at `end` (UTC)."""
    rng = np.random.default_rng(seed)
    end = _utc_midnight(end)
    start = end - timedelta(days=days)
    ids = np.arange(1001, 1001 + customers, dtype=np.int64)

    profile = _profiles(rng, ids, start)
    activity = _activity(rng, profile, start, days)
    profile_rows = _with_contract_changes(rng, profile, start, days)
    labels = _labels(rng, profile_rows, activity, end)
    return DemoTables(customers=profile_rows, activity=activity, labels=labels)


def generate_traffic(history: DemoTables, at: datetime, *, scenario: Scenario = "none", seed: int = 7) -> DemoTables:
    """The snapshot of every customer at `at`, continuing `history`, drifted by `scenario`, with each customer's
    churn outcome as a label known 30 days after `at`.

    - `price_rise`: monthly charges up 35% for everyone.
    - `new_region`: 40% of customers move to a region the model never saw (`central`).
    - `broken_payment_feed`: the upstream payment feed breaks; `payment_failures_90d` is all null.
    - `competitor_offer`: a competitor courts two-year customers. The features do not move, but the customers the
      model thought safest start to leave: concept drift, which only the labels show.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown drift scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    rng = np.random.default_rng([seed, int(at.timestamp())])
    latest = history.activity.sort_values("event_timestamp").groupby("customer_id").tail(1)
    latest = latest.sort_values("customer_id").reset_index(drop=True)
    snapshot = _step_activity(rng, latest, at)
    profile = history.customers.sort_values("event_timestamp").groupby("customer_id").tail(1)
    profile = profile.sort_values("customer_id").reset_index(drop=True)
    profile = profile.iloc[0:0]  # profiles only change when a scenario says so

    if scenario == "price_rise":
        snapshot["monthly_charges"] = (snapshot["monthly_charges"] * 1.35).round(2)
    elif scenario == "new_region":
        movers = history.customers.drop_duplicates("customer_id", keep="last")
        movers = movers[rng.random(len(movers)) < 0.4].copy()
        movers["region"] = "central"
        movers["event_timestamp"] = at
        movers["created_timestamp"] = at
        profile = movers.reset_index(drop=True)
    # Who churns depends on the world, not on what the feeds report: outcomes are drawn before a feed breaks.
    world = served_features(history, DemoTables(customers=profile, activity=snapshot, labels=history.labels))
    probability = churn_probability(world, world, competitor_offer=scenario == "competitor_offer")
    if scenario == "broken_payment_feed":
        snapshot["payment_failures_90d"] = pd.array([pd.NA] * len(snapshot), dtype="Int64")

    labels = pd.DataFrame(
        {
            "customer_id": world["customer_id"].to_numpy(),
            "event_timestamp": world["event_timestamp"].to_numpy(),
            "churned": (rng.random(len(world)) < probability).astype(np.int64),
        }
    )
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    labels["label_timestamp"] = labels["event_timestamp"] + LABEL_DELAY
    return DemoTables(customers=profile, activity=snapshot, labels=labels)


def served_features(history: DemoTables, traffic: DemoTables) -> pd.DataFrame:
    """What the online store serves after `traffic`: each customer's newest profile beside the traffic's activity."""
    profiles = pd.concat([history.customers, traffic.customers]).sort_values("event_timestamp")
    profiles = profiles.drop_duplicates("customer_id", keep="last")
    return traffic.activity.merge(profiles.drop(columns=["event_timestamp", "created_timestamp"]), on="customer_id")


def _utc_midnight(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("D")


def _profiles(rng: np.random.Generator, ids: np.ndarray, start: pd.Timestamp) -> pd.DataFrame:
    n = len(ids)
    tenure_at_start = rng.gamma(shape=2.0, scale=300.0, size=n).astype(np.int64)
    signup = start - pd.to_timedelta(tenure_at_start, unit="D")
    return pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": signup,
            "created_timestamp": signup,
            "plan": rng.choice(PLANS, size=n, p=[0.45, 0.35, 0.20]),
            "contract": rng.choice(CONTRACTS, size=n, p=[0.55, 0.25, 0.20]),
            "region": rng.choice(REGIONS, size=n, p=[0.3, 0.3, 0.25, 0.15]),
            "payment_method": rng.choice(PAYMENT_METHODS, size=n, p=[0.5, 0.3, 0.2]),
            "senior_citizen": (rng.random(n) < 0.16).astype(np.int64),
        }
    )


def _with_contract_changes(
    rng: np.random.Generator, profile: pd.DataFrame, start: pd.Timestamp, days: int
) -> pd.DataFrame:
    """About one customer in ten signs a longer contract part-way through the period."""
    changers = profile[rng.random(len(profile)) < 0.1].copy()
    changers["contract"] = np.where(changers["contract"] == "month-to-month", "one-year", "two-year")
    offsets = rng.integers(1, days, size=len(changers))
    changers["event_timestamp"] = start + pd.to_timedelta(offsets, unit="D") + pd.Timedelta(hours=9)
    changers["created_timestamp"] = changers["event_timestamp"]
    rows = pd.concat([profile, changers], ignore_index=True)
    return rows.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def _activity(rng: np.random.Generator, profile: pd.DataFrame, start: pd.Timestamp, days: int) -> pd.DataFrame:
    """Daily snapshots: a random walk per customer around a level set by their plan."""
    n = len(profile)
    plan_price = profile["plan"].map({"basic": 35.0, "standard": 65.0, "premium": 95.0}).to_numpy()
    base_charges = plan_price + rng.normal(0, 8, n)
    base_usage = rng.gamma(3.0, 120.0, n)
    tickets_rate = rng.gamma(1.0, 0.4, n)
    failures_rate = np.where(profile["payment_method"].to_numpy() == "invoice", 0.5, 0.15) * rng.gamma(1.0, 1.0, n)
    tenure_at_start = ((start - profile["event_timestamp"]).dt.days).to_numpy()

    day = np.arange(days)
    charges = base_charges[:, None] + np.cumsum(rng.normal(0, 0.6, (n, days)), axis=1)
    usage = np.clip(base_usage[:, None] * rng.lognormal(0, 0.25, (n, days)), 0, None)
    frame = pd.DataFrame(
        {
            "customer_id": np.repeat(profile["customer_id"].to_numpy(), days),
            "event_timestamp": start
            + pd.to_timedelta(np.tile(day, n), unit="D")
            + pd.to_timedelta(rng.integers(0, 6 * 3600, n * days), unit="s"),
            "tenure_days": (tenure_at_start[:, None] + day).ravel(),
            "monthly_charges": np.round(np.clip(charges, 10, None), 2).ravel(),
            "usage_minutes_7d": np.round(usage, 1).ravel(),
            "data_gb_30d": np.round(usage.ravel() / 40 * rng.lognormal(0, 0.3, n * days), 2),
            "support_tickets_30d": rng.poisson(np.repeat(tickets_rate, days)),
            "payment_failures_90d": rng.poisson(np.repeat(failures_rate, days)),
            "days_since_last_login": rng.geometric(0.35, n * days) - 1,
        }
    )
    frame["created_timestamp"] = frame["event_timestamp"] + pd.Timedelta(hours=1)
    # Real feeds have gaps: some logins were never recorded and some charges arrive late.
    frame["days_since_last_login"] = frame["days_since_last_login"].astype("Int64").mask(rng.random(len(frame)) < 0.05)
    frame["monthly_charges"] = frame["monthly_charges"].mask(rng.random(len(frame)) < 0.02)
    return frame.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def _step_activity(rng: np.random.Generator, latest: pd.DataFrame, at: datetime) -> pd.DataFrame:
    snapshot = latest.copy()
    n = len(snapshot)
    stamp = pd.Timestamp(at)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    days = (stamp - snapshot["event_timestamp"]).dt.days.clip(lower=0).to_numpy()
    snapshot["event_timestamp"] = stamp
    snapshot["created_timestamp"] = stamp
    snapshot["tenure_days"] = snapshot["tenure_days"] + days
    charges = snapshot["monthly_charges"].fillna(snapshot["monthly_charges"].median())
    snapshot["monthly_charges"] = np.round(np.clip(charges + rng.normal(0, 0.6, n), 10, None), 2)  # as the history
    # Mean-reverting in log space (AR(1)) with the history's log mean and spread: a random walk would widen usage's
    # spread day after day, so that an unchanged world drifted from its own training data within weeks.
    log_usage = np.log(np.clip(snapshot["usage_minutes_7d"].to_numpy(dtype=float), 1.0, None))
    log_usage = USAGE_LOG_MEAN + USAGE_PERSISTENCE * (log_usage - USAGE_LOG_MEAN)
    log_usage += np.sqrt(1 - USAGE_PERSISTENCE**2) * USAGE_LOG_SPREAD * rng.normal(0, 1, n)
    snapshot["usage_minutes_7d"] = np.round(np.exp(log_usage), 1)
    return snapshot


def churn_probability(activity: pd.DataFrame, profile: pd.DataFrame, *, competitor_offer: bool = False) -> np.ndarray:
    """The demo world's true churn probability for activity rows joined to their customer's profile; with a
    competitor's offer aimed at two-year customers, the most loyal start to leave."""
    contract = profile["contract"].to_numpy()
    logit = (
        -2.6
        + 1.2 * (contract == "month-to-month")
        - 0.8 * (contract == "two-year")
        + 0.03 * (activity["monthly_charges"].fillna(65).to_numpy() - 65)
        + 0.45 * activity["support_tickets_30d"].to_numpy()
        + 0.7 * activity["payment_failures_90d"].to_numpy()
        - 0.0012 * activity["tenure_days"].to_numpy()
        - 0.0015 * (activity["usage_minutes_7d"].to_numpy() - 360)
        + 0.4 * profile["senior_citizen"].to_numpy()
        + 0.3 * (profile["region"].to_numpy() == "south")
    )
    if competitor_offer:
        # A shift a model can learn from a day or two of labels: one segment, sharply. On such a day the old model's
        # ROC AUC is ~0.62, one retrained with a day of its labels ~0.74 (the demo's summary).
        logit = logit + 3.0 * (contract == "two-year")
    return 1.0 / (1.0 + np.exp(-logit))


def _labels(
    rng: np.random.Generator, profile_rows: pd.DataFrame, activity: pd.DataFrame, end: pd.Timestamp
) -> pd.DataFrame:
    """Weekly observations at noon: did the customer churn within the next 30 days?"""
    first_day = activity["event_timestamp"].min().floor("D")
    noon = pd.Timedelta(hours=12)
    observed_days = pd.date_range(first_day + pd.Timedelta(days=6), end - LABEL_DELAY - noon, freq="7D")
    snapshots = activity[activity["event_timestamp"].dt.floor("D").isin(observed_days)].copy()
    snapshots["observed_at"] = snapshots["event_timestamp"].dt.floor("D") + noon

    # The profile in force at each observation (contract changes count from their own time on).
    snapshots = pd.merge_asof(
        snapshots.sort_values("observed_at"),
        profile_rows.sort_values("event_timestamp").rename(columns={"event_timestamp": "profile_time"}),
        left_on="observed_at",
        right_on="profile_time",
        by="customer_id",
        suffixes=("", "_profile"),
    )
    churned = rng.random(len(snapshots)) < churn_probability(snapshots, snapshots)
    labels = pd.DataFrame(
        {
            "customer_id": snapshots["customer_id"].to_numpy(),
            "event_timestamp": snapshots["observed_at"].to_numpy(),
            "churned": churned.astype(np.int64),
        }
    )
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    labels["label_timestamp"] = labels["event_timestamp"] + LABEL_DELAY
    return labels.sort_values(["event_timestamp", "customer_id"], kind="stable").reset_index(drop=True)


def write_churn_data(
    data_dir: Path, end: datetime, *, customers: int = 2000, days: int = 90, seed: int = 7
) -> dict[str, Path]:
    """Generate the demo world (see `generate_churn_data`) and write it under `data_dir`; return the paths."""
    return generate_churn_data(end, customers=customers, days=days, seed=seed).write(data_dir)
