//! The async driver of one session: one task per connection that joins a transport's
//! messages, the node's fan-out and the clock to the sans-IO [`SessionCore`], executes
//! requests (one at a time, in order) and writes frames back in batches.
//!
//! The transport's read half runs in a small task of its own and hands whole messages over a
//! channel of one: a wake-up for a delivery never polls the socket (a WebSocket read zero-fills
//! its spare buffer on every poll, so polling it per delivery cost a memset per event).
//!
//! ```text
//!  reader task ──Inbound (channel of 1)──┐
//!  fan-out ──Delivery (bounded queue)────┼─▶ driver ─▶ SessionCore ─▶ frames ─▶ writer half
//!  clock (poll_timeout) ─────────────────┘
//! ```
//!
//! Requests run inline: while one runs, deliveries wait in the session's bounded queue and
//! pass the cursor check afterwards. That is what makes Subscribe gap-free and duplicate-free
//! without a separate buffer. Message changes (Send, Edit, Delete, React) are the exception:
//! once prepared and handed to the room's writer (which fixes their order in the room), the
//! session goes on with later requests and replies when the writer answers, so one client can
//! pipeline sends; they touch no delivery cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chatwire_protocol::{ClientFrameDecoder, DecodeError, encode_frame, v1};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use v1::client_frame::Request;

use super::core::{Output, SessionCore};
use super::handlers::{self, Ctx};
use super::services::{Identity, Services, TokenRefusal};
use crate::backend::fanout::{Delivery, Overflow, SessionKey, SessionLink};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// How long a closing session tries to write its Disconnect and close frame.
const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// One inbound transport message.
#[derive(Debug)]
pub enum Inbound {
    /// Bytes that hold whole frames (a WebSocket binary message).
    Frames(Bytes),
    /// Bytes of a stream, frames may span chunks (QUIC).
    Stream(Bytes),
    /// One QUIC datagram: exactly one frame, a typing request only (R-2.5.6).
    Datagram(Bytes),
    /// A message the framing does not allow (a WebSocket text message without JSON mapping).
    Invalid(&'static str),
    /// A whole frame that could not be decoded (invalid JSON on the JSON mapping).
    Undecodable,
    /// A frame over the client frame limit, found before decoding (JSON mapping).
    TooLarge,
    /// The peer closed.
    Closed,
}

/// Why a transport failed.
#[derive(Debug, thiserror::Error)]
#[error("transport error: {0}")]
pub struct TransportError(pub String);

/// The read half of a connection: whole inbound messages, in order.
#[async_trait]
pub trait TransportReader: Send + 'static {
    /// The next inbound message; `None` when the peer closed or the connection ended.
    async fn recv(&mut self) -> Option<Result<Inbound, TransportError>>;
}

/// The write half of a connection as the session sees it: bytes out, a close with a code.
#[async_trait]
pub trait SessionTransport: Send {
    /// Sends bytes holding whole frames.
    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportError>;
    /// Closes with a Chatwire close code.
    async fn close(&mut self, code: v1::CloseCode, reason: &str);
    /// Whether the transport can carry typing as datagrams (QUIC with datagram support).
    fn typing_datagrams(&self) -> bool {
        false
    }
    /// Whether frames travel in the proto3 JSON mapping (`chatwire.v1.json`).
    fn json_frames(&self) -> bool {
        false
    }
    /// Sends one whole frame as an unreliable datagram; false when it could not go (too
    /// large, or no datagram support), so the caller sends it on the stream instead.
    fn send_datagram(&mut self, _frame: Bytes) -> bool {
        false
    }
    /// The transport's name in logs (`websocket`, `quic`).
    fn kind(&self) -> &'static str {
        "websocket"
    }
}

/// The capability that lets typing travel as QUIC datagrams (docs/protocol.md §22).
pub const TYPING_DATAGRAMS: &str = "typing-datagrams";
/// The capability a session on the `chatwire.v1.json` mapping lists (docs/protocol.md §22).
pub const JSON_FRAMES: &str = "json-frames";
/// The moderator role, RestrictMember and Delete reasons (docs/protocol.md §6.6, §22).
pub const MODERATION: &str = "moderation";
/// GetEditHistory (docs/protocol.md §8.9, §22).
pub const EDIT_HISTORY: &str = "edit-history";
/// ReportMessage and the review queue (docs/protocol.md §8.11, §22).
pub const MESSAGE_REPORTS: &str = "message-reports";
/// The capability of servers that answer Search (docs/protocol.md §22, §24).
pub const SEARCH: &str = "search";
/// Friend requests, the contact list and presence of contacts (docs/protocol.md §22, §25).
pub const CONTACTS: &str = "contacts";
/// Every capability this server can list in `ConnectResponse.capabilities`.
pub const SERVER_CAPABILITIES: [&str; 7] = [
    TYPING_DATAGRAMS,
    JSON_FRAMES,
    MODERATION,
    EDIT_HISTORY,
    MESSAGE_REPORTS,
    SEARCH,
    CONTACTS,
];

