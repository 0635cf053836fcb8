"""Request and response shapes of the prediction service, generated from the pinned model and its feature contract.

- `/predict` takes `{"entity_ids": [...]}` when the feature service has one join key and needs nothing from the
  request; otherwise `{"entities": [{...}]}`, one object per entity with every join key and every request field
  the service's on-demand views read (typed from Feast's declarations).
- `/predict_features` takes the feature service's features themselves, as Feast would return them (on-demand
  features as their outputs): numbers, strings, booleans, timestamps and fixed-length arrays by each feature's role.

Every field is required and typed strictly, nothing extra is accepted, so a wrong type or a missing field is a 400
naming the field before any scoring happens.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from feast.value_type import ValueType
from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, StrictStr, create_model

from cicloml.contract import FeatureContract
from cicloml.models.inputs import FeatureInput
from cicloml.models.preprocessing import FeatureSchema

MAX_ROWS = 1000
"""Ids or feature rows per request: bounds a request's work (larger batches are split by the caller)."""

Status = Literal["ok", "unknown_entity", "missing_values", "stale_values"]

Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""JSON numbers only (no "1.5" strings, no booleans); JSON's NaN/Infinity extensions are refused too."""

Int64 = Annotated[int, Strict(), Field(ge=-(2**63), le=2**63 - 1)]
Int32 = Annotated[int, Strict(), Field(ge=-(2**31), le=2**31 - 1)]
Key = Annotated[StrictStr, Field(min_length=1, max_length=256)]

VALUE_TYPES: dict[ValueType, Any] = {
    ValueType.INT64: Int64,
    ValueType.INT32: Int32,
    ValueType.STRING: StrictStr,
    ValueType.DOUBLE: Number,
    ValueType.FLOAT: Number,
    ValueType.BOOL: StrictBool,
}
"""JSON types of request fields, by Feast value type (bounded, so a value Feast cannot encode is a 400, not a
failure inside the lookup)."""

KEY_TYPES: dict[ValueType, tuple[Any, Any]] = {
    ValueType.INT64: (Int64, 0),
    ValueType.INT32: (Int32, 0),
    ValueType.STRING: (Key, "0"),
}
"""JSON types of join keys, with a key of that type for warming up."""

Entity = int | str | dict[str, int | str]


class Prediction(BaseModel):
    """One row's answer. Only `ok` rows carry a score: a row whose features are unknown, missing or stale gets a
    status and a reason instead, never a score computed from imputed `None`s."""

    entity_id: Entity | None
    """The requested id (its join keys by name, for a compound key); None for caller-supplied features."""
    status: Status
    score: float | None
    """P(label = 1); None unless status is ok."""
    decision: bool | None
    """score >= the model's decision threshold (chosen on validation data at training time)."""
    reason: str | None
    """Why there is no score (which features are missing or stale, or that the entity is unknown)."""
    model_tag: str


def takes_entity_ids(contract: FeatureContract) -> bool:
    """Whether requests name entities by a bare id: one join key, no request fields."""
    return len(contract.join_keys) == 1 and not contract.request_fields


def entity_ids_type(contract: FeatureContract) -> Any:
    """`list[id]` holding 1 to MAX_ROWS ids of the entity's key type (strict: "42" is not the int 42)."""
    (key,) = contract.join_keys
    return _rows(KEY_TYPES[contract.key_types[key]][0])


def entity_rows_type(contract: FeatureContract) -> Any:
    """`list[EntityRow]`: per entity, every join key and every request field, typed from the Feast declarations."""
    fields: dict[str, Any] = {key: (KEY_TYPES[contract.key_types[key]][0], ...) for key in contract.join_keys}
    fields.update({name: (VALUE_TYPES[value_type], ...) for name, value_type in contract.request_fields.items()})
    return _rows(create_model("EntityRow", __config__=ConfigDict(extra="forbid"), **fields))


def warm_up_entity(contract: FeatureContract) -> dict[str, Any]:
    """One entity row of the right types (no such entity need exist), for a first lookup before serving."""
    row = {key: KEY_TYPES[contract.key_types[key]][1] for key in contract.join_keys}
    samples = {ValueType.STRING: "0", ValueType.BOOL: False}
    row.update({name: samples.get(value_type, 0) for name, value_type in contract.request_fields.items()})
    return row


def feature_row_model(schema: FeatureSchema) -> type[BaseModel]:
    """A pydantic model with one required field per feature of the feature service the model reads."""
    fields = {feature.name: (_feature_type(feature), ...) for feature in schema.feature_inputs}
    return create_model("FeatureRow", __config__=ConfigDict(extra="forbid"), **fields)


def feature_rows_type(row_model: type[BaseModel]) -> Any:
    return _rows(row_model)


def _feature_type(feature: FeatureInput) -> Any:
    if feature.role == "category":
        return StrictStr
    if feature.role == "flag":
        return StrictBool
    if feature.role == "timestamp":
        return datetime  # ISO 8601 text (or epoch seconds); aged against the time of the request
    if feature.role == "vector":
        return Annotated[list[Number], Field(min_length=feature.width, max_length=feature.width)]
    return Number


def _rows(item_type: Any) -> Any:
    return Annotated[list[item_type], Field(min_length=1, max_length=MAX_ROWS)]  # type: ignore[valid-type]
