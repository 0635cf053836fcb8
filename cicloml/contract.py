"""A Feast feature service resolved into what training and serving need from it: the contract between them.

`inspect_service` reads a feature service from the registry once and works out, for the features a model uses:
- the ordinary feature views to read, and which of their features: the model's own, plus whatever the service's
  on-demand views take as input (an input need not be in the service itself);
- the on-demand views to compute after the lookup, with Feast's own transformation (`python` or `pandas` mode);
- the request fields a caller supplies per entity row (in training, columns of the label table);
- the join keys rows are looked up by, with their Feast value types;
- the role each feature plays in the model (`cicloml.models.inputs`).

What cannot be supported is collected, not raised one at a time: `cicloml check` prints every problem with its fix,
and `FeatureContract.resolve` refuses with all of them before any work starts.
"""

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
from feast import FeatureService, FeatureStore, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.value_type import ValueType

from cicloml.errors import ConfigError
from cicloml.models.inputs import FeatureInput, Role
from cicloml.models.preprocessing import FeatureSchema

ROLES: dict[ValueType, Role] = {
    ValueType.INT32: "number",
    ValueType.INT64: "number",
    ValueType.FLOAT: "number",
    ValueType.DOUBLE: "number",
    ValueType.STRING: "category",
    ValueType.BOOL: "flag",
    ValueType.UNIX_TIMESTAMP: "timestamp",
    ValueType.INT32_LIST: "vector",
    ValueType.INT64_LIST: "vector",
    ValueType.FLOAT_LIST: "vector",
    ValueType.DOUBLE_LIST: "vector",
}
"""The Feast value types a model can read, and how (see `cicloml.models.inputs`)."""

KEY_TYPES = (ValueType.INT64, ValueType.INT32, ValueType.STRING)
"""Join key types entities can be looked up by (and requested over HTTP)."""

REQUEST_TYPES = (
    ValueType.INT64,
    ValueType.INT32,
    ValueType.DOUBLE,
    ValueType.FLOAT,
    ValueType.STRING,
    ValueType.BOOL,
)
"""Request-source field types a caller can send as JSON scalars."""

MODES = ("python", "pandas")
"""On-demand transformation modes computed here, with Feast's own code."""


@dataclass(frozen=True)
class ViewRead:
    """One ordinary feature view and the features read from it."""

    view: FeatureView
    """The view, with the projection it is read through."""
    features: tuple[str, ...]
    join_keys: tuple[str, ...]

    @property
    def ttl(self) -> timedelta | None:
        return self.view.ttl or None


