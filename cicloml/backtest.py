"""Backtest: the monitoring and retraining loop replayed day by day in simulated time, for several retraining
policies on the same seeded world.

Whether a retraining policy keeps the live model good, and at what cost in training runs and alerts, shows only over
weeks of a drifting world with labels that arrive a month late; the demo shows one pass of the loop. A backtest
replays those weeks in process, in a minute, through the library code production runs, so policies can be compared
on the same traffic and the same labels.

- The world (`simulate_world`): the demo's churn world (`cicloml.demo.churn`), history up to `BacktestWorld.start`,
  then one snapshot of every customer per day at noon (`generate_traffic`), each with its churn outcome, known
  `LABEL_DELAY` (30 days) later. The world moves on day by day: each day steps from the day before. The timeline
  names what happens when: `price_rise` and `new_region` change the world (prices, customers' regions) once, on
  their entry's first day, and the change stays (asking `generate_traffic` for them on every day of an entry would
  raise prices by 35% a day, or move another 40% of customers each day); `competitor_offer` (who churns) holds for
  its entry's days; `broken_payment_feed` breaks what the feed reports for its entry's days, over whatever else
  happens (the feature store records the nulls; the world keeps the true values, so the feed recovers).
- Serving: each policy's champion scores each day's served features (`cicloml.training.score`, which equals the
  service's row scorer).
- The drift check (as `cicloml.monitoring.check_window`): the day's features and scores profiled and compared with
  the champion's reference profile (`compare_profiles`), the performance estimated from the scores and the
  champion's calibration (`estimate_performance`); a champion's first day is its skew check. Alerts follow the
  incident rules (`cicloml.incidents.track`, the spec's `alerts` section): the first drifted day opens an incident
  (a message), clean days clear it (a message); whether a drifted day asks for retraining follows the policy (for
  `cicloml`, the spec: `estimated_impact`).
- The daily quality check (as flows/check_model_quality.py): the champion's days whose labels have matured, judged by
  `assess_quality`; the newest degraded day asks for retraining once. Requests that found too few new labels wait
  (pending) and are retried once `retraining.min_new_labels` labels newer than the champion's cutoff have matured
  (`matured_labels_after`).
- Training (as flows/train.py): the labels known by then, point-in-time joined to the features, the spec's training
  window, data checks, `split_by_time`, the freshness check against the champion (`assess_freshness` with the
  splits' fingerprint), `fit_model` with the spec's recency weights, the threshold and the calibration on the
  validation rows (`choose_threshold`, `fit_calibration`: what `tune_threshold` and `calibrate_scores` do, from
  scores computed once), `evaluate_model`, the calibration anchored on the test rows (`anchor_calibration`), and the
  gate on the test rows the champion never saw (`compare_paired`,
  `decide_promotion`). A promoted model serves from the next day.

Where it departs from production, and why:
- No Feast, no registry or BentoML model store, no Prefect, no Slack: models live in memory (`ModelRecord`), the
  training frame is every label joined point-in-time (pd.merge_asof, as benchmarks/bench_estimation.py does) to the
  recorded activity and profiles once per world, and a training keeps the rows whose label was known by then (a
  label's features are fixed once its event time has passed, so this is the frame Feast would return).
- Profiles are exact: whylogs' quantile sketch compacts at random with an unseeded generator, so the same world would
  give different drift scores on each run. Here the sketch holds every value (`cicloml.profiling.exact_profile`: a
  larger frame is profiled from a seeded sample); production's sketch (k=1024) differs from it by its rank error.
- A window is a day (production: `profile_window_seconds`). Within a day: serving, the drift check, the quality check,
  then at most one training per policy: the day's requests (drift, quality, pending, schedule) are answered by one
  run, where production starts one per request and the later ones find the first one's data.
- Fits are shared: a fit is determined by its data and the spec (fixed seeds), so a model fitted once on a frame
  (same fingerprint) is reused when any policy fits that frame again; each such training still counts as a run.
- The quality check judges each of the champion's days once, when its labels mature (its labels all mature at once),
  rather than every window on every run; the decisions are the same.
- The evaluation reports no slices (the gate reads the overall metrics only).
"""

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, Self, get_args

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from cicloml.demo.churn import (
    LABEL_DELAY,
    DemoTables,
    Scenario,
    generate_churn_data,
    generate_traffic,
    served_features,
)
from cicloml.drift import DriftReport, compare_profiles
from cicloml.errors import DataError
from cicloml.estimation import (
    Calibration,
    PerformanceEstimate,
    anchor_calibration,
    estimate_performance,
    fit_calibration,
)
from cicloml.evaluation import Metrics, choose_threshold
from cicloml.gate import GateDecision, PairedComparison, compare_paired, decide_promotion
from cicloml.incidents import Incident, track
from cicloml.lineage import Lineage, splits_fingerprint
from cicloml.models.inputs import FeatureInput
from cicloml.models.preprocessing import FeatureSchema
from cicloml.profiling import SCORE_COLUMN, DatasetProfileView, exact_profile
from cicloml.quality import LABEL_COLUMN, WindowQuality, assess_quality
from cicloml.retraining import (
    Impact,
    Regime,
    assess_freshness,
    degradation_onset,
    drift_impact,
    drift_retraining,
    labels_since,
    matured_labels_after,
    spec_fingerprint,
)
from cicloml.spec import GatesSpec, LabelsSpec, ProjectSpec
from cicloml.training import (
    Evaluation,
    TimeSplit,
    checked_split,
    encode_training_frame,
    evaluate_model,
    fit_model,
    recency_weights,
    score,
    select_training_window,
    since_onset,
)

