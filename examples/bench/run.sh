#!/usr/bin/env bash
# Runs the whole comparison of docs/benchmarks.md on this machine: chatroom
# (the real chatroom-server binary), the reference ceiling, redis-server and
# nats-server, all on free loopback ports, through the same load tool; then
# writes the tables into docs/benchmarks.md between the bench markers.
#
#   bash examples/bench/run.sh            # everything (about 10 minutes)
#   QUICK=1 bash examples/bench/run.sh    # shorter runs, no callgrind
#   NO_DOCS=1 bash examples/bench/run.sh  # print the tables, leave the docs alone
#   PARTS="idle instructions" bash examples/bench/run.sh
#                                         # only those parts (of: throughput runtime
#                                         # idle instructions cluster), added to the
#                                         # last results
#   PARTS=cluster bash examples/bench/run.sh
#                                         # one node in-process, one and three nodes
#                                         # on one NATS (about 2 minutes)
#
# Every server is stopped on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

SECS=${SECS:-5}
[[ -n ${QUICK:-} ]] && SECS=2
OUT=$ROOT/target/bench
mkdir -p "$OUT"
RESULTS=$OUT/results.txt
PARTS=${PARTS:-}
if [[ -z $PARTS ]]; then
    PARTS="throughput runtime idle instructions cluster"
    : >"$RESULTS"
fi
part() { [[ " $PARTS " == *" $1 "* ]]; }
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '\n== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nats-server >/dev/null || need+=(nats-server)
[[ -z ${QUICK:-} ]] && ! command -v valgrind >/dev/null && need+=(valgrind)
if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${need[@]}" >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y "${need[@]}" >/dev/null; }
fi

log "building"
cargo build --release --locked -p chatroom-server -p chatroom-examples --bin chatroom-server --bin chatroom-bench >&2
BENCH=$ROOT/target/release/chatroom-bench
SERVER=$ROOT/target/release/chatroom-server

# Both sides of every loopback connection live on this machine; take all the
# descriptors the hard limit allows (a session cannot raise the hard limit).
ulimit -n "$(ulimit -Hn)"
FDS=$(ulimit -n)

