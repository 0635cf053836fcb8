"""Drift detection quality and cost on seeded data (20 features), beside Evidently's DataDriftPreset; one JSON object.

1. Quality. One seeded training reference of 20k rows (15 numeric features: normal, lognormal, integer counts,
   uniform, exponential, bimodal, one with nulls; 5 categorical with 2 to 40 values, one with nulls) is profiled
   once with `cicloml.profiling.profile_frame`. Each trial draws a fresh window from the same process (no drift:
   1k, 10k and 100k rows) or with a 0.5 sigma mean shift in 2 normal features (1k and 10k rows), profiles it the
   same way and runs `cicloml.drift.compare_profiles` for each method at its threshold (the spec's default,
   Wasserstein at 0.3, among them; categorical features use the spec's categorical method and threshold). A window
   counts as drifted when `report.drifted` (DriftSpec.min_drifted_features, default 1). Reported: false-alarm and
   detection rates, how often the drifted features were exactly the shifted ones, and score quantiles that bound the
   thresholds meeting both targets.
   Evidently on exactly the same raw frames: per column the stat test DataDriftPreset picks and its verdict,
   computed with the Evidently functions the preset calls, because the preset itself spends ~10 s per window
   drawing plotly figures (500 windows would take over an hour on 2 cores). `--preset-checks N` also runs the full
   preset on the first N windows of each scenario and reports whether its verdicts agree.
2. Cost. One drift check on a 100k-row window written by two `TrafficProfiler` workers as the service writes it,
   against a 100k-row reference written as a model's (features and scores): read both, merge the window's files,
   compare, write the HTML report; median of `--repeats`. Baselines in the same run: Evidently's DataDriftPreset on
   the same raw 100k-row frames (run, and its HTML), and whylogs profiling the raw window.
3. Pages. Rendering the drift report's page (`cicloml.drift_report.render_html`: every feature's distributions
   overlaid) for 30 windows of 1k rows (every third shifted) against the trials' reference with model scores,
   beside the 100k-row check's own time; and the model-health page over 30 windows of the same 20 features, written
   from its history (`bench_health.time_health_page`: read, render, write).

    python benchmarks/bench_drift.py [--trials 100] [--seed 7] [--jobs 2] [--quick]

Targets: false alarms <= 5% at every size, detection of the shift >= 90% at 1k rows, the check <= 5 s, a 20-feature
report and the health page each rendered <= 1 s. Progress goes
to stderr. Evidently is optional (`pip install -c constraints.txt evidently==0.7.23`): without it only cicloml's
numbers are reported. The default run costs about 16 CPU-minutes, most of it whylogs and Evidently on the 100k-row
windows: ~9 minutes on 2 idle cores, far longer when other work shares them (see `environment.load_average_*`).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_health import time_health_page

from cicloml.drift import DriftReport, Method, compare_profiles
from cicloml.drift_report import render_html, write_html_report
from cicloml.profiling import (
    SCORE_COLUMN,
    DatasetProfileView,
    profile_frame,
    read_profile,
    read_window_profiles,
    window_folder,
    write_profile,
)
from cicloml.spec import DriftSpec
from cicloml.traffic import TrafficProfiler

Sampler = Callable[[np.random.Generator, int], np.ndarray]

NUMERIC: dict[str, Sampler] = {
    "normal_0": lambda rng, n: rng.normal(50.0, 10.0, n),
    "normal_1": lambda rng, n: rng.normal(0.0, 1.0, n),
    "normal_2": lambda rng, n: rng.normal(-3.0, 0.2, n),
    "normal_3": lambda rng, n: rng.normal(1000.0, 250.0, n),
    "normal_4": lambda rng, n: rng.normal(5.0, 2.0, n),
    "lognormal_0": lambda rng, n: rng.lognormal(3.0, 0.75, n),
    "lognormal_1": lambda rng, n: rng.lognormal(0.0, 1.0, n),
    "lognormal_2": lambda rng, n: rng.lognormal(5.0, 0.4, n),
    "lognormal_3": lambda rng, n: rng.lognormal(1.0, 1.5, n),
    "count_0": lambda rng, n: rng.poisson(0.7, n),
    "count_1": lambda rng, n: rng.poisson(4.0, n),
    "count_2": lambda rng, n: rng.poisson(30.0, n),
    "uniform_0": lambda rng, n: rng.uniform(0.0, 1.0, n),
    "exponential_0": lambda rng, n: rng.exponential(2.0, n),
    "bimodal_0": lambda rng, n: np.where(rng.random(n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(2.0, 1.0, n)),
}
ZIPF_40 = 1.0 / np.arange(1, 41)
CATEGORICAL: dict[str, tuple[list[str], np.ndarray]] = {
    "cat_2": (["yes", "no"], np.array([0.8, 0.2])),
    "cat_3": (["basic", "plus", "pro"], np.array([0.6, 0.3, 0.1])),
    "cat_5_nulls": ([f"device_{i}" for i in range(5)], np.full(5, 0.2)),
    "cat_8": ([f"region_{i}" for i in range(8)], np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.07, 0.05, 0.03])),
    "cat_40": ([f"merchant_{i}" for i in range(40)], ZIPF_40 / ZIPF_40.sum()),
}
FEATURES = [*NUMERIC, *CATEGORICAL]
NULL_RATES = {"lognormal_1": 0.03, "cat_5_nulls": 0.05}
SHIFTED = ("normal_0", "normal_3")
"""The drift scenario moves these by SHIFT_SIGMAS of the reference's standard deviation. Normal features, where a
0.5 sigma shift means what it says: a skewed feature's sigma is inflated by its tail, so the same shift moves its
bulk further (lognormal_0 shifted so scores ~0.42 Hellinger at 1k rows, against ~0.18 for normal_0)."""
SHIFT_SIGMAS = 0.5

REFERENCE_ROWS = 20_000
"""The trials' training reference. Evidently redoes its reference-side work for every window (sorting, distinct
counts), so a larger one mostly makes the baseline slower; the 100k-row check has its own 100k-row reference."""
NO_DRIFT_ROWS = (1_000, 10_000, 100_000)
SHIFT_ROWS = (1_000, 10_000)
CHECK_ROWS = 100_000
MODEL_TAG = "bench:v1"
WINDOW_START = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW_SECONDS = 3600

METHODS: tuple[Method, ...] = ("hellinger", "jensen_shannon", "wasserstein")
SPEC_DEFAULT: tuple[Method, float] = (DriftSpec().method, DriftSpec().threshold)
METHOD_THRESHOLDS: dict[Method, float] = {"hellinger": 0.2, "jensen_shannon": 0.2, "wasserstein": 0.3}
"""The threshold each method is used with (DriftSpec's docs, and what tests/training/test_drift.py holds each method
to); the spec's default is one of them."""
TARGETS = {
    "false_alarm_rate_max": 0.05,
    "detection_rate_at_1k_min": 0.9,
    "check_100k_seconds_max": 5.0,
    "drift_report_render_seconds_max": 1.0,
}
RENDER_WINDOWS = 30
RENDER_WINDOW_ROWS = 1_000
EVIDENTLY_DRIFT_SHARE = 0.5
"""DataDriftPreset's default: the dataset drifts when at least half of the columns do."""


