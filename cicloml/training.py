"""Training: read labels, split a frame by time, fit the configured model family, tune and evaluate it."""

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from cicloml.checks import validate_training_frame
from cicloml.errors import ConfigError, DataError
from cicloml.estimation import Calibration, anchor_calibration, fit_calibration
from cicloml.evaluation import EvalReport, choose_threshold, evaluate_scores, plot_evaluation, render_markdown
from cicloml.models.inputs import encode_frame, learn_vector_widths
from cicloml.models.preprocessing import FeatureSchema
from cicloml.profiling import SCORE_COLUMN, DatasetProfileView, profile_frame
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import LabelsSpec, LightningModelSpec, ProjectSpec, SklearnModelSpec


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def split_by_time(
    frame: pd.DataFrame, time_column: str, *, validation_fraction: float, test_fraction: float
) -> TimeSplit:
    """The newest rows (at least `test_fraction` of them) test, the ones before (at least `validation_fraction` more)
    validate, the rest train. Rows sharing a timestamp stay together, so no moment is in two splits and nothing
    from the future is trained on."""
    times = frame[time_column]
    counts = times.value_counts().sort_index()
    share_from = counts[::-1].cumsum()[::-1] / len(frame)  # share of rows at or after each timestamp

    def newest_holding(share: float) -> pd.Series:
        """Rows from the newest timestamp on which at least `share` of the rows lie."""
        return times >= share_from.index[share_from >= share][-1]

    in_test = newest_holding(test_fraction)
    # Validation holds its share of rows beyond what the test split took (a newest moment may hold more than its
    # share): with few distinct moments, e.g. a day's labels sharing one timestamp, it is not swallowed by the test.
    in_validation_or_test = newest_holding(min(1.0, in_test.mean() + validation_fraction))
    split = TimeSplit(
        train=frame[~in_validation_or_test],
        validation=frame[in_validation_or_test & ~in_test],
        test=frame[in_test],
    )
    for name in ("train", "validation", "test"):
        if getattr(split, name).empty:
            raise DataError(
                f"the {name} split is empty: {times.nunique()} distinct {time_column} values are too few to split "
                "(widen the training window or change training.validation_fraction / test_fraction)"
            )
    return split


def checked_split(
    frame: pd.DataFrame, schema: FeatureSchema, label: str, time_column: str, spec: ProjectSpec
) -> TimeSplit:
    """What a training needs before it fits: the spec's data checks (`DataError` listing the failures), then the
    split by time with the spec's fractions."""
    validate_training_frame(
        frame, label=label, keys=[*schema.entity_keys, time_column], features=schema.features, limits=spec.checks
    )
    training = spec.training
    return split_by_time(
        frame, time_column, validation_fraction=training.validation_fraction, test_fraction=training.test_fraction
    )


def since_onset(frame: pd.DataFrame, time_column: str, onset: datetime) -> pd.DataFrame:
    """The rows from a degradation's onset on (`retraining.since_onset`): the world after the change."""
    return frame[pd.to_datetime(frame[time_column], utc=True) >= pd.Timestamp(onset)]


def select_training_window(frame: pd.DataFrame, time_column: str, window_days: int | None) -> pd.DataFrame:
    """The rows whose `time_column` lies within `window_days` days of the newest row's (all rows for None): the
    window follows the data, not the clock, so a pause in labelling does not empty it. A row exactly `window_days`
    days older than the newest is kept."""
    if window_days is None:
        return frame
    if window_days < 1:
        raise ConfigError(f"training.window_days is {window_days}; pass a whole number of days, at least 1")
    if time_column not in frame.columns:
        raise DataError(f"the training frame has no {time_column} column to select a training window by")
    times = frame[time_column]
    return frame[times >= times.max() - pd.Timedelta(days=window_days)]


def recency_weights(times: pd.Series, half_life_days: float | None) -> np.ndarray | None:
    """Per-row weight 0.5 ** (age_days / half_life) with age from the newest time, normalised to mean 1; None for
    None (equal weights)."""
    if half_life_days is None:
        return None
    if half_life_days <= 0:
        raise ConfigError(f"training.recency_half_life_days is {half_life_days}; pass a positive number of days")
    if times.isna().any():
        raise DataError(f"{times.isna().sum()} row(s) have no {times.name or 'time'} to weight by recency")
    if times.empty:
        return np.ones(0)
    age_days = ((times.max() - times) / pd.Timedelta(days=1)).to_numpy(dtype=np.float64)
    weights = 0.5 ** (age_days / half_life_days)  # the newest row weighs 1, so the sum is at least 1
    return weights / weights.mean()


def encode_training_frame(
    frame: pd.DataFrame, schema: FeatureSchema, time_column: str
) -> tuple[pd.DataFrame, FeatureSchema]:
    """The training frame with its model columns (see `cicloml.models.inputs`), and the schema the model is trained
    on: array features' widths learned from this frame, timestamps aged against each label's event time."""
    inputs = tuple(learn_vector_widths(schema.feature_inputs, frame))
    schema = FeatureSchema.from_inputs(schema.entity_keys, inputs)
    return encode_frame(inputs, frame, time_column), schema


