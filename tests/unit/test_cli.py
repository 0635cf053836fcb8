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


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--weeks", "0"], "--weeks: Input should be greater than or equal to 1"),
        (["--timeline", "5-3:price_rise"], "--timeline: Value error, timeline entry (5, 3, price_rise)"),
        (["--timeline", "5:price_rise"], "--timeline: timeline entry '5:price_rise': write FIRST-END:SCENARIO"),
        (["--timeline", "5-:alien"], "unknown scenario 'alien'"),
        (["--policies", "weekly,foo"], "--policies: unknown foo; choose among never, weekly"),
    ],
)
def test_a_bad_backtest_world_is_refused_before_any_work_naming_the_option(settings, capsys, arguments, message):
    assert main(["backtest", *arguments]) == 2
    assert message in capsys.readouterr().err
