"""Typed launch records: a launch, its jobs (chunks) and the elements they asked for.

Built once from the database rows (``queue.launch_rows``); the profile snapshot
stored with the launch is parsed here, once, so nothing downstream re-reads JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from hpclaunch.states import LIVE_LAUNCH_STATUSES, LaunchStatus
from hpclaunch.transport.options import SSHOptions

ElementKey = tuple[str, int | None]


def element_key(job_id: str, index: int | None) -> ElementKey:
    """How an element is found in scheduler output and worker rows: (job ID, index)."""
    return (str(job_id), index)


def worker_key(worker: dict[str, Any]) -> ElementKey:
    """The element a worker row ran in (array job ID + index, else its own job ID)."""
    if worker["array_index"] is None or not worker["array_job_id"]:
        return element_key(worker["job_id"], None)
    return element_key(worker["array_job_id"], worker["array_index"])


@dataclass(frozen=True)
class Job:
    """One submission of a launch: a job array or a plain job."""

    chunk: int
    job_name: str
    job_id: str | None
    elements: int
    array: bool
    script_path: str
    workers_per_element: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk": self.chunk,
            "job_name": self.job_name,
            "job_id": self.job_id,
            "elements": self.elements,
            "script_path": self.script_path,
        }


@dataclass(frozen=True)
class Element:
    """One array element (or plain job), numbered across the launch (``--element K``)."""

    number: int
    chunk: int
    job_id: str | None
    job_name: str
    index: int | None

    @property
    def key(self) -> ElementKey | None:
        """None until the element's job was submitted (it has no job ID yet)."""
        return element_key(self.job_id, self.index) if self.job_id else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "element": self.number,
            "chunk": self.chunk,
            "job_id": self.job_id,
            "job_name": self.job_name,
            "index": self.index,
        }


@dataclass(frozen=True)
class Launch:
    """What one ``submit`` launched, where, and how to reach it again."""

    id: str
    site: str
    host: str | None
    scheduler: str
    status: LaunchStatus
    workdir: str
    log_dir: str
    workers: int
    submitted_at: float | None
    submitted_by: str | None
    broken_reason: str | None
    jobs: tuple[Job, ...]
    profile_json: str = field(repr=False)
    refused: str | None = None  # why the unsubmitted jobs were not sent (submit --resume)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Launch:
        return cls(
            id=row["id"],
            site=row["site"],
            host=row["host"],
            scheduler=row["scheduler"],
            status=LaunchStatus(row["status"]),
            workdir=row["workdir"],
            log_dir=row["log_dir"],
            workers=int(row["workers"]),
            submitted_at=row["submitted_at"],
            submitted_by=row.get("submitted_by"),
            broken_reason=row.get("broken_reason"),
            jobs=tuple(
                Job(
                    chunk=int(j["chunk"]),
                    job_name=j["job_name"],
                    job_id=j["job_id"],
                    elements=int(j["elements"]),
                    array=bool(j["array"]),
                    script_path=j["script_path"],
                    workers_per_element=int(j.get("workers_per_element") or 1),
                )
                for j in row["jobs"]
            ),
            profile_json=row["profile"] or "{}",
            refused=row.get("refused"),
        )

    @property
    def live(self) -> bool:
        """Its jobs may still be queued or running."""
        return self.status in LIVE_LAUNCH_STATUSES

    @cached_property
    def profile(self) -> dict[str, Any]:
        """The profile snapshot taken at submit time (plain data)."""
        data = json.loads(self.profile_json)
        return data if isinstance(data, dict) else {}

    @property
    def ssh_options(self) -> SSHOptions:
        """The profile's SSH options as they were at submit time (unset ones left out)."""
        ssh = self.profile.get("ssh") or {}
        return SSHOptions.from_mapping(
            {k: v for k, v in ssh.items() if v is not None}, where=f"launch {self.id} ssh"
        )

    @property
    def retry_rules(self) -> dict[str, Any]:
        """The profile's ``retry`` policy: reason -> requeue | fail | {requeue_on: SITE}."""
        return self.profile.get("retry") or {}

    @cached_property
    def elements(self) -> tuple[Element, ...]:
        """Every element the launch asked for, numbered across its jobs."""
        out: list[Element] = []
        for job in self.jobs:
            for i in range(job.elements):
                out.append(
                    Element(len(out), job.chunk, job.job_id, job.job_name, i if job.array else None)
                )
        return tuple(out)

    def element(self, number: int) -> Element:
        """Element ``number``, or a one-line error naming the valid range."""
        from hpclaunch.errors import UserError

        if not 0 <= number < len(self.elements):
            raise UserError(
                f"launch {self.id} has elements 0-{len(self.elements) - 1}, not {number}"
            )
        return self.elements[number]

    def job_ids(self) -> list[str]:
        return sorted({j.job_id for j in self.jobs if j.job_id})
