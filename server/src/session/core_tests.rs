//! The session state machine with an injected clock: handshake, heartbeats, token expiry,
//! admission and delivery cursors.

use std::time::{Duration, Instant};

use chatwire_protocol::v1;
use v1::client_frame::Request;

use super::{Output, SessionConfig, SessionCore};
use crate::chat::ids::{RoomId, UserId};

const HEARTBEAT: Duration = Duration::from_secs(10);

fn config() -> SessionConfig {
    SessionConfig {
        handshake_timeout: Duration::from_secs(5),
        heartbeat_interval: HEARTBEAT,
        max_in_flight: 3,
        token_warning: Duration::from_secs(30),
        typing_throttle: Duration::from_secs(2),
    }
}

fn frame(id: u64, request: Request) -> v1::ClientFrame {
    v1::ClientFrame {
        id,
        trace_id: String::new(),
        request: Some(request),
    }
}

fn connect() -> Request {
    Request::Connect(v1::ConnectRequest::default())
}

fn ping() -> Request {
    Request::Ping(v1::PingRequest { client_time_ms: 0 })
}

fn outputs(core: &mut SessionCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn connected(now: Instant, token_ttl: Duration) -> SessionCore {
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(1, connect()));
    assert!(matches!(
        outputs(&mut core).as_slice(),
        [Output::Execute { id: 1, .. }]
    ));
    core.on_connected(UserId::parse("bob").unwrap(), now + token_ttl);
    core
}

fn close_code(outputs: &[Output]) -> Option<v1::CloseCode> {
    outputs.iter().find_map(|o| match o {
        Output::Close { code, .. } => Some(*code),
        _ => None,
    })
}

fn error_code(output: &Output) -> Option<(u64, v1::ErrorCode)> {
    match output {
        Output::Frame(v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Reply(reply)),
        }) => match &reply.result {
            Some(v1::reply::Result::Error(error)) => Some((reply.request_id, error.code())),
            _ => None,
        },
        _ => None,
    }
}

fn room_event(room: &str, seq: u64) -> v1::RoomEvent {
    v1::RoomEvent {
        room_id: room.into(),
        seq,
        ts_ms: 0,
        sender: "alice".into(),
        kind: None,
    }
}

fn delivered_seqs(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Frame(v1::ServerFrame {
                frame:
                    Some(v1::server_frame::Frame::Event(v1::Event {
                        kind: Some(v1::event::Kind::Room(e)),
                    })),
            }) => Some(e.seq),
            _ => None,
        })
        .collect()
}

#[test]
fn no_connect_within_the_handshake_timeout_closes() {
    let start = Instant::now();
    let mut core = SessionCore::new(config(), start);
    assert_eq!(core.poll_timeout(), Some(start + Duration::from_secs(5)));
    core.on_timeout(start + Duration::from_secs(4), 0);
    assert!(outputs(&mut core).is_empty());
    core.on_timeout(start + Duration::from_secs(5), 0);
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::ConnectTimeout)
    );
    assert!(core.is_closed());
}

#[test]
fn a_request_before_connect_is_refused_and_closes() {
    let now = Instant::now();
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(4, ping()));
    let out = outputs(&mut core);
    assert_eq!(
        error_code(&out[0]),
        Some((4, v1::ErrorCode::FailedPrecondition))
    );
    assert_eq!(close_code(&out), Some(v1::CloseCode::ProtocolViolation));
}

#[test]
fn a_second_connect_is_refused_without_closing() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    core.on_frame(now, frame(2, connect()));
    let out = outputs(&mut core);
    assert_eq!(
        error_code(&out[0]),
        Some((2, v1::ErrorCode::FailedPrecondition))
    );
    assert!(!core.is_closed());
}

