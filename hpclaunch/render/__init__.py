"""Render a site profile and a worker count into batch scripts (pure: no I/O but templates).

Public API::

    plan_launch(profile, workers, launch_id=None, tags=None) -> LaunchPlan

``LaunchPlan.chunks`` lists one :class:`Chunk` per submission (script text,
element count, job name ``hpcl-<launch_id>-<index>``); ``.warnings`` holds what
the user should read. Submit every chunk from inside ``plan.workdir`` after
creating ``plan.log_dir`` (scheduler directives cannot expand ``~``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpclaunch.errors import UserError
from hpclaunch.render import context, jinja_env
from hpclaunch.render.gpus import gpu_warnings
from hpclaunch.render.planner import ChunkShape, fit_limits, plan_shapes
from hpclaunch.schedulers import get_scheduler
from hpclaunch.sites import checks, schema
from hpclaunch.sites.model import Profile

__all__ = ["Chunk", "LaunchPlan", "default_launch_id", "plan_launch"]

MAX_WORKERS = 1_000_000
LIMIT_EXIT_CODE = 7  # a launch over the site's job limit: nothing was submitted


@dataclass(frozen=True)
class Chunk:
    """One submission: a job array (or a plain job) and its script."""

    index: int
    job_name: str
    elements: int  # array elements (1 for a plain job)
    workers_per_element: int
    array: bool
    script: str

    @property
    def workers(self) -> int:
        return self.elements * self.workers_per_element

    @property
    def filename(self) -> str:
        return f"{self.job_name}.sh"


@dataclass(frozen=True)
class LaunchPlan:
    site: str
    scheduler: str
    launch_id: str
    workers: int
    workdir: str  # submit from here (``~`` not yet expanded)
    log_dir: str  # create before submitting: element stdout/stderr and worker logs
    chunks: tuple[Chunk, ...]
    warnings: tuple[str, ...]
    counted_jobs: int = 0  # jobs as the site's limits count them

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "scheduler": self.scheduler,
            "launch_id": self.launch_id,
            "workers": self.workers,
            "workdir": self.workdir,
            "log_dir": self.log_dir,
            "warnings": list(self.warnings),
            "counted_jobs": self.counted_jobs,
            "chunks": [
                {
                    "index": c.index,
                    "job_name": c.job_name,
                    "filename": c.filename,
                    "elements": c.elements,
                    "workers_per_element": c.workers_per_element,
                    "workers": c.workers,
                    "array": c.array,
                    "script": c.script,
                }
                for c in self.chunks
            ],
        }


def default_launch_id(profile: Profile, workers: int, tags: tuple[str, ...]) -> str:
    """A launch ID derived from the inputs, so rendering stays reproducible."""
    blob = json.dumps([profile.to_dict(), workers, list(tags)], sort_keys=True, default=str)
    return "r" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def _check_launch_id(launch_id: str) -> str:
    if not isinstance(launch_id, str) or not checks.NAME.fullmatch(launch_id):
        raise UserError(
            f"launch ID {checks.show(launch_id)} is not allowed; use up to 64 "
            "letters, digits, _ . - (starting with a letter or digit)"
        )
    return launch_id


def _check_tags(tags: Any) -> tuple[str, ...]:
    try:
        checked = schema.SCHEMA.fields["worker"].fields["tags"].convert(list(tags))
    except schema.Invalid as exc:
        raise UserError(f"-t: {exc}") from None
    if not checked:
        raise UserError("-t: give at least one tag (workers claim tasks whose tags they have)")
    return checked


def _template(profile: Profile) -> Any:
    name = profile.template or get_scheduler(profile.scheduler).template
    extra = None
    if "/" in name:  # a path, relative to the profile's folder
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = Path(profile.path).parent / path
        extra, name = path.parent, path.name
    return jinja_env.get_template(name, extra)


def plan_launch(
    profile: Profile,
    workers: int,
    launch_id: str | None = None,
    tags: Any = None,
    *,
    submitting: bool = False,
    queued: int = 0,
) -> LaunchPlan:
    """Plan and render the scripts that start ``workers`` workers on ``profile``'s site.

    Pure: the same inputs give byte-identical scripts. Raises UserError for bad input.
    ``submitting``: plan the jobs ``submit`` sends, which a scheduler may pack
    differently from the preview (``local`` submits one job per worker).
    ``queued``: jobs already queued on the site that count against ``limits``
    (``submit`` asks the scheduler; a preview assumes none). A plan over the
    limit is refused with the largest launch that fits.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise UserError(
            f"--workers {checks.show(workers)}: give a whole number from 1 to {MAX_WORKERS}"
        )
    _check_required(profile)
    _check_grace(profile)
    tags = profile.worker.tags if tags is None or len(tags) == 0 else _check_tags(tags)
    launch_id = (
        default_launch_id(profile, workers, tags)
        if launch_id is None
        else _check_launch_id(launch_id)
    )

    def shapes_for(n: int) -> tuple[list[ChunkShape], list[str]]:
        return plan_shapes(
            scheduler=get_scheduler(profile.scheduler),
            workers=n,
            workers_per_job=profile.worker.workers_per_job,
            arrays_enabled=profile.arrays.enabled,
            max_array_size=profile.arrays.max_array_size,
            max_concurrent=profile.arrays.max_concurrent,
            site=profile.name,
            submitting=submitting,
        )

    shapes, warnings = shapes_for(workers)
    limits = profile.limits
    fit = fit_limits(
        lambda n: shapes_for(n)[0] if n > 0 else [],
        workers,
        max_queued=limits.max_queued_jobs,
        max_running=limits.max_running_jobs,
        scope=limits.scope,
        array_elements_count=limits.array_elements_count,
        queued=queued,
        site=profile.name,
    )
    if fit.refusal:
        raise UserError(fit.refusal, exit_code=LIMIT_EXIT_CODE)
    warnings = list(warnings) + list(fit.warnings) + _ignored(profile)
    warnings += gpu_warnings(profile)
    template = _template(profile)
    chunks = tuple(_render(template, profile, shape, launch_id, tags) for shape in shapes)
    return LaunchPlan(
        site=profile.name,
        scheduler=profile.scheduler,
        launch_id=launch_id,
        workers=workers,
        workdir=profile.workdir,
        log_dir=f"{profile.workdir.rstrip('/')}/{launch_id}",
        chunks=chunks,
        warnings=tuple(warnings),
        counted_jobs=fit.counted,
    )


