"""The live service's predictions per entity, kept so that labels arriving later can be joined to them.

The service hands each scored entity (its join keys) to `PredictionLog.record` (a list append under a lock). Rows
are kept per time window, the same epoch-aligned windows as the traffic profiles, and each window is written once it
has ended, by a timer thread, as one Parquet file per worker, atomically:
`<log dir>/<model name>/<version>/<window start>/<worker>.parquet`, one column per join key, `scored_at`, `score`.
`close` (graceful shutdown) writes what is left, the current window partial.
"""

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cicloml.atomic import atomic_path
from cicloml.profiling import WINDOW_FORMAT, model_folder, window_folder

LOG_SUFFIX = ".parquet"
WRITE_DELAY_SECONDS = 2.0
"""How long after its end a window is written: requests scored at the boundary are still being recorded."""


@dataclass
class _Rows:
    keys: dict[str, list[Any]] = field(default_factory=dict)
    """One list per join key."""
    scored_at: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


@dataclass(eq=False)
class PredictionLog:
    """One worker's log of scored entities, written per time window.

    `worker` names this worker's file in each window folder and must be unique among the processes writing under
    `log_dir` at the same time (host and pid, say).
    """

    log_dir: Path
    model_tag: str
    worker: str
    window_seconds: int = 3600
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if not self.worker or "/" in self.worker or self.worker.startswith("."):
            raise ValueError(f"worker id {self.worker!r} cannot name a file")
        if self.window_seconds < 1:
            raise ValueError("window_seconds must be at least 1")
        model_folder(self.log_dir, self.model_tag)  # a tag that cannot name a folder fails here, not later
        self._lock = threading.Lock()
        self._windows: dict[int, _Rows] = {}
        self._timers: dict[int, threading.Timer] = {}
        self._closed = False

    def record(self, entities: Mapping[str, Sequence[Any]], scores: Sequence[float]) -> None:
        """Log scored entities: `entities` maps each join key to its values, row-aligned with `scores`. Rows recorded
        after `close` are dropped."""
        now = self.clock()
        window = math.floor(now / self.window_seconds)
        with self._lock:
            if self._closed:
                return
            rows = self._windows.get(window)
            if rows is None:
                rows = self._windows[window] = _Rows()
                self._schedule(window, now)
            for key, values in entities.items():
                rows.keys.setdefault(key, []).extend(values)
            rows.scores.extend(scores)
            rows.scored_at.extend([now] * len(scores))

    def close(self) -> list[Path]:
        """Write every window still held, the current one partial; return the files written. Idempotent."""
        with self._lock:
            self._closed = True
            windows, self._windows = self._windows, {}
            timers, self._timers = list(self._timers.values()), {}
        for timer in timers:
            timer.cancel()
            timer.join()  # one already writing its window finishes first
        return [self._write(window, rows) for window, rows in sorted(windows.items())]

    def _schedule(self, window: int, now: float) -> None:
        delay = (window + 1) * self.window_seconds - now + WRITE_DELAY_SECONDS
        timer = threading.Timer(max(0.0, delay), self._write_ended, args=(window,))
        timer.daemon = True  # a worker that dies without `close` loses only its unwritten windows
        self._timers[window] = timer
        timer.start()

    def _write_ended(self, window: int) -> None:
        with self._lock:
            rows = self._windows.pop(window, None)
            self._timers.pop(window, None)
        if rows is not None:
            self._write(window, rows)

    def _write(self, window: int, rows: _Rows) -> Path:
        start = datetime.fromtimestamp(window * self.window_seconds, timezone.utc)
        table = pa.table(
            {
                **rows.keys,
                "scored_at": _utc_timestamps(rows.scored_at),
                "score": pa.array(rows.scores, pa.float64()),
            }
        ).replace_schema_metadata(
            {"model_tag": self.model_tag, "window_start": start.isoformat(), "worker": self.worker}
        )
        path = window_folder(self.log_dir, self.model_tag, start) / f"{self.worker}{LOG_SUFFIX}"
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        return path


def _utc_timestamps(seconds: list[float]) -> pa.Array:
    """Seconds since the epoch as UTC timestamps (microseconds)."""
    micros = pa.array([round(value * 1_000_000) for value in seconds], pa.int64())
    return micros.cast(pa.timestamp("us", tz="UTC"))


def read_prediction_log(log_dir: Path, model_tag: str) -> pd.DataFrame:
    """Every logged prediction of `model_tag`: its join keys, `scored_at`, `score` and the start of the window it
    was logged in (`window_start`)."""
    folder = model_folder(log_dir, model_tag)
    frames = [
        pd.read_parquet(path).assign(
            window_start=datetime.strptime(path.parent.name, WINDOW_FORMAT).replace(tzinfo=timezone.utc)
        )
        for path in sorted(folder.glob(f"*/*{LOG_SUFFIX}"))
        if not path.name.startswith(".")  # a temporary file of a write in progress
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
