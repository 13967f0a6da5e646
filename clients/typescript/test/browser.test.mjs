// The web chat served by `chatwire serve` at `/`, in headless Chromium (playwright-core,
// /usr/bin/chromium), asserted by what a person sees: messages, history after a reload, unread
// badges against the server's counts, message status marks, a phone-width layout, and a
// message sent while the server is down that shows "pending" across a reload and arrives once.
// Other users act through the SDK in Node. Screenshots go to CHATWIRE_ARTIFACTS (default
// target/test-artifacts).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { TestServer, repoRoot, DEADLINE_MS, nextEvent, startCluster, stopCluster } from "./support.mjs";
import { Role } from "../dist/index.js";

const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = process.env.CHATWIRE_ARTIFACTS ?? join(process.env.CARGO_TARGET_DIR ?? join(repoRoot, "target"), "test-artifacts");
// LocalNetworkAccessChecks off: the offline test serves the page itself while the server is
// down (as a cached copy would), and Chromium blocks such a document's WebSocket to 127.0.0.1.
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-features=LocalNetworkAccessChecks"];

let browser;
before(async () => {
  mkdirSync(artifacts, { recursive: true });
  browser = await chromium.launch({ executablePath, args: flags, headless: true });
});
after(async () => {
  await browser?.close();
});

