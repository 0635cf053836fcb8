"""train: features → checks → time split → fit → evaluate → gate → register → promote."""

from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from cicloml.contract import FeatureContract
from cicloml.feature_store import open_store
from cicloml.gate import GateDecision, decide_promotion
from cicloml.registry import ModelRegistry
from cicloml.settings import get_settings
from cicloml.spec import LightningModelSpec, SklearnModelSpec, load_spec
from cicloml.training import read_labels, split_by_time
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


class TrainResult(BaseModel):
    tag: str
    promoted: bool
    decision: GateDecision


@flow(name="train", task_runner=ConfiguredTaskRunner())
def train(params: TrainParams = TrainParams()) -> TrainResult:
    """Train a challenger on the point-in-time training frame, gate it against the champion on the same test
    window, register it (labelled with the gate's outcome) and promote it if it passed."""
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
    frame, schema = tasks.encode_training_frame(frame, contract.schema(), time_column)
    tasks.validate_training_frame(
        frame, label=label, keys=[*schema.entity_keys, time_column], features=schema.features, limits=spec.checks
    )
    split = split_by_time(
        frame,
        time_column,
        validation_fraction=spec.training.validation_fraction,
        test_fraction=spec.training.test_fraction,
    )

    seed = spec.training.seed if params.seed is None else params.seed
    model = tasks.fit_model(split.train, label, schema, model_spec, seed)
    threshold = tasks.tune_threshold(model, split.validation, schema, label)
    evaluation = tasks.evaluate_model(
        model, split.test, schema, label, threshold=threshold, slices=spec.training.slices
    )
    champion = tasks.evaluate_champion(registry, split.test, label, slices=spec.training.slices)
    champion_tag, champion_report = champion or (None, None)
    decision = decide_promotion(
        evaluation.report.overall,
        champion_report.overall if champion_report else None,
        spec.gates,
        champion_tag=champion_tag,
    )

    lineage = tasks.describe_training(
        model=model,
        model_spec=model_spec,
        feature_service=service,
        features=schema,
        label=label,
        time_column=time_column,
        splits={"train": split.train, "validation": split.validation, "test": split.test},
        threshold=threshold,
        metrics=evaluation.report.summary(),
        repo_dir=PROJECT_DIR,
    )
    reference = tasks.reference_profile(model, split.train, split.validation, schema)
    tag = tasks.register_model(registry, model, lineage, reference, {"gate": decision.label, "family": lineage.family})
    if decision.promote:
        tasks.promote_model(registry, tag)

    report = tasks.render_evaluation(evaluation, champion_report)
    create_markdown_artifact(key="evaluation", markdown=report, description=tag)
    create_markdown_artifact(key="promotion-gate", markdown=decision.markdown(tag), description=decision.label)
    get_run_logger().info("%s: gate %s (%s)", tag, decision.label, "; ".join(decision.reasons))
    return TrainResult(tag=tag, promoted=decision.promote, decision=decision)


def _now() -> datetime:
    return datetime.now(timezone.utc)


if __name__ == "__main__":
    print(run_locally(train).model_dump_json())
