"""Engines (SIMX): tasks that name an engine and a param, and the workers that provide them.

Real workers (``hpclaunch worker``, direct database) on SQLite and PostgreSQL; the
seed's own batch-req.yaml; handlers from the built-in dummy, a site profile's
``worker.engines`` (through the script ``render`` writes) and a package's entry
point (a dist-info on a temporary PYTHONPATH, nothing installed).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest
from queue_helpers import run_cli, start_worker

from hpclaunch.errors import UserError
from hpclaunch.queue import claims, db, simx, store
from hpclaunch.queue.batches import NotYours, batch_owner, parse_batch
from hpclaunch.tasks.payloads import worker_tag_sets

SEED_BATCH = Path(__file__).parents[1] / "fixtures" / "simx" / "batch-req.yaml"


def _enqueue(path: Path) -> tuple[int, str]:
    out = run_cli("enqueue", "--file", str(path), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["batch_id"], out.stderr


def _tasks(batch_id: int | None = None) -> list[dict]:
    args = ["tasks", "--json"] + (["--batch", str(batch_id)] if batch_id else [])
    out = run_cli(*args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _show(task_id: int) -> dict:
    out = run_cli("tasks", "show", str(task_id), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _drain(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = start_worker("--close-on-empty-queue", *args, env={**os.environ, **(env or {})})
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return err


def test_seed_batch_file_runs_on_three_plain_workers(queue_url):
    """The seed's exact file: three dummy runs of 5 x 1 s, run by three plain workers."""
    batch_id, stderr = _enqueue(SEED_BATCH)
    assert stderr == ""  # param (not params) is what the seed means: no warning
    rows = _tasks(batch_id)
    assert [(r["name"], r["kind"], r["engine"]) for r in rows] == [
        (f"test123[{i}]", "engine", "dummy") for i in range(3)
    ]
    started = time.monotonic()
    workers = [start_worker("--close-on-empty-queue") for _ in range(3)]
    for proc in workers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "engines dummy" in err
    elapsed = time.monotonic() - started
    for index, row in enumerate(_tasks(batch_id)):
        task = _show(row["id"])
        assert (task["status"], task["attempts"], task["owner"], task["owner_group"]) == (
            "completed",
            1,
            "topl",
            "topl",
        )
        assert json.loads(task["result"]) == {"run": index, "steps": 5}
        assert task["stdout_tail"].splitlines()[-1] == f"dummy run {index}: step 5/5"
        runtime = task["finished_at"] - task["started_at"]
        assert 4.9 <= runtime < 30, runtime  # five steps of one second each
    assert elapsed < 60


def test_engine_task_only_claimed_by_a_worker_that_provides_it(queue_url, tmp_path):
    """A task of engine E waits for a worker with E; plain tasks stay claimable by all."""
    spec = tmp_path / "aurora.yaml"
    spec.write_text(
        "name: sim\nengine: aurora\nn_runs: 2\nparam: {mode: simulation, duration: 100.0}\n"
    )
    batch_id, _ = _enqueue(spec)
    plain = run_cli("enqueue", "--json", "--", "true")
    assert plain.returncode == 0, plain.stderr
    plain_id = json.loads(plain.stdout)["task_ids"][0]

    err = _drain()  # provides dummy only
    assert _show(plain_id)["status"] == "completed"
    assert [r["status"] for r in _tasks(batch_id)] == ["pending", "pending"]
    why = run_cli("tasks", "why", str(_tasks(batch_id)[0]["id"]))
    assert why.returncode == 0, why.stderr
    assert "no running worker provides engine 'aurora'" in why.stdout
    listing = run_cli("tasks", "--batch", str(batch_id))
    assert "engine:aurora" in listing.stdout

    # A worker restricted to dummy never takes it either, even with a handler for aurora.
    out = tmp_path / "runs"
    out.mkdir()
    handler = f'aurora=echo "$HPCLAUNCH_RUN $HPCLAUNCH_PARAM" > {out}/run-$HPCLAUNCH_RUN'
    err = _drain("--engine", "dummy", "--engine-handler", handler)
    assert [r["status"] for r in _tasks(batch_id)] == ["pending", "pending"]
    assert "engines dummy)" in err

    # The command template gets the param as JSON and the run index in its environment.
    _drain("--engine", "aurora", "--engine-handler", handler)
    assert [r["status"] for r in _tasks(batch_id)] == ["completed", "completed"]
    for index in (0, 1):
        run, param = (out / f"run-{index}").read_text().strip().split(" ", 1)
        assert run == str(index)
        assert json.loads(param) == {"mode": "simulation", "duration": 100.0}


