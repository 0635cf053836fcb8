"""A state folder with a materialized store and a trained, promoted champion, built with library calls.

No Prefect: the service tests need the state, not the flows that usually make it (tests/flows covers those).
"""

from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from feast import FeatureStore

from cicloml.contract import FeatureContract
from cicloml.demo.churn import write_churn_data
from cicloml.feature_store import (
    apply_repo,
    fetch_training_frame,
    materialize,
    open_store,
    push_features,
)
from cicloml.lineage import describe_training
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import SklearnModelSpec, load_spec
from cicloml.training import (
    encode_training_frame,
    fit_model,
    read_labels,
    reference_profile,
    split_by_time,
    tune_threshold,
)
from tests.conftest import ROOT

MODEL_SPEC = SklearnModelSpec(params={"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 15})


def build_served_state(
    settings: Settings, end: datetime, *, customers: int = 400, model_spec: SklearnModelSpec = MODEL_SPEC
) -> str:
    """Demo data up to `end`, applied and materialized; one model (`model_spec`: by default a small one, quick to
    fit) trained on it, registered and promoted.

    Returns the champion's tag.
    """
    spec = load_spec(settings.spec_path)
    service = spec.features.feature_service
    write_churn_data(settings.data_dir, end, customers=customers, days=90, seed=11)
    store = open_store(ROOT / spec.features.repo, settings)
    apply_repo(store)
    materialize(store, end + timedelta(seconds=1))
    tag = register_trained(settings, store, FeatureContract.resolve(store, service), model_spec, known_by=end)
    ModelRegistry(settings, spec.name).promote(tag)
    return tag


def register_trained(
    settings: Settings,
    store: FeatureStore,
    contract: FeatureContract,
    model_spec: SklearnModelSpec,
    *,
    known_by: datetime | None = None,
) -> str:
    """A model fitted on the contract's training frame (labels known by `known_by`), registered; its tag."""
    spec = load_spec(settings.spec_path)
    labels = spec.labels
    frame = fetch_training_frame(store, contract, read_labels(settings, labels), labels, known_by=known_by)
    frame, schema = encode_training_frame(frame, contract.schema(), labels.event_time)
    split = split_by_time(frame, labels.event_time, validation_fraction=0.15, test_fraction=0.2)
    model = fit_model(split.train, labels.column, schema, model_spec, seed=0)
    threshold = tune_threshold(model, split.validation, schema, labels.column)
    lineage = describe_training(
        model=model,
        model_spec=model_spec,
        feature_service=contract.service,
        features=schema,
        label=labels.column,
        time_column=labels.event_time,
        splits={"train": split.train, "validation": split.validation, "test": split.test},
        threshold=threshold,
        metrics={},
        repo_dir=ROOT,
    )
    reference = reference_profile(model, split.train, split.validation, schema)
    registry = ModelRegistry(settings, spec.name)
    return registry.register(model, lineage, reference, {"gate": "passed"}, check_frame=split.test)


def push_rows(settings: Settings, push_source: str, rows: list[dict[str, Any]]) -> None:
    """Write rows straight to the online store (for entities the demo data does not have)."""
    spec = load_spec(settings.spec_path)
    frame = pd.DataFrame(rows)
    for column in ("event_timestamp", "created_timestamp"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    push_features(open_store(ROOT / spec.features.repo, settings), push_source, frame)
