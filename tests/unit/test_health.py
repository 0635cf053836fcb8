"""A model's health history and page on a demo-like sequence: a quiet skew check, normal windows, a drift alerted
and cleared with retraining held, concept drift the estimate did not foresee (labels arrive, quality drops, a
retraining runs), a promoted version serving after it. The history keeps one record per version and window (reruns
replace, not add), stays bounded, and the page shows every window, the estimates beside the realized values, the
alerts, the decisions with their reasons and the promotion."""

import re
from datetime import datetime, timedelta, timezone
from html import escape
from pathlib import Path

import pytest

from cicloml.cli import main
from cicloml.drift import DriftReport, FeatureDrift
from cicloml.estimation import PerformanceEstimate
from cicloml.evaluation import Metrics
from cicloml.health import (
    KEPT_RECORDS,
    Decision,
    WindowDecision,
    history_path,
    read_history,
    record_drift,
    record_quality,
)
from cicloml.health_report import HealthPage, Promotion, gather_health, render_health_page, write_health_page
from cicloml.incidents import IncidentLog
from cicloml.quality import QualityReport, WindowQuality
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings
from cicloml.spec import AlertsSpec
from tests.unit.test_registry import register

START = datetime(2026, 3, 2, tzinfo=timezone.utc)
FEATURES = ["monthly_charges", "tenure_months", "support_calls", "payment_failures", "region", "plan"]
BASELINE = 0.80
HELD = "holds: estimated ROC AUC 0.79 ± 0.02 (training 0.80), within quality.max_drop 0.05"
CONCEPT = f"probable concept drift: live ROC AUC of churn:v1 fell to 0.680 ({BASELINE:.3f} at training)"
GATE = ["roc_auc 0.812 >= floor 0.7", "beats the champion by 0.061 [0.034, 0.088] on 400 fresh rows"]
# (hour, version, drifted features, incident, alert, retrain) of each drift check, in order.
CHECKS = [
    (0, "churn:v1", [], "quiet", "none", "none"),  # the first window: a skew check
    (1, "churn:v1", [], "quiet", "none", "none"),
    (2, "churn:v1", ["monthly_charges"], "opened", "sent", "held"),
    (3, "churn:v1", ["monthly_charges", "support_calls"], "continues", "incident_open", "held"),
    (4, "churn:v1", [], "continues", "none", "none"),
    (5, "churn:v1", [], "cleared", "sent", "none"),
    (6, "churn:v1", [], "quiet", "none", "none"),  # concept drift: the features hold
    (7, "churn:v1", [], "quiet", "none", "none"),
    (8, "churn:v2", [], "quiet", "none", "none"),  # the promoted version's first window: a skew check
    (9, "churn:v2", [], "quiet", "none", "none"),
]
CONCEPT_HOURS = (6, 7)


def window(hour: int) -> datetime:
    return START + timedelta(hours=hour)


def estimate(roc_auc: float, rows: int = 1000) -> PerformanceEstimate:
    interval = (roc_auc - 0.02, roc_auc + 0.02)
    return PerformanceEstimate(
        rows=rows,
        simulations=500,
        confidence=0.9,
        roc_auc=roc_auc,
        roc_auc_se=0.012,
        roc_auc_interval=interval,
        pr_auc=None,
        pr_auc_se=None,
        pr_auc_interval=None,
        threshold=0.5,
        precision=None,
        precision_se=None,
        precision_interval=None,
        recall=None,
        recall_se=None,
        recall_interval=None,
        positive_rate=0.2,
    )


def drift_report(hour: int, tag: str, drifted: list[str], features: list[str] = FEATURES) -> DriftReport:
    def column(name: str, score: float) -> FeatureDrift:
        return FeatureDrift(
            column=name,
            kind="numeric",
            method="wasserstein",
            score=score,
            threshold=0.3,
            drifted=score > 0.3,
            reference_rows=5000,
            current_rows=1000,
            reference_null_rate=0.0,
            current_null_rate=0.0,
        )

    scores = [column(name, 0.6 + 0.1 * i if name in drifted else 0.02 * (i + 1)) for i, name in enumerate(features)]
    return DriftReport(
        model_tag=tag,
        window_start=window(hour),
        window_end=window(hour + 1),
        check="skew" if hour in (0, 8) else "drift",
        min_drifted_features=1,
        features=scores,
        prediction=column("score", 0.35 if drifted else 0.05),
        quality_issues=[],
        performance=estimate(0.79 if drifted else 0.80),
        baseline_roc_auc=BASELINE,
    )


