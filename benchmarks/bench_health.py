"""The model-health page's cost: a history of 30 windows of 20 features, recorded as the drift and quality checks
record it, then the page written from it (history, registry and incident log read, page rendered and written) and
rendered alone; medians of `--repeats`. One JSON object.

    python benchmarks/bench_health.py [--features 20] [--windows 30] [--repeats 5]

`time_health_page` is what `benchmarks/bench_drift.py` can call to report the page beside the drift check's own time
(under `pages`). Target: the page written in under 1 s, like a drift report.
"""

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cicloml.drift import DriftReport, FeatureDrift
from cicloml.estimation import PerformanceEstimate
from cicloml.evaluation import Metrics
from cicloml.health import record_drift, record_quality
from cicloml.health_report import gather_health, render_health_page, write_health_page
from cicloml.quality import QualityReport, WindowQuality
from cicloml.settings import Settings

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
MODEL_TAG = "bench:v1"
TARGET_SECONDS = 1.0


def _score(name: str, score: float) -> FeatureDrift:
    return FeatureDrift(
        column=name,
        kind="numeric",
        method="wasserstein",
        score=score,
        threshold=0.3,
        drifted=score > 0.3,
        reference_rows=100_000,
        current_rows=10_000,
        reference_null_rate=0.0,
        current_null_rate=0.0,
    )


def _estimate(roc_auc: float) -> PerformanceEstimate:
    empty = {
        f"{metric}{suffix}": None for metric in ("pr_auc", "precision", "recall") for suffix in ("", "_se", "_interval")
    }
    return PerformanceEstimate(
        rows=10_000,
        simulations=500,
        confidence=0.9,
        roc_auc=roc_auc,
        roc_auc_se=0.01,
        roc_auc_interval=(roc_auc - 0.02, roc_auc + 0.02),
        threshold=0.5,
        positive_rate=0.2,
        **empty,
    )


def record_history(state_dir: Path, features: int, windows: int) -> None:
    """`windows` hourly drift checks of `features` features (every fifth window drifts in two of them, retraining
    held), then one quality check with labels for the older two thirds of them."""
    names = [f"feature_{i:02d}" for i in range(features)]
    for hour in range(windows):
        drifted = hour % 5 == 2
        scores = [_score(name, (0.6 if drifted and i < 2 else 0.01 * (i % 25))) for i, name in enumerate(names)]
        report = DriftReport(
            model_tag=MODEL_TAG,
            window_start=START + timedelta(hours=hour),
            window_end=START + timedelta(hours=hour + 1),
            check="skew" if hour == 0 else "drift",
            min_drifted_features=1,
            features=scores,
            prediction=_score("score", 0.35 if drifted else 0.05),
            quality_issues=[],
            performance=_estimate(0.79 if drifted else 0.80),
            baseline_roc_auc=0.80,
        )
        record_drift(
            state_dir,
            report,
            rows=10_000,
            incident="opened" if drifted else "quiet",
            alert="sent" if drifted else "none",
            retrain="held" if drifted else "none",
            retrain_reason="holds: estimated ROC AUC 0.79 ± 0.02 (training 0.80)" if drifted else None,
        )
    labelled = [
        WindowQuality(
            window_start=START + timedelta(hours=hour),
            predictions=10_000,
            labelled=10_000,
            metrics=Metrics(
                roc_auc=0.8,
                pr_auc=0.5,
                log_loss=0.4,
                brier=0.1,
                f1=0.5,
                precision=0.5,
                recall=0.5,
                positive_rate=0.2,
                rows=10_000,
            ),  # fmt: skip
            judged=True,
            roc_auc_interval=(0.79, 0.81),
            degraded=False,
            estimate=_estimate(0.80),
        )
        for hour in range(windows * 2 // 3)
    ]
    quality = QualityReport(
        model_tag=MODEL_TAG,
        known_by=START + timedelta(days=31),
        baseline_roc_auc=0.80,
        max_drop=0.05,
        min_labels=200,
        windows=labelled,
    )
    record_quality(state_dir, quality, alerts={})


def _median(action: Any, repeats: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def time_health_page(features: int = 20, windows: int = 30, repeats: int = 5) -> dict[str, Any]:
    """The page for `windows` windows of `features` features: written (read everything, render, write) and
    rendered alone, medians of `repeats`, in seconds."""
    with tempfile.TemporaryDirectory(prefix="cicloml-bench-health-") as folder:
        settings = Settings(state_dir=Path(folder))
        record_history(settings.state_dir, features, windows)
        model = MODEL_TAG.split(":")[0]
        write_s, path = _median(lambda: write_health_page(settings, model, windows=windows), repeats)
        page = gather_health(settings, model, windows=windows)
        render_s, html = _median(lambda: render_health_page(page), repeats)
        history_bytes = (settings.state_dir / "history" / f"{model}.json").stat().st_size
        return {
            "features": features,
            "windows": windows,
            "repeats": repeats,
            "write_s": round(write_s, 4),
            "render_s": round(render_s, 4),
            "html_bytes": len(html.encode()),
            "history_bytes": history_bytes,
            "page": path.name,
            "target_seconds": TARGET_SECONDS,
            "met": write_s <= TARGET_SECONDS,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--windows", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(time_health_page(args.features, args.windows, args.repeats), indent=2))


if __name__ == "__main__":
    main()