ENTITY = "customer_id"
LABEL = "churned"
EVENT_TIME = "event_timestamp"
AVAILABLE_TIME = "label_timestamp"
LABELS = LabelsSpec(path="labels.parquet", column=LABEL, event_time=EVENT_TIME, available_time=AVAILABLE_TIME)
"""The demo world's label table, as cicloml.yaml names its columns."""
FEATURE_INPUTS = (
    *(FeatureInput(name, "category") for name in ("plan", "contract", "region", "payment_method")),
    FeatureInput("senior_citizen", "number"),
    *(
        FeatureInput(name, "number")
        for name in (
            "tenure_days",
            "monthly_charges",
            "usage_minutes_7d",
            "data_gb_30d",
            "support_tickets_30d",
            "payment_failures_90d",
            "days_since_last_login",
        )
    ),
)
"""The churn_v1 feature service's features in service order (features/feature_services.py), with the roles the
contract gives their Feast types."""
SCHEMA = FeatureSchema.from_inputs((ENTITY,), FEATURE_INPUTS)
TRAFFIC_HOUR = timedelta(hours=12)
"""A day's snapshot is taken at noon, as the history's weekly observations are."""
TimelineEntry = tuple[int, int | None, Scenario]
"""(first day, day after the last or None for the world's end, scenario)."""


def default_timeline() -> list[TimelineEntry]:
    """Stable for four weeks, prices rise in week 5, a competitor's offer from week 9 on, the payment feed broken
    for two days of week 12."""
    return [(28, 56, "price_rise"), (56, None, "competitor_offer"), (78, 80, "broken_payment_feed")]


def parse_timeline(text: str) -> list[TimelineEntry]:
    """Timeline entries from "FIRST-END:SCENARIO,..." (days; END empty for the world's end), e.g.
    "28-56:price_rise,56-:competitor_offer,78-80:broken_payment_feed"; "" for none."""
    entries: list[TimelineEntry] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        span, _, scenario = item.partition(":")
        first, dash, end = span.partition("-")
        if not (dash and first.strip().isdigit() and (not end.strip() or end.strip().isdigit())):
            raise ValueError(f"timeline entry {item!r}: write FIRST-END:SCENARIO in days, e.g. 28-56:price_rise")
        if scenario not in get_args(Scenario) or scenario == "none":
            allowed = ", ".join(name for name in get_args(Scenario) if name != "none")
            raise ValueError(f"timeline entry {item!r}: unknown scenario {scenario!r}; one of {allowed}")
        entries.append((int(first), int(end) if end.strip() else None, scenario))  # type: ignore[arg-type]
    return entries


class BacktestWorld(BaseModel):
    """The seeded world a backtest replays: its size, its history and what happens when."""

    model_config = ConfigDict(frozen=True)

    weeks: int = Field(16, ge=1)
    customers: int = Field(2000, ge=100)
    """Each scored every day. 2,000 by default: a day's realized ROC AUC, what every policy is judged by, then has a
    sampling error of ~0.017 (~380 churners a day); at 1,000, ~0.024, as large as the differences worth finding."""
    history_days: int = Field(90, ge=35)
    """Days of history before the first simulated day (its weekly labels train the first model)."""
    seed: int = 7
    start: date = date(2026, 1, 5)
    """The first simulated day (UTC); the history ends at its midnight."""
    timeline: list[TimelineEntry] = Field(default_factory=default_timeline)
    """Scenario entries; a later entry overrides an earlier one on the days they share, except that
    `broken_payment_feed` lies over whatever else happens."""

    @model_validator(mode="after")
    def _entries_in_order(self) -> Self:
        for first, end, scenario in self.timeline:
            if first < 0 or (end is not None and end <= first):
                raise ValueError(f"timeline entry ({first}, {end}, {scenario}): need 0 <= first day < end day")
        return self

    @property
    def days(self) -> int:
        return self.weeks * 7

    @property
    def name(self) -> str:
        """ "16w-2000c-seed7-<digest of the whole world>": a report folder's name, the same for the same world."""
        digest = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:6]
        return f"{self.weeks}w-{self.customers}c-seed{self.seed}-{digest}"

    def scenarios_on(self, day: int) -> tuple[str, bool]:
        """The scenario in force on `day` ("none" when no entry covers it) and whether the payment feed is broken."""
        covering = [(first, scenario) for first, end, scenario in self.timeline if _covers(first, end, day)]
        broken = any(scenario == "broken_payment_feed" for _, scenario in covering)
        world = [scenario for _, scenario in covering if scenario != "broken_payment_feed"]
        return (world[-1] if world else "none"), broken

    def traffic_scenario(self, day: int) -> Scenario:
        """What `generate_traffic` is asked for on `day`: a change of the world only on its entry's first day."""
        scenario, _ = self.scenarios_on(day)
        if scenario in ("price_rise", "new_region"):
            firsts = [first for first, end, name in self.timeline if name == scenario and _covers(first, end, day)]
            return scenario if day in firsts else "none"  # type: ignore[return-value]
        return scenario  # type: ignore[return-value]


def _covers(first: int, end: int | None, day: int) -> bool:
    return first <= day and (end is None or day < end)


# --- the world ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedDay:
    """One day of traffic: what was served, and the outcomes that arrive later."""

    day: int
    window_start: pd.Timestamp
    scenario: str
    """The scenario in force, "+broken_payment_feed" when the feed was broken."""
    features: pd.DataFrame
    """The served features of every customer (model columns: numbers as floats)."""
    labels: np.ndarray
    """Each row's churn outcome."""
    labels_known_at: pd.Timestamp


