"""Preprocessing shared by every model family: impute, scale numbers, one-hot categories."""

from dataclasses import dataclass

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from cicloml.models.inputs import FeatureInput


@dataclass(frozen=True)
class FeatureSchema:
    """What a model reads: the entity keys its rows are looked up by, the feature service's features as Feast gives
    them (`inputs`, with their roles), and the model columns they become, split by kind."""

    entity_keys: tuple[str, ...]
    numeric: tuple[str, ...]
    """Model columns read as numbers: numbers, flags, vector positions, timestamp ages."""
    categorical: tuple[str, ...]
    inputs: tuple[FeatureInput, ...] = ()
    """The features as the feature service gives them; empty (models from before roles): the columns themselves."""

    @classmethod
    def from_inputs(cls, entity_keys: tuple[str, ...], inputs: tuple[FeatureInput, ...]) -> "FeatureSchema":
        numeric = [column for feature in inputs if feature.role != "category" for column in feature.columns]
        categorical = [feature.name for feature in inputs if feature.role == "category"]
        return cls(entity_keys=entity_keys, numeric=tuple(numeric), categorical=tuple(categorical), inputs=inputs)

    @property
    def features(self) -> list[str]:
        """The model columns, numeric first."""
        return [*self.numeric, *self.categorical]

    @property
    def feature_inputs(self) -> tuple[FeatureInput, ...]:
        """`inputs`, or for a schema without them, each column as a feature of its own kind."""
        if self.inputs:
            return self.inputs
        return tuple(
            [FeatureInput(name, "number") for name in self.numeric]
            + [FeatureInput(name, "category") for name in self.categorical]
        )

    @property
    def input_names(self) -> list[str]:
        """The feature service's features the model reads, in service order."""
        return [feature.name for feature in self.feature_inputs]


def build_preprocessor(schema: FeatureSchema) -> ColumnTransformer:
    """Numbers: median-imputed (with a missing-indicator) and standardized. Categories: one-hot encoded, with
    missing as a category of its own; a category never seen in training encodes as all zeros instead of failing."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
    categorical = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [("numeric", numeric, list(schema.numeric)), ("categorical", categorical, list(schema.categorical))],
        verbose_feature_names_out=False,
    )
