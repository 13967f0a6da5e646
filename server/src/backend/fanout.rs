//! Live fan-out: delivering room events and per-user events to the sessions of this node.
//!
//! Delivery underneath may drop (a full session queue, a lost pub/sub message); sessions see
//! every room event exactly once and in order anyway, because they forward only
//! `seq = cursor + 1` and repair gaps from the durable log (docs/architecture.md "Live fan-out"). A
//! session whose queue overflows is told so through its [`SessionLink`] and closed as a slow
//! consumer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use chatwire_protocol::v1;
use tokio::sync::{Notify, mpsc};

use crate::chat::ids::{RoomId, UserId};

/// A session's id, unique within the process.
pub type SessionKey = u64;

/// Something delivered to a session.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Contiguous events of one room, in seq order.
    Room(Arc<RoomBatch>),
    /// An event of the user's own stream (or a call signal).
    User(Arc<v1::Event>),
    /// End the session with this close code (revocation, drain).
    Close(v1::CloseCode),
}

/// A room's new events as the fan-out hands them to sessions: the events, and each one's
/// encoded event frame, made once by the first session that writes them and shared (not
/// copied) by every other recipient.
#[derive(Debug)]
pub struct RoomBatch {
    events: Arc<[v1::RoomEvent]>,
    frames: OnceLock<Option<Arc<[bytes::Bytes]>>>,
}

impl RoomBatch {
    /// A batch of contiguous events of one room, in seq order.
    pub fn new(events: Arc<[v1::RoomEvent]>) -> Arc<Self> {
        Arc::new(Self {
            events,
            frames: OnceLock::new(),
        })
    }

    /// The events.
    pub fn events(&self) -> &[v1::RoomEvent] {
        &self.events
    }

    /// Each event as a whole server frame, length prefix included (`None` when one would be
    /// over `max_frame`: sessions then encode what they send themselves). Encoded on the first
    /// call; every later call, from any session, gets the same bytes.
    pub fn frames(&self, max_frame: usize) -> Option<&[bytes::Bytes]> {
        self.frames
            .get_or_init(|| {
                self.events
                    .iter()
                    .map(|event| encode_event(event, max_frame))
                    .collect::<Option<Arc<[bytes::Bytes]>>>()
            })
            .as_deref()
    }
}

impl std::ops::Deref for RoomBatch {
    type Target = [v1::RoomEvent];

    fn deref(&self) -> &Self::Target {
        &self.events
    }
}

fn encode_event(event: &v1::RoomEvent, max_frame: usize) -> Option<bytes::Bytes> {
    let frame = v1::ServerFrame {
        frame: Some(v1::server_frame::Frame::Event(v1::Event {
            kind: Some(v1::event::Kind::Room(event.clone())),
        })),
    };
    let mut out = bytes::BytesMut::new();
    chatwire_protocol::encode_frame(&frame, max_frame, &mut out).ok()?;
    Some(out.freeze())
}

/// Who sees a room batch: the room's members after it, plus the members it removed. The member
/// map is the writer's own (shared, not copied), so handing it over costs nothing per member;
/// a fan-out visits only the side that is smaller, the audience or its live users.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    members: Arc<BTreeMap<UserId, v1::Member>>,
    also: BTreeSet<UserId>,
}

impl Audience {
    /// The members of a room and the users who were members before the batch removed them.
    pub fn new(members: Arc<BTreeMap<UserId, v1::Member>>, also: BTreeSet<UserId>) -> Self {
        Self { members, also }
    }

    /// An audience of the given users.
    pub fn users(users: impl IntoIterator<Item = UserId>) -> Self {
        Self {
            members: Arc::default(),
            also: users.into_iter().collect(),
        }
    }

    /// Whether `user` sees the batch.
    pub fn contains(&self, user: &UserId) -> bool {
        self.members.contains_key(user) || self.also.contains(user)
    }

    /// How many users see the batch (at most; a user counts once in practice).
    pub fn len(&self) -> usize {
        self.members.len() + self.also.len()
    }

    /// True when nobody sees the batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every user who sees the batch, once each.
    pub fn iter(&self) -> impl Iterator<Item = &UserId> {
        let members = &self.members;
        members
            .keys()
            .chain(self.also.iter().filter(move |u| !members.contains_key(*u)))
    }
}

/// The sending side of a session's delivery queue.
#[derive(Debug, Clone)]
pub struct SessionLink {
    tx: mpsc::Sender<Delivery>,
    overflow: Arc<Overflow>,
}

/// Set once when a delivery did not fit in the session's queue.
#[derive(Debug, Default)]
pub struct Overflow {
    happened: AtomicBool,
    notify: Notify,
}

