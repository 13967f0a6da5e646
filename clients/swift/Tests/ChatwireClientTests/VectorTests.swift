// The golden vectors (conformance/vectors/README.md): every frame decodes from its .bin to the
// message its .json describes, and the message parsed from the .json encodes to the .bin byte
// for byte (except the decode-only vectors, which hold unknown fields JSON cannot).

import Foundation
import XCTest
@testable import ChatwireClient

final class VectorTests: XCTestCase {
    private struct Entry {
        let name: String
        let message: String
        let bin: String
        let json: String
    }

    private func entries(_ key: String) throws -> [Entry] {
        let data = try Data(contentsOf: TestPaths.vectors.appendingPathComponent("manifest.json"))
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try XCTUnwrap(manifest[key] as? [[String: Any]], "manifest.\(key)")
        return try list.map { item in
            Entry(
                name: try XCTUnwrap(item["name"] as? String),
                message: try XCTUnwrap(item["message"] as? String),
                bin: try XCTUnwrap(item["bin"] as? String),
                json: try XCTUnwrap(item["json"] as? String)
            )
        }
    }

    private func bytes(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: TestPaths.vectors.appendingPathComponent(path)))
    }

    private func check<M: ProtoMessage>(_ entry: Entry, as type: M.Type, encode: Bool) throws {
        let bin = try bytes(entry.bin)
        let frames = try FrameCodec.decodeAll(bin, as: M.self)
        XCTAssertEqual(frames.count, 1, "\(entry.name): one frame")
        let fromJSON = try M(jsonUTF8: Data(try bytes(entry.json)))
        XCTAssertEqual(frames.first, fromJSON, "\(entry.name): .bin and .json decode to one message")
        if encode {
            XCTAssertEqual(FrameCodec.encode(fromJSON), bin, "\(entry.name): encoding the .json gives the .bin")
        }
    }

    private func run(_ list: [Entry], encode: Bool) throws {
        for entry in list {
            switch entry.message {
            case "chatwire.v1.ClientFrame":
                try check(entry, as: ClientFrame.self, encode: encode)
            case "chatwire.v1.ServerFrame":
                try check(entry, as: ServerFrame.self, encode: encode)
            default:
                XCTFail("\(entry.name): unknown message \(entry.message)")
            }
        }
    }

    func testEveryVectorDecodesAndEncodesByteForByte() throws {
        let list = try entries("vectors")
        XCTAssertGreaterThan(list.count, 60)
        try run(list, encode: true)
    }

    func testDecodeOnlyVectorsSkipUnknownFields() throws {
        let list = try entries("decode_only")
        XCTAssertFalse(list.isEmpty)
        try run(list, encode: false)
    }

    func testEveryRequestCaseAndEventCaseHasAVector() throws {
        var covered = Set<String>()
        let data = try Data(contentsOf: TestPaths.vectors.appendingPathComponent("manifest.json"))
        let manifest = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        for item in try XCTUnwrap(manifest["vectors"] as? [[String: Any]]) {
            for name in item["covers"] as? [String] ?? [] {
                covered.insert(name)
            }
        }
        for kind in RequestKind.allCases {
            XCTAssertTrue(covered.contains("ClientFrame.request.\(kind.rawValue)"), "\(kind)")
        }
        for kind in EventKind.allCases {
            XCTAssertTrue(covered.contains("Event.kind.\(kind.rawValue)"), "\(kind)")
        }
    }

    func testAPartialFrameIsAnError() {
        let frame = FrameCodec.encode(ClientFrame.with { $0.id = 7 })
        XCTAssertThrowsError(try FrameCodec.decodeAll(Array(frame.dropLast()), as: ClientFrame.self))
    }

    func testBackoffIsFullJitterWithAFloor() {
        let backoff = Backoff(base: 1, maximum: 30)
        XCTAssertEqual(backoff.delay(attempt: 0, unit: { 0.5 }), 0.5)
        XCTAssertEqual(backoff.delay(attempt: 3, unit: { 0.5 }), 4)
        XCTAssertEqual(backoff.delay(attempt: 10, unit: { 0.999 }), 29.97, accuracy: 0.001)
        XCTAssertEqual(backoff.delay(attempt: 0, floor: 2, unit: { 0 }), 2)
    }

    func testStatusFromReceipts() {
        let members: Set<String> = ["me", "bob", "carol"]
        var marks = ["bob": Watermarks(delivered: 5, read: 5), "carol": Watermarks(delivered: 5, read: 4)]
        XCTAssertEqual(statusFromReceipts(seq: 5, me: "me", members: members, watermarks: marks), .delivered)
        marks["carol"] = Watermarks(delivered: 5, read: 5)
        XCTAssertEqual(statusFromReceipts(seq: 5, me: "me", members: members, watermarks: marks), .read)
        XCTAssertEqual(statusFromReceipts(seq: 6, me: "me", members: members, watermarks: marks), .sent)
        XCTAssertEqual(statusFromReceipts(seq: 1, me: "me", members: ["me"], watermarks: [:]), .sent)
    }

    func testFileOutboxStoreKeepsMessagesAcrossInstances() throws {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("chatwire-outbox-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: url) }
        let request = SendRequest.with {
            $0.roomId = "r1"
            $0.clientMsgId = "m1"
            $0.content = Content.with { $0.text = "héllo" }
        }
        try FileOutboxStore(url: url).save([request])
        XCTAssertEqual(try FileOutboxStore(url: url).load(), [request])
    }
}
