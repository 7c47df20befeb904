#!/usr/bin/env bash
# Two builds of chatroom-server side by side, with the ceiling, in one run.
#
#   OLD=path/to/old/chatroom-server NEW=target/release/chatroom-server \
#     bash examples/bench/compare.sh fanout 100      # members; 5 s each
#   ... compare.sh latency                           # 1,000 msg/s into 100, 10 s
#   ... compare.sh instructions 5                    # callgrind, five runs each
#                                                    # (memory history; INSTR_HIST=sqlite
#                                                    # for the SQLite store)
#
# Build first: cargo build --release -p chatroom-server -p chatroom-examples
# (keep a copy of the old binary before rebuilding). HIST=memory uses the
# in-memory history (default: SQLite). Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BENCH:-target/release/chatroom-bench}
OLD=${OLD:?set OLD to the old chatroom-server binary}
NEW=${NEW:-target/release/chatroom-server}
HIST=${HIST:-sqlite}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# start_server BIN PORT DIR [WRAPPER...]: a server with the rate limits
# lifted, run under WRAPPER (valgrind, say) when one is given
start_server() {
    local bin=$1 port=$2 dir=$3; shift 3
    env RUST_LOG=warn CHATROOM_DATA_DIR="$dir" CHATROOM_HISTORY="$HIST" \
        CHATROOM_RATE_PER_SEC=1000000 CHATROOM_RATE_BURST=1000000 \
        CHATROOM_MAX_CONNECTIONS_PER_IP=100000 CHATROOM_CONNECT_RATE_PER_IP=1000000 \
        CHATROOM_CONNECT_BURST_PER_IP=100000 "$@" "$bin" --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
    echo $!
}

# stop PID: the server is started in a subshell, so it is not this
# shell's child to `wait` for: poll until it is gone (callgrind writes its
# counts as the process exits).
stop() { kill -TERM "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.1; done; }

wait_port() { for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }

# cpu PID: user and system ticks, and write syscalls (syscw counts write and
# writev, not sendto, which is what the ceiling writes with: its
# writes_per_delivery is not comparable; syscalls.sh counts both)
cpu() { echo "$(awk '{print $14, $15}' "/proc/$1/stat") $(awk '/syscw/{print $2}' "/proc/$1/io")"; }

result() { # name deliveries-since: prints one line from a RESULT
    python3 -c '
import sys, json
name, u, s, w = sys.argv[1], *map(int, sys.argv[2:5])
r = json.loads(sys.stdin.read().split("RESULT ", 1)[1].splitlines()[0])
d = max(r.get("deliveries", 0), 1)
line = f"{name:8} " + " ".join(f"{k} {r[k]}" for k in ("deliveries_per_sec", "lost", "duplicated", "reordered", "lag_notices", "lat_p50_us", "lat_p99_us", "lat_p999_us", "bytes_per_delivery") if k in r)
if r.get("scenario") == "fanout":
    line += f" server_cpu_ns_per_delivery {(u + s) * 1e7 / d:.0f} user_ms {u * 10} sys_ms {s * 10} writes_per_delivery {w / d:.4f}"
print(line)' "$@"
}

run() { # name bin(or "ceiling") scenario args...
    local name=$1 bin=$2 scenario=$3; shift 3
    local port dir pid target=chatroom
    port=$(free_port); dir=$(mktemp -d)
    if [[ $bin == ceiling ]]; then
        "$B" ceiling --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
        pid=$!; target=ceiling
    else
        pid=$(start_server "$bin" "$port" "$dir")
    fi
    wait_port "$port"
    read -r u0 s0 w0 <<<"$(cpu "$pid")"
    local out
    out=$("$B" "$scenario" --target "$target" --addr "127.0.0.1:$port" --server-pid "$pid" "$@" 2>&1)
    read -r u1 s1 w1 <<<"$(cpu "$pid")"
    stop "$pid"
    rm -rf "$dir"
    result "$name" $((u1 - u0)) $((s1 - s0)) $((w1 - w0)) <<<"$out"
}

instructions() { # bin runs: callgrind per delivery, as run.sh's instructions() counts it
    local bin=$1 runs=$2 all=()
    for _ in $(seq 1 "$runs"); do
        local tot=() dir port pid
        for n in 300 1300; do
            dir=$(mktemp -d); port=$(free_port)
            pid=$(HIST=${INSTR_HIST:-memory} start_server "$bin" "$port" "$dir" \
                valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out")
            wait_port "$port"
            # A run that lost messages measures nothing; the server is
            # stopped either way.
            local out
            out=$("$B" fanout --addr "127.0.0.1:$port" --members 100 --publishers 1 \
                --max-messages "$n" --secs 600 --concurrency 20 || true)
            stop "$pid"
            if ! grep -q '"lost":0' <<<"$out"; then
                echo "a run lost messages: $out" >&2
                rm -rf "$dir"
                return 1
            fi
            tot+=("$(awk '/^(summary|totals):/ {print $2; exit}' "$dir/cg.out")")
            rm -rf "$dir"
        done
        all+=($(((tot[1] - tot[0]) / 100000)))
    done
    printf '%s\n' "${all[@]}" | sort -n | tr '\n' ' '
}

case ${1:-} in
fanout)
    members=${2:-100}
    run ceiling ceiling fanout --members "$members" --publishers 4 --secs 5
    # The generator's own check: the ceiling again with publishers let run
    # four times as far ahead of the slowest receiver. When `ceiling+` is
    # clearly faster than `ceiling`, the pacing, not the broadcaster, set
    # the ceiling's rate, and the ratios below flatter the servers. (At
    # 1,000 members the broadcaster cuts receivers that pass its 8 MiB of
    # pending bytes, so `ceiling+` may lose messages there: a check at 100.)
    run ceiling+ ceiling fanout --members "$members" --publishers 4 --secs 5 --max-lag 16384
    run old "$OLD" fanout --members "$members" --publishers 4 --secs 5
    new=$(run new "$NEW" fanout --members "$members" --publishers 4 --secs 5)
    echo "$new"
    # The ceiling relays each publisher's line as it is, while a member of
    # a chatroom room gets a message frame (the same text with its room,
    # id, sender and time) more than twice as long. `ceiling=` relays
    # lines padded to the frame's mean length, so that both move the same
    # bytes per delivery and differ only by what chatroom does beyond
    # moving them.
    wire=$(sed -n 's/.* bytes_per_delivery \([0-9]*\).*/\1/p' <<<"$new")
    if [[ -n $wire ]]; then
        run ceiling= ceiling fanout --members "$members" --publishers 4 --secs 5 --size $((wire - 1))
    fi
    ;;
latency)
    run ceiling ceiling latency --members 100 --rate 1000 --secs 10
    run old "$OLD" latency --members 100 --rate 1000 --secs 10
    run new "$NEW" latency --members 100 --rate 1000 --secs 10
    ;;
instructions)
    runs=${2:-5}
    echo "old: $(instructions "$OLD" "$runs")(instructions per delivery, sorted)"
    echo "new: $(instructions "$NEW" "$runs")(instructions per delivery, sorted)"
    ;;
*)
    sed -n '2,12p' "$0"
    exit 2
    ;;
esac
