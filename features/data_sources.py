"""Data sources: where feature values come from, offline (Parquet files) and online (push)."""

from feast import FileSource, PushSource

from cicloml.settings import get_settings

DATA_DIR = get_settings().data_dir

customer_profile_source = FileSource(
    name="customer_profile_source",
    path=str(DATA_DIR / "customers.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Customer attributes from the billing system, one row per change.",
)

customer_activity_source = FileSource(
    name="customer_activity_source",
    path=str(DATA_DIR / "activity.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Daily activity snapshot per customer from the usage and payment pipelines.",
)

customer_profile_push = PushSource(
    name="customer_profile_push",
    batch_source=customer_profile_source,
    description="Profile changes pushed as they happen, ahead of the next batch load.",
)

customer_activity_push = PushSource(
    name="customer_activity_push",
    batch_source=customer_activity_source,
    description="Fresh activity snapshots pushed straight to the online store.",
)
