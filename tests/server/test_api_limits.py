"""Bounds a client notices: body size (413), malformed bodies, a 100,000-run batch,
and the slow-down of repeated authentication failures."""

from __future__ import annotations

import subprocess
import time

from api_helpers import basic, call, make_accounts
from server_helpers import running_server

MIB = 1024 * 1024


def _curl(*args: str) -> subprocess.CompletedProcess:
    """The real curl; prints the body then the status code."""
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-w", " %{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_body_bounds(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    log = tmp_path / "serve.log"
    with running_server(log) as (_, base):
        big = tmp_path / "big.yaml"
        big.write_bytes(b"name: big\ncommand: echo\n" + b"#" * (17 * MIB))
        auth = f"Authorization: Bearer {tok['alice']}"
        url = f"{base}/api/v1/batches"
        # Declared too large: refused before the body is read.
        out = _curl("-H", auth, "--data-binary", f"@{big}", url)
        assert out.stdout == '{"error":"the request body is larger than 16 MiB"} 413', out.stderr
        # Chunked (no Content-Length): counted as it arrives.
        out = _curl(
            "-H", auth, "-H", "Transfer-Encoding: chunked", "-T", str(big), "-X", "POST", url
        )
        assert out.stdout.endswith(" 413"), (out.stdout[-200:], out.stderr)
        # A body within the bound is served; malformed ones are one clear sentence.
        for data, expected in (
            (b"name: ok\ncommand: echo {run}\nn_runs: 2\n", 201),
            (b"name: [unclosed\n", 422),
            (b"- just\n- a list\n", 422),
            (b'{"name": "j", "command": ["echo"], "n_runs": "many"}', 422),
        ):
            status, reply = call(base, "POST", "/api/v1/batches", token=tok["alice"], data=data)
            assert status == expected, (data, reply)
            if status != 201:
                assert list(reply) == ["error"] and "\n" not in reply["error"]
        curl = _curl("-H", auth, "--data-binary", '{"command": ["echo"', f"{base}/api/v1/tasks")
        assert curl.stdout.endswith(" 400") and "not JSON" in curl.stdout
    assert "Traceback" not in log.read_text()


def test_hundred_thousand_runs_in_one_batch(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    with running_server(tmp_path / "serve.log") as (_, base):
        data = b"name: huge\ncommand: echo {run}\nn_runs: 100000\ntags: [big]\n"
        started = time.monotonic()
        status, made = call(base, "POST", "/api/v1/batches", token=tok["alice"], data=data)
        assert status == 201, made
        elapsed = time.monotonic() - started
        ids = made["task_ids"]
        assert len(ids) == 100_000 and ids == list(range(ids[0], ids[0] + 100_000))
        status, batch = call(base, "GET", f"/api/v1/batches/{made['batch_id']}", token=tok["bob"])
        assert status == 404
        status, batch = call(base, "GET", f"/api/v1/batches/{made['batch_id']}", token=tok["alice"])
        assert status == 200 and batch["n_tasks"] == 100_000
        assert batch["counts"]["pending"] == 100_000
        stats = call(base, "GET", "/api/v1/stats", token=tok["alice"])[1]
        assert stats["by_tag"]["big"]["pending"] == 100_000
        page = call(base, "GET", "/api/v1/tasks?tag=big&limit=1000", token=tok["alice"])[1]
        assert len(page["items"]) == 1000 and page["next_cursor"]
        print(f"100,000-run batch over HTTP in {elapsed:.1f} s")


def test_repeated_failures_are_slowed_per_credential(queue_url, tmp_path):
    tok = make_accounts(queue_url).tokens
    log = tmp_path / "serve.log"
    with running_server(log) as (_, base):

        def timed(headers):
            start = time.monotonic()
            status, _ = call(base, "GET", "/api/v1/stats", headers=headers)
            return status, time.monotonic() - start

        guesses = [timed(basic("alice", f"hpl_guess{i}"))[1] for i in range(6)]
        assert all(t < 0.2 for t in guesses[:3]) and guesses[5] >= 0.9, guesses
        # Another name (same address) is not slowed, nor is alice's valid token.
        assert timed(basic("carol", "hpl_guess"))[1] < 0.2
        status, took = timed(basic("alice", tok["alice"]))
        assert status == 200 and took < 0.2
        # A wrong bearer secret counts against that secret.
        slow = [timed({"Authorization": "Bearer hpl_wrong"}) for _ in range(5)]
        assert all(s == 401 for s, _ in slow) and slow[-1][1] >= 0.4
        assert timed({"Authorization": "Bearer hpl_other"})[1] < 0.2
    text = log.read_text()
    assert "hpl_guess" not in text and tok["alice"] not in text
