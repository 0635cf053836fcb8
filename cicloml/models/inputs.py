"""From Feast values to model columns: every Feast type a model can read gets a role, and an encoding.

A feature service hands over values as Feast types them; the model families read numeric and categorical columns.
The role of a feature says how one becomes the other:

- number (Int32, Int64, Float32, Float64): the value, as a float;
- category (String): the string, one-hot encoded by the preprocessing;
- flag (Bool): 1.0 or 0.0;
- vector (arrays of Int32, Int64, Float32, Float64): `<name>_0` ... `<name>_<n-1>`, one number per position. The
  length is learned from the training frame, and a served vector of another length is not scored;
- timestamp (UnixTimestamp): `<name>_age_days`, days from the value to the moment of prediction (the label's
  event time in training, the request's time when serving).

Anything else (Map, Json, Struct, Bytes, arrays of strings, sets...) has no role (`cicloml.contract` maps Feast
types to roles and refuses the rest); the project spec's `features.exclude` leaves such a feature out of the model.
Missing values stay missing (NaN). Training, serving, batch scoring and profiling all encode with `encode_columns`.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import pandas as pd

from cicloml.errors import DataError

Role = Literal["number", "category", "flag", "vector", "timestamp"]

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class FeatureInput:
    """One feature of the feature service as the model reads it."""

    name: str
    role: Role
    width: int = 0
    """Vectors: the number of positions (learned from the training frame)."""

    @property
    def columns(self) -> list[str]:
        """The model columns this feature becomes."""
        if self.role == "vector":
            return [f"{self.name}_{position}" for position in range(self.width)]
        if self.role == "timestamp":
            return [f"{self.name}_age_days"]
        return [self.name]


def learn_vector_widths(inputs: Sequence[FeatureInput], frame: pd.DataFrame) -> list[FeatureInput]:
    """`inputs` with each vector's width set to the length its values have in `frame`; a `DataError` naming the
    feature when its vectors do not all have one length (a model needs a fixed number of columns)."""
    learned = []
    for feature in inputs:
        if feature.role == "vector":
            lengths = {len(value) for value in frame[feature.name] if _present(value)}
            if len(lengths) != 1:
                found = ", ".join(map(str, sorted(lengths))) if lengths else "none (every value is missing)"
                raise DataError(
                    f"feature {feature.name!r} is an array: cicloml expands it into one column per position, so every "
                    f"value must have the same length; lengths found: {found} (fix the data, or leave the feature "
                    "out with features.exclude in the project spec)"
                )
            feature = FeatureInput(feature.name, "vector", width=lengths.pop())
        learned.append(feature)
    return learned


def encode_columns(
    inputs: Sequence[FeatureInput], columns: Mapping[str, Sequence[Any]], as_of: Sequence[datetime] | datetime
) -> tuple[dict[str, Sequence[Any]], dict[int, list[str]]]:
    """Model columns from Feast values: `columns` maps each input's name to one value per row; `as_of` is the moment
    of prediction (one for all rows, or one per row) that timestamps are aged against.

    Returns the model columns and, per row, the features whose value could not be encoded (a vector of the wrong
    length), which are NaN in the columns. Numbers and categories pass through as they are.
    """
    encoded: dict[str, Sequence[Any]] = {}
    invalid: dict[int, list[str]] = {}
    for feature in inputs:
        values = columns[feature.name]
        if feature.role in ("number", "category"):
            encoded[feature.name] = values
        elif feature.role == "flag":
            encoded[feature.name] = [float(value) if _present(value) else math.nan for value in values]
        elif feature.role == "timestamp":
            encoded[feature.columns[0]] = _ages_in_days(values, as_of)
        else:
            matrix = np.full((len(values), feature.width), np.nan)
            for row, value in enumerate(values):
                if not _present(value):
                    continue
                if len(value) != feature.width:
                    invalid.setdefault(row, []).append(feature.name)
                    continue
                matrix[row] = np.asarray(value, dtype=np.float64)
            encoded.update((name, matrix[:, position]) for position, name in enumerate(feature.columns))
    return encoded, invalid


def encode_frame(inputs: Sequence[FeatureInput], frame: pd.DataFrame, as_of: str | datetime) -> pd.DataFrame:
    """`frame` with the model columns of `inputs` in place of the features they encode (offline frames: training,
    batch scoring). Timestamps age against `as_of`: a column of `frame` (each row's moment) or one moment for all.
    Vectors of the wrong length become missing values."""
    if all(feature.role in ("number", "category") for feature in inputs):
        return frame
    moments = frame[as_of].tolist() if isinstance(as_of, str) else as_of
    encoded, _ = encode_columns(inputs, {feature.name: frame[feature.name].tolist() for feature in inputs}, moments)
    replaced = [feature.name for feature in inputs if feature.columns != [feature.name]]
    added = pd.DataFrame({name: values for name, values in encoded.items() if name not in frame}, index=frame.index)
    return pd.concat([frame.drop(columns=replaced), added], axis=1)


def _ages_in_days(values: Sequence[Any], as_of: Sequence[datetime] | datetime) -> np.ndarray:
    moments = [as_of] * len(values) if isinstance(as_of, datetime) else as_of
    return np.array(
        [
            (_utc(moment) - _utc(value)).total_seconds() / SECONDS_PER_DAY if _present(value) else math.nan
            for value, moment in zip(values, moments, strict=True)
        ],
        dtype=np.float64,
    )


def _utc(moment: Any) -> datetime:
    """A datetime in UTC: Feast's values are aware; a naive one (or epoch seconds) is taken as UTC."""
    if isinstance(moment, int | float | np.integer | np.floating):
        return datetime.fromtimestamp(float(moment), timezone.utc)
    moment = pd.Timestamp(moment).to_pydatetime() if not isinstance(moment, datetime) else moment
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, float):
        return not math.isnan(value)
    return value is not pd.NA and value is not pd.NaT
