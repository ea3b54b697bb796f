"""The worker protocol's wire format: versions, headers, and JSON for the session types.

Shared by the worker's HTTP session (``queue.http_session``) and the server's
worker routes (``server.worker_routes``), so both sides read and write the
same shapes. Stdlib only (the worker's cold start imports it). Pure functions:
a malformed value raises ``ValueError`` with a short reason.

Versions: a worker sends its hpclaunch version and ``PROTOCOL``; the server
accepts protocols ``MIN_PROTOCOL``..``PROTOCOL``. Bump ``PROTOCOL`` when a
route or a body changes incompatibly (a cluster's install lags behind the
server's, so keep old ones working while you can).
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from hpclaunch.queue.session import Claimed, Outcome, Watch, WorkerInfo

PROTOCOL = 1
MIN_PROTOCOL = 1
VERSION_HEADER = "X-Hpclaunch-Version"
PROTOCOL_HEADER = "X-Hpclaunch-Protocol"
MAX_WAIT = 300.0  # the longest long-poll a claim may ask for (seconds)
MAX_REQUEST_ID = 64


def incompatible(protocol: str | None, version: str | None, server_version: str) -> str | None:
    """One line saying which versions are needed, or None when the worker may talk."""
    try:
        number = int(protocol) if protocol is not None else None
    except ValueError:
        number = None
    if number is not None and MIN_PROTOCOL <= number <= PROTOCOL:
        return None
    needed = (
        f"protocol {PROTOCOL}"
        if MIN_PROTOCOL == PROTOCOL
        else f"protocols {MIN_PROTOCOL} to {PROTOCOL}"
    )
    theirs = f"protocol {protocol}" if protocol else "no protocol version"
    return (
        f"this server (hpclaunch {server_version}) needs workers speaking worker {needed}; "
        f"this worker (hpclaunch {version or 'unknown'}) sent {theirs}: "
        f"install hpclaunch {server_version} where the workers run"
    )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("binary fields are base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("binary fields are base64 text") from exc


def claimed_to_json(task: Claimed) -> dict[str, Any]:
    data = dataclasses.asdict(task)
    data["pickled"] = _b64(task.pickled)
    return data


def claimed_from_json(data: dict[str, Any]) -> Claimed:
    fields = dict(data)
    fields["pickled"] = _unb64(fields.get("pickled"))
    return _build(Claimed, fields)


def held_to_json(task: Claimed) -> dict[str, Any]:
    """What identifies a held attempt (its fencing token and attempt), not its payload."""
    return {
        "token": task.token,
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "started_at": task.started_at,
    }


def held_from_json(task_id: int, data: dict[str, Any]) -> Claimed:
    """A ``Claimed`` good for finish/release/heartbeat (fenced by its token)."""
    token = data.get("token")
    if not isinstance(token, str) or not 0 < len(token) <= 64:
        raise ValueError("token: the claim token is required")
    return Claimed(
        id=task_id,
        kind="",
        payload="",
        pickled=None,
        timeout=None,
        expected_runtime=None,
        attempt=_int(data.get("attempt"), "attempt"),
        max_attempts=_int(data.get("max_attempts"), "max_attempts"),
        tags="",
        token=token,
        started_at=_number(data.get("started_at"), "started_at"),
    )


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    data = dataclasses.asdict(outcome)
    data["result_pickled"] = _b64(outcome.result_pickled)
    return data


def outcome_from_json(data: Any) -> Outcome:
    if not isinstance(data, dict):
        raise ValueError("outcome: an object is required")
    fields = dict(data)
    fields["result_pickled"] = _unb64(fields.get("result_pickled"))
    return _build(Outcome, fields)


def info_to_json(info: WorkerInfo) -> dict[str, Any]:
    """Every field, generically: fields added to ``WorkerInfo`` flow through as they are."""
    return dataclasses.asdict(info)


def info_from_json(data: Any) -> WorkerInfo:
    if not isinstance(data, dict):
        raise ValueError("worker info: an object is required")
    return _build(WorkerInfo, data)


def watch_to_json(found: Watch | None) -> dict[str, Any] | None:
    return None if found is None else dataclasses.asdict(found)


def watch_from_json(data: Any) -> Watch | None:
    return None if data is None else _build(Watch, data)


_SIMPLE = {"int": int, "float": (int, float), "str": str, "bool": bool}


def _build(cls: Any, data: dict[str, Any]) -> Any:
    """``cls(**data)`` for known fields with simple type checks; unknown keys are ignored
    (a newer worker's extra fields), missing required ones are an error."""
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name not in data:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise ValueError(f"{field.name}: required")
            continue
        value = data[field.name]
        _check(field.name, str(field.type), value)
        kwargs[field.name] = value
    return cls(**kwargs)


def _check(name: str, annotation: str, value: Any) -> None:
    """A light check of JSON values against the dataclass annotation (as text)."""
    optional = "None" in annotation
    if value is None:
        if not optional:
            raise ValueError(f"{name}: a value is required")
        return
    base = annotation.replace("| None", "").strip()
    if base.startswith("list[str]"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name}: a list of strings is required")
        return
    expected = _SIMPLE.get(base)
    if expected is None:
        return  # bytes (decoded before) or a type other branches add: their own checks
    if isinstance(value, bool) and base != "bool":
        raise ValueError(f"{name}: a {base} is required")
    if not isinstance(value, expected):  # type: ignore[arg-type]
        raise ValueError(f"{name}: a {base} is required")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: an integer is required")
    return value


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: a number is required")
    return float(value)
