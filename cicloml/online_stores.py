"""Feast online-store plugins.

Feast's SQLite store upserts whatever it is given, so re-materializing an older window after a newer one puts
old values back online. Feast's Redis store already skips writes older than (or as old as) the stored value;
`MonotonicSqliteOnlineStore` gives SQLite the same rule. It is selected by class path in feature_store.yaml.

What it writes is what Feast's `SqliteOnlineStore.online_write_batch` writes: the same table, the same columns
(`entity_key, feature_name, value, value_text, [value_num], [vector_value], event_ts, created_ts`) and the same
values in them, so Feast's own `online_read` reads them back. How it writes differs from Feast:

- One `executemany` per batch, in one transaction, instead of one statement per (entity, feature) value.
- The upsert only replaces a stored value whose event time is *older* than the incoming one; the rule is
  enforced in SQL, per (entity, feature) row, on the stored `event_ts`. That column holds what Feast binds for a
  datetime (whole epoch seconds), so two event times within the same second count as the same time and the
  value already stored is kept. A feature that has no stored value yet is always inserted.
- Within a batch only the newest row per entity is written (by event time, then created time), so the
  outcome does not depend on the order of the rows.
- `progress` is called once per batch with the number of rows given, not once per row.

It reads them back as Feast's `online_read` does (the same rows, the same result), but converts each entity's event
time once instead of once per stored feature: Feast's connection turns every row's `event_ts` into a datetime (a
converter for the column's declared type) and then gives it a time zone, row by row. For 100 to 1,000 entities
that was about a third of the lookup; for one entity it makes no difference.
"""

import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Literal

from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key, serialize_f32
from feast.infra.online_stores.helpers import extract_text_and_num
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _quote_id, _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type
from feast.types import FEAST_VECTOR_TYPES
from feast.utils import _get_feature_view_vector_field_metadata, to_naive_utc

PLAIN_SQLITE_TYPE = "sqlite"
"""Feast's own SQLite online store, as feature_store.yaml names it."""
MONOTONIC_SQLITE_TYPE = "cicloml.online_stores.MonotonicSqliteOnlineStore"
SQLITE_TYPES = (PLAIN_SQLITE_TYPE, MONOTONIC_SQLITE_TYPE)

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]

logger = logging.getLogger(__name__)


class MonotonicSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["cicloml.online_stores.MonotonicSqliteOnlineStore"] = (  # type: ignore[assignment]
        "cicloml.online_stores.MonotonicSqliteOnlineStore"
    )


class MonotonicSqliteOnlineStore(SqliteOnlineStore):
    """SQLite online store that keeps, per entity and feature, the value with the newest event timestamp."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        with_value_num = self._writes_value_num(config, conn, name)
        with_vector = bool(config.online_store.vector_enabled)
        newest = _newest_per_entity(data, config.entity_key_serialization_version)
        if newest:
            statement = _upsert_statement(name, with_value_num=with_value_num, with_vector=with_vector)
            vector_value = _vector_value(table) if with_vector else None
            rows = _statement_rows(newest, with_value_num=with_value_num, vector_value=vector_value)
            with conn:
                conn.executemany(statement, rows)
        if progress:
            progress(len(data))

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Per entity key, in order: the event time and the stored values of `table`'s features (every feature, as
        Feast's reader returns them), or (None, None) for an entity with none."""
        version = config.entity_key_serialization_version
        keys = [serialize_entity_key(key, entity_key_serialization_version=version) for key in entity_keys]
        name = _quote_id(_table_id(config.project, table, config.registry.enable_online_feature_view_versioning))
        # `event_ts + 0` has no declared type, so the connection's timestamp converter leaves its epoch seconds alone.
        rows = (
            self._get_conn(config)
            .execute(
                f"SELECT entity_key, feature_name, value, event_ts + 0 FROM {name} "
                f"WHERE entity_key IN ({','.join('?' * len(keys))}) ORDER BY entity_key",
                keys,
            )
            .fetchall()
        )
        values: dict[bytes, dict[str, ValueProto]] = {}
        seconds: dict[bytes, int] = {}
        for key, feature_name, stored, event_seconds in rows:
            value = ValueProto()
            value.ParseFromString(stored)
            values.setdefault(key, {})[feature_name] = value
            seconds[key] = event_seconds  # the last row's time, as Feast's reader takes it
        # Feast's converter reads the seconds as local time and then calls that UTC: the same on a UTC host.
        return [
            (datetime.fromtimestamp(seconds[key]).replace(tzinfo=timezone.utc), values[key])
            if key in values
            else (None, None)
            for key in keys
        ]

    def _writes_value_num(self, config: RepoConfig, conn: sqlite3.Connection, name: str) -> bool:
        """Whether Feast's writer would fill `value_num`: asked for in the config and the column exists."""
        if not getattr(config.online_store, "enable_openai_compatible_store", False):
            return False
        if self._check_table_has_value_num(conn, name):
            return True
        logger.warning(
            "enable_openai_compatible_store is True but value_num column not found in table '%s'. "
            "Run `feast apply` to add it. Writing without value_num.",
            name,
        )
        return False