/** A fresh browser context (its own storage) with one page logged in as `user`. */
async function login(server, user, viewport = { width: 900, height: 560 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  const errors = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  await page.goto(server.httpUrl + "/");
  await page.fill("#token", server.token(user));
  await page.click("#connect");
  await connected(page);
  assert.equal(await page.textContent("#me"), user);
  return { context, page, errors };
}

function connected(page) {
  return page.waitForSelector('#app[data-connection="connected"]');
}

async function openDirect(page, peer) {
  await page.fill("#peer", peer);
  await page.click("#open-direct");
  await page.waitForSelector(`#room-title:has-text("${peer}")`);
}

/** The texts of the messages on screen, top to bottom. */
function shownTexts(page) {
  return page.$$eval("#messages li.msg .text", (els) => els.map((e) => e.textContent));
}

/** The badge of every room in the list (0 when it shows none), by room id. */
function badges(page) {
  return page.$$eval("#rooms li", (lis) => Object.fromEntries(lis.map((li) => [li.dataset.room, Number(li.querySelector(".unread")?.textContent ?? 0)])));
}

async function serverUnread(client) {
  const sync = await client.sync({});
  return Object.fromEntries(sync.rooms.map((s) => [s.room.id, s.unreadCount]));
}

function shot(page, name) {
  return page.screenshot({ path: join(artifacts, `web-chat-${name}.png`) });
}

test("two users chat in the page: message, typing indicator, read status and presence on each side", async () => {
  const server = await TestServer.start();
  try {
    const alice = await login(server, "alice");
    const bob = await login(server, "bob");
    await openDirect(alice.page, "bob");
    await openDirect(bob.page, "alice");
    for (const [from, to, fromName, text] of [
      [alice.page, bob.page, "alice", "hello bob"],
      [bob.page, alice.page, "bob", "hi alice"],
    ]) {
      await from.type("#text", text.slice(0, 3));
      await to.waitForSelector(`#typing:has-text("${fromName} is typing")`);
      await from.type("#text", text.slice(3));
      await from.press("#text", "Enter");
      await to.waitForSelector(`#messages li.theirs:has-text("${text}")`);
      // The receiver has the room open, so it reads the message.
      await from.waitForSelector(`#messages li.mine:has-text("${text}") .status[data-status="read"]`);
    }
    assert.equal(await alice.page.textContent("#typing"), "", "typing ends when the message arrives");
    await alice.page.waitForSelector('#presence:has-text("online")');
    await bob.page.waitForSelector('#presence:has-text("online")');
    // Timestamps and a day separator.
    assert.match(await alice.page.textContent("#messages li.msg time"), /\d{1,2}[:.]\d{2}/);
    assert.equal(await alice.page.textContent("#messages li.day"), "Today");
    await shot(alice.page, "alice");
    await shot(bob.page, "bob");
    assert.deepEqual([...alice.errors, ...bob.errors], []);
    await alice.context.close();
    await bob.context.close();
  } finally {
    await server.stop();
  }
});

test("opening a room shows its history, older pages load on scroll, and after a reload the same messages and the server's unread counts show", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  const carol = await server.client("carol");
  const bobSdk = await server.client("bob");
  try {
    const { room: direct } = await alice.openDirect({ userId: "bob" });
    const sent = [];
    for (let i = 1; i <= 35; i++) sent.push(alice.sendMessage(direct.id, `m${i}`).sent);
    await Promise.all(sent);
    const { room: team } = await carol.createGroup({ name: "team", memberIds: ["bob"] });
    await carol.sendMessage(team.id, "standup?").sent;
    await carol.sendMessage(team.id, "in 5").sent;
    const expected = Array.from({ length: 35 }, (_, i) => `m${i + 1}`);

    const bob = await login(server, "bob");
    await bob.page.waitForSelector(`#rooms li[data-room="${team.id}"] .unread:has-text("2")`);
    assert.deepEqual(await badges(bob.page), await serverUnread(bobSdk), "badges are the server's unread counts");
    assert.deepEqual(await badges(bob.page), { [direct.id]: 35, [team.id]: 2 });

    // Opening the room: the newest page, oldest first; scrolling up brings the rest.
    const read = nextEvent(bobSdk, "readPositionMoved", (m) => m.roomId === direct.id && m.unreadCount === 0);
    await bob.page.click(`#rooms li[data-room="${direct.id}"]`);
    await bob.page.waitForSelector('#messages li.msg:has-text("m35")');
    assert.deepEqual(await shownTexts(bob.page), expected.slice(-30));
    await bob.page.$eval("#messages", (el) => (el.scrollTop = 0));
    await bob.page.waitForFunction(() => document.querySelectorAll("#messages li.msg").length === 35);
    assert.deepEqual(await shownTexts(bob.page), expected);
    await read;

    // Reload: still logged in, the room still open with its messages in order, and the badges
    // still the server's (replayed history is not counted as new).
    await bob.page.reload();
    await connected(bob.page);
    await bob.page.waitForSelector('#messages li.msg:has-text("m35")');
    assert.deepEqual(await shownTexts(bob.page), expected.slice(-30));
    await bob.page.waitForSelector(`#rooms li[data-room="${team.id}"] .unread:has-text("2")`);
    assert.deepEqual(await badges(bob.page), await serverUnread(bobSdk));
    assert.deepEqual(await badges(bob.page), { [direct.id]: 0, [team.id]: 2 });
    await shot(bob.page, "after-reload");

    // A new message in a room that is not open counts once, as on the server.
    const teamRead = nextEvent(bobSdk, "readPositionMoved", (m) => m.roomId === team.id && m.unreadCount === 0);
    await bob.page.click(`#rooms li[data-room="${team.id}"]`);
    await bob.page.waitForSelector('#messages li.msg:has-text("in 5")');
    await teamRead;
    await alice.sendMessage(direct.id, "m36").sent;
    await bob.page.waitForSelector(`#rooms li[data-room="${direct.id}"] .unread:has-text("1")`);
    assert.deepEqual(await badges(bob.page), await serverUnread(bobSdk));
    assert.deepEqual(bob.errors, []);
    await bob.context.close();
  } finally {
    alice.close();
    carol.close();
    bobSdk.close();
    await server.stop();
  }
});

