"""Feast online-store plugins.

Feast's SQLite store upserts whatever it is given, so re-materializing an older window after a newer one puts
old values back online. Feast's Redis store already skips writes older than (or as old as) the stored value;
`MonotonicSqliteOnlineStore` gives SQLite the same rule. It is selected by class path in feature_store.yaml.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from feast import FeatureView, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig, _table_id
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.utils import to_naive_utc

Row = tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]

# SQLite allows 32766 bound parameters per statement; stay well below it.
_LOOKUP_CHUNK = 900


class MonotonicSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    type: Literal["cicloml.online_stores.MonotonicSqliteOnlineStore"] = (  # type: ignore[assignment]
        "cicloml.online_stores.MonotonicSqliteOnlineStore"
    )


class MonotonicSqliteOnlineStore(SqliteOnlineStore):
    """SQLite online store that keeps, per entity, the row with the newest event timestamp."""

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[Row],
        progress: Callable[[int], Any] | None,
    ) -> None:
        newest = _newest_per_entity(data, config.entity_key_serialization_version)
        stored = self._stored_event_times(config, table, list(newest))
        fresh = [row for key, row in newest.items() if key not in stored or to_naive_utc(row[2]) > stored[key]]
        if fresh:
            super().online_write_batch(config, table, fresh, progress=None)
        if progress:
            progress(len(data))

    def _stored_event_times(self, config: RepoConfig, table: FeatureView, keys: list[bytes]) -> dict[bytes, datetime]:
        conn = self._get_conn(config)
        name = _table_id(config.project, table, config.registry.enable_online_feature_view_versioning)
        stored: dict[bytes, datetime] = {}
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[start : start + _LOOKUP_CHUNK]
            rows = conn.execute(
                # The column alias names the type so sqlite3 (PARSE_COLNAMES) converts the aggregate back.
                f'SELECT entity_key, MAX(event_ts) AS "event_ts [timestamp]" FROM "{name}" '
                f"WHERE entity_key IN ({','.join('?' * len(chunk))}) GROUP BY entity_key",
                chunk,
            )
            stored.update(rows)
        return stored


def _newest_per_entity(data: list[Row], serialization_version: int) -> dict[bytes, Row]:
    """The newest row per entity key, by (event time, created time), so a batch is order-independent."""
    newest: dict[bytes, Row] = {}
    for row in data:
        key = serialize_entity_key(row[0], entity_key_serialization_version=serialization_version)
        held = newest.get(key)
        if held is None or _order(row) > _order(held):
            newest[key] = row
    return newest


def _order(row: Row) -> tuple[datetime, datetime]:
    event_ts, created_ts = to_naive_utc(row[2]), row[3]
    return event_ts, to_naive_utc(created_ts) if created_ts is not None else datetime.min
