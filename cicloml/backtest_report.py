"""A backtest's result as things a person reads: a picture, a self-contained HTML page, a markdown table.

A `BacktestResult` holds every policy's days as numbers; whether a policy kept the live model above tolerance, and at
what cost in trainings and alerts, is read faster from one picture: each policy's realized ROC AUC per day over the
scenario timeline, with its alerts, trainings and promotions in a strip under it. The page adds the numbers (per
policy, per day) so the picture can be checked against them; it embeds everything, so it opens without a network.
"""

import base64
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.textpath import TextToPath

from cicloml.atomic import atomic_path
from cicloml.backtest import BacktestResult, DayRow, PolicyResult, PolicySummary
from cicloml.demo.churn import LABEL_DELAY

BROKEN_FEED = "broken_payment_feed"
SCENARIO_COLOURS = {
    "price_rise": "#f0a030",
    "new_region": "#3cb371",
    "competitor_offer": "#9b59b6",
    BROKEN_FEED: "#e74c3c",
}
"""Background colours of the timeline's scenarios (others take `_OTHER_COLOURS` in turn)."""
_OTHER_COLOURS = ("#5dade2", "#f4d03f", "#a3e4d7", "#d7bde2")
POLICY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#7f7f7f", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
"""One colour per policy, in the result's order (tab10 without purple, which the competitor's offer uses)."""
ALERT_OPENED, ALERT_CLEARED = "#c0392b", "#27ae60"

# Layout, in inches: margins and rows are fixed so labels can be placed without overlapping before drawing.
_WIDTH, _LEFT, _RIGHT = 13.0, 1.9, 2.5
_TITLE, _TIMELINE_ROW, _MAIN, _STRIP, _GAP, _BOTTOM = 0.75, 0.24, 3.6, 0.5, 0.12, 0.6
_LABEL_SIZE = 8.0


# --- the picture -----------------------------------------------------------------------------------------------