impl Overflow {
    /// Resolves once an overflow happened.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.happened.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// True once an overflow happened.
    pub fn happened(&self) -> bool {
        self.happened.load(Ordering::Acquire)
    }
}

impl SessionLink {
    /// A link with a queue of `capacity` deliveries, its receiver and its overflow signal.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<Delivery>, Arc<Overflow>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(Overflow::default());
        let link = Self {
            tx,
            overflow: Arc::clone(&overflow),
        };
        (link, rx, overflow)
    }

    /// Queues a delivery without waiting. On a full queue the overflow is signalled and the
    /// delivery dropped (the session will be closed and resume from its cursors).
    pub fn deliver(&self, delivery: Delivery) -> bool {
        if let Delivery::Close(_) = delivery {
            // A close must not be lost to a full queue: it waits for room, off the caller's path.
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(delivery).await;
            });
            return true;
        }
        match self.tx.try_send(delivery) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.overflow.happened.store(true, Ordering::Release);
                self.overflow.notify.notify_waiters();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Delivers events to the live sessions on this node.
pub trait Fanout: Send + Sync + std::fmt::Debug {
    /// Registers a session of `user`.
    fn attach(&self, session: SessionKey, user: &UserId, link: SessionLink);
    /// Forgets a session and its subscriptions.
    fn detach(&self, session: SessionKey);
    /// Publishes a room's new events (contiguous, in seq order) to the sessions of `audience`
    /// (the members before and after the batch).
    fn publish_room(&self, room: &RoomId, events: Arc<[v1::RoomEvent]>, audience: &Audience);
    /// Publishes an event to every session of `user`, except `except`.
    fn publish_user(&self, user: &UserId, event: v1::Event, except: Option<SessionKey>);
    /// Publishes an event to one session; false when it is not here.
    fn publish_session(&self, session: SessionKey, event: v1::Event) -> bool;
    /// The live sessions of `user`.
    fn sessions_of(&self, user: &UserId) -> Vec<SessionKey>;
    /// Ends every session of `user` (or of everyone, for `None`) with `code`; returns how many.
    fn close_sessions(&self, user: Option<&UserId>, code: v1::CloseCode) -> usize;
    /// How many sessions are live on this node.
    fn session_count(&self) -> usize;
    /// Adds `visible` and `hidden` to `session`'s watch set, unless the set would then hold
    /// more than `cap` users: then `Err(size it would have had)` and the set is unchanged
    /// . The session gets a Presence event whenever a `visible` user goes online or
    /// offline; `hidden` users (blocked either way, R-14.1.6) count towards the cap exactly
    /// like the others, so the cap cannot be used to probe for blocks, but are never reported.
    fn watch_presence(
        &self,
        session: SessionKey,
        visible: &[UserId],
        hidden: &[UserId],
        cap: usize,
    ) -> Result<(), usize>;
    /// Stops presence events about `users` to `session`.
    fn unwatch_presence(&self, session: SessionKey, users: &[UserId]);
    /// A user's presence now: online while a session is live; last seen when it ended.
    fn presence(&self, user: &UserId) -> v1::Presence;
}

/// Last-seen times kept in memory before the oldest half is forgotten.
pub const MAX_LAST_SEEN: usize = 100_000;

/// When users were last seen (their last session ended), newest time wins. Bounded: past
/// [`MAX_LAST_SEEN`] users the least recently seen half is forgotten (they then read as never
/// seen, `last_seen_ms` 0), at O(1) amortised cost per user (issue 15: the map grew forever).
#[derive(Debug, Default)]
pub struct LastSeen {
    seen: HashMap<UserId, i64>,
}

impl LastSeen {
    /// Records that `user` was seen at `ms`.
    pub fn saw(&mut self, user: &UserId, ms: i64) {
        if self.seen.len() >= MAX_LAST_SEEN && !self.seen.contains_key(user) {
            let mut times: Vec<i64> = self.seen.values().copied().collect();
            let middle = times.len() / 2;
            let (_, cut, _) = times.select_nth_unstable(middle);
            let cut = *cut;
            self.seen.retain(|_, at| *at > cut);
        }
        let at = self.seen.entry(user.clone()).or_insert(ms);
        *at = (*at).max(ms);
    }

    /// When `user` was last seen; 0 when unknown.
    pub fn get(&self, user: &UserId) -> i64 {
        self.seen.get(user).copied().unwrap_or(0)
    }