@dataclass
class SimulatedWorld:
    """A world's days and its label table, generated once and shared by every policy."""

    world: BacktestWorld
    days: list[SimulatedDay]
    frame: pd.DataFrame
    """Every label (history and traffic) joined point-in-time to the recorded features, sorted by event time."""
    _profiles: dict[int, DatasetProfileView] = field(default_factory=dict)

    def training_frame(self, known_by: pd.Timestamp, *, label_delay: bool = True) -> pd.DataFrame:
        """The rows whose label is known by `known_by` (`label_delay` False: whose event has happened by then, as if
        labels came at once)."""
        column = AVAILABLE_TIME if label_delay else EVENT_TIME
        return self.frame[self.frame[column] <= known_by].reset_index(drop=True)

    def feature_profile(self, day: int) -> DatasetProfileView:
        """The day's served features profiled (once: every policy's drift check shares it)."""
        if day not in self._profiles:
            self._profiles[day] = exact_profile(self.days[day].features[SCHEMA.features])
        return self._profiles[day]


def simulate_world(world: BacktestWorld) -> SimulatedWorld:
    """Generate the history and every day's traffic and labels, and join every label to its features."""
    start = pd.Timestamp(world.start, tz="UTC")
    history = generate_churn_data(
        start.to_pydatetime(), customers=world.customers, days=world.history_days, seed=world.seed
    )
    customers = history.customers
    latest = history.activity.sort_values(EVENT_TIME).groupby(ENTITY).tail(1).sort_values(ENTITY)
    recorded_activity, labels = [history.activity], [history.labels]
    days = []
    for day in range(world.days):
        scenario, broken = world.scenarios_on(day)
        state = DemoTables(customers=customers, activity=latest.reset_index(drop=True), labels=history.labels.iloc[:0])
        at = start + pd.Timedelta(days=day) + TRAFFIC_HOUR
        traffic = generate_traffic(state, at.to_pydatetime(), scenario=world.traffic_scenario(day), seed=world.seed)
        latest = traffic.activity  # the true values: the world steps on from them
        recorded = traffic.activity
        if broken:  # as generate_traffic breaks it: the outcomes are drawn, then the feed reports nulls
            recorded = recorded.assign(payment_failures_90d=pd.array([pd.NA] * len(recorded), dtype="Int64"))
        recorded_traffic = DemoTables(customers=traffic.customers, activity=recorded, labels=traffic.labels)
        served = served_features(state, recorded_traffic).merge(traffic.labels[[ENTITY, LABEL]], on=ENTITY)
        served = _model_columns(served.sort_values(ENTITY).reset_index(drop=True))
        days.append(
            SimulatedDay(
                day=day,
                window_start=start + pd.Timedelta(days=day),
                scenario=scenario + ("+broken_payment_feed" if broken else ""),
                features=served,
                labels=served[LABEL].to_numpy(dtype=np.int64),
                labels_known_at=at + LABEL_DELAY,
            )
        )
        customers = pd.concat([customers, traffic.customers], ignore_index=True)
        recorded_activity.append(recorded)
        labels.append(traffic.labels)
    frame = _point_in_time(pd.concat(labels, ignore_index=True), pd.concat(recorded_activity), customers)
    return SimulatedWorld(world=world, days=days, frame=frame)


