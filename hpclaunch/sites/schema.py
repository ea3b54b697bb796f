"""The profile schema: which keys exist, what each accepts, and its default.

Each field turns a raw YAML (or command-line) value into a checked Python
value, or raises :class:`Invalid` with a message saying what was expected.
The loader adds the file, line and key to that message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hpclaunch.schedulers import registry
from hpclaunch.sites import checks
from hpclaunch.sites.checks import show


class Invalid(Exception):
    """A bad value; the message says what was expected (no location yet)."""


SCHEDULERS = registry.NAMES  # the registry is the one list of schedulers
RETRY_REASONS = (
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "NODE_FAIL",
    "BOOT_FAIL",
    "CANCELLED",
    "FAILED",
)
RETRY_ACTIONS = ("requeue", "fail")


# --------------------------------------------------------------------------- leaf fields
@dataclass(frozen=True)
class Field:
    """A leaf: ``check`` converts a raw value or raises Invalid."""

    check: Callable[[Any], Any]
    default: Any = None
    nullable: bool = True
    help: str = ""

    def convert(self, raw: Any) -> Any:
        if raw is None:
            if self.nullable:
                return None
            raise Invalid(f"must not be empty; expected {self.help}")
        return self.check(raw)


@dataclass(frozen=True)
class Section:
    """A nested mapping of known keys; deep-merged by ``extends``."""

    fields: dict[str, Any]
    atomic: bool = False  # replaced as a whole by a child profile instead of merged
    # Keys of an atomic section that --set may give one by one (a server and its token).
    together: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MapOf:
    """A mapping with free keys (``env``, ``retry``); merged key by key."""

    key: Callable[[str], str]
    value: Callable[[Any], Any]
    default: dict = field(default_factory=dict)


def _text(raw: Any) -> str:
    if isinstance(raw, bool):
        raise Invalid(f"expected text, got {str(raw).lower()}; put it in quotes")
    if isinstance(raw, int | float):
        return str(raw)
    if not isinstance(raw, str):
        raise Invalid(f"expected text, got a {_kind(raw)}")
    bad = checks.control_char(raw)
    if bad:
        raise Invalid(f"contains the control character {bad} (line breaks are not allowed)")
    return raw


def _kind(raw: Any) -> str:
    kinds: dict[type, str] = {dict: "mapping", list: "list"}
    return kinds.get(type(raw), type(raw).__name__)


def _regex(regex: re.Pattern, what: str) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        text = _text(raw)
        if not regex.fullmatch(text):
            raise Invalid(f"{show(text)} is not allowed; use {what}")
        return text

    return check


def _one_line(limit: int) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        text = _text(raw)
        if len(text) > limit:
            raise Invalid(f"is {len(text)} characters long; keep it under {limit}")
        return text

    return check


def _int(minimum: int, maximum: int | None = None) -> Callable[[Any], int]:
    def check(raw: Any) -> int:
        if isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9]+", raw.strip(" ")):
            raw = int(raw.strip(" "))
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise Invalid(f"expected a whole number >= {minimum}, got {show(raw)}")
        if raw < minimum or (maximum is not None and raw > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise Invalid(f"expected a whole number >= {minimum}{upper}, got {raw}")
        return raw

    return check


def _bool(raw: Any) -> bool:
    if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "on", "false", "no", "off"):
        return raw.strip().lower() in ("true", "yes", "on")
    if not isinstance(raw, bool):
        raise Invalid(f"expected true or false, got {show(raw)}")
    return raw


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(raw: Any) -> str:
        text = _text(raw)
        if text not in options:
            import difflib

            near = difflib.get_close_matches(text, options, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise Invalid(f"{show(text)} is not one of {', '.join(options)}{hint}")
        return text

    return check


_WALLTIME = re.compile(r"(?:(\d{1,3})-)?(\d{1,4}):([0-5]\d):([0-5]\d)")


def walltime_seconds(raw: Any) -> int:
    """``[D-]HH:MM:SS`` as seconds (> 0)."""
    text = _text(raw).strip()
    match = _WALLTIME.fullmatch(text)
    if not match:
        raise Invalid(
            f"{show(text)} is not a walltime; write HH:MM:SS or D-HH:MM:SS, "
            "e.g. 04:00:00 or 2-00:00:00"
        )
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    if match.group(1) is not None and hours >= 24:
        raise Invalid(f"{show(text)}: with days, hours must be below 24")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise Invalid("walltime must be longer than zero")
    return total


def _walltime(raw: Any) -> str:
    walltime_seconds(raw)
    return _text(raw).strip()


_MEMORY = re.compile(r"(\d{1,9})\s*([KMGTkmgt])[Bb]?")


def _memory(raw: Any) -> str:
    text = _text(raw).strip()
    match = _MEMORY.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise Invalid(
            f"{show(text)} is not a memory size; write a whole number > 0 and a "
            "unit K, M, G or T, e.g. 4G or 500M"
        )
    return f"{int(match.group(1))}{match.group(2).upper()}"


def _command(raw: Any) -> str:
    text = _text(raw).strip()
    words = text.split(" ")
    if not text or not all(checks.PATH.fullmatch(w) and w for w in words):
        raise Invalid(
            f"{show(text)} is not a plain command; use words of "
            f"{checks.SHELL_WORD_CHARS} (a leading ~/ is fine), separated by spaces"
        )
    return text


def _directive(raw: Any) -> str:
    text = _text(raw).strip()
    if not text.startswith("-"):
        raise Invalid(
            f"{show(text)} is not a scheduler option; write it as on the command "
            "line, e.g. --mail-type=END (SLURM) or -m abe (PBS)"
        )
    return text


def _setup_line(raw: Any) -> str:
    if isinstance(raw, bool | int | float):
        raise Invalid(f"expected a shell line, got {show(raw)}")
    if not isinstance(raw, str):
        raise Invalid(f"expected a shell line, got a {_kind(raw)}")
    bad = checks.control_char(raw, allow_tab=True)
    if bad:
        raise Invalid(f"contains the control character {bad}; write one shell line per list item")
    return raw


def _url(raw: Any) -> str:
    from hpclaunch.queue.urls import has_password

    text = _text(raw).strip()
    if not text or any(c.isspace() for c in text) or "://" not in text:
        raise Invalid(f"{show(text)} is not a database URL like postgresql://user@host/db")
    try:
        urlsplit(text).port  # noqa: B018 - raises on a malformed host:port
    except ValueError as exc:
        raise Invalid(f"is not a valid URL ({exc})") from None
    if has_password(text):
        raise Invalid(
            "carries a password (user:password@, ?password=, sslpassword= or passfile=); "
            "a password must never be written into a batch "
            "script: use 'database: {env: VAR}' or 'database: {file: PATH}'"
        )
    return text


def _server_url(raw: Any) -> str:
    """An https:// server URL (http:// only to this machine): no credentials, no shell."""
    text = _text(raw).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises on a malformed host:port
    except ValueError as exc:
        raise Invalid(f"is not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid(f"{show(text)} is not a server URL like https://queue.example.org:8097")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise Invalid(
            "carries credentials, a query or a fragment; the token comes from token_env "
            "or token_file, read on the compute node"
        )
    if not re.fullmatch(r"[A-Za-z0-9._~:/\[\]%-]+", text):
        raise Invalid(f"{show(text)} has characters a server URL does not need")
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not loopback:
        raise Invalid("uses plain http:// to another host; use https://")
    return text


