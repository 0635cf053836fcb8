import json

import pytest

from cicloml.cli import main
from cicloml.registry import ModelRegistry
from tests.unit.test_registry import register


@pytest.fixture
def registry(settings):
    return ModelRegistry(settings, "churn")


def test_list_marks_the_champion_and_shows_gate_and_metrics(registry, capsys):
    first, second = register(registry, 0), register(registry, 1, gate="rejected")
    registry.promote(first)
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"* {first}") and "passed" in lines[1] and "0.9000" in lines[1]
    assert lines[2].startswith(f"  {second}") and "rejected" in lines[2]
    assert main(["models", "list", "--json"]) == 0
    assert [row["champion"] for row in json.loads(capsys.readouterr().out)] == [True, False]


def test_a_rejected_version_needs_force_to_be_promoted(registry, capsys):
    tag = register(registry, gate="rejected")
    assert main(["models", "promote", tag]) == 1
    assert "the gate rejected" in capsys.readouterr().err
    assert registry.champion() is None
    assert main(["models", "promote", tag, "--force"]) == 0
    assert registry.champion() == tag


def test_rollback_and_show(registry, capsys):
    first, second = register(registry, 0), register(registry, 1)
    registry.promote(first)
    registry.promote(second)
    assert main(["models", "rollback"]) == 0
    assert capsys.readouterr().out.strip() == f"champion: {first}"
    assert main(["models", "show", first]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"]["feature_service"] == "churn_v1"


def test_errors_are_one_line_and_exit_2(registry, capsys):
    assert main(["models", "rollback"]) == 2
    assert capsys.readouterr().err.strip() == "cicloml: churn has no previous champion to roll back to"
    assert main(["models", "show", "churn:nope"]) == 2
    assert "no model version 'churn:nope'" in capsys.readouterr().err
