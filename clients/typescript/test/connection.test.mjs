// Connecting: the observable connection status, an error event per failed attempt,
// maxAttempts, connectTimeoutMs, at-once rejection on a refused token and on an HTTP 404 to the
// upgrade; and the persistent outbox (FileOutboxStore) carrying an unsent message from one
// client to the next across a server restart.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { ChatwireClient, ConnectionError, ErrorCode } from "../dist/index.js";
import { FileOutboxStore } from "../dist/node.js";
import { TestServer, waitUntil } from "./support.mjs";

/** A TCP listener on 127.0.0.1:0; `accept` false closes it again (a port that refuses). */
async function listener(accept) {
  const sockets = new Set();
  const server = createServer((s) => sockets.add(s));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const close = () => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => server.close(resolve));
  };
  if (!accept) await close();
  return { url: `ws://127.0.0.1:${port}/v1/ws`, close };
}

/** A client that records its statuses and errors, then its open() outcome. */
async function attempt(options) {
  const client = new ChatwireClient({ token: "t", WebSocket, backoff: { baseMs: 10, maxMs: 20 }, ...options });
  const statuses = [];
  const errors = [];
  client.watchConnection((s) => statuses.push(s));
  client.on("error", (e) => errors.push(e));
  const outcome = await client.open().then(
    () => null,
    (err) => err,
  );
  return { client, statuses, errors, outcome };
}

test("a refused port: one error event per attempt, reconnecting with attempt and last error, closed after maxAttempts", async () => {
  const dead = await listener(false);
  const { statuses, errors, outcome } = await attempt({ url: dead.url, maxAttempts: 3 });
  assert.ok(outcome instanceof ConnectionError, String(outcome));
  assert.equal(outcome.attempt, 3);
  assert.equal(outcome.failure, "network");
  assert.deepEqual(errors.map((e) => e.attempt), [1, 2, 3]);
  assert.ok(errors.every((e) => e instanceof ConnectionError));
  const shape = statuses.map((s) => (s.state === "reconnecting" || s.state === "connecting" ? `${s.state}:${s.attempt}` : s.state));
  assert.deepEqual([...new Set(shape)], ["idle", "connecting:1", "reconnecting:2", "reconnecting:3", "closed"]);
  const waiting = statuses.find((s) => s.state === "reconnecting");
  assert.ok(waiting.lastError instanceof ConnectionError && waiting.lastError.attempt === 1);
  assert.equal(statuses.at(-1).error, outcome);
  assert.match(statuses.at(-1).reason, /attempt 3 failed/);
});

test("a server that accepts TCP but never answers: each attempt ends at connectTimeoutMs", async () => {
  const silent = await listener(true);
  try {
    const { errors, outcome } = await attempt({ url: silent.url, maxAttempts: 2, connectTimeoutMs: 200 });
    assert.ok(outcome instanceof ConnectionError);
    assert.deepEqual(errors.map((e) => [e.attempt, e.failure]), [[1, "timeout"], [2, "timeout"]]);
  } finally {
    await silent.close();
  }
});

test("a refused token and an HTTP 404 to the upgrade reject connect() at the first attempt", async () => {
  const server = await TestServer.start();
  try {
    const refused = await attempt({ url: server.url, token: "not-a-token", maxAttempts: 10 });
    assert.ok(refused.outcome instanceof ConnectionError);
    assert.equal(refused.outcome.failure, "refused");
    assert.equal(refused.outcome.refusal.code, ErrorCode.UNAUTHENTICATED);
    assert.equal(refused.errors.length, 1);
    assert.equal(refused.client.state, "closed");
    const missing = await attempt({ url: server.url.replace("/v1/ws", "/v2/nowhere"), token: server.token("alice"), maxAttempts: 10 });
    assert.equal(missing.outcome.failure, "http");
    assert.equal(missing.outcome.httpStatus, 404);
    assert.equal(missing.errors.length, 1);
  } finally {
    await server.stop();
  }
});

test("FileOutboxStore: a message sent while the server is down survives the client and is sent once by the next", async () => {
  const dir = mkdtempSync(join(tmpdir(), "chatwire-outbox-"));
  const server = await TestServer.start();
  try {
    const file = join(dir, "alice.json");
    const first = await server.client("alice", { outboxStore: new FileOutboxStore(file) });
    const { room } = await first.createGroup({ name: "notes" });
    await first.sendMessage(room.id, "online").sent;
    await server.kill();
    await waitUntil(first, () => first.state === "reconnecting", "the client to see the server go");
    const offline = first.sendMessage(room.id, "written offline");
    await first.flushOutbox();
    first.close(); // the app quits with the message unsent
    assert.equal(offline.status, "failed");
    assert.deepEqual((await new FileOutboxStore(file).load()).map((m) => m.clientMsgId), [offline.clientMsgId]);

    await server.restart();
    const restored = [];
    const second = new ChatwireClient({ url: server.url, token: server.token("alice"), WebSocket, outboxStore: new FileOutboxStore(file) });
    second.on("status", (m) => restored.push([m.clientMsgId, m.status]));
    await second.open();
    assert.deepEqual(restored[0], [offline.clientMsgId, "pending"], "restored before connecting");
    await waitUntil(second, () => second.unacknowledged().length === 0, "the restored message to be stored", ["status"]);
    await second.flushOutbox();
    assert.deepEqual(await new FileOutboxStore(file).load(), [], "the store forgets it once stored");
    const history = await second.history({ roomId: room.id });
    assert.deepEqual(history.messages.map((m) => [m.content?.text, m.clientMsgId]).reverse(), [
      ["online", history.messages.at(-1).clientMsgId],
      ["written offline", offline.clientMsgId],
    ]);
    second.close();
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
