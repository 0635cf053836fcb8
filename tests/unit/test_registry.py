"""The registry on a real BentoML model store in a temporary state folder."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cicloml.lineage import Lineage, library_versions
from cicloml.models.preprocessing import FeatureSchema, build_preprocessor
from cicloml.profiling import profile_frame
from cicloml.registry import STALE_STAGING_SECONDS, ModelRegistry
from cicloml.settings import Settings
from tests.conftest import ROOT, ciclo_environment

SCHEMA = FeatureSchema(entity_keys=("customer_id",), numeric=("charges",), categorical=("plan",))


def training_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    charges = rng.normal(60, 20, 300)
    return pd.DataFrame(
        {
            "charges": charges,
            "plan": rng.choice(["basic", "premium"], 300),
            "churned": (charges + rng.normal(0, 10, 300) > 70).astype(int),
        }
    )


def build_model(seed: int = 0) -> tuple[Pipeline, Lineage, pd.DataFrame]:
    frame = training_frame(seed)
    pipeline = Pipeline([("preprocess", build_preprocessor(SCHEMA)), ("classifier", LogisticRegression())])
    pipeline.fit(frame[SCHEMA.features], frame["churned"])
    moment = datetime(2026, 10, 1, tzinfo=timezone.utc)
    lineage = Lineage(
        family="sklearn",
        feature_service="churn_v1",
        features=SCHEMA,
        label="churned",
        training_window=(moment, moment),
        test_window=(moment, moment),
        rows={"train": 300, "validation": 0, "test": 0},
        data_fingerprint=f"seed-{seed}",
        params={"C": 1.0},
        threshold=0.4,
        metrics={"roc_auc": 0.9, "pr_auc": None},
        library_versions=library_versions(),
        code_revision="test",
    )
    return pipeline, lineage, frame


def register(registry: ModelRegistry, seed: int = 0, gate: str = "passed") -> str:
    pipeline, lineage, frame = build_model(seed)
    return registry.register(pipeline, lineage, profile_frame(frame[SCHEMA.features]), labels={"gate": gate})


@pytest.fixture
def registry(settings):
    return ModelRegistry(settings, "churn")


def test_lineage_and_reference_profile_round_trip(registry):
    tag = register(registry)
    loaded = registry.load(tag)
    assert loaded.lineage.feature_service == "churn_v1"
    assert loaded.lineage.features == SCHEMA
    assert loaded.lineage.metrics == {"roc_auc": 0.9, "pr_auc": None}
    reference = loaded.reference_profile()
    assert reference.get_column("charges").get_metric("counts").n.value == 300
    frame = training_frame()
    expected = build_model()[0].predict_proba(frame[SCHEMA.features])
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(frame[SCHEMA.features]), expected)
    assert registry.store.get(tag).info.metadata["feature_service"] == "churn_v1"
    assert registry.lineage(tag) == loaded.lineage  # read from the metadata alone


def test_promote_and_rollback_move_the_champion_pointer(registry):
    first, second = register(registry, 0), register(registry, 1)
    assert registry.champion() is None
    registry.promote(first)
    registry.promote(second)
    assert registry.champion() == second
    assert [version.champion for version in registry.versions()] == [False, True]
    assert registry.rollback() == first
    assert registry.champion() == first
    with pytest.raises(LookupError, match="no previous champion"):
        registry.rollback()


def test_a_rejected_version_stays_labelled(registry):
    tag = register(registry, gate="rejected")
    assert registry.label(tag)["gate"] == "rejected"
    assert [version.tag for version in registry.versions()] == [tag]
    assert registry.champion() is None


def test_unknown_tag_is_a_clear_error(registry):
    with pytest.raises(LookupError, match="no model version 'churn:nope' in the registry"):
        registry.promote("churn:nope")


KILLED_SAVE = """
import pathlib, shutil, sys, time
import joblib
from cicloml.registry import ModelRegistry
from cicloml.settings import get_settings
from tests.unit.test_registry import register

marker, stage = pathlib.Path(sys.argv[1]), sys.argv[2]

def hang():
    marker.write_text("inside register")
    time.sleep(120)

if stage == "pickling":
    original_dump = joblib.dump
    joblib.dump = lambda obj, path: (original_dump(obj, path), hang())
else:  # half-way through BentoML copying the model's files into a store: only model.yaml has arrived
    def copy_model_yaml_then_hang(source, target, **options):
        pathlib.Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(pathlib.Path(source) / "model.yaml", target)
        hang()
    shutil.copytree = copy_model_yaml_then_hang
