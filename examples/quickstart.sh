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

# Wait until the batch has nothing pending or running (the workers exit when the queue is empty).
for _ in $(seq 600); do
    left=$($H tasks --batch "$batch" --json | python3 -c 'import json,sys; print(sum(t["status"] in ("pending", "running") for t in json.load(sys.stdin)))')
    [[ $left == 0 ]] && break
    sleep 0.5
done

$H status --all
$H tasks --batch "$batch"
first=$($H tasks --batch "$batch" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
$H tasks show "$first"