def log(message: str) -> None:
    print(f"[bench_drift] {message}", file=sys.stderr, flush=True)


def make_frame(rng: np.random.Generator, rows: int, shifts: dict[str, float] | None = None) -> pd.DataFrame:
    """`rows` rows of the 20 features; `shifts` adds a constant to some numeric ones (a mean shift)."""
    columns: dict[str, Any] = {}
    for name, sample in NUMERIC.items():
        columns[name] = sample(rng, rows) + (shifts or {}).get(name, 0.0)
    for name, (values, shares) in CATEGORICAL.items():
        # Object dtype: whylogs 1.6.4 fails on pandas' string dtype under NumPy 2 (whylabs/whylogs-python#1568).
        columns[name] = rng.choice(values, rows, p=shares).astype(object)
    for name, rate in NULL_RATES.items():
        missing = rng.random(rows) < rate
        columns[name] = np.where(missing, None if name in CATEGORICAL else np.nan, columns[name])
    return pd.DataFrame(columns)


def stand_in_scores(frame: pd.DataFrame) -> np.ndarray:
    """A model's P(label = 1) for each row: the service profiles scores beside the features."""
    logit = 0.08 * (frame["normal_0"] - 50.0) - 0.5 * np.log(frame["lognormal_0"]) + 0.1 * frame["count_1"]
    return (1.0 / (1.0 + np.exp(-logit))).to_numpy()


