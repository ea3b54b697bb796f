"""A connection cut mid-command: ambiguous for non-idempotent commands,
retried for idempotent ones; a connection cut while idle is reopened.
Each test runs over both transports (paramiko and the system OpenSSH)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hpclaunch.transport import AmbiguousCommandError, Transport

pytestmark = pytest.mark.ssh


@pytest.fixture
def through(relay, ssh_options, make_transport):
    """A transport of this test's kind reaching the sshd through the cuttable relay."""

    def make() -> Transport:
        options = dict(ssh_options, port=relay.port, known_hosts=str(relay.known_hosts))
        return make_transport("127.0.0.1", options)

    return make


def _cut_when(relay, marker: Path, lines: int) -> threading.Thread:
    """Cut the relay once the remote command has appended ``lines`` lines to marker."""

    def watch():
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if marker.exists() and len(marker.read_text().splitlines()) >= lines:
                relay.cut()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_cut_after_a_non_idempotent_command_was_sent_is_ambiguous(relay, through, tmp_path):
    marker = tmp_path / "ran"
    command = f"echo run >> {marker}; sleep 3; echo done"
    with through() as t:
        t.connect()
        watcher = _cut_when(relay, marker, 1)
        with pytest.raises(AmbiguousCommandError) as info:
            t.run(command)
        watcher.join()
        assert info.value.command == command
        assert "may or may not have run" in str(info.value)
        assert t.connections_opened == 1  # not silently re-sent
    assert marker.read_text() == "run\n"  # it did run once: exactly why the caller must check


def test_cut_during_an_idempotent_command_is_retried(relay, through, tmp_path):
    marker = tmp_path / "ran"
    with through() as t:
        t.connect()
        watcher = _cut_when(relay, marker, 1)
        result = t.run(f"echo run >> {marker}; sleep 2; echo done", idempotent=True)
        watcher.join()
        assert result.stdout == "done\n"
        assert t.connections_opened == 2
    assert marker.read_text() == "run\nrun\n"


def test_cut_while_idle_reconnects_before_sending(relay, through, tmp_path):
    marker = tmp_path / "ran"
    with through() as t:
        t.connect()
        relay.cut()
        result = t.run(f"echo run >> {marker}; echo done")
        assert result.stdout == "done\n"
        assert t.connections_opened == 2
    assert marker.read_text() == "run\n"


def test_file_transfers_survive_a_cut(relay, through, tmp_path):
    target = tmp_path / "data.bin"
    with through() as t:
        t.write_file(str(target), b"first")
        relay.cut()
        t.write_file(str(target), b"second")
        assert t.read_file(str(target)) == b"second"
        assert t.connections_opened == 2