def test_claimer_matches_engines_apart_from_tags(queue_url):
    """The claim statement itself: engine tasks only for workers that list the engine."""
    conn = db.connect(queue_url)
    try:
        batch = parse_batch("name: b\nengine: aurora\nn_runs: 1\n")
        (engine_task,) = store.insert_batch(conn, batch)[1]
        plain = parse_batch("name: p\ncommand: 'true'\ntags: [gpu]\n")
        (plain_task,) = store.insert_batch(conn, plain)[1]

        def claimer(engines: tuple[str, ...], tags: list[str]) -> claims.Claimer:
            worker_id = claims.register_worker(
                conn, host="h", pid=1, tags=",".join(tags), mode="draining", lease=60.0
            )
            return claims.Claimer(
                conn,
                worker_id=worker_id,
                tag_sets=worker_tag_sets(tags),
                lease=60.0,
                allow_pickle=True,
                fit_deadline=False,
                engines=engines,
            )

        # The engine's name is not a tag: a worker tagged "aurora" does not get its task.
        assert claimer(("dummy",), ["aurora", "default"]).claim() is None
        # The right engine but not the task's tags: no.
        assert claimer(("aurora",), ["gpu"]).claim() is not None  # the plain gpu task
        assert claimer(("aurora",), ["other"]).claim() is None
        got = claimer(("aurora", "dummy"), ["default"]).claim()
        assert got is not None and (got.id, got.kind) == (engine_task, "engine")
        assert json.loads(got.payload) == {"engine": "aurora", "param": None, "run": 0}
        assert store.task_status(conn, plain_task) == "running"
        # The batch claim of a prefetching worker applies the same engine match.
        more = parse_batch("name: m\nengine: aurora\nn_runs: 3\n")
        more_ids = store.insert_batch(conn, more)[1]
        assert claimer(("dummy",), ["default"]).claim_many(None, 5) == []
        taken = claimer(("aurora",), ["default"]).claim_many(None, 5)
        assert sorted(t.id for t in taken) == sorted(more_ids)
        assert {t.kind for t in taken} == {"engine"}
    finally:
        conn.close()


ENTRY_MODULE = """
def run(param, run):
    print("doubling", param["x"])
    return {"double": param["x"] * 2, "run": run, "scale": param["scale"]}
"""


def test_entry_point_engine_from_an_installed_distribution(queue_url, tmp_path):
    """A package's ``hpclaunch.engines`` entry point is an engine its workers provide;
    with ``params`` each grid point is added to the run's param."""
    site = tmp_path / "site"
    (site / "doublerpkg").mkdir(parents=True)
    (site / "doublerpkg" / "__init__.py").write_text(ENTRY_MODULE)
    info = site / "doublerpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: doublerpkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[hpclaunch.engines]\ndoubler = doublerpkg:run\n")
    spec = tmp_path / "grid.yaml"
    spec.write_text("name: g\nengine: doubler\nparam: {scale: 3}\nparams:\n  x: [1, 2]\n")
    batch_id, _ = _enqueue(spec)

    _drain()  # no such package on its path: not claimed
    assert [r["status"] for r in _tasks(batch_id)] == ["pending", "pending"]

    err = _drain(env={"PYTHONPATH": str(site)})
    assert "engines doubler, dummy" in err
    results = [json.loads(_show(r["id"])["result"]) for r in _tasks(batch_id)]
    assert results == [
        {"double": 2, "run": 0, "scale": 3},
        {"double": 4, "run": 1, "scale": 3},
    ]
    assert _show(_tasks(batch_id)[1]["id"])["stdout_tail"] == "doubling 2\n"


