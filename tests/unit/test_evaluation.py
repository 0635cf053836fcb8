import base64
import io
import re

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from cicloml.errors import DataError
from cicloml.evaluation import (
    EvalReport,
    choose_threshold,
    evaluate_scores,
    plot_evaluation,
    render_markdown,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def informative_sample(rows: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores that rank positives higher, less so as `noise` grows."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    scores = 1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(0, noise, rows))))
    return scores, labels


def f1_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    return 2 * (predicted & (labels == 1)).sum() / (predicted.sum() + labels.sum())


# --- thresholds and metrics ------------------------------------------------------------------------------------


def test_perfect_scores_give_auc_one_and_a_threshold_that_separates_the_classes():
    labels = np.array([0, 0, 0, 1, 1, 0, 1, 1])
    scores = np.array([0.1, 0.3, 0.35, 0.6, 0.9, 0.2, 0.7, 0.65])
    threshold = choose_threshold(scores, labels)
    assert scores[labels == 1].min() >= threshold > scores[labels == 0].max()
    report = evaluate_scores(scores, labels, threshold=threshold)
    assert report.overall.roc_auc == 1.0
    assert report.overall.pr_auc == 1.0
    assert report.overall.f1 == report.overall.precision == report.overall.recall == 1.0


def test_random_scores_rank_no_better_than_chance():
    rng = np.random.default_rng(0)
    report = evaluate_scores(rng.random(20_000), rng.integers(0, 2, 20_000), threshold=0.5)
    assert report.overall.roc_auc == pytest.approx(0.5, abs=0.02)


def test_metrics_agree_with_sklearn():
    scores, labels = informative_sample(2_000, seed=1)
    overall = evaluate_scores(scores, labels, threshold=0.4).overall
    predicted = (scores >= 0.4).astype(int)
    assert overall.roc_auc == pytest.approx(sk.roc_auc_score(labels, scores))
    assert overall.pr_auc == pytest.approx(sk.average_precision_score(labels, scores))
    assert overall.log_loss == pytest.approx(sk.log_loss(labels, scores))
    assert overall.brier == pytest.approx(sk.brier_score_loss(labels, scores))
    assert overall.f1 == pytest.approx(sk.f1_score(labels, predicted))
    assert overall.precision == pytest.approx(sk.precision_score(labels, predicted))
    assert overall.recall == pytest.approx(sk.recall_score(labels, predicted))
    assert overall.positive_rate == pytest.approx(labels.mean())
    assert overall.rows == 2_000


def test_chosen_threshold_beats_every_other_cut_and_ignores_row_order():
    scores, labels = informative_sample(1_000, seed=2, noise=1.5)
    scores = np.round(scores, 2)  # ties between scores must not confuse the search
    threshold = choose_threshold(scores, labels)
    best_elsewhere = max(f1_at(scores, labels, cut) for cut in np.r_[np.unique(scores), np.linspace(0, 1, 101)])
    assert f1_at(scores, labels, threshold) == pytest.approx(best_elsewhere)
    shuffled = np.random.default_rng(3).permutation(len(scores))
    assert choose_threshold(scores[shuffled], labels[shuffled]) == threshold


def test_summary_gives_headline_metrics_and_leaves_out_undefined_ones():
    scores, labels = informative_sample(200, seed=4)
    summary = evaluate_scores(scores, labels, threshold=0.5).summary()
    assert set(summary) == {"roc_auc", "pr_auc", "log_loss", "brier", "f1"}
    assert all(isinstance(value, float) for value in summary.values())
    one_class = evaluate_scores(scores[labels == 1], labels[labels == 1], threshold=0.5).summary()
    assert set(one_class) == {"log_loss", "brier", "f1"}


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.2, 0.8], [0, 1, 1], "differ in length"),
        ([], [], "empty"),
        ([0.2, 1.3], [0, 1], r"in \[0, 1\]"),
        ([0.2, np.nan], [0, 1], r"in \[0, 1\]"),
        ([0.2, 0.8], [0, 2], "labels must be 0 or 1"),
        ([[0.2, 0.8]], [[0, 1]], "1-D"),
    ],
)
def test_bad_inputs_are_rejected_with_a_reason(scores, labels, message):
    with pytest.raises(DataError, match=message):
        evaluate_scores(np.array(scores), np.array(labels), threshold=0.5)


def test_choosing_a_threshold_needs_positives():
    with pytest.raises(DataError, match="label 1"):
        choose_threshold(np.array([0.1, 0.7]), np.array([0, 0]))


# --- slices ----------------------------------------------------------------------------------------------------


def test_the_slice_where_the_model_is_worse_is_the_worst_slice():
    scores, labels = informative_sample(3_000, seed=5, noise=0.5)
    rng = np.random.default_rng(6)
    slices = pd.DataFrame({"area": rng.choice(["a", "b", "c"], 3_000), "plan": rng.choice(["x", "y"], 3_000)})
    worse = (slices["area"] == "b").to_numpy()
    scores[worse] = rng.random(worse.sum())  # the model knows nothing about area b
    report = evaluate_scores(scores, labels, threshold=0.5, slices=slices)
    assert report.worst_slice is not None
    assert (report.worst_slice.column, report.worst_slice.value) == ("area", "b")
    assert {(item.column, item.value) for item in report.slices} == {
        ("area", "a"), ("area", "b"), ("area", "c"), ("plan", "x"), ("plan", "y")
    }  # fmt: skip
    assert sum(item.metrics.rows for item in report.slices if item.column == "plan") == 3_000


