//! The outbound task: everything this node writes to Redis, one item at a time and in the
//! order it was queued (so a room's batches reach its tail stream in seq order, and a
//! session's registry entries in the order of attach and detach).
//!
//! While Redis fails, room batches and cluster messages are dropped at once (the receivers
//! repair rooms from the heads; user events are best effort) and registry changes mark the
//! registry dirty, so the next heartbeat that works rewrites it whole.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chatwire_protocol::v1;
use prost::Message;
use tokio::sync::mpsc;

use super::wire::{self, ClusterMessage, VERSION_FIELD};
use super::{COMMAND_DEADLINE, Shared};
use crate::chat::ids::{RoomId, UserId};

/// Appends a room batch to its tail stream and publishes it.
/// KEYS[1] the tail stream, KEYS[2] the room channel; ARGV[1] MAXLEN, ARGV[2] the channel
/// payload, ARGV[3] the encoded audience, ARGV[4] the stream's TTL in ms, then pairs of seq
/// and encoded event. An id at or below the stream's last is refused by XADD: such events
/// (a stale writer's re-publish) are skipped, and a batch with none accepted is not published.
const PUBLISH_ROOM: &str = r"
local accepted = 0
for i = 5, #ARGV, 2 do
  local id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0',
    'e', ARGV[i + 1], 'a', ARGV[3])
  if type(id) ~= 'table' or not id.err then
    accepted = accepted + 1
  end
end
if accepted > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PUBLISH', KEYS[2], ARGV[2])
end
return accepted
";

/// Work for Redis.
#[derive(Debug)]
pub(super) enum Outbound {
    /// A room batch published on this node.
    Room {
        room: RoomId,
        events: Arc<[v1::RoomEvent]>,
        audience: Arc<[UserId]>,
    },
    /// A message on the cluster channel.
    Cluster(Box<wire::Kind>),
    /// A session of this node came (`online`) or went.
    Registry {
        online: bool,
        session: u64,
        user: UserId,
        ts_ms: i64,
    },
    /// Renew this node's registry entry (rewriting it when dirty or gone).
    Heartbeat,
}

impl Outbound {
    pub(super) fn cluster(kind: wire::Kind) -> Self {
        Self::Cluster(Box::new(kind))
    }
}

/// Runs until the queue closes.
pub(super) async fn run(shared: Arc<Shared>, mut queue: mpsc::Receiver<Outbound>) {
    let script = redis::Script::new(PUBLISH_ROOM);
    while let Some(item) = queue.recv().await {
        let heartbeat = matches!(item, Outbound::Heartbeat);
        if !heartbeat && !shared.redis_up.load(Ordering::Acquire) {
            if matches!(item, Outbound::Registry { .. }) {
                shared.dirty.store(true, Ordering::Release);
            }
            continue;
        }
        let registry = matches!(item, Outbound::Registry { .. });
        let result = tokio::time::timeout(COMMAND_DEADLINE, handle(&shared, &script, item)).await;
        match result {
            Ok(Ok(())) => {
                if heartbeat {
                    shared.redis_up.store(true, Ordering::Release);
                }
            }
            Ok(Err(error)) => fail(&shared, registry, &error.to_string()),
            Err(_) => fail(&shared, registry, "timed out"),
        }
    }
}

fn fail(shared: &Shared, registry: bool, error: &str) {
    if registry {
        shared.dirty.store(true, Ordering::Release);
    }
    shared.store_check.store(true, Ordering::Release);
    shared.failed("write failed, dropping until Redis answers", error);
}

async fn handle(shared: &Shared, script: &redis::Script, item: Outbound) -> redis::RedisResult<()> {
    let mut redis = shared.redis.clone();
    match item {
        Outbound::Room {
            room,
            events,
            audience,
        } => publish_room(shared, script, &room, &events, &audience).await,
        Outbound::Cluster(kind) => {
            let payload = cluster_payload(shared, *kind);
            redis::cmd("PUBLISH")
                .arg(shared.keys.cluster_channel())
                .arg(payload)
                .exec_async(&mut redis)
                .await
        }
        Outbound::Registry {
            online,
            session,
            user,
            ts_ms,
        } => registry(shared, online, session, &user, ts_ms).await,
        Outbound::Heartbeat => heartbeat(shared).await,
    }
}

