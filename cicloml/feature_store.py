"""The Feast feature store as the training/serving contract.

Offline: point-in-time-correct training frames for a feature service, joined to labels.
Online: feature vectors per entity, with every unknown entity, missing value and stale value reported.
Between them: `apply_repo` registers the definitions in `features/`, `materialize` loads the online store
incrementally, `push_features` writes fresh rows straight to it.
"""

import contextlib
import copy
import gc
import re
import sys
import time
from calendar import timegm
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import yaml
from feast import FeatureService, FeatureStore, FeatureView, RepoConfig
from feast.data_source import PushMode
from feast.infra.provider import get_provider
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.repo_contents import RepoContents
from feast.repo_operations import extract_objects_for_apply_delete, parse_repo
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.types import String
from feast.utils import _convert_arrow_to_proto
from feast.value_type import ValueType
from pydantic import BaseModel

from cicloml.errors import ConfigError, DataError
from cicloml.models.preprocessing import FeatureSchema
from cicloml.settings import Settings
from cicloml.spec import LabelsSpec

CONFIG_FILES = {"sqlite": "feature_store.yaml", "redis": "feature_store.redis.yaml"}
"""The Feast configuration in the repo folder for each online store choice (`CICLO_ONLINE_STORE`)."""


# --- opening and applying -------------------------------------------------------------------------------------


def open_store(repo_dir: Path, settings: Settings) -> FeatureStore:
    """Open the Feast repo at `repo_dir`, filling `${CICLO_*}` in its configuration from `settings`."""
    config_path = repo_dir / CONFIG_FILES[settings.online_store]
    if not config_path.is_file():
        raise ConfigError(
            f"Feast repository not found: {config_path} does not exist "
            "(features.repo in the project spec names the folder that holds feature_store.yaml)"
        )
    variables = {"CICLO_STATE_DIR": str(settings.state_dir), "CICLO_REDIS_URL": settings.redis_url}
    raw = yaml.safe_load(_fill_variables(config_path, variables))
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    config = RepoConfig(repo_path=repo_dir.resolve(), **raw)
    return FeatureStore(repo_path=str(repo_dir.resolve()), config=config)


def _fill_variables(config_path: Path, variables: dict[str, str]) -> str:
    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ConfigError(f"{config_path}: unknown variable ${{{name}}}; cicloml provides {', '.join(variables)}")
        return variables[name]

    return re.sub(r"\$\{(\w+)\}", fill, config_path.read_text())


class ApplyReport(BaseModel):
    """What `apply_repo` registered, by kind, and which objects it created, updated or deleted."""

    changed: list[str]
    entities: list[str]
    feature_views: list[str]
    feature_services: list[str]
    data_sources: list[str]


def apply_repo(store: FeatureStore) -> ApplyReport:
    """Register the repo's definitions (like `feast apply`): create, update and delete to match the files."""
    with _definitions_importable(store.repo_path):
        repo = parse_repo(store.repo_path)
    # Apply only when a definition changed: Feast's apply rewrites every object with new timestamps even when
    # nothing changed, and its plan() reports such objects as updated, so the comparison is ours.
    changed = _changes(store, repo)
    if changed:
        to_apply, to_delete, _, _ = extract_objects_for_apply_delete(store.project, store.registry, repo)
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return ApplyReport(
        changed=changed,
        entities=sorted(e.name for e in repo.entities if not e.name.startswith("__")),  # skip Feast's own dummy
        feature_views=sorted(v.name for v in repo.feature_views),
        feature_services=sorted(s.name for s in repo.feature_services),
        data_sources=sorted(s.name for s in repo.data_sources),
    )


def _changes(store: FeatureStore, repo: RepoContents) -> list[str]:
    """Objects the repo creates, updates or deletes relative to the registry, as 'kind name: change' lines."""
    kinds = {
        "entity": (repo.entities, store.list_entities),
        "data source": (repo.data_sources, store.list_data_sources),
        "feature view": (repo.feature_views, store.list_feature_views),
        "feature service": (repo.feature_services, store.list_feature_services),
    }
    store.refresh_registry()
    changes = []
    for kind, (declared, list_registered) in kinds.items():
        registered = {obj.name: obj for obj in list_registered() if not obj.name.startswith("__")}
        declared_names = set()
        for obj in declared:
            if obj.name.startswith("__"):  # Feast's own placeholder entity
                continue
            declared_names.add(obj.name)
            current = registered.get(obj.name)
            if current is None:
                changes.append(f"{kind} {obj.name}: create")
            elif not _same_definition(current, obj):
                changes.append(f"{kind} {obj.name}: update")
        changes += [f"{kind} {name}: delete" for name in registered.keys() - declared_names]
    return sorted(changes)