def reference_shifts(reference: pd.DataFrame) -> dict[str, float]:
    return {name: SHIFT_SIGMAS * float(reference[name].std()) for name in SHIFTED}


def thresholds() -> list[tuple[Method, float]]:
    """Every (method, threshold) to score: each method at its own threshold (the spec's default among them)."""
    return sorted({SPEC_DEFAULT, *METHOD_THRESHOLDS.items()})


# Evidently -------------------------------------------------------------------------------------------------------


def evidently_version() -> str | None:
    try:
        import evidently  # noqa: F401  (installed and importable)
    except ImportError:
        return None
    return version("evidently")


def evidently_verdict(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, Any]:
    """DataDriftPreset's decisions without its figures: per column the stat test it picks by default (from the
    reference's size and the column's distinct values) at that test's default threshold, the rows without values
    dropped as it drops them; the dataset drifts when at least half the columns do."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    columns = {}
    for name in FEATURES:
        kind = ColumnType.Categorical if name in CATEGORICAL else ColumnType.Numerical
        ref, cur = (frame[name].replace([-np.inf, np.inf], np.nan).dropna() for frame in (reference, current))
        test = get_stattest(ref, cur, kind, None)
        result = test(ref, cur, kind, None)
        columns[name] = {"test": test.display_name, "score": float(result.drift_score), "drifted": bool(result.drifted)}
    drifted = sum(column["drifted"] for column in columns.values())
    return {"dataset_drift": drifted / len(columns) >= EVIDENTLY_DRIFT_SHARE, "columns": columns}


def run_preset(reference: pd.DataFrame, current: pd.DataFrame) -> Any:
    """Evidently's DataDriftPreset with its defaults, on the feature columns typed as cicloml types them."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(NUMERIC), categorical_columns=list(CATEGORICAL))
    return Report([DataDriftPreset()], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def preset_verdict(snapshot: Any) -> dict[str, Any]:
    """The preset's verdicts, read from its tests: one per column, and one on the share of drifted columns."""
    columns, dataset_drift = {}, None
    for test in snapshot.dict()["tests"]:
        params = test["metric_config"]["params"]
        failed = test["status"] == "FAIL"
        if params["type"].endswith(":ValueDrift"):
            columns[params["column"]] = {"test": params["method"], "drifted": failed}
        elif params["type"].endswith(":DriftedColumnsCount"):
            dataset_drift = failed  # the test is "share of drifted columns < drift_share"
    return {"dataset_drift": dataset_drift, "columns": columns}


def same_verdict(fast: dict[str, Any], preset: dict[str, Any]) -> bool:
    columns = {name: {"test": column["test"], "drifted": column["drifted"]} for name, column in fast["columns"].items()}
    return fast["dataset_drift"] == preset["dataset_drift"] and columns == preset["columns"]


# Trials ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    rows: int
    shifted: bool
    index: int

    @property
    def scenario(self) -> str:
        return f"{'shift' if self.shifted else 'no_drift'}@{self.rows}"


_worker: dict[str, Any] = {}
"""Each trial process's reference: set once by `init_worker`, so it is not pickled with every trial."""


def init_worker(reference_frame: pd.DataFrame, reference_profile: bytes, evidently: bool, preset_checks: int) -> None:
    _worker.update(
        frame=reference_frame,
        profile=DatasetProfileView.deserialize(reference_profile),
        shifts=reference_shifts(reference_frame),
        evidently=evidently,
        preset_checks=preset_checks,
    )


def run_trial(trial: Trial, seed: int) -> dict[str, Any]:
    """One window: cicloml's verdicts and scores per (method, threshold), and Evidently's on the same rows."""
    rng = np.random.default_rng([seed, 2, trial.rows, int(trial.shifted), trial.index])
    current = make_frame(rng, trial.rows, _worker["shifts"] if trial.shifted else None)
    profile = profile_frame(current)
    verdicts, scores = {}, {}
    for method, threshold in thresholds():
        spec = DriftSpec(method=method, threshold=threshold)
        report = compare_profiles(_worker["profile"], profile, features=FEATURES, spec=spec, model_tag=MODEL_TAG)
        verdicts[f"{method}@{threshold}"] = {"drifted": report.drifted, "features": report.drifted_features}
        scores[method] = {feature.column: feature.score for feature in report.features}
    result: dict[str, Any] = {"trial": trial, "cicloml": verdicts, "scores": scores}
    if _worker["evidently"]:
        result["evidently"] = evidently_verdict(_worker["frame"], current)
        if trial.index < _worker["preset_checks"]:
            preset = preset_verdict(run_preset(_worker["frame"], current))
            result["preset_agrees"] = same_verdict(result["evidently"], preset)
    return result


def run_trials(
    trials: int,
    seed: int,
    jobs: int,
    reference: pd.DataFrame,
    profile: DatasetProfileView,
    evidently: bool,
    checks: int,
) -> list[dict[str, Any]]:
    plan = [Trial(rows, False, i) for rows in NO_DRIFT_ROWS for i in range(trials)]
    plan += [Trial(rows, True, i) for rows in SHIFT_ROWS for i in range(trials)]
    results = []
    init_args = (reference, profile.serialize(), evidently, checks)
    with ProcessPoolExecutor(jobs, initializer=init_worker, initargs=init_args) as pool:
        futures = [pool.submit(run_trial, trial, seed) for trial in plan]
        for done, future in enumerate(as_completed(futures), 1):
            results.append(future.result())
            if done % max(1, len(plan) // 20) == 0 or done == len(plan):
                log(f"trials: {done}/{len(plan)} windows")
    return results


def rate(flags: Sequence[bool]) -> float:
    return round(sum(flags) / len(flags), 4)


def quantiles(values: Sequence[float], levels: Sequence[int]) -> dict[str, float]:
    return {f"p{level}": round(float(np.percentile(values, level)), 4) for level in levels}


def by_scenario(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(result["trial"].scenario, []).append(result)
    return grouped


def summarize_threshold(grouped: dict[str, list[dict[str, Any]]], method: Method, threshold: float) -> dict[str, Any]:
    """Rates of `report.drifted` and of the features it names, at one threshold."""
    key = f"{method}@{threshold}"

    def flagged(scenario: str) -> list[list[str]]:
        return [result["cicloml"][key]["features"] for result in grouped[scenario]]

    def drifted(scenario: str) -> list[bool]:
        return [result["cicloml"][key]["drifted"] for result in grouped[scenario]]

    roles = ["spec default"] if (method, threshold) == SPEC_DEFAULT else []
    roles += ["method default"] if threshold == METHOD_THRESHOLDS[method] else []
    return {
        "threshold": threshold,
        "is": roles,
        "false_alarm_rate": {rows: rate(drifted(f"no_drift@{rows}")) for rows in NO_DRIFT_ROWS},
        "false_alarm_features": {
            rows: dict(Counter(name for names in flagged(f"no_drift@{rows}") for name in names))
            for rows in NO_DRIFT_ROWS
        },
        "detection_rate": {rows: rate(drifted(f"shift@{rows}")) for rows in SHIFT_ROWS},
        "shifted_feature_flagged_rate": {
            rows: {name: rate([name in names for names in flagged(f"shift@{rows}")]) for name in SHIFTED}
            for rows in SHIFT_ROWS
        },
        "exactly_shifted_features_rate": {
            rows: rate([set(names) == set(SHIFTED) for names in flagged(f"shift@{rows}")]) for rows in SHIFT_ROWS
        },
    }


def summarize_scores(grouped: dict[str, list[dict[str, Any]]], method: Method) -> dict[str, Any]:
    """Score quantiles, and the thresholds that would meet both targets.

    A window drifts when its highest feature score passes the threshold (min_drifted_features = 1), so false alarms
    <= 5% need a threshold at or above the 95th percentile of no-drift windows' highest score at every size, and
    detection >= 90% at 1k rows one below the 10th percentile of shifted 1k-row windows' highest score.
    """

    def top(scenario: str) -> list[float]:
        return [max(result["scores"][method].values()) for result in grouped[scenario]]

    no_drift_top = {rows: quantiles(top(f"no_drift@{rows}"), (50, 95, 99, 100)) for rows in NO_DRIFT_ROWS}
    shift_top = {rows: quantiles(top(f"shift@{rows}"), (5, 10, 50)) for rows in SHIFT_ROWS}
    lowest = max(no_drift_top[rows]["p95"] for rows in NO_DRIFT_ROWS)
    highest = shift_top[SHIFT_ROWS[0]]["p10"]
    return {
        "window_top_score_no_drift": no_drift_top,
        "window_top_score_shift": shift_top,
        "shifted_feature_scores": {
            rows: {
                name: quantiles([result["scores"][method][name] for result in grouped[f"shift@{rows}"]], (10, 50, 90))
                for name in SHIFTED
            }
            for rows in SHIFT_ROWS
        },
        "thresholds_meeting_both_targets": {"from": lowest, "below": highest, "exist": lowest < highest},
    }


def summarize_cicloml(results: list[dict[str, Any]]) -> dict[str, Any]:
    grouped = by_scenario(results)
    return {
        method: {
            "thresholds": {
                f"{method}@{threshold}": summarize_threshold(grouped, method, threshold)
                for each, threshold in thresholds()
                if each == method
            },
            **summarize_scores(grouped, method),
        }
        for method in METHODS
    }


def summarize_evidently(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Evidently's rates on the same windows: its dataset verdict, and any column (or the shifted ones) flagged."""
    grouped = {scenario: [result["evidently"] for result in group] for scenario, group in by_scenario(results).items()}
    tests: dict[str, dict[str, set[str]]] = {}
    for scenario, verdicts in grouped.items():
        for verdict in verdicts:
            for name, column in verdict["columns"].items():
                tests.setdefault(scenario, {}).setdefault(column["test"], set()).add(name)

    def flagged(scenario: str) -> list[list[str]]:
        return [[name for name, c in verdict["columns"].items() if c["drifted"]] for verdict in grouped[scenario]]

    def dataset(scenario: str) -> list[bool]:
        return [verdict["dataset_drift"] for verdict in grouped[scenario]]

    checks = [result["preset_agrees"] for result in results if "preset_agrees" in result]
    return {
        "tests_chosen": {
            scenario: {test: sorted(names) for test, names in chosen.items()} for scenario, chosen in tests.items()
        },
        "dataset_verdict": {
            "false_alarm_rate": {rows: rate(dataset(f"no_drift@{rows}")) for rows in NO_DRIFT_ROWS},
            "detection_rate": {rows: rate(dataset(f"shift@{rows}")) for rows in SHIFT_ROWS},
        },
        "any_column_flagged": {
            "false_alarm_rate": {
                rows: rate([bool(names) for names in flagged(f"no_drift@{rows}")]) for rows in NO_DRIFT_ROWS
            },
            "false_alarm_features": {
                rows: dict(Counter(name for names in flagged(f"no_drift@{rows}") for name in names))
                for rows in NO_DRIFT_ROWS
            },
            "detection_rate": {rows: rate([bool(names) for names in flagged(f"shift@{rows}")]) for rows in SHIFT_ROWS},
            "shifted_feature_flagged_rate": {
                rows: {name: rate([name in names for names in flagged(f"shift@{rows}")]) for name in SHIFTED}
                for rows in SHIFT_ROWS
            },
            "exactly_shifted_features_rate": {
                rows: rate([set(names) == set(SHIFTED) for names in flagged(f"shift@{rows}")]) for rows in SHIFT_ROWS
            },
        },
        "preset_agreement": {"windows_checked": len(checks), "agreed": sum(checks)},
    }


# The drift check's cost ------------------------------------------------------------------------------------------


def write_window(frame: pd.DataFrame, profiles_dir: Path, workers: int) -> Path:
    """The window's traffic profiled by `workers` service workers, one file each, as the service writes them."""
    scores = stand_in_scores(frame)
    for number, rows in enumerate(np.array_split(np.arange(len(frame)), workers), 1):
        profiler = TrafficProfiler(
            profiles_dir,
            MODEL_TAG,
            worker=f"worker-{number}",
            window_seconds=WINDOW_SECONDS,
            buffer_rows=len(rows),
            clock=lambda: WINDOW_START.timestamp() + 1,
        )
        part = frame.iloc[rows]
        profiler.record({name: part[name].tolist() for name in FEATURES}, scores[rows].tolist())
        profiler.close()  # profiles and writes the window, which has not ended by this clock
    return window_folder(profiles_dir, MODEL_TAG, WINDOW_START)


def median_seconds(action: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The median wall time of `repeats` calls, and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times), 3), result


def run_check(reference_path: Path, folder: Path, reports_dir: Path) -> tuple[dict[str, float], DriftReport]:
    """One drift check as flows/detect_drift.py makes it, each stage timed: read the reference and the window's
    worker files, merge them, compare, write the HTML report."""
    began = time.perf_counter()
    reference, window = read_profile(reference_path), read_window_profiles(folder)
    read = time.perf_counter()
    report = compare_profiles(
        reference,
        window,
        features=FEATURES,
        spec=DriftSpec(),
        model_tag=MODEL_TAG,
        window_start=WINDOW_START,
        window_end=WINDOW_START + timedelta(seconds=WINDOW_SECONDS),
    )
    compared = time.perf_counter()
    write_html_report(report, reports_dir)
    ended = time.perf_counter()
    stages = {"read_and_merge": read - began, "compare": compared - read, "write_html": ended - compared}
    return {**stages, "total": ended - began}, report


def time_check(seed: int, repeats: int, workdir: Path, evidently: bool) -> dict[str, Any]:
    """The 100k-row check against a 100k-row reference written as a model's (features and scores), beside Evidently's
    preset on the same raw frames and whylogs profiling the raw window."""
    reference = make_frame(np.random.default_rng([seed, 3]), CHECK_ROWS)
    current = make_frame(np.random.default_rng([seed, 4]), CHECK_ROWS)
    scores = pd.DataFrame({SCORE_COLUMN: stand_in_scores(reference)})
    # As cicloml.training.reference_profile builds it: the training features, and the model's scores beside them.
    reference_path = write_profile(profile_frame(reference).merge(profile_frame(scores)), workdir / "reference.bin")
    folder = write_window(current, workdir / "profiles", workers=2)
    laps = [run_check(reference_path, folder, workdir / "reports") for _ in range(repeats)]
    report = laps[-1][1]
    check = {stage: round(statistics.median(lap[stage] for lap, _ in laps), 3) for stage in laps[0][0]}
    log(f"check: {check['total']} s (median of {repeats})")
    profile_s, _ = median_seconds(lambda: profile_frame(current), repeats)
    log(f"whylogs profile of the raw window: {profile_s} s")
    result: dict[str, Any] = {
        "rows": CHECK_ROWS,
        "features": len(FEATURES),
        "worker_files": len(list(folder.iterdir())),
        "repeats": repeats,
        "cicloml_check_s": check,
        "cicloml_check_verdict": {"drifted": report.drifted, "drifted_features": report.drifted_features},
        "whylogs_profile_raw_window_s": profile_s,
    }
    if evidently:
        run_s, snapshot = median_seconds(lambda: run_preset(reference, current), repeats)
        html_s, _ = median_seconds(lambda: snapshot.save_html(str(workdir / "evidently.html")), repeats)
        log(f"Evidently DataDriftPreset: run {run_s} s, HTML {html_s} s")
        preset = preset_verdict(snapshot)
        result |= {
            "evidently_preset_run_s": run_s,
            "evidently_preset_html_s": html_s,
            "evidently_preset_verdict": {
                "dataset_drift": preset["dataset_drift"],
                "drifted_columns": [name for name, column in preset["columns"].items() if column["drifted"]],
                "agrees_with_per_column_path": same_verdict(evidently_verdict(reference, current), preset),
            },
            "check_over_evidently_run": round(check["total"] / run_s, 3),
            "check_over_evidently_run_and_html": round(check["total"] / (run_s + html_s), 3),
        }
    return result


# Pages -----------------------------------------------------------------------------------------------------------


def time_drift_report(seed: int, reference: pd.DataFrame, check_s: float) -> dict[str, Any]:
    """Rendering the drift report's page for `RENDER_WINDOWS` windows (every third shifted), each timed alone,
    beside the 100k-row check's total (`check_s`), which includes one such rendering."""
    scores = pd.DataFrame({SCORE_COLUMN: stand_in_scores(reference)})
    reference_profile = profile_frame(reference).merge(profile_frame(scores))
    render_s, sizes = [], []
    for index in range(RENDER_WINDOWS):
        current = make_frame(
            np.random.default_rng([seed, 5, index]),
            RENDER_WINDOW_ROWS,
            reference_shifts(reference) if index % 3 == 0 else None,
        )
        current[SCORE_COLUMN] = stand_in_scores(current)
        report = compare_profiles(
            reference_profile, profile_frame(current), features=FEATURES, spec=DriftSpec(), model_tag=MODEL_TAG
        )
        began = time.perf_counter()
        html = render_html(report)
        render_s.append(time.perf_counter() - began)
        sizes.append(len(html.encode()))
    result = {
        "features": len(FEATURES),
        "windows": RENDER_WINDOWS,
        "window_rows": RENDER_WINDOW_ROWS,
        "render_s": {"median": round(statistics.median(render_s), 4), "max": round(max(render_s), 4)},
        "html_bytes": {"median": int(statistics.median(sizes)), "max": max(sizes)},
        "check_100k_total_s": check_s,
    }
    log(f"drift report: rendered in {result['render_s']['median']} s (median of {RENDER_WINDOWS} windows)")
    return result


# Entry point -----------------------------------------------------------------------------------------------------


def judge(cicloml: dict[str, Any], check: dict[str, Any], pages: dict[str, Any]) -> dict[str, Any]:
    met: dict[str, Any] = {}
    for summary in cicloml.values():
        for key, entry in summary["thresholds"].items():
            met[key] = {
                **{
                    f"false_alarm_rate_{rows}": value <= TARGETS["false_alarm_rate_max"]
                    for rows, value in entry["false_alarm_rate"].items()
                },
                "detection_rate_1000": entry["detection_rate"][1_000] >= TARGETS["detection_rate_at_1k_min"],
            }
            met[key]["all"] = all(met[key].values())
    met["check_100k_seconds"] = check["cicloml_check_s"]["total"] <= TARGETS["check_100k_seconds_max"]
    met["drift_report_render_seconds"] = (
        pages["drift_report"]["render_s"]["max"] <= TARGETS["drift_report_render_seconds_max"]
    )
    met["health_page_seconds"] = pages["health_page"]["write_s"] <= TARGETS["drift_report_render_seconds_max"]
    return {**TARGETS, "met": met}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, help="windows per scenario (default 100; 5 with --quick)")
    parser.add_argument("--seed", type=int, default=7, help="seeds the reference and every window (default 7)")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes for the trials (default 2)"
    )
    parser.add_argument("--repeats", type=int, help="timed repeats of the 100k-row check and baselines (default 3)")
    parser.add_argument(
        "--preset-checks",
        type=int,
        help="windows per scenario also run through Evidently's full DataDriftPreset to confirm its verdicts "
        "(~10 s each; default 1, 0 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 trials, 1 repeat, no preset checks")
    args = parser.parse_args(argv)
    args.trials = args.trials or (5 if args.quick else 100)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.preset_checks = args.preset_checks if args.preset_checks is not None else (0 if args.quick else 1)
    return args


def main() -> None:
    args = parse_args()
    began = time.monotonic()
    load = os.getloadavg()[0]
    evidently = evidently_version()
    log(f"Evidently {evidently or 'not installed: reporting cicloml only'}; reference: {REFERENCE_ROWS} rows")
    reference = make_frame(np.random.default_rng([args.seed, 1]), REFERENCE_ROWS)
    results = run_trials(
        args.trials,
        args.seed,
        args.jobs,
        reference,
        profile_frame(reference),
        evidently is not None,
        args.preset_checks,
    )
    log(f"timing one drift check on {CHECK_ROWS} rows")
    with tempfile.TemporaryDirectory(prefix="cicloml-bench-drift-") as folder:
        check = time_check(args.seed, args.repeats, Path(folder), evidently is not None)
    # Each page people open, timed beside the check that feeds it.
    pages = {
        "drift_report": time_drift_report(args.seed, reference, check["cicloml_check_s"]["total"]),
        "health_page": time_health_page(features=len(FEATURES), windows=RENDER_WINDOWS),
    }
    cicloml = summarize_cicloml(results)
    output = {
        "benchmark": "cicloml drift detection quality and cost",
        "config": {
            "trials_per_scenario": args.trials,
            "seed": args.seed,
            "jobs": args.jobs,
            "reference_rows": REFERENCE_ROWS,
            "features": {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL), "null_rates": NULL_RATES},
            "shift": {"features": list(SHIFTED), "sigmas": SHIFT_SIGMAS, "amounts": reference_shifts(reference)},
            "min_drifted_features": DriftSpec().min_drifted_features,
            "spec_default": f"{SPEC_DEFAULT[0]}@{SPEC_DEFAULT[1]}",
            "method_default_thresholds": METHOD_THRESHOLDS,
        },
        "cicloml": cicloml,
        "evidently": (
            {
                "available": True,
                "version": evidently,
                "drift_share": EVIDENTLY_DRIFT_SHARE,
                **summarize_evidently(results),
            }
            if evidently
            else {"available": False, "install": "pip install -c constraints.txt evidently==0.7.23"}
        ),
        "check_100k": check,
        "pages": pages,
        "targets": judge(cicloml, check, pages),
        "wall_seconds": round(time.monotonic() - began, 1),
        "environment": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": round(load, 2),
            "load_average_at_end": round(os.getloadavg()[0], 2),
            "python": sys.version.split()[0],
            "whylogs": version("whylogs"),
        },
    }
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
