"""`cicloml check`: everything that can be known to be wrong with a project before any work, each with its fix.

It reads the spec, opens the Feast repository it names, compares the repository's definitions with the registry,
resolves the feature service into a contract (on-demand views, types, keys: `cicloml.contract`) and reads the label
table, and reports every finding at once: errors (the flows would refuse) and warnings (they would run, but
something a user relies on does not hold). No model is trained, nothing is written.
"""

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
from pydantic import BaseModel

from cicloml.errors import ConfigError
from cicloml.models.inputs import FeatureInput
from cicloml.online_stores import MONOTONIC_SQLITE_TYPE, PLAIN_SQLITE_TYPE, SQLITE_TYPES
from cicloml.settings import Settings
from cicloml.spec import ProjectSpec, load_spec

if TYPE_CHECKING:  # Feast takes seconds to import: the checks import it when they run
    from feast import FeatureStore

    from cicloml.contract import ViewRead

Level = Literal["ok", "warning", "error"]
Say = Callable[[Level, str], None]


class Finding(BaseModel):
    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


class PreflightReport(BaseModel):
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        """No errors (warnings allowed)."""
        return not any(finding.level == "error" for finding in self.findings)

    def text(self) -> str:
        return "\n".join(map(str, self.findings))


def check_project(settings: Settings) -> PreflightReport:
    """Check the spec, the Feast repository, the feature service and the label table; never raises for what it
    finds."""
    findings: list[Finding] = []
    try:
        _check(settings, findings)
    except ConfigError as error:
        findings.append(Finding(level="error", message=str(error)))
    return PreflightReport(findings=findings)


def _check(settings: Settings, findings: list[Finding]) -> None:
    from cicloml.contract import inspect_service  # Feast takes seconds to import; only this needs it
    from cicloml.feature_store import open_store, pending_changes

    def say(level: Level, message: str) -> None:
        findings.append(Finding(level=level, message=message))

    spec = load_spec(settings.spec_path)
    say("ok", f"spec {settings.spec_path} (model {spec.name!r}), state folder {settings.state_dir}")
    if importlib.util.find_spec(spec.name) is not None:
        say(
            "warning",
            f"the model's name {spec.name!r} is also an importable Python module: `bentoml serve "
            f"{spec.name}:VERSION` imports it instead of serving the bento (`cicloml serve` serves bentos by path); "
            f"rename the model (`name:` in the spec), e.g. {spec.name}_model",
        )
    store = open_store(spec.features.repo, settings)
    _check_stores(store, settings, say)

    changes = pending_changes(store)
    if changes:
        listed = "; ".join(changes[:5]) + (f"; and {len(changes) - 5} more" if len(changes) > 5 else "")
        say("error", f"the Feast registry is behind {spec.features.repo}: {listed} (run `cicloml apply`)")
        return
    say("ok", f"Feast repository {spec.features.repo} (project {store.project!r}) is applied")

    inspection = inspect_service(store, spec.features.feature_service, exclude=spec.features.exclude)
    for problem in inspection.problems:
        say("error", problem)
    contract = inspection.contract
    if contract is None:
        return
    computed = [name for step in contract.on_demand for name in step.outputs]
    say(
        "ok",
        f"{contract.service} gives the model {len(contract.inputs)} features"
        + (f" ({len(computed)} computed on demand: {', '.join(computed)})" if computed else "")
        + f", keyed by {', '.join(contract.join_keys)}"
        + (f"; requests carry {', '.join(contract.request_fields)}" if contract.request_fields else ""),
    )
    _check_entity(spec, contract.views, say)
    _check_labels(settings, spec, list(contract.join_keys), list(contract.request_fields), say)
    categories = {feature.name for feature in contract.inputs if feature.role == "category"}
    for column in spec.training.slices:
        if column not in categories:
            say("error", f"training.slices names {column!r}, which is not a String feature the model reads")
    for column in spec.checks.ranges:
        if not _is_model_column(column, contract.inputs):
            say("error", f"checks.ranges names {column!r}, which is not a numeric column of the model")


