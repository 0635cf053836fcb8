"""`cicloml` functions as Prefect tasks, wrapped in one place so the library never imports Prefect.

Stores, frames and models are passed between tasks, so input-hash caching is off (NO_CACHE); the store steps
retry because a locked SQLite file or a Redis blip is worth a second try.
"""

from prefect import task
from prefect.cache_policies import NO_CACHE

from cicloml import batch, bento, feature_store, lineage, monitoring, training
from cicloml.demo import churn
from cicloml.registry import ModelRegistry
from flows.runners import spread_joblib

_step = task(cache_policy=NO_CACHE)
_store_step = task(retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE)

# features
write_churn_data = _step(churn.write_churn_data)
open_store = _store_step(feature_store.open_store)
apply_repo = _store_step(feature_store.apply_repo)
materialize = _store_step(feature_store.materialize)
fetch_training_frame = _store_step(feature_store.fetch_training_frame)
fetch_latest_features = _store_step(feature_store.fetch_latest_features)

# training
encode_training_frame = _step(training.encode_training_frame)
checked_split = _step(training.checked_split)
fit_model = _step(spread_joblib(training.fit_model))  # on the Dask runner, a search's candidates run on the cluster
tune_threshold = _step(training.tune_threshold)
calibrate_scores = _step(training.calibrate_scores)
evaluate_model = _step(training.evaluate_model)
evaluate_champion = _step(training.evaluate_champion)
render_evaluation = task(name="render-evaluation", cache_policy=NO_CACHE)(training.Evaluation.markdown)
describe_training = _step(lineage.describe_training)
reference_profile = _step(training.reference_profile)

# registry
register_model = _store_step(ModelRegistry.register)
promote_model = _store_step(ModelRegistry.promote)
load_model = _store_step(ModelRegistry.load)

# monitoring
check_window = _step(monitoring.check_window)

# batch scoring
score_entities = _step(batch.score_entities)
write_predictions = _step(batch.write_predictions)
predict_date = _store_step(batch.predict_date)

# serving
build_bento = _step(bento.build_bento)
deploy_bento = _step(bento.deploy_bento)
