// The example web chat on @chatwire/client: rooms with unread counts from the server's
// watermarks, history (newest page on open, older pages on scroll), direct chats and groups,
// edit / delete / react, contacts (requests to accept or decline, each contact's presence,
// "Chat" to open the direct room), moderation (a moderator's delete with a reason, "edited" opening the
// message's versions, reporting others' messages to the server's review queue), message status, typing and presence, an outbox kept in IndexedDB
// and the token kept for the tab (sessionStorage). Build: `npm run build:example` in
// clients/typescript (scripts/regen does it); `chatwire serve` serves the bundle at `/`.
import {
  ChatwireClient,
  ConnectionError,
  ContactState,
  IndexedDbOutboxStore,
  Role,
  RoomKind,
  statusFromReceipts,
  type ConnectionStatus,
  type Message,
  type MessageStatus,
  type OutgoingMessage,
  type RoomEvent,
  type RoomSummary,
  type SearchHit,
  type Contact,
} from "../../src/index.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const TOKEN_KEY = "chatwire.token";
const ROOMS_KEY = "chatwire.rooms";
const CURRENT_KEY = "chatwire.current";
const PAGE = 30;

interface RoomView {
  id: string;
  kind: RoomKind;
  title: string;
  peer: string | null;
  /** The caller's role (groups: owners, admins and moderators delete others' messages). */
  role: Role;
  members: number;
  /** Unread messages as the server counts them (Sync, ReadPositionMoved) plus newer arrivals. */
  unread: number;
  /** The head seq the server's count covered; events at or below it are never counted again. */
  countedThrough: bigint;
  /** Seqs of other members' messages counted after `countedThrough`. */
  newer: Set<bigint>;
  followed: boolean;
}

interface ViewMessage {
  key: string;
  seq: bigint | undefined;
  sender: string;
  clientMsgId: string;
  text: string;
  createdAtMs: number;
  edited: boolean;
  deleted: boolean;
  reactions: Map<string, { count: number; me: boolean }>;
}

let client: ChatwireClient | null = null;
let me = "";
let current: string | null = null;
const rooms = new Map<string, RoomView>();
/** The open room's messages by key (client_msg_id, or seq for messages without one). */
let messages = new Map<string, ViewMessage>();
let oldestLoaded: bigint | undefined;
let hasOlder = false;
let loadingOlder = false;
let historyLoaded = false;
let editing: ViewMessage | null = null;
/** The versions shown under a message (by seq), oldest first; toggled by its "edited". */
const shownVersions = new Map<bigint, { at: number; text: string }[]>();
const typingUntil = new Map<string, number>(); // "room user" -> expiry (ms)
const online = new Map<string, boolean>();
const saved = new Set<string>(); // client_msg_ids written to the outbox store
/** Messages this user reported ("room seq"), kept in localStorage so a reload still shows them. */
const REPORTED_KEY = "chatwire.reported";
function reportedSet(): Set<string> {
  try {
    return new Set<string>(JSON.parse(localStorage.getItem(`${REPORTED_KEY}.${me}`) ?? "[]"));
  } catch {
    return new Set<string>();
  }
}
/** The user's contacts and requests by user id, as the server lists them (ContactChanged moves it). */
const contacts = new Map<string, ContactState>();

// ---------------------------------------------------------------------------------------------
// Log in and out

$<HTMLFormElement>("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $<HTMLInputElement>("token").value.trim();
  if (token) start(token);
});
$("logout").addEventListener("click", () => logout());
const kept = sessionStorage.getItem(TOKEN_KEY);
if (kept) start(kept);

/** The token's `sub` (the user id), read without verifying: only to name the local outbox. */
function subject(token: string): string {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return String(JSON.parse(json).sub ?? "");
  } catch {
    return "";
  }
}

