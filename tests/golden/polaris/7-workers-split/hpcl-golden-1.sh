#!/bin/bash
# hpclaunch batch script for site polaris (PBS Pro / OpenPBS): launch golden, chunk 1.
# 1 element(s) x 3 worker(s). Generated: re-render instead of editing.
#PBS -N hpcl-golden-1
#PBS -q preemptable
#PBS -A golden-acct
#PBS -l select=1:ncpus=48:ngpus=4
#PBS -l walltime=06:00:00
#PBS -l filesystems=home:eagle
#PBS -l place=scatter
#PBS -r y
#PBS -o golden/hpcl-golden-1.out
#PBS -e golden/hpcl-golden-1.err

cd "${PBS_O_WORKDIR:-$HOME}" || exit 1
mkdir -p "$HOME"/hpclaunch/golden
export HPCLAUNCH_LAUNCH_ID=golden
export HPCLAUNCH_SCHEDULER=pbs
if [ -z "${HPCLAUNCH_DATABASE_URL:-}" ]; then
  echo "hpclaunch: HPCLAUNCH_DATABASE_URL is not set in the job environment; workers cannot find the queue" >&2
  exit 78
fi

# Start 3 worker(s) in the background and wait: the batch shell then
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
# One GPU set per worker slot (1 each), sliced from the devices this job was
# given (CUDA_VISIBLE_DEVICES as the scheduler set it; unset: the node's 4).
hpcl_gpus="${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 3)}"
IFS=, read -r -a hpcl_gpus <<< "$hpcl_gpus"
hpcl_ngpus=${#hpcl_gpus[@]}
if [ "$hpcl_ngpus" -lt 3 ]; then
  echo "hpclaunch: 3 workers x 1 GPU(s) need 3 devices, the job has $hpcl_ngpus ($CUDA_VISIBLE_DEVICES); workers share them" >&2
fi
for hpcl_slot in $(seq 3); do
  hpcl_first=$(( ((hpcl_slot - 1) * 1) % hpcl_ngpus ))
  hpcl_mine=$(IFS=,; echo "${hpcl_gpus[*]:hpcl_first:1}")
  CUDA_VISIBLE_DEVICES="$hpcl_mine" hpclaunch worker --close-on-empty-queue -t default --walltime 06:00:00 --launch-id golden --grace 30 --log-dir "$HOME"/hpclaunch/golden >> "$HOME"/hpclaunch/golden/hpcl-golden-1.workers.out 2>> "$HOME"/hpclaunch/golden/hpcl-golden-1.workers.err &
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
if [ "$hpcl_status" -ne 0 ] && [ -s "$HOME"/hpclaunch/golden/hpcl-golden-1.workers.err ]; then
  echo "hpclaunch: a worker exited with status $hpcl_status; the end of its stderr:" >&2
  tail -n 5 "$HOME"/hpclaunch/golden/hpcl-golden-1.workers.err >&2
fi
exit "$hpcl_status"
