"""The schedulers hpclaunch knows: one line each, the only list there is.

Each line names the scheduler, the class that implements it (imported on
first use, so this module stays as light as the worker needs), the
environment variables its jobs carry, and other names users write for it.
Adding a scheduler: a module with one :class:`~hpclaunch.schedulers.base.Scheduler`
subclass, a template, and a line here.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpclaunch.schedulers.environment import JobEnvironment as Env


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:Class"
    environment: Env
    aliases: tuple[str, ...] = ()


# fmt: off
REGISTRY: tuple[Entry, ...] = (
    Entry("slurm", "hpclaunch.schedulers.slurm:Slurm", Env("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", detect="SLURM_JOB_ID")),  # noqa: E501
    Entry("pbs", "hpclaunch.schedulers.pbs:Pbs", Env("PBS_JOBID", None, "PBS_ARRAY_INDEX", array_job_from_id=True, detect="PBS_JOBID"), ("openpbs", "pbspro", "pbs_pro")),  # noqa: E501
    Entry("torque", "hpclaunch.schedulers.torque:Torque", Env("PBS_JOBID", None, "PBS_ARRAYID", array_job_from_id=True)),  # noqa: E501
    Entry("local", "hpclaunch.schedulers.local:Local", Env("HPCLAUNCH_LOCAL_JOB_ID", None, "HPCLAUNCH_LOCAL_INDEX", detect="HPCLAUNCH_LOCAL_JOB_ID")),  # noqa: E501
    Entry("sge", "hpclaunch.schedulers.sge:Sge", Env("JOB_ID", "JOB_ID", "SGE_TASK_ID", index_base=1, detect="SGE_TASK_ID"), ("gridengine", "sog", "soge")),  # noqa: E501
)
# fmt: on

NAMES: tuple[str, ...] = tuple(e.name for e in REGISTRY)
ENVIRONMENTS: dict[str, Env] = {e.name: e.environment for e in REGISTRY}
_BY_NAME: dict[str, Entry] = {n: e for e in REGISTRY for n in (e.name, *e.aliases)}


def entry(name: str) -> Entry | None:
    """The registry line for ``name`` or one of its aliases (any case), else None."""
    return _BY_NAME.get((name or "").strip().lower())
