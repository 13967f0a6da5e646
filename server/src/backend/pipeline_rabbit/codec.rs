//! The wire form of room commands and of the writer's answers, as they travel through the
//! shard queues and back on direct reply-to: hand-declared prost messages that embed the
//! protocol's own v1 types (Content, Room, Member, SendResponse), so the fields keep the
//! protocol's encoding and only the envelope is defined here.
//!
//! Decoding parses ids and enums once, at this edge; a malformed body is a
//! [`CodecError`], never a panic. Error texts that the domain holds as `&'static str` are
//! interned (a bounded set: the writer produces a fixed set of texts).

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use chatwire_protocol::v1;
use prost::Message;

use crate::chat::command::{
    CreateGroup, Outcome, RoomCommand, RoomOp, RoomSettings, SendOp, Verdict,
};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not a valid protobuf message of the expected type.
    #[error("undecodable body: {0}")]
    Protobuf(String),
    /// A field that must be present is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field holds a value outside its domain.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<prost::DecodeError> for CodecError {
    fn from(err: prost::DecodeError) -> Self {
        CodecError::Protobuf(err.to_string())
    }
}

// ----- messages -------------------------------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
struct WireCommand {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(string, tag = "2")]
    actor: String,
    #[prost(string, tag = "3")]
    trace_id: String,
    #[prost(bool, tag = "4")]
    privileged: bool,
    #[prost(
        oneof = "WireOp",
        tags = "10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23"
    )]
    op: Option<WireOp>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum WireOp {
    #[prost(message, tag = "10")]
    CreateGroup(WireCreateGroup),
    #[prost(string, tag = "11")]
    OpenDirect(String),
    #[prost(message, tag = "12")]
    UpdateRoom(WireSettings),
    #[prost(message, tag = "13")]
    AddMembers(WireAddMembers),
    #[prost(string, tag = "14")]
    RemoveMember(String),
    #[prost(message, tag = "15")]
    SetRole(WireSetRole),
    #[prost(message, tag = "16")]
    Leave(WireEmpty),
    #[prost(message, tag = "17")]
    Send(WireSend),
    #[prost(message, tag = "18")]
    Edit(WireEdit),
    #[prost(uint64, tag = "19")]
    Delete(u64),
    #[prost(message, tag = "20")]
    React(WireReact),
    /// A Delete with a reason (one without keeps tag 19, so older nodes still read it).
    #[prost(message, tag = "21")]
    DeleteWithReason(WireDelete),
    #[prost(message, tag = "22")]
    Restrict(WireRestrict),
    #[prost(message, tag = "23")]
    ModeratedSend(WireModeratedSend),
}

#[derive(Clone, PartialEq, Message)]
struct WireModeratedSend {
    #[prost(message, optional, tag = "1")]
    send: Option<WireSend>,
    #[prost(uint32, tag = "2")]
    score: u32,
    #[prost(bool, tag = "3")]
    flagged: bool,
    #[prost(string, repeated, tag = "4")]
    reasons: Vec<String>,
    #[prost(message, optional, tag = "5")]
    masked: Option<v1::Content>,
}

#[derive(Clone, PartialEq, Message)]
struct WireDelete {
    #[prost(uint64, tag = "1")]
    target_seq: u64,
    #[prost(string, tag = "2")]
    reason: String,
}

#[derive(Clone, PartialEq, Message)]
struct WireRestrict {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(int64, tag = "2")]
    until_ms: i64,
    #[prost(string, tag = "3")]
    reason: String,
}

#[derive(Clone, PartialEq, Message)]
struct WireEmpty {}

#[derive(Clone, PartialEq, Message)]
struct WireCreateGroup {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "2")]
    topic: String,
    #[prost(string, repeated, tag = "3")]
    members: Vec<String>,
    #[prost(int32, tag = "4")]
    history_visibility: i32,
    #[prost(uint32, tag = "5")]
    member_cap: u32,
    #[prost(bytes = "bytes", tag = "6")]
    app_data: bytes::Bytes,
}

