"""A corpus of malformed profiles: each gives one clear error line and a non-zero exit.

Every file in ``malformed/`` starts with ``# expect: TEXT``; the CLI must print
exactly one line, ``error: FILE:LINE: ...`` containing TEXT, and no traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hpclaunch.cli import main

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} needs an '# expect:' first line"
    return first[len("# expect: ") :]


def _run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
@pytest.mark.parametrize("command", ["show", "render"])
def test_malformed_profile_gives_one_clear_line(path, command, home, capsys):
    args = (
        ["sites", "show", str(path)]
        if command == "show"
        else ["render", "--site", str(path), "--workers", "2"]
    )
    code, out, err = _run(args, capsys)
    assert code != 0
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("error: "), err
    assert _expected(path) in lines[0], err
    # the message names the file (and, where a key is at fault, its line)
    assert path.name in lines[0], err
