"""`cicloml` functions as Prefect tasks, wrapped in one place so the library never imports Prefect.

Stores and frames are passed between tasks, so input-hash caching is off (NO_CACHE); the store steps retry
because a locked SQLite file or a Redis blip is worth a second try.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from cicloml import feature_store
from cicloml.demo import churn

_store_step = task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)

write_churn_data = task(cache_policy=NO_CACHE)(churn.write_churn_data)
open_store = _store_step(feature_store.open_store)
apply_repo = _store_step(feature_store.apply_repo)
materialize = _store_step(feature_store.materialize)
