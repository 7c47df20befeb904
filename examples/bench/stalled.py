#!/usr/bin/env python3
"""Server memory while members read nothing: starts SERVER on a free
loopback port (fresh data dir, rate limits lifted), joins N members to one
room that never read (4 KiB receive buffers), has one member say MSGS
lines of 1,000 bytes flat out, and prints the server's RSS before and
after. Bounded: N connections, MSGS lines, a few seconds; stops the server.

    python3 examples/bench/stalled.py target/release/chatroom-server 1000 10000
"""
import socket, subprocess, time, os, sys, tempfile, json
srv=sys.argv[1]; N=int(sys.argv[2]); MSGS=int(sys.argv[3]); extra=sys.argv[4:]
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
d=tempfile.mkdtemp()
env=dict(os.environ,CHATROOM_DATA_DIR=d,RUST_LOG="warn",CHATROOM_RATE_PER_SEC="1000000",CHATROOM_RATE_BURST="1000000",
 CHATROOM_MAX_CONNECTIONS_PER_IP="100000",CHATROOM_CONNECT_RATE_PER_IP="1000000",CHATROOM_CONNECT_BURST_PER_IP="100000")
p=subprocess.Popen([srv,"--listen",f"127.0.0.1:{port}"]+extra,env=env,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL)
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
for _ in range(100):
    try: socket.create_connection(("127.0.0.1",port)).close(); break
    except OSError: time.sleep(0.1)
time.sleep(0.5)
def client(nick, rcvbuf=None):
    c=socket.socket()
    if rcvbuf: c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.connect(("127.0.0.1",port))
    c.sendall((json.dumps({"type":"hello","version":1,"nick":nick})+"\n"+json.dumps({"type":"join","room":"big","history":0})+"\n").encode())
    return c
pub=client("pub")
f=pub.makefile("rb")
base=rss()
stalled=[client(f"s{i}", 4096) for i in range(N)]
time.sleep(1.0)
joined=rss()
line=(json.dumps({"type":"say","room":"big","text":"x"*1000})+"\n").encode()
for i in range(MSGS):
    pub.sendall(line)
    if i%200==199:
        # read the publisher's replies so it is not the one held back
        pub.setblocking(False)
        try:
            while pub.recv(1<<20): pass
        except BlockingIOError: pass
        pub.setblocking(True)
time.sleep(2.0)
peak=rss()
print(f"stalled={N} msgs={MSGS} rss_kib base={base} joined={joined} after_burst={peak} growth_per_stalled_kib={(peak-joined)/max(N,1):.1f}")
p.terminate(); p.wait()
