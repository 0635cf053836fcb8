"""train: features → checks → time split → anything new? → fit → calibrate → evaluate → gate → register → promote.

A retraining that answers a degradation passes its onset (`since`): the labels from it on, when they suffice.
"""

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.contract import FeatureContract
from cicloml.errors import DataError
from cicloml.feature_store import open_store
from cicloml.gate import GateDecision, PairedComparison, compare_paired, decide_promotion
from cicloml.lineage import splits_fingerprint
from cicloml.registry import ModelRegistry
from cicloml.retraining import Freshness, assess_freshness, spec_fingerprint
from cicloml.settings import get_settings
from cicloml.spec import LightningModelSpec, SklearnModelSpec, load_spec
from cicloml.training import (
    Evaluation,
    checked_split,
    read_labels,
    recency_weights,
    select_training_window,
    since_onset,
)
from flows import tasks
from flows.local import run_locally
from flows.runners import ConfiguredTaskRunner

PROJECT_DIR = Path(__file__).resolve().parents[1]


class TrainParams(BaseModel):
    as_of: datetime | None = None
    """Train on labels known by this time (default: now)."""
    model: SklearnModelSpec | LightningModelSpec | None = None
    """Override the spec's model section for this run."""
    seed: int | None = None
    """Override training.seed."""
    require_new_labels: bool = False
    """A requested retraining: fit only with at least `retraining.min_new_labels` labelled rows newer than the
    champion's (or other settings than the champion's). Any run skips data and settings identical to the champion's."""
    since: datetime | None = None
    """A degradation's onset: train on the labels from it on; until they pass the data checks and the split, fit
    nothing (skipped: the retraining waits for them). `retraining.since_onset` off ignores it."""


class TrainResult(BaseModel):
    tag: str | None
    """The registered challenger; None when the run was skipped."""
    promoted: bool
    decision: GateDecision | None
    skipped: str | None = None
    """Why nothing was fitted (no labelled data newer than the champion's), or None."""
    freshness: Freshness
    rows_since: int | None = None
    """With `since`: the labelled rows from the onset on that the model trained, tuned or was tested on."""


