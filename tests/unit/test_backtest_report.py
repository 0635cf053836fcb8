"""The backtest's picture, page and files, from a small result built by hand (no backtest run)."""

import base64
import io
import re
from datetime import timedelta
from pathlib import Path

import matplotlib.image
import pytest

from cicloml.backtest import BacktestResult, BacktestWorld, DayRow, Policy, PolicyResult, PolicySummary, summarize
from cicloml.backtest_report import plot_backtest, render_backtest_html, summary_markdown, write_backtest_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WORLD = BacktestWorld(
    weeks=2,
    customers=200,
    timeline=[(4, 10, "price_rise"), (10, None, "competitor_offer"), (11, 12, "broken_payment_feed")],
)
TOLERANCE = 0.72
NOTE_WITH_MARKUP = "<script>alert('x')</script> & friends"


def day_row(day: int, **changes: object) -> DayRow:
    scenario, broken = WORLD.scenarios_on(day)
    values: dict[str, object] = {
        "day": day,
        "date": WORLD.start + timedelta(days=day),
        "scenario": scenario + ("+broken_payment_feed" if broken else ""),
        "model_id": "d000-abcdef",
        "check": "skew" if day == 0 else "drift",
        "realized_roc_auc": 0.80 - 0.01 * day,
        "estimated_roc_auc": 0.78,
        "estimated_interval": (0.7, 0.86),
        "drift": False,
        "drifted_features": [],
        "alert": False,
        "alert_cleared": False,
        "requests": [],
        "trained": False,
        "skipped": False,
        "promoted": False,
        "promoted_same_data": False,
        "pending": 0,
        "notes": [],
    }
    return DayRow.model_validate(values | changes)


def policy_result(name: str, description: str, events: dict[int, dict[str, object]]) -> PolicyResult:
    rows = [day_row(day, **events.get(day, {})) for day in range(WORLD.days)]
    return PolicyResult(policy=Policy(name=name, description=description), summary=summary(rows), days=rows, models=[])


def summary(rows: list[DayRow]) -> PolicySummary:
    """`summarize` counts trainings and promotions from the models, which a hand-built result has none of."""
    counts = {
        "training_runs": sum(row.trained for row in rows),
        "promotions": sum(row.promoted for row in rows),
        "promotions_same_data": sum(row.promoted_same_data for row in rows),
    }
    return summarize(rows, [], TOLERANCE).model_copy(update=counts)


@pytest.fixture(scope="module")
def result() -> BacktestResult:
    drifted = {"drift": True, "drifted_features": ["monthly_charges"], "alert": True}
    return BacktestResult(
        world=WORLD,
        settings={"quality": {"max_drop": 0.05}},
        initial_model="d000-abcdef",
        tolerance=TOLERANCE,
        policies=[
            policy_result("never", "trained once, on day 0", {0: {"trained": True, "promoted": True}, 5: drifted}),
            policy_result(
                "every_drift",
                "retrain on every drift alert",
                {
                    5: drifted | {"requests": ["drift"], "trained": True, "promoted": True, "promoted_same_data": True},
                    6: {"realized_roc_auc": None},
                    9: drifted | {"requests": ["drift"], "skipped": True, "notes": ["training skipped: too few rows"]},
                },
            ),
            policy_result(
                "cicloml",
                "the spec's <evidence> rules",
                {
                    5: drifted | {"notes": [NOTE_WITH_MARKUP]},
                    8: {"requests": ["quality"], "trained": True, "promoted": True, "model_id": "d008-123456"},
                },
            ),
        ],
    )


def test_the_picture_is_a_png_of_a_readable_size(result: BacktestResult):
    png = plot_backtest(result)

    assert png.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    height, width = image.shape[:2]
    assert width >= 1200 and 700 <= height <= 2000


def test_the_picture_draws_a_world_without_scenarios_or_realized_values():
    rows = [day_row(day, realized_roc_auc=None, scenario="none") for day in range(7)]
    result = BacktestResult(
        world=BacktestWorld(weeks=1, customers=100, timeline=[]),
        settings={},
        initial_model="d000-abcdef",
        tolerance=TOLERANCE,
        policies=[PolicyResult(policy=Policy(name="never"), summary=summary(rows), days=rows, models=[])],
    )

    assert plot_backtest(result).startswith(PNG_SIGNATURE)
    assert "n/a" in summary_markdown(result)


def test_the_page_is_self_contained_and_escapes_what_it_shows(result: BacktestResult):
    page = render_backtest_html(result)

    for name in ("never", "every_drift", "cicloml"):
        assert f"<td>{name}</td>" in page
    embedded = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded is not None
    assert base64.b64decode(embedded.group(1)).startswith(PNG_SIGNATURE)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, flags=re.IGNORECASE)
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; friends" in page
    assert "the spec&#x27;s &lt;evidence&gt; rules" in page
    assert "promoted (same data)" in page  # every_drift's day 5, in its folded day table
    assert page.count("<details>") == len(result.policies) + 1  # each policy's days, and the settings


def test_the_summary_table_has_a_row_per_policy(result: BacktestResult):
    table = summary_markdown(result)

    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    by_policy = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_policy) == ["never", "every_drift", "cicloml"]
    expected = {
        "policy": "every_drift",
        "days below tolerance": f"5 of {WORLD.days}",  # days 9 to 13; day 6 has no realized value
        "training runs": "1",
        "promotions": "1",
        "same-data promotions": "1",
        "skipped runs": "1",
        "alerts": "2",
    }
    assert expected.items() <= by_policy["every_drift"].items()
    assert by_policy["every_drift"].get("alerts cleared", "0") == "0"


def test_the_report_writes_three_files_and_the_json_reads_back(result: BacktestResult, tmp_path: Path):
    paths = write_backtest_report(result, tmp_path / "backtest")

    assert set(paths) == {"json", "png", "html"}
    assert {path.name for path in (tmp_path / "backtest").iterdir()} == {
        "backtest.json",
        "backtest.png",
        "backtest.html",
    }  # no temporary file left behind
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert paths["html"].read_text(encoding="utf-8").startswith("<!doctype html>")
    assert BacktestResult.model_validate_json(paths["json"].read_text()) == result


def test_a_day_that_cleared_an_alert_says_so_in_its_table(result: BacktestResult):
    policy = result.policies[0]
    rows = [row.model_copy(update={"alert_cleared": row.day == 7}) for row in policy.days]
    cleared = result.model_copy(update={"policies": [policy.model_copy(update={"days": rows})]})

    assert "<td>cleared</td>" in render_backtest_html(cleared, png=b"")
    assert plot_backtest(cleared).startswith(PNG_SIGNATURE)
    assert "<td>cleared</td>" not in render_backtest_html(result, png=b"")