def test_profile_engines_reach_the_worker_through_the_rendered_script(queue_url, tmp_path):
    """A profile's ``worker.engines`` mapping: validated, rendered quoted, and used."""
    marker = tmp_path / "ran"
    profile = tmp_path / "lab.yaml"
    template = f'printf %s "$HPCLAUNCH_PARAM" > {marker}; echo "it\'s done"'
    profile.write_text(
        "scheduler: local\nworker:\n  engines:\n"
        f"    sim: {json.dumps(template)}\n"
        "    fn: hpclaunch.tasks.engines:dummy\n"
    )
    render = run_cli("render", "--site", str(profile), "--workers", "1")
    assert render.returncode == 0, render.stderr
    line = next(x for x in render.stdout.splitlines() if " worker " in x and "--singleflow" in x)
    argv = shlex.split(line.split(">>")[0])
    handlers = [argv[i + 1] for i, a in enumerate(argv) if a == "--engine-handler"]
    assert handlers == ["fn=hpclaunch.tasks.engines:dummy", f"sim={template}"]

    spec = tmp_path / "sim.yaml"
    spec.write_text("name: s\nengine: sim\nparam: [1, {a: b}]\n")
    batch_id, _ = _enqueue(spec)
    args = [x for h in handlers for x in ("--engine-handler", h)]
    _drain(*args)
    task = _show(_tasks(batch_id)[0]["id"])
    assert task["status"] == "completed", task["error"]
    assert json.loads(marker.read_text()) == [1, {"a": "b"}]
    assert task["stdout_tail"] == "it's done\n"

    for bad, message in (
        ("    'bad name': x.y:z\n", "bad engine 'bad name'"),
        ('    sim: "a\\nb"\n', "line breaks are not allowed"),
        ("    sim: 'psql postgresql://u:secret@h/db'\n", "password"),
    ):
        profile.write_text("scheduler: local\nworker:\n  engines:\n" + bad)
        out = run_cli("render", "--site", str(profile), "--workers", "1")
        assert out.returncode != 0 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unknown_engine_on_the_command_line_is_one_line(queue_url):
    for args, message in (
        (("--engine", "nope"), "no handler for engine 'nope'"),
        (("--engine", "no pe"), "bad engine 'no pe'"),
        (("--engine-handler", "x"), "expected NAME=pkg.module:function"),
    ):
        out = run_cli("worker", "--close-on-empty-queue", *args)
        assert out.returncode == 2, out.stderr
        assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_batch_file_keys_and_param_params_warnings(queue_url, tmp_path):
    seed = parse_batch(SEED_BATCH.read_text(), source="batch-req.yaml")
    assert (seed.user, seed.group, seed.warnings, len(seed.tasks)) == ("topl", "topl", (), 3)
    assert [t.engine for t in seed.tasks] == ["dummy"] * 3

    grid_meant = parse_batch("name: a\nengine: e\nparam:\n  t: [1, 2]\n  s: [3, 4]\n")
    assert len(grid_meant.tasks) == 1 and "write `params`" in grid_meant.warnings[0]
    param_meant = parse_batch("name: a\nengine: e\nparams:\n  step_count: 5\n")
    assert len(param_meant.tasks) == 1 and "write `param`" in param_meant.warnings[0]

    spec = tmp_path / "warn.yaml"
    spec.write_text("name: w\ncommand: 'true'\nparams:\n  seed: 1\n")
    out = run_cli("enqueue", "--file", str(spec))
    assert out.returncode == 0
    assert out.stderr.startswith("warning: ") and len(out.stderr.splitlines()) == 1

    # A command batch's param reaches every run as HPCLAUNCH_PARAM, its index as HPCLAUNCH_RUN.
    cmd = parse_batch("name: c\ncommand: [env]\nn_runs: 2\nparam: {k: v}\n")
    assert [t.payload["env"] for t in cmd.tasks] == [
        {"HPCLAUNCH_PARAM": '{"k": "v"}', "HPCLAUNCH_RUN": str(i)} for i in range(2)
    ]

    for text, message in (
        ("name: a\nengine: dummy\ncommand: 'true'\n", "exactly one of `command`, `call`"),
        ("name: a\nengine: 'no pe'\n", "2: engine: bad engine"),
        ("name: a\ncall: m.n:f\nparam: 1\n", "`param` goes with `engine` or `command`"),
        ("name: a\nengine: dummy\nuser: [x]\n", "3: user: expected a name"),
        ("name: a\nengine: dummy\ngroup: '-x'\n", "bad group name"),
        ("name: a\nengine: dummy\nparam: {t: 2020-01-01}\n", "param must be plain data"),
    ):
        with pytest.raises(UserError, match=message):
            parse_batch(text)


def test_batch_owner_is_the_callers_own_unless_admin(queue_url):
    batch = parse_batch(SEED_BATCH.read_text())
    assert batch_owner(batch, user="topl", group="topl", admin=False) == ("topl", "topl")
    with pytest.raises(NotYours, match="the batch's user is 'topl' but you are user 'eve'"):
        batch_owner(batch, user="eve", group="topl", admin=False)
    with pytest.raises(NotYours, match="group is 'topl' but you are group 'other'"):
        batch_owner(batch, user="topl", group="other", admin=False)
    unnamed = parse_batch("name: x\nengine: dummy\n")
    assert batch_owner(unnamed, user="eve", group="g", admin=False) == ("eve", "g")
    assert batch_owner(batch, user="root", group="ops", admin=True) == ("topl", "topl")
    only_user = parse_batch("name: x\nengine: dummy\nuser: topl\n")
    assert batch_owner(only_user, user="root", group="ops", admin=True, group_of="g7") == (
        "topl",
        "g7",
    )
    # The direct-database CLI is the administrator; unnamed work stays `local`.
    conn = db.connect(queue_url)
    try:
        batch_id, _ = simx.enqueue_batch(conn, unnamed, simx.ADMINISTRATOR)
        (row,) = simx.visible_batches(conn, simx.ADMINISTRATOR)
        assert (row["id"], row["user"], row["group"], row["engine"]) == (
            batch_id,
            "local",
            "local",
            "dummy",
        )
    finally:
        conn.close()
