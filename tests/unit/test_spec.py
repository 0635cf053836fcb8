from pathlib import Path

import pytest
import yaml

from cicloml.errors import ConfigError
from cicloml.spec import load_spec
from tests.conftest import ROOT


def write_spec(tmp_path: Path, **overrides: dict) -> Path:
    raw = yaml.safe_load((ROOT / "cicloml.yaml").read_text())
    for section, values in overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    path = tmp_path / "cicloml.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_shipped_spec_is_valid():
    spec = load_spec(ROOT / "cicloml.yaml")
    assert spec.features.feature_service == "churn_v1"
    assert spec.labels.column == "churned"


def test_bad_value_names_the_key_and_the_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_spec(write_spec(tmp_path, model={"family": "xgboost"}))
    assert "model.family: got 'xgboost'; allowed: 'sklearn', 'lightning'" in str(error.value)


def test_model_parameters_are_checked_for_the_chosen_family(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_spec(write_spec(tmp_path, model={"family": "lightning", "hiden_sizes": [8]}))
    assert "model.lightning.hiden_sizes: unknown key; allowed keys here: family, hidden_sizes, dropout" in str(
        error.value
    )


def test_every_bad_key_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_spec(write_spec(tmp_path, gates={"min_roc_auc": 1.5}, drift={"method": "ks", "colour": "red"}))
    message = str(error.value)
    assert "gates.min_roc_auc: Input should be less than or equal to 1 (got 1.5)" in message
    assert "drift.method: Input should be 'hellinger', 'jensen_shannon' or 'wasserstein' (got 'ks')" in message
    assert (
        "drift.colour: unknown key; allowed keys here: method, threshold, categorical_method, categorical_threshold"
        in message
    )


def test_missing_required_key(tmp_path):
    raw = yaml.safe_load((ROOT / "cicloml.yaml").read_text())
    del raw["labels"]["column"]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"labels\.column: required key is missing"):
        load_spec(path)


def test_bad_cron_expression(tmp_path):
    with pytest.raises(ConfigError, match=r"schedules\.train: Value error, must be a cron expression with five fields"):
        load_spec(write_spec(tmp_path, schedules={"train": "weekly"}))


def test_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(ConfigError, match="project spec not found: .*CICLO_SPEC_PATH"):
        load_spec(tmp_path / "nope.yaml")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(path)


def test_estimator_parameters_are_checked_against_the_estimator(tmp_path):
    with pytest.raises(ConfigError, match="model.sklearn: Value error, hist_gradient_boosting takes no parameter"):
        load_spec(write_spec(tmp_path, model={"family": "sklearn", "params": {"n_trees": 5}}))


def test_the_feature_repository_is_found_from_the_specs_own_folder(tmp_path):
    """A spec can live anywhere: a relative `features.repo` is relative to the spec, not to where cicloml runs."""
    spec = load_spec(write_spec(tmp_path, features={"repo": "feature_repo", "exclude": ["notes"]}))
    assert spec.features.repo == tmp_path / "feature_repo"
    assert spec.features.exclude == ["notes"]
    assert load_spec(write_spec(tmp_path, features={"repo": "/srv/feast"})).features.repo == Path("/srv/feast")
    compound = load_spec(write_spec(tmp_path, features={"entity": ["user", "item"]}))
    assert compound.features.entity == ["user", "item"]
