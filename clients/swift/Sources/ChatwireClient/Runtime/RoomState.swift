// What the client knows of one followed room: the highest seq it applied, events held while it
// catches up, members and watermarks for message status.

import Foundation

/// A followed room, as the client last saw it.
public struct RoomSnapshot: Sendable, Equatable {
    /// The room.
    public let roomId: String
    /// The highest seq applied (every event up to it was delivered once, in order).
    public let lastSeq: UInt64
    /// True once the replay is done and events arrive live.
    public let live: Bool
    /// The members known (first page of ListMembers, then joins and leaves).
    public let members: Set<String>
}

/// Live events held per room while it catches up; more are dropped and repaired as a gap.
let maxHeldEvents = 10_000

final class RoomState {
    let roomId: String
    var lastSeq: UInt64
    var live = false
    var held: [RoomEvent] = []
    var members: Set<String> = []
    var watermarks: [String: Watermarks] = [:]
    var catchingUp: Task<Void, Error>?

    init(roomId: String, lastSeq: UInt64) {
        self.roomId = roomId
        self.lastSeq = lastSeq
    }

    func mark(userId: String, delivered: UInt64, read: UInt64) {
        var mark = watermarks[userId] ?? Watermarks()
        mark.delivered = max(mark.delivered, delivered)
        mark.read = max(mark.read, read)
        watermarks[userId] = mark
    }

    var snapshot: RoomSnapshot {
        RoomSnapshot(roomId: roomId, lastSeq: lastSeq, live: live, members: members)
    }
}
