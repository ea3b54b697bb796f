"""Who a worker is: host, pid, and the scheduler job it runs in (from the environment)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def scheduler_identity(environ: Mapping[str, str] | None = None) -> dict:
    """Scheduler, job ID, array job ID and array index, read from the job's environment."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        index = env.get("SLURM_ARRAY_TASK_ID")
        return {
            "scheduler": "slurm",
            "job_id": env["SLURM_JOB_ID"],
            "array_job_id": env.get("SLURM_ARRAY_JOB_ID"),
            "array_index": int(index) if index and index.isdigit() else None,
        }
    if env.get("PBS_JOBID"):
        index = env.get("PBS_ARRAY_INDEX") or env.get("PBS_ARRAYID")  # PBS Pro / Torque
        job_id = env["PBS_JOBID"]
        array_job = None
        if "[" in job_id:
            array_job = job_id.split("[", 1)[0] + "[]" + job_id.split("]", 1)[-1]
        return {
            "scheduler": "pbs",
            "job_id": job_id,
            "array_job_id": array_job,
            "array_index": int(index) if index and index.isdigit() else None,
        }
    if env.get("HPCLAUNCH_LOCAL_JOB_ID"):
        index = env.get("HPCLAUNCH_LOCAL_INDEX")
        return {
            "scheduler": "local",
            "job_id": env["HPCLAUNCH_LOCAL_JOB_ID"],
            "array_job_id": None,
            "array_index": int(index) if index and index.isdigit() else None,
        }
    return {"scheduler": None, "job_id": None, "array_job_id": None, "array_index": None}


def hostname() -> str:
    return socket.gethostname()
