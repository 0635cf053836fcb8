"""The model-health page: how a model has been doing over its last windows, on one page, for a person paged at night.

Built from the model's history (`cicloml.health`), the registry and the incident log: one picture with a column per
window (per version and window, when several versions served one) — which version served it, the alerts, retraining
decisions and promotions, a heatmap of every feature's drift score over its threshold, the score distribution's
drift, and the ROC AUC estimated from the scores before labels (with its interval) beside the one realized once
labels arrive — then the same numbers, the decisions with their reasons and the promotions with the gate's reasons
as tables, newest first. Every mark carries its numbers as a tooltip; each window's label links its drift report.

The page is self-contained (inline CSS and SVG, no script, nothing fetched), so it opens from disk, a Prefect link
artifact or a link in Slack with no network. It is written to `<state>/reports/health/<model>.html`.
"""

import math
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from urllib.parse import quote

from pydantic import BaseModel

from cicloml.atomic import atomic_path
from cicloml.health import Decision, RocAuc, Score, WindowRecord, read_history
from cicloml.incidents import Incident, IncidentLog
from cicloml.registry import ModelRegistry
from cicloml.settings import Settings

DEFAULT_WINDOWS = 30
LEFT = 210
"""Room left of the columns for the rows' names."""
MAX_PLOT_WIDTH = 900
CELL_WIDTH = (14, 80)
"""The narrowest and widest column, in pixels: 30 windows fill `MAX_PLOT_WIDTH`, a few do not stretch."""
ROW = 16
CHART_HEIGHT = 190
ESTIMATE_COLOUR = "#2c6fbb"
REALIZED_COLOUR = "#e8590c"
DEGRADED_COLOUR = "#c0392b"
ALERT_COLOUR = "#c0392b"
CLEARED_COLOUR = "#27ae60"
QUALITY_ALERT_COLOUR = "#8e44ad"
PROMOTION_COLOUR = "#1e8449"
UNCHECKED_COLOUR = "#e5e5e5"
VERSION_COLOURS = ("#dbe9f6", "#fde0c5", "#d9f0d3", "#e7d4e8", "#fff2ae", "#d5f5f3")
"""Background of each version's windows, in the order versions first served."""
ACTED = {"requested", "ran", "restarted"}
"""Retraining decisions that started (or asked for) a run; the others (held, off, already_requested...) did not."""
INCIDENT_WORDS = {
    "opened": "drift alert: incident opened (message {message})",
    "continues": "drift incident open",
    "cleared": "drift incident cleared (message {message})",
}
"""The windows table's words for what a window did to the drift incident."""

XScale = Callable[[float], float]
"""A column's left edge in pixels, from its index (fractions: inside the column)."""
LABEL_CHARACTERS = 32
"""Longer row names are cut (the whole name is the tooltip)."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:84em;color:#222}
h2{margin-top:1.6em}
table{border-collapse:collapse;font-size:0.9em}
td,th{padding:0.2em 0.7em;text-align:left;vertical-align:top}
th{border-bottom:1px solid #999}
tr:nth-child(even) td{background:#f6f6f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.n,td:first-child{white-space:nowrap}
td ul{margin:0;padding-left:1.2em}
.summary{background:#f4f6f7;border-left:4px solid #2c6fbb;padding:0.5em 1em}
.summary.alerting{border-left-color:#c0392b}
.summary p{margin:0.3em 0}
.legend{font-size:0.85em;color:#444;margin:0.3em 0}
.legend span{white-space:nowrap;margin-right:1.2em}
.swatch{display:inline-block;width:1.6em;height:0.8em;vertical-align:middle;margin-right:0.3em;border:1px solid #bbb}
.drifted{color:#c0392b;font-weight:600}
.muted{color:#777}
svg{max-width:100%;height:auto;display:block;font-size:11px}
svg a text{fill:#1a5276;text-decoration:underline}
"""


class Promotion(BaseModel):
    """A version the gate passed (or the champion, promoted by hand), with the gate's reasons."""

    tag: str
    registered: datetime
    reasons: list[str]
    champion: bool