test("a reply turns the other side's message to read; groups, members, edit, delete, react, logout and a refused token in the page", async () => {
  const server = await TestServer.start();
  const bobSdk = await server.client("bob");
  try {
    const alice = await login(server, "alice");
    await openDirect(alice.page, "bob");
    const roomId = await alice.page.$eval("#rooms li.active", (li) => li.dataset.room);
    await bobSdk.subscribeRoom(roomId);
    const question = nextEvent(bobSdk, "room", (e) => e.kind.case === "messageCreated" && e.sender === "alice");
    await alice.page.fill("#text", "coffee?");
    await alice.page.press("#text", "Enter");
    await question;
    await alice.page.waitForSelector('#messages li.mine:has-text("coffee?") .status[data-status="sent"]');
    // Bob replies, then marks read: his reply moved his watermarks already.
    const answer = await bobSdk.sendMessage(roomId, "yes!").sent;
    await bobSdk.markRead({ roomId, seq: answer });
    await alice.page.waitForSelector('#messages li.theirs:has-text("yes!")');
    await alice.page.waitForSelector('#messages li.mine:has-text("coffee?") .status[data-status="read"]');

    // Edit, react, delete on her own message.
    const mine = '#messages li.mine:has-text("coffee?")';
    await alice.page.click(`${mine} .text`);
    await alice.page.click(`${mine} button[data-action="edit"]`);
    await alice.page.fill("#text", "coffee at 3?");
    await alice.page.press("#text", "Enter");
    await alice.page.waitForSelector('#messages li.mine:has-text("coffee at 3?"):has-text("edited")');
    await alice.page.click('#messages li.mine:has-text("coffee at 3?") .text');
    await alice.page.click('#messages li.mine:has-text("coffee at 3?") button[data-action="react 👍"]');
    await alice.page.waitForSelector('#messages li.mine:has-text("coffee at 3?") .reactions span.me:has-text("👍 1")');
    await shot(alice.page, "actions");
    alice.page.once("dialog", (d) => d.accept());
    await alice.page.click('#messages li.mine:has-text("coffee at 3?") .text');
    await alice.page.click('#messages li.mine:has-text("coffee at 3?") button[data-action="delete"]');
    await alice.page.waitForSelector('#messages li.mine.deleted:has-text("message deleted")');

    // A group with bob, then carol added.
    const added = nextEvent(bobSdk, "roomAdded", (r) => r.room.name === "lunch");
    await alice.page.fill("#group-name", "lunch");
    await alice.page.fill("#group-members", "bob");
    await alice.page.click("#create-group");
    await alice.page.waitForSelector('#room-title:has-text("lunch")');
    await alice.page.waitForSelector('#members:has-text("2 members")');
    const group = (await added).room.id;
    await alice.page.click("#add-member");
    await alice.page.fill("#new-member", "carol");
    await alice.page.click("#add-member-ok");
    await alice.page.waitForSelector('#members:has-text("3 members")');
    const members = await bobSdk.listMembers({ roomId: group });
    assert.deepEqual(members.members.map((m) => m.userId).sort(), ["alice", "bob", "carol"]);
    await shot(alice.page, "group");
    assert.deepEqual(alice.errors, []);

    // Logging out forgets the token: a reload shows the login form.
    await alice.page.click("#logout");
    await alice.page.waitForSelector("#login:not([hidden])");
    await alice.page.reload();
    await alice.page.waitForSelector("#login:not([hidden])");
    assert.equal(await alice.page.isHidden("#app"), true);
    // A token the server refuses (bad signature) comes back to the form with the reason.
    const [header, claims] = server.token("alice").split(".");
    await alice.page.fill("#token", `${header}.${claims}.${"A".repeat(43)}`);
    await alice.page.click("#connect");
    await alice.page.waitForSelector('#login-error:has-text("UNAUTHENTICATED")');
    assert.equal(await alice.page.isHidden("#app"), true);
    await alice.context.close();
  } finally {
    bobSdk.close();
    await server.stop();
  }
});

test("a member reports a message with a reason; it shows as reported after a reload and waits in the admin review queue", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  try {
    const { room: group } = await alice.createGroup({ name: "reports", memberIds: ["bob"] });
    const seq = await alice.sendMessage(group.id, "buy cheap followers").sent;
    await alice.sendMessage(group.id, "a normal message").sent;

    const bob = await login(server, "bob");
    await bob.page.click(`#rooms li[data-room="${group.id}"]`);
    const spam = '#messages li.theirs:has-text("buy cheap followers")';
    await bob.page.waitForSelector(spam);
    bob.page.once("dialog", (d) => d.accept("spam"));
    await bob.page.click(`${spam} .text`);
    await bob.page.click(`${spam} button[data-action="report"]`);
    await bob.page.waitForSelector(`${spam} .reported`);
    assert.equal(await bob.page.isVisible(`${spam} button[data-action="report"]`), false);
    await shot(bob.page, "reported");
    // The moderators' queue holds the report, with bob's reason and the text.
    const queue = await server.admin("/admin/reviews");
    assert.deepEqual(
      queue.items.map((i) => [i.id, i.seq, i.text, i.reports.map((r) => [r.reporter, r.reason])]),
      [[`${group.id}:${seq}`, Number(seq), "buy cheap followers", [["bob", "spam"]]]],
    );
    // After a reload the page still shows it reported, and only that message.
    await bob.page.reload();
    await connected(bob.page);
    await bob.page.click(`#rooms li[data-room="${group.id}"]`);
    await bob.page.waitForSelector(`${spam} .reported`);
    assert.equal(await bob.page.locator('#messages li:has-text("a normal message") .reported').count(), 0);
    await bob.context.close();
  } finally {
    alice.close();
    await server.stop();
  }
});