def quality_report(tag: str, hours: list[int], *, known_by: datetime, realized: dict[int, float]) -> QualityReport:
    windows = []
    for hour in hours:
        auc = realized.get(hour)
        degraded = auc is not None and auc < BASELINE - 0.05
        metrics = None
        if auc is not None:
            metrics = Metrics(
                roc_auc=auc,
                pr_auc=0.5,
                log_loss=0.4,
                brier=0.1,
                f1=0.5,
                precision=0.5,
                recall=0.5,
                positive_rate=0.2,
                rows=1000,
            )
        windows.append(
            WindowQuality(
                window_start=window(hour),
                predictions=1000,
                labelled=1000 if auc is not None else 0,
                metrics=metrics,
                judged=auc is not None,
                roc_auc_interval=(auc - 0.03, auc + 0.03) if auc is not None else None,
                degraded=degraded,
                estimate=estimate(0.80),
                concept_drift=degraded,
            )
        )
    return QualityReport(
        model_tag=tag, known_by=known_by, baseline_roc_auc=BASELINE, max_drop=0.05, min_labels=200, windows=windows
    )


def record_demo_history(state_dir: Path, report_dir: Path | None = None) -> None:
    """The demo-like sequence, as the drift and quality checks record it."""
    for hour, tag, drifted, incident, alert, retrain in CHECKS:
        report = drift_report(hour, tag, drifted)
        report_path = None
        if report_dir is not None:
            report_path = report_dir / f"{hour}.html"
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(f"<!doctype html><title>drift report {hour}</title><p>window {hour}</p>")
        record_drift(
            state_dir,
            report,
            rows=1000,
            incident=incident,
            alert=alert,
            retrain=retrain,
            retrain_reason=HELD if retrain == "held" else None,
            report_path=report_path,
        )
    # 30 days on, labels: the concept-drift windows dropped; the check alerts on the first and retrains on the last.
    v1_hours = [hour for hour, tag, *_ in CHECKS if tag == "churn:v1"]
    realized = {hour: 0.68 if hour in CONCEPT_HOURS else 0.80 for hour in v1_hours}
    quality = quality_report("churn:v1", v1_hours, known_by=window(7) + timedelta(days=31), realized=realized)
    decision = Decision(source="quality", action="ran", reason=CONCEPT)
    record_quality(
        state_dir,
        quality,
        alerts={window(6): "sent"},
        decisions=[WindowDecision(model_tag="churn:v1", window_start=window(7), decision=decision)],
    )
    later = quality_report("churn:v2", [8, 9], known_by=window(9) + timedelta(days=31), realized={8: 0.81})
    record_quality(state_dir, later, alerts={})


def demo_page(state_dir: Path) -> HealthPage:
    """The page's content for the demo history, with v2's promotion as the registry would give it."""
    settings = Settings(state_dir=state_dir)
    page = gather_health(settings, "churn")
    promotion = Promotion(tag="churn:v2", registered=window(7) + timedelta(minutes=30), reasons=GATE, champion=True)
    return page.model_copy(update={"champion": "churn:v2", "promotions": [promotion]})


def test_each_check_keeps_its_part_of_a_window_and_reruns_replace_it(tmp_path):
    record_demo_history(tmp_path)
    records = read_history(tmp_path, "churn")
    assert [(r.model_tag, r.window_start) for r in records] == [(tag, window(hour)) for hour, tag, *_ in CHECKS]
    drifted = records[2]
    assert (
        drifted.drift is not None
        and drifted.drift.check == "drift"
        and drifted.drift.features["monthly_charges"].drifted
    )
    assert drifted.drift.estimated is not None and drifted.drift.estimated.value == 0.79
    assert drifted.quality is not None and drifted.quality.realized is not None
    assert drifted.quality.realized.value == 0.80
    assert [d.action for d in drifted.decisions] == ["held"] and drifted.decisions[0].reason == HELD
    concept = records[6]
    assert concept.quality is not None and (concept.quality.concept_drift, concept.quality.alert) == (True, "sent")
    assert [(d.source, d.action) for d in records[7].decisions] == [("quality", "ran")]

    # Rerunning both checks of a window adds nothing; "already" outcomes keep what happened the first time.
    size = len(records)
    record_drift(
        tmp_path,
        drift_report(2, "churn:v1", ["monthly_charges"]),
        rows=1000,
        incident="opened",
        alert="already_sent",
        retrain="already_requested",
        retrain_reason=HELD,
    )
    quality = quality_report("churn:v1", [6, 7], known_by=window(7) + timedelta(days=32), realized={6: 0.69, 7: 0.68})
    again = Decision(source="quality", action="already_requested", reason=CONCEPT)
    record_quality(
        tmp_path,
        quality,
        alerts={window(6): "already_sent"},
        decisions=[WindowDecision(model_tag="churn:v1", window_start=window(7), decision=again)],
    )
    records = read_history(tmp_path, "churn")
    assert len(records) == size
    assert records[2].drift is not None and records[2].drift.alert == "sent"
    assert [d.action for d in records[2].decisions] == ["held"]
    assert records[6].quality is not None and records[6].quality.alert == "sent"
    assert records[6].quality.realized is not None and records[6].quality.realized.value == 0.69
    assert [(d.source, d.action) for d in records[7].decisions] == [("quality", "ran")]


