// Per-room state the client keeps for resume and receipts (docs/protocol.md section 10.5).
import type { Watermarks } from "./outbox.js";
import type { RoomEvent } from "./gen/chatwire/v1/events_pb.js";

/** What the client knows about one room it follows. */
export class RoomState {
  /** The highest seq applied; resume subscribes after it. */
  lastSeq: bigint;
  /** True once a `complete` Subscribe reply made the room live on the current session. */
  live = false;
  /** Live events that arrived while the room was catching up, applied once the replay reached them. */
  readonly held: RoomEvent[] = [];
  /** A catch-up (Subscribe paging) is running. */
  catchingUp: Promise<void> | null = null;
  /** Current members, as far as known (ListMembers, then MemberJoined / MemberLeft). */
  readonly members = new Set<string>();
  /** Members' watermarks (GetReceipts, then ReceiptsChanged). */
  readonly receipts = new Map<string, Watermarks>();

  constructor(readonly roomId: string, lastSeq: bigint) {
    this.lastSeq = lastSeq;
  }

  /** Moves a member's watermarks forward (they never move back). */
  mark(userId: string, delivered: bigint, read: bigint): void {
    const old = this.receipts.get(userId) ?? { delivered: 0n, read: 0n };
    this.receipts.set(userId, {
      delivered: delivered > old.delivered ? delivered : old.delivered,
      read: read > old.read ? read : old.read,
    });
  }
}
