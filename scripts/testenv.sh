#!/usr/bin/env bash
# The test environment: PostgreSQL, munge, a one-node SLURM, a one-node Grid
# Engine cell and an sshd on 127.0.0.1, configured under $HPCLAUNCH_TESTENV_DIR
# (default /tmp/hpclaunch-testenv; Grid Engine uses Debian's fixed cell in
# /var/lib/gridengine). Needs root (it starts slurmctld/slurmd and the SGE
# daemons as root).
#
#   scripts/testenv.sh up      start what is missing (idempotent), write env.sh
#   scripts/testenv.sh env     print env.sh
#   scripts/testenv.sh down    drop this run's database; stop the daemons once
#                              no live run uses them any more
#   scripts/testenv.sh down --all   stop everything regardless of other runs
#
# Several runs may share the daemons (e.g. two worktrees testing at once):
# each `up` records a lease for its owner (HPCLAUNCH_TESTENV_OWNER: the PID of
# the test run, as scripts/test.sh sets it; default "manual") holding that
# run's fresh database; `down` drops the owner's database and stops the
# daemons only when no other test run whose PID is still alive holds a lease.
set -euo pipefail

DIR=${HPCLAUNCH_TESTENV_DIR:-/tmp/hpclaunch-testenv}
OWNER=${HPCLAUNCH_TESTENV_OWNER:-manual}
PG_HOST=127.0.0.1
PG_PORT=5432
PARTITION=debug
SLURM_DIR=$DIR/slurm
SSH_DIR=$DIR/ssh
LEASES=$DIR/leases
SLURM_CONF_FILE=$SLURM_DIR/slurm.conf
SGE_ROOT=/var/lib/gridengine # Debian's gridengine packages fix the root and cell
SGE_CELL=default
SGE_SPOOL=/var/spool/gridengine

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres "$@"; }

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }
pidfile_alive() { [[ -f $1 ]] && pid_alive "$(cat "$1" 2>/dev/null)"; }

wait_for() { # wait_for SECONDS DESCRIPTION CMD...
    local secs=$1 what=$2; shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < end)) || return 1
        sleep 0.2
    done
    log "$what ready"
}

# --------------------------------------------------------------------------
# packages

