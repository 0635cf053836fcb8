"""whylogs profiles of feature frames: the training reference saved with each model, and live traffic.

whylogs stays behind this module (its last release is from 2024 and its hosted platform is gone), so it can be
replaced in one place. Only its local writers are used.
"""

import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cicloml.atomic import atomic_path

# whylogs 1.6.4 still uses np.unicode_, which NumPy 2 removed (whylabs/whylogs-python#1568); restore the alias
# before whylogs is imported. Analytics off: the vendor's endpoint no longer exists.
np.unicode_ = np.str_  # type: ignore[attr-defined]
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")

import whylogs as why  # noqa: E402
from whylogs.core import DatasetProfileView  # noqa: E402
from whylogs.core.datatypes import AnyType, DataType, Fractional, Integral, StandardTypeMapper, String  # noqa: E402
from whylogs.core.metrics import Metric, MetricConfig, StandardMetric  # noqa: E402
from whylogs.core.preprocessing import ListView, NumpyView, PreprocessedColumn  # noqa: E402
from whylogs.core.resolvers import MetricSpec, ResolverSpec  # noqa: E402
from whylogs.core.schema import DeclarativeSchema  # noqa: E402
from whylogs.core.view import ColumnProfileView  # noqa: E402

SCORE_COLUMN = "score"
"""The model's score in profiles: traffic profiles carry it, and so does the training reference."""

WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"
"""A window's folder name: its UTC start, sortable as text."""

PROFILE_SUFFIX = ".bin"

_NUMBER_METRICS = (StandardMetric.counts, StandardMetric.types, StandardMetric.distribution)
TRACKED_METRICS: dict[type[DataType], tuple[StandardMetric, ...]] = {
    Integral: _NUMBER_METRICS,
    Fractional: _NUMBER_METRICS,
    # whylogs types any object column as strings, numbers with None or pd.NA among them too, and the drift check
    # reads a numeric feature's distribution whatever type its column got: as in whylogs' default schema.
    String: (*_NUMBER_METRICS, StandardMetric.frequent_items),
    AnyType: (StandardMetric.counts, StandardMetric.types),
}
"""The metrics kept per whylogs column type, by the reference and the traffic profiles alike: what the drift check
reads (counts and nulls, the type counters that tell categories from numbers, KLL distributions of numbers,
frequent items of categories). whylogs' default schema also keeps cardinality sketches, int min/max and frequent
items of ints, which nothing here reads and which cost CPU on the serving workers."""

_METRIC_CONFIG = MetricConfig()
_TYPE_MAPPER = StandardTypeMapper()


def profile_frame(frame: pd.DataFrame) -> DatasetProfileView:
    """A mergeable statistical profile (counts, nulls, distributions, frequent items) of every column."""
    return why.log(pandas=frame, schema=_schema()).view()


EXACT_PROFILE_ROWS = 65_535
"""The largest quantile sketch whylogs' KLL takes (k is 16-bit): it holds up to this many values exactly."""


_EXACT_METRIC_CONFIG = MetricConfig(large_kll_k=True, kll_k_large=EXACT_PROFILE_ROWS)
"""`exact_profile`'s metric config: KLL sketches as large as whylogs allows."""


def exact_profile(frame: pd.DataFrame, *, seed: int = 0) -> DatasetProfileView:
    """`profile_frame` with quantile sketches that hold every value, so the same frame gives the same profile on every
    run (whylogs' default sketch compacts at random, unseeded): what a replay needs (`cicloml.backtest`). A frame of
    more than `EXACT_PROFILE_ROWS` rows is profiled from a seeded sample of that many.

    The metrics are those `why.log` keeps with `_schema` and this config, fed the same preprocessed columns, but float
    columns and object columns of strings are preprocessed by `_preprocessed_series` in a few array passes: whylogs'
    own preprocessing applies Python functions to every value of such columns, over a quarter of a replay's time.
    (Unlike `why.log`'s, the profile carries no logger metadata: a random trace id, a timestamp, whylogs' version.)
    """
    if len(frame) > EXACT_PROFILE_ROWS:
        frame = frame.sample(n=EXACT_PROFILE_ROWS, random_state=seed).sort_index()
    now = datetime.now(timezone.utc)
    columns = {}
    for name, values in frame.items():
        why_type, preprocessed = _preprocessed_series(values)
        metrics = {metric.name: metric.zero(_EXACT_METRIC_CONFIG) for metric in _tracked_metrics(why_type)}
        if not frame.empty:  # whylogs tracks nothing of an empty frame: its columns keep empty metrics
            for metric in metrics.values():
                metric.columnar_update(preprocessed)
        columns[name] = ColumnProfileView(metrics=metrics)
    return DatasetProfileView(columns=columns, dataset_timestamp=now, creation_timestamp=now)


