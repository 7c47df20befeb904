#!/usr/bin/env python3
# The seed tutorial's chat client, rewritten for this test suite. It keeps
# the tutorial's behaviour: connect to IP PORT, wait on stdin and the socket
# at once with select(), print what the server sends as it arrives, send each
# typed line as is and echo it locally as "<You>line". Two fixes: it sends on
# the socket it opened (the tutorial called an undefined name), and it stops
# when the server closes or stdin ends instead of spinning.
import select
import socket
import sys

if len(sys.argv) != 3:
    print("usage: seed_client.py IP PORT")
    sys.exit(2)

conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
conn.connect((sys.argv[1], int(sys.argv[2])))

while True:
    readable, _, _ = select.select([sys.stdin, conn], [], [])
    for source in readable:
        if source is conn:
            data = conn.recv(2048)
            if not data:
                sys.exit(0)
            sys.stdout.write(data.decode("utf-8").replace("\r\n", "\n"))
            sys.stdout.flush()
        else:
            line = sys.stdin.readline()
            if not line:
                conn.close()
                sys.exit(0)
            conn.sendall(line.encode("utf-8"))
            sys.stdout.write("<You>" + line)
            sys.stdout.flush()
