"""Run the real ``hpclaunch`` entry point in-process (click's test runner).

``main()`` is what the console script calls: it turns errors into one line and
an exit code, so tests see exactly what a user sees, without a subprocess.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from click.testing import CliRunner


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_main(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Ran:
    """``hpclaunch ARGS...`` in this process; a traceback escapes as an exception."""
    from hpclaunch.cli import main

    runner = CliRunner()
    with runner.isolation(input=input, env=env) as (out, err, _):
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Ran(
            code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")
        )


def one_error_line(ran: Ran) -> str:
    """Assert the failure a user should see: non-zero exit, one line on stderr."""
    assert ran.code != 0, ran
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert len(lines) == 1, ran.err
    assert "Traceback" not in ran.text
    return lines[0]