#[derive(Clone, PartialEq, Message)]
struct WireSettings {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    topic: Option<String>,
    #[prost(int32, optional, tag = "3")]
    history_visibility: Option<i32>,
    #[prost(uint32, optional, tag = "4")]
    member_cap: Option<u32>,
    #[prost(bytes = "bytes", optional, tag = "5")]
    app_data: Option<bytes::Bytes>,
}

#[derive(Clone, PartialEq, Message)]
struct WireAddMembers {
    #[prost(string, repeated, tag = "1")]
    users: Vec<String>,
    #[prost(int32, tag = "2")]
    role: i32,
}

#[derive(Clone, PartialEq, Message)]
struct WireSetRole {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(int32, tag = "2")]
    role: i32,
}

#[derive(Clone, PartialEq, Message)]
struct WireSend {
    #[prost(string, tag = "1")]
    client_msg_id: String,
    #[prost(message, optional, tag = "2")]
    content: Option<v1::Content>,
    #[prost(uint64, tag = "3")]
    reply_to_seq: u64,
    #[prost(uint64, tag = "4")]
    thread_root_seq: u64,
}

#[derive(Clone, PartialEq, Message)]
struct WireEdit {
    #[prost(uint64, tag = "1")]
    target_seq: u64,
    #[prost(message, optional, tag = "2")]
    content: Option<v1::Content>,
}

#[derive(Clone, PartialEq, Message)]
struct WireReact {
    #[prost(uint64, tag = "1")]
    target_seq: u64,
    #[prost(string, tag = "2")]
    emoji: String,
    #[prost(bool, tag = "3")]
    add: bool,
}

#[derive(Clone, PartialEq, Message)]
struct WireReply {
    #[prost(oneof = "WireResult", tags = "1, 2, 3, 4, 5, 6, 7")]
    result: Option<WireResult>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum WireResult {
    #[prost(message, tag = "1")]
    Error(WireError),
    #[prost(message, tag = "2")]
    Room(WireRoom),
    #[prost(message, tag = "3")]
    Sent(v1::SendResponse),
    #[prost(message, tag = "4")]
    Updated(WireUpdated),
    #[prost(message, tag = "5")]
    Added(WireAdded),
    #[prost(message, tag = "6")]
    Edited(WireEdited),
    #[prost(uint64, tag = "7")]
    Seq(u64),
}

#[derive(Clone, PartialEq, Message)]
struct WireRoom {
    #[prost(message, optional, tag = "1")]
    room: Option<v1::Room>,
    #[prost(message, optional, tag = "2")]
    me: Option<v1::Member>,
    #[prost(bool, tag = "3")]
    created: bool,
}

#[derive(Clone, PartialEq, Message)]
struct WireUpdated {
    #[prost(message, optional, tag = "1")]
    room: Option<v1::Room>,
    #[prost(uint64, tag = "2")]
    seq: u64,
}

#[derive(Clone, PartialEq, Message)]
struct WireAdded {
    #[prost(message, repeated, tag = "1")]
    members: Vec<v1::Member>,
}

#[derive(Clone, PartialEq, Message)]
struct WireEdited {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(int64, tag = "2")]
    edited_at_ms: i64,
}

/// A `ChatError`: `kind` names the variant (the constants below), `text` and `field` carry
/// its payload.
#[derive(Clone, PartialEq, Message)]
struct WireError {
    #[prost(uint32, tag = "1")]
    kind: u32,
    #[prost(string, tag = "2")]
    text: String,
    #[prost(string, tag = "3")]
    field: String,
    #[prost(uint32, tag = "4")]
    retry_after_ms: u32,
}

