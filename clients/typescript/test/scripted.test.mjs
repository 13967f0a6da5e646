// The runtime against a scripted in-process peer (no server): the room-event rules of
// docs/protocol.md section 10.5 that a correct server never exercises. Duplicates are dropped,
// a gap is repaired by subscribing again from the last applied seq, several frames may share one
// WebSocket message, and a reply with request_id 0 matches nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { ChatwireClient, ClientFrameSchema, ServerFrameSchema, RoomEventSchema, decodeFrames, encodeFrame } from "../dist/index.js";

const ROOM = "g.0123456789abcdef0123456789abcdef";

function roomEvent(seq) {
  return create(RoomEventSchema, { roomId: ROOM, seq: BigInt(seq), sender: "bob", kind: { case: "messageCreated", value: { clientMsgId: `m${seq}`, content: { text: `#${seq}` } } } });
}

/** A peer that answers Connect, Subscribe (from `log`), ListMembers and GetReceipts. */
class ScriptedPeer {
  constructor() {
    this.log = [1, 2].map(roomEvent);
    this.subscribes = [];
    this.socket = null;
    const peer = this;
    this.WebSocket = class {
      constructor() {
        this.protocol = "chatwire.v1";
        this.binaryType = "blob";
        peer.socket = this;
        queueMicrotask(() => this.onopen?.({}));
      }
      send(bytes) {
        for (const frame of decodeFrames(ClientFrameSchema, bytes)) peer.answer(frame);
      }
      close(code = 1000, reason = "") {
        queueMicrotask(() => this.onclose?.({ code, reason }));
      }
    };
  }

  answer(frame) {
    const id = frame.id;
    const req = frame.request;
    const reply = (result) => this.push([{ frame: { case: "reply", value: { requestId: id, result } } }]);
    if (req.case === "connect") {
      reply({ case: "connect", value: { sessionId: "s1", userId: "alice", heartbeatIntervalMs: 30000, limits: { maxInFlightRequests: 64 } } });
    } else if (req.case === "subscribe") {
      this.subscribes.push(req.value.afterSeq);
      const events = this.log.filter((e) => e.seq > req.value.afterSeq);
      // A stray reply with request_id 0 in the same WebSocket message as the real one.
      this.push([
        { frame: { case: "reply", value: { requestId: 0n, result: { case: "error", value: { code: 4 } } } } },
        { frame: { case: "reply", value: { requestId: id, result: { case: "subscribe", value: { roomId: ROOM, events, headSeq: this.log.at(-1).seq, complete: true } } } } },
      ]);
    } else if (req.case === "listMembers") {
      reply({ case: "listMembers", value: { members: [{ userId: "alice" }, { userId: "bob" }] } });
    } else if (req.case === "getReceipts") {
      reply({ case: "getReceipts", value: {} });
    }
  }

  /** Sends frames to the client in one WebSocket message. */
  push(frames) {
    const parts = frames.map((f) => encodeFrame(ServerFrameSchema, create(ServerFrameSchema, f)));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    this.socket.onmessage?.({ data: bytes.buffer });
  }

  live(seq) {
    this.push([{ frame: { case: "event", value: { kind: { case: "room", value: roomEvent(seq) } } } }]);
  }
}

test("room events apply once by seq: duplicates dropped, a gap repaired by re-subscribing", async () => {
  const peer = new ScriptedPeer();
  const client = await ChatwireClient.connect({ url: "ws://scripted", token: "t", WebSocket: peer.WebSocket });
  const seen = [];
  client.on("room", (e) => seen.push(Number(e.seq)));
  await client.subscribeRoom(ROOM);
  assert.deepEqual(seen, [1, 2], "replay");

  peer.log.push(roomEvent(3));
  peer.live(3);
  peer.live(3); // duplicate
  peer.live(2); // old
  peer.log.push(roomEvent(4), roomEvent(5));
  const repaired = new Promise((resolve) => client.on("room", (e) => e.seq === 5n && resolve()));
  peer.live(5); // gap: 4 is missing
  await repaired;
  peer.live(5); // duplicate after the repair
  assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  assert.deepEqual(peer.subscribes, [0n, 3n], "re-subscribed after the last applied seq");
  assert.equal(client.room(ROOM).lastSeq, 5n);
  client.close();
});

test("a live event in the same WebSocket message as the Subscribe reply is applied, not lost", async () => {
  const peer = new ScriptedPeer();
  // The reply (seqs 1-2, complete) and live seq 3 reach the client in one read, before the
  // catch-up has seen the reply: 3 is held and applied once the replay is done.
  const answer = peer.answer.bind(peer);
  peer.answer = (frame) => {
    if (frame.request.case !== "subscribe") return answer(frame);
    peer.subscribes.push(frame.request.value.afterSeq);
    const events = peer.log.filter((e) => e.seq > frame.request.value.afterSeq);
    peer.push([
      { frame: { case: "reply", value: { requestId: frame.id, result: { case: "subscribe", value: { roomId: ROOM, events, headSeq: 2n, complete: true } } } } },
      { frame: { case: "event", value: { kind: { case: "room", value: roomEvent(3) } } } },
    ]);
  };
  const client = await ChatwireClient.connect({ url: "ws://scripted", token: "t", WebSocket: peer.WebSocket });
  const seen = [];
  client.on("room", (e) => seen.push(Number(e.seq)));
  await client.subscribeRoom(ROOM);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(client.room(ROOM).lastSeq, 3n);
  peer.live(4);
  assert.deepEqual(seen, [1, 2, 3, 4]);
  assert.deepEqual(peer.subscribes, [0n]);
  client.close();
});