def test_single_class_and_small_slices_are_reported_but_never_the_worst():
    scores, labels = informative_sample(400, seed=7, noise=0.5)
    group = np.full(400, "main", dtype=object)
    group[:60], labels[:60] = "one-class", 0
    # Ten rows the model ranks exactly backwards: the worst AUC there is, but too few rows to count.
    group[60:70], labels[60:70] = "tiny", [0, 1] * 5
    scores[60:70] = 1 - labels[60:70]
    report = evaluate_scores(scores, labels, threshold=0.5, slices=pd.DataFrame({"group": group}), min_slice_rows=30)
    by_value = {item.value: item.metrics for item in report.slices}
    assert by_value["one-class"].roc_auc is None and by_value["one-class"].pr_auc is None
    assert by_value["tiny"].roc_auc == 0.0
    assert report.worst_slice is not None and report.worst_slice.value == "main"


def test_missing_values_form_their_own_slice_and_the_index_is_ignored():
    scores, labels = informative_sample(100, seed=8)
    region = pd.Series(["n"] * 40 + [None] * 25 + ["s"] * 35, index=range(1000, 1100))
    report = evaluate_scores(scores, labels, threshold=0.5, slices=pd.DataFrame({"region": region}))
    rows = {item.value: item.metrics.rows for item in report.slices}
    assert rows == {"n": 40, "missing": 25, "s": 35}


def test_slices_must_have_a_row_per_score():
    scores, labels = informative_sample(10, seed=9)
    with pytest.raises(DataError, match="aligned"):
        evaluate_scores(scores, labels, threshold=0.5, slices=pd.DataFrame({"region": ["n"] * 9}))


# --- calibration -----------------------------------------------------------------------------------------------


def test_calibration_bins_of_calibrated_scores_match_their_observed_rate():
    rng = np.random.default_rng(10)
    scores = rng.random(20_000)
    labels = (rng.random(20_000) < scores).astype(int)
    bins = evaluate_scores(scores, labels, threshold=0.5).calibration
    assert len(bins) == 10
    assert sum(b.rows for b in bins) == 20_000
    for b in bins:
        assert b.lower <= b.mean_score < b.upper
        assert b.observed_rate == pytest.approx(b.mean_score, abs=0.04)


def test_empty_calibration_bins_are_left_out_and_a_score_of_one_is_in_the_last():
    scores = np.array([0.05, 0.15, 0.18, 1.0])
    bins = evaluate_scores(scores, np.array([0, 0, 1, 1]), threshold=0.5).calibration
    assert [(b.lower, b.upper, b.rows) for b in bins] == [(0.0, 0.1, 1), (0.1, 0.2, 2), (0.9, 1.0, 1)]


# --- figures and markdown --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    scores, labels = informative_sample(500, seed=11)
    return plot_evaluation(scores, labels, threshold=0.5)


def test_plots_are_readable_pngs(images):
    assert set(images) == {"roc", "precision_recall", "calibration", "confusion_matrix"}
    for png in images.values():
        assert png.startswith(PNG_SIGNATURE)
        height, width, _ = matplotlib.image.imread(io.BytesIO(png)).shape
        assert (width, height) == (450, 400)


def test_plots_survive_labels_of_one_class():
    images = plot_evaluation(np.array([0.2, 0.7, 0.9]), np.array([1, 1, 1]), threshold=0.5)
    assert all(png.startswith(PNG_SIGNATURE) for png in images.values())


def test_markdown_shows_metrics_the_delta_to_the_champion_and_the_images(images):
    scores, labels = informative_sample(1_000, seed=12, noise=0.8)
    slices = pd.DataFrame({"area": np.where(np.arange(1_000) < 500, "east", "west")})
    report = evaluate_scores(scores, labels, threshold=0.5, slices=slices)
    champion = evaluate_scores(informative_sample(1_000, seed=13, noise=2.0)[0], labels, threshold=0.5)
    markdown = render_markdown(report, champion=champion, images=images)

    delta = report.overall.roc_auc - champion.overall.roc_auc
    row = re.search(r"^\| roc_auc \|.*$", markdown, re.MULTILINE)
    assert row is not None
    assert f"{report.overall.roc_auc:.4f}" in row.group()
    assert f"{champion.overall.roc_auc:.4f}" in row.group()
    assert f"{delta:+.4f}" in row.group()
    assert f"**area = {report.worst_slice.value}**" in markdown
    assert "| area | east |" in markdown and "| area | west |" in markdown
    embedded = dict(re.findall(r"!\[(\w+)\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown))
    assert {name: base64.b64decode(data) for name, data in embedded.items()} == images


def test_markdown_without_champion_has_no_comparison():
    scores, labels = informative_sample(100, seed=14)
    markdown = render_markdown(evaluate_scores(scores, labels, threshold=0.5))
    assert "champion" not in markdown
    assert "data:image" not in markdown
    assert f"| roc_auc | {evaluate_scores(scores, labels, threshold=0.5).overall.roc_auc:.4f} |" in markdown
    assert "No slice has at least 30 rows" in markdown


def test_report_round_trips_through_json():
    scores, labels = informative_sample(100, seed=15)
    report = evaluate_scores(scores, labels, threshold=0.5, slices=pd.DataFrame({"area": ["e"] * 50 + ["w"] * 50}))
    assert EvalReport.model_validate_json(report.model_dump_json()) == report
