//! Golden frames (docs/conformance.md): one or more per request, reply and event type, written to
//! `conformance/vectors` as the framed binary form and proto3 JSON that every SDK's codec must
//! reproduce.
//!
//! ```text
//!  all() ──▶ Vec<Vector> ──render──▶ <name>.bin   varint length prefix + message
//!                                    <name>.json  proto3 JSON of the bare message
//!                                    manifest.json
//! ```
//!
//! The samples are fixed (no clock, no randomness) so rendering is byte-for-byte reproducible;
//! `scripts/regen` rewrites the files and `tests/vectors.rs` fails when they are stale.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use chatwire_protocol::v1::{
    self, call_signal, client_frame::Request, event, history_request, reply::Result as Outcome,
    room_event, server_frame,
};
use chatwire_protocol::{FILE_DESCRIPTOR_SET, encode_frame, limits};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions, Value};
use serde::Serialize;

/// One golden frame and the name its files carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Vector {
    /// The file stem, relative to `conformance/vectors`, for example `client/send`.
    pub name: String,
    /// The frame.
    pub frame: Frame,
}

/// A frame of either direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A frame a client sends.
    Client(v1::ClientFrame),
    /// A frame a server sends.
    Server(v1::ServerFrame),
}

impl Frame {
    /// The full protobuf name of the frame's message type.
    pub fn message_name(&self) -> &'static str {
        match self {
            Frame::Client(_) => "chatwire.v1.ClientFrame",
            Frame::Server(_) => "chatwire.v1.ServerFrame",
        }
    }

    /// The encoded message, without the length prefix.
    pub fn encode_message(&self) -> Vec<u8> {
        match self {
            Frame::Client(frame) => frame.encode_to_vec(),
            Frame::Server(frame) => frame.encode_to_vec(),
        }
    }

    /// The frame as [`encode_frame`] writes it: varint length prefix, then the message.
    pub fn encode_framed(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        let max = limits::DEFAULT_MAX_SERVER_FRAME_BYTES;
        match self {
            Frame::Client(frame) => encode_frame(frame, max, &mut out),
            Frame::Server(frame) => encode_frame(frame, max, &mut out),
        }
        .expect("golden frames are far below the frame limit");
        out.to_vec()
    }

    /// The frame as a reflection message of `pool`.
    pub fn to_dynamic(&self, pool: &DescriptorPool) -> DynamicMessage {
        let desc = pool
            .get_message_by_name(self.message_name())
            .expect("the descriptor set declares the frame messages");
        DynamicMessage::decode(desc, self.encode_message().as_slice())
            .expect("a prost-encoded frame decodes through its descriptor")
    }
}

/// The descriptor pool of protocol v1, from [`FILE_DESCRIPTOR_SET`].
pub fn descriptor_pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the embedded descriptor set is valid")
}

/// Every golden vector, in a fixed order.
pub fn all() -> Vec<Vector> {
    let families: [fn() -> Vec<Vector>; 14] = [
        session,
        rooms,
        messages,
        history,
        receipts,
        presence,
        calls,
        account,
        moderation,
        contacts,
        errors,
        room_events,
        user_events,
        edge::vectors,
    ];
    families.into_iter().flat_map(|family| family()).collect()
}

mod edge;
pub use edge::{DecodeOnly, decode_only};

/// The file name of the manifest, relative to `conformance/vectors`.
pub const MANIFEST: &str = "manifest.json";

/// Renders the files of `vectors`: paths relative to `conformance/vectors` and their bytes.
pub fn render(vectors: &[Vector]) -> Vec<(PathBuf, Vec<u8>)> {
    let pool = descriptor_pool();
    let mut files = Vec::with_capacity(vectors.len() * 2 + 1);
    let mut entries = Vec::with_capacity(vectors.len());
    for vector in vectors {
        let message = vector.frame.to_dynamic(&pool);
        let bin = format!("{}.bin", vector.name);
        let json = format!("{}.json", vector.name);
        files.push((PathBuf::from(&bin), vector.frame.encode_framed()));
        files.push((PathBuf::from(&json), to_json(&message)));
        entries.push(ManifestEntry {
            name: vector.name.clone(),
            message: vector.frame.message_name(),
            bin,
            json,
            covers: oneof_cases(&message),
        });
    }
    let mut decode_only_entries = Vec::new();
    for vector in decode_only() {
        let bin = format!("{}.bin", vector.name);
        let json = format!("{}.json", vector.name);
        files.push((PathBuf::from(&bin), vector.framed()));
        files.push((
            PathBuf::from(&json),
            to_json(&vector.frame.to_dynamic(&pool)),
        ));
        decode_only_entries.push(DecodeOnlyEntry {
            name: vector.name,
            message: vector.frame.message_name(),
            bin,
            json,
            note: vector.note,
        });
    }
    let manifest = Manifest {
        framing: "bin: varint length prefix + message; json: proto3 JSON of the message",
        vectors: entries,
        decode_only: decode_only_entries,
    };
    files.push((PathBuf::from(MANIFEST), to_pretty_json(&manifest)));
    files
}

#[derive(Serialize)]
struct Manifest {
    framing: &'static str,
    vectors: Vec<ManifestEntry>,
    /// Frames whose `.bin` holds what the `.json` cannot (unknown fields): decode the `.bin`
    /// and compare with the `.json`; encoding the `.json` does not give the `.bin` back.
    decode_only: Vec<DecodeOnlyEntry>,
}

#[derive(Serialize)]
struct DecodeOnlyEntry {
    name: String,
    message: &'static str,
    bin: String,
    json: String,
    note: &'static str,
}

#[derive(Serialize)]
struct ManifestEntry {
    name: String,
    message: &'static str,
    bin: String,
    json: String,
    covers: Vec<String>,
}

/// The canonical proto3 JSON of `message` (lowerCamelCase names, default fields skipped,
/// 64-bit integers as strings), pretty-printed, with a trailing newline.
pub fn to_json(message: &DynamicMessage) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    message
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .expect("serializing to memory cannot fail");
    out.push(b'\n');
    out
}

fn to_pretty_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).expect("serializing to memory cannot fail");
    out.push(b'\n');
    out
}