/// What the transport of a session offers, for `ConnectResponse.capabilities`.
#[derive(Debug, Clone, Copy)]
struct TransportFeatures {
    /// QUIC with datagram support.
    datagrams: bool,
    /// The `chatwire.v1.json` mapping.
    json: bool,
}

/// The authenticated part of a session.
#[derive(Debug)]
struct Connected {
    user: UserId,
    key: SessionKey,
    deliveries: tokio::sync::mpsc::Receiver<Delivery>,
    overflow: Arc<Overflow>,
    /// The session negotiated `typing-datagrams`.
    typing_datagrams: bool,
    /// The user's read position (ordinal) per room the session summarised, so that a
    /// RoomActivity costs no store read: loaded once per room, moved by the user's own sends,
    /// forgotten when the read position moves otherwise (MarkRead here or on another session).
    read_ordinals: HashMap<RoomId, u64>,
    /// Deliveries taken from the queue (the queue's depth is sampled every 16th).
    taken: u32,
    /// Contacts watched for presence without asking (R-25.4.1), unwatched when the contact ends.
    auto_watched: std::collections::HashSet<UserId>,
}

/// Most rooms whose read position a session remembers for RoomActivity.
const READ_ORDINALS: usize = 1024;

/// How long an ended session waits for its read half to see the peer's close.
const READER_GRACE: Duration = Duration::from_secs(2);

/// Runs a session until the connection ends.
pub async fn run(
    services: Arc<Services>,
    reader: Box<dyn TransportReader>,
    mut transport: Box<dyn SessionTransport>,
) {
    let opened = Instant::now();
    let kind = transport.kind();
    let mut announced = false;
    let limits = &services.limits;
    let mut decoder = ClientFrameDecoder::new(limits.max_client_frame_bytes as usize);
    let mut core = SessionCore::new(services.session, Instant::now());
    let mut connected: Option<Connected> = None;
    let mut out = BytesMut::new();
    let (mut inbound, mut reading) = spawn_reader(reader);
    let mut writes = Writes::new();
    crate::telemetry::connection_opened(kind);
    loop {
        let deadline = core.poll_timeout().map(tokio::time::Instant::from_std);
        let overflow = connected
            .as_ref()
            .map(|session| Arc::clone(&session.overflow));
        tokio::select! {
            message = inbound.recv() => match message {
                Some(Ok(Inbound::Datagram(datagram))) => on_datagram(&mut core, connected.as_ref(), limits, &datagram),
                Some(Ok(message)) => on_inbound(&mut core, &mut decoder, message),
                Some(Err(_)) | None => break,
            },
            delivery = next_delivery(&mut connected) => match delivery {
                Some(delivery) => on_delivery(&services, &mut core, connected.as_mut(), delivery).await,
                None => core.close(v1::CloseCode::Internal, "delivery stopped", true),
            },
            () = overflowed(overflow.as_deref()) => core.close(v1::CloseCode::SlowConsumer, "events were not read in time", true),
            Some((id, trace_id, result)) = writes.next(), if !writes.is_empty() => {
                reply(&mut core, id, &trace_id, result);
            }
            () = sleep_until(deadline) => core.on_timeout(Instant::now(), services.clock.now_ms()),
        }
        let session = Session {
            services: &services,
            connected: &mut connected,
            writes: &mut writes,
        };
        let open = drain(session, &mut core, &mut out, transport.as_mut()).await;
        if !announced && let Some(session) = &connected {
            announced = true;
            tracing::info!(user = %session.user, transport = kind, session = %session.key, "connection opened");
        }
        if !open {
            break;
        }
    }
    let close = core.closed_with();
    tracing::info!(
        user = connected.as_ref().map_or("-", |s| s.user.as_str()),
        transport = kind,
        code = close.map_or("none (the peer closed or the connection dropped)", |c| c
            .as_str_name()),
        duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
        "connection closed"
    );
    // Counted before the session leaves the fan-out (and `chatwire_sessions`).
    crate::telemetry::connection_closed(kind, close);
    if let Some(session) = connected {
        services.fanout.detach(session.key);
    }
    // The read half answers the peer's close (or sees the connection end); then it stops.
    drop(inbound);
    if tokio::time::timeout(READER_GRACE, &mut reading)
        .await
        .is_err()
    {
        reading.abort();
    }
}