function start(token: string): void {
  me = subject(token);
  if (!me) {
    $("login-error").textContent = "That is not a token (expected a JWT from `chatwire token`).";
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login").hidden = true;
  $("app").hidden = false;
  $("me").textContent = me;
  $("login-error").textContent = "";
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  const c = new ChatwireClient({
    url,
    token,
    clientInfo: { name: "web-chat", platform: "web" },
    outboxStore: new IndexedDbOutboxStore(`chatwire-outbox:${me}`),
    // A chat page keeps trying while the server is away; the banner says why it is not connected.
    maxAttempts: Infinity,
    backoff: { baseMs: 500, maxMs: 5000 },
  });
  client = c;
  c.watchConnection(renderConnection);
  c.on("session", (connected) => {
    // The search box is there when the server offers search (capability `search`).
    $("search-box").hidden = !connected.capabilities.includes("search");
    // Contacts (capability `contacts`): the list is read again on every (re)connect.
    const offersContacts = connected.capabilities.includes("contacts");
    $("contacts-box").hidden = !offersContacts;
    // A session that ends while these read is no error: the next one reads again.
    if (offersContacts) loadContacts(c).catch(() => undefined);
    onSession(c).catch(() => undefined);
  });
  c.on("room", onRoomEvent);
  c.on("status", (m) => onStatus(m));
  c.on("receiptsChanged", (r) => {
    if (r.roomId === current) renderMessages();
  });
  c.on("readPositionMoved", (moved) => {
    const room = rooms.get(moved.roomId);
    if (!room) return;
    room.unread = moved.unreadCount;
    room.newer.clear();
    renderRooms();
  });
  c.on("typingChanged", (t) => {
    typingUntil.set(`${t.roomId} ${t.userId}`, t.active ? Date.now() + t.expiresInMs : 0);
    renderTyping();
  });
  c.on("presence", (p) => {
    online.set(p.userId, p.online);
    renderPresence();
    renderContacts();
  });
  c.on("contactChanged", (changed) => {
    const contact = changed.contact;
    if (!contact) return;
    applyContact(contact);
    // The note of a sent request is stale once the other user answered it.
    if (changed.actor !== me) $("contacts-status").textContent = "";
    renderContacts();
  });
  c.on("roomAdded", (r) => {
    if (!r.room) return;
    const room = addRoom(r.room.id, r.room.kind, r.room.name, r.room.memberCount, 0, r.room.lastSeq);
    // The membership tells the role (a group made on another device arrives as its owner).
    if (r.me) room.role = r.me.role;
    if (current === room.id) renderHeader();
    void follow(r.room.id);
  });
  c.on("roomRemoved", (r) => {
    rooms.delete(r.roomId);
    if (current === r.roomId) closeRoom();
    renderRooms();
  });
  // The rooms and the open room of this tab, shown at once (also while offline).
  for (const cached of JSON.parse(sessionStorage.getItem(ROOMS_KEY) ?? "[]") as { id: string; kind: RoomKind; title: string; peer: string | null }[]) {
    addRoom(cached.id, cached.kind, cached.title, 0, 0, 0n);
    rooms.get(cached.id)!.peer = cached.peer;
  }
  const open = sessionStorage.getItem(CURRENT_KEY);
  if (open && rooms.has(open)) void select(open);
  c.open().catch((err: Error) => {
    if (c !== client) return;
    // The server refused the token: back to the login form.
    if (err instanceof ConnectionError && err.refusal) {
      logout();
      $("login-error").textContent = err.refusal.message;
    }
  });
}

function logout(): void {
  client?.close();
  client = null;
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(ROOMS_KEY);
  sessionStorage.removeItem(CURRENT_KEY);
  rooms.clear();
  contacts.clear();
  closeRoom();
  renderRooms();
  renderContacts();
  $("app").hidden = true;
  $("login").hidden = false;
  $<HTMLInputElement>("token").value = "";
}

function renderConnection(status: ConnectionStatus): void {
  const banner = $("banner");
  banner.dataset.state = status.state;
  $("app").dataset.connection = status.state;
  $("conn").textContent = status.state === "connected" ? "" : status.state;
  switch (status.state) {
    case "connected":
    case "idle":
      banner.hidden = true;
      banner.textContent = "";
      return;
    case "connecting":
      banner.hidden = false;
      banner.textContent = "Connecting…";
      return;
    case "reconnecting":
      banner.hidden = false;
      banner.textContent = `Not connected, retrying (attempt ${status.attempt})${status.lastError ? `: ${status.lastError.message}` : ""}. Messages you send now are kept and sent later.`;
      return;
    case "closed":
      banner.hidden = false;
      banner.textContent = `Disconnected: ${status.reason}`;
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Rooms

/** Every (re)connect: room list and unread counts from Sync, rooms followed from their head. */
async function onSession(c: ChatwireClient): Promise<void> {
  let cursor = "";
  const seen = new Set<string>();
  for (;;) {
    const page = await c.sync({ cursor });
    for (const summary of page.rooms) {
      seen.add(summary.room!.id);
      applySummary(summary);
    }
    if (page.caughtUp || !page.nextCursor) break;
    cursor = page.nextCursor;
  }
  for (const id of [...rooms.keys()]) if (!seen.has(id)) rooms.delete(id);
  if (current && !rooms.has(current)) closeRoom();
  renderRooms();
  for (const room of rooms.values()) void follow(room.id);
  if (current && !historyLoaded) void loadNewest(current);
}

function applySummary(s: RoomSummary): void {
  const room = addRoom(s.room!.id, s.room!.kind, s.room!.name, s.room!.memberCount, s.unreadCount, s.lastSeq);
  room.members = s.room!.memberCount;
  room.role = s.role;
  // The server's count covers everything up to its head; keep only arrivals beyond it.
  for (const seq of room.newer) if (seq <= s.lastSeq) room.newer.delete(seq);
  room.countedThrough = s.lastSeq > room.countedThrough ? s.lastSeq : room.countedThrough;
  room.unread = room.id === current ? 0 : s.unreadCount + room.newer.size;
  if (room.id === current && s.unreadCount > 0) markRead(room.id, s.lastSeq);
}

function addRoom(id: string, kind: RoomKind, name: string, members: number, unread: number, head: bigint): RoomView {
  let room = rooms.get(id);
  if (!room) {
    room = { id, kind, title: name || id, peer: null, role: Role.MEMBER, members, unread, countedThrough: head, newer: new Set(), followed: false };
    rooms.set(id, room);
  }
  if (kind === RoomKind.DIRECT && !room.peer && client) void findPeer(room);
  renderRooms();
  return room;
}

/** A direct room's title is the other member, whose presence the page watches. A connection
 * lost on the way is no error: the next session's room summaries ask again. */
async function findPeer(room: RoomView): Promise<void> {
  const c = client!;
  try {
    const members = await c.listMembers({ roomId: room.id });
    const peer = members.members.map((m) => m.userId).find((u) => u !== me) ?? me;
    room.peer = peer;
    room.title = peer;
    renderRooms();
    if (room.id === current) renderHeader();
    const watched = await c.watchPresence({ userIds: [peer] });
    for (const p of watched.presences) online.set(p.userId, p.online);
    renderPresence();
  } catch {
    room.peer = null;
  }
}

/** Follows a room live from the head the server counted (history is loaded apart, by page). */
async function follow(roomId: string): Promise<void> {
  const room = rooms.get(roomId);
  const c = client;
  if (!room || !c || room.followed) return;
  room.followed = true;
  try {
    await c.subscribeRoom(roomId, { afterSeq: room.countedThrough });
  } catch {
    room.followed = false;
  }
}

function renderRooms(): void {
  sessionStorage.setItem(ROOMS_KEY, JSON.stringify([...rooms.values()].map((r) => ({ id: r.id, kind: r.kind, title: r.title, peer: r.peer }))));
  $("rooms").replaceChildren(
    ...[...rooms.values()].map((r) => {
      const li = document.createElement("li");
      li.dataset.room = r.id;
      li.className = r.id === current ? "active" : "";
      const dot = r.peer ? `<span class="dot ${online.get(r.peer) ? "online" : ""}"></span>` : "";
      const badge = r.unread > 0 && r.id !== current ? `<span class="unread" aria-label="${r.unread} unread">${r.unread}</span>` : "";
      li.innerHTML = `<span class="title">${dot}${escape(r.title)}</span>${badge}`;
      li.onclick = () => void select(r.id);
      return li;
    }),
  );
}

$<HTMLFormElement>("direct-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const userId = $<HTMLInputElement>("peer").value.trim();
  if (!userId || !client) return;
  void guard(async () => {
    const { room } = await client!.openDirect({ userId });
    addRoom(room!.id, room!.kind, room!.name, room!.memberCount, 0, room!.lastSeq);
    $<HTMLInputElement>("peer").value = "";
    await select(room!.id);
    void follow(room!.id);
  });
});

$<HTMLFormElement>("group-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $<HTMLInputElement>("group-name").value.trim();
  const memberIds = $<HTMLInputElement>("group-members").value.split(/[\s,]+/).filter(Boolean);
  if (!name || !client) return;
  void guard(async () => {
    const { room } = await client!.createGroup({ name, memberIds });
    addRoom(room!.id, room!.kind, room!.name, room!.memberCount, 0, room!.lastSeq).role = Role.OWNER;
    $<HTMLInputElement>("group-name").value = "";
    $<HTMLInputElement>("group-members").value = "";
    await select(room!.id);
    void follow(room!.id);
  });
});

$("reviews-toggle").addEventListener("click", () => {
  $("reviews").hidden = !$("reviews").hidden;
  if (!$("reviews").hidden) void loadReviews();
});

$("add-member").addEventListener("click", () => {
  $("add-member-form").hidden = !$("add-member-form").hidden;
  $("new-member").focus();
});
$<HTMLFormElement>("add-member-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const userIds = $<HTMLInputElement>("new-member").value.split(/[\s,]+/).filter(Boolean);
  const roomId = current;
  if (!userIds.length || !roomId || !client) return;
  void guard(async () => {
    // The member count moves with the MemberJoined events of the followed room.
    await client!.addMembers({ roomId, userIds });
    $<HTMLInputElement>("new-member").value = "";
    $("add-member-form").hidden = true;
    renderHeader();
  });
});

