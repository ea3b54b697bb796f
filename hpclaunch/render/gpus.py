"""One GPU set per worker slot: which variable, how many devices, checked before rendering.

When a job starts several workers on a node, each worker gets its own devices
through the vendor's visible-devices variable (``CUDA_VISIBLE_DEVICES`` for
NVIDIA, ``ROCR_VISIBLE_DEVICES`` for AMD, ``ZE_AFFINITY_MASK`` for Intel),
sliced from the devices the job was given (the same variable as inherited
from the scheduler), so a job handed devices 4-7 never hands out 0-3. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpclaunch.errors import UserError
from hpclaunch.sites.model import Profile

#: ``resources.gpu_vendor`` -> the variable a worker's devices are written to.
VISIBLE_DEVICES = {
    "nvidia": "CUDA_VISIBLE_DEVICES",
    "amd": "ROCR_VISIBLE_DEVICES",
    "intel": "ZE_AFFINITY_MASK",
}


@dataclass(frozen=True)
class GpuSlots:
    """What the script needs to give each worker slot its own devices."""

    variable: str  # the vendor's visible-devices variable
    per_worker: int  # devices per worker slot
    node_gpus: int  # devices assumed when the variable is not set (the whole node's)


def gpu_slots(profile: Profile) -> GpuSlots | None:
    """The slot plan, or None when workers share the node's GPUs (or there are none)."""
    check_gpus(profile)
    vendor, per = profile.resources.gpu_vendor, profile.worker.gpus_per_worker
    if vendor is None or per is None or profile.resources.gpus == 0:
        return None
    return GpuSlots(VISIBLE_DEVICES[vendor], per, profile.resources.gpus)


def check_gpus(profile: Profile) -> None:
    """Refuse GPU settings that cannot give every worker slot its own devices."""
    r, w = profile.resources, profile.worker
    if w.gpus_per_worker is None or r.gpus == 0:  # no GPUs asked for: nothing to hand out
        return
    if r.gpu_vendor is None:
        raise UserError(
            f"site {profile.name}: worker.gpus_per_worker needs resources.gpu_vendor (nvidia, "
            "amd or intel) to know which visible-devices variable to set; add it to the profile"
        )
    if w.gpus_per_worker * w.workers_per_job > r.gpus:
        raise UserError(
            f"site {profile.name}: {w.workers_per_job} workers x worker.gpus_per_worker "
            f"{w.gpus_per_worker} need {w.gpus_per_worker * w.workers_per_job} GPUs but "
            f"resources.gpus is {r.gpus}; lower one of them or raise resources.gpus"
        )


def gpu_warnings(profile: Profile) -> list[str]:
    """Advice when several workers would share every GPU of a node."""
    check_gpus(profile)
    r, w = profile.resources, profile.worker
    if r.gpus == 0 and w.gpus_per_worker is not None:
        return [f"worker.gpus_per_worker is ignored: site {profile.name} asks for no GPUs"]
    if r.gpus > 0 and w.workers_per_job > 1 and w.gpus_per_worker is None:
        return [
            f"{w.workers_per_job} workers per job share all {r.gpus} GPUs (most codes then use "
            "device 0); set resources.gpu_vendor and worker.gpus_per_worker to give each its own"
        ]
    return []
