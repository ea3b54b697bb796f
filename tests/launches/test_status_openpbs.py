"""``status`` end to end on real OpenPBS 23.06.06 output: scheduler output in, report out.

The transport (the I/O edge) is a fake that answers each ``qstat``/``qdel`` argv
with the captured output (tests/schedulers/fixtures/openpbs-23.06/, README there
names the source); the queue is a real SQLite database and the code under test is
:func:`hpclaunch.launches.status.observe`, ``reconcile.apply`` and ``cancel`` as the
CLI calls them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.launches import reconcile
from hpclaunch.launches import status as launch_status
from hpclaunch.launches.cancel import cancel
from hpclaunch.launches.pool import TransportPool
from hpclaunch.queue import launch_rows as records
from hpclaunch.transport.base import CommandResult

REAL = Path(__file__).resolve().parents[1] / "schedulers" / "fixtures" / "openpbs-23.06"


def real(name: str) -> str:
    return (REAL / name).read_text(encoding="utf-8")


class FakeTransport:
    """Answers the scheduler's commands with captured output; records every argv."""

    def __init__(self, answers: dict[str, CommandResult]):
        self.answers = answers
        self.calls: list[list[str]] = []
        self.connections_opened = 0

    def run(self, argv, **_kw) -> CommandResult:
        self.calls.append(list(argv))
        return self.answers.get(argv[0], CommandResult(1, "", f"{argv[0]}: not faked"))

    def read_file(self, path: str) -> bytes:
        raise OSError(path)

    def close(self) -> None:
        pass


def open_queue(url: str):
    """The queue connection the launches functions take (as the CLI opens it)."""
    from hpclaunch.queue import db

    return db.connect(url)


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    handle = open_queue(url)
    handle.test_url = url  # type: ignore[attr-defined]
    return handle


def pbs_launch(engine, launch_id: str, job_ids: list[str], elements: int) -> None:
    """A submitted PBS launch: one array chunk of ``elements`` subjobs per job ID."""
    records.create_launch(
        engine,
        launch_id=launch_id,
        site="pbslocal",
        host="pbshost",
        scheduler="pbs",
        workdir="/home/pbsuser/hpclaunch",
        log_dir=f"/home/pbsuser/hpclaunch/{launch_id}",
        workers_count=elements * len(job_ids),
        tags="default",
        profile={},
        chunks=[
            {
                "chunk": i,
                "job_name": f"hpcl-{launch_id}-{i}",
                "elements": elements,
                "workers_per_element": 1,
                "array": 1,
                "script": "#!",
                "script_path": f"/w/hpcl-{launch_id}-{i}.sh",
            }
            for i in range(len(job_ids))
        ],
    )
    for i, job_id in enumerate(job_ids):
        records.set_job_id(engine, launch_id, i, job_id)
    records.set_status(engine, launch_id, "submitted")


def status_with(engine, transport: FakeTransport, **kw) -> launch_status.StatusReport:
    """What `hpclaunch status` does: observe, then reconcile (kept on the report)."""
    pool = TransportPool(lambda _launch: transport)
    report = launch_status.observe(engine, pool, **kw)
    report.reconciled = reconcile.apply(engine, report, pool)  # type: ignore[attr-defined]
    return report


def elements_of(report: launch_status.StatusReport, launch_id: str) -> list[tuple[str, str | None]]:
    view = next(v for v in report.launches if v["id"] == launch_id)
    return [(e["state"], e["reason"]) for e in view["elements"]]


def test_outside_qdel_of_a_running_array_does_not_mark_the_launch_broken(engine):
    # e2e4_external_qdel.txt: subjobs 2 and 3 never ran; they came back FAILED and the
    # launch was marked broken, so the next submit for the site was refused.
    pbs_launch(engine, "extqdel", ["13[].pbshost"], 4)
    qstat = CommandResult(0, real("qstat_f_json_t_x_qdel_running_array.json"), "")
    report = status_with(engine, FakeTransport({"qstat": qstat}))
    states = elements_of(report, "extqdel")
    assert [s for s, _ in states] == ["CANCELLED"] * 4
    assert all("never started" in (r or "") for _, r in states[2:])
    assert report.reconciled.broken == []
    assert records.get_launch(engine, "extqdel")["status"] != "broken"


@pytest.mark.parametrize("element", [None, 1])
def test_cancel_of_a_finished_launch_succeeds(engine, element):
    # e2e5_cancel_finished.txt: "qdel: Job has finished 12[].pbshost", exit status 35,
    # failed `hpclaunch cancel` (and `cancel --element 1`).
    pbs_launch(engine, "done", ["12[].pbshost"], 4)
    target = "12[].pbshost" if element is None else "12[1].pbshost"
    transport = FakeTransport(
        {
            "qdel": CommandResult(35, "", f"qdel: Job has finished {target}\n"),
            "qstat": CommandResult(0, real("qstat_f_json_t_x_e2e_completed.json"), ""),
        }
    )
    out = cancel(engine, "done", TransportPool(lambda _l: transport), element=element, wait=5)
    assert out["gone"] is True
    assert ["qdel", target] in transport.calls