#[test]
fn heartbeats_go_out_after_an_interval_of_silence_and_silence_from_the_client_closes() {
    let start = Instant::now();
    let mut core = connected(start, Duration::from_secs(3600));
    core.on_transmit(start);
    assert_eq!(core.poll_timeout(), Some(start + HEARTBEAT));
    core.on_timeout(start + HEARTBEAT, 42);
    let out = outputs(&mut core);
    assert!(matches!(
        out.as_slice(),
        [Output::Frame(v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(v1::event::Kind::Heartbeat(v1::Heartbeat {
                    server_time_ms: 42
                }))
            }))
        })]
    ));
    // The client stays silent for a second interval: dead.
    core.on_timeout(start + 2 * HEARTBEAT, 0);
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::HeartbeatTimeout)
    );
}

#[test]
fn any_frame_from_the_client_keeps_the_session_alive() {
    let start = Instant::now();
    let mut core = connected(start, Duration::from_secs(3600));
    core.on_frame(start + Duration::from_secs(15), frame(2, ping()));
    outputs(&mut core);
    core.on_timeout(start + Duration::from_secs(20), 0);
    assert_eq!(close_code(&outputs(&mut core)), None);
    core.on_timeout(start + Duration::from_secs(35), 0);
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::HeartbeatTimeout)
    );
}

#[test]
fn an_expiring_token_is_warned_about_then_closes_unless_refreshed() {
    let start = Instant::now();
    let mut core = connected(start, Duration::from_secs(40));
    core.on_frame(start + Duration::from_secs(9), frame(2, ping()));
    outputs(&mut core);
    core.on_transmit(start + Duration::from_secs(9));
    // Warned 30 s before expiry.
    core.on_timeout(start + Duration::from_secs(10), 1000);
    let warned = outputs(&mut core).iter().any(|o| {
        matches!(
            o,
            Output::Frame(v1::ServerFrame {
                frame: Some(v1::server_frame::Frame::Event(v1::Event {
                    kind: Some(v1::event::Kind::TokenExpiring(_))
                }))
            })
        )
    });
    assert!(warned);
    // A refresh moves the expiry; without one the session would close at 40 s.
    core.on_refreshed(start + Duration::from_secs(100));
    core.on_frame(start + Duration::from_secs(18), frame(3, ping()));
    core.on_frame(start + Duration::from_secs(27), frame(4, ping()));
    core.on_frame(start + Duration::from_secs(36), frame(5, ping()));
    core.on_transmit(start + Duration::from_secs(36));
    outputs(&mut core);
    core.on_timeout(start + Duration::from_secs(41), 0);
    assert_eq!(close_code(&outputs(&mut core)), None);
    core.on_frame(start + Duration::from_secs(45), frame(6, ping()));
    core.on_frame(start + Duration::from_secs(54), frame(7, ping()));
    core.on_frame(start + Duration::from_secs(63), frame(8, ping()));
    core.on_frame(start + Duration::from_secs(72), frame(9, ping()));
    core.on_frame(start + Duration::from_secs(81), frame(10, ping()));
    core.on_frame(start + Duration::from_secs(90), frame(11, ping()));
    core.on_frame(start + Duration::from_secs(99), frame(12, ping()));
    outputs(&mut core);
    core.on_timeout(start + Duration::from_secs(100), 0);
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::AuthExpired)
    );
}

#[test]
fn requests_beyond_the_in_flight_limit_of_one_message_are_refused() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    core.on_message(now);
    for id in 2..=6 {
        core.on_frame(now, frame(id, ping()));
    }
    let out = outputs(&mut core);
    let executed = out
        .iter()
        .filter(|o| matches!(o, Output::Execute { .. }))
        .count();
    let refused: Vec<_> = out.iter().filter_map(error_code).collect();
    assert_eq!(executed, 3);
    assert_eq!(
        refused,
        vec![
            (5, v1::ErrorCode::RateLimited),
            (6, v1::ErrorCode::RateLimited)
        ]
    );
}

