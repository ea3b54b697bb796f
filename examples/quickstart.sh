#!/usr/bin/env bash
# The README's main command: install hpclaunch into .venv, put a parameter sweep on
# the embedded SQLite queue (~/.hpclaunch), run it with 4 local workers
# (`submit --site local`: no cluster needed), and show the results.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x .venv/bin/hpclaunch ]]; then
    echo "quickstart: installing hpclaunch into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install -q .
fi
H=.venv/bin/hpclaunch

batch=$($H enqueue --file examples/sweep.yaml --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["batch_id"])')
echo "queued batch $batch (8 tasks)"
$H submit --site local --workers 4

# Wait until every task is completed, failed or canceled (the workers exit when the
# queue is empty); exit 0 only if all completed, and a one-line summary either way.
$H batches wait "$batch" --timeout 300 || true

$H status --all
$H tasks --batch "$batch"
first=$($H tasks --batch "$batch" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
$H tasks show "$first"
# The sweep as one table: parameters, status, runtime and result of every task.
$H results "$batch" --format csv
