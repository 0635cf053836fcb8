"""The project spec: *what* cicloml trains, serves and watches, as data in one YAML file.

A user points cicloml at their own feature service and labels by editing `cicloml.yaml`; no library change.
`load_spec` validates the whole file up front and fails with one message per bad key, naming the key and what
it accepts, before any work starts.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cicloml.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeaturesSpec(_Section):
    repo: Path = Path("features")
    """The Feast repository folder (holds feature_store.yaml)."""
    entity: str
    """The Feast entity predictions are made for."""
    feature_service: str
    """The versioned Feast feature service a model trains and serves on (e.g. churn_v1)."""


class LabelsSpec(_Section):
    path: Path
    """Parquet file of labels; relative paths are under the state folder."""
    column: str
    """The label column (binary 0/1)."""
    event_time: str = "event_timestamp"
    """When the prediction would have been made: features are joined as of this time."""
    available_time: str | None = None
    """When the label became known (labels arrive later than features); None if not recorded."""


class ModelSpec(_Section):
    family: Literal["sklearn", "lightning"] = "sklearn"
    params: dict[str, Any] = Field(default_factory=dict)
    """Family-specific parameters, passed to the model builder."""


class GatesSpec(_Section):
    min_roc_auc: float = Field(0.7, ge=0.0, le=1.0)
    """Absolute floor a challenger must reach."""
    max_regression: float = Field(0.01, ge=0.0, le=1.0)
    """How much worse than the champion (ROC AUC, same test window) a challenger may be and still win."""


class DriftSpec(_Section):
    method: Literal["hellinger", "jensen_shannon", "wasserstein"] = "hellinger"
    threshold: float = Field(0.15, gt=0.0)
    """Per-feature score above which a feature counts as drifted."""
    min_drifted_features: int = Field(1, ge=1)
    """How many drifted features make the window drifted."""
    retrain_on_drift: bool = True


class SchedulesSpec(_Section):
    """Cron expressions for the Prefect deployments."""

    materialize: str = "*/15 * * * *"
    train: str = "0 3 * * 1"
    batch_predict: str = "0 4 * * *"
    detect_drift: str = "0 * * * *"
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
    model: ModelSpec = ModelSpec()
    gates: GatesSpec = GatesSpec()
    drift: DriftSpec = DriftSpec()
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
        return ProjectSpec.model_validate(raw)
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
    return f"{key}: {problem['msg']} (got {problem['input']!r})"


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ProjectSpec
    for part in loc:
        annotation = model.model_fields[str(part)].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    return list(model.model_fields)
