#!/usr/bin/env bash
# The test command: install hpclaunch (a wheel, not editable) into .venv, start
# the test environment (scripts/testenv.sh), lint, check formatting and types, run pytest against the
# installed package, and stop the environment again whatever happens.
#
#   scripts/test.sh [pytest arguments...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python

if [[ ! -x $PY ]]; then
    echo "test.sh: creating .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q '.[test]'
else
    # Keep an existing venv's copy current; an editable install (a developer's)
    # already is, so it is left alone.
    installed=$("$PY" -P -c 'import hpclaunch, os; print(os.path.dirname(hpclaunch.__file__))' 2>/dev/null || true)
    if [[ -z $installed ]]; then
        .venv/bin/pip install -q '.[test]'
    elif [[ $installed != "$ROOT/hpclaunch" ]]; then
        .venv/bin/pip install -q '.[test]'
        .venv/bin/pip install -q --no-deps --force-reinstall .
    fi
fi

export HPCLAUNCH_TESTENV_OWNER=$$
trap 'bash "$ROOT/scripts/testenv.sh" down || true' EXIT
bash scripts/testenv.sh up
# shellcheck disable=SC1091
source "${HPCLAUNCH_TESTENV_DIR:-/tmp/hpclaunch-testenv}/leases/$$.env"
export HPCLAUNCH_TESTENV_REQUIRED=1

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy

# -P: the current directory (the source tree) is not put on sys.path, so
# `import hpclaunch` finds the installed package; conftest.py checks it.
HPCLAUNCH_TEST_PACKAGE_DIR=$("$PY" -P -c 'import hpclaunch, os; print(os.path.dirname(hpclaunch.__file__))')
export HPCLAUNCH_TEST_PACKAGE_DIR
echo "test.sh: testing hpclaunch from $HPCLAUNCH_TEST_PACKAGE_DIR" >&2

set +e
"$PY" -P -m pytest "$@"
status=$?
set -e
if ((status == 5)); then
    echo "test.sh: pytest collected no tests; that is a failure" >&2
    status=1
fi
exit "$status"
