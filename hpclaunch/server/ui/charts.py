"""Charts drawn on the server as SVG (pure functions of the data).

Why SVG from the server: the charts show with JavaScript off, need no library
from the internet, and pass a strict Content-Security-Policy (presentation
attributes only, no inline style).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from typing import Any

COLORS = {
    "completed": "#2e7d32",
    "failed": "#c62828",
    "running": "#1565c0",
    "pending": "#9e9e9e",
    "canceled": "#6d4c41",
    "released": "#f9a825",
    "lost": "#8e24aa",
}
STACK = ("completed", "failed", "running", "pending", "canceled")


def _svg(width: int, height: int, body: list[str], label: str, *, fluid: bool = False) -> str:
    size = 'width="100%"' if fluid else f'width="{width}" height="{height}"'
    aspect = ' preserveAspectRatio="none"' if fluid else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" {size} viewBox="0 0 {width} {height}"'
        f'{aspect} role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        + "".join(body)
        + "</svg>"
    )


def progress(counts: dict[str, int], height: int = 14) -> str:
    """A horizontal bar: completed, failed, running, pending, canceled, left to right."""
    total = sum(counts.get(k, 0) for k in STACK)
    body = [f'<rect x="0" y="0" width="1000" height="{height}" fill="#eeeeee"/>']
    x = 0.0
    for key in STACK:
        n = counts.get(key, 0)
        if not n or not total:
            continue
        w = 1000.0 * n / total
        body.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{COLORS[key]}">'
            f"<title>{key}: {n}</title></rect>"
        )
        x += w
    label = ", ".join(f"{k} {counts.get(k, 0)}" for k in STACK) or "no tasks"
    return _svg(1000, height, body, label, fluid=True)


def per_minute(
    buckets: Sequence[dict[str, int]], start: float, width: int = 1300, height: int = 200
) -> str:
    """Stacked columns of completed and failed tasks per minute since ``start`` (UTC)."""
    n = len(buckets)
    top = max([b.get("completed", 0) + b.get("failed", 0) for b in buckets] + [1])
    left, plot_h = 40, height - 30
    step = (width - left - 10) / max(n, 1)
    body = [
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" '
        'stroke="#888"/>',
        f'<text x="{left - 4}" y="16" font-size="11" text-anchor="end">{top}</text>',
        f'<text x="{left - 4}" y="{10 + plot_h}" font-size="11" text-anchor="end">0</text>',
    ]
    for i, bucket in enumerate(buckets):
        x = left + i * step
        y = 10.0 + plot_h
        for key in ("completed", "failed"):
            count = bucket.get(key, 0)
            if not count:
                continue
            h = plot_h * count / top
            y -= h
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{COLORS[key]}"><title>{_hhmm(start + 60 * i)} {key}: {count}</title></rect>'
            )
    for i in range(0, n, 30):
        x = left + i * step
        body.append(
            f'<text x="{x:.1f}" y="{height - 4}" font-size="11">{_hhmm(start + 60 * i)}</text>'
        )
    total = sum(b.get("completed", 0) + b.get("failed", 0) for b in buckets)
    label = f"tasks finished per minute over the last {n} minutes: {total} in all"
    return _svg(width, height, body, label)


def histogram(
    samples: Sequence[float], p95: float | None, bins: int = 20, width: int = 420, height: int = 140
) -> str:
    """Runtimes in ``bins`` equal bins from 0 to the longest, with the p95 marked."""
    longest = max(samples, default=0.0) or 1.0
    shortest = min(samples, default=0.0)
    # From 0, unless every run takes about as long: then zoom on their spread.
    lo = shortest * 0.98 if shortest > 0.5 * longest else 0.0
    span = max(longest - lo, 1e-9)
    counts = [0] * bins
    for s in samples:
        counts[min(max(int(bins * (s - lo) / span), 0), bins - 1)] += 1
    top = max(counts + [1])
    left, plot_h, plot_w = 36, height - 32, width - 46
    bw = plot_w / bins
    body = [
        f'<line x1="{left}" y1="{8 + plot_h}" x2="{left + plot_w}" y2="{8 + plot_h}" '
        'stroke="#888"/>',
        f'<text x="{left - 4}" y="16" font-size="11" text-anchor="end">{top}</text>',
        f'<text x="{left}" y="{height - 6}" font-size="11">{_seconds(lo) if lo else "0 s"}</text>',
        f'<text x="{left + plot_w}" y="{height - 6}" font-size="11" text-anchor="end">'
        f"{_seconds(longest)}</text>",
    ]
    for i, c in enumerate(counts):
        if not c:
            continue
        h = plot_h * c / top
        b0, b1 = lo + span * i / bins, lo + span * (i + 1) / bins
        body.append(
            f'<rect x="{left + i * bw:.1f}" y="{8 + plot_h - h:.1f}" width="{max(bw - 1, 1):.1f}" '
            f'height="{h:.1f}" fill="#1565c0"><title>{_seconds(b0)}–{_seconds(b1)}: {c}</title>'
            "</rect>"
        )
    if p95 is not None:
        x = left + plot_w * min(max((p95 - lo) / span, 0.0), 1.0)
        anchor, tx = ("end", x - 4) if x > left + plot_w / 2 else ("start", x + 4)
        body.append(
            f'<line x1="{x:.1f}" y1="8" x2="{x:.1f}" y2="{8 + plot_h}" stroke="#c62828" '
            'stroke-dasharray="4 3"/>'
            f'<text x="{tx:.1f}" y="20" font-size="11" fill="#c62828" text-anchor="{anchor}">'
            f"p95 {_seconds(p95)}</text>"
        )
    label = f"{len(samples)} runtimes" + (f", p95 {_seconds(p95)}" if p95 is not None else "")
    return _svg(width, height, body, label)


def timeline(workers: Sequence[dict[str, Any]], now: float, width: int = 1300) -> str:
    """One row per worker: its life (start to exit or last heartbeat) as a grey line,
    each task it ran as a box coloured by how the attempt ended."""
    if not workers:
        return _svg(width, 30, ['<text x="4" y="20" font-size="12">no workers yet</text>'], "")
    row_h, left = 16, 110
    starts = [w["started_at"] for w in workers]
    ends = [_worker_end(w, now) for w in workers]
    t0, t1 = min(starts), max(max(ends), min(starts) + 1)
    scale = (width - left - 10) / (t1 - t0)
    height = row_h * len(workers) + 24
    body = []
    for i, (w, end) in enumerate(zip(workers, ends, strict=True)):
        y = 4 + i * row_h
        job = w["array_job_id"] or w["job_id"] or ""
        index = "" if w["array_index"] is None else f"[{w['array_index']}]"
        name = f"#{w['id']} {job}{index}"
        body.append(f'<text x="2" y="{y + 11}" font-size="11">{escape(name)}</text>')
        x0, x1 = left + (w["started_at"] - t0) * scale, left + (end - t0) * scale
        body.append(
            f'<line x1="{x0:.1f}" y1="{y + 7}" x2="{max(x1, x0 + 1):.1f}" y2="{y + 7}" '
            f'stroke="#9e9e9e" stroke-width="2"><title>worker {w["id"]} on '
            f"{escape(str(w['host']))}: {escape(str(w['status']))}"
            f"{' (' + escape(str(w['exit_reason'])) + ')' if w['exit_reason'] else ''}"
            "</title></line>"
        )
        for span in w["spans"]:
            if span["start"] is None:
                continue
            s0 = left + (span["start"] - t0) * scale
            s1 = left + ((span["end"] or now) - t0) * scale
            color = COLORS.get(span["outcome"], "#555")
            body.append(
                f'<rect x="{s0:.1f}" y="{y + 2}" width="{max(s1 - s0, 2):.1f}" height="10" '
                f'fill="{color}"><title>task {span["task"]}: {escape(str(span["outcome"]))}'
                "</title></rect>"
            )
    clock = _hhmm if t1 - t0 > 3600 else _hhmmss
    body.append(
        f'<text x="{left}" y="{height - 4}" font-size="11">{clock(t0)} UTC</text>'
        f'<text x="{width - 10}" y="{height - 4}" font-size="11" text-anchor="end">'
        f"{clock(t1)}</text>"
    )
    return _svg(width, height, body, f"timeline of {len(workers)} workers")


def attempts(rows: Sequence[dict[str, Any]], width: int = 1300) -> str:
    """A task's attempts on one time axis: one row each, labelled by where it ran,
    coloured by how it ended."""
    timed = [a for a in rows if a["started_at"] is not None]
    if not timed:
        return ""
    row_h, left = 16, 220
    t0 = min(a["started_at"] for a in timed)
    t1 = max(max(a["finished_at"] for a in timed), t0 + 1e-3)
    scale = (width - left - 10) / (t1 - t0)
    height = row_h * len(timed) + 24
    body = []
    for i, a in enumerate(timed):
        y = 4 + i * row_h
        where = f"{a.get('host') or '?'}"
        if a.get("job_id"):
            index = "" if a.get("array_index") is None else f"[{a['array_index']}]"
            where += f" job {a['job_id']}{index}"
        body.append(
            f'<text x="2" y="{y + 11}" font-size="11">#{a["attempt"]} {escape(where)}</text>'
        )
        x0 = left + (a["started_at"] - t0) * scale
        x1 = left + (a["finished_at"] - t0) * scale
        reason = f" ({a['reason']})" if a.get("reason") else ""
        body.append(
            f'<rect x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 2):.1f}" height="10" '
            f'fill="{COLORS.get(a["outcome"], "#555")}"><title>attempt {a["attempt"]}: '
            f"{escape(str(a['outcome']))}{escape(reason)}</title></rect>"
        )
    clock = _hhmm if t1 - t0 > 3600 else _hhmmss
    body.append(
        f'<text x="{left}" y="{height - 4}" font-size="11">{clock(t0)} UTC</text>'
        f'<text x="{width - 10}" y="{height - 4}" font-size="11" text-anchor="end">'
        f"{clock(t1)}</text>"
    )
    return _svg(width, height, body, f"timeline of {len(timed)} attempts")


def _worker_end(w: dict[str, Any], now: float) -> float:
    if w["stopped_at"] is not None:
        return float(w["stopped_at"])
    return float(w["heartbeat_at"]) if w["status"] != "running" else now


def _hhmm(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch))


def _hhmmss(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.3g} s" if value < 10 else f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"
