"""Feature services: the versioned contract between training and serving.

A model records the service it was trained on and the bento asks Feast for exactly that. Publish a new version
(`churn_v2`) instead of editing one that models depend on.
"""

from feast import FeatureService
from feature_views import customer_activity, customer_profile

churn_v1 = FeatureService(
    name="churn_v1",
    features=[customer_profile, customer_activity],
    description="Churn model inputs: profile and daily activity.",
    owner="ml-platform@cicloml.dev",
    tags={"model": "churn"},
)