def _point_in_time(labels: pd.DataFrame, activity: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """Each label with the customer's newest recorded activity snapshot at or before its event time and the profile
    in force then: the join Feast makes, without Feast; columns as the training flow gets them."""
    labels = labels.assign(**{EVENT_TIME: _utc_ns(labels[EVENT_TIME]), AVAILABLE_TIME: _utc_ns(labels[AVAILABLE_TIME])})
    activity = activity.drop(columns=["created_timestamp"]).rename(columns={EVENT_TIME: "activity_at"})
    profiles = customers.drop(columns=["created_timestamp"]).rename(columns={EVENT_TIME: "profile_at"})
    activity["activity_at"] = _utc_ns(activity["activity_at"])
    profiles["profile_at"] = _utc_ns(profiles["profile_at"])
    frame = pd.merge_asof(
        labels.sort_values(EVENT_TIME, kind="stable"),
        activity.sort_values("activity_at", kind="stable"),
        left_on=EVENT_TIME,
        right_on="activity_at",
        by=ENTITY,
    )
    frame = pd.merge_asof(
        frame, profiles.sort_values("profile_at", kind="stable"), left_on=EVENT_TIME, right_on="profile_at", by=ENTITY
    )
    frame = frame.dropna(subset=["activity_at", "profile_at"])
    frame = frame[[ENTITY, EVENT_TIME, LABEL, AVAILABLE_TIME, *SCHEMA.input_names]]
    frame = frame.sort_values([EVENT_TIME, ENTITY], kind="stable").reset_index(drop=True)
    return _model_columns(frame)


def _model_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Numbers as floats (nullable integers' missing values as NaN), as the feature store hands them to the model."""
    return frame.assign(**{name: pd.to_numeric(frame[name]).astype("float64") for name in SCHEMA.numeric})


def _utc_ns(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


# --- policies ----------------------------------------------------------------------------------------------------

DriftRule = Literal["off", "any_drift", "estimated_drop", "spec"]


class Policy(BaseModel):
    """When a policy retrains, and what a retraining must clear."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    schedule_days: int | None = Field(None, ge=1)
    """A scheduled training every this many days (the train flow's schedule); None: none."""
    on_drift: DriftRule = "off"
    """Which drifted days ask for retraining: none, every one, those whose estimated ROC AUC dropped
    (`estimated_impact`), or as the spec's drift section says."""
    on_quality: bool = False
    """The daily quality check asks for retraining on a realized drop (when the spec's quality.retrain_on_drop)."""
    freshness: bool = True
    """Hold the training frame against the champion's first: skip the champion's own data, and a request with fewer
    than retraining.min_new_labels new labels waits (pending). False: every run fits, whatever it fits on."""
    min_improvement: float | None = Field(None, ge=0.0, le=1.0)
    """The gate's required improvement; None: the spec's gates.min_improvement."""
    label_delay: bool = True
    """False: train on labels as soon as their event has happened, as if they came at once (an oracle)."""


POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        Policy(name="never", description="trained once, on day 0"),
        Policy(
            name="weekly",
            description="a scheduled training every 7 days on matured labels, through the gate",
            schedule_days=7,
        ),
        Policy(
            name="every_drift",
            description="retrain on every drift alert, as cicloml did before: the same data still fits, a tie promotes",
            on_drift="any_drift",
            freshness=False,
            min_improvement=0.0,
        ),
        Policy(
            name="cicloml",
            description="the spec's evidence rules: drift asks only on an estimated drop, the quality check on a "
            "realized one, a request without enough new labels waits, the gate with min_improvement",
            on_drift="spec",
            on_quality=True,
        ),
        Policy(name="oracle", description="weekly, as if labels had no delay", schedule_days=7, label_delay=False),
        Policy(
            name="cicloml_weekly",
            description="the cicloml policy beside the weekly scheduled training, as the demo spec deploys it "
            "(schedules.train)",
            schedule_days=7,
            on_drift="spec",
            on_quality=True,
        ),
    )
}
DEFAULT_POLICIES = ("never", "weekly", "every_drift", "cicloml", "oracle")
"""The policies compared by default; `POLICIES` holds `cicloml_weekly` too."""


# --- results -----------------------------------------------------------------------------------------------------


class ModelRecord(BaseModel):
    """A model a policy trained, as its lineage would say (no registry); the fitted pipeline, reference profile and
    lineage stay in the engine, shared by every record of the same data."""

    model_config = ConfigDict(frozen=True)

    id: str
    """d<day trained>-<data fingerprint>: two records with one fingerprint were fitted on the same data."""
    trained_on_day: int
    data_fingerprint: str
    training_cutoff: datetime
    """The newest label event time it was trained or tested on (its test window's end): labels after it are new."""
    rows: dict[str, int]
    threshold: float
    test_roc_auc: float
    calibration: Calibration
    promoted: bool
    promoted_same_data: bool
    """Promoted although fitted on the champion's data (the same fingerprint)."""
    gate: list[str]
    """The gate's reasons."""


class DayRow(BaseModel):
    """One policy's day: the model served, what it scored, what the checks found and decided."""

    day: int
    date: date
    scenario: str
    model_id: str
    check: Literal["drift", "skew"]
    """"skew" on a model's first day, as production checks it."""
    realized_roc_auc: float | None
    """From the day's labels (known 30 days later; filled in at the end)."""
    labelled: tuple[int, int] = (0, 0)
    """The day's (positive, negative) labels the realized ROC AUC was measured on: its own sampling error."""
    estimated_roc_auc: float | None
    estimated_interval: tuple[float, float] | None
    drift: bool
    drifted_features: list[str]
    alert: bool
    """An alert opened a drift incident today (a Slack message would have gone out): `cicloml.incidents.track`."""
    alert_cleared: bool
    """Clean days cleared the open incident today (a message would have gone out)."""
    requests: list[str]
    """What asked for a training today: "drift", "quality", "follow_up" (learning the world since a degradation's
    onset), "pending" (a waiting request retried), "schedule"."""
    trained: bool
    """A model was fitted today."""
    skipped: bool
    """A training ran today and fitted nothing (nothing new to learn from, or the data checks failed)."""
    promoted: bool
    promoted_same_data: bool
    pending: int
    """Requests waiting for new labels at the end of the day."""
    notes: list[str]
    """Why, in words."""


class PolicySummary(BaseModel):
    days: int
    mean_roc_auc: float | None
    """Mean of the days' realized ROC AUC."""
    worst_roc_auc: float | None
    tolerance: float
    """The day-0 model's test ROC AUC − quality.max_drop."""
    days_below_tolerance: int
    training_runs: int
    """Models fitted, the day-0 model included."""
    skipped_runs: int
    """Trainings that fitted nothing (nothing new to learn from, or failed data checks)."""
    promotions: int
    """The day-0 model included."""
    promotions_same_data: int
    alerts: int
    """Incidents opened: the drift messages Slack would have had."""
    alerts_cleared: int
    """Incidents cleared: the messages saying so."""
    drifted_days: int
    """Days whose drift check found drift (or skew): what alerting on every drifted window would have sent."""
    requests: int
    """Days on which something asked for a training."""


class PolicyResult(BaseModel):
    policy: Policy
    summary: PolicySummary
    days: list[DayRow]
    models: list[ModelRecord]


class BacktestResult(BaseModel):
    world: BacktestWorld
    settings: dict[str, Any]
    """The spec's sections the backtest ran with."""
    initial_model: str
    tolerance: float
    policies: list[PolicyResult]

    def policy(self, name: str) -> PolicyResult:
        return next(result for result in self.policies if result.policy.name == name)


# --- decisions ---------------------------------------------------------------------------------------------------


def drift_requests_retraining(report: DriftReport, policy: Policy, spec: ProjectSpec) -> Impact | None:
    """Whether a drifted day asks `policy` for retraining, and why (None: no drift); as detect-drift decides it."""
    if not report.drifted:
        return None
    if report.check == "drift" and policy.on_drift == "off":
        return Impact(retrain=False, reason=f"the {policy.name} policy does not retrain on drift")
    if policy.on_drift in ("spec", "off"):
        return drift_retraining(report, spec)
    return drift_impact(report, spec, policy.on_drift)


def summarize(rows: Sequence[DayRow], models: Sequence[ModelRecord], tolerance: float) -> PolicySummary:
    """A policy's days in numbers."""
    realized = [row.realized_roc_auc for row in rows if row.realized_roc_auc is not None]
    return PolicySummary(
        days=len(rows),
        mean_roc_auc=float(np.mean(realized)) if realized else None,
        worst_roc_auc=min(realized) if realized else None,
        tolerance=tolerance,
        days_below_tolerance=sum(value < tolerance for value in realized),
        training_runs=len(models),
        skipped_runs=sum(row.skipped for row in rows),
        promotions=sum(model.promoted for model in models),
        promotions_same_data=sum(model.promoted_same_data for model in models),
        alerts=sum(row.alert for row in rows),
        alerts_cleared=sum(row.alert_cleared for row in rows),
        drifted_days=sum(row.drift for row in rows),
        requests=sum(bool(row.requests) for row in rows),
    )


# --- the engine --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Fit:
    """What fitting one frame gives, shared by every training on the same data."""

    pipeline: Pipeline
    schema: FeatureSchema
    test: pd.DataFrame
    threshold: float
    calibration: Calibration
    evaluation: Evaluation
    reference: DatasetProfileView
    lineage: Lineage


@dataclass(frozen=True)
class _Served:
    scores: np.ndarray
    estimate: PerformanceEstimate
    report: DriftReport


@dataclass
class _PolicyState:
    policy: Policy
    champion: ModelRecord
    first_day: int = 0
    """The champion's first served day."""
    models: list[ModelRecord] = field(default_factory=list)
    rows: list[DayRow] = field(default_factory=list)
    served: list[np.ndarray] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    pending_since: pd.Timestamp | None = None
    """The onset the waiting requests named: they wait for the labels since it."""
    requested_windows: set[tuple[str, int | str]] = field(default_factory=set)
    """(champion, day) of each quality request, (champion, "follow_up") of each follow-up: one request each."""
    judged: dict[int, WindowQuality] = field(default_factory=dict)
    """The champion's days judged by the quality check."""
    incident: Incident | None = None
    """The open drift incident (`cicloml.incidents`), as detect-drift keeps it."""
    regime: Regime | None = None
    """The world since a degradation's onset, when the champion was trained on it alone."""


@dataclass
class _Training:
    record: ModelRecord | None
    note: str
    since: pd.Timestamp | None = None
    """The degradation's onset it was asked to learn the world since."""
    rows_since: int = 0
    """Labelled rows since that onset it trained (or was tested) on."""


class _Engine:
    def __init__(self, spec: ProjectSpec, world: SimulatedWorld) -> None:
        self.spec = spec
        self.world = world
        self.seed = spec.training.seed
        self.settings_fingerprint = spec_fingerprint(spec, spec.model, self.seed)
        self.start = pd.Timestamp(world.world.start, tz="UTC")
        self._fits: dict[str, _Fit] = {}
        self._served: dict[tuple[int, str], _Served] = {}
        self._comparisons: dict[tuple[str, str], tuple[Metrics, PairedComparison | None]] = {}
        """Per (challenger, champion) data: the champion's metrics on the challenger's test rows, and the paired
        comparison on the fresh ones."""

    def known_by(self, day: int) -> pd.Timestamp:
        """The end of `day`: when its checks and trainings run."""
        return self.start + pd.Timedelta(days=day + 1)

    # training -------------------------------------------------------------------------------------------------

    def train(
        self,
        day: int,
        as_of: pd.Timestamp,
        policy: Policy,
        champion: ModelRecord | None,
        *,
        requested: bool,
        since: pd.Timestamp | None = None,
    ) -> _Training:
        """The train flow's sequence as of `as_of` (on the labels from `since` on, once they suffice); a record of the
        fitted model, or None with why nothing was."""
        time = EVENT_TIME
        frame = self.world.training_frame(as_of, label_delay=policy.label_delay)
        frame = select_training_window(frame, time, self.spec.training.window_days)
        frame, schema = encode_training_frame(frame, SCHEMA, time)
        if since is not None:
            frame = since_onset(frame, time, since)
        try:
            split = checked_split(frame, schema, LABEL, time, self.spec)
        except DataError as error:
            if since is not None:  # as the train flow: a request waits for the labels since the onset
                return _Training(
                    None, f"training skipped: the labels since the onset {since:%Y-%m-%d} do not suffice yet: {error}"
                )
            return _Training(None, f"training skipped: failed: {error}")
        splits = {"train": split.train, "validation": split.validation, "test": split.test}
        fingerprint = splits_fingerprint(splits)
        if policy.freshness:
            freshness = assess_freshness(
                frame,
                time,
                (champion.id, self._fits[champion.data_fingerprint].lineage) if champion else None,
                data_fingerprint=fingerprint,
                spec_fingerprint=self.settings_fingerprint,
            )
            minimum = self.spec.retraining.min_new_labels
            if freshness.nothing_to_learn(minimum, requested=requested):
                return _Training(None, f"training skipped: nothing to learn from: {freshness.describe()}")
        fit = self._fit(fingerprint, split, schema)
        gates = self.spec.gates
        if policy.min_improvement is not None:
            gates = gates.model_copy(update={"min_improvement": policy.min_improvement})
        decision = self._gate(fit, fingerprint, champion, gates)
        same_data = champion is not None and champion.data_fingerprint == fingerprint
        record = ModelRecord(
            id=f"d{day:03d}-{fingerprint[:6]}",
            trained_on_day=day,
            data_fingerprint=fingerprint,
            training_cutoff=fit.lineage.test_window[1],
            rows=fit.lineage.rows,
            threshold=fit.threshold,
            test_roc_auc=_roc_auc(fit.evaluation.report.overall),
            calibration=fit.calibration,
            promoted=decision.promote,
            promoted_same_data=decision.promote and same_data,
            gate=decision.reasons,
        )
        verdict = "promoted" if decision.promote else "rejected"
        learned_from = f" since the onset {since:%Y-%m-%d}" if since is not None else ""
        return _Training(
            record, f"trained {record.id} on {len(frame)} rows{learned_from}: {verdict}", since, len(frame)
        )

    def _fit(self, fingerprint: str, split: TimeSplit, schema: FeatureSchema) -> _Fit:
        """Fit, tune, calibrate, evaluate and profile, once per data fingerprint."""
        if fingerprint in self._fits:
            return self._fits[fingerprint]
        spec, time = self.spec, EVENT_TIME
        weights = recency_weights(split.train[time], spec.training.recency_half_life_days)
        pipeline = fit_model(split.train, LABEL, schema, spec.model, self.seed, sample_weight=weights)
        # tune_threshold, calibrate_scores and reference_profile each score the validation rows; scored once here
        # (a tree ensemble's predict costs ~10 ms a call whatever the rows), then their own functions.
        validation_scores = score(pipeline, split.validation, schema)
        validation_labels = split.validation[LABEL].to_numpy()
        threshold = choose_threshold(validation_scores, validation_labels)
        evaluation = evaluate_model(pipeline, split.test, schema, LABEL, threshold=threshold, slices=[])
        calibration = anchor_calibration(
            fit_calibration(validation_scores, validation_labels, seed=self.seed),
            evaluation.scores,
            evaluation.labels,
            seed=self.seed,
        )
        reference = exact_profile(split.train[schema.features]).merge(
            exact_profile(pd.DataFrame({SCORE_COLUMN: validation_scores}))
        )

        def window(frame: pd.DataFrame) -> tuple[datetime, datetime]:
            return frame[time].min().to_pydatetime(), frame[time].max().to_pydatetime()

        lineage = Lineage(
            family=spec.model.family,
            feature_service=spec.features.feature_service,
            features=schema,
            label=LABEL,
            training_window=window(split.train),
            test_window=window(split.test),
            rows={"train": len(split.train), "validation": len(split.validation), "test": len(split.test)},
            data_fingerprint=fingerprint,
            params={"spec": spec.model.model_dump(mode="json")},
            threshold=threshold,
            metrics=evaluation.report.summary(),
            library_versions={},
            code_revision="backtest",
            spec_fingerprint=self.settings_fingerprint,
            calibration=calibration,
            training_settings=spec.training.model_dump(include={"window_days", "recency_half_life_days"}),
        )
        fit = _Fit(pipeline, schema, split.test, threshold, calibration, evaluation, reference, lineage)
        self._fits[fingerprint] = fit
        return fit

    def _gate(self, fit: _Fit, fingerprint: str, champion: ModelRecord | None, gates: GatesSpec) -> GateDecision:
        """The challenger against the champion on the test rows the champion did not train on, as flows/train.py."""
        challenger = fit.evaluation.report.overall
        if champion is None:
            return decide_promotion(challenger, None, gates)
        key = (fingerprint, champion.data_fingerprint)
        if key not in self._comparisons:
            served = self._fits[champion.data_fingerprint]
            champion_evaluation = evaluate_model(
                served.pipeline, fit.test, served.schema, LABEL, threshold=champion.threshold, slices=[]
            )
            times = fit.test[EVENT_TIME]
            fresh = (times > pd.Timestamp(served.lineage.training_window[1])).to_numpy()
            comparison = _compare_on(fresh, times, fit.evaluation, champion_evaluation, gates.confidence)
            self._comparisons[key] = (champion_evaluation.report.overall, comparison)
        champion_metrics, comparison = self._comparisons[key]
        return decide_promotion(challenger, champion_metrics, gates, champion_tag=champion.id, comparison=comparison)

    # serving and checking -------------------------------------------------------------------------------------

    def serve(self, day: int, model: ModelRecord, check: Literal["drift", "skew"]) -> _Served:
        """The model's scores on the day's traffic, their estimate and the drift check (shared by every policy that
        serves the same fit that day)."""
        key = (day, model.data_fingerprint)
        if key not in self._served:
            simulated = self.world.days[day]
            fit = self._fits[model.data_fingerprint]
            scores = score(fit.pipeline, simulated.features, fit.schema)
            current = self.world.feature_profile(day).merge(exact_profile(pd.DataFrame({SCORE_COLUMN: scores})))
            report = compare_profiles(
                fit.reference,
                current,
                features=fit.schema.features,
                spec=self.spec.drift,
                model_tag=model.id,
                window_start=simulated.window_start.to_pydatetime(),
                window_end=(simulated.window_start + pd.Timedelta(days=1)).to_pydatetime(),
            )
            # Sorted, as the drift check passes them: the estimate draws labels row by row.
            estimate = estimate_performance(np.sort(scores), model.calibration, threshold=model.threshold)
            self._served[key] = _Served(scores, estimate, report)
        served = self._served[key]
        report = served.report.model_copy(
            update={
                "model_tag": model.id,
                "check": check,
                "performance": served.estimate,
                "baseline_roc_auc": model.test_roc_auc,
            }
        )
        return _Served(served.scores, served.estimate, report)

    def quality_request(self, state: _PolicyState, day: int) -> tuple[str, pd.Timestamp | None] | None:
        """The daily quality check of the champion's days whose labels have matured: the newest degraded day asks for
        retraining, once; with the degradation's onset (`degradation_onset`)."""
        champion, known_by = state.champion, self.known_by(day)
        matured = [
            k
            for k in range(state.first_day, day + 1)
            if k not in state.judged and self.world.days[k].labels_known_at <= known_by
        ]
        if matured:
            joined = pd.concat(
                [
                    pd.DataFrame(
                        {
                            "window_start": self.world.days[k].window_start,
                            "score": state.served[k],
                            LABEL_COLUMN: self.world.days[k].labels.astype(float),
                        }
                    )
                    for k in matured
                ],
                ignore_index=True,
            )
            report = assess_quality(
                joined,
                model_tag=champion.id,
                baseline_roc_auc=champion.test_roc_auc,
                threshold=champion.threshold,
                spec=self.spec.quality,
                known_by=known_by.to_pydatetime(),
            )
            state.judged.update(zip(matured, report.windows, strict=True))
        degraded = [k for k, window in state.judged.items() if window.degraded]
        if not degraded or not self.spec.quality.retrain_on_drop:
            return None
        newest = max(degraded)
        if (champion.id, newest) in state.requested_windows:
            return None
        state.requested_windows.add((champion.id, newest))
        metrics = state.judged[newest].metrics
        realized = metrics.roc_auc if metrics else None
        onset = degradation_onset(list(state.judged.values()))
        reason = (
            f"quality: realized ROC AUC {realized:.3f} on day {newest}, below "
            f"{champion.test_roc_auc - self.spec.quality.max_drop:.3f}"
            + (f" since {onset:%Y-%m-%d}" if onset is not None else "")
        )
        return reason, (pd.Timestamp(onset) if onset is not None and self.spec.retraining.since_onset else None)

    def follow_up_request(self, state: _PolicyState, day: int) -> str | None:
        """Why the champion, trained since a degradation's onset, is due a follow-up (`Regime.follow_up`), or None."""
        if state.regime is None or (state.champion.id, "follow_up") in state.requested_windows:
            return None
        known_by = self.known_by(day).to_pydatetime()
        since, newest = labels_since(self.world.frame, LABELS, onset=state.regime.onset, known_by=known_by)
        reason = state.regime.follow_up(since, newest, self.spec)
        if reason is not None:  # once per champion, as the quality check's request ledger allows
            state.requested_windows.add((state.champion.id, "follow_up"))
        return reason

    def labels_matured(self, state: _PolicyState, day: int) -> int:
        """Labels newer than the champion's cutoff known by the end of `day`."""
        return matured_labels_after(
            self.world.frame, LABELS, after=state.champion.training_cutoff, known_by=self.known_by(day).to_pydatetime()
        )

    # the loop -------------------------------------------------------------------------------------------------

    def step(self, state: _PolicyState, day: int) -> None:
        policy, champion = state.policy, state.champion
        simulated = self.world.days[day]
        check: Literal["drift", "skew"] = "skew" if day == state.first_day else "drift"
        served = self.serve(day, champion, check)
        state.served.append(served.scores)
        report, estimate = served.report, served.estimate
        incident = track(state.incident, report, self.spec.alerts)
        state.incident = None if incident.action == "cleared" else incident.incident
        notes: list[str] = []
        if incident.action == "cleared" and incident.incident is not None:
            notes.append(f"drift incident cleared: {incident.incident.describe()}")
        requests: list[str] = []
        evidence: list[str] = []

        impact = drift_requests_retraining(report, policy, self.spec)
        if impact is not None:
            notes.append(f"{report.title} ({', '.join(report.drifted_features)}): {impact.reason}")
            if impact.retrain:
                requests.append("drift")
                evidence.append(f"{champion.id}@{day}:drift")
        since = None
        if policy.on_quality:
            asked = self.quality_request(state, day)
            if asked:
                reason, since = asked
                notes.append(reason)
                requests.append("quality")
                evidence.append(f"{champion.id}@{day}:quality")
            follow_up = self.follow_up_request(state, day)
            if follow_up and state.regime is not None:
                notes.append(follow_up)
                requests.append("follow_up")
                since = since or pd.Timestamp(state.regime.onset)
        if state.pending:
            matured = self.labels_matured(state, day)
            if matured >= self.spec.retraining.min_new_labels:
                requests.append("pending")
                since = since or state.pending_since
                notes.append(
                    f"{len(state.pending)} waiting request(s) retried: {matured} labels newer than "
                    f"{champion.id}'s have matured"
                )
        scheduled = policy.schedule_days is not None and day > 0 and day % policy.schedule_days == 0
        if scheduled:
            requests.append("schedule")

        trained = skipped = promoted = promoted_same_data = False
        if requests:
            outcome = self.train(day, self.known_by(day), policy, champion, requested=not scheduled, since=since)
            notes.append(outcome.note)
            if outcome.record is None:
                skipped = True
                if policy.freshness and evidence:
                    state.pending.extend(evidence)
                    state.pending_since = since
            else:
                trained = True
                state.pending.clear()  # answered: a retraining on new labels, whatever the gate said
                state.pending_since = None
                state.models.append(outcome.record)
                if outcome.record.promoted:
                    promoted, promoted_same_data = True, outcome.record.promoted_same_data
                    state.champion, state.first_day, state.judged = outcome.record, day + 1, {}
                    state.regime = None
                    if outcome.since is not None:
                        state.regime = Regime(
                            onset=outcome.since, trained_rows=outcome.rows_since, model_tag=outcome.record.id
                        )
                elif "follow_up" in requests:
                    state.regime = None  # the gate found no improvement: the new world is learned

        state.rows.append(
            DayRow(
                day=day,
                date=simulated.window_start.date(),
                scenario=simulated.scenario,
                model_id=champion.id,
                check=check,
                realized_roc_auc=None,
                estimated_roc_auc=estimate.roc_auc,
                estimated_interval=estimate.roc_auc_interval,
                drift=report.drifted,
                drifted_features=report.drifted_features,
                alert=incident.action == "opened",
                alert_cleared=incident.action == "cleared",
                requests=requests,
                trained=trained,
                skipped=skipped,
                promoted=promoted,
                promoted_same_data=promoted_same_data,
                pending=len(state.pending),
                notes=notes,
            )
        )


def _compare_on(
    rows: np.ndarray, times: pd.Series, challenger: Evaluation, champion: Evaluation, confidence: float
) -> PairedComparison | None:
    """flows/train.py's `_compare_on`: both models on the test rows after the champion's training window, paired;
    None when those rows cannot rank two models."""
    labels = challenger.labels[rows]
    if not 0 < labels.sum() < len(labels):
        return None
    span = pd.to_datetime(times[rows], utc=True, cache=False)
    return compare_paired(
        challenger.scores[rows],
        champion.scores[rows],
        labels,
        confidence=confidence,
        window=(span.min().to_pydatetime(), span.max().to_pydatetime()),
    )


def _roc_auc(metrics: Metrics) -> float:
    if metrics.roc_auc is None:
        raise DataError("the test window holds one class only: no ROC AUC to judge the model by")
    return metrics.roc_auc


def run_backtest(
    spec: ProjectSpec,
    world: BacktestWorld | SimulatedWorld | None = None,
    policies: Sequence[Policy | str] = DEFAULT_POLICIES,
    *,
    threads: int | None = 1,
    progress: Callable[[str], None] | None = None,
) -> BacktestResult:
    """Replay `world` (default: `BacktestWorld()`) day by day under each policy, starting from one model trained on
    the history; deterministic for the world's seed and the spec.

    `threads` bounds the native thread pools (OpenMP, BLAS) meanwhile. One by default: the backtest fits and scores
    thousands of rows at a time, where the tree ensemble's threads synchronize more than they share (once per tree
    when scoring), and stall whenever another process holds a core (a fit took 14x longer with two threads than with
    one on two busy cores). None leaves the pools as they are.

    `progress` hears a line after the world is made and after each simulated week."""
    limits = threadpool_limits(limits=threads) if threads is not None else contextlib.nullcontext()
    with limits:
        return _run(spec, world, policies, progress or (lambda line: None))


def _run(
    spec: ProjectSpec,
    world: BacktestWorld | SimulatedWorld | None,
    policies: Sequence[Policy | str],
    progress: Callable[[str], None],
) -> BacktestResult:
    simulated = world if isinstance(world, SimulatedWorld) else simulate_world(world or BacktestWorld())
    chosen = [POLICIES[policy] if isinstance(policy, str) else policy for policy in policies]
    if len({policy.name for policy in chosen}) != len(chosen):
        raise ValueError("policies need distinct names")
    engine = _Engine(spec, simulated)
    initial = engine.train(0, engine.start, POLICIES["never"], None, requested=False)
    if initial.record is None or not initial.record.promoted:
        reasons = initial.record.gate if initial.record else [initial.note]
        raise DataError(f"the first model, trained on the history, serves nothing: {'; '.join(reasons)}")
    first = initial.record
    tolerance = first.test_roc_auc - spec.quality.max_drop
    states = [_PolicyState(policy=policy, champion=first, models=[first]) for policy in chosen]
    progress(
        f"world made: {simulated.world.days} days of {simulated.world.customers} customers; day-0 model {first.id}"
    )
    for day in range(simulated.world.days):
        for state in states:
            engine.step(state, day)
        if (day + 1) % 7 == 0:
            done = ", ".join(
                f"{state.policy.name} {len(state.models)} model(s) {sum(row.alert for row in state.rows)} alert(s)"
                for state in states
            )
            progress(f"week {(day + 1) // 7}/{simulated.world.weeks}: {done}")
    results = []
    for state in states:
        rows = [
            row.model_copy(
                update={
                    "realized_roc_auc": _realized(simulated.days[row.day].labels, scores),
                    "labelled": _labelled(simulated.days[row.day].labels),
                }
            )
            for row, scores in zip(state.rows, state.served, strict=True)
        ]
        if rows:  # the day-0 model was trained (and promoted) for every policy before the first day's traffic
            notes = [f"day 0 model: {initial.note}", *rows[0].notes]
            rows[0] = rows[0].model_copy(update={"trained": True, "promoted": True, "notes": notes})
        results.append(
            PolicyResult(
                policy=state.policy,
                summary=summarize(rows, state.models, tolerance),
                days=rows,
                models=state.models,
            )
        )
    return BacktestResult(
        world=simulated.world,
        settings=spec.model_dump(mode="json", include={"model", "training", "gates", "drift", "quality", "retraining"}),
        initial_model=first.id,
        tolerance=tolerance,
        policies=results,
    )


def _realized(labels: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def _labelled(labels: np.ndarray) -> tuple[int, int]:
    positives = int(labels.sum())
    return positives, len(labels) - positives
