"""The drift report as one page a person opens from disk: per column, the training reference and the window overlaid,
beside the column's score, so the page shows what moved and not only that something did.

The page is self-contained (inline CSS and SVG, no script, nothing fetched when it is viewed): it opens from a
Prefect link artifact, a mail attachment or a machine with no network. Drifted features come first and open, then
features with a data-quality finding (open, the finding above the picture), then the rest, folded; the model's score
distribution last, drawn the same way.
"""

import math
from html import escape
from pathlib import Path

from cicloml.atomic import atomic_path
from cicloml.drift import Distribution, DriftReport, FeatureDrift, QualityIssue
from cicloml.profiling import WINDOW_FORMAT

REFERENCE_COLOUR = "#4c78a8"
WINDOW_COLOUR = "#e8590c"
DRIFT_COLOUR = "#c0392b"
QUIET_COLOUR = "#7f8c8d"
WIDTH = 680
"""Every picture's width in pixels (they scale down with the page)."""
LABEL_WIDTH = 190
"""The room for category labels left of their bars."""
LABEL_CHARACTERS = 28
"""Longer category labels are cut (the whole label is the bar's tooltip)."""
SCORE_MEANINGS = {
    "wasserstein": "how far the values moved, in training standard deviations",
    "hellinger": "0 for the same shares, 1 for disjoint ones",
    "jensen_shannon": "0 for the same shares, 1 for disjoint ones",
}
"""What a score of each method says, for the tooltip of a feature's score."""
RULES = {
    "null_rate_increase": "more missing values",
    "out_of_range": "values outside the training range",
    "unseen_categories": "categories not seen in training",
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:64em;color:#222}
h2{margin-top:1.6em}
details{border-top:1px solid #ddd;padding:0.3em 0}
summary{display:grid;grid-template-columns:1em minmax(8em,14em) 5.5em 14em 10em 1fr;gap:0.5em;align-items:center;
 cursor:pointer;list-style:none}
summary::-webkit-details-marker{display:none}
summary::before{content:"\\25B8";color:#888}
details[open]>summary::before{content:"\\25BE"}
.name{font-weight:600;overflow-wrap:anywhere}
.flag{color:#fff;background:#c0392b;border-radius:0.3em;padding:0 0.4em;font-size:0.85em;justify-self:start}
.flag.finding{background:#e8590c}
.bar{position:relative;height:0.7em;background:#eee}
.bar>span{position:absolute;top:0;bottom:0}
.meta{color:#666;font-size:0.9em}
.body{padding:0.4em 0 0.6em 1.7em}
.issues{background:#fdf2e9;border-left:3px solid #e8590c;margin:0.3em 0;padding:0.4em 0.4em 0.4em 1.8em}
.note{color:#555;font-size:0.9em;margin:0.2em 0}
svg{max-width:100%;height:auto;display:block;font-size:11px}
"""


def render_html(report: DriftReport) -> str:
    """The report's page: the verdict, then every feature's section (summary line, findings, picture)."""
    issues: dict[str, list[QualityIssue]] = {}
    for issue in report.quality_issues:
        issues.setdefault(issue.column, []).append(issue)
    columns = [*report.features, *([report.prediction] if report.prediction else [])]
    bar_scale = max([*(column.threshold * 2 for column in columns), *(column.score for column in columns)])
    # Drifted first, then those with a finding, each group most drifted first.
    features = sorted(report.features, key=lambda f: (not f.drifted, f.column not in issues, -f.score, f.column))
    sections = "\n".join(
        _section(feature, issues.get(feature.column, []), bar_scale, open_=feature.drifted or feature.column in issues)
        for feature in features
    )
    score = (
        _section(report.prediction, [], bar_scale, open_=report.prediction.drifted, css_class="score")
        if report.prediction
        else "<p>One of the profiles has no model scores to compare.</p>"
    )
    window = f"{report.window_start:%Y-%m-%d %H:%M}–{report.window_end:%H:%M} UTC" if report.window_start else ""
    window_line = f"Window {window}. " if window else ""
    verdict = report.title.capitalize()
    count = len(report.quality_issues)
    findings = (
        f"{count} data-quality finding{'s, shown with their features' if count > 1 else ', shown with its feature'}"
        if count
        else "no data-quality findings"
    )
    impact = (
        f"<p>Impact: {escape(report.performance_line)}, from {report.performance.rows:,} logged scores (before "
        "labels, from the calibrated scores).</p>"
        if report.performance and report.performance_line
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{verdict}: {escape(report.model_tag)} {window}</title>
<style>{STYLE}</style></head><body>
<h1>{verdict}: {escape(report.model_tag)}</h1>
<p>{window_line}{len(report.drifted_features)} of {len(report.features)} features scored above their threshold
(drift needs {report.min_drifted_features}); {findings}.</p>
{impact}
<p class="note">Each picture overlays the <b style="color:{REFERENCE_COLOUR}">training reference</b> and <b
style="color:{WINDOW_COLOUR}">this window</b> as shares of all rows; a histogram's outer bars also count the values
beyond its axis. Drifted features come first and open; click a feature to open or fold it.</p>
<h2>Features</h2>
{sections}
<h2>Model score</h2>
{score}
</body></html>
"""


def write_html_report(report: DriftReport, reports_dir: Path) -> Path:
    """Write the report's page under `reports_dir/drift/<model>/<window start>.html`, atomically; its path."""
    window = f"{report.window_start:{WINDOW_FORMAT}}" if report.window_start else "latest"
    path = reports_dir / "drift" / report.model_tag.replace(":", "-") / f"{window}.html"
    with atomic_path(path) as temporary:
        temporary.write_text(render_html(report))
    return path


def _section(
    feature: FeatureDrift, issues: list[QualityIssue], bar_scale: float, *, open_: bool, css_class: str = "feature"
) -> str:
    """One column: a summary line (name, flag, score against threshold, bar) over its findings and picture."""
    colour = DRIFT_COLOUR if feature.drifted else QUIET_COLOUR
    relation = "&gt;" if feature.drifted else "≤"
    findings = "".join(f"<li><b>{RULES[issue.rule]}</b>: {escape(issue.detail)}</li>" for issue in issues)
    flag = (
        '<span class="flag">drifted</span>'
        if feature.drifted
        else f'<span class="flag finding">{len(issues)} finding{"s" if len(issues) > 1 else ""}</span>'
        if issues
        else "<span></span>"  # keeps the summary's columns aligned
    )
    return f"""<details class="{css_class}{" drifted" if feature.drifted else ""}" \
data-column="{escape(feature.column)}"{" open" if open_ else ""}>
<summary><span class="name">{escape(feature.column)}</span>\
{flag}\
<span title="{feature.method.replace("_", "-")}: {SCORE_MEANINGS[feature.method]}">\
score {feature.score:.3f} {relation} threshold {feature.threshold:g}</span>\
<span class="bar" title="the mark is the threshold"><span style="left:0;width:{100 * feature.score / bar_scale:.1f}%;\
background:{colour}"></span><span style="left:{100 * feature.threshold / bar_scale:.1f}%;width:2px;background:#222">\
</span></span><span class="meta">{feature.kind}, {feature.method.replace("_", "-")}</span></summary>
<div class="body">{f'<ul class="issues">{findings}</ul>' if findings else ""}
{_picture(feature)}
<p class="note">Rows: {feature.reference_rows:,} in training, {feature.current_rows:,} in this window. Missing values:
{feature.reference_null_rate:.1%} in training, {feature.current_null_rate:.1%} in this window.</p></div>
</details>"""


def _picture(feature: FeatureDrift) -> str:
    distribution = feature.distribution
    missing = ("missing values", feature.reference_null_rate, feature.current_null_rate)
    if distribution is None:
        return _rows(feature.column, [missing], scale=1.0)
    if distribution.edges is not None:
        # Missing values on a 0-100% scale of their own: the histogram's axis holds values, not a "missing" bin.
        return _histogram(feature.column, distribution) + _rows(feature.column, [missing], scale=1.0, legend=False)
    return _rows(feature.column, [*_category_rows(distribution), missing])


def _category_rows(distribution: Distribution) -> list[tuple[str, float, float]]:
    """(label, reference share, window share) per named category, and other categories when they hold any rows."""
    names = distribution.categories or []
    rows = list(zip(names, distribution.reference[:-1], distribution.current[:-1], strict=True))
    other = ("other categories", distribution.reference[-1], distribution.current[-1])
    return [*rows, other] if other[1] or other[2] else rows


def _legend(y: int, window_as_line: bool) -> str:
    window = (
        f'<line x1="220" y1="{y - 4}" x2="236" y2="{y - 4}" stroke="{WINDOW_COLOUR}" stroke-width="2.5"/>'
        if window_as_line
        else f'<rect x="220" y="{y - 9}" width="16" height="10" fill="{WINDOW_COLOUR}"/>'
    )
    return (
        f'<rect x="60" y="{y - 9}" width="16" height="10" fill="{REFERENCE_COLOUR}" fill-opacity="0.55"/>'
        f'<text x="82" y="{y}">training reference</text>{window}<text x="242" y="{y}">this window</text>'
    )


def _histogram(column: str, distribution: Distribution) -> str:
    """Reference as filled bars, window as a line over the same bins, value axis below, share axis left."""
    edges = distribution.edges or []
    height, left, right, top, bottom = 210, 60, 16, 30, 40
    inner_width, inner_height = WIDTH - left - right, height - top - bottom
    low, high = edges[0], edges[-1]
    span = (high - low) or 1.0  # edges of huge values can round to one number
    peak = max([*distribution.reference, *distribution.current]) or 1.0

    def x(value: float) -> float:
        return left + (value - low) / span * inner_width

    def y(share: float) -> float:
        return top + (1.0 - share / peak) * inner_height

    bins = list(zip(edges, edges[1:], distribution.reference, distribution.current, strict=False))
    bars = "".join(
        f'<rect x="{x(a):.1f}" y="{y(ref):.1f}" width="{max(0.5, x(b) - x(a) - 1):.1f}" height="{y(0) - y(ref):.1f}"/>'
        for a, b, ref, _ in bins
    )
    line = f"M{x(low):.1f},{y(0):.1f}" + "".join(f"V{y(cur):.1f}H{x(b):.1f}" for _, b, _, cur in bins) + f"V{y(0):.1f}"
    # A transparent column per bin carries the tooltip, so hovering anywhere over a bin shows both shares.
    tips = "".join(
        f'<rect x="{x(a):.1f}" y="{top}" width="{x(b) - x(a):.1f}" height="{inner_height}"><title>{_number(a)} to '
        f"{_number(b)}: {ref:.1%} in training, {cur:.1%} in this window</title></rect>"
        for a, b, ref, cur in bins
    )
    ticks = "".join(
        f'<line x1="{x(t):.1f}" y1="{y(0):.1f}" x2="{x(t):.1f}" y2="{y(0) + 4:.1f}" stroke="#555"/>'
        f'<text x="{x(t):.1f}" y="{y(0) + 16:.1f}" text-anchor="middle">{_number(t)}</text>'
        for t in _nice_ticks(low, high)
    )
    return f"""<svg class="plot" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" \
aria-label="{escape(column)}: training reference and this window">
{_legend(14, window_as_line=True)}
<g fill="{REFERENCE_COLOUR}" fill-opacity="0.55">{bars}</g>
<path d="{line}" fill="none" stroke="{WINDOW_COLOUR}" stroke-width="2"/>
<line x1="{left}" y1="{y(peak):.1f}" x2="{WIDTH - right}" y2="{y(peak):.1f}" stroke="#ddd" stroke-dasharray="3,3"/>
<text x="{left - 6}" y="{y(peak) + 4:.1f}" text-anchor="end">{peak:.1%}</text>
<text x="{left - 6}" y="{y(0) + 4:.1f}" text-anchor="end">0%</text>
<text x="14" y="{top + inner_height / 2:.0f}" transform="rotate(-90 14 {top + inner_height / 2:.0f})" \
text-anchor="middle">share of rows</text>
<line x1="{left}" y1="{y(0):.1f}" x2="{WIDTH - right}" y2="{y(0):.1f}" stroke="#555"/>{ticks}
<text x="{left + inner_width / 2:.0f}" y="{height - 4}" text-anchor="middle">{escape(column)}</text>
<g fill="transparent">{tips}</g>
</svg>"""


def _rows(column: str, rows: list[tuple[str, float, float]], scale: float | None = None, legend: bool = True) -> str:
    """A pair of bars per row (reference above window), each with its share; bars scale to `scale` or the largest."""
    row_height, top = 30, (26 if legend else 4)
    bar_width = WIDTH - LABEL_WIDTH - 70
    scale = scale or max(share for _, *shares in rows for share in shares) or 1.0
    height = top + row_height * len(rows)
    drawn = []
    for index, (label, ref, cur) in enumerate(rows):
        y = top + index * row_height
        shown = label if len(label) <= LABEL_CHARACTERS else label[: LABEL_CHARACTERS - 1] + "…"
        italic = ' font-style="italic"' if label in ("missing values", "other categories") else ""
        bars = "".join(
            f'<rect x="{LABEL_WIDTH}" y="{y + offset}" width="{max(0.0, bar_width * share / scale):.1f}" height="11" '
            f'fill="{colour}"{opacity}/><text x="{LABEL_WIDTH + bar_width * share / scale + 5:.1f}" '
            f'y="{y + offset + 10}">{share:.1%}</text>'
            for offset, share, colour, opacity in (
                (2, ref, REFERENCE_COLOUR, ' fill-opacity="0.55"'),
                (14, cur, WINDOW_COLOUR, ""),
            )
        )
        drawn.append(
            f"<g><title>{escape(label)}: {ref:.1%} in training, {cur:.1%} in this window</title>"
            f'<text x="{LABEL_WIDTH - 8}" y="{y + 17}" text-anchor="end"{italic}>{escape(shown)}</text>{bars}</g>'
        )
    return f"""<svg class="plot" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" \
aria-label="{escape(column)}: training reference and this window">
{_legend(14, window_as_line=False) if legend else ""}{"".join(drawn)}
</svg>"""


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2 or 5 times a power of ten) between `low` and `high`."""
    if high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    """A value for an axis or a tooltip: grouped digits for large ones, four significant digits otherwise."""
    return f"{value:,.0f}" if 1e4 <= abs(value) < 1e15 else f"{value:.4g}"
