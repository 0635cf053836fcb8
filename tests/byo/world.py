"""A seeded click world for the test Feast repository in `feature_repo/`: users, items, user x item activity and
click labels that carry the request-time fields (discount, hour of day) the on-demand view needs.

Clicks follow the features (affinity, premium, the first embedding dimension, the discounted price, evening hours),
so a model trained on the repository's feature service has something to learn.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = ("se", "de", "es", "it")
CATEGORIES = ("books", "games", "garden", "kitchen")
EMBEDDING_WIDTH = 4


@dataclass(frozen=True)
class ClickWorld:
    users: pd.DataFrame
    items: pd.DataFrame
    interactions: pd.DataFrame
    labels: pd.DataFrame

    def write(self, data_dir: Path) -> None:
        """The offline sources under the repository's `data/`, and the labels beside them."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self.users.to_parquet(data_dir / "users.parquet", index=False)
        self.items.to_parquet(data_dir / "items.parquet", index=False)
        self.interactions.to_parquet(data_dir / "interactions.parquet", index=False)
        self.labels.to_parquet(data_dir / "clicks.parquet", index=False)


def generate_click_world(
    end: datetime, *, users: int = 150, items: int = 30, days: int = 40, clicks_per_day: int = 60, seed: int = 3
) -> ClickWorld:
    """`days` days of history up to `end`: one profile per user, a daily snapshot per item, and `clicks_per_day`
    labelled impressions a day (labels known a day after the impression)."""
    rng = np.random.default_rng(seed)
    start = end - timedelta(days=days)
    user_ids = [f"u{index:04d}" for index in range(users)]
    item_ids = np.arange(1, items + 1, dtype=np.int64)

    embeddings = rng.normal(size=(users, EMBEDDING_WIDTH)).astype(np.float32)
    user_frame = pd.DataFrame(
        {
            "user_id": user_ids,
            "updated_at": pd.to_datetime([start - timedelta(days=1)] * users, utc=True),
            "country": rng.choice(COUNTRIES, size=users),
            "is_premium": rng.random(users) < 0.3,
            "user_embedding": list(embeddings),
            "preferences": [{"theme": "dark"}] * users,
            "signup_at": pd.to_datetime(
                [start - timedelta(days=int(age)) for age in rng.integers(30, 900, size=users)], utc=True
            ),
        }
    )

    base_price = rng.uniform(5, 60, size=items)
    item_rows = []
    for day in range(days + 1):
        moment = start + timedelta(days=day)
        for index, item_id in enumerate(item_ids):
            item_rows.append(
                {
                    "item_id": item_id,
                    "event_timestamp": moment,
                    "price": float(round(base_price[index] * rng.uniform(0.9, 1.1), 2)),
                    "category": CATEGORIES[index % len(CATEGORIES)],
                    "popularity_7d": np.float32(rng.gamma(2.0, 10.0)),
                    "attributes": json.dumps({"colour": "red"}),
                }
            )
    item_frame = pd.DataFrame(item_rows)
    item_frame["event_timestamp"] = pd.to_datetime(item_frame["event_timestamp"], utc=True)

    impressions = days * clicks_per_day
    event_times = [
        start + timedelta(days=int(day), hours=int(hour), minutes=int(minute))
        for day, hour, minute in zip(
            rng.integers(1, days, size=impressions),
            rng.integers(0, 24, size=impressions),
            rng.integers(0, 60, size=impressions),
            strict=True,
        )
    ]
    user_index = rng.integers(0, users, size=impressions)
    item_index = rng.integers(0, items, size=impressions)
    clicks_30d = rng.poisson(2.0, size=impressions)
    last_rating = np.where(rng.random(impressions) < 0.15, np.nan, rng.uniform(1, 5, size=impressions).round(1))
    discount = rng.choice([0.0, 0.1, 0.2, 0.3], size=impressions)
    hour = np.array([moment.hour for moment in event_times])
    # The newest price snapshot at or before the impression is the one of its day.
    price = np.array(
        [
            item_frame["price"].iloc[(moment - start).days * items + index]
            for moment, index in zip(event_times, item_index, strict=True)
        ]
    )
    affinity = np.log1p(clicks_30d) * np.nan_to_num(last_rating, nan=2.5)
    logit = (
        -1.2
        + 0.5 * (affinity - 3.0)
        + 0.8 * user_frame["is_premium"].to_numpy()[user_index]
        + 0.6 * embeddings[user_index, 0]
        - 0.04 * (price * (1 - discount) - 30.0)
        + 0.6 * (hour >= 18)
    )
    clicked = (rng.random(impressions) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    # The pair's activity snapshot an hour before the impression; a tenth of the pairs have none yet.
    has_activity = rng.random(impressions) >= 0.1
    interaction_frame = pd.DataFrame(
        {
            "user_id": np.array(user_ids)[user_index][has_activity],
            "item_id": item_ids[item_index][has_activity],
            "event_timestamp": pd.to_datetime(
                [moment - timedelta(hours=1) for moment, kept in zip(event_times, has_activity, strict=True) if kept],
                utc=True,
            ),
            "clicks_30d": clicks_30d[has_activity],
            "last_rating": last_rating[has_activity],
        }
    )
    labels = pd.DataFrame(
        {
            "user_id": np.array(user_ids)[user_index],
            "item_id": item_ids[item_index],
            "event_timestamp": pd.to_datetime(event_times, utc=True),
            "known_at": pd.to_datetime([moment + timedelta(days=1) for moment in event_times], utc=True),
            "discount": discount,
            "hour_of_day": hour.astype(np.int64),
            "clicked": clicked,
        }
    ).sort_values("event_timestamp", kind="stable", ignore_index=True)
    # Two impressions of one pair at one moment would be duplicate labels: keep the first.
    labels = labels.drop_duplicates(["user_id", "item_id", "event_timestamp"], ignore_index=True)
    return ClickWorld(users=user_frame, items=item_frame, interactions=interaction_frame, labels=labels)
