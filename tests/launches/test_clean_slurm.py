"""`launches clean` on the real local SLURM, locally and over the real test sshd."""

from __future__ import annotations

from pathlib import Path

import pytest
from launch_helpers import cli, cli_json, enqueue_markers, queue_counts, wait_until
from test_launch_slurm import common, finished_launch, site_args, ssh_site  # noqa: F401


def _rewrite_log_dir(url: str, launch_id: str, log_dir: str) -> None:
    """Damage the launch row the way a bad edit or a hostile writer could."""
    from hpclaunch.queue import driver

    conn = driver.connect(url)
    try:
        with conn.transaction():
            conn.execute(
                "UPDATE launches SET log_dir = :d WHERE id = :id", {"d": log_dir, "id": launch_id}
            )
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["local", "ssh"])
def test_clean_removes_a_finished_launch_and_refuses_a_live_one(
    kind, request, slurm, pg_queue_url, tmp_path
):
    enqueue_markers(tmp_path, 2)
    args = [*site_args(kind, request), "--workers", "1", *common(tmp_path, pg_queue_url)]
    done = cli_json("submit", *args, "--set", "worker.mode=draining")
    wait_until(lambda: queue_counts()["completed"] == 2, timeout=240, what="2 completed")
    wait_until(lambda: finished_launch(done["launch_id"]), timeout=120, what="job left")
    live = cli_json("submit", *args, "--set", "extra_directives=[--begin=now+1hour]")
    folder = tmp_path / "work" / done["launch_id"]
    live_folder = tmp_path / "work" / live["launch_id"]
    assert folder.is_dir() and live_folder.is_dir()

    refused = cli("launches", "clean", live["launch_id"], check=False)
    assert refused.returncode == 2 and "still has live job(s)" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and live_folder.is_dir()

    # A row pointing outside the launch's own folder is refused, nothing deleted.
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    _rewrite_log_dir(pg_queue_url, done["launch_id"], str(precious))
    hostile = cli("launches", "clean", done["launch_id"], check=False)
    assert hostile.returncode == 2 and "not removing anything" in hostile.stderr
    assert (precious / "data").read_text() == "keep me"
    _rewrite_log_dir(pg_queue_url, done["launch_id"], str(tmp_path / "work" / ".."))
    assert cli("launches", "clean", done["launch_id"], check=False).returncode == 2
    assert (tmp_path / "work").is_dir()
    _rewrite_log_dir(pg_queue_url, done["launch_id"], str(folder))

    dry = cli("launches", "clean", done["launch_id"], "--dry-run").stdout
    assert f"would remove {folder} (" in dry and folder.is_dir()
    out = cli("launches", "clean", done["launch_id"]).stdout
    assert f"removed {folder} (" in out and "1 launch(es) cleaned" in out and "freed" in out
    assert not folder.exists() and live_folder.is_dir()
    again = cli("launches", "clean", done["launch_id"]).stdout
    assert "already gone" in again

    # --older-than: the live one is skipped with a reason, then cleaned once canceled.
    many = cli("launches", "clean", "--older-than", "0")
    assert "skipped" in many.stderr and live_folder.is_dir()
    cli("cancel", live["launch_id"])
    cli("launches", "clean", live["launch_id"])
    assert not live_folder.exists() and Path(tmp_path / "work").is_dir()


def test_clean_needs_a_launch_or_an_age(pg_queue_url):
    out = cli("launches", "clean", check=False)
    assert out.returncode == 2 and "give a LAUNCH or --older-than" in out.stderr
    missing = cli("launches", "clean", "nope", check=False)
    assert missing.returncode == 3 and "no launch 'nope'" in missing.stderr
