"""LocalTransport: commands and files on this machine."""

from __future__ import annotations

import os
import stat

import pytest

from hpclaunch.transport import CommandTimeout, LocalTransport, open_transport


def test_open_transport_without_host_is_local():
    assert isinstance(open_transport(None), LocalTransport)
    assert isinstance(open_transport("localhost"), LocalTransport)


def test_run_reports_stdout_stderr_and_exit_code():
    with LocalTransport() as t:
        result = t.run(["sh", "-c", 'echo "out $1"; echo err >&2; exit 3', "sh", "a b"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out a b\n", "err\n")
    assert not result.ok


def test_argv_is_not_interpreted_by_a_shell_but_a_string_is(tmp_path):
    t = LocalTransport()
    assert t.run(["echo", "$HOME", "*"]).stdout == "$HOME *\n"
    assert t.run("echo $((1+2))").stdout == "3\n"


def test_input_reaches_the_command():
    assert LocalTransport().run(["cat"], input="piped\n").stdout == "piped\n"


def test_missing_program_is_exit_127():
    result = LocalTransport().run(["hpclaunch-no-such-program"])
    assert result.returncode == 127
    assert "not found" in result.stderr


def test_command_timeout_raises():
    with pytest.raises(CommandTimeout, match="did not finish within 0.2 s"):
        LocalTransport().run(["sleep", "5"], timeout=0.2)


def test_file_round_trip_is_atomic_and_applies_the_mode(tmp_path):
    t = LocalTransport()
    folder = tmp_path / "a" / "b"
    t.makedirs(str(folder))
    t.makedirs(str(folder))  # already there: fine
    target = folder / "script.sh"
    t.write_file(str(target), b"#!/bin/sh\necho 1\n", mode=0o755)
    t.write_file(str(target), b"#!/bin/sh\necho 2\n", mode=0o700)
    assert t.read_file(str(target)) == b"#!/bin/sh\necho 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert os.listdir(folder) == ["script.sh"]  # no temporary file left behind


def test_read_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        LocalTransport().read_file(str(tmp_path / "nope"))
