"""Golden files: every shipped profile's rendered scripts, compared byte for byte.

Regenerate on purpose with ``HPCLAUNCH_REGEN_GOLDEN=1 pytest tests/render/test_golden.py``
and review the diff before committing it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hpclaunch import paths
from hpclaunch.render import plan_launch
from hpclaunch.sites import flag_overrides, load_profile, parse_set

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
REGEN = os.environ.get("HPCLAUNCH_REGEN_GOLDEN") == "1"
SHIPPED = sorted(p.stem for p in paths.shipped_dir("site-configs").glob("*.yaml"))
CASES = {
    "3-workers": (3, []),
    "7-workers-split": (7, ["arrays.max_array_size=2", "arrays.max_concurrent=1"]),
}


def _render(name: str, workers: int, sets: list[str]) -> dict[str, str]:
    profile = load_profile(name)
    flags = {"account": "golden-acct"} if profile.resources.account is None else {}
    profile = load_profile(name, flag_overrides(**flags) + [parse_set(s) for s in sets])
    plan = plan_launch(profile, workers, "golden", tags=None)
    summary = plan.to_dict()
    for chunk in summary["chunks"]:
        chunk.pop("script")
    files = {c.filename: c.script for c in plan.chunks}
    files["plan.json"] = json.dumps(summary, indent=2, sort_keys=True) + "\n"
    return files


def test_every_shipped_profile_has_golden_files():
    assert SHIPPED, "no shipped profiles found"
    if not REGEN:
        missing = [n for n in SHIPPED if not (GOLDEN / n).is_dir()]
        assert missing == [], f"no golden files for {missing}; run with HPCLAUNCH_REGEN_GOLDEN=1"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", SHIPPED)
def test_rendered_scripts_match_golden_files(home, name, case):
    workers, sets = CASES[case]
    files = _render(name, workers, sets)
    folder = GOLDEN / name / case
    if REGEN:
        if folder.exists():
            for old in folder.iterdir():
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        for filename, text in files.items():
            (folder / filename).write_text(text, encoding="utf-8", newline="")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*"))}
    assert sorted(files) == sorted(expected), "different scripts than the golden files"
    for filename, text in files.items():
        assert text == expected[filename], f"{name}/{case}/{filename} differs from golden"