_SECRETS = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY", re.IGNORECASE)


def _env_name(raw: str) -> str:
    if not checks.ENV_NAME.fullmatch(raw):
        raise Invalid(
            f"{show(raw)} is not a variable name; use letters, digits and _, "
            "not starting with a digit"
        )
    if raw in ("HPCLAUNCH_DATABASE_URL", "HPCLAUNCH_DATABASE_FILE", "HPCLAUNCH_LAUNCH_ID"):
        raise Invalid(f"{raw} is set by hpclaunch; use the 'database:' section instead")
    if _SECRETS.search(raw):
        raise Invalid(
            f"{raw} looks like a secret; secrets must not be written into batch "
            "scripts: keep them in the cluster environment"
        )
    return raw


def _engine_name(raw: str) -> str:
    from hpclaunch import validate
    from hpclaunch.errors import UserError

    try:
        return validate.check_engine(raw)
    except UserError as exc:
        raise Invalid(str(exc)) from None


def _engine_handler(raw: Any) -> str:
    """``pkg.module:function``, or a one-line command template (shell-quoted in scripts)."""
    from hpclaunch.errors import UserError
    from hpclaunch.tasks.engines import handler

    text = _env_value(raw).strip()
    try:
        handler("engine", text, "profile")
    except UserError as exc:
        raise Invalid(str(exc).removeprefix("engine 'engine': ")) from None
    return text


def _env_value(raw: Any) -> str:
    text = _text(raw)
    if len(text) > 4096:
        raise Invalid("is longer than 4096 characters")
    from hpclaunch.queue.urls import has_password

    if has_password(text):
        raise Invalid(
            "carries a password (user:password@, password=, sslpassword= or passfile=); "
            "passwords must not be written into batch scripts"
        )
    return text


def _retry_reason(raw: str) -> str:
    return _choice(RETRY_REASONS)(raw)


