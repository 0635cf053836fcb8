"""The click model's contract: every view above, on-demand outputs included."""

from feast import FeatureService
from views import affinity, item_stats, price_at_request, user_item_activity, user_profile

click_v1 = FeatureService(
    name="click_v1",
    features=[user_profile, item_stats, user_item_activity, price_at_request, affinity],
    description="Will this user click this item now?",
)

# Scored in batch too: no request fields, and a view keyed by the pair says which pairs there are.
affinity_v1 = FeatureService(
    name="affinity_v1",
    features=[user_profile[["country", "is_premium"]], item_stats[["price", "category"]], user_item_activity, affinity],
    description="Pair affinity without request-time context.",
)

# The same views without the on-demand ones: what the benchmark holds /predict with on-demand views against.
click_plain_v1 = FeatureService(
    name="click_plain_v1",
    features=[user_profile, item_stats, user_item_activity],
    description="The click model's stored features only.",
)

# With the request-time (python-mode) view only.
click_python_v1 = FeatureService(
    name="click_python_v1",
    features=[user_profile, item_stats, user_item_activity, price_at_request],
    description="The click model's stored features and the price at request time.",
)
