//! JSON views of the protocol's stored messages (`v1::Room`, `v1::Member`, `v1::Message`):
//! plain serde structs with lower-case enum names and base64 for bytes, documented in the
//! OpenAPI schema.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chatwire_protocol::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum RoleName {
    /// Full control.
    Owner,
    /// Settings and plain members.
    Admin,
    /// A plain member.
    Member,
    /// A member that deletes any message and restricts members.
    Moderator,
}

impl From<RoleName> for v1::Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::Owner => v1::Role::Owner,
            RoleName::Admin => v1::Role::Admin,
            RoleName::Member => v1::Role::Member,
            RoleName::Moderator => v1::Role::Moderator,
        }
    }
}

impl From<v1::Role> for RoleName {
    fn from(role: v1::Role) -> Self {
        match role {
            v1::Role::Owner => RoleName::Owner,
            v1::Role::Admin => RoleName::Admin,
            v1::Role::Moderator => RoleName::Moderator,
            _ => RoleName::Member,
        }
    }
}

/// Which part of the log a member reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(super) enum Visibility {
    /// The whole log.
    Full,
    /// From the member's join on.
    SinceJoin,
}

impl From<Visibility> for v1::HistoryVisibility {
    fn from(visibility: Visibility) -> Self {
        match visibility {
            Visibility::Full => v1::HistoryVisibility::Full,
            Visibility::SinceJoin => v1::HistoryVisibility::SinceJoin,
        }
    }
}

impl From<v1::HistoryVisibility> for Visibility {
    fn from(visibility: v1::HistoryVisibility) -> Self {
        match visibility {
            v1::HistoryVisibility::Full => Visibility::Full,
            _ => Visibility::SinceJoin,
        }
    }
}

/// A room's settings and size.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct RoomView {
    /// The room id (`g.…` groups, `d.…` direct rooms).
    pub(super) id: String,
    /// `group` or `direct`.
    pub(super) kind: String,
    /// The name (groups).
    pub(super) name: String,
    /// The topic (groups).
    pub(super) topic: String,
    /// Who reads which part of the log.
    pub(super) history_visibility: Visibility,
    /// The creator.
    pub(super) created_by: String,
    /// Creation time, Unix ms.
    pub(super) created_at_ms: i64,
    /// Current members.
    pub(super) member_count: u32,
    /// Most members.
    pub(super) member_cap: u32,
    /// The newest seq of the room's log.
    pub(super) last_seq: u64,
    /// Application data, base64.
    pub(super) app_data: String,
}

impl From<v1::Room> for RoomView {
    fn from(room: v1::Room) -> Self {
        let kind = match room.kind() {
            v1::RoomKind::Direct => "direct",
            _ => "group",
        };
        Self {
            kind: kind.to_owned(),
            history_visibility: room.history_visibility().into(),
            app_data: BASE64.encode(&room.app_data),
            id: room.id,
            name: room.name,
            topic: room.topic,
            created_by: room.created_by,
            created_at_ms: room.created_at_ms,
            member_count: room.member_count,
            member_cap: room.member_cap,
            last_seq: room.last_seq,
        }
    }
}

/// A membership.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct MemberView {
    /// The user.
    pub(super) user_id: String,
    /// The role.
    pub(super) role: RoleName,
    /// The seq of the member's join.
    pub(super) joined_seq: u64,
    /// When the member joined, Unix ms.
    pub(super) joined_at_ms: i64,
    /// Until when a moderator restricted the member from sending and reacting, Unix ms; 0
    /// when never restricted or lifted.
    pub(super) restricted_until_ms: i64,
}

impl From<v1::Member> for MemberView {
    fn from(member: v1::Member) -> Self {
        Self {
            role: member.role().into(),
            user_id: member.user_id,
            joined_seq: member.joined_seq,
            joined_at_ms: member.joined_at_ms,
            restricted_until_ms: member.restricted_until_ms,
        }
    }
}

/// An attachment of a message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub(super) struct AttachmentView {
    /// Where the file lives.
    pub(super) url: String,
    /// Its MIME type.
    pub(super) mime_type: String,
    /// Its size.
    pub(super) size_bytes: u64,
    /// Its file name.
    pub(super) name: String,
    /// Image or video width.
    pub(super) width: u32,
    /// Image or video height.
    pub(super) height: u32,
    /// Audio or video length.
    pub(super) duration_ms: u32,
    /// A preview image.
    pub(super) thumbnail_url: String,
}