$("back").addEventListener("click", () => closeRoom());

// ---------------------------------------------------------------------------------------------
// Contacts: add by user id, accept or decline requests, see each contact's presence (the server
// watches contacts from Connect: no WatchPresence here), and "Chat" opens the direct room.

async function loadContacts(c: ChatwireClient): Promise<void> {
  const all: Contact[] = [];
  let after = "";
  for (;;) {
    const page = await c.listContacts({ afterUserId: after, limit: 100 });
    all.push(...page.contacts);
    if (!page.hasMore || page.contacts.length === 0) break;
    after = page.contacts[page.contacts.length - 1]!.userId;
  }
  if (c !== client) return;
  contacts.clear();
  for (const contact of all) applyContact(contact);
  renderContacts();
}

function applyContact(contact: Contact): void {
  if (contact.state === ContactState.UNSPECIFIED) contacts.delete(contact.userId);
  else contacts.set(contact.userId, contact.state);
}

$<HTMLFormElement>("contact-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const userId = $<HTMLInputElement>("contact-user").value.trim();
  if (!userId || !client) return;
  void guard(async () => {
    try {
      const { contact } = await client!.sendContactRequest({ userId });
      if (contact) applyContact(contact);
      $<HTMLInputElement>("contact-user").value = "";
      $("contacts-status").textContent =
        contact?.state === ContactState.ACCEPTED ? `${userId} is a contact.` : `Request sent to ${userId}.`;
      renderContacts();
    } catch (err) {
      $("contacts-status").textContent = String((err as Error)?.message ?? err);
    }
  });
});