register(ModelRegistry(get_settings(), "churn"))
"""


@pytest.mark.parametrize("stage", ["pickling", "copying"])
def test_a_process_killed_while_registering_leaves_no_model_and_a_rerun_succeeds(tmp_path, stage):
    marker = tmp_path / "marker"
    with ciclo_environment(tmp_path / "state") as settings:
        process = subprocess.Popen(
            [sys.executable, "-c", KILLED_SAVE, str(marker), stage], cwd=ROOT, env=os.environ.copy()
        )
        try:
            deadline = time.monotonic() + 120
            while not marker.exists():
                assert process.poll() is None, "the registering process ended before the kill"
                assert time.monotonic() < deadline, "the registering process never reached the save"
                time.sleep(0.1)
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(timeout=30)

        registry = ModelRegistry(settings, "churn")
        assert registry.versions() == []
        model_dirs = list((settings.bentoml_home / "models").glob("churn/*/model.yaml"))
        assert model_dirs == []
        tag = register(registry)
        assert [version.tag for version in registry.versions()] == [tag]


CONCURRENT_PROCESSES = 3
SAVES_PER_PROCESS = 50


def wait_for_siblings(start: Barrier) -> None:
    """Hold each worker until all are up, so that their saves overlap rather than run one process after another."""
    start.wait(timeout=120)


def register_many(state_dir: Path, seed: int, saves: int) -> tuple[list[str], list[str]]:
    """One registering process: `saves` versions of churn, tagged by `seed` in their lineage; (tags, failures)."""
    # A spawned process reads no fixture: it points the registry at the shared state folder itself.
    registry = ModelRegistry(Settings(state_dir=state_dir), "churn")
    pipeline, lineage, frame = build_model(seed)
    reference = profile_frame(frame[SCHEMA.features])
    tags, failures = [], []
    for _ in range(saves):
        try:
            tags.append(registry.register(pipeline, lineage, reference, labels={"gate": "passed"}))
        except Exception as error:  # counted rather than raised, so one failure does not hide the others
            failures.append(f"{type(error).__name__}: {error}")
    return tags, failures


def test_processes_registering_at_once_all_succeed_and_leave_no_staging(settings):
    # spawn: a fresh interpreter per worker, not a fork of this one with BentoML already imported.
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(CONCURRENT_PROCESSES)
    with ProcessPoolExecutor(
        CONCURRENT_PROCESSES, mp_context=context, initializer=wait_for_siblings, initargs=(start,)
    ) as pool:
        futures = {
            seed: pool.submit(register_many, settings.state_dir, seed, SAVES_PER_PROCESS)
            for seed in range(CONCURRENT_PROCESSES)
        }
        outcomes = {seed: future.result(timeout=600) for seed, future in futures.items()}

    failures = [failure for _, process_failures in outcomes.values() for failure in process_failures]
    total = CONCURRENT_PROCESSES * SAVES_PER_PROCESS
    kinds = Counter(failure.split(":")[0] for failure in failures)
    assert not failures, f"{len(failures)} of {total} registrations failed ({dict(kinds)}), first: {failures[0]}"
    registry = ModelRegistry(settings, "churn")
    saved = {tag: seed for seed, (tags, _) in outcomes.items() for tag in tags}
    assert len(saved) == total
    assert sorted(version.tag for version in registry.versions()) == sorted(saved)
    for tag, seed in saved.items():
        loaded = registry.load(tag)
        assert loaded.lineage.data_fingerprint == f"seed-{seed}"
        assert loaded.reference_profile().get_column("charges").get_metric("counts").n.value == 300
    assert registry.resolve("churn:latest") in saved
    assert list((settings.bentoml_home / "staging").glob("*")) == []


def test_a_save_removes_stale_staging_folders_and_leaves_fresh_ones(registry, settings):
    staging_root = settings.bentoml_home / "staging"
    crashed, in_flight = staging_root / "111-crashed-save", staging_root / "222-save-in-flight"
    for folder in (crashed, in_flight):
        (folder / "churn" / "version").mkdir(parents=True)
    now = time.time()
    os.utime(crashed, (now - STALE_STAGING_SECONDS - 60,) * 2)
    os.utime(in_flight, (now - STALE_STAGING_SECONDS + 60,) * 2)  # old, but still under the bound

    tag = register(registry)

    assert list(staging_root.iterdir()) == [in_flight]
    assert [version.tag for version in registry.versions()] == [tag]
