"""SIMX's runweb routes on a real ``hpclaunch serve``, driven by the real ``curl``.

The seed's transcript: ``curl -u topl:TOKEN .../batch/new --data-binary
@batch-req.yaml`` (the seed's exact file, sent form-encoded as curl does), then
``/batches``, ``/batch/1``, ``/workers`` and ``/user/topl``; three plain
direct-database workers run the three dummy runs in between.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from server_helpers import run_cli, running_server

FIXTURES = Path(__file__).parents[1] / "fixtures" / "simx"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


def curl(*args: str, cwd: Path | None = None) -> tuple[int, object]:
    """Run the real curl; its HTTP status and JSON body."""
    out = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert out.returncode == 0, out.stderr
    body, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(body)


def account(name: str, group: str, role: str = "user", *flags: str) -> str:
    """A user (if new) and a token for it, as an administrator makes them."""
    added = run_cli("user", "add", name, "--group", group, *flags)
    assert added.returncode == 0 or "already exists" in added.stderr, added.stderr
    out = run_cli("token", "create", "--user", name, "--role", role, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["token"]


def three_workers() -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-P", "-m", "hpclaunch", "worker", "--close-on-empty-queue"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        for _ in range(3)
    ]
    for proc in workers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err


def test_seed_transcript_with_curl(queue_url, tmp_path):
    topl = account("topl", "topl")
    eve = account("eve", "other")
    topl_worker = account("topl", "topl", "worker")
    with running_server(tmp_path / "serve.log") as (_, base):
        status, made = curl(
            "-u", f"topl:{topl}", f"{base}/batch/new", "--data-binary", "@batch-req.yaml",
            cwd=FIXTURES,
        )  # fmt: skip
        assert status == 201, made
        assert made == {
            "id": 1,
            "name": "test123",
            "engine": "dummy",
            "n_runs": 3,
            "first_task_id": 1,
            "last_task_id": 3,
            "warnings": [],
        }
        me = ("-u", f"topl:{topl}")
        status, listed = curl(*me, f"{base}/batches")
        assert status == 200
        assert curl(*me, f"{base}/batch") == (200, listed)
        assert isinstance(listed, list) and len(listed) == 1
        (row,) = listed
        assert {k: row[k] for k in ("id", "name", "engine", "user", "group", "n_runs")} == {
            "id": 1,
            "name": "test123",
            "engine": "dummy",
            "user": "topl",
            "group": "topl",
            "n_runs": 3,
        }
        assert (row["status"], row["counts"]["pending"]) == ("pending", 3)

        three_workers()

        status, batch = curl(*me, f"{base}/batch/1")
        assert status == 200 and isinstance(batch, dict)
        assert (batch["status"], batch["param"]) == (
            "completed",
            {"step_count": 5, "step_delay": 1},
        )
        assert [(r["run"], r["status"], r["result"]) for r in batch["runs"]] == [
            (i, "completed", {"run": i, "steps": 5}) for i in range(3)
        ]
        assert all(r["worker_id"] is not None and r["attempts"] == 1 for r in batch["runs"])

        status, workers = curl(*me, f"{base}/workers")
        assert status == 200 and isinstance(workers, list)
        assert curl(*me, f"{base}/worker") == (200, workers)
        ran = {r["worker_id"] for r in batch["runs"]}
        assert {w["id"] for w in workers} == ran  # the workers that ran topl's runs
        for w in workers:  # long gone (exited), still listed
            assert (w["status"], w["exit_reason"], w["engines"]) == (
                "exited",
                "empty_queue",
                ["dummy"],
            )
        assert sum(w["runs_completed"] for w in workers) == 3

        assert curl(*me, f"{base}/user/topl") == (200, [batch_summary(batch)])
        assert curl(*me, f"{base}/user/nobody") == (200, [])

        # Another group's user sees none of it.
        other = ("-u", f"eve:{eve}")
        assert curl(*other, f"{base}/batch/1") == (404, {"error": "no batch 1"})
        for path in ("/batches", "/workers", "/user/topl"):
            assert curl(*other, f"{base}{path}") == (200, [])
        # A worker token only claims and runs; a cookie is not a credential.
        for path in ("/batches", "/batch/1", "/workers", "/user/topl"):
            status, body = curl("-H", f"Authorization: Bearer {topl_worker}", f"{base}{path}")
            assert status == 403 and "worker token" in body["error"]  # type: ignore[index]
            status, body = curl("-H", f"Cookie: session={topl}", f"{base}{path}")
            assert status == 401
        status, body = curl(
            "-u", f"topl:{topl_worker}", f"{base}/batch/new", "--data-binary", "@batch-req.yaml",
            cwd=FIXTURES,
        )  # fmt: skip
        assert status == 403


def batch_summary(batch: dict) -> dict:
    """What /batches shows of a batch that /batch/{n} shows in full."""
    return {k: v for k, v in batch.items() if k not in ("param", "runs")}


def test_new_batch_owner_and_mistakes(queue_url, tmp_path):
    topl = account("topl", "topl")
    root = account("root", "ops", "admin", "--admin")
    eve = account("eve", "other")
    files = tmp_path / "files"
    files.mkdir()
    (files / "as-eve.yaml").write_text("name: x\nengine: dummy\nuser: eve\ngroup: other\n")
    (files / "bogus.yaml").write_text("name: x\nengine: dummy\nsteps: 3\n")
    (files / "latin1.yaml").write_bytes(b"name: caf\xe9\nengine: dummy\n")
    (files / "grid.yaml").write_text("name: g\nengine: dummy\nparams:\n  step_count: 0\n")
    (files / "huge.yaml").write_bytes(b"name: h\nengine: dummy\n#" + b"x" * (17 * 2**20) + b"\n")
    with running_server(tmp_path / "serve.log") as (_, base):

        def post(user: str, secret: str, name: str, *extra: str) -> tuple[int, object]:
            return curl(
                "-u", f"{user}:{secret}", f"{base}/batch/new", "--data-binary", f"@{name}",
                *extra, cwd=files,
            )  # fmt: skip

        status, body = post("topl", topl, "as-eve.yaml")
        assert (status, body) == (
            403,
            {
                "error": "the batch's user is 'eve' but you are user 'topl': a user enqueues "
                "only as itself (an admin may name others)"
            },
        )
        status, body = post("topl", topl, "bogus.yaml")
        assert status == 400 and "batch-req.yaml:3: steps: unknown key" in body["error"]  # type: ignore[index]
        assert post("topl", topl, "latin1.yaml") == (
            400,
            {"error": "the batch file is not UTF-8 text"},
        )
        status, body = post("topl", topl, "huge.yaml")
        assert (status, body) == (413, {"error": "the request body is larger than 16 MiB"})
        # Whatever the Content-Type says, the body is the batch file.
        status, body = post("topl", topl, "grid.yaml", "-H", "Content-Type: application/json")
        assert status == 201 and "write `param`" in body["warnings"][0]  # type: ignore[index]

        status, body = post("root", root, "as-eve.yaml")  # an admin may name others
        assert status == 201, body
        made = body["id"]  # type: ignore[index]
        eve_sees = curl("-u", f"eve:{eve}", f"{base}/user/eve")
        assert eve_sees[0] == 200 and [b["id"] for b in eve_sees[1]] == [made]  # type: ignore[union-attr]
        assert curl("-u", f"topl:{topl}", f"{base}/batch/{made}")[0] == 404
        status, everything = curl("-H", f"Authorization: Bearer {root}", f"{base}/batches")
        assert status == 200 and [(b["user"], b["group"]) for b in everything] == [  # type: ignore[union-attr]
            ("topl", "topl"),
            ("eve", "other"),
        ]
        assert curl("-u", f"topl:{topl}", f"{base}/batch/99999999999999999999")[0] == 404
        assert curl("-u", f"topl:{topl}", f"{base}/batch/new")[0] == 404
    log = (tmp_path / "serve.log").read_text()
    assert topl not in log and root not in log and "Traceback" not in log


def test_new_batch_of_100000_runs_in_one_request(queue_url, tmp_path):
    """SIMX's n_runs at scale: one POST, one transaction, every run visible in /batch/1."""
    topl = account("topl", "topl")
    (tmp_path / "big.yaml").write_text("name: big\nengine: dummy\nuser: topl\nn_runs: 100000\n")
    with running_server(tmp_path / "serve.log") as (_, base):
        status, made = curl(
            "-u", f"topl:{topl}", f"{base}/batch/new", "--data-binary", "@big.yaml",
            "--max-time", "300", cwd=tmp_path,
        )  # fmt: skip
        assert status == 201, made
        assert (made["n_runs"], made["first_task_id"], made["last_task_id"]) == (  # type: ignore[index]
            100000,
            1,
            100000,
        )
        status, batch = curl("-u", f"topl:{topl}", f"{base}/batch/1", "--max-time", "300")
        assert status == 200 and isinstance(batch, dict)
        assert batch["counts"]["pending"] == 100000 and len(batch["runs"]) == 100000
        assert batch["runs"][-1]["run"] == 99999
