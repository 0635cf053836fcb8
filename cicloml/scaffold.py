"""`cicloml init`: a project spec for a Feast repository cicloml did not write, guessed from the repository and a
label file, and shown with the reason for every guess so the user can correct it before anything runs.
"""

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from feast import FeatureStore

from cicloml.errors import ConfigError
from cicloml.feature_store import read_definitions

LABEL_NAMES = ("label", "target", "y", "outcome")
"""Column names taken for the label first, among binary columns (then any name ending in one of them)."""
EVENT_TIME_NAMES = ("event_timestamp", "event_time", "timestamp", "ts")
AVAILABLE_TIME_NAMES = ("label_timestamp", "available_at", "available_time", "known_at", "labelled_at", "created")


@dataclass(frozen=True)
class Draft:
    """A spec to write, and why each value was chosen."""

    spec: dict[str, Any]
    reasons: list[str]

    def yaml(self) -> str:
        header = (
            "# The project spec cicloml init wrote for this Feast repository. Check the guesses, then run\n"
            "# `cicloml check`, `cicloml apply`, and the flows (see the README: Bring your own Feast repository).\n"
        )
        return header + yaml.safe_dump(self.spec, sort_keys=False)


def draft_spec(store: FeatureStore, spec_dir: Path, *, feature_service: str | None, labels: Path | None) -> Draft:
    """Guess a spec for the repository `store` reads: its feature service (the only one, or `feature_service`),
    its entities, the label table's columns, and features a model cannot read (excluded, saying so)."""
    from cicloml.contract import ROLES  # the Feast types a model reads

    definitions = read_definitions(store)
    services = {service.name: service for service in definitions.feature_services}
    reasons: list[str] = []
    if feature_service is None:
        if len(services) != 1:
            raise ConfigError(
                f"{store.repo_path} defines {len(services)} feature services ({', '.join(services) or 'none'}): "
                "name one with --feature-service"
            )
        feature_service = next(iter(services))
        reasons.append(f"feature service {feature_service!r}: the only one the repository defines")
    elif feature_service not in services:
        raise ConfigError(
            f"{store.repo_path} defines no feature service {feature_service!r}; it defines {', '.join(services)}"
        )
    service = services[feature_service]
    views = {view.name: view for view in [*definitions.feature_views, *definitions.on_demand_feature_views]}
    entities = sorted(
        {
            entity
            for projection in service.feature_view_projections
            for entity in getattr(views.get(projection.name), "entities", [])
            if not entity.startswith("__")  # Feast's placeholder entity of on-demand views
        }
    )
    reasons.append(f"entity {' x '.join(entities)}: what the views of {feature_service!r} are keyed by")
    exclude = [
        f"{field.name}"
        for projection in service.feature_view_projections
        for field in projection.features
        if field.dtype.to_value_type() not in ROLES
    ]
    if exclude:
        reasons.append(f"excluded {', '.join(exclude)}: their Feast types are not ones a model reads")

    repo = Path(store.repo_path).resolve()
    spec: dict[str, Any] = {
        "name": _model_name(feature_service),
        "features": {
            "repo": str(repo.relative_to(spec_dir.resolve())) if repo.is_relative_to(spec_dir.resolve()) else str(repo),
            "entity": entities[0] if len(entities) == 1 else entities,
            "feature_service": feature_service,
            **({"exclude": exclude} if exclude else {}),
        },
    }
    if labels is None:
        spec["labels"] = {"path": "data/labels.parquet", "column": "label"}
        reasons.append("labels: no --labels file given; set labels.path and labels.column")
    else:
        spec["labels"], label_reasons = _guess_labels(labels)
        reasons += label_reasons
    return Draft(spec=spec, reasons=reasons)


def _guess_labels(path: Path) -> tuple[dict[str, Any], list[str]]:
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise ConfigError(f"label file not found: {path}") from None
    except Exception as error:
        raise ConfigError(f"label file {path} cannot be read as Parquet: {error}") from None
    binary = [
        column for column in frame.columns if 0 < frame[column].nunique() <= 2 and _binary(frame[column].dropna())
    ]
    times = [column for column in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[column])]
    if not binary:
        raise ConfigError(f"label file {path} has no binary (0/1) column to take as the label")
    if not times:
        raise ConfigError(f"label file {path} has no timestamp column to take as the event time")
    label = _preferred(binary, LABEL_NAMES, default=binary[-1])
    event_time = _preferred(times, EVENT_TIME_NAMES, default=times[0])
    others = [column for column in times if column != event_time]
    available = _preferred(others, AVAILABLE_TIME_NAMES, default=others[0]) if others else None
    labels: dict[str, Any] = {"path": str(path.resolve()), "column": label, "event_time": event_time}
    reasons = [
        f"labels.column {label!r}: binary, among {', '.join(map(str, binary))}",
        f"labels.event_time {event_time!r}: a timestamp, among {', '.join(map(str, times))}",
    ]
    if available:
        labels["available_time"] = available
        reasons.append(f"labels.available_time {available!r}: the other timestamp (when each label became known)")
    else:
        reasons.append("labels.available_time: none (no second timestamp); every label counts as known at once")
    return labels, reasons


def _binary(values: pd.Series) -> bool:
    return set(values.unique().tolist()) <= {0, 1}


def _preferred(columns: list[Any], names: tuple[str, ...], *, default: Any) -> Any:
    for name in names:
        if name in columns:
            return name
    return next((column for column in columns if str(column).lower().endswith(names)), default)


def _model_name(feature_service: str) -> str:
    """The model's name from its feature service's (`churn_v1` -> `churn`), as the spec's `name` allows, and not the
    name of an importable module (`bentoml serve click:v1` would import the `click` package)."""
    name = re.sub(r"_v\d+$", "", feature_service.lower())
    name = re.sub(r"[^a-z0-9_]", "_", name).strip("_")
    name = name if re.match(r"^[a-z]", name) else f"model_{name}"
    return f"{name}_model" if importlib.util.find_spec(name) is not None else name