test("an owner opens the group's reports, removes a reported message with a reason and approves another; after a reload nothing is left to review", async () => {
  const server = await TestServer.start();
  const bobSdk = await server.client("bob");
  const carolSdk = await server.client("carol");
  try {
    const alice = await login(server, "alice");
    const aliceSdk = await server.client("alice");
    const { room: group } = await aliceSdk.createGroup({ name: "reviewed", memberIds: ["bob", "carol"] });
    const spam = await bobSdk.sendMessage(group.id, "cheap pills here").sent;
    const rude = await bobSdk.sendMessage(group.id, "you are all slow").sent;
    await bobSdk.sendMessage(group.id, "an innocent message").sent;
    await carolSdk.reportMessage({ roomId: group.id, targetSeq: spam, reason: "spam" });
    await carolSdk.reportMessage({ roomId: group.id, targetSeq: rude, reason: "rude" });
    aliceSdk.close();

    await alice.page.click(`#rooms li[data-room="${group.id}"]`);
    await alice.page.waitForSelector('#messages li:has-text("cheap pills here")');
    await alice.page.click("#reviews-toggle");
    await alice.page.waitForSelector(`#review-list li[data-seq="${spam}"]`);
    assert.deepEqual(
      await alice.page.$$eval("#review-list li", (lis) => lis.map((li) => [li.querySelector(".review-text").textContent, li.querySelector(".review-reports").textContent])),
      [["cheap pills here", "carol: spam"], ["you are all slow", "carol: rude"]],
    );
    await shot(alice.page, "reviews");
    alice.page.once("dialog", (d) => d.accept("selling pills"));
    await alice.page.click(`#review-list li[data-seq="${spam}"] button[data-action="review-remove"]`);
    await alice.page.waitForSelector('#messages li.deleted:has-text("message deleted")');
    await alice.page.waitForSelector(`#review-list li[data-seq="${spam}"]`, { state: "detached" });
    await alice.page.click(`#review-list li[data-seq="${rude}"] button[data-action="review-approve"]`);
    await alice.page.waitForSelector("#reviews-empty:not([hidden])");
    assert.deepEqual(await shownTexts(alice.page), ["message deleted", "you are all slow", "an innocent message"]);
    // Bob sees his message removed, with the owner's reason in the log.
    const replay = await bobSdk.subscribe({ roomId: group.id, afterSeq: 0n });
    const deletion = replay.events.find((e) => e.kind.case === "messageDeleted");
    assert.deepEqual([deletion.kind.value.targetSeq, deletion.kind.value.reason, deletion.sender], [spam, "selling pills", "alice"]);
    // A plain member's page has no Reports button.
    const carol = await login(server, "carol");
    await carol.page.click(`#rooms li[data-room="${group.id}"]`);
    await carol.page.waitForSelector('#messages li:has-text("an innocent message")');
    assert.equal(await carol.page.isHidden("#reviews-toggle"), true);
    await carol.context.close();
    // After a reload the queue is still empty and the message still removed.
    await alice.page.reload();
    await connected(alice.page);
    await alice.page.click(`#rooms li[data-room="${group.id}"]`);
    await alice.page.waitForSelector('#messages li.deleted:has-text("message deleted")');
    await alice.page.click("#reviews-toggle");
    await alice.page.waitForSelector("#reviews-empty:not([hidden])");
    assert.equal(await alice.page.locator("#review-list li").count(), 0);
    await alice.context.close();
  } finally {
    bobSdk.close();
    carolSdk.close();
    await server.stop();
  }
});

