"""Data checks a training frame must pass before a model is fitted; each failure names the column and the rule."""

import pandas as pd
from pydantic import BaseModel

from cicloml.errors import DataError
from cicloml.spec import ChecksSpec


class CheckFailure(BaseModel):
    rule: str
    column: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.column or '(frame)'}: {self.rule}: {self.detail}"


class DataCheckReport(BaseModel):
    rows: int
    failures: list[CheckFailure]

    @property
    def passed(self) -> bool:
        return not self.failures

    def raise_for_failures(self) -> None:
        """Raise a `DataError` listing every failure, one per line."""
        if self.failures:
            lines = "\n".join(f"  {failure}" for failure in self.failures)
            raise DataError(f"training data failed {len(self.failures)} check(s):\n{lines}")


def check_training_frame(
    frame: pd.DataFrame, *, label: str, keys: list[str], features: list[str], limits: ChecksSpec
) -> DataCheckReport:
    """Run every check and collect the failures (the report is complete, not just the first problem)."""
    failures: list[CheckFailure] = []

    def fail(rule: str, column: str | None, detail: str) -> None:
        failures.append(CheckFailure(rule=rule, column=column, detail=detail))

    if frame.empty:
        fail("empty_window", None, "the training window holds no rows")
    elif len(frame) < limits.min_rows:
        fail("min_rows", None, f"{len(frame)} rows, at least {limits.min_rows} required (checks.min_rows)")

    if label not in frame.columns:
        fail("label_missing", label, "the label column is absent")
    elif not frame.empty:
        values = frame[label]
        if values.isna().any():
            fail("label_missing", label, f"{int(values.isna().sum())} rows have no label")
        classes = set(values.dropna().unique())
        if not classes <= {0, 1}:
            fail("label_not_binary", label, f"values {sorted(classes - {0, 1})[:5]} are not 0/1")
        elif len(classes) < 2:
            fail("label_single_class", label, f"every label is {classes.pop() if classes else 'missing'}")

    for column in [*keys, *features]:
        if column not in frame.columns:
            fail("column_missing", column, "expected from the feature service but absent")
    if not frame.empty and all(column in frame.columns for column in keys):
        duplicated = int(frame.duplicated(keys).sum())
        if duplicated:
            fail("duplicate_rows", ", ".join(keys), f"{duplicated} rows repeat an entity and time")

    present = [column for column in features if column in frame.columns]
    for column, rate in frame[present].isna().mean().items() if not frame.empty else []:
        if rate > limits.max_null_rate:
            fail("null_rate", str(column), f"{rate:.1%} null, at most {limits.max_null_rate:.1%} allowed")

    for column, (low, high) in limits.ranges.items():
        if column not in frame.columns:
            fail("range_column_unknown", column, "checks.ranges names a column the frame does not have")
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        outside = ((values < low) if low is not None else False) | ((values > high) if high is not None else False)
        if outside.any():
            fail("value_range", column, f"{int(outside.sum())} values outside [{low}, {high}]")

    return DataCheckReport(rows=len(frame), failures=failures)


def validate_training_frame(
    frame: pd.DataFrame, *, label: str, keys: list[str], features: list[str], limits: ChecksSpec
) -> DataCheckReport:
    """`check_training_frame`, raising a `DataError` that lists every failure if any check failed."""
    report = check_training_frame(frame, label=label, keys=keys, features=features, limits=limits)
    report.raise_for_failures()
    return report