def plot_backtest(result: BacktestResult) -> bytes:
    """A PNG read in ten seconds: every policy's realized ROC AUC per day against the tolerance, over the scenario
    timeline, with each policy's alerts, trainings and promotions in a strip under it."""
    world, days = result.world, result.world.days
    runs = _scenario_runs(result)
    levels = _label_levels(runs, days)
    timeline_rows = max(levels, default=-1) + 1
    timeline_height = timeline_rows * _TIMELINE_ROW + _GAP if timeline_rows else 0.0
    height = _TITLE + timeline_height + _MAIN + len(result.policies) * (_STRIP + _GAP / 2) + _GAP + _BOTTOM
    # A bare Figure (not pyplot) keeps no global figure registry and needs no display, so it is thread-safe.
    figure = Figure(figsize=(_WIDTH, height), dpi=130)
    top = height - _TITLE

    def add_axes(top_in: float, rows_in: float, sharex: Axes | None = None) -> Axes:
        box = (_LEFT / _WIDTH, (top_in - rows_in) / height, (_WIDTH - _LEFT - _RIGHT) / _WIDTH, rows_in / height)
        return figure.add_axes(box, sharex=sharex)

    main = add_axes(top - timeline_height, _MAIN)
    if timeline_rows:
        _draw_timeline(add_axes(top, timeline_rows * _TIMELINE_ROW, sharex=main), runs, levels, timeline_rows)
    colours = {policy.policy.name: POLICY_COLOURS[i % len(POLICY_COLOURS)] for i, policy in enumerate(result.policies)}
    _draw_main(main, result, runs, colours)
    strip_top = top - timeline_height - _MAIN - _GAP
    strips = []
    for policy in result.policies:
        strip = add_axes(strip_top, _STRIP, sharex=main)
        _draw_strip(strip, policy, runs, colours[policy.policy.name])
        strips.append(strip)
        strip_top -= _STRIP + _GAP / 2
    for axes in [main, *strips[:-1]]:
        axes.tick_params(axis="x", labelbottom=False)
    _day_ticks(strips[-1] if strips else main, result)
    if strips:
        _marker_legend(strips[0])

    figure.suptitle(
        f"Backtest: {world.weeks} weeks from {world.start:%Y-%m-%d}, {world.customers:,} customers, seed {world.seed}",
        x=_LEFT / _WIDTH,
        y=1 - 0.12 / height,
        ha="left",
        va="top",
        fontsize=13,
        fontweight="bold",
    )
    figure.text(
        _LEFT / _WIDTH,
        1 - 0.45 / height,
        f"Each policy's live model: ROC AUC per day on the day's labels (known {LABEL_DELAY.days} days later). "
        f"Below the dashed line ({result.tolerance:.3f}) is below tolerance.",
        ha="left",
        va="top",
        fontsize=9,
        color="#444444",
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@dataclass(frozen=True)
class _Run:
    """Consecutive days under one scenario (x: day numbers; `end` is the day after the last)."""

    first: int
    end: int
    scenario: str


def _scenario_runs(result: BacktestResult) -> list[_Run]:
    """The world's scenarios as runs of days, as `BacktestWorld.scenarios_on` resolves overlapping entries; the broken
    feed as its own runs, since it lies over whatever else happens. Stable days ("none") make no run."""
    world = result.world
    runs: list[_Run] = []
    for kind in ("world", "feed"):
        current: tuple[int, str] | None = None
        for day in range(world.days + 1):
            name = None
            if day < world.days:
                scenario, broken = world.scenarios_on(day)
                if kind == "feed":
                    name = BROKEN_FEED if broken else None
                else:
                    name = None if scenario == "none" else scenario
            if current is not None and current[1] != name:
                runs.append(_Run(current[0], day, current[1]))
                current = None
            if name is not None and current is None:
                current = (day, name)
    return sorted(runs, key=lambda run: (run.first, run.scenario == BROKEN_FEED))


def _label_levels(runs: list[_Run], days: int) -> list[int]:
    """The timeline row of each run's bar and label: the first row where neither overlaps an earlier one."""
    days_per_point = days / ((_WIDTH - _LEFT - _RIGHT) * 72)
    font = FontProperties(size=_LABEL_SIZE)
    ends: list[float] = []  # per row: where its last label or bar ends, in days
    levels = []
    for run in runs:
        width, _, _ = TextToPath().get_text_width_height_descent(run.scenario, font, ismath=False)
        end = max(run.end, run.first + (width + 8) * days_per_point)
        level = next((i for i, row_end in enumerate(ends) if row_end <= run.first), len(ends))
        if level == len(ends):
            ends.append(end)
        else:
            ends[level] = end
        levels.append(level)
    return levels


def _scenario_colour(scenario: str, runs: list[_Run]) -> str:
    if scenario in SCENARIO_COLOURS:
        return SCENARIO_COLOURS[scenario]
    others = sorted({run.scenario for run in runs} - set(SCENARIO_COLOURS))
    return _OTHER_COLOURS[others.index(scenario) % len(_OTHER_COLOURS)]


def _shade(axes: Axes, runs: list[_Run]) -> None:
    """The scenarios as background bands; the broken feed hatched, over the band it lies on."""
    for run in runs:
        colour = _scenario_colour(run.scenario, runs)
        if run.scenario == BROKEN_FEED:
            axes.axvspan(run.first, run.end, facecolor=colour, alpha=0.18, hatch="////", edgecolor=colour, lw=0)
        else:
            axes.axvspan(run.first, run.end, facecolor=colour, alpha=0.13, lw=0)


def _draw_timeline(axes: Axes, runs: list[_Run], levels: list[int], rows: int) -> None:
    """Labelled bars of the scenario timeline, one row per level, the first row on top."""
    for run, level in zip(runs, levels, strict=True):
        colour = _scenario_colour(run.scenario, runs)
        y = rows - 1 - level
        hatch = "////" if run.scenario == BROKEN_FEED else None
        axes.broken_barh(
            [(run.first, run.end - run.first)],
            (y + 0.1, 0.8),
            facecolors=colour,
            alpha=0.45,
            hatch=hatch,
            edgecolor=colour,
        )
        axes.text(run.first + 0.15, y + 0.5, run.scenario, va="center", ha="left", fontsize=_LABEL_SIZE)
    axes.set_ylim(0, rows)
    axes.set_yticks([])
    axes.tick_params(axis="x", bottom=False, labelbottom=False)
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    axes.set_ylabel("scenario", rotation=0, ha="right", va="center", fontsize=9)


def _draw_main(axes: Axes, result: BacktestResult, runs: list[_Run], colours: dict[str, str]) -> None:
    """The realized ROC AUC lines. Policies that serve the same model draw the same line, so each is narrower than the
    one before it: lines drawn over each other show as stripes. A policy that does not wait for labels (an oracle)
    is a bound rather than a choice: dotted, over the rest."""
    _shade(axes, runs)
    stacked = [policy for policy in result.policies if policy.policy.label_delay]
    step = min(1.6, 4.8 / max(len(stacked) - 1, 1))  # the widest line at most 6.2 points
    values_seen: list[float] = [result.tolerance]
    for policy in result.policies:
        x, y = _realized(policy.days)
        values_seen += [value for value in y if not math.isnan(value)]
        mean = policy.summary.mean_roc_auc
        style: dict[str, Any] = {"lw": 1.5, "linestyle": (0, (1.5, 1.2)), "zorder": 3 + len(result.policies)}
        if policy.policy.label_delay:
            layer = stacked.index(policy)
            style = {"lw": 1.4 + step * (len(stacked) - 1 - layer), "solid_capstyle": "round", "zorder": 2 + layer}
        axes.plot(
            x,
            y,
            color=colours[policy.policy.name],
            label=f"{policy.policy.name}  {'n/a' if mean is None else f'{mean:.3f}'}",
            **style,
        )
    axes.axhline(
        result.tolerance, color="black", linestyle="--", lw=1.2, label=f"tolerance {result.tolerance:.3f}", zorder=10
    )
    if len(values_seen) == 1:
        axes.text(0.5, 0.5, "no realized ROC AUC", transform=axes.transAxes, ha="center", va="center", color="grey")
    low, high = min(values_seen), max(values_seen)
    pad = max(0.02, (high - low) * 0.08)
    axes.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    axes.set_xlim(0, result.world.days)
    axes.set_ylabel("realized ROC AUC")
    axes.grid(axis="y", color="#dddddd", lw=0.6)
    axes.grid(axis="x", color="#dddddd", lw=0.6)
    axes.set_axisbelow(True)
    axes.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=9,
        frameon=False,
        title="policy (mean ROC AUC)",
        title_fontsize=9,
        alignment="left",
    )