test("a moderator opens an edited message's versions, removes it with a reason, and after a reload it stays removed; a restricted member sees why its send failed", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  const bobSdk = await server.client("bob");
  try {
    const { room: group } = await alice.createGroup({ name: "mods", memberIds: ["bob", "carol"] });
    await alice.setRole({ roomId: group.id, userId: "carol", role: Role.MODERATOR });
    const seq = await bobSdk.sendMessage(group.id, "first draft").sent;
    await bobSdk.edit({ roomId: group.id, targetSeq: seq, content: { text: "second draft" } });
    await bobSdk.sendMessage(group.id, "fine message").sent;

    const carol = await login(server, "carol");
    await carol.page.click(`#rooms li[data-room="${group.id}"]`);
    const edited = '#messages li.theirs:has-text("second draft")';
    await carol.page.waitForSelector(`${edited} button.edited`);
    // "edited" opens every version, oldest first.
    await carol.page.click(`${edited} button.edited`);
    await carol.page.waitForSelector(`${edited} ol.versions li:nth-child(2)`);
    assert.deepEqual(await carol.page.$$eval(`${edited} ol.versions .version-text`, (els) => els.map((e) => e.textContent)), ["first draft", "second draft"]);
    await shot(carol.page, "versions");

    // The moderator removes bob's message, giving a reason.
    carol.page.once("dialog", (d) => d.accept("spam"));
    await carol.page.click(`${edited} .text`);
    await carol.page.click(`${edited} button[data-action="moderate"]`);
    await carol.page.waitForSelector('#messages li.theirs.deleted:has-text("message deleted")');
    assert.deepEqual(await shownTexts(carol.page), ["message deleted", "fine message"]);
    // The reason is in the log, for the audit; the content is gone for every reader.
    const history = await bobSdk.history({ roomId: group.id });
    const removed = history.messages.find((m) => m.seq === seq);
    assert.equal(removed.deleted, true);
    assert.equal(removed.content, undefined);
    const replay = await bobSdk.subscribe({ roomId: group.id, afterSeq: 0n });
    const deletion = replay.events.find((e) => e.kind.case === "messageDeleted");
    assert.equal(deletion.kind.value.reason, "spam");
    assert.equal(deletion.sender, "carol");
    // A plain member's page offers no Remove on others' messages.
    const bob = await login(server, "bob");
    await bob.page.click(`#rooms li[data-room="${group.id}"]`);
    await bob.page.waitForSelector('#messages li.mine:has-text("fine message")');
    await carol.page.reload();
    await connected(carol.page);
    await carol.page.click(`#rooms li[data-room="${group.id}"]`);
    await carol.page.waitForSelector('#messages li.theirs.deleted:has-text("message deleted")');
    assert.deepEqual(await shownTexts(carol.page), ["message deleted", "fine message"]);

    // Carol restricts bob; bob's next send shows the reason in the page.
    const carolSdk = await server.client("carol");
    await carolSdk.restrictMember({ roomId: group.id, userId: "bob", untilMs: BigInt(Date.now() + 3_600_000), reason: "cool down" });
    carolSdk.close();
    await bob.page.fill("#text", "let me speak");
    await bob.page.press("#text", "Enter");
    await bob.page.waitForSelector('#banner:has-text("RESTRICTED")');
    await shot(bob.page, "restricted");
    await carol.context.close();
    await bob.context.close();
  } finally {
    alice.close();
    bobSdk.close();
    await server.stop();
  }
});

test("at 360 px the page has no horizontal overflow and Send stays on screen", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  try {
    const { room } = await alice.openDirect({ userId: "bob" });
    await alice.sendMessage(room.id, `a long word: ${"x".repeat(200)} and https://example.com/${"path/".repeat(30)}`).sent;
    const viewport = { width: 360, height: 640 };
    const bob = await login(server, "bob", viewport);
    const overflow = () => bob.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await bob.page.waitForSelector(`#rooms li[data-room="${room.id}"]`);
    assert.equal(await overflow(), 0, "room list fits");
    await shot(bob.page, "360-rooms");
    await bob.page.click(`#rooms li[data-room="${room.id}"]`);
    await bob.page.waitForSelector('#messages li.msg:has-text("a long word")');
    assert.equal(await overflow(), 0, "conversation fits");
    const send = await bob.page.$("#send");
    assert.ok(await send.isVisible());
    const box = await send.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= viewport.width && box.y + box.height <= viewport.height, `Send on screen: ${JSON.stringify(box)}`);
    await bob.page.fill("#text", "fits");
    await bob.page.click("#send");
    await bob.page.waitForSelector('#messages li.mine:has-text("fits")');
    await shot(bob.page, "360-room");
    // The favicon the page names is served.
    const icon = await bob.page.evaluate(async () => {
      const r = await fetch(document.querySelector('link[rel="icon"]').href);
      return { status: r.status, type: r.headers.get("content-type"), size: (await r.arrayBuffer()).byteLength };
    });
    assert.equal(icon.status, 200);
    assert.equal(icon.type, "image/x-icon");
    assert.ok(icon.size > 22);
    assert.deepEqual(bob.errors, []);
    await bob.context.close();
  } finally {
    alice.close();
    await server.stop();
  }
});

