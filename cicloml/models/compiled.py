"""Compiled tree inference: a fitted tree ensemble's trees evaluated by treelite instead of scikit-learn.

Scikit-learn's `predict_proba` on one row of the demo's champion (HistGradientBoosting, 200 iterations) takes 1-2 ms,
nearly all of it per-call overhead (input validation, thread dispatch, for forests a Python loop over the trees).
treelite imports the same trees (`treelite.sklearn.import_model`) and its GTIL evaluates them in C++ in tens of
microseconds. On large batches scikit-learn is the faster of the two, so `RowScorer` takes the compiled trees only
for calls of fewer rows than `CompiledClassifier.faster_below_rows`, measured per estimator.

Parity is a contract: a version gets compiled trees at registration only if they give the pipeline's probabilities
within `PARITY_TOLERANCE` on the rows at hand (the test split, when the caller passes it) and on edge rows (each
number missing or extreme, each category missing or never seen). Otherwise the version is registered without them
and its `CompilationReport` says why. The scikit-learn pipeline stays the reference and the fallback.
"""

import logging
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import treelite
import treelite.gtil
import treelite.sklearn
from pydantic import BaseModel
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from cicloml.models.preprocessing import FeatureSchema
from cicloml.models.row_scorer import RowScorer, UnsupportedPipeline

logger = logging.getLogger(__name__)

COMPILED_FILE = "classifier.treelite"
"""The compiled trees in a version's folder: treelite's own checkpoint format."""

PARITY_TOLERANCE = 1e-6
"""Largest absolute difference in P(label = 1) between the compiled trees and the pipeline that a version may have."""

EXTREME = 1e12
"""The magnitude of the extreme values in the edge rows."""

EDGE_BASE_ROWS = 5
"""Rows of the check frame that the edge rows vary, one column at a time."""

UNSEEN_CATEGORY = "cicloml-parity-unseen-category"


@dataclass(frozen=True)
class _Trees:
    """How one kind of estimator's compiled trees are fed and when they are worth it."""

    float32_input: bool
    """scikit-learn evaluates its decision trees on X cast to float32: fed float64, the compiled trees would send a
    value lying between the float32 and the float64 threshold the other way (seen on random forests)."""
    faster_below_rows: int
    """Calls of fewer rows go to the compiled trees. Measured on the demo's features (23 columns), one thread each,
    with benchmarks/bench_compiled.py: GTIL scores ~75-90k rows/s (HistGradientBoosting, 200 iterations), ~200-300k
    (GradientBoosting, 100 trees of depth 3) and ~50-60k (RandomForest, 100 trees) at any size, while scikit-learn's
    per-call overhead shrinks with the rows: it catches up at ~100-150 rows, ~40 and ~500 rows respectively."""


_SUPPORTED = {
    HistGradientBoostingClassifier: _Trees(float32_input=False, faster_below_rows=100),
    GradientBoostingClassifier: _Trees(float32_input=True, faster_below_rows=40),
    RandomForestClassifier: _Trees(float32_input=True, faster_below_rows=400),
}


def _trees(estimator: Any) -> _Trees | None:
    return next((trees for kind, trees in _SUPPORTED.items() if isinstance(estimator, kind)), None)


class Uncompilable(ValueError):
    """The classifier is not a binary tree ensemble that treelite imports."""


class CompilationReport(BaseModel):
    """Whether a version carries compiled trees, and the evidence: stored in its metadata at registration."""

    compiled: bool
    reason: str
    """What was compiled and how it was checked, or why there are no compiled trees."""
    max_difference: float | None = None
    """Largest |P(compiled) - P(pipeline)| over the rows checked; None when nothing was compared."""
    rows_checked: int = 0