function contactButton(label: string, className: string, action: () => Promise<unknown>): HTMLButtonElement {
  const button = document.createElement("button");
  button.textContent = label;
  button.className = className;
  button.onclick = (e) => {
    e.stopPropagation();
    void guard(async () => {
      await action();
    });
  };
  return button;
}

function renderContacts(): void {
  const sorted = [...contacts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const item = (userId: string, state: ContactState) => {
    const li = document.createElement("li");
    li.dataset.user = userId;
    li.dataset.state = state === ContactState.ACCEPTED ? "accepted" : state === ContactState.INCOMING ? "incoming" : "outgoing";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = userId;
    return { li, name };
  };
  const requests = sorted
    .filter(([, state]) => state === ContactState.INCOMING)
    .map(([userId, state]) => {
      const { li, name } = item(userId, state);
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = " wants to be your contact ";
      li.append(
        name,
        note,
        contactButton("Accept", "accept", async () => {
          const { contact } = await client!.acceptContactRequest({ userId });
          if (contact) applyContact(contact);
          renderContacts();
        }),
        contactButton("Decline", "decline", async () => {
          await client!.declineContactRequest({ userId });
          contacts.delete(userId);
          renderContacts();
        }),
      );
      return li;
    });
  const list = sorted
    .filter(([, state]) => state !== ContactState.INCOMING)
    .map(([userId, state]) => {
      const { li, name } = item(userId, state);
      if (state === ContactState.ACCEPTED) {
        const isOnline = online.get(userId) ?? false;
        const dot = document.createElement("span");
        dot.className = `dot ${isOnline ? "online" : ""}`;
        const presence = document.createElement("span");
        presence.className = "presence";
        presence.textContent = isOnline ? "online" : "offline";
        li.append(
          dot,
          name,
          presence,
          contactButton("Chat", "chat", () => startChat(userId)),
          contactButton("Remove", "remove", async () => {
            await client!.removeContact({ userId });
            contacts.delete(userId);
            renderContacts();
          }),
        );
      } else {
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = " request sent ";
        li.append(
          name,
          note,
          contactButton("Cancel", "cancel", async () => {
            await client!.cancelContactRequest({ userId });
            contacts.delete(userId);
            renderContacts();
          }),
        );
      }
      return li;
    });
  $("contact-requests").replaceChildren(...requests);
  $("contacts").replaceChildren(...list);
}

/** "Chat" on a contact: opens (creating on first use) the direct room with them. */
async function startChat(userId: string): Promise<void> {
  const { room } = await client!.openDirect({ userId });
  addRoom(room!.id, room!.kind, room!.name, room!.memberCount, 0, room!.lastSeq);
  await select(room!.id);
  void follow(room!.id);
}

// ---------------------------------------------------------------------------------------------
// The open room

// ---------------------------------------------------------------------------------------------
// Search: words of the messages this user may read, newest first, each hit a snippet with the
// matched words marked; a click opens its room.

$<HTMLFormElement>("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const query = $<HTMLInputElement>("search-query").value.trim();
  if (!query || !client) return;
  $("search-status").textContent = "Searching…";
  void guard(async () => {
    try {
      const found = await client!.search({ query, limit: 20 });
      renderSearch(found.hits);
    } catch (err) {
      $("search-results").replaceChildren();
      $("search-status").textContent = String((err as Error)?.message ?? err);
    }
  });
});

function renderSearch(hits: SearchHit[]): void {
  $("search-status").textContent = hits.length === 0 ? "No messages found." : `${hits.length} found`;
  $("search-results").replaceChildren(
    ...hits.map((hit) => {
      const li = document.createElement("li");
      li.dataset.room = hit.roomId;
      li.dataset.seq = String(hit.seq);
      const where = document.createElement("span");
      where.className = "where";
      const room = rooms.get(hit.roomId);
      where.textContent = `${room?.title ?? hit.roomId} · ${hit.message?.sender ?? ""}`;
      li.append(where, ...highlighted(hit.snippet, hit.highlights));
      li.onclick = () => void select(hit.roomId);
      return li;
    }),
  );
}

/** The snippet as text nodes and <mark>s; ranges are in code points, not UTF-16 units. */
function highlighted(snippet: string, ranges: { start: number; end: number }[]): Node[] {
  const points = Array.from(snippet);
  const out: Node[] = [];
  let at = 0;
  for (const r of ranges) {
    if (r.start < at || r.end > points.length) continue;
    if (r.start > at) out.push(document.createTextNode(points.slice(at, r.start).join("")));
    const mark = document.createElement("mark");
    mark.textContent = points.slice(r.start, r.end).join("");
    out.push(mark);
    at = r.end;
  }
  if (at < points.length) out.push(document.createTextNode(points.slice(at).join("")));
  return out;
}

