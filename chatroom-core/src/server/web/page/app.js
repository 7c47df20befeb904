// The chatroom web page: one WebSocket to /ws speaking the native JSON
// dialect of docs/protocol.md, one JSON frame per WebSocket text message.
//
// No framework and no build step. Everything that came from the network
// (messages, nicks, room names, error texts) reaches the page through
// textContent or createTextNode only, never as markup.
//
// Resume: the page keeps, per room, the highest message id it has seen
// (from `message` frames, from the ids in the `ok` replies to its own
// `say`, and from the `last_id` of each `join` reply). When the connection
// drops it reconnects by itself with a growing delay, says `hello` again and
// rejoins every room it was in with `join` + `after: cursor`, so the server
// sends exactly what was missed. Anything at or below the cursor, or already
// shown (room + id), is dropped, so a message is never shown twice.
"use strict";

(() => {
  const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$/;
  const MAX_LINES = 2000;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 15000;
  const OPEN_TIMEOUT_MS = 10000;
  const QUIET_PING_MS = 40000;
  const QUIET_DEAD_MS = 75000;
  const ROOMS_REFRESH_MS = 30000;
  const NICK_RETRIES = 4;
  const STORE = {
    nick: "chatroom.nick",
    rooms: "chatroom.rooms",
    current: "chatroom.current",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"),
    reconnect: $("reconnect"),
    me: $("me"),
    nickButton: $("nick-button"),
    rooms: $("rooms"),
    joinForm: $("join-form"),
    joinRoom: $("join-room"),
    members: $("members"),
    membersRoom: $("members-room"),
    currentRoom: $("current-room"),
    leave: $("leave"),
    messages: $("messages"),
    jump: $("jump"),
    composer: $("composer"),
    target: $("target"),
    input: $("input"),
    nickDialog: $("nick-dialog"),
    nickForm: $("nick-form"),
    nickInput: $("nick-input"),
    nickError: $("nick-error"),
    nickCancel: $("nick-cancel"),
    accountState: $("account-state"),
    accountForm: $("account-form"),
    accountNick: $("account-nick"),
    accountPassword: $("account-password"),
    accountRegister: $("account-register"),
  };

  const state = {
    ws: null, // the socket in use, or null
    ready: false, // `welcome` received on this socket
    stopped: true, // no automatic reconnect (before a nick is chosen, after /quit)
    everWelcomed: false, // a later `welcome` is a resume
    wantedNick: null, // the nick to ask for in `hello`
    nick: null, // the nick the server gave us
    maxText: 4096,
    rooms: new Map(), // key -> server spelling of each room we are in
    current: null, // key of the room plain text goes to
    cursors: new Map(), // key -> highest message id seen in that room
    seen: new Set(), // "key:id" of every message shown
    resuming: new Set(), // keys of rooms rejoined after a reconnect, until their reply
    refs: new Map(), // ref -> what the request was, for its reply
    nextRef: 1,
    unconfirmed: [], // own says whose `ok` never came before a disconnect
    attempt: 0, // reconnect attempts since the last `welcome`
    nickRetries: 0,
    retryTimer: null,
    retryAt: 0,
    openTimer: null,
    lastHeard: 0,
    pingSent: false,
    roomList: [], // the last `rooms` reply
    unread: new Map(), // key -> messages that came while another room was current
    roomsTimer: null,
    members: [], // members of the current room
    lastPrivate: null,
    account: null, // the account logged in to on this connection
    // The credentials of the last login, in memory only (never stored), so
    // that a reconnect logs in again with its `hello`.
    login: null,
  };

  const key = (name) => name.toLowerCase();
  const sameNick = (a, b) => a != null && b != null && key(a) === key(b);

  // ---------------------------------------------------------------------
  // Storage (best effort: private windows may refuse it)

  function load(name) {
    try {
      return window.localStorage.getItem(name);
    } catch {
      return null;
    }
  }

  function save(name, value) {
    try {
      window.localStorage.setItem(name, value);
    } catch {
      // Nothing to do: the page works without it.
    }
  }

  function storedRooms() {
    try {
      const list = JSON.parse(load(STORE.rooms) || "[]");
      const rooms = Array.isArray(list) ? list.filter((r) => typeof r === "string" && NAME_RE.test(r)) : [];
      return rooms.length ? rooms : ["lobby"];
    } catch {
      return ["lobby"];
    }
  }

  function saveRooms() {
    save(STORE.rooms, JSON.stringify([...state.rooms.values()]));
    if (state.current) save(STORE.current, state.current);
  }

  // ---------------------------------------------------------------------
  // Small DOM helpers: text only

  function span(cls, text) {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function clockTime(ts) {
    const d = new Date(ts);
    const two = (n) => String(n).padStart(2, "0");
    return `${two(d.getHours())}:${two(d.getMinutes())}`;
  }

  /** A new line for #messages: `kind` is its class, `room` its room if any. */
  function makeLine(kind, room, ts) {
    const li = document.createElement("li");
    li.className = `line ${kind}`;
    const when = ts || Date.now();
    const time = document.createElement("time");
    time.className = "time";
    time.dateTime = new Date(when).toISOString();
    time.title = new Date(when).toLocaleString();
    time.textContent = clockTime(when);
    li.appendChild(time);
    if (room) {
      li.dataset.room = room;
      li.appendChild(span("room", `#${room}`));
    }
    return li;
  }

  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jump.hidden = true;
  }

  /** Appends a line, following it when the reader is at the bottom. */
  function append(li, force) {
    const follow = force || atBottom();
    ui.messages.appendChild(li);
    while (ui.messages.childElementCount > MAX_LINES) {
      ui.messages.firstElementChild.remove();
    }
    if (follow) scrollToEnd();
    else ui.jump.hidden = false;
  }

  function info(text, room) {
    const li = makeLine("info", room);
    li.appendChild(span("text", text));
    append(li);
    return li;
  }

  function errorLine(text, room) {
    const li = makeLine("error", room);
    li.appendChild(span("text", text));
    append(li, true);
    return li;
  }

  function nickButton(nick) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "from";
    b.textContent = nick;
    b.title = `Send ${nick} a private message`;
    b.dataset.nick = nick;
    return b;
  }

  function messageLine(m, room, extraClass) {
    const li = makeLine(m.action ? "action" : "msg", room, m.ts);
    if (extraClass) li.classList.add(extraClass);
    if (m.id !== undefined) li.dataset.id = String(m.id);
    li.dataset.from = m.from;
    if (m.action) li.appendChild(span("star", "*"));
    li.appendChild(nickButton(m.from));
    li.appendChild(span("text", m.text));
    if (sameNick(m.from, state.nick)) li.classList.add("own");
    return li;
  }

  // ---------------------------------------------------------------------
  // Connection status

  let ticker = null;

  function setStatus(stateName, text) {
    ui.status.dataset.state = stateName;
    ui.status.textContent = text;
    ui.reconnect.hidden = !(stateName === "waiting" || stateName === "offline");
    document.body.dataset.connection = stateName;
  }

  function showWaiting() {
    const secs = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    setStatus("waiting", `offline — reconnecting in ${secs}s`);
  }

  function startTicker() {
    if (ticker) return;
    ticker = window.setInterval(() => {
      if (ui.status.dataset.state === "waiting") showWaiting();
      watchdog();
    }, 1000);
    // Rooms we are not in change without telling us: look now and then.
    window.setInterval(() => {
      if (state.ready) requestRooms();
    }, ROOMS_REFRESH_MS);
  }

  // ---------------------------------------------------------------------
  // The socket

  function wsUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws`;
  }

  function send(frame, meta) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return null;
    let ref = null;
    if (meta) {
      ref = `p${state.nextRef++}`;
      frame = { ref, ...frame };
      state.refs.set(ref, meta);
    }
    state.ws.send(JSON.stringify(frame));
    return ref;
  }

  function connect() {
    window.clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (state.ws) return;
    state.stopped = false;
    setStatus("connecting", state.attempt ? `reconnecting (attempt ${state.attempt + 1})…` : "connecting…");
    let ws;
    try {
      ws = new WebSocket(wsUrl());
    } catch (e) {
      scheduleReconnect(String(e));
      return;
    }
    state.ws = ws;
    state.openTimer = window.setTimeout(() => {
      if (ws === state.ws && !state.ready) drop("the server did not answer in time");
    }, OPEN_TIMEOUT_MS);
    ws.onopen = () => {
      if (ws !== state.ws) return;
      state.lastHeard = Date.now();
      const hello = { type: "hello", version: 1, nick: state.wantedNick };
      if (state.login && sameNick(state.login.nick, state.wantedNick)) hello.password = state.login.password;
      send(hello, { kind: "hello" });
    };
    ws.onmessage = (event) => {
      if (ws !== state.ws) return;
      state.lastHeard = Date.now();
      state.pingSent = false;
      if (typeof event.data !== "string") return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame && typeof frame === "object") handle(frame);
    };
    ws.onclose = (event) => {
      if (ws !== state.ws) return;
      disconnected(event.reason || (event.code !== 1000 && event.code !== 1005 ? `code ${event.code}` : ""));
    };
  }

  /** Gives up on the current socket (and reconnects unless stopped). */
  function drop(reason) {
    const ws = state.ws;
    if (!ws) return;
    disconnected(reason);
    try {
      ws.close();
    } catch {
      // Already closing.
    }
  }

  function disconnected(reason) {
    window.clearTimeout(state.openTimer);
    const wasReady = state.ready;
    state.ws = null;
    state.ready = false;
    // Says still waiting for their `ok` may or may not have been taken:
    // resume tells (they come back as our own messages if they were).
    for (const meta of state.refs.values()) {
      if (meta.kind === "say") state.unconfirmed.push(meta);
    }
    state.refs.clear();
    state.resuming.clear();
    renderRooms();
    if (wasReady) info(reason ? `connection lost (${reason})` : "connection lost");
    if (state.stopped) {
      setStatus("offline", "disconnected");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
    const delay = Math.round(base * (0.85 + Math.random() * 0.3));
    state.attempt += 1;
    state.retryAt = Date.now() + delay;
    ui.status.dataset.attempt = String(state.attempt);
    ui.status.dataset.retryAt = String(state.retryAt);
    showWaiting();
    window.clearTimeout(state.retryTimer);
    state.retryTimer = window.setTimeout(connect, delay);
  }

  /** Notices a connection that went silent without closing. */
  function watchdog() {
    if (!state.ready) return;
    const quiet = Date.now() - state.lastHeard;
    if (quiet > QUIET_DEAD_MS) {
      drop("no answer from the server");
    } else if (quiet > QUIET_PING_MS && !state.pingSent) {
      state.pingSent = true;
      send({ type: "ping" });
    }
  }

  // ---------------------------------------------------------------------
  // Frames from the server

  function handle(f) {
    switch (f.type) {
      case "welcome":
        return onWelcome(f);
      case "message":
        return onMessage(f);
      case "ok":
        return onOk(f);
      case "error":
        return onError(f);
      case "joined":
        return onJoined(f);
      case "left":
        return onLeft(f);
      case "nick_changed":
        return onNickChanged(f);
      case "members":
        return onMembers(f);
      case "rooms":
        return onRooms(f);
      case "history":
        return onHistory(f);
      case "private":
        return onPrivate(f);
      case "notice":
        for (const text of String(f.text).split("\n")) info(text);
        return;
      case "lagged": {
        // The missed messages follow this frame, in order, from the server.
        const count = Number(f.last) - Number(f.first) + 1;
        info(`you fell behind in #${f.room}: ${count} messages from id ${f.first} follow`, f.room);
        return;
      }
      case "ping":
        send({ type: "pong" });
        return;
      case "bye":
        return onBye(f);
      case "logged_in":
        return onLoggedIn(f);
      case "moderated":
        return onModerated(f);
      case "topic":
        return onTopic(f);
      default:
        // pong, and frame types newer than this page: nothing to show.
        return;
    }
  }

  function takeMeta(f) {
    if (f.ref === undefined) return null;
    const meta = state.refs.get(f.ref);
    state.refs.delete(f.ref);
    return meta || null;
  }

  function onWelcome(f) {
    takeMeta(f);
    window.clearTimeout(state.openTimer);
    const resumed = state.everWelcomed;
    state.ready = true;
    state.everWelcomed = true;
    state.attempt = 0;
    state.nickRetries = 0;
    state.nick = f.nick;
    state.wantedNick = f.nick;
    // A login is per connection: `logged_in` follows when the hello had one.
    state.account = null;
    ui.accountState.textContent = "guest: register your nickname to keep it";
    if (typeof f.max_text_len === "number") state.maxText = f.max_text_len;
    save(STORE.nick, f.nick);
    ui.me.textContent = f.nick;
    delete ui.status.dataset.attempt;
    delete ui.status.dataset.retryAt;
    setStatus("online", `online as ${f.nick}`);
    if (resumed) {
      info("reconnected; catching up");
      for (const name of state.rooms.values()) joinRoom(name, { resume: true });
    } else {
      info(`connected to ${f.server || "chatroom"} as ${f.nick}; type /help for commands`);
      const wanted = storedRooms();
      const current = load(STORE.current);
      for (const name of wanted) {
        joinRoom(name, { makeCurrent: current ? key(name) === current : name === wanted[0] });
      }
    }
    requestRooms();
  }

  function bumpCursor(roomKey, id) {
    if (typeof id !== "number") return;
    const cur = state.cursors.get(roomKey);
    if (cur === undefined || id > cur) state.cursors.set(roomKey, id);
  }

  function onMessage(f) {
    const k = key(f.room);
    const cursor = state.cursors.get(k);
    if (cursor !== undefined && f.id <= cursor) return;
    const seenKey = `${k}:${f.id}`;
    bumpCursor(k, f.id);
    if (state.seen.has(seenKey)) return;
    state.seen.add(seenKey);
    // Our own say whose `ok` was lost with the connection comes back here
    // when the server had taken it: confirm the line instead of adding one.
    if (sameNick(f.from, state.nick)) {
      const i = state.unconfirmed.findIndex((u) => key(u.room) === k && u.text === f.text && !!u.action === !!f.action);
      if (i >= 0) {
        const [u] = state.unconfirmed.splice(i, 1);
        confirmLine(u.li, f.id);
        return;
      }
    }
    append(messageLine(f, f.room));
    if (k !== state.current && state.rooms.has(k)) {
      state.unread.set(k, (state.unread.get(k) || 0) + 1);
      renderRooms();
    }
  }

  function confirmLine(li, id) {
    li.classList.remove("pending", "failed");
    li.dataset.id = String(id);
    li.removeAttribute("title");
  }

  function onOk(f) {
    const meta = takeMeta(f);
    if (!meta) return;
    if (meta.kind === "say" && typeof f.id === "number") {
      const k = key(meta.room);
      state.seen.add(`${k}:${f.id}`);
      bumpCursor(k, f.id);
      confirmLine(meta.li, f.id);
    }
  }

  function onError(f) {
    const meta = takeMeta(f);
    const text = String(f.message || f.code || "error");
    if (meta && meta.kind === "hello") {
      handshakeFailed(f.code, text);
      return;
    }
    if (meta && meta.kind === "join" && meta.after !== undefined && (f.code === "bad_cursor" || f.code === "no_such_room")) {
      // The server no longer knows our place in this room (its history was
      // reset): rejoin with the recent messages instead.
      state.cursors.delete(key(meta.room));
      info(`the server lost the history of #${meta.room}; showing its recent messages`, meta.room);
      joinRoom(meta.room, { resume: meta.resume, makeCurrent: meta.makeCurrent });
      return;
    }
    if (meta && meta.kind === "join") state.resuming.delete(key(meta.room));
    if (meta && meta.kind === "say") {
      meta.li.classList.remove("pending");
      meta.li.classList.add("failed");
      meta.li.title = text;
    }
    if (meta && meta.quiet) return;
    errorLine(text, meta && meta.room);
  }

  function handshakeFailed(code, text) {
    if (code === "nick_taken" && state.everWelcomed && state.nickRetries < NICK_RETRIES) {
      // After a dropped connection the server may not have noticed yet that
      // our old session is gone: try again shortly with the same nick.
      state.nickRetries += 1;
      drop("nickname still held by the old connection");
      return;
    }
    const ws = state.ws;
    state.ws = null;
    state.ready = false;
    state.stopped = true;
    window.clearTimeout(state.openTimer);
    if (ws) ws.close();
    if (code === "nick_taken" || code === "invalid_name") {
      setStatus("idle", "choose another nickname");
      showNickDialog(text, false);
    } else {
      setStatus("offline", "disconnected");
      errorLine(text);
    }
  }

  function onJoined(f) {
    const k = key(f.room);
    if (sameNick(f.nick, state.nick)) {
      state.rooms.set(k, f.room);
      saveRooms();
      renderRooms();
      if (!state.resuming.has(k)) presence(`you joined #${f.room}`, f.room);
    } else {
      presence(`${f.nick} joined #${f.room}`, f.room);
      if (k === state.current && !state.members.some((m) => sameNick(m, f.nick))) {
        state.members.push(f.nick);
        renderMembers();
      }
    }
    requestRooms();
  }

  function onLeft(f) {
    const k = key(f.room);
    const why = f.reason ? ` (${f.reason})` : "";
    if (sameNick(f.nick, state.nick)) {
      state.rooms.delete(k);
      state.cursors.delete(k);
      state.unread.delete(k);
      // A moderator's removal says so plainly: the page does not rejoin.
      const reason = String(f.reason || "");
      if (/^(kicked|banned) by /.test(reason)) {
        const li = makeLine("removed", f.room);
        li.appendChild(span("text", `you were removed from #${f.room}: ${reason}`));
        append(li, true);
      } else {
        presence(`you left #${f.room}${why}`, f.room);
      }
      if (state.current === k) {
        const next = state.rooms.keys().next();
        setCurrent(next.done ? null : next.value);
      }
      saveRooms();
      renderRooms();
    } else {
      presence(`${f.nick} left #${f.room}${why}`, f.room);
      if (k === state.current) {
        state.members = state.members.filter((m) => !sameNick(m, f.nick));
        renderMembers();
      }
    }
    requestRooms();
  }

  function onNickChanged(f) {
    if (sameNick(f.old, state.nick)) {
      state.nick = f.new;
      state.wantedNick = f.new;
      save(STORE.nick, f.new);
      ui.me.textContent = f.new;
      setStatus("online", `online as ${f.new}`);
      presence(`you are now known as ${f.new}`);
    } else {
      presence(`${f.old} is now known as ${f.new}`);
    }
    if (sameNick(state.lastPrivate, f.old)) state.lastPrivate = f.new;
    state.members = state.members.map((m) => (sameNick(m, f.old) ? f.new : m));
    renderMembers();
  }

  function presence(text, room) {
    const li = makeLine("presence", room);
    li.appendChild(span("text", text));
    append(li);
  }

  function onMembers(f) {
    const meta = takeMeta(f);
    const k = key(f.room);
    const members = Array.isArray(f.members) ? f.members : [];
    if (meta && meta.kind === "join") {
      state.rooms.set(k, f.room);
      bumpCursor(k, f.last_id);
      state.resuming.delete(k);
      // Own says that never got an `ok` and did not come back in the
      // resumed backlog were lost with the connection.
      state.unconfirmed = state.unconfirmed.filter((u) => {
        if (key(u.room) !== k) return true;
        u.li.classList.remove("pending");
        u.li.classList.add("failed");
        u.li.title = "not delivered: the connection dropped before the server took it";
        return false;
      });
      if (meta.makeCurrent || !state.current) setCurrent(k, members);
      saveRooms();
      renderRooms();
    }
    if (meta && meta.kind === "who") {
      const li = makeLine("info", f.room);
      li.appendChild(span("text", `in #${f.room}: ${members.join(", ") || "nobody"}`));
      append(li);
    }
    if (k === state.current) {
      state.members = members.slice();
      renderMembers();
    }
  }

  function onRooms(f) {
    const meta = takeMeta(f);
    state.roomList = Array.isArray(f.rooms) ? f.rooms : [];
    renderRooms();
    if (meta && meta.kind === "rooms" && !meta.quiet) {
      const text = state.roomList.length
        ? `rooms: ${state.roomList.map((r) => `#${r.name} (${r.members})`).join(", ")}`
        : "no rooms";
      info(text);
    }
  }

  function onHistory(f) {
    takeMeta(f);
    const messages = Array.isArray(f.messages) ? f.messages : [];
    const more = f.more ? " (more exist)" : "";
    info(`history of #${f.room}: ${messages.length} message${messages.length === 1 ? "" : "s"}${more}`, f.room);
    for (const m of messages) append(messageLine(m, f.room, "history"));
  }

  function onPrivate(f) {
    const mine = sameNick(f.from, state.nick);
    const li = makeLine("private", null, f.ts);
    li.dataset.from = f.from;
    li.dataset.to = f.to;
    if (mine) {
      li.appendChild(span("arrow", "you →"));
      li.appendChild(nickButton(f.to));
    } else {
      li.appendChild(nickButton(f.from));
      li.appendChild(span("arrow", "→ you"));
      state.lastPrivate = f.from;
    }
    li.appendChild(span("text", f.text));
    const other = mine ? f.to : f.from;
    if (!sameNick(other, state.nick)) {
      const reply = document.createElement("button");
      reply.type = "button";
      reply.className = "reply";
      reply.textContent = "reply";
      reply.dataset.nick = other;
      li.appendChild(reply);
    }
    append(li, mine);
  }

  function onLoggedIn(f) {
    const meta = takeMeta(f);
    state.account = f.account;
    if (meta && meta.password !== undefined) state.login = { nick: f.account, password: meta.password };
    ui.accountState.textContent = `logged in as ${f.account}`;
    ui.accountPassword.value = "";
    if (!meta || meta.kind !== "hello") info(`you are logged in as ${f.account}`);
  }

  /** A moderator's action, as the text dialect words it. */
  function modText(e) {
    const by = e.by;
    const target = e.target || "";
    const place = e.room ? `#${e.room}` : "the server";
    const words = {
      kick: `${by} kicked ${target} from ${place}`,
      ban: `${by} banned ${target} from ${place}`,
      unban: `${by} lifted the ban on ${target} in ${place}`,
      op: `${by} made ${target} an operator of ${place}`,
      deop: `${by} took operator of ${place} from ${target}`,
      voice: `${by} gave ${target} a voice in ${place}`,
      devoice: `${by} took the voice in ${place} from ${target}`,
      mode: `${by} set ${place} ${target}`,
      invite: `${by} invited ${target} to ${place}`,
      kill: `${by} disconnected ${target}`,
    };
    const line = words[e.action] || `${by} moderated ${place}: ${e.action} ${target}`;
    return e.reason ? `${line} (${e.reason})` : line;
  }

  function onModerated(f) {
    const li = makeLine("moderation", f.room || null);
    li.dataset.action = String(f.action);
    if (f.target) li.dataset.target = String(f.target);
    li.appendChild(span("text", modText(f)));
    append(li, true);
  }

  function onTopic(f) {
    takeMeta(f);
    const text = f.topic ? `topic of #${f.room}: ${f.topic}` : `#${f.room} has no topic`;
    info(f.by && f.topic ? `${text} (set by ${f.by})` : text, f.room);
  }

  function onBye(f) {
    const reason = String(f.reason || "");
    if (state.stopped) {
      info(`bye: ${reason}`);
    } else {
      info(`the server is closing the connection: ${reason}`);
    }
  }

  // ---------------------------------------------------------------------
  // Rooms and members

  function joinRoom(name, opts) {
    const o = opts || {};
    const k = key(name);
    const frame = { type: "join", room: name };
    const after = state.cursors.get(k);
    if (after !== undefined) frame.after = after;
    if (o.resume) state.resuming.add(k);
    return send(frame, { kind: "join", room: name, after, resume: !!o.resume, makeCurrent: !!o.makeCurrent });
  }

  /** Makes `k` the room plain text goes to; asks for its members unless `members` are given. */
  function setCurrent(k, members) {
    state.current = k;
    if (k) state.unread.delete(k);
    const name = k ? state.rooms.get(k) || k : null;
    ui.currentRoom.textContent = name ? `#${name}` : "no room";
    ui.target.textContent = name ? `#${name}` : "";
    ui.membersRoom.textContent = name ? `#${name}` : "—";
    ui.leave.disabled = !name;
    state.members = members ? members.slice() : [];
    renderMembers();
    if (name) {
      save(STORE.current, k);
      if (!members && state.ready) send({ type: "who", room: name }, { kind: "members", quiet: true, room: name });
    }
    document.body.classList.toggle("multi-room", state.rooms.size > 1);
    renderRooms();
  }

  function requestRooms() {
    if (state.roomsTimer) return;
    state.roomsTimer = window.setTimeout(() => {
      state.roomsTimer = null;
      if (state.ready) send({ type: "rooms" }, { kind: "rooms", quiet: true });
    }, 300);
  }

  function renderRooms() {
    document.body.classList.toggle("multi-room", state.rooms.size > 1);
    const counts = new Map();
    for (const r of state.roomList) {
      if (r && typeof r.name === "string") counts.set(key(r.name), r);
    }
    const names = new Map();
    for (const r of counts.values()) names.set(key(r.name), r.name);
    for (const [k, name] of state.rooms) names.set(k, name);
    const sorted = [...names.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    ui.rooms.replaceChildren();
    for (const [k, name] of sorted) {
      const li = document.createElement("li");
      li.dataset.room = name;
      const joined = state.rooms.has(k);
      li.classList.toggle("joined", joined);
      li.classList.toggle("current", k === state.current);
      const open = document.createElement("button");
      open.type = "button";
      open.className = "room-open";
      open.dataset.room = name;
      open.title = joined ? `Talk in #${name}` : `Join #${name}`;
      open.appendChild(span("room-name", `#${name}`));
      const entry = counts.get(k);
      const unread = state.unread.get(k);
      if (unread && k !== state.current) {
        const badge = span("unread", unread > 99 ? "99+" : String(unread));
        badge.title = `${unread} new`;
        open.appendChild(badge);
      }
      if (entry) open.appendChild(span("count", String(entry.members)));
      li.appendChild(open);
      if (joined) {
        const leave = document.createElement("button");
        leave.type = "button";
        leave.className = "room-leave";
        leave.dataset.room = name;
        leave.title = `Leave #${name}`;
        leave.setAttribute("aria-label", `Leave #${name}`);
        leave.textContent = "×";
        li.appendChild(leave);
      }
      ui.rooms.appendChild(li);
    }
  }

  function renderMembers() {
    const sorted = state.members.slice().sort((a, b) => key(a).localeCompare(key(b)));
    ui.members.replaceChildren();
    for (const nick of sorted) {
      const li = document.createElement("li");
      li.dataset.nick = nick;
      if (sameNick(nick, state.nick)) li.classList.add("me");
      li.appendChild(nickButton(nick));
      ui.members.appendChild(li);
    }
  }

  // ---------------------------------------------------------------------
  // What the user types

  const HELP = [
    "commands:",
    "  /join ROOM        join ROOM, or switch to it (you stay in the others)",
    "  /leave [ROOM]     leave ROOM or the current room",
    "  /nick NAME        change your nickname",
    "  /msg NICK TEXT    send NICK a private message",
    "  /r TEXT           reply to the last private message",
    "  /me ACTION        say an action",
    "  /who [ROOM]       who is in ROOM",
    "  /rooms            list the rooms",
    "  /history [N]      the last N messages of the current room",
    "  /clear            clear this page's message list",
    "  /quit [REASON]    disconnect",
    "  /register PASSWORD       register your nickname (or use the Account form)",
    "  /login NICK PASSWORD     log in to an account",
    "  /kick NICK [REASON]      remove NICK from this room (operators)",
    "  /ban NICK|MASK [REASON]  ban from this room (operators)",
    "  /unban NICK|MASK         lift a ban in this room (operators)",
    "  /topic [TEXT]            read or set this room's topic",
    "  //text            say text starting with /",
  ];

  function roomArg(word) {
    const name = word.startsWith("#") ? word.slice(1) : word;
    if (!NAME_RE.test(name)) {
      errorLine(`not a valid room name: ${word}`);
      return null;
    }
    return name;
  }

  function needReady() {
    if (state.ready) return true;
    errorLine("not connected: your text is kept in the box until the page is back online");
    return false;
  }

  function currentName() {
    return state.current ? state.rooms.get(state.current) : null;
  }

  /** Handles one typed line; returns true when the input box may be cleared. */
  function submit(line) {
    const text = line.replace(/[\r\n]+/g, " ");
    if (!text.trim()) return true;
    if (text.startsWith("//")) return say(text.slice(1), false);
    if (!text.startsWith("/")) return say(text, false);
    const space = text.search(/\s/);
    const word = (space < 0 ? text.slice(1) : text.slice(1, space)).toLowerCase();
    const rest = space < 0 ? "" : text.slice(space + 1).trim();
    const args = rest ? rest.split(/\s+/) : [];
    switch (word) {
      case "help":
        for (const l of HELP) info(l);
        return true;
      case "clear":
        ui.messages.replaceChildren();
        return true;
      case "join": {
        if (args.length !== 1) return usage("/join ROOM");
        const name = roomArg(args[0]);
        if (!name || !needReady()) return false;
        if (state.rooms.has(key(name))) setCurrent(key(name));
        else joinRoom(name, { makeCurrent: true });
        return true;
      }
      case "leave":
      case "part": {
        const name = args.length ? roomArg(args[0]) : currentName();
        if (!name) return args.length ? false : usage("/leave ROOM (you are in no room)");
        if (!needReady()) return false;
        send({ type: "leave", room: name }, { kind: "leave", room: name });
        return true;
      }
      case "nick":
        if (args.length !== 1) return usage("/nick NAME");
        return changeNick(args[0]);
      case "msg":
      case "whisper": {
        const m = rest.match(/^(\S+)\s+(.+)$/);
        if (!m) return usage("/msg NICK TEXT");
        return whisper(m[1], m[2]);
      }
      case "r":
      case "reply":
        if (!state.lastPrivate) return usage("/r TEXT, after someone sent you a private message");
        if (!rest) return usage("/r TEXT");
        return whisper(state.lastPrivate, rest);
      case "me":
        if (!rest) return usage("/me ACTION");
        return say(rest, true);
      case "who":
      case "names": {
        const name = args.length ? roomArg(args[0]) : currentName();
        if (!name) return args.length ? false : usage("/who ROOM (you are in no room)");
        if (!needReady()) return false;
        send({ type: "who", room: name }, { kind: "who", room: name });
        return true;
      }
      case "rooms":
      case "list":
        if (!needReady()) return false;
        send({ type: "rooms" }, { kind: "rooms" });
        return true;
      case "history": {
        const n = args.length ? Number.parseInt(args[0], 10) : 20;
        if (!Number.isInteger(n) || n < 1 || n > 200 || (args.length && !/^\d+$/.test(args[0]))) {
          return usage("/history [N], N from 1 to 200");
        }
        const name = currentName();
        if (!name) return usage("/history N (join a room first)");
        if (!needReady()) return false;
        send({ type: "history", room: name, limit: n }, { kind: "history", room: name });
        return true;
      }
      case "quit":
      case "exit":
        quit(rest);
        return true;
      case "register":
        if (args.length !== 1) return usage("/register PASSWORD");
        return register(args[0]);
      case "login":
        if (args.length !== 2) return usage("/login NICK PASSWORD");
        return logIn(args[0], args[1]);
      case "kick":
      case "ban": {
        const m = rest.match(/^(\S+)(?:\s+(.+))?$/);
        if (!m) return usage(`/${word} NICK [REASON]`);
        return moderate(word, m[1], m[2]);
      }
      case "unban":
        if (args.length !== 1) return usage("/unban NICK|MASK");
        return moderate("unban", args[0]);
      case "topic": {
        const room = currentName();
        if (!room) return usage("/topic [TEXT] (join a room first)");
        if (!needReady()) return false;
        const frame = { type: "topic", room };
        if (rest) frame.topic = rest;
        send(frame, { kind: "topic", room });
        return true;
      }
      default:
        errorLine(`unknown command /${word}: try /help`);
        return false;
    }
  }

  function usage(text) {
    errorLine(`usage: ${text}`);
    return false;
  }

  function checkText(text) {
    if (!text.trim()) return false;
    if (new TextEncoder().encode(text).length > state.maxText) {
      errorLine(`that text is too long (at most ${state.maxText} bytes)`);
      return false;
    }
    return true;
  }

  function say(text, action) {
    const room = currentName();
    if (!room) {
      errorLine("you are in no room: /join ROOM first");
      return false;
    }
    if (!checkText(text) || !needReady()) return false;
    const li = messageLine({ from: state.nick, text, action }, room, "pending");
    li.title = "sending…";
    const frame = { type: "say", room, text };
    if (action) frame.action = true;
    send(frame, { kind: "say", room, text, action: !!action, li });
    append(li, true);
    return true;
  }

  function register(password) {
    if (!needReady()) return false;
    send({ type: "register", password }, { kind: "register", password });
    return true;
  }

  function logIn(nick, password) {
    if (!NAME_RE.test(nick)) {
      errorLine(`not a valid nickname: ${nick}`);
      return false;
    }
    if (!needReady()) return false;
    send({ type: "login", nick, password }, { kind: "login", password });
    return true;
  }

  /** `kick`, `ban` or `unban` in the current room. */
  function moderate(kind, who, reason) {
    const room = currentName();
    if (!room) return usage(`/${kind} needs a current room: /join ROOM first`);
    if (!needReady()) return false;
    const frame = kind === "kick" ? { type: "kick", room, nick: who } : { type: kind, room, mask: who };
    if (reason && kind !== "unban") frame.reason = reason;
    send(frame, { kind, room });
    return true;
  }

  function whisper(to, text) {
    if (!NAME_RE.test(to)) {
      errorLine(`not a valid nickname: ${to}`);
      return false;
    }
    if (!checkText(text) || !needReady()) return false;
    send({ type: "whisper", to, text }, { kind: "whisper" });
    return true;
  }

  function changeNick(nick) {
    if (!NAME_RE.test(nick)) {
      errorLine(`not a valid nickname: ${nick}`);
      return false;
    }
    if (!needReady()) return false;
    send({ type: "nick", nick }, { kind: "nick" });
    return true;
  }

  function quit(reason) {
    state.stopped = true;
    window.clearTimeout(state.retryTimer);
    if (state.ready) {
      const frame = { type: "quit" };
      if (reason) frame.reason = reason;
      send(frame, { kind: "quit" });
    } else if (state.ws) {
      drop("");
    } else {
      setStatus("offline", "disconnected");
    }
  }

  // ---------------------------------------------------------------------
  // The nickname dialog

  function showNickDialog(error, cancellable) {
    ui.nickInput.value = state.wantedNick || load(STORE.nick) || "guest";
    ui.nickError.textContent = error || "";
    ui.nickCancel.hidden = !cancellable;
    ui.nickDialog.hidden = false;
    ui.nickInput.focus();
    ui.nickInput.select();
  }

  function hideNickDialog() {
    ui.nickDialog.hidden = true;
    ui.input.focus();
  }

  ui.nickForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = ui.nickInput.value.trim();
    if (!NAME_RE.test(nick)) {
      ui.nickError.textContent = "Use 1 to 32 letters, digits, _ or - (not starting with -).";
      return;
    }
    hideNickDialog();
    if (state.ready) {
      if (!sameNick(nick, state.nick) || nick !== state.nick) changeNick(nick);
      return;
    }
    state.wantedNick = nick;
    save(STORE.nick, nick);
    ui.me.textContent = nick;
    connect();
  });

  ui.nickCancel.addEventListener("click", hideNickDialog);
  ui.nickButton.addEventListener("click", () => showNickDialog("", state.ready));

  // ---------------------------------------------------------------------
  // Other controls

  ui.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    if (submit(ui.input.value)) ui.input.value = "";
    ui.input.focus();
  });

  ui.accountForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const password = ui.accountPassword.value;
    if (!password) return errorLine("type your password first");
    const nick = ui.accountNick.value.trim() || state.nick || "";
    logIn(nick, password);
  });

  ui.accountRegister.addEventListener("click", () => {
    const password = ui.accountPassword.value;
    if (!password) return errorLine("type the password to register your nickname with");
    register(password);
  });

  ui.joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const name = roomArg(ui.joinRoom.value.trim());
    if (!name || !needReady()) return;
    if (state.rooms.has(key(name))) setCurrent(key(name));
    else joinRoom(name, { makeCurrent: true });
    ui.joinRoom.value = "";
  });

  ui.rooms.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !button.dataset.room) return;
    const name = button.dataset.room;
    if (button.classList.contains("room-leave")) {
      if (needReady()) send({ type: "leave", room: name }, { kind: "leave", room: name });
    } else if (state.rooms.has(key(name))) {
      setCurrent(key(name));
    } else if (needReady()) {
      joinRoom(name, { makeCurrent: true });
    }
  });

  ui.leave.addEventListener("click", () => {
    const name = currentName();
    if (name && needReady()) send({ type: "leave", room: name }, { kind: "leave", room: name });
  });

  /** Clicking a nick (or "reply") starts a private message to them. */
  function startPrivate(event) {
    const button = event.target.closest("button[data-nick]");
    if (!button) return;
    const nick = button.dataset.nick;
    if (sameNick(nick, state.nick)) return;
    ui.input.value = `/msg ${nick} `;
    ui.input.focus();
  }
  ui.messages.addEventListener("click", startPrivate);
  ui.members.addEventListener("click", startPrivate);

  ui.messages.addEventListener("scroll", () => {
    if (atBottom()) ui.jump.hidden = true;
  });
  ui.jump.addEventListener("click", scrollToEnd);

  ui.reconnect.addEventListener("click", () => {
    state.attempt = 0;
    connect();
  });

  window.addEventListener("online", () => {
    if (!state.ws && !state.stopped) connect();
  });

  // ---------------------------------------------------------------------
  // Start: ask for a nickname, then connect.

  startTicker();
  renderRooms();
  setCurrent(null);
  setStatus("idle", "not connected");
  showNickDialog("", false);
})();