@flow(name="train", task_runner=ConfiguredTaskRunner())
def train(params: TrainParams = TrainParams()) -> TrainResult:
    """Train a challenger on the point-in-time training frame (nothing when it holds nothing the champion did not
    learn from), gate it against the champion on the fresh test rows, register it with the gate's decision and
    promote it if it passed."""
    settings = get_settings()
    spec = load_spec(settings.spec_path)
    model_spec = params.model or spec.model
    service, label, time_column = spec.features.feature_service, spec.labels.column, spec.labels.event_time
    registry = ModelRegistry(settings, spec.name)

    # Steps that do real work are tasks (watched, retried and timed in the UI); lookups and quick arithmetic
    # (milliseconds) are plain calls.
    store = open_store(spec.features.repo, settings)
    contract = FeatureContract.resolve(store, service, exclude=spec.features.exclude)
    labels = read_labels(settings, spec.labels)
    frame = tasks.fetch_training_frame(store, contract, labels, spec.labels, known_by=params.as_of or _now())
    frame = select_training_window(frame, time_column, spec.training.window_days)
    frame, schema = tasks.encode_training_frame(frame, contract.schema(), time_column)
    since = params.since if spec.retraining.since_onset else None
    split, waiting = None, None
    if since is not None:
        recent = since_onset(frame, time_column, since)
        try:  # not a task: too few labels since the onset is an answer (the request waits), not a failure
            frame, split = recent, checked_split(recent, schema, label, time_column, spec)
        except DataError as error:
            waiting = f"the labels since the onset {since:%Y-%m-%d %H:%M} UTC do not suffice yet: {error}"
    if split is None:
        split = tasks.checked_split(frame, schema, label, time_column, spec)
    splits = {"train": split.train, "validation": split.validation, "test": split.test}

    seed = spec.training.seed if params.seed is None else params.seed
    settings_fingerprint = spec_fingerprint(spec, model_spec, seed)
    champion_tag = registry.champion()
    champion_lineage = registry.lineage(champion_tag) if champion_tag else None
    freshness = assess_freshness(
        frame,
        time_column,
        (champion_tag, champion_lineage) if champion_tag and champion_lineage else None,
        data_fingerprint=splits_fingerprint(splits),
        spec_fingerprint=settings_fingerprint,
    )
    minimum = spec.retraining.min_new_labels
    if waiting or freshness.nothing_to_learn(minimum, requested=params.require_new_labels):
        skipped = waiting or (
            f"no labelled data to learn from: {freshness.describe()} (retraining.min_new_labels: {minimum})"
        )
        get_run_logger().info("skipped: %s", skipped)
        return TrainResult(tag=None, promoted=False, decision=None, skipped=skipped, freshness=freshness)
    rows_since = None if since is None else len(frame)  # trained on the labels since the onset alone

    weights = recency_weights(split.train[time_column], spec.training.recency_half_life_days)
    model = tasks.fit_model(split.train, label, schema, model_spec, seed, sample_weight=weights)
    threshold = tasks.tune_threshold(model, split.validation, schema, label)
    evaluation = tasks.evaluate_model(
        model, split.test, schema, label, threshold=threshold, slices=spec.training.slices
    )
    calibration = tasks.calibrate_scores(model, split.validation, schema, label, seed=seed, test=evaluation)
    champion = tasks.evaluate_champion(registry, split.test, label, slices=spec.training.slices)
    comparison = None
    if champion and champion_lineage:
        fresh = pd.to_datetime(split.test[time_column], utc=True) > pd.Timestamp(champion_lineage.training_window[1])
        comparison = _compare_on(
            fresh.to_numpy(), split.test[time_column], evaluation, champion[1], spec.gates.confidence
        )
    decision = decide_promotion(
        evaluation.report.overall,
        champion[1].report.overall if champion else None,
        spec.gates,
        champion_tag=champion_tag,
        comparison=comparison,
    )

    lineage = tasks.describe_training(
        model=model,
        model_spec=model_spec,
        feature_service=service,
        features=schema,
        label=label,
        time_column=time_column,
        splits=splits,
        threshold=threshold,
        metrics=evaluation.report.summary(),
        repo_dir=PROJECT_DIR,
        spec_fingerprint=settings_fingerprint,
        calibration=calibration,
        training_settings=spec.training.model_dump(include={"window_days", "recency_half_life_days"}),
        gate=decision,
    )
    reference = tasks.reference_profile(model, split.train, split.validation, schema)
    tag = tasks.register_model(
        registry, model, lineage, reference, {"gate": decision.label, "family": lineage.family}, split.test
    )
    if decision.promote:
        tasks.promote_model(registry, tag)

    report = tasks.render_evaluation(evaluation, champion[1].report if champion else None)
    create_markdown_artifact(key="evaluation", markdown=report, description=tag)
    create_markdown_artifact(key="promotion-gate", markdown=decision.markdown(tag), description=decision.label)
    get_run_logger().info("%s: gate %s (%s)", tag, decision.label, "; ".join(decision.reasons))
    return TrainResult(
        tag=tag, promoted=decision.promote, decision=decision, freshness=freshness, rows_since=rows_since
    )


def _compare_on(
    rows: np.ndarray, times: pd.Series, challenger: Evaluation, champion: Evaluation, confidence: float
) -> PairedComparison | None:
    """Both models on the test rows the champion did not train on either (after its training window), paired; None
    when those rows cannot rank two models (none, or one class only)."""
    labels = challenger.labels[rows]
    if not 0 < labels.sum() < len(labels):
        return None
    span = pd.to_datetime(times[rows], utc=True)
    return compare_paired(
        challenger.scores[rows],
        champion.scores[rows],
        labels,
        confidence=confidence,
        window=(span.min().to_pydatetime(), span.max().to_pydatetime()),
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


if __name__ == "__main__":
    print(run_locally(train).model_dump_json())