async function select(roomId: string): Promise<void> {
  current = roomId;
  sessionStorage.setItem(CURRENT_KEY, roomId);
  $("app").classList.add("in-room");
  $("chat").hidden = false;
  $("empty").hidden = true;
  cancelEdit();
  $("reviews").hidden = true;
  messages = new Map();
  shownVersions.clear();
  oldestLoaded = undefined;
  hasOlder = false;
  historyLoaded = false;
  const room = rooms.get(roomId);
  if (room) {
    room.unread = 0;
    room.newer.clear();
  }
  renderRooms();
  renderHeader();
  addPending(roomId);
  renderMessages(true);
  if (client?.state === "connected") await loadNewest(roomId);
}

function closeRoom(): void {
  current = null;
  sessionStorage.removeItem(CURRENT_KEY);
  $("app").classList.remove("in-room");
  $("chat").hidden = true;
  $("empty").hidden = false;
  messages = new Map();
  renderRooms();
}

function renderHeader(): void {
  const room = current ? rooms.get(current) : undefined;
  $("room-title").textContent = room?.title ?? "";
  const group = room?.kind === RoomKind.GROUP;
  $("add-member").hidden = !group;
  if (!group) $("add-member-form").hidden = true;
  // Owners, admins and moderators review the group's reported and flagged messages.
  $("reviews-toggle").hidden = !moderates();
  if (!moderates()) $("reviews").hidden = true;
  $("members").textContent = group && room ? `${room.members} member${room.members === 1 ? "" : "s"}` : "";
  renderPresence();
}

/** The newest page, shown oldest first; then the room counts as read. */
async function loadNewest(roomId: string): Promise<void> {
  const c = client;
  if (!c) return;
  // No position: the newest messages (an explicit before_seq 0 means the same, R-9.1.1).
  const page = await guard(() => c.history({ roomId, limit: PAGE }));
  if (!page || roomId !== current) return;
  for (const m of page.messages) put(fromMessage(m));
  note(page.messages, page.hasMore);
  historyLoaded = true;
  renderMessages(true);
  const newest = page.messages[0]?.seq ?? 0n;
  const applied = c.room(roomId)?.lastSeq ?? 0n;
  markRead(roomId, newest > applied ? newest : applied);
}

/** Older pages when the list is scrolled to its top. */
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 40) void loadOlder();
});

async function loadOlder(): Promise<void> {
  const c = client;
  const roomId = current;
  if (!c || !roomId || !hasOlder || loadingOlder || oldestLoaded === undefined) return;
  loadingOlder = true;
  try {
    const page = await guard(() => c.history({ roomId, position: { case: "beforeSeq", value: oldestLoaded! }, limit: PAGE }));
    if (!page || roomId !== current) return;
    const list = $("messages");
    const fromBottom = list.scrollHeight - list.scrollTop;
    for (const m of page.messages) put(fromMessage(m));
    note(page.messages, page.hasMore);
    renderMessages();
    list.scrollTop = list.scrollHeight - fromBottom;
  } finally {
    loadingOlder = false;
  }
}

function note(page: Message[], more: boolean): void {
  const lowest = page.at(-1)?.seq;
  if (lowest !== undefined && (oldestLoaded === undefined || lowest < oldestLoaded)) {
    oldestLoaded = lowest;
    hasOlder = more;
  } else if (oldestLoaded === undefined) {
    hasOlder = false;
  }
}

function fromMessage(m: Message): ViewMessage {
  const reactions = new Map<string, { count: number; me: boolean }>();
  for (const r of m.reactions) reactions.set(r.emoji, { count: r.count, me: r.me });
  return {
    key: m.clientMsgId || `seq:${m.seq}`,
    seq: m.seq,
    sender: m.sender,
    clientMsgId: m.clientMsgId,
    text: m.content?.text ?? "",
    createdAtMs: Number(m.createdAtMs),
    edited: m.editedAtMs > 0n,
    deleted: m.deleted,
    reactions,
  };
}

function put(m: ViewMessage): void {
  const old = messages.get(m.key);
  // A pending message keeps its place and gains its seq; a newer state replaces an older one.
  messages.set(m.key, old && old.seq !== undefined && m.seq === undefined ? old : m);
}

function bySeq(seq: bigint): ViewMessage | undefined {
  for (const m of messages.values()) if (m.seq === seq) return m;
  return undefined;
}

/** The outbox's unsent messages of the room (also those restored after a reload). */
function addPending(roomId: string): void {
  for (const out of client?.unacknowledged() ?? []) {
    if (out.roomId === roomId) put(fromOutgoing(out));
  }
}

function fromOutgoing(out: OutgoingMessage): ViewMessage {
  return {
    key: out.clientMsgId,
    seq: out.seq,
    sender: me,
    clientMsgId: out.clientMsgId,
    text: out.content?.text ?? "",
    createdAtMs: out.createdAtMs,
    edited: false,
    deleted: false,
    reactions: new Map(),
  };
}

