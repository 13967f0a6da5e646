//! The upkeep task: heartbeats, the reload of the other nodes' sessions (which is how a dead
//! node's sessions vanish here) and the head checks (how a lost last message is found: no jump
//! shows it, only a head ahead of the cursor).
//!
//! While Redis is down, heartbeats double as reconnection probes, spaced by a backoff that
//! doubles up to `max_backoff`, and the head checks read the store's heads at every interval,
//! so delivery goes on by polling until the subscription is back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::state::State;
use super::wire::VERSION_FIELD;
use super::worker::{self, Outbound};
use super::{COMMAND_DEADLINE, Shared, repair};
use crate::chat::ids::UserId;

/// First registration: the node's entry, the other nodes' sessions and the last-seen times.
pub(super) async fn start(shared: &Arc<Shared>) {
    let mut redis = shared.redis.clone();
    let seen: Result<Vec<(String, f64)>, _> = tokio::time::timeout(
        COMMAND_DEADLINE,
        redis::cmd("ZRANGE")
            .arg(shared.keys.last_seen())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut redis),
    )
    .await
    .map_err(|_| "timed out".to_owned())
    .and_then(|r| r.map_err(|e| e.to_string()));
    match seen {
        Ok(seen) => {
            let mut state = shared.lock();
            for (user, ms) in seen {
                if let Ok(user) = UserId::parse(&user) {
                    // Scores are doubles; millisecond times stay exact below 2^53.
                    state.cluster.saw(&user, ms as i64);
                }
            }
        }
        Err(error) => shared.failed("last-seen load failed", &error),
    }
    if let Err(error) = worker::heartbeat(shared).await {
        shared.failed("first heartbeat failed", &error.to_string());
    }
    reload(shared).await;
}

/// Runs forever (aborted with the fan-out).
pub(super) async fn run(shared: Arc<Shared>) {
    let config = shared.config.clone();
    let mut next_beat = Instant::now() + config.heartbeat_interval;
    let mut next_check = Instant::now() + config.head_check_interval;
    let mut backoff = config.head_check_interval;
    let mut checks: u32 = 0;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next_beat.min(next_check)) => {}
            () = shared.wake.notified() => {}
        }
        let now = Instant::now();
        let up = shared.redis_up.load(Ordering::Acquire);
        if now >= next_beat {
            shared.send(Outbound::Heartbeat);
            if up {
                reload(&shared).await;
                backoff = config.head_check_interval;
                next_beat = now + config.heartbeat_interval;
            } else {
                next_beat = now + crate::jitter::global().apply(backoff);
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
        let forced = shared.store_check.swap(false, Ordering::AcqRel);
        if now >= next_check || forced {
            checks = checks.wrapping_add(1);
            let subscribed = shared.subscribed.load(Ordering::Acquire);
            let use_store =
                forced || !subscribed || checks.is_multiple_of(config.store_check_every.max(1));
            head_check(&shared, use_store).await;
            next_check = Instant::now() + config.head_check_interval;
        }
    }
}

/// Compares each room's cursor with its head and starts a repair where it lags. The head is
/// the tail stream's newest id, and the store's head where `use_store` (after a reconnect,
/// while the subscription is down, every `store_check_every` checks) or the stream has none.
async fn head_check(shared: &Arc<Shared>, use_store: bool) {
    let tracked = {
        let mut state = shared.lock();
        let State { rooms, by_user, .. } = &mut *state;
        rooms.retain(|audience| audience.iter().any(|user| by_user.contains_key(user)));
        rooms.tracked()
    };
    for (room, cursor) in tracked {
        let mut head = None;
        if shared.redis_up.load(Ordering::Acquire) {
            match repair::tail_head(shared, &room).await {
                Ok(seq) => head = seq,
                Err(error) => shared.failed("head check failed", &error),
            }
        }
        if use_store || head.is_none() {
            match shared.log.head(&room).await {
                Ok(store) => {
                    head = head.max(store.map(|h| h.seq));
                }
                Err(error) => shared.warn(&format!("store head of {room}: {error}")),
            }
        }
        let Some(head) = head.filter(|head| *head > cursor) else {
            continue;
        };
        let gap = shared.lock().rooms.begin_repair(&room, head);
        shared.spawn_repair(&room, gap);
    }
}

/// Reloads every other node's sessions; forgets nodes whose sessions hash expired.
async fn reload(shared: &Shared) {
    if let Err(error) = tokio::time::timeout(COMMAND_DEADLINE * 2, try_reload(shared))
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        shared.failed("registry reload failed", &error);
    }
}

async fn try_reload(shared: &Shared) -> redis::RedisResult<()> {
    let mut redis = shared.redis.clone();
    let nodes: Vec<(String, i64)> = redis::cmd("ZRANGE")
        .arg(shared.keys.nodes())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut redis)
        .await?;
    let listed: HashSet<&str> = nodes.iter().map(|(node, _)| node.as_str()).collect();
    let now = shared.clock.now_ms();
    let gone: Vec<String> = shared
        .lock()
        .cluster
        .nodes()
        .into_iter()
        .filter(|node| !listed.contains(node.as_str()))
        .collect();
    for node in gone {
        forget_node(shared, &node, now);
    }
    for (node, beat_ms) in &nodes {
        if *node == shared.node {
            continue;
        }
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(shared.keys.sessions(node))
            .query_async(&mut redis)
            .await?;
        if fields.is_empty() {
            // The hash expired: the node stopped heartbeating. Its users were last seen then.
            let users = forget_node(shared, node, *beat_ms);
            let mut pipe = redis::pipe();
            pipe.zrem(shared.keys.nodes(), node);
            for user in users {
                worker::record_last_seen(&mut pipe, shared, &user, *beat_ms);
            }
            pipe.exec_async(&mut redis).await?;
            continue;
        }
        replace_node(shared, node, &fields, now);
    }
    Ok(())
}

/// Drops `node` from the mirror; returns its users now offline everywhere.
fn forget_node(shared: &Shared, node: &str, at_ms: i64) -> Vec<UserId> {
    let mut state = shared.lock();
    let users: HashSet<UserId> = state.cluster.drop_node(node).into_iter().collect();
    let mut offline = Vec::new();
    for user in users {
        // They were online through `node`.
        state.presence_moved(&user, true, at_ms);
        if !state.online(&user) {
            offline.push(user);
        }
    }
    offline
}

fn replace_node(shared: &Shared, node: &str, fields: &HashMap<String, String>, now_ms: i64) {
    let version = fields
        .get(VERSION_FIELD)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let sessions: HashMap<u64, UserId> = fields
        .iter()
        .filter_map(|(key, user)| Some((key.parse().ok()?, UserId::parse(user).ok()?)))
        .collect();
    let mut state = shared.lock();
    let mut before: HashMap<UserId, bool> = state
        .cluster
        .users_of(node)
        .into_iter()
        .chain(sessions.values().cloned())
        .map(|user| (user, false))
        .collect();
    for (user, was) in &mut before {
        *was = state.online(user);
    }
    state.cluster.replace(node, version, sessions);
    for (user, was) in before {
        state.presence_moved(&user, was, now_ms);
    }
}
