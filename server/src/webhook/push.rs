//! Offline push: who gets a push for a new message, and the handler that sends them to the push
//! webhook (a service of the app's that fronts APNs and FCM).
//!
//! A member gets a push for a `message.created` event when they did not send it, have no live
//! session, have at least one registered device, and have not muted the room, unless the
//! message mentions them (mentions override mutes). Other events are acknowledged unsent.
//!
//! The lookups sit behind [`PushAudience`], so this works on any backend; [`StoreAudience`]
//! answers them from the store and this node's fan-out (the embedded default).
//!
//! The body is the event envelope (see `sender.rs`) plus
//! `"recipients": [{"userId", "mentioned", "devices": [{"platform", "token", "deviceId"}]}]`.

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_protocol::v1::room_event::Kind;
use serde_json::{Value, json};

use super::consumer::Handler;
use super::sender::{WebhookSender, envelope};
use crate::backend::events::Delivery;
use crate::backend::fanout::Fanout;
use crate::backend::store::{Store, StoreError};
use crate::chat::ids::{RoomId, UserId};
use crate::writer::downstream::{MESSAGE_CREATED, room_event_of};

/// Members fetched per page when listing a room.
const MEMBER_PAGE: usize = 500;

/// A device a push can go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDevice {
    /// The platform's proto enum name, for example `PUSH_PLATFORM_APNS`.
    pub platform: String,
    /// The platform's device token.
    pub token: String,
    /// The device id.
    pub device_id: String,
}

/// Someone to push a message to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The user.
    pub user_id: UserId,
    /// True when the message mentions them.
    pub mentioned: bool,
    /// Their devices.
    pub devices: Vec<PushDevice>,
}

/// The lookups offline push needs.
#[async_trait]
pub trait PushAudience: Send + Sync + std::fmt::Debug {
    /// The room's current members, each with the seq of its join.
    async fn members(&self, room: &RoomId) -> Result<Vec<(UserId, u64)>, StoreError>;
    /// Whether the message at `seq` is still there to be read: not deleted, erased or dropped
    /// by retention.
    async fn readable(&self, room: &RoomId, seq: u64) -> Result<bool, StoreError>;
    /// True when the user has a live session (they see the message there).
    fn is_online(&self, user: &UserId) -> bool;
    /// True when the user muted pushes of the room at `now_ms`.
    async fn muted(&self, user: &UserId, room: &RoomId, now_ms: i64) -> Result<bool, StoreError>;
    /// The user's registered devices.
    async fn devices(&self, user: &UserId) -> Result<Vec<PushDevice>, StoreError>;
}

