// The quick start of docs/sdk-swift.md, compiled with the test target (not run: it needs a
// server). Keep it equal to the page.
// Package.swift: .package(path: "../chatwire/clients/swift") (or the repository URL),
// and "ChatwireClient" in the target's dependencies.
import Foundation
@testable import ChatwireClient

func chat(fetchToken: @escaping @Sendable () async throws -> String) async throws {
    var configuration = ChatwireConfiguration(
        url: URL(string: "ws://127.0.0.1:8080/v1/ws")!,
        token: fetchToken                             // asked before every connection
    )
    configuration.outboxStore = try FileOutboxStore.applicationSupport()
    let client = ChatwireClient(configuration: configuration)
    let events = await client.events()                // ChatwireEvent = Event.Kind
    Task {
        for await event in events {
            if case .room(let roomEvent) = event, case .messageCreated(let created)? = roomEvent.kind {
                print(roomEvent.seq, created.content?.text ?? "")
            }
        }
    }
    try await client.start()                          // first session (retries with backoff)
    let direct = try await client.openDirect(OpenDirectRequest.with { $0.userId = "bob" })
    let roomId = direct.room?.id ?? ""
    try await client.subscribeRoom(roomId)
    let message = await client.sendMessage(roomId: roomId, text: "hello")
    let seq = try await client.sent(message.clientMsgId)  // stored once, even across reconnects
    print("stored at seq", seq)
}