class HealthPage(BaseModel):
    """What the page shows: a model's last windows and what surrounds them."""

    model: str
    records: list[WindowRecord]
    """The last windows' records, oldest first."""
    windows: int
    """Windows asked for (the records hold at most this many window starts)."""
    kept_windows: int
    """Windows the history holds."""
    champion: str | None
    promotions: list[Promotion]
    incident: Incident | None
    """The open drift incident, if any."""
    written: datetime


def gather_health(settings: Settings, model: str, *, windows: int = DEFAULT_WINDOWS) -> HealthPage:
    """Read what the page shows of `model`: its last `windows` windows, champion, promotions, open incident."""
    if windows < 1:
        raise ValueError(f"windows must be at least 1 (got {windows})")
    records = read_history(settings.state_dir, model)
    starts = sorted({record.window_start for record in records})
    shown = set(starts[-windows:])
    registry = ModelRegistry(settings, model)
    promotions = [
        Promotion(
            tag=version.tag,
            registered=version.created,
            reasons=version.lineage.gate.reasons if version.lineage.gate else [],
            champion=version.champion,
        )
        for version in registry.versions()
        if version.labels.get("gate") == "passed" or version.champion
    ]
    incident, _ = IncidentLog(settings.incidents_dir, model).read()
    return HealthPage(
        model=model,
        records=[record for record in records if record.window_start in shown],
        windows=windows,
        kept_windows=len(starts),
        champion=registry.champion(),
        promotions=promotions,
        incident=incident,
        written=datetime.now(timezone.utc),
    )


def health_page_path(settings: Settings, model: str) -> Path:
    return settings.reports_dir / "health" / f"{model}.html"


def write_health_page(
    settings: Settings, model: str, *, windows: int = DEFAULT_WINDOWS, out: Path | None = None
) -> Path:
    """Write `model`'s health page (to `out`, default `health_page_path`) atomically; its path."""
    path = out or health_page_path(settings, model)
    html = render_health_page(gather_health(settings, model, windows=windows), page_path=path)
    with atomic_path(path) as temporary:
        temporary.write_text(html)
    return path