def _same_definition(registered: Any, declared: Any) -> bool:
    if isinstance(declared, FeatureView):
        # Materialized windows are state, not definition; entity columns are inferred by apply from the entities
        # (which are compared on their own) when a view does not declare them.
        declared = copy.copy(declared)
        declared.materialization_intervals = registered.materialization_intervals
        declared.entity_columns = declared.entity_columns or registered.entity_columns
    return bool(registered == declared)


@contextlib.contextmanager
def _definitions_importable(repo_dir: Path) -> Iterator[None]:
    """Import the repo's files the way the feast CLI does (as top-level modules, from inside the folder).

    They are forgotten afterwards, so a later apply (say, with another state folder) reads them afresh.
    """
    before = set(sys.modules)
    sys.path.insert(0, str(repo_dir))
    try:
        with contextlib.chdir(repo_dir):
            yield
    finally:
        sys.path.remove(str(repo_dir))
        for name in set(sys.modules) - before:
            if getattr(sys.modules[name], "__file__", "") and str(repo_dir) in sys.modules[name].__file__:
                del sys.modules[name]


# --- writing: materialize and push ------------------------------------------------------------------------------


class ViewMaterialization(BaseModel):
    view: str
    start: datetime
    end: datetime
    rows: int
    """Entity rows read from the offline store for this window (the newest per entity)."""


class MaterializeReport(BaseModel):
    views: list[ViewMaterialization]
    seconds: float

    @property
    def rows(self) -> int:
        return sum(view.rows for view in self.views)


def materialize(store: FeatureStore, end: datetime, *, start: datetime | None = None) -> MaterializeReport:
    """Load each online feature view with the newest values in its window, and record the window in the registry.

    Without `start` the window is incremental, as in `feast materialize-incremental`: from where the view's last
    materialization ended (or `end - ttl` the first time) to `end`. An explicit `start` re-materializes any window;
    the online store never lets an older value replace a newer one (see `cicloml.online_stores`).
    """
    began = time.perf_counter()
    end = _utc(end)
    provider = get_provider(store.config)
    windows = []
    for view in store.list_feature_views():
        if not view.online:
            continue
        window_start = _utc(start) if start else _incremental_start(view, end)
        rows = 0
        if window_start < end:
            with _garbage_collection_paused():
                rows = _materialize_view(store, provider, view, window_start, end)
            store.registry.apply_materialization(view, store.project, window_start, end)
        windows.append(ViewMaterialization(view=view.name, start=window_start, end=end, rows=rows))
    return MaterializeReport(views=windows, seconds=time.perf_counter() - began)


@contextlib.contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    """Converting a window to protobufs creates millions of short-lived objects that hold no cycles; the cyclic
    collector scanning them took ~30% of materialization (measured with benchmarks/bench_features.py)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _incremental_start(view: FeatureView, end: datetime) -> datetime:
    if view.most_recent_end_time is not None:
        return _utc(view.most_recent_end_time)
    return end - (view.ttl or timedelta(days=3650))


def _materialize_view(store: FeatureStore, provider: Any, view: FeatureView, start: datetime, end: datetime) -> int:
    # Feast's converter reads only the first record batch, so the table must be one chunk.
    table = _pull_latest(store, provider, view, start, end).combine_chunks()
    if table.num_rows:
        value_types = {column.name: column.dtype.to_value_type() for column in view.entity_columns}
        rows = _convert_arrow_to_proto(table, view, value_types)
        provider.online_write_batch(store.config, view, rows, progress=None)
    return table.num_rows


def _pull_latest(store: FeatureStore, provider: Any, view: FeatureView, start: datetime, end: datetime) -> pa.Table:
    """The newest row per entity with event time in [start, end), from the view's batch source."""
    source = view.batch_source
    return provider.offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=source,
        join_key_columns=[column.name for column in view.entity_columns],
        feature_name_columns=[feature.name for feature in view.features],
        timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        start_date=start,
        end_date=end,
    ).to_arrow()


