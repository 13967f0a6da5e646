// Kill (or drain) and restart the server in the middle of a burst of sends: every message
// arrives exactly once, in order, at the other client, and every send is acknowledged once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TestServer, waitUntil } from "./support.mjs";

const FIRST = 150; // sent before the kill
const SECOND = 100; // sent while the server is down
const KILL_AFTER_ACKS = 40;

for (const [how, stop, abrupt] of [["killed (SIGKILL)", (s) => s.kill(), true], ["drained (SIGTERM)", (s) => s.terminate(), false]]) {
test(`a burst of sends survives a server ${how} and restarted: exactly once, in order`, async () => {
  const server = await TestServer.start();
  const alice = await server.client("alice");
  const bob = await server.client("bob");
  try {
    const { room } = await alice.createGroup({ name: "burst", memberIds: ["bob"] });
    await alice.subscribeRoom(room.id);
    await bob.subscribeRoom(room.id);

    const received = [];
    bob.on("room", (event) => {
      if (event.roomId === room.id && event.kind.case === "messageCreated" && event.sender === "alice") {
        received.push({ id: event.kind.value.clientMsgId, seq: event.seq });
      }
    });
    const states = [];
    alice.on("state", (s) => states.push(s));

    const messages = [];
    let acked = 0;
    let killed;
    const killedOnce = new Promise((resolve) => (killed = resolve));
    alice.on("status", (m) => {
      if (m.status === "sent" && ++acked === KILL_AFTER_ACKS) killed(stop(server));
    });
    for (let i = 0; i < FIRST; i++) messages.push(alice.sendMessage(room.id, `message ${i}`, { clientMsgId: `burst-${i}` }));
    await killedOnce;
    await waitUntil(alice, () => alice.state === "reconnecting", "alice to notice the kill");
    for (let i = FIRST; i < FIRST + SECOND; i++) messages.push(alice.sendMessage(room.id, `message ${i}`, { clientMsgId: `burst-${i}` }));
    // A kill leaves requests of the first burst unanswered; a drain may answer them all.
    if (abrupt) assert.ok(alice.unacknowledged().length > SECOND, "some of the first burst had no acknowledgement yet");
    const inFlightAtKill = messages.slice(0, FIRST).filter((m) => m.status === "pending").length;
    await server.restart();

    const seqs = await Promise.all(messages.map((m) => m.sent));
    await waitUntil(bob, () => received.length >= messages.length, `bob to receive ${messages.length} messages`, ["room", "state"]);

    assert.deepEqual(received.map((r) => r.id), messages.map((m) => m.clientMsgId), "each message once, in send order");
    for (let i = 1; i < received.length; i++) assert.ok(received[i].seq > received[i - 1].seq, "seqs increase");
    assert.deepEqual(received.map((r) => r.seq), seqs, "bob's seqs are the acknowledged ones");
    assert.equal(new Set(seqs).size, seqs.length, "no two messages share a seq");
    if (abrupt) assert.ok(messages.some((m) => m.attempts > 1), `resent with the same client_msg_id (${inFlightAtKill} unacknowledged at the kill)`);
    assert.ok(states.includes("reconnecting") && states.at(-1) === "connected", `alice reconnected: ${states}`);
    const stored = [];
    for (let after = 0n, more = true; more; ) {
      const page = await bob.history({ roomId: room.id, position: { case: "afterSeq", value: after } });
      stored.push(...page.messages.filter((m) => m.sender === "alice").map((m) => m.clientMsgId));
      more = page.hasMore && page.messages.length > 0;
      after = page.messages.at(-1)?.seq ?? after;
    }
    assert.deepEqual(stored, messages.map((m) => m.clientMsgId), "the log holds each message once, in order");
  } finally {
    alice.close();
    bob.close();
    await server.stop();
  }
});
}