def _realized(rows: list[DayRow]) -> tuple[np.ndarray, np.ndarray]:
    """x at each day's noon; days without a realized value are gaps."""
    x = np.array([row.day + 0.5 for row in rows], dtype=float)
    y = np.array([np.nan if row.realized_roc_auc is None else row.realized_roc_auc for row in rows], dtype=float)
    return x, y


_ROWS = {"alert": 2, "trained": 1, "promoted": 0}


def _draw_strip(axes: Axes, policy: PolicyResult, runs: list[_Run], colour: str) -> None:
    """One policy's events by day: alerts opened (and cleared), trainings (and skipped runs), promotions (hollow: on
    the champion's own data)."""
    _shade(axes, runs)

    def at(happened: Callable[[DayRow], bool]) -> list[float]:
        return [row.day + 0.5 for row in policy.days if happened(row)]

    def mark(x: list[float], row: str, **style: Any) -> None:
        if x:
            axes.scatter(x, [_ROWS[row]] * len(x), zorder=3, clip_on=False, **style)

    for first, end in _incidents(policy.days):
        axes.plot([first, end], [_ROWS["alert"]] * 2, color=ALERT_OPENED, lw=1.5, alpha=0.45, zorder=2)
    mark(at(lambda row: row.alert), "alert", marker="^", s=30, color=ALERT_OPENED, lw=0)
    cleared = at(lambda row: row.alert_cleared)
    mark(cleared, "alert", marker="v", s=30, facecolor="none", edgecolor=ALERT_CLEARED, lw=1.2)
    mark(at(lambda row: row.trained), "trained", marker="o", s=26, color=colour, lw=0)
    mark(at(lambda row: row.skipped), "trained", marker="x", s=22, color="#888888", lw=1.2)
    fresh = at(lambda row: row.promoted and not row.promoted_same_data)
    mark(fresh, "promoted", marker="*", s=80, color=colour)
    same_data = at(lambda row: row.promoted_same_data)
    mark(same_data, "promoted", marker="*", s=80, facecolor="white", edgecolor=colour, lw=1.0)
    axes.set_ylim(-0.6, 2.6)
    axes.set_yticks(list(_ROWS.values()), list(_ROWS), fontsize=7, color="#555555")
    axes.tick_params(axis="y", length=0, pad=5)
    axes.set_ylabel(
        policy.policy.name, rotation=0, ha="right", va="center", fontsize=10, fontweight="bold", color=colour
    )
    axes.yaxis.set_label_coords(-0.06, 0.5)
    axes.grid(axis="x", color="#dddddd", lw=0.6)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _incidents(rows: list[DayRow]) -> list[tuple[float, float]]:
    """(x opened, x cleared or the world's end) of each drift incident."""
    spans: list[tuple[float, float]] = []
    opened: float | None = None
    for row in rows:
        if row.alert and opened is None:
            opened = row.day + 0.5
        if row.alert_cleared and opened is not None:
            spans.append((opened, row.day + 0.5))
            opened = None
    if opened is not None:
        spans.append((opened, rows[-1].day + 1.0))
    return spans