def add_worker(engine, launch_id: str, job_id: str, array_job_id: str | None, index: int | None):
    """A worker that ran for the element and exited cleanly (its record in the database)."""
    import time

    from hpclaunch.queue import claims, driver

    conn = driver.connect(engine.test_url)
    try:
        worker_id = claims.register_worker(
            conn,
            host="pbshost",
            pid=1,
            tags="default",
            mode="draining",
            lease=60,
            scheduler="pbs",
            job_id=job_id,
            array_job_id=array_job_id,
            array_index=index,
            launch_id=launch_id,
        )
        conn.execute(
            "UPDATE workers SET status = 'exited', exit_reason = 'empty_queue', "
            "stopped_at = :now WHERE id = :id",
            {"now": time.time(), "id": worker_id},
        )
    finally:
        conn.close()


def test_one_job_gone_from_history_does_not_break_status_for_the_site(engine):
    # e2e7_purged_history.txt: qstat exits 153 with "Unknown Job Id 999[].pbshost" on stderr
    # and JSON for the known jobs on stdout; `status` aborted for the whole site.
    pbs_launch(engine, "known", ["12[].pbshost"], 4)
    pbs_launch(engine, "purged", ["999[].pbshost"], 2)
    for i in range(2):
        add_worker(engine, "purged", f"999[{i}].pbshost", "999[].pbshost", i)
    qstat = CommandResult(
        153, real("qstat_f_json_t_x_e2e_completed.json"), real("qstat_mixed_unknown.stderr")
    )
    transport = FakeTransport({"qstat": qstat})
    report = status_with(engine, transport)
    assert [s for s, _ in elements_of(report, "known")] == ["COMPLETED"] * 4
    # The purged job is settled from its workers' records, and the report says so.
    assert elements_of(report, "purged") == [("COMPLETED", "workers exited: empty_queue")] * 2
    assert any("999[].pbshost" in n and "workers' records" in n for n in report.notes)
    assert report.scheduler_calls == 1  # no second qstat for a job it just said it forgot


def test_job_history_off_is_noticed_and_said(engine):
    # qstat_history_off.txt: exit status 0, a message, JSON without "Jobs".
    text = real("qstat_history_off.txt")
    body = text[text.index("{") : text.index("}") + 1]
    message = next(ln for ln in text.splitlines() if ln.startswith("qstat: PBS is not"))
    records.create_launch(
        engine,
        launch_id="nohist",
        site="pbslocal",
        host="pbshost",
        scheduler="pbs",
        workdir="/w",
        log_dir="/w/nohist",
        workers_count=1,
        tags="default",
        profile={},
        chunks=[
            {
                "chunk": 0,
                "job_name": "hpcl-nohist-0",
                "elements": 1,
                "workers_per_element": 1,
                "array": 0,
                "script": "#!",
                "script_path": "/w/hpcl-nohist-0.sh",
            }
        ],
    )
    records.set_job_id(engine, "nohist", 0, "18.pbshost")
    records.set_status(engine, "nohist", "submitted")
    add_worker(engine, "nohist", "18.pbshost", None, None)
    report = status_with(engine, FakeTransport({"qstat": CommandResult(0, body, message + "\n")}))
    assert elements_of(report, "nohist") == [("COMPLETED", "workers exited: empty_queue")]
    assert any(
        "no scheduler accounting" in n and "job history" in n and "workers' records" in n
        for n in report.notes
    ), report.notes
    assert report.scheduler_calls == 1


def test_a_walltime_kill_types_the_held_task_timeout(engine):
    # e2e3b_timeout_final.txt: the task was requeued with reason FAILED ("exit status -29").
    from hpclaunch import Queue
    from hpclaunch.queue import claims, driver

    pbs_launch(engine, "wall", ["15[].pbshost"], 2)
    Queue(engine.test_url).enqueue_command("sleep 99")
    conn = driver.connect(engine.test_url)
    try:
        worker = claims.register_worker(
            conn,
            host="pbshost",
            pid=1,
            tags="default",
            mode="draining",
            lease=60,
            scheduler="pbs",
            job_id="15[0].pbshost",
            array_job_id="15[].pbshost",
            array_index=0,
            launch_id="wall",
        )
        held = claims.Claimer(
            conn,
            worker_id=worker,
            tag_sets=["default"],
            lease=60,
            allow_pickle=True,
            fit_deadline=False,
        ).claim()
    finally:
        conn.close()
    assert held is not None
    qstat = CommandResult(0, real("qstat_f_json_t_x_timeout_A_final.json"), "")
    report = status_with(engine, FakeTransport({"qstat": qstat}))
    assert [s for s, _ in elements_of(report, "wall")] == ["TIMEOUT", "TIMEOUT"]
    conn = driver.connect(engine.test_url)
    try:
        row = conn.one("SELECT status, reason FROM tasks WHERE id = :id", {"id": held.id})
    finally:
        conn.close()
    assert tuple(row) == ("pending", "TIMEOUT")
    assert any(a.state == "TIMEOUT" and a.outcome == "requeued" for a in report.reconciled.actions)
