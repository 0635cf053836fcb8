"""Profiles of live prediction traffic, made off the request path.

A request hands its scored rows to `TrafficProfiler.record`, which only appends them to a bounded buffer. A
background thread profiles the buffer in batches into one whylogs profile per time window and writes one file per
worker per window (`cicloml.profiling.window_folder`), atomically. The drift flow merges a window's files.

The thread shares the worker's GIL (and cores) with the requests, so a flush must stay short: the rows go to
`cicloml.profiling.ColumnarProfile` as plain columns, about 3 ms of CPU for a second of traffic at 300 requests/s
where whylogs' pandas path took ~30 ms, most of it a fixed cost per call (`make bench-profiling`: `flush_path`).
"""

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import chain
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from cicloml.profiling import (
    PROFILE_SUFFIX,
    SCORE_COLUMN,
    ColumnarProfile,
    model_folder,
    read_profile,
    window_folder,
    with_metadata,
    write_profile,
)

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 1.0
"""How often the worker thread profiles what is buffered: often enough that the buffer rarely fills up."""


@dataclass(slots=True)  # not frozen: one is made per request, and frozen dataclasses are slower to make
class _Batch:
    window: int
    columns: Mapping[str, Sequence[Any]]
    scores: Sequence[float]


@dataclass
class _WindowProfile:
    profile: ColumnarProfile
    rows: int = 0


@dataclass(eq=False)
class TrafficProfiler:
    """Buffers scored rows and profiles them per time window on a background thread.

    `record` is safe to call from any thread and never blocks on profiling or I/O. Windows are aligned to the epoch
    (a window starts at a multiple of `window_seconds`, UTC), so the workers of a service, and its replicas, write
    files for the same windows. `worker` names this worker's file in each window folder and must be unique among
    the processes writing under `profiles_dir` at the same time (host and pid, say).
    """

    profiles_dir: Path
    model_tag: str
    worker: str
    window_seconds: int = 3600
    buffer_rows: int = 100_000
    clock: Callable[[], float] = time.time
    dropped: int = field(default=0, init=False)
    """Rows `record` dropped because the buffer was full (or the profiler closed) since this profiler was made."""

    def __post_init__(self) -> None:
        if not self.worker or "/" in self.worker or self.worker.startswith("."):
            raise ValueError(f"worker id {self.worker!r} cannot name a file")
        if self.window_seconds < 1 or self.buffer_rows < 1:
            raise ValueError("window_seconds and buffer_rows must be at least 1")
        model_folder(self.profiles_dir, self.model_tag)  # a tag that cannot name a folder fails here, not later
        self._lock = threading.Lock()  # guards the buffer; held only for an append on the request path
        self._flush_lock = threading.Lock()  # one flush at a time: the worker thread's or a caller's
        self._pending: list[_Batch] = []
        self._pending_rows = 0
        self._windows: dict[int, _WindowProfile] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    def record(self, columns: Mapping[str, Sequence[Any]], scores: Sequence[float]) -> int:
        """Queue scored rows (`columns`: feature name to values, row-aligned with `scores`) to be profiled.

        Returns how many rows were dropped because the buffer is full. The profiler keeps references to the
        sequences: the caller must not change them afterwards.
        """
        rows = len(scores)
        window = math.floor(self.clock() / self.window_seconds)
        with self._lock:
            kept = 0 if self._closed else max(0, min(rows, self.buffer_rows - self._pending_rows))
            if kept:
                if kept < rows:  # only the batch that fills the buffer is cut, so the lock stays short
                    columns, scores = {name: values[:kept] for name, values in columns.items()}, scores[:kept]
                self._pending.append(_Batch(window, columns, scores))
                self._pending_rows += kept
            self.dropped += rows - kept
            # Past half full, profile now rather than at the next tick, before the buffer starts dropping rows.
            hurry = self._pending_rows * 2 >= self.buffer_rows
        if hurry:
            self._wake.set()
        return rows - kept

    def start(self) -> "TrafficProfiler":
        """Start the background thread (a daemon: a worker that dies without `close` loses only unwritten rows)."""
        if self._closed:
            raise RuntimeError("the traffic profiler is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"traffic-profiler-{self.worker}", daemon=True)
            self._thread.start()
        return self

    def flush(self) -> list[Path]:
        """Profile what is buffered and write every window that has ended; return the files written."""
        with self._flush_lock:
            return self._flush(final=False)

    def close(self) -> list[Path]:
        """Stop the thread, profile what is buffered and write every window, the current one partial.

        Rows recorded afterwards are dropped. Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._flush_lock:
            return self._flush(final=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return  # close() makes the last flush
            try:
                self.flush()
            except Exception:
                # Keep profiling later traffic; a window that failed to write is retried at the next flush.
                logger.exception("profiling traffic of %s failed", self.model_tag)

    def _flush(self, *, final: bool) -> list[Path]:
        # The clock is read before the buffer is taken: a row recorded after this read belongs to this window or a
        # later one, so every window that ends before it is complete once the buffer taken below is profiled.
        current = math.floor(self.clock() / self.window_seconds)
        with self._lock:
            batches, self._pending, self._pending_rows = self._pending, [], 0
        by_window: dict[int, list[_Batch]] = {}
        for batch in batches:
            by_window.setdefault(batch.window, []).append(batch)
        for window, window_batches in by_window.items():
            self._track(window, window_batches)
        written = []
        for window in sorted(self._windows):
            if final or window < current:
                written.append(self._write(window, self._windows[window]))
                del self._windows[window]
        return written

    def _track(self, window: int, batches: list[_Batch]) -> None:
        names = list(dict.fromkeys(chain.from_iterable(batch.columns for batch in batches)))
        if SCORE_COLUMN in names:
            # Checked here, not in record(): profiling must never fail a request.
            raise ValueError(f"a feature named {SCORE_COLUMN!r} collides with the prediction column")
        columns = {name: _concatenated(batches, name) for name in names}
        columns[SCORE_COLUMN] = list(chain.from_iterable(map(attrgetter("scores"), batches)))
        if window not in self._windows:
            self._windows[window] = _WindowProfile(ColumnarProfile(dataset_timestamp=self._window_start(window)))
        profiled = self._windows[window]
        profiled.profile.track(columns)
        profiled.rows += len(columns[SCORE_COLUMN])

    def _write(self, window: int, profiled: _WindowProfile) -> Path:
        start = self._window_start(window)
        path = window_folder(self.profiles_dir, self.model_tag, start) / f"{self.worker}{PROFILE_SUFFIX}"
        view = profiled.profile.view()
        rows = profiled.rows
        if path.exists():
            # This worker already wrote this window (closed and restarted under the same id): add to it.
            existing = read_profile(path)
            rows += int(existing.metadata.get("rows", 0))
            view = existing.merge(view)
        metadata = {
            "model_tag": self.model_tag,
            "window_start": start.isoformat(),
            "window_end": self._window_start(window + 1).isoformat(),
            "worker": self.worker,
            "rows": str(rows),
        }
        return write_profile(with_metadata(view, metadata), path)

    def _window_start(self, window: int) -> datetime:
        return datetime.fromtimestamp(window * self.window_seconds, tz=timezone.utc)


def _concatenated(batches: list[_Batch], name: str) -> list[Any]:
    """One feature's values over the batches, None for the rows of a batch that lacks it."""
    try:
        # Loops in C: a flush gathers one short list per request and feature, and this is most of its work.
        return list(chain.from_iterable(map(itemgetter(name), map(attrgetter("columns"), batches))))
    except KeyError:
        return list(chain.from_iterable(batch.columns.get(name, [None] * len(batch.scores)) for batch in batches))
