"""Drift decisions on the seeded demo data: the training reference against served snapshots of each scenario."""

from datetime import timedelta

import pandas as pd
import pytest

from cicloml.demo.churn import DRIFT_SCENARIOS, DemoTables, generate_churn_data, generate_traffic, served_features
from cicloml.drift import compare_profiles
from cicloml.profiling import profile_frame
from cicloml.spec import DriftSpec
from tests.training.test_families import END, data  # noqa: F401  (the module-scoped demo-data fixture)

# Thresholds per method: unchanged traffic scores up to 0.14 / 0.16 / 0.18 here, the scenarios 0.28 and up.
THRESHOLDS = {"hellinger": 0.2, "jensen_shannon": 0.2, "wasserstein": 0.3}
# The features each scenario moves, and the data-quality rule it must trip.
EXPECTED = {
    "price_rise": ({"monthly_charges"}, "out_of_range"),
    "new_region": ({"region"}, "unseen_categories"),
    "broken_payment_feed": ({"payment_failures_90d"}, "null_rate_increase"),
}


def served_snapshot(history: DemoTables, scenario: str, hours: int) -> pd.DataFrame:
    """What the online store serves `hours` after the history ends, under `scenario`."""
    return served_features(history, generate_traffic(history, END + timedelta(hours=hours), scenario=scenario))


def compare(reference, current, schema, method):
    spec = DriftSpec(method=method, threshold=THRESHOLDS[method])
    return compare_profiles(reference, current, features=schema.features, spec=spec, model_tag="churn:test")


@pytest.fixture(scope="module")
def reference(data):  # noqa: F811
    split, schema = data
    history = generate_churn_data(END, customers=800, days=90, seed=21)  # the tables the fixture's store holds
    return profile_frame(split.train[schema.features]), schema, history


@pytest.mark.parametrize("method", THRESHOLDS)
def test_unchanged_traffic_raises_no_alarm(reference, method):
    """Nor does a competitor's offer: it changes who churns, not the features (the labels show it, not drift)."""
    profile, schema, history = reference
    for scenario, hours in (("none", 1), ("none", 6), ("competitor_offer", 1)):
        current = profile_frame(served_snapshot(history, scenario, hours)[schema.features])
        report = compare(profile, current, schema, method)
        assert report.drifted_features == [] and not report.drifted, report.markdown()
        assert report.quality_issues == []


@pytest.mark.parametrize("method", THRESHOLDS)
@pytest.mark.parametrize("scenario", DRIFT_SCENARIOS)
def test_each_scenario_is_detected_on_its_features(reference, scenario, method):
    profile, schema, history = reference
    current = profile_frame(served_snapshot(history, scenario, 1)[schema.features])
    report = compare(profile, current, schema, method)
    features, rule = EXPECTED[scenario]
    assert set(report.drifted_features) == features, report.markdown()
    assert report.drifted
    assert {(issue.column, issue.rule) for issue in report.quality_issues} == {(column, rule) for column in features}
    assert f"| {next(iter(features))} |" in report.markdown()