function onRoomEvent(event: RoomEvent): void {
  const room = rooms.get(event.roomId);
  const kind = event.kind;
  if (kind.case === "messageCreated") {
    if (event.sender !== me) typingUntil.delete(`${event.roomId} ${event.sender}`);
    if (event.roomId === current) {
      put({
        key: kind.value.clientMsgId || `seq:${event.seq}`,
        seq: event.seq,
        sender: event.sender,
        clientMsgId: kind.value.clientMsgId,
        text: kind.value.content?.text ?? "",
        createdAtMs: Number(event.tsMs),
        edited: false,
        deleted: kind.value.redacted,
        reactions: new Map(),
      });
      renderMessages();
      if (event.sender !== me && document.visibilityState === "visible") markRead(event.roomId, event.seq);
    } else if (room && event.sender !== me && event.seq > room.countedThrough && !room.newer.has(event.seq)) {
      room.newer.add(event.seq);
      room.unread++;
      void client?.markDelivered({ roomId: event.roomId, seq: event.seq });
    } else if (room && event.sender === me) {
      // Sending reads the room up to the message (R-12.1.6).
      room.unread = 0;
      room.newer.clear();
    }
    renderRooms();
    renderTyping();
    return;
  }
  if (event.roomId !== current) {
    if (kind.case === "memberJoined" && room) room.members++;
    if (kind.case === "memberLeft" && room) room.members = Math.max(0, room.members - 1);
    return;
  }
  switch (kind.case) {
    case "messageEdited": {
      const m = bySeq(kind.value.targetSeq);
      if (m) {
        m.text = kind.value.content?.text ?? "";
        m.edited = true;
      }
      break;
    }
    case "messageDeleted": {
      const m = bySeq(kind.value.targetSeq);
      if (m) {
        m.deleted = true;
        m.text = "";
      }
      break;
    }
    case "reactionChanged": {
      const m = bySeq(kind.value.targetSeq);
      if (m) {
        const r = m.reactions.get(kind.value.emoji) ?? { count: 0, me: false };
        r.count += kind.value.added ? 1 : -1;
        if (event.sender === me) r.me = kind.value.added;
        if (r.count > 0) m.reactions.set(kind.value.emoji, r);
        else m.reactions.delete(kind.value.emoji);
      }
      break;
    }
    case "memberJoined":
      if (room) room.members++;
      renderHeader();
      break;
    case "memberRoleChanged":
      if (room && kind.value.userId === me) room.role = kind.value.role;
      break;
    case "memberLeft":
      if (room) room.members = Math.max(0, room.members - 1);
      renderHeader();
      break;
    default:
      return;
  }
  renderMessages();
}

function onStatus(out: OutgoingMessage): void {
  if (out.roomId !== current) return;
  const m = messages.get(out.clientMsgId);
  if (m) m.seq = out.seq ?? m.seq;
  else put(fromOutgoing(out));
  renderMessages();
}

function markRead(roomId: string, seq: bigint): void {
  if (seq > 0n) void client?.markRead({ roomId, seq }).catch(() => {});
}

// ---------------------------------------------------------------------------------------------
// Rendering the conversation

const STATUS_TEXT: Record<MessageStatus, string> = { pending: "○ pending", sent: "✓ sent", delivered: "✓✓ delivered", read: "✓✓ read", failed: "⚠ failed" };

function statusOf(m: ViewMessage): MessageStatus {
  const out = client?.outgoing(m.clientMsgId);
  if (out) return out.status;
  if (m.seq === undefined) return "pending";
  const room = current ? client?.room(current) : undefined;
  if (!room || !client) return "sent";
  return statusFromReceipts(m.seq, me, room.members, room.receipts);
}

function dayLabel(ms: number): string {
  const day = new Date(ms);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (day.toDateString() === today.toDateString()) return "Today";
  if (day.toDateString() === yesterday.toDateString()) return "Yesterday";
  return day.toLocaleDateString(undefined, { weekday: "short", year: "numeric", month: "short", day: "numeric" });
}

function renderMessages(toBottom = false): void {
  const list = $("messages");
  const atBottom = toBottom || list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const ordered = [...messages.values()].sort((a, b) => {
    if (a.seq !== undefined && b.seq !== undefined) return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
    if (a.seq !== undefined) return -1;
    if (b.seq !== undefined) return 1;
    return a.createdAtMs - b.createdAtMs;
  });
  const items: HTMLLIElement[] = [];
  if (hasOlder) {
    const li = document.createElement("li");
    li.id = "older";
    li.textContent = loadingOlder ? "Loading…" : "Scroll up for older messages";
    items.push(li);
  }
  let lastDay = "";
  for (const m of ordered) {
    const day = new Date(m.createdAtMs).toDateString();
    if (day !== lastDay) {
      lastDay = day;
      const sep = document.createElement("li");
      sep.className = "day";
      sep.textContent = dayLabel(m.createdAtMs);
      items.push(sep);
    }
    items.push(renderMessage(m));
  }
  list.replaceChildren(...items);
  if (atBottom) list.scrollTop = list.scrollHeight;
  // A short first page leaves nothing to scroll: fetch older pages until the list can scroll.
  if (hasOlder && !loadingOlder && list.scrollHeight <= list.clientHeight) void loadOlder();
}