ensure_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v pg_ctlcluster >/dev/null || missing+=(postgresql)
    command -v psql >/dev/null || missing+=(postgresql-client)
    [[ -x /usr/lib/gridengine/sge_qmaster ]] || missing+=(gridengine-master)
    [[ -x /usr/lib/gridengine/sge_execd ]] || missing+=(gridengine-exec)
    command -v qacct >/dev/null || missing+=(gridengine-client)
    # The dashboard's browser tests: Debian's Chromium and its driver (selenium's
    # own manager would try to download a browser).
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
    ((${#missing[@]})) || return 0
    # slurm-wlm is the metapackage that carries slurmctld, slurmd and the client.
    if [[ " ${missing[*]} " =~ \ (slurmctld|slurmd|slurm-client)\  ]]; then missing+=(slurm-wlm); fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends "${missing[@]}")
    if ! "${apt[@]}" </dev/null; then
        apt-get update -q </dev/null
        "${apt[@]}" </dev/null
    fi
}

# --------------------------------------------------------------------------
# PostgreSQL

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

ensure_postgres() {
    if ! pg_ready; then
        local version
        version=$(ls /etc/postgresql | sort -V | tail -n1)
        [[ -n $version ]] || die "no PostgreSQL cluster under /etc/postgresql"
        log "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start
        wait_for 60 "PostgreSQL" pg_ready || die "PostgreSQL does not accept connections on $PG_HOST:$PG_PORT"
    fi
    if ! psql_admin -c 'select 1' >/dev/null 2>&1; then
        # A freshly installed cluster asks for a password on TCP: the tests
        # expect trust for 127.0.0.1, as on the developers' machines.
        local version hba
        version=$(ls /etc/postgresql | sort -V | tail -n1)
        hba=/etc/postgresql/$version/main/pg_hba.conf
        log "allowing trust auth for 127.0.0.1 in $hba"
        sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$version" main reload
        wait_for 30 "PostgreSQL auth" psql_admin -c 'select 1' || die "cannot log in to PostgreSQL as postgres on $PG_HOST"
    fi
}

create_database() { # prints the database name
    local db
    db="hpclaunch_test_$(date +%Y%m%d%H%M%S)_$$_$RANDOM"
    psql_admin -c "CREATE DATABASE \"$db\"" >/dev/null
    printf '%s\n' "$db"
}

drop_database() {
    [[ -n ${1:-} ]] || return 0
    pg_ready || return 0
    psql_admin -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 \
        || log "could not drop database $1"
}

# --------------------------------------------------------------------------
# munge

munge_ok() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

ensure_munge() {
    munge_ok && return 0
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "generating /etc/munge/munge.key"
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
        chown munge:munge /etc/munge/munge.key 2>/dev/null || true
        chmod 0400 /etc/munge/munge.key
    fi
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge 2>/dev/null || true
    chmod 0755 /run/munge
    log "starting munged"
    if id munge >/dev/null 2>&1; then runuser -u munge -- /usr/sbin/munged 9>&-
    else /usr/sbin/munged --force 9>&-; fi
    echo 1 >"$DIR/munge.started"
    wait_for 30 "munge" munge_ok || die "munged does not answer (see /var/log/munge/munged.log)"
}

stop_munge() {
    [[ -f $DIR/munge.started ]] || return 0
    local pidfile=/run/munge/munged.pid
    if pidfile_alive "$pidfile"; then
        log "stopping munged"
        kill "$(cat "$pidfile")" || true
    fi
    rm -f "$DIR/munge.started"
}

# --------------------------------------------------------------------------
# SLURM

free_port() {
    python3 - "$@" <<'EOF'
import socket, sys
preferred = [int(p) for p in sys.argv[1:]]
for port in preferred + [0]:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        continue
    print(s.getsockname()[1])
    s.close()
    break
EOF
}

write_slurm_conf() {
    local node ctld_port slurmd_port
    node=$(hostname -s)
    ctld_port=$(free_port 6817)
    slurmd_port=$(free_port 6818)
    [[ $ctld_port != "$slurmd_port" ]] || slurmd_port=$(free_port)
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/log"
    cat >"$SLURM_CONF_FILE" <<EOF
# hpclaunch test cluster: one node, written by scripts/testenv.sh
ClusterName=hpclaunch-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The node claims more CPUs than this 2-core machine has so that 8-16 one-CPU
# workers run at once; config_overrides stops slurmd draining it for that.
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1,batch_sched_delay=0,sched_min_interval=0,default_queue_depth=2000,max_rpc_cnt=0
SchedulerTimeSlice=5
MessageTimeout=10
SlurmctldTimeout=30
SlurmdTimeout=60
KillWait=2
InactiveLimit=0
MinJobAge=300
CompleteWait=0
ReturnToService=2
MaxArraySize=10001
MaxJobCount=50000
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$node NodeAddr=127.0.0.1 CPUs=16 RealMemory=16000 State=UNKNOWN
PartitionName=$PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
}

slurm_node_idle() {
    local state
    state=$(SLURM_CONF=$SLURM_CONF_FILE sinfo -h -p "$PARTITION" -o '%t' 2>/dev/null | head -n1)
    [[ $state == idle || $state == mix || $state == alloc ]]
}

slurm_smoke() {
    local jobid state end
    jobid=$(SLURM_CONF=$SLURM_CONF_FILE sbatch --parsable -p "$PARTITION" -o /dev/null -e /dev/null \
        -J testenv-smoke --wrap true) || return 1
    jobid=${jobid%%;*}
    end=$((SECONDS + 60))
    while ((SECONDS < end)); do
        state=$(SLURM_CONF=$SLURM_CONF_FILE squeue -h -j "$jobid" -o '%T' 2>/dev/null || true)
        [[ -z $state || $state == COMPLETED ]] && return 0
        [[ $state == FAILED ]] && return 1
        sleep 0.3
    done
    return 1
}

ensure_slurm() {
    export SLURM_CONF=$SLURM_CONF_FILE
    local started=0
    if ! pidfile_alive "$SLURM_DIR/slurmctld.pid"; then
        # A new controller gets a fresh config (free ports) and a clean state.
        if pidfile_alive "$SLURM_DIR/slurmd.pid"; then kill "$(cat "$SLURM_DIR/slurmd.pid")" || true; sleep 0.5; fi
        write_slurm_conf
        rm -rf "$SLURM_DIR/state"/* "$SLURM_DIR/spool"/*
        log "starting slurmctld"
        slurmctld -c -i 9>&-
        started=1
    fi
    if ! pidfile_alive "$SLURM_DIR/slurmd.pid"; then
        log "starting slurmd"
        slurmd 9>&-
        started=1
    fi
    wait_for 60 "slurmctld" scontrol ping ||
        die "slurmctld does not answer (see $SLURM_DIR/log/slurmctld.log)"
    if ! wait_for 60 "SLURM node" slurm_node_idle; then
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
        wait_for 30 "SLURM node" slurm_node_idle ||
            die "the SLURM node is not idle: $(sinfo -h -o '%t %E' 2>&1) (see $SLURM_DIR/log/)"
    fi
    if ((started)); then
        slurm_smoke || die "a trivial sbatch did not complete (see $SLURM_DIR/log/)"
        log "sbatch works"
    fi
}

stop_slurm() {
    export SLURM_CONF=$SLURM_CONF_FILE
    if pidfile_alive "$SLURM_DIR/slurmctld.pid"; then
        scancel --quiet --full --state=PENDING,RUNNING,SUSPENDED -u root >/dev/null 2>&1 || true
    fi
    local name pid
    for name in slurmd slurmctld; do
        if pidfile_alive "$SLURM_DIR/$name.pid"; then
            pid=$(cat "$SLURM_DIR/$name.pid")
            log "stopping $name"
            kill "$pid" || true
            for _ in $(seq 50); do pid_alive "$pid" || break; sleep 0.1; done
            pid_alive "$pid" && kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$SLURM_DIR/$name.pid"
    done
}

# --------------------------------------------------------------------------
# Grid Engine (Son of Grid Engine 8.1.9 from Debian): one cell, one host, queue all.q

sge() { SGE_ROOT=$SGE_ROOT SGE_CELL=$SGE_CELL "$@"; }
sge_host() { hostname; }
sge_answers() { sge qstat -xml >/dev/null 2>&1; }
sge_queue_up() { # the host's all.q instance exists and is not in an alarm/unknown state
    local line
    line=$(sge qstat -f -q all.q 2>/dev/null | grep '^all\.q@' | head -n1)
    [[ -n $line ]] && [[ $(awk '{print $6}' <<<"$line") == "" ]]
}

sge_edit_script() { # sge_edit_script FILE SED-EXPRESSION...: an $EDITOR for qconf -a*/-m*
    local file=$1; shift
    { echo '#!/bin/sh'; printf 'sed -i'; printf " -e '%s'" "$@"; echo ' "$1"'; } >"$file"
    chmod 0755 "$file"
}

sge_configure() {
    local host dir=$DIR/sge
    host=$(sge_host)
    mkdir -p "$dir"
    sge qconf -ss 2>/dev/null | grep -qx "$host" || sge qconf -as "$host" >/dev/null
    if ! sge qconf -sel 2>/dev/null | grep -qx "$host"; then
        printf 'hostname %s\nload_scaling NONE\ncomplex_values NONE\nuser_lists NONE\nxuser_lists NONE\nprojects NONE\nxprojects NONE\nusage_scaling NONE\nreport_variables NONE\n' \
            "$host" >"$dir/exechost"
        sge qconf -Ae "$dir/exechost" >/dev/null
    fi
    # The tests run as root: let root submit (the default min_uid/min_gid is 1000).
    if sge qconf -sconf global | grep -Eq '^min_(uid|gid) +[1-9]'; then
        sge_edit_script "$dir/edit-conf" 's/^min_uid .*/min_uid 0/' 's/^min_gid .*/min_gid 0/'
        EDITOR=$dir/edit-conf sge qconf -mconf global >/dev/null
    fi
    if ! sge qconf -sp smp >/dev/null 2>&1; then
        printf 'pe_name smp\nslots 999\nuser_lists NONE\nxuser_lists NONE\nstart_proc_args NONE\nstop_proc_args NONE\nallocation_rule $pe_slots\ncontrol_slaves FALSE\njob_is_first_task TRUE\nurgency_slots min\naccounting_summary FALSE\nqsort_args NONE\n' \
            >"$dir/pe-smp"
        sge qconf -Ap "$dir/pe-smp" >/dev/null
    fi
    if ! sge qconf -sq all.q >/dev/null 2>&1; then
        sge_edit_script "$dir/edit-queue" 's/^qname .*/qname all.q/' "s/^hostlist .*/hostlist $host/" \
            's/^slots .*/slots 4/' 's/^pe_list .*/pe_list make smp/' \
            's/^shell_start_mode .*/shell_start_mode posix_compliant/'
        EDITOR=$dir/edit-queue sge qconf -aq all.q >/dev/null
    fi
    # A busy 2-core test machine must not put the queue in its load alarm state
    # (np_load_avg over 1.75 by default), where it takes no jobs.
    if ! sge qconf -sq all.q | grep -Eq '^load_thresholds +NONE'; then
        sge qconf -rattr queue load_thresholds NONE all.q >/dev/null
    fi
}

ensure_sge() {
    local host common=$SGE_ROOT/$SGE_CELL/common
    host=$(sge_host)
    # Debian's postinst leaves act_qmaster empty without a debconf answer.
    [[ -s $common/act_qmaster ]] || echo "$host" >"$common/act_qmaster"
    # 127.0.0.1 resolves to "localhost" first: tell the cell both names are this host.
    grep -qx "$host localhost" "$common/host_aliases" 2>/dev/null || echo "$host localhost" >>"$common/host_aliases"
    if [[ ! -e $SGE_SPOOL/spooldb/sge ]]; then
        su -s /bin/sh sgeadmin -c "/usr/share/gridengine/scripts/init_cluster $SGE_ROOT $SGE_CELL $SGE_SPOOL/spooldb sgeadmin" >/dev/null
    fi
    if ! sge_answers; then
        log "starting sge_qmaster"
        sge /usr/sbin/sge_qmaster 9>&-
        echo 1 >"$DIR/sge.started"
        wait_for 60 "sge_qmaster" sge_answers ||
            die "sge_qmaster does not answer (see $SGE_SPOOL/qmaster/messages)"
    fi
    sge_configure
    if ! pidfile_alive "$SGE_SPOOL/execd/localhost/execd.pid" && ! pidfile_alive "$SGE_SPOOL/execd/$host/execd.pid"; then
        log "starting sge_execd"
        sge /usr/sbin/sge_execd 9>&-
        echo 1 >"$DIR/sge.started"
    fi
    wait_for 90 "Grid Engine queue all.q" sge_queue_up ||
        die "the Grid Engine queue is not up: $(sge qstat -f 2>&1 | tail -n2) (see $SGE_SPOOL/execd/)"
}

stop_sge() {
    [[ -f $DIR/sge.started ]] || return 0 # only a cell this script started
    if sge_answers; then
        sge qdel -u root '*' >/dev/null 2>&1 || true
        log "stopping the Grid Engine daemons"
        sge qconf -ke "$(sge_host)" >/dev/null 2>&1 || true
        sge qconf -km >/dev/null 2>&1 || true
    fi
    rm -f "$DIR/sge.started"
}

# --------------------------------------------------------------------------
# sshd

sshd_ok() {
    [[ -f $SSH_DIR/port ]] || return 1
    ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=5 -o IdentitiesOnly=yes \
        -o UserKnownHostsFile="$SSH_DIR/known_hosts" -o StrictHostKeyChecking=yes \
        -i "$SSH_DIR/id_ed25519" -p "$(cat "$SSH_DIR/port")" root@127.0.0.1 \
        'test "$SLURM_CONF" = '"'$SLURM_CONF_FILE'"
}

ensure_sshd() {
    mkdir -p "$SSH_DIR"
    chmod 0700 "$SSH_DIR"
    if pidfile_alive "$SSH_DIR/sshd.pid"; then
        sshd_ok && return 0
        kill "$(cat "$SSH_DIR/sshd.pid")" || true
        sleep 0.3
    fi
    [[ -f $SSH_DIR/ssh_host_ed25519_key ]] ||
        ssh-keygen -q -t ed25519 -N '' -C hpclaunch-testenv-host -f "$SSH_DIR/ssh_host_ed25519_key"
    [[ -f $SSH_DIR/id_ed25519 ]] ||
        ssh-keygen -q -t ed25519 -N '' -C hpclaunch-testenv-client -f "$SSH_DIR/id_ed25519"
    cp "$SSH_DIR/id_ed25519.pub" "$SSH_DIR/authorized_keys"
    chmod 0600 "$SSH_DIR/authorized_keys"
    local port
    port=$(free_port)
    echo "$port" >"$SSH_DIR/port"
    printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$SSH_DIR/ssh_host_ed25519_key.pub")" \
        >"$SSH_DIR/known_hosts"
    cat >"$SSH_DIR/sshd_config" <<EOF
# hpclaunch test sshd, written by scripts/testenv.sh
Port $port
ListenAddress 127.0.0.1
HostKey $SSH_DIR/ssh_host_ed25519_key
PidFile $SSH_DIR/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
AllowTcpForwarding yes
MaxSessions 200
MaxStartups 200:30:400
SetEnv SLURM_CONF=$SLURM_CONF_FILE
Subsystem sftp internal-sftp
LogLevel INFO
EOF
    mkdir -p /run/sshd
    chmod 0755 /run/sshd
    log "starting sshd on 127.0.0.1:$port"
    /usr/sbin/sshd -f "$SSH_DIR/sshd_config" -E "$SSH_DIR/sshd.log" 9>&-
    wait_for 30 "sshd" sshd_ok || die "cannot log in to the test sshd (see $SSH_DIR/sshd.log)"
}

# A user whose login needs a key AND a keyboard-interactive answer (its
# password, through PAM): the transport tests start their own sshd with
# `AuthenticationMethods publickey,keyboard-interactive` for it, to exercise
# MFA-style prompts against a real server.
MFA_USER=hpclaunch-mfa

ensure_mfa_user() {
    if ! id "$MFA_USER" >/dev/null 2>&1; then
        command -v useradd >/dev/null || { log "no useradd: skipping the MFA test user"; return 0; }
        useradd -M -d "$DIR/mfa-home" -s /bin/sh "$MFA_USER"
        echo 1 >"$DIR/mfa_user.created"
    fi
    mkdir -p "$DIR/mfa-home"
    chown "$MFA_USER" "$DIR/mfa-home"
    if [[ ! -s $SSH_DIR/mfa_password ]]; then
        (umask 077; head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$SSH_DIR/mfa_password")
    fi
    printf '%s:%s\n' "$MFA_USER" "$(cat "$SSH_DIR/mfa_password")" | chpasswd
}

stop_mfa_user() {
    [[ -f $DIR/mfa_user.created ]] || return 0
    userdel "$MFA_USER" 2>/dev/null || log "could not remove user $MFA_USER"
    rm -f "$DIR/mfa_user.created" "$SSH_DIR/mfa_password"
}

stop_sshd() {
    if pidfile_alive "$SSH_DIR/sshd.pid"; then
        log "stopping sshd"
        kill "$(cat "$SSH_DIR/sshd.pid")" || true
    fi
    rm -f "$SSH_DIR/sshd.pid"
}

# --------------------------------------------------------------------------
# leases and env.sh

write_env() { # write_env DB FILE
    local tmp
    tmp=$(mktemp "$DIR/.env.XXXXXX")
    cat >"$tmp" <<EOF
# hpclaunch test environment (scripts/testenv.sh up); source it.
export HPCLAUNCH_TEST_PG_URL=postgresql://postgres@$PG_HOST:$PG_PORT/$1
export SLURM_CONF=$SLURM_CONF_FILE
export HPCLAUNCH_TEST_SLURM_PARTITION=$PARTITION
export HPCLAUNCH_TEST_SSH_HOST=127.0.0.1
export HPCLAUNCH_TEST_SSH_PORT=$(cat "$SSH_DIR/port")
export HPCLAUNCH_TEST_SSH_USER=root
export HPCLAUNCH_TEST_SSH_KEY=$SSH_DIR/id_ed25519
export HPCLAUNCH_TEST_KNOWN_HOSTS=$SSH_DIR/known_hosts
export HPCLAUNCH_TEST_MFA_USER=$MFA_USER
export HPCLAUNCH_TEST_MFA_PASSWORD_FILE=$SSH_DIR/mfa_password
export SGE_ROOT=$SGE_ROOT
export SGE_CELL=$SGE_CELL
export HPCLAUNCH_TESTENV_DIR=$DIR
EOF
    chmod 0644 "$tmp"
    mv -f "$tmp" "$2"
}

live_leases() {
    local f owner n=0
    for f in "$LEASES"/*.db; do
        [[ -e $f ]] || continue
        owner=$(basename "$f" .db)
        [[ $owner =~ ^[0-9]+$ && $owner != "$OWNER" ]] || continue
        pid_alive "$owner" && n=$((n + 1))
    done
    echo "$n"
}

cmd_up() {
    mkdir -p "$DIR" "$LEASES"
    exec 9>"$DIR/lock"
    flock 9
    ensure_packages
    ensure_postgres
    ensure_munge
    ensure_slurm
    ensure_sge
    ensure_sshd
    ensure_mfa_user
    local lease=$LEASES/$OWNER.db db=""
    if [[ -f $lease ]]; then
        db=$(cat "$lease")
        psql_admin -tA -c "select 1 from pg_database where datname = '$db'" | grep -q 1 || db=""
    fi
    if [[ -z $db ]]; then
        db=$(create_database)
        echo "$db" >"$lease"
        log "created database $db"
    fi
    write_env "$db" "$LEASES/$OWNER.env"
    cp "$LEASES/$OWNER.env" "$DIR/env.sh.tmp"
    mv -f "$DIR/env.sh.tmp" "$DIR/env.sh"
    log "ready: source $DIR/env.sh"
}

cmd_down() {
    local all=0
    [[ ${1:-} == --all ]] && all=1
    [[ -d $DIR ]] || return 0
    mkdir -p "$LEASES"
    exec 9>"$DIR/lock"
    flock 9
    if [[ -f $LEASES/$OWNER.db ]]; then
        drop_database "$(cat "$LEASES/$OWNER.db")"
        rm -f "$LEASES/$OWNER.db" "$LEASES/$OWNER.env"
    fi
    if ((!all)) && (($(live_leases) > 0)); then
        log "other runs still use the environment; leaving the daemons up"
        return 0
    fi
    local f
    for f in "$LEASES"/*.db; do
        [[ -e $f ]] || continue
        drop_database "$(cat "$f")"
        rm -f "$f" "${f%.db}.env"
    done
    stop_sshd
    stop_mfa_user
    stop_slurm
    stop_sge
    stop_munge
    rm -f "$DIR/env.sh"
    log "stopped"
}

case ${1:-} in
up) cmd_up ;;
down) cmd_down "${2:-}" ;;
env)
    [[ -f $DIR/env.sh ]] || die "no $DIR/env.sh: run '$0 up' first"
    cat "$DIR/env.sh"
    ;;
*)
    echo "usage: $0 up|down [--all]|env" >&2
    exit 2
    ;;
esac