impl From<v1::Attachment> for AttachmentView {
    fn from(a: v1::Attachment) -> Self {
        Self {
            url: a.url,
            mime_type: a.mime_type,
            size_bytes: a.size_bytes,
            name: a.name,
            width: a.width,
            height: a.height,
            duration_ms: a.duration_ms,
            thumbnail_url: a.thumbnail_url,
        }
    }
}

impl From<AttachmentView> for v1::Attachment {
    fn from(a: AttachmentView) -> Self {
        Self {
            url: a.url,
            mime_type: a.mime_type,
            size_bytes: a.size_bytes,
            name: a.name,
            width: a.width,
            height: a.height,
            duration_ms: a.duration_ms,
            thumbnail_url: a.thumbnail_url,
        }
    }
}

/// A message's content, as sent and as read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub(super) struct ContentView {
    /// The text.
    pub(super) text: String,
    /// Attachments.
    pub(super) attachments: Vec<AttachmentView>,
    /// Mentioned user ids.
    pub(super) mentions: Vec<String>,
    /// An application payload, base64.
    pub(super) app_payload: String,
    /// The payload's type.
    pub(super) app_payload_type: String,
}

impl From<v1::Content> for ContentView {
    fn from(c: v1::Content) -> Self {
        Self {
            text: c.text,
            attachments: c.attachments.into_iter().map(Into::into).collect(),
            mentions: c.mentions,
            app_payload: BASE64.encode(&c.app_payload),
            app_payload_type: c.app_payload_type,
        }
    }
}

impl TryFrom<ContentView> for v1::Content {
    type Error = ApiError;

    fn try_from(c: ContentView) -> Result<Self, ApiError> {
        let app_payload = BASE64
            .decode(c.app_payload.as_bytes())
            .map_err(|_| ApiError::invalid("content.app_payload", "not base64"))?;
        Ok(Self {
            text: c.text,
            attachments: c.attachments.into_iter().map(Into::into).collect(),
            mentions: c.mentions,
            app_payload: app_payload.into(),
            app_payload_type: c.app_payload_type,
        })
    }
}

/// One emoji's reactions.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct ReactionView {
    /// The emoji.
    pub(super) emoji: String,
    /// How many users reacted.
    pub(super) count: u32,
    /// Some of them.
    pub(super) user_ids: Vec<String>,
}

/// A message in its current state. A deleted message keeps its place (a tombstone) with no
/// content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct MessageView {
    /// Its seq in the room's log.
    pub(super) seq: u64,
    /// Its ordinal among the room's messages.
    pub(super) ordinal: u64,
    /// The sender.
    pub(super) sender: String,
    /// The sender's idempotency key.
    pub(super) client_msg_id: String,
    /// The content; absent once deleted.
    pub(super) content: Option<ContentView>,
    /// When it was sent, Unix ms.
    pub(super) created_at_ms: i64,
    /// When it was last edited, Unix ms; 0 when never.
    pub(super) edited_at_ms: i64,
    /// True once deleted.
    pub(super) deleted: bool,
    /// The message replied to; 0 when none.
    pub(super) reply_to_seq: u64,
    /// The thread root; 0 when none.
    pub(super) thread_root_seq: u64,
    /// Replies in its thread (thread roots).
    pub(super) thread_reply_count: u32,
    /// Reactions.
    pub(super) reactions: Vec<ReactionView>,
}

impl From<v1::Message> for MessageView {
    fn from(m: v1::Message) -> Self {
        Self {
            seq: m.seq,
            ordinal: m.ordinal,
            sender: m.sender,
            client_msg_id: m.client_msg_id,
            content: m.content.map(Into::into),
            created_at_ms: m.created_at_ms,
            edited_at_ms: m.edited_at_ms,
            deleted: m.deleted,
            reply_to_seq: m.reply_to_seq,
            thread_root_seq: m.thread_root_seq,
            thread_reply_count: m.thread_reply_count,
            reactions: m
                .reactions
                .into_iter()
                .map(|r| ReactionView {
                    emoji: r.emoji,
                    count: r.count,
                    user_ids: r.user_ids,
                })
                .collect(),
        }
    }
}