def _day_ticks(axes: Axes, result: BacktestResult) -> None:
    """Weekly ticks labelled with the date and the day number (the notes and the tables name days by number)."""
    world = result.world
    step = 7 * max(1, math.ceil(world.weeks / 16))
    ticks = list(range(0, world.days + 1, step))
    labels = [f"{world.start + timedelta(days=day):%b %d}\nday {day}" for day in ticks]
    axes.set_xticks(ticks, labels, fontsize=8)
    axes.set_xticks(range(world.days + 1), minor=True)
    axes.tick_params(axis="x", which="minor", length=2)


def _marker_legend(first_strip: Axes) -> None:
    handles = [
        Line2D([], [], marker="^", color=ALERT_OPENED, linestyle="none", label="alert opened"),
        Line2D(
            [], [], marker="v", markerfacecolor="none", color=ALERT_CLEARED, linestyle="none", label="alert cleared"
        ),
        Line2D([], [], color=ALERT_OPENED, alpha=0.45, lw=1.5, label="drift incident open"),
        Line2D([], [], marker="o", color="#555555", linestyle="none", label="trained"),
        Line2D([], [], marker="x", color="#888888", linestyle="none", label="run skipped (nothing fitted)"),
        Line2D([], [], marker="*", color="#555555", markersize=10, linestyle="none", label="promoted (next day live)"),
        Line2D(
            [],
            [],
            marker="*",
            markerfacecolor="white",
            color="#555555",
            markersize=10,
            linestyle="none",
            label="promoted on the same data",
        ),
        Patch(facecolor=SCENARIO_COLOURS[BROKEN_FEED], alpha=0.3, hatch="////", label="payment feed broken"),
    ]
    first_strip.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        frameon=False,
        title="events (policy colour)",
        title_fontsize=9,
        alignment="left",
    )


# --- the page --------------------------------------------------------------------------------------------------


def render_backtest_html(result: BacktestResult, *, png: bytes | None = None) -> str:
    """A self-contained page (the picture embedded, inline CSS, no scripts): the picture, each policy's numbers and
    rules, the timeline, and every policy's days folded away. `png`: the picture if already drawn."""
    world = result.world
    title = f"Backtest: {world.weeks} weeks, {world.customers:,} customers, seed {world.seed}"
    image = base64.b64encode(png if png is not None else plot_backtest(result)).decode("ascii")
    rules = "".join(
        f"<tr><td>{escape(policy.policy.name)}</td><td>{escape(policy.policy.description) or '—'}</td></tr>"
        for policy in result.policies
    )
    days = "\n".join(_days_html(policy, result.tolerance) for policy in result.policies)
    settings = escape(json.dumps(result.settings, indent=2, default=str))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} td,th{{padding:0.2em 0.8em;text-align:left}}