def test_the_history_keeps_the_newest_records_only(tmp_path):
    for hour in range(KEPT_RECORDS + 5):
        record_drift(
            tmp_path, drift_report(hour, "churn:v1", []), rows=10, incident="quiet", alert="none", retrain="none",
            retrain_reason=None,
        )  # fmt: skip
    records = read_history(tmp_path, "churn")
    assert len(records) == KEPT_RECORDS
    assert records[0].window_start == window(5) and records[-1].window_start == window(KEPT_RECORDS + 4)
    assert history_path(tmp_path, "churn").stat().st_size < 1_000 * KEPT_RECORDS  # six features: well under 1 KB each


def test_a_model_name_that_is_not_a_file_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot name"):
        read_history(tmp_path, "../churn")


def test_the_page_shows_every_window_the_estimates_realized_values_and_decisions(tmp_path):
    record_demo_history(tmp_path, report_dir=tmp_path / "reports" / "drift")
    page = demo_page(tmp_path)
    html = render_health_page(page, page_path=tmp_path / "reports" / "health" / "churn.html")

    assert "<script" not in html and "http" not in html  # nothing to run, nothing fetched
    # Every window: a label in the picture (linking its drift report, relatively) and a row in the table.
    for hour, *_ in CHECKS:
        start = window(hour).isoformat()
        assert html.count(f'data-window="{start}"') >= 2, hour
    assert 'href="../drift/2.html"' in html
    # Every feature gets a heatmap row, the most drifted on top; drifted cells are marked.
    rows = [name for name in re.findall(r'text-anchor="end"><title>([^<]+)</title>', html) if name in FEATURES]
    assert sorted(rows) == sorted(FEATURES) and rows[:2] == ["monthly_charges", "support_calls"]
    assert html.count('class="cell drifted"') == 3 + 2  # the features' cells, and the score distribution's
    # Estimated beside realized: the drifted window's estimate, the concept drift's drop and its verdict.
    assert "estimated ROC AUC 0.790 [0.770, 0.810]" in html
    assert "realized ROC AUC 0.680 [0.650, 0.710] on 1,000 labels; degraded, unforeseen by the estimate" in html
    assert html.count('class="realized"') == 8 + 1  # every labelled v1 window, and v2's first
    assert html.count('class="estimated"') == len(CHECKS)
    # Alerts: drift opened and cleared, the quality alert; decisions with their reasons; the promotion.
    assert html.count('<circle class="alert"') == 1 and "drift incident cleared" in html
    assert "quality alert: probable concept drift" in html
    assert html.count('class="decision"') == 3 and HELD in html and CONCEPT in html
    assert html.count('class="promotion"') == 1 and all(escape(reason) in html for reason in GATE)
    assert "Champion: <b>churn:v2</b>" in html and "Latest realized ROC AUC: 0.810" in html


def test_the_page_is_written_for_the_newest_windows_with_none_checked_yet_said(tmp_path):
    settings = Settings(state_dir=tmp_path)
    empty = write_health_page(settings, "churn")
    assert empty == tmp_path / "reports" / "health" / "churn.html"
    assert "no windows checked yet" in empty.read_text()

    record_demo_history(tmp_path)
    html = write_health_page(settings, "churn", windows=3).read_text()
    shown = set(re.findall(r'class="window" data-window="([^"]+)"', html))
    assert shown == {window(hour).isoformat() for hour in (7, 8, 9)}
    assert "the history keeps 10; showing up to 3" in html


def test_cicloml_report_writes_the_page_with_the_registry_s_promotions_and_the_open_incident(settings, capsys):
    registry = ModelRegistry(settings, "churn")
    first, rejected = register(registry, 0), register(registry, 1, gate="rejected")
    registry.promote(first)
    record_demo_history(settings.state_dir)
    with IncidentLog(settings.incidents_dir, "churn").updating() as incidents:
        incidents.apply(drift_report(10, "churn:v2", ["monthly_charges"]), AlertsSpec())

    out = settings.state_dir / "elsewhere" / "health.html"
    assert main(["report", "--windows", "4", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    assert f'data-version="{first}"' in html and rejected not in html  # the gate's promotions, not its rejections
    assert f"Champion: <b>{first}</b>" in html and "Drift incident open since 2026-03-02 10:00 UTC" in html
    assert len(set(re.findall(r'class="window" data-window="([^"]+)"', html))) == 4

    assert main(["report"]) == 0
    assert capsys.readouterr().out.strip() == str(settings.reports_dir / "health" / "churn.html")
    assert main(["report", "--model", "../churn"]) == 2
    assert "cannot name a history file" in capsys.readouterr().err
    assert main(["report", "--model", "churm"]) == 2
    assert "--model churm: no checks recorded" in capsys.readouterr().err
