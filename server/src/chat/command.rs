//! Room commands: what a session (or the admin API) asks a room's writer to do, already parsed
//! and validated at the edge, and what the writer answers.

use chatwire_protocol::v1;

use super::ids::{RoomId, UserId};

/// A change to one room, executed by the room's single writer.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomOp {
    /// Create a group with the actor as owner.
    CreateGroup(CreateGroup),
    /// Open (create on first use) the direct room with another user.
    OpenDirect {
        /// The other user.
        other: UserId,
    },
    /// Change a group's settings.
    UpdateRoom(RoomSettings),
    /// Add users to a group.
    AddMembers {
        /// The users to add.
        users: Vec<UserId>,
        /// Their role.
        role: v1::Role,
    },
    /// Remove a member from a group.
    RemoveMember {
        /// The member.
        user: UserId,
    },
    /// Change a member's role.
    SetRole {
        /// The member.
        user: UserId,
        /// The new role.
        role: v1::Role,
    },
    /// The actor leaves the group.
    Leave,
    /// Post a message.
    Send(SendOp),
    /// Post a message with the moderation stage's verdict (crate::moderation): the writer
    /// stores `verdict.masked` when set, and dedupes on `send.content`, the content as the
    /// client sent it (a retry is recognised whatever the masking).
    ModeratedSend {
        /// The Send as the client asked it.
        send: SendOp,
        /// The verdict.
        verdict: Verdict,
    },
    /// Replace a message's content.
    Edit {
        /// The message.
        target_seq: u64,
        /// The new content.
        content: v1::Content,
    },
    /// Redact a message.
    Delete {
        /// The message.
        target_seq: u64,
        /// Why (validated, at most 500 characters; empty for none).
        reason: String,
    },
    /// Restrict a member from sending and reacting until a time (0 lifts it).
    Restrict {
        /// The member.
        user: UserId,
        /// Until when, Unix milliseconds; 0 lifts the restriction.
        until_ms: i64,
        /// Why (validated; empty for none).
        reason: String,
    },
    /// Add or remove a reaction.
    React {
        /// The message.
        target_seq: u64,
        /// The emoji.
        emoji: String,
        /// Add (true) or remove (false).
        add: bool,
    },
}

/// A validated CreateGroup.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateGroup {
    /// The name.
    pub name: String,
    /// The topic.
    pub topic: String,
    /// Members besides the creator.
    pub members: Vec<UserId>,
    /// History visibility (never unspecified here).
    pub history_visibility: v1::HistoryVisibility,
    /// The member cap in force.
    pub member_cap: u32,
    /// App data.
    pub app_data: bytes::Bytes,
}

/// Validated room settings changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoomSettings {
    /// A new name.
    pub name: Option<String>,
    /// A new topic.
    pub topic: Option<String>,
    /// New history visibility.
    pub history_visibility: Option<v1::HistoryVisibility>,
    /// A new member cap.
    pub member_cap: Option<u32>,
    /// New app data.
    pub app_data: Option<bytes::Bytes>,
}

/// A validated Send.
#[derive(Debug, Clone, PartialEq)]
pub struct SendOp {
    /// The sender's idempotency key.
    pub client_msg_id: String,
    /// The content.
    pub content: v1::Content,
    /// The message replied to, 0 for none.
    pub reply_to_seq: u64,
    /// The thread root, 0 for none.
    pub thread_root_seq: u64,
}

/// What the moderation stage decided about a Send or an Edit before it entered the shard
/// queue (crate::moderation).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// The message's score: spam rules' points plus the external scorer's.
    pub score: u32,
    /// The message is posted and flagged for review.
    pub flagged: bool,
    /// Why (rule names), for logs and review.
    pub reasons: Vec<String>,
    /// The content to store instead of the client's, with listed words masked.
    pub masked: Option<v1::Content>,
}

/// A command for a room's writer.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCommand {
    /// The room.
    pub room: RoomId,
    /// Who asks.
    pub actor: UserId,
    /// What to do.
    pub op: RoomOp,
    /// The request's trace id, for logs.
    pub trace_id: String,
    /// Issued by the admin API (server-side sends, bots, moderation): the actor acts with
    /// owner rights and need not be a member. Never set for client requests.
    pub privileged: bool,
}

/// What a writer answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A room was created or opened.
    Room {
        /// The room (with `last_seq` set from the head).
        room: v1::Room,
        /// The actor's membership.
        me: Option<v1::Member>,
        /// True when this command created it.
        created: bool,
    },
    /// A message was persisted (or a retry was recognised).
    Sent(v1::SendResponse),
    /// Settings changed.
    Updated {
        /// The room after the change.
        room: v1::Room,
        /// The RoomUpdated seq, 0 when nothing changed.
        seq: u64,
    },
    /// Members were added.
    Added(Vec<v1::Member>),
    /// A message was edited.
    Edited {
        /// The MessageEdited seq, 0 when nothing changed.
        seq: u64,
        /// When.
        edited_at_ms: i64,
    },
    /// A change that produced one event: its seq, 0 when nothing changed.
    Seq(u64),
}