/// Variant numbers of [`WireError::kind`]: an open set, never reused.
mod kind {
    pub(super) const UNAUTHENTICATED: u32 = 1;
    pub(super) const NOT_FOUND: u32 = 2;
    pub(super) const MESSAGE_NOT_FOUND: u32 = 3;
    pub(super) const PERMISSION_DENIED: u32 = 4;
    pub(super) const INVALID_ARGUMENT: u32 = 5;
    pub(super) const TOO_LARGE: u32 = 6;
    pub(super) const CONFLICT: u32 = 7;
    pub(super) const FAILED_PRECONDITION: u32 = 8;
    pub(super) const RATE_LIMITED: u32 = 9;
    pub(super) const UNAVAILABLE: u32 = 10;
    pub(super) const UNSUPPORTED: u32 = 11;
    pub(super) const INTERNAL: u32 = 12;
    pub(super) const TOKEN_REFUSED: u32 = 13;
    pub(super) const UNKNOWN_VALUE: u32 = 14;
    pub(super) const RESTRICTED: u32 = 15;
    pub(super) const CONTENT_REJECTED: u32 = 16;
}

// ----- commands -------------------------------------------------------------------------------

/// The wire form of a command.
pub fn encode_command(command: &RoomCommand) -> Vec<u8> {
    WireCommand {
        room: command.room.as_str().to_owned(),
        actor: command.actor.as_str().to_owned(),
        trace_id: command.trace_id.clone(),
        privileged: command.privileged,
        op: Some(op_to_wire(&command.op)),
    }
    .encode_to_vec()
}

/// A command from its wire form.
pub fn decode_command(body: &[u8]) -> Result<RoomCommand, CodecError> {
    let wire = WireCommand::decode(body)?;
    Ok(RoomCommand {
        room: RoomId::parse(&wire.room).map_err(|e| invalid("room", e))?,
        actor: user("actor", &wire.actor)?,
        op: op_from_wire(wire.op.ok_or(CodecError::Missing("op"))?)?,
        trace_id: wire.trace_id,
        privileged: wire.privileged,
    })
}

fn op_to_wire(op: &RoomOp) -> WireOp {
    match op {
        RoomOp::CreateGroup(c) => WireOp::CreateGroup(WireCreateGroup {
            name: c.name.clone(),
            topic: c.topic.clone(),
            members: ids(&c.members),
            history_visibility: c.history_visibility.into(),
            member_cap: c.member_cap,
            app_data: c.app_data.clone(),
        }),
        RoomOp::OpenDirect { other } => WireOp::OpenDirect(other.as_str().to_owned()),
        RoomOp::UpdateRoom(s) => WireOp::UpdateRoom(WireSettings {
            name: s.name.clone(),
            topic: s.topic.clone(),
            history_visibility: s.history_visibility.map(i32::from),
            member_cap: s.member_cap,
            app_data: s.app_data.clone(),
        }),
        RoomOp::AddMembers { users, role } => WireOp::AddMembers(WireAddMembers {
            users: ids(users),
            role: (*role).into(),
        }),
        RoomOp::RemoveMember { user } => WireOp::RemoveMember(user.as_str().to_owned()),
        RoomOp::SetRole { user, role } => WireOp::SetRole(WireSetRole {
            user: user.as_str().to_owned(),
            role: (*role).into(),
        }),
        RoomOp::Leave => WireOp::Leave(WireEmpty {}),
        RoomOp::Send(s) => WireOp::Send(send_to_wire(s)),
        RoomOp::ModeratedSend { send, verdict } => WireOp::ModeratedSend(WireModeratedSend {
            send: Some(send_to_wire(send)),
            score: verdict.score,
            flagged: verdict.flagged,
            reasons: verdict.reasons.clone(),
            masked: verdict.masked.clone(),
        }),
        RoomOp::Edit {
            target_seq,
            content,
        } => WireOp::Edit(WireEdit {
            target_seq: *target_seq,
            content: Some(content.clone()),
        }),
        RoomOp::Delete { target_seq, reason } if reason.is_empty() => WireOp::Delete(*target_seq),
        RoomOp::Delete { target_seq, reason } => WireOp::DeleteWithReason(WireDelete {
            target_seq: *target_seq,
            reason: reason.clone(),
        }),
        RoomOp::Restrict {
            user,
            until_ms,
            reason,
        } => WireOp::Restrict(WireRestrict {
            user: user.as_str().to_owned(),
            until_ms: *until_ms,
            reason: reason.clone(),
        }),
        RoomOp::React {
            target_seq,
            emoji,
            add,
        } => WireOp::React(WireReact {
            target_seq: *target_seq,
            emoji: emoji.clone(),
            add: *add,
        }),
    }
}

