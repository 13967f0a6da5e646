// Transports move bytes and nothing else: the client owns framing, requests and sessions.
// WebSocket (URLSessionWebSocketTask, every platform with Foundation networking) and QUIC
// (Network.framework, Apple platforms only).

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// What a transport reports, in order; `closed` is the last event.
public enum TransportEvent: Sendable, Equatable {
    /// The connection is up (WebSocket handshake done, or QUIC control stream open).
    case opened
    /// Bytes of the frame stream: a WebSocket message, or a chunk of the QUIC control stream.
    case bytes([UInt8])
    /// One QUIC datagram (exactly one frame, R-2.5.6).
    case datagram([UInt8])
    /// The connection ended, with the close code (WebSocket status or QUIC application error).
    case closed(code: Int, reason: String)
}

/// A connection to a Chatwire server.
public protocol ChatwireTransport: AnyObject, Sendable {
    /// Starts connecting; every event of the connection arrives on the returned stream.
    func start() -> AsyncStream<TransportEvent>
    /// Sends bytes of the frame stream (one or more whole frames).
    func send(_ bytes: [UInt8])
    /// Sends one frame as a datagram; false when the transport has no datagrams.
    func sendDatagram(_ bytes: [UInt8]) -> Bool
    /// Closes the connection with a close code of docs/protocol.md section 20.
    func close(code: Int, reason: String)
}

/// Which transport the client opens.
public enum TransportKind: Sendable {
    /// WebSocket, binary frames, subprotocol `chatwire.v1`, at the configured URL.
    case webSocket
    /// QUIC with ALPN `chatwire/1` to the URL's host and port (Network.framework only).
    /// `allowInsecure` accepts any server certificate: for the development server only.
    case quic(allowInsecure: Bool)
    /// A transport of the app's own (tests, proxies).
    case custom(@Sendable (URL) -> ChatwireTransport)
}

/// The WebSocket transport on `URLSessionWebSocketTask`.
public final class WebSocketTransport: NSObject, ChatwireTransport, URLSessionWebSocketDelegate, @unchecked Sendable {
    private let url: URL
    private let lock = NSLock()
    private var session: URLSession?
    private var task: URLSessionWebSocketTask?
    private var continuation: AsyncStream<TransportEvent>.Continuation?
    private var finished = false

    /// A transport for `ws://` or `wss://` `url` (`.../v1/ws`).
    public init(url: URL) {
        self.url = url
        super.init()
    }

    public func start() -> AsyncStream<TransportEvent> {
        let stream = AsyncStream<TransportEvent> { continuation in
            self.lock.lock()
            self.continuation = continuation
            self.lock.unlock()
        }
        let session = URLSession(configuration: .default, delegate: self, delegateQueue: nil)
        let task = session.webSocketTask(with: url, protocols: ["chatwire.v1"])
        task.maximumMessageSize = 16 * 1024 * 1024
        lock.lock()
        self.session = session
        self.task = task
        lock.unlock()
        task.resume()
        receive(task)
        return stream
    }

    private func receive(_ task: URLSessionWebSocketTask) {
        task.receive { [weak self] result in
            guard let self = self else { return }
            switch result {
            case .success(.data(let data)):
                self.emit(.bytes([UInt8](data)))
                self.receive(task)
            case .success:
                // Text messages are not frames of the binary subprotocol.
                self.close(code: 4000, reason: "text message on chatwire.v1")
            case .failure(let error):
                self.finish(code: task.closeCode.rawValue == 0 ? 1006 : task.closeCode.rawValue,
                            reason: error.localizedDescription)
            }
        }
    }

    public func send(_ bytes: [UInt8]) {
        lock.lock()
        let task = self.task
        lock.unlock()
        task?.send(.data(Data(bytes))) { [weak self] error in
            if let error = error {
                self?.finish(code: 1006, reason: error.localizedDescription)
            }
        }
    }

