"""Display helpers for the run pages: status and outcome badges, durations, JSON, server-side SVG charts.

Everything that may carry agent text goes through format_html / autoescape; the SVG helpers only ever
interpolate numbers they computed themselves.
"""

import json
from urllib.parse import quote

from django import template
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import RFC3986_SUBDELIMS, urlencode
from django.utils.safestring import mark_safe

register = template.Library()

STATUS_ICONS = {"completed": "✓", "failed": "✗", "running": "◔", "stuck": "⚠", "cancelled": "⊘"}
JSON_DISPLAY_LIMIT = 20_000
OUTCOME_OK = mark_safe('<span class="badge outcome-ok"><span aria-hidden="true">✓</span> succeeded</span>')
OUTCOME_FAILED = mark_safe('<span class="badge outcome-failed"><span aria-hidden="true">✗</span> failed</span>')
OUTCOME_NONE = mark_safe('<span class="badge outcome-none"><span aria-hidden="true">○</span> no outcome</span>')


@register.filter
def status_badge(status):
    icon = STATUS_ICONS.get(status, "•")
    css = status if status in STATUS_ICONS else "other"
    return format_html('<span class="badge status-{}"><span aria-hidden="true">{}</span> {}</span>', css, icon, status)


_ID_MARK = "ROUTEIDMARK"  # stands for the id when a route is reversed once; quoting leaves it as it is
_ROUTE_AROUND_ID: dict[tuple[str, str], tuple[str, str]] = {}


def _id_url(route: str, value) -> str:
    """`reverse(route, args=[value])` for a route whose only argument is a `path` id: what `{% url %}` makes,
    in a fraction of its time, for pages with many rows (the runs list's two links per run took about 40 %
    of its rendering). The route is reversed once per script prefix around a marker, and the id quoted
    between as Django quotes a reversed path. An id Django would refuse (empty, or with a newline, which
    the route's pattern does not match) goes to `reverse`, which refuses it as before."""
    text = str(value)
    if not text or "\n" in text:
        return reverse(route, args=[value])
    key = (route, get_script_prefix())
    if (around := _ROUTE_AROUND_ID.get(key)) is None:
        around = _ROUTE_AROUND_ID[key] = tuple(reverse(route, args=[_ID_MARK]).split(_ID_MARK))
    return around[0] + quote(text, safe=RFC3986_SUBDELIMS + "/~:@") + around[1]


@register.filter
def run_url(run_id) -> str:
    """The run's page: `{% url 'runs:detail' run_id %}`."""
    return _id_url("runs:detail", run_id)


@register.filter
def goal_url(goal_id) -> str:
    """The goal's page: `{% url 'runs:goal' goal_id %}`."""
    return _id_url("runs:goal", goal_id)


@register.filter
def time_tag(value):
    """`<time datetime="{{ value|date:'c' }}">{{ value|date:"Y-m-d H:i:s" }}</time>`, in the current time zone
    as the template shows a datetime, in a fraction of the two `date` filters' time (70 µs per row of the
    runs list). Only digits and punctuation go into it."""
    if value is None or value == "":
        return mark_safe('<time datetime=""></time>')
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    return mark_safe(f'<time datetime="{local.isoformat()}">{local.year:04d}-{local.month:02d}-{local.day:02d} '
                     f'{local.hour:02d}:{local.minute:02d}:{local.second:02d}</time>')


@register.filter
def outcome_badge(success):
    if success is True:
        return OUTCOME_OK
    if success is False:
        return OUTCOME_FAILED
    return OUTCOME_NONE


@register.filter
def duration(ms):
    if ms is None or ms == "":
        return "—"
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


@register.filter
def pct(value):
    return "—" if value is None else f"{value * 100:.0f}%"