table{{border-collapse:collapse}} tr:nth-child(even) td{{background:#f6f6f6}} th{{border-bottom:1px solid #999}}
td.n,th.n{{text-align:right;font-variant-numeric:tabular-nums}} .below{{color:#c0392b;font-weight:bold}}
details{{margin:0.4em 0}} summary{{cursor:pointer}} img{{max-width:100%;height:auto}}
table.days td{{font-size:0.85em;vertical-align:top}} .muted{{color:#777}}</style></head><body>
<h1>{escape(title)}</h1>
<p>{world.days} simulated days from {world.start:%Y-%m-%d}, {world.history_days} days of history before them. The
day-0 model <code>{escape(result.initial_model)}</code> starts every policy. Tolerance {result.tolerance:.3f}: the
day-0 model's test ROC AUC less <code>quality.max_drop</code>. Realized ROC AUC is each live model's on the day's
labels, which arrive {LABEL_DELAY.days} days later.</p>
<img src="data:image/png;base64,{image}" alt="{escape(title)}: realized ROC AUC per day by policy">
<h2>Policies</h2>
{_summary_html(result)}
<h2>Rules</h2>
<table><tr><th>policy</th><th>retrains</th></tr>{rules}</table>
<h2>Timeline</h2>
{_timeline_html(result)}
<h2>Days</h2>
<p class="muted">Alerts, requests, trainings and notes as each policy's checks decided them; a promoted model serves
from the next day.</p>
{days}
<details><summary>Settings the backtest ran with</summary><pre>{settings}</pre></details>
</body></html>
"""


_SUMMARY_COLUMNS = (
    ("mean ROC AUC", "mean_roc_auc"),
    ("worst ROC AUC", "worst_roc_auc"),
    ("days below tolerance", "days_below_tolerance"),
    ("training runs", "training_runs"),
    ("promotions", "promotions"),
    ("same-data promotions", "promotions_same_data"),
    ("skipped runs", "skipped_runs"),
    ("drifted days", "drifted_days"),
    ("alerts", "alerts"),
    ("alerts cleared", "alerts_cleared"),
)
"""(heading, PolicySummary field)."""


def _summary_columns() -> list[tuple[str, str]]:
    """The columns whose field `PolicySummary` has (alerts_cleared and drifted_days came later)."""
    return [(name, field) for name, field in _SUMMARY_COLUMNS if field in PolicySummary.model_fields]


def _summary_cells(policy: PolicyResult) -> list[str]:
    summary = policy.summary.model_dump()
    cells = []
    for _, field in _summary_columns():
        value = summary[field]
        if field == "days_below_tolerance":
            cells.append(f"{value} of {policy.summary.days}")
        elif isinstance(value, float):
            cells.append(f"{value:.3f}")
        else:
            cells.append("n/a" if value is None else str(value))
    return cells


def _summary_html(result: BacktestResult) -> str:
    header = "".join(f'<th class="n">{escape(name)}</th>' for name, _ in _summary_columns())
    rows = "".join(
        f"<tr><td>{escape(policy.policy.name)}</td>"
        + "".join(f'<td class="n">{escape(cell)}</td>' for cell in _summary_cells(policy))
        + "</tr>"
        for policy in result.policies
    )
    return f"<table><tr><th>policy</th>{header}</tr>{rows}</table>"


def _timeline_html(result: BacktestResult) -> str:
    world = result.world
    if not world.timeline:
        return "<p>No scenario: a stable world throughout.</p>"
    rows = []
    for first, end, scenario in world.timeline:
        last = (end if end is not None else world.days) - 1
        until = f"day {last} ({world.start + timedelta(days=last):%Y-%m-%d})"
        if end is None:
            until += ", to the end"
        rows.append(
            f"<tr><td>{escape(scenario)}</td><td>day {first} ({world.start + timedelta(days=first):%Y-%m-%d})</td>"
            f"<td>{until}</td></tr>"
        )
    return (
        "<table><tr><th>scenario</th><th>from</th><th>through</th></tr>"
        + "".join(rows)
        + "</table>\n<p class='muted'>A later entry overrides an earlier one on the days they share; "
        f"{BROKEN_FEED} lies over whatever else happens.</p>"
    )


def _training_cell(row: DayRow) -> str:
    if row.promoted:
        return "promoted (same data)" if row.promoted_same_data else "promoted"
    if row.trained:
        return "trained, rejected"
    return "skipped" if row.skipped else ""


def _alert_cell(row: DayRow) -> str:
    words = (["opened"] if row.alert else []) + (["cleared"] if row.alert_cleared else [])
    return ", ".join(words)


def _days_html(policy: PolicyResult, tolerance: float) -> str:
    rows = []
    for row in policy.days:
        realized = "—" if row.realized_roc_auc is None else f"{row.realized_roc_auc:.3f}"
        below = row.realized_roc_auc is not None and row.realized_roc_auc < tolerance
        estimated = "—" if row.estimated_roc_auc is None else f"{row.estimated_roc_auc:.3f}"
        if row.estimated_interval is not None:
            estimated += f" ({row.estimated_interval[0]:.3f}–{row.estimated_interval[1]:.3f})"
        notes = "<br>".join(escape(note) for note in row.notes)
        rows.append(
            f'<tr><td class="n">{row.day}</td><td>{row.date:%Y-%m-%d}</td><td>{escape(row.scenario)}</td>'
            f"<td><code>{escape(row.model_id)}</code></td>"
            f'<td class="n{" below" if below else ""}">{realized}</td><td class="n">{estimated}</td>'
            f"<td>{escape(_alert_cell(row))}</td><td>{escape(', '.join(row.requests))}</td>"
            f"<td>{escape(_training_cell(row))}</td><td>{notes}</td></tr>"
        )
    summary = policy.summary
    mean = "n/a" if summary.mean_roc_auc is None else f"{summary.mean_roc_auc:.3f}"
    return (
        f"<details><summary><b>{escape(policy.policy.name)}</b>: mean ROC AUC {mean}, "
        f"{summary.days_below_tolerance} of {summary.days} days below tolerance, "
        f"{_count(summary.training_runs, 'training run')}, {_count(summary.promotions, 'promotion')}, "
        f"{_count(summary.alerts, 'alert')}</summary>\n"
        '<table class="days"><tr><th class="n">day</th><th>date</th><th>scenario</th><th>model</th>'
        '<th class="n">realized ROC AUC</th><th class="n">estimated (interval)</th><th>alert</th>'
        "<th>requests</th><th>training</th><th>notes</th></tr>\n" + "\n".join(rows) + "\n</table></details>"
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


# --- markdown and files ----------------------------------------------------------------------------------------


def summary_markdown(result: BacktestResult) -> str:
    """Each policy's numbers as a markdown table (e.g. a Prefect artifact)."""
    world = result.world
    lines = [
        f"# Backtest: {world.weeks} weeks, {world.customers:,} customers, seed {world.seed}",
        "",
        f"Tolerance {result.tolerance:.3f}; realized ROC AUC over {world.days} days.",
        "",
        "| policy | " + " | ".join(name for name, _ in _summary_columns()) + " |",
        "|---|" + "---:|" * len(_summary_columns()),
    ]
    for policy in result.policies:
        name = policy.policy.name.replace("|", "\\|")
        lines.append(f"| {name} | " + " | ".join(_summary_cells(policy)) + " |")
    return "\n".join(lines) + "\n"


def write_backtest_report(result: BacktestResult, folder: Path) -> dict[str, Path]:
    """Write `backtest.json`, `backtest.png` and `backtest.html` under `folder`, each atomically (a reader sees the
    old file or the new one); their paths by kind ("json", "png", "html")."""
    png = plot_backtest(result)
    contents: dict[str, str | bytes] = {
        "json": result.model_dump_json(indent=2),
        "png": png,
        "html": render_backtest_html(result, png=png),
    }
    paths = {}
    for kind, content in contents.items():
        path = folder / f"backtest.{kind}"
        with atomic_path(path) as temporary:
            if isinstance(content, bytes):
                temporary.write_bytes(content)
            else:
                temporary.write_text(content, encoding="utf-8")
        paths[kind] = path
    return paths