def fetch_latest_features(store: FeatureStore, feature_service: str, as_of: datetime) -> pd.DataFrame:
    """Every entity live as of `as_of` (a row within its view's TTL in any of the service's views), with the
    service's features as they stood then: one row per entity, join keys first, nulls where a view has no row.

    For a single moment the point-in-time join is the newest row per entity in [as_of - ttl, as_of] of each view,
    so this reads each view's source once instead of running a historical retrieval.
    """
    service = _feature_service(store, feature_service)
    join_keys = _join_keys(store, service)
    provider = get_provider(store.config)
    as_of = _utc(as_of)
    frame: pd.DataFrame | None = None
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        names = [feature.name for feature in projection.features]
        start = as_of - (view.ttl or timedelta(days=3650))
        view_frame = _pull_latest(store, provider, view, start, as_of).select(join_keys + names).to_pandas()
        frame = view_frame if frame is None else frame.merge(view_frame, on=join_keys, how="outer")
    assert frame is not None, "a feature service has at least one view"
    return frame.sort_values(join_keys).reset_index(drop=True)


def push_features(store: FeatureStore, push_source: str, frame: pd.DataFrame, *, offline: bool = False) -> int:
    """Write fresh feature rows through a push source to the online store (and the offline store if asked)."""
    if frame.empty:
        return 0
    store.push(push_source, frame, to=PushMode.ONLINE_AND_OFFLINE if offline else PushMode.ONLINE)
    return len(frame)


def feature_schema(store: FeatureStore, feature_service: str) -> FeatureSchema:
    """The service's features split into numeric and categorical (Feast String) features, in service order."""
    service = _feature_service(store, feature_service)
    fields = [field for projection in service.feature_view_projections for field in projection.features]
    return FeatureSchema(
        entity_keys=tuple(_join_keys(store, service)),
        numeric=tuple(field.name for field in fields if field.dtype != String),
        categorical=tuple(field.name for field in fields if field.dtype == String),
    )


# --- reading offline: training frames ---------------------------------------------------------------------------


def fetch_training_frame(
    store: FeatureStore,
    feature_service: str,
    labels_frame: pd.DataFrame,
    labels: LabelsSpec,
    *,
    known_by: datetime | None = None,
) -> pd.DataFrame:
    """Join each label to the feature values that were known at its event time (point-in-time correct).

    Only labels available by `known_by` are used (labels arrive later than features). A feature value newer than
    the label's event time is never joined, and one older than its view's TTL comes back as null.
    """
    service = _feature_service(store, feature_service)
    join_keys = _join_keys(store, service)
    required = [*join_keys, labels.event_time, labels.column]
    if labels.available_time and known_by is not None:
        required.append(labels.available_time)
    missing = [column for column in required if column not in labels_frame.columns]
    if missing:
        raise DataError(
            f"label data is missing column(s) {', '.join(missing)}; it has {', '.join(labels_frame.columns)} "
            "(check labels.column / labels.event_time / labels.available_time in the project spec)"
        )
    entity_frame = labels_frame
    if labels.available_time and known_by is not None:
        entity_frame = entity_frame[pd.to_datetime(entity_frame[labels.available_time], utc=True) <= _utc(known_by)]
    if entity_frame.empty:
        raise DataError(f"no labels in the training window (none available by {known_by})")
    entity_frame = entity_frame[required].rename(columns={labels.event_time: "event_timestamp"})
    frame = fetch_feature_frame(store, feature_service, entity_frame)
    frame = frame.rename(columns={"event_timestamp": labels.event_time})
    return frame.sort_values([labels.event_time, *join_keys], kind="stable").reset_index(drop=True)