@register.filter
def pretty_json(value):
    """Indented JSON as plain text (the template escapes it); huge blobs are cut with a note."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    if len(text) > JSON_DISPLAY_LIMIT:
        return text[:JSON_DISPLAY_LIMIT] + f"\n… cut at {JSON_DISPLAY_LIMIT:,} of {len(text):,} characters (export the run for all of it)"
    return text


@register.filter
def is_empty_json(value):
    return value in (None, {}, [], "")


@register.simple_tag
def qs(params=None, **overrides):
    """'?a=1&b=2' from a dict of parameters plus overrides; empty values are dropped."""
    merged = {**(params or {}), **overrides}
    merged = {k: v for k, v in merged.items() if v not in ("", None)}
    return "?" + urlencode(merged) if merged else "?"


@register.simple_tag
def decision_url(run_id, decision_id, seq=None):
    try:
        return reverse("runs:decision", args=[run_id, decision_id])
    except NoReverseMatch:  # an agent id with a slash cannot be a path segment: fall back to its place in the run
        return reverse("runs:detail", args=[run_id]) + (f"?after={seq - 1}" if seq else "")


def _n(value) -> str:
    return f"{value:.1f}"


def _points(values, width, height, pad):
    count = len(values)
    step = (width - 2 * pad) / max(count - 1, 1)
    return [(pad + i * step, height - pad - v * (height - 2 * pad)) for i, v in enumerate(values)]


def _polyline_segments(values, width, height, pad):
    """Runs of consecutive known values, as SVG point lists (days without ended runs leave gaps)."""
    segments, current = [], []
    for (x, y), value in zip(_points([v or 0 for v in values], width, height, pad), values):
        if value is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((x, y))
    if current:
        segments.append(current)
    return segments


def _segment_svg(segments, css):
    parts = []
    for seg in segments:
        if len(seg) == 1:
            parts.append(format_html('<circle class="{}" cx="{}" cy="{}" r="2"></circle>', css, _n(seg[0][0]), _n(seg[0][1])))
        else:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in seg)
            parts.append(format_html('<polyline class="{}" points="{}"></polyline>', css, pts))
    return format_html_join("", "{}", ((p,) for p in parts))


@register.filter
def sparkline(trend):
    """Success rate per day (trend: [(day, rate|None, runs)]) as a small SVG with volume bars behind it."""
    width, height, pad = 120, 28, 2
    rates = [rate for _day, rate, _runs in trend]
    volumes = [runs for _day, _rate, runs in trend]
    peak = max(volumes) or 1
    bar_w = (width - 2 * pad) / len(volumes)
    bars = format_html_join(
        "", '<rect class="spark-bar" x="{}" y="{}" width="{}" height="{}"></rect>',
        ((_n(pad + i * bar_w), _n(height - pad - v / peak * (height - 2 * pad) * 0.5), _n(max(bar_w - 1, 1)),
          _n(v / peak * (height - 2 * pad) * 0.5)) for i, v in enumerate(volumes) if v),
    )
    known = [r for r in rates if r is not None]
    label = (f"Success rate over the last {len(trend)} days: latest {known[-1] * 100:.0f}%" if known
             else f"No finished runs in the last {len(trend)} days")
    return format_html(
        '<svg class="sparkline" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}"><title>{}</title>{}{}</svg>',
        width, height, width, height, label, label, bars, _segment_svg(_polyline_segments(rates, width, height, pad), "spark-line"),
    )


@register.filter
def rate_chart(daily):
    """The goal page chart: success rate per day (line, left axis) over run volume per day (bars)."""
    width, height, left, bottom, top = 1100, 230, 44, 24, 10
    plot_h = height - bottom - top
    plot_w = width - left - 10
    peak = max((d["runs"] for d in daily), default=0) or 1
    bar_w = plot_w / max(len(daily), 1)
    bars = format_html_join("", '<rect class="chart-bar" x="{}" y="{}" width="{}" height="{}"><title>{}: {} runs, {} completed, {} failed</title></rect>', (
        (_n(left + i * bar_w), _n(top + plot_h - d["runs"] / peak * plot_h), _n(max(bar_w - 1, 1)), _n(d["runs"] / peak * plot_h),
         d["day"].isoformat(), d["runs"], d["completed"], d["failed"]) for i, d in enumerate(daily) if d["runs"]))
    points, segments, current = [], [], []
    for i, d in enumerate(daily):
        if d["rate"] is None:
            if current:
                segments.append(current)
            current = []
            continue
        x, y = left + i * bar_w + bar_w / 2, top + plot_h - d["rate"] * plot_h
        current.append((x, y))
        points.append((_n(x), _n(y), d["day"].isoformat(), f"{d['rate'] * 100:.0f}"))
    if current:
        segments.append(current)
    grid = format_html_join("", '<line class="chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"></line><text class="chart-axis" x="{}" y="{}" text-anchor="end">{}%</text>', (
        (left, width - 10, _n(top + plot_h * (1 - f)), _n(top + plot_h * (1 - f)), left - 6, _n(top + plot_h * (1 - f) + 4), int(f * 100))
        for f in (0, 0.5, 1)))
    dots = format_html_join("", '<circle class="chart-dot" cx="{}" cy="{}" r="2.5"><title>{}: {}% succeeded</title></circle>', points)
    x_labels = format_html(
        '<text class="chart-axis" x="{}" y="{}">{}</text><text class="chart-axis" x="{}" y="{}" text-anchor="end">{}</text>',
        left, height - 6, daily[0]["day"].isoformat() if daily else "", width - 10, height - 6,
        daily[-1]["day"].isoformat() if daily else "")
    label = f"Success rate and run volume per day, {daily[0]['day']} to {daily[-1]['day']}" if daily else "No data"
    return format_html(
        '<svg class="rate-chart" viewBox="0 0 {} {}" role="img" aria-label="{}"><title>{}</title>{}{}{}{}{}</svg>',
        width, height, label, label, grid, bars, _segment_svg(segments, "chart-line"), dots, x_labels)
