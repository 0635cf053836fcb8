"""The project spec: *what* cicloml trains, serves and watches, as data in one YAML file.

A user points cicloml at their own feature service and labels by editing `cicloml.yaml`; no library change.
`load_spec` validates the whole file up front and fails with one message per bad key, naming the key and what
it accepts, before any work starts.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cicloml.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeaturesSpec(_Section):
    repo: Path = Path("features")
    """The Feast repository folder (holds feature_store.yaml); a relative path is relative to the spec's folder."""
    entity: str | list[str]
    """The Feast entity predictions are made for, or the entities of a compound key (user and item, say):
    `cicloml check` holds the feature service's views to them."""
    feature_service: str
    """The versioned Feast feature service a model trains and serves on (e.g. churn_v1)."""
    exclude: list[str] = Field(default_factory=list)
    """Features of the service the model leaves out, e.g. ones of a type a model cannot read (Map, Json, ...)."""

    @field_validator("repo")
    @classmethod
    def _relative_to_spec(cls, repo: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("spec_dir")
        return repo if repo.is_absolute() or base is None else (base / repo).resolve()


class LabelsSpec(_Section):
    path: Path
    """Parquet file of labels; relative paths are under the state folder."""
    column: str
    """The label column (binary 0/1)."""
    event_time: str = "event_timestamp"
    """When the prediction would have been made: features are joined as of this time."""
    available_time: str | None = None
    """When the label became known (labels arrive later than features); None if not recorded."""


class SearchSpec(_Section):
    """Randomized hyperparameter search over time-series splits (scikit-learn family)."""

    n_iter: int = Field(10, ge=1)
    splits: int = Field(3, ge=2)
    params: dict[str, list[Any]]
    """Candidate values per estimator parameter, e.g. {learning_rate: [0.03, 0.1]}."""


class SklearnModelSpec(_Section):
    family: Literal["sklearn"] = "sklearn"
    estimator: Literal["hist_gradient_boosting", "gradient_boosting", "random_forest", "logistic_regression"] = (
        "hist_gradient_boosting"
    )
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the estimator."""
    search: SearchSpec | None = None

    @model_validator(mode="after")
    def _estimator_takes_params(self) -> "SklearnModelSpec":
        from cicloml.models.sklearn import unknown_params  # imports scikit-learn; only when this family is used

        unknown = unknown_params(self.estimator, set(self.params) | set(self.search.params if self.search else {}))
        if unknown:
            raise ValueError(f"{self.estimator} takes no parameter(s) {', '.join(unknown)}")
        return self


class LightningModelSpec(_Section):
    family: Literal["lightning"]
    hidden_sizes: tuple[int, ...] = (64, 32)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    learning_rate: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int = Field(256, ge=1)
    max_epochs: int = Field(50, ge=1)
    patience: int = Field(5, ge=1)
    validation_fraction: float = Field(0.15, gt=0.0, lt=1.0)


ModelSpec = Annotated[SklearnModelSpec | LightningModelSpec, Field(discriminator="family")]


class ChecksSpec(_Section):
    """Data checks a training frame must pass before any model is fitted."""

    min_rows: int = Field(200, ge=1)
    max_null_rate: float = Field(0.3, ge=0.0, le=1.0)
    """Per feature."""
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    """Allowed [min, max] per feature (null for an open end)."""


class TrainingSpec(_Section):
    validation_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.2, gt=0.0, lt=0.5)
    slices: list[str] = Field(default_factory=list)
    """Categorical features to report metrics per value of (the worst slice is called out)."""
    seed: int = 0
    window_days: int | None = Field(None, ge=1)
    """Train on the newest N days of labelled rows (counted back from the newest label's event time); None: all."""
    recency_half_life_days: float | None = Field(None, gt=0.0)
    """Weight training rows so a row this many days older than the newest counts half; None: equal weights."""


class GatesSpec(_Section):
    min_roc_auc: float = Field(0.7, ge=0.0, le=1.0)
    """Absolute floor a challenger must reach on the test window."""
    min_pr_auc: float = Field(0.0, ge=0.0, le=1.0)
    max_regression: float = Field(0.01, ge=0.0, le=1.0)
    """The paired bootstrap interval's lower bound of (challenger − champion) ROC AUC on the same fresh rows must
    not fall below minus this: a challenger may not be plausibly worse by more."""
    min_improvement: float = Field(0.005, ge=0.0, le=1.0)
    """How much higher than the champion's a challenger's ROC AUC on the same fresh rows must be: a tie is not a
    promotion."""
    confidence: float = Field(0.9, gt=0.0, lt=1.0)
    """The paired bootstrap interval's confidence."""


class DriftSpec(_Section):
    method: Literal["hellinger", "jensen_shannon", "wasserstein"] = "wasserstein"
    """The distance for numeric features and the model's score."""
    threshold: float = Field(0.3, gt=0.0)
    """Score above which a numeric feature has drifted. Wasserstein is in reference standard deviations (a mean
    shift of 0.5σ scores ~0.5); Hellinger and Jensen-Shannon lie in [0, 1] and score the same shift only ~0.17 and
    ~0.21. Unchanged traffic scores up to ~0.11 at 1k rows, less in bigger windows (benchmarks/bench_drift.py)."""
    categorical_method: Literal["hellinger", "jensen_shannon"] = "hellinger"
    """The distance for categorical features (category shares have no order for Wasserstein to move mass along)."""
    categorical_threshold: float = Field(0.2, gt=0.0, le=1.0)
    """Score above which a categorical feature has drifted. On the demo data unchanged traffic scores up to ~0.14
    (Hellinger) and a region 40% of customers moved to 0.5."""
    min_drifted_features: int = Field(1, ge=1)
    """How many drifted features make the window drifted."""
    max_null_rate_increase: float = Field(0.1, ge=0.0, le=1.0)
    """A feature whose null rate rises more than this over training is a data-quality issue."""
    retrain_on_drift: bool = True
    retrain_when: Literal["estimated_drop", "any_drift"] = "estimated_drop"
    """estimated_drop: a drifted window asks for retraining only when its estimated ROC AUC (from its scores, before
    labels) is more than `quality.max_drop` below the model's test-window value, beyond the estimate's uncertainty;
    any_drift: every drifted window asks."""


class QualitySpec(_Section):
    """Live model quality: delayed labels joined to the predictions the service logged, per window."""

    max_drop: float = Field(0.05, ge=0.0, le=1.0)
    """A window whose ROC AUC is lower than the model's on its test window by more than this has degraded."""
    min_labels: int = Field(200, ge=1)
    """A window with fewer labelled predictions (or a single class) is reported but not judged."""
    match_within_hours: float = Field(24.0, gt=0.0)
    """A label belongs to a prediction for the same entity scored within this long of the label's event time."""
    retrain_on_drop: bool = True
    confidence: float = Field(0.9, gt=0.0, lt=1.0)
    """A window has degraded only when the upper end of its ROC AUC's interval at this confidence (Hanley and
    McNeil's standard error) lies below the bar: a window of a few hundred labels dips below by chance now and
    then."""


class AlertsSpec(_Section):
    """Alert hygiene: drifted windows of a model make one incident, announced when it opens and when it clears."""

    clear_after: int = Field(3, ge=1)
    """Clean windows in a row that clear an open incident (Slack hears that it cleared)."""
    clear_margin: float = Field(0.2, ge=0.0, lt=1.0)
    """Hysteresis: while an incident is open, a window is clean only when every feature scores below
    (1 − clear_margin) × its threshold, so a feature hovering at its threshold holds the incident open rather than
    clearing and reopening it."""


class RetrainingSpec(_Section):
    """When a requested retraining may fit a model."""

    min_new_labels: int = Field(200, ge=1)
    """Labelled rows newer than the champion's training data a retraining needs; a request with fewer waits
    (pending) until the quality check finds that many matured."""
    since_onset: bool = True
    """A retraining asked for by degraded windows trains on the labels from the first of them on (the degradation's
    onset), when those pass the data checks and split: the outcomes before it describe a world that changed. Off:
    the usual `training.window_days`."""
    follow_up_growth: float | None = Field(3.0, gt=1.0)
    """Once a model trained since an onset is champion, retrain again when the labels since the onset have grown
    this many times over what it saw, until they span `training.window_days` or the gate finds no improvement:
    the first model learned the new world from its first labels only. None: no follow-ups."""


class SchedulesSpec(_Section):
    """Cron expressions for the Prefect deployments."""

    materialize: str = "*/15 * * * *"
    train: str = "0 3 * * 1"
    batch_predict: str = "0 4 * * *"
    detect_drift: str = "5 * * * *"
    check_model_quality: str = "30 4 * * *"

    @field_validator("*")
    @classmethod
    def _five_field_cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression with five fields, e.g. '0 * * * *'")
        return value


class ProjectSpec(_Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    features: FeaturesSpec
    labels: LabelsSpec
    model: ModelSpec = Field(default_factory=SklearnModelSpec)
    checks: ChecksSpec = ChecksSpec()
    training: TrainingSpec = TrainingSpec()
    gates: GatesSpec = GatesSpec()
    drift: DriftSpec = DriftSpec()
    quality: QualitySpec = QualitySpec()
    alerts: AlertsSpec = AlertsSpec()
    retraining: RetrainingSpec = RetrainingSpec()
    schedules: SchedulesSpec = SchedulesSpec()


def load_spec(path: Path) -> ProjectSpec:
    """Read and validate the project spec; raise `ConfigError` listing every bad key."""
    if not path.is_file():
        raise ConfigError(f"project spec not found: {path} (create it, or set CICLO_SPEC_PATH to its location)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    try:
        return ProjectSpec.model_validate(raw, context={"spec_dir": path.resolve().parent})
    except ValidationError as error:
        problems = "\n".join(f"  {_describe(problem)}" for problem in error.errors())
        raise ConfigError(f"{path}: invalid project spec\n{problems}") from None


def _describe(problem: dict[str, Any]) -> str:
    """One line per pydantic error: the dotted key, what is wrong, what is allowed."""
    key = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "extra_forbidden":
        allowed = ", ".join(_fields_at(problem["loc"][:-1]))
        return f"{key}: unknown key; allowed keys here: {allowed}"
    if problem["type"] == "missing":
        return f"{key}: required key is missing"
    if problem["type"] == "union_tag_invalid":
        return f"{key}.family: got {problem['ctx']['tag']!r}; allowed: {problem['ctx']['expected_tags']}"
    return f"{key}: {problem['msg']} (got {problem['input']!r})"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc`. A tagged union (the model section) appears in `loc` as its tag."""
    candidates: list[type[BaseModel]] = [ProjectSpec]
    for part in map(str, loc):
        tagged = [model for model in candidates if _family(model) == part]
        if tagged:
            candidates = tagged
            continue
        annotation = next(model for model in candidates if part in model.model_fields).model_fields[part].annotation
        members = get_args(annotation) or (annotation,)
        candidates = [member for member in members if isinstance(member, type) and issubclass(member, BaseModel)]
    return list(candidates[0].model_fields)


def _family(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("family")
    return get_args(field.annotation)[0] if field else None