def fetch_feature_frame(store: FeatureStore, feature_service: str, entity_frame: pd.DataFrame) -> pd.DataFrame:
    """The service's features as of each row's `event_timestamp` (point-in-time correct), every row kept.

    `entity_frame` holds the join keys and `event_timestamp`; its other columns are carried through.
    """
    service = _feature_service(store, feature_service)
    keys = [*_join_keys(store, service), "event_timestamp"]
    frame = entity_frame.assign(event_timestamp=pd.to_datetime(entity_frame["event_timestamp"], utc=True))
    # One retrieval per view, each joined back onto the entity rows: Feast's file offline store drops an entity
    # row when every candidate row of *one* view is newer than it (a left join followed by a time filter), losing
    # the other views' valid values too. Joined per view, such a row keeps those values and gets nulls for the rest.
    entity_keys = frame[keys]
    for projection in service.feature_view_projections:
        names = [feature.name for feature in projection.features]
        references = [f"{projection.name_to_use()}:{name}" for name in names]
        view_frame = store.get_historical_features(entity_df=entity_keys, features=references).to_df()
        frame = frame.merge(view_frame[keys + names].drop_duplicates(keys), on=keys, how="left")
    return frame


# --- reading online: feature vectors ----------------------------------------------------------------------------

EntityStatus = Literal["ok", "unknown_entity", "missing_values", "stale_values"]


class EntityIssue(BaseModel):
    """Why an entity's feature vector cannot be used as it is."""

    entity: Any
    status: EntityStatus
    features: list[str] = []
    """The features that are missing or stale (empty for an unknown entity)."""

    @property
    def reason(self) -> str:
        if self.status == "unknown_entity":
            return f"no features stored for entity {self.entity!r}"
        kind = "missing" if self.status == "missing_values" else "older than their view's TTL"
        return f"features {', '.join(self.features)} are {kind}"


@dataclass(frozen=True)
class OnlineFeatures:
    """Online feature vectors for a list of entities, in request order, with every problem named."""

    columns: dict[str, list[Any]]
    """Join key, then each feature: one value per requested entity (what the store had, None where nothing)."""
    statuses: list[EntityStatus]
    issues: list[EntityIssue]

    @property
    def ok(self) -> bool:
        return not self.issues

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns)


