#!/usr/bin/env bash
# The compose topology without containers, on one machine, on loopback: PostgreSQL (job database), RabbitMQ
# (Celery broker), one `tilewright serve` and N `tilewright worker` processes sharing one data folder.
#
#   scripts/cluster.sh            # or `make cluster`; Ctrl-C (or SIGTERM) stops everything it started
#
# Everything lives in one state folder (CLUSTER_STATE, default: a new temporary folder; removed at exit
# unless CLUSTER_KEEP=1): the PostgreSQL cluster, RabbitMQ's mnesia and logs, the data folder, every log.
# Ports are free loopback ports picked at start unless given. As root, the server packages are installed
# with apt-get if missing, and PostgreSQL runs as the `postgres` user (initdb refuses root).
#
# Knobs (environment): CLUSTER_PORT (server), CLUSTER_PG_PORT, CLUSTER_AMQP_PORT, CLUSTER_DIST_PORT,
# CLUSTER_EPMD_PORT, CLUSTER_WORKERS (2), CLUSTER_CONCURRENCY (1 job per worker), CLUSTER_STATE, CLUSTER_KEEP,
# TILEWRIGHT (the tilewright command; default: .venv/bin/tilewright, else the one on PATH). Any other
# TILEWRIGHT_* setting in the environment reaches the server and the workers as it is.
set -euo pipefail