#[test]
fn unanswered_requests_of_earlier_messages_count_toward_the_limit() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    for id in 2..=4 {
        core.on_message(now);
        core.on_frame(now, frame(id, ping()));
    }
    // Three requests in flight from three messages: a fourth is refused at once.
    core.on_message(now);
    core.on_frame(now, frame(5, ping()));
    let out = outputs(&mut core);
    let refused: Vec<_> = out.iter().filter_map(error_code).collect();
    assert_eq!(refused, vec![(5, v1::ErrorCode::RateLimited)]);
    // One answered: room for exactly one more.
    core.on_reply(2, Ok(v1::reply::Result::Ping(v1::PingResponse::default())));
    core.on_frame(now, frame(6, ping()));
    core.on_frame(now, frame(7, ping()));
    let out = outputs(&mut core);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Execute { id: 6, .. }))
    );
    let refused: Vec<_> = out.iter().filter_map(error_code).collect();
    assert_eq!(refused, vec![(7, v1::ErrorCode::RateLimited)]);
}

#[test]
fn id_zero_is_only_for_typing_and_typing_gets_no_reply() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    core.on_frame(now, frame(0, ping()));
    assert_eq!(
        error_code(&outputs(&mut core)[0]),
        Some((0, v1::ErrorCode::InvalidArgument))
    );
    core.on_frame(
        now,
        frame(
            0,
            Request::Typing(v1::TypingRequest {
                room_id: "r".into(),
                active: true,
            }),
        ),
    );
    assert!(matches!(
        outputs(&mut core).as_slice(),
        [Output::Execute { id: 0, .. }]
    ));
    core.on_reply(0, Ok(v1::reply::Result::Typing(v1::TypingResponse {})));
    assert!(outputs(&mut core).is_empty());
}

#[test]
fn a_frame_without_a_known_request_is_unsupported() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    core.on_frame(
        now,
        v1::ClientFrame {
            id: 9,
            trace_id: String::new(),
            request: None,
        },
    );
    assert_eq!(
        error_code(&outputs(&mut core)[0]),
        Some((9, v1::ErrorCode::Unsupported))
    );
}

/// Issue 15 H1: whatever the fan-out hands over, the session's user gets its own `MemberLeft`
/// and nothing of the room after it; other users' departures change nothing.
#[test]
fn live_delivery_of_a_room_stops_at_the_users_own_member_left() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    let room = RoomId::parse("g.1").unwrap();
    core.start_live(room.clone(), 0);
    let left = |seq, user: &str| v1::RoomEvent {
        kind: Some(v1::room_event::Kind::MemberLeft(v1::MemberLeft {
            user_id: user.into(),
            ..Default::default()
        })),
        ..room_event("g.1", seq)
    };
    core.on_room_events(
        &room,
        &[room_event("g.1", 1), left(2, "carol"), left(3, "bob")],
        false,
    );
    core.on_room_events(&room, &[room_event("g.1", 4)], false);
    core.on_room_events(&room, &[room_event("g.1", 6)], true);
    assert_eq!(delivered_seqs(&outputs(&mut core)), vec![1, 2, 3]);
    assert!(!core.is_live(&room), "the room is no longer live");
}

#[test]
fn room_events_are_delivered_contiguously_once_and_gaps_ask_for_repair() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    let room = RoomId::parse("g.1").unwrap();
    assert!(!core.on_room_events(&room, &[room_event("g.1", 1)], false));
    core.start_live(room.clone(), 3);
    // Already seen, then the next two.
    core.on_room_events(
        &room,
        &[
            room_event("g.1", 2),
            room_event("g.1", 3),
            room_event("g.1", 4),
            room_event("g.1", 5),
        ],
        false,
    );
    assert_eq!(delivered_seqs(&outputs(&mut core)), vec![4, 5]);
    // A jump: nothing delivered past the gap, one repair asked for, not two.
    core.on_room_events(&room, &[room_event("g.1", 8)], false);
    core.on_room_events(&room, &[room_event("g.1", 9)], false);
    let out = outputs(&mut core);
    assert!(delivered_seqs(&out).is_empty());
    let repairs: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Repair { after_seq, .. } => Some(*after_seq),
            _ => None,
        })
        .collect();
    assert_eq!(repairs, vec![5]);
    // The repair read fills the gap; live duplicates after it are dropped.
    core.on_room_events(&room, &[6, 7, 8, 9].map(|s| room_event("g.1", s)), true);
    core.on_room_events(&room, &[room_event("g.1", 9), room_event("g.1", 10)], false);
    assert_eq!(delivered_seqs(&outputs(&mut core)), vec![6, 7, 8, 9, 10]);
    assert_eq!(core.stop_live(&room), Some(10));
}

