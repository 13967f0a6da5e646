//! The session state machine, sans I/O: the handshake, frame admission, heartbeats, token
//! expiry and per-room delivery cursors. The driver passes frames, deliveries and `now` in and
//! takes [`Output`]s out; nothing here reads a clock or touches a socket.
//!
//! Order of calls: [`SessionCore::on_frame`] for each decoded frame (and
//! [`SessionCore::on_decode_error`] for bad input), [`SessionCore::on_room_events`] for each
//! delivery, [`SessionCore::on_timeout`] when [`SessionCore::poll_timeout`] is due, and after
//! each of these drain [`SessionCore::poll_output`]. After a request's execution, the driver
//! reports it with [`SessionCore::on_reply`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chatwire_protocol::{DecodeError, limits, v1};
use v1::client_frame::Request;

use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// Timing and size settings of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How long a new connection may take to send Connect.
    pub handshake_timeout: Duration,
    /// The heartbeat interval: the server sends a Heartbeat after this much outbound silence
    /// and closes after two intervals of inbound silence.
    pub heartbeat_interval: Duration,
    /// Most requests admitted and not yet answered; more are refused at once. Writes
    /// run concurrently with later requests, so this spans transport messages.
    pub max_in_flight: usize,
    /// How long before token expiry the client is warned.
    pub token_warning: Duration,
    /// The shortest interval between two forwarded "typing" indicators for one room.
    pub typing_throttle: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_millis(limits::DEFAULT_HANDSHAKE_TIMEOUT_MS),
            heartbeat_interval: Duration::from_millis(limits::DEFAULT_HEARTBEAT_INTERVAL_MS),
            max_in_flight: limits::DEFAULT_MAX_IN_FLIGHT_REQUESTS,
            token_warning: Duration::from_millis(limits::TOKEN_EXPIRING_LEAD_MS),
            typing_throttle: Duration::from_millis(u64::from(limits::DEFAULT_TYPING_THROTTLE_MS)),
        }
    }
}

/// What the session asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a frame.
    Frame(v1::ServerFrame),
    /// Send a frame that is already encoded (length prefix included), shared with the other
    /// sessions that receive it.
    Encoded(bytes::Bytes),
    /// Execute a request and report its result with `on_reply`.
    Execute {
        /// The request id.
        id: u64,
        /// The trace id.
        trace_id: String,
        /// The request.
        request: Request,
    },
    /// Read the room's log after `after_seq` and pass the events to `on_room_events`.
    Repair {
        /// The room.
        room: RoomId,
        /// The last seq the session delivered.
        after_seq: u64,
    },
    /// Send `Disconnect`, then close the connection with `code`.
    Close {
        /// The close code.
        code: v1::CloseCode,
        /// Why.
        reason: String,
        /// Whether the client should reconnect.
        reconnect: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    /// Connect is being executed.
    Connecting,
    Connected,
    Closed,
}

/// The per-connection state machine.
#[derive(Debug)]
pub struct SessionCore {
    config: SessionConfig,
    phase: Phase,
    opened_at: Instant,
    last_rx: Instant,
    last_tx: Instant,
    token_expires_at: Option<Instant>,
    /// The token's `exp` in ms, as `ConnectResponse.token_expires_at_ms` said.
    token_expires_at_ms: Option<i64>,
    /// How long past the token's expiry the session may live (the auth leeway, R-4.4.4).
    token_leeway: Duration,
    token_warned: bool,
    /// Requests admitted and not yet answered (Connect and typing datagrams aside).
    in_flight: usize,
    /// The id of the Connect being executed: its reply is not one of `in_flight`.
    connect_id: Option<u64>,
    cursors: HashMap<RoomId, Cursor>,
    /// When "typing" was last forwarded, per room.
    typing: HashMap<RoomId, Instant>,
    out: VecDeque<Output>,
    /// Frames that arrived while Connect was executing (pipelined behind it in the same
    /// transport message); admitted once Connect succeeded, in order.
    pending: VecDeque<v1::ClientFrame>,
    /// Ids of pipelined frames past the in-flight limit (answered RATE_LIMITED once connected).
    pending_over: Vec<u64>,
    /// The close, emitted once every other output is out.
    closing: Option<Output>,
    /// The code the session was closed with, once it was (for the connection log).
    closed_with: Option<v1::CloseCode>,
    /// The session's user, once connected: live delivery of a room stops at its `MemberLeft`.
    user: Option<UserId>,
}