fn op_from_wire(op: WireOp) -> Result<RoomOp, CodecError> {
    Ok(match op {
        WireOp::CreateGroup(c) => RoomOp::CreateGroup(CreateGroup {
            name: c.name,
            topic: c.topic,
            members: users("members", &c.members)?,
            history_visibility: visibility(c.history_visibility)?,
            member_cap: c.member_cap,
            app_data: c.app_data,
        }),
        WireOp::OpenDirect(other) => RoomOp::OpenDirect {
            other: user("other", &other)?,
        },
        WireOp::UpdateRoom(s) => RoomOp::UpdateRoom(RoomSettings {
            name: s.name,
            topic: s.topic,
            history_visibility: s.history_visibility.map(visibility).transpose()?,
            member_cap: s.member_cap,
            app_data: s.app_data,
        }),
        WireOp::AddMembers(a) => RoomOp::AddMembers {
            users: users("users", &a.users)?,
            role: role(a.role)?,
        },
        WireOp::RemoveMember(u) => RoomOp::RemoveMember {
            user: user("user", &u)?,
        },
        WireOp::SetRole(s) => RoomOp::SetRole {
            user: user("user", &s.user)?,
            role: role(s.role)?,
        },
        WireOp::Leave(_) => RoomOp::Leave,
        WireOp::Send(s) => RoomOp::Send(send_from_wire(s)?),
        WireOp::ModeratedSend(m) => RoomOp::ModeratedSend {
            send: send_from_wire(m.send.ok_or(CodecError::Missing("send"))?)?,
            verdict: Verdict {
                score: m.score,
                flagged: m.flagged,
                reasons: m.reasons,
                masked: m.masked,
            },
        },
        WireOp::Edit(e) => RoomOp::Edit {
            target_seq: e.target_seq,
            content: e.content.ok_or(CodecError::Missing("content"))?,
        },
        WireOp::Delete(target_seq) => RoomOp::Delete {
            target_seq,
            reason: String::new(),
        },
        WireOp::DeleteWithReason(d) => RoomOp::Delete {
            target_seq: d.target_seq,
            reason: d.reason,
        },
        WireOp::Restrict(r) => RoomOp::Restrict {
            user: user("user", &r.user)?,
            until_ms: r.until_ms,
            reason: r.reason,
        },
        WireOp::React(r) => RoomOp::React {
            target_seq: r.target_seq,
            emoji: r.emoji,
            add: r.add,
        },
    })
}

fn send_to_wire(s: &SendOp) -> WireSend {
    WireSend {
        client_msg_id: s.client_msg_id.clone(),
        content: Some(s.content.clone()),
        reply_to_seq: s.reply_to_seq,
        thread_root_seq: s.thread_root_seq,
    }
}

fn send_from_wire(s: WireSend) -> Result<SendOp, CodecError> {
    Ok(SendOp {
        client_msg_id: s.client_msg_id,
        content: s.content.ok_or(CodecError::Missing("content"))?,
        reply_to_seq: s.reply_to_seq,
        thread_root_seq: s.thread_root_seq,
    })
}

fn ids(users: &[UserId]) -> Vec<String> {
    users.iter().map(|u| u.as_str().to_owned()).collect()
}

fn user(field: &'static str, raw: &str) -> Result<UserId, CodecError> {
    UserId::parse(raw).map_err(|e| invalid(field, e))
}

fn users(field: &'static str, raw: &[String]) -> Result<Vec<UserId>, CodecError> {
    raw.iter().map(|u| user(field, u)).collect()
}

