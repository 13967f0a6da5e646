// The example web chat: rooms list, messages, typing, read receipts and presence, on
// @chatwire/client. Build: `npm run build:example` in clients/typescript (scripts/regen does it);
// `chatwire serve` serves the bundle at `/`.
import { ChatwireClient, RoomKind, type Message, type OutgoingMessage, type RoomEvent, type RoomSummary } from "../../src/index.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
let client: ChatwireClient;
let current: string | null = null;
const rooms = new Map<string, { title: string; peer: string | null; unread: number }>();
const typingUntil = new Map<string, number>(); // "room user" -> expiry (ms)
const online = new Map<string, boolean>();

$("connect").addEventListener("click", () => void connect());
$<HTMLFormElement>("direct-form").addEventListener("submit", (e) => {
  e.preventDefault();
  void openDirect($<HTMLInputElement>("peer").value.trim());
});
$<HTMLFormElement>("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
$("text").addEventListener("input", () => typing());

async function connect(): Promise<void> {
  const token = $<HTMLInputElement>("token").value.trim();
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  try {
    client = await ChatwireClient.connect({ url, token, clientInfo: { name: "web-chat", platform: "web" } });
  } catch (err) {
    $("login-error").textContent = String(err);
    return;
  }
  $("login").hidden = true;
  $("me").textContent = `connected as ${client.userId}`;
  $("conn").textContent = "";
  client.on("state", (s) => ($("conn").textContent = s === "connected" ? "" : s));
  client.on("room", onRoomEvent);
  client.on("typingChanged", (t) => {
    typingUntil.set(`${t.roomId} ${t.userId}`, t.active ? Date.now() + t.expiresInMs : 0);
    renderTyping();
  });
  client.on("presence", (p) => {
    online.set(p.userId, p.online);
    renderPresence();
  });
  client.on("status", (m) => renderStatus(m));
  client.on("receiptsChanged", () => renderReceipt());
  client.on("roomAdded", (r) => {
    addRoom(r.room!.id, r.room!.kind, r.room!.name, 0);
    void client.subscribeRoom(r.room!.id);
  });
  setInterval(renderTyping, 1000);
  const sync = await client.sync({});
  for (const summary of sync.rooms) addSummary(summary);
  for (const roomId of rooms.keys()) await client.subscribeRoom(roomId);
}

function addSummary(s: RoomSummary): void {
  addRoom(s.room!.id, s.room!.kind, s.room!.name, s.unreadCount);
}

function addRoom(roomId: string, kind: RoomKind, name: string, unread: number): void {
  if (rooms.has(roomId)) return;
  const entry = { title: name || roomId, peer: null as string | null, unread };
  rooms.set(roomId, entry);
  renderRooms();
  if (kind !== RoomKind.DIRECT) return;
  // A direct room's id is a hash of the pair: its title is the other member.
  void client.listMembers({ roomId }).then(async (members) => {
    const peer = members.members.map((m) => m.userId).find((u) => u !== client.userId) ?? client.userId;
    entry.peer = peer;
    entry.title = peer;
    if (roomId === current) $("room-title").textContent = peer;
    const watched = await client.watchPresence({ userIds: [peer] });
    for (const p of watched.presences) online.set(p.userId, p.online);
    renderPresence();
  });
}

async function openDirect(userId: string): Promise<void> {
  if (!userId) return;
  const { room } = await client.openDirect({ userId });
  addRoom(room!.id, room!.kind, room!.name, 0);
  await client.subscribeRoom(room!.id);
  await select(room!.id);
}

function renderRooms(): void {
  const list = $("rooms");
  list.replaceChildren(
    ...[...rooms].map(([id, r]) => {
      const li = document.createElement("li");
      li.dataset.room = id;
      li.className = id === current ? "active" : "";
      const dot = r.peer ? `<span class="dot ${online.get(r.peer) ? "online" : ""}"></span>` : "";
      li.innerHTML = `<span>${dot}${escape(r.title)}</span>${r.unread && id !== current ? `<span class="unread">${r.unread}</span>` : ""}`;
      li.onclick = () => void select(id);
      return li;
    }),
  );
}

async function select(roomId: string): Promise<void> {
  current = roomId;
  $("chat").hidden = false;
  $("room-title").textContent = rooms.get(roomId)?.title ?? roomId;
  $("messages").replaceChildren();
  const page = await client.history({ roomId, position: { case: "beforeSeq", value: 0n }, limit: 50 });
  for (const m of page.messages) showMessage(m.seq, m.sender, m.content?.text ?? "", m.clientMsgId, m.deleted);
  rooms.get(roomId)!.unread = 0;
  renderRooms();
  renderPresence();
  renderReceipt();
  markRead(roomId);
}

function onRoomEvent(event: RoomEvent): void {
  if (event.kind.case !== "messageCreated") return;
  const created = event.kind.value;
  const room = rooms.get(event.roomId);
  if (event.roomId === current) {
    showMessage(event.seq, event.sender, created.content?.text ?? "", created.clientMsgId, created.redacted);
    if (event.sender !== client.userId) markRead(event.roomId);
  } else if (room && event.sender !== client.userId) {
    room.unread++;
    void client.markDelivered({ roomId: event.roomId, seq: event.seq });
    renderRooms();
  }
  if (event.sender !== client.userId) typingUntil.delete(`${event.roomId} ${event.sender}`);
  renderTyping();
}

function markRead(roomId: string): void {
  const seq = client.room(roomId)?.lastSeq ?? 0n;
  if (seq > 0n) void client.markRead({ roomId, seq });
}

function showMessage(seq: bigint, sender: string, text: string, clientMsgId: string, deleted: boolean): void {
  const list = $("messages");
  const key = clientMsgId || `seq-${seq}`;
  let li = list.querySelector<HTMLLIElement>(`li[data-key="${CSS.escape(key)}"]`);
  if (!li) {
    li = document.createElement("li");
    li.dataset.key = key;
    list.append(li);
  }
  li.dataset.seq = String(seq);
  li.className = sender === client.userId ? "mine" : "theirs";
  li.innerHTML = `<span class="sender">${escape(sender)}</span><span class="text">${deleted ? "<i>deleted</i>" : escape(text)}</span>`;
  if (sender === client.userId) {
    const out = client.outgoing(clientMsgId);
    const status = document.createElement("span");
    status.className = "status";
    li.append(status);
    if (out) renderStatus(out);
  }
  list.scrollTop = list.scrollHeight;
}

function renderStatus(m: OutgoingMessage): void {
  if (m.roomId !== current) return;
  let li = $("messages").querySelector<HTMLLIElement>(`li[data-key="${CSS.escape(m.clientMsgId)}"]`);
  if (!li) {
    showMessage(m.seq ?? 0n, client.userId, m.content?.text ?? "", m.clientMsgId, false);
    li = $("messages").querySelector<HTMLLIElement>(`li[data-key="${CSS.escape(m.clientMsgId)}"]`)!;
  }
  const status = li.querySelector<HTMLElement>(".status")!;
  status.dataset.status = m.status;
  status.textContent = { pending: "…", sent: "✓", delivered: "✓✓", read: "read", failed: "failed" }[m.status];
  renderReceipt();
}

function renderReceipt(): void {
  const room = current ? client.room(current) : undefined;
  if (!room) return;
  const mine = [...$("messages").querySelectorAll<HTMLLIElement>("li.mine")].map((li) => BigInt(li.dataset.seq ?? "0")).filter((s) => s > 0n);
  const last = mine.at(-1);
  const readers = last === undefined ? [] : [...room.receipts].filter(([user, m]) => user !== client.userId && m.read >= last).map(([user]) => user);
  $("receipt").textContent = readers.length ? `Read by ${readers.join(", ")}` : "";
}

function renderTyping(): void {
  const now = Date.now();
  const who = [...typingUntil].filter(([key, until]) => until > now && key.startsWith(`${current} `)).map(([key]) => key.split(" ")[1]);
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function renderPresence(): void {
  const peer = current ? rooms.get(current)?.peer : null;
  $("presence").innerHTML = peer ? `<span class="dot ${online.get(peer) ? "online" : ""}"></span>${escape(peer)} ${online.get(peer) ? "online" : "offline"}` : "";
  renderRooms();
}

let lastTyping = 0;
function typing(): void {
  if (!current) return;
  const throttle = client.session?.limits?.typingThrottleMs ?? 3000;
  const now = Date.now();
  if (now - lastTyping < throttle) return;
  lastTyping = now;
  void client.typing({ roomId: current, active: true });
}

function send(): void {
  const input = $<HTMLInputElement>("text");
  const text = input.value.trim();
  if (!text || !current) return;
  input.value = "";
  lastTyping = 0;
  const m = client.sendMessage(current, text);
  renderStatus(m);
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export type { Message };
