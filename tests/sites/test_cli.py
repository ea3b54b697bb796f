"""The sites / sites show / render commands as a user runs them."""

from __future__ import annotations

import json

import pytest

from hpclaunch.cli import main


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out, err = capsys.readouterr()
    return info.value.code, out, err


def test_sites_lists_every_profile_with_scheduler_and_host(home, capsys):
    (home / "sites" / "broken.yaml").write_text("scheduler: slrum\n")
    code, out, _ = run(["sites", "--json"], capsys)
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["tests-slurm"]["scheduler"] == "slurm" and rows["tests-slurm"]["host"] is None
    assert "did you mean 'slurm'" in rows["broken"]["error"]
    code, out, _ = run(["sites"], capsys)
    assert code == 0 and "tests-slurm" in out and "(this machine)" in out


def test_sites_show_reports_where_values_came_from(home, capsys):
    code, out, _ = run(["sites", "show", "tests-slurm", "--json", "--cpus", "2"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["profile"]["resources"]["cpus"] == 2
    assert data["sources"]["resources.cpus"] == "--cpus"
    assert data["sources"]["resources.walltime"].endswith("tests-slurm.yaml:7")
    assert data["sources"]["worker.command"] == "default"


def test_render_writes_every_script_or_refuses_a_single_file(home, tmp_path, capsys):
    out_dir = tmp_path / "scripts"
    code, _, err = run(
        [
            "render",
            "--site",
            "tests-slurm",
            "-n",
            "25",
            "--launch-id",
            "x1",
            "--set",
            "arrays.max_array_size=10",
            "--out-dir",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "hpcl-x1-0.sh",
        "hpcl-x1-1.sh",
        "hpcl-x1-2.sh",
    ]
    assert "split into 3 arrays" in err
    target = tmp_path / "one.sh"
    code, _, err = run(
        [
            "render",
            "--site",
            "tests-slurm",
            "-n",
            "25",
            "--set",
            "arrays.max_array_size=10",
            "-o",
            str(target),
        ],
        capsys,
    )
    assert code != 0 and "use --out-dir" in err and not target.exists()
    code, out, _ = run(["render", "--site", "tests-slurm", "-n", "1", "--launch-id", "x2"], capsys)
    assert code == 0 and out.startswith("#!/bin/bash\n") and "--job-name=hpcl-x2-0" in out