@dataclass(frozen=True)
class OnDemandStep:
    """One on-demand feature view computed from its inputs, with Feast's transformation of the view."""

    view: OnDemandFeatureView
    outputs: tuple[str, ...]
    """The outputs the model uses."""
    inputs: tuple[str, ...]
    """Features read from ordinary views, then request fields."""
    input_types: tuple[ValueType, ...]

    def compute(self, columns: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
        """The outputs for rows given as columns (every input present in every row).

        Inputs are handed over as plain Python values of their Feast type whatever container they came in (an
        integer feature arrives as a float from a pandas frame with nulls, as an int from the online store), so
        the training frame and an online request give the transformation identical values.
        """
        rows = len(columns[self.inputs[0]]) if self.inputs else 0
        if not rows:
            return {name: [] for name in self.outputs}
        values = {
            name: [_python_value(value, value_type) for value in columns[name]]
            for name, value_type in zip(self.inputs, self.input_types, strict=True)
        }
        if self.view.mode == "pandas":
            # The view's own transformation on a DataFrame of the inputs, under their short and their full names
            # (`view__feature`), as Feast's `OnDemandFeatureView.transform_arrow` hands them to it. Built straight
            # from the values rather than through Arrow: that round trip doubled the cost of a one-row call.
            for source in self.view.source_feature_view_projections.values():
                values.update({f"{source.name}__{field.name}": values[field.name] for field in source.features})
            frame = self.view.feature_transformation.transform(pd.DataFrame(values))
            result = {name: frame[_column(frame, self.view.name, name)].tolist() for name in self.outputs}
        elif self.view.singleton:
            singles = [
                self.view.transform_dict({name: [column[row]] for name, column in values.items()})
                for row in range(rows)
            ]
            result = {name: [single[name] for single in singles] for name in self.outputs}
        else:
            output = self.view.transform_dict(values)
            result = {name: list(output[name]) for name in self.outputs}
        return result

    def add_to_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with the outputs as columns: computed where every input is present, null elsewhere (an output of
        a missing input is missing, as it is online)."""
        complete = frame[list(self.inputs)].notna().all(axis=1)
        outputs = self.compute({name: frame.loc[complete, name].tolist() for name in self.inputs})
        rows = frame.index[complete]
        return frame.assign(
            **{name: pd.Series(outputs[name], index=rows).reindex(frame.index) for name in self.outputs}
        )


@dataclass(frozen=True)
class FeatureContract:
    """What a model on a feature service reads, and how each value is obtained (see the module docstring)."""

    service: str
    join_keys: tuple[str, ...]
    key_types: dict[str, ValueType]
    views: tuple[ViewRead, ...]
    on_demand: tuple[OnDemandStep, ...]
    request_fields: dict[str, ValueType]
    """Fields a caller supplies per entity row, for the on-demand views, with their Feast value types."""
    inputs: tuple[FeatureInput, ...]
    """The model's features, in service order, with their roles (vector widths are learned in training)."""
    value_types: dict[str, ValueType]
    """The Feast value type of every feature read or computed."""

    @classmethod
    def resolve(
        cls, store: FeatureStore, service: str, *, features: Sequence[str] | None = None, exclude: Iterable[str] = ()
    ) -> "FeatureContract":
        """The contract for `features` of the feature service (default: all but `exclude`); a `ConfigError` that
        lists every problem if any feature or view cannot be supported."""
        inspection = inspect_service(store, service, features=features, exclude=exclude)
        if inspection.contract is None:
            raise ConfigError(inspection.describe())
        return inspection.contract

    def schema(self) -> FeatureSchema:
        return FeatureSchema.from_inputs(self.join_keys, self.inputs)

    @property
    def features(self) -> list[str]:
        return [feature.name for feature in self.inputs]

    @property
    def entity_fields(self) -> list[str]:
        """What names an entity row in a request: the join keys, then the request fields."""
        return [*self.join_keys, *self.request_fields]

    def with_on_demand(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` (view features and request fields as columns) with the on-demand outputs added."""
        for step in self.on_demand:
            frame = step.add_to_frame(frame)
        return frame


@dataclass(frozen=True)
class ServiceInspection:
    service: str
    contract: FeatureContract | None
    """None when there are problems."""
    problems: list[str]

    def describe(self) -> str:
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        return f"feature service {self.service!r} cannot be used as it is:\n{lines}"


def inspect_service(
    store: FeatureStore, service: str, *, features: Sequence[str] | None = None, exclude: Iterable[str] = ()
) -> ServiceInspection:
    """Resolve `features` of feature service `service` (default: all but `exclude`) and collect every problem."""
    definition = feature_service(store, service)
    problems: list[str] = []
    on_demand_views = {view.name: view for view in store.list_on_demand_feature_views()}
    excluded = list(exclude)

    # The service's features, by name: (Feast field, the view that gives it, whether the view is on demand).
    offered: dict[str, tuple[Any, str]] = {}
    for projection in definition.feature_view_projections:
        for field in projection.features:
            if field.name in offered and offered[field.name][1] != projection.name:
                problems.append(
                    f"feature {field.name!r} is in both {offered[field.name][1]!r} and {projection.name!r}: cicloml "
                    "reads features by name, so rename one of them (or leave one out of the feature service)"
                )
            offered[field.name] = (field, projection.name)

    unknown = [name for name in [*excluded, *(features or [])] if name not in offered]
    if unknown:
        problems.append(
            f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not in feature service "
            f"{service!r} (features.exclude in the project spec); it has: {', '.join(offered)}"
        )
    wanted = [name for name in (features or offered) if name in offered and name not in excluded]
    if not wanted:
        problems.append(f"no features of {service!r} are left for the model (features.exclude leaves out all of them)")

    inputs: list[FeatureInput] = []
    for name in wanted:
        field, view_name = offered[name]
        role = ROLES.get(field.dtype.to_value_type())
        if role is None:
            problems.append(
                f"feature {name!r} ({view_name}) has Feast type {field.dtype}, which a model cannot read (cicloml "
                "reads numbers, Bool, String, UnixTimestamp and arrays of numbers): add it to features.exclude in "
                "the project spec to leave it out of the model"
            )
        else:
            inputs.append(FeatureInput(name, role))

    # What to read from each ordinary view, and which on-demand views to compute.
    reads: dict[str, list[str]] = {}
    views: dict[str, FeatureView] = {}
    value_types: dict[str, ValueType] = {name: offered[name][0].dtype.to_value_type() for name in wanted}
    request_fields: dict[str, ValueType] = {}
    steps: list[OnDemandStep] = []

    def read(view_name: str, names: Iterable[str]) -> None:
        if view_name in on_demand_views:
            problems.append(
                f"on-demand view {view_name!r} reads another on-demand view's features; cicloml computes one level of "
                "on-demand views: compute both in one view"
            )
            return
        if view_name not in views:
            views[view_name] = store.get_feature_view(view_name)
        for name in names:
            if name not in reads.setdefault(view_name, []):
                reads[view_name].append(name)

    for projection in definition.feature_view_projections:
        used = [field.name for field in projection.features if field.name in wanted]
        if projection.name not in on_demand_views:
            if used:
                read(projection.name, used)
            continue
        if not used:
            continue
        view = on_demand_views[projection.name]
        problem = _on_demand_problem(view)
        if problem:
            problems.append(problem)
            continue
        step_inputs: list[str] = []
        input_types: list[ValueType] = []
        for source in view.source_feature_view_projections.values():
            names = [field.name for field in source.features]
            read(source.name, names)
            step_inputs += names
            input_types += [field.dtype.to_value_type() for field in source.features]
        for source in view.source_request_sources.values():
            for field in source.schema:
                value_type = field.dtype.to_value_type()
                if value_type not in REQUEST_TYPES:
                    problems.append(
                        f"request field {field.name!r} of {source.name!r} has Feast type {field.dtype}; callers send "
                        "request fields as JSON numbers, strings or booleans"
                    )
                request_fields[field.name] = value_type
                step_inputs.append(field.name)
                input_types.append(value_type)
        steps.append(OnDemandStep(view, tuple(used), tuple(step_inputs), tuple(input_types)))

    reads_in_order: list[ViewRead] = []
    join_keys: list[str] = []
    key_types: dict[str, ValueType] = {}
    for view_name, names in reads.items():
        view = views[view_name]
        for field in view.features:
            if field.name in names:
                value_types.setdefault(field.name, field.dtype.to_value_type())
        keys = [column.name for column in view.entity_columns]
        if not keys:
            problems.append(f"feature view {view_name!r} has no entity: cicloml looks features up by entity keys")
        for column in view.entity_columns:
            value_type = column.dtype.to_value_type()
            if value_type not in KEY_TYPES:
                problems.append(
                    f"join key {column.name!r} ({view_name}) has Feast type {column.dtype}; entities are looked up by "
                    "Int64, Int32 or String keys"
                )
            elif key_types.setdefault(column.name, value_type) != value_type:
                problems.append(f"join key {column.name!r} has different types in different views")
            if column.name not in join_keys:
                join_keys.append(column.name)
        projection = next((p for p in definition.feature_view_projections if p.name == view_name), view.projection)
        reads_in_order.append(ViewRead(view.with_projection(copy.copy(projection)), tuple(names), tuple(keys)))

    clashes = [name for name in request_fields if name in join_keys or name in value_types]
    if clashes:
        problems.append(
            f"request field(s) {', '.join(map(repr, clashes))} share a name with a join key or feature; rename them"
        )
    if problems:
        return ServiceInspection(service, None, problems)
    contract = FeatureContract(
        service=service,
        join_keys=tuple(join_keys),
        key_types=key_types,
        views=tuple(reads_in_order),
        on_demand=tuple(steps),
        request_fields=request_fields,
        inputs=tuple(inputs),
        value_types=value_types,
    )
    return ServiceInspection(service, contract, [])


def feature_service(store: FeatureStore, name: str) -> FeatureService:
    """The registered feature service, or a `ConfigError` that says what is registered (and where a service of that
    name is, if another project of the registry has it)."""
    try:
        return store.get_feature_service(name)
    except Exception as error:  # Feast raises its own not-found type per registry backend
        elsewhere = sorted(
            {
                proto.spec.project
                for proto in store.registry.proto().feature_services
                if proto.spec.name == name and proto.spec.project != store.project
            }
        )
        known = ", ".join(service.name for service in store.list_feature_services())
        hint = (
            f"; a feature service {name!r} exists in project(s) {', '.join(elsewhere)} of the registry: set `project` "
            "in feature_store.yaml to it"
            if elsewhere
            else f"; registered in project {store.project!r}: {known}"
            if known
            else " (run `cicloml apply` first)"
        )
        raise ConfigError(f"feature service {name!r} is not registered{hint}") from error


def _on_demand_problem(view: OnDemandFeatureView) -> str | None:
    if view.mode not in MODES:
        return (
            f"on-demand view {view.name!r} uses mode {view.mode!r}; cicloml computes 'python' and 'pandas' "
            "transformations"
        )
    if view.aggregations:
        return f"on-demand view {view.name!r} aggregates rows, which cicloml does not compute: use a transformation"
    if getattr(view, "explode", False):
        return f"on-demand view {view.name!r} explodes rows into several; a prediction needs one row per entity"
    return None


def _column(frame: pd.DataFrame, view: str, name: str) -> str:
    """An output's column: a transformation may name it in full (`view__feature`)."""
    return name if name in frame.columns else f"{view}__{name}"


def _python_value(value: Any, value_type: ValueType) -> Any:
    """`value` as the plain Python value Feast's online store gives for `value_type`."""
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # a numpy scalar
        value = value.item()
    if value_type in (ValueType.INT64, ValueType.INT32) and isinstance(value, float) and math.isfinite(value):
        return int(value)
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