/// Message changes handed to their writers, each resolving to its request id, trace id and
/// result.
type Writes = FuturesUnordered<
    std::pin::Pin<
        Box<
            dyn std::future::Future<Output = (u64, String, Result<v1::reply::Result, ChatError>)>
                + Send,
        >,
    >,
>;

/// What `drain` works on besides the core.
struct Session<'a> {
    services: &'a Arc<Services>,
    connected: &'a mut Option<Connected>,
    writes: &'a mut Writes,
}

/// Answers a request; failures that are the server's are logged.
fn reply(
    core: &mut SessionCore,
    id: u64,
    trace_id: &str,
    result: Result<v1::reply::Result, ChatError>,
) {
    if let Err(err @ (ChatError::Internal | ChatError::Unavailable(_))) = &result {
        tracing::warn!(trace_id, error = %err, "request failed");
    }
    core.on_reply(id, result);
}

/// Runs the read half in its own task; whole messages arrive on the returned channel.
fn spawn_reader(
    mut reader: Box<dyn TransportReader>,
) -> (
    tokio::sync::mpsc::Receiver<Result<Inbound, TransportError>>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let task = tokio::spawn(async move {
        while let Some(message) = reader.recv().await {
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                break;
            }
        }
    });
    (rx, task)
}

async fn next_delivery(connected: &mut Option<Connected>) -> Option<Delivery> {
    match connected {
        Some(session) => {
            let delivery = session.deliveries.recv().await;
            session.taken = session.taken.wrapping_add(1);
            crate::telemetry::delivery_taken(session.taken, session.deliveries.len());
            delivery
        }
        None => std::future::pending().await,
    }
}

async fn overflowed(overflow: Option<&Overflow>) {
    match overflow {
        Some(overflow) => overflow.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A typing datagram goes to the session like a frame with id 0; anything else, or a datagram
/// on a session without `typing-datagrams`, is discarded silently (R-2.5.7). Datagrams do not
/// count as traffic for the heartbeat (R-2.5.8).
fn on_datagram(
    core: &mut SessionCore,
    connected: Option<&Connected>,
    limits: &v1::Limits,
    datagram: &[u8],
) {
    if !connected.is_some_and(|session| session.typing_datagrams) {
        return;
    }
    let mut decoder = ClientFrameDecoder::new(limits.max_client_frame_bytes as usize);
    decoder.push(datagram);
    let Ok(Some(frame)) = decoder.next_frame() else {
        return;
    };
    if let (Ok(()), 0, Some(Request::Typing(typing))) = (decoder.finish(), frame.id, frame.request)
    {
        core.on_typing_datagram(typing);
    }
}

fn on_inbound(core: &mut SessionCore, decoder: &mut ClientFrameDecoder, message: Inbound) {
    core.on_message(Instant::now());
    let (bytes, whole) = match message {
        Inbound::Frames(bytes) => (bytes, true),
        Inbound::Stream(bytes) => (bytes, false),
        Inbound::Invalid(reason) => {
            core.close(v1::CloseCode::ProtocolViolation, reason, false);
            return;
        }
        Inbound::Undecodable => {
            let reason = "not a valid ClientFrame".to_owned();
            core.on_decode_error(&DecodeError::InvalidMessage { len: 0, reason });
            return;
        }
        Inbound::TooLarge => {
            core.on_decode_error(&DecodeError::FrameTooLarge {
                len: u64::MAX,
                max: 0,
            });
            return;
        }
        Inbound::Closed | Inbound::Datagram(_) => return,
    };
    decoder.push(&bytes);
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => core.on_frame(Instant::now(), frame),
            Ok(None) => break,
            Err(err) => {
                core.on_decode_error(&err);
                if err.is_fatal() {
                    return;
                }
            }
        }
    }
    if whole && let Err(err) = decoder.finish() {
        core.on_decode_error(&err);
    }
}

