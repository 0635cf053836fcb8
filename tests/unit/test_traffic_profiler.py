"""TrafficProfiler with a fake clock: windows, files, the bounded buffer, shutdown and crash leftovers; and the
profile it fills, which must hold what `profile_frame` holds for the same rows (the drift check compares the two)."""

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cicloml.profiling import (
    WINDOW_FORMAT,
    ColumnarProfile,
    DatasetProfileView,
    model_folder,
    newest_finished_window,
    profile_frame,
    read_profile,
    read_window_profiles,
    window_folder,
    window_profile_paths,
    window_starts,
)
from cicloml.traffic import TrafficProfiler

TAG = "churn:abc123"
WINDOW = 60
T0 = 1_700_000_040.0  # a window start: a multiple of WINDOW
START = datetime.fromtimestamp(T0, tz=timezone.utc)
NEXT_START = datetime.fromtimestamp(T0 + WINDOW, tz=timezone.utc)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rows(count: int, offset: int = 0) -> tuple[dict[str, list], list[float]]:
    columns = {
        "tenure_days": [offset + row for row in range(count)],
        "plan": ["basic" if row % 2 else "premium" for row in range(count)],
    }
    return columns, [row / max(count, 1) for row in range(count)]


def counts(view: DatasetProfileView) -> dict[str, int]:
    return {name: column.to_summary_dict()["counts/n"] for name, column in view.get_columns().items()}


def profiler(tmp_path: Path, clock: FakeClock, **options: int) -> TrafficProfiler:
    return TrafficProfiler(tmp_path, TAG, "host-1", window_seconds=WINDOW, clock=clock, **options)


def worker_file(tmp_path: Path, start: datetime, worker: str = "host-1", segment: int = 0) -> Path:
    return window_folder(tmp_path, TAG, start) / f"{worker}-{segment}.bin"


def test_rows_recorded_in_two_windows_land_in_two_files_with_their_counts(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 5)
    traffic = profiler(tmp_path, clock)
    assert traffic.record(*rows(30)) == 0
    traffic.flush()
    assert traffic.record(*rows(20)) == 0
    clock.now = T0 + WINDOW + 1  # recorded in the next window; profiled after it, as the worker thread would
    assert traffic.record(*rows(7)) == 0

    assert traffic.flush() == [worker_file(tmp_path, START)]
    assert counts(read_profile(worker_file(tmp_path, START))) == {"tenure_days": 50, "plan": 50, "score": 50}
    assert not worker_file(tmp_path, NEXT_START).exists(), "the current window is written only when it ends"

    traffic.close()
    assert counts(read_profile(worker_file(tmp_path, NEXT_START))) == {"tenure_days": 7, "plan": 7, "score": 7}


def test_files_carry_the_model_tag_window_worker_and_row_count(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0 + 59))
    traffic.record(*rows(12))
    traffic.close()

    view = DatasetProfileView.deserialize(worker_file(tmp_path, START).read_bytes())
    assert view.metadata == {
        "model_tag": TAG,
        "window_start": START.isoformat(),
        "window_end": NEXT_START.isoformat(),
        "worker": "host-1",
        "rows": "12",
    }
    assert view.dataset_timestamp == START
    assert worker_file(tmp_path, START).parent.name == "20231114T221400Z"


def test_a_full_buffer_drops_and_counts_the_rows_beyond_it(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0), buffer_rows=25)
    assert traffic.record(*rows(10)) == 0
    assert traffic.record(*rows(10)) == 0
    assert traffic.record(*rows(10)) == 5  # 5 fit
    assert traffic.record(*rows(10)) == 10
    assert traffic.dropped == 15

    traffic.flush()  # profiling empties the buffer
    assert traffic.record(*rows(10)) == 0
    traffic.close()
    assert counts(read_profile(worker_file(tmp_path, START)))["score"] == 35


def test_close_writes_the_partial_window_stops_the_thread_and_is_idempotent(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0 + 1)).start()
    traffic.record(*rows(9))

    assert traffic.close() == [worker_file(tmp_path, START)]
    assert traffic.close() == []
    assert traffic._thread is not None and not traffic._thread.is_alive()
    assert counts(read_profile(worker_file(tmp_path, START)))["tenure_days"] == 9
    assert traffic.record(*rows(4)) == 4, "rows recorded after close are dropped, and counted"
    assert traffic.dropped == 4


def test_a_restarted_worker_adds_a_segment_instead_of_overwriting_its_own(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1)
    first = profiler(tmp_path, clock)
    first.record(*rows(8))
    first.close()
    second = profiler(tmp_path, clock)
    second.record(*rows(5))
    assert second.close() == [worker_file(tmp_path, START, segment=1)]

    assert read_profile(worker_file(tmp_path, START)).metadata["rows"] == "8"
    view = read_window_profiles(window_folder(tmp_path, TAG, START))
    assert counts(view)["score"] == 13
    assert view.metadata["rows"] == "13"
    assert view.metadata["worker"] == "host-1"