# --- servers -----------------------------------------------------------------
free_port() {
    local p
    for ((p = 20000 + RANDOM % 20000; ; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
}

# wait_port PORT [TENTHS]: waits up to TENTHS tenths of a second (10 s).
wait_port() {
    local i
    for ((i = 0; i < ${2:-100}; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    cat "$WORK"/*-"$1".log >&2 2>/dev/null || true
    return 1
}

# start NAME [ENV=VALUE ...]: starts one system on a free port and sets
# PORT and PID. The rate limit is lifted only where the caller passes it.
start() {
    local name=$1
    shift
    PORT=$(free_port)
    case $name in
        chatroom | chatroom-memory | node)
            mkdir -p "$WORK/data-$PORT"
            env RUST_LOG=warn CHATROOM_DATA_DIR="$WORK/data-$PORT" "$@" \
                "$SERVER" --listen "127.0.0.1:$PORT" >"$WORK/$name-$PORT.log" 2>&1 &
            ;;
        engine-multi | engine-current)
            env "$@" "$BENCH" server --listen "127.0.0.1:$PORT" --runtime "${name#engine-}" \
                >"$WORK/$name-$PORT.log" 2>&1 &
            ;;
        ceiling)
            "$BENCH" ceiling --listen "127.0.0.1:$PORT" >"$WORK/$name-$PORT.log" 2>&1 &
            ;;
        redis)
            redis-server --port "$PORT" --bind 127.0.0.1 --protected-mode no --save '' --appendonly no \
                --daemonize no "$@" >"$WORK/$name-$PORT.log" 2>&1 &
            ;;
        nats)
            nats-server -a 127.0.0.1 -p "$PORT" "$@" >"$WORK/$name-$PORT.log" 2>&1 &
            ;;
    esac
    PID=$!
    PIDS+=("$PID")
    wait_port "$PORT"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# target of a system name for the load tool
target_of() {
    case $1 in
        chatroom-text) echo chatroom-text ;;
        chatroom* | engine-* | in-process | nats-*-node*) echo chatroom ;;
        *) echo "$1" ;;
    esac
}

# Prefix of every load run (the cluster part bounds each run with timeout).
RUN_LIMIT=()

# bench SCENARIO SYSTEM PORT PID ARGS...: one load run, appended to RESULTS.
# PORT and PID may be comma-separated lists (the nodes of a cluster).
bench() {
    local scenario=$1 system=$2 port=$3 pid=$4
    shift 4
    log "$scenario $system $*"
    "${RUN_LIMIT[@]}" "$BENCH" "$scenario" --target "$(target_of "$system")" --label "$system" \
        --addr "127.0.0.1:${port//,/,127.0.0.1:}" --server-pid "$pid" "$@" \
        | tee -a "$RESULTS" | grep -v '^RESULT' >&2 || {
        echo "RUN FAILED: $scenario $system $*" >&2
        echo "FAILED $scenario $system $*" >>"$RESULTS"
    }
}

# The message rate limit, and the per-address connection limits (every
# load connection comes from loopback, most from 127.0.0.1), lifted.
LIFT=(CHATROOM_RATE_PER_SEC=1000000 CHATROOM_RATE_BURST=1000000
    CHATROOM_MAX_CONNECTIONS_PER_IP=100000 CHATROOM_CONNECT_RATE_PER_IP=1000000
    CHATROOM_CONNECT_BURST_PER_IP=100000)
SYSTEMS=(chatroom chatroom-memory ceiling redis nats)
declare -A P D
if part throughput; then
    start chatroom "${LIFT[@]}"
    P[chatroom]=$PORT D[chatroom]=$PID
    start chatroom-memory "${LIFT[@]}" CHATROOM_HISTORY=memory
    P[chatroom-memory]=$PORT D[chatroom-memory]=$PID
    start ceiling
    P[ceiling]=$PORT D[ceiling]=$PID
    start redis
    P[redis]=$PORT D[redis]=$PID
    start nats
    P[nats]=$PORT D[nats]=$PID

    # --- fanout and latency: every system back to back, per setting -------------
    for members in 100 1000; do
        for s in "${SYSTEMS[@]}"; do
            bench fanout "$s" "${P[$s]}" "${D[$s]}" --members "$members" --publishers 4 --secs "$SECS"
        done
    done
    bench fanout chatroom-text "${P[chatroom]}" "${D[chatroom]}" --members 100 --publishers 4 --secs "$SECS"

    for rate in 1000 10000; do
        for s in "${SYSTEMS[@]}"; do
            bench latency "$s" "${P[$s]}" "${D[$s]}" --members 100 --rate "$rate" --secs "$SECS"
        done
    done

    for rate in 200 1000; do
        for s in "${SYSTEMS[@]}"; do
            bench churn "$s" "${P[$s]}" "${D[$s]}" --rate "$rate" --secs "$SECS" --sources 8
        done
    done

    for s in "${SYSTEMS[@]}"; do stop "${D[$s]}"; done
fi

# --- runtime flavour of the engine, measured rather than assumed ------------
part runtime && for flavour in engine-multi engine-current; do
    start "$flavour" "${LIFT[@]}"
    bench fanout "$flavour" "$PORT" "$PID" --members 100 --publishers 4 --secs "$SECS"
    bench latency "$flavour" "$PORT" "$PID" --members 100 --rate 1000 --secs "$SECS"
    stop "$PID"
done

# --- idle: a fresh server per run, so the RSS baseline is clean -------------
# Each side of a connection needs a descriptor in its own process, so the
# largest run is bounded by the descriptor limit, not by the servers.
BIG=$((FDS - 500))
((BIG > 50000)) && BIG=50000
IDLE=(10000 "$BIG")
[[ -n ${QUICK:-} ]] && IDLE=(2000)
part idle || IDLE=()
for conns in "${IDLE[@]}"; do
    for s in chatroom ceiling redis nats; do
        extra=()
        if ((conns > 10000)); then
            case $s in
                chatroom) extra=(CHATROOM_MAX_CONNECTIONS=$((conns + 100))) ;;
                redis) extra=(--maxclients $((conns + 100))) ;;
            esac
        fi
        start "$s" "${extra[@]}" || {
            echo "FAILED idle $s --conns $conns (server did not start)" >>"$RESULTS"
            continue
        }
        sleep 1
        bench idle "$s" "$PORT" "$PID" --conns "$conns" --room-size 100 --sources 8 --settle-secs 2
        stop "$PID"
    done
done

# --- instructions per delivered message (callgrind) --------------------------
# Two runs per system that differ only in the number of messages; the
# difference in instructions over the difference in deliveries is the cost
# of one delivery, with start-up, connection set-up and shutdown cancelled.
callgrind_total() {
    awk '/^(summary|totals):/ { print $2; exit }' "$1"
}

instructions() {
    local system=$1 small=300 large=1300 members=100
    local totals=()
    for n in $small $large; do
        local port
        port=$(free_port)
        local file="$WORK/callgrind-$system-$n.out"
        case $system in
            chatroom | chatroom-memory)
                mkdir -p "$WORK/cg-$n"
                local history=sqlite
                [[ $system == chatroom-memory ]] && history=memory
                env RUST_LOG=warn CHATROOM_DATA_DIR="$WORK/cg-$n" CHATROOM_HISTORY=$history "${LIFT[@]}" \
                    valgrind --tool=callgrind --callgrind-out-file="$file" \
                    "$SERVER" --listen "127.0.0.1:$port" >"$WORK/cg.log" 2>&1 &
                ;;
            ceiling)
                valgrind --tool=callgrind --callgrind-out-file="$file" \
                    "$BENCH" ceiling --listen "127.0.0.1:$port" >"$WORK/cg.log" 2>&1 &
                ;;
            redis)
                valgrind --tool=callgrind --callgrind-out-file="$file" \
                    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
                    >"$WORK/cg.log" 2>&1 &
                ;;
        esac
        local pid=$!
        PIDS+=("$pid")
        # Start-up under valgrind (SQLite included) takes a while.
        wait_port "$port" 900
        log "callgrind $system: $n messages to $members members"
        "$BENCH" fanout --target "$(target_of "$system")" --label "$system" --addr "127.0.0.1:$port" \
            --members $members --publishers 1 --max-messages "$n" --secs 600 --concurrency 20 >"$WORK/cg-run.txt"
        grep -q '"lost":0' "$WORK/cg-run.txt" || { echo "callgrind run lost messages" >&2; return 1; }
        kill -TERM "$pid"
        wait "$pid" 2>/dev/null || true
        totals+=("$(callgrind_total "$file")")
    done
    local per=$(((totals[1] - totals[0]) / ((large - small) * members)))
    echo "RESULT {\"scenario\":\"instructions\",\"target\":\"$system\",\"members\":$members,\"messages\":$((large - small)),\"deliveries\":$(((large - small) * members)),\"instructions_per_delivery\":$per}" \
        | tee -a "$RESULTS" >&2
}

if [[ -z ${QUICK:-} ]] && part instructions; then
    for s in chatroom chatroom-memory ceiling redis; do
        instructions "$s" || echo "FAILED instructions $s" >>"$RESULTS"
    done
fi

# --- cluster: one node in-process, then one and three nodes on one NATS ------
# Every node keeps its own data dir; the in-process node keeps history in
# memory, so the difference is the broker (cluster nodes keep none: their
# history is the room's stream). Nick tags keep each run's names apart from
# claims a stopped node still holds in the NATS key-value bucket.
CSECS=${CLUSTER_SECS:-4}
[[ -n ${QUICK:-} ]] && CSECS=1
CMEMBERS=200
# cluster_runs SYSTEM PORTS PIDS [ARGS...]: fanout with 1 and 4 publishers;
# latency at 500 msg/s from one connection and 2,000 msg/s from four (a
# cluster connection waits for each `say`'s acknowledgement, about 1 ms,
# so one connection cannot go much past 1,000 msg/s).
cluster_runs() {
    local system=$1 ports=$2 pids=$3
    shift 3
    for publishers in 1 4; do
        bench fanout "$system" "$ports" "$pids" --suite cluster --nick-tag "c$((++CRUN))" \
            --members $CMEMBERS --publishers $publishers --secs "$CSECS" "$@"
    done
    for pace in "1 500" "4 2000"; do
        bench latency "$system" "$ports" "$pids" --suite cluster --nick-tag "c$((++CRUN))" \
            --members $CMEMBERS --publishers "${pace% *}" --rate "${pace#* }" --secs "$CSECS" "$@"
    done
}

if part cluster; then
    RUN_LIMIT=(timeout 90)
    CRUN=0
    start node "${LIFT[@]}" CHATROOM_HISTORY=memory
    cluster_runs in-process "$PORT" "$PID"
    stop "$PID"

    mkdir -p "$WORK/jetstream"
    start nats -js -sd "$WORK/jetstream"
    NATS_PORT=$PORT NATS_PID=$PID
    for n in 1 3; do
        ports=() pids=()
        for ((i = 1; i <= n; i++)); do
            start node "${LIFT[@]}" CHATROOM_CLUSTER="nats://127.0.0.1:$NATS_PORT" CHATROOM_NODE_NAME="n$n-$i"
            ports+=("$PORT") pids+=("$PID")
        done
        system=nats-$n-node
        ((n > 1)) && system=nats-$n-nodes
        cluster_runs "$system" "$(IFS=,; echo "${ports[*]}")" "$(IFS=,; echo "${pids[*]}")" \
            --broker-pid "$NATS_PID"
        for pid in "${pids[@]}"; do stop "$pid"; done
    done
    stop "$NATS_PID"
    RUN_LIMIT=()

    {
        echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') (\`PARTS=cluster bash examples/bench/run.sh\`) on" \
            "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
            "$(free -h | awk '/^Mem:/ { print $2 }') RAM (\`free -h\`);" \
            "nats-server $(nats-server --version | awk '{print $NF}') with JetStream on a temporary store;" \
            "${CSECS} s per run, $CMEMBERS members; commit $(git rev-parse --short HEAD)."
        echo
    } >"$OUT/cluster-header.md"
fi

# --- the report --------------------------------------------------------------
{
    echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores," \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
        "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM;" \
        "$(redis-server --version | awk '{print $1, $2, $3}'), nats-server $(nats-server --version | awk '{print $NF}');" \
        "${SECS} s per run; descriptor limit ${FDS}; commit $(git rev-parse --short HEAD)."
    echo
    if grep -q '^FAILED' "$RESULTS"; then
        echo "Runs that failed: $(grep '^FAILED' "$RESULTS" | sed 's/^FAILED //' | paste -sd ';' -)."
        echo
    fi
} >"$OUT/header.md"

HEADERS=(--header "$OUT/header.md")
[[ -f $OUT/cluster-header.md ]] && HEADERS+=(--cluster-header "$OUT/cluster-header.md")
if [[ -n ${NO_DOCS:-} ]]; then
    "$BENCH" report "${HEADERS[@]}" "$RESULTS"
else
    "$BENCH" report "${HEADERS[@]}" --into docs/benchmarks.md "$RESULTS"
    "$BENCH" report "${HEADERS[@]}" "$RESULTS"
    log "tables written to docs/benchmarks.md; raw results in $RESULTS"
fi
