"""Where each scheduler puts a job's identity in its environment: plain data for the worker.

Like submitit's ``JobEnvironment``: the worker reads a map of variable names, not
the scheduler adapters, so it never imports parsers or Jinja. Stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The batch script exports this (``_workers.sh.j2``), so a worker need not guess.
SCHEDULER_ENV = "HPCLAUNCH_SCHEDULER"


@dataclass(frozen=True)
class JobEnvironment:
    """The variables a scheduler sets in a job, and how to read them.

    ``index_base`` is the first array index the scheduler hands out (SGE's
    ``SGE_TASK_ID`` starts at 1); the worker records indices counted from 0,
    like the launch's elements. ``array_job_from_id`` means the array's ID is
    the element's ID with ``[N]`` turned into ``[]`` (PBS and Torque).
    ``detect`` names a variable that tells this scheduler apart when a script
    does not export ``HPCLAUNCH_SCHEDULER`` (scripts rendered by older versions).
    """

    job_id: str
    array_job_id: str | None = None
    array_index: str | None = None
    index_base: int = 0
    array_job_from_id: bool = False
    detect: str | None = None

    def identity(self, name: str, env: Mapping[str, str]) -> dict[str, Any]:
        """``scheduler``, ``job_id``, ``array_job_id``, ``array_index`` of the running job."""
        job_id = env.get(self.job_id) or None
        raw = env.get(self.array_index, "") if self.array_index else ""
        index = int(raw) - self.index_base if raw.isascii() and raw.isdigit() else None
        if index is not None and index < 0:
            index = None
        array_job = (env.get(self.array_job_id) or None) if self.array_job_id else None
        if self.array_job_from_id and job_id and "[" in job_id:
            array_job = re.sub(r"\[\d*\]", "[]", job_id, count=1)
        if self.index_base and index is None:
            array_job = None  # e.g. SGE_TASK_ID=undefined: not an array task
        return {
            "scheduler": name,
            "job_id": job_id,
            "array_job_id": array_job,
            "array_index": index,
        }


NO_SCHEDULER: dict[str, Any] = {
    "scheduler": None,
    "job_id": None,
    "array_job_id": None,
    "array_index": None,
}


def identify(environments: Mapping[str, JobEnvironment], env: Mapping[str, str]) -> dict[str, Any]:
    """Read the job's identity with the map of the scheduler the script names.

    Without ``HPCLAUNCH_SCHEDULER`` (or with a name not in ``environments``),
    the first scheduler whose ``detect`` variable is set wins.
    """
    name = env.get(SCHEDULER_ENV, "")
    chosen = environments.get(name)
    if chosen is None or not env.get(chosen.job_id):
        for candidate, job_env in environments.items():
            if job_env.detect and env.get(job_env.detect):
                name, chosen = candidate, job_env
                break
        else:
            return dict(NO_SCHEDULER)
    return chosen.identity(name, env)
