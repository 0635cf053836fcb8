"""The live service's predictions per entity, kept so that labels arriving later can be joined to them.

The service hands each scored entity (its join keys) to `PredictionLog.record` (a list append under a lock). Rows
are kept per time window, the same epoch-aligned windows as the traffic profiles, and written in segments by a
background thread, atomically, one Parquet file each:
`<log dir>/<model name>/<version>/<window start>/<worker>-<segment number>.parquet`, one column per join key,
`scored_at`, `score`. A segment is written `segment_seconds` after its first row, once it holds `segment_rows` rows,
or when its window ends, whichever comes first: a worker killed without warning loses at most that segment.
`close` (graceful shutdown) writes what is left.
"""

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cicloml.atomic import atomic_path
from cicloml.profiling import WINDOW_FORMAT, model_folder, segment_path, window_folder

logger = logging.getLogger(__name__)

LOG_SUFFIX = ".parquet"
WRITE_DELAY_SECONDS = 2.0
"""How long after its end a window's last segment is written: requests scored at the boundary are still being
recorded (one recorded later still is written, as a segment of its own)."""
MAX_SEGMENT_SECONDS = 60
"""The longest a segment may stay in memory: the most of a window's predictions a killed worker may lose."""
FLUSH_INTERVAL_SECONDS = 1.0
"""How often the background thread looks for segments that are due."""


@dataclass
class _Segment:
    opened: float
    """Clock reading at its first row: it is written `segment_seconds` later at the latest."""
    keys: dict[str, list[Any]] = field(default_factory=dict)
    """One list per join key."""
    scored_at: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


@dataclass(eq=False)
class PredictionLog:
    """One worker's log of scored entities, written per time window in segments.

    `worker` names this worker's segment files in each window folder and must be unique among the processes
    writing under `log_dir` at the same time (host and pid, say). The background thread starts with the first
    row recorded.
    """

    log_dir: Path
    model_tag: str
    worker: str
    window_seconds: int = 3600
    segment_seconds: int = MAX_SEGMENT_SECONDS
    segment_rows: int = 10_000
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if not self.worker or "/" in self.worker or self.worker.startswith("."):
            raise ValueError(f"worker id {self.worker!r} cannot name a file")
        if self.window_seconds < 1 or self.segment_rows < 1:
            raise ValueError("window_seconds and segment_rows must be at least 1")
        if not 1 <= self.segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(f"segment_seconds must be between 1 and {MAX_SEGMENT_SECONDS}")
        model_folder(self.log_dir, self.model_tag)  # a tag that cannot name a folder fails here, not later
        self._lock = threading.Lock()  # guards the segments; held only for an append on the request path
        self._write_lock = threading.Lock()  # one write at a time: segment numbers are taken from the folder
        self._segments: dict[int, _Segment] = {}
        """The segment being filled per window: usually only the current window's."""
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, entities: Mapping[str, Sequence[Any]], scores: Sequence[float]) -> None:
        """Log scored entities: `entities` maps each join key to its values, row-aligned with `scores`. Rows recorded
        after `close` are dropped."""
        now = self.clock()
        window = math.floor(now / self.window_seconds)
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                # A daemon: a worker that dies without `close` loses only its unwritten segments.
                self._thread = threading.Thread(target=self._run, name=f"prediction-log-{self.worker}", daemon=True)
                self._thread.start()
            segment = self._segments.get(window)
            if segment is None:
                segment = self._segments[window] = _Segment(opened=now)
            for key, values in entities.items():
                segment.keys.setdefault(key, []).extend(values)
            segment.scores.extend(scores)
            segment.scored_at.extend([now] * len(scores))
            full = len(segment.scores) >= self.segment_rows
        if full:
            self._wake.set()

    def flush(self) -> list[Path]:
        """Write every segment that is due; return the files written."""
        now = self.clock()
        with self._lock:
            due = {window: segment for window, segment in self._segments.items() if self._due(window, segment, now)}
            for window in due:
                del self._segments[window]  # rows recorded from now on start the window's next segment
        return [self._write(window, segment) for window, segment in sorted(due.items())]

    def close(self) -> list[Path]:
        """Stop the thread and write every segment still held, due or not; return the files written. Idempotent."""
        with self._lock:
            self._closed = True
            segments, self._segments = self._segments, {}
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()  # a flush under way finishes first
        return [self._write(window, segment) for window, segment in sorted(segments.items())]

    def _due(self, window: int, segment: _Segment, now: float) -> bool:
        window_over = now >= (window + 1) * self.window_seconds + WRITE_DELAY_SECONDS
        return window_over or now - segment.opened >= self.segment_seconds or len(segment.scores) >= self.segment_rows

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return  # close() writes what is left
            try:
                self.flush()
            except Exception:
                # Keep logging later predictions; the segments that failed to write are lost.
                logger.exception("writing the prediction log of %s failed", self.model_tag)

    def _write(self, window: int, segment: _Segment) -> Path:
        start = datetime.fromtimestamp(window * self.window_seconds, timezone.utc)
        table = pa.table(
            {
                **segment.keys,
                "scored_at": _utc_timestamps(segment.scored_at),
                "score": pa.array(segment.scores, pa.float64()),
            }
        ).replace_schema_metadata(
            {"model_tag": self.model_tag, "window_start": start.isoformat(), "worker": self.worker}
        )
        with self._write_lock:
            path = segment_path(window_folder(self.log_dir, self.model_tag, start), self.worker, LOG_SUFFIX)
            with atomic_path(path) as temporary:
                pq.write_table(table, temporary)
        return path