    /// Users remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no user is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The presence watches of one node's sessions: each session's watch set (what it asked for,
/// capped) and, per watched user, the sessions to tell (the visible part of those sets).
#[derive(Debug, Default)]
pub struct PresenceWatches {
    /// Watched user -> sessions to tell.
    watchers: HashMap<UserId, HashSet<SessionKey>>,
    /// Session -> its whole watch set, `true` for users it is told about.
    watching: HashMap<SessionKey, HashMap<UserId, bool>>,
}

impl PresenceWatches {
    /// See [`Fanout::watch_presence`].
    pub fn watch(
        &mut self,
        session: SessionKey,
        visible: &[UserId],
        hidden: &[UserId],
        cap: usize,
    ) -> Result<(), usize> {
        let set = self.watching.get(&session);
        let mut added: HashSet<&UserId> = HashSet::new();
        for user in visible.iter().chain(hidden) {
            if !set.is_some_and(|set| set.contains_key(user)) {
                added.insert(user);
            }
        }
        let size = set.map_or(0, HashMap::len) + added.len();
        if size > cap {
            return Err(size);
        }
        let set = self.watching.entry(session).or_default();
        for user in hidden {
            set.entry(user.clone()).or_insert(false);
        }
        for user in visible {
            // A user now visible (unblocked since) is told about from here on.
            set.insert(user.clone(), true);
            self.watchers
                .entry(user.clone())
                .or_default()
                .insert(session);
        }
        Ok(())
    }

    /// Removes `users` from `session`'s watch set.
    pub fn unwatch(&mut self, session: SessionKey, users: &[UserId]) {
        let Some(set) = self.watching.get_mut(&session) else {
            return;
        };
        for user in users {
            if set.remove(user) == Some(true) {
                Self::forget(&mut self.watchers, user, session);
            }
        }
        if set.is_empty() {
            self.watching.remove(&session);
        }
    }

    /// Forgets every watch of `session` (it ended).
    pub fn end(&mut self, session: SessionKey) {
        for (user, told) in self.watching.remove(&session).unwrap_or_default() {
            if told {
                Self::forget(&mut self.watchers, &user, session);
            }
        }
    }

    /// The sessions to tell about `user`.
    pub fn watchers_of(&self, user: &UserId) -> impl Iterator<Item = SessionKey> + '_ {
        self.watchers.get(user).into_iter().flatten().copied()
    }

    fn forget(
        watchers: &mut HashMap<UserId, HashSet<SessionKey>>,
        user: &UserId,
        session: SessionKey,
    ) {
        if let Some(sessions) = watchers.get_mut(user) {
            sessions.remove(&session);
            if sessions.is_empty() {
                watchers.remove(user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_forgets_the_least_recently_seen_half_past_the_cap() {
        let mut last = LastSeen::default();
        let user = |n: usize| UserId::parse(&format!("u{n}")).expect("user id");
        for n in 0..MAX_LAST_SEEN {
            last.saw(&user(n), n as i64);
        }
        last.saw(&user(0), 1_000_000);
        assert_eq!(last.len(), MAX_LAST_SEEN, "a known user adds nothing");
        last.saw(&user(MAX_LAST_SEEN), 2_000_000);
        assert!(last.len() <= MAX_LAST_SEEN / 2 + 2, "{}", last.len());
        assert_eq!(last.get(&user(MAX_LAST_SEEN)), 2_000_000);
        assert_eq!(last.get(&user(0)), 1_000_000, "seen lately: kept");
        assert_eq!(last.get(&user(1)), 0, "the oldest are forgotten");
        assert_eq!(
            last.get(&user(MAX_LAST_SEEN - 1)),
            (MAX_LAST_SEEN - 1) as i64
        );
    }

    fn event(seq: u64) -> v1::RoomEvent {
        v1::RoomEvent {
            room_id: "g.1".into(),
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_is_encoded_once_and_shared() {
        let batch = RoomBatch::new(Arc::from(vec![event(1), event(2)]));
        let first = batch.frames(1 << 20).expect("fits").to_vec();
        let second = batch.frames(1 << 20).expect("fits");
        // The same bytes, not a copy: every recipient writes the one encoding.
        assert_eq!(first.len(), 2);
        for (a, b) in first.iter().zip(second) {
            assert_eq!(a.as_ptr(), b.as_ptr());
        }
        let mut decoder = chatwire_protocol::ServerFrameDecoder::new(1 << 20);
        decoder.push(&first[1]);
        let frame = decoder.next_frame().expect("decodes").expect("a frame");
        let expected = v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(v1::event::Kind::Room(event(2))),
            })),
        };
        assert_eq!(frame, expected);
    }

    #[test]
    fn a_batch_over_the_frame_limit_is_not_shared() {
        let batch = RoomBatch::new(Arc::from(vec![event(1)]));
        assert!(batch.frames(2).is_none());
    }
}
