import pandas as pd
import pytest

from cicloml.errors import DataError
from cicloml.training import split_by_time


def frame_over(days: int, rows_per_day: int = 10) -> pd.DataFrame:
    times = pd.date_range("2026-01-01", periods=days, freq="D", tz="UTC").repeat(rows_per_day)
    return pd.DataFrame({"event_timestamp": times, "x": range(len(times))})


def test_the_newest_rows_are_the_test_window_and_no_timestamp_straddles_splits():
    split = split_by_time(frame_over(20), "event_timestamp", validation_fraction=0.15, test_fraction=0.2)
    train, validation, test = (set(part["event_timestamp"]) for part in (split.train, split.validation, split.test))
    assert max(train) < min(validation) and max(validation) < min(test)
    assert (len(split.train), len(split.validation), len(split.test)) == (130, 30, 40)


def test_too_few_distinct_times_to_split_is_a_clear_error():
    with pytest.raises(DataError, match="the validation split is empty: 2 distinct event_timestamp values"):
        split_by_time(frame_over(2, 50), "event_timestamp", validation_fraction=0.15, test_fraction=0.2)