def _schema(config: MetricConfig = _METRIC_CONFIG) -> DeclarativeSchema:
    """`TRACKED_METRICS` as a whylogs schema (a new one per profile: whylogs records the columns it sees in it)."""
    resolvers = [
        ResolverSpec(column_type=why_type, metrics=[MetricSpec(metric.value) for metric in metrics])
        for why_type, metrics in TRACKED_METRICS.items()
    ]
    return DeclarativeSchema(resolvers, default_config=config)


class ColumnarProfile:
    """A profile fed column by column, with the metrics `profile_frame` keeps, made for many small batches.

    whylogs' `track(pandas=...)` sorts every column's values by type with about a dozen pandas passes per call,
    ~20 ms per call for a dozen columns however few the rows. Here a column whose values are all `str`, all
    `int`, or all `int`/`float` (what the service scores) goes to the metrics as one typed list or array, built as
    whylogs' own preprocessing builds it for such a column; any other column (None, bools, mixed types) goes
    through whylogs' preprocessing. The metrics come out the same either way. Not thread-safe.
    """

    def __init__(self, dataset_timestamp: datetime) -> None:
        self.dataset_timestamp = dataset_timestamp
        self.created = datetime.now(timezone.utc)
        self._columns: dict[str, dict[str, Metric]] = {}

    def track(self, columns: Mapping[str, Sequence[Any]]) -> None:
        """Add rows: `columns` maps each column's name to its values, all columns the same length."""
        if len({len(values) for values in columns.values()}) > 1:
            raise ValueError("the columns to profile differ in length")
        for name, values in columns.items():
            why_type, preprocessed = _preprocessed(values)
            metrics = self._columns.setdefault(name, {})
            # A column keeps the metrics of every type it was seen with. whylogs fixes them at the first batch: a
            # column of categories whose first batch held only NaN (numbers) would lack its frequent items.
            for metric in _tracked_metrics(why_type):
                if metric.name not in metrics:  # a standard metric's name is its namespace
                    metrics[metric.name] = metric.zero(_METRIC_CONFIG)
            for metric in metrics.values():
                metric.columnar_update(preprocessed)

    def view(self) -> DatasetProfileView:
        """The profile so far (it shares the metrics: take it once no more rows are tracked)."""
        return DatasetProfileView(
            columns={name: ColumnProfileView(metrics=dict(metrics)) for name, metrics in self._columns.items()},
            dataset_timestamp=self.dataset_timestamp,
            creation_timestamp=self.created,
        )


def _tracked_metrics(why_type: DataType) -> tuple[StandardMetric, ...]:
    return next(metrics for kind, metrics in TRACKED_METRICS.items() if isinstance(why_type, kind))


def _preprocessed(values: Sequence[Any]) -> tuple[DataType, PreprocessedColumn]:
    """The whylogs type and preprocessed form of one column: what whylogs makes of it as a pandas column."""
    kinds = set(map(type, values))
    column = PreprocessedColumn()
    column.len = len(values)
    if kinds == {str}:
        column.list = ListView(strings=list(values))
        return String(), column
    if kinds == {int}:
        try:
            column.numpy = NumpyView(ints=np.array(values, dtype=np.int64))
            return Integral(), column
        except OverflowError:
            pass  # beyond int64: left to pandas, which makes such a column uint64 or objects
    elif kinds and kinds <= {int, float}:
        return Fractional(), _float_column(np.array(values, dtype=np.float64))
    series = pd.Series(values)  # the dtype pandas infers for a frame column of these values
    return _TYPE_MAPPER(series.dtype), PreprocessedColumn.apply(series)


def _preprocessed_series(series: pd.Series) -> tuple[DataType, PreprocessedColumn]:
    """The whylogs type and preprocessed form of a frame's column, as `why.log` makes them: a float column, or an
    object column whose values are all strings or missing (None, NaN, pd.NA), without a Python call per value; any
    other column through whylogs' preprocessing."""
    why_type = _TYPE_MAPPER(series.dtype)
    if isinstance(series.dtype, np.dtype) and series.dtype.kind == "f":
        return why_type, _float_column(series.to_numpy(dtype=np.float64))
    if series.dtype == np.dtype(object):
        values = series.to_numpy()
        missing = series.isna().to_numpy()
        present = values[~missing]
        if pd.api.types.infer_dtype(present, skipna=False) in ("string", "empty"):
            column = PreprocessedColumn()
            column.len = len(values)
            column.null_count = int(missing.sum())
            # whylogs counts a missing value as NaN too where it is a number (NaN, not None or pd.NA).
            column.nan_count = sum(map(pd.api.types.is_number, values[missing]))
            if len(present):
                column.list = ListView(strings=present.tolist())
            return why_type, column
    return why_type, PreprocessedColumn.apply(series)