    public func sendDatagram(_ bytes: [UInt8]) -> Bool {
        false
    }

    public func close(code: Int, reason: String) {
        lock.lock()
        let task = self.task
        lock.unlock()
        let status = URLSessionWebSocketTask.CloseCode(rawValue: code) ?? .normalClosure
        task?.cancel(with: status, reason: reason.data(using: .utf8))
        finish(code: code, reason: reason)
    }

    public func urlSession(
        _ session: URLSession,
        webSocketTask: URLSessionWebSocketTask,
        didOpenWithProtocol negotiated: String?
    ) {
        guard negotiated == "chatwire.v1" else {
            close(code: 4009, reason: "server did not accept chatwire.v1")
            return
        }
        emit(.opened)
    }

    public func urlSession(
        _ session: URLSession,
        webSocketTask: URLSessionWebSocketTask,
        didCloseWith closeCode: URLSessionWebSocketTask.CloseCode,
        reason: Data?
    ) {
        let text = reason.flatMap { String(data: $0, encoding: .utf8) } ?? ""
        finish(code: closeCode.rawValue, reason: text)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        finish(code: 1006, reason: error?.localizedDescription ?? "connection ended")
    }

    private func emit(_ event: TransportEvent) {
        lock.lock()
        let continuation = finished ? nil : self.continuation
        lock.unlock()
        continuation?.yield(event)
    }

    private func finish(code: Int, reason: String) {
        lock.lock()
        if finished {
            lock.unlock()
            return
        }
        finished = true
        let continuation = self.continuation
        self.continuation = nil
        let session = self.session
        lock.unlock()
        continuation?.yield(.closed(code: code, reason: reason))
        continuation?.finish()
        session?.invalidateAndCancel()
    }
}

#if canImport(Network)
import Network
import Security

/// The QUIC transport on Network.framework: one connection group (ALPN `chatwire/1`), one
/// client-initiated bidirectional control stream carrying every frame, and, from
/// iOS 16 / macOS 13, a datagram flow for typing.
@available(iOS 15.0, macOS 12.0, *)
public final class QUICTransport: ChatwireTransport, @unchecked Sendable {
    private let host: String
    private let port: UInt16
    private let allowInsecure: Bool
    private let queue = DispatchQueue(label: "chatwire.quic")
    private let lock = NSLock()
    private var group: NWConnectionGroup?
    private var stream: NWConnection?
    private var datagrams: NWConnection?
    private var continuation: AsyncStream<TransportEvent>.Continuation?
    private var finished = false

    /// A transport to `host:port` over UDP. `allowInsecure` skips certificate verification
    /// (the development server's self-signed certificate); never use it in production.
    public init(host: String, port: UInt16, allowInsecure: Bool = false) {
        self.host = host
        self.port = port
        self.allowInsecure = allowInsecure
    }