def test_a_window_merges_every_worker_and_never_reads_a_leftover_temporary_file(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1)
    for worker, count in (("host-1", 6), ("host-2", 4)):
        traffic = TrafficProfiler(tmp_path, TAG, worker, window_seconds=WINDOW, clock=clock)
        traffic.record(*rows(count))
        traffic.close()
    folder = window_folder(tmp_path, TAG, START)
    # What a crash in the middle of a write leaves: a half-written temporary file, under atomic_path's name.
    (folder / ".tmp-4242-host-3-0.bin").write_bytes(read_profile(folder / "host-1-0.bin").serialize()[:100])

    assert [path.name for path in window_profile_paths(folder)] == ["host-1-0.bin", "host-2-0.bin"]
    merged = read_window_profiles(folder)
    assert counts(merged) == {"tenure_days": 10, "plan": 10, "score": 10}
    assert merged.metadata["rows"] == "10"
    assert merged.metadata["worker"] == "host-1,host-2"
    assert merged.metadata["model_tag"] == TAG


def test_an_empty_window_folder_is_an_error_not_an_empty_profile(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_window_profiles(tmp_path)


def test_a_failed_write_keeps_the_window_for_the_next_flush(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock(T0 + 1)
    traffic = profiler(tmp_path, clock)
    traffic.record(*rows(3))
    clock.now = T0 + WINDOW
    with monkeypatch.context() as patch:
        patch.setattr("cicloml.traffic.write_profile", _failing_write)
        with pytest.raises(OSError):
            traffic.flush()
    assert traffic.flush() == [worker_file(tmp_path, START)]
    assert counts(read_profile(worker_file(tmp_path, START)))["score"] == 3


def test_a_feature_named_like_the_prediction_column_fails_profiling_not_the_caller(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0))
    assert traffic.record({"score": [1.0]}, [0.5]) == 0
    with pytest.raises(ValueError, match="collides"):
        traffic.flush()


@pytest.mark.parametrize("worker", ["", "a/b", ".hidden"])
def test_a_worker_id_that_cannot_name_a_file_is_refused(tmp_path: Path, worker: str) -> None:
    with pytest.raises(ValueError):
        TrafficProfiler(tmp_path, TAG, worker)


def test_a_model_tag_without_a_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        TrafficProfiler(tmp_path, "churn", "host-1")


def _failing_write(view: DatasetProfileView, path: Path) -> Path:
    raise OSError("no space left on device")


def test_a_batch_without_a_feature_counts_its_rows_as_nulls_of_that_feature(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0))
    traffic.record(*rows(4))
    traffic.record({"tenure_days": [7]}, [0.5])
    traffic.close()

    plan = read_profile(worker_file(tmp_path, START)).get_column("plan").get_metric("counts")
    assert (plan.n.value, plan.null.value) == (5, 1)


def test_columns_not_aligned_with_the_scores_fail_profiling_not_the_caller(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0))
    assert traffic.record({"tenure_days": [1, 2]}, [0.5]) == 0
    with pytest.raises(ValueError, match="differ in length"):
        traffic.flush()


# Every kind of column a caller might hand over: the typed ones the service sends take ColumnarProfile's shortcut,
# the others whylogs' own preprocessing.
MIXED_COLUMNS: dict[str, list[Any]] = {
    "ints": [3, 1, 4, 1, 5, 9, 2, 6],
    "floats": [0.5, math.nan, 2.25, -1.0, 0.0, 7.5, 3.0, math.inf],
    "ints_and_floats": [1, 2.5, 3, 4, 5, 6, 7, 8.25],
    "strings": ["basic", "premium", "basic", "standard", "basic", "premium", "basic", "basic"],
    "strings_and_nulls": ["basic", None, "basic", "standard", None, "premium", "basic", "basic"],
    "ints_and_nulls": [1, None, 3, 4, 5, 6, 7, 8],
    "beyond_int64": [2**64 - 1, 1, 2, 3, 4, 5, 6, 7],
    "bools": [True, False, True, True, False, True, True, True],
    "anything": ["a", 1, 2.5, None, "b", True, "a", 3],
    "nulls": [None] * 8,
}


