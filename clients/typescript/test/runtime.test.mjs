// The runtime's pure parts (backoff, message status, the event emitter), and token refresh and
// reconnect against a real server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, statusFromReceipts } from "../dist/index.js";
import { TestServer, nextEvent, waitUntil } from "./support.mjs";

test("backoff is full jitter under a doubling ceiling, capped, and never below the server's delay", () => {
  assert.equal(backoffDelay(0, {}, 0, () => 0.999), 999);
  assert.equal(backoffDelay(3, {}, 0, () => 0.5), 4000);
  assert.equal(backoffDelay(40, {}, 0, () => 0.999), 29970);
  assert.equal(backoffDelay(0, {}, 5000, () => 0), 5000);
  assert.equal(backoffDelay(2, { baseMs: 10, maxMs: 20 }, 0, () => 0.999), 19);
});

test("message status from receipts: every other member must reach the seq", () => {
  const marks = new Map([
    ["bob", { delivered: 5n, read: 3n }],
    ["carol", { delivered: 4n, read: 4n }],
  ]);
  assert.equal(statusFromReceipts(3n, "alice", ["alice", "bob", "carol"], marks), "read");
  assert.equal(statusFromReceipts(4n, "alice", ["alice", "bob", "carol"], marks), "delivered");
  assert.equal(statusFromReceipts(5n, "alice", ["alice", "bob", "carol"], marks), "sent");
  assert.equal(statusFromReceipts(5n, "alice", ["alice", "bob"], marks), "delivered");
  assert.equal(statusFromReceipts(1n, "alice", ["alice"], marks), "sent", "no other member: stays sent");
  assert.equal(statusFromReceipts(1n, "alice", ["alice", "dave"], marks), "sent", "a member without receipts");
});

test("a token about to expire is refreshed through the callback", async () => {
  const server = await TestServer.start();
  let asked = 0;
  const client = await server.client("alice", {
    token: server.token("alice", "30s"),
    refreshToken: () => {
      asked++;
      return server.token("alice", "1h");
    },
  });
  try {
    // Less than 60 s left: the server sends TokenExpiring right after the ConnectResponse.
    const refreshed = await nextEvent(client, "tokenRefreshed");
    assert.equal(asked, 1);
    assert.ok(Number(refreshed.tokenExpiresAtMs) > Date.now() + 30 * 60_000);
  } finally {
    client.close();
    await server.stop();
  }
});

test("after a restart the client reconnects, resumes its rooms from the last seq and re-watches presence", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  const bob = await server.client("bob");
  try {
    const { room } = await alice.openDirect({ userId: "bob" });
    await bob.subscribeRoom(room.id);
    await alice.watchPresence({ userIds: ["bob"] });
    const first = await alice.sendMessage(room.id, "before").sent;
    await waitUntil(bob, () => bob.room(room.id).lastSeq === first, "bob to apply the first message", ["room"]);
    const sessions = [];
    alice.on("session", (s) => sessions.push(s.sessionId));
    await server.kill();
    await server.restart();
    await waitUntil(alice, () => sessions.length === 1, "alice to reconnect");
    const replayed = [];
    bob.on("room", (e) => replayed.push(e.seq));
    // A message sent while bob may still be reconnecting reaches him by resume or live, once.
    const second = await alice.sendMessage(room.id, "after").sent;
    await waitUntil(bob, () => bob.room(room.id).lastSeq === second, "bob to apply the second message", ["room", "session"]);
    assert.deepEqual(replayed.filter((s) => s <= first), [], "nothing before the last applied seq is delivered again");
    assert.equal(replayed.filter((s) => s === second).length, 1);
    const presence = nextEvent(alice, "presence", (p) => p.userId === "bob" && !p.online);
    bob.close();
    assert.equal((await presence).online, false, "the presence watch survived the reconnect");
  } finally {
    alice.close();
    bob.close();
    await server.stop();
  }
});