/// Executes outputs until none are left, writing frames in batches. False when the session
/// is over.
async fn drain(
    session: Session<'_>,
    core: &mut SessionCore,
    out: &mut BytesMut,
    transport: &mut dyn SessionTransport,
) -> bool {
    let Session {
        services,
        connected,
        writes,
    } = session;
    let max_frame = services.limits.max_server_frame_bytes as usize;
    let overflow = connected
        .as_ref()
        .map(|session| Arc::clone(&session.overflow));
    let overflow = overflow.as_deref();
    let write_timeout = 2 * services.session.heartbeat_interval;
    while let Some(output) = core.poll_output() {
        match output {
            Output::Frame(frame) => {
                let datagram = connected.as_ref().is_some_and(|s| s.typing_datagrams);
                if datagram && is_typing(&frame) && send_datagram(transport, &frame, max_frame) {
                    continue;
                }
                if encode_frame(&frame, max_frame, out).is_err() {
                    tracing::error!("a server frame exceeded the frame limit; dropped");
                }
                if out.len() >= max_frame
                    && !flush(core, out, transport, overflow, write_timeout).await
                {
                    return false;
                }
            }
            Output::Execute {
                id,
                trace_id,
                request,
            } => {
                let features = TransportFeatures {
                    datagrams: transport.typing_datagrams(),
                    json: transport.json_frames(),
                };
                let session = Session {
                    services,
                    connected: &mut *connected,
                    writes: &mut *writes,
                };
                // Boxed: a request's future is the largest part of the driver's state, and an
                // idle session should not carry it (memory per connection).
                Box::pin(execute(session, core, (id, features), trace_id, request)).await;
            }
            Output::Encoded(frame) => {
                out.extend_from_slice(&frame);
                if out.len() >= max_frame
                    && !flush(core, out, transport, overflow, write_timeout).await
                {
                    return false;
                }
            }
            Output::Repair { room, after_seq } => {
                Box::pin(repair(services, core, &room, after_seq)).await;
            }
            Output::Close {
                code,
                reason,
                reconnect,
            } => {
                let disconnect = v1::Disconnect {
                    code: code.into(),
                    reason: reason.clone(),
                    reconnect,
                    // R-4.8.1, R-4.7.2: a drain always asks for a minimum delay, jittered per
                    // session so the clients of a node do not all come back at once.
                    reconnect_delay_ms: if code == v1::CloseCode::ServerDraining {
                        drain_reconnect_delay_ms()
                    } else {
                        0
                    },
                };
                let frame = v1::ServerFrame {
                    frame: Some(v1::server_frame::Frame::Event(v1::Event {
                        kind: Some(v1::event::Kind::Disconnect(disconnect)),
                    })),
                };
                let _ = encode_frame(&frame, max_frame, out);
                // A peer that reads nothing gets no close frame, only the end of the connection.
                let closing = async {
                    if flush(core, out, transport, None, CLOSE_WRITE_TIMEOUT).await {
                        transport.close(code, &reason).await;
                    }
                };
                let _ = tokio::time::timeout(CLOSE_WRITE_TIMEOUT, closing).await;
                return false;
            }
        }
    }
    flush(core, out, transport, overflow, write_timeout).await
}

/// A drain's `reconnect_delay_ms`: uniform in [`DRAIN_RECONNECT_DELAY_MIN_MS`,
/// `DRAIN_RECONNECT_DELAY_MAX_MS`), drawn per session (R-4.8.1).
///
/// [`DRAIN_RECONNECT_DELAY_MIN_MS`]: chatwire_protocol::limits::DRAIN_RECONNECT_DELAY_MIN_MS
/// [`DRAIN_RECONNECT_DELAY_MAX_MS`]: chatwire_protocol::limits::DRAIN_RECONNECT_DELAY_MAX_MS
fn drain_reconnect_delay_ms() -> u32 {
    use chatwire_protocol::limits::{DRAIN_RECONNECT_DELAY_MAX_MS, DRAIN_RECONNECT_DELAY_MIN_MS};
    let mut random = [0u8; 4];
    // Without randomness every session gets the minimum: still a delay, only without jitter.
    let _ = getrandom::fill(&mut random);
    let span = DRAIN_RECONNECT_DELAY_MAX_MS - DRAIN_RECONNECT_DELAY_MIN_MS;
    DRAIN_RECONNECT_DELAY_MIN_MS + u32::from_be_bytes(random) % span
}

fn is_typing(frame: &v1::ServerFrame) -> bool {
    matches!(
        &frame.frame,
        Some(v1::server_frame::Frame::Event(v1::Event {
            kind: Some(v1::event::Kind::TypingChanged(_))
        }))
    )
}

/// Sends a frame as one datagram; false when it has to go on the stream.
fn send_datagram(
    transport: &mut dyn SessionTransport,
    frame: &v1::ServerFrame,
    max_frame: usize,
) -> bool {
    let mut bytes = BytesMut::new();
    encode_frame(frame, max_frame, &mut bytes).is_ok() && transport.send_datagram(bytes.freeze())
}

