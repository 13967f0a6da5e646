//! Gap repair for one room: the events after the room's cursor come from the ring (events
//! waiting behind the gap are released as soon as it closes), then the tail stream (XRANGE by
//! seq), then the room log. One repair runs per room at a time; it loops while it makes
//! progress and a gap is left.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chatwire_protocol::v1;
use prost::Message;
use redis::Value;
use redis::streams::StreamRangeReply;

use super::Shared;
use super::inbound::parse_users;
use super::wire::Audience;
use crate::chat::ids::{RoomId, UserId};

/// Most events read from the log per page.
const LOG_PAGE: u64 = 100;
/// Most bytes read from the log per page.
const LOG_PAGE_BYTES: usize = 1 << 20;

/// Repairs `room` from `gap = (after, until]` on.
pub(super) async fn run(shared: Arc<Shared>, room: RoomId, mut gap: (u64, u64)) {
    loop {
        let before = gap.0;
        if let Err(error) = fill(&shared, &room, gap).await {
            shared.warn(&format!("repair of {room} failed: {error}"));
        }
        let mut state = shared.lock();
        let moved = state
            .rooms
            .cursor(&room)
            .is_some_and(|cursor| cursor > before);
        match state.rooms.end_repair(&room, moved) {
            Some(next) => gap = next,
            None => return,
        }
    }
}

async fn fill(
    shared: &Arc<Shared>,
    room: &RoomId,
    (after, until): (u64, u64),
) -> Result<(), String> {
    if shared.redis_up.load(Ordering::Acquire) {
        match from_tail(shared, room, after, until).await {
            Ok(runs) => {
                let mut state = shared.lock();
                for (events, audience) in runs {
                    let ready = state.rooms.offer(room, &events, &audience, true);
                    state.deliver_rooms(ready);
                }
            }
            Err(error) => shared.failed("tail stream read failed", &error),
        }
    }
    loop {
        let Some(cursor) = shared.lock().rooms.cursor(room) else {
            return Ok(());
        };
        if cursor >= until {
            return Ok(());
        }
        let limit = usize::try_from((until - cursor).min(LOG_PAGE)).unwrap_or(1);
        let events = shared
            .log
            .read_events(room, cursor, limit, LOG_PAGE_BYTES)
            .await
            .map_err(|e| e.to_string())?;
        let Some(first) = events.first().map(|e| e.seq) else {
            return Ok(());
        };
        let mut state = shared.lock();
        if first > cursor + 1 {
            // Below `first` the log keeps nothing (retention): nothing to deliver there.
            let ready = state.rooms.skip_to(room, first - 1);
            state.deliver_rooms(ready);
        }
        let audience = state
            .rooms
            .audience(room)
            .unwrap_or_else(|| Vec::new().into());
        for (events, audience) in by_membership(events, &audience) {
            let ready = state.rooms.offer(room, &events, &audience, true);
            state.deliver_rooms(ready);
        }
    }
}

/// Contiguous events and the users they go to.
type Run = (Arc<[v1::RoomEvent]>, Arc<[UserId]>);

/// Log events in runs, each with the audience it goes to (issue 15 H1). Repair starts from the
/// last audience seen over Redis, but the log says who joined and left since: a
/// `MemberJoined` adds its user from that event on; a `MemberLeft` goes to its user too (the
/// leaver learns it left, R-16.3.1) and nothing after it does. So a member removed while Redis
/// was down never receives the room's later messages from a repair.
fn by_membership(events: Vec<v1::RoomEvent>, audience: &Arc<[UserId]>) -> Vec<Run> {
    use v1::room_event::Kind;
    let mut current = Arc::clone(audience);
    let mut runs: Vec<(Vec<v1::RoomEvent>, Arc<[UserId]>)> = Vec::new();
    for event in events {
        let (joined, left) = match &event.kind {
            Some(Kind::MemberJoined(j)) => (UserId::parse(&j.user_id).ok(), None),
            Some(Kind::MemberLeft(l)) => (None, UserId::parse(&l.user_id).ok()),
            _ => (None, None),
        };
        if let Some(user) = joined.filter(|u| !current.contains(u)) {
            current = current.iter().cloned().chain([user]).collect();
        }
        match runs.last_mut() {
            Some((run, to)) if Arc::ptr_eq(to, &current) => run.push(event),
            _ => runs.push((vec![event], Arc::clone(&current))),
        }
        if let Some(user) = left.filter(|u| current.contains(u)) {
            current = current.iter().filter(|u| **u != user).cloned().collect();
        }
    }
    runs.into_iter()
        .map(|(events, audience)| (events.into(), audience))
        .collect()
}