fn role(raw: i32) -> Result<v1::Role, CodecError> {
    v1::Role::try_from(raw).map_err(|e| invalid("role", e))
}

fn visibility(raw: i32) -> Result<v1::HistoryVisibility, CodecError> {
    v1::HistoryVisibility::try_from(raw).map_err(|e| invalid("history_visibility", e))
}

fn invalid(field: &'static str, reason: impl ToString) -> CodecError {
    CodecError::Invalid {
        field,
        reason: reason.to_string(),
    }
}

// ----- replies --------------------------------------------------------------------------------

/// The wire form of a writer's answer.
pub fn encode_reply(result: &Result<Outcome, ChatError>) -> Vec<u8> {
    let result = match result {
        Ok(outcome) => outcome_to_wire(outcome),
        Err(err) => WireResult::Error(error_to_wire(err)),
    };
    WireReply {
        result: Some(result),
    }
    .encode_to_vec()
}

/// A writer's answer from its wire form.
pub fn decode_reply(body: &[u8]) -> Result<Result<Outcome, ChatError>, CodecError> {
    let wire = WireReply::decode(body)?;
    Ok(match wire.result.ok_or(CodecError::Missing("result"))? {
        WireResult::Error(e) => Err(error_from_wire(e)?),
        WireResult::Room(r) => Ok(Outcome::Room {
            room: r.room.ok_or(CodecError::Missing("room"))?,
            me: r.me,
            created: r.created,
        }),
        WireResult::Sent(s) => Ok(Outcome::Sent(s)),
        WireResult::Updated(u) => Ok(Outcome::Updated {
            room: u.room.ok_or(CodecError::Missing("room"))?,
            seq: u.seq,
        }),
        WireResult::Added(a) => Ok(Outcome::Added(a.members)),
        WireResult::Edited(e) => Ok(Outcome::Edited {
            seq: e.seq,
            edited_at_ms: e.edited_at_ms,
        }),
        WireResult::Seq(seq) => Ok(Outcome::Seq(seq)),
    })
}

fn outcome_to_wire(outcome: &Outcome) -> WireResult {
    match outcome {
        Outcome::Room { room, me, created } => WireResult::Room(WireRoom {
            room: Some(room.clone()),
            me: me.clone(),
            created: *created,
        }),
        Outcome::Sent(s) => WireResult::Sent(*s),
        Outcome::Updated { room, seq } => WireResult::Updated(WireUpdated {
            room: Some(room.clone()),
            seq: *seq,
        }),
        Outcome::Added(members) => WireResult::Added(WireAdded {
            members: members.clone(),
        }),
        Outcome::Edited { seq, edited_at_ms } => WireResult::Edited(WireEdited {
            seq: *seq,
            edited_at_ms: *edited_at_ms,
        }),
        Outcome::Seq(seq) => WireResult::Seq(*seq),
    }
}

