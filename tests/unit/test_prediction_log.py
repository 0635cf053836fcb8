"""The service's prediction log: rows kept per window, written atomically as Parquet segment files per worker
(every `segment_seconds`, `segment_rows`, at the window's end, on close), and read back with their window."""

import time
from datetime import datetime, timezone

import pandas as pd
import pytest

from cicloml import prediction_log
from cicloml.prediction_log import PredictionLog, read_prediction_log, window_logged_rows
from cicloml.profiling import window_folder

TAG = "churn:v1"
HOUR = 3600
START = 1_800_000_000 // HOUR * HOUR  # a window boundary


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_close_writes_one_file_per_window_and_they_read_back(tmp_path):
    clock = Clock(START + 10)
    log = PredictionLog(tmp_path, TAG, "host-1", window_seconds=HOUR, clock=clock)
    log.record({"customer_id": [1001, 1002]}, [0.1, 0.9])
    clock.now = START + HOUR + 5  # the next window
    log.record({"customer_id": [1003]}, [0.5])

    written = log.close()
    assert [path.parent.name for path in written] == ["20270115T080000Z", "20270115T090000Z"]
    assert all(path.name == "host-1-0.parquet" for path in written)

    rows = read_prediction_log(tmp_path, TAG)
    assert rows["customer_id"].tolist() == [1001, 1002, 1003]
    assert rows["score"].tolist() == [0.1, 0.9, 0.5]
    first = datetime.fromtimestamp(START, timezone.utc)
    assert rows["window_start"].tolist() == [pd.Timestamp(first)] * 2 + [pd.Timestamp(first) + pd.Timedelta(hours=1)]
    assert rows["scored_at"].iloc[2] == pd.Timestamp(START + HOUR + 5, unit="s", tz="UTC")


def test_a_window_is_written_once_it_has_ended_without_close(tmp_path, monkeypatch):
    monkeypatch.setattr(prediction_log, "WRITE_DELAY_SECONDS", 0.05)
    log = PredictionLog(tmp_path, TAG, "host-1", window_seconds=1)
    log.record({"customer_id": ["a"]}, [0.3])
    deadline = time.monotonic() + 5
    while read_prediction_log(tmp_path, TAG).empty and time.monotonic() < deadline:
        time.sleep(0.05)
    assert read_prediction_log(tmp_path, TAG)["customer_id"].tolist() == ["a"]
    assert log.close() == []  # nothing left to write


def test_rows_after_close_are_dropped_and_close_is_idempotent(tmp_path):
    log = PredictionLog(tmp_path, TAG, "host-1", clock=Clock(START))
    log.record({"customer_id": [1]}, [0.2])
    assert len(log.close()) == 1
    log.record({"customer_id": [2]}, [0.4])
    assert log.close() == []
    assert read_prediction_log(tmp_path, TAG)["customer_id"].tolist() == [1]


def test_a_compound_key_is_logged_one_column_per_join_key(tmp_path):
    log = PredictionLog(tmp_path, TAG, "host-1", clock=Clock(START))
    log.record({"user_id": ["u1", "u2"], "item_id": [7, 8]}, [0.2, 0.6])
    log.close()
    rows = read_prediction_log(tmp_path, TAG)
    assert rows[["user_id", "item_id", "score"]].values.tolist() == [["u1", 7, 0.2], ["u2", 8, 0.6]]


def test_reading_ignores_a_write_in_progress_and_an_empty_log_has_the_columns(tmp_path):
    empty = read_prediction_log(tmp_path, TAG)
    assert empty.empty and list(empty.columns) == ["scored_at", "score", "window_start"]
    folder = tmp_path / "churn" / "v1" / "20270115T080000Z"
    folder.mkdir(parents=True)
    (folder / ".tmp-99-host-2.parquet").write_bytes(b"half a file")
    assert read_prediction_log(tmp_path, TAG).empty


@pytest.mark.parametrize("worker", ["", "a/b", ".hidden"])
def test_a_worker_id_must_name_a_file(tmp_path, worker):
    with pytest.raises(ValueError, match="cannot name a file"):
        PredictionLog(tmp_path, TAG, worker)


def segment_file(tmp_path, segment: int, window_start: int = START):
    start = datetime.fromtimestamp(window_start, timezone.utc)
    return window_folder(tmp_path, TAG, start) / f"host-1-{segment}.parquet"


def test_each_segment_is_on_disk_once_its_time_passes_and_the_log_reads_every_row(tmp_path):
    clock = Clock(START + 10)
    log = PredictionLog(tmp_path, TAG, "host-1", window_seconds=HOUR, segment_seconds=10, clock=clock)
    recorded = []
    for segment, ids in enumerate(([1, 2], [3], [4, 5, 6])):
        log.record({"customer_id": ids}, [0.5] * len(ids))
        recorded += ids
        log.flush()
        assert not segment_file(tmp_path, segment).exists(), "a segment younger than segment_seconds stays in memory"
        clock.now += 10
        log.flush()  # what the background thread does each second (it may have done it already)
        assert segment_file(tmp_path, segment).exists()
    assert clock.now < START + HOUR, "every segment was written before its window ended"

    rows = read_prediction_log(tmp_path, TAG)
    assert sorted(rows["customer_id"]) == recorded
    assert window_logged_rows(tmp_path, TAG, datetime.fromtimestamp(START, timezone.utc)) == len(recorded)
    assert log.close() == []


def test_a_segment_is_written_as_soon_as_it_holds_segment_rows(tmp_path):
    log = PredictionLog(tmp_path, TAG, "host-1", segment_rows=3, clock=Clock(START))
    log.record({"customer_id": [1, 2]}, [0.1, 0.2])
    log.flush()
    assert not segment_file(tmp_path, 0).exists()
    log.record({"customer_id": [3]}, [0.3])
    log.flush()
    assert pd.read_parquet(segment_file(tmp_path, 0))["customer_id"].tolist() == [1, 2, 3]


def test_a_worker_killed_without_close_loses_at_most_its_unwritten_segment(tmp_path):
    clock = Clock(START + 10)
    log = PredictionLog(tmp_path, TAG, "host-1", window_seconds=HOUR, segment_seconds=10, clock=clock)
    log.record({"customer_id": [1, 2, 3]}, [0.1, 0.2, 0.3])
    clock.now += 10
    log.flush()
    log.record({"customer_id": [4]}, [0.4])  # the next segment, not yet due
    del log  # kill -9: no close, nothing more written

    assert sorted(read_prediction_log(tmp_path, TAG)["customer_id"]) == [1, 2, 3]


def test_a_restarted_worker_adds_a_segment_instead_of_overwriting_its_own(tmp_path):
    for ids in ([1], [2]):
        log = PredictionLog(tmp_path, TAG, "host-1", clock=Clock(START))
        log.record({"customer_id": ids}, [0.5])
        log.close()
    assert segment_file(tmp_path, 1).exists()
    assert sorted(read_prediction_log(tmp_path, TAG)["customer_id"]) == [1, 2]