function renderMessage(m: ViewMessage): HTMLLIElement {
  const li = document.createElement("li");
  const mine = m.sender === me;
  li.className = `msg ${mine ? "mine" : "theirs"}${m.deleted ? " deleted" : ""}`;
  li.dataset.key = m.key;
  if (m.seq !== undefined) li.dataset.seq = String(m.seq);
  if (saved.has(m.clientMsgId)) li.dataset.saved = "true";
  const time = new Date(m.createdAtMs).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  const status = mine ? statusOf(m) : undefined;
  const reported = !mine && current !== null && m.seq !== undefined && reportedSet().has(`${current} ${m.seq}`);
  const reactions = [...m.reactions].map(([emoji, r]) => `<span class="${r.me ? "me" : ""}">${escape(emoji)} ${r.count}</span>`).join("");
  li.innerHTML =
    `<span class="sender">${escape(m.sender)}</span>` +
    `<span class="text">${m.deleted ? "message deleted" : escape(m.text)}</span>` +
    `<span class="meta"><time datetime="${new Date(m.createdAtMs).toISOString()}">${time}</time>${m.edited && !m.deleted ? ' · <button type="button" class="edited" data-action="versions" title="Show every version">edited</button>' : ""}` +
    (status ? ` <span class="status" data-status="${status}">${STATUS_TEXT[status]}</span>` : "") +
    (reported && !m.deleted ? ' · <span class="reported">reported</span>' : "") +
    `</span>` +
    (reactions ? `<div class="reactions">${reactions}</div>` : "");
  if (m.seq !== undefined && !m.deleted) {
    const actions = document.createElement("div");
    actions.className = "actions";
    for (const emoji of ["👍", "❤️", "😂"]) actions.append(button(emoji, `react ${emoji}`, () => react(m, emoji)));
    if (mine) {
      actions.append(button("Edit", "edit", () => startEdit(m)));
      actions.append(button("Delete", "delete", () => remove(m)));
    } else {
      if (moderates()) actions.append(button("Remove", "moderate", () => moderate(m)));
      if (!reported) actions.append(button("Report", "report", () => void report(m)));
    }
    li.append(actions);
    li.addEventListener("click", (e) => {
      if ((e.target as HTMLElement).closest(".actions")) return;
      li.classList.toggle("open");
    });
  }
  const edited = li.querySelector<HTMLButtonElement>("button.edited");
  if (edited) {
    edited.addEventListener("click", (e) => {
      e.stopPropagation();
      void showVersions(m, li);
    });
  }
  const versions = m.seq !== undefined ? shownVersions.get(m.seq) : undefined;
  if (versions) li.append(versionsList(versions));
  return li;
}

/** The caller moderates the open room: a group where it is owner, admin or moderator. */
function moderates(): boolean {
  const room = current ? rooms.get(current) : undefined;
  return room?.kind === RoomKind.GROUP && [Role.OWNER, Role.ADMIN, Role.MODERATOR].includes(room.role);
}

/** A moderator's delete of someone else's message, with a reason (kept in the room's audit). */
function moderate(m: ViewMessage): void {
  if (!current || m.seq === undefined || !client) return;
  const reason = prompt(`Remove ${m.sender}'s message for everyone? Reason:`);
  if (reason === null) return;
  void guard(() => client!.delete({ roomId: current!, targetSeq: m.seq!, reason }));
}

/** The open room's open review entries (ListReviews), each with Remove and Approve. */
async function loadReviews(): Promise<void> {
  if (!current || !client) return;
  const roomId = current;
  const page = await guard(() => client!.listReviews({ roomId, limit: 100 }));
  if (!page || current !== roomId) return;
  const list = $("review-list");
  list.replaceChildren();
  $("reviews-empty").hidden = page.entries.length > 0;
  for (const e of page.entries) {
    const li = document.createElement("li");
    li.dataset.seq = String(e.targetSeq);
    const text = bySeq(e.targetSeq)?.text ?? `message #${e.targetSeq}`;
    const why = [
      ...e.reports.map((r) => `${r.reporter}: ${r.reason}`),
      ...(e.flagged ? [`flagged (${e.reasons.join(", ")})`] : []),
    ].join("; ");
    li.innerHTML = `<strong>${escape(e.sender)}</strong> <span class="review-text">${escape(text)}</span><div class="review-reports">${escape(why)}</div>`;
    li.append(
      button("Remove", "review-remove", () => void review(roomId, e.targetSeq, true)),
      button("Approve", "review-approve", () => void review(roomId, e.targetSeq, false)),
    );
    list.append(li);
  }
}

/** Removes (with a reason) or approves a reviewed message (ResolveReview), then reloads the list. */
async function review(roomId: string, targetSeq: bigint, remove: boolean): Promise<void> {
  if (!client) return;
  let reason = "";
  if (remove) {
    reason = prompt("Remove this message for everyone? Reason:")?.trim() ?? "";
    if (!reason) return;
  }
  const done = await guard(() => client!.resolveReview({ roomId, targetSeq, remove, reason }));
  if (done && current === roomId) await loadReviews();
}

