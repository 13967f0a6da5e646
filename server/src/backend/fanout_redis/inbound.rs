//! The subscriber: turns pub/sub pushes from Redis into deliveries to this node's sessions.
//!
//! One pattern subscription covers every room channel (`<prefix>room:*`) and one channel
//! carries the cluster messages. A room batch goes through the room's cursor (drop old seqs,
//! hold those beyond a gap, start a repair); the batches and messages this node sent itself
//! are skipped, since it delivered them locally when they were published. A disconnection
//! switches delivery to polling the store's heads; the resubscription that follows a
//! reconnect triggers a head check against the store at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chatwire_protocol::v1;
use prost::Message;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::wire::{ClusterMessage, Kind, RoomBatch};
use super::{COMMAND_DEADLINE, RedisFanoutError, Shared};
use crate::chat::ids::{RoomId, UserId};

/// Subscribes to the room pattern and the cluster channel (renewed by the connection manager
/// after every reconnect).
pub(super) async fn subscribe(shared: &Shared) -> Result<(), RedisFanoutError> {
    let mut redis = shared.redis.clone();
    let subscribe = async {
        redis.psubscribe(shared.keys.room_pattern()).await?;
        redis.subscribe(shared.keys.cluster_channel()).await
    };
    tokio::time::timeout(COMMAND_DEADLINE, subscribe)
        .await
        .map_err(|_| RedisFanoutError::Connect("subscribe timed out".to_owned()))?
        .map_err(|e| RedisFanoutError::Connect(e.to_string()))?;
    shared.subscribed.store(true, Ordering::Release);
    Ok(())
}

/// Runs until the push channel closes.
pub(super) async fn run(shared: Arc<Shared>, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = pushes.recv().await {
        match push.kind {
            PushKind::PMessage => {
                if let [_, channel, payload] = push.data.as_slice() {
                    on_room_batch(&shared, channel, payload);
                }
            }
            PushKind::Message => {
                if let [_, payload] = push.data.as_slice() {
                    on_cluster(&shared, payload);
                }
            }
            PushKind::Disconnection => {
                // Redis may come back empty: the next heartbeat that works rewrites the
                // node's sessions hash instead of only renewing what an attach re-created.
                shared.dirty.store(true, Ordering::Release);
                shared.subscribed.store(false, Ordering::Release);
                shared.store_check.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
            PushKind::Subscribe | PushKind::PSubscribe
                if !shared.subscribed.swap(true, Ordering::AcqRel) =>
            {
                // Back after a reconnect: whatever was published meanwhile was missed, and
                // only the heads show a lost last message.
                shared.store_check.store(true, Ordering::Release);
                shared.redis_up.store(true, Ordering::Release);
                shared.wake.notify_one();
            }
            _ => {}
        }
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn on_room_batch(shared: &Arc<Shared>, channel: &Value, payload: &Value) {
    let (Some(channel), Some(payload)) = (bytes(channel), bytes(payload)) else {
        return;
    };
    let Some(room) = std::str::from_utf8(channel)
        .ok()
        .and_then(|c| shared.keys.room_of_channel(c))
        .and_then(|r| RoomId::parse(r).ok())
    else {
        return;
    };
    let Ok(batch) = RoomBatch::decode(payload) else {
        shared.warn("undecodable room batch ignored");
        return;
    };
    if batch.node == shared.node {
        return;
    }
    if let Some(last) = batch.events.last() {
        crate::telemetry::redis_lag(shared.clock.now_ms() - last.ts_ms);
    }
    let audience: Arc<[UserId]> = parse_users(&batch.audience).into();
    let events: Arc<[v1::RoomEvent]> = batch.events.into();
    let gap = {
        let mut state = shared.lock();
        let track = state.rooms.cursor(&room).is_some() || state.any_local(&audience);
        let ready = state.rooms.offer(&room, &events, &audience, track);
        state.deliver_rooms(ready);
        state.rooms.begin_repair(&room, 0)
    };
    shared.spawn_repair(&room, gap);
}

pub(super) fn parse_users(raw: &[String]) -> Vec<UserId> {
    raw.iter().filter_map(|u| UserId::parse(u).ok()).collect()
}

fn on_cluster(shared: &Shared, payload: &Value) {
    let Some(message) = bytes(payload).and_then(|p| ClusterMessage::decode(p).ok()) else {
        shared.warn("undecodable cluster message ignored");
        return;
    };
    if message.node == shared.node {
        return;
    }
    match message.kind {
        Some(Kind::User(user_event)) => {
            let (Ok(user), Some(event)) = (UserId::parse(&user_event.user), user_event.event)
            else {
                return;
            };
            shared
                .lock()
                .deliver_user(&user, &Arc::new(event), user_event.except);
        }
        Some(Kind::Session(session_event)) => {
            if session_event.target_node != shared.node {
                return;
            }
            let state = shared.lock();
            if let (Some((_, link)), Some(event)) = (
                state.sessions.get(&session_event.session),
                session_event.event,
            ) {
                link.deliver(super::state::user_delivery(event));
            }
        }
        Some(Kind::Close(close)) => {
            if let (Ok(user), Ok(code)) = (
                UserId::parse(&close.user),
                v1::CloseCode::try_from(close.code),
            ) {
                shared.lock().close_user(&user, code);
            }
        }
        Some(Kind::Presence(change)) => {
            let Ok(user) = UserId::parse(&change.user) else {
                return;
            };
            let mut state = shared.lock();
            let was_online = state.online(&user);
            let added = change.online.then(|| user.clone());
            if state
                .cluster
                .change(&message.node, change.version, change.session, added)
            {
                state.presence_moved(&user, was_online, change.ts_ms);
            }
        }
        None => {}
    }
}