class CompiledClassifier:
    """A fitted binary tree ensemble as a treelite model: P(label = 1) for a preprocessed matrix, one thread."""

    def __init__(self, model: treelite.Model, float32_input: bool, faster_below_rows: int) -> None:
        self.model = model
        self.float32_input = float32_input
        self.faster_below_rows = faster_below_rows
        """Calls of fewer rows are faster here than in scikit-learn (`_Trees.faster_below_rows`)."""

    @classmethod
    def from_estimator(cls, estimator: Any) -> "CompiledClassifier":
        """Import `estimator`'s trees; `Uncompilable` for an estimator of another kind or a non-binary one."""
        trees = _trees(estimator)
        if trees is None:
            raise Uncompilable(f"{type(estimator).__name__} is not a tree ensemble cicloml compiles")
        if len(estimator.classes_) != 2:
            raise Uncompilable(f"{type(estimator).__name__} has {len(estimator.classes_)} classes; only binary")
        try:
            model = treelite.sklearn.import_model(estimator)
        # The importer says what it cannot import with TreeliteError or NotImplementedError (a custom `init`), and
        # checks scikit-learn's private layout with assertions.
        except (treelite.TreeliteError, NotImplementedError, AssertionError) as error:
            raise Uncompilable(f"treelite could not import {type(estimator).__name__}: {error}") from error
        return cls(model, trees.float32_input, trees.faster_below_rows)

    @classmethod
    def load(cls, path: Path, estimator: Any) -> "CompiledClassifier":
        """The compiled trees saved at `path` for `estimator` (the pipeline's classifier they were compiled from)."""
        trees = _trees(estimator)
        if trees is None:
            raise Uncompilable(f"{path} was compiled from another kind of estimator than {type(estimator).__name__}")
        return cls(treelite.Model.deserialize(path), trees.float32_input, trees.faster_below_rows)

    def save(self, path: Path) -> None:
        self.model.serialize(path)

    def __reduce__(self) -> tuple[Any, ...]:
        # A treelite model is a handle to C++ memory: it travels (to a Dask worker, say) as its checkpoint bytes.
        return _from_bytes, (self.model.serialize_bytes(), self.float32_input, self.faster_below_rows)

    def predict_positive(self, matrix: np.ndarray) -> np.ndarray:
        """P(label = 1) for each row of `matrix` (the preprocessing's output)."""
        if self.float32_input:
            matrix = matrix.astype(np.float32).astype(np.float64)
        # (rows, 1, 1) for boosted trees, (rows, 1, 2) for forests: the positive class is the last column either way.
        predicted = treelite.gtil.predict(self.model, matrix, nthread=1)
        return predicted.reshape(len(matrix), -1)[:, -1].astype(np.float64)


def _from_bytes(checkpoint: bytes, float32_input: bool, faster_below_rows: int) -> CompiledClassifier:
    return CompiledClassifier(treelite.Model.deserialize_bytes(checkpoint), float32_input, faster_below_rows)


def compile_pipeline(
    pipeline: Pipeline, schema: FeatureSchema, check_frame: pd.DataFrame | None = None
) -> tuple[CompiledClassifier | None, CompilationReport]:
    """The pipeline's classifier compiled, if it can be and agrees with the pipeline within `PARITY_TOLERANCE` on
    `check_frame` (rows with the schema's features, e.g. the test split) and on edge rows; else None. The report
    says which, and why."""
    try:
        scorer = RowScorer(pipeline, schema)
        compiled = CompiledClassifier.from_estimator(scorer.classifier)
    except (UnsupportedPipeline, Uncompilable) as error:
        return None, CompilationReport(compiled=False, reason=str(error))
    checked = edge_rows(schema, check_frame)
    if check_frame is not None:
        checked = pd.concat([check_frame[schema.features], checked], ignore_index=True)
    expected = pipeline.predict_proba(checked)[:, 1]
    got = compiled.predict_positive(scorer.transform({name: checked[name] for name in schema.features}))
    differences = np.abs(got - expected)
    largest = float(differences.max())
    test_rows = 0 if check_frame is None else len(check_frame)
    checked_on = f"{test_rows} test rows and {len(checked) - test_rows} edge rows"
    runtime = f"treelite {metadata.version('treelite')} GTIL"
    agrees = largest <= PARITY_TOLERANCE  # False for NaN too
    if agrees:
        reason = (
            f"{type(scorer.classifier).__name__} on {runtime}; within {largest:.2g} of the pipeline on {checked_on}"
        )
    else:
        off = int((~(differences <= PARITY_TOLERANCE)).sum())
        reason = f"{runtime} differed from the pipeline by up to {largest:.3g} on {off} of {checked_on}"
    report = CompilationReport(compiled=agrees, reason=reason, max_difference=largest, rows_checked=len(checked))
    return compiled if agrees else None, report


def edge_rows(schema: FeatureSchema, check_frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows at the edges of what the model reads: up to `EDGE_BASE_ROWS` rows of `check_frame` (or, without one, a
    row of zeros and missing categories) varied one column at a time (a number missing, +`EXTREME`, -`EXTREME`; a
    category missing, never seen), and a row with every feature missing."""
    if check_frame is None or check_frame.empty:
        base = pd.DataFrame([{**dict.fromkeys(schema.numeric, 0.0), **dict.fromkeys(schema.categorical)}])
    else:
        base = check_frame[schema.features].head(EDGE_BASE_ROWS).reset_index(drop=True)
    base = base.astype({name: np.float64 for name in schema.numeric} | {name: object for name in schema.categorical})
    variants: list[tuple[str, float | str | None]] = [
        (name, value) for name in schema.numeric for value in (np.nan, EXTREME, -EXTREME)
    ]
    variants += [(name, value) for name in schema.categorical for value in (None, UNSEEN_CATEGORY)]
    missing = base.head(1).copy()
    missing[list(schema.numeric)] = np.nan
    missing[list(schema.categorical)] = None
    return pd.concat([base.assign(**{name: value}) for name, value in variants] + [missing], ignore_index=True)
