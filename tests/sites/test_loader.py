"""Profile loading: search path, inheritance, overrides, provenance, strict values."""

from __future__ import annotations

import pytest

from hpclaunch.errors import NotFound, UserError
from hpclaunch.render import plan_launch
from hpclaunch.schedulers import SCHEDULERS
from hpclaunch.sites import available, flag_overrides, load_profile, parse_set


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)


def test_shipped_profiles_are_found_and_valid(home):
    names = available()
    assert {"local", "tests-slurm"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.scheduler in SCHEDULERS  # the registry, the one list


def test_user_then_project_profiles_override_shipped_ones(home, tmp_path):
    write(home / "sites", "local", "scheduler: slurm\ndescription: from home\n")
    assert load_profile("local").description == "from home"
    write(tmp_path / "project" / "site-configs", "local", "scheduler: pbs\ndescription: here\n")
    profile = load_profile("local")
    assert (profile.scheduler, profile.description) == ("pbs", "here")
    assert profile.source_of("description") == "site-configs/local.yaml:2"


def test_extends_deep_merges_mappings_and_replaces_lists(home):
    sites = home / "sites"
    write(
        sites,
        "base",
        "scheduler: slurm\nresources:\n  partition: general\n  cpus: 4\n"
        "setup: [module load a, module load b]\nenv: {A: '1', B: '2'}\n",
    )
    write(
        sites,
        "child",
        "extends: base\nresources:\n  cpus: 8\nsetup: [module load c]\nenv: {B: '3'}\n",
    )
    profile = load_profile("child")
    assert profile.resources.partition == "general"
    assert profile.resources.cpus == 8
    assert profile.setup == ("module load c",)
    assert dict(profile.env) == {"A": "1", "B": "3"}
    assert profile.source_of("resources.partition").endswith("sites/base.yaml:3")
    assert profile.source_of("resources.cpus").endswith("sites/child.yaml:3")
    assert [c.rsplit("/", 1)[-1] for c in profile.chain] == ["child.yaml", "base.yaml"]


def test_database_section_is_replaced_not_merged(home):
    sites = home / "sites"
    write(sites, "base", "scheduler: slurm\ndatabase: {env: SHARED_DB}\n")
    write(sites, "child", "extends: base\ndatabase: {file: ~/.hpclaunch/db.yaml}\n")
    db = load_profile("child").database
    assert (db.kind, db.value) == ("file", "~/.hpclaunch/db.yaml")


def test_a_user_profile_can_extend_the_shipped_one_of_the_same_name(home):
    write(home / "sites", "tests-slurm", "extends: tests-slurm\nresources: {account: proj1}\n")
    profile = load_profile("tests-slurm")
    assert profile.resources.account == "proj1"
    assert profile.resources.walltime == "00:10:00"  # from the shipped file


def test_extends_cycle_is_one_clear_error(home):
    sites = home / "sites"
    write(sites, "a", "extends: b\nscheduler: slurm\n")
    write(sites, "b", "extends: c\n")
    write(sites, "c", "extends: a\n")
    with pytest.raises(UserError, match=r"c\.yaml:1: extends: cycle .*a\.yaml -> .*b\.yaml"):
        load_profile("a")


def test_unknown_site_suggests_the_nearest(home):
    with pytest.raises(NotFound, match="did you mean 'tests-slurm'"):
        load_profile("tests-slurn")


def test_flag_and_set_overrides_win_and_are_recorded(home):
    profile = load_profile(
        "tests-slurm",
        flag_overrides(
            partition="debug",
            account="p1",
            qos="high",
            walltime="2-00:00:00",
            cpus="4",
            mem="16g",
            gpus="1",
            workers_per_job="3",
        )
        + [
            parse_set("arrays.max_concurrent=5"),
            parse_set("env.OMP_NUM_THREADS=4"),
            parse_set("worker.tags=[gpu, big]"),
            parse_set("database.file=~/db.yaml"),
        ],
    )
    r = profile.resources
    assert (r.partition, r.account, r.qos, r.cpus, r.memory, r.gpus) == (
        "debug",
        "p1",
        "high",
        4,
        "16G",
        1,
    )
    assert r.walltime_slurm == "2-00:00:00" and r.walltime_hms == "48:00:00"
    assert profile.worker.workers_per_job == 3
    assert profile.worker.tags == ("gpu", "big")
    assert profile.arrays.max_concurrent == 5
    assert dict(profile.env) == {"OMP_NUM_THREADS": "4"}
    assert profile.database.kind == "file"  # the one-of section is replaced
    assert profile.source_of("resources.memory") == "--mem"
    assert profile.source_of("arrays.max_concurrent") == "--set"
    assert profile.source_of("resources.walltime") == "--walltime"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "resources.partiton=x",
            "resources.partiton: unknown key; did you mean 'resources.partition'",
        ),
        ("setup=[echo hi]", "setup cannot be overridden"),
        ("resources=gpu", "resources is a section"),
        ("resources.cpus=lots", "resources.cpus: expected a whole number"),
        ("noequals", "write --set key.path=value"),
        ("resources.partition=a b", "resources.partition: 'a b' is not allowed"),
    ],
)
def test_bad_overrides_are_user_errors(home, override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_profile("tests-slurm", [parse_set(override)])


def test_sexagesimal_walltimes_stay_text(home):
    write(home / "sites", "w", "scheduler: slurm\nresources: {walltime: 12:00:00}\n")
    assert load_profile("w").resources.walltime == "12:00:00"


def test_local_scheduler_defaults_to_local_database(home):
    write(home / "sites", "l", "scheduler: local\n")
    assert load_profile("l").database.kind == "local"
    write(home / "sites", "s", "scheduler: slurm\n")
    db = load_profile("s").database
    assert (db.kind, db.value) == ("env", "HPCLAUNCH_DATABASE_URL")


def test_profile_is_frozen(home):
    profile = load_profile("local")
    with pytest.raises(AttributeError):
        profile.scheduler = "slurm"


def test_null_in_a_derived_profile_removes_an_inherited_value(home):
    # -l filesystems=... and ngpus are Polaris's own resources; stock
    # OpenPBS refuses them (fixtures/openpbs-23.06/qsub_rendered_as_is.txt), so a profile
    # for another PBS system built on polaris must be able to drop them.
    write(
        home / "sites",
        "otherpbs",
        "extends: polaris\n"
        "required: [resources.account]\n"
        "resources:\n  filesystems: null\n  gpus: null\n  partition: workq\n",
    )
    profile = load_profile("otherpbs", flag_overrides(account="proj1"))
    assert profile.resources.filesystems is None
    assert not profile.resources.gpus  # back to the default: no GPUs asked for
    assert profile.resources.place == "scatter"  # what is not nulled is still inherited
    script = plan_launch(profile, 2, "L1").chunks[0].script
    directives = [ln for ln in script.splitlines() if ln.startswith("#PBS")]
    assert not any("filesystems" in d or "ngpus" in d for d in directives), directives
    assert "#PBS -l select=1:ncpus=32" in directives


def test_null_for_a_required_inherited_value_is_still_refused(home):
    write(home / "sites", "otherpbs", "extends: polaris\nresources:\n  filesystems: null\n")
    with pytest.raises(UserError, match="filesystems"):
        plan_launch(load_profile("otherpbs", flag_overrides(account="p")), 1, "L1")
