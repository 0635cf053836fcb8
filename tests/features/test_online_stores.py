"""`MonotonicSqliteOnlineStore` against Feast's own SQLite writer: same rows on disk, but never older values."""

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from feast import Entity, FeatureView, Field, FileSource, RepoConfig, ValueType
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import FloatList
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Array, Bool, Float32, Float64, Int64, String

from cicloml.online_stores import MonotonicSqliteOnlineStore, MonotonicSqliteOnlineStoreConfig

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=timezone.utc)
TABLE = "test_profile"

customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)


def feature_view(*, vector: bool = False) -> FeatureView:
    schema = [
        Field(name="customer_id", dtype=Int64),
        Field(name="plan", dtype=String),
        Field(name="charges", dtype=Float64),
        Field(name="tickets", dtype=Int64),
        Field(name="senior", dtype=Bool),
    ]
    if vector:
        schema.append(Field(name="embedding", dtype=Array(Float32), vector_index=True, vector_length=3))
    return FeatureView(
        name="profile",
        entities=[customer],
        ttl=timedelta(days=1),
        schema=schema,
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )


def repo_config(path: Path, store: type, **options: object) -> RepoConfig:
    config_type = MonotonicSqliteOnlineStoreConfig if store is MonotonicSqliteOnlineStore else SqliteOnlineStoreConfig
    return RepoConfig(
        project="test",
        provider="local",
        registry=str(path.parent / "registry.db"),
        online_store=config_type(path=str(path), **options),
        entity_key_serialization_version=3,
    )


def open_store(path: Path, store_type: type, view: FeatureView, **options: object) -> tuple[RepoConfig, object]:
    config = repo_config(path, store_type, **options)
    store = store_type()
    store.update(config, [], [view], [], [customer], partial=False)
    return config, store


def key(customer_id: int) -> EntityKey:
    return EntityKey(join_keys=["customer_id"], entity_values=[ValueProto(int64_val=customer_id)])


def row(customer_id: int, at: datetime, charges: float, *, created: datetime | None = None, **extra: ValueProto):
    values = {
        "plan": ValueProto(string_val=f"plan-{customer_id}"),
        "charges": ValueProto(double_val=charges),
        "tickets": ValueProto(int64_val=customer_id % 3),
        "senior": ValueProto(bool_val=customer_id % 2 == 0),
        **extra,
    }
    return key(customer_id), values, at, created


def stored_rows(path: Path) -> list[tuple]:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute(f'SELECT * FROM "{TABLE}" ORDER BY entity_key, feature_name').fetchall()


def charges(config: RepoConfig, store, view: FeatureView, ids: list[int]) -> list[float | None]:
    """What Feast's own reader gets back."""
    read = store.online_read(config, view, [key(customer_id) for customer_id in ids], ["charges"])
    return [values["charges"].double_val if values else None for _, values in read]


@pytest.mark.parametrize(
    "options",
    [{}, {"enable_openai_compatible_store": True}, {"vector_enabled": True}],
    ids=["default", "value_num", "vector"],
)
def test_writes_exactly_the_rows_feasts_writer_writes(tmp_path: Path, options: dict[str, object]):
    vector = bool(options.get("vector_enabled"))
    view = feature_view(vector=vector)
    embedding = {"embedding": ValueProto(float_list_val=FloatList(val=[0.5, 1.5, 2.5]))} if vector else {}
    data = [
        row(1, T0, 10.0, created=T0 + timedelta(minutes=1), **embedding),
        row(2, T0 + timedelta(microseconds=250_000), 20.5, **embedding),
        row(3, T0 - timedelta(days=400), 0.0, tickets=ValueProto(), **embedding),  # a null value
    ]
    feast_config, feast_store = open_store(tmp_path / "feast.db", SqliteOnlineStore, view, **options)
    ours_config, ours_store = open_store(tmp_path / "ours.db", MonotonicSqliteOnlineStore, view, **options)
    feast_store.online_write_batch(feast_config, view, data, progress=None)
    ours_store.online_write_batch(ours_config, view, data, progress=None)

    assert stored_rows(tmp_path / "ours.db") == stored_rows(tmp_path / "feast.db")
    assert len(stored_rows(tmp_path / "ours.db")) == len(data) * len(data[0][1])
    read_by_feast = feast_store.online_read(ours_config, view, [key(1), key(2), key(3), key(4)])
    assert read_by_feast == feast_store.online_read(feast_config, view, [key(1), key(2), key(3), key(4)])
    assert read_by_feast[3] == (None, None)


