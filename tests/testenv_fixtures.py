"""Fixtures for the real parts of the test environment (scripts/testenv.sh).

Each fixture skips its test when its part is missing, unless
``HPCLAUNCH_TESTENV_REQUIRED=1`` (set by scripts/test.sh and so by CI), in which
case it fails: CI never silently skips. When the ``SLURM_CONF`` /
``HPCLAUNCH_TEST_SSH_*`` variables are unset, the values are read from
``$HPCLAUNCH_TESTENV_DIR/env.sh`` so a plain ``pytest`` works after
``scripts/testenv.sh up``.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ADMIN_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def testenv_required() -> bool:
    return os.environ.get("HPCLAUNCH_TESTENV_REQUIRED") == "1"


def missing(reason: str) -> None:
    """Skip (or, when the environment is required, fail) for a missing part."""
    if testenv_required():
        pytest.fail(f"test environment incomplete: {reason}", pytrace=False)
    pytest.skip(f"{reason} (run scripts/testenv.sh up)")


def testenv_dir() -> Path:
    return Path(os.environ.get("HPCLAUNCH_TESTENV_DIR", "/tmp/hpclaunch-testenv"))


def _env_file_values() -> dict[str, str]:
    path = testenv_dir() / "env.sh"
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export ") or "=" not in line:
            continue
        key, _, raw = line[len("export ") :].partition("=")
        parts = shlex.split(raw)
        values[key.strip()] = parts[0] if parts else ""
    return values


def testenv_value(name: str) -> str | None:
    """A test-environment variable from the environment, else from env.sh."""
    value = os.environ.get(name)
    if value:
        return value
    return _env_file_values().get(name) or None


# ---------------------------------------------------------------- PostgreSQL


def _pg_connect(url: str):
    import psycopg

    return psycopg.connect(url, connect_timeout=5, autocommit=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The URL of a PostgreSQL database for this test run.

    ``HPCLAUNCH_TEST_PG_URL`` when set (scripts/test.sh); otherwise a throwaway
    database created on 127.0.0.1:5432 and dropped at the end of the session.
    """
    url = os.environ.get("HPCLAUNCH_TEST_PG_URL")
    if url:
        try:
            _pg_connect(url).close()
        except Exception as exc:  # noqa: BLE001 - any failure means "missing"
            missing(f"cannot connect to HPCLAUNCH_TEST_PG_URL: {exc}")
        yield url
        return
    try:
        admin = _pg_connect(ADMIN_PG_URL)
    except Exception as exc:  # noqa: BLE001
        missing(f"no PostgreSQL on 127.0.0.1:5432: {exc}")
    name = f"hpclaunch_pytest_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with _pg_connect(ADMIN_PG_URL) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------- SLURM


@dataclass(frozen=True)
class SlurmCluster:
    """The local one-node SLURM cluster."""

    conf: Path
    partition: str
    env: dict[str, str] = field(repr=False)

    def run(self, argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster (checked)."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, check=True
        )


@pytest.fixture(scope="session")
def slurm() -> SlurmCluster:
    conf = testenv_value("SLURM_CONF")
    if not conf or not Path(conf).is_file():
        missing("no SLURM cluster: SLURM_CONF is unset or names no file")
    partition = testenv_value("HPCLAUNCH_TEST_SLURM_PARTITION") or "debug"
    env = dict(os.environ, SLURM_CONF=conf)
    try:
        subprocess.run(
            ["sinfo", "-h", "-p", partition], env=env, capture_output=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"the SLURM cluster at {conf} does not answer: {exc}")
    return SlurmCluster(conf=Path(conf), partition=partition, env=env)


# ---------------------------------------------------------------- Grid Engine


@dataclass(frozen=True)
class GridEngineCell:
    """The local one-node Grid Engine cell (SGE_ROOT/SGE_CELL from env.sh)."""

    root: Path
    cell: str
    env: dict[str, str] = field(repr=False)

    def run(self, argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a Grid Engine client command against this cell (not checked)."""
        return subprocess.run(
            list(argv), env=self.env, capture_output=True, text=True, timeout=timeout
        )


@pytest.fixture(scope="session")
def sge() -> GridEngineCell:
    root = testenv_value("SGE_ROOT")
    cell = testenv_value("SGE_CELL") or "default"
    if not root or not (Path(root) / cell / "common" / "act_qmaster").is_file():
        missing("no Grid Engine cell: SGE_ROOT is unset or has no act_qmaster")
    env = dict(os.environ, SGE_ROOT=str(root), SGE_CELL=cell)
    try:
        subprocess.run(["qstat", "-xml"], env=env, capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"the Grid Engine cell at {root} does not answer: {exc}")
    return GridEngineCell(root=Path(str(root)), cell=cell, env=env)


# ----------------------------------------------------------------------- sshd


@dataclass(frozen=True)
class SSHServer:
    """The local sshd and the client key / known_hosts generated for it."""

    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path

    def config_options(self, **extra: str | Sequence[str]) -> dict[str, str | Sequence[str]]:
        """ssh_config options that reach this server (for write_ssh_config)."""
        options: dict[str, str | Sequence[str]] = {
            "HostName": self.host,
            "Port": str(self.port),
            "User": self.user,
            "IdentityFile": str(self.key),
            "IdentitiesOnly": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
        }
        options.update(extra)
        return options


@pytest.fixture(scope="session")
def sshd() -> SSHServer:
    names = ("HOST", "PORT", "USER", "KEY", "KNOWN_HOSTS")
    values = {n: testenv_value(f"HPCLAUNCH_TEST_SSH_{n}") for n in names}
    values["KNOWN_HOSTS"] = testenv_value("HPCLAUNCH_TEST_KNOWN_HOSTS")
    absent = [n for n, v in values.items() if not v]
    if absent:
        missing(f"no test sshd: HPCLAUNCH_TEST_SSH_* / _KNOWN_HOSTS unset ({', '.join(absent)})")
    server = SSHServer(
        host=values["HOST"],
        port=int(values["PORT"]),
        user=values["USER"],
        key=Path(values["KEY"]),
        known_hosts=Path(values["KNOWN_HOSTS"]),
    )
    try:
        socket.create_connection((server.host, server.port), timeout=5).close()
    except OSError as exc:
        missing(f"the test sshd at {server.host}:{server.port} does not answer: {exc}")
    return server


def write_ssh_config(path: Path, hosts: Mapping[str, Mapping[str, str | Sequence[str]]]) -> Path:
    """Write an ssh_config file: ``{"alias": {"HostName": ..., ...}}``.

    A list value repeats the option (e.g. several ``IdentityFile`` lines).
    """
    lines: list[str] = []
    for pattern, options in hosts.items():
        lines.append(f"Host {pattern}")
        for key, value in options.items():
            for item in [value] if isinstance(value, str) else value:
                lines.append(f"    {key} {item}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path