def summary(view: DatasetProfileView, column: str) -> dict[str, Any]:
    """A column's metrics as values, NaN made comparable (a mean over inf is NaN in both)."""
    values = view.get_column(column).to_summary_dict()
    return {key: "NaN" if isinstance(value, float) and math.isnan(value) else value for key, value in values.items()}


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # whylogs' variance of a column holding inf
def test_a_traffic_profile_holds_the_same_metrics_as_profile_frame_of_the_same_rows() -> None:
    traffic = ColumnarProfile(dataset_timestamp=START)
    traffic.track(MIXED_COLUMNS)
    live, reference = traffic.view(), profile_frame(pd.DataFrame(MIXED_COLUMNS))

    for column in MIXED_COLUMNS:
        assert summary(live, column) == summary(reference, column), column
    # Only what the drift check reads: no cardinality sketches, int min/max or frequent items of numbers.
    assert set(reference.get_column("ints").get_metric_names()) == {"counts", "types", "distribution"}
    assert set(reference.get_column("strings").get_metric_names()) == {
        "counts",
        "types",
        "distribution",
        "frequent_items",
    }
    assert live.dataset_timestamp == START


def test_a_column_of_categories_first_seen_as_nan_still_gets_its_frequent_items() -> None:
    traffic = ColumnarProfile(dataset_timestamp=START)
    traffic.track({"plan": [math.nan, math.nan]})  # typed as numbers by whylogs: no frequent items
    traffic.track({"plan": ["basic", "premium", "basic"]})

    column = traffic.view().get_column("plan")
    items = column.get_metric("frequent_items").to_summary_dict()["frequent_strings"]
    assert {item.value: item.est for item in items} == {"basic": 2, "premium": 1}
    assert (column.get_metric("counts").n.value, column.get_metric("counts").null.value) == (5, 2)


def test_windows_are_listed_oldest_first_and_the_newest_finished_one_is_chosen(tmp_path):
    assert window_starts(tmp_path, "churn:v1") == []
    hours = [datetime(2026, 11, 22, hour, tzinfo=timezone.utc) for hour in (13, 11, 12)]
    for start in hours:
        (model_folder(tmp_path, "churn:v1") / start.strftime(WINDOW_FORMAT)).mkdir(parents=True)
    starts = window_starts(tmp_path, "churn:v1")
    assert starts == sorted(hours)
    # At 13:30 the 13:00 window is still being written: the newest finished one is 12:00.
    assert newest_finished_window(starts, 3600, hours[0] + timedelta(minutes=30)) == hours[2]
    assert newest_finished_window(starts, 3600, hours[0] + timedelta(hours=1)) == hours[0]
    assert newest_finished_window([hours[0]], 3600, hours[0]) == hours[0]  # none has finished: the newest


def test_each_segment_is_on_disk_once_its_time_passes_and_the_window_reads_every_row(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1)
    traffic = profiler(tmp_path, clock, segment_seconds=10)
    for segment, count in enumerate((5, 3, 4)):
        traffic.record(*rows(count))
        assert traffic.flush() == [], "a segment younger than segment_seconds stays in memory"
        clock.now += 10
        assert traffic.flush() == [worker_file(tmp_path, START, segment=segment)]
        assert read_profile(worker_file(tmp_path, START, segment=segment)).metadata["rows"] == str(count)
    assert clock.now < T0 + WINDOW, "every segment was written before its window ended"

    merged = read_window_profiles(window_folder(tmp_path, TAG, START))
    assert counts(merged) == {"tenure_days": 12, "plan": 12, "score": 12}
    assert merged.metadata["rows"] == "12"
    assert traffic.close() == []


def test_a_segment_is_written_as_soon_as_it_holds_segment_rows(tmp_path: Path) -> None:
    traffic = profiler(tmp_path, FakeClock(T0 + 1), segment_rows=10)
    traffic.record(*rows(6))
    assert traffic.flush() == []
    traffic.record(*rows(6))
    assert traffic.flush() == [worker_file(tmp_path, START)]
    assert read_profile(worker_file(tmp_path, START)).metadata["rows"] == "12"


def test_a_worker_killed_without_close_loses_at_most_its_unwritten_segment(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 1)
    traffic = profiler(tmp_path, clock, segment_seconds=10)
    traffic.record(*rows(7))
    traffic.flush()  # as the worker thread does every second
    clock.now += 10
    assert traffic.flush() == [worker_file(tmp_path, START)]
    traffic.record(*rows(4))
    traffic.flush()  # profiled into the next segment, not yet due
    del traffic  # kill -9: no close, nothing more written

    merged = read_window_profiles(window_folder(tmp_path, TAG, START))
    assert counts(merged)["score"] == 7 and merged.metadata["rows"] == "7"  # lost: only the 4 rows after it


@pytest.mark.parametrize("seconds", [0, 61])
def test_a_segment_longer_than_a_minute_or_empty_is_refused(tmp_path: Path, seconds: int) -> None:
    with pytest.raises(ValueError, match="segment_seconds"):
        TrafficProfiler(tmp_path, TAG, "host-1", segment_seconds=seconds)
