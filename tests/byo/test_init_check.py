"""`cicloml init`, `cicloml apply` and `cicloml check` on a Feast repository cicloml did not write: the spec is
guessed and shown, and every problem is named with its fix before any work, never as a traceback."""

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cicloml.cli import main
from cicloml.feature_store import apply_repo, open_store
from tests.byo.conftest import Project, make_project, project_environment


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project", users=60, items=12, days=36, clicks_per_day=20)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "Traceback" not in output
    return code, output


def test_init_guesses_a_spec_says_why_and_check_names_apply_then_passes(project, capsys):
    with project_environment(project):
        code, output = run(capsys, "init", "--feast-repo", str(project.repo))
        assert code == 2 and "name one with --feature-service" in output
        assert "defines 4 feature services (affinity_v1, click_plain_v1, click_python_v1, click_v1)" in output
        assert not project.spec_path.exists()

        code, output = run(
            capsys,
            "init",
            "--feast-repo",
            str(project.repo),
            "--feature-service",
            "click_v1",
            "--labels",
            str(project.labels_path),
        )
        spec = yaml.safe_load(project.spec_path.read_text())
        # `click` is an importable package (the CLI library): `bentoml serve click:V` would import it.
        assert spec["name"] == "click_model"
        assert spec["features"] == {
            "repo": "feature_repo",  # relative to the spec's folder
            "entity": ["item", "user"],
            "feature_service": "click_v1",
            "exclude": ["preferences", "attributes"],
        }
        assert spec["labels"] == {
            "path": str(project.labels_path),
            "column": "clicked",
            "event_time": "event_timestamp",
            "available_time": "known_at",
        }
        assert "excluded preferences, attributes: their Feast types are not ones a model reads" in output
        assert "labels.column 'clicked': binary" in output
        # Not applied yet: check says which command applies it, and exits 1.
        assert code == 1 and "the Feast registry is behind" in output and "run `cicloml apply`" in output
        assert "warning: the online store is Feast's plain SQLite store" in output
        assert "MonotonicSqliteOnlineStore" in output
        assert f"the Feast registry ({project.repo / 'data' / 'registry.db'}) lies outside the state folder" in output

        code, output = run(capsys, "apply")
        assert code == 0 and "on-demand feature view price_at_request: create" in output
        assert run(capsys, "apply")[1].strip().endswith(f"no changes: the registry matches {project.repo}")

        code, output = run(capsys, "check")
        assert code == 0, output
        assert (
            "ok: click_v1 gives the model 12 features (3 computed on demand: discounted_price, evening, affinity), "
            "keyed by user_id, item_id; requests carry discount, hour_of_day"
        ) in output
        assert "error" not in output

        # A second init does not overwrite the spec by accident.
        code, output = run(capsys, "init", "--feast-repo", str(project.repo), "--feature-service", "click_v1")
        assert code == 2 and "exists; pass --force to overwrite it" in output


def set_spec(project: Project, **changes: object) -> None:
    spec = yaml.safe_load(project.spec_path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        spec[section][key] = value
    project.spec_path.write_text(yaml.safe_dump(spec))


def rewrite_labels(project: Project, change: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    change(pd.read_parquet(project.labels_path)).to_parquet(project.labels_path, index=False)


def edit_repo(project: Project, file_name: str, old: str, new: str) -> None:
    path = project.repo / file_name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


CASES = {
    "types-without-a-role": (
        lambda project: set_spec(project, features__exclude=[]),
        [
            "error: feature 'preferences' (user_profile) has Feast type Map, which a model cannot read",
            "error: feature 'attributes' (item_stats) has Feast type Json, which a model cannot read",
            "add it to features.exclude in the project spec",
        ],
    ),
    "exclude-names-no-feature": (
        lambda project: set_spec(project, features__exclude=["preferences", "attributes", "colour"]),
        ["'colour' is not in feature service 'click_v1' (features.exclude in the project spec); it has: country"],
    ),
    "labels-lack-a-request-field": (
        lambda project: rewrite_labels(project, lambda frame: frame.drop(columns="discount")),
        ["lacks 'discount' (request field of an on-demand view); it has user_id, item_id"],
    ),
    "labels-lack-a-join-key": (
        lambda project: rewrite_labels(project, lambda frame: frame.drop(columns="item_id")),
        ["lacks 'item_id' (join key of the feature service)"],
    ),
    "duplicate-labels": (
        lambda project: rewrite_labels(project, lambda frame: pd.concat([frame, frame.head(3)])),
        ["has 3 duplicate rows for one entity at one time (user_id, item_id, event_timestamp)"],
    ),
    "label-not-binary": (
        lambda project: rewrite_labels(project, lambda frame: frame.assign(clicked=frame["clicked"] * 2)),
        ["labels.column 'clicked' must be binary (0/1 or true/false); it holds 0, 2"],
    ),
    "wrong-entity": (
        lambda project: set_spec(project, features__entity="customer"),
        ["features.entity is 'customer', but the views of 'click_v1' are keyed by ['item', 'user']"],
    ),
    "slices-not-a-string-feature": (
        lambda project: set_spec(project, training__slices=["price"]),
        ["training.slices names 'price', which is not a String feature the model reads"],
    ),
    "missing-repo": (
        lambda project: set_spec(project, features__repo="no_such_repo"),
        ["Feast repository not found", "features.repo in the project spec"],
    ),
    "definitions-that-do-not-import": (
        lambda project: edit_repo(project, "views.py", "import numpy as np", "import numpy as np +"),
        ["the Feast definitions in", "could not be read: SyntaxError"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_names_each_problem_and_its_fix(project, capsys, case):
    break_it, expected = CASES[case]
    project.write_spec(training={"slices": []})
    with project_environment(project) as settings:
        apply_repo(open_store(project.repo, settings))
        break_it(project)
        code, output = run(capsys, "check")
    assert code == 1, output
    for text in expected:
        assert text in output, output


def test_a_feature_service_of_another_project_in_the_registry_is_named(project, capsys):
    project.write_spec()
    with project_environment(project) as settings:
        apply_repo(open_store(project.repo, settings))
        # The repository moves to another project of the same registry, and renames its service there.
        edit_repo(project, "feature_store.yaml", "project: clicks", "project: shop")
        edit_repo(project, "services.py", 'name="click_v1"', 'name="click_v2"')
        apply_repo(open_store(project.repo, settings))
        code, output = run(capsys, "check")
    assert code == 1
    assert (
        "feature service 'click_v1' is not registered; a feature service 'click_v1' exists in project(s) clicks "
        "of the registry: set `project` in feature_store.yaml to it"
    ) in output
