"""Compiled tree inference beside scikit-learn, and the Lightning family's one-row path; prints one JSON object.

1. Each tree estimator (the spec's model first: HistGradientBoosting, 200 iterations, the demo's champion) trained on
   the demo world (2,000 customers, 90 days) and registered, which compiles it and checks parity on the test split:
   - one row, median µs per call: the model call alone (`predict_proba` vs the compiled trees on the preprocessed
     row) and `RowScorer.score` (the preprocessing replayed, then the model) with the compiled trees and without;
   - batches of 10 to 100,000 rows: rows/s of both model calls.
   Everything single-threaded (one OpenMP thread, as in a service worker); the batches also with every core.
2. The Lightning family: one-row latency of `predict_proba` with torch's default intra-op threads and with one, of
   the network's forward pass alone under `torch.inference_mode`, and of a frozen TorchScript trace of it.

    python benchmarks/bench_compiled.py [--estimators hist_gradient_boosting random_forest] [--no-lightning]

Progress goes to stderr; target: the compiled one-row model call >= 10x faster than `predict_proba`.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
BATCH_ROWS = (10, 100, 1_000, 10_000, 100_000)
TREE_ESTIMATORS = ("hist_gradient_boosting", "gradient_boosting", "random_forest")


def log(message: str) -> None:
    print(f"[bench_compiled] {message}", file=sys.stderr, flush=True)


def median_us(call: Callable[[], Any], calls: int = 2_000) -> float:
    """Median wall time of one call, in microseconds, after a warm-up."""
    for _ in range(50):
        call()
    times = []
    for _ in range(calls):
        began = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - began)
    return round(statistics.median(times) / 1_000, 1)


def rows_per_s(call: Callable[[], Any], rows: int) -> int:
    """Rows per second of the best of a few rounds (the least disturbed by other work on shared cores)."""
    call()
    rounds = max(3, min(200, 20_000 // rows))
    best = min(_seconds(call) for _ in range(rounds))
    return round(rows / best)


def _seconds(call: Callable[[], Any]) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def demo_split() -> tuple[Any, Any]:
    """The demo world's training frame, encoded and split by time as the train flow does; and its schema."""
    from cicloml.contract import FeatureContract
    from cicloml.demo.churn import write_churn_data
    from cicloml.feature_store import apply_repo, fetch_training_frame, materialize, open_store
    from cicloml.settings import get_settings
    from cicloml.spec import load_spec
    from cicloml.training import encode_training_frame, read_labels, split_by_time

    spec = load_spec(ROOT / "cicloml.yaml")
    settings = get_settings()
    write_churn_data(settings.data_dir, END, customers=2000, days=90)
    store = open_store(ROOT / "features", settings)
    apply_repo(store)
    materialize(store, END)
    contract = FeatureContract.resolve(store, "churn_v1")
    labels = read_labels(settings, spec.labels)
    frame = fetch_training_frame(store, contract, labels, spec.labels, known_by=END)
    frame, schema = encode_training_frame(frame, contract.schema(), "event_timestamp")
    return split_by_time(frame, "event_timestamp", validation_fraction=0.15, test_fraction=0.15), schema