/// Writes what is buffered. A peer that stops reading cannot hold the session: the write
/// gives up when the session's delivery queue overflows or after two heartbeat intervals.
async fn flush(
    core: &mut SessionCore,
    out: &mut BytesMut,
    transport: &mut dyn SessionTransport,
    overflow: Option<&Overflow>,
    write_timeout: Duration,
) -> bool {
    if out.is_empty() {
        return true;
    }
    let bytes = out.split().freeze();
    let sent = tokio::select! {
        sent = transport.send(bytes) => sent.is_ok(),
        () = overflowed(overflow) => {
            core.close(v1::CloseCode::SlowConsumer, "events were not read in time", true);
            false
        }
        () = tokio::time::sleep(write_timeout) => false,
    };
    core.on_transmit(Instant::now());
    sent
}

async fn execute(
    session: Session<'_>,
    core: &mut SessionCore,
    (id, features): (u64, TransportFeatures),
    trace_id: String,
    request: Request,
) {
    let Session {
        services,
        connected,
        writes,
    } = session;
    let timing = (crate::telemetry::request_kind(&request), Instant::now());
    let answered = |outcome: &'static str| {
        crate::telemetry::request_answered(timing.0, outcome, timing.1);
    };
    match (request, connected.as_ref()) {
        (Request::Connect(connect), _) => {
            match connect_session(services, core, &connect, features).await {
                Ok((session, response)) => {
                    let session = connected.insert(session);
                    answered("OK");
                    core.on_reply(id, Ok(v1::reply::Result::Connect(response)));
                    // After the reply: the contacts' presence follows ConnectResponse.
                    watch_contacts(services, core, session).await;
                }
                Err((error, code)) => {
                    answered(crate::telemetry::outcome(&Err::<(), _>(error.clone())));
                    core.on_connect_failed(id, error, code);
                }
            }
        }
        (Request::Refresh(refresh), Some(session)) => {
            let result = refresh_token(services, core, &session.user, &refresh.token).await;
            answered(crate::telemetry::outcome(&result));
            core.on_reply(id, result);
        }
        (request, Some(session)) => {
            let rates = services.rates.requests;
            if let Err(err) = services.rate_limit("requests", &session.user, rates).await {
                let result = Err(err);
                answered(crate::telemetry::outcome(&result));
                core.on_reply(id, result);
                return;
            }
            let ctx = Ctx {
                services,
                user: &session.user,
                session: session.key,
                trace_id: &trace_id,
            };
            if handlers::is_message_change(&request) {
                match handlers::prepare(ctx, request).await {
                    Ok(prepared) => {
                        hand_over(services, core, writes, (id, trace_id, timing), prepared).await
                    }
                    Err(err) => {
                        let result = Err(err);
                        answered(crate::telemetry::outcome(&result));
                        reply(core, id, &trace_id, result);
                    }
                }
                return;
            }
            let marked = match &request {
                Request::MarkRead(r) => RoomId::parse(&r.room_id).ok(),
                _ => None,
            };
            let result = handlers::execute(ctx, core, request).await;
            if let (Some(room), Some(session)) = (marked, connected.as_mut()) {
                session.read_ordinals.remove(&room);
            }
            answered(crate::telemetry::outcome(&result));
            reply(core, id, &trace_id, result);
        }
        (_, None) => core.on_reply(id, Err(ChatError::FailedPrecondition("not connected"))),
    }
}