/// Delivery state of one subscribed room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// The last seq delivered to the client.
    last: u64,
    /// A repair read is outstanding.
    repairing: bool,
}

impl SessionCore {
    /// A session for a connection accepted at `now`.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        Self {
            config,
            phase: Phase::AwaitingConnect,
            opened_at: now,
            last_rx: now,
            last_tx: now,
            token_expires_at: None,
            token_expires_at_ms: None,
            token_leeway: Duration::ZERO,
            token_warned: false,
            in_flight: 0,
            connect_id: None,
            cursors: HashMap::new(),
            typing: HashMap::new(),
            out: VecDeque::new(),
            pending: VecDeque::new(),
            pending_over: Vec::new(),
            closing: None,
            closed_with: None,
            user: None,
        }
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        // The close goes last: replies to requests admitted before it are sent first.
        self.out.pop_front().or_else(|| self.closing.take())
    }

    /// True once the session decided to close.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// True once Connect succeeded.
    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    /// The driver wrote to the transport at `now`.
    pub fn on_transmit(&mut self, now: Instant) {
        self.last_tx = now;
    }

    /// The driver starts a new transport message.
    pub fn on_message(&mut self, now: Instant) {
        self.last_rx = now;
    }

    /// A decoded frame arrived.
    pub fn on_frame(&mut self, now: Instant, frame: v1::ClientFrame) {
        if self.phase == Phase::Closed {
            return;
        }
        self.last_rx = now;
        if self.phase == Phase::Connecting {
            // Whatever follows Connect belongs to the session it opens; nothing
            // but Connect's reply may go out first, so it waits for the outcome.
            // Connect runs before the next transport message is read, so this holds at most
            // one message's frames; the cap is a second fence.
            // Past the in-flight limit only the id is kept, for its RATE_LIMITED reply.
            if self.pending.len() < self.config.max_in_flight {
                self.pending.push_back(frame);
            } else {
                self.pending_over.push(frame.id);
            }
            return;
        }
        let Some(request) = frame.request else {
            self.error_reply(
                frame.id,
                ChatError::Unsupported("unknown or missing request"),
            );
            return;
        };
        let is_connect = matches!(request, Request::Connect(_));
        match self.phase {
            // Connect with a non-zero id; id 0 is refused like any bad first frame.
            Phase::AwaitingConnect if is_connect && frame.id != 0 => {
                self.phase = Phase::Connecting;
                self.connect_id = Some(frame.id);
                self.out.push_back(Output::Execute {
                    id: frame.id,
                    trace_id: clean_trace_id(frame.trace_id),
                    request,
                });
                return;
            }
            Phase::AwaitingConnect => {
                self.error_reply(
                    frame.id,
                    ChatError::FailedPrecondition("the first frame must be Connect"),
                );
                self.close(
                    v1::CloseCode::ProtocolViolation,
                    "request before Connect",
                    false,
                );
                return;
            }
            Phase::Connected if is_connect => {
                self.error_reply(frame.id, ChatError::FailedPrecondition("already connected"));
                return;
            }
            Phase::Connecting | Phase::Connected | Phase::Closed => {}
        }
        if frame.id == 0 && !matches!(request, Request::Typing(_)) {
            self.error_reply(
                0,
                ChatError::invalid("id", "request id 0 is reserved for typing datagrams"),
            );
            return;
        }
        if self.in_flight >= self.config.max_in_flight {
            self.error_reply(
                frame.id,
                ChatError::RateLimited {
                    retry_after_ms: 100,
                },
            );
            return;
        }
        self.in_flight += 1;
        self.out.push_back(Output::Execute {
            id: frame.id,
            trace_id: clean_trace_id(frame.trace_id),
            request,
        });
    }

    /// A typing request arrived as a QUIC datagram: executed without a reply, outside the
    /// in-flight count, and not counted as traffic for the heartbeat.
    pub fn on_typing_datagram(&mut self, request: v1::TypingRequest) {
        if self.phase == Phase::Connected {
            self.out.push_back(Output::Execute {
                id: 0,
                trace_id: String::new(),
                request: Request::Typing(request),
            });
        }
    }

    /// Input could not be decoded.
    pub fn on_decode_error(&mut self, error: &DecodeError) {
        match error {
            DecodeError::FrameTooLarge { .. } => {
                self.close(v1::CloseCode::FrameTooLarge, &error.to_string(), false);
            }
            DecodeError::InvalidMessage { .. } => {
                self.error_reply(0, ChatError::invalid("frame", "not a valid ClientFrame"));
                // Before Connect nothing is trusted yet (docs/protocol.md ).
                if self.phase == Phase::AwaitingConnect {
                    self.close(
                        v1::CloseCode::ProtocolViolation,
                        "invalid first frame",
                        false,
                    );
                }
            }
            DecodeError::MalformedLength | DecodeError::Truncated { .. } => {
                self.close(v1::CloseCode::ProtocolViolation, &error.to_string(), false);
            }
        }
    }

    /// Connect succeeded for `user`; the token expires at `token_expires_at`.
    pub fn on_connected(&mut self, user: UserId, token_expires_at: Instant) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Connected;
            self.user = Some(user);
            self.token_expires_at = Some(token_expires_at);
            self.token_warned = false;
        }
    }

    /// The token's `exp` in wall-clock ms, which `TokenExpiring.expires_at_ms` repeats exactly
    /// (the instant of `on_connected` / `on_refreshed` only times the warning).
    pub fn set_token_expires_at_ms(&mut self, expires_at_ms: i64) {
        self.token_expires_at_ms = Some(expires_at_ms);
    }

    /// The clock-skew leeway past the token's expiry: the session closes with
    /// `CLOSE_CODE_AUTH_EXPIRED` at expiry plus this; `TokenExpiring` still comes
    /// before the expiry itself.
    pub fn set_token_leeway(&mut self, leeway: Duration) {
        self.token_leeway = leeway;
    }

    /// The token was refreshed.
    pub fn on_refreshed(&mut self, token_expires_at: Instant) {
        self.token_expires_at = Some(token_expires_at);
        self.token_warned = false;
    }

    /// A request finished: send its reply. A failed Connect closes the session with `close`.
    pub fn on_reply(&mut self, id: u64, result: Result<v1::reply::Result, ChatError>) {
        // Id 0 is a typing datagram: it gets no reply, not even an error.
        if id == 0 {
            return;
        }
        if self.connect_id == Some(id) {
            self.connect_id = None;
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        let result = match result {
            Ok(result) => result,
            Err(err) => v1::reply::Result::Error(err.to_proto()),
        };
        self.reply(id, result);
        self.admit_pending();
    }

    /// Admits the frames that were pipelined behind a successful Connect, after its reply.
    fn admit_pending(&mut self) {
        if self.phase != Phase::Connected {
            return;
        }
        // They arrived in one transport message with Connect, which counts as one of them.
        self.in_flight += 1;
        let now = self.last_rx;
        while let Some(frame) = self.pending.pop_front() {
            self.on_frame(now, frame);
        }
        self.in_flight -= 1;
        for id in std::mem::take(&mut self.pending_over) {
            let refused = ChatError::RateLimited {
                retry_after_ms: 100,
            };
            self.error_reply(id, refused);
        }
    }

    /// Connect failed: reply with the error, then close with `code`.
    pub fn on_connect_failed(&mut self, id: u64, error: ChatError, code: v1::CloseCode) {
        // Requests pipelined behind a failed Connect have no session to run in.
        self.pending.clear();
        self.pending_over.clear();
        self.error_reply(id, error);
        let reason = match code {
            v1::CloseCode::AuthExpired => "token expired",
            v1::CloseCode::Revoked => "token revoked",
            _ => "authentication failed",
        };
        self.close(code, reason, false);
    }

    /// The room is live for this client from `last_seq` on (after a Subscribe page that
    /// completed replay).
    pub fn start_live(&mut self, room: RoomId, last_seq: u64) {
        self.cursors.insert(
            room,
            Cursor {
                last: last_seq,
                repairing: false,
            },
        );
    }

    /// The client no longer wants the room (or left it); returns the last seq delivered.
    pub fn stop_live(&mut self, room: &RoomId) -> Option<u64> {
        self.cursors.remove(room).map(|c| c.last)
    }

    /// True when the room is live for this client.
    pub fn is_live(&self, room: &RoomId) -> bool {
        self.cursors.contains_key(room)
    }

    /// Events of one room arrived (live, or from a repair read): forwards each event whose
    /// seq is the cursor + 1, drops older ones, and asks for a repair on a jump. Returns false
    /// when the room is not live for this client (the driver may summarise it instead).
    pub fn on_room_events(
        &mut self,
        room: &RoomId,
        events: &[v1::RoomEvent],
        from_repair: bool,
    ) -> bool {
        self.room_events(room, events, None, from_repair)
    }

    /// Live events of one room together with each one's encoded event frame (`frames[i]` is
    /// `events[i]`): as [`SessionCore::on_room_events`], but the frames go out as they are,
    /// so a batch is encoded once for all its recipients.
    pub fn on_shared_events(
        &mut self,
        room: &RoomId,
        events: &[v1::RoomEvent],
        frames: &[bytes::Bytes],
    ) -> bool {
        self.room_events(room, events, Some(frames), false)
    }

    fn room_events(
        &mut self,
        room: &RoomId,
        events: &[v1::RoomEvent],
        frames: Option<&[bytes::Bytes]>,
        from_repair: bool,
    ) -> bool {
        let Some(cursor) = self.cursors.get_mut(room) else {
            return false;
        };
        if from_repair {
            cursor.repairing = false;
            // A repair read that starts past the cursor means retention dropped the events in
            // between: nothing can fill that gap, so delivery goes on from the first kept one.
            if let Some(first) = events.first()
                && first.seq > cursor.last + 1
            {
                cursor.last = first.seq - 1;
            }
        }
        let mut deliver = Vec::new();
        let mut gap = false;
        let mut left = false;
        for (i, event) in events.iter().enumerate() {
            if event.seq <= cursor.last {
                continue;
            }
            if event.seq == cursor.last + 1 {
                cursor.last = event.seq;
                deliver.push(i);
                // The user's own MemberLeft is the last event it gets from the room
                // whatever the fan-out still hands over after it is not its to see.
                if let Some(v1::room_event::Kind::MemberLeft(l)) = &event.kind
                    && self.user.as_ref().is_some_and(|u| u.as_str() == l.user_id)
                {
                    left = true;
                    break;
                }
            } else {
                gap = true;
                break;
            }
        }
        let after_seq = cursor.last;
        let ask_repair = gap && !cursor.repairing;
        if ask_repair {
            cursor.repairing = true;
        }
        if left {
            self.cursors.remove(room);
        }
        for i in deliver {
            match frames.and_then(|frames| frames.get(i)) {
                Some(frame) => self.out.push_back(Output::Encoded(frame.clone())),
                None => self.event(v1::event::Kind::Room(events[i].clone())),
            }
        }
        if ask_repair && !left {
            self.out.push_back(Output::Repair {
                room: room.clone(),
                after_seq,
            });
        }
        true
    }

    /// Whether a typing indicator goes out: "stopped" always does; "typing" at most once per
    /// throttle interval per room (the indicator's TTL covers the gaps).
    pub fn typing_gate(&mut self, room: &RoomId, active: bool, now: Instant) -> bool {
        if !active {
            self.typing.remove(room);
            return true;
        }
        match self.typing.get(room) {
            Some(last) if now < *last + self.config.typing_throttle => false,
            _ => {
                if self.typing.len() >= 1024 {
                    self.typing.clear();
                }
                self.typing.insert(room.clone(), now);
                true
            }
        }
    }

    /// A repair read failed or came back short: allow the next jump to ask again.
    pub fn on_repair_failed(&mut self, room: &RoomId) {
        if let Some(cursor) = self.cursors.get_mut(room) {
            cursor.repairing = false;
        }
    }

    /// Queues an event for the client.
    pub fn event(&mut self, kind: v1::event::Kind) {
        let frame = v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(kind),
            })),
        };
        self.out.push_back(Output::Frame(frame));
    }

    /// Closes the session (the server drains, revokes, or found the client too slow).
    pub fn close(&mut self, code: v1::CloseCode, reason: &str, reconnect: bool) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        self.closed_with = Some(code);
        self.closing = Some(Output::Close {
            code,
            reason: reason.to_owned(),
            reconnect,
        });
    }

    /// The code the session closed the connection with; `None` while open, or when the peer
    /// closed or the connection dropped.
    pub fn closed_with(&self) -> Option<v1::CloseCode> {
        self.closed_with
    }

    /// When [`SessionCore::on_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let interval = self.config.heartbeat_interval;
        match self.phase {
            Phase::Closed => None,
            Phase::AwaitingConnect | Phase::Connecting => {
                Some(self.opened_at + self.config.handshake_timeout)
            }
            Phase::Connected => {
                let mut next = (self.last_tx + interval).min(self.last_rx + 2 * interval);
                if let Some(expiry) = self.token_expires_at {
                    let warn_at = expiry
                        .checked_sub(self.config.token_warning)
                        .unwrap_or(expiry);
                    next = next.min(if self.token_warned {
                        expiry + self.token_leeway
                    } else {
                        warn_at
                    });
                }
                Some(next)
            }
        }
    }

    /// Handles every timer due at `now`; `now_ms` is the wall clock, for heartbeat content.
    pub fn on_timeout(&mut self, now: Instant, now_ms: i64) {
        match self.phase {
            Phase::Closed => {}
            Phase::AwaitingConnect | Phase::Connecting => {
                if now >= self.opened_at + self.config.handshake_timeout {
                    self.close(v1::CloseCode::ConnectTimeout, "no Connect in time", false);
                }
            }
            Phase::Connected => self.connected_timers(now, now_ms),
        }
    }

    fn connected_timers(&mut self, now: Instant, now_ms: i64) {
        let interval = self.config.heartbeat_interval;
        if now >= self.last_rx + 2 * interval {
            self.close(
                v1::CloseCode::HeartbeatTimeout,
                "no frame from the client for two heartbeat intervals",
                true,
            );
            return;
        }
        if let Some(expiry) = self.token_expires_at {
            if now >= expiry + self.token_leeway {
                self.close(v1::CloseCode::AuthExpired, "token expired", true);
                return;
            }
            if !self.token_warned && now + self.config.token_warning >= expiry {
                self.token_warned = true;
                let left = i64::try_from((expiry - now).as_millis()).unwrap_or(i64::MAX);
                let expires_at_ms = self
                    .token_expires_at_ms
                    .unwrap_or_else(|| now_ms.saturating_add(left));
                self.event(v1::event::Kind::TokenExpiring(v1::TokenExpiring {
                    expires_at_ms,
                }));
            }
        }
        if now >= self.last_tx + interval {
            self.event(v1::event::Kind::Heartbeat(v1::Heartbeat {
                server_time_ms: now_ms,
            }));
            // The driver confirms the write with on_transmit; until then do not repeat.
            self.last_tx = now;
        }
    }

    fn reply(&mut self, request_id: u64, result: v1::reply::Result) {
        let frame = v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Reply(v1::Reply {
                request_id,
                result: Some(result),
            })),
        };
        self.out.push_back(Output::Frame(frame));
    }

    fn error_reply(&mut self, request_id: u64, error: ChatError) {
        self.reply(request_id, v1::reply::Result::Error(error.to_proto()));
    }
}

/// A trace id as logs may carry it: 1 to 64 hex digits or dashes, otherwise dropped (peer
/// strings are never logged raw).
fn clean_trace_id(raw: String) -> String {
    let clean = raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if clean { raw } else { String::new() }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