def _upsert_statement(name: str, *, with_value_num: bool, with_vector: bool) -> str:
    """Feast's upsert, with a WHERE on its update: a stored value is replaced only by a strictly newer one."""
    columns = ["entity_key", "feature_name", "value", "value_text"]
    if with_value_num:
        columns.append("value_num")
    if with_vector:
        columns.append("vector_value")
    columns += ["event_ts", "created_ts"]
    table = _quote_id(name)
    updates = ", ".join(f"{column} = excluded.{column}" for column in columns[2:])
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT(entity_key, feature_name) DO UPDATE SET {updates} "
        f"WHERE excluded.event_ts > {table}.event_ts"
    )


def _statement_rows(
    newest: dict[bytes, Row], *, with_value_num: bool, vector_value: Callable[[str, ValueProto], Any] | None
) -> Iterator[tuple[Any, ...]]:
    """One parameter tuple per (entity, feature), in key order (sorted inserts keep the B-tree writes local)."""
    # Bind timestamps exactly as Feast's writer does: through the datetime adapter its sqlite module registers
    # (whole epoch seconds), applied once per entity here instead of once per value.
    adapt = getattr(sqlite3, "adapters", {}).get((datetime, sqlite3.PrepareProtocol), _unchanged)
    for key in sorted(newest):
        _, values, event_ts, created_ts = newest[key]
        event = adapt(to_naive_utc(event_ts))
        created = adapt(to_naive_utc(created_ts)) if created_ts is not None else None
        for feature_name in sorted(values):
            value = values[feature_name]
            value_text, value_num = extract_text_and_num(value, with_value_num)
            row: tuple[Any, ...] = (key, feature_name, value.SerializeToString(), value_text)
            if with_value_num:
                row += (value_num,)
            if vector_value is not None:
                row += (vector_value(feature_name, value),)
            yield (*row, event, created)


def _vector_value(table: FeatureView) -> Callable[[str, ValueProto], Any]:
    """What Feast's writer puts in `vector_value` when `vector_enabled`: packed floats for vector features."""
    vector_features = {feature.name for feature in table.features if feature.dtype in FEAST_VECTOR_TYPES}
    # Looked up only when there is a vector feature, as Feast does (it raises for more than one vector field).
    length = getattr(_get_feature_view_vector_field_metadata(table), "vector_length", 512) if vector_features else 0

    def vector_value(feature_name: str, value: ValueProto) -> Any:
        if feature_name in vector_features:
            return serialize_f32(value.float_list_val.val, length)
        return feast_value_type_to_python_type(value)

    return vector_value


def _unchanged(value: Any) -> Any:
    return value


def _newest_per_entity(data: list[Row], serialization_version: int) -> dict[bytes, Row]:
    """The newest row per entity key, by (event time, created time), so a batch is order-independent."""
    newest: dict[bytes, Row] = {}
    for row in data:
        key = serialize_entity_key(row[0], entity_key_serialization_version=serialization_version)
        held = newest.setdefault(key, row)
        if held is not row and _order(row) > _order(held):
            newest[key] = row
    return newest


def _order(row: Row) -> tuple[datetime, datetime]:
    event_ts, created_ts = to_naive_utc(row[2]), row[3]
    return event_ts, to_naive_utc(created_ts) if created_ts is not None else datetime.min