def render_health_page(page: HealthPage, *, page_path: Path | None = None) -> str:
    """The page; links to drift reports are relative to `page_path` when given (they keep working when the
    reports folder is copied or served as a whole), absolute file URLs otherwise."""
    records = page.records
    newest_first = records[::-1]
    span = (
        f"{len(records)} check(s) of the last {len({r.window_start for r in records})} window(s), "
        f"{_when(records[0].window_start)} to {_when(records[-1].window_start)} UTC"
        if records
        else "no windows checked yet"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Model health: {escape(page.model)}</title>
<style>{STYLE}</style></head><body>
<h1>Model health: {escape(page.model)}</h1>
{_summary(page)}
<p class="muted">{span} (the history keeps {page.kept_windows}; showing up to {page.windows}). Written
{page.written:%Y-%m-%d %H:%M} UTC. Hover over any mark for its numbers; a window's label opens its drift report.</p>
<h2>Windows</h2>
{_legend()}
{_picture(records, page, page_path) if records else "<p>Nothing to draw yet.</p>"}
<h2>Retraining decisions <span class="muted">(newest first)</span></h2>
{_decisions_table(newest_first)}
<h2>Promotions</h2>
{_promotions_table(page.promotions, records)}
<h2>Every window <span class="muted">(newest first)</span></h2>
{_windows_table(newest_first, page_path)}
</body></html>
"""


# --- the summary ---------------------------------------------------------------------------------------------


def _summary(page: HealthPage) -> str:
    """What a person asks first: who serves, is an incident open, the newest verdict, estimate and realized value."""
    newest = page.records[::-1]
    champion = f"<b>{escape(page.champion)}</b>" if page.champion else "none yet"
    lines = [f"<p>Champion: {champion}.</p>"]
    if page.incident:
        lines.append(f'<p class="drifted">Drift incident {escape(page.incident.describe())}.</p>')
    else:
        lines.append("<p>No open drift incident.</p>")
    checked = next((record for record in newest if record.drift), None)
    if checked and checked.drift:
        drifted = [name for name, score in checked.drift.features.items() if score.drifted]
        found = checked.drift.verdict + (f" in {', '.join(drifted)}" if drifted else "")
        lines.append(
            f"<p>Latest window checked: {_when(checked.window_start)} UTC, {escape(checked.model_tag)}: "
            f"{escape(found)}.</p>"
        )
    estimated = next((record for record in newest if _estimated(record)), None)
    if estimated:
        lines.append(
            f"<p>Latest estimated ROC AUC: {_auc(_estimated(estimated))} (window {_when(estimated.window_start)}, "
            "before labels).</p>"
        )
    realized = next((record for record in newest if record.quality and record.quality.realized), None)
    if realized and realized.quality:
        quality = realized.quality
        verdict = ' — <span class="drifted">degraded</span>' if quality.degraded else ""
        lines.append(
            f"<p>Latest realized ROC AUC: {_auc(quality.realized)} (window {_when(realized.window_start)}, "
            f"{quality.labelled:,} labels known by {quality.known_by:%Y-%m-%d %H:%M} UTC){verdict}.</p>"
        )
    else:
        lines.append("<p>No realized ROC AUC yet: the labels have not arrived.</p>")
    return f'<div class="summary{" alerting" if page.incident else ""}">{"".join(lines)}</div>'


def _legend() -> str:
    return f"""<p class="legend">
<span><i class="swatch" style="background:linear-gradient(90deg,{_heat(0)},{_heat(0.99)})"></i>score below its
threshold</span><span><i class="swatch" style="background:linear-gradient(90deg,{_heat(1)},{_heat(2)});
border:2px solid #222"></i>above it: drifted (darker: up to twice the threshold)</span>
<span><i class="swatch" style="background:{UNCHECKED_COLOUR}"></i>no drift check</span></p>
<p class="legend"><span style="color:{ALERT_COLOUR}">● drift alert (incident opened; shaded while open)</span>
<span style="color:{CLEARED_COLOUR}">✓ incident cleared</span>
<span style="color:{QUALITY_ALERT_COLOUR}">◆ quality alert</span>
<span>● retraining asked for / ○ not (held, off, already asked)</span>
<span style="color:{PROMOTION_COLOUR}">▲ first window of a promoted version</span></p>
<p class="legend"><span style="color:{ESTIMATE_COLOUR}">— estimated ROC AUC, band: its interval</span>
<span style="color:{REALIZED_COLOUR}">● realized ROC AUC, bar: its interval</span>
<span style="color:{DEGRADED_COLOUR}">● degraded</span><span class="muted">- - training ROC AUC</span></p>"""


# --- the picture ---------------------------------------------------------------------------------------------


def _picture(records: list[WindowRecord], page: HealthPage, page_path: Path | None) -> str:
    """One SVG, a column per record: event rows, the heatmap, the ROC AUC chart, the window labels."""
    count = len(records)
    cell = max(CELL_WIDTH[0], min(CELL_WIDTH[1], MAX_PLOT_WIDTH / count))
    features = _feature_order(records)
    width = LEFT + count * cell + 16
    seconds = any(record.window_start.second for record in records)

    def x(index: float) -> float:
        return LEFT + index * cell

    parts: list[str] = []
    y = 6
    parts.append(_version_row(records, x, cell, y))
    y += ROW + 4
    parts.append(_alerts_row(records, x, cell, y))
    y += ROW + 2
    parts.append(_decisions_row(records, x, cell, y))
    y += ROW + 2
    parts.append(_promotions_row(records, page.promotions, x, cell, y))
    y += ROW + 10
    parts.append(
        f'<text x="{LEFT - 8}" y="{y + 11}" text-anchor="end" font-weight="600">drift score / threshold</text>'
    )
    y += ROW
    for name in features:
        parts.append(_heat_row(name, [r.drift.features.get(name) if r.drift else None for r in records], x, cell, y))
        y += ROW
    y += 6
    parts.append(
        _heat_row("model score distribution", [r.drift.score_drift if r.drift else None for r in records], x, cell, y)
    )
    y += ROW + 30  # room for the chart's heading above its top tick
    parts.append(_chart(records, x, cell, y))
    y += CHART_HEIGHT + 8
    labels = []
    for index, record in enumerate(records):
        label = f"{record.window_start:%m-%d %H:%M:%S}" if seconds else f"{record.window_start:%m-%d %H:%M}"
        cx = x(index + 0.5)
        text = (
            f'<text class="window-label" data-window="{record.window_start.isoformat()}" x="{cx:.1f}" y="{y}" '
            f'transform="rotate(-55 {cx:.1f} {y})" text-anchor="end"><title>{escape(_title(record))}</title>'
            f"{label}</text>"
        )
        href = _link(record.drift.report_path, page_path) if record.drift and record.drift.report_path else None
        labels.append(f'<a href="{escape(href)}">{text}</a>' if href else text)
    parts.append("".join(labels))
    height = y + 95
    return (
        f'<svg class="health" viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'role="img" aria-label="{escape(page.model)}: drift, quality and decisions per window">'
        f"{''.join(parts)}</svg>"
    )


def _row_label(text: str, y: float) -> str:
    shown = text if len(text) <= LABEL_CHARACTERS else text[: LABEL_CHARACTERS - 1] + "…"
    return (
        f'<text x="{LEFT - 8}" y="{y + 11.5:.1f}" text-anchor="end"><title>{escape(text)}</title>{escape(shown)}</text>'
    )


def _version_row(records: list[WindowRecord], x: XScale, cell: float, y: float) -> str:
    colours: dict[str, str] = {}
    parts = [_row_label("served by", y)]
    for index, record in enumerate(records):
        colour = colours.setdefault(record.model_tag, VERSION_COLOURS[len(colours) % len(VERSION_COLOURS)])
        parts.append(
            f'<rect x="{x(index):.1f}" y="{y}" width="{cell:.1f}" height="{ROW}" fill="{colour}">'
            f"<title>{escape(record.model_tag)}</title></rect>"
        )
        if index == 0 or records[index - 1].model_tag != record.model_tag:
            parts.append(f'<text x="{x(index) + 3:.1f}" y="{y + 12}">{escape(_short(record.model_tag))}</text>')
    return "".join(parts)


def _alerts_row(records: list[WindowRecord], x: XScale, cell: float, y: float) -> str:
    parts = [_row_label("alerts", y)]
    middle = y + ROW / 2
    for index, record in enumerate(records):
        cx = x(index + 0.5)
        drift, quality = record.drift, record.quality
        if drift and drift.incident in ("opened", "continues"):
            parts.append(
                f'<rect x="{x(index):.1f}" y="{y}" width="{cell:.1f}" height="{ROW}" fill="{ALERT_COLOUR}" '
                f'fill-opacity="0.15"><title>drift incident open</title></rect>'
            )
        offset = -5 if quality and quality.alert and drift and drift.incident in ("opened", "cleared") else 0
        if drift and drift.incident == "opened":
            parts.append(
                f'<circle class="alert" cx="{cx + offset:.1f}" cy="{middle}" r="4.5" fill="{ALERT_COLOUR}">'
                f"<title>drift alert: incident opened (message {escape(drift.alert)})</title></circle>"
            )
        elif drift and drift.incident == "cleared":
            parts.append(
                f'<text class="alert" x="{cx + offset:.1f}" y="{middle + 4}" text-anchor="middle" '
                f'fill="{CLEARED_COLOUR}" font-weight="700">✓<title>drift incident cleared (message '
                f"{escape(drift.alert)})</title></text>"
            )
        if quality and quality.alert:
            what = "probable concept drift" if quality.concept_drift else "quality dropped"
            parts.append(
                f'<path class="alert" d="{_diamond(cx - offset, middle, 5)}" fill="{QUALITY_ALERT_COLOUR}">'
                f"<title>quality alert: {what} (message {escape(quality.alert)})</title></path>"
            )
    return "".join(parts)


def _decisions_row(records: list[WindowRecord], x: XScale, cell: float, y: float) -> str:
    parts = [_row_label("retraining", y)]
    for index, record in enumerate(records):
        count = len(record.decisions)
        for position, decision in enumerate(record.decisions):
            cx = x(index + 0.5) + (position - (count - 1) / 2) * 9
            acted = decision.action in ACTED
            fill = "#1a5276" if acted else "#fff"
            parts.append(
                f'<circle class="decision" cx="{cx:.1f}" cy="{y + ROW / 2}" r="4" fill="{fill}" stroke="#1a5276" '
                f'stroke-width="1.5"><title>{escape(_decision_line(decision))}</title></circle>'
            )
    return "".join(parts)


def _promotions_row(records: list[WindowRecord], promotions: list[Promotion], x: XScale, cell: float, y: float) -> str:
    parts = [_row_label("promotions", y)]
    first = _first_windows(records)
    for promotion in promotions:
        index = first.get(promotion.tag)
        if index is None or index == 0:  # not served here yet, or served since before the page's first window
            continue
        cx = x(index + 0.5)
        reasons = "; ".join(promotion.reasons) or "promoted by hand"
        parts.append(
            f'<path class="promotion" d="M{cx - 5:.1f},{y + ROW - 2} L{cx:.1f},{y + 2} L{cx + 5:.1f},{y + ROW - 2} Z" '
            f'fill="{PROMOTION_COLOUR}"><title>{escape(promotion.tag)} promoted (registered '
            f"{promotion.registered:%Y-%m-%d %H:%M} UTC), first served here: {escape(reasons)}</title></path>"
        )
    return "".join(parts)


def _heat_row(name: str, scores: list[Score | None], x: XScale, cell: float, y: float) -> str:
    parts = [_row_label(name, y)]
    for index, score in enumerate(scores):
        if score is None:
            parts.append(
                f'<rect x="{x(index) + 0.5:.1f}" y="{y + 0.5}" width="{cell - 1:.1f}" height="{ROW - 1}" '
                f'fill="{UNCHECKED_COLOUR}"><title>{escape(name)}: no drift check</title></rect>'
            )
            continue
        ratio = score.score / score.threshold if score.threshold > 0 else (0.0 if score.score == 0 else 2.0)
        outline = ' stroke="#222" stroke-width="1.5"' if score.drifted else ""
        verdict = "drifted" if score.drifted else "below the threshold"
        parts.append(
            f'<rect class="cell{" drifted" if score.drifted else ""}" x="{x(index) + 0.5:.1f}" y="{y + 0.5}" '
            f'width="{cell - 1:.1f}" height="{ROW - 1}" fill="{_heat(ratio)}"{outline}><title>{escape(name)}: '
            f"score {score.score:.3f}, threshold {score.threshold:g} ({verdict})</title></rect>"
        )
    return "".join(parts)


def _chart(records: list[WindowRecord], x: XScale, cell: float, top: float) -> str:
    """Estimated ROC AUC (line, interval band), realized (points, interval bars), training ROC AUC (dashes)."""
    values = [
        value
        for record in records
        for auc in (_estimated(record), record.quality.realized if record.quality else None)
        if auc is not None
        for value in (auc.value, *(auc.interval or ()))
    ]
    values += [b for record in records if (b := _baseline(record)) is not None]
    parts = [f'<text x="{LEFT - 8}" y="{top - 14}" text-anchor="end" font-weight="600">ROC AUC</text>']
    bottom = top + CHART_HEIGHT
    if not values:
        parts.append(f'<text x="{LEFT + 8}" y="{top + 20}" class="muted">no ROC AUC estimated or realized yet</text>')
        return "".join(parts)
    step = 0.05 if max(values) - min(values) > 0.12 else 0.02
    low = max(0.0, math.floor((min(values) - 0.01) / step) * step)
    high = min(1.0, math.ceil((max(values) + 0.01) / step) * step)
    high = high if high > low else low + step

    def y(value: float) -> float:
        return bottom - (value - low) / (high - low) * CHART_HEIGHT

    right = x(len(records))
    for tick in _ticks(low, high, step):
        parts.append(
            f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{right:.1f}" y2="{y(tick):.1f}" stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:.2f}</text>'
        )
    parts.append(f'<line x1="{LEFT}" y1="{bottom}" x2="{right:.1f}" y2="{bottom}" stroke="#999"/>')
    for index, record in enumerate(records):
        baseline = _baseline(record)
        if baseline is not None:
            parts.append(
                f'<line x1="{x(index) + 2:.1f}" y1="{y(baseline):.1f}" x2="{x(index + 1) - 2:.1f}" '
                f'y2="{y(baseline):.1f}" stroke="#888" stroke-dasharray="3,2"><title>training ROC AUC of '
                f"{escape(record.model_tag)}: {baseline:.3f}</title></line>"
            )
    for run in _runs([_estimated(record) for record in records]):
        upper = [(x(i + 0.5), y((auc.interval or (auc.value, auc.value))[1])) for i, auc in run]
        lower = [(x(i + 0.5), y((auc.interval or (auc.value, auc.value))[0])) for i, auc in reversed(run)]
        band = " ".join(f"{px:.1f},{py:.1f}" for px, py in [*upper, *lower])
        line = " ".join(f"{x(i + 0.5):.1f},{y(auc.value):.1f}" for i, auc in run)
        parts.append(
            f'<polygon points="{band}" fill="{ESTIMATE_COLOUR}" fill-opacity="0.15"/>'
            f'<polyline points="{line}" fill="none" stroke="{ESTIMATE_COLOUR}" stroke-width="2"/>'
        )
        parts += [
            f'<circle class="estimated" cx="{x(i + 0.5):.1f}" cy="{y(auc.value):.1f}" r="2.5" '
            f'fill="{ESTIMATE_COLOUR}"><title>estimated ROC AUC {_auc_text(auc)}</title></circle>'
            for i, auc in run
        ]
    for index, record in enumerate(records):
        quality = record.quality
        if quality is None or quality.realized is None:
            continue
        auc, cx = quality.realized, x(index + 0.5)
        colour = DEGRADED_COLOUR if quality.degraded else REALIZED_COLOUR
        if auc.interval:
            parts.append(
                f'<line x1="{cx:.1f}" y1="{y(auc.interval[0]):.1f}" x2="{cx:.1f}" y2="{y(auc.interval[1]):.1f}" '
                f'stroke="{colour}" stroke-width="2"/>'
            )
        verdict = "; degraded" if quality.degraded else ""
        verdict += ", unforeseen by the estimate: probable concept drift" if quality.concept_drift else ""
        parts.append(
            f'<circle class="realized" cx="{cx:.1f}" cy="{y(auc.value):.1f}" r="4.5" fill="{colour}" stroke="#fff">'
            f"<title>realized ROC AUC {_auc_text(auc)} on {quality.labelled:,} labels{verdict}</title></circle>"
        )
    return "".join(parts)


# --- the tables ----------------------------------------------------------------------------------------------


def _decisions_table(records: list[WindowRecord]) -> str:
    rows = [
        f'<tr data-window="{record.window_start.isoformat()}"><td>{_when(record.window_start)}</td>'
        f"<td>{escape(record.model_tag)}</td><td>{escape(decision.source)}</td>"
        f"<td><b>{escape(decision.action.replace('_', ' '))}</b></td><td>{escape(decision.reason or '—')}</td></tr>"
        for record in records
        for decision in record.decisions
    ]
    if not rows:
        return "<p>No retraining decisions in these windows.</p>"
    return (
        '<table class="decisions"><tr><th>window (UTC)</th><th>version</th><th>check</th><th>decision</th>'
        f"<th>reason</th></tr>{''.join(rows)}</table>"
    )


def _promotions_table(promotions: list[Promotion], records: list[WindowRecord]) -> str:
    if not promotions:
        return "<p>No version promoted yet.</p>"
    first = _first_windows(records)
    rows = []
    for promotion in reversed(promotions):
        index = first.get(promotion.tag)
        served = _when(records[index].window_start) if index is not None else "not in these windows"
        champion = " (champion)" if promotion.champion else ""
        reasons = "".join(f"<li>{escape(reason)}</li>" for reason in promotion.reasons) or "<li>promoted by hand</li>"
        rows.append(
            f'<tr data-version="{escape(promotion.tag)}"><td><b>{escape(promotion.tag)}</b>{champion}</td>'
            f"<td>{promotion.registered:%Y-%m-%d %H:%M}</td><td>{served}</td><td><ul>{reasons}</ul></td></tr>"
        )
    return (
        '<table class="promotions"><tr><th>version</th><th>registered (UTC)</th><th>first window served</th>'
        f"<th>the gate's reasons</th></tr>{''.join(rows)}</table>"
    )


def _windows_table(records: list[WindowRecord], page_path: Path | None) -> str:
    if not records:
        return "<p>No windows checked yet.</p>"
    rows = []
    for record in records:
        drift, quality = record.drift, record.quality
        window = _when(record.window_start)
        if drift and drift.report_path:
            window = f'<a href="{escape(_link(drift.report_path, page_path))}">{window}</a>'
        drifted = [name for name, score in drift.features.items() if score.drifted] if drift else []
        verdict = escape(drift.verdict) if drift else '<span class="muted">not checked</span>'
        if drift and drift.verdict in ("drift", "training/serving skew"):
            verdict = f'<span class="drifted">{verdict}</span>'
        realized = "—"
        if quality is not None:
            realized = (
                f"{_auc(quality.realized)} ({quality.labelled:,} labels)" if quality.realized else "no labels yet"
            )
            if quality.concept_drift:
                realized += '<br><span class="drifted">degraded: probable concept drift</span>'
            elif quality.degraded:
                realized += '<br><span class="drifted">degraded</span>'
        alerts = []
        if drift and drift.incident != "quiet":
            alerts.append(INCIDENT_WORDS[drift.incident].format(message=drift.alert.replace("_", " ")))
        if quality and quality.alert:
            alerts.append(f"quality alert (message: {quality.alert.replace('_', ' ')})")
        score = drift.score_drift if drift else None
        rows.append(
            f'<tr class="window" data-window="{record.window_start.isoformat()}"><td>{window}</td>'
            f"<td>{escape(record.model_tag)}</td><td>{verdict}</td><td>{escape(', '.join(drifted)) or '—'}</td>"
            f'<td class="n">{_score_text(score)}</td><td class="n">{_auc(_estimated(record))}</td><td>{realized}</td>'
            f"<td>{escape('; '.join(alerts)) or '—'}</td></tr>"
        )
    return (
        '<table class="windows"><tr><th>window (UTC)</th><th>version</th><th>check</th><th>drifted features</th>'
        "<th>score drift</th><th>estimated ROC AUC</th><th>realized ROC AUC</th><th>alerts</th></tr>"
        f"{''.join(rows)}</table>"
    )


# --- helpers -------------------------------------------------------------------------------------------------


def _feature_order(records: list[WindowRecord]) -> list[str]:
    """Features most often drifted first, then by their highest score over threshold: what moved is on top."""
    seen: dict[str, tuple[int, float]] = {}
    for record in records:
        for name, score in (record.drift.features if record.drift else {}).items():
            drifted, peak = seen.get(name, (0, 0.0))
            ratio = score.score / score.threshold if score.threshold > 0 else 0.0
            seen[name] = (drifted + score.drifted, max(peak, ratio))
    return sorted(seen, key=lambda name: (-seen[name][0], -seen[name][1], name))


def _first_windows(records: list[WindowRecord]) -> dict[str, int]:
    """Each version's first column, where the version serving changed to it (a promotion or a rollback showing)."""
    first: dict[str, int] = {}
    for index, record in enumerate(records):
        first.setdefault(record.model_tag, index)
    return first


def _runs(values: Iterable[RocAuc | None]) -> list[list[tuple[int, RocAuc]]]:
    """Consecutive columns that have a value, as (column, value) lists: a gap breaks the line."""
    runs: list[list[tuple[int, RocAuc]]] = []
    previous = -2
    for index, value in enumerate(values):
        if value is None:
            continue
        if index != previous + 1:
            runs.append([])
        runs[-1].append((index, value))
        previous = index
    return runs


def _estimated(record: WindowRecord) -> RocAuc | None:
    """The drift check's estimate, else the quality check's (the same scores and calibration give the same)."""
    if record.drift and record.drift.estimated:
        return record.drift.estimated
    return record.quality.estimated if record.quality else None


def _baseline(record: WindowRecord) -> float | None:
    if record.drift and record.drift.baseline_roc_auc is not None:
        return record.drift.baseline_roc_auc
    return record.quality.baseline_roc_auc if record.quality else None


def _heat(ratio: float) -> str:
    """Score over threshold as a colour: pale grey to light orange below the threshold, orange to dark red above
    (saturating at twice the threshold), so the step at the threshold shows."""
    if ratio < 1:
        return _mix((0xF4, 0xF6, 0xF7), (0xFD, 0xD0, 0xA2), max(0.0, ratio))
    return _mix((0xF1, 0x69, 0x13), (0x7F, 0x27, 0x04), min(1.0, ratio - 1))


def _mix(start: tuple[int, int, int], end: tuple[int, int, int], share: float) -> str:
    return "#" + "".join(f"{round(a + (b - a) * share):02x}" for a, b in zip(start, end, strict=True))


def _diamond(cx: float, cy: float, r: float) -> str:
    return f"M{cx:.1f},{cy - r:.1f} L{cx + r:.1f},{cy:.1f} L{cx:.1f},{cy + r:.1f} L{cx - r:.1f},{cy:.1f} Z"


def _ticks(low: float, high: float, step: float) -> list[float]:
    return [low + i * step for i in range(round((high - low) / step) + 1)]


def _link(report_path: str, page_path: Path | None) -> str:
    if page_path is None:
        return Path(report_path).as_uri()
    return quote(os.path.relpath(report_path, page_path.parent))


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment.second else f"{moment:%Y-%m-%d %H:%M}"


def _short(model_tag: str) -> str:
    """A version's label in its band: the version part, cut to fit."""
    version = model_tag.split(":")[-1]
    return version if len(version) <= 10 else version[:9] + "…"


def _title(record: WindowRecord) -> str:
    lines = [f"{record.model_tag}, window {_when(record.window_start)} UTC"]
    if record.drift:
        lines.append(f"{record.drift.verdict} ({record.drift.rows:,} rows)")
    lines += [_decision_line(decision) for decision in record.decisions]
    return "\n".join(lines)


def _decision_line(decision: Decision) -> str:
    reason = f": {decision.reason}" if decision.reason else ""
    return f"retraining {decision.action.replace('_', ' ')} ({decision.source}){reason}"


def _auc(auc: RocAuc | None) -> str:
    return "—" if auc is None else escape(_auc_text(auc))


def _auc_text(auc: RocAuc) -> str:
    if auc.interval is None:
        return f"{auc.value:.3f}"
    return f"{auc.value:.3f} [{auc.interval[0]:.3f}, {auc.interval[1]:.3f}]"


def _score_text(score: Score | None) -> str:
    if score is None:
        return "—"
    text = f"{score.score:.3f} / {score.threshold:g}"
    return f'<span class="drifted">{text}</span>' if score.drifted else text
