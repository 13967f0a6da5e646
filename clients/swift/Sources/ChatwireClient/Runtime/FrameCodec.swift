// The frame format (docs/protocol.md section 2.1): a varint length prefix, then one protobuf
// message. Pure functions over bytes; no I/O, no clock.

import Foundation

/// Encodes and decodes whole frames.
public enum FrameCodec {
    /// One frame: the prefix, then the message.
    public static func encode<M: ProtoMessage>(_ message: M) -> [UInt8] {
        let body = message.serializedBytes()
        var writer = ProtoWriter()
        writer.writeVarint(UInt64(body.count))
        return writer.bytes + body
    }

    /// Every whole frame of `bytes` (one WebSocket message may hold several); a partial frame
    /// at the end throws `ProtoDecodingError.truncated`.
    public static func decodeAll<M: ProtoMessage>(_ bytes: [UInt8], as type: M.Type) throws -> [M] {
        var buffer = FrameBuffer()
        buffer.append(bytes)
        var frames: [M] = []
        while let body = try buffer.next() {
            frames.append(try M(serializedBytes: body))
        }
        guard buffer.isEmpty else { throw ProtoDecodingError.truncated }
        return frames
    }
}

/// Splits a byte stream (the QUIC control stream, or WebSocket messages) into frames.
public struct FrameBuffer: Sendable {
    private var bytes: [UInt8] = []

    /// An empty buffer.
    public init() {}

    /// True when no byte is left over.
    public var isEmpty: Bool { bytes.isEmpty }

    /// Adds received bytes.
    public mutating func append(_ more: [UInt8]) {
        bytes.append(contentsOf: more)
    }

    /// The next whole frame's message bytes (prefix removed), or nil until more bytes arrive.
    public mutating func next() throws -> [UInt8]? {
        var length: UInt64 = 0
        var shift: UInt64 = 0
        var index = 0
        while true {
            guard index < bytes.count else { return nil }
            let byte = bytes[index]
            index += 1
            length |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { break }
            shift += 7
            if shift > 63 { throw ProtoDecodingError.malformedVarint }
        }
        guard length <= UInt64(bytes.count - index) else { return nil }
        let end = index + Int(length)
        let body = Array(bytes[index..<end])
        bytes.removeFirst(end)
        return body
    }
}