/** Reports someone else's message to the server's moderators, with a reason (ReportMessage). */
async function report(m: ViewMessage): Promise<void> {
  if (!current || m.seq === undefined || !client) return;
  const roomId = current;
  const reason = prompt(`Report ${m.sender}'s message to the moderators? Reason:`)?.trim();
  if (!reason) return;
  const done = await guard(() => client!.reportMessage({ roomId, targetSeq: m.seq!, reason }));
  if (!done) return;
  const reported = reportedSet();
  reported.add(`${roomId} ${m.seq}`);
  localStorage.setItem(`${REPORTED_KEY}.${me}`, JSON.stringify([...reported]));
  if (current === roomId) renderMessages();
}

async function showVersions(m: ViewMessage, li: HTMLLIElement): Promise<void> {
  if (!current || m.seq === undefined || !client) return;
  if (shownVersions.delete(m.seq)) {
    li.querySelector("ol.versions")?.remove();
    return;
  }
  const history = await guard(() => client!.getEditHistory({ roomId: current!, targetSeq: m.seq! }));
  if (!history) return;
  const versions = history.versions.map((v) => ({ at: Number(v.tsMs), text: v.redacted ? "(deleted)" : v.content?.text ?? "" }));
  shownVersions.set(m.seq, versions);
  li.querySelector("ol.versions")?.remove();
  li.append(versionsList(versions));
}

function versionsList(versions: { at: number; text: string }[]): HTMLOListElement {
  const list = document.createElement("ol");
  list.className = "versions";
  for (const v of versions) {
    const item = document.createElement("li");
    const time = new Date(v.at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
    item.innerHTML = `<time>${time}</time> <span class="version-text">${escape(v.text)}</span>`;
    list.append(item);
  }
  return list;
}

function button(label: string, action: string, run: () => void): HTMLButtonElement {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  b.addEventListener("click", run);
  return b;
}

function react(m: ViewMessage, emoji: string): void {
  if (!current || m.seq === undefined || !client) return;
  const add = !m.reactions.get(emoji)?.me;
  void guard(() => client!.react({ roomId: current!, targetSeq: m.seq!, emoji, add }));
}

function remove(m: ViewMessage): void {
  if (!current || m.seq === undefined || !client) return;
  if (!confirm("Delete this message for everyone?")) return;
  void guard(() => client!.delete({ roomId: current!, targetSeq: m.seq! }));
}

function startEdit(m: ViewMessage): void {
  editing = m;
  $("editing").hidden = false;
  $<HTMLInputElement>("text").value = m.text;
  $("text").focus();
}

function cancelEdit(): void {
  editing = null;
  $("editing").hidden = true;
}
$("cancel-edit").addEventListener("click", () => {
  cancelEdit();
  $<HTMLInputElement>("text").value = "";
});

function renderTyping(): void {
  const now = Date.now();
  const who = [...typingUntil].filter(([key, until]) => until > now && key.startsWith(`${current} `)).map(([key]) => key.split(" ")[1]);
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}
setInterval(renderTyping, 1000);

function renderPresence(): void {
  const peer = current ? rooms.get(current)?.peer : null;
  $("presence").innerHTML = peer ? `<span class="dot ${online.get(peer) ? "online" : ""}"></span>${online.get(peer) ? "online" : "offline"}` : "";
  renderRooms();
}

// ---------------------------------------------------------------------------------------------
// Composing

$<HTMLFormElement>("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});
$("text").addEventListener("input", () => typing());

let lastTyping = 0;
function typing(): void {
  if (!current || !client || client.state !== "connected") return;
  const throttle = client.session?.limits?.typingThrottleMs ?? 3000;
  const now = Date.now();
  if (now - lastTyping < throttle) return;
  lastTyping = now;
  void client.typing({ roomId: current, active: true }).catch(() => {});
}

function send(): void {
  const input = $<HTMLInputElement>("text");
  const text = input.value.trim();
  const c = client;
  if (!text || !current || !c) return;
  input.value = "";
  lastTyping = 0;
  if (editing && editing.seq !== undefined) {
    const target = editing.seq;
    cancelEdit();
    void guard(() => c.edit({ roomId: current!, targetSeq: target, content: { text } }));
    return;
  }
  const out = c.sendMessage(current, text);
  put(fromOutgoing(out));
  renderMessages(true);
  // A refusal (a moderator's restriction, rejected content) says why in the banner.
  void guard(() => out.sent);
  // Marked once the outbox store holds it: from then on a reload keeps it.
  void c.flushOutbox().then(() => {
    saved.add(out.clientMsgId);
    if (out.roomId === current) renderMessages();
  });
}

// ---------------------------------------------------------------------------------------------

/** Runs a request; a failure shows in the banner instead of being lost. */
async function guard<T>(run: () => Promise<T>): Promise<T | undefined> {
  try {
    return await run();
  } catch (err) {
    const banner = $("banner");
    if (client?.state === "connected") {
      banner.hidden = false;
      banner.dataset.state = "error";
      banner.textContent = String((err as Error)?.message ?? err);
    }
    return undefined;
  }
}

function escape(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
