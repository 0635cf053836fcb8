"""Profiles of live prediction traffic, made off the request path.

A request hands its scored rows to `TrafficProfiler.record`, which only appends them to a bounded buffer. A
background thread profiles the buffer in batches into a whylogs profile of the current time window and writes it
as a segment, `<window folder>/<worker>-<segment number>.bin` (`cicloml.profiling.segment_path`), atomically, every
`segment_seconds` or `segment_rows` and when the window ends, then starts the next segment afresh: a worker killed
without warning (`kill -9`) loses at most the segment it was filling, not the window. The drift flow merges a
window's segments, of every worker.

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
    segment_path,
    window_folder,
    with_metadata,
    write_profile,
)

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 1.0
"""How often the worker thread profiles what is buffered: often enough that the buffer rarely fills up."""

MAX_SEGMENT_SECONDS = 60
"""The longest a segment may stay in memory: the most of a window's traffic a killed worker may lose."""


@dataclass(slots=True)  # not frozen: one is made per request, and frozen dataclasses are slower to make
class _Batch:
    window: int
    columns: Mapping[str, Sequence[Any]]
    scores: Sequence[float]


@dataclass
class _Segment:
    """A window's rows profiled since the last segment of that window was written."""

    profile: ColumnarProfile
    opened: float
    """Clock reading when its first rows were profiled: it is written `segment_seconds` later at the latest."""
    rows: int = 0


@dataclass(eq=False)
class TrafficProfiler:
    """Buffers scored rows and profiles them per time window on a background thread, written in segments.

    `record` is safe to call from any thread and never blocks on profiling or I/O. Windows are aligned to the epoch
    (a window starts at a multiple of `window_seconds`, UTC), so the workers of a service, and its replicas, write
    files for the same windows. `worker` names this worker's segment files in each window folder and must be unique
    among the processes writing under `profiles_dir` at the same time (host and pid, say). A segment is written
    once it is `segment_seconds` old (at most `MAX_SEGMENT_SECONDS`) or holds `segment_rows` rows, whichever comes
    first, and when its window ends; it carries its own row count in its `rows` metadata.
    """

    profiles_dir: Path
    model_tag: str
    worker: str
    window_seconds: int = 3600
    buffer_rows: int = 100_000
    segment_seconds: int = MAX_SEGMENT_SECONDS
    segment_rows: int = 10_000
    clock: Callable[[], float] = time.time
    dropped: int = field(default=0, init=False)
    """Rows `record` dropped because the buffer was full (or the profiler closed) since this profiler was made."""

    def __post_init__(self) -> None:
        if not self.worker or "/" in self.worker or self.worker.startswith("."):
            raise ValueError(f"worker id {self.worker!r} cannot name a file")
        if self.window_seconds < 1 or self.buffer_rows < 1 or self.segment_rows < 1:
            raise ValueError("window_seconds, buffer_rows and segment_rows must be at least 1")
        if not 1 <= self.segment_seconds <= MAX_SEGMENT_SECONDS:
            raise ValueError(f"segment_seconds must be between 1 and {MAX_SEGMENT_SECONDS}")
        model_folder(self.profiles_dir, self.model_tag)  # a tag that cannot name a folder fails here, not later
        self._lock = threading.Lock()  # guards the buffer; held only for an append on the request path
        self._flush_lock = threading.Lock()  # one flush at a time: the worker thread's or a caller's
        self._pending: list[_Batch] = []
        self._pending_rows = 0
        self._segments: dict[int, _Segment] = {}
        """The segment being filled per window: usually only the current window's."""
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
        """Start the background thread (a daemon: a worker that dies without `close` loses only the rows of its
        unwritten segments and its buffer)."""
        if self._closed:
            raise RuntimeError("the traffic profiler is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"traffic-profiler-{self.worker}", daemon=True)
            self._thread.start()
        return self

    def flush(self) -> list[Path]:
        """Profile what is buffered and write every segment that is due; return the files written."""
        with self._flush_lock:
            return self._flush(final=False)

    def close(self) -> list[Path]:
        """Stop the thread, profile what is buffered and write every segment held, due or not.

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
                # Keep profiling later traffic; a segment that failed to write is retried at the next flush.
                logger.exception("profiling traffic of %s failed", self.model_tag)

    def _flush(self, *, final: bool) -> list[Path]:
        # The clock is read before the buffer is taken: a row recorded after this read belongs to this window or a
        # later one, so every window that ends before it is complete once the buffer taken below is profiled.
        now = self.clock()
        current = math.floor(now / self.window_seconds)
        with self._lock:
            batches, self._pending, self._pending_rows = self._pending, [], 0
        by_window: dict[int, list[_Batch]] = {}
        for batch in batches:
            by_window.setdefault(batch.window, []).append(batch)
        for window, window_batches in by_window.items():
            self._track(window, window_batches, now)
        written = []
        for window in sorted(self._segments):
            segment = self._segments[window]
            due = window < current or now - segment.opened >= self.segment_seconds or segment.rows >= self.segment_rows
            if final or due:
                written.append(self._write(window, segment))
                del self._segments[window]  # only once written: a failed write is retried with the next flush
        return written

    def _track(self, window: int, batches: list[_Batch], now: float) -> None:
        names = list(dict.fromkeys(chain.from_iterable(batch.columns for batch in batches)))
        if SCORE_COLUMN in names:
            # Checked here, not in record(): profiling must never fail a request.
            raise ValueError(f"a feature named {SCORE_COLUMN!r} collides with the prediction column")
        columns = {name: _concatenated(batches, name) for name in names}
        columns[SCORE_COLUMN] = list(chain.from_iterable(map(attrgetter("scores"), batches)))
        if window not in self._segments:
            self._segments[window] = _Segment(ColumnarProfile(dataset_timestamp=self._window_start(window)), now)
        segment = self._segments[window]
        segment.profile.track(columns)
        segment.rows += len(columns[SCORE_COLUMN])

    def _write(self, window: int, segment: _Segment) -> Path:
        start = self._window_start(window)
        path = segment_path(window_folder(self.profiles_dir, self.model_tag, start), self.worker, PROFILE_SUFFIX)
        metadata = {
            "model_tag": self.model_tag,
            "window_start": start.isoformat(),
            "window_end": self._window_start(window + 1).isoformat(),
            "worker": self.worker,
            "rows": str(segment.rows),
        }
        return write_profile(with_metadata(segment.profile.view(), metadata), path)

    def _window_start(self, window: int) -> datetime:
        return datetime.fromtimestamp(window * self.window_seconds, tz=timezone.utc)


def _concatenated(batches: list[_Batch], name: str) -> list[Any]:
    """One feature's values over the batches, None for the rows of a batch that lacks it."""
    try:
        # Loops in C: a flush gathers one short list per request and feature, and this is most of its work.
        return list(chain.from_iterable(map(itemgetter(name), map(attrgetter("columns"), batches))))
    except KeyError:
        return list(chain.from_iterable(batch.columns.get(name, [None] * len(batch.scores)) for batch in batches))
