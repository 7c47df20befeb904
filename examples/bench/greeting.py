#!/usr/bin/env python3
"""How soon a silent plain-text client (nc, the seed's Python client) is
greeted: starts SERVER on a free loopback port with a fresh data dir,
connects 50 times one after another, sends nothing, and times the first
byte of the greeting from the moment the connection is open. Bounded: 50
connections, a few seconds; stops the server at the end.

    python3 examples/bench/greeting.py target/release/chatroom-server [SERVER ARGS...]

SERVER ARGS go to the server, e.g. `--set sniff_ms=30 --set web=false`.
With PAGE=1 in the environment the page is fetched once first, so the
connections come from an address that asked for it (browser_sniff_ms).
"""
import socket, subprocess, time, os, sys, tempfile, statistics
srv=sys.argv[1]
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
d=tempfile.mkdtemp()
p=subprocess.Popen([srv,"--listen",f"127.0.0.1:{port}"]+sys.argv[2:],env=dict(os.environ,CHATROOM_DATA_DIR=d,RUST_LOG="warn"),stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
for _ in range(100):
    try: socket.create_connection(("127.0.0.1",port)).close(); break
    except OSError: time.sleep(0.1)
time.sleep(0.5)
if os.environ.get("PAGE"):
    c=socket.create_connection(("127.0.0.1",port))
    c.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
    assert c.recv(12).startswith(b"HTTP/1.1 200"), "the page"
    c.close()
ts=[]
for i in range(50):
    c=socket.create_connection(("127.0.0.1",port)); t=time.monotonic()
    c.recv(1); ts.append((time.monotonic()-t)*1000); c.close()
    time.sleep(0.05)
p.terminate(); p.wait()
ts.sort()
print(f"greeting after connect, ms over 50 connections: min {ts[0]:.1f} median {statistics.median(ts):.1f} p90 {ts[44]:.1f} max {ts[-1]:.1f}")
