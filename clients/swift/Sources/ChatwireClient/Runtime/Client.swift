// The runtime: one connection at a time, reconnect with backoff, resume from the last applied
// seq, outbox with per-message status, request timeouts, token refresh, background and
// foreground hooks. The typed request methods are generated (Generated/Api.swift) and call
// `call` below. The same contract as the TypeScript SDK (docs/sdk-typescript.md).

import Foundation

/// Where the client's connection stands.
public enum ConnectionState: String, Sendable, Equatable {
    /// `start()` was not called yet.
    case idle
    /// Opening the first connection.
    case connecting
    /// A session is established.
    case connected
    /// Waiting to connect again after a lost connection (backoff).
    case reconnecting
    /// Disconnected on purpose while the app is in the background.
    case suspended
    /// Closed for good (`close()`, a final close code, or `maxAttempts` reached).
    case closed
}

/// Everything the client reports besides the server's events.
public enum ClientEvent: Sendable {
    /// The connection state changed.
    case state(ConnectionState)
    /// A session was established (first connect or reconnect).
    case session(ConnectResponse)
    /// One of the user's own messages changed status.
    case status(OutgoingMessage)
    /// The session's token was replaced after a `TokenExpiring` event.
    case tokenRefreshed(RefreshResponse)
    /// Something failed that no caller awaits (a background resume, a token refresh).
    case failure(ChatwireError)
}

/// How to reach and authenticate to a server.
public struct ChatwireConfiguration: Sendable {
    /// `ws://host:port/v1/ws` (WebSocket), or any URL with the host and UDP port (QUIC).
    public var url: URL
    /// Asked for a token before every connection.
    public var token: @Sendable () async throws -> String
    /// Asked for a new token when the server says the current one expires soon (default: `token`).
    public var refreshToken: (@Sendable () async throws -> String)?
    /// The transport (WebSocket by default).
    public var transport: TransportKind = .webSocket
    /// Default request timeout in seconds.
    public var requestTimeout: TimeInterval = 30
    /// Seconds to open a connection and establish its session before trying again.
    public var connectTimeout: TimeInterval = 15
    /// Connection attempts in a row before giving up (nil: never give up).
    public var maxAttempts: Int?
    /// Reconnect backoff (full jitter, 1 s doubling to 30 s).
    public var backoff = Backoff()
    /// Reconnect automatically.
    public var reconnect = true
    /// Sent in `ConnectRequest.client`, for the server's logs.
    public var clientInfo = ClientInfo.with {
        $0.name = "ChatwireClient"
        $0.version = "0.1.0"
        $0.platform = "swift"
    }
    /// A stable id of this app install.
    public var deviceId = ""
    /// Capabilities to offer (`typing-datagrams` is added for QUIC).
    public var capabilities: [String] = []
    /// Where unacknowledged messages are kept across launches (nil: memory only).
    public var outboxStore: OutboxStore?

    /// A configuration with a token function.
    public init(url: URL, token: @escaping @Sendable () async throws -> String) {
        self.url = url
        self.token = token
    }

    /// A configuration with a fixed token.
    public init(url: URL, token: String) {
        self.url = url
        self.token = { token }
    }
}

/// Close codes after which the client does not reconnect on its own.
let finalCloseCodes: Set<Int> = [
    Int(CloseCode.authFailed.number),
    Int(CloseCode.revoked.number),
    Int(CloseCode.clientClosed.number),
]