def _check_required(profile: Profile) -> None:
    from hpclaunch.sites.loader import FLAG_KEYS

    flags = {key: "--" + flag.replace("_", "-") for flag, key in FLAG_KEYS.items()}
    for key in profile.required:
        if profile.value_of(key) in (None, ""):
            how = f"{flags[key]} VALUE" if key in flags else f"--set {key}=VALUE"
            raise UserError(
                f"site {profile.name} requires {key} ({profile.source_of('required')}): pass "
                f"{how}, or set it in ~/.hpclaunch/sites/{profile.name}.yaml with "
                f"'extends: {profile.name}'"
            )


def _check_grace(profile: Profile) -> None:
    """Refuse a grace that leaves workers less than half the walltime to work.

    With walltime 30 s and the default grace of 30 s the workers exit at once
    without claiming anything.
    """
    wall, grace = profile.resources.walltime_seconds, profile.worker.grace
    if grace * 2 > wall:
        raise UserError(
            f"site {profile.name}: worker.grace {grace} s leaves less than half of the walltime "
            f"({profile.resources.walltime_hms}) to work; lower worker.grace "
            f"(--set worker.grace=SECONDS) or raise the walltime (--walltime)"
        )


def _ignored(profile: Profile) -> list[str]:
    r = profile.resources
    scheduler = get_scheduler(profile.scheduler)
    out = [
        f"resources.{key} is not used by {profile.scheduler} scripts and is ignored"
        for key in scheduler.ignored_resources
        if getattr(r, key) is not None
    ]
    if not scheduler.takes_directives and profile.extra_directives:
        out.append("extra_directives are not used without a scheduler and are ignored")
    return out


def _render(
    template: Any, profile: Profile, shape: ChunkShape, launch_id: str, tags: tuple[str, ...]
) -> Chunk:
    job_name = f"hpcl-{launch_id}-{shape.index}"
    ctx = context.build(profile, shape, launch_id=launch_id, job_name=job_name, tags=tags)
    try:
        script = template.render(ctx)
    except UserError:
        raise
    except Exception as exc:  # a broken (user) template: say which and why
        raise UserError(
            f"template {template.name}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None
    return Chunk(
        index=shape.index,
        job_name=job_name,
        elements=shape.elements,
        workers_per_element=shape.workers,
        array=shape.array,
        script=script,
    )
