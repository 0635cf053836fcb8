"""The scikit-learn family: shared preprocessing + a named estimator, optionally tuned by randomized search."""

from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RandomizedSearchCV, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from cicloml.errors import DataError
from cicloml.models.preprocessing import FeatureSchema, build_preprocessor

if TYPE_CHECKING:  # the spec validates its parameters with this module, so no import at run time
    from cicloml.spec import SklearnModelSpec

ESTIMATORS: dict[str, type[BaseEstimator]] = {  # the names model.estimator accepts
    "hist_gradient_boosting": HistGradientBoostingClassifier,
    "gradient_boosting": GradientBoostingClassifier,
    "random_forest": RandomForestClassifier,
    "logistic_regression": LogisticRegression,
}


def build_sklearn_pipeline(schema: FeatureSchema, spec: "SklearnModelSpec", seed: int) -> Pipeline | RandomizedSearchCV:
    """Preprocessing then the estimator; with `spec.search`, a randomized search over time-series splits that
    refits the best pipeline on all the training rows."""
    estimator_class = ESTIMATORS[spec.estimator]
    params: dict[str, Any] = {**spec.params}
    if "random_state" in estimator_class().get_params():
        params["random_state"] = seed
    pipeline = Pipeline([("preprocess", build_preprocessor(schema)), ("classifier", estimator_class(**params))])
    if spec.search is None:
        return pipeline
    return RandomizedSearchCV(
        pipeline,
        {f"classifier__{name}": values for name, values in spec.search.params.items()},
        n_iter=spec.search.n_iter,
        cv=TimeSeriesSplit(n_splits=spec.search.splits),
        scoring="roc_auc",
        random_state=seed,
        refit=True,
    )


def unknown_params(estimator: str, names: set[str]) -> list[str]:
    """The names in `names` that the estimator does not take."""
    return sorted(names - set(ESTIMATORS[estimator]().get_params()))


def check_sample_weight(sample_weight: Any, n_rows: int) -> np.ndarray:
    """`sample_weight` as a float64 vector of one weight per row (both model families train with it); a DataError
    unless it has `n_rows` finite, non-negative weights, not all zero."""
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_rows,):
        raise DataError(f"sample_weight has shape {weights.shape}; pass one weight per training row ({n_rows},)")
    bad = ~np.isfinite(weights)
    if bad.any():
        raise DataError(f"sample_weight has {bad.sum()} NaN or infinite weight(s) (first at row {bad.argmax()})")
    negative = weights < 0
    if negative.any():
        raise DataError(f"sample_weight has {negative.sum()} negative weight(s) (first at row {negative.argmax()})")
    if not weights.any():
        raise DataError(f"sample_weight is zero for all {n_rows} rows: nothing would be learned from")
    return weights
