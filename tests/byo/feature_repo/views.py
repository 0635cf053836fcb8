"""Feature views over one key each and over the user x item pair, and two on-demand views."""

from datetime import timedelta

import numpy as np
import pandas as pd
from entities import item, user
from feast import FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Array, Bool, Float32, Float64, Int64, Json, Map, String, UnixTimestamp
from sources import interactions_source, items_push, request_context, users_source

# No push source: updated by batch loads only.
user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        Field(name="country", dtype=String),
        Field(name="is_premium", dtype=Bool),
        Field(name="user_embedding", dtype=Array(Float32)),
        Field(name="preferences", dtype=Map),
        Field(name="signup_at", dtype=UnixTimestamp),
    ],
    source=users_source,
)

item_stats = FeatureView(
    name="item_stats",
    entities=[item],
    ttl=timedelta(days=7),
    schema=[
        Field(name="price", dtype=Float64),
        Field(name="category", dtype=String),
        Field(name="popularity_7d", dtype=Float32),
        Field(name="attributes", dtype=Json),
    ],
    source=items_push,
)

user_item_activity = FeatureView(
    name="user_item_activity",
    entities=[user, item],
    ttl=timedelta(days=30),
    schema=[Field(name="clicks_30d", dtype=Int64), Field(name="last_rating", dtype=Float64)],
    source=interactions_source,
)


@on_demand_feature_view(
    sources=[item_stats[["price"]], request_context],
    schema=[Field(name="discounted_price", dtype=Float64), Field(name="evening", dtype=Int64)],
    mode="python",
)
def price_at_request(inputs: dict) -> dict:
    return {
        "discounted_price": [
            price * (1 - discount) for price, discount in zip(inputs["price"], inputs["discount"], strict=True)
        ],
        "evening": [int(hour >= 18) for hour in inputs["hour_of_day"]],
    }


@on_demand_feature_view(
    sources=[user_item_activity],
    schema=[Field(name="affinity", dtype=Float64)],
    mode="pandas",
)
def affinity(inputs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame()
    out["affinity"] = np.log1p(inputs["clicks_30d"].astype("float64")) * inputs["last_rating"].astype("float64")
    return out
