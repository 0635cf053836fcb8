"""Checking served traffic: which model versions served a window, and one version's window against its reference.

`check_window` is the whole per-model drift check (load the reference, merge the window's segment files of every
worker, compare, estimate the model's performance from the window's logged scores, write the HTML report, count the
window's logged predictions to hold against its profiled rows). It
takes its settings and spec as arguments rather than reading them, so it runs the same in the flow's process and on
a Dask worker whose environment is not the flow's.
"""

from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel

from cicloml.drift import DriftReport, compare_profiles
from cicloml.drift_report import write_html_report
from cicloml.estimation import estimate_performance
from cicloml.prediction_log import rows_disagreement, window_logged_rows, window_scores
from cicloml.profiling import newest_finished_window, read_window_profiles, window_folder, window_starts
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import ProjectSpec


class WindowCheck(BaseModel):
    """One model version's window compared with its training reference."""

    report: DriftReport
    rows: int
    """Rows the service's workers profiled in the window."""
    logged_rows: int | None
    """Predictions the service's workers logged in the window (only those for entities: see
    `cicloml.prediction_log.rows_disagreement`); None when predictions are not logged (CICLO_LOG_PREDICTIONS)."""
    report_path: Path
    """The HTML report."""

    @property
    def rows_disagreement(self) -> str | None:
        """A line for the report when the profiled and logged rows differ, else None."""
        return rows_disagreement(self.rows, self.logged_rows)


def check_window(
    settings: Settings, spec: ProjectSpec, model_tag: str, window_start: datetime | None, *, now: datetime
) -> WindowCheck:
    """Compare `model_tag`'s traffic in the window starting `window_start` (default: its newest finished window with
    traffic) with the reference saved with the model, and write the HTML report.

    The model's first served window is checked for training/serving skew; the windows after it for drift.
    """
    model = ModelRegistry(settings, spec.name).load(model_tag)
    windows = window_starts(settings.profiles_dir, model_tag)
    if not windows:
        raise FileNotFoundError(f"no traffic profiles for {model_tag} under {settings.profiles_dir}: served yet?")
    window_start = window_start or newest_finished_window(windows, settings.profile_window_seconds, now)
    current = read_window_profiles(window_folder(settings.profiles_dir, model_tag, window_start))
    report = compare_profiles(
        model.reference_profile(),
        current,
        features=model.lineage.features.features,
        spec=spec.drift,
        model_tag=model_tag,
        window_start=window_start,
        window_end=window_start + timedelta(seconds=settings.profile_window_seconds),
        # The first window a model serves is where training/serving skew shows; drift is change after it.
        check="skew" if window_start == windows[0] else "drift",
    )
    logged = (
        window_logged_rows(settings.prediction_log_dir, model_tag, window_start) if settings.log_predictions else None
    )
    if logged and model.lineage.calibration is not None:
        scores = window_scores(settings.prediction_log_dir, model_tag, window_start)
        estimate = estimate_performance(scores, model.lineage.calibration, threshold=model.lineage.threshold)
        report = report.model_copy(
            update={"performance": estimate, "baseline_roc_auc": model.lineage.metrics.get("roc_auc")}
        )
    return WindowCheck(
        report=report,
        rows=int(current.metadata.get("rows", 0)),
        logged_rows=logged,
        report_path=write_html_report(report, settings.reports_dir),
    )


def versions_with_traffic(profiles_dir: Path, model_name: str) -> dict[str, list[datetime]]:
    """Every version of `model_name` with traffic profiles: its tag and the starts of its windows, oldest first."""
    folder = profiles_dir / model_name
    tags = sorted(f"{model_name}:{path.name}" for path in folder.glob("*") if path.is_dir()) if folder.is_dir() else []
    return {tag: starts for tag in tags if (starts := window_starts(profiles_dir, tag))}
