//! The in-process fan-out of the embedded default: a map from users to their live sessions,
//! and presence derived from it (online while any session is live; last seen kept in memory,
//! so it restarts empty with the process).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chatwire_protocol::v1;

use super::fanout::{
    Audience, Delivery, Fanout, LastSeen, PresenceWatches, RoomBatch, SessionKey, SessionLink,
};
use crate::chat::ids::{RoomId, UserId};
use crate::clock::Clock;

/// In-process fan-out.
#[derive(Debug)]
pub struct LocalFanout {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionKey, (UserId, SessionLink)>,
    by_user: HashMap<UserId, Vec<SessionKey>>,
    watches: PresenceWatches,
    last_seen: LastSeen,
}

impl LocalFanout {
    /// An empty fan-out; `clock` stamps last-seen times.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::default(),
            clock,
        }
    }

    /// Tells the watchers of `user` its presence.
    fn notify_presence(inner: &Inner, presence: v1::Presence) {
        let Ok(user) = UserId::parse(&presence.user_id) else {
            return;
        };
        let event = Arc::new(v1::Event {
            kind: Some(v1::event::Kind::Presence(presence)),
        });
        for session in inner.watches.watchers_of(&user) {
            if let Some((_, link)) = inner.sessions.get(&session) {
                link.deliver(Delivery::User(Arc::clone(&event)));
            }
        }
    }

    fn presence_of(inner: &Inner, user: &UserId) -> v1::Presence {
        v1::Presence {
            user_id: user.to_string(),
            online: inner.by_user.contains_key(user),
            last_seen_ms: inner.last_seen.get(user),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing deliveries, so a poisoned lock is taken over.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn links_of(inner: &Inner, user: &UserId) -> Vec<(SessionKey, SessionLink)> {
        inner
            .by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| {
                inner
                    .sessions
                    .get(key)
                    .map(|(_, link)| (*key, link.clone()))
            })
            .collect()
    }
}

impl Fanout for LocalFanout {
    fn attach(&self, session: SessionKey, user: &UserId, link: SessionLink) {
        let mut inner = self.lock();
        inner.sessions.insert(session, (user.clone(), link));
        let sessions = inner.by_user.entry(user.clone()).or_default();
        sessions.push(session);
        if sessions.len() == 1 {
            let mut presence = Self::presence_of(&inner, user);
            presence.last_seen_ms = self.clock.now_ms();
            Self::notify_presence(&inner, presence);
        }
    }

    fn detach(&self, session: SessionKey) {
        let mut inner = self.lock();
        inner.watches.end(session);
        let Some((user, _)) = inner.sessions.remove(&session) else {
            return;
        };
        let Some(keys) = inner.by_user.get_mut(&user) else {
            return;
        };
        keys.retain(|key| *key != session);
        if keys.is_empty() {
            inner.by_user.remove(&user);
            let now = self.clock.now_ms();
            inner.last_seen.saw(&user, now);
            let presence = Self::presence_of(&inner, &user);
            Self::notify_presence(&inner, presence);
        }
    }

    fn publish_room(&self, _room: &RoomId, events: Arc<[v1::RoomEvent]>, audience: &Audience) {
        let links: Vec<SessionLink> = {
            let inner = self.lock();
            // Visit the smaller side: a room of 10k members with one live member costs one
            // lookup, not 10k.
            let users: Box<dyn Iterator<Item = &UserId>> = if audience.len() <= inner.by_user.len()
            {
                Box::new(audience.iter())
            } else {
                Box::new(inner.by_user.keys().filter(|user| audience.contains(user)))
            };
            users
                .flat_map(|user| inner.by_user.get(user).into_iter().flatten())
                .filter_map(|key| inner.sessions.get(key).map(|(_, link)| link.clone()))
                .collect()
        };
        let batch = RoomBatch::new(events);
        crate::telemetry::fanned_out(links.len());
        for link in links {
            link.deliver(Delivery::Room(Arc::clone(&batch)));
        }
    }

    fn publish_user(&self, user: &UserId, event: v1::Event, except: Option<SessionKey>) {
        let links = Self::links_of(&self.lock(), user);
        let event = Arc::new(event);
        for (key, link) in links {
            if Some(key) != except {
                link.deliver(Delivery::User(Arc::clone(&event)));
            }
        }
    }

    fn publish_session(&self, session: SessionKey, event: v1::Event) -> bool {
        let link = self
            .lock()
            .sessions
            .get(&session)
            .map(|(_, link)| link.clone());
        link.is_some_and(|link| link.deliver(Delivery::User(Arc::new(event))))
    }

    fn sessions_of(&self, user: &UserId) -> Vec<SessionKey> {
        self.lock().by_user.get(user).cloned().unwrap_or_default()
    }

    fn close_sessions(&self, user: Option<&UserId>, code: v1::CloseCode) -> usize {
        let links: Vec<SessionLink> = {
            let inner = self.lock();
            match user {
                Some(user) => Self::links_of(&inner, user)
                    .into_iter()
                    .map(|(_, link)| link)
                    .collect(),
                None => inner
                    .sessions
                    .values()
                    .map(|(_, link)| link.clone())
                    .collect(),
            }
        };
        for link in &links {
            link.deliver(Delivery::Close(code));
        }
        links.len()
    }

    fn session_count(&self) -> usize {
        self.lock().sessions.len()
    }

    fn watch_presence(
        &self,
        session: SessionKey,
        visible: &[UserId],
        hidden: &[UserId],
        cap: usize,
    ) -> Result<(), usize> {
        self.lock().watches.watch(session, visible, hidden, cap)
    }

    fn unwatch_presence(&self, session: SessionKey, users: &[UserId]) {
        self.lock().watches.unwatch(session, users);
    }

    fn presence(&self, user: &UserId) -> v1::Presence {
        let mut presence = Self::presence_of(&self.lock(), user);
        if presence.online {
            // Online users are seen now (docs/protocol.md §14).
            presence.last_seen_ms = self.clock.now_ms();
        }
        presence
    }
}