    public func start() -> AsyncStream<TransportEvent> {
        let events = AsyncStream<TransportEvent> { continuation in
            self.lock.lock()
            self.continuation = continuation
            self.lock.unlock()
        }
        let options = NWProtocolQUIC.Options(alpn: ["chatwire/1"])
        options.direction = .bidirectional
        if #available(iOS 16.0, macOS 13.0, *) {
            options.maxDatagramFrameSize = 4096
        }
        if allowInsecure {
            sec_protocol_options_set_verify_block(
                options.securityProtocolOptions,
                { _, _, complete in complete(true) },
                queue
            )
        }
        let parameters = NWParameters(quic: options)
        let endpoint = NWEndpoint.hostPort(
            host: NWEndpoint.Host(host),
            port: NWEndpoint.Port(rawValue: port) ?? 443
        )
        let group = NWConnectionGroup(with: NWMultiplexGroup(to: endpoint), using: parameters)
        group.stateUpdateHandler = { [weak self] state in
            switch state {
            case .ready:
                self?.openStreams(group)
            case .failed(let error):
                self?.finish(code: 1006, reason: "\(error)")
            case .cancelled:
                self?.finish(code: 1000, reason: "cancelled")
            default:
                break
            }
        }
        lock.lock()
        self.group = group
        lock.unlock()
        group.start(queue: queue)
        return events
    }

    private func openStreams(_ group: NWConnectionGroup) {
        guard let stream = NWConnection(from: group) else {
            finish(code: 1006, reason: "no QUIC stream")
            return
        }
        stream.stateUpdateHandler = { [weak self] state in
            switch state {
            case .ready:
                self?.emit(.opened)
            case .failed(let error):
                self?.finish(code: 1006, reason: "\(error)")
            default:
                break
            }
        }
        lock.lock()
        self.stream = stream
        lock.unlock()
        stream.start(queue: queue)
        receive(stream)
        if #available(iOS 16.0, macOS 13.0, *) {
            let datagramOptions = NWProtocolQUIC.Options()
            datagramOptions.isDatagram = true
            if let flow = NWConnection(from: group, using: datagramOptions) {
                lock.lock()
                self.datagrams = flow
                lock.unlock()
                flow.start(queue: queue)
                receiveDatagram(flow)
            }
        }
    }

    private func receive(_ stream: NWConnection) {
        stream.receive(minimumIncompleteLength: 1, maximumLength: 65536) { [weak self] content, _, isComplete, error in
            guard let self = self else { return }
            if let content = content, !content.isEmpty {
                self.emit(.bytes([UInt8](content)))
            }
            if let error = error {
                self.finish(code: self.applicationError(stream) ?? 1006, reason: "\(error)")
            } else if isComplete {
                // The server finished the control stream: the session is over.
                self.finish(code: self.applicationError(stream) ?? 1000, reason: "stream finished")
            } else {
                self.receive(stream)
            }
        }
    }

    private func receiveDatagram(_ flow: NWConnection) {
        flow.receiveMessage { [weak self] content, _, _, error in
            guard let self = self, error == nil else { return }
            if let content = content {
                self.emit(.datagram([UInt8](content)))
            }
            self.receiveDatagram(flow)
        }
    }

    private func applicationError(_ stream: NWConnection) -> Int? {
        guard let metadata = stream.metadata(definition: NWProtocolQUIC.definition) as? NWProtocolQUIC.Metadata,
              let code = metadata.applicationError, code > 0 else { return nil }
        return Int(code)
    }

    public func send(_ bytes: [UInt8]) {
        lock.lock()
        let stream = self.stream
        lock.unlock()
        stream?.send(content: Data(bytes), completion: .contentProcessed { [weak self] error in
            if let error = error {
                self?.finish(code: 1006, reason: "\(error)")
            }
        })
    }

    public func sendDatagram(_ bytes: [UInt8]) -> Bool {
        lock.lock()
        let flow = self.datagrams
        lock.unlock()
        guard let flow = flow else { return false }
        flow.send(content: Data(bytes), completion: .idempotent)
        return true
    }

    public func close(code: Int, reason: String) {
        lock.lock()
        let stream = self.stream
        let group = self.group
        lock.unlock()
        if let stream = stream,
           let metadata = stream.metadata(definition: NWProtocolQUIC.definition) as? NWProtocolQUIC.Metadata {
            metadata.applicationError = UInt64(code)
        }
        stream?.cancel()
        group?.cancel()
        finish(code: code, reason: reason)
    }

    private func emit(_ event: TransportEvent) {
        lock.lock()
        let continuation = finished ? nil : self.continuation
        lock.unlock()
        continuation?.yield(event)
    }

    private func finish(code: Int, reason: String) {
        lock.lock()
        if finished {
            lock.unlock()
            return
        }
        finished = true
        let continuation = self.continuation
        self.continuation = nil
        let group = self.group
        lock.unlock()
        continuation?.yield(.closed(code: code, reason: reason))
        continuation?.finish()
        group?.cancel()
    }
}
#endif
