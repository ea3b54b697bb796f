"""Profiles whose workers reach the queue through ``hpclaunch serve``: the script
exports the server and where the node finds its token, never the token itself."""

from __future__ import annotations

import os
import subprocess

import pytest
from render_helpers import plan

from hpclaunch.errors import UserError

SERVER = "database.server=https://queue.example.org:8097"


def test_token_env_is_read_on_the_node(home, tmp_path):
    p = plan(sets=[SERVER, "database.token_env=LAB_QUEUE_TOKEN", f"workdir={tmp_path}"])
    script = p.chunks[0].script
    assert "export HPCLAUNCH_SERVER=https://queue.example.org:8097" in script
    assert 'export HPCLAUNCH_TOKEN="${LAB_QUEUE_TOKEN:-}"' in script
    assert "HPCLAUNCH_DATABASE" not in script and "--export" not in script
    # Run it without the variable: it stops at once, with one line saying why.
    job = tmp_path / "job.sh"
    job.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "LAB_QUEUE_TOKEN"}
    result = subprocess.run(["bash", str(job)], env=env, capture_output=True, text=True)
    assert result.returncode == 78
    assert result.stderr.strip() == (
        "hpclaunch: LAB_QUEUE_TOKEN is not set in the job environment; "
        "workers cannot authenticate to the queue server"
    )


def test_token_file_and_ca_bundle_are_paths_on_the_cluster(home, tmp_path):
    worker = tmp_path / "w.sh"
    worker.write_text("#!/bin/bash\nenv | grep '^HPCLAUNCH_' | sort\n")
    worker.chmod(0o755)
    sets = [
        "database.server=http://127.0.0.1:8097",
        "database.token_file=~/.hpclaunch/token",
        "database.ca_bundle=/etc/lab/ca.pem",
        f"worker.command={worker}",
        f"workdir={tmp_path}",
    ]
    p = plan("local", sets=sets)
    script = p.chunks[0].script
    assert 'export HPCLAUNCH_TOKEN_FILE="$HOME"/.hpclaunch/token' in script
    assert "export HPCLAUNCH_CA_BUNDLE=/etc/lab/ca.pem" in script
    job = tmp_path / "run.sh"
    job.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCLAUNCH_")}
    subprocess.run(["bash", str(job)], env=env, check=True, capture_output=True, timeout=60)
    seen = (tmp_path / "L1" / f"{p.chunks[0].job_name}.workers.out").read_text()
    assert "HPCLAUNCH_SERVER=http://127.0.0.1:8097" in seen
    assert f"HPCLAUNCH_TOKEN_FILE={os.path.expanduser('~')}/.hpclaunch/token" in seen
    assert "HPCLAUNCH_TOKEN=" not in seen


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ([SERVER], "a server needs exactly one of token_env"),
        (
            [SERVER, "database.token_env=T", "database.token_file=/t"],
            "a server needs exactly one of token_env",
        ),
        (["database.env=X", "database.token_env=T"], "go with server: URL"),
        (["database.server=http://queue.example.org", "database.token_env=T"], "plain http://"),
        (["database.server=https://u:pw@q.example.org", "database.token_env=T"], "credentials"),
        (["database.server=https://q.example.org/$(id)", "database.token_env=T"], "characters"),
        (["database.server=ftp://q", "database.token_env=T"], "not a server URL"),
        ([SERVER, "database.token_env=1BAD"], "token_env"),
    ],
)
def test_bad_server_access_is_one_clear_error(home, sets, message):
    with pytest.raises(UserError, match=message):
        plan(sets=sets)