#[test]
fn an_oversized_frame_closes_and_garbage_gets_a_request_id_zero_error() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    core.on_decode_error(&chatwire_protocol::DecodeError::InvalidMessage {
        len: 3,
        reason: "bad".into(),
    });
    assert_eq!(
        error_code(&outputs(&mut core)[0]),
        Some((0, v1::ErrorCode::InvalidArgument))
    );
    assert!(!core.is_closed());
    core.on_decode_error(&chatwire_protocol::DecodeError::FrameTooLarge {
        len: 1 << 20,
        max: 1024,
    });
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::FrameTooLarge)
    );
}

#[test]
fn typing_is_throttled_per_room_and_stopping_always_passes() {
    let start = Instant::now();
    let mut core = connected(start, Duration::from_secs(3600));
    let a = RoomId::parse("g.a").unwrap();
    let b = RoomId::parse("g.b").unwrap();
    assert!(core.typing_gate(&a, true, start));
    assert!(!core.typing_gate(&a, true, start + Duration::from_millis(1999)));
    assert!(core.typing_gate(&b, true, start + Duration::from_millis(1999)));
    assert!(core.typing_gate(&a, true, start + Duration::from_secs(2)));
    assert!(core.typing_gate(&a, false, start + Duration::from_secs(2)));
    // After a stop, the next start goes out at once.
    assert!(core.typing_gate(&a, true, start + Duration::from_millis(2001)));
}

#[test]
fn trace_ids_that_are_not_hex_are_dropped_before_they_reach_logs() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    let traced = |trace_id: &str| v1::ClientFrame {
        id: 5,
        trace_id: trace_id.into(),
        request: Some(ping()),
    };
    core.on_frame(now, traced("4bf92f3577b34da6a3ce929d0e0e4736"));
    core.on_frame(now, traced("evil\nlog line"));
    let traces: Vec<String> = outputs(&mut core)
        .into_iter()
        .filter_map(|o| match o {
            Output::Execute { trace_id, .. } => Some(trace_id),
            _ => None,
        })
        .collect();
    assert_eq!(
        traces,
        vec!["4bf92f3577b34da6a3ce929d0e0e4736".to_owned(), String::new()]
    );
}

#[test]
fn a_repair_that_starts_past_the_cursor_resumes_from_the_first_kept_event() {
    let now = Instant::now();
    let mut core = connected(now, Duration::from_secs(3600));
    let room = RoomId::parse("g.r").unwrap();
    core.start_live(room.clone(), 3);
    core.on_room_events(&room, &[room_event("g.r", 9)], false);
    assert!(matches!(
        outputs(&mut core).as_slice(),
        [Output::Repair { after_seq: 3, .. }]
    ));
    // Retention dropped 4..=7: the repair read starts at 8.
    core.on_room_events(&room, &[room_event("g.r", 8), room_event("g.r", 9)], true);
    let out = outputs(&mut core);
    assert_eq!(delivered_seqs(&out), vec![8, 9]);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Repair { .. })),
        "no endless repair"
    );
}

