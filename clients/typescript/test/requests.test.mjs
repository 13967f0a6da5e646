// Every request of ChatwireService through its generated method, against a real server.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  REQUESTS, ChatwireError, ErrorCode, Role, PushPlatform, HistoryVisibility, ContactState, ReviewStatus,
} from "../dist/index.js";
import { TestServer, nextEvent } from "./support.mjs";

let server, alice, bob;
const used = new Set();
const done = (kind) => used.add(kind);

before(async () => {
  server = await TestServer.start();
  alice = await server.client("alice");
  bob = await server.client("bob");
});

after(async () => {
  alice?.close();
  bob?.close();
  await server?.stop();
});

test("session requests: connect (refused on an open session), refresh, ping", async () => {
  await assert.rejects(alice.connect({ token: server.token("alice") }), (err) => {
    assert.ok(err instanceof ChatwireError);
    assert.equal(err.code, ErrorCode.FAILED_PRECONDITION);
    return true;
  });
  done("connect");
  const refreshed = await alice.refresh({ token: server.token("alice") });
  assert.ok(refreshed.tokenExpiresAtMs > 0n);
  done("refresh");
  const pong = await alice.ping({ clientTimeMs: 42n });
  assert.equal(pong.clientTimeMs, 42n);
  done("ping");
});

test("rooms, membership and messages", async () => {
  const { room } = await alice.createGroup({ name: "team", memberIds: ["bob"], historyVisibility: HistoryVisibility.FULL, clientRequestId: "team-1" });
  assert.equal(room.name, "team");
  done("createGroup");
  const direct = await alice.openDirect({ userId: "bob" });
  assert.ok(direct.room.id);
  done("openDirect");
  const got = await alice.getRoom({ roomId: room.id });
  assert.equal(got.me.role, Role.OWNER);
  done("getRoom");
  const updated = await alice.updateRoom({ roomId: room.id, topic: "plans" });
  assert.equal(updated.room.topic, "plans");
  done("updateRoom");
  const added = await alice.addMembers({ roomId: room.id, userIds: ["carol", "dave"] });
  assert.equal(added.added.length, 2);
  done("addMembers");
  const members = await alice.listMembers({ roomId: room.id });
  assert.deepEqual(members.members.map((m) => m.userId).sort(), ["alice", "bob", "carol", "dave"]);
  done("listMembers");
  await alice.setRole({ roomId: room.id, userId: "bob", role: Role.ADMIN });
  done("setRole");
  await alice.removeMember({ roomId: room.id, userId: "dave" });
  done("removeMember");

  const sub = await alice.subscribe({ roomId: room.id, afterSeq: 0n });
  assert.ok(sub.events.length > 0);
  done("subscribe");
  const sent = await alice.send({ roomId: room.id, clientMsgId: "m-1", content: { text: "hello" } });
  assert.ok(sent.seq > 0n);
  const again = await alice.send({ roomId: room.id, clientMsgId: "m-1", content: { text: "hello" } });
  assert.equal(again.duplicate, true);
  assert.equal(again.seq, sent.seq);
  done("send");
  await alice.edit({ roomId: room.id, targetSeq: sent.seq, content: { text: "hello!" } });
  done("edit");
  await alice.react({ roomId: room.id, targetSeq: sent.seq, emoji: "👍", add: true });
  done("react");
  const history = await alice.history({ roomId: room.id, position: { case: "afterSeq", value: 0n } });
  const message = history.messages.find((m) => m.seq === sent.seq);
  assert.equal(message.content.text, "hello!");
  assert.equal(message.reactions[0].emoji, "👍");
  done("history");
  // Search (capability `search`): the edited text is found, with the current message; the
  // index follows the log, so it is asked again until the hit is there.
  let found;
  for (let i = 0; i < 200 && !found?.hits.length; i++) {
    found = await alice.search({ query: "HELLO", roomId: room.id });
    if (!found.hits.length) await new Promise((r) => setTimeout(r, 25));
  }
  assert.equal(found.hits.length, 1);
  assert.equal(found.hits[0].seq, sent.seq);
  assert.equal(found.hits[0].message.content.text, "hello!");
  const [mark] = found.hits[0].highlights;
  assert.equal(found.hits[0].snippet.slice(mark.start, mark.end), "hello");
  done("search");
  await alice.delete({ roomId: room.id, targetSeq: sent.seq });
  done("delete");
  const unsub = await alice.unsubscribe({ roomId: room.id });
  assert.ok(unsub.lastSeq > 0n);
  done("unsubscribe");
  const sync = await bob.sync({});
  assert.ok(sync.rooms.some((r) => r.room.id === room.id));
  done("sync");

  const delivered = await bob.markDelivered({ roomId: room.id, seq: sent.seq });
  assert.equal(delivered.deliveredSeq, sent.seq);
  done("markDelivered");
  const read = await bob.markRead({ roomId: room.id, seq: sent.seq });
  assert.equal(read.readSeq, sent.seq);
  done("markRead");
  const receipts = await alice.getReceipts({ roomId: room.id });
  assert.equal(receipts.receipts.find((r) => r.userId === "bob").readSeq, sent.seq);
  done("getReceipts");
  await alice.typing({ roomId: room.id, active: true });
  done("typing");
  await alice.muteRoom({ roomId: room.id, untilMs: BigInt(Date.now() + 60_000) });
  done("muteRoom");
  await bob.leaveRoom({ roomId: room.id });
  done("leaveRoom");

  // A call signal to bob's session in the direct room.
  const signalled = nextEvent(bob, "callSignalReceived");
  const relayed = await alice.callSignal({ callId: "call-1", roomId: direct.room.id, targetUserId: "bob", signal: { kind: { case: "invite", value: { video: false } } } });
  assert.equal(relayed.deliveredSessions, 1);
  assert.equal((await signalled).fromUserId, "alice");
  done("callSignal");
});

