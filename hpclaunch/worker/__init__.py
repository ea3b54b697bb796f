"""The worker: claim, run, heartbeat, obey signals and deadlines."""