async fn publish_room(
    shared: &Shared,
    script: &redis::Script,
    room: &RoomId,
    events: &[v1::RoomEvent],
    audience: &[UserId],
) -> redis::RedisResult<()> {
    let users: Vec<String> = audience.iter().map(ToString::to_string).collect();
    let batch = wire::RoomBatch {
        node: shared.node.clone(),
        events: events.to_vec(),
        audience: users.clone(),
    };
    let mut call = script.key(shared.keys.tail(room.as_str()));
    call.key(shared.keys.room_channel(room.as_str()))
        .arg(shared.config.tail_len)
        .arg(batch.encode_to_vec())
        .arg(wire::Audience { users }.encode_to_vec())
        .arg(millis(shared.config.tail_ttl));
    for event in events {
        call.arg(event.seq).arg(event.encode_to_vec());
    }
    let mut redis = shared.redis.clone();
    call.invoke_async::<i64>(&mut redis).await.map(|_| ())
}

fn cluster_payload(shared: &Shared, kind: wire::Kind) -> Vec<u8> {
    ClusterMessage {
        node: shared.node.clone(),
        kind: Some(kind),
    }
    .encode_to_vec()
}

/// Records one attach or detach in the node's sessions hash and tells the other nodes.
async fn registry(
    shared: &Shared,
    online: bool,
    session: u64,
    user: &UserId,
    ts_ms: i64,
) -> redis::RedisResult<()> {
    let version = shared.version.fetch_add(1, Ordering::AcqRel) + 1;
    let hash = shared.keys.sessions(&shared.node);
    let mut pipe = redis::pipe();
    pipe.atomic();
    if online {
        pipe.hset(&hash, session, user.as_str());
    } else {
        pipe.hdel(&hash, session);
        record_last_seen(&mut pipe, shared, user, ts_ms);
    }
    pipe.hset(&hash, VERSION_FIELD, version)
        .pexpire(&hash, millis(shared.config.node_ttl))
        .publish(
            shared.keys.cluster_channel(),
            cluster_payload(
                shared,
                wire::Kind::Presence(wire::PresenceChange {
                    version,
                    online,
                    session,
                    user: user.to_string(),
                    ts_ms,
                }),
            ),
        );
    let mut redis = shared.redis.clone();
    pipe.exec_async(&mut redis).await
}

/// Renews the node's entry: the heartbeat score, and the sessions hash's expiry. When the
/// hash is gone (Redis restarted, or the node was declared dead) or may miss changes, it is
/// rewritten from the sessions in memory.
pub(super) async fn heartbeat(shared: &Shared) -> redis::RedisResult<()> {
    let hash = shared.keys.sessions(&shared.node);
    let mut redis = shared.redis.clone();
    let renewed: bool = redis::cmd("PEXPIRE")
        .arg(&hash)
        .arg(millis(shared.config.node_ttl))
        .query_async(&mut redis)
        .await?;
    if !renewed || shared.dirty.swap(false, Ordering::AcqRel) {
        let sessions: Vec<(u64, String)> = shared
            .lock()
            .sessions
            .iter()
            .map(|(key, (user, _))| (*key, user.to_string()))
            .collect();
        let version = shared.version.fetch_add(1, Ordering::AcqRel) + 1;
        let mut pipe = redis::pipe();
        pipe.atomic().del(&hash).hset(&hash, VERSION_FIELD, version);
        if !sessions.is_empty() {
            pipe.hset_multiple(&hash, &sessions);
        }
        pipe.pexpire(&hash, millis(shared.config.node_ttl));
        if let Err(error) = pipe.exec_async(&mut redis).await {
            shared.dirty.store(true, Ordering::Release);
            return Err(error);
        }
    }
    redis::cmd("ZADD")
        .arg(shared.keys.nodes())
        .arg(shared.clock.now_ms())
        .arg(&shared.node)
        .exec_async(&mut redis)
        .await
}

pub(super) fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// Adds `user` last seen at `ts_ms` to the last-seen set and trims it to the most recently seen
/// `last_seen_cap` users.
pub(super) fn record_last_seen(
    pipe: &mut redis::Pipeline,
    shared: &Shared,
    user: &UserId,
    ts_ms: i64,
) {
    let cap = isize::try_from(shared.config.last_seen_cap.max(1)).unwrap_or(isize::MAX);
    let key = shared.keys.last_seen();
    pipe.zadd(&key, user.as_str(), ts_ms)
        .ignore()
        .zremrangebyrank(&key, 0, -(cap + 1))
        .ignore();
}
