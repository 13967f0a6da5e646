// The seven client-harness scenarios (docs/conformance.md): `chatwire-conformance
// client-harness` plays a misbehaving server, this test drives the SDK through the scenario's
// script, and the harness judges what it saw on the wire; its exit status is the verdict.
// Needs the conformance binary (`cargo build -p chatwire-conformance`), so macOS and Linux only.

#if os(macOS) || os(Linux)
import Foundation
import XCTest
@testable import ChatwireClient

/// The harness's first stdout line.
private struct Ready {
    let url: URL
    let roomId: String
    let reportRoomId: String
}

/// One running harness process: its ready line, its output, its exit status.
private final class HarnessProcess: @unchecked Sendable {
    private let process = Process()
    private let output = Pipe()
    private let lock = NSLock()
    private var text = ""
    private var exitStatus: Int32?
    private var exitWaiters: [CheckedContinuation<Int32, Never>] = []

    init(scenario: String) throws {
        process.executableURL = TestPaths.conformanceBinary
        process.arguments = ["client-harness", "--scenario", scenario, "--timeout", "30"]
        process.standardOutput = output
        process.terminationHandler = { [weak self] finished in
            self?.exited(finished.terminationStatus)
        }
        try process.run()
    }

    /// Reads stdout up to the first newline and parses the ready line.
    func ready() throws -> Ready {
        var line = [UInt8]()
        let handle = output.fileHandleForReading
        while !line.contains(0x0a) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line += [UInt8](chunk)
        }
        let newline = line.firstIndex(of: 0x0a) ?? line.count
        let rest = line.count > newline ? Array(line[(newline + 1)...]) : []
        lock.lock()
        text += String(decoding: rest, as: UTF8.self)
        lock.unlock()
        handle.readabilityHandler = { [weak self] handle in
            let more = handle.availableData
            guard let self = self, !more.isEmpty else { return }
            self.lock.lock()
            self.text += String(decoding: more, as: UTF8.self)
            self.lock.unlock()
        }
        let object = try JSONSerialization.jsonObject(with: Data(line[..<newline]))
        let fields = try XCTUnwrap(object as? [String: Any], "ready line")
        return Ready(
            url: try XCTUnwrap(URL(string: try XCTUnwrap(fields["url"] as? String))),
            roomId: try XCTUnwrap(fields["room_id"] as? String),
            reportRoomId: try XCTUnwrap(fields["report_room_id"] as? String)
        )
    }

    private func exited(_ status: Int32) {
        lock.lock()
        exitStatus = status
        let waiters = exitWaiters
        exitWaiters.removeAll()
        lock.unlock()
        for waiter in waiters { waiter.resume(returning: status) }
    }

    /// Waits for the harness to exit: 0 when every MUST check passed.
    func waitForExit() async -> Int32 {
        await withCheckedContinuation { continuation in
            lock.lock()
            if let status = exitStatus {
                lock.unlock()
                continuation.resume(returning: status)
                return
            }
            exitWaiters.append(continuation)
            lock.unlock()
        }
    }

    /// What the harness printed after the ready line (its checks and verdict).
    var report: String {
        lock.lock()
        defer { lock.unlock() }
        return text
    }
}

final class HarnessTests: XCTestCase {
    private func makeClient(_ ready: Ready, refresh: (@Sendable () async throws -> String)? = nil) -> ChatwireClient {
        var configuration = ChatwireConfiguration(url: ready.url, token: "harness-token")
        configuration.backoff = Backoff(base: 0.1, maximum: 1)
        configuration.requestTimeout = 10
        configuration.refreshToken = refresh
        return ChatwireClient(configuration: configuration)
    }

    /// Runs one scenario: the harness, the client's script, then the verdict.
    private func play(
        _ scenario: String,
        refresh: (@Sendable () async throws -> String)? = nil,
        script: @escaping (ChatwireClient, Ready) async throws -> Void
    ) async throws {
        let harness = try HarnessProcess(scenario: scenario)
        let ready = try harness.ready()
        let client = makeClient(ready, refresh: refresh)
        let driver = Task {
            try await client.start()
            try await script(client, ready)
        }
        let status = await harness.waitForExit()
        driver.cancel()
        await client.close()
        XCTAssertEqual(status, 0, "scenario \(scenario):\n\(harness.report)")
    }

    /// Follows the room until `last` is applied, then reports the applied seqs.
    private func followAndReport(_ client: ChatwireClient, _ ready: Ready, last: UInt64) async throws {
        let events = await client.events()
        try await client.subscribeRoom(ready.roomId, afterSeq: 0)
        var applied: [UInt64] = []
        for await event in events {
            if case .room(let roomEvent) = event, roomEvent.roomId == ready.roomId {
                applied.append(roomEvent.seq)
                if roomEvent.seq >= last { break }
            }
        }
        let report = "applied:" + applied.map { String($0) }.joined(separator: ",")
        let message = await client.sendMessage(roomId: ready.reportRoomId, text: report)
        _ = try await client.sent(message.clientMsgId)
    }

    func testDropMidRequest() async throws {
        try await play("drop-mid-request") { client, ready in
            let message = await client.sendMessage(roomId: ready.roomId, text: "hello")
            _ = try await client.sent(message.clientMsgId)
        }
    }

    func testAckDuplicated() async throws {
        try await play("ack-duplicated") { client, ready in
            let one = await client.sendMessage(roomId: ready.roomId, text: "one")
            _ = try await client.sent(one.clientMsgId)
            let two = await client.sendMessage(roomId: ready.roomId, text: "two")
            _ = try await client.sent(two.clientMsgId)
        }
    }

    func testSeqGap() async throws {
        try await play("seq-gap") { client, ready in
            try await self.followAndReport(client, ready, last: 6)
        }
    }

    func testDuplicateEvent() async throws {
        try await play("duplicate-event") { client, ready in
            try await self.followAndReport(client, ready, last: 4)
        }
    }

    func testTokenExpiring() async throws {
        try await play("token-expiring", refresh: { "a-new-token" }) { client, _ in
            for await event in await client.clientEvents() {
                if case .tokenRefreshed = event { return }
            }
        }
    }

    func testServerDraining() async throws {
        try await play("server-draining") { client, ready in
            try await client.subscribeRoom(ready.roomId, afterSeq: 0)
        }
    }

    func testSlowReads() async throws {
        try await play("slow-reads") { client, ready in
            var ids: [String] = []
            for n in 1...8 {
                ids.append(await client.sendMessage(roomId: ready.roomId, text: "m\(n)").clientMsgId)
            }
            for id in ids {
                _ = try await client.sent(id)
            }
        }
    }
}
#endif
