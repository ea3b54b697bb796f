"""Property: arbitrary strings in any field or override never add a line to a script.

Either the value is rejected with a UserError, or every line of the rendered
script has a shape the template produces anyway: same kind of line (directive
option / first shell word), same shell punctuation (; & | < > ( )), and no extra
command substitution. Compared against a baseline where every optional line is on.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpclaunch.errors import UserError
from hpclaunch.render import plan_launch
from hpclaunch.sites import Override, load_profile, parse_set

BASE = [
    "resources.partition=p",
    "resources.account=a",
    "resources.qos=q",
    "resources.constraint=c",
    "resources.memory=1G",
    "resources.gpus=1",
    "resources.filesystems=home",
    "resources.place=scatter",
    "extra_directives=[--x=y]",
    "env.E=v",
    "env.OTHER=w",
    "database.env=DBVAR",
    "worker.mode=draining",
    "worker.nitems_max=1",
    "worker.wait_timeout=1",
    "worker.grace=1",
    "arrays.max_concurrent=2",
]
FIELDS = [
    "resources.partition",
    "resources.account",
    "resources.qos",
    "resources.constraint",
    "resources.walltime",
    "resources.nodes",
    "resources.cpus",
    "resources.memory",
    "resources.gpus",
    "resources.filesystems",
    "resources.place",
    "workdir",
    "host",
    "description",
    "ssh.user",
    "ssh.port",
    "ssh.identity_file",
    "ssh.proxy_jump",
    "worker.command",
    "worker.tags",
    "worker.mode",
    "worker.nitems_max",
    "worker.wait_timeout",
    "worker.grace",
    "worker.workers_per_job",
    "worker.close_on_empty_queue",
    "arrays.max_array_size",
    "arrays.max_concurrent",
    "arrays.enabled",
    "database.env",
    "database.file",
    "database.url",
    "env.E",
    "env.OTHER",
    "extra_directives",
    "retry.TIMEOUT",
    "required",
    "template",
]
SCHEDULERS = ["slurm", "pbs", "torque", "local"]
NASTY = st.text(
    alphabet=st.sampled_from(
        list("ab1 -=:/.~%@,;|&$`'\"\\\n\r\x00\x0b\x1b\t#(){}<>*?!\u2028\u0085\u00e9")
    ),
    max_size=24,
)
ANY_TEXT = st.one_of(NASTY, st.text(max_size=24))
PUNCT = set(";&|<>()")


def substitutions(line: str) -> tuple[int, int]:
    """Count ``$(`` and backticks the shell would act on (outside single quotes)."""
    dollar = tick = 0
    single = double = escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif single:
            single = ch != "'"
        elif ch == "\\":
            escaped = True
        elif ch == "'" and not double:
            single = True
        elif ch == '"':
            double = not double
        elif ch == "`":
            tick += 1
        elif ch == "$" and line[i + 1 : i + 2] == "(":
            dollar += 1
    return dollar, tick


def signature(line: str, loose: bool = False) -> tuple:
    """What kind of line this is, as far as the shell or the scheduler is concerned.

    sbatch/qsub split a directive line into options at whitespace, so the number of
    words counts too. ``loose``: extra_directives are whole user-written options.
    """
    if line.startswith(("#SBATCH", "#PBS")):
        prefix, _, rest = line.partition(" ")
        if loose:
            return ("directive", prefix)
        return ("directive", prefix, re.split(r"[= ]", rest, maxsplit=1)[0], len(rest.split()))
    if not line.strip() or line.lstrip().startswith("#"):
        return ("comment",)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    punct = tuple(t for t in tokens if t and set(t) <= PUNCT)
    kind = "worker" if "worker" in tokens else tokens[0]  # the command itself is a field
    return ("shell", kind, punct, *substitutions(line))


def render_all(scheduler: str, extra: list[Override], tags=None, launch_id="L1") -> list[list[str]]:
    overrides = [parse_set(s) for s in BASE + [f"scheduler={scheduler}"]] + extra
    profile = load_profile("tests-slurm", overrides)
    plan = plan_launch(profile, 3, launch_id, tags=tags)
    return [chunk.script.split("\n") for chunk in plan.chunks]


def assert_no_new_lines(
    scripts: list[list[str]], baseline: list[list[str]], loose: bool = False
) -> None:
    """Each script (chunk) has only line shapes of the baseline's one script."""
    (reference,) = baseline
    allowed = Counter(signature(line, loose) for line in reference)
    for lines in scripts:
        got = Counter(signature(line, loose) for line in lines)
        extra = got - allowed
        assert not extra, f"lines the template does not produce: {extra}"
        for line in lines:
            assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u0085\u2028\u2029]", line), line


_BASELINES: dict[str, list[list[str]]] = {}


def baseline(scheduler: str) -> list[list[str]]:
    if scheduler not in _BASELINES:
        _BASELINES[scheduler] = render_all(scheduler, [])
    return _BASELINES[scheduler]


@settings(
    max_examples=700,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    field=st.sampled_from(FIELDS),
    value=ANY_TEXT,
    scheduler=st.sampled_from(SCHEDULERS),
    via_set=st.booleans(),
)
def test_field_values_never_add_lines(home, field, value, scheduler, via_set):
    override = parse_set(f"{field}={value}") if via_set else Override(field, value, "--flag")
    try:
        lines = render_all(scheduler, [override])
    except UserError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    assert_no_new_lines(lines, baseline(scheduler), loose=field == "extra_directives")


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    tags=st.lists(ANY_TEXT, max_size=3), launch_id=ANY_TEXT, scheduler=st.sampled_from(SCHEDULERS)
)
def test_tags_and_launch_id_never_add_lines(home, tags, launch_id, scheduler):
    try:
        lines = render_all(scheduler, [], tags=tags or None, launch_id=launch_id)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert_no_new_lines(lines, baseline(scheduler))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(setup=st.lists(ANY_TEXT, min_size=1, max_size=3))
def test_each_setup_item_is_exactly_one_line(home, setup):
    """Setup lines are the user's shell, copied verbatim, but each stays one line."""
    sites = home / "sites"
    import json

    text = json.dumps(setup, ensure_ascii=False)
    (sites / "s.yaml").write_text(f"extends: tests-slurm\nsetup: {text}\n")
    try:
        profile = load_profile("s")
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    script = plan_launch(profile, 1, "L1").chunks[0].script
    body = script.split("before any worker claims a task) ---\nset -e\n")[1]
    body = body.split("set +e\n# --- end of setup ---\n")[0]
    assert body.split("\n")[:-1] == list(profile.setup)
    assert len(profile.setup) == len(setup)
