"""``logs`` and ``logs --follow`` read the workers' output from the launch folder.

On a real OpenPBS 23.06 (tests/schedulers/fixtures/openpbs-23.06/,
e2e3b_timeout_status.txt) `logs` of a running element said "no output yet", because
PBS keeps -o/-e in its spool on the execution host until the job ends. The batch
script now writes each worker's output to files in the launch folder as it comes.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hpclaunch.cli import cli
from hpclaunch.launches import status as launch_status
from hpclaunch.launches.logs import follow_output
from hpclaunch.queue import launch_rows as records
from hpclaunch.schedulers import get_scheduler


@pytest.fixture
def db(tmp_path, monkeypatch):
    from test_status_openpbs import open_queue

    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    return open_queue(url), url


def running_pbs_launch(engine, log_dir) -> None:
    """A PBS array launch on this machine (no SSH), element 1 still running."""
    records.create_launch(
        engine,
        launch_id="live",
        site="pbslocal",
        host=None,
        scheduler="pbs",
        workdir=str(log_dir.parent),
        log_dir=str(log_dir),
        workers_count=2,
        tags="default",
        profile={},
        chunks=[
            {
                "chunk": 0,
                "job_name": "hpcl-live-0",
                "elements": 2,
                "workers_per_element": 1,
                "array": 1,
                "script": "#!",
                "script_path": str(log_dir / "hpcl-live-0.sh"),
            }
        ],
    )
    records.set_job_id(engine, "live", 0, "15[].pbshost")
    records.set_status(engine, "live", "submitted")


def test_logs_of_a_running_pbs_element_shows_its_workers_output(db, tmp_path):
    engine, url = db
    log_dir = tmp_path / "hpclaunch" / "live"
    log_dir.mkdir(parents=True)
    running_pbs_launch(engine, log_dir)
    out, err = get_scheduler("pbs").worker_log_paths(str(log_dir), "hpcl-live-0", 1)
    # what the batch script's redirect writes while the worker runs; -o/-e still spooled
    (log_dir / "hpcl-live-0.1.workers.out").write_text("task 17 started\n")
    assert out == str(log_dir / "hpcl-live-0.1.workers.out")
    res = CliRunner().invoke(cli, ["--database", url, "logs", "live", "--element", "1"], obj={})
    assert res.exit_code == 0, res.output
    assert "task 17 started" in res.output
    assert "no output yet" not in res.output
    assert f"==> {err} <==" in res.output  # every file is named, missing ones say so
    res = CliRunner().invoke(
        cli, ["--database", url, "logs", "live", "--element", "1", "--json"], obj={}
    )
    assert '"workers_stdout": "task 17 started\\n"' in res.output


def test_follow_prints_each_new_line_once_until_the_element_ends():
    content = [b"", b"a\n", b"a\nb\n", b"a\nb\nc\n"]
    polls = {"n": 0}
    printed: list[tuple[int, bytes]] = []

    def read():
        return [content[min(polls["n"], 3)], None]

    def ended():
        polls["n"] += 1
        return polls["n"] >= 3

    follow_output(read, ended, lambda n, d: printed.append((n, d)), sleep=lambda _s: None)
    assert b"".join(d for _, d in printed) == b"a\nb\nc\n"
    assert all(n == 0 for n, _ in printed)


def test_logs_follow_reads_until_the_element_ends(db, tmp_path, monkeypatch):
    engine, url = db
    log_dir = tmp_path / "hpclaunch" / "live"
    log_dir.mkdir(parents=True)
    running_pbs_launch(engine, log_dir)
    (log_dir / "hpcl-live-0.0.workers.out").write_text("line 1\nline 2\n")

    class Ended:
        launches = [{"id": "live", "elements": [{"state": "COMPLETED"}, {"state": "RUNNING"}]}]

    monkeypatch.setattr(launch_status, "observe", lambda *_a, **_k: Ended)
    res = CliRunner().invoke(cli, ["--database", url, "logs", "live", "--follow"], obj={})
    assert res.exit_code == 0, res.output
    assert "line 1\nline 2\n" in res.output