say() { printf 'cluster: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

here=$(cd "$(dirname "$0")/.." && pwd)
TILEWRIGHT=${TILEWRIGHT:-}
if [ -z "$TILEWRIGHT" ]; then
    if [ -x "$here/.venv/bin/tilewright" ]; then TILEWRIGHT=$here/.venv/bin/tilewright; else TILEWRIGHT=$(command -v tilewright || true); fi
fi
[ -n "$TILEWRIGHT" ] && [ -x "$TILEWRIGHT" ] || die "no tilewright command: run \`make setup\` or set TILEWRIGHT"

# -- the servers' packages (Debian), as the Makefile does for redis-server ------------------------------------
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
RABBIT_BIN=${RABBIT_BIN:-/usr/lib/rabbitmq/bin}
need=()
[ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || need+=(postgresql)
[ -x "$RABBIT_BIN/rabbitmq-server" ] || need+=(rabbitmq-server)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${need[*]}: apt-get install -y ${need[*]} (as root)"
    say "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_ok() { python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null; }
PORT=${CLUSTER_PORT:-$(free_port)}
PG_PORT=${CLUSTER_PG_PORT:-$(free_port)}
AMQP_PORT=${CLUSTER_AMQP_PORT:-$(free_port)}
DIST_PORT=${CLUSTER_DIST_PORT:-$(free_port)}
EPMD_PORT=${CLUSTER_EPMD_PORT:-$(free_port)}
WORKERS=${CLUSTER_WORKERS:-2}
CONCURRENCY=${CLUSTER_CONCURRENCY:-1}

STATE=${CLUSTER_STATE:-}
made_state=0
if [ -z "$STATE" ]; then STATE=$(mktemp -d /tmp/tilewright-cluster.XXXXXX); made_state=1; fi
mkdir -p "$STATE" && STATE=$(cd "$STATE" && pwd)
chmod 755 "$STATE"  # the postgres user reaches its own folder inside
export CLUSTER_STATE=$STATE  # every process started below carries it: `grep -l CLUSTER_STATE=... /proc/*/environ`
: >"$STATE/pids"

# -- start and stop ---------------------------------------------------------------------------------------------
# each service runs in a session of its own (setsid): Ctrl-C reaches this script only, which stops them in
# order (workers, server, broker, database), each whole process group, by its id
declare -a names=() pids=() signals=()
start() {  # start NAME STOP-SIGNAL COMMAND...: run COMMAND in its own session, log in STATE/NAME.log
    local name=$1 signal=$2
    shift 2
    setsid "$@" >>"$STATE/$name.log" 2>&1 </dev/null &
    names+=("$name") pids+=($!) signals+=("$signal")
    echo "$! $name" >>"$STATE/pids"
}
stopped=0
stop_all() {
    [ $stopped = 1 ] && return
    stopped=1
    trap '' INT TERM
    say "stopping"
    [ -z "${sleeper:-}" ] || kill "$sleeper" 2>/dev/null || true
    local i pid
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        pid=${pids[$i]}
        kill -"${signals[$i]}" -- "-$pid" 2>/dev/null || continue
        for _ in $(seq 1 150); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 -- "-$pid" 2>/dev/null; then
            say "${names[$i]} did not stop in 15 s: killed"
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    # the Erlang port mapper a node starts is a daemon of its own (its own session): ours listens on EPMD_PORT
    if [ -n "${epmd_started:-}" ]; then
        ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
    fi
    [ -z "${made_pg_dir:-}" ] || [ "${CLUSTER_KEEP:-0}" = 1 ] || rm -rf "$PG_DIR"
    if [ $made_state = 1 ] && [ "${CLUSTER_KEEP:-0}" != 1 ]; then rm -rf "$STATE"; else say "state kept in $STATE"; fi
    say "stopped"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for() {  # wait_for SECONDS WHAT COMMAND...: poll COMMAND until it succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq 1 $((seconds * 5))); do
        "$@" && return 0
        for i in "${!pids[@]}"; do kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited: $(tail -n 20 "$STATE/${names[$i]}.log")"; done
        sleep 0.2
    done
    die "$what not ready after $seconds s (logs in $STATE)"
}

as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u "${CLUSTER_PG_USER:-postgres}" --); fi

# -- PostgreSQL -------------------------------------------------------------------------------------------------
PG_DIR=$STATE/postgres
mkdir -p "$PG_DIR"
if [ ${#as_pg[@]} != 0 ]; then
    chown "${CLUSTER_PG_USER:-postgres}" "$PG_DIR"
    if ! "${as_pg[@]}" test -w "$PG_DIR"; then  # STATE inside a folder only root may enter: a folder of its own
        PG_DIR=$(mktemp -d /tmp/tilewright-cluster-pg.XXXXXX) && made_pg_dir=1
        chown "${CLUSTER_PG_USER:-postgres}" "$PG_DIR"
    fi
fi
if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    "${as_pg[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U tilewright --auth=trust -E UTF8 >"$STATE/initdb.log" 2>&1 ||
        die "initdb failed: $(tail -n 5 "$STATE/initdb.log")"
fi
start postgres INT "${as_pg[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PG_DIR" -c fsync=off
wait_for 30 PostgreSQL "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
"$PG_BIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U tilewright -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'tilewright'" | grep -q 1 ||
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tilewright tilewright

# -- RabbitMQ ---------------------------------------------------------------------------------------------------
# a node of its own: name, ports, port mapper, mnesia, logs, config, no plugins, and a HOME for its cookie
RABBIT="$STATE/rabbitmq"
mkdir -p "$RABBIT/home" "$RABBIT/mnesia" "$RABBIT/log"
cat >"$RABBIT/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
loopback_users.guest = true
EOF
echo '[].' >"$RABBIT/enabled_plugins"
NODE=tilewright-$$@localhost
rabbit_env=(env HOME="$RABBIT/home" ERL_EPMD_PORT="$EPMD_PORT" RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$DIST_PORT" RABBITMQ_MNESIA_BASE="$RABBIT/mnesia"
    RABBITMQ_LOG_BASE="$RABBIT/log" RABBITMQ_CONFIG_FILE="$RABBIT/rabbitmq.conf"
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT/enabled_plugins" RABBITMQ_PID_FILE="$RABBIT/rabbitmq.pid")
epmd_started=1
start rabbitmq TERM "${rabbit_env[@]}" "$RABBIT_BIN/rabbitmq-server"
wait_for 60 RabbitMQ port_open "$AMQP_PORT"

# -- tilewright -------------------------------------------------------------------------------------------------
export TILEWRIGHT_EXECUTOR=celery
export TILEWRIGHT_BROKER_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT//"
export TILEWRIGHT_BROKER_FALLBACK=false  # a cluster whose broker is down says so instead of running jobs in-server
export TILEWRIGHT_DATABASE_URL="postgresql+psycopg://tilewright@127.0.0.1:$PG_PORT/tilewright"
export TILEWRIGHT_DATA_DIR=${TILEWRIGHT_DATA_DIR:-$STATE/data}
export TILEWRIGHT_HOST=127.0.0.1 TILEWRIGHT_PORT=$PORT
mkdir -p "$TILEWRIGHT_DATA_DIR"

start server TERM "$TILEWRIGHT" serve
# live first (/healthz), ready later: /readyz says 503 until a worker answers, and the workers start next
wait_for 60 "tilewright serve" http_ok "http://127.0.0.1:$PORT/healthz"
for n in $(seq 1 "$WORKERS"); do
    start "worker$n" TERM "$TILEWRIGHT" worker --name "w$n-$$@%h" --concurrency "$CONCURRENCY"
done
for n in $(seq 1 "$WORKERS"); do
    wait_for 60 "worker $n" grep -q "ready\." "$STATE/worker$n.log"
done
wait_for 60 "the cluster (/readyz: database, broker, workers)" http_ok "http://127.0.0.1:$PORT/readyz"

cat <<EOF
cluster: ready: http://127.0.0.1:$PORT
cluster: PostgreSQL 127.0.0.1:$PG_PORT, RabbitMQ 127.0.0.1:$AMQP_PORT (node $NODE), $WORKERS workers; state and logs in $STATE
cluster: upload: curl -F file=@SLIDE 'http://127.0.0.1:$PORT/images?collection=demo'; Ctrl-C stops everything
EOF

# until Ctrl-C / SIGTERM, or until a process dies (then everything stops, exit 1)
while :; do
    for i in "${!pids[@]}"; do
        kill -0 "${pids[$i]}" 2>/dev/null || die "${names[$i]} exited: $(tail -n 20 "$STATE/${names[$i]}.log")"
    done
    sleep 1 &
    sleeper=$!
    wait $sleeper || true
done
