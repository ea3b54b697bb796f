"""Code runs only from where it should: pickles, profile templates, project profiles."""

from __future__ import annotations

import json
import pickle

import pytest
from hardening_helpers import one_error_line, run_main

from hpclaunch.errors import UserError


def _set_pickled_result(url: str, task_id: int, blob: bytes) -> None:
    """What a writer with database access could do: plant a pickle in a call task."""
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split(":///", 1)[1]) as conn:
            conn.execute("UPDATE tasks SET result_pickled = ? WHERE id = ?", (blob, task_id))
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE tasks SET result_pickled = %s WHERE id = %s", (blob, task_id))


def test_a_call_tasks_pickled_result_is_never_unpickled(queue_url, tmp_path):
    from hpclaunch import Queue

    q = Queue(queue_url)
    handle = q.enqueue_call("math:floor", [2.5])
    assert run_main("worker", "--singleflow").code == 0
    assert handle.result() == 2
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    _set_pickled_result(queue_url, handle.id, pickle.dumps(Evil()))
    with pytest.raises(UserError, match="not unpickling"):
        handle.result()
    assert not marker.exists()


def test_a_client_can_refuse_to_unpickle_at_all(queue_url):
    from hpclaunch import Queue

    q = Queue(queue_url)
    handle = q.run_cloud(sum, [1, 2])
    assert run_main("worker", "--singleflow").code == 0
    with pytest.raises(UserError, match="unpickle=False"):
        handle.result(unpickle=False)
    assert handle.result() == 3


def test_profiles_can_start_workers_with_no_pickle(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    site = tmp_path / "s.yaml"
    site.write_text("extends: tests-slurm\nworker:\n  no_pickle: true\n")
    ran = run_main("render", "--site", str(site), "-n", "1")
    assert ran.code == 0, ran
    assert "--no-pickle" in ran.out
    plain = run_main("render", "--site", "tests-slurm", "-n", "1")
    assert "--no-pickle" not in plain.out
    ran = run_main("sites", "show", "tests-slurm", "--set", "worker.no_pickle=maybe")
    assert "no_pickle" in one_error_line(ran)


def test_a_profile_template_runs_in_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    marker = tmp_path / "pwned"
    (tmp_path / "evil.sh.j2").write_text(
        "#!/bin/bash\n{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}\n"
    )
    site = tmp_path / "s.yaml"
    site.write_text("extends: tests-slurm\ntemplate: ./evil.sh.j2\n")
    line = one_error_line(run_main("render", "--site", str(site), "-n", "1"))
    assert "template" in line
    assert not marker.exists()


def test_a_project_profile_shadowing_a_shipped_one_is_visible(tmp_path, monkeypatch):
    monkeypatch.setenv("HPCLAUNCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "site-configs").mkdir()
    (tmp_path / "site-configs" / "tests-slurm.yaml").write_text(
        "scheduler: slurm\nresources: {partition: evil}\n"
    )
    for argv in (
        ["render", "--site", "tests-slurm", "-n", "1"],
        ["submit", "--site", "tests-slurm", "-n", "1", "--dry-run"],
        ["sites", "show", "tests-slurm"],
    ):
        ran = run_main(*argv)
        assert ran.code == 0, ran
        assert "shadows" in ran.err and "site-configs/tests-slurm.yaml" in ran.err
    shown = json.loads(run_main("sites", "show", "tests-slurm", "--json").out)
    assert "shadows" in shown["shadowing"]
    other = run_main("render", "--site", "local", "-n", "1")
    assert "shadows" not in other.err
    # An identical copy (hpclaunch's own source tree, next to its installed wheel)
    # changes nothing, so it is not worth a warning on every command.
    from hpclaunch.paths import shipped_dir

    shipped = shipped_dir("site-configs") / "local.yaml"
    (tmp_path / "site-configs" / "local.yaml").write_bytes(shipped.read_bytes())
    assert "shadows" not in run_main("render", "--site", "local", "-n", "1").err