def test_reads_back_what_feasts_reader_reads(tmp_path: Path):
    view = feature_view()
    config, store = open_store(tmp_path / "online.db", MonotonicSqliteOnlineStore, view)
    data = [row(1, T0, 10.0), row(2, T0 + timedelta(hours=5, microseconds=250_000), 20.5, tickets=ValueProto())]
    store.online_write_batch(config, view, data, progress=None)
    keys = [key(2), key(4), key(1), key(2)]  # unknown and repeated entities too, in no particular order
    read = store.online_read(config, view, keys, ["charges", "plan"])
    assert read == SqliteOnlineStore.online_read(store, config, view, keys, ["charges", "plan"])
    assert [event_ts for event_ts, _ in read] == [T0 + timedelta(hours=5), None, T0, T0 + timedelta(hours=5)]


def test_without_a_value_num_column_it_writes_like_feast_does_and_warns(tmp_path: Path, caplog):
    """A table made before value_num was configured: Feast warns and writes without the column; so do we."""
    view = feature_view()
    data = [row(1, T0, 10.0), row(2, T0, 20.0)]
    for name, store_type in (("feast.db", SqliteOnlineStore), ("ours.db", MonotonicSqliteOnlineStore)):
        open_store(tmp_path / name, store_type, view)  # creates the table without value_num
        config = repo_config(tmp_path / name, store_type, enable_openai_compatible_store=True)
        store_type().online_write_batch(config, view, data, progress=None)
    assert stored_rows(tmp_path / "ours.db") == stored_rows(tmp_path / "feast.db")
    assert sum("value_num column not found" in record.getMessage() for record in caplog.records) == 2


def test_an_older_or_equally_old_write_never_replaces_a_stored_value(tmp_path: Path):
    view = feature_view()
    config, store = open_store(tmp_path / "online.db", MonotonicSqliteOnlineStore, view)
    store.online_write_batch(config, view, [row(1, T0, 10.0), row(2, T0, 20.0)], progress=None)

    store.online_write_batch(
        config,
        view,
        [
            row(1, T0 - timedelta(days=1), 1.0),  # older
            row(2, T0 + timedelta(milliseconds=500), 2.0),  # the same second as stored: kept as it is
            row(3, T0 - timedelta(days=1), 3.0),  # nothing stored yet: written
        ],
        progress=None,
    )
    assert charges(config, store, view, [1, 2, 3]) == [10.0, 20.0, 3.0]

    store.online_write_batch(config, view, [row(1, T0 + timedelta(seconds=1), 11.0)], progress=None)
    assert charges(config, store, view, [1, 2, 3]) == [11.0, 20.0, 3.0]
    (event_ts, _), *_ = store.online_read(config, view, [key(1)])
    assert event_ts == T0 + timedelta(seconds=1)


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
def test_a_batch_resolves_to_the_newest_row_per_entity_whatever_its_order(tmp_path: Path, reverse: bool):
    view = feature_view()
    config, store = open_store(tmp_path / "online.db", MonotonicSqliteOnlineStore, view)
    batch = [
        row(1, T0 - timedelta(hours=1), 1.0),
        row(1, T0, 2.0, created=T0),
        row(1, T0, 3.0, created=T0 + timedelta(hours=1)),  # same event time, created later: wins
        row(2, T0, 4.0),
    ]
    calls: list[int] = []
    store.online_write_batch(config, view, batch[::-1] if reverse else batch, progress=calls.append)
    assert charges(config, store, view, [1, 2]) == [3.0, 4.0]
    assert calls == [len(batch)]
    assert len(stored_rows(tmp_path / "online.db")) == 2 * len(batch[0][1])


def test_an_empty_batch_writes_nothing(tmp_path: Path):
    view = feature_view()
    config, store = open_store(tmp_path / "online.db", MonotonicSqliteOnlineStore, view)
    store.online_write_batch(config, view, [], progress=None)
    assert stored_rows(tmp_path / "online.db") == []
