"""Property: whatever bytes or option values a user gives, hpclaunch either does it,
or prints one line on stderr, exits non-zero and leaves the queue as it was.
Never a traceback. In-process through click's runner, so it stays fast; bounded
example counts so it runs in CI on every push."""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from hardening_helpers import Ran, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# HPCLAUNCH_PROPERTY_EXAMPLES raises the bound for a long local hunt.
SCALE = int(os.environ.get("HPCLAUNCH_PROPERTY_EXAMPLES", "1"))
SETTINGS = settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=os.environ.get("HPCLAUNCH_PROPERTY_RANDOM") is None,
)

TRICKY = [
    "",
    " ",
    "inf",
    "-inf",
    "nan",
    "1e12",
    "-1",
    "0",
    str(2**31),
    str(2**63),
    str(2**64),
    "#x",
    "a/b",
    "--wrap=x",
    "x" * 70,
    "{run.nope}",
    "\u2028",
    "\x1b[31mred",
    "é",
    "postgresql://u:p@h/db",
    "sqlite://relative.db",
    "[[[[",
    "*a",
    "&a [1]",
    "{a: *b}",
]
VALUES = st.one_of(
    st.sampled_from(TRICKY),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    ),
    st.integers().map(str),
    st.floats().map(repr),
)


class Env:
    """A private HPCLAUNCH_HOME with a migrated SQLite queue, shared by the examples."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hpcl-prop-"))
        self.db = self.dir / "queue.sqlite3"
        self.vars = {
            "HPCLAUNCH_HOME": str(self.dir / "home"),
            "HPCLAUNCH_DATABASE_URL": f"sqlite:///{self.db}",
            "HPCLAUNCH_DATABASE_FILE": None,
            "HPCLAUNCH_LOG_DIR": str(self.dir / "logs"),
        }
        ran = self.run("db", "upgrade")
        assert ran.code == 0, ran

    def run(self, *argv: str) -> Ran:
        return run_main(*argv, env=self.vars)

    def snapshot(self) -> tuple:
        with sqlite3.connect(self.db) as conn:
            return tuple(
                conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608
                for table in ("tasks", "batches", "workers", "launches")
            )


_ENV: Env | None = None


def env() -> Env:
    global _ENV
    if _ENV is None:
        _ENV = Env()
    return _ENV


def check(ran: Ran, before: tuple, after: tuple) -> None:
    """Succeeded, or failed the way a user can act on: one line, nothing stored."""
    assert "Traceback" not in ran.text, ran
    if ran.code == 0:
        return
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert len(lines) == 1, ran
    assert lines[0].startswith("error: "), ran
    assert before == after, ran


@SETTINGS
@given(data=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_any_batch_file_bytes(data):
    e = env()
    batch = e.dir / "batch.yaml"
    batch.write_bytes(data)
    before = e.snapshot()
    ran = e.run("enqueue", "-f", str(batch))
    check(ran, before, e.snapshot())


BATCH_LINES = st.sampled_from(
    [
        "name: n\n",
        "command: 'echo {x} {run:03d}'\n",
        "command: [echo, '{x!raw}']\n",
        "call: math:floor\n",
        "params: {x: [1, 'a b', '$(id)']}\n",
        "n_runs: 3\n",
        "timeout: .inf\n",
        "priority: 99999999999\n",
        "tags: [gpu, 'a/b']\n",
        "a: &a [1, 2]\n",
        "b: *a\n",
        "<<: {name: m}\n",
        "name: n\n",
        "env: {X: 1}\n",
        "max_attempts: 0\n",
    ]
)


@SETTINGS
@given(lines=st.lists(BATCH_LINES, max_size=8), junk=VALUES)
def test_any_combination_of_batch_keys(lines, junk):
    e = env()
    batch = e.dir / "batch2.yaml"
    batch.write_text(
        "".join(lines) + (f"command: {junk!r}\n" if "command" not in "".join(lines) else "")
    )
    before = e.snapshot()
    check(e.run("enqueue", "-f", str(batch)), before, e.snapshot())


@SETTINGS
@given(data=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_any_profile_bytes(data):
    e = env()
    site = e.dir / "site.yaml"
    site.write_bytes(data)
    before = e.snapshot()
    check(e.run("render", "--site", str(site), "-n", "2"), before, e.snapshot())
    check(e.run("sites", "show", str(site), "--json"), before, e.snapshot())


COMMANDS = [
    ("enqueue", "--priority", "{}", "--", "true"),
    ("enqueue", "--max-attempts", "{}", "--", "true"),
    ("enqueue", "--timeout", "{}", "--", "true"),
    ("enqueue", "--expected-runtime", "{}", "--", "true"),
    ("enqueue", "-t", "{}", "--", "true"),
    ("enqueue", "--name", "{}", "--", "true"),
    ("enqueue", "--env", "{}", "--", "true"),
    ("enqueue", "--call", "{}"),
    ("enqueue", "--call", "math:floor", "--args", "{}"),
    ("enqueue", "--call", "math:floor", "--kwargs", "{}"),
    ("enqueue", "{}"),
    ("tasks", "--tag", "{}"),
    ("tasks", "--batch", "{}"),
    ("tasks", "--limit", "{}"),
    ("tasks", "--status", "{}"),
    ("tasks", "show", "{}"),
    ("tasks", "why", "{}"),
    ("tasks", "cancel", "{}"),
    ("tasks", "retry", "{}"),
    ("batches", "--json"),
    ("worker", "--singleflow", "--lease", "{}", "--wait-timeout", "0", "-t", "nomatch"),
    ("worker", "--singleflow", "--grace", "{}", "--wait-timeout", "0", "-t", "nomatch"),
    ("worker", "--singleflow", "--deadline", "{}", "-t", "nomatch"),
    ("worker", "--singleflow", "--walltime", "{}", "-t", "nomatch"),
    ("render", "--site", "tests-slurm", "-n", "{}"),
    ("render", "--site", "tests-slurm", "-n", "2", "-t", "{}"),
    ("render", "--site", "tests-slurm", "-n", "2", "--set", "{}"),
    ("render", "--site", "tests-slurm", "-n", "2", "--walltime", "{}"),
    ("render", "--site", "tests-slurm", "-n", "2", "--mem", "{}"),
    ("render", "--site", "tests-slurm", "-n", "2", "--set", "resources.place={}"),
    ("render", "--site", "{}", "-n", "1"),
    ("sites", "show", "tests-slurm", "--set", "worker.{}=1"),
    ("--database", "{}", "tasks"),
    ("status", "{}"),
    ("logs", "{}"),
]


@settings(SETTINGS, max_examples=150 * SCALE)
@given(command=st.sampled_from(COMMANDS), value=VALUES)
def test_any_option_value(command, value):
    e = env()
    argv = [part.replace("{}", value) if "{}" in part else part for part in command]
    before = e.snapshot()
    ran = e.run(*argv)
    after = e.snapshot()
    if ran.code == 0 and command[0] in ("enqueue",):
        return  # a valid value: the task was stored, as asked
    if command[0] == "worker" and ran.code == 0:
        return  # registered, found nothing with its tag, left
    check(ran, before, after)


SQLITE_COMMANDS = [
    ("tasks",),
    ("tasks", "--json"),
    ("stats", "--json"),
    ("batches",),
    ("db", "current"),
    ("db", "upgrade"),
    ("enqueue", "--", "true"),
    ("worker", "--singleflow", "--wait-timeout", "0", "--db-wait", "0"),
]


@SETTINGS
@given(
    data=st.binary(min_size=1, max_size=300) | st.just(b"SQLite format 3\x00" + b"\x00" * 200),
    command=st.sampled_from(SQLITE_COMMANDS),
)
def test_any_bytes_as_the_sqlite_file(data, command):
    """A queue file that is not a database (or a damaged one): one line, never a traceback."""
    e = env()
    # A fresh file each time: a connection an earlier example left open must not
    # make this one wait for SQLite's lock.
    path = Path(tempfile.mkdtemp(dir=e.dir)) / "damaged.sqlite3"
    path.write_bytes(data)
    ran = run_main(
        "--database", f"sqlite:///{path}", *command, env={**e.vars, "HPCLAUNCH_DATABASE_URL": None}
    )
    assert "Traceback" not in ran.text, ran
    if ran.code != 0:
        lines = [line for line in ran.err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), ran