test("presence, blocks and push tokens", async () => {
  const presence = await alice.watchPresence({ userIds: ["bob"] });
  assert.equal(presence.presences[0].online, true);
  done("watchPresence");
  await alice.unwatchPresence({ userIds: ["bob"] });
  done("unwatchPresence");
  await alice.blockUser({ userId: "mallory" });
  done("blockUser");
  assert.deepEqual((await alice.listBlocked({})).userIds, ["mallory"]);
  done("listBlocked");
  await alice.unblockUser({ userId: "mallory" });
  done("unblockUser");
  await alice.registerPushToken({ platform: PushPlatform.FCM, token: "push-token-1", deviceId: "d1" });
  done("registerPushToken");
  await alice.unregisterPushToken({ token: "push-token-1" });
  done("unregisterPushToken");
});

test("moderation: a moderator restricts a member, edit history, reports and their review", async () => {
  const { room } = await alice.createGroup({ name: "moderated", memberIds: ["bob", "carol"] });
  await alice.setRole({ roomId: room.id, userId: "carol", role: Role.MODERATOR });
  const carol = await server.client("carol");
  try {
    const seq = await bob.sendMessage(room.id, "v1").sent;
    await bob.edit({ roomId: room.id, targetSeq: seq, content: { text: "v2" } });
    const history = await carol.getEditHistory({ roomId: room.id, targetSeq: seq });
    assert.deepEqual(history.versions.map((v) => v.content?.text), ["v1", "v2"]);
    done("getEditHistory");
    const restricted = await carol.restrictMember({ roomId: room.id, userId: "bob", untilMs: BigInt(Date.now() + 60_000), reason: "calm down" });
    assert.ok(restricted.seq > 0n);
    await assert.rejects(bob.sendMessage(room.id, "v3").sent, (err) => {
      assert.equal(err.code, ErrorCode.RESTRICTED);
      assert.ok(err.retryAfterMs > 0);
      return true;
    });
    done("restrictMember");
    // ReportMessage, ListReviews and ResolveReview (issue 21: `message-reports`).
    const other = await alice.sendMessage(room.id, "buy followers").sent;
    const reported = await bob.reportMessage({ roomId: room.id, targetSeq: other, reason: "spam" });
    assert.equal(reported.reportId, `${room.id}:${other}`);
    done("reportMessage");
    const open = await carol.listReviews({ roomId: room.id });
    assert.deepEqual(open.entries.map((e) => [e.reviewId, e.reports.map((r) => r.reporter)]), [[reported.reportId, ["bob"]]]);
    done("listReviews");
    const resolved = await carol.resolveReview({ roomId: room.id, targetSeq: other, remove: true, reason: "spam" });
    assert.equal(resolved.entry.status, ReviewStatus.REMOVED);
    done("resolveReview");
  } finally {
    carol.close();
  }
});

test("errors are typed values", async () => {
  await assert.rejects(alice.getRoom({ roomId: "g:nowhere" }), (err) => {
    assert.ok(err instanceof ChatwireError);
    assert.equal(err.code, ErrorCode.NOT_FOUND);
    assert.equal(err.codeName, "NOT_FOUND");
    assert.equal(err.request, "getRoom");
    return true;
  });
});

test("contacts: request, accept, list, remove, decline and cancel, with events on both sides", async () => {
  const carol = await server.client("carol");
  try {
    const incoming = nextEvent(carol, "contactChanged");
    const sent = await alice.sendContactRequest({ userId: "carol" });
    assert.equal(sent.contact.state, ContactState.OUTGOING);
    done("sendContactRequest");
    const changed = await incoming;
    assert.deepEqual([changed.contact.userId, changed.contact.state, changed.actor], ["alice", ContactState.INCOMING, "alice"]);
    const accepted = await carol.acceptContactRequest({ userId: "alice" });
    assert.equal(accepted.contact.state, ContactState.ACCEPTED);
    done("acceptContactRequest");
    const listed = await alice.listContacts({ state: ContactState.ACCEPTED });
    assert.deepEqual(listed.contacts.map((c) => c.userId), ["carol"]);
    assert.equal(listed.hasMore, false);
    done("listContacts");
    await alice.removeContact({ userId: "carol" });
    done("removeContact");
    assert.deepEqual((await carol.listContacts({})).contacts, []);
    await alice.sendContactRequest({ userId: "carol" });
    await carol.declineContactRequest({ userId: "alice" });
    done("declineContactRequest");
    await alice.sendContactRequest({ userId: "carol" });
    await alice.cancelContactRequest({ userId: "carol" });
    done("cancelContactRequest");
    assert.deepEqual((await alice.listContacts({})).contacts, []);
    await assert.rejects(alice.sendContactRequest({ userId: "alice" }), (err) => {
      assert.equal(err.code, ErrorCode.INVALID_ARGUMENT);
      return true;
    });
  } finally {
    carol.close();
  }
});

test("every request of the protocol was exercised", () => {
  assert.equal(REQUESTS.length, 45);
  const missing = REQUESTS.map((r) => r.kind).filter((k) => !used.has(k));
  assert.deepEqual(missing, []);
});