def measure_trees(split: Any, schema: Any, estimator: str) -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from cicloml.lineage import describe_training
    from cicloml.models.row_scorer import RowScorer
    from cicloml.profiling import profile_frame
    from cicloml.registry import ModelRegistry
    from cicloml.settings import get_settings
    from cicloml.spec import SklearnModelSpec, load_spec
    from cicloml.training import fit_model

    spec = load_spec(ROOT / "cicloml.yaml")
    params = spec.model.params if estimator == spec.model.estimator else {}
    model_spec = SklearnModelSpec(estimator=estimator, params=params)
    log(f"{estimator}: training and registering (compiles, checks parity)")
    pipeline = fit_model(split.train, "churned", schema, model_spec, seed=0)
    lineage = describe_training(
        model=pipeline,
        model_spec=model_spec,
        feature_service="churn_v1",
        features=schema,
        label="churned",
        time_column="event_timestamp",
        splits={"train": split.train, "validation": split.validation, "test": split.test},
        threshold=0.5,
        metrics={},
        repo_dir=ROOT,
    )
    registry = ModelRegistry(get_settings(), spec.name)
    reference = profile_frame(split.train[schema.features])
    tag = registry.register(pipeline, lineage, reference, {"gate": "passed"}, check_frame=split.test)
    loaded, compilation = registry.load(tag), registry.compilation(tag)
    assert loaded.compiled is not None, compilation
    compiled, classifier = loaded.compiled, RowScorer(loaded.pipeline, schema).classifier

    test = split.test[schema.features]
    matrix = RowScorer(loaded.pipeline, schema).transform({name: test[name] for name in schema.features})
    one_row = matrix[:1]
    columns = {name: test[name].head(1).tolist() for name in schema.features}
    with_compiled, without = RowScorer(loaded.pipeline, schema, compiled), RowScorer(loaded.pipeline, schema)
    result: dict[str, Any] = {"compilation": compilation.model_dump(), "features": matrix.shape[1]}
    with threadpool_limits(1):
        log(f"{estimator}: one row")
        sklearn_us = median_us(lambda: classifier.predict_proba(one_row))
        compiled_us = median_us(lambda: compiled.predict_positive(one_row))
        result["one_row_us"] = {
            "model_sklearn": sklearn_us,
            "model_compiled": compiled_us,
            "model_speedup": round(sklearn_us / compiled_us, 1),
            "row_scorer_sklearn": median_us(lambda: without.score(columns)),
            "row_scorer_compiled": median_us(lambda: with_compiled.score(columns)),
        }
    for threads in (1, os.cpu_count() or 1):
        log(f"{estimator}: batches, {threads} thread(s)")
        batches = {}
        for rows in BATCH_ROWS:
            batch = matrix[np.arange(rows) % len(matrix)]
            with threadpool_limits(threads):
                sklearn = rows_per_s(lambda batch=batch: classifier.predict_proba(batch), rows)
            # GTIL's own threads: the compiled path always uses one, as in RowScorer; with every core for the table.
            gtil = rows_per_s(lambda batch=batch, threads=threads: _gtil(compiled, batch, threads), rows)
            batches[str(rows)] = {"sklearn_rows_per_s": sklearn, "compiled_rows_per_s": gtil}
        result[f"batch_{threads}_threads"] = batches
    return result


def _gtil(compiled: Any, matrix: np.ndarray, threads: int) -> np.ndarray:
    import treelite.gtil

    return treelite.gtil.predict(compiled.model, matrix, nthread=threads)


def measure_lightning(split: Any, schema: Any) -> dict[str, Any]:
    import torch

    from cicloml.models.row_scorer import RowScorer
    from cicloml.spec import LightningModelSpec
    from cicloml.training import fit_model

    log("lightning: training")
    model_spec = LightningModelSpec(family="lightning", max_epochs=5)
    pipeline = fit_model(split.train, "churned", schema, model_spec, seed=0)
    scorer = RowScorer(pipeline, schema)
    classifier = scorer.classifier
    test = split.test[schema.features]
    columns = {name: test[name].head(1).tolist() for name in schema.features}
    row = scorer.transform(columns)
    tensor = torch.from_numpy(row.astype(np.float32))
    network = classifier.network_

    def forward() -> Any:
        with torch.inference_mode():
            return network(tensor)

    with torch.inference_mode():
        traced = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(network.eval(), tensor)))

    def forward_traced() -> Any:
        with torch.inference_mode():
            return traced(tensor)

    np.testing.assert_allclose(forward_traced().numpy(), forward().numpy(), rtol=0, atol=1e-6)
    default_threads = torch.get_num_threads()
    result: dict[str, Any] = {}
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        log(f"lightning: one row, {threads} intra-op thread(s)")
        result[f"one_row_us_{threads}_threads"] = {
            "row_scorer": median_us(lambda: scorer.score(columns)),
            "predict_proba": median_us(lambda: classifier.predict_proba(row)),
            "forward_inference_mode": median_us(forward),
            "forward_torchscript": median_us(forward_traced),
        }
    torch.set_num_threads(default_threads)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--estimators", nargs="+", choices=TREE_ESTIMATORS, default=list(TREE_ESTIMATORS))
    parser.add_argument("--no-lightning", action="store_true", help="skip the Lightning family")
    args = parser.parse_args()

    from cicloml.settings import get_settings

    with tempfile.TemporaryDirectory(prefix="bench-compiled-") as state_dir:
        os.environ["CICLO_STATE_DIR"] = state_dir
        os.environ["CICLO_SPEC_PATH"] = str(ROOT / "cicloml.yaml")
        get_settings.cache_clear()
        split, schema = demo_split()
        trees = {estimator: measure_trees(split, schema, estimator) for estimator in args.estimators}
        lightning = None if args.no_lightning else measure_lightning(split, schema)
    first = trees[args.estimators[0]]["one_row_us"]["model_speedup"]
    print(
        json.dumps(
            {
                "benchmark": "compiled tree inference (treelite GTIL) beside scikit-learn; Lightning one-row path",
                "rows": {"train": len(split.train), "test": len(split.test)},
                "trees": trees,
                "lightning": lightning,
                "targets": {"one_row_model_speedup_min": 10},
                "meets_targets": {"one_row_model_speedup": first >= 10},
                "environment": {"cpu_count": os.cpu_count(), "python": sys.version.split()[0]},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
