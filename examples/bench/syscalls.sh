#!/usr/bin/env bash
# Counts a server's system calls for 3 s in the middle of a 6 s fanout run,
# with `perf stat` (tracepoints: needs perf, and kernel.perf_event_paranoid
# at 2 or lower for one's own processes). `compare.sh` counts writes from
# /proc/PID/io, whose `syscw` counts write and writev but not sendto, and
# the ceiling's tokio writes are sendtos: this counts both.
#
#   bash examples/bench/syscalls.sh target/release/chatroom-server 1000
#   bash examples/bench/syscalls.sh ceiling 1000     # the reference ceiling
#   SIZE=149 bash examples/bench/syscalls.sh ceiling 1000
#                                                    # with longer lines
#
# Build first: cargo build --release -p chatroom-server -p chatroom-examples.
# Loopback only; the server is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BENCH:-target/release/chatroom-bench}
server=${1:?the chatroom-server binary, or "ceiling"}
members=${2:-1000}

command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
dir=$(mktemp -d)
if [[ $server == ceiling ]]; then
    "$B" ceiling --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
    target=(--target ceiling ${SIZE:+--size "$SIZE"})
else
    env RUST_LOG=warn CHATROOM_DATA_DIR="$dir" CHATROOM_HISTORY=memory \
        CHATROOM_RATE_PER_SEC=1000000 CHATROOM_RATE_BURST=1000000 \
        CHATROOM_MAX_CONNECTIONS_PER_IP=100000 CHATROOM_CONNECT_RATE_PER_IP=1000000 \
        CHATROOM_CONNECT_BURST_PER_IP=100000 "$server" --listen "127.0.0.1:$port" >"$dir/log" 2>&1 &
    target=()
fi
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

"$B" fanout "${target[@]}" --addr "127.0.0.1:$port" --members "$members" --publishers 4 \
    --secs 6 >"$dir/run.txt" 2>&1 &
load=$!
sleep 3.5
events=raw_syscalls:sys_enter,context-switches
for call in futex write writev sendto recvfrom epoll_wait; do
    events+=",syscalls:sys_enter_$call"
done
timeout -s INT 3 perf stat -e "$events" -p "$pid" 2>&1 | grep -E 'sys_enter|context-switches' || true
wait "$load"
grep -o '"deliveries_per_sec":[0-9.]*' "$dir/run.txt"
