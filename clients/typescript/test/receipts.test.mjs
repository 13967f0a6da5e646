// Receipts, message status and typing between two clients.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TestServer, nextEvent, waitUntil } from "./support.mjs";

test("typing indicators and read receipts travel between two clients; status goes pending, sent, delivered, read", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  const bob = await server.client("bob");
  try {
    const { room } = await alice.openDirect({ userId: "bob" });
    await alice.subscribeRoom(room.id);
    await bob.subscribeRoom(room.id);

    const typing = nextEvent(bob, "typingChanged", (t) => t.roomId === room.id && t.userId === "alice");
    await alice.typing({ roomId: room.id, active: true });
    const seen = await typing;
    assert.equal(seen.active, true);
    assert.ok(seen.expiresInMs > 0);
    const back = nextEvent(alice, "typingChanged", (t) => t.userId === "bob");
    await bob.typing({ roomId: room.id, active: true });
    assert.equal((await back).active, true);

    const arrived = nextEvent(bob, "room", (e) => e.kind.case === "messageCreated");
    const message = alice.sendMessage(room.id, "are you there?");
    const statuses = [message.status];
    alice.on("status", (m) => {
      if (m === message && statuses.at(-1) !== m.status) statuses.push(m.status);
    });
    const seq = await message.sent;
    const event = await arrived;
    assert.equal(event.seq, seq);
    assert.equal(event.kind.value.content.text, "are you there?");

    await bob.markDelivered({ roomId: room.id, seq });
    await waitUntil(alice, () => message.status === "delivered", "status delivered");
    const receipt = nextEvent(alice, "receiptsChanged", (r) => r.receipts.some((x) => x.userId === "bob" && x.readSeq === seq));
    await bob.markRead({ roomId: room.id, seq });
    await receipt;
    await waitUntil(alice, () => message.status === "read", "status read");
    assert.deepEqual(statuses, ["pending", "sent", "delivered", "read"]);
  } finally {
    alice.close();
    bob.close();
    await server.stop();
  }
});

test("a request to an unreachable server fails with a timeout, and close() ends the client", async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice", { requestTimeoutMs: 1000 });
  await server.kill();
  await waitUntil(alice, () => alice.state === "reconnecting", "the client to see the connection drop");
  await assert.rejects(alice.ping({}), (err) => err.name === "NoReplyError" && err.reason === "timeout");
  const queued = alice.sendMessage("d:alice:bob", "never");
  alice.close();
  assert.equal(alice.state, "closed");
  await assert.rejects(queued.sent, /session closed/);
  assert.equal(queued.status, "failed");
  await server.stop();
});