def _retry_action(raw: Any) -> Any:
    from hpclaunch.sites.yamlsrc import Entry

    if isinstance(raw, dict):
        keys = set(raw)
        if keys != {"requeue_on"}:
            raise Invalid(
                "expected requeue, fail, or {requeue_on: OTHER_SITE}, got a mapping "
                f"with {', '.join(sorted(keys)) or 'no keys'}"
            )
        site = raw["requeue_on"]
        site = site.value if isinstance(site, Entry) else site
        return {"requeue_on": _regex(checks.NAME, "a profile name")(site)}
    return _choice(RETRY_ACTIONS)(raw)


def _list_of(item: Callable[[Any], Any], what: str) -> Callable[[Any], tuple]:
    def check(raw: Any) -> tuple:
        if isinstance(raw, str | int) and not isinstance(raw, bool):
            raw = [raw]  # a single item is a one-item list
        if not isinstance(raw, list):
            raise Invalid(f"expected a list of {what}, got {show(raw)}")
        out = []
        for number, value in enumerate(raw, 1):
            try:
                out.append(item(value))
            except Invalid as exc:
                raise Invalid(f"item {number}: {exc}") from None
        return tuple(out)

    return check


def _required_key(raw: Any) -> str:
    text = _text(raw)
    node = lookup(tuple(text.split(".")))
    if not isinstance(node, Field) or text.split(".")[0] in ("required", "extends"):
        keys = [".".join(p) for p in _leaf_keys(SCHEMA)]
        import difflib

        near = difflib.get_close_matches(text, keys, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise Invalid(f"{show(text)} is not a profile key{hint}")
    return text


def _leaf_keys(section: Section, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for key, sub in section.fields.items():
        if isinstance(sub, Section):
            out += _leaf_keys(sub, prefix + (key,))
        elif isinstance(sub, Field):
            out.append(prefix + (key,))
    return out


def _tag(raw: Any) -> str:
    from hpclaunch import validate
    from hpclaunch.errors import UserError

    try:
        return validate.check_tag(_text(raw))
    except UserError as exc:
        raise Invalid(str(exc)) from None


def _worker_tags(raw: Any) -> tuple:
    """The one tag rule (``hpclaunch.validate``): what a worker would accept."""
    from hpclaunch import validate

    tags = _list_of(_tag, "tags")(raw)
    if len(set(tags)) > validate.MAX_WORKER_TAGS:
        raise Invalid(f"a worker takes at most {validate.MAX_WORKER_TAGS} tags, got {len(tags)}")
    return tags


# --------------------------------------------------------------------------- the schema
GPU_VENDORS = ("nvidia", "amd", "intel")
LIMIT_SCOPES = ("user", "project")
WORD = _regex(checks.SHELL_WORD, checks.SHELL_WORD_CHARS)
PATH = _regex(checks.PATH, f"a path of {checks.SHELL_WORD_CHARS} (a leading ~/ is fine)")
NAME = _regex(checks.NAME, "a profile name (letters, digits, _ . -)")

SCHEMA = Section(
    {
        "description": Field(_one_line(200), default="", help="one line of text"),
        "extends": Field(NAME),
        "scheduler": Field(
            _choice(SCHEDULERS), help=", ".join(SCHEDULERS[:-1]) + " or " + SCHEDULERS[-1]
        ),
        "host": Field(_regex(checks.HOST, "a host name or ~/.ssh/config alias")),
        "ssh": Section(
            {
                "user": Field(WORD),
                "port": Field(_int(1, 65535)),
                "identity_file": Field(PATH),
                "proxy_jump": Field(WORD),
                "accept_new_host_key": Field(
                    _bool, default=False, nullable=False, help="true or false"
                ),
                "transport": Field(
                    _choice(("paramiko", "openssh", "auto")),
                    default="paramiko",
                    nullable=False,
                    help="paramiko, openssh or auto",
                ),
                "status_interval": Field(
                    _int(1, 86400),
                    default=30,
                    nullable=False,
                    help="seconds between read-only scheduler queries for status (1-86400)",
                ),
            }
        ),
        "workdir": Field(PATH, default="~/hpclaunch", nullable=False, help="a path"),
        "template": Field(PATH),
        "resources": Section(
            {
                "partition": Field(WORD),
                "account": Field(WORD),
                "qos": Field(WORD),
                "constraint": Field(
                    _regex(
                        checks.DIRECTIVE_WORD,
                        "a constraint without spaces or quotes, e.g. gpu&hbm80g",
                    )
                ),
                "walltime": Field(_walltime, default="01:00:00", nullable=False, help="HH:MM:SS"),
                "nodes": Field(_int(1, 100000), default=1, nullable=False, help="a whole number"),
                "cpus": Field(_int(1, 100000), default=1, nullable=False, help="a whole number"),
                "node_cpus": Field(
                    _int(1, 100000),
                    help="a whole number (every job asks for at least this many: whole nodes)",
                ),
                "memory": Field(_memory),
                "gpus": Field(_int(0, 1024), default=0, nullable=False, help="a whole number"),
                "filesystems": Field(WORD),
                "gpu_vendor": Field(
                    _choice(GPU_VENDORS),
                    help="nvidia, amd or intel (which visible-devices variable a worker gets)",
                ),
                "place": Field(
                    _regex(
                        re.compile(r"[A-Za-z0-9_:.=+-]+"),
                        "a PBS placement like scatter:excl (no commas: it is one -l value)",
                    )
                ),
            }
        ),
        "extra_directives": Field(_list_of(_directive, "scheduler options"), default=()),
        "setup": Field(_list_of(_setup_line, "shell lines"), default=()),
        "env": MapOf(_env_name, _env_value),
        "arrays": Section(
            {
                "enabled": Field(_bool, default=True, nullable=False, help="true or false"),
                "max_array_size": Field(
                    _int(1, 10_000_000), default=1001, nullable=False, help="a whole number"
                ),
                "max_concurrent": Field(_int(1, 10_000_000)),
            }
        ),
        "worker": Section(
            {
                "mode": Field(
                    _choice(("singleflow", "draining")),
                    default="singleflow",
                    nullable=False,
                    help="singleflow or draining",
                ),
                "nitems_max": Field(_int(1)),
                "close_on_empty_queue": Field(
                    _bool, default=True, nullable=False, help="true or false"
                ),
                "wait_timeout": Field(_int(0)),
                "tags": Field(
                    _worker_tags,
                    default=("default",),
                    nullable=False,
                    help="a list of tags",
                ),
                "grace": Field(_int(0, 86400), default=30, nullable=False, help="seconds"),
                "workers_per_job": Field(
                    _int(1, 4096), default=1, nullable=False, help="a whole number"
                ),
                "command": Field(_command, default="hpclaunch", nullable=False, help="a command"),
                "no_pickle": Field(_bool, default=False, nullable=False, help="true or false"),
                # SIMX engines: NAME: pkg.module:function, or NAME: a command template.
                "engines": MapOf(_engine_name, _engine_handler),
                "db_wait": Field(
                    _int(1, 86400), help="seconds a worker waits for an unreachable database"
                ),
                "gpus_per_worker": Field(
                    _int(1, 1024), help="GPUs each worker slot gets (needs resources.gpu_vendor)"
                ),
                "bind_cpus": Field(
                    _bool,
                    default=False,
                    nullable=False,
                    help="true or false (pin each worker slot to its own cpus with taskset)",
                ),
            }
        ),
        # hpclaunch addition: the job limits a centre enforces at submit time.
        "limits": Section(
            {
                "max_queued_jobs": Field(
                    _int(1, 10_000_000), help="a whole number (jobs queued or running at once)"
                ),
                "max_running_jobs": Field(_int(1, 10_000_000), help="a whole number"),
                "scope": Field(
                    _choice(LIMIT_SCOPES), default="user", nullable=False, help="user or project"
                ),
                "array_elements_count": Field(
                    _bool,
                    default=True,
                    nullable=False,
                    help="true or false (each array element counts as one job)",
                ),
            }
        ),
        "database": Section(
            {
                "env": Field(_regex(checks.ENV_NAME, "a variable name")),
                "file": Field(PATH),
                "url": Field(_url),
                "local": Field(_bool),
                # Workers over HTTP (``hpclaunch serve``): the URL, and where the
                # node finds its token (a variable or a 0600 file); optional CAs.
                "server": Field(_server_url),
                "token_env": Field(_regex(checks.ENV_NAME, "a variable name")),
                "token_file": Field(PATH),
                "ca_bundle": Field(PATH),
            },
            atomic=True,
            together=frozenset({"server", "token_env", "token_file", "ca_bundle"}),
        ),
        "retry": MapOf(_retry_reason, _retry_action),
        # hpclaunch addition: keys that must have a value before a script is rendered
        # (e.g. the account on sites where -A is mandatory).
        "required": Field(_list_of(_required_key, "profile keys"), default=()),
    }
)


def lookup(path: tuple[str, ...]) -> Any:
    """The schema node at a dotted path, or None if there is no such key."""
    node: Any = SCHEMA
    for part in path:
        if isinstance(node, Section) and part in node.fields:
            node = node.fields[part]
        elif isinstance(node, MapOf):
            return ("map-item", node)
        else:
            return None
    return node


def walltime_parts(text: str) -> tuple[int, int, int, int]:
    """(days, hours, minutes, seconds) of a checked walltime, hours < 24 when days > 0."""
    total = walltime_seconds(text)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return days, hours, minutes, seconds