/// Runs of events `(after, until]` from the tail stream, each with its audience.
async fn from_tail(
    shared: &Shared,
    room: &RoomId,
    after: u64,
    until: u64,
) -> Result<Vec<Run>, String> {
    let mut redis = shared.redis.clone();
    let reply: StreamRangeReply = tokio::time::timeout(
        super::COMMAND_DEADLINE,
        redis::cmd("XRANGE")
            .arg(shared.keys.tail(room.as_str()))
            .arg(format!("{}-0", after + 1))
            .arg(format!("{until}-0"))
            .query_async(&mut redis),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    let mut audiences: HashMap<Vec<u8>, Arc<[UserId]>> = HashMap::new();
    let mut runs: Vec<(Vec<v1::RoomEvent>, Arc<[UserId]>)> = Vec::new();
    for entry in reply.ids {
        let (Some(event), Some(raw_audience)) = (
            entry.map.get("e").and_then(bytes),
            entry.map.get("a").and_then(bytes),
        ) else {
            continue;
        };
        let Ok(event) = v1::RoomEvent::decode(event) else {
            continue;
        };
        let audience = audiences
            .entry(raw_audience.to_vec())
            .or_insert_with(|| {
                let users = Audience::decode(raw_audience).unwrap_or_default().users;
                parse_users(&users).into()
            })
            .clone();
        match runs.last_mut() {
            Some((events, last)) if Arc::ptr_eq(last, &audience) => events.push(event),
            _ => runs.push((vec![event], audience)),
        }
    }
    Ok(runs
        .into_iter()
        .map(|(events, audience)| (events.into(), audience))
        .collect())
}

/// The seq of the newest entry of `room`'s tail stream, `None` when it has none.
pub(super) async fn tail_head(shared: &Shared, room: &RoomId) -> Result<Option<u64>, String> {
    let mut redis = shared.redis.clone();
    let reply: StreamRangeReply = tokio::time::timeout(
        super::COMMAND_DEADLINE,
        redis::cmd("XREVRANGE")
            .arg(shared.keys.tail(room.as_str()))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut redis),
    )
    .await
    .map_err(|_| "timed out".to_owned())?
    .map_err(|e| e.to_string())?;
    Ok(reply
        .ids
        .first()
        .and_then(|entry| entry.id.split('-').next())
        .and_then(|seq| seq.parse().ok()))
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::room_event::Kind;

    fn event(seq: u64, kind: Option<Kind>) -> v1::RoomEvent {
        v1::RoomEvent {
            seq,
            kind,
            ..Default::default()
        }
    }

    fn message(seq: u64) -> v1::RoomEvent {
        event(
            seq,
            Some(Kind::MessageCreated(v1::MessageCreated::default())),
        )
    }

    fn users(names: &[&str]) -> Arc<[UserId]> {
        names
            .iter()
            .map(|n| UserId::parse(n).expect("user id"))
            .collect()
    }

    fn names(audience: &[UserId]) -> Vec<&str> {
        audience.iter().map(UserId::as_str).collect()
    }

    #[test]
    fn a_member_who_left_gets_its_member_left_and_nothing_after() {
        let left = event(
            2,
            Some(Kind::MemberLeft(v1::MemberLeft {
                user_id: "bob".into(),
                ..Default::default()
            })),
        );
        let joined = event(
            4,
            Some(Kind::MemberJoined(v1::MemberJoined {
                user_id: "carol".into(),
                ..Default::default()
            })),
        );
        let events = vec![message(1), left, message(3), joined, message(5)];
        let runs = by_membership(events, &users(&["alice", "bob"]));
        let seen: Vec<(Vec<u64>, Vec<&str>)> = runs
            .iter()
            .map(|(events, to)| (events.iter().map(|e| e.seq).collect(), names(to)))
            .collect();
        assert_eq!(
            seen,
            vec![
                (vec![1, 2], vec!["alice", "bob"]),
                (vec![3], vec!["alice"]),
                (vec![4, 5], vec!["alice", "carol"]),
            ]
        );
    }

    #[test]
    fn events_without_membership_changes_stay_one_run_to_the_same_audience() {
        let audience = users(&["alice"]);
        let runs = by_membership(vec![message(1), message(2)], &audience);
        assert_eq!(runs.len(), 1);
        assert!(Arc::ptr_eq(&runs[0].1, &audience));
    }
}