/// Hands a prepared message change to its writer: polled once here, which puts it in its
/// room's order before any later request of the session runs; answered from `writes` when the
/// writer is done (at once when it already is).
async fn hand_over(
    services: &Arc<Services>,
    core: &mut SessionCore,
    writes: &mut Writes,
    (id, trace_id, (kind, started)): (u64, String, (&'static str, Instant)),
    prepared: handlers::Prepared,
) {
    let services = Arc::clone(services);
    let mut write: std::pin::Pin<Box<_>> = Box::pin(async move {
        let result = prepared.run(&services).await;
        crate::telemetry::request_answered(kind, crate::telemetry::outcome(&result), started);
        (id, trace_id, result)
    });
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready((id, trace_id, result)) => reply(core, id, &trace_id, result),
        std::task::Poll::Pending => writes.push(write),
    }
}

fn instant_at(services: &Services, at_ms: i64) -> Instant {
    let left = at_ms.saturating_sub(services.clock.now_ms()).max(0);
    Instant::now() + std::time::Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

fn refusal(refusal: TokenRefusal) -> (ChatError, v1::CloseCode) {
    let code = match refusal {
        TokenRefusal::Expired => v1::CloseCode::AuthExpired,
        TokenRefusal::Revoked => v1::CloseCode::Revoked,
        TokenRefusal::Invalid => v1::CloseCode::AuthFailed,
    };
    (ChatError::Unauthenticated, code)
}

async fn connect_session(
    services: &Arc<Services>,
    core: &mut SessionCore,
    connect: &v1::ConnectRequest,
    features: TransportFeatures,
) -> Result<(Connected, v1::ConnectResponse), (ChatError, v1::CloseCode)> {
    let now_ms = services.clock.now_ms();
    let Identity {
        user,
        expires_at_ms,
        issued_at_ms,
    } = services
        .auth
        .authenticate(&connect.token, now_ms)
        .map_err(refusal)?;
    if is_revoked(services, &user, issued_at_ms)
        .await
        .map_err(|e| (e, v1::CloseCode::Internal))?
    {
        tracing::info!(user = %user, reason = "the token or its user was revoked", "authentication refused");
        return Err(refusal(TokenRefusal::Revoked));
    }
    let key = services.next_session_key();
    let (link, deliveries, overflow) = SessionLink::new(services.delivery_queue);
    services.fanout.attach(key, &user, link);
    core.on_connected(user.clone(), instant_at(services, expires_at_ms));
    core.set_token_leeway(std::time::Duration::from_millis(
        u64::try_from(services.auth.leeway_ms()).unwrap_or(0),
    ));
    core.set_token_expires_at_ms(expires_at_ms);
    // R-22.1.1: only on a transport with datagram support, and only when the client offered it.
    let typing_datagrams =
        features.datagrams && connect.capabilities.iter().any(|c| c == TYPING_DATAGRAMS);
    let mut capabilities = Vec::new();
    if typing_datagrams {
        capabilities.push(TYPING_DATAGRAMS.to_owned());
    }
    // R-22.1.1: exactly on sessions of the JSON mapping.
    if features.json {
        capabilities.push(JSON_FRAMES.to_owned());
    }
    // Server-only names this server always offers (R-4.3.2).
    capabilities.extend([MODERATION, EDIT_HISTORY, MESSAGE_REPORTS, CONTACTS].map(str::to_owned));
    // Server-only: listed exactly when Search is answered (R-24.1.1).
    if services.search.is_some() {
        capabilities.push(SEARCH.to_owned());
    }
    let response = v1::ConnectResponse {
        session_id: key.to_string(),
        user_id: user.to_string(),
        server: Some(v1::ServerInfo {
            name: "chatwire".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            node_id: services.node_id.clone(),
        }),
        capabilities,
        limits: Some(services.limits),
        heartbeat_interval_ms: u32::try_from(services.session.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
        server_time_ms: now_ms,
        token_expires_at_ms: expires_at_ms,
    };
    Ok((
        Connected {
            user,
            key,
            deliveries,
            overflow,
            typing_datagrams,
            read_ordinals: HashMap::new(),
            auto_watched: std::collections::HashSet::new(),
            taken: 0,
        },
        response,
    ))
}

/// Tokens issued before an admin revocation (or without `iat`, once one exists) are refused.
async fn is_revoked(
    services: &Services,
    user: &UserId,
    issued_at_ms: Option<i64>,
) -> Result<bool, ChatError> {
    let before = services.store.tokens_revoked_before(user).await?;
    Ok(before.is_some_and(|before| issued_at_ms.is_none_or(|issued| issued < before)))
}

async fn refresh_token(
    services: &Arc<Services>,
    core: &mut SessionCore,
    user: &UserId,
    token: &str,
) -> Result<v1::reply::Result, ChatError> {
    let identity = services
        .auth
        .authenticate(token, services.clock.now_ms())
        .map_err(|_| ChatError::TokenRefused)?;
    // R-4.4.3: another user's token is a refused token like any other.
    if &identity.user != user || is_revoked(services, user, identity.issued_at_ms).await? {
        return Err(ChatError::TokenRefused);
    }
    core.on_refreshed(instant_at(services, identity.expires_at_ms));
    core.set_token_expires_at_ms(identity.expires_at_ms);
    Ok(v1::reply::Result::Refresh(v1::RefreshResponse {
        token_expires_at_ms: identity.expires_at_ms,
    }))
}

async fn repair(services: &Arc<Services>, core: &mut SessionCore, room: &RoomId, after_seq: u64) {
    let max = services.limits.max_server_frame_bytes as usize;
    match services.store.read_events(room, after_seq, 1000, max).await {
        Ok(events) if !events.is_empty() => {
            core.on_room_events(room, &events, true);
        }
        Ok(_) => core.on_repair_failed(room),
        Err(err) => {
            tracing::warn!(room = %room, error = %err, "gap repair failed");
            core.on_repair_failed(room);
        }
    }
}

async fn on_delivery(
    services: &Arc<Services>,
    core: &mut SessionCore,
    connected: Option<&mut Connected>,
    delivery: Delivery,
) {
    match delivery {
        Delivery::Room(batch) => {
            let events = batch.events();
            let Some(room) = events.first().and_then(|e| RoomId::parse(&e.room_id).ok()) else {
                return;
            };
            let live = match batch.frames(services.limits.max_server_frame_bytes as usize) {
                Some(frames) => core.on_shared_events(&room, events, frames),
                None => core.on_room_events(&room, events, false),
            };
            if live && let Some(session) = &connected {
                senders_receipts(core, &session.user, &room, events);
            }
            if !live && let Some(session) = connected {
                Box::pin(room_activity(services, core, session, &room, events)).await;
            }
        }
        Delivery::Close(code) => {
            let reconnect = code == v1::CloseCode::ServerDraining;
            let reason = if reconnect {
                "server draining: reconnect"
            } else {
                "session closed by the server"
            };
            core.close(code, reason, reconnect);
        }
        Delivery::User(event) => {
            match &event.kind {
                Some(v1::event::Kind::RoomRemoved(removed)) => {
                    if let Ok(room) = RoomId::parse(&removed.room_id) {
                        core.stop_live(&room);
                    }
                }
                Some(v1::event::Kind::ReadPositionMoved(moved)) => {
                    if let (Some(session), Ok(room)) = (connected, RoomId::parse(&moved.room_id)) {
                        session.read_ordinals.remove(&room);
                    }
                }
                Some(v1::event::Kind::ContactChanged(changed)) => {
                    if let Some(kind) = event.kind.clone() {
                        core.event(kind);
                    }
                    if let Some(session) = connected {
                        contact_changed(services, core, session, changed).await;
                    }
                    return;
                }
                _ => {}
            }
            if let Some(kind) = event.kind.clone() {
                core.event(kind);
            }
        }
    }
}

/// Watches the session's accepted contacts for presence, the first `max_presence_watch` of
/// them by id, and sends each one's presence after ConnectResponse (R-25.4.1). Contacts the
/// session may not see (R-14.1.6) count and read offline, as in WatchPresence.
async fn watch_contacts(services: &Arc<Services>, core: &mut SessionCore, session: &mut Connected) {
    if !services.contacts.auto_watch {
        return;
    }
    let contacts = match services.contact_ids.accepted(&session.user).await {
        Ok(contacts) => contacts,
        Err(error) => {
            tracing::warn!(user = %session.user, %error, "contacts not watched at connect");
            return;
        }
    };
    let cap = services.limits.max_presence_watch as usize;
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    for user in contacts.into_iter().take(cap) {
        // Contacts pass any presence visibility; only a block hides them (R-14.1.6).
        if contact_visible(services, &session.user, &user).await {
            visible.push(user);
        } else {
            hidden.push(user);
        }
    }
    if services
        .fanout
        .watch_presence(session.key, &visible, &hidden, cap)
        .is_err()
    {
        return;
    }
    for user in &visible {
        core.event(v1::event::Kind::Presence(services.fanout.presence(user)));
    }
    for user in &hidden {
        core.event(v1::event::Kind::Presence(offline(user)));
    }
    session
        .auto_watched
        .extend(visible.into_iter().chain(hidden));
}

/// Whether a contact's presence shows: unless a block exists either way (a store that cannot
/// answer hides it, as R-14.1.6 allows).
async fn contact_visible(services: &Services, user: &UserId, contact: &UserId) -> bool {
    matches!(
        services.store.either_blocked(user, contact).await,
        Ok(false)
    )
}

fn offline(user: &UserId) -> v1::Presence {
    v1::Presence {
        user_id: user.to_string(),
        online: false,
        last_seen_ms: 0,
    }
}

/// A contact relationship of the session's user changed: a new contact is watched (when the
/// watch set has room) and its presence sent; an ended one is no longer watched (R-25.4.2).
async fn contact_changed(
    services: &Arc<Services>,
    core: &mut SessionCore,
    session: &mut Connected,
    changed: &v1::ContactChanged,
) {
    let Some(contact) = &changed.contact else {
        return;
    };
    let Ok(user) = UserId::parse(&contact.user_id) else {
        return;
    };
    let accepted = contact.state == v1::ContactState::Accepted as i32;
    if accepted && services.contacts.auto_watch && !session.auto_watched.contains(&user) {
        let visible = contact_visible(services, &session.user, &user).await;
        let cap = services.limits.max_presence_watch as usize;
        let (shown, kept): (&[UserId], &[UserId]) = if visible {
            (std::slice::from_ref(&user), &[])
        } else {
            (&[], std::slice::from_ref(&user))
        };
        if services
            .fanout
            .watch_presence(session.key, shown, kept, cap)
            .is_ok()
        {
            let presence = if visible {
                services.fanout.presence(&user)
            } else {
                offline(&user)
            };
            core.event(v1::event::Kind::Presence(presence));
            session.auto_watched.insert(user);
        }
    } else if !accepted {
        let watched = session.auto_watched.remove(&user);
        if watched
            || services.contacts.presence_visibility == crate::config::PresenceVisibility::Contacts
        {
            services
                .fanout
                .unwatch_presence(session.key, std::slice::from_ref(&user));
        }
    }
}

/// A stored message moved its sender's read and delivered watermarks to its seq (R-12.1.6), so
/// the live sessions of the other members get that receipt with the message (R-12.2.1): built
/// here from the event, one per sender and batch, with no store read and no fan-out of its own.
fn senders_receipts(
    core: &mut SessionCore,
    user: &UserId,
    room: &RoomId,
    events: &[v1::RoomEvent],
) {
    let mut receipts: Vec<v1::Receipt> = Vec::new();
    for event in events {
        let Some(v1::room_event::Kind::MessageCreated(_)) = &event.kind else {
            continue;
        };
        if event.sender == user.as_str() {
            continue;
        }
        match receipts.iter_mut().find(|r| r.user_id == event.sender) {
            Some(receipt) => {
                receipt.delivered_seq = event.seq;
                receipt.read_seq = event.seq;
            }
            None => receipts.push(v1::Receipt {
                user_id: event.sender.clone(),
                delivered_seq: event.seq,
                read_seq: event.seq,
            }),
        }
    }
    if !receipts.is_empty() {
        core.event(v1::event::Kind::ReceiptsChanged(v1::ReceiptsChanged {
            room_id: room.to_string(),
            receipts,
        }));
    }
}

/// A summary of new messages in a room the session has not opened.
async fn room_activity(
    services: &Arc<Services>,
    core: &mut SessionCore,
    session: &mut Connected,
    room: &RoomId,
    events: &[v1::RoomEvent],
) {
    use v1::room_event::Kind;
    let Some((event, created)) = events.iter().rev().find_map(|e| match &e.kind {
        Some(Kind::MessageCreated(created)) => Some((e, created)),
        _ => None,
    }) else {
        return;
    };
    let Some(read_ordinal) = read_ordinal(services, session, room, event, created).await else {
        return;
    };
    let last_message = v1::MessagePreview {
        seq: event.seq,
        ordinal: created.ordinal,
        sender: event.sender.clone(),
        text: created
            .content
            .as_ref()
            .map(|c| c.text.chars().take(140).collect())
            .unwrap_or_default(),
        created_at_ms: event.ts_ms,
        attachment_count: created.content.as_ref().map_or(0, |c| {
            u32::try_from(c.attachments.len()).unwrap_or(u32::MAX)
        }),
        deleted: created.redacted,
    };
    let last_seq = events.last().map_or(event.seq, |e| e.seq);
    core.event(v1::event::Kind::RoomActivity(v1::RoomActivity {
        room_id: room.to_string(),
        last_seq,
        last_message: Some(last_message),
        unread_count: u32::try_from(created.ordinal.saturating_sub(read_ordinal))
            .unwrap_or(u32::MAX),
    }));
}

/// The user's read position in `room` after `event`, the newest message of a delivery: a
/// message of the user's own moved it to that message (the writer raises the sender's
/// watermarks); otherwise the remembered one, read from the store once per room.
async fn read_ordinal(
    services: &Services,
    session: &mut Connected,
    room: &RoomId,
    event: &v1::RoomEvent,
    created: &v1::MessageCreated,
) -> Option<u64> {
    let known = if event.sender == session.user.as_str() {
        Some(created.ordinal)
    } else {
        session.read_ordinals.get(room).copied()
    };
    let ordinal = match known {
        Some(ordinal) => ordinal,
        None => match services.store.user_room(&session.user, room).await {
            Ok(Some(state)) => state.read_ordinal,
            _ => return None,
        },
    };
    if session.read_ordinals.len() >= READ_ORDINALS && !session.read_ordinals.contains_key(room) {
        session.read_ordinals.clear();
    }
    session.read_ordinals.insert(room.clone(), ordinal);
    Some(ordinal)
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
