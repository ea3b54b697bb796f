#!/bin/bash
# hpclaunch batch script for site derecho (PBS Pro / OpenPBS): launch golden, chunk 0.
# 1 element(s) x 7 worker(s). Generated: re-render instead of editing.
#PBS -N hpcl-golden-0
#PBS -q main
#PBS -A golden-acct
#PBS -l select=1:ncpus=128
#PBS -l walltime=06:00:00
#PBS -r y
#PBS -o golden/hpcl-golden-0.out
#PBS -e golden/hpcl-golden-0.err

cd "${PBS_O_WORKDIR:-$HOME}" || exit 1
mkdir -p "$HOME"/hpclaunch/golden
export HPCLAUNCH_LAUNCH_ID=golden
export HPCLAUNCH_SCHEDULER=pbs
if [ -z "${HPCLAUNCH_DATABASE_URL:-}" ]; then
  echo "hpclaunch: HPCLAUNCH_DATABASE_URL is not set in the job environment; workers cannot find the queue" >&2
  exit 78
fi

# Start 7 worker(s) in the background and wait: the batch shell then
# runs its trap when a signal arrives and passes it on. USR1 (the scheduler's warning
# before the walltime) stays USR1 so they know the time is up; TERM and INT become
# TERM. Either way each one stops claiming and lets its running task finish within
# the grace period, or puts it back on the queue.
hpcl_pids=()
hpcl_forward() { [ -n "${hpcl_pids[*]:-}" ] && kill -"$1" ${hpcl_pids[*]} 2>/dev/null; }
trap 'hpcl_forward USR1' USR1
trap 'hpcl_forward TERM' TERM INT
# Each worker's own output goes to the launch folder as it comes (`hpclaunch logs
# --follow` reads it there); the scheduler's -o/-e files keep this shell's messages.
for hpcl_slot in $(seq 7); do
  hpclaunch worker --close-on-empty-queue -t default --walltime 06:00:00 --launch-id golden --grace 30 --log-dir "$HOME"/hpclaunch/golden >> "$HOME"/hpclaunch/golden/hpcl-golden-0.workers.out 2>> "$HOME"/hpclaunch/golden/hpcl-golden-0.workers.err &
  hpcl_pids+=("$!")
done
hpcl_status=0
for hpcl_pid in "${hpcl_pids[@]}"; do
  while :; do
    wait "$hpcl_pid"
    hpcl_rc=$?
    # wait returns early (status > 128) when a trapped signal arrives: wait again.
    if [ "$hpcl_rc" -gt 128 ] && kill -0 "$hpcl_pid" 2>/dev/null; then continue; fi
    break
  done
  [ "$hpcl_rc" -eq 0 ] || hpcl_status=$hpcl_rc
done
# A failing worker (a missing command, a broken Python) said why in its own file: repeat
# the end of it here, so the scheduler's -e file (and `status` on a broken launch) shows it.
if [ "$hpcl_status" -ne 0 ] && [ -s "$HOME"/hpclaunch/golden/hpcl-golden-0.workers.err ]; then
  echo "hpclaunch: a worker exited with status $hpcl_status; the end of its stderr:" >&2
  tail -n 5 "$HOME"/hpclaunch/golden/hpcl-golden-0.workers.err >&2
fi
exit "$hpcl_status"