class OnlineFeatureReader:
    """Reads a feature service's vectors from the online store, checking each one.

    Everything a lookup needs is resolved once, when the reader is made: the service's feature views (resolving
    them from the registry costs milliseconds of protobuf decoding), the online store plugin, the entity key type
    and each feature's value type. A lookup then reads each view straight through the plugin's `online_read`
    (the call underneath Feast's `get_online_features`, without its per-request resolution and response
    building) and converts values as Feast's `to_dict` does. A serving worker holds one reader for its lifetime;
    make a new one after the service's definition changes.
    """

    def __init__(self, store: FeatureStore, feature_service: str) -> None:
        self.store = store
        self.service = _feature_service(store, feature_service)
        (self.join_key,) = _join_keys(store, self.service)
        self.ttl_seconds: dict[str, float | None] = {}
        # Per view, in service order: the view (with the service's projection, as Feast reads it), the requested
        # feature names, a value converter per feature, and the view's TTL in seconds.
        self._views: list[tuple[FeatureView, list[str], list[Any], float | None]] = []
        for projection in self.service.feature_view_projections:
            view = store.get_feature_view(projection.name)
            ttl = view.ttl.total_seconds() if view.ttl else None
            names = [feature.name for feature in projection.features]
            for name in names:
                if name in self.ttl_seconds:
                    raise ConfigError(
                        f"feature service {feature_service!r} has two features named {name!r}; "
                        "online lookups need distinct feature names"
                    )
                self.ttl_seconds[name] = ttl
            value_types = {field.name: field.dtype.to_value_type() for field in view.features}
            converters = [self._converter(value_types[name]) for name in names]
            self._views.append((view.with_projection(copy.copy(projection)), names, converters, ttl))
        # The join key's declared type, which Feast converts entity values to (its entity type map: the last
        # view declaring the column wins).
        entity_types = {
            column.name: column.dtype.to_value_type() for view, *_ in self._views for column in view.entity_columns
        }
        self._entity_type = entity_types[self.join_key]
        self._online_store = get_provider(store.config).online_store

    @property
    def features(self) -> list[str]:
        return list(self.ttl_seconds)

    def fetch(self, entity_ids: Sequence[Any], *, now: datetime | None = None) -> OnlineFeatures:
        """Look up each entity's features, reporting unknown entities and missing or stale values.

        Feast answers an unknown entity with nulls and does not enforce TTL on online reads; this does both
        checks. Staleness is judged against `now` (default: the current time) and each feature view's TTL.
        """
        entities = list(entity_ids)
        now_seconds = _utc(now or datetime.now(timezone.utc)).timestamp()
        keys = self._entity_keys(entities)
        columns: dict[str, list[Any]] = {self.join_key: list(entities)}
        found = [False] * len(entities)
        stale: list[list[str]] = [[] for _ in entities]
        for view, names, converters, ttl in self._views:
            values = [[None] * len(entities) for _ in names]
            # A copy of the names: some stores (Redis) append their own fields to the list they are given.
            rows = self._online_store.online_read(self.store.config, view, keys, list(names)) if keys else []
            for row, (event_ts, stored) in enumerate(rows):
                if stored is not None:
                    for column, name, convert in zip(values, names, converters, strict=True):
                        value = stored.get(name)
                        if value is not None:
                            column[row] = convert(value)
                # Feast's response carries whole seconds, 0 where the view has nothing for the entity.
                seconds = self._seconds(event_ts)
                if seconds:
                    found[row] = True
                    if ttl is not None and now_seconds - seconds > ttl:
                        stale[row] += names
            columns.update(zip(names, values, strict=True))

        statuses: list[EntityStatus] = []
        issues: list[EntityIssue] = []
        for row, entity in enumerate(entities):
            issue = self._check(entity, row, columns, found[row], stale[row])
            statuses.append(issue.status if issue else "ok")
            if issue:
                issues.append(issue)
        return OnlineFeatures(
            columns={name: columns[name] for name in (self.join_key, *self.features)}, statuses=statuses, issues=issues
        )

    def _check(
        self, entity: Any, row: int, columns: dict[str, list[Any]], found: bool, stale: list[str]
    ) -> EntityIssue | None:
        if not found:
            return EntityIssue(entity=entity, status="unknown_entity")
        if stale:
            return EntityIssue(entity=entity, status="stale_values", features=stale)
        missing = [name for name in self.features if columns[name][row] is None]
        if missing:
            return EntityIssue(entity=entity, status="missing_values", features=missing)
        return None

    def _entity_keys(self, entities: list[Any]) -> list[Any]:
        """Entity key protos as Feast builds them from entity rows (the join key's declared value type)."""
        if not entities:
            return []
        join_keys = [self.join_key]
        return [
            EntityKey(join_keys=join_keys, entity_values=[value])
            for value in python_values_to_proto_values(entities, self._entity_type)
        ]

    def _seconds(self, event_ts: datetime | None) -> int:
        """Whole epoch seconds, as Feast's `Timestamp.FromDatetime` computes them (naive means UTC)."""
        return timegm(event_ts.utctimetuple()) if event_ts is not None else 0

    @staticmethod
    def _converter(value_type: Any) -> Any:
        """Python value of a stored ValueProto, as Feast's `OnlineResponse.to_dict` gives it.

        Plain scalars (int, float, str, bool, bytes) are read straight off the proto; anything else goes through
        Feast's `feast_value_type_to_python_type`, with the feature's value type as `to_dict` passes it.
        """
        plain = {"int64_val", "int32_val", "double_val", "float_val", "bool_val", "bytes_val"}
        if value_type not in (ValueType.UUID, ValueType.TIME_UUID):
            plain.add("string_val")  # Feast turns strings of UUID-typed features into uuid.UUID

        def convert(value: Any) -> Any:
            kind = value.WhichOneof("val")
            if kind is None:
                return None
            if kind in plain:
                return getattr(value, kind)
            return feast_value_type_to_python_type(value, value_type)

        return convert


# --- helpers ----------------------------------------------------------------------------------------------------


def _feature_service(store: FeatureStore, name: str) -> FeatureService:
    try:
        return store.get_feature_service(name)
    except Exception as error:  # Feast raises its own not-found type per registry backend
        known = ", ".join(service.name for service in store.list_feature_services()) or "none (run apply first)"
        raise ConfigError(f"feature service {name!r} is not registered; registered: {known}") from error


def _join_keys(store: FeatureStore, service: FeatureService) -> list[str]:
    keys: list[str] = []
    for projection in service.feature_view_projections:
        for column in store.get_feature_view(projection.name).entity_columns:
            if column.name not in keys:
                keys.append(column.name)
    return keys


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
