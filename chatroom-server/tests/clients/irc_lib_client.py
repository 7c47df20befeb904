"""An IRC client built on the Python `irc` library, for tests/irc_clients.rs.

Usage: irc_lib_client.py HOST PORT NICK CHANNEL

It registers as NICK, joins CHANNEL and says "hello from python" there.
It prints one line per event the test waits for, and flushes each:

    JOINED CHANNEL           its own join was echoed
    HEARD NICK TEXT          a channel message from someone else
    PARTED CHANNEL           its own part was echoed (then it quits)

When it hears "please part", it parts with the reason "bye" and then
quits. It gives up (exit code 1) after 20 seconds or when the server
closes the connection first.
"""

import sys
import time

import irc.client

LIMIT_SECS = 20


def main():
    host, port, nick, channel = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    reactor = irc.client.Reactor()
    done = {"ok": False, "closed": False}

    def say(line):
        print(line, flush=True)

    def on_welcome(conn, _event):
        conn.join(channel)

    def on_join(conn, event):
        if irc.client.NickMask(event.source).nick == conn.get_nickname():
            say(f"JOINED {event.target}")
            conn.privmsg(channel, "hello from python")

    def on_pubmsg(conn, event):
        text = event.arguments[0]
        say(f"HEARD {irc.client.NickMask(event.source).nick} {text}")
        if text == "please part":
            conn.part(channel, "bye")

    def on_part(conn, event):
        if irc.client.NickMask(event.source).nick == conn.get_nickname():
            say(f"PARTED {event.target}")
            done["ok"] = True
            conn.quit("done")

    def on_disconnect(_conn, _event):
        done["closed"] = True

    conn = reactor.server().connect(host, port, nick, username=nick, ircname="python irc")
    conn.add_global_handler("welcome", on_welcome)
    conn.add_global_handler("join", on_join)
    conn.add_global_handler("pubmsg", on_pubmsg)
    conn.add_global_handler("part", on_part)
    conn.add_global_handler("disconnect", on_disconnect)

    deadline = time.monotonic() + LIMIT_SECS
    while time.monotonic() < deadline and not done["closed"]:
        reactor.process_once(timeout=0.1)
    return 0 if done["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
