"""The dashboard's pure parts: signed cookies, CSRF tokens, SVG charts, the page cache,
and escaping in the templates."""

from __future__ import annotations

import asyncio
import re

import pytest

from hpclaunch.server.ui import charts, session
from hpclaunch.server.ui.cache import PageCache
from hpclaunch.server.ui.render import page

SECRET = "s" * 64


def test_cookie_round_trip_and_tampering():
    value = session.issue(SECRET, 42)
    assert session.verify(SECRET, value) == session.Session(42, value)
    assert session.issue(SECRET, 42) != value  # a nonce per sign-in
    body, _, mac = value.rpartition(".")
    other_id = "43" + body[2:]
    for bad in (
        None,
        "",
        "garbage",
        f"{other_id}.{mac}",  # another session's ID under this signature
        body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),
        "x" * 300,
        "a.b.c",
    ):
        assert session.verify(SECRET, bad) is None, bad
    assert session.verify("another secret", value) is None


def test_csrf_token_belongs_to_one_session():
    one, two = session.issue(SECRET, 1), session.issue(SECRET, 1)
    token = session.csrf_token(SECRET, one)
    assert session.csrf_ok(SECRET, one, token)
    assert not session.csrf_ok(SECRET, two, token)
    assert not session.csrf_ok(SECRET, one, None)
    assert not session.csrf_ok(SECRET, one, "")
    assert not session.csrf_ok("other", one, token)


def test_progress_bar_widths_follow_the_counts():
    svg = charts.progress({"completed": 3, "failed": 1, "running": 0, "pending": 4})
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="0" width="([\d.]+)"', svg)]
    assert widths == [1000.0, 375.0, 125.0, 500.0]  # the track, then each status in turn
    assert "<title>completed: 3</title>" in svg and "<title>running" not in svg


def test_histogram_marks_the_p95_and_zooms_on_a_narrow_spread():
    samples = [10.0 + i / 100 for i in range(100)]
    svg = charts.histogram(samples, 10.95)
    assert "p95 11 s" in svg and "stroke-dasharray" in svg
    assert ">9.8 s<" in svg  # the axis starts near the shortest run, not at 0
    assert "p95" not in charts.histogram([1.0, 2.0], None)


def test_timeline_and_per_minute_escape_what_they_print():
    worker = {
        "id": 1,
        "host": "<script>alert(1)</script>",
        "status": "exited",
        "exit_reason": "crash",
        "started_at": 1000.0,
        "stopped_at": 1100.0,
        "heartbeat_at": 1100.0,
        "array_index": 3,
        "array_job_id": "77",
        "job_id": "77_3",
        "spans": [{"task": 9, "start": 1010.0, "end": 1050.0, "outcome": "failed"}],
    }
    svg = charts.timeline([worker], now=1200.0)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert "#1 77[3]" in svg and charts.COLORS["failed"] in svg
    tried = charts.attempts(
        [
            {"attempt": 1, "started_at": 10.0, "finished_at": 20.0, "outcome": "lost",
             "reason": "lease_expired", "host": "n1", "job_id": "5", "array_index": 2},
            {"attempt": 2, "started_at": 30.0, "finished_at": 31.0, "outcome": "failed",
             "reason": None, "host": "<n2>", "job_id": None, "array_index": None},
        ]
    )  # fmt: skip
    assert "#1 n1 job 5[2]" in tried and "#2 &lt;n2&gt;" in tried
    assert "attempt 1: lost (lease_expired)" in tried and charts.COLORS["lost"] in tried
    assert charts.attempts([]) == ""
    buckets = [{"completed": 0, "failed": 0}] * 179 + [{"completed": 5, "failed": 2}]
    chart = charts.per_minute(buckets, start=0.0)
    assert "completed: 5" in chart and "failed: 2" in chart and "7 in all" in chart


def test_pages_escape_data():
    html = page(
        "tasks.html",
        identity=None,
        csrf="",
        path="/ui/tasks",
        now=0.0,
        params={},
        data={
            "batch": None,
            "table": {
                "rows": [
                    {
                        "id": 1,
                        "name": "<img src=x onerror=alert(1)>",
                        "status": "failed",
                        "tags": "a",
                        "attempts": 1,
                        "max_attempts": 3,
                        "worker_id": None,
                        "exit_code": 1,
                        "reason": None,
                        "started_at": None,
                        "finished_at": None,
                    }
                ],
                "total": 1,
                "next": None,
            },
        },
    )
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_cache_reads_once_for_concurrent_viewers_and_not_errors():
    async def scenario() -> None:
        cache = PageCache(ttl=0.2)
        calls = 0

        async def load() -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return calls

        values = await asyncio.gather(*(cache.get(("p",), load) for _ in range(20)))
        assert values == [1] * 20 and calls == 1 and cache.misses == 1
        assert await cache.get(("other",), load) == 2  # another key reads for itself
        await asyncio.sleep(0.25)
        assert await cache.get(("p",), load) == 3  # past its ttl: read again

        async def broken() -> int:
            raise RuntimeError("database down")

        with pytest.raises(RuntimeError):
            await cache.get(("q",), broken)
        assert await cache.get(("q",), load) == 4  # the error was not cached
        cache.clear()
        assert await cache.get(("p",), load) == 5

    asyncio.run(scenario())
