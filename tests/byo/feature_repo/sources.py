"""Parquet files next to the repository, a push source for item updates, and what a request brings along."""

from feast import Field, FileSource, PushSource, RequestSource
from feast.types import Float64, Int64

users_source = FileSource(name="users", path="data/users.parquet", timestamp_field="updated_at")

items_source = FileSource(name="items", path="data/items.parquet", timestamp_field="event_timestamp")
items_push = PushSource(name="items_push", batch_source=items_source)

interactions_source = FileSource(
    name="interactions", path="data/interactions.parquet", timestamp_field="event_timestamp"
)

request_context = RequestSource(
    name="request_context",
    schema=[Field(name="discount", dtype=Float64), Field(name="hour_of_day", dtype=Int64)],
)
