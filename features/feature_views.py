"""Feature views: named, typed groups of features with a freshness limit (TTL)."""

from datetime import timedelta

from data_sources import customer_activity_push, customer_profile_push
from entities import customer
from feast import FeatureView, Field
from feast.types import Float64, Int64, String

OWNER = "ml-platform@cicloml.dev"

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    # Profiles change rarely; one untouched for ten years is suspect.
    ttl=timedelta(days=3650),
    schema=[
        Field(name="plan", dtype=String, description="Subscription tier: basic, standard or premium."),
        Field(name="contract", dtype=String, description="month-to-month, one-year or two-year."),
        Field(name="region", dtype=String, description="Sales region of the billing address."),
        Field(name="payment_method", dtype=String, description="card, bank-transfer or invoice."),
        Field(name="senior_citizen", dtype=Int64, description="1 if the account holder is 65 or older."),
    ],
    source=customer_profile_push,
    online=True,
    description="Slowly changing customer attributes.",
    owner=OWNER,
    tags={"team": "retention"},
)

customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    # Snapshots arrive daily; a value older than two days means the feed has stopped.
    ttl=timedelta(days=2),
    schema=[
        Field(name="tenure_days", dtype=Int64, description="Days since signup."),
        Field(name="monthly_charges", dtype=Float64, description="Current monthly bill in EUR."),
        Field(name="usage_minutes_7d", dtype=Float64, description="Minutes of use over the last 7 days."),
        Field(name="data_gb_30d", dtype=Float64, description="Data volume over the last 30 days, GB."),
        Field(name="support_tickets_30d", dtype=Int64, description="Support tickets opened in 30 days."),
        Field(name="payment_failures_90d", dtype=Int64, description="Failed payments in 90 days."),
        Field(name="days_since_last_login", dtype=Int64, description="Days since the last app login."),
    ],
    source=customer_activity_push,
    online=True,
    description="Daily usage, billing and support activity.",
    owner=OWNER,
    tags={"team": "retention"},
)