def _is_model_column(column: str, inputs: Sequence[FeatureInput]) -> bool:
    """Whether `column` is one of the model's numeric columns (a vector's positions are `<name>_<position>`)."""
    for feature in inputs:
        if feature.role == "vector" and column.startswith(f"{feature.name}_"):
            return column.removeprefix(f"{feature.name}_").isdigit()
        if feature.role != "category" and column in FeatureInput(feature.name, feature.role, 1).columns:
            return True
    return False


def _check_stores(store: "FeatureStore", settings: Settings, say: Say) -> None:
    """Warn where the repository's stores would not behave as cicloml's own repository does."""
    config = store.config
    repo = Path(store.repo_path)
    online = config.online_store
    if getattr(online, "type", None) == PLAIN_SQLITE_TYPE:
        say(
            "warning",
            "the online store is Feast's plain SQLite store, where an older row can overwrite a newer one (a "
            "re-materialized window, a late push); set `online_store.type: "
            f"{MONOTONIC_SQLITE_TYPE}` in feature_store.yaml",
        )
    places = []
    if getattr(config.registry, "registry_type", "file") == "file" and "://" not in str(config.registry.path):
        places.append(("registry", _under(repo, config.registry.path), "registry.path", "registry.db"))
    if getattr(online, "path", None) and getattr(online, "type", "") in SQLITE_TYPES:
        places.append(("SQLite online store", _under(repo, online.path), "online_store.path", "online.db"))
    for what, path, key, file_name in places:
        if not path.is_relative_to(settings.state_dir):
            say(
                "warning",
                f"the Feast {what} ({path}) lies outside the state folder {settings.state_dir}: `make clean` leaves "
                f"it, and every state folder shares it; set `{key}: ${{CICLO_STATE_DIR}}/feast/{file_name}` in "
                "feature_store.yaml",
            )


def _check_entity(spec: ProjectSpec, views: "Sequence[ViewRead]", say: Say) -> None:
    declared = [spec.features.entity] if isinstance(spec.features.entity, str) else list(spec.features.entity)
    used = sorted({entity for read in views for entity in read.view.entities})
    if sorted(declared) != used:
        say(
            "error",
            f"features.entity is {spec.features.entity!r}, but the views of {spec.features.feature_service!r} are "
            f"keyed by {used if len(used) > 1 else used[0]!r}: set features.entity to that",
        )


def _check_labels(
    settings: Settings, spec: ProjectSpec, join_keys: list[str], request_fields: list[str], say: Say
) -> None:
    labels = spec.labels
    path = labels.path if labels.path.is_absolute() else settings.state_dir / labels.path
    if not path.is_file():
        say("error", f"label file not found: {path} (labels.path in the project spec)")
        return
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # a file that is not Parquet, or is damaged
        say("error", f"label file {path} cannot be read as Parquet: {error}")
        return
    roles = {labels.column: "labels.column", labels.event_time: "labels.event_time"}
    if labels.available_time:
        roles[labels.available_time] = "labels.available_time"
    roles.update({name: "join key of the feature service" for name in join_keys})
    roles.update({name: "request field of an on-demand view" for name in request_fields})
    missing = [f"{column!r} ({role})" for column, role in roles.items() if column not in frame.columns]
    if missing:
        say(
            "error",
            f"label file {path} lacks {', '.join(missing)}; it has {', '.join(map(str, frame.columns))}",
        )
        return
    values = frame[labels.column].dropna().unique()
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(map(repr, sorted(values.tolist(), key=str)[:5]))
        say("error", f"labels.column {labels.column!r} must be binary (0/1 or true/false); it holds {shown}")
    keys = [*join_keys, labels.event_time]
    duplicated = int(frame.duplicated(keys).sum())
    if duplicated:
        say(
            "error",
            f"label file {path} has {duplicated} duplicate rows for one entity at one time ({', '.join(keys)}): "
            "keep one label per entity and time",
        )
    if duplicated == 0 and not missing:
        say("ok", f"labels: {len(frame)} rows in {path}")


def _under(repo: Path, path: str | Path) -> Path:
    path = Path(path)
    return (path if path.is_absolute() else repo / path).resolve()
