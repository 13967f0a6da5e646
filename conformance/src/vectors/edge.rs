//! Edge-case vectors: frames at the maximum sizes, the extreme integers, every value of every
//! enum, unknown enum values, and (decode-only) unknown fields and unknown oneof cases.

use bytes::BufMut as _;
use chatwire_protocol::limits;
use chatwire_protocol::v1::{self, client_frame::Request, reply::Result as Outcome};
use prost::Message as _;
use prost::encoding::{WireType, encode_key, encode_varint};

use super::{Frame, GENERAL, T0, Vector, client, event, reply, room_event, text};

/// The edge-case vectors of [`super::all`].
pub(super) fn vectors() -> Vec<Vector> {
    let mut out = vec![max_text(), max_app_payload(), client_frame_at_limit()];
    out.extend(extreme_integers());
    out.extend(unknown_enum_values());
    out.extend(error_codes());
    out.extend(close_codes());
    out.extend(push_platforms());
    out.extend(leave_reasons());
    out
}

fn send(name: &str, id: u64, content: v1::Content) -> Vector {
    client(
        name,
        id,
        Request::Send(v1::SendRequest {
            room_id: GENERAL.to_owned(),
            client_msg_id: format!("edge-{id}"),
            content: Some(content),
            ..Default::default()
        }),
    )
}

/// `max_text_chars` (4000) Unicode scalar values of 1 to 4 UTF-8 bytes each (10,000 bytes).
fn max_text() -> Vector {
    let text_value: String = "aé€😀".repeat(limits::DEFAULT_MAX_TEXT_CHARS / 4);
    send("client/edge/max_text", 101, text(&text_value))
}

/// `max_app_payload_bytes` (4096) of every byte value.
fn max_app_payload() -> Vector {
    let payload: Vec<u8> = (0..limits::DEFAULT_MAX_APP_PAYLOAD_BYTES)
        .map(|i| (i % 256) as u8)
        .collect();
    let content = v1::Content {
        text: "with app payload".to_owned(),
        app_payload: payload.into(),
        ..Default::default()
    };
    send("client/edge/max_app_payload", 102, content)
}

/// A client frame whose message is exactly `max_client_frame_bytes` (65,536) long, so the
/// length prefix takes three bytes. A codec vector: its app payload is over the content limits.
fn client_frame_at_limit() -> Vector {
    let target = limits::DEFAULT_MAX_CLIENT_FRAME_BYTES;
    let frame = |n: usize| {
        let content = v1::Content {
            app_payload: vec![0x5a; n].into(),
            ..Default::default()
        };
        send("client/edge/frame_at_limit", 103, content)
    };
    let mut n = target - 64;
    for _ in 0..8 {
        let len = match &frame(n).frame {
            Frame::Client(f) => f.encoded_len(),
            Frame::Server(f) => f.encoded_len(),
        };
        if len == target {
            break;
        }
        n = (n + target).saturating_sub(len);
    }
    frame(n)
}

fn extreme_integers() -> Vec<Vector> {
    vec![
        reply(
            "server/edge/max_integers",
            u64::MAX,
            Outcome::Send(v1::SendResponse {
                seq: u64::MAX,
                ordinal: u64::MAX,
                created_at_ms: i64::MAX,
                duplicate: true,
            }),
        ),
        reply(
            "server/edge/negative_integers",
            1,
            Outcome::Ping(v1::PingResponse {
                client_time_ms: -1,
                server_time_ms: i64::MIN,
            }),
        ),
    ]
}

/// Open enums: a value this version does not name travels as its number (JSON too); clients
/// map an unknown ErrorCode to INTERNAL and an unknown CloseCode to INTERNAL.
fn unknown_enum_values() -> Vec<Vector> {
    vec![
        reply(
            "server/edge/unknown_error_code",
            104,
            Outcome::Error(v1::Error {
                code: 999,
                message: "an error code from a newer server".to_owned(),
                retryable: true,
                retry_after_ms: 500,
                field: String::new(),
            }),
        ),
        event(
            "server/edge/unknown_close_code",
            v1::event::Kind::Disconnect(v1::Disconnect {
                code: 4999,
                reason: "a close code from a newer server".to_owned(),
                reconnect: false,
                reconnect_delay_ms: 0,
            }),
        ),
    ]
}

/// The lower-case name of an enum value without its prefix: `ERROR_CODE_NOT_FOUND` ->
/// `not_found`.
fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix)
        .unwrap_or(name)
        .to_ascii_lowercase()
}

fn error_codes() -> Vec<Vector> {
    (1..64)
        .filter_map(|n| v1::ErrorCode::try_from(n).ok())
        .map(|code| {
            let name = short(code.as_str_name(), "ERROR_CODE_");
            let retryable = matches!(
                code,
                v1::ErrorCode::RateLimited
                    | v1::ErrorCode::Unavailable
                    | v1::ErrorCode::Internal
                    | v1::ErrorCode::Timeout
            );
            reply(
                &format!("server/edge/enum/error_code/{name}"),
                200 + u64::try_from(i32::from(code)).unwrap_or(0),
                Outcome::Error(v1::Error {
                    code: code.into(),
                    message: format!("sample {name}"),
                    retryable,
                    retry_after_ms: if retryable { 1000 } else { 0 },
                    field: String::new(),
                }),
            )
        })
        .collect()
}

