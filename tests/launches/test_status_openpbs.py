"""``status`` end to end on real OpenPBS 23.06.06 output: scheduler output in, report out.

The transport (the I/O edge) is a fake that answers each ``qstat``/``qdel`` argv
with the captured output (tests/schedulers/fixtures/openpbs-23.06/, README there
names the source); the queue is a real SQLite database and the code under test is
:func:`hpclaunch.launches.track.status` / ``cancel`` as the CLI calls them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.launches import records, track
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


@pytest.fixture
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    monkeypatch.setenv("HPCLAUNCH_DATABASE_URL", url)
    from hpclaunch.queue.db import get_engine

    get_engine.cache_clear()
    return get_engine(url)


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


def status_with(engine, transport: FakeTransport, **kw) -> track.StatusReport:
    return track.status(engine, pool=track.TransportPool(lambda _launch: transport), **kw)


def elements_of(report: track.StatusReport, launch_id: str) -> list[tuple[str, str | None]]:
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
    out = track.cancel(
        engine, "done", element=element, pool=track.TransportPool(lambda _l: transport), wait=5
    )
    assert out["gone"] is True
    assert ["qdel", target] in transport.calls
