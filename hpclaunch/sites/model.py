"""The resolved site profile as frozen, typed objects.

A :class:`Profile` is what the renderer and the submit code consume: every
value already checked, inheritance and overrides already applied, and a
record of where each value came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from types import MappingProxyType
from typing import Any

from hpclaunch.sites.schema import SCHEMA, walltime_parts, walltime_seconds
from hpclaunch.transport.options import SSHOptions  # the profile's ssh: section, as used

#: The ``ssh:`` keys a profile may set (the schema's), out of the transport's options.
PROFILE_SSH_KEYS: frozenset[str] = frozenset(SCHEMA.fields["ssh"].fields)


@dataclass(frozen=True)
class Resources:
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    walltime: str = "01:00:00"
    nodes: int = 1
    cpus: int = 1
    node_cpus: int | None = None  # node-exclusive sites: every job asks for the whole node's
    memory: str | None = None
    gpus: int = 0
    filesystems: str | None = None
    gpu_vendor: str | None = None  # nvidia | amd | intel: which visible-devices variable
    place: str | None = None

    @property
    def walltime_seconds(self) -> int:
        return walltime_seconds(self.walltime)

    @property
    def walltime_hms(self) -> str:
        """``HH:MM:SS`` with hours possibly above 24 (PBS, and the worker's --walltime)."""
        days, hours, minutes, seconds = walltime_parts(self.walltime)
        return f"{days * 24 + hours:02d}:{minutes:02d}:{seconds:02d}"

    @property
    def walltime_slurm(self) -> str:
        """SLURM ``--time``: ``D-HH:MM:SS`` from one day up, else ``HH:MM:SS``."""
        days, hours, minutes, seconds = walltime_parts(self.walltime)
        hms = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
        return f"{days}-{hms}" if days else hms


@dataclass(frozen=True)
class Arrays:
    enabled: bool = True
    max_array_size: int = 1001
    max_concurrent: int | None = None


@dataclass(frozen=True)
class WorkerProfile:
    """A profile's ``worker:`` section: how its jobs start workers (``worker.loop.WorkerOptions``
    is what one running worker was told)."""

    mode: str = "singleflow"
    nitems_max: int | None = None
    close_on_empty_queue: bool = True
    wait_timeout: int | None = None
    tags: tuple[str, ...] = ("default",)
    grace: int = 30
    workers_per_job: int = 1
    command: str = "hpclaunch"
    no_pickle: bool = False  # start workers with --no-pickle (no code from the database)
    # Engine handlers its workers get (``--engine-handler NAME=SPEC``), sorted by name.
    engines: tuple[tuple[str, str], ...] = ()
    db_wait: int | None = None  # --db-wait: how long a worker waits for the database
    gpus_per_worker: int | None = None  # each worker slot gets its own devices
    bind_cpus: bool = False  # pin each worker slot to its own cpus (taskset)


@dataclass(frozen=True)
class Limits:
    """The job limits a centre enforces at submit time (``limits:``); None: not stated."""

    max_queued_jobs: int | None = None
    max_running_jobs: int | None = None
    scope: str = "user"  # user | project (counted over the account's jobs)
    array_elements_count: bool = True  # each array element counts as one job


@dataclass(frozen=True)
class DatabaseAccess:
    """How workers find the queue: ``kind`` is env, file, url, local or server.

    ``server``: ``value`` is the server's URL; the token is read on the compute
    node from the variable ``token_env`` or the 0600 file ``token_file``, never
    written into the script; ``ca_bundle`` is the CAs to trust there."""

    kind: str
    value: str | None = None
    token_env: str | None = None
    token_file: str | None = None
    ca_bundle: str | None = None


@dataclass(frozen=True)
class RetryRule:
    reason: str
    action: str  # requeue | fail | requeue_on
    site: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    path: str  # the file that defined the profile (the most specific one)
    scheduler: str
    description: str = ""
    host: str | None = None
    ssh: SSHOptions = SSHOptions()
    workdir: str = "~/hpclaunch"
    template: str | None = None
    resources: Resources = Resources()
    extra_directives: tuple[str, ...] = ()
    setup: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    arrays: Arrays = Arrays()
    worker: WorkerProfile = WorkerProfile()
    limits: Limits = Limits()
    database: DatabaseAccess = DatabaseAccess("env", "HPCLAUNCH_DATABASE_URL")
    retry: tuple[RetryRule, ...] = ()
    required: tuple[str, ...] = ()  # keys that must be set before rendering
    chain: tuple[str, ...] = ()  # files, most specific first (the extends chain)
    provenance: MappingProxyType = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    def source_of(self, key: str) -> str:
        """Where the value at dotted ``key`` came from (``file:line``, an override, or default)."""
        return self.provenance.get(key, "default")

    def value_of(self, key: str) -> Any:
        """The value at dotted ``key`` (``resources.account``)."""
        value: Any = self
        for part in key.split("."):
            value = getattr(value, part)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for ``--json`` and for hashing a launch)."""
        data = {
            f.name: (asdict(v) if is_dataclass(v) and not isinstance(v, type) else v)
            for f in fields(self)
            if f.name != "provenance"
            for v in [getattr(self, f.name)]
        }
        # Only what a profile can say: the transport's other options stay its own.
        data["ssh"] = {k: v for k, v in data["ssh"].items() if k in PROFILE_SSH_KEYS}
        data["env"] = dict(self.env)
        data["retry"] = {
            r.reason: (r.action if r.site is None else {"requeue_on": r.site}) for r in self.retry
        }
        data["database"] = {
            self.database.kind: self.database.value if self.database.kind != "local" else True
        }
        for key in ("token_env", "token_file", "ca_bundle"):
            if getattr(self.database, key) is not None:
                data["database"][key] = getattr(self.database, key)
        for key in ("extra_directives", "setup", "chain", "required"):
            data[key] = list(data[key])
        data["worker"]["tags"] = list(self.worker.tags)
        # Only when set: a launch's ID hashes this, and profiles without engines keep theirs.
        engines = data["worker"].pop("engines")
        if engines:
            data["worker"]["engines"] = dict(engines)
        return data