fn error_to_wire(err: &ChatError) -> WireError {
    let mut wire = WireError::default();
    wire.kind = match err {
        ChatError::Unauthenticated => kind::UNAUTHENTICATED,
        ChatError::TokenRefused => kind::TOKEN_REFUSED,
        ChatError::NotFound => kind::NOT_FOUND,
        ChatError::MessageNotFound { field } => {
            wire.field = (*field).to_owned();
            kind::MESSAGE_NOT_FOUND
        }
        ChatError::PermissionDenied(text) => {
            wire.text = (*text).to_owned();
            kind::PERMISSION_DENIED
        }
        ChatError::InvalidArgument { field, reason } => {
            (wire.field, wire.text) = ((*field).to_owned(), reason.clone());
            kind::INVALID_ARGUMENT
        }
        ChatError::TooLarge { field, reason } => {
            (wire.field, wire.text) = ((*field).to_owned(), reason.clone());
            kind::TOO_LARGE
        }
        ChatError::Conflict(text) => {
            wire.text = (*text).to_owned();
            kind::CONFLICT
        }
        ChatError::FailedPrecondition(text) => {
            wire.text = (*text).to_owned();
            kind::FAILED_PRECONDITION
        }
        ChatError::RateLimited { retry_after_ms } => {
            wire.retry_after_ms = *retry_after_ms;
            kind::RATE_LIMITED
        }
        ChatError::Unavailable(text) => {
            wire.text = text.clone();
            kind::UNAVAILABLE
        }
        ChatError::Unsupported(text) => {
            wire.text = (*text).to_owned();
            kind::UNSUPPORTED
        }
        ChatError::UnknownValue { field } => {
            wire.field = (*field).to_owned();
            kind::UNKNOWN_VALUE
        }
        ChatError::Restricted {
            retry_after_ms,
            until_ms,
        } => {
            wire.retry_after_ms = *retry_after_ms;
            wire.text = until_ms.to_string();
            kind::RESTRICTED
        }
        ChatError::ContentRejected(text) => {
            wire.text = (*text).to_owned();
            kind::CONTENT_REJECTED
        }
        ChatError::Internal => kind::INTERNAL,
    };
    wire
}

fn error_from_wire(wire: WireError) -> Result<ChatError, CodecError> {
    let field = || intern(&wire.field);
    let text = || intern(&wire.text);
    Ok(match wire.kind {
        kind::UNAUTHENTICATED => ChatError::Unauthenticated,
        kind::TOKEN_REFUSED => ChatError::TokenRefused,
        kind::NOT_FOUND => ChatError::NotFound,
        kind::MESSAGE_NOT_FOUND => ChatError::MessageNotFound { field: field() },
        kind::PERMISSION_DENIED => ChatError::PermissionDenied(text()),
        kind::INVALID_ARGUMENT => ChatError::InvalidArgument {
            field: field(),
            reason: wire.text.clone(),
        },
        kind::TOO_LARGE => ChatError::TooLarge {
            field: field(),
            reason: wire.text.clone(),
        },
        kind::CONFLICT => ChatError::Conflict(text()),
        kind::FAILED_PRECONDITION => ChatError::FailedPrecondition(text()),
        kind::RATE_LIMITED => ChatError::RateLimited {
            retry_after_ms: wire.retry_after_ms,
        },
        kind::UNAVAILABLE => ChatError::Unavailable(wire.text.clone()),
        kind::UNSUPPORTED => ChatError::Unsupported(text()),
        kind::UNKNOWN_VALUE => ChatError::UnknownValue { field: field() },
        kind::RESTRICTED => ChatError::Restricted {
            retry_after_ms: wire.retry_after_ms,
            until_ms: wire.text.parse().map_err(|e| invalid("until_ms", e))?,
        },
        kind::CONTENT_REJECTED => ChatError::ContentRejected(text()),
        kind::INTERNAL => ChatError::Internal,
        other => return Err(invalid("error kind", other)),
    })
}

/// Most distinct texts kept; the writer produces a few dozen.
const MAX_INTERNED: usize = 1024;

/// Longest text kept.
const MAX_INTERNED_LEN: usize = 256;

/// What a text past the interning bounds becomes.
const OVERFLOW_TEXT: &str = "rejected by the room writer";

/// A `&'static str` equal to `text`. Each distinct text is leaked once; past
/// [`MAX_INTERNED`] texts (or for a text longer than [`MAX_INTERNED_LEN`]) a fixed text
/// stands in, so memory stays bounded whatever arrives.
fn intern(text: &str) -> &'static str {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    if text.is_empty() {
        return "";
    }
    if text.len() > MAX_INTERNED_LEN {
        return OVERFLOW_TEXT;
    }
    let Ok(mut texts) = TEXTS.get_or_init(Mutex::default).lock() else {
        return OVERFLOW_TEXT;
    };
    if let Some(known) = texts.get(text) {
        return known;
    }
    if texts.len() >= MAX_INTERNED {
        return OVERFLOW_TEXT;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(leaked);
    leaked
}
