// Outgoing messages and their status (docs/protocol.md ). No I/O: the client
// feeds acknowledgements and receipts in and reads statuses out.
import type { Content, SendRequest } from "./gen/chatwire/v1/messages_pb.js";

/** Where one of the user's own messages stands. */
export type MessageStatus = "pending" | "sent" | "delivered" | "read" | "failed";

const RANK: Record<MessageStatus, number> = { pending: 0, sent: 1, delivered: 2, read: 3, failed: 4 };

/** One message sent through the outbox. */
export class OutgoingMessage {
  /** Its idempotency key, reused by every resend. */
  readonly clientMsgId: string;
  /** Its room. */
  readonly roomId: string;
  /** The request, sent unchanged on every attempt. */
  readonly request: SendRequest;
  /** Its status; only moves forward (pending, sent, delivered, read), or to failed. */
  status: MessageStatus = "pending";
  /** Its seq once the server acknowledged it. */
  seq: bigint | undefined;
  /** Why it failed, when it did. */
  error: Error | undefined;
  /** Attempts made so far. */
  attempts = 0;
  /** When `sendMessage` created it (ms since the epoch), kept across a restore. */
  readonly createdAtMs: number;
  /** Resolves with the seq once the message is stored; rejects if it fails. */
  readonly sent: Promise<bigint>;
  private settle!: { resolve: (seq: bigint) => void; reject: (err: Error) => void };

  constructor(request: SendRequest, createdAtMs = Date.now()) {
    this.request = request;
    this.createdAtMs = createdAtMs;
    this.clientMsgId = request.clientMsgId;
    this.roomId = request.roomId;
    this.sent = new Promise<bigint>((resolve, reject) => (this.settle = { resolve, reject }));
    // An unobserved failure must not become an unhandled rejection.
    this.sent.catch(() => {});
  }

  /** The message's content. */
  get content(): Content | undefined {
    return this.request.content;
  }

  /** Moves the status forward; returns true when it changed. */
  advance(status: MessageStatus): boolean {
    if (this.status === "failed" || RANK[status] <= RANK[this.status]) return false;
    this.status = status;
    return true;
  }

  /** The server stored it at `seq` (reply or echoed event, whichever came first). */
  acknowledge(seq: bigint): boolean {
    if (this.seq !== undefined || this.status === "failed") return false;
    this.seq = seq;
    this.advance("sent");
    this.settle.resolve(seq);
    return true;
  }

  /** It will not be sent again. */
  fail(error: Error): boolean {
    if (this.status !== "pending") return false;
    this.status = "failed";
    this.error = error;
    this.settle.reject(error);
    return true;
  }
}

/** Messages not yet acknowledged, in the order they were sent, plus acknowledged ones whose status may still move. */
export class Outbox {
  private readonly byId = new Map<string, OutgoingMessage>();

  /** Adds a message at the end. */
  add(message: OutgoingMessage): void {
    this.byId.set(message.clientMsgId, message);
  }

  /** A message by its client_msg_id. */
  get(clientMsgId: string): OutgoingMessage | undefined {
    return this.byId.get(clientMsgId);
  }

  /** Forgets a message. */
  remove(clientMsgId: string): void {
    this.byId.delete(clientMsgId);
  }

  /** Messages still waiting for an acknowledgement, oldest first. */
  unacknowledged(): OutgoingMessage[] {
    return [...this.byId.values()].filter((m) => m.status === "pending");
  }

  /** Acknowledged messages of a room whose status can still move. */
  inRoom(roomId: string): OutgoingMessage[] {
    return [...this.byId.values()].filter(
      (m) => m.roomId === roomId && (m.status === "sent" || m.status === "delivered"),
    );
  }

  /** Forgets messages that reached a final status (read or failed). */
  prune(): void {
    for (const [id, m] of this.byId) {
      if (m.status === "read" || m.status === "failed") this.byId.delete(id);
    }
  }
}

/** Members' watermarks in one room. */
export interface Watermarks {
  delivered: bigint;
  read: bigint;
}

/**
 * The status derives for a message at `seq`: delivered (read) when every other member's
 * delivered (read) watermark reached it. With no other member known it stays sent.
 */
export function statusFromReceipts(seq: bigint, me: string, members: Iterable<string>, marks: Map<string, Watermarks>): MessageStatus {
  let others = 0;
  let delivered = true;
  let read = true;
  for (const user of members) {
    if (user === me) continue;
    others++;
    const mark = marks.get(user) ?? { delivered: 0n, read: 0n };
    if (mark.delivered < seq && mark.read < seq) delivered = false;
    if (mark.read < seq) read = false;
  }
  if (others === 0) return "sent";
  return read ? "read" : delivered ? "delivered" : "sent";
}