/// The set oneof cases in `message` and every message inside it, depth first, as
/// `Message.oneof.field` (for example `ClientFrame.request.send`). Synthetic oneofs of proto3
/// `optional` fields are left out.
pub fn oneof_cases(message: &DynamicMessage) -> Vec<String> {
    let mut cases = Vec::new();
    collect_oneof_cases(message, &mut cases);
    cases
}

fn collect_oneof_cases(message: &DynamicMessage, cases: &mut Vec<String>) {
    for (field, value) in message.fields() {
        if let Some(oneof) = field
            .containing_oneof()
            .filter(|oneof| !oneof.is_synthetic())
        {
            let owner = oneof.parent_message().name().to_owned();
            cases.push(format!("{owner}.{}.{}", oneof.name(), field.name()));
        }
        collect_value(value, cases);
    }
}

fn collect_value(value: &Value, cases: &mut Vec<String>) {
    match value {
        Value::Message(inner) => collect_oneof_cases(inner, cases),
        Value::List(items) => items.iter().for_each(|item| collect_value(item, cases)),
        Value::Map(entries) => entries.values().for_each(|item| collect_value(item, cases)),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Sample values shared by the families.

/// 2026-01-01T00:00:00Z in Unix milliseconds: the reference time of every sample.
const T0: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
const GENERAL: &str = "room-general";
const DIRECT: &str = "dm-alice-bob";
const CALL_ID: &str = "5f0c6a9e-3b1d-4c47-9a6e-2d8f1b7c4e10";
/// 2^53 + 1: the smallest integer a JSON number (an IEEE double) cannot hold.
const BEYOND_DOUBLE: u64 = 9_007_199_254_740_993;
/// Opaque app data whose base64 form uses `+`, `/` and padding.
const APP_DATA: &[u8] = &[0xfb, 0xff, 0x00, 0x01];

/// The timestamp of the event at `seq` of `room-general`: created 30 days before T0, then
/// one event a minute up to seq 49, the message sent at T0 + 5 min.
fn event_ts(seq: u64) -> i64 {
    match seq {
        0 | 1 => T0 - 30 * DAY,
        seq => T0 + 5 * MINUTE - (49 - i64::try_from(seq).unwrap_or(49)) * MINUTE,
    }
}

fn client(name: &str, id: u64, request: Request) -> Vector {
    Vector {
        name: name.to_owned(),
        frame: Frame::Client(v1::ClientFrame {
            id,
            trace_id: String::new(),
            request: Some(request),
        }),
    }
}

fn reply(name: &str, request_id: u64, result: Outcome) -> Vector {
    server(
        name,
        server_frame::Frame::Reply(v1::Reply {
            request_id,
            result: Some(result),
        }),
    )
}

fn server(name: &str, frame: server_frame::Frame) -> Vector {
    Vector {
        name: name.to_owned(),
        frame: Frame::Server(v1::ServerFrame { frame: Some(frame) }),
    }
}

fn event(name: &str, kind: event::Kind) -> Vector {
    server(
        name,
        server_frame::Frame::Event(v1::Event { kind: Some(kind) }),
    )
}

/// A request and its reply, named `client/<field>` and `server/reply/<field>`.
macro_rules! pair {
    ($field:literal, $id:expr, $request:expr, $result:expr $(,)?) => {
        [
            client(concat!("client/", $field), $id, $request),
            reply(concat!("server/reply/", $field), $id, $result),
        ]
    };
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn general_room() -> v1::Room {
    v1::Room {
        id: GENERAL.to_owned(),
        kind: v1::RoomKind::Group.into(),
        name: "General".to_owned(),
        topic: "Company-wide news and chatter".to_owned(),
        history_visibility: v1::HistoryVisibility::Full.into(),
        created_by: "alice".to_owned(),
        created_at_ms: T0 - 30 * DAY,
        member_count: 3,
        member_cap: 500,
        last_seq: 42,
        app_data: Bytes::from_static(APP_DATA),
    }
}

fn direct_room() -> v1::Room {
    v1::Room {
        id: DIRECT.to_owned(),
        kind: v1::RoomKind::Direct.into(),
        created_by: "alice".to_owned(),
        created_at_ms: T0,
        member_count: 2,
        last_seq: 3,
        ..Default::default()
    }
}

fn member(user_id: &str, role: v1::Role, joined_seq: u64) -> v1::Member {
    v1::Member {
        user_id: user_id.to_owned(),
        role: role.into(),
        joined_seq,
        joined_at_ms: event_ts(joined_seq),
        restricted_until_ms: 0,
    }
}

fn text(text: &str) -> v1::Content {
    v1::Content {
        text: text.to_owned(),
        ..Default::default()
    }
}

/// Content with every field set: unicode text, an attachment, a mention and an app payload.
fn rich_content() -> v1::Content {
    v1::Content {
        text: "Héllo @bob — the launch plan 📎 日本語もOK".to_owned(),
        attachments: vec![v1::Attachment {
            url: "https://files.example.com/u/alice/plan.png".to_owned(),
            mime_type: "image/png".to_owned(),
            size_bytes: 482_113,
            name: "plan.png".to_owned(),
            width: 1280,
            height: 720,
            duration_ms: 0,
            thumbnail_url: "https://files.example.com/u/alice/plan.thumb.jpg".to_owned(),
        }],
        mentions: strings(&["bob"]),
        app_payload: Bytes::from_static(b"{\"poll\":false}"),
        app_payload_type: "launch-note/v1".to_owned(),
    }
}

fn preview(seq: u64, ordinal: u64, sender: &str, text: &str, at_ms: i64) -> v1::MessagePreview {
    v1::MessagePreview {
        seq,
        ordinal,
        sender: sender.to_owned(),
        text: text.to_owned(),
        created_at_ms: at_ms,
        attachment_count: 1,
        deleted: false,
    }
}

fn limits() -> v1::Limits {
    v1::Limits {
        max_client_frame_bytes: 65_536,
        max_server_frame_bytes: 1_048_576,
        max_content_bytes: 16_384,
        max_text_chars: 4000,
        max_app_payload_bytes: 4096,
        max_attachments: 10,
        max_mentions: 50,
        max_in_flight_requests: 64,
        max_page_size: 100,
        max_presence_watch: 200,
        max_group_members: 1000,
        send_rate_per_second: 5,
        send_burst: 20,
        idempotency_window_s: 86_400,
        typing_throttle_ms: 3000,
        typing_ttl_ms: 5000,
        room_send_rate_per_second: 40,
        room_send_burst: 80,
        contact_requests_per_minute: 20,
        contact_requests_burst: 10,
    }
}

// ---------------------------------------------------------------------------------------------
// Families.

fn session() -> Vec<Vector> {
    let connect = v1::ConnectRequest {
        token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl".to_owned(),
        client: Some(v1::ClientInfo {
            name: "chatwire-ts".to_owned(),
            version: "0.3.1".to_owned(),
            platform: "web".to_owned(),
        }),
        capabilities: strings(&["typing-datagrams", "x-unknown-feature"]),
        device_id: "device-7f3a".to_owned(),
    };
    let connected = v1::ConnectResponse {
        session_id: "sess-01JGQ4Z8X6".to_owned(),
        user_id: "alice".to_owned(),
        server: Some(v1::ServerInfo {
            name: "chatwire".to_owned(),
            version: "0.1.0".to_owned(),
            node_id: "node-a1".to_owned(),
        }),
        capabilities: strings(&["typing-datagrams"]),
        limits: Some(limits()),
        heartbeat_interval_ms: 25_000,
        server_time_ms: T0,
        token_expires_at_ms: T0 + 60 * MINUTE,
    };
    let ping = v1::PingRequest {
        client_time_ms: T0 + 15_000,
    };
    let pong = v1::PingResponse {
        client_time_ms: T0 + 15_000,
        server_time_ms: T0 + 15_012,
    };
    [
        pair!(
            "connect",
            1,
            Request::Connect(connect),
            Outcome::Connect(connected)
        ),
        pair!(
            "refresh",
            2,
            Request::Refresh(v1::RefreshRequest {
                token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsIm4iOjJ9.c2lnbmF0dXJlMg"
                    .to_owned(),
            }),
            Outcome::Refresh(v1::RefreshResponse {
                token_expires_at_ms: T0 + 120 * MINUTE,
            }),
        ),
        // An id beyond 2^53 pins the JSON string form of uint64 (and bigint-safe SDK ids).
        pair!(
            "ping",
            BEYOND_DOUBLE,
            Request::Ping(ping),
            Outcome::Ping(pong)
        ),
    ]
    .concat()
}

fn rooms() -> Vec<Vector> {
    [rooms_create(), rooms_members()].concat()
}

fn rooms_create() -> Vec<Vector> {
    let create = v1::CreateGroupRequest {
        name: "Launch 🚀".to_owned(),
        topic: "Everything about the v1 launch".to_owned(),
        member_ids: strings(&["bob", "carol"]),
        history_visibility: v1::HistoryVisibility::SinceJoin.into(),
        member_cap: 250,
        app_data: Bytes::from_static(APP_DATA),
        client_request_id: "9b2e4c1a-7d3f-4e8b-a6c5-1f0e2d3c4b5a".to_owned(),
    };
    let created = v1::Room {
        id: "room-launch".to_owned(),
        name: create.name.clone(),
        topic: create.topic.clone(),
        history_visibility: create.history_visibility,
        created_at_ms: T0,
        member_count: 3,
        member_cap: 250,
        last_seq: 3,
        ..general_room()
    };
    let update = v1::UpdateRoomRequest {
        room_id: GENERAL.to_owned(),
        name: Some("General ✨".to_owned()),
        // Present but empty: clears the topic, and JSON must still carry it.
        topic: Some(String::new()),
        history_visibility: Some(v1::HistoryVisibility::SinceJoin.into()),
        member_cap: Some(1000),
        app_data: Some(Bytes::from_static(b"theme=dark")),
    };
    let updated = v1::Room {
        name: "General ✨".to_owned(),
        topic: String::new(),
        history_visibility: v1::HistoryVisibility::SinceJoin.into(),
        member_cap: 1000,
        last_seq: 43,
        app_data: Bytes::from_static(b"theme=dark"),
        ..general_room()
    };
    let room_id = || GENERAL.to_owned();
    [
        pair!(
            "create_group",
            10,
            Request::CreateGroup(create),
            Outcome::CreateGroup(v1::CreateGroupResponse {
                room: Some(created),
            }),
        ),
        pair!(
            "open_direct",
            11,
            Request::OpenDirect(v1::OpenDirectRequest {
                user_id: "bob".to_owned(),
            }),
            Outcome::OpenDirect(v1::OpenDirectResponse {
                room: Some(direct_room()),
                created: true,
            }),
        ),
        pair!(
            "get_room",
            12,
            Request::GetRoom(v1::GetRoomRequest { room_id: room_id() }),
            Outcome::GetRoom(v1::GetRoomResponse {
                room: Some(general_room()),
                me: Some(member("alice", v1::Role::Owner, 1)),
            }),
        ),
        pair!(
            "update_room",
            13,
            Request::UpdateRoom(update),
            Outcome::UpdateRoom(v1::UpdateRoomResponse {
                room: Some(updated),
                seq: 43,
            }),
        ),
    ]
    .concat()
}

fn rooms_members() -> Vec<Vector> {
    let room_id = || GENERAL.to_owned();
    [
        pair!(
            "list_members",
            14,
            Request::ListMembers(v1::ListMembersRequest {
                room_id: room_id(),
                after_user_id: "alice".to_owned(),
                limit: 2,
            }),
            Outcome::ListMembers(v1::ListMembersResponse {
                members: vec![
                    member("bob", v1::Role::Admin, 2),
                    member("carol", v1::Role::Member, 3),
                ],
                has_more: true,
            }),
        ),
        pair!(
            "add_members",
            15,
            Request::AddMembers(v1::AddMembersRequest {
                room_id: room_id(),
                user_ids: strings(&["dave", "erin"]),
                role: v1::Role::Member.into(),
            }),
            Outcome::AddMembers(v1::AddMembersResponse {
                added: vec![
                    member("dave", v1::Role::Member, 44),
                    member("erin", v1::Role::Member, 45),
                ],
            }),
        ),
        pair!(
            "remove_member",
            16,
            Request::RemoveMember(v1::RemoveMemberRequest {
                room_id: room_id(),
                user_id: "erin".to_owned(),
            }),
            Outcome::RemoveMember(v1::RemoveMemberResponse { seq: 46 }),
        ),
        pair!(
            "set_role",
            17,
            Request::SetRole(v1::SetRoleRequest {
                room_id: room_id(),
                user_id: "dave".to_owned(),
                role: v1::Role::Admin.into(),
            }),
            Outcome::SetRole(v1::SetRoleResponse { seq: 47 }),
        ),
        pair!(
            "leave_room",
            18,
            Request::LeaveRoom(v1::LeaveRoomRequest {
                room_id: "room-launch".to_owned(),
            }),
            Outcome::LeaveRoom(v1::LeaveRoomResponse { seq: 4 }),
        ),
    ]
    .concat()
}

fn messages() -> Vec<Vector> {
    let send = v1::ClientFrame {
        id: 20,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        request: Some(Request::Send(v1::SendRequest {
            room_id: GENERAL.to_owned(),
            client_msg_id: "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".to_owned(),
            content: Some(rich_content()),
            reply_to_seq: 40,
            thread_root_seq: 38,
        })),
    };
    let mut vectors = vec![
        Vector {
            name: "client/send".to_owned(),
            frame: Frame::Client(send),
        },
        reply(
            "server/reply/send",
            20,
            Outcome::Send(v1::SendResponse {
                seq: 49,
                ordinal: 31,
                created_at_ms: event_ts(49),
                duplicate: false,
            }),
        ),
    ];
    vectors.extend(message_changes());
    vectors
}

fn message_changes() -> Vec<Vector> {
    let room_id = || GENERAL.to_owned();
    [
        pair!(
            "edit",
            21,
            Request::Edit(v1::EditRequest {
                room_id: room_id(),
                target_seq: 49,
                content: Some(text("Héllo @bob — the *final* launch plan 📎")),
            }),
            Outcome::Edit(v1::EditResponse {
                seq: 50,
                edited_at_ms: event_ts(50),
            }),
        ),
        pair!(
            "delete",
            22,
            Request::Delete(v1::DeleteRequest {
                reason: String::new(),
                room_id: room_id(),
                target_seq: 45,
            }),
            Outcome::Delete(v1::DeleteResponse { seq: 51 }),
        ),
        pair!(
            "react",
            23,
            Request::React(v1::ReactRequest {
                room_id: room_id(),
                target_seq: 49,
                emoji: "👍🏽".to_owned(),
                add: true,
            }),
            Outcome::React(v1::ReactResponse { seq: 52 }),
        ),
    ]
    .concat()
}

fn history() -> Vec<Vector> {
    let before = v1::HistoryRequest {
        room_id: GENERAL.to_owned(),
        position: Some(history_request::Position::BeforeSeq(49)),
        limit: 20,
        thread_root_seq: 0,
    };
    let after = v1::HistoryRequest {
        room_id: GENERAL.to_owned(),
        position: Some(history_request::Position::AfterSeq(38)),
        limit: 50,
        thread_root_seq: 38,
    };
    let mut vectors = vec![
        client("client/history/before_seq", 30, Request::History(before)),
        client("client/history/after_seq", 31, Request::History(after)),
        reply(
            "server/reply/history",
            30,
            Outcome::History(v1::HistoryResponse {
                messages: vec![tombstone(), posted_message()],
                has_more: true,
                first_visible_seq: 1,
                room_id: GENERAL.to_owned(),
            }),
        ),
    ];
    vectors.extend(subscriptions());
    vectors
}

fn posted_message() -> v1::Message {
    v1::Message {
        room_id: GENERAL.to_owned(),
        seq: 41,
        ordinal: 27,
        sender: "bob".to_owned(),
        client_msg_id: "c6a1f0e2-3b4d-4e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        content: Some(v1::Content {
            mentions: strings(&["alice"]),
            ..text("Ça marche, @alice ! Rendez-vous à 15 h ☕")
        }),
        created_at_ms: event_ts(41),
        edited_at_ms: event_ts(41) + MINUTE,
        deleted: false,
        reply_to_seq: 38,
        thread_root_seq: 38,
        reactions: vec![v1::ReactionSummary {
            emoji: "🎉".to_owned(),
            count: 2,
            me: true,
            user_ids: strings(&["alice", "carol"]),
        }],
        thread_reply_count: 0,
    }
}

fn tombstone() -> v1::Message {
    v1::Message {
        room_id: GENERAL.to_owned(),
        seq: 45,
        ordinal: 29,
        sender: "carol".to_owned(),
        client_msg_id: "d7b2a1f3-4c5e-4f60-9bac-1d2e3f4a5b6c".to_owned(),
        content: None,
        created_at_ms: event_ts(45),
        deleted: true,
        ..Default::default()
    }
}

fn subscriptions() -> Vec<Vector> {
    let room_id = || GENERAL.to_owned();
    let replayed = vec![
        room_event_of(
            41,
            "bob",
            room_event::Kind::MessageCreated(message_created()),
        ),
        room_event_of(
            42,
            "alice",
            room_event::Kind::ReactionChanged(v1::ReactionChanged {
                target_seq: 41,
                emoji: "🎉".to_owned(),
                added: true,
            }),
        ),
    ];
    [
        pair!(
            "subscribe",
            32,
            Request::Subscribe(v1::SubscribeRequest {
                room_id: room_id(),
                after_seq: 40,
                limit: 100,
            }),
            Outcome::Subscribe(v1::SubscribeResponse {
                room_id: room_id(),
                events: replayed,
                head_seq: 42,
                complete: true,
                first_visible_seq: 1,
            }),
        ),
        pair!(
            "unsubscribe",
            33,
            Request::Unsubscribe(v1::UnsubscribeRequest { room_id: room_id() }),
            Outcome::Unsubscribe(v1::UnsubscribeResponse { last_seq: 52 }),
        ),
        pair!(
            "sync",
            34,
            Request::Sync(v1::SyncRequest {
                cursor: "c2VxOjQy".to_owned(),
                limit: 20,
            }),
            Outcome::Sync(v1::SyncResponse {
                rooms: vec![room_summary()],
                next_cursor: "c2VxOjg0".to_owned(),
                caught_up: false,
            }),
        ),
    ]
    .concat()
}

fn room_summary() -> v1::RoomSummary {
    v1::RoomSummary {
        room: Some(general_room()),
        role: v1::Role::Owner.into(),
        last_seq: 49,
        last_ordinal: 31,
        read_seq: 41,
        delivered_seq: 49,
        unread_count: 3,
        last_message: Some(preview(
            49,
            31,
            "alice",
            "Héllo @bob — the launch plan 📎",
            event_ts(49),
        )),
        muted_until_ms: T0 + DAY,
    }
}

fn receipts() -> Vec<Vector> {
    let room_id = || GENERAL.to_owned();
    [
        pair!(
            "mark_delivered",
            40,
            Request::MarkDelivered(v1::MarkDeliveredRequest {
                room_id: room_id(),
                seq: 52,
            }),
            Outcome::MarkDelivered(v1::MarkDeliveredResponse { delivered_seq: 52 }),
        ),
        pair!(
            "mark_read",
            41,
            Request::MarkRead(v1::MarkReadRequest {
                room_id: room_id(),
                seq: 50,
            }),
            Outcome::MarkRead(v1::MarkReadResponse {
                read_seq: 50,
                unread_count: 2,
            }),
        ),
        pair!(
            "get_receipts",
            42,
            Request::GetReceipts(v1::GetReceiptsRequest {
                room_id: room_id(),
                after_user_id: "alice".to_owned(),
                limit: 100,
            }),
            Outcome::GetReceipts(v1::GetReceiptsResponse {
                receipts: vec![receipt("bob", 52, 50), receipt("carol", 49, 41)],
                has_more: true,
            }),
        ),
    ]
    .concat()
}

fn receipt(user_id: &str, delivered_seq: u64, read_seq: u64) -> v1::Receipt {
    v1::Receipt {
        user_id: user_id.to_owned(),
        delivered_seq,
        read_seq,
    }
}

fn presence() -> Vec<Vector> {
    let typing = || {
        Request::Typing(v1::TypingRequest {
            room_id: GENERAL.to_owned(),
            active: true,
        })
    };
    let mut vectors = vec![
        client("client/typing", 50, typing()),
        // The datagram form: id 0, no reply.
        client("client/typing/datagram", 0, typing()),
        reply(
            "server/reply/typing",
            50,
            Outcome::Typing(v1::TypingResponse {}),
        ),
    ];
    vectors.extend(pair!(
        "watch_presence",
        51,
        Request::WatchPresence(v1::WatchPresenceRequest {
            user_ids: strings(&["bob", "carol"]),
            room_id: GENERAL.to_owned(),
        }),
        Outcome::WatchPresence(v1::WatchPresenceResponse {
            presences: vec![presence_of("bob", true), presence_of("carol", false)],
        }),
    ));
    vectors.extend(pair!(
        "unwatch_presence",
        52,
        Request::UnwatchPresence(v1::UnwatchPresenceRequest {
            user_ids: strings(&["carol"]),
            room_id: GENERAL.to_owned(),
        }),
        Outcome::UnwatchPresence(v1::UnwatchPresenceResponse {}),
    ));
    vectors
}

fn presence_of(user_id: &str, online: bool) -> v1::Presence {
    v1::Presence {
        user_id: user_id.to_owned(),
        online,
        last_seen_ms: if online { T0 } else { T0 - 3 * DAY },
    }
}

fn calls() -> Vec<Vector> {
    use call_signal::Kind;
    let reason = |reason: &str| reason.to_owned();
    let steps: [(&'static str, u64, &str, Kind); 8] = [
        (
            "client/call_signal/invite",
            60,
            "",
            Kind::Invite(v1::CallInvite { video: true }),
        ),
        (
            "client/call_signal/ringing",
            61,
            "",
            Kind::Ringing(v1::CallRinging {}),
        ),
        (
            "client/call_signal/accept",
            62,
            "",
            Kind::Accept(v1::CallAccept {}),
        ),
        (
            "client/call_signal/reject",
            63,
            "",
            Kind::Reject(v1::CallReject {
                reason: reason("busy"),
            }),
        ),
        (
            "client/call_signal/offer",
            64,
            "sess-bob-phone",
            Kind::Offer(sdp_offer()),
        ),
        (
            "client/call_signal/answer",
            65,
            "sess-bob-phone",
            Kind::Answer(v1::SessionDescription {
                sdp: "v=0\r\no=- 7614219274584779017 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                    .to_owned(),
            }),
        ),
        (
            "client/call_signal/ice_candidate",
            66,
            "sess-bob-phone",
            Kind::IceCandidate(v1::IceCandidate {
                candidate: "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx \
                            raddr 192.168.1.20 rport 46154"
                    .to_owned(),
                sdp_mid: "0".to_owned(),
                sdp_mline_index: 1,
            }),
        ),
        (
            "client/call_signal/hangup",
            67,
            "sess-bob-phone",
            Kind::Hangup(v1::CallHangup {
                reason: reason("ended"),
            }),
        ),
    ];
    let mut vectors: Vec<Vector> = steps
        .into_iter()
        .map(|(name, id, session, kind)| {
            client(name, id, Request::CallSignal(call_request(session, kind)))
        })
        .collect();
    vectors.push(reply(
        "server/reply/call_signal",
        60,
        Outcome::CallSignal(v1::CallSignalResponse {
            delivered_sessions: 2,
        }),
    ));
    vectors
}

fn call_request(target_session_id: &str, kind: call_signal::Kind) -> v1::CallSignalRequest {
    v1::CallSignalRequest {
        call_id: CALL_ID.to_owned(),
        room_id: DIRECT.to_owned(),
        target_user_id: "bob".to_owned(),
        target_session_id: target_session_id.to_owned(),
        signal: Some(v1::CallSignal { kind: Some(kind) }),
    }
}

fn sdp_offer() -> v1::SessionDescription {
    v1::SessionDescription {
        sdp: "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
              m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
            .to_owned(),
    }
}

fn account() -> Vec<Vector> {
    let user = |user_id: &str| user_id.to_owned();
    let push_token = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
    [
        pair!(
            "block_user",
            70,
            Request::BlockUser(v1::BlockUserRequest {
                user_id: user("mallory"),
            }),
            Outcome::BlockUser(v1::BlockUserResponse {}),
        ),
        pair!(
            "unblock_user",
            71,
            Request::UnblockUser(v1::UnblockUserRequest {
                user_id: user("mallory"),
            }),
            Outcome::UnblockUser(v1::UnblockUserResponse {}),
        ),
        pair!(
            "list_blocked",
            72,
            Request::ListBlocked(v1::ListBlockedRequest {}),
            Outcome::ListBlocked(v1::ListBlockedResponse {
                user_ids: strings(&["mallory", "spam-bot-9"]),
            }),
        ),
        pair!(
            "register_push_token",
            73,
            Request::RegisterPushToken(v1::RegisterPushTokenRequest {
                platform: v1::PushPlatform::Apns.into(),
                token: push_token.to_owned(),
                device_id: "device-7f3a".to_owned(),
            }),
            Outcome::RegisterPushToken(v1::RegisterPushTokenResponse {}),
        ),
        pair!(
            "unregister_push_token",
            74,
            Request::UnregisterPushToken(v1::UnregisterPushTokenRequest {
                token: push_token.to_owned(),
            }),
            Outcome::UnregisterPushToken(v1::UnregisterPushTokenResponse {}),
        ),
        // The largest int64 mutes forever; it pins the JSON string form of int64.
        pair!(
            "mute_room",
            75,
            Request::MuteRoom(v1::MuteRoomRequest {
                room_id: GENERAL.to_owned(),
                until_ms: i64::MAX,
            }),
            Outcome::MuteRoom(v1::MuteRoomResponse {
                muted_until_ms: i64::MAX,
            }),
        ),
        // Highlights are code point offsets: "Ça" counts 2, so "Rendez" starts at 20.
        pair!(
            "search",
            76,
            Request::Search(v1::SearchRequest {
                query: "\"rendez vous\" café".to_owned(),
                room_id: GENERAL.to_owned(),
                sender: "bob".to_owned(),
                after_ms: event_ts(1),
                before_ms: event_ts(41) + MINUTE,
                cursor: String::new(),
                limit: 20,
            }),
            Outcome::Search(v1::SearchResponse {
                hits: vec![v1::SearchHit {
                    room_id: GENERAL.to_owned(),
                    seq: 41,
                    snippet: "Ça marche, @alice ! Rendez-vous à 15 h ☕".to_owned(),
                    highlights: vec![
                        v1::TextRange { start: 20, end: 26 },
                        v1::TextRange { start: 27, end: 31 },
                    ],
                    message: Some(posted_message()),
                }],
                next_cursor: "s1.18bcfe56800.9f86d081884c7d65.29".to_owned(),
            }),
        ),
    ]
    .concat()
}

/// A review entry of message `seq` of GENERAL: reported by carol, flagged for a word, reviewed
/// by `by` unless open.
fn review(seq: u64, status: v1::ReviewStatus, by: &str) -> v1::ReviewEntry {
    let reviewed = status != v1::ReviewStatus::Open;
    v1::ReviewEntry {
        review_id: format!("{GENERAL}:{seq}"),
        target_seq: seq,
        sender: "mallory".to_owned(),
        opened_ms: event_ts(seq) + 1_000,
        flagged: true,
        score: 50,
        reasons: vec!["words.flag".to_owned()],
        reports: vec![v1::MessageReport {
            reporter: "carol".to_owned(),
            reason: "spam".to_owned(),
            at_ms: event_ts(seq) + 2_000,
        }],
        status: status.into(),
        reviewed_by: by.to_owned(),
        reviewed_at_ms: if reviewed { event_ts(seq) + 60_000 } else { 0 },
        review_reason: if reviewed {
            "spam".to_owned()
        } else {
            String::new()
        },
    }
}

/// Moderation (issue 21): RestrictMember, GetEditHistory, ReportMessage, ListReviews,
/// ResolveReview, ROLE_MODERATOR, a MemberRestricted event and ERROR_CODE_RESTRICTED.
fn moderation() -> Vec<Vector> {
    let version = |seq: u64, body: &str| v1::MessageVersion {
        seq,
        ts_ms: event_ts(seq),
        content: Some(text(body)),
        redacted: false,
    };
    let mut vectors: Vec<Vector> = [
        pair!(
            "restrict_member",
            110,
            Request::RestrictMember(v1::RestrictMemberRequest {
                room_id: GENERAL.to_owned(),
                user_id: "mallory".to_owned(),
                until_ms: 1_767_312_000_000,
                reason: "flooding the room".to_owned(),
            }),
            Outcome::RestrictMember(v1::RestrictMemberResponse { seq: 61 }),
        ),
        pair!(
            "get_edit_history",
            111,
            Request::GetEditHistory(v1::GetEditHistoryRequest {
                room_id: GENERAL.to_owned(),
                target_seq: 45,
            }),
            Outcome::GetEditHistory(v1::GetEditHistoryResponse {
                versions: vec![
                    version(45, "Lunch at noon?"),
                    version(48, "Lunch at 12:30?")
                ],
                deleted: false,
                deleted_seq: 0,
            }),
        ),
        pair!(
            "report_message",
            112,
            Request::ReportMessage(v1::ReportMessageRequest {
                room_id: GENERAL.to_owned(),
                target_seq: 45,
                reason: "spam".to_owned(),
            }),
            Outcome::ReportMessage(v1::ReportMessageResponse {
                report_id: format!("{GENERAL}:45"),
            }),
        ),
        pair!(
            "list_reviews",
            114,
            Request::ListReviews(v1::ListReviewsRequest {
                room_id: GENERAL.to_owned(),
                after_seq: 0,
                limit: 50,
                include_reviewed: true,
            }),
            Outcome::ListReviews(v1::ListReviewsResponse {
                entries: vec![
                    review(45, v1::ReviewStatus::Open, ""),
                    review(47, v1::ReviewStatus::Approved, "bob"),
                ],
                has_more: false,
            }),
        ),
        pair!(
            "resolve_review",
            115,
            Request::ResolveReview(v1::ResolveReviewRequest {
                room_id: GENERAL.to_owned(),
                target_seq: 45,
                remove: true,
                reason: "spam".to_owned(),
            }),
            Outcome::ResolveReview(v1::ResolveReviewResponse {
                entry: Some(review(45, v1::ReviewStatus::Removed, "bob")),
            }),
        ),
    ]
    .concat();
    vectors.extend([
        room_event(
            "server/event/room/member_restricted",
            61,
            "bob",
            room_event::Kind::MemberRestricted(v1::MemberRestricted {
                user_id: "mallory".to_owned(),
                until_ms: 1_767_312_000_000,
                reason: "flooding the room".to_owned(),
            }),
        ),
        room_event(
            "server/event/room/member_role_changed/moderator",
            62,
            "alice",
            room_event::Kind::MemberRoleChanged(v1::MemberRoleChanged {
                user_id: "bob".to_owned(),
                role: v1::Role::Moderator.into(),
            }),
        ),
        reply(
            "server/reply/error/restricted",
            113,
            Outcome::Error(v1::Error {
                code: v1::ErrorCode::Restricted.into(),
                message: "restricted by a moderator until 1767312000000".to_owned(),
                retryable: false,
                retry_after_ms: 3_600_000,
                field: String::new(),
            }),
        ),
    ]);
    vectors
}

/// Contacts (issue 22): the six requests, every ContactState, and a ContactChanged event.
fn contacts() -> Vec<Vector> {
    let contact = |user: &str, state: v1::ContactState, since_ms: i64| v1::Contact {
        user_id: user.to_owned(),
        state: state.into(),
        since_ms,
    };
    let mut vectors: Vec<Vector> = [
        pair!(
            "send_contact_request",
            130,
            Request::SendContactRequest(v1::SendContactRequestRequest {
                user_id: "bob".to_owned(),
            }),
            Outcome::SendContactRequest(v1::SendContactRequestResponse {
                contact: Some(contact("bob", v1::ContactState::Outgoing, T0)),
            }),
        ),
        pair!(
            "accept_contact_request",
            131,
            Request::AcceptContactRequest(v1::AcceptContactRequestRequest {
                user_id: "carol".to_owned(),
            }),
            Outcome::AcceptContactRequest(v1::AcceptContactRequestResponse {
                contact: Some(contact("carol", v1::ContactState::Accepted, T0 + MINUTE)),
            }),
        ),
        pair!(
            "decline_contact_request",
            132,
            Request::DeclineContactRequest(v1::DeclineContactRequestRequest {
                user_id: "mallory".to_owned(),
            }),
            Outcome::DeclineContactRequest(v1::DeclineContactRequestResponse {}),
        ),
        pair!(
            "cancel_contact_request",
            133,
            Request::CancelContactRequest(v1::CancelContactRequestRequest {
                user_id: "dave".to_owned(),
            }),
            Outcome::CancelContactRequest(v1::CancelContactRequestResponse {}),
        ),
        pair!(
            "remove_contact",
            134,
            Request::RemoveContact(v1::RemoveContactRequest {
                user_id: "erin".to_owned(),
            }),
            Outcome::RemoveContact(v1::RemoveContactResponse {}),
        ),
        pair!(
            "list_contacts",
            135,
            Request::ListContacts(v1::ListContactsRequest {
                state: v1::ContactState::Unspecified.into(),
                after_user_id: "alice".to_owned(),
                limit: 3,
            }),
            Outcome::ListContacts(v1::ListContactsResponse {
                contacts: vec![
                    contact("bob", v1::ContactState::Outgoing, T0),
                    contact("carol", v1::ContactState::Accepted, T0 + MINUTE),
                    contact("frank", v1::ContactState::Incoming, T0 + 2 * MINUTE),
                ],
                has_more: true,
            }),
        ),
    ]
    .concat();
    vectors.push(event(
        "server/event/contact_changed",
        event::Kind::ContactChanged(v1::ContactChanged {
            contact: Some(contact("carol", v1::ContactState::Accepted, T0 + MINUTE)),
            actor: "carol".to_owned(),
        }),
    ));
    vectors
}

fn errors() -> Vec<Vector> {
    vec![
        reply(
            "server/reply/error",
            24,
            Outcome::Error(v1::Error {
                code: v1::ErrorCode::RateLimited.into(),
                message: "send rate exceeded: 5 messages per second".to_owned(),
                retryable: true,
                retry_after_ms: 1200,
                field: String::new(),
            }),
        ),
        reply(
            "server/reply/error/invalid_argument",
            25,
            Outcome::Error(v1::Error {
                code: v1::ErrorCode::InvalidArgument.into(),
                message: "content.text is longer than 4000 characters".to_owned(),
                retryable: false,
                retry_after_ms: 0,
                field: "content.text".to_owned(),
            }),
        ),
    ]
}

fn room_event_of(seq: u64, sender: &str, kind: room_event::Kind) -> v1::RoomEvent {
    v1::RoomEvent {
        room_id: GENERAL.to_owned(),
        seq,
        ts_ms: event_ts(seq),
        sender: sender.to_owned(),
        kind: Some(kind),
    }
}

fn room_event(name: &str, seq: u64, sender: &str, kind: room_event::Kind) -> Vector {
    event(name, event::Kind::Room(room_event_of(seq, sender, kind)))
}

fn message_created() -> v1::MessageCreated {
    v1::MessageCreated {
        ordinal: 27,
        client_msg_id: "c6a1f0e2-3b4d-4e5f-8a9b-0c1d2e3f4a5b".to_owned(),
        content: Some(text("Ça marche, @alice ! Rendez-vous à 15 h ☕")),
        reply_to_seq: 38,
        thread_root_seq: 38,
        redacted: false,
    }
}

fn room_events() -> Vec<Vector> {
    use room_event::Kind;
    let founded = v1::Room {
        member_count: 1,
        last_seq: 1,
        ..general_room()
    };
    let user = |user_id: &str| user_id.to_owned();
    vec![
        room_event(
            "server/event/room/room_created",
            1,
            "alice",
            Kind::RoomCreated(v1::RoomCreated {
                room: Some(founded),
            }),
        ),
        room_event(
            "server/event/room/message_created",
            49,
            "alice",
            Kind::MessageCreated(v1::MessageCreated {
                ordinal: 31,
                client_msg_id: "0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a".to_owned(),
                content: Some(rich_content()),
                reply_to_seq: 40,
                thread_root_seq: 38,
                redacted: false,
            }),
        ),
        room_event(
            "server/event/room/message_edited",
            50,
            "alice",
            Kind::MessageEdited(v1::MessageEdited {
                target_seq: 49,
                content: Some(text("Héllo @bob — the *final* launch plan 📎")),
                redacted: false,
            }),
        ),
        room_event(
            "server/event/room/message_deleted",
            51,
            "alice",
            Kind::MessageDeleted(v1::MessageDeleted {
                target_seq: 45,
                reason: String::new(),
            }),
        ),
        room_event(
            "server/event/room/reaction_changed",
            52,
            "bob",
            Kind::ReactionChanged(v1::ReactionChanged {
                target_seq: 49,
                emoji: "👍🏽".to_owned(),
                added: true,
            }),
        ),
        room_event(
            "server/event/room/member_joined",
            44,
            "alice",
            Kind::MemberJoined(v1::MemberJoined {
                user_id: user("dave"),
                role: v1::Role::Member.into(),
            }),
        ),
        room_event(
            "server/event/room/member_left",
            46,
            "alice",
            Kind::MemberLeft(v1::MemberLeft {
                user_id: user("erin"),
                reason: v1::LeaveReason::Removed.into(),
            }),
        ),
        room_event(
            "server/event/room/member_role_changed",
            47,
            "alice",
            Kind::MemberRoleChanged(v1::MemberRoleChanged {
                user_id: user("dave"),
                role: v1::Role::Admin.into(),
            }),
        ),
        room_event(
            "server/event/room/room_updated",
            43,
            "bob",
            Kind::RoomUpdated(v1::RoomUpdated {
                room: Some(v1::Room {
                    topic: "Launch day is Friday 🎯".to_owned(),
                    ..general_room()
                }),
            }),
        ),
    ]
}

fn user_events() -> Vec<Vector> {
    [live_events(), room_list_events(), connection_events()].concat()
}

fn live_events() -> Vec<Vector> {
    use event::Kind;
    vec![
        event(
            "server/event/receipts_changed",
            Kind::ReceiptsChanged(v1::ReceiptsChanged {
                room_id: GENERAL.to_owned(),
                receipts: vec![receipt("bob", 52, 52), receipt("carol", 52, 49)],
            }),
        ),
        event(
            "server/event/typing_changed",
            Kind::TypingChanged(v1::TypingChanged {
                room_id: GENERAL.to_owned(),
                user_id: "bob".to_owned(),
                active: true,
                expires_in_ms: 5000,
            }),
        ),
        event(
            "server/event/presence",
            Kind::Presence(presence_of("carol", false)),
        ),
        event(
            "server/event/call_signal_received",
            Kind::CallSignalReceived(v1::CallSignalReceived {
                call_id: CALL_ID.to_owned(),
                room_id: DIRECT.to_owned(),
                from_user_id: "alice".to_owned(),
                from_session_id: "sess-01JGQ4Z8X6".to_owned(),
                signal: Some(v1::CallSignal {
                    kind: Some(call_signal::Kind::Offer(sdp_offer())),
                }),
            }),
        ),
    ]
}

fn room_list_events() -> Vec<Vector> {
    use event::Kind;
    vec![
        event(
            "server/event/room_added",
            Kind::RoomAdded(v1::RoomAdded {
                room: Some(general_room()),
                me: Some(member("dave", v1::Role::Member, 44)),
            }),
        ),
        event(
            "server/event/room_removed",
            Kind::RoomRemoved(v1::RoomRemoved {
                room_id: GENERAL.to_owned(),
                reason: v1::LeaveReason::Removed.into(),
                seq: 46,
            }),
        ),
        event(
            "server/event/room_changed",
            Kind::RoomChanged(v1::RoomChanged {
                room: Some(general_room()),
            }),
        ),
        event(
            "server/event/read_position_moved",
            Kind::ReadPositionMoved(v1::ReadPositionMoved {
                room_id: GENERAL.to_owned(),
                read_seq: 50,
                unread_count: 2,
            }),
        ),
        event(
            "server/event/room_activity",
            Kind::RoomActivity(v1::RoomActivity {
                room_id: "room-launch".to_owned(),
                last_seq: 9,
                last_message: Some(preview(
                    9,
                    4,
                    "carol",
                    "Who owns the release notes? 📝",
                    T0 + 90 * MINUTE,
                )),
                unread_count: 4,
            }),
        ),
    ]
}

fn connection_events() -> Vec<Vector> {
    use event::Kind;
    vec![
        event(
            "server/event/heartbeat",
            Kind::Heartbeat(v1::Heartbeat {
                server_time_ms: T0 + 25_000,
            }),
        ),
        event(
            "server/event/disconnect",
            Kind::Disconnect(v1::Disconnect {
                code: v1::CloseCode::ServerDraining.into(),
                reason: "node-a1 is draining for an upgrade".to_owned(),
                reconnect: true,
                reconnect_delay_ms: 2000,
            }),
        ),
        event(
            "server/event/degraded",
            Kind::Degraded(v1::Degraded {
                shed: strings(&["typing", "presence"]),
                expected_ms: 30_000,
            }),
        ),
        event(
            "server/event/token_expiring",
            Kind::TokenExpiring(v1::TokenExpiring {
                expires_at_ms: T0 + 60 * MINUTE,
            }),
        ),
    ]
}