test("a message sent while the server is down shows pending across a reload and arrives exactly once after the restart", async () => {
  const server = await TestServer.start();
  try {
    const alice = await login(server, "alice");
    await openDirect(alice.page, "bob");
    const roomId = await alice.page.$eval("#rooms li.active", (li) => li.dataset.room);
    const pageHtml = await (await fetch(server.httpUrl + "/")).text();

    await server.kill();
    await alice.page.waitForSelector('#banner[data-state="reconnecting"]:not([hidden])');
    await alice.page.fill("#text", "sent while offline");
    await alice.page.press("#text", "Enter");
    const offline = '#messages li.mine:has-text("sent while offline")';
    await alice.page.waitForSelector(`${offline}[data-saved="true"] .status[data-status="pending"]`);
    // The server is down, so the reload gets the page from here (as a cached copy would).
    await alice.page.route(server.httpUrl + "/", (route) => route.fulfill({ contentType: "text/html", body: pageHtml }));
    await alice.page.reload();
    await alice.page.waitForSelector(`${offline} .status[data-status="pending"]`);
    assert.match(await alice.page.textContent("#banner"), /Not connected, retrying \(attempt \d+\)/);
    await shot(alice.page, "offline-pending");
    await alice.page.unroute(server.httpUrl + "/");

    await server.restart();
    await connected(alice.page);
    await alice.page.waitForSelector(`${offline} .status:not([data-status="pending"])`);
    assert.equal(await alice.page.locator("#messages li.msg", { hasText: "sent while offline" }).count(), 1);
    await shot(alice.page, "offline-delivered");
    // Stored once on the server too.
    const bobSdk = await server.client("bob");
    const history = await bobSdk.history({ roomId });
    assert.deepEqual(history.messages.map((m) => m.content?.text), ["sent while offline"]);
    bobSdk.close();
    // And a later reload shows it once, from history.
    await alice.page.reload();
    await alice.page.waitForSelector(`${offline} .status:not([data-status="pending"])`);
    assert.equal(await alice.page.locator("#messages li.msg", { hasText: "sent while offline" }).count(), 1);
    assert.deepEqual(alice.errors, []);
    await alice.context.close();
  } finally {
    await server.stop();
  }
});

test("a user finds an old message by a word in it from the search box, opens its room from the hit, and a removed member finds nothing", async () => {
  const server = await TestServer.start();
  try {
    const bob = await server.client("bob");
    const { room } = await bob.createGroup({ name: "finance", memberIds: ["alice", "carol"] });
    await bob.send({ roomId: room.id, clientMsgId: "f-1", content: { text: "The quarterly invoices are attached, café receipts too" } });
    for (let i = 0; i < 5; i++) await bob.send({ roomId: room.id, clientMsgId: `f-x${i}`, content: { text: `filler ${i}` } });
    await bob.removeMember({ roomId: room.id, userId: "carol" });
    // The index follows the log: wait until the SDK finds it, so the page's first search does.
    for (let i = 0; ; i++) {
      const found = await bob.search({ query: "invoice" });
      if (found.hits.length === 1) break;
      assert.ok(i < 400, "the message is indexed");
      await new Promise((r) => setTimeout(r, 25));
    }

    const alice = await login(server, "alice");
    await alice.page.waitForSelector("#search-box:not([hidden])");
    await alice.page.fill("#search-query", "INVOICE cafe");
    await alice.page.click("#search-go");
    const hit = await alice.page.waitForSelector("#search-results li");
    assert.equal(await alice.page.textContent("#search-status"), "1 found");
    assert.equal(await hit.$eval(".where", (e) => e.textContent), "finance · bob");
    assert.deepEqual(await hit.$$eval("mark", (ms) => ms.map((m) => m.textContent)), ["invoices", "café"]);
    assert.match(await hit.textContent(), /The quarterly invoices are attached, café receipts too/);
    await shot(alice.page, "search");
    // The hit opens its room, where the message is on screen.
    await hit.click();
    await alice.page.waitForSelector('#room-title:has-text("finance")');
    await alice.page.waitForSelector('#messages li.msg:has-text("quarterly invoices")');
    // After a reload the box is there again and finds the same message.
    await alice.page.reload();
    await connected(alice.page);
    await alice.page.fill("#search-query", "\"quarterly invoices\"");
    await alice.page.click("#search-go");
    await alice.page.waitForSelector('#search-results li:has-text("quarterly invoices")');
    // Words it does not contain find nothing, and the page says so.
    await alice.page.fill("#search-query", "payroll");
    await alice.page.click("#search-go");
    await alice.page.waitForSelector('#search-status:has-text("No messages found.")');
    assert.equal(await alice.page.$$eval("#search-results li", (lis) => lis.length), 0);

    // Carol was removed: the same words find nothing for her.
    const carol = await login(server, "carol");
    await carol.page.fill("#search-query", "invoice");
    await carol.page.click("#search-go");
    await carol.page.waitForSelector('#search-status:has-text("No messages found.")');
    assert.equal(await carol.page.$$eval("#search-results li", (lis) => lis.length), 0);
    assert.deepEqual([...alice.errors, ...carol.errors], []);
    bob.close();
    await alice.context.close();
    await carol.context.close();
  } finally {
    await server.stop();
  }
});

