import pandas as pd
import pytest

from cicloml.checks import check_training_frame, validate_training_frame
from cicloml.errors import DataError
from cicloml.spec import ChecksSpec

LIMITS = ChecksSpec(min_rows=4, max_null_rate=0.25, ranges={"charges": (0, 100)})
KEYS, FEATURES = ["customer_id", "event_timestamp"], ["charges", "plan"]


def frame(**changes) -> pd.DataFrame:
    base = pd.DataFrame(
        {
            "customer_id": [1, 2, 3, 4, 5, 6],
            "event_timestamp": pd.to_datetime(["2026-01-01"] * 3 + ["2026-01-08"] * 3, utc=True),
            "charges": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
            "plan": ["a", "b", "a", "b", "a", "b"],
            "churned": [0, 1, 0, 1, 0, 0],
        }
    )
    for column, values in changes.items():
        base[column] = values
    return base


def failures(data: pd.DataFrame) -> set[tuple[str, str | None]]:
    report = check_training_frame(data, label="churned", keys=KEYS, features=FEATURES, limits=LIMITS)
    return {(failure.rule, failure.column) for failure in report.failures}


def test_a_good_frame_passes():
    assert failures(frame()) == set()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (frame().head(3), ("min_rows", None)),
        (frame().head(0), ("empty_window", None)),
        (frame().drop(columns="churned"), ("label_missing", "churned")),
        (frame(churned=[0, 1, None, 1, 0, 0]), ("label_missing", "churned")),
        (frame(churned=[0] * 6), ("label_single_class", "churned")),
        (frame(churned=[0, 1, 2, 1, 0, 0]), ("label_not_binary", "churned")),
        (frame(charges=[None, None, 30.0, 40.0, 50.0, 60.0]), ("null_rate", "charges")),
        (frame(charges=[10.0, 20.0, 30.0, 40.0, 50.0, 600.0]), ("value_range", "charges")),
        (frame(customer_id=[1, 1, 3, 4, 5, 6]), ("duplicate_rows", "customer_id, event_timestamp")),
        (frame().drop(columns="plan"), ("column_missing", "plan")),
    ],
)
def test_each_bad_case_names_its_rule_and_column(data, expected):
    assert expected in failures(data)


def test_a_range_on_an_unknown_column_is_reported():
    report = check_training_frame(
        frame(), label="churned", keys=KEYS, features=FEATURES, limits=ChecksSpec(min_rows=1, ranges={"x": (0, 1)})
    )
    assert [(f.rule, f.column) for f in report.failures] == [("range_column_unknown", "x")]


def test_validate_raises_with_every_failure_listed():
    bad = frame(churned=[0] * 6, charges=[10.0, 20.0, 30.0, 40.0, 50.0, -1.0])
    with pytest.raises(DataError) as error:
        validate_training_frame(bad, label="churned", keys=KEYS, features=FEATURES, limits=LIMITS)
    message = str(error.value)
    assert "failed 2 check(s)" in message
    assert "churned: label_single_class: every label is 0" in message
    assert "charges: value_range: 1 values outside [0.0, 100.0]" in message
