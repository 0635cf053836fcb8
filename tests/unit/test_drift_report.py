"""The drift report's page on a seeded drifted window: a picture per feature, drifted features first and open, the
rest folded, findings beside their feature, missing values shown, bounded on high-cardinality columns, no network."""

import re
import time
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from cicloml.drift import TOP_CATEGORIES, DriftReport, compare_profiles
from cicloml.drift_report import render_html, write_html_report
from cicloml.profiling import SCORE_COLUMN, profile_frame
from cicloml.spec import DriftSpec

USAGE = [f"usage_{i}" for i in range(12)]
MERCHANTS = np.array([f"merchant_{i:04d}" for i in range(2_000)])
FEATURES = [
    "monthly_charges",
    "tenure_months",
    "support_calls",
    "payment_failures",
    *USAGE,
    "region",
    "plan",
    "merchant",
    "device",
]
DRIFTED = "monthly_charges"
"""The window moves it by 2 reference standard deviations, past the training range for some rows."""
FINDINGS = {"payment_failures": "null_rate_increase", "region": "unseen_categories"}
"""The window's data-quality findings that do not make their feature drift."""


def seeded_frame(rows: int, *, seed: int, drifted: bool) -> pd.DataFrame:
    """Rows of 20 churn-like features (16 numeric, 4 categorical) and the model's score; `drifted` moves
    monthly_charges, gives payment_failures 15% missing values and region a new category."""
    rng = np.random.default_rng(seed)
    charges = rng.normal(70.0, 20.0, rows) + (40.0 if drifted else 0.0)
    failures = rng.poisson(0.3, rows).astype(float)
    failures[rng.random(rows) < (0.15 if drifted else 0.0)] = np.nan
    regions = ["north", "south", "east", "west"]
    region = rng.choice(regions, rows, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    if drifted:
        region[rng.random(rows) < 0.05] = "atlantis"
    columns = {
        "monthly_charges": charges,
        "tenure_months": rng.integers(0, 73, rows),
        "support_calls": rng.poisson(2.0, rows),
        "payment_failures": failures,
        **{name: rng.lognormal(i / 4, 0.5, rows) for i, name in enumerate(USAGE)},
        # Object dtype: whylogs 1.6.4 fails on pandas' string dtype under NumPy 2 (whylabs/whylogs-python#1568).
        "region": region,
        "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.6, 0.3, 0.1]).astype(object),
        "merchant": rng.choice(MERCHANTS, rows).astype(object),
        "device": rng.choice(["ios", "android", "web"], rows).astype(object),
    }
    frame = pd.DataFrame(columns)
    frame[SCORE_COLUMN] = 1.0 / (1.0 + np.exp(-(frame["monthly_charges"] - 80.0) / 15.0))
    return frame


def seeded_report(rows: int = 2_000) -> DriftReport:
    """A drifted window of `rows` rows against a 5k-row training reference, with the model's scores."""
    reference = profile_frame(seeded_frame(5_000, seed=1, drifted=False))
    window = profile_frame(seeded_frame(rows, seed=2, drifted=True))
    return compare_profiles(reference, window, features=FEATURES, spec=DriftSpec(), model_tag="churn:v1")


class Sections(HTMLParser):
    """The page's <details> sections in order, as (class, data-column, open), and every src/href value."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[tuple[str, str, bool]] = []
        self.links: list[str] = []
        self.plots: dict[str, int] = {}
        self._current: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.links += [value or "" for name, value in attrs if name in ("src", "href", "xlink:href")]
        if tag == "details":
            self._current = values["data-column"] or ""
            self.sections.append((values["class"] or "", self._current, "open" in values))
        if tag == "svg" and self._current is not None:
            self.plots[self._current] = self.plots.get(self._current, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self._current = None


@pytest.fixture(scope="module")
def report() -> DriftReport:
    return seeded_report()


@pytest.fixture(scope="module")
def page(report: DriftReport) -> Sections:
    parsed = Sections()
    parsed.feed(render_html(report))
    return parsed


def test_the_seeded_window_drifts_on_one_feature_with_findings_elsewhere(report: DriftReport) -> None:
    """What the page tests below rely on."""
    assert report.drifted_features == [DRIFTED], report.markdown()
    assert {(issue.column, issue.rule) for issue in report.quality_issues} >= set(FINDINGS.items())
    assert report.prediction is not None and report.prediction.drifted


def test_every_feature_has_a_picture_drifted_first_and_open_the_quiet_ones_folded(page: Sections) -> None:
    features = [(column, opened) for css, column, opened in page.sections if css.startswith("feature")]
    assert sorted(column for column, _ in features) == sorted(FEATURES)
    assert all(page.plots.get(column, 0) >= 1 for column in FEATURES), page.plots
    assert features[0] == (DRIFTED, True)
    # Features with a finding come next, open; every other one is folded.
    assert {column for column, _ in features[1:3]} == set(FINDINGS)
    assert all(opened for _, opened in features[1:3])
    assert not any(opened for _, opened in features[3:])


def test_the_model_score_is_drawn_the_same_way_after_the_features(page: Sections) -> None:
    assert page.sections[-1] == ("score drifted", SCORE_COLUMN, True)
    assert page.plots[SCORE_COLUMN] >= 1


def test_findings_and_missing_values_are_shown_with_their_feature(report: DriftReport) -> None:
    html = render_html(report)
    sections = {
        match[1]: match[0] for match in re.finditer(r'<details[^>]*data-column="([^"]+)".*?</details>', html, re.S)
    }
    failures = sections["payment_failures"]
    assert "more missing values" in failures and "null rate 0.0% in training" in failures
    assert "missing values" in failures and re.search(r"1[45]\.\d% in this window", failures)
    assert "categories not seen in training" in sections["region"] and "atlantis" in sections["region"]
    assert "values outside the training range" in sections[DRIFTED]
    assert "missing values" in sections["plan"]  # shown for every column, changed or not
    drifted = next(feature for feature in report.features if feature.column == DRIFTED)
    assert f"score {drifted.score:.3f} &gt; threshold 0.3" in sections[DRIFTED]


def test_a_high_cardinality_column_names_only_its_top_categories(report: DriftReport) -> None:
    merchant = next(feature for feature in report.features if feature.column == "merchant")
    assert merchant.distribution is not None and merchant.distribution.categories is not None
    assert len(merchant.distribution.categories) == TOP_CATEGORIES
    assert len(merchant.distribution.reference) == TOP_CATEGORIES + 1  # and every other category's share
    assert sum(merchant.distribution.reference) == pytest.approx(1.0, abs=1e-3)
    assert sum(merchant.distribution.current) == pytest.approx(1.0, abs=1e-3)


def test_numeric_shares_and_missing_values_add_up_to_all_rows(report: DriftReport) -> None:
    failures = next(feature for feature in report.features if feature.column == "payment_failures")
    distribution = failures.distribution
    assert distribution is not None and distribution.edges is not None
    assert len(distribution.edges) == len(distribution.reference) + 1
    assert sum(distribution.current) + failures.current_null_rate == pytest.approx(1.0, abs=1e-3)
    # Counts get a bar per whole number, centred on it.
    assert distribution.edges[:2] == [-0.5, 0.5]


def test_the_page_is_self_contained_and_small(report: DriftReport, page: Sections) -> None:
    html = render_html(report)
    assert not [link for link in page.links if re.match(r"(https?:)?//", link)], page.links
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert len(html) < 200_000, len(html)


def test_a_twenty_feature_report_renders_well_within_a_second(report: DriftReport) -> None:
    began = time.perf_counter()
    for _ in range(10):
        render_html(report)
    assert (time.perf_counter() - began) / 10 < 0.1


def test_a_report_without_pictures_still_loads_and_renders(report: DriftReport, tmp_path) -> None:
    """Reports written before distributions were kept (and columns with nothing to draw) have none."""
    stored = report.model_dump(mode="json")
    for feature in [*stored["features"], stored["prediction"]]:
        del feature["distribution"]
    old = DriftReport.model_validate(stored)
    path = write_html_report(old, tmp_path)
    assert path.read_text().count("<svg") == len(FEATURES) + 1  # the missing-values bars of each column


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # whylogs' variance of a column with inf
def test_columns_with_infinities_or_no_values_still_render() -> None:
    rows = 500
    values = np.random.default_rng(3).normal(size=rows)
    values[:5] = [np.inf, -np.inf, np.inf, np.nan, np.nan]
    frame = pd.DataFrame({"odd": values, "empty": np.full(rows, np.nan), "constant": np.full(rows, 7.0)})
    report = compare_profiles(
        profile_frame(frame), profile_frame(frame), features=list(frame), spec=DriftSpec(), model_tag="odd:v1"
    )
    by_column = {feature.column: feature.distribution for feature in report.features}
    assert by_column["empty"] is None
    assert by_column["odd"] is not None and all(np.isfinite(by_column["odd"].edges or []))
    assert by_column["constant"] is not None and by_column["constant"].edges == [6.5, 7.5]
    assert render_html(report).count('<svg class="plot"') == 3 + 2  # a histogram and missing values, or the latter