#[test]
fn frames_pipelined_behind_connect_are_admitted_after_its_reply() {
    // R-4.1.3, R-4.1.4
    let now = Instant::now();
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(1, connect()));
    core.on_frame(now, frame(2, ping()));
    assert!(matches!(
        outputs(&mut core).as_slice(),
        [Output::Execute { id: 1, .. }]
    ));
    core.on_connected(
        UserId::parse("bob").unwrap(),
        now + Duration::from_secs(3600),
    );
    core.on_reply(
        1,
        Ok(v1::reply::Result::Connect(v1::ConnectResponse::default())),
    );
    let out = outputs(&mut core);
    assert!(
        matches!(
            out.as_slice(),
            [Output::Frame(_), Output::Execute { id: 2, .. }]
        ),
        "{out:?}"
    );
}

#[test]
fn frames_pipelined_behind_a_failed_connect_are_dropped() {
    let now = Instant::now();
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(1, connect()));
    core.on_frame(now, frame(2, ping()));
    let _ = outputs(&mut core);
    core.on_connect_failed(
        1,
        crate::chat::error::ChatError::Unauthenticated,
        v1::CloseCode::AuthFailed,
    );
    let out = outputs(&mut core);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Execute { .. })),
        "{out:?}"
    );
    assert_eq!(close_code(&out), Some(v1::CloseCode::AuthFailed));
}

#[test]
fn connect_with_id_0_is_refused_and_closed() {
    // R-4.1.1, R-4.1.5
    let now = Instant::now();
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(0, connect()));
    let out = outputs(&mut core);
    assert!(
        !out.iter().any(|o| matches!(o, Output::Execute { .. })),
        "{out:?}"
    );
    assert_eq!(
        out.first().and_then(error_code),
        Some((0, v1::ErrorCode::FailedPrecondition))
    );
    assert_eq!(close_code(&out), Some(v1::CloseCode::ProtocolViolation));
}

#[test]
fn frames_pipelined_past_the_in_flight_limit_are_rate_limited_after_connect() {
    // R-5.4.2 with R-4.1.3: config() allows 3 in flight; Connect is one of them.
    let now = Instant::now();
    let mut core = SessionCore::new(config(), now);
    core.on_frame(now, frame(1, connect()));
    for id in 2..=6 {
        core.on_frame(now, frame(id, ping()));
    }
    let _ = outputs(&mut core);
    core.on_connected(
        UserId::parse("bob").unwrap(),
        now + Duration::from_secs(3600),
    );
    core.on_reply(
        1,
        Ok(v1::reply::Result::Connect(v1::ConnectResponse::default())),
    );
    let out = outputs(&mut core);
    let executed: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Execute { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(executed, [2, 3]);
    let limited: Vec<u64> = out
        .iter()
        .filter_map(error_code)
        .filter(|(_, code)| *code == v1::ErrorCode::RateLimited)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(limited, [4, 5, 6]);
}

#[test]
fn a_session_lives_until_its_token_expiry_plus_the_leeway() {
    // R-4.4.4: Connect accepts a token up to `exp + leeway`, so the session must not close at
    // `exp` itself (a token accepted within the leeway was closed at once, found by the
    // clock-skew fault scenario).
    let start = Instant::now();
    let mut core = connected(start, Duration::ZERO);
    core.set_token_leeway(Duration::from_secs(30));
    core.on_timeout(start, 0);
    assert_eq!(close_code(&outputs(&mut core)), None, "within the leeway");
    assert!(
        core.poll_timeout() > Some(start),
        "no timer already due: the expiry plus the leeway lies ahead"
    );
    core.on_frame(start + Duration::from_secs(10), frame(2, ping()));
    core.on_frame(start + Duration::from_secs(20), frame(3, ping()));
    outputs(&mut core);
    core.on_timeout(start + Duration::from_secs(29), 0);
    assert_eq!(close_code(&outputs(&mut core)), None, "still within");
    core.on_timeout(start + Duration::from_secs(30), 0);
    assert_eq!(
        close_code(&outputs(&mut core)),
        Some(v1::CloseCode::AuthExpired)
    );
}