def _float_column(floats: np.ndarray) -> PreprocessedColumn:
    """A float64 column as whylogs preprocesses it: NaN counted as null and as NaN (whylogs counts both) and left out
    of the values, infinities counted."""
    column = PreprocessedColumn()
    column.len = len(floats)
    missing = np.isnan(floats)
    column.null_count = column.nan_count = int(missing.sum())
    floats = floats[~missing]
    column.inf_count = int(np.isinf(floats).sum())
    column.numpy = NumpyView(floats=floats)
    return column


def write_profile(view: DatasetProfileView, path: Path) -> Path:
    """Write a profile so a reader never sees half of it."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(view.serialize())
    return path


def read_profile(path: Path) -> DatasetProfileView:
    return DatasetProfileView.deserialize(path.read_bytes())


def model_folder(profiles_dir: Path, model_tag: str) -> Path:
    """Where one model version's traffic profiles live: `<profiles_dir>/<model name>/<model version>/`."""
    name, separator, version = model_tag.partition(":")
    if not (name and separator and version) or "/" in model_tag:
        raise ValueError(f"model tag {model_tag!r} is not name:version")
    return profiles_dir / name / version


def window_folder(profiles_dir: Path, model_tag: str, window_start: datetime) -> Path:
    """Where every worker's profile of one model version's traffic in one window lives (named by its UTC start)."""
    return model_folder(profiles_dir, model_tag) / window_start.strftime(WINDOW_FORMAT)


def window_starts(profiles_dir: Path, model_tag: str) -> list[datetime]:
    """The starts of the windows that have traffic profiles for `model_tag`, oldest first."""
    folder = model_folder(profiles_dir, model_tag)
    names = sorted(path.name for path in folder.glob("*") if path.is_dir()) if folder.is_dir() else []
    return [datetime.strptime(name, WINDOW_FORMAT).replace(tzinfo=timezone.utc) for name in names]


def newest_finished_window(starts: list[datetime], window_seconds: int, now: datetime) -> datetime:
    """The newest of `starts` (not empty) whose window has ended by `now`, else the newest: the current window is
    still being written."""
    finished = [start for start in starts if start + timedelta(seconds=window_seconds) <= now]
    return (finished or starts)[-1]


def segment_path(folder: Path, worker: str, suffix: str) -> Path:
    """The next free segment file of `worker` in a window folder: `<worker>-<segment number><suffix>`.

    A worker writes its rows of a window as segments (the traffic profiles and the prediction log alike), so a
    worker killed without warning loses only the segment it had not written yet. Numbers continue after the
    worker's files already there, so a worker restarted under the same id adds segments instead of replacing them.
    One writer per worker id at a time: the caller serializes its own writes.
    """
    prefix = f"{worker}-"
    numbers = [
        int(number)
        for path in folder.glob(f"*{suffix}")  # not a glob of the worker id: it may hold glob characters
        if path.name.startswith(prefix) and (number := path.name.removeprefix(prefix).removesuffix(suffix)).isdigit()
    ]
    return folder / f"{prefix}{max(numbers, default=-1) + 1}{suffix}"


def window_profile_paths(folder: Path) -> list[Path]:
    """The finished profile files (every worker's segments) in a window folder. A `.tmp-` file (a write a crash
    interrupted) is never one."""
    return sorted(path for path in folder.glob(f"*{PROFILE_SUFFIX}") if not path.name.startswith("."))


def read_window_profiles(folder: Path) -> DatasetProfileView:
    """One window's traffic across all workers: every segment merged (whylogs sketches merge without loss of counts).

    The merged metadata keeps the model tag and window, sums `rows` and lists the workers.
    """
    paths = window_profile_paths(folder)
    if not paths:
        raise FileNotFoundError(f"no traffic profiles in {folder}")
    views = [read_profile(path) for path in paths]
    # Read before merging: whylogs' merge updates the first view's metadata in place.
    each = [dict(view.metadata) for view in views]
    merged = views[0]
    for view in views[1:]:
        merged = merged.merge(view)
    workers = dict.fromkeys(meta.get("worker", path.stem) for meta, path in zip(each, paths, strict=True))
    metadata = {
        **each[0],
        "worker": ",".join(workers),
        "rows": str(sum(int(meta.get("rows", 0)) for meta in each)),
    }
    return with_metadata(merged, metadata)


def window_profiled_rows(folder: Path) -> int:
    """The rows the traffic profiles of one window hold (their `rows` metadata summed), 0 without profiles."""
    return sum(int(read_profile(path).metadata.get("rows", 0)) for path in window_profile_paths(folder))


def with_metadata(view: DatasetProfileView, metadata: Mapping[str, str]) -> DatasetProfileView:
    """A copy of `view` with exactly this metadata (whylogs' own merge mutates and mixes the inputs' metadata)."""
    return DatasetProfileView(
        columns=view.get_columns(),
        dataset_timestamp=view.dataset_timestamp,
        creation_timestamp=view.creation_timestamp,
        metadata=dict(metadata),
    )