/**
 * Alice (a page on `alicesServer`) and bob (a page on `bobsServer`: the same server, or another
 * node of the same cluster) become contacts from the page, see each other's presence without
 * anyone watching by hand, keep the list across a reload, and start a chat from a contact.
 */
async function contactsFromThePage(alicesServer, bobsServer, name) {
  const alice = await login(alicesServer, "alice");
  let bob = await login(bobsServer, "bob");
  await alice.page.waitForSelector("#contacts-box:not([hidden])");
  await alice.page.fill("#contact-user", "bob");
  await alice.page.click("#contact-add");
  await alice.page.waitForSelector('#contacts li[data-user="bob"][data-state="outgoing"]');
  assert.equal(await alice.page.textContent("#contacts-status"), "Request sent to bob.");

  // Bob sees the request and accepts it.
  const request = await bob.page.waitForSelector('#contact-requests li[data-user="alice"]');
  assert.match(await request.textContent(), /alice wants to be your contact/);
  await bob.page.click('#contact-requests li[data-user="alice"] .accept');
  await bob.page.waitForSelector('#contacts li[data-user="alice"][data-state="accepted"] .presence:has-text("online")');
  assert.equal(await bob.page.$$eval("#contact-requests li", (lis) => lis.length), 0);
  // Alice sees bob as a contact, online: nobody watched anyone by hand.
  await alice.page.waitForSelector('#contacts li[data-user="bob"][data-state="accepted"] .presence:has-text("online")');
  await shot(alice.page, name);

  // Bob leaves: alice sees him offline; after her reload he is still her contact, offline.
  await bob.context.close();
  await alice.page.waitForSelector('#contacts li[data-user="bob"] .presence:has-text("offline")');
  await alice.page.reload();
  await connected(alice.page);
  await alice.page.waitForSelector('#contacts li[data-user="bob"][data-state="accepted"] .presence:has-text("offline")');
  // Bob comes back: the presence the server watches from alice's Connect turns him online.
  bob = await login(bobsServer, "bob");
  await alice.page.waitForSelector('#contacts li[data-user="bob"] .presence:has-text("online")');
  await bob.page.waitForSelector('#contacts li[data-user="alice"][data-state="accepted"] .presence:has-text("online")');

  // "Chat" opens the direct room with the contact, on both sides.
  await alice.page.click('#contacts li[data-user="bob"] .chat');
  await alice.page.waitForSelector('#room-title:has-text("bob")');
  await bob.page.waitForSelector('#rooms li:has-text("alice")');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
  await alice.context.close();
  await bob.context.close();
}

test("two users become contacts from the page, see each other's presence without watching, keep the list after a reload and start a chat from a contact", async () => {
  const server = await TestServer.start();
  try {
    await contactsFromThePage(server, server, "contacts");
  } finally {
    await server.stop();
  }
});

test("the same across two nodes of a cluster: each user's page on another node", async () => {
  const nodes = await startCluster(2);
  try {
    await contactsFromThePage(nodes[0], nodes[1], "contacts-cluster");
  } finally {
    await stopCluster(nodes);
  }
});
