// Outgoing messages and their status (docs/protocol.md ), and where unsent
// messages are kept across app launches. No network I/O: the client feeds acknowledgements and
// receipts in and reads statuses out.

import Foundation

/// Where one of the user's own messages stands; only moves forward, or to `failed`.
public enum MessageStatus: Int, Sendable, Comparable {
    /// Not yet acknowledged by the server.
    case pending
    /// Stored by the server at a seq.
    case sent
    /// Every other current member's delivered watermark reached it.
    case delivered
    /// Every other current member's read watermark reached it.
    case read
    /// It will not be sent again (a non-retryable error, or `close()`).
    case failed

    public static func < (lhs: MessageStatus, rhs: MessageStatus) -> Bool {
        lhs.rawValue < rhs.rawValue
    }
}

/// One message sent through the outbox, as the client last saw it.
public struct OutgoingMessage: Sendable, Equatable {
    /// The request, sent unchanged (same `client_msg_id`) on every attempt.
    public let request: SendRequest
    /// Its status.
    public internal(set) var status: MessageStatus = .pending
    /// Its seq once the server acknowledged it.
    public internal(set) var seq: UInt64?
    /// Why it failed, when it did.
    public internal(set) var error: ChatwireError?
    /// Transmissions so far.
    public internal(set) var attempts: Int = 0

    /// Its idempotency key.
    public var clientMsgId: String { request.clientMsgId }
    /// Its room.
    public var roomId: String { request.roomId }

    init(request: SendRequest) {
        self.request = request
    }

    /// Moves the status forward; returns true when it changed.
    mutating func advance(_ next: MessageStatus) -> Bool {
        guard status != .failed, next > status else { return false }
        status = next
        return true
    }

    /// The server stored it at `seq` (the reply or the echoed event, whichever came first).
    mutating func acknowledge(seq: UInt64) -> Bool {
        guard self.seq == nil, status != .failed else { return false }
        self.seq = seq
        _ = advance(.sent)
        return true
    }

    /// It will not be sent again.
    mutating func fail(_ error: ChatwireError) -> Bool {
        guard status == .pending else { return false }
        status = .failed
        self.error = error
        return true
    }
}

/// The status derives for a message at `seq`: delivered (read) when every other
/// member's delivered (read) watermark reached it; `sent` when no other member is known.
public func statusFromReceipts(
    seq: UInt64,
    me: String,
    members: Set<String>,
    watermarks: [String: Watermarks]
) -> MessageStatus {
    var others = 0
    var delivered = true
    var read = true
    for user in members where user != me {
        others += 1
        let mark = watermarks[user] ?? Watermarks()
        if mark.delivered < seq && mark.read < seq { delivered = false }
        if mark.read < seq { read = false }
    }
    if others == 0 { return .sent }
    return read ? .read : (delivered ? .delivered : .sent)
}

/// One member's watermarks in a room.
public struct Watermarks: Sendable, Equatable {
    /// The highest seq delivered to the member.
    public var delivered: UInt64 = 0
    /// The highest seq the member read.
    public var read: UInt64 = 0

    public init(delivered: UInt64 = 0, read: UInt64 = 0) {
        self.delivered = delivered
        self.read = read
    }
}

/// Keeps the messages not yet acknowledged, so that a message survives the app being killed.
public protocol OutboxStore: Sendable {
    /// The unacknowledged messages, oldest first.
    func load() throws -> [SendRequest]
    /// Replaces what is kept with `pending`, oldest first.
    func save(_ pending: [SendRequest]) throws
}

/// An `OutboxStore` in one file: a JSON array of base64 protobuf `SendRequest`s, written
/// atomically (a crash leaves the old or the new list, never half of one).
public final class FileOutboxStore: OutboxStore, @unchecked Sendable {
    /// The file.
    public let url: URL
    private let lock = NSLock()

    /// A store in `url` (its folder is created when missing).
    public init(url: URL) {
        self.url = url
    }

    /// A store in the app's Application Support folder.
    public static func applicationSupport(name: String = "chatwire-outbox.json") throws -> FileOutboxStore {
        let folder = try FileManager.default.url(
            for: .applicationSupportDirectory,
            in: .userDomainMask,
            appropriateFor: nil,
            create: true
        )
        return FileOutboxStore(url: folder.appendingPathComponent(name))
    }

    public func load() throws -> [SendRequest] {
        lock.lock()
        defer { lock.unlock() }
        guard FileManager.default.fileExists(atPath: url.path) else { return [] }
        let data = try Data(contentsOf: url)
        guard let entries = try JSONSerialization.jsonObject(with: data) as? [String] else {
            throw ProtoDecodingError.invalidJSON(field: "outbox")
        }
        return try entries.map { (entry: String) -> SendRequest in
            guard let bytes = Data(base64Encoded: entry) else {
                throw ProtoDecodingError.invalidJSON(field: "outbox")
            }
            return try SendRequest(serializedBytes: [UInt8](bytes))
        }
    }

    public func save(_ pending: [SendRequest]) throws {
        lock.lock()
        defer { lock.unlock() }
        let entries = pending.map { Data($0.serializedBytes()).base64EncodedString() }
        let data = try JSONSerialization.data(withJSONObject: entries)
        try FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(),
            withIntermediateDirectories: true
        )
        try data.write(to: url, options: .atomic)
    }
}

/// Messages of the outbox by `client_msg_id`, in the order they were sent.
struct Outbox {
    private(set) var order: [String] = []
    private var byId: [String: OutgoingMessage] = [:]

    subscript(clientMsgId: String) -> OutgoingMessage? {
        get { byId[clientMsgId] }
        set {
            if let message = newValue {
                if byId[clientMsgId] == nil { order.append(clientMsgId) }
                byId[clientMsgId] = message
            } else {
                byId[clientMsgId] = nil
                order.removeAll { $0 == clientMsgId }
            }
        }
    }

    /// Messages still waiting for an acknowledgement, oldest first.
    var unacknowledged: [OutgoingMessage] {
        order.compactMap { byId[$0] }.filter { $0.status == .pending }
    }

    /// Acknowledged messages of a room whose status can still move.
    func inRoom(_ roomId: String) -> [OutgoingMessage] {
        order.compactMap { byId[$0] }.filter {
            $0.roomId == roomId && ($0.status == .sent || $0.status == .delivered)
        }
    }

    /// Forgets messages that reached a final status (read or failed).
    mutating func prune() {
        for id in order {
            if let message = byId[id], message.status == .read || message.status == .failed {
                self[id] = nil
            }
        }
    }
}