def _utc_timestamps(seconds: list[float]) -> pa.Array:
    """Seconds since the epoch as UTC timestamps (microseconds)."""
    micros = pa.array([round(value * 1_000_000) for value in seconds], pa.int64())
    return micros.cast(pa.timestamp("us", tz="UTC"))


def read_prediction_log(log_dir: Path, model_tag: str) -> pd.DataFrame:
    """Every logged prediction of `model_tag` (every worker's segments of every window): its join keys,
    `scored_at`, `score` and the start of the window it was logged in (`window_start`)."""
    frames = [
        pd.read_parquet(path).assign(
            window_start=datetime.strptime(path.parent.name, WINDOW_FORMAT).replace(tzinfo=timezone.utc)
        )
        for path in _finished(model_folder(log_dir, model_tag).glob(f"*/*{LOG_SUFFIX}"))
    ]
    if not frames:
        return pd.DataFrame(
            {
                "scored_at": pd.Series(dtype="datetime64[us, UTC]"),
                "score": pd.Series(dtype=float),
                "window_start": pd.Series(dtype="datetime64[us, UTC]"),
            }
        )
    return pd.concat(frames, ignore_index=True)


def window_logged_rows(log_dir: Path, model_tag: str, window_start: datetime) -> int:
    """The predictions of `model_tag` logged in the window starting `window_start`, every worker's segments, counted
    from the Parquet footers (no rows are read); 0 without any."""
    paths = _finished(window_folder(log_dir, model_tag, window_start).glob(f"*{LOG_SUFFIX}"))
    return sum(pq.ParquetFile(path).metadata.num_rows for path in paths)


def window_scores(log_dir: Path, model_tag: str, window_start: datetime) -> np.ndarray:
    """The scores `model_tag` logged in the window starting `window_start`, every worker's segments; empty without
    any. What performance is estimated from before labels arrive (`cicloml.estimation`)."""
    paths = sorted(_finished(window_folder(log_dir, model_tag, window_start).glob(f"*{LOG_SUFFIX}")))
    columns = [pq.read_table(path, columns=["score"]).column("score").to_numpy() for path in paths]
    return np.concatenate(columns).astype(float) if columns else np.empty(0)


def rows_disagreement(profiled: int | None, logged: int | None) -> str | None:
    """A line for a report when a window's traffic profiles and prediction log hold different numbers of rows; None
    when they agree, or when one of them is not kept (None).

    They count different things: the profiles hold every scored row, /predict_features' too, while the log holds
    only predictions for entities (a row without one cannot be joined to a label), so more profiled rows are
    expected when /predict_features served. Rows the profiler dropped from its full buffer (the
    `profile_rows_dropped` metric) are logged but not profiled, and a request at a window's boundary may fall in
    different windows on each side. Beyond those, a difference is rows lost: a worker killed before writing its
    last segment, of either record.
    """
    if profiled is None or logged is None or profiled == logged:
        return None
    return (
        f"Traffic profiles hold {profiled:,} rows and the prediction log {logged:,}: expected only from "
        "/predict_features rows (profiled, not logged), rows dropped by a full profiling buffer, or requests at the "
        "window's edges; otherwise a worker lost the segment it had not written."
    )


def _finished(paths: Iterable[Path]) -> list[Path]:
    """The segment files among `paths`, never a `.tmp-` file (a write in progress, or one a crash interrupted)."""
    return sorted(path for path in paths if not path.name.startswith("."))