/// The members to push a log event to; empty for events other than new messages.
pub async fn recipients(
    audience: &dyn PushAudience,
    event: &v1::RoomEvent,
    now_ms: i64,
) -> Result<Vec<Recipient>, StoreError> {
    let Some(Kind::MessageCreated(created)) = &event.kind else {
        return Ok(Vec::new());
    };
    let Ok(room) = RoomId::parse(&event.room_id) else {
        return Ok(Vec::new());
    };
    let mentions = created
        .content
        .as_ref()
        .map(|c| c.mentions.as_slice())
        .unwrap_or_default();
    // Recipients are judged when the push is delivered, which may be long after the message
    // (a retry, a queue that was down): a message deleted since is not pushed at all, and a
    // member who joined after it never gets it (issue 15 M10).
    if !audience.readable(&room, event.seq).await? {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (user, joined_seq) in audience.members(&room).await? {
        if user.as_str() == event.sender || joined_seq > event.seq || audience.is_online(&user) {
            continue;
        }
        let mentioned = mentions.iter().any(|m| m == user.as_str());
        if !mentioned && audience.muted(&user, &room, now_ms).await? {
            continue;
        }
        let devices = audience.devices(&user).await?;
        if !devices.is_empty() {
            out.push(Recipient {
                user_id: user,
                mentioned,
                devices,
            });
        }
    }
    Ok(out)
}

/// The offline push handler: one POST per new message that has recipients.
#[derive(Debug, Clone)]
pub struct OfflinePush {
    sender: WebhookSender,
    audience: Arc<dyn PushAudience>,
}

impl OfflinePush {
    /// Pushes through `sender`, asking `audience` who is offline.
    pub fn new(sender: WebhookSender, audience: Arc<dyn PushAudience>) -> Self {
        Self { sender, audience }
    }
}

#[async_trait]
impl Handler for OfflinePush {
    async fn handle(&self, delivery: &Delivery, now_ms: i64) -> Result<(), String> {
        if delivery.event.kind != MESSAGE_CREATED {
            return Ok(());
        }
        // A payload that is not a room event will not become one on retry: drop it.
        let Some(event) = room_event_of(&delivery.event.payload) else {
            tracing::warn!(id = %delivery.event.id, "push: undecodable message event dropped");
            return Ok(());
        };
        let recipients = recipients(self.audience.as_ref(), &event, now_ms)
            .await
            .map_err(|e| e.to_string())?;
        if recipients.is_empty() {
            return Ok(());
        }
        let mut body = envelope(delivery);
        body.insert("recipients".into(), recipients_json(&recipients));
        let body = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        self.sender
            .post(&delivery.event.id, body, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

fn recipients_json(recipients: &[Recipient]) -> Value {
    let list = recipients.iter().map(|r| {
        let devices = r
            .devices
            .iter()
            .map(|d| json!({"platform": d.platform, "token": d.token, "deviceId": d.device_id}));
        json!({
            "userId": r.user_id.as_str(),
            "mentioned": r.mentioned,
            "devices": devices.collect::<Vec<_>>(),
        })
    });
    Value::Array(list.collect())
}

/// [`PushAudience`] from the store (members, mutes, devices) and the fan-out (live sessions:
/// in a cluster the Redis fan-out also lists the sessions of the other nodes).
#[derive(Debug, Clone)]
pub struct StoreAudience {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
}

impl StoreAudience {
    /// Lookups in `store` and `fanout`.
    pub fn new(store: Arc<dyn Store>, fanout: Arc<dyn Fanout>) -> Self {
        Self { store, fanout }
    }
}

#[async_trait]
impl PushAudience for StoreAudience {
    async fn members(&self, room: &RoomId) -> Result<Vec<(UserId, u64)>, StoreError> {
        let mut out: Vec<(UserId, u64)> = Vec::new();
        loop {
            let after = out.last().map(|(user, _)| user);
            let page = self.store.members(room, after, MEMBER_PAGE).await?;
            for member in &page {
                let user = UserId::parse(&member.user_id)
                    .map_err(|e| StoreError::Corrupt(format!("stored member id: {e}")))?;
                out.push((user, member.joined_seq));
            }
            if page.len() < MEMBER_PAGE {
                return Ok(out);
            }
        }
    }

    async fn readable(&self, room: &RoomId, seq: u64) -> Result<bool, StoreError> {
        let message = self.store.message(room, seq).await?;
        Ok(message.is_some_and(|m| !m.deleted && m.content.is_some()))
    }

    fn is_online(&self, user: &UserId) -> bool {
        !self.fanout.sessions_of(user).is_empty()
    }

    async fn muted(&self, user: &UserId, room: &RoomId, now_ms: i64) -> Result<bool, StoreError> {
        let state = self.store.user_room(user, room).await?;
        Ok(state.is_some_and(|s| s.muted_until_ms > now_ms))
    }

    async fn devices(&self, user: &UserId) -> Result<Vec<PushDevice>, StoreError> {
        let tokens = self.store.push_tokens(user).await?;
        Ok(tokens
            .into_iter()
            .map(|t| PushDevice {
                platform: t.platform.as_str_name().to_owned(),
                token: t.token,
                device_id: t.device_id,
            })
            .collect())
    }
}
