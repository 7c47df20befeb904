"use strict";
// A minimal client: joins the lobby and shows what is said there.
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(scheme + "//" + location.host + "/ws");
const list = document.getElementById("messages");
function show(text) {
  const item = document.createElement("li");
  item.textContent = text;
  list.appendChild(item);
}
ws.onopen = () => {
  document.getElementById("status").textContent = "connected";
  ws.send(JSON.stringify({ type: "hello", version: 1 }));
  ws.send(JSON.stringify({ type: "join", room: "lobby" }));
};
ws.onmessage = (event) => {
  const frame = JSON.parse(event.data);
  if (frame.type === "message") show("<" + frame.from + "> " + frame.text);
  if (frame.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
};
document.getElementById("input").addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !event.target.value) return;
  ws.send(JSON.stringify({ type: "say", room: "lobby", text: event.target.value }));
  event.target.value = "";
});