def fit_model(
    train_frame: pd.DataFrame,
    label: str,
    schema: FeatureSchema,
    spec: SklearnModelSpec | LightningModelSpec,
    seed: int,
    sample_weight: np.ndarray | None = None,
) -> Pipeline:
    """Fit the spec's model family on `train_frame` (rows in time order), each row counting in proportion to its
    `sample_weight` (one finite, non-negative weight per row; None: equal weights); return the fitted pipeline.

    The weights, scaled to mean 1, reach the estimator's fit (`classifier__sample_weight`); a search slices them
    with the rows of each time-series split and refits the best pipeline with all of them (its candidates' ROC AUC
    is unweighted). Equal weights are no weights: the fit is then exactly the unweighted one (a random forest given
    weights, even equal ones, draws its bootstrap samples differently)."""
    from cicloml.models.sklearn import check_sample_weight

    fit_params = {}
    if sample_weight is not None:
        weights = check_sample_weight(sample_weight, len(train_frame))
        if not (weights == weights[0]).all():
            fit_params["classifier__sample_weight"] = weights / weights.mean()
    if isinstance(spec, LightningModelSpec):
        # Imported here: torch takes seconds to import, and the sklearn family never needs it.
        from cicloml.models.lightning import build_lightning_pipeline

        pipeline = build_lightning_pipeline(schema, spec.model_dump(exclude={"family"}), seed)
    else:
        from cicloml.models.sklearn import build_sklearn_pipeline

        pipeline = build_sklearn_pipeline(schema, spec, seed)
    fitted = pipeline.fit(train_frame[schema.features], train_frame[label].astype(int), **fit_params)
    return getattr(fitted, "best_estimator_", fitted)  # a search refits the best pipeline on all rows


def score(model: Pipeline, frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    """P(label = 1) for each row."""
    return model.predict_proba(frame[schema.features])[:, 1]


def reference_profile(
    model: Pipeline, train_frame: pd.DataFrame, validation_frame: pd.DataFrame, schema: FeatureSchema
) -> DatasetProfileView:
    """The profile live traffic is compared with: the training rows' features, and the model's scores (column
    `score`, as the service profiles them) on the validation rows, out of sample as live scores are."""
    scores = pd.DataFrame({SCORE_COLUMN: score(model, validation_frame, schema)})
    return profile_frame(train_frame[schema.features]).merge(profile_frame(scores))


def read_labels(settings: Settings, labels: LabelsSpec) -> pd.DataFrame:
    """The label table named by the spec (relative paths are under the state folder)."""
    path = labels.path if labels.path.is_absolute() else settings.state_dir / labels.path
    if not path.is_file():
        raise ConfigError(f"label file not found: {path} (labels.path in the project spec)")
    return pd.read_parquet(path)


@dataclass(frozen=True)
class Evaluation:
    """A model's report on a frame, with the scores it was computed from (for plots)."""

    report: EvalReport
    scores: np.ndarray
    labels: np.ndarray

    def markdown(self, champion: EvalReport | None = None) -> str:
        """The report as a document for people: metrics (vs the champion), worst slice, slices, plots."""
        images = plot_evaluation(self.scores, self.labels, self.report.threshold)
        return render_markdown(self.report, champion=champion, images=images)


def evaluate_model(
    model: Pipeline, frame: pd.DataFrame, schema: FeatureSchema, label: str, *, threshold: float, slices: list[str]
) -> Evaluation:
    """Score `frame` and evaluate against its labels, overall and per value of each slice column."""
    scores, labels = score(model, frame, schema), frame[label].to_numpy()
    report = evaluate_scores(scores, labels, threshold=threshold, slices=frame[slices] if slices else None)
    return Evaluation(report=report, scores=scores, labels=labels)


def tune_threshold(model: Pipeline, validation_frame: pd.DataFrame, schema: FeatureSchema, label: str) -> float:
    """The decision threshold with the best F1 on the validation split."""
    return choose_threshold(score(model, validation_frame, schema), validation_frame[label].to_numpy())


def calibrate_scores(
    model: Pipeline, validation_frame: pd.DataFrame, schema: FeatureSchema, label: str, *, seed: int, test: Evaluation
) -> Calibration:
    """How the model's scores map to probabilities, fitted on the validation split (out of sample, as live scores
    are) and anchored on the test split's scores and labels: what estimating performance before labels rests on
    (`cicloml.estimation`)."""
    calibration = fit_calibration(score(model, validation_frame, schema), validation_frame[label].to_numpy(), seed=seed)
    return anchor_calibration(calibration, test.scores, test.labels, seed=seed)


def evaluate_champion(
    registry: ModelRegistry, frame: pd.DataFrame, label: str, *, slices: list[str]
) -> tuple[str, Evaluation] | None:
    """The current champion's evaluation on `frame` (the challenger's test window), with its own threshold."""
    tag = registry.champion()
    if tag is None:
        return None
    champion = registry.load(tag)
    features = champion.lineage.features
    return tag, evaluate_model(
        champion.pipeline, frame, features, label, threshold=champion.lineage.threshold, slices=slices
    )
