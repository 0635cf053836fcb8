"""Request and response shapes of the prediction service, generated from the pinned model's feature schema.

The caller-supplied features are validated by a pydantic model built from the model's `FeatureSchema` (numeric
features are strict numbers, categorical ones strict strings, every feature required, nothing extra), so a wrong
type or a missing field is a 400 naming the field before any scoring happens.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr, create_model

from cicloml.models.preprocessing import FeatureSchema

MAX_ROWS = 1000
"""Ids or feature rows per request: bounds a request's work (larger batches are split by the caller)."""

Status = Literal["ok", "unknown_entity", "missing_values", "stale_values"]


class Prediction(BaseModel):
    """One row's answer. Only `ok` rows carry a score: a row whose features are unknown, missing or stale gets a
    status and a reason instead, never a score computed from imputed `None`s."""

    entity_id: int | str | None
    """The requested id; None for caller-supplied features."""
    status: Status
    score: float | None
    """P(label = 1); None unless status is ok."""
    decision: bool | None
    """score >= the model's decision threshold (chosen on validation data at training time)."""
    reason: str | None
    """Why there is no score (which features are missing or stale, or that the entity is unknown)."""
    model_tag: str


def entity_ids_type(id_type: type) -> Any:
    """`list[id]` holding 1 to MAX_ROWS ids of the entity's key type (strict: "42" is not the int 42)."""
    return Annotated[list[id_type], Field(min_length=1, max_length=MAX_ROWS)]  # type: ignore[valid-type]


def feature_row_model(schema: FeatureSchema) -> type[BaseModel]:
    """A pydantic model with one required field per feature: finite numbers for numeric, strings for categorical."""
    # Strict: JSON numbers only (no "1.5" strings, no booleans); JSON's NaN/Infinity extensions are refused too.
    number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
    fields: dict[str, Any] = {name: (number, ...) for name in schema.numeric}
    fields.update({name: (StrictStr, ...) for name in schema.categorical})
    return create_model("FeatureRow", __config__=ConfigDict(extra="forbid"), **fields)


def feature_rows_type(row_model: type[BaseModel]) -> Any:
    return Annotated[list[row_model], Field(min_length=1, max_length=MAX_ROWS)]  # type: ignore[valid-type]
