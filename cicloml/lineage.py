"""Lineage: everything needed to say where a model came from and to reproduce it."""

import hashlib
import subprocess
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field
from sklearn.pipeline import Pipeline

from cicloml.estimation import Calibration
from cicloml.gate import GateDecision
from cicloml.models.preprocessing import FeatureSchema
from cicloml.spec import LightningModelSpec, SklearnModelSpec

TRACKED_LIBRARIES = ("scikit-learn", "torch", "pytorch-lightning", "feast", "pandas", "numpy", "bentoml", "whylogs")


class Lineage(BaseModel):
    """Stored as the model's metadata in the BentoML model store."""

    family: str
    feature_service: str
    features: FeatureSchema
    label: str
    training_window: tuple[datetime, datetime]
    test_window: tuple[datetime, datetime]
    rows: dict[str, int]
    """Rows per split: train, validation, test."""
    data_fingerprint: str
    params: dict[str, Any]
    threshold: float
    """Decision threshold chosen on the validation split."""
    metrics: dict[str, float | None]
    """Headline metrics on the test window."""
    library_versions: dict[str, str]
    code_revision: str
    spec_fingerprint: str | None = None
    """A hash of the settings that decide the model besides the data (`cicloml.retraining.spec_fingerprint`); None
    in lineages written before it was recorded."""
    calibration: Calibration | None = None
    """How the model's scores map to probabilities, fitted on the validation split: what estimated performance
    before labels rests on (`cicloml.estimation`); None in lineages written before it was fitted."""
    training_settings: dict[str, Any] = Field(default_factory=dict)
    """The training window and recency weighting the rows were chosen and weighted with."""
    gate: GateDecision | None = None
    """The promotion gate's decision with its evidence (the paired comparison on fresh rows); None in lineages
    written before it was recorded."""


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """A content hash of the rows and columns (order-sensitive), to tell whether two trainings saw the same data."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def splits_fingerprint(splits: dict[str, pd.DataFrame]) -> str:
    """The fingerprint of a training run's data: its splits in order, as `Lineage.data_fingerprint` records it."""
    return fingerprint_frame(pd.concat(list(splits.values())))


def library_versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in TRACKED_LIBRARIES}


def code_revision(repo_dir: Path) -> str:
    """The git commit the code ran from, `+dirty` with uncommitted changes; `unknown` outside a checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=repo_dir, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=repo_dir, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty.strip() else commit


def describe_training(
    *,
    model: Pipeline,
    model_spec: SklearnModelSpec | LightningModelSpec,
    feature_service: str,
    features: FeatureSchema,
    label: str,
    time_column: str,
    splits: dict[str, pd.DataFrame],
    threshold: float,
    metrics: dict[str, float | None],
    repo_dir: Path,
    spec_fingerprint: str | None = None,
    calibration: Calibration | None = None,
    training_settings: dict[str, Any] | None = None,
    gate: GateDecision | None = None,
) -> Lineage:
    """Collect a training run's lineage. `splits` maps train / validation / test to their frames."""

    def window(frame: pd.DataFrame) -> tuple[datetime, datetime]:
        return frame[time_column].min().to_pydatetime(), frame[time_column].max().to_pydatetime()

    classifier = model.steps[-1][1].get_params()
    return Lineage(
        family=model_spec.family,
        feature_service=feature_service,
        features=features,
        label=label,
        training_window=window(splits["train"]),
        test_window=window(splits["test"]),
        rows={name: len(frame) for name, frame in splits.items()},
        data_fingerprint=splits_fingerprint(splits),
        params={
            "spec": model_spec.model_dump(mode="json"),
            # What was actually fitted (after any search), in plain values.
            "classifier": {name: value for name, value in classifier.items() if _plain(value)},
        },
        threshold=threshold,
        metrics=metrics,
        library_versions=library_versions(),
        code_revision=code_revision(repo_dir),
        spec_fingerprint=spec_fingerprint,
        calibration=calibration,
        training_settings=training_settings or {},
        gate=gate,
    )


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | tuple | list)
