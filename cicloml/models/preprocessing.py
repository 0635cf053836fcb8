"""Preprocessing shared by every model family: impute, scale numbers, one-hot categories."""

from dataclasses import dataclass

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


@dataclass(frozen=True)
class FeatureSchema:
    """What a model reads: the entity keys its rows are looked up by, and its features split by kind (from the
    feature service's Feast types)."""

    entity_keys: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def build_preprocessor(schema: FeatureSchema) -> ColumnTransformer:
    """Numbers: median-imputed (with a missing-indicator) and standardized. Categories: one-hot encoded, with
    missing as a category of its own; a category never seen in training encodes as all zeros instead of failing."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
    categorical = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [("numeric", numeric, list(schema.numeric)), ("categorical", categorical, list(schema.categorical))],
        verbose_feature_names_out=False,
    )