fn close_codes() -> Vec<Vector> {
    (4000..4100)
        .filter_map(|n| v1::CloseCode::try_from(n).ok())
        .map(|code| {
            let name = short(code.as_str_name(), "CLOSE_CODE_");
            let reconnect = code == v1::CloseCode::ServerDraining;
            event(
                &format!("server/edge/enum/close_code/{name}"),
                v1::event::Kind::Disconnect(v1::Disconnect {
                    code: code.into(),
                    reason: format!("sample {name}"),
                    reconnect,
                    reconnect_delay_ms: if reconnect { 1000 } else { 0 },
                }),
            )
        })
        .collect()
}

fn push_platforms() -> Vec<Vector> {
    (1..16)
        .filter_map(|n| v1::PushPlatform::try_from(n).ok())
        .map(|platform| {
            let name = short(platform.as_str_name(), "PUSH_PLATFORM_");
            client(
                &format!("client/edge/enum/push_platform/{name}"),
                300 + u64::try_from(i32::from(platform)).unwrap_or(0),
                Request::RegisterPushToken(v1::RegisterPushTokenRequest {
                    platform: platform.into(),
                    token: format!("{name}-device-token"),
                    device_id: "device-7f3a".to_owned(),
                }),
            )
        })
        .collect()
}

fn leave_reasons() -> Vec<Vector> {
    (1..16)
        .filter_map(|n| v1::LeaveReason::try_from(n).ok())
        .map(|reason| {
            let name = short(reason.as_str_name(), "LEAVE_REASON_");
            room_event(
                &format!("server/edge/enum/leave_reason/{name}"),
                60,
                "carol",
                v1::room_event::Kind::MemberLeft(v1::MemberLeft {
                    user_id: "carol".to_owned(),
                    reason: reason.into(),
                }),
            )
        })
        .collect()
}

/// A frame whose bytes hold what its JSON cannot: a decoder must yield `frame`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOnly {
    /// The file stem, relative to `conformance/vectors`.
    pub name: String,
    /// The message bytes (no length prefix).
    pub wire: Vec<u8>,
    /// What decoding yields (its JSON is the `.json` file).
    pub frame: Frame,
    /// What the vector checks.
    pub note: &'static str,
}

impl DecodeOnly {
    /// The `.bin` contents: varint length prefix, then the message.
    pub fn framed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.wire.len() + 3);
        encode_varint(self.wire.len() as u64, &mut out);
        out.extend_from_slice(&self.wire);
        out
    }
}

/// Unknown field `number` holding a varint, then one holding `bytes`.
fn unknown_fields(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(number, WireType::Varint, &mut out);
    encode_varint(42, &mut out);
    encode_key(number + 1, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.put_slice(bytes);
    out
}

/// `field` of the enclosing message, length-delimited, holding `inner`.
fn nested(field: u32, inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(field, WireType::LengthDelimited, &mut out);
    encode_varint(inner.len() as u64, &mut out);
    out.extend_from_slice(inner);
    out
}

/// The decode-only vectors: unknown fields must be skipped, unknown oneof cases leave the
/// oneof unset.
pub fn decode_only() -> Vec<DecodeOnly> {
    let ping = v1::ClientFrame {
        id: 105,
        trace_id: String::new(),
        request: Some(Request::Ping(v1::PingRequest { client_time_ms: T0 })),
    };
    let mut ping_wire = ping.encode_to_vec();
    ping_wire.extend(unknown_fields(1000, b"from a newer client"));

    let unknown_event = v1::ServerFrame {
        frame: Some(v1::server_frame::Frame::Event(v1::Event { kind: None })),
    };
    // ServerFrame.event (2) holding an Event whose only field is kind number 999.
    let event_wire = nested(2, &nested(999, &unknown_fields(1, b"future event")));

    let unknown_room_kind = v1::RoomEvent {
        room_id: GENERAL.to_owned(),
        seq: 61,
        ts_ms: T0,
        sender: "carol".to_owned(),
        kind: None,
    };
    let mut room_wire = unknown_room_kind.encode_to_vec();
    room_wire.extend(nested(99, &unknown_fields(1, b"future room event")));
    let room_frame = v1::ServerFrame {
        frame: Some(v1::server_frame::Frame::Event(v1::Event {
            kind: Some(v1::event::Kind::Room(unknown_room_kind)),
        })),
    };
    // ServerFrame.event (2) > Event.room (1) > the RoomEvent with its unknown kind.
    let room_wire = nested(2, &nested(1, &room_wire));

    vec![
        DecodeOnly {
            name: "client/edge/unknown_fields".to_owned(),
            wire: ping_wire,
            frame: Frame::Client(ping),
            note: "unknown fields 1000 (varint) and 1001 (bytes) after a Ping: skipped",
        },
        DecodeOnly {
            name: "server/edge/unknown_event_kind".to_owned(),
            wire: event_wire,
            frame: Frame::Server(unknown_event),
            note: "an Event whose kind is field 999, unknown: kind unset, the client ignores \
                   it (R-3.3.4)",
        },
        DecodeOnly {
            name: "server/edge/unknown_room_event_kind".to_owned(),
            wire: room_wire,
            frame: Frame::Server(room_frame),
            note: "a RoomEvent (seq 61) whose kind is field 99, unknown: kind unset, the seq \
                   still counts (R-3.3.5)",
        },
    ]
}