/// A Chatwire client: `try await client.start()`, then the typed request methods (one per
/// rpc, generated), `subscribeRoom` to follow a room, `sendMessage` to post through the outbox,
/// and `events()` / `clientEvents()` / `stateUpdates()` to listen.
public actor ChatwireClient {
    /// How the client connects.
    public nonisolated let configuration: ChatwireConfiguration
    /// The connection state.
    public private(set) var state: ConnectionState = .idle
    /// The current session, while connected.
    public private(set) var session: ConnectResponse?

    fileprivate enum Waiter {
        case caller(CheckedContinuation<Reply.Result, Error>)
        case connect(generation: Int)
    }

    fileprivate final class PendingCall {
        let id: UInt64
        let kind: RequestKind
        let frame: ClientFrame
        let waiter: Waiter
        let fromOutbox: Bool
        var generation: Int?
        var timer: Task<Void, Never>?

        init(id: UInt64, kind: RequestKind, frame: ClientFrame, waiter: Waiter, fromOutbox: Bool) {
            self.id = id
            self.kind = kind
            self.frame = frame
            self.waiter = waiter
            self.fromOutbox = fromOutbox
        }
    }

    private var transport: ChatwireTransport?
    private var incoming = FrameBuffer()
    private var generation = 0
    private var nextId: UInt64 = 1
    private var attempt = 0
    private var hadSession = false
    private var disconnect: Disconnect?
    private var pending: [UInt64: PendingCall] = [:]
    private var queue: [PendingCall] = []
    private var rooms: [String: RoomState] = [:]
    private var watched: Set<String> = []
    private var outbox = Outbox()
    private var lastSent = Date()
    private var lastReceived = Date()
    private var connectionTask: Task<Void, Never>?
    private var reconnectTask: Task<Void, Never>?
    private var heartbeatTask: Task<Void, Never>?
    private var connectTimer: Task<Void, Never>?
    private var firstSession: [CheckedContinuation<ConnectResponse, Error>] = []
    private var sessionWaiters: [CheckedContinuation<Void, Error>] = []
    private var eventContinuations: [UUID: AsyncStream<ChatwireEvent>.Continuation] = [:]
    private var clientContinuations: [UUID: AsyncStream<ClientEvent>.Continuation] = [:]
    private var stateContinuations: [UUID: AsyncStream<ConnectionState>.Continuation] = [:]
    private var sentWaiters: [String: [CheckedContinuation<UInt64, Error>]] = [:]

    /// A client; nothing happens before `start()`. Messages left in `configuration.outboxStore`
    /// by an earlier run are loaded and sent on the first session.
    public init(configuration: ChatwireConfiguration) {
        self.configuration = configuration
        if let store = configuration.outboxStore, let saved = try? store.load() {
            var restored = Outbox()
            for request in saved {
                restored[request.clientMsgId] = OutgoingMessage(request: request)
            }
            self.outbox = restored
        }
    }

    // -----------------------------------------------------------------------------------------
    // Public surface

    /// Opens the connection (retrying with backoff) and returns the first session.
    @discardableResult
    public func start() async throws -> ConnectResponse {
        if let session = session { return session }
        if state == .closed {
            throw ChatwireError.sessionClosed(code: nil, reason: "client is closed")
        }
        return try await withCheckedThrowingContinuation { continuation in
            firstSession.append(continuation)
            if state == .idle {
                startConnection()
            }
        }
    }

    /// The user id of the session (after the first connect).
    public var userId: String { session?.userId ?? "" }

    /// Every server event (room events once each, in seq order per followed room).
    public func events() -> AsyncStream<ChatwireEvent> {
        let id = UUID()
        return AsyncStream { continuation in
            if state == .closed {
                continuation.finish()
                return
            }
            eventContinuations[id] = continuation
            continuation.onTermination = { [weak self] _ in
                Task { await self?.removeStream(id) }
            }
        }
    }

    /// The client's own events: state, sessions, message status, token refresh, failures.
    public func clientEvents() -> AsyncStream<ClientEvent> {
        let id = UUID()
        return AsyncStream { continuation in
            if state == .closed {
                continuation.finish()
                return
            }
            clientContinuations[id] = continuation
            continuation.onTermination = { [weak self] _ in
                Task { await self?.removeStream(id) }
            }
        }
    }

    /// The connection state, now and at every change.
    public func stateUpdates() -> AsyncStream<ConnectionState> {
        let id = UUID()
        return AsyncStream { continuation in
            continuation.yield(state)
            if state == .closed {
                continuation.finish()
                return
            }
            stateContinuations[id] = continuation
            continuation.onTermination = { [weak self] _ in
                Task { await self?.removeStream(id) }
            }
        }
    }

    private func removeStream(_ id: UUID) {
        eventContinuations[id] = nil
        clientContinuations[id] = nil
        stateContinuations[id] = nil
    }

    /// Follows a room: replays its log after `afterSeq` (default: what this client already
    /// applied, else 0) page by page as `.room` events, then delivers it live; after every
    /// reconnect it resumes from the last applied seq. Returns once the room is live.
    @discardableResult
    public func subscribeRoom(_ roomId: String, afterSeq: UInt64? = nil) async throws -> RoomSnapshot {
        let room: RoomState
        if let existing = rooms[roomId] {
            room = existing
            if let afterSeq = afterSeq { room.lastSeq = afterSeq }
        } else {
            room = RoomState(roomId: roomId, lastSeq: afterSeq ?? 0)
            rooms[roomId] = room
        }
        room.live = false
        while true {
            do {
                try await catchUp(room)
            } catch ChatwireError.noReply(_, .connectionLost) {
                // The connection dropped mid-way: the next session's resume picks the room up.
                try await nextSession()
                continue
            }
            do {
                try await loadReceipts(room)
            } catch ChatwireError.noReply(_, .connectionLost) {
                try await nextSession()
                continue
            } catch let error as ChatwireError {
                // The room is followed and live: a server that refuses ListMembers or
                // GetReceipts only leaves message status without members or watermarks.
                emit(.failure(error))
            }
            return room.snapshot
        }
    }

    /// Stops following a room.
    public func unsubscribeRoom(_ roomId: String) async throws {
        rooms[roomId] = nil
        _ = try await unsubscribe(UnsubscribeRequest.with { $0.roomId = roomId })
    }

    /// A followed room's state.
    public func room(_ roomId: String) -> RoomSnapshot? {
        rooms[roomId]?.snapshot
    }

    /// Posts a message through the outbox: sent now when connected, else on the next session,
    /// and resent with the same `client_msg_id` until the server stores it.
    @discardableResult
    public func sendMessage(
        roomId: String,
        content: Content,
        clientMsgId: String = UUID().uuidString.lowercased(),
        replyToSeq: UInt64 = 0,
        threadRootSeq: UInt64 = 0
    ) -> OutgoingMessage {
        let request = SendRequest.with {
            $0.roomId = roomId
            $0.clientMsgId = clientMsgId
            $0.content = content
            $0.replyToSeq = replyToSeq
            $0.threadRootSeq = threadRootSeq
        }
        let message = OutgoingMessage(request: request)
        outbox[clientMsgId] = message
        persistOutbox()
        emit(.status(message))
        if state == .connected {
            transmit(clientMsgId)
        }
        return message
    }

    /// Posts a text message through the outbox.
    @discardableResult
    public func sendMessage(roomId: String, text: String) -> OutgoingMessage {
        sendMessage(roomId: roomId, content: Content.with { $0.text = text })
    }

    /// Waits until the server stored the message and returns its seq; throws if it failed.
    public func sent(_ clientMsgId: String) async throws -> UInt64 {
        guard let message = outbox[clientMsgId] else {
            throw ChatwireError.invalidConfiguration("no outgoing message \(clientMsgId)")
        }
        if let seq = message.seq { return seq }
        if message.status == .failed {
            throw message.error ?? ChatwireError.sessionClosed(code: nil, reason: "failed")
        }
        return try await withCheckedThrowingContinuation { continuation in
            sentWaiters[clientMsgId, default: []].append(continuation)
        }
    }

    /// A message of the outbox by its `client_msg_id`.
    public func outgoing(_ clientMsgId: String) -> OutgoingMessage? {
        outbox[clientMsgId]
    }

    /// Messages not yet acknowledged, oldest first.
    public func unacknowledged() -> [OutgoingMessage] {
        outbox.unacknowledged
    }

    /// Starts or stops the typing indicator: as a QUIC datagram when the session has
    /// `typing-datagrams` (no reply), else as a `Typing` request.
    public func setTyping(roomId: String, active: Bool) async throws {
        let request = TypingRequest.with {
            $0.roomId = roomId
            $0.active = active
        }
        if let transport = transport, session?.capabilities.contains("typing-datagrams") == true {
            let frame = ClientFrame.with {
                $0.id = 0
                $0.request = .typing(request)
            }
            if transport.sendDatagram(FrameCodec.encode(frame)) { return }
        }
        _ = try await typing(request)
    }

    /// Tells the client the network is back: a waiting reconnect happens now, backoff reset.
    public func networkReturned() {
        attempt = 0
        if state == .reconnecting, reconnectTask != nil {
            reconnectTask?.cancel()
            reconnectTask = nil
            startConnection()
        }
    }

    /// The app went to the background: the connection is closed (the system would suspend
    /// it anyway); nothing is lost, the outbox and followed rooms wait for the foreground.
    public func enteredBackground() {
        guard state == .connected || state == .connecting || state == .reconnecting else { return }
        setState(.suspended)
        reconnectTask?.cancel()
        reconnectTask = nil
        let current = transport
        dropConnection(code: Int(CloseCode.clientClosed.number), reason: "app in background")
        current?.close(code: Int(CloseCode.clientClosed.number), reason: "app in background")
    }

    /// The app came back to the foreground: connects now (backoff reset) and resumes every
    /// followed room from its last applied seq and resends the outbox.
    public func enteredForeground() {
        guard state == .suspended else { return }
        attempt = 0
        startConnection()
    }

    /// Ends the session on purpose (close code 4012): pending requests fail with
    /// `noReply(.closed)`, unsent messages fail, every stream ends.
    public func close() {
        guard state != .closed else { return }
        let current = transport
        finish(ChatwireError.sessionClosed(code: .clientClosed, reason: "client closed"))
        current?.close(code: Int(CloseCode.clientClosed.number), reason: "client closed")
    }

    /// Sends one request and returns its result; the generated methods call this. A send of
    /// the outbox (`fromOutbox`) queued when the connection drops is not carried over: the next
    /// session's resume sends the whole outbox again, in order.
    func call(
        _ request: ClientFrame.Request,
        options: CallOptions,
        fromOutbox: Bool = false
    ) async throws -> Reply.Result {
        guard state != .closed else {
            throw ChatwireError.sessionClosed(code: nil, reason: "client is closed")
        }
        let id = nextId
        nextId += 1
        let frame = ClientFrame.with {
            $0.id = id
            $0.traceId = options.traceId
            $0.request = request
        }
        let timeout = options.timeout ?? configuration.requestTimeout
        let result: Reply.Result = try await withCheckedThrowingContinuation { continuation in
            let call = PendingCall(
                id: id,
                kind: request.kind,
                frame: frame,
                waiter: .caller(continuation),
                fromOutbox: fromOutbox
            )
            call.timer = Task { [weak self] in
                try? await Task.sleep(nanoseconds: UInt64(timeout * 1_000_000_000))
                await self?.expire(id)
            }
            queue.append(call)
            pump()
        }
        afterReply(request)
        return result
    }

    // -----------------------------------------------------------------------------------------
    // Connection life cycle

    private func startConnection() {
        generation += 1
        let current = generation
        setState(hadSession ? .reconnecting : .connecting)
        disconnect = nil
        connectionTask = Task { [weak self] in
            await self?.run(generation: current)
        }
    }

    private func makeTransport() throws -> ChatwireTransport {
        switch configuration.transport {
        case .webSocket:
            return WebSocketTransport(url: configuration.url)
        case .quic(let allowInsecure):
            #if canImport(Network)
            guard let host = configuration.url.host else {
                throw ChatwireError.invalidConfiguration("QUIC needs a host in \(configuration.url)")
            }
            let port = UInt16(configuration.url.port ?? 443)
            return QUICTransport(host: host, port: port, allowInsecure: allowInsecure)
            #else
            throw ChatwireError.invalidConfiguration("QUIC needs Network.framework")
            #endif
        case .custom(let make):
            return make(configuration.url)
        }
    }

    /// One connection: token, transport, Connect, then every event until it closes.
    private func run(generation current: Int) async {
        let token: String
        do {
            token = try await configuration.token()
        } catch {
            emit(.failure(.invalidConfiguration("token: \(error)")))
            scheduleReconnect(floor: 0)
            return
        }
        guard current == generation, state != .closed, state != .suspended else { return }
        let transport: ChatwireTransport
        do {
            transport = try makeTransport()
        } catch let error as ChatwireError {
            finish(error)
            return
        } catch {
            finish(.invalidConfiguration("\(error)"))
            return
        }
        self.transport = transport
        incoming = FrameBuffer()
        let limit = configuration.connectTimeout
        connectTimer = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(limit * 1_000_000_000))
            await self?.connectTimedOut(current)
        }
        for await event in transport.start() {
            guard current == generation else { break }
            switch event {
            case .opened:
                sendConnect(token: token, generation: current)
            case .bytes(let bytes):
                receive(bytes)
            case .datagram(let bytes):
                receiveDatagram(bytes)
            case .closed(let code, let reason):
                lost(generation: current, code: code, reason: reason)
            }
        }
    }

    private func connectTimedOut(_ current: Int) {
        guard current == generation, session == nil, let transport = transport else { return }
        let code = Int(CloseCode.connectTimeout.number)
        lost(generation: current, code: code, reason: "connect timeout")
        transport.close(code: code, reason: "connect timeout")
    }

    private func sendConnect(token: String, generation current: Int) {
        let id = nextId
        nextId += 1
        var capabilities = configuration.capabilities
        if case .quic = configuration.transport, !capabilities.contains("typing-datagrams") {
            capabilities.append("typing-datagrams")
        }
        let request = ConnectRequest.with {
            $0.token = token
            $0.client = configuration.clientInfo
            $0.capabilities = capabilities
            $0.deviceId = configuration.deviceId
        }
        let frame = ClientFrame.with {
            $0.id = id
            $0.request = .connect(request)
        }
        let call = PendingCall(
            id: id,
            kind: .connect,
            frame: frame,
            waiter: .connect(generation: current),
            fromOutbox: false
        )
        call.generation = current
        pending[id] = call
        write(frame)
    }

    private func established(_ response: ConnectResponse, generation current: Int) {
        guard current == generation else { return }
        connectTimer?.cancel()
        connectTimer = nil
        session = response
        hadSession = true
        setState(.connected)
        lastReceived = Date()
        let interval = TimeInterval(response.heartbeatIntervalMs == 0 ? 30_000 : response.heartbeatIntervalMs) / 1000
        heartbeatTask = Task { [weak self] in
            var elapsed: TimeInterval = 0
            let tick = max(0.25, interval / 4)
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(tick * 1_000_000_000))
                elapsed += tick
                guard let self = self else { return }
                // Backoff resets once a session has stayed up for one interval.
                if elapsed >= interval { await self.resetAttempts(current) }
                await self.heartbeat(interval: interval, generation: current)
            }
        }
        emit(.session(response))
        for waiter in firstSession { waiter.resume(returning: response) }
        firstSession.removeAll()
        for waiter in sessionWaiters { waiter.resume() }
        sessionWaiters.removeAll()
        resume()
        pump()
    }

    private func resetAttempts(_ current: Int) {
        if current == generation { attempt = 0 }
    }

    /// Re-subscribes every followed room, re-watches presence, resends the outbox.
    private func resume() {
        for room in rooms.values {
            room.live = false
            Task { [weak self] in
                do {
                    try await self?.catchUp(room)
                    try await self?.loadReceipts(room)
                } catch let error as ChatwireError {
                    await self?.emit(.failure(error))
                } catch {}
            }
        }
        if !watched.isEmpty {
            let users = Array(watched)
            Task { [weak self] in
                do {
                    _ = try await self?.watchPresence(WatchPresenceRequest.with { $0.userIds = users })
                } catch let error as ChatwireError {
                    await self?.emit(.failure(error))
                } catch {}
            }
        }
        for message in outbox.unacknowledged {
            transmit(message.clientMsgId)
        }
    }

    private func heartbeat(interval: TimeInterval, generation current: Int) {
        guard current == generation, state == .connected else { return }
        let now = Date()
        if now.timeIntervalSince(lastReceived) >= 2 * interval {
            let code = Int(CloseCode.heartbeatTimeout.number)
            let old = transport
            lost(generation: current, code: code, reason: "no frame for two intervals")
            old?.close(code: code, reason: "no frame for two intervals")
            return
        }
        if now.timeIntervalSince(lastSent) >= interval {
            let ms = Int64(now.timeIntervalSince1970 * 1000)
            Task { [weak self] in
                _ = try? await self?.ping(PingRequest.with { $0.clientTimeMs = ms })
            }
        }
    }

    /// The connection is gone: fails what was in flight on it and decides what comes next.
    private func lost(generation current: Int, code: Int, reason: String) {
        guard current == generation, transport != nil else { return }
        dropConnection(code: code, reason: reason)
        if state == .closed || state == .suspended { return }
        let told = disconnect
        let permanent = told.map { !$0.reconnect } ?? finalCloseCodes.contains(code)
        if permanent || !configuration.reconnect {
            let closeCode = told?.code ?? CloseCode(number: Int32(truncatingIfNeeded: code))
            finish(.sessionClosed(code: closeCode, reason: told?.reason ?? reason))
            return
        }
        let floor = TimeInterval(told?.reconnectDelayMs ?? 0) / 1000
        scheduleReconnect(floor: floor)
    }

    /// Forgets the current connection: in-flight requests fail with `connectionLost`.
    private func dropConnection(code: Int, reason: String) {
        transport = nil
        session = nil
        generation += 1
        heartbeatTask?.cancel()
        heartbeatTask = nil
        connectTimer?.cancel()
        connectTimer = nil
        for call in Array(pending.values) where call.generation != nil {
            pending[call.id] = nil
            fail(call, .noReply(request: call.kind, reason: .connectionLost))
        }
        // Queued outbox sends wait for resume(), which resends the whole outbox in order.
        for call in queue where call.fromOutbox {
            fail(call, .noReply(request: call.kind, reason: .connectionLost))
        }
        queue.removeAll { $0.fromOutbox }
        for room in rooms.values {
            room.live = false
            room.held.removeAll()
        }
    }

    private func scheduleReconnect(floor: TimeInterval) {
        if let limit = configuration.maxAttempts, attempt >= limit {
            finish(.sessionClosed(code: nil, reason: "gave up after \(limit) attempts"))
            return
        }
        setState(.reconnecting)
        let delay = configuration.backoff.delay(attempt: attempt, floor: floor)
        attempt += 1
        reconnectTask = Task { [weak self] in
            try? await Task.sleep(nanoseconds: UInt64(delay * 1_000_000_000))
            guard !Task.isCancelled else { return }
            await self?.reconnectNow()
        }
    }

    private func reconnectNow() {
        guard state == .reconnecting else { return }
        reconnectTask = nil
        startConnection()
    }

    private func finish(_ error: ChatwireError) {
        setState(.closed)
        generation += 1
        heartbeatTask?.cancel()
        connectTimer?.cancel()
        reconnectTask?.cancel()
        transport = nil
        session = nil
        for waiter in firstSession { waiter.resume(throwing: error) }
        firstSession.removeAll()
        for waiter in sessionWaiters { waiter.resume(throwing: error) }
        sessionWaiters.removeAll()
        let calls = Array(pending.values) + queue
        pending.removeAll()
        queue.removeAll()
        for call in calls {
            fail(call, .noReply(request: call.kind, reason: .closed))
        }
        for message in outbox.unacknowledged {
            var failed = message
            if failed.fail(error) {
                outbox[message.clientMsgId] = failed
                emit(.status(failed))
                settleSent(failed)
            }
        }
        for continuation in eventContinuations.values { continuation.finish() }
        eventContinuations.removeAll()
        for continuation in clientContinuations.values { continuation.finish() }
        clientContinuations.removeAll()
        for continuation in stateContinuations.values { continuation.finish() }
        stateContinuations.removeAll()
    }

    private func setState(_ next: ConnectionState) {
        guard state != next, state != .closed else { return }
        state = next
        for continuation in stateContinuations.values { continuation.yield(next) }
        emit(.state(next))
    }

    private func nextSession() async throws {
        if state == .closed {
            throw ChatwireError.sessionClosed(code: nil, reason: "client closed")
        }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            sessionWaiters.append(continuation)
        }
    }

    // -----------------------------------------------------------------------------------------
    // Requests

    /// Sends queued requests while a session is up and the in-flight limit allows.
    private func pump() {
        guard state == .connected, let session = session else { return }
        let limit = Int(session.limits?.maxInFlightRequests ?? 0)
        let maxInFlight = limit == 0 ? 64 : limit
        while !queue.isEmpty && inFlight() < maxInFlight {
            let call = queue.removeFirst()
            call.generation = generation
            pending[call.id] = call
            write(call.frame)
        }
    }

    private func inFlight() -> Int {
        pending.values.filter { $0.generation == generation }.count
    }

    private func write(_ frame: ClientFrame) {
        lastSent = Date()
        transport?.send(FrameCodec.encode(frame))
    }

    private func expire(_ id: UInt64) {
        if let index = queue.firstIndex(where: { $0.id == id }) {
            let call = queue.remove(at: index)
            fail(call, .noReply(request: call.kind, reason: .timeout))
        } else if let call = pending.removeValue(forKey: id) {
            if case .connect(let current) = call.waiter {
                connectTimedOut(current)
                return
            }
            fail(call, .noReply(request: call.kind, reason: .timeout))
        }
        pump()
    }

    private func fail(_ call: PendingCall, _ error: ChatwireError) {
        call.timer?.cancel()
        if case .caller(let continuation) = call.waiter {
            continuation.resume(throwing: error)
        }
    }

    private func afterReply(_ request: ClientFrame.Request) {
        switch request {
        case .watchPresence(let watch):
            watched.formUnion(watch.userIds)
        case .unwatchPresence(let unwatch):
            watched.subtract(unwatch.userIds)
        default:
            break
        }
    }

    // -----------------------------------------------------------------------------------------
    // Incoming frames

    private func receive(_ bytes: [UInt8]) {
        lastReceived = Date()
        incoming.append(bytes)
        do {
            while let body = try incoming.next() {
                let frame = try ServerFrame(serializedBytes: body)
                switch frame.frame {
                case .reply(let reply)?:
                    handle(reply)
                case .event(let event)?:
                    handle(event)
                case nil:
                    break
                }
            }
        } catch let error as ProtoDecodingError {
            protocolViolation(error)
        } catch {
            protocolViolation(.truncated)
        }
    }

    private func protocolViolation(_ error: ProtoDecodingError) {
        emit(.failure(.decoding(error)))
        let code = Int(CloseCode.protocolViolation.number)
        let old = transport
        lost(generation: generation, code: code, reason: "undecodable server frame")
        old?.close(code: code, reason: "undecodable server frame")
    }

    /// A datagram is exactly one frame; a bad one is dropped silently.
    private func receiveDatagram(_ bytes: [UInt8]) {
        guard let frames = try? FrameCodec.decodeAll(bytes, as: ServerFrame.self),
              frames.count == 1,
              case .event(let event)? = frames[0].frame,
              case .typingChanged? = event.kind else { return }
        handle(event)
    }

    private func handle(_ reply: Reply) {
        // A reply with request_id 0 or an unknown id matches nothing.
        guard let call = pending.removeValue(forKey: reply.requestId) else { return }
        call.timer?.cancel()
        switch call.waiter {
        case .connect(let current):
            if case .connect(let response)? = reply.result {
                established(response, generation: current)
            } else {
                let code = Int(CloseCode.clientClosed.number)
                let old = transport
                if case .error(let error)? = reply.result {
                    emit(.failure(.server(request: .connect, error: error)))
                }
                lost(generation: current, code: code, reason: "connect refused")
                old?.close(code: code, reason: "connect refused")
            }
        case .caller(let continuation):
            switch reply.result {
            case .error(let error)?:
                continuation.resume(throwing: ChatwireError.server(request: call.kind, error: error))
            case let result?:
                continuation.resume(returning: result)
            case nil:
                continuation.resume(throwing: ChatwireError.unexpectedReply(request: call.kind))
            }
        }
        pump()
    }

    private func handle(_ event: Event) {
        guard let kind = event.kind else { return }
        switch kind {
        case .room(let roomEvent):
            guard liveRoomEvent(roomEvent) else { return }
        case .disconnect(let told):
            disconnect = told
        case .tokenExpiring:
            refreshSoon()
        case .receiptsChanged(let changed):
            receiptsChanged(roomId: changed.roomId, receipts: changed.receipts)
        default:
            break
        }
        deliver(kind)
    }

    private func deliver(_ event: ChatwireEvent) {
        for continuation in eventContinuations.values { continuation.yield(event) }
    }

    private func emit(_ event: ClientEvent) {
        for continuation in clientContinuations.values { continuation.yield(event) }
    }

    /// Applies a live room event exactly once by seq; returns whether it is new.
    private func liveRoomEvent(_ event: RoomEvent) -> Bool {
        guard let room = rooms[event.roomId] else { return true }
        if event.seq <= room.lastSeq { return false }
        if !room.live {
            // Catching up: held, and applied in seq order once the replay is done.
            if room.held.count < maxHeldEvents { room.held.append(event) }
            return false
        }
        if event.seq > room.lastSeq + 1 {
            // A gap: replay from the last applied seq instead.
            room.live = false
            room.held.append(event)
            Task { [weak self] in
                do {
                    try await self?.catchUp(room)
                } catch let error as ChatwireError {
                    await self?.emit(.failure(error))
                } catch {}
            }
            return false
        }
        apply(event, to: room)
        return true
    }

    private func apply(_ event: RoomEvent, to room: RoomState) {
        room.lastSeq = event.seq
        switch event.kind {
        case .memberJoined(let joined)?:
            room.members.insert(joined.userId)
        case .memberLeft(let left)?:
            room.members.remove(left.userId)
        case .messageCreated(let created)? where event.sender == userId:
            acknowledge(created.clientMsgId, seq: event.seq)
        default:
            break
        }
    }

    /// Pages Subscribe until the room is live; replayed events are delivered like live ones.
    private func catchUp(_ room: RoomState) async throws {
        if let running = room.catchingUp {
            return try await running.value
        }
        let task = Task { try await self.pageRoom(room) }
        room.catchingUp = task
        defer { room.catchingUp = nil }
        try await task.value
    }

    private func pageRoom(_ room: RoomState) async throws {
        while true {
            let page: SubscribeResponse
            do {
                page = try await subscribe(SubscribeRequest.with {
                    $0.roomId = room.roomId
                    $0.afterSeq = room.lastSeq
                })
            } catch ChatwireError.server(_, let error) where error.field == "after_seq" {
                room.lastSeq = 0 // the local copy is ahead of the server; start over.
                continue
            }
            guard rooms[room.roomId] === room else { return }
            for event in page.events where event.seq > room.lastSeq {
                apply(event, to: room)
                deliver(.room(event))
            }
            if page.complete && releaseHeld(room, acceptGaps: page.events.isEmpty) {
                room.live = true
                return
            }
        }
    }

    /// Applies the held live events that follow the last applied seq, in seq order; false at
    /// a gap (unless `acceptGaps`: the log has nothing to fill it with).
    private func releaseHeld(_ room: RoomState, acceptGaps: Bool) -> Bool {
        room.held.sort { $0.seq < $1.seq }
        while let event = room.held.first {
            if event.seq > room.lastSeq + 1 && !acceptGaps { return false }
            room.held.removeFirst()
            if event.seq <= room.lastSeq { continue }
            apply(event, to: room)
            deliver(.room(event))
        }
        return true
    }

    /// Members and watermarks of a room, for message status.
    private func loadReceipts(_ room: RoomState) async throws {
        let members = try await listMembers(ListMembersRequest.with { $0.roomId = room.roomId })
        room.members = Set(members.members.map { $0.userId })
        let receipts = try await getReceipts(GetReceiptsRequest.with { $0.roomId = room.roomId })
        receiptsChanged(roomId: room.roomId, receipts: receipts.receipts)
    }

    private func receiptsChanged(roomId: String, receipts: [Receipt]) {
        guard let room = rooms[roomId] else { return }
        for receipt in receipts {
            room.mark(userId: receipt.userId, delivered: receipt.deliveredSeq, read: receipt.readSeq)
        }
        for message in outbox.inRoom(roomId) {
            statusChanged(message.clientMsgId)
        }
        outbox.prune()
        persistOutbox()
    }

    private func statusChanged(_ clientMsgId: String) {
        guard var message = outbox[clientMsgId] else { return }
        let room = rooms[message.roomId]
        if let room = room, let seq = message.seq {
            _ = message.advance(statusFromReceipts(
                seq: seq,
                me: userId,
                members: room.members,
                watermarks: room.watermarks
            ))
        }
        outbox[clientMsgId] = message
        emit(.status(message))
        // Without a followed room no receipt can move it further: forget it once acknowledged.
        if room == nil && message.status != .pending {
            outbox[clientMsgId] = nil
        }
    }

    private func refreshSoon() {
        let source = configuration.refreshToken ?? configuration.token
        Task { [weak self] in
            do {
                let token = try await source()
                guard let self = self else { return }
                let response = try await self.refresh(RefreshRequest.with { $0.token = token })
                await self.emit(.tokenRefreshed(response))
            } catch let error as ChatwireError {
                await self?.emit(.failure(error))
            } catch {
                await self?.emit(.failure(.invalidConfiguration("refresh token: \(error)")))
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Outbox

    private func transmit(_ clientMsgId: String) {
        guard var message = outbox[clientMsgId], message.status == .pending else { return }
        message.attempts += 1
        outbox[clientMsgId] = message
        let attempts = message.attempts
        let request = message.request
        Task { [weak self] in
            guard let self = self else { return }
            do {
                let response = try await self.sendFromOutbox(request)
                await self.acknowledge(clientMsgId, seq: response.seq)
            } catch let error as ChatwireError {
                await self.sendFailed(clientMsgId, error: error, attempts: attempts)
            } catch {}
        }
    }

    private func sendFromOutbox(_ request: SendRequest) async throws -> SendResponse {
        let result = try await call(.send(request), options: CallOptions(), fromOutbox: true)
        guard case .send(let response) = result else {
            throw ChatwireError.unexpectedReply(request: .send)
        }
        return response
    }

    private func acknowledge(_ clientMsgId: String, seq: UInt64) {
        guard var message = outbox[clientMsgId], message.acknowledge(seq: seq) else { return }
        outbox[clientMsgId] = message
        persistOutbox()
        settleSent(message)
        statusChanged(clientMsgId)
    }

    private func sendFailed(_ clientMsgId: String, error: ChatwireError, attempts: Int) {
        guard var message = outbox[clientMsgId], message.status == .pending else { return }
        switch error {
        case .server(_, let detail) where !detail.retryable:
            if message.fail(error) {
                outbox[clientMsgId] = message
                persistOutbox()
                emit(.status(message))
                settleSent(message)
            }
        case .noReply(_, .connectionLost), .noReply(_, .closed), .sessionClosed:
            return // resent by resume(), or failed by finish()
        default:
            var wait: TimeInterval = 0
            if case .server(_, let detail) = error {
                wait = TimeInterval(detail.retryAfterMs) / 1000
            }
            Task { [weak self] in
                try? await Task.sleep(nanoseconds: UInt64(wait * 1_000_000_000))
                await self?.retry(clientMsgId, attempts: attempts)
            }
        }
    }

    private func retry(_ clientMsgId: String, attempts: Int) {
        // Skipped when a resume has sent it again meanwhile.
        guard state == .connected, outbox[clientMsgId]?.attempts == attempts else { return }
        transmit(clientMsgId)
    }

    private func settleSent(_ message: OutgoingMessage) {
        guard let waiters = sentWaiters.removeValue(forKey: message.clientMsgId) else { return }
        for waiter in waiters {
            if let seq = message.seq {
                waiter.resume(returning: seq)
            } else {
                waiter.resume(throwing: message.error ?? ChatwireError.sessionClosed(code: nil, reason: "failed"))
            }
        }
    }

    private func persistOutbox() {
        guard let store = configuration.outboxStore else { return }
        do {
            try store.save(outbox.unacknowledged.map { $0.request })
        } catch {
            emit(.failure(.invalidConfiguration("outbox store: \(error)")))
        }
    }
}
