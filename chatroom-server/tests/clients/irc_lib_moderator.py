"""An IRC operator built on the Python `irc` library, for
tests/irc_clients.rs: it logs in with the library's SASL PLAIN and
moderates with the library's own KICK and MODE.

Usage: irc_lib_moderator.py HOST PORT ACCOUNT PASSWORD CHANNEL

It logs in to ACCOUNT (SASL PLAIN), joins CHANNEL and prints one line per
event the test waits for, flushing each:

    LOGGEDIN ACCOUNT         the server's 900
    JOINED CHANNEL           its own join was echoed
    KICK NICK REASON         a KICK seen in the channel
    MODE ARGS...             a MODE seen in the channel

When someone says "kick me" in CHANNEL it kicks them with the reason
"as asked"; when someone says "ban NICK" it sets `+b NICK!*@*`; on
"done" it quits. It gives up (exit code 1) after 20 seconds, when the
login fails, or when the server closes the connection first.
"""

import sys
import time

import irc.client

LIMIT_SECS = 20


def main():
    host, port, account, password, channel = sys.argv[1:6]
    reactor = irc.client.Reactor()
    done = {"ok": False, "closed": False, "failed": False}

    def say(line):
        print(line, flush=True)

    def on_loggedin(_conn, event):
        say(f"LOGGEDIN {event.arguments[1]}")

    def on_login_failed(_conn, event):
        say(f"LOGIN FAILED {' '.join(event.arguments)}")
        done["failed"] = True

    def on_welcome(conn, _event):
        conn.join(channel)

    def on_join(conn, event):
        if irc.client.NickMask(event.source).nick == conn.get_nickname():
            say(f"JOINED {event.target}")

    def on_pubmsg(conn, event):
        who = irc.client.NickMask(event.source).nick
        text = event.arguments[0]
        if text == "kick me":
            conn.kick(channel, who, "as asked")
        elif text.startswith("ban "):
            conn.mode(channel, f"+b {text[4:]}!*@*")
        elif text == "done":
            done["ok"] = True
            conn.quit("done")

    def on_kick(_conn, event):
        say(f"KICK {event.arguments[0]} {event.arguments[1]}")

    def on_mode(_conn, event):
        say(f"MODE {' '.join(event.arguments)}")

    def on_disconnect(_conn, _event):
        done["closed"] = True

    conn = reactor.server().connect(
        host, int(port), account, password=password, username=account,
        ircname="python operator", sasl_login=account,
    )
    for name, handler in [
        ("loggedin", on_loggedin),
        ("login_failed", on_login_failed),
        ("welcome", on_welcome),
        ("join", on_join),
        ("pubmsg", on_pubmsg),
        ("kick", on_kick),
        ("mode", on_mode),
        ("disconnect", on_disconnect),
    ]:
        conn.add_global_handler(name, handler)

    deadline = time.monotonic() + LIMIT_SECS
    while time.monotonic() < deadline and not done["closed"] and not done["failed"]:
        reactor.process_once(timeout=0.1)
    return 0 if done["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
