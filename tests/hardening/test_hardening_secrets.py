"""No password, in any form libpq accepts, reaches a script, a log, an error line
or ``--json``; workers get the URL in their environment, tasks never inherit it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hardening_helpers import one_error_line, run_main

from hpclaunch.queue.urls import has_password, redact

SECRET = "Sx9secretQ"

FORMS = [
    "postgresql://alice:{s}@db.example.org:5432/q",
    "postgresql://alice@db.example.org/q?password={s}",
    "postgresql://alice@db.example.org/q?sslmode=require&sslpassword={s}",
    "postgresql://alice@db.example.org/q?passfile=/home/alice/{s}",
    "host=db.example.org dbname=q password={s}",
    "host=db.example.org password='a {s} b' dbname=q",
    "DSN=postgresql://alice:{s}@db.example.org/q",
    "PGPASSWORD={s}",
]


@pytest.mark.parametrize("form", FORMS)
def test_every_libpq_password_form_is_recognised_and_redacted(form):
    text = form.format(s=SECRET)
    assert has_password(text)
    assert SECRET not in redact(text)
    assert SECRET not in redact(f"cannot connect to {text}: timeout")


@pytest.mark.parametrize(
    "text", ["postgresql://alice@db/q", "sqlite:////tmp/q.db", "postgresql://db/q?sslmode=require"]
)
def test_password_free_urls_pass_unchanged(text):
    assert not has_password(text) and redact(text) == text


def _profile(tmp_path: Path, database: str, env: str = "") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(
        "scheduler: slurm\n"
        "resources: {partition: debug}\n"
        f"database: {database}\n" + (f"env:\n  {env}\n" if env else "")
    )
    return path


@pytest.mark.parametrize("form", FORMS[:4])
def test_render_refuses_a_database_url_with_a_password(tmp_path, monkeypatch, form):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = form.format(s=SECRET)
    site = _profile(tmp_path, "{url: '" + url + "'}")
    out = tmp_path / "job.sh"
    ran = run_main("render", "--site", str(site), "-n", "2", "-o", str(out))
    line = one_error_line(ran)
    assert "password" in line and SECRET not in ran.text
    assert not out.exists()
    # the same through --set
    site = _profile(tmp_path, "{env: QUEUE_URL}")
    ran = run_main("render", "--site", str(site), "-n", "2", "--set", f"database.url={url}")
    assert SECRET not in one_error_line(ran)


@pytest.mark.parametrize("value", ["'host=db password={s}'", "'postgresql://u@db/q?password={s}'"])
def test_render_refuses_a_profile_env_value_with_a_password(tmp_path, monkeypatch, value):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    site = _profile(tmp_path, "{env: QUEUE_URL}", "DSN: " + value.format(s=SECRET))
    ran = run_main("render", "--site", str(site), "-n", "1")
    assert SECRET not in one_error_line(ran)


@pytest.mark.parametrize("form", FORMS[:3])
def test_an_unreachable_url_error_line_hides_the_password(tmp_path, monkeypatch, form):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = form.format(s=SECRET).replace("db.example.org", "127.0.0.1:1").replace(":5432", "")
    ran = run_main("--database", url, "tasks", "--json")
    assert SECRET not in one_error_line(ran)


def _with_password(url: str, form: str) -> str:
    """The test database's URL, with a password added in ``form`` (trust auth ignores it)."""
    if form == "userinfo":
        scheme, rest = url.split("://", 1)
        user, at, host = rest.rpartition("@")
        return f"{scheme}://{user}:{SECRET}@{host}" if at else f"{scheme}://x:{SECRET}@{rest}"
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{form}={SECRET}"


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["userinfo", "password", "sslpassword"])
def test_no_command_output_or_log_contains_the_password(pg_queue_url, tmp_path, monkeypatch, form):
    """grep-level proof over what a user sees: stdout, stderr, --json, worker logs."""
    url = _with_password(pg_queue_url, form)
    home = Path(os.environ["HPCLAUNCH_HOME"])
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    monkeypatch.setenv("HPCLAUNCH_SERVER_TOKEN", SECRET)
    seen = []
    for argv in (
        ["enqueue", "--json", "--", "sh", "-c", "env; cat /proc/$PPID/cmdline"],
        ["enqueue", "--shell", "--", "printenv HPCLAUNCH_DATABASE_URL; exit 3"],
        ["db", "current"],
        ["db", "upgrade"],
        ["tasks", "--json"],
        ["batches", "--json"],
        ["stats", "--json"],
        ["--database", url, "tasks"],
        ["--database", url.replace("127.0.0.1", "127.0.0.1:1").replace(":5432", ""), "stats"],
    ):
        seen.append(run_main(*argv).text)
    worker = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "hpclaunch",
            "worker",
            "--close-on-empty-queue",
            "--wait-timeout",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen += [worker.stdout, worker.stderr]
    for argv in (
        ["tasks", "--json"],
        ["tasks", "show", "1"],
        ["tasks", "show", "2", "--json"],
        ["workers", "--all", "--json"],
    ):
        ran = run_main(*argv)
        assert ran.code == 0, ran
        seen.append(ran.text)
    tasks = [json.loads(run_main("tasks", "show", i, "--json").out) for i in ("1", "2")]
    assert [t["status"] for t in tasks] == ["completed", "failed"], tasks
    assert "HPCLAUNCH_" in tasks[0]["stdout_tail"]  # env did print (HPCLAUNCH_HOME, ...)
    assert "HPCLAUNCH_DATABASE_URL" not in tasks[0]["stdout_tail"]
    assert "HPCLAUNCH_SERVER_TOKEN" not in tasks[0]["stdout_tail"]
    for path in home.rglob("*"):
        if path.is_file():
            seen.append(path.read_text(errors="replace"))
    for text in seen:
        assert SECRET not in text


@pytest.mark.parametrize("form", FORMS[:3])
def test_worker_and_cluster_stderr_hide_the_password(tmp_path, form):
    """Worker stderr becomes the job's .err file on the cluster."""
    url = form.format(s=SECRET).replace("db.example.org", "127.0.0.1:1").replace(":5432", "")
    env = {**os.environ, "HPCLAUNCH_HOME": str(tmp_path / "home")}
    for argv in (["worker", "--singleflow"], ["cluster", "2", "--singleflow"]):
        proc = subprocess.run(
            [sys.executable, "-P", "-m", "hpclaunch", "--database", url, *argv, "--db-wait", "0"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert proc.returncode != 0
        assert "cannot connect" in proc.stderr and "***" in proc.stderr
        assert SECRET not in proc.stdout + proc.stderr


@pytest.mark.postgres
def test_cluster_passes_the_url_in_the_environment_not_argv(pg_queue_url, monkeypatch):
    """A task prints its worker's command line (what `ps` shows): no URL there."""
    url = _with_password(pg_queue_url, "password")
    monkeypatch.delenv("HPCLAUNCH_DATABASE_URL")
    run = ["--database", url]
    assert run_main(*run, "enqueue", "--", "sh", "-c", "cat /proc/$PPID/cmdline").code == 0
    proc = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "hpclaunch",
            *run,
            "cluster",
            "1",
            "--close-on-empty-queue",
            "--wait-timeout",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    task = json.loads(run_main(*run, "tasks", "show", "1", "--json").out)
    assert task["status"] == "completed"
    assert "worker" in task["stdout_tail"] and "postgresql" not in task["stdout_tail"]
